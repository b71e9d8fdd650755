//! The single definition of everything both sides of the filter agree on:
//! program and map names, map keys and values, the config and verdict reasons.
//! Every type is `#[repr(C)]` so the eBPF program and filter-ctl see the same bytes.
#![no_std]

pub mod lists;
pub mod reason;
#[cfg(feature = "user")]
pub mod report;
#[cfg(feature = "user")]
pub mod settings;
pub mod syn;
pub use lists::{ListEntry, ListSource};
pub use reason::{Action, Direction, Reason};
pub use syn::SynBucket;

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
    /// Array with one [`crate::WatchedPorts`]: the class of every UDP port.
    pub const WATCHED_PORTS: &str = "WATCHED_PORTS";
    /// Array of [`crate::SolicitedSlot`]: queries our egress sent. Only egress writes it.
    pub const SOLICITED: &str = "SOLICITED";
    /// Array of u64, one per bucket of SOLICITED: the latest deadline
    /// recorded in it. Only egress writes it.
    pub const SOLICITED_LATEST: &str = "SOLICITED_LATEST";
    /// LRU hash of [`crate::FragmentKey`] -> [`crate::FragmentVerdict`]: first
    /// fragments' verdicts. Attackers can fill it; it is kept apart for that reason.
    pub const FRAGMENTS: &str = "FRAGMENTS";
    /// Array of [`crate::SynBucket`]: the per-source SYN buckets (IPv4 /32,
    /// IPv6 /64), hashed onto slots (see [`crate::syn`]).
    pub const SYN_SOURCES: &str = "SYN_SOURCES";
    /// Array of [`crate::SynBucket`]: the per-prefix SYN buckets.
    pub const SYN_PREFIXES: &str = "SYN_PREFIXES";
    /// Array with the one global [`crate::SynBucket`].
    pub const SYN_GLOBAL: &str = "SYN_GLOBAL";
    /// LPM tries of [`crate::ListEntry`] keyed by IPv4 / IPv6 prefixes.
    pub const ALLOW_V4: &str = "ALLOW_V4";
    pub const ALLOW_V6: &str = "ALLOW_V6";
    pub const DENY_V4: &str = "DENY_V4";
    pub const DENY_V6: &str = "DENY_V6";
    /// Array of u32, one per list trie (see [`crate::lists::IN_USE_ALLOW_V4`]):
    /// nonzero when the trie may hold entries.
    pub const LISTS_IN_USE: &str = "LISTS_IN_USE";
    /// Every map the object defines, in the order `status` shows them.
    pub const ALL: [&str; 14] = [
        STATS,
        CONFIG,
        WATCHED_PORTS,
        SOLICITED,
        SOLICITED_LATEST,
        FRAGMENTS,
        SYN_SOURCES,
        SYN_PREFIXES,
        SYN_GLOBAL,
        ALLOW_V4,
        ALLOW_V6,
        DENY_V4,
        DENY_V6,
        LISTS_IN_USE,
    ];
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
    /// SYN token buckets (see [`syn`]): SYNs per second and burst of each
    /// level. A rate of 0 switches the level off.
    pub syn_source_rate: u32,
    pub syn_source_burst: u32,
    pub syn_prefix_rate: u32,
    pub syn_prefix_burst: u32,
    pub syn_global_rate: u32,
    pub syn_global_burst: u32,
    /// Prefix lengths of the per-prefix level: IPv4 8..=32, IPv6 16..=64.
    pub syn_prefix_v4: u8,
    pub syn_prefix_v6: u8,
    pub _syn_padding: [u8; 6],
    /// How long a source that keeps exceeding its bucket stays on the deny
    /// list; 0 = no penalty.
    pub syn_penalty_ns: u64,
    /// Secret seed of the bucket hash, random per attach (not a setting).
    pub syn_hash_seed: u64,
}

