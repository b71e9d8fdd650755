//! Part 1: BPF_PROG_TEST_RUN time per packet class, against a one-line
//! XDP_DROP program measured in the same session, interleaved.
//!
//! Each class is a crafted frame, the reason the filter must count it under,
//! and what has to happen first. The kernel runs the program `repeat` times on
//! the same frame and reports the mean time per run; every class gets a filter
//! instance of its own (loaded like the verdict tests load it), so classes
//! cannot disturb each other's state.
//!
//! A solicited answer consumes its entry: the second run of a `repeat` loop
//! would be unsolicited. So it is measured one run at a time (`repeat` 1),
//! each after the egress program recorded the query again, next to the
//! unsolicited answer and the floor measured the same way. With `repeat` 1
//! the kernel's figure includes its own timer overhead; what is reported is
//! the unsolicited class's `repeat` figure plus the difference solicited -
//! unsolicited at `repeat` 1 (both paths parse the same headers and hash the
//! same key; they differ only in the match and the write that consumes it).
//!
//! The DNS slip reply (issue 12) is measured the same way: the reply
//! rewrites the frame in place, so a second run of a `repeat` loop would
//! see the reply. Its twin is a query over the same limit that gets no
//! reply.
//!
//! New classes: add a [`Class`] to [`classes`].

use std::time::Duration;

use ::tests::bpf::Filter;
use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use filter_common::{Direction, Reason};
use harness::{
    packet::{DEFAULT_ENCAP_LIMIT, ExtHeader, Frame, PacketBuilder, addr, dns_message, tcp_flags},
    signals::check_interrupted,
};

use crate::{object, stats::Summary, sys};

const CLIENT_PORT: u16 = 40000;
const TXID: u16 = 0x5a5a;

/// How a class is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `repeat` runs on the same frame.
    Repeat,
    /// One run at a time after the query was recorded, or a run that
    /// rewrites its frame (see the module docs).
    Solicited,
}

/// One packet class.
pub struct Class {
    pub key: &'static str,
    pub name: &'static str,
    /// The reason the filter must count (almost) every run under.
    pub reason: Reason,
    /// Settings for this class's filter instance.
    pub settings: &'static [(&'static str, &'static str)],
    pub method: Method,
    /// The measured frame.
    pub frame: Frame,
    /// Frames through ingress (`false`) or egress (`true`) before every measurement.
    pub before: Vec<(bool, Frame)>,
    /// `Solicited`: the twin that finds nothing to consume (by default the
    /// frame with its first payload byte changed: another DNS id).
    pub twin: Option<Frame>,
    /// Loaded as `attach` loads it for a device without an Ethernet header
    /// (ppp, WireGuard, ip6tnl, tun: `Filter::load_ip`); its frames (and
    /// those of `before`) start at the IP header.
    pub ip_link: bool,
}

#[derive(Clone, Copy)]
enum Link {
    Plain,
    Vlan,
    QinQ,
    Pppoe,
}

/// How the IP packet rides: bare, or inside IP on the Ethernet device.
#[derive(Clone, Copy)]
enum Tunnel {
    /// IPv4 inside IPv6 with ip6tnl's encapsulation limit option (DS-Lite, MAP-E).
    FourInSix,
    /// IPv6 inside IPv4 (6in4, 6rd).
    SixInFour,
}

impl Tunnel {
    fn inner_v6(self) -> bool {
        matches!(self, Tunnel::SixInFour)
    }

    /// `inner` in the tunnel, from the relay to us (`inbound`) or back.
    fn wrap(self, inner: PacketBuilder, inbound: bool) -> PacketBuilder {
        match (self, inbound) {
            (Tunnel::FourInSix, true) => inner
                .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
                .encap_limit(DEFAULT_ENCAP_LIMIT),
            (Tunnel::FourInSix, false) => inner
                .in_ipv6(addr::CLIENT_V6, addr::RELAY_V6)
                .encap_limit(DEFAULT_ENCAP_LIMIT),
            (Tunnel::SixInFour, true) => inner.in_ipv4(addr::RELAY_V4, addr::CLIENT_V4),
            (Tunnel::SixInFour, false) => inner.in_ipv4(addr::CLIENT_V4, addr::RELAY_V4),
        }
    }
}

