//! The single definition of everything both sides of the filter agree on,
//! and the filter's pure logic, tested on the host.
//!
//! Shared data (every type `#[repr(C)]`, so the eBPF programs and filter-ctl
//! see the same bytes): program and map names and [`Counter`] here,
//! [`config`], [`ports`], [`solicited`], [`fragments`], [`syn`] (the SYN
//! buckets), [`query`] (the limits on inbound DNS and NTP requests),
//! [`lists`] (allow/deny entries), [`reason`] (verdict reasons).
//! With the `user` feature, for filter-ctl and the tests: aya's `Pod` impls
//! of the map values. Nothing else lives here: the settings table and the
//! JSON reports are filter-ctl's (filter-ctl/api), so that changing them
//! never rebuilds the eBPF object, which depends on this crate.
//!
//! Pure logic the programs call, with unit and property tests:
//! [`rate::admit`] (the GCRA check) and [`rate::Source`] (hashed slots) of
//! every rate limit, [`syn::strike`] and [`syn::SynSource`] (the penalty
//! count, the SYN slots), [`query`] (the query slots and the slip share),
//! [`dns`] and [`checksum`] (the slip reply's fields and checksums),
//! [`hash`] (slot hashes), [`prefix`]
//! (masks and address forms), [`expiry`] (deadlines),
//! [`SolicitedKey::bucket`], [`Config::solicited_lifetime_ns`] and its kin.
//! The connection-aware TCP defence: [`handshake`] (the handshakes egress
//! records), [`halfopen`] (the half-open budgets' counter), [`conn`] (the
//! per-source connection limits and their idle windows). [`sets`]: where a
//! key goes in the set-associative tables (solicited queries, handshakes,
//! connections) and which entry is evicted.
#![no_std]

pub mod checksum;
pub mod config;
pub mod conn;
pub mod dns;
pub mod expiry;
pub mod fragments;
pub mod halfopen;
pub mod handshake;
pub mod hash;
pub mod layout;
pub mod lists;
pub mod ports;
pub mod prefix;
pub mod query;
pub mod rate;
pub mod reason;
pub mod sample;
pub mod sets;
pub mod solicited;
pub mod syn;
pub use config::{Config, OrphanPolicy};
pub use fragments::{FRAGMENT_ENTRIES, FragmentKey, FragmentVerdict};
pub use lists::{ListEntry, ListSource};
pub use ports::{
    DEFAULT_SERVICE_PORTS, DEFAULT_WATCHED_PORTS, PortClass, ServiceClass, WatchedPorts,
};
pub use reason::{Action, Direction, Reason};
pub use sample::DropEvent;
pub use solicited::{SOLICITED_BUCKETS, SOLICITED_WAYS, SolicitedKey, SolicitedSlot};
pub use syn::SynBucket;

/// Names of the eBPF programs inside the object file.
pub mod program {
    /// XDP program on WAN ingress: every verdict is taken here.
    pub const INGRESS: &str = "wan_ingress";
    /// TC program on WAN egress: records queries, never drops.
    pub const EGRESS: &str = "wan_egress";
    /// XDP program entered only by the ingress program's tail call: the DNS
    /// slip reply (docs/query-limits.md).
    pub const SLIP: &str = "wan_slip";
}

