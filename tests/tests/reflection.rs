//! Verdict tests of the reflection defence through BPF_PROG_TEST_RUN: queries
//! run through the egress program record what was asked, answers run through
//! the ingress program pass only if they match, everything else from a watched
//! port is dropped under its own reason. Exact counter deltas every time.

use std::{thread, time::Duration};

use filter_common::{Reason, SOLICITED_WAYS, SolicitedKey};
use harness::packet::{ExtHeader, Frame, Link, PacketBuilder, addr, dns_message, tcp_flags};
use tests::bpf::{Filter, TC_ACT_OK, XDP_DROP, XDP_PASS, zero};

const CLIENT_PORT: u16 = 40000;
const TXID: u16 = 0x5a5a;

fn len(frame: &[u8]) -> u64 {
    frame.len() as u64
}

#[derive(Clone, Copy, Debug)]
struct Path {
    v6: bool,
    link: Link,
}

const PATHS: [Path; 8] = [
    Path {
        v6: false,
        link: Link::Plain,
    },
    Path {
        v6: true,
        link: Link::Plain,
    },
    Path {
        v6: false,
        link: Link::Vlan,
    },
    Path {
        v6: true,
        link: Link::Vlan,
    },
    Path {
        v6: false,
        link: Link::QinQ,
    },
    Path {
        v6: true,
        link: Link::QinQ,
    },
    Path {
        v6: false,
        link: Link::Pppoe,
    },
    Path {
        v6: true,
        link: Link::Pppoe,
    },
];

impl Path {
    const V4: Path = Path {
        v6: false,
        link: Link::Plain,
    };

    /// A frame from `from` to `to`, where `true` means the client side.
    fn builder(self, outbound: bool) -> PacketBuilder {
        let builder = match (self.v6, outbound) {
            (false, true) => PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4),
            (false, false) => PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4),
            (true, true) => PacketBuilder::ipv6(addr::CLIENT_V6, addr::SERVER_V6),
            (true, false) => PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6),
        };
        self.link.carry(builder)
    }

    fn pass_reason(self) -> Reason {
        if self.v6 {
            Reason::PassIpv6
        } else {
            Reason::PassIpv4
        }
    }
}

fn dns_query(path: Path, id: u16) -> Frame {
    path.builder(true)
        .udp(CLIENT_PORT, 53)
        .payload(&dns_message(id, false, 20))
        .build()
}

fn dns_answer(path: Path, id: u16) -> Frame {
    path.builder(false)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(id, true, 200))
        .build()
}

/// An NTP packet: mode, origin timestamp (24..32) and transmit timestamp (40..48).
fn ntp(mode: u8, origin: u64, transmit: u64) -> Vec<u8> {
    let mut payload = vec![0u8; 48];
    payload[0] = (4 << 3) | mode;
    payload[24..32].copy_from_slice(&origin.to_be_bytes());
    payload[40..48].copy_from_slice(&transmit.to_be_bytes());
    payload
}

const NTP_CLIENT: u8 = 3;
const NTP_SERVER: u8 = 4;
const NTP_CONTROL: u8 = 6;
const NTP_PRIVATE: u8 = 7;
const STAMP: u64 = 0xe9a1_2345_6789_abcd;

#[test]
fn a_dns_answer_passes_only_if_its_query_went_out_and_only_once() {
    for path in PATHS {
        let filter = Filter::load();
        let query = dns_query(path, TXID);
        let answer = dns_answer(path, TXID);

        assert_eq!(
            filter.ingress(&answer),
            XDP_DROP,
            "{path:?}: answer before query"
        );
        filter.assert_moved(
            &zero(),
            &[(Reason::DropUnsolicitedDns, 1, len(&answer))],
            &format!("{path:?}"),
        );

        let before = filter.counts();
        assert_eq!(
            filter.egress(&query),
            TC_ACT_OK,
            "{path:?}: egress never drops"
        );
        assert_eq!(
            filter.ingress(&answer),
            XDP_PASS,
            "{path:?}: the answer to our query"
        );
        filter.assert_moved(
            &before,
            &[
                (Reason::EgressQueryRecorded, 1, len(&query)),
                (Reason::PassSolicited, 1, len(&answer)),
            ],
            &format!("{path:?}: query then answer"),
        );

        // The entry was consumed: a replayed answer is unsolicited.
        let before = filter.counts();
        assert_eq!(
            filter.ingress(&answer),
            XDP_DROP,
            "{path:?}: replayed answer"
        );
        filter.assert_moved(
            &before,
            &[(Reason::DropUnsolicitedDns, 1, len(&answer))],
            &format!("{path:?} replay"),
        );
    }
}