fn tunnelled_udp_pass(tunnel: Tunnel) -> Frame {
    let inner = builder(tunnel.inner_v6(), Link::Plain, true)
        .udp(4444, CLIENT_PORT)
        .payload(&[0x5a; 100]);
    tunnel.wrap(inner, true).build()
}

fn tunnelled_dns_answer(tunnel: Tunnel) -> Frame {
    let inner = builder(tunnel.inner_v6(), Link::Plain, true)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(TXID, true, 88));
    tunnel.wrap(inner, true).build()
}

fn tunnelled_dns_query(tunnel: Tunnel) -> Frame {
    let inner = builder(tunnel.inner_v6(), Link::Plain, false)
        .udp(CLIENT_PORT, 53)
        .payload(&dns_message(TXID, false, 20));
    tunnel.wrap(inner, false).build()
}

/// From the server to us (`inbound`) or from us to the server.
fn builder(v6: bool, link: Link, inbound: bool) -> PacketBuilder {
    let b = match (v6, inbound) {
        (false, true) => PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4),
        (false, false) => PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4),
        (true, true) => PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6),
        (true, false) => PacketBuilder::ipv6(addr::CLIENT_V6, addr::SERVER_V6),
    };
    match link {
        Link::Plain => b,
        Link::Vlan => b.vlan(100),
        Link::QinQ => b.qinq(200, 100),
        Link::Pppoe => b.pppoe(0x1234),
    }
}

fn pass_reason(v6: bool) -> Reason {
    if v6 {
        Reason::PassIpv6
    } else {
        Reason::PassIpv4
    }
}

fn udp_pass(v6: bool, link: Link) -> Frame {
    builder(v6, link, true)
        .udp(4444, CLIENT_PORT)
        .payload(&[0x5a; 100])
        .build()
}

fn dns_answer(v6: bool, link: Link, id: u16) -> Frame {
    builder(v6, link, true)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(id, true, 88))
        .build()
}

fn dns_query(v6: bool, id: u16) -> Frame {
    builder(v6, Link::Plain, false)
        .udp(CLIENT_PORT, 53)
        .payload(&dns_message(id, false, 20))
        .build()
}

fn syn(v6: bool) -> Frame {
    builder(v6, Link::Plain, true)
        .tcp(40001, 80, tcp_flags::SYN)
        .build()
}

/// SYN buckets (and half-open budgets) so large that a measurement cannot
/// empty them.
const SYN_UNLIMITED: &[(&str, &str)] = &[
    ("syn_source_rate", "1000000"),
    ("syn_source_burst", "1000000"),
    ("syn_prefix_rate", "1000000"),
    ("syn_prefix_burst", "1000000"),
    ("syn_global_rate", "1000000"),
    ("syn_global_burst", "1000000"),
    ("syn_halfopen_budget", "1000000"),
    ("syn_halfopen_prefix_budget", "1000000"),
    ("syn_halfopen_timeout", "1h"),
];

/// The connection-aware TCP defence's classes: a client's connection to
/// our port 80.
const SERVER_ISN: u32 = 0x5e4f_0001;
const CLIENT_ISN: u32 = 0x0c11_e000;

/// From the client (inbound) or from our port 80 (outbound), IPv4.
fn http_segment(inbound: bool, flags: u8, seq: u32, ack: u32) -> PacketBuilder {
    let b = builder(false, Link::Plain, inbound);
    if inbound {
        b.tcp(40001, 80, flags).tcp_seq_ack(seq, ack)
    } else {
        b.tcp(80, 40001, flags).tcp_seq_ack(seq, ack)
    }
}

fn synack() -> Frame {
    http_segment(
        false,
        tcp_flags::SYN | tcp_flags::ACK,
        SERVER_ISN,
        CLIENT_ISN + 1,
    )
    .build()
}

fn completing_ack() -> Frame {
    http_segment(true, tcp_flags::ACK, CLIENT_ISN + 1, SERVER_ISN + 1).build()
}

/// A segment of the established connection: data, acknowledging the SYN-ACK.
fn data_ack() -> Frame {
    http_segment(
        true,
        tcp_flags::ACK | tcp_flags::PSH,
        CLIENT_ISN + 1,
        SERVER_ISN + 1,
    )
    .payload(&[0x17; 100])
    .build()
}

/// The connection's SYN, recorded SYN-ACK and completing ACK, before
/// every measurement: its port is a service, its handshake done.
fn established() -> Vec<(bool, Frame)> {
    vec![
        (false, syn(false)),
        (true, synack()),
        (false, completing_ack()),
    ]
}

