//! The generator: proptest strategies for cases, each a few scenes over a
//! handful of addresses, with settings and list entries, expanded into a
//! [`Sequence`] of frames. It is structure-aware: every encapsulation (none,
//! 802.1Q, QinQ, PPPoE session, and a tag too many), IP inside IP (IPv4
//! inside IPv6 with and without ip6tnl's encapsulation limit option, IPv6
//! inside IPv4, the outer datagram fragmented, a tunnel inside the tunnel,
//! IPv4 inside IPv4 and IPv6 inside IPv6), IPv4 options, IPv6
//! extension header chains (around and over the six the filter walks),
//! fragments in and out of order, truncation at header boundaries and inside
//! payloads, lying length fields, random TCP flags, valid and almost-valid
//! DNS and NTP messages, queries followed by matching and one-field-off
//! answers, solicited buckets filled past their ways, SYN bursts, inbound
//! TCP connections (handshakes completed right or one field off, closed by
//! FIN or RST either way, left idle), handshake buckets filled past their
//! ways, and the TCP defence's settings (budgets, timeouts, `conn_limit`),
//! bursts of requests to our DNS and NTP servers from a few sources and
//! prefixes, well-formed and flawed, and the query limits' settings.
//!
//! For the programs loaded on a device without an Ethernet header, a case's
//! frames are the same packets without their link headers
//! ([`Case::sequence_on`] with [`Link::Ip`]).
//!
//! proptest shrinks a failing case scene by scene and field by field: the
//! structure shrinks, then the runner replays the smaller case.

pub mod app;
pub mod fragment;
pub mod net;
pub mod scene;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use proptest::{collection::vec, prelude::*};

use self::{
    net::{Ends, Peers, ends, peers},
    scene::{Scene, scene},
};
use crate::{
    lists::{List, Prefix},
    parse::{Family, Link},
    sequence::{ListItem, Sequence, Step},
    settings::{DEFAULT_AMPLIFIER_PORTS, Level, Orphans, QueryLimits, QuerySettings, Settings},
};

#[derive(Clone, Debug)]
pub struct Case {
    pub settings: Settings,
    pub peers: Peers,
    pub lists: Vec<ListSpec>,
    pub scenes: Vec<Scene>,
}

/// A list entry around one of the case's remote addresses.
#[derive(Clone, Copy, Debug)]
pub struct ListSpec {
    pub list: List,
    pub ends: Ends,
    pub len: u8,
    pub lasting_ms: Option<u8>,
}

/// A case; with `idle_gaps`, some have pauses past the TCP defence's
/// shortest timeouts (1 s, set for those cases), which cost real time.
pub fn case(idle_gaps: bool) -> BoxedStrategy<Case> {
    let list_spec = (
        prop_oneof![Just(List::Deny), Just(List::Allow)],
        ends(),
        prop_oneof![
            Just(32u8),
            Just(24),
            Just(64),
            Just(48),
            Just(128),
            Just(0),
            0..=128u8
        ],
        prop_oneof![3 => Just(None), 1 => Just(Some(0u8)), 1 => (1..20u8).prop_map(Some)],
    )
        .prop_map(|(list, ends, len, lasting_ms)| ListSpec {
            list,
            ends,
            len,
            lasting_ms,
        });
    (
        settings(),
        peers(),
        prop_oneof![3 => Just(vec![]), 1 => vec(list_spec, 1..6)],
        vec(scene(idle_gaps), 1..8),
    )
        .prop_map(|(mut settings, peers, lists, scenes)| {
            if scenes.iter().any(|scene| matches!(scene, Scene::Idle(_))) {
                settings.tcp.halfopen_timeout_ms = 1000;
                settings.tcp.conn_idle_timeout_ms = 1000;
            }
            Case {
                settings,
                peers,
                lists,
                scenes,
            }
        })
        .boxed()
}

impl Case {
    /// The case's frames for the filter loaded on an Ethernet device;
    /// `seed` is the loaded filter's hash seed.
    pub fn sequence(&self, seed: u64) -> Sequence {
        self.sequence_on(Link::Ethernet, seed)
    }

    /// The case's frames for the filter loaded for frames that start with
    /// `link`: on [`Link::Ip`] the same packets, tunnels included, without
    /// their link headers ([`net::without_link`]).
    pub fn sequence_on(&self, link: Link, seed: u64) -> Sequence {
        let mut sequence = self.ethernet_sequence(seed);
        if link == Link::Ip {
            for step in &mut sequence.steps {
                if let Step::Ingress(frame) | Step::Egress(frame) = step {
                    *frame = net::without_link(frame);
                }
            }
        }
        sequence.link = link;
        sequence
    }