#[test]
fn an_answer_must_match_id_addresses_and_ports() {
    let filter = Filter::load();
    let path = Path::V4;
    let answer = |src, dst, sport: u16, dport: u16, id| {
        PacketBuilder::ipv4(src, dst)
            .udp(sport, dport)
            .payload(&dns_message(id, true, 100))
            .build()
    };
    let wrong = [
        (
            "transaction id",
            answer(addr::SERVER_V4, addr::CLIENT_V4, 53, CLIENT_PORT, TXID + 1),
        ),
        (
            "server address",
            answer(addr::ATTACKER_V4, addr::CLIENT_V4, 53, CLIENT_PORT, TXID),
        ),
        (
            "client address",
            answer(addr::SERVER_V4, addr::BENCH_V4, 53, CLIENT_PORT, TXID),
        ),
        (
            "client port",
            answer(addr::SERVER_V4, addr::CLIENT_V4, 53, CLIENT_PORT + 1, TXID),
        ),
    ];
    assert_eq!(filter.egress(&dns_query(path, TXID)), TC_ACT_OK);
    for (what, frame) in &wrong {
        let before = filter.counts();
        assert_eq!(filter.ingress(frame), XDP_DROP, "wrong {what}");
        filter.assert_moved(
            &before,
            &[(Reason::DropUnsolicitedDns, 1, len(frame))],
            &format!("wrong {what}"),
        );
    }
    // None of them consumed the entry: the real answer still passes.
    let before = filter.counts();
    let real = dns_answer(path, TXID);
    assert_eq!(filter.ingress(&real), XDP_PASS);
    filter.assert_moved(
        &before,
        &[(Reason::PassSolicited, 1, len(&real))],
        "the real answer",
    );
}

#[test]
fn dns_queries_from_port_53_and_dns_over_tcp_are_not_responses() {
    let filter = Filter::load();
    // Some resolvers send queries from source port 53: not a reflection.
    let query_from_53 = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 53)
        .payload(&dns_message(TXID, false, 20))
        .build();
    let tcp_answer = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .tcp(53, CLIENT_PORT, tcp_flags::ACK | tcp_flags::PSH)
        .payload(&dns_message(TXID, true, 100))
        .build();
    for frame in [&query_from_53, &tcp_answer] {
        assert_eq!(filter.ingress(frame), XDP_PASS);
    }
    // The query goes to our DNS service port: the query limits count it.
    filter.assert_moved(
        &zero(),
        &[
            (Reason::PassDnsQuery, 1, len(&query_from_53)),
            (Reason::PassIpv4, 1, len(&tcp_answer)),
        ],
        "query from 53, DNS over TCP",
    );
}

#[test]
fn short_dns_and_udp_headers_pass_as_malformed() {
    let filter = Filter::load();
    let answer = dns_answer(Path::V4, TXID);
    let udp_start = answer.l4.unwrap();
    // Cut inside the UDP header, and inside the DNS id/flags.
    for cut in (udp_start..udp_start + 8).chain(answer.payload..answer.payload + 4) {
        let frame = answer.truncated(cut);
        let before = filter.counts();
        assert_eq!(filter.ingress(&frame), XDP_PASS, "cut at {cut}");
        filter.assert_moved(
            &before,
            &[(Reason::PassMalformed, 1, cut as u64)],
            &format!("cut at {cut}"),
        );
    }
}