/// Every packet class, in the order of the table.
pub fn classes() -> Vec<Class> {
    let plain = |key, name, reason, frame| Class {
        key,
        name,
        reason,
        settings: &[],
        method: Method::Repeat,
        frame,
        before: Vec::new(),
        twin: None,
        ip_link: false,
    };
    // A device without an Ethernet header: the same packet from its IP
    // header on.
    let on_ip_link = |key, name, reason, frame: Frame| Class {
        ip_link: true,
        ..plain(key, name, reason, frame.ip_only())
    };
    let v4_first_fragment = builder(false, Link::Plain, true)
        .fragment(0x1111, true, 0)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(TXID, true, 1000 - 8 - 12))
        .build();
    let v4_later_fragment = |ip_id| {
        builder(false, Link::Plain, true)
            .fragment(ip_id, true, 125)
            .protocol(17)
            .payload(&[0x61; 496])
            .build()
    };
    let v6_fragment = |offset, more, udp: bool| {
        let b = builder(true, Link::Plain, true).ext(ExtHeader::Fragment {
            offset,
            more,
            id: 0xabcd,
        });
        if udp {
            b.udp(53, CLIENT_PORT)
                .payload(&dns_message(TXID, true, 1000))
                .build()
        } else {
            b.protocol(17).payload(&[0x61; 512]).build()
        }
    };
    vec![
        plain(
            "pass_udp_v4",
            "passed UDP, IPv4",
            pass_reason(false),
            udp_pass(false, Link::Plain),
        ),
        plain(
            "pass_tcp_v4",
            "passed TCP segment (ACK), IPv4",
            pass_reason(false),
            builder(false, Link::Plain, true)
                .tcp(443, CLIENT_PORT, tcp_flags::ACK | tcp_flags::PSH)
                .payload(&[0x17; 100])
                .build(),
        ),
        plain(
            "pass_udp_v6",
            "passed UDP, IPv6",
            pass_reason(true),
            udp_pass(true, Link::Plain),
        ),
        plain(
            "pass_udp_vlan_v4",
            "passed UDP, 802.1Q, IPv4",
            pass_reason(false),
            udp_pass(false, Link::Vlan),
        ),
        plain(
            "pass_udp_qinq_v6",
            "passed UDP, QinQ, IPv6",
            pass_reason(true),
            udp_pass(true, Link::QinQ),
        ),
        plain(
            "pass_udp_pppoe_v4",
            "passed UDP, PPPoE, IPv4",
            pass_reason(false),
            udp_pass(false, Link::Pppoe),
        ),
        plain(
            "pass_udp_pppoe_v6",
            "passed UDP, PPPoE, IPv6",
            pass_reason(true),
            udp_pass(true, Link::Pppoe),
        ),
        // Issue 22: IP inside IP on the Ethernet device, and a device
        // without an Ethernet header.
        plain(
            "pass_udp_4in6",
            "passed UDP, IPv4 inside IPv6 (ip6tnl, DS-Lite/MAP-E)",
            pass_reason(false),
            tunnelled_udp_pass(Tunnel::FourInSix),
        ),
        plain(
            "pass_udp_6in4",
            "passed UDP, IPv6 inside IPv4 (6in4/6rd)",
            pass_reason(true),
            tunnelled_udp_pass(Tunnel::SixInFour),
        ),
        on_ip_link(
            "pass_udp_l3_v4",
            "passed UDP, device without Ethernet (L3), IPv4",
            pass_reason(false),
            udp_pass(false, Link::Plain),
        ),
        on_ip_link(
            "pass_udp_l3_v6",
            "passed UDP, device without Ethernet (L3), IPv6",
            pass_reason(true),
            udp_pass(true, Link::Plain),
        ),
        Class {
            method: Method::Solicited,
            before: vec![(true, dns_query(false, TXID))],
            ..plain(
                "dns_solicited_v4",
                "solicited DNS answer, IPv4",
                Reason::PassSolicited,
                dns_answer(false, Link::Plain, TXID),
            )
        },
        Class {
            method: Method::Solicited,
            before: vec![(true, dns_query(true, TXID))],
            ..plain(
                "dns_solicited_v6",
                "solicited DNS answer, IPv6",
                Reason::PassSolicited,
                dns_answer(true, Link::Plain, TXID),
            )
        },
        Class {
            method: Method::Solicited,
            before: vec![(true, tunnelled_dns_query(Tunnel::FourInSix))],
            ..plain(
                "dns_solicited_4in6",
                "solicited DNS answer, IPv4 inside IPv6",
                Reason::PassSolicited,
                tunnelled_dns_answer(Tunnel::FourInSix),
            )
        },
        plain(
            "dns_unsolicited_v4",
            "unsolicited DNS response, IPv4",
            Reason::DropUnsolicitedDns,
            dns_answer(false, Link::Plain, TXID),
        ),
        plain(
            "dns_unsolicited_v6",
            "unsolicited DNS response, IPv6",
            Reason::DropUnsolicitedDns,
            dns_answer(true, Link::Plain, TXID),
        ),
        plain(
            "dns_unsolicited_vlan_v4",
            "unsolicited DNS response, 802.1Q, IPv4",
            Reason::DropUnsolicitedDns,
            dns_answer(false, Link::Vlan, TXID),
        ),
        plain(
            "dns_unsolicited_pppoe_v6",
            "unsolicited DNS response, PPPoE, IPv6",
            Reason::DropUnsolicitedDns,
            dns_answer(true, Link::Pppoe, TXID),
        ),
        plain(
            "dns_unsolicited_4in6",
            "unsolicited DNS response, IPv4 inside IPv6 (ip6tnl, DS-Lite/MAP-E)",
            Reason::DropUnsolicitedDns,
            tunnelled_dns_answer(Tunnel::FourInSix),
        ),
        plain(
            "dns_unsolicited_6in4",
            "unsolicited DNS response, IPv6 inside IPv4 (6in4/6rd)",
            Reason::DropUnsolicitedDns,
            tunnelled_dns_answer(Tunnel::SixInFour),
        ),
        on_ip_link(
            "dns_unsolicited_l3_v4",
            "unsolicited DNS response, device without Ethernet (L3), IPv4",
            Reason::DropUnsolicitedDns,
            dns_answer(false, Link::Plain, TXID),
        ),
        plain(
            "ntp_mode7_v4",
            "NTP mode 7 (monlist) response, IPv4",
            Reason::DropNtpControl,
            builder(false, Link::Plain, true)
                .udp(123, CLIENT_PORT)
                .payload(&{
                    let mut p = vec![0u8; 48];
                    p[0] = (2 << 3) | 7;
                    p
                })
                .build(),
        ),
        Class {
            before: vec![(false, v4_first_fragment)],
            ..plain(
                "fragment_v4",
                "non-first fragment (first dropped), IPv4",
                Reason::DropFragment,
                v4_later_fragment(0x1111),
            )
        },
        Class {
            before: vec![(false, v6_fragment(0, true, true))],
            ..plain(
                "fragment_v6",
                "non-first fragment (first dropped), IPv6",
                Reason::DropFragment,
                v6_fragment(128, false, false),
            )
        },
        plain(
            "fragment_orphan_v4",
            "orphan non-first fragment, IPv4",
            Reason::DropOrphanFragment,
            v4_later_fragment(0x2222),
        ),
        Class {
            settings: SYN_UNLIMITED,
            ..plain(
                "syn_under_v4",
                "SYN under its buckets, IPv4",
                Reason::PassSyn,
                syn(false),
            )
        },
        plain(
            "syn_over_v4",
            "SYN over its source bucket, IPv4",
            Reason::DropSynSource,
            syn(false),
        ),
        plain(
            "syn_over_v6",
            "SYN over its source bucket, IPv6",
            Reason::DropSynSource,
            syn(true),
        ),
        Class {
            settings: SYN_UNLIMITED,
            before: established(),
            ..plain(
                "tcp_service_ack_v4",
                "ACK to a local service, IPv4",
                Reason::PassIpv4,
                data_ack(),
            )
        },
        Class {
            settings: &[
                ("syn_halfopen_budget", "1000000"),
                ("conn_limit", "80:1000"),
            ],
            before: established(),
            ..plain(
                "tcp_conn_ack_v4",
                "ACK of a counted connection (conn_limit), IPv4",
                Reason::PassIpv4,
                data_ack(),
            )
        },
        Class {
            method: Method::Solicited,
            before: vec![(true, synack())],
            twin: Some(http_segment(true, tcp_flags::ACK, CLIENT_ISN + 1, SERVER_ISN + 2).build()),
            ..plain(
                "tcp_completing_ack_v4",
                "ACK completing a handshake, IPv4",
                Reason::PassHandshake,
                completing_ack(),
            )
        },
        Class {
            settings: &[
                ("syn_source_rate", "1000000"),
                ("syn_source_burst", "1000000"),
                ("syn_prefix_rate", "1000000"),
                ("syn_prefix_burst", "1000000"),
            ],
            ..plain(
                "syn_halfopen_v4",
                "SYN over its half-open budget, IPv4",
                Reason::DropSynHalfopen,
                syn(false),
            )
        },
        Class {
            settings: &[
                ("syn_source_rate", "1000000"),
                ("syn_source_burst", "1000000"),
                ("syn_prefix_rate", "1000000"),
                ("syn_prefix_burst", "1000000"),
                ("conn_limit", "80:1"),
            ],
            before: established(),
            ..plain(
                "syn_conn_limit_v4",
                "SYN over its connection limit, IPv4",
                Reason::DropConnLimit,
                syn(false),
            )
        },
        // Issue 12, the limits on inbound DNS requests (since issue 27 the
        // question is walked and hashed for the name level first, which
        // these classes pass: NAME_LEVEL_OPEN).
        Class {
            settings: DNS_LIMITS_OPEN,
            ..plain(
                "dns_query_under_v4",
                "DNS query to our server within its limits, IPv4",
                Reason::PassDnsQuery,
                query_to_our_server(),
            )
        },
        Class {
            settings: &[
                NAME_LEVEL_OPEN.0,
                NAME_LEVEL_OPEN.1,
                ("dns_query_source_rate", "1"),
                ("dns_query_source_burst", "1"),
                ("dns_slip", "0"),
            ],
            ..plain(
                "dns_query_over_v4",
                "DNS query to our server over its source limit, IPv4",
                Reason::DropDnsQuerySource,
                query_to_our_server(),
            )
        },
        // Issue 27, the name level: a flood of one name refused there (the
        // question walked and hashed, one bucket read), and a query with a
        // long name within every limit (the walk and the hash over 200
        // bytes of name).
        Class {
            settings: &[
                ("dns_query_name_rate", "1"),
                ("dns_query_name_burst", "1"),
                ("dns_slip", "0"),
            ],
            ..plain(
                "dns_query_name_over_v4",
                "DNS query over its name limit (one name from one /24), IPv4",
                Reason::DropDnsQueryName,
                query_to_our_server(),
            )
        },
        Class {
            settings: DNS_LIMITS_OPEN,
            ..plain(
                "dns_query_long_name_under_v4",
                "DNS query for a 200-byte name within its limits, IPv4",
                Reason::PassDnsQuery,
                query_for_long_name(),
            )
        },
        // The slip reply rewrites the frame, and repeated runs would work on
        // the reply: measured one run at a time like a solicited answer,
        // against a twin over the same limit that gets no reply (IPv4 with
        // options: the reply is built only without), see the module docs.
        Class {
            settings: &[
                NAME_LEVEL_OPEN.0,
                NAME_LEVEL_OPEN.1,
                ("dns_query_source_rate", "1"),
                ("dns_query_source_burst", "1"),
                ("dns_slip", "1"),
                // Every run slips: no cap.
                ("dns_slip_rate", "off"),
            ],
            method: Method::Solicited,
            twin: Some(query_to_our_server_with(&[1, 1, 1, 0])),
            ..plain(
                "dns_query_slip_v4",
                "DNS query over its source limit answered truncated (slip), IPv4",
                Reason::TxDnsTruncated,
                query_to_our_server(),
            )
        },
        // Drop sampling (sample_rate, on by default in every drop class
        // above): the same drop paths with it off, for its cost.
        Class {
            settings: SAMPLING_OFF,
            ..plain(
                "dns_unsolicited_v4_unsampled",
                "unsolicited DNS response, IPv4, sample_rate=off",
                Reason::DropUnsolicitedDns,
                dns_answer(false, Link::Plain, TXID),
            )
        },
        Class {
            settings: SAMPLING_OFF,
            ..plain(
                "fragment_orphan_v4_unsampled",
                "orphan non-first fragment, IPv4, sample_rate=off",
                Reason::DropOrphanFragment,
                v4_later_fragment(0x2222),
            )
        },
        Class {
            settings: SAMPLING_OFF,
            ..plain(
                "syn_over_v4_unsampled",
                "SYN over its source bucket, IPv4, sample_rate=off",
                Reason::DropSynSource,
                syn(false),
            )
        },
    ]
}