    fn ethernet_sequence(&self, seed: u64) -> Sequence {
        let mut steps = Vec::new();
        for scene in &self.scenes {
            scene.expand(&self.peers, seed, &mut steps);
        }
        let lists = self
            .lists
            .iter()
            .map(|spec| {
                let (family, addr, width) = match self.peers.remote(spec.ends) {
                    IpAddr::V4(v4) => {
                        let mut bytes = [0; 16];
                        bytes[..4].copy_from_slice(&v4.octets());
                        (Family::V4, bytes, 32)
                    }
                    IpAddr::V6(v6) => (Family::V6, v6.octets(), 128),
                };
                ListItem {
                    list: spec.list,
                    prefix: Prefix::new(family, addr, spec.len.min(width)),
                    lasting_ms: spec.lasting_ms.map(u64::from),
                }
            })
            .collect();
        Sequence {
            link: Link::Ethernet,
            settings: self.settings.clone(),
            lists,
            steps,
        }
    }
}

/// The documented defaults most of the time, otherwise each setting varied
/// within its allowed range (values that make a difference in a case).
pub fn settings() -> BoxedStrategy<Settings> {
    let ports = prop_oneof![
        4 => Just(0u8),
        1 => 1..5u8,
    ];
    let level = |rates: Vec<Option<u32>>, bursts: Vec<u32>| {
        (
            proptest::sample::select(rates),
            proptest::sample::select(bursts),
        )
            .prop_map(|(rate, burst)| Level { rate, burst })
    };
    let varied = (
        prop::bool::weighted(0.3),
        prop_oneof![Just(10_000u64), Just(100), Just(300_000)],
        prop_oneof![Just(2_000u64), Just(100), Just(60_000)],
        prop_oneof![Just(Orphans::Drop), Just(Orphans::Pass)],
        ports,
        level(
            vec![Some(2), Some(1), Some(5), Some(1000), Some(1_000_000), None],
            vec![12, 1, 2, 3],
        ),
        level(vec![Some(20), Some(2), Some(1000), None], vec![60, 1, 5]),
        level(vec![Some(2000), Some(5), None], vec![4000, 1, 10]),
        prop_oneof![Just(24u8), Just(8), Just(16), Just(32)],
        prop_oneof![Just(48u8), Just(16), Just(32), Just(64)],
        prop_oneof![Just(None), Just(Some(1000u64)), Just(Some(600_000))],
    )
        .prop_map(
            |(
                monitor,
                solicited_lifetime_ms,
                fragment_lifetime_ms,
                orphans,
                ports,
                source,
                prefix,
                global,
                prefix_v4,
                prefix_v6,
                penalty_ms,
            )| {
                let mut settings = Settings {
                    monitor,
                    solicited_lifetime_ms,
                    fragment_lifetime_ms,
                    orphans,
                    ..Settings::default()
                };
                settings.syn.source = source;
                settings.syn.prefix = prefix;
                settings.syn.global = global;
                settings.syn.prefix_v4 = prefix_v4;
                settings.syn.prefix_v6 = prefix_v6;
                settings.syn.penalty_ms = penalty_ms;
                let amplifiers = || {
                    DEFAULT_AMPLIFIER_PORTS
                        .into_iter()
                        .collect::<BTreeSet<u16>>()
                };
                match ports {
                    // mDNS judged as DNS.
                    1 => {
                        settings.dns_ports = [53, 5353].into();
                        settings.amplifier_ports = amplifiers();
                        settings.amplifier_ports.remove(&5353);
                    }
                    2 => settings.ntp_ports.clear(),
                    3 => {
                        settings.dns_ports.clear();
                        settings.amplifier_ports.clear();
                    }
                    4 => {
                        settings.ntp_ports = [123, 1230].into();
                        settings.amplifier_ports = [19, 11211].into();
                    }
                    _ => {}
                }
                settings
            },
        );
    // The TCP defence's settings, varied on their own: connection limits in
    // half the cases (most cases have TCP scenes), the rest as above.
    let limits = prop_oneof![
        1 => Just(BTreeMap::new()),
        1 => vec(
            (
                // Port 0 is no port: `conn_limit` refuses it.
                prop_oneof![Just(25u16), Just(80), Just(443), 1..=u16::MAX],
                prop_oneof![1..4u16, 1..10u16, 5..8u16, Just(65535)],
            ),
            1..4,
        )
        .prop_map(|pairs| pairs.into_iter().collect::<BTreeMap<u16, u16>>()),
    ];
    let tcp = prop_oneof![
        3 => Just(None),
        1 => (
            proptest::sample::select(vec![Some(16u32), Some(1), Some(2), Some(4), None]),
            proptest::sample::select(vec![Some(64u32), Some(2), Some(8), None]),
            prop_oneof![Just(60_000u64), Just(1000), Just(3_600_000)],
            prop_oneof![Just(300_000u64), Just(1000), Just(86_400_000)],
        )
            .prop_map(Some),
    ];
    // The query limits, varied on their own in a third of the cases.
    let query = prop_oneof![2 => Just(None), 1 => query_settings().prop_map(Some)];
    // Mostly the defaults: a change of settings costs the runner more than
    // a sequence's test runs.
    (
        prop_oneof![3 => Just(Settings::default()), 1 => varied],
        limits,
        tcp,
        query,
    )
        .prop_map(|(mut settings, conn_limits, tcp, query)| {
            if let Some(query) = query {
                settings.query = query;
            }
            settings.tcp.conn_limits = conn_limits;
            if let Some((budget, prefix_budget, timeout_ms, idle_ms)) = tcp {
                settings.tcp.halfopen_budget = budget;
                settings.tcp.halfopen_prefix_budget = prefix_budget;
                settings.tcp.halfopen_timeout_ms = timeout_ms;
                settings.tcp.conn_idle_timeout_ms = idle_ms;
            }
            settings
        })
        .boxed()
}