#[test]
fn ntp_answers_must_echo_the_transmit_timestamp() {
    for v6 in [false, true] {
        let path = Path {
            v6,
            link: Link::Plain,
        };
        let filter = Filter::load();
        let request = path
            .builder(true)
            .udp(CLIENT_PORT, 123)
            .payload(&ntp(NTP_CLIENT, 0, STAMP))
            .build();
        let answer = |origin| {
            path.builder(false)
                .udp(123, CLIENT_PORT)
                .payload(&ntp(NTP_SERVER, origin, 7))
                .build()
        };

        assert_eq!(filter.egress(&request), TC_ACT_OK);
        let wrong = answer(STAMP + 1);
        assert_eq!(
            filter.ingress(&wrong),
            XDP_DROP,
            "v6={v6}: wrong origin timestamp"
        );
        let right = answer(STAMP);
        assert_eq!(filter.ingress(&right), XDP_PASS, "v6={v6}: the answer");
        filter.assert_moved(
            &zero(),
            &[
                (Reason::EgressQueryRecorded, 1, len(&request)),
                (Reason::DropUnsolicitedNtp, 1, len(&wrong)),
                (Reason::PassSolicited, 1, len(&right)),
            ],
            &format!("NTP v6={v6}"),
        );
    }
}

#[test]
fn ntp_control_and_private_modes_are_dropped_both_ways() {
    let filter = Filter::load();
    let path = Path::V4;
    // Even right after a real request, a mode 7 "answer" never passes.
    let request = path
        .builder(true)
        .udp(CLIENT_PORT, 123)
        .payload(&ntp(NTP_CLIENT, 0, STAMP))
        .build();
    assert_eq!(filter.egress(&request), TC_ACT_OK);
    let mut expected = vec![(Reason::EgressQueryRecorded, 1, len(&request))];
    for mode in [NTP_CONTROL, NTP_PRIVATE] {
        let response = path
            .builder(false)
            .udp(123, CLIENT_PORT)
            .payload(&ntp(mode, STAMP, 0))
            .build();
        // A monlist query to the gateway itself, from any port.
        let query = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
            .udp(50000, 123)
            .payload(&ntp(mode, 0, 0)[..8])
            .build();
        for frame in [&response, &query] {
            assert_eq!(filter.ingress(frame), XDP_DROP, "mode {mode}");
            expected.push((Reason::DropNtpControl, 1, len(frame)));
        }
    }
    filter.assert_moved(&zero(), &expected, "NTP modes 6 and 7");

    // A client request to an NTP server on the gateway passes, also from port 123.
    let before = filter.counts();
    let client = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(123, 123)
        .payload(&ntp(NTP_CLIENT, 0, STAMP))
        .build();
    assert_eq!(filter.ingress(&client), XDP_PASS);
    // Counted by the query limits of the NTP service port.
    filter.assert_moved(
        &before,
        &[(Reason::PassNtpQuery, 1, len(&client))],
        "NTP client request inbound",
    );
}

#[test]
fn other_amplifier_ports_need_a_request_too() {
    let filter = Filter::load();
    for port in [19, 161, 389, 1900, 3702, 11211] {
        let request = PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4)
            .udp(CLIENT_PORT, port)
            .payload(b"stats\r\n")
            .build();
        let response = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
            .udp(port, CLIENT_PORT)
            .payload(&[0x42; 900])
            .build();
        let before = filter.counts();
        assert_eq!(
            filter.ingress(&response),
            XDP_DROP,
            "port {port} unsolicited"
        );
        assert_eq!(filter.egress(&request), TC_ACT_OK);
        assert_eq!(filter.ingress(&response), XDP_PASS, "port {port} solicited");
        filter.assert_moved(
            &before,
            &[
                (Reason::DropUnsolicitedOther, 1, len(&response)),
                (Reason::EgressQueryRecorded, 1, len(&request)),
                (Reason::PassSolicited, 1, len(&response)),
            ],
            &format!("port {port}"),
        );
    }
}