/// A DNS query from outside to our server (port 53).
fn query_to_our_server() -> Frame {
    query_to_our_server_with(&[])
}

/// [`query_to_our_server`] with these IPv4 options. The question is well
/// formed (example.org A, RD set), so that a slip can answer it.
fn query_to_our_server_with(ip_options: &[u8]) -> Frame {
    let mut query = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend(b"\x07example\x03org\x00\x00\x01\x00\x01");
    PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .ipv4_options(ip_options)
        .udp(40000, 53)
        .payload(&query)
        .build()
}

/// A query for a name of 200 bytes (four labels of 49), within its limits.
fn query_for_long_name() -> Frame {
    let mut query = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for &label in b"abcd" {
        query.push(49);
        query.extend([label; 49]);
    }
    query.extend([0, 0, 1, 0, 1]);
    PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .udp(40000, 53)
        .payload(&query)
        .build()
}

/// The DNS name level wide open: the classes of the catch-alls pass it
/// (and pay for the walk and the hash).
const NAME_LEVEL_OPEN: ((&str, &str), (&str, &str)) = (
    ("dns_query_name_rate", "1000000"),
    ("dns_query_name_burst", "1000000"),
);

/// Every DNS level wide open: a query within its limits.
const DNS_LIMITS_OPEN: &[(&str, &str)] = &[
    NAME_LEVEL_OPEN.0,
    NAME_LEVEL_OPEN.1,
    ("dns_query_source_rate", "1000000"),
    ("dns_query_source_burst", "1000000"),
    ("dns_query_prefix_rate", "1000000"),
    ("dns_query_prefix_burst", "1000000"),
    ("dns_query_global_rate", "1000000"),
    ("dns_query_global_burst", "1000000"),
];