/// What the frames an interface hands the programs start with: a constant
/// of the loaded object (`.rodata`, frozen), which filter-ctl sets at load
/// from the interface's link type. The verifier reads it as a known value
/// and walks only the parse of that link layer.
pub mod link_layer {
    /// The global the programs read it from.
    pub const GLOBAL: &str = "LINK_LAYER";
    /// Ethernet, maybe with VLAN tags and a PPPoE session header: the default.
    pub const ETHERNET: u8 = 0;
    /// The IP header itself: devices without a link-layer header (ppp,
    /// WireGuard, IP tunnels, tun), where XDP runs in generic (skb) mode.
    pub const IP: u8 = 1;
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
    /// The second copy of each list's tries (see [`crate::lists::COPY_SLOTS`]).
    pub const ALLOW_V4_B: &str = "ALLOW_V4_B";
    pub const ALLOW_V6_B: &str = "ALLOW_V6_B";
    pub const DENY_V4_B: &str = "DENY_V4_B";
    pub const DENY_V6_B: &str = "DENY_V6_B";
    /// Array of u32, one per list trie (see [`crate::lists::IN_USE_ALLOW_V4`]):
    /// nonzero when the trie may hold entries.
    pub const LISTS_IN_USE: &str = "LISTS_IN_USE";
    /// Issue 11, the connection-aware TCP defence (docs/tcp-connections.md).
    /// Array with one [`crate::handshake::ServicePorts`]: TCP ports egress saw
    /// send a SYN-ACK. Only egress writes it.
    pub const SERVICE_PORTS: &str = "SERVICE_PORTS";
    /// Array of [`crate::handshake::HandshakeSlot`]: SYN-ACKs egress sent,
    /// waiting for the completing ACK. Only egress records.
    pub const HANDSHAKES: &str = "HANDSHAKES";
    /// Array of u64, one per bucket of HANDSHAKES: its latest deadline.
    pub const HANDSHAKES_LATEST: &str = "HANDSHAKES_LATEST";
    /// Arrays of u64 (see [`crate::halfopen`]): the half-open budgets per
    /// source and per prefix, on the slots of SYN_SOURCES and SYN_PREFIXES.
    pub const HALFOPEN_SOURCES: &str = "HALFOPEN_SOURCES";
    pub const HALFOPEN_PREFIXES: &str = "HALFOPEN_PREFIXES";
    /// Array with one [`crate::conn::ConnLimits`]: `conn_limit`, per port.
    pub const CONN_LIMITS: &str = "CONN_LIMITS";
    /// Array of [`crate::conn::ConnSlot`]: connections to limited ports.
    pub const CONNECTIONS: &str = "CONNECTIONS";
    /// LRU hash of [`crate::conn::ConnOwner`] -> [`crate::conn::ConnCount`].
    pub const CONN_COUNTS: &str = "CONN_COUNTS";
    /// Array of u64: handshakes in flight per source and limited port.
    pub const CONN_PENDING: &str = "CONN_PENDING";
    /// Issue 12 (docs/query-limits.md): arrays of u64 GCRA buckets (see [`crate::query`]): the query limits
    /// per source, per prefix (hashed slots, DNS and NTP apart) and global
    /// (one per [`crate::query::Service`], then the slip cap's).
    pub const QUERY_SOURCES: &str = "QUERY_SOURCES";
    pub const QUERY_PREFIXES: &str = "QUERY_PREFIXES";
    pub const QUERY_GLOBAL: &str = "QUERY_GLOBAL";
    /// Program array with the slip program (see [`crate::program::SLIP`]),
    /// filled at load. Pinned: the kernel empties a program array when no
    /// user-space reference to it is left, and the tail call would then
    /// find nothing.
    pub const SLIP_PROGRAM: &str = "SLIP_PROGRAM";
    /// Per-CPU scratch value: where the parts of the query in flight lie,
    /// from the ingress program for the slip program it tail-calls. Pinned
    /// like every map, so that a replaced slip program reads what the
    /// running ingress program writes; never carried over in an upgrade.
    pub const SLIP_PLAN: &str = "SLIP_PLAN";
    /// Ring buffer of [`crate::DropEvent`]s: sampled drops (see [`crate::sample`]).
    pub const DROP_EVENTS: &str = "DROP_EVENTS";
    /// Array of u64, one per reason: each drop reason's sampling rate limiter.
    pub const DROP_SAMPLER: &str = "DROP_SAMPLER";
    /// Per-CPU array of u64: events sampled and lost (ring full), at
    /// [`crate::sample::COUNT_SAMPLED`] and [`crate::sample::COUNT_LOST`].
    pub const DROP_EVENT_COUNTS: &str = "DROP_EVENT_COUNTS";
    /// Issue 22: per-CPU array of [`crate::Counter`]: the packets that came
    /// inside a tunnel the filter unwraps, by encapsulation and by the
    /// reason the rules gave the packet inside, at
    /// [`crate::Encap::slot`]. They are counted in STATS too.
    pub const TUNNELLED: &str = "TUNNELLED";
    /// Every map the object defines and pins, in the order `status` shows
    /// them.
    pub const ALL: [&str; 36] = [
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
        SERVICE_PORTS,
        HANDSHAKES,
        HANDSHAKES_LATEST,
        HALFOPEN_SOURCES,
        HALFOPEN_PREFIXES,
        CONN_LIMITS,
        CONNECTIONS,
        CONN_COUNTS,
        CONN_PENDING,
        ALLOW_V4_B,
        ALLOW_V6_B,
        DENY_V4_B,
        DENY_V6_B,
        QUERY_SOURCES,
        QUERY_PREFIXES,
        QUERY_GLOBAL,
        SLIP_PROGRAM,
        SLIP_PLAN,
        DROP_EVENTS,
        DROP_SAMPLER,
        DROP_EVENT_COUNTS,
        TUNNELLED,
    ];
}

/// IP inside IP, as the filter unwraps it on the Ethernet device: which
/// tunnel a packet came through (the `TUNNELLED` counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// IPv4 inside IPv6 (next header 4): DS-Lite, MAP-E.
    Ipv4InIpv6,
    /// IPv6 inside IPv4 (protocol 41): 6in4, 6rd, tunnel brokers.
    Ipv6InIpv4,
}

impl Encap {
    pub const ALL: [Encap; 2] = [Encap::Ipv4InIpv6, Encap::Ipv6InIpv4];
    pub const COUNT: u32 = Encap::ALL.len() as u32;

    /// The encapsulation of a tunnel whose outer packet is IPv6 (or IPv4).
    pub const fn of_outer(outer_ipv6: bool) -> Encap {
        if outer_ipv6 {
            Encap::Ipv4InIpv6
        } else {
            Encap::Ipv6InIpv4
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Encap::Ipv4InIpv6 => "ipv4_in_ipv6",
            Encap::Ipv6InIpv4 => "ipv6_in_ipv4",
        }
    }

    pub fn from_name(name: &str) -> Option<Encap> {
        Encap::ALL.into_iter().find(|encap| encap.name() == name)
    }

    /// The `TUNNELLED` slot of a packet of this encapsulation whose inner
    /// packet got the reason at `reason_index`.
    pub const fn slot(self, reason_index: u32) -> u32 {
        self as u32 * Reason::COUNT + reason_index
    }
}

/// Packets and bytes seen for one reason, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers: every bit pattern is valid.
    unsafe impl aya::Pod for super::Counter {}
}