impl Config {
    pub const DEFAULT: Config = Config {
        solicited_ttl_ns: 10_000_000_000,
        fragment_ttl_ns: 2_000_000_000,
        monitor: 0,
        orphan_fragments: OrphanPolicy::Drop as u8,
        _padding: [0; 6],
        syn_source_rate: syn::DEFAULT_SOURCE_RATE,
        syn_source_burst: syn::DEFAULT_SOURCE_BURST,
        syn_prefix_rate: syn::DEFAULT_PREFIX_RATE,
        syn_prefix_burst: syn::DEFAULT_PREFIX_BURST,
        syn_global_rate: syn::DEFAULT_GLOBAL_RATE,
        syn_global_burst: syn::DEFAULT_GLOBAL_BURST,
        syn_prefix_v4: syn::DEFAULT_PREFIX_V4,
        syn_prefix_v6: syn::DEFAULT_PREFIX_V6,
        _syn_padding: [0; 6],
        syn_penalty_ns: syn::DEFAULT_PENALTY_NS,
        syn_hash_seed: 0,
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

/// The [`PortClass`] of every UDP port, as one map value: 64 KiB that stay
/// in the CPU's cache under a flood to random ports, read and written by
/// filter-ctl in one syscall.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchedPorts(pub [u8; WatchedPorts::PORTS]);

impl WatchedPorts {
    pub const PORTS: usize = 65536;
    pub const NONE: WatchedPorts = WatchedPorts([PortClass::Unwatched as u8; Self::PORTS]);

    #[inline(always)]
    pub fn class(&self, port: u16) -> PortClass {
        PortClass::from_u8(self.0[usize::from(port)])
    }

    pub fn set(&mut self, port: u16, class: PortClass) {
        self.0[usize::from(port)] = class as u8;
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

impl SolicitedKey {
    /// The key's bucket in the solicited table. (Here, not in the program, so
    /// that tests can pick keys that share one.)
    ///
    /// Each 64-bit lane is multiplied by its own odd constant and the products
    /// summed, then mixed: the multiplications are independent, so the CPU
    /// runs them side by side, where a chained hash (FNV-1a, used before)
    /// waits for each step on every packet's path.
    #[inline(always)]
    pub fn bucket(&self) -> u32 {
        const LANE_KEYS: [u64; 6] = [
            0x9e37_79b9_7f4a_7c15,
            0xbf58_476d_1ce4_e5b9,
            0x94d0_49bb_1331_11eb,
            0xd6e8_feb8_6659_fd93,
            0xa076_1d64_78bd_642f,
            0xe703_7ed1_a0b4_28db,
        ];
        let pair = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
        let ports = u32::from(self.local_port) << 16 | u32::from(self.remote_port);
        let lanes = [
            pair(self.local_addr[0], self.local_addr[1]),
            pair(self.local_addr[2], self.local_addr[3]),
            pair(self.remote_addr[0], self.remote_addr[1]),
            pair(self.remote_addr[2], self.remote_addr[3]),
            pair(ports, self.family),
            self.token,
        ];
        let mut hash = 0u64;
        for (lane, key) in lanes.into_iter().zip(LANE_KEYS) {
            hash = hash.wrapping_add(lane.wrapping_mul(key));
        }
        hash ^= hash >> 29;
        hash = hash.wrapping_mul(LANE_KEYS[0]);
        (hash >> 32) as u32 % SOLICITED_BUCKETS
    }
}

/// One slot of the solicited table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SolicitedSlot {
    pub key: SolicitedKey,
    /// Deadline on the programs' clock (bpf_ktime_get_coarse_ns); 0 = free or consumed.
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
    // SAFETY: bytes; a byte that is no PortClass reads as Unwatched.
    unsafe impl aya::Pod for super::WatchedPorts {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::{vec, vec::Vec};

    use super::*;

    /// Queries that differ only in what a resolver varies (the transaction id,
    /// or the source port) must spread over the buckets: a bucket holds 4.
    #[test]
    fn solicited_keys_spread_over_the_buckets() {
        let key = |port: u16, id: u16| SolicitedKey {
            local_addr: [u32::from_ne_bytes([192, 0, 2, 10]), 0, 0, 0],
            remote_addr: [u32::from_ne_bytes([198, 51, 100, 53]), 0, 0, 0],
            local_port: port,
            remote_port: 53,
            family: 4,
            token: u64::from(id),
        };
        let spreads = [
            (0..=u16::MAX).map(|id| key(40000, id)).collect::<Vec<_>>(),
            (0..=u16::MAX).map(|port| key(port, 7)).collect(),
        ];
        for keys in spreads {
            let mut load = vec![0u32; SOLICITED_BUCKETS as usize];
            for key in &keys {
                load[key.bucket() as usize] += 1;
            }
            let used = load.iter().filter(|&&n| n > 0).count();
            let fullest = *load.iter().max().unwrap();
            // 65536 keys in 16384 buckets: random placement uses ~98% of them,
            // with at most ~15 in one.
            assert!(used > 15_500, "{used} buckets used");
            assert!(fullest <= 20, "{fullest} keys in one bucket");
        }
    }
}