/// Drop sampling off.
const SAMPLING_OFF: &[(&str, &str)] = &[("sample_rate", "off")];

/// The summary of one class.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassResult {
    pub key: &'static str,
    pub name: &'static str,
    pub reason: &'static str,
    /// Kernel-reported ns per run (for `Solicited`: the estimate, see the module docs).
    pub ns: Summary,
    /// Per round, divided by the XDP_DROP floor of the same round.
    pub ratio: Summary,
    /// `Solicited` only: ns per run at `repeat` 1 of this class, of the
    /// unsolicited answer and of the floor.
    pub single_run: Option<SingleRun>,
    /// With more than one load per class: each instance's median ns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub load_medians: Vec<f64>,
    /// Share of the measured runs counted under `reason`.
    pub share_in_reason: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct SingleRun {
    pub solicited: Summary,
    pub unsolicited: Summary,
    pub floor: Summary,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TestRunResults {
    pub repeat: u32,
    pub rounds: usize,
    pub floor_ns: Summary,
    /// The floor through one call to a global function.
    pub call_ns: Summary,
    pub classes: Vec<ClassResult>,
    /// Instructions the verifier processed for the ingress program, and its size.
    pub verified_insns: Option<u32>,
    pub xlated_bytes: Option<u32>,
    pub jited_bytes: u32,
}

/// Single-run times of a solicited class: solicited, unsolicited twin, floor.
type SingleRuns = (Vec<f64>, Vec<f64>, Vec<f64>);

/// The one-line XDP_DROP program and the same through one call.
struct Floor {
    ebpf: Ebpf,
}

impl Floor {
    fn load() -> anyhow::Result<Self> {
        let mut ebpf = object::load()?;
        for name in [object::names::DROP, object::names::CALL] {
            let xdp: &mut Xdp = ebpf.program_mut(name).expect(name).try_into()?;
            xdp.load()?;
        }
        Ok(Self { ebpf })
    }

    fn run(&self, frame: &[u8], repeat: u32) -> anyhow::Result<Duration> {
        self.run_program(object::names::DROP, frame, repeat)
    }

    fn run_program(&self, name: &str, frame: &[u8], repeat: u32) -> anyhow::Result<Duration> {
        let xdp: &Xdp = self.ebpf.program(name).expect(name).try_into()?;
        Ok(xdp
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..Default::default()
            })?
            .duration)
    }
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