#[test]
fn the_watched_ports_change_at_run_time() {
    let mut filter = Filter::load();
    let answer = dns_answer(Path::V4, TXID);
    filter.set(&[("dns_ports", "none")]);
    assert_eq!(
        filter.ingress(&answer),
        XDP_PASS,
        "port 53 no longer watched"
    );
    filter.set(&[("dns_ports", "53"), ("amplifier_ports", "none")]);
    assert_eq!(filter.ingress(&answer), XDP_DROP, "port 53 watched again");
    let ssdp = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(1900, CLIENT_PORT)
        .payload(b"HTTP/1.1 200 OK")
        .build();
    assert_eq!(filter.ingress(&ssdp), XDP_PASS, "SSDP no longer watched");
    filter.assert_moved(
        &zero(),
        &[
            (Reason::PassIpv4, 1, len(&answer)),
            (Reason::DropUnsolicitedDns, 1, len(&answer)),
            (Reason::PassIpv4, 1, len(&ssdp)),
        ],
        "watched ports changed",
    );
}

/// `ntp_ports` names the source ports of NTP answers: moved to 1123, a
/// server response from there must echo a recorded request, one from 123
/// is plain traffic.
#[test]
fn the_ntp_ports_are_a_setting() {
    let mut filter = Filter::load();
    filter.set(&[("ntp_ports", "1123")]);
    let from = |port: u16, origin: u64| {
        PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
            .udp(port, CLIENT_PORT)
            .payload(&ntp(NTP_SERVER, origin, 7))
            .build()
    };
    let request = PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4)
        .udp(CLIENT_PORT, 1123)
        .payload(&ntp(NTP_CLIENT, 0, STAMP))
        .build();
    let (unsolicited, from_123) = (from(1123, STAMP + 1), from(123, STAMP + 1));
    assert_eq!(filter.ingress(&unsolicited), XDP_DROP);
    assert_eq!(filter.ingress(&from_123), XDP_PASS);
    assert_eq!(filter.egress(&request), TC_ACT_OK);
    let answer = from(1123, STAMP);
    assert_eq!(filter.ingress(&answer), XDP_PASS);
    filter.assert_moved(
        &zero(),
        &[
            (Reason::DropUnsolicitedNtp, 1, len(&unsolicited)),
            (Reason::PassIpv4, 1, len(&from_123)),
            (Reason::EgressQueryRecorded, 1, len(&request)),
            (Reason::PassSolicited, 1, len(&answer)),
        ],
        "NTP answers from port 1123",
    );
}

