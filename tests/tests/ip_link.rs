//! Verdict tests of the programs as `attach` loads them for a device without
//! an Ethernet header (ppp0, wg0, an IP tunnel, tun: `Filter::load_ip`),
//! whose frames start at the IP header. Each case runs the same packet
//! through both variants, as an Ethernet frame and as the bare IP packet,
//! and expects the same verdict under the same reason: the reflection
//! defence, the SYN buckets, the query limits. The one difference: no slip
//! reply (XDP_TX) on such a device, whose generic XDP cannot send one back
//! (filter-ebpf/src/reply.rs): the query is dropped as over its limit.
//! Real object, crafted packets, BPF_PROG_TEST_RUN (tests::bpf).

use filter_common::Reason;
use harness::packet::{ExtHeader, Frame, PacketBuilder, addr, dns_message, payload::dns_query};
use tests::bpf::{Counts, Filter, Span, TC_ACT_OK, XDP_DROP, XDP_PASS, XDP_TX, zero};

const CLIENT_PORT: u16 = 40000;
/// The TXT record type.
const TXT: u16 = 16;

/// The object as loaded for one kind of device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Ethernet,
    Ip,
}

impl Variant {
    const BOTH: [Variant; 2] = [Variant::Ethernet, Variant::Ip];

    fn load(self) -> Filter {
        match self {
            Variant::Ethernet => Filter::load(),
            Variant::Ip => Filter::load_ip(),
        }
    }

    /// `frame` as this variant's device hands it to XDP (and TC egress).
    fn bytes(self, frame: &Frame) -> Vec<u8> {
        match self {
            Variant::Ethernet => frame.bytes.clone(),
            Variant::Ip => frame.ip_only().bytes,
        }
    }
}

fn answer4() -> PacketBuilder {
    PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4).udp(53, CLIENT_PORT)
}

fn answer6() -> PacketBuilder {
    PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6).udp(53, CLIENT_PORT)
}

/// An NTP packet of `mode` (48 bytes, version 4).
fn ntp(mode: u8) -> Vec<u8> {
    let mut payload = vec![0u8; 48];
    payload[0] = (4 << 3) | mode;
    payload
}

/// Packets counted under `reason` between two snapshots.
fn moved(before: &Counts, after: &Counts, reason: Reason) -> u64 {
    after[reason.index() as usize].packets - before[reason.index() as usize].packets
}

#[test]
fn single_packets_get_the_same_verdicts_as_on_ethernet() {
    let cases: Vec<(&str, Frame, u32, Reason)> = vec![
        (
            "unsolicited DNS answer, IPv4",
            answer4().payload(&dns_message(7, true, 200)).build(),
            XDP_DROP,
            Reason::DropUnsolicitedDns,
        ),
        (
            "unsolicited DNS answer, IPv6",
            answer6().payload(&dns_message(7, true, 200)).build(),
            XDP_DROP,
            Reason::DropUnsolicitedDns,
        ),
        (
            "unsolicited DNS answer, IPv6 behind a hop-by-hop header",
            answer6()
                .ext(ExtHeader::HopByHop(vec![]))
                .payload(&dns_message(7, true, 200))
                .build(),
            XDP_DROP,
            Reason::DropUnsolicitedDns,
        ),
        (
            "NTP mode 7 answer",
            PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
                .udp(123, CLIENT_PORT)
                .payload(&ntp(7))
                .build(),
            XDP_DROP,
            Reason::DropNtpControl,
        ),
        (
            "UDP no rule looks at, IPv4",
            PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
                .udp(40001, 40002)
                .payload(b"data")
                .build(),
            XDP_PASS,
            Reason::PassIpv4,
        ),
        (
            "UDP no rule looks at, IPv6",
            PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
                .udp(40001, 40002)
                .payload(b"data")
                .build(),
            XDP_PASS,
            Reason::PassIpv6,
        ),
        (
            "IPv4 header length below 5 words",
            PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
                .udp(53, CLIENT_PORT)
                .ihl(4)
                .payload(&dns_message(7, true, 20))
                .build(),
            XDP_PASS,
            Reason::PassMalformed,
        ),
        (
            "ARP (on the IP device: a packet whose version nibble is 0)",
            PacketBuilder::arp_request(addr::CLIENT_V4, addr::SERVER_V4).build(),
            XDP_PASS,
            Reason::PassNotIp,
        ),
    ];
    for variant in Variant::BOTH {
        let filter = variant.load();
        for (what, frame, verdict, reason) in &cases {
            let bytes = variant.bytes(frame);
            let before = filter.counts();
            assert_eq!(filter.ingress(&bytes), *verdict, "{variant:?}: {what}");
            filter.assert_moved(
                &before,
                &[(*reason, 1, bytes.len() as u64)],
                &format!("{variant:?}: {what}"),
            );
        }
    }
}