/// The limits on requests to our DNS and NTP servers (docs/query-limits.md,
/// *Settings*): service ports (the generator's requests go to 53, 123, 5353
/// and 1123 mostly), each level's rate and burst (small ones, so that a
/// scene reaches them, or off), prefix lengths, the slip's share and cap.
/// The cap (`dns_slip_rate`) is small in some cases (1 to 3 per second),
/// so that the generator's bursts reach it.
pub fn query_settings() -> BoxedStrategy<QuerySettings> {
    let level = |rates: Vec<Option<u32>>, bursts: Vec<u32>| {
        (
            proptest::sample::select(rates),
            proptest::sample::select(bursts),
        )
            .prop_map(|(rate, burst)| Level { rate, burst })
    };
    let limits = |(source, prefix, global)| QueryLimits {
        source,
        prefix,
        global,
    };
    let dns = (
        level(vec![Some(10), Some(1), Some(1000), None], vec![20, 1, 3, 8]),
        level(vec![Some(20), Some(2), Some(1000), None], vec![40, 2, 6]),
        level(vec![Some(200), Some(5), None], vec![400, 4, 12]),
    )
        .prop_map(limits);
    let dns_name = level(vec![Some(10), Some(1), Some(1000), None], vec![20, 1, 3, 8]);
    let ntp = (
        level(vec![Some(1), Some(1000), None], vec![8, 1, 3]),
        level(vec![Some(8), Some(2), None], vec![32, 2, 6]),
        level(vec![Some(100), Some(5), None], vec![200, 4, 12]),
    )
        .prop_map(limits);
    let dns_ports = proptest::sample::select(vec![
        BTreeSet::from([53u16]),
        BTreeSet::from([53, 5353]),
        BTreeSet::from([5353]),
        BTreeSet::new(),
    ]);
    let ntp_ports = proptest::sample::select(vec![
        BTreeSet::from([123u16]),
        BTreeSet::from([123, 1123]),
        BTreeSet::from([1123]),
        BTreeSet::new(),
    ]);
    (
        (dns_ports, ntp_ports),
        (dns, dns_name),
        ntp,
        proptest::sample::select(vec![24u8, 8, 16, 30, 32]),
        proptest::sample::select(vec![56u8, 16, 48, 64]),
        proptest::sample::select(vec![2u8, 0, 1, 3, 10]),
        proptest::sample::select(vec![Some(1000u32), None, Some(1), Some(3), Some(1_000_000)]),
    )
        .prop_map(
            |(
                (dns_service_ports, ntp_service_ports),
                (dns, dns_name),
                ntp,
                v4,
                v6,
                slip,
                slip_rate,
            )| {
                QuerySettings {
                    dns_service_ports,
                    ntp_service_ports,
                    dns,
                    dns_name,
                    ntp,
                    prefix_v4: v4,
                    prefix_v6: v6,
                    dns_slip: slip,
                    dns_slip_rate: slip_rate,
                }
            },
        )
        .boxed()
}