/// `fragment_lifetime`: a later fragment follows its first fragment's
/// verdict while it lasts, and is an orphan after it.
#[test]
fn a_first_fragments_verdict_lasts_the_fragment_lifetime() {
    let mut filter = Filter::load();
    filter.set(&[("fragment_lifetime", "100ms")]);
    let [first, second, third] = fragmented_answer(TXID, 0x5555);
    let ((), span) = tests::bpf::Span::around(|| {
        assert_eq!(filter.ingress(&first), XDP_DROP);
        assert_eq!(filter.ingress(&second), XDP_DROP);
    });
    assert!(
        span.to_ns - span.from_ns < 100_000_000,
        "the first two took {} ms, over the lifetime",
        (span.to_ns - span.from_ns) / 1_000_000
    );
    // Past the lifetime on the programs' clock.
    while filter_ctl::clock::now_ns() <= span.to_ns + 100_000_000 {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(filter.ingress(&third), XDP_DROP);
    filter.assert_moved(
        &zero(),
        &[
            (Reason::DropUnsolicitedDns, 1, len(&first)),
            (Reason::DropFragment, 1, len(&second)),
            (Reason::DropOrphanFragment, 1, len(&third)),
        ],
        "a 100 ms fragment lifetime",
    );
}

#[test]
fn an_unanswered_query_expires() {
    let mut filter = Filter::load();
    filter.set(&[("solicited_lifetime", "100ms")]);
    let (query, answer) = (dns_query(Path::V4, TXID), dns_answer(Path::V4, TXID));
    assert_eq!(filter.egress(&query), TC_ACT_OK);
    thread::sleep(Duration::from_millis(250));
    assert_eq!(
        filter.ingress(&answer),
        XDP_DROP,
        "answer after the lifetime"
    );
    filter.assert_moved(
        &zero(),
        &[
            (Reason::EgressQueryRecorded, 1, len(&query)),
            (Reason::DropUnsolicitedDns, 1, len(&answer)),
        ],
        "expired query",
    );
}

/// The solicited table's key of the client's DNS query with id `id` over
/// IPv4 (`dns_query(Path::V4, id)`).
fn client_query_key(id: u16) -> SolicitedKey {
    SolicitedKey {
        local_addr: [u32::from_ne_bytes(addr::CLIENT_V4.octets()), 0, 0, 0],
        remote_addr: [u32::from_ne_bytes(addr::SERVER_V4.octets()), 0, 0, 0],
        local_port: CLIENT_PORT,
        remote_port: 53,
        family: 4,
        token: u64::from(id),
    }
}

#[test]
fn a_query_outlives_a_shorter_one_recorded_later_in_its_bucket() {
    // Each bucket keeps its latest deadline in front of its slots; a later
    // query with a shorter lifetime must not lower it.
    let key = client_query_key;
    let long = TXID;
    let bucket = key(long).bucket();
    let short = (0..=u16::MAX)
        .find(|&id| id != long && key(id).bucket() == bucket)
        .expect("a transaction id that shares the bucket");

    let mut filter = Filter::load();
    filter.set(&[("solicited_lifetime", "10s")]);
    let long_query = dns_query(Path::V4, long);
    assert_eq!(filter.egress(&long_query), TC_ACT_OK);
    filter.set(&[("solicited_lifetime", "100ms")]);
    let short_query = dns_query(Path::V4, short);
    assert_eq!(filter.egress(&short_query), TC_ACT_OK);
    let first = (bucket * SOLICITED_WAYS) as usize;
    let in_bucket: Vec<SolicitedKey> = filter.solicited_slots()
        [first..first + SOLICITED_WAYS as usize]
        .iter()
        .filter(|slot| slot.expires_ns != 0)
        .map(|slot| slot.key)
        .collect();
    assert!(
        in_bucket.contains(&key(long)) && in_bucket.contains(&key(short)),
        "both queries in bucket {bucket}: {in_bucket:?}"
    );

    thread::sleep(Duration::from_millis(250));
    let (long_answer, short_answer) = (dns_answer(Path::V4, long), dns_answer(Path::V4, short));
    assert_eq!(filter.ingress(&short_answer), XDP_DROP, "after its 100 ms");
    assert_eq!(filter.ingress(&long_answer), XDP_PASS, "within its 10 s");
    filter.assert_moved(
        &zero(),
        &[
            (
                Reason::EgressQueryRecorded,
                2,
                len(&long_query) + len(&short_query),
            ),
            (Reason::DropUnsolicitedDns, 1, len(&short_answer)),
            (Reason::PassSolicited, 1, len(&long_answer)),
        ],
        "two queries in one bucket",
    );
}

/// The duplicate rule of the solicited table (filter-common/src/sets.rs): a
/// query sent again with the same addresses, ports and id refreshes the slot
/// that holds it, even when a free slot comes first in its bucket, so it is
/// one entry and one answer passes.
#[test]
fn a_query_sent_again_is_one_entry_and_one_answer_passes() {
    let key = client_query_key;
    let bucket = key(TXID).bucket();
    let other = (0..=u16::MAX)
        .find(|&id| id != TXID && key(id).bucket() == bucket)
        .expect("a transaction id that shares the bucket");
    let filter = Filter::load();
    let first = (bucket * SOLICITED_WAYS) as usize;
    let holding = |filter: &Filter| {
        filter.solicited_slots()[first..first + SOLICITED_WAYS as usize]
            .iter()
            .filter(|slot| slot.expires_ns != 0 && slot.key == key(TXID))
            .count()
    };

    // The other query takes the bucket's first slot, ours the second; the
    // other's answer frees the first.
    let (other_query, other_answer) = (dns_query(Path::V4, other), dns_answer(Path::V4, other));
    let (query, answer) = (dns_query(Path::V4, TXID), dns_answer(Path::V4, TXID));
    assert_eq!(filter.egress(&other_query), TC_ACT_OK);
    assert_eq!(filter.egress(&query), TC_ACT_OK);
    assert_eq!(filter.ingress(&other_answer), XDP_PASS);
    assert_eq!(holding(&filter), 1);

    // Sent again: still one entry.
    assert_eq!(filter.egress(&query), TC_ACT_OK);
    assert_eq!(holding(&filter), 1, "the query sent again is one entry");
    assert_eq!(filter.ingress(&answer), XDP_PASS, "the first answer");
    assert_eq!(filter.ingress(&answer), XDP_DROP, "a second answer");
    filter.assert_moved(
        &zero(),
        &[
            (
                Reason::EgressQueryRecorded,
                3,
                len(&other_query) + 2 * len(&query),
            ),
            (Reason::PassSolicited, 2, len(&other_answer) + len(&answer)),
            (Reason::DropUnsolicitedDns, 1, len(&answer)),
        ],
        "a query sent again",
    );
}

/// A ~2000-byte DNS answer in three IPv4 fragments: the first carries the UDP header.
fn fragmented_answer(id: u16, ip_id: u16) -> [Frame; 3] {
    let first = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .fragment(ip_id, true, 0)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(id, true, 1000 - 8 - 12))
        .build();
    let later = |offset, more| {
        PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
            .fragment(ip_id, more, offset)
            .protocol(17)
            .payload(&[0x61; 496])
            .build()
    };
    [first, later(125, true), later(187, false)]
}

