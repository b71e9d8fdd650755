//! The single definition of everything both sides of the filter agree on:
//! program and map names, map keys and values, the config and verdict reasons.
//! Every type is `#[repr(C)]` so the eBPF program and filter-ctl see the same bytes.
#![no_std]

pub mod reason;
pub use reason::{Action, Direction, Reason};

/// Names of the eBPF programs inside the object file.
pub mod program {
    /// XDP program on WAN ingress: every verdict is taken here.
    pub const INGRESS: &str = "wan_ingress";
    /// TC program on WAN egress: records queries, never drops.
    pub const EGRESS: &str = "wan_egress";
}

/// Names of the maps, as pinned under the interface's pin directory.
pub mod map {
    /// Per-CPU array of [`crate::Counter`]: index [`crate::Reason::index`], and
    /// `index + Reason::COUNT` for "would drop" in monitor mode.
    pub const STATS: &str = "STATS";
    /// Array with one [`crate::Config`].
    pub const CONFIG: &str = "CONFIG";
    /// Array of 65536 [`crate::PortClass`] bytes, indexed by UDP port.
    pub const WATCHED_PORTS: &str = "WATCHED_PORTS";
    /// Array of [`crate::SolicitedSlot`]: queries our egress sent. Only egress writes it.
    pub const SOLICITED: &str = "SOLICITED";
    /// LRU hash of [`crate::FragmentKey`] -> [`crate::FragmentVerdict`]: first
    /// fragments' verdicts. Attackers can fill it; it is kept apart for that reason.
    pub const FRAGMENTS: &str = "FRAGMENTS";
    /// Every map the object defines, in the order `status` shows them.
    pub const ALL: [&str; 5] = [STATS, CONFIG, WATCHED_PORTS, SOLICITED, FRAGMENTS];
}

/// Packets and bytes seen for one reason, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// What a later fragment does when its first fragment was not seen.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrphanPolicy {
    Pass = 0,
    Drop = 1,
}

/// Run-time settings, written by filter-ctl, read by both programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long a recorded query waits for its answer.
    pub solicited_ttl_ns: u64,
    /// How long a first fragment's verdict applies to its later fragments.
    pub fragment_ttl_ns: u64,
    /// 1: count what would be dropped under `index + Reason::COUNT` and pass it.
    pub monitor: u8,
    /// An [`OrphanPolicy`] value.
    pub orphan_fragments: u8,
    pub _padding: [u8; 6],
}

impl Config {
    pub const DEFAULT: Config = Config {
        solicited_ttl_ns: 10_000_000_000,
        fragment_ttl_ns: 2_000_000_000,
        monitor: 0,
        orphan_fragments: OrphanPolicy::Drop as u8,
        _padding: [0; 6],
    };
}

/// How a UDP source port (ingress) or destination port (egress) is watched.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortClass {
    Unwatched = 0,
    Dns = 1,
    Ntp = 2,
    /// Another amplification vector: every packet from it is a response.
    Other = 3,
}

impl PortClass {
    pub const fn from_u8(value: u8) -> PortClass {
        match value {
            1 => PortClass::Dns,
            2 => PortClass::Ntp,
            3 => PortClass::Other,
            _ => PortClass::Unwatched,
        }
    }
}

/// Ports watched by default: DNS, NTP and the UDP amplification vectors
/// listed by CISA's alert TA14-017A and later reports.
pub const DEFAULT_WATCHED_PORTS: [(u16, PortClass); 17] = [
    (53, PortClass::Dns),
    (123, PortClass::Ntp),
    (17, PortClass::Other),    // QOTD
    (19, PortClass::Other),    // chargen
    (69, PortClass::Other),    // TFTP
    (111, PortClass::Other),   // portmap / rpcbind
    (137, PortClass::Other),   // NetBIOS name service
    (161, PortClass::Other),   // SNMP
    (389, PortClass::Other),   // CLDAP
    (520, PortClass::Other),   // RIPv1
    (1900, PortClass::Other),  // SSDP
    (3283, PortClass::Other),  // Apple Remote Desktop
    (3702, PortClass::Other),  // WS-Discovery
    (5353, PortClass::Other),  // mDNS
    (10001, PortClass::Other), // Ubiquiti discovery
    (11211, PortClass::Other), // memcached
    (37810, PortClass::Other), // DVR DHCPDiscover
];

/// A query our side sent, as the answer will show it (addresses as on the wire).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SolicitedKey {
    /// Our address after NAT; IPv4 uses word 0.
    pub local_addr: [u32; 4],
    pub remote_addr: [u32; 4],
    pub local_port: u16,
    pub remote_port: u16,
    /// 4 or 6.
    pub family: u32,
    /// DNS: transaction id; NTP: the client's transmit timestamp, echoed as
    /// the origin timestamp; other ports: 0.
    pub token: u64,
}

/// One slot of the solicited table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SolicitedSlot {
    pub key: SolicitedKey,
    /// Monotonic (bpf_ktime_get_ns) deadline; 0 = free or consumed.
    pub expires_ns: u64,
}

/// The solicited table is set-associative: a key hashes to one bucket of
/// `SOLICITED_WAYS` slots. A full bucket evicts its oldest entry, counted.
pub const SOLICITED_BUCKETS: u32 = 16384;
pub const SOLICITED_WAYS: u32 = 4;

/// A datagram's fragments share source, destination, IP id and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub id: u32,
    pub protocol: u32,
}

/// The verdict of a first fragment, applied to the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentVerdict {
    pub expires_ns: u64,
    /// 1 if the first fragment was dropped.
    pub dropped: u32,
    pub _padding: u32,
}

pub const FRAGMENT_ENTRIES: u32 = 8192;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::SolicitedKey {}
    unsafe impl aya::Pod for super::SolicitedSlot {}
    unsafe impl aya::Pod for super::FragmentKey {}
    unsafe impl aya::Pod for super::FragmentVerdict {}
}