fn packets(filter: &Filter, reason: Reason) -> u64 {
    filter.counts()[reason.index() as usize].packets
}

fn total_ingress(filter: &Filter) -> u64 {
    Reason::ALL
        .iter()
        .filter(|r| r.direction() == Direction::Ingress)
        .map(|r| packets(filter, *r))
        .sum()
}

/// Which classes part 1 measures, and how many instances of each.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Only these class keys; empty: every class.
    pub keys: Vec<String>,
    /// Filter instances per class (at least one). Each load places the
    /// program and its maps anew, and one load can land slower or faster
    /// than another by more than two builds differ: more loads per class
    /// make a comparison of builds measure the builds.
    pub loads: usize,
}

impl Selection {
    /// The selected classes, or an error naming the unknown keys.
    fn classes(&self) -> anyhow::Result<Vec<Class>> {
        let all = classes();
        let unknown: Vec<&str> = self
            .keys
            .iter()
            .map(String::as_str)
            .filter(|key| !all.iter().any(|c| c.key == *key))
            .collect();
        if !unknown.is_empty() {
            anyhow::bail!(
                "unknown test-run class {}: the classes are {}",
                unknown.join(", "),
                all.iter().map(|c| c.key).collect::<Vec<_>>().join(", ")
            );
        }
        Ok(all
            .into_iter()
            .filter(|c| self.keys.is_empty() || self.keys.iter().any(|k| k == c.key))
            .collect())
    }
}