#[test]
fn later_fragments_follow_their_first_fragment() {
    let filter = Filter::load();
    // Unsolicited: the first fragment is dropped, and so is the rest.
    let [first, second, third] = fragmented_answer(TXID, 0x1111);
    for frame in [&first, &second, &third] {
        assert_eq!(filter.ingress(frame), XDP_DROP);
    }
    filter.assert_moved(
        &zero(),
        &[
            (Reason::DropUnsolicitedDns, 1, len(&first)),
            (Reason::DropFragment, 2, len(&second) + len(&third)),
        ],
        "unsolicited fragmented answer",
    );

    // Solicited: all three pass.
    let before = filter.counts();
    let query = dns_query(Path::V4, TXID + 1);
    let [first, second, third] = fragmented_answer(TXID + 1, 0x2222);
    assert_eq!(filter.egress(&query), TC_ACT_OK);
    for frame in [&first, &second, &third] {
        assert_eq!(filter.ingress(frame), XDP_PASS);
    }
    filter.assert_moved(
        &before,
        &[
            (Reason::EgressQueryRecorded, 1, len(&query)),
            (Reason::PassSolicited, 1, len(&first)),
            (Reason::PassFragment, 2, len(&second) + len(&third)),
        ],
        "solicited fragmented answer",
    );
}