#[test]
fn an_ip_header_cut_short_is_malformed() {
    let filter = Filter::load_ip();
    let answer = answer6()
        .payload(&dns_message(7, true, 20))
        .build()
        .ip_only();
    // 30 bytes of the 40-byte IPv6 header (BPF_PROG_TEST_RUN wants 14 or more).
    let cut = answer.truncated(30);
    assert_eq!(filter.ingress(&cut), XDP_PASS);
    filter.assert_moved(&zero(), &[(Reason::PassMalformed, 1, 30)], "cut IPv6");
}

#[test]
fn an_answer_passes_once_after_its_query_went_out() {
    for variant in Variant::BOTH {
        for v6 in [false, true] {
            let filter = variant.load();
            let (query, answer) = if v6 {
                (
                    PacketBuilder::ipv6(addr::CLIENT_V6, addr::SERVER_V6),
                    answer6(),
                )
            } else {
                (
                    PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4),
                    answer4(),
                )
            };
            let query = variant.bytes(
                &query
                    .udp(CLIENT_PORT, 53)
                    .payload(&dns_message(9, false, 20))
                    .build(),
            );
            let answer = variant.bytes(&answer.payload(&dns_message(9, true, 200)).build());
            let context = format!("{variant:?}, IPv6 {v6}");
            assert_eq!(filter.egress(&query), TC_ACT_OK, "{context}");
            assert_eq!(filter.ingress(&answer), XDP_PASS, "{context}");
            assert_eq!(filter.ingress(&answer), XDP_DROP, "{context}: again");
            let (query_len, answer_len) = (query.len() as u64, answer.len() as u64);
            filter.assert_moved(
                &zero(),
                &[
                    (Reason::EgressQueryRecorded, 1, query_len),
                    (Reason::PassSolicited, 1, answer_len),
                    (Reason::DropUnsolicitedDns, 1, answer_len),
                ],
                &context,
            );
        }
    }
}

#[test]
fn a_syn_flood_from_one_source_is_cut_to_its_bucket() {
    const BURST: u64 = 3;
    const SENT: u64 = 20;
    for variant in Variant::BOTH {
        let mut filter = variant.load();
        filter.set(&[
            ("syn_prefix_rate", "off"),
            ("syn_global_rate", "off"),
            ("syn_halfopen_budget", "off"),
            ("syn_halfopen_prefix_budget", "off"),
            ("syn_source_rate", "1/s"),
            ("syn_source_burst", "3"),
        ]);
        let syn = variant.bytes(
            &PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
                .tcp(40000, 80, harness::packet::tcp_flags::SYN)
                .build(),
        );
        let (verdicts, span) =
            Span::around(|| (0..SENT).map(|_| filter.ingress(&syn)).collect::<Vec<_>>());
        let after = filter.counts();
        let passed = moved(&zero(), &after, Reason::PassSyn);
        let dropped = moved(&zero(), &after, Reason::DropSynSource);
        assert!(
            (BURST..=BURST + span.refill(1)).contains(&passed),
            "{variant:?}: {passed} of {SENT} SYNs passed"
        );
        assert_eq!(passed + dropped, SENT, "{variant:?}");
        let drops = verdicts.iter().filter(|v| **v == XDP_DROP).count() as u64;
        assert_eq!(drops, dropped, "{variant:?}");
    }
}

#[test]
fn a_query_over_its_limit_gets_no_slip_without_ethernet() {
    for variant in Variant::BOTH {
        for v6 in [false, true] {
            let mut filter = variant.load();
            filter.set(&[
                ("dns_query_prefix_rate", "off"),
                ("dns_query_global_rate", "off"),
                ("dns_query_source_rate", "1/s"),
                ("dns_query_source_burst", "1"),
                ("dns_slip", "1"),
                ("dns_slip_rate", "off"),
            ]);
            let query = if v6 {
                PacketBuilder::ipv6(addr::ATTACKER_V6, addr::CLIENT_V6)
            } else {
                PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
            };
            let query = variant.bytes(
                &query
                    .udp(CLIENT_PORT, 53)
                    .payload(&dns_query(0x4242, "example.com", TXT, 1232))
                    .build(),
            );
            let context = format!("{variant:?}, IPv6 {v6}");
            assert_eq!(filter.ingress(&query), XDP_PASS, "{context}: within");
            let before = filter.counts();
            let (verdict, reply) = filter.ingress_output(&query);
            let after = filter.counts();
            match variant {
                Variant::Ethernet => {
                    assert_eq!(verdict, XDP_TX, "{context}: the slip");
                    assert_eq!(moved(&before, &after, Reason::TxDnsTruncated), 1);
                }
                Variant::Ip => {
                    assert_eq!(verdict, XDP_DROP, "{context}: no slip");
                    assert_eq!(reply, query, "{context}: the packet is left as it was");
                    filter.assert_moved(
                        &before,
                        &[(Reason::DropDnsQuerySource, 1, query.len() as u64)],
                        &context,
                    );
                }
            }
        }
    }
}