/// Runs every selected class `rounds` times on each of its instances,
/// interleaved with the floor.
pub fn run(
    repeat: u32,
    rounds: usize,
    single_runs: usize,
    cpu: usize,
    selection: &Selection,
) -> anyhow::Result<TestRunResults> {
    let selected = selection.classes()?;
    // One CPU for every run, so caches and clocks are the same for all classes.
    sys::pin(0, cpu)?;
    let floor = Floor::load()?;
    // (index into `selected`, one instance of the filter): a class's
    // instances take turns in every round.
    let mut active = Vec::new();
    for (index, class) in selected.iter().enumerate() {
        for _ in 0..selection.loads.max(1) {
            let mut filter = if class.ip_link {
                Filter::load_ip()
            } else {
                Filter::load()
            };
            filter
                .try_set(class.settings)
                .with_context(|| format!("the settings of class {}", class.key))?;
            active.push((index, filter));
        }
    }
    let info = active.first().map(|(_, f)| f.ingress_info()).transpose()?;

    let mut floor_ns = Vec::new();
    let mut call_ns = Vec::new();
    let mut per_class: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); selected.len()];
    let mut single: Vec<Option<SingleRuns>> = vec![None; selected.len()];
    let mut counted: Vec<(u64, u64)> = vec![(0, 0); selected.len()];
    // Each instance's figures, for the spread between loads.
    let mut per_instance: Vec<Vec<f64>> = vec![Vec::new(); active.len()];
    for _round in 0..rounds {
        check_interrupted()?;
        let f = ns(floor.run(&selected[0].frame, repeat)?);
        floor_ns.push(f);
        call_ns.push(ns(floor.run_program(
            object::names::CALL,
            &selected[0].frame,
            repeat,
        )?));
        for (instance, &(i, ref filter)) in active.iter().enumerate() {
            let class = &selected[i];
            let expected = class.reason;
            match class.method {
                Method::Repeat => {
                    for (egress, frame) in &class.before {
                        if *egress {
                            filter.egress(frame);
                        } else {
                            filter.ingress(frame);
                        }
                    }
                    let (before_in, before_all) =
                        (packets(filter, expected), total_ingress(filter));
                    let (_, d) = filter.ingress_timed(&class.frame, repeat)?;
                    counted[i].0 += packets(filter, expected) - before_in;
                    counted[i].1 += total_ingress(filter) - before_all;
                    per_class[i].0.push(ns(d));
                    per_instance[instance].push(ns(d));
                    per_class[i].1.push(ns(d) / f);
                }
                Method::Solicited => {
                    // An unsolicited twin: same addresses and ports, another id.
                    let twin = class.twin.clone().unwrap_or_else(|| {
                        let mut twin = class.frame.clone();
                        let id_at = twin.payload;
                        twin.bytes[id_at] ^= 0xff;
                        twin
                    });
                    let (mut sol, mut unsol, mut flo) = (Vec::new(), Vec::new(), Vec::new());
                    for n in 0..single_runs {
                        // Alternate the order, so neither side always runs
                        // right after the egress call.
                        if n % 2 == 1 {
                            unsol.push(ns(filter.ingress_timed(&twin, 1)?.1));
                            flo.push(ns(floor.run(&class.frame, 1)?));
                        }
                        for (_, query) in &class.before {
                            filter.egress(query);
                        }
                        let (before_in, before_all) =
                            (packets(filter, expected), total_ingress(filter));
                        let (_, d) = filter.ingress_timed(&class.frame, 1)?;
                        counted[i].0 += packets(filter, expected) - before_in;
                        counted[i].1 += total_ingress(filter) - before_all;
                        sol.push(ns(d));
                        if n % 2 == 0 {
                            unsol.push(ns(filter.ingress_timed(&twin, 1)?.1));
                            flo.push(ns(floor.run(&class.frame, 1)?));
                        }
                    }
                    // The unsolicited twin at full repeat, for the estimate.
                    let (_, d) = filter.ingress_timed(&twin, repeat)?;
                    let estimate = ns(d) + Summary::of(sol.iter().copied()).median
                        - Summary::of(unsol.iter().copied()).median;
                    per_class[i].0.push(estimate);
                    per_instance[instance].push(estimate);
                    per_class[i].1.push(estimate / f);
                    let entry = single[i].get_or_insert_with(Default::default);
                    entry.0.extend(sol);
                    entry.1.extend(unsol);
                    entry.2.extend(flo);
                }
            }
        }
    }
    let classes = selected
        .iter()
        .enumerate()
        .map(|(i, class)| ClassResult {
            key: class.key,
            name: class.name,
            reason: class.reason.name(),
            ns: Summary::of(per_class[i].0.iter().copied()),
            ratio: Summary::of(per_class[i].1.iter().copied()),
            single_run: single[i].as_ref().map(|(s, u, f)| SingleRun {
                solicited: Summary::of(s.iter().copied()),
                unsolicited: Summary::of(u.iter().copied()),
                floor: Summary::of(f.iter().copied()),
            }),
            load_medians: if selection.loads > 1 {
                active
                    .iter()
                    .zip(&per_instance)
                    .filter(|((index, _), _)| *index == i)
                    .map(|(_, figures)| Summary::of(figures.iter().copied()).median)
                    .collect()
            } else {
                Vec::new()
            },
            share_in_reason: if counted[i].1 > 0 {
                counted[i].0 as f64 / counted[i].1 as f64
            } else {
                0.0
            },
        })
        .collect();
    sys::unpin(0)?;
    Ok(TestRunResults {
        repeat,
        rounds,
        floor_ns: Summary::of(floor_ns),
        call_ns: Summary::of(call_ns),
        classes,
        verified_insns: info.as_ref().and_then(|i| i.verified_instruction_count()),
        xlated_bytes: info.as_ref().and_then(|i| i.size_translated()),
        jited_bytes: info.as_ref().map_or(0, |i| i.size_jitted()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::packet::addr::both_are_test_addresses;

    #[test]
    fn class_keys_are_unique_and_frames_use_test_addresses() {
        let classes = classes();
        let mut keys: Vec<&str> = classes.iter().map(|c| c.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), classes.len());
        for class in &classes {
            // Every frame was built from the documentation ranges (packet::addr).
            assert!(class.frame.len() >= 14, "{}", class.key);
        }
        assert!(both_are_test_addresses(addr::SERVER_V4, addr::CLIENT_V4));
        assert!(both_are_test_addresses(addr::SERVER_V6, addr::CLIENT_V6));
    }

    #[test]
    fn a_selection_keeps_the_named_classes_in_their_order_and_names_unknown_keys() {
        let keys = |keys: &[&str]| Selection {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            loads: 1,
        };
        let picked = keys(&["syn_over_v4", "pass_udp_v4"]).classes().unwrap();
        let picked: Vec<&str> = picked.iter().map(|c| c.key).collect();
        assert_eq!(picked, ["pass_udp_v4", "syn_over_v4"]);
        assert_eq!(keys(&[]).classes().unwrap().len(), classes().len());
        let Err(err) = keys(&["pass_udp_v4", "no_such_class"]).classes() else {
            panic!("an unknown key was accepted");
        };
        let err = err.to_string();
        assert!(
            err.contains("unknown test-run class no_such_class:"),
            "{err}"
        );
        assert!(err.contains("syn_over_v4"), "{err}");
    }
}