#[test]
fn fragments_before_their_first_follow_the_orphan_policy() {
    let mut filter = Filter::load();
    // Default policy: drop.
    let [_, _, orphan] = fragmented_answer(TXID, 0x4444);
    assert_eq!(filter.ingress(&orphan), XDP_DROP);
    filter.assert_moved(
        &zero(),
        &[(Reason::DropOrphanFragment, 1, len(&orphan))],
        "orphan policy drop",
    );

    filter.set(&[("orphan_fragments", "pass")]);
    let before = filter.counts();
    let [first, second, third] = fragmented_answer(TXID, 0x3333);
    assert_eq!(filter.ingress(&third), XDP_PASS);
    assert_eq!(
        filter.ingress(&first),
        XDP_DROP,
        "the first fragment itself is unsolicited"
    );
    assert_eq!(
        filter.ingress(&second),
        XDP_DROP,
        "after its first fragment, a fragment follows it"
    );
    filter.assert_moved(
        &before,
        &[
            (Reason::PassOrphanFragment, 1, len(&third)),
            (Reason::DropUnsolicitedDns, 1, len(&first)),
            (Reason::DropFragment, 1, len(&second)),
        ],
        "orphan policy pass",
    );
}

#[test]
fn ipv6_fragments_and_extension_headers_are_followed() {
    let filter = Filter::load();
    let answer = |more, offset: u16, udp: bool| {
        let builder = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
            .ext(ExtHeader::HopByHop(vec![]))
            .ext(ExtHeader::DestinationOptions(vec![]))
            .ext(ExtHeader::Fragment {
                offset,
                more,
                id: 0xabcd,
            });
        if udp {
            builder
                .udp(53, CLIENT_PORT)
                .payload(&dns_message(TXID, true, 1000))
                .build()
        } else {
            builder.protocol(17).payload(&[0x61; 512]).build()
        }
    };
    let (first, last) = (answer(true, 0, true), answer(false, 128, false));
    assert_eq!(filter.ingress(&first), XDP_DROP);
    assert_eq!(filter.ingress(&last), XDP_DROP);
    filter.assert_moved(
        &zero(),
        &[
            (Reason::DropUnsolicitedDns, 1, len(&first)),
            (Reason::DropFragment, 1, len(&last)),
        ],
        "unsolicited IPv6 fragments behind extension headers",
    );

    let query = PacketBuilder::ipv6(addr::CLIENT_V6, addr::SERVER_V6)
        .ext(ExtHeader::DestinationOptions(vec![]))
        .udp(CLIENT_PORT, 53)
        .payload(&dns_message(TXID, false, 20))
        .build();
    let whole = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ext(ExtHeader::HopByHop(vec![]))
        .ext(ExtHeader::Routing {
            routing_type: 4,
            segments_left: 0,
            data: vec![0; 4],
        })
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(TXID, true, 100))
        .build();
    let before = filter.counts();
    assert_eq!(filter.egress(&query), TC_ACT_OK);
    assert_eq!(filter.ingress(&whole), XDP_PASS);
    filter.assert_moved(
        &before,
        &[
            (Reason::EgressQueryRecorded, 1, len(&query)),
            (Reason::PassSolicited, 1, len(&whole)),
        ],
        "solicited IPv6 answer behind hop-by-hop and routing headers",
    );
}

#[test]
fn monitor_mode_counts_would_drop_and_passes_everything() {
    let mut filter = Filter::load();
    filter.set(&[("monitor", "on")]);
    let answer = dns_answer(Path::V4, TXID);
    let [first, second, _] = fragmented_answer(TXID, 0x5555);
    let mode7 = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .udp(123, CLIENT_PORT)
        .payload(&ntp(NTP_PRIVATE, 0, 0))
        .build();
    for frame in [&answer, &first, &second, &mode7] {
        assert_eq!(filter.ingress(frame), XDP_PASS, "monitor mode passes");
    }
    filter.assert_would_drop(
        &zero(),
        &[
            (Reason::DropUnsolicitedDns, 2, len(&answer) + len(&first)),
            (Reason::DropFragment, 1, len(&second)),
            (Reason::DropNtpControl, 1, len(&mode7)),
        ],
        "monitor mode",
    );

    filter.set(&[("monitor", "off")]);
    let before = filter.counts();
    assert_eq!(filter.ingress(&answer), XDP_DROP, "monitor off drops again");
    filter.assert_moved(
        &before,
        &[(Reason::DropUnsolicitedDns, 1, len(&answer))],
        "monitor off",
    );
}

/// The solicited table is bounded: a query whose bucket is full of live
/// entries evicts the one closest to expiry (not the oldest), counted; the
/// others keep their answers, the evicted one's answer is unsolicited.
#[test]
fn a_full_bucket_evicts_the_query_closest_to_expiry() {
    let key = |id: u16| SolicitedKey {
        local_addr: [u32::from_ne_bytes(addr::CLIENT_V4.octets()), 0, 0, 0],
        remote_addr: [u32::from_ne_bytes(addr::SERVER_V4.octets()), 0, 0, 0],
        local_port: CLIENT_PORT,
        remote_port: 53,
        family: 4,
        token: u64::from(id),
    };
    let ways = SOLICITED_WAYS as usize;
    // The first bucket that ways + 1 transaction ids fall into.
    let mut by_bucket = std::collections::HashMap::<u32, Vec<u16>>::new();
    let ids = (0..=u16::MAX)
        .find_map(|id| {
            let sharing = by_bucket.entry(key(id).bucket()).or_default();
            sharing.push(id);
            (sharing.len() == ways + 1).then(|| sharing.clone())
        })
        .expect("ways + 1 transaction ids that share a bucket");

    let mut filter = Filter::load();
    // The second query lives 5 s, the others 10 s: the second is the
    // closest to expiry, though the first is the oldest.
    let mut recorded = 0;
    for (n, &id) in ids[..ways].iter().enumerate() {
        let lifetime = if n == 1 { "5s" } else { "10s" };
        filter.set(&[("solicited_lifetime", lifetime)]);
        let query = dns_query(Path::V4, id);
        assert_eq!(filter.egress(&query), TC_ACT_OK);
        recorded += len(&query);
    }
    filter.set(&[("solicited_lifetime", "10s")]);
    let last = dns_query(Path::V4, ids[ways]);
    assert_eq!(filter.egress(&last), TC_ACT_OK);
    let mut passed = 0;
    for (n, &id) in ids.iter().enumerate() {
        let answer = dns_answer(Path::V4, id);
        let expected = if n == 1 { XDP_DROP } else { XDP_PASS };
        assert_eq!(filter.ingress(&answer), expected, "answer {n} of {ids:?}");
        if n != 1 {
            passed += len(&answer);
        }
    }
    let evicted_answer = dns_answer(Path::V4, ids[1]);
    filter.assert_moved(
        &zero(),
        &[
            (Reason::EgressQueryRecorded, ways as u64, recorded),
            (Reason::EgressQueryEvicted, 1, len(&last)),
            (Reason::PassSolicited, ways as u64, passed),
            (Reason::DropUnsolicitedDns, 1, len(&evicted_answer)),
        ],
        "a full bucket",
    );
}

#[test]
fn plain_traffic_on_other_ports_is_untouched() {
    let filter = Filter::load();
    for path in PATHS {
        let frame = path
            .builder(false)
            .udp(4500, CLIENT_PORT)
            .payload(&[1; 300])
            .build();
        let before = filter.counts();
        assert_eq!(filter.ingress(&frame), XDP_PASS, "{path:?}");
        filter.assert_moved(
            &before,
            &[(path.pass_reason(), 1, len(&frame))],
            &format!("{path:?}"),
        );
    }
}

/// Cut at every byte from the Ethernet header to the DNS flags, on every
/// encapsulation: nothing is dropped, everything counts as malformed.
#[test]
fn every_cut_of_an_encapsulated_answer_passes_as_malformed() {
    let filter = Filter::load();
    for path in PATHS {
        let answer = dns_answer(path, TXID);
        for cut in 14..answer.payload + 4 {
            let frame = answer.truncated(cut);
            let before = filter.counts();
            assert_eq!(filter.ingress(&frame), XDP_PASS, "{path:?} cut at {cut}");
            filter.assert_moved(
                &before,
                &[(Reason::PassMalformed, 1, cut as u64)],
                &format!("{path:?} cut at {cut}"),
            );
        }
    }
}
