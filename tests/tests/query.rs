//! Verdict tests of the limits on inbound DNS and NTP requests and of the
//! DNS slip reply (docs/query-limits.md): the name level (prefix, name and
//! type), limits per source, prefix and global, refill, IPv6 grouping, the
//! slip share, the exact bytes of the
//! truncated reply (parsed back with hickory-proto, an independent DNS
//! parser, and its checksums checked with etherparse), encapsulations,
//! malformed queries, monitor mode and what is never limited.
//! Real object, crafted frames, BPF_PROG_TEST_RUN (tests::bpf).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    thread,
    time::{Duration, Instant},
};

use filter_common::Reason;
use harness::packet::{Frame, PacketBuilder, addr, checksum};
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        Name, RecordType,
        rdata::opt::{ClientSubnet, EdnsOption},
    },
};
use tests::bpf::{Counts, Filter, Span, XDP_DROP, XDP_PASS, XDP_TX};

const DNS: u16 = 53;
const NTP: u16 = 123;

/// A DNS query for `name` TXT, with RD set; with an OPT record (payload
/// 4096, DO set, a client-subnet option) if `edns`.
fn query_message(id: u16, name: &str, edns: bool) -> Vec<u8> {
    typed_query(id, name, RecordType::TXT, edns)
}

/// The same for `name` and `rtype`.
fn typed_query(id: u16, name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(4096).set_dnssec_ok(true);
        opt.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)),
                24,
                0,
            )));
        message.set_edns(opt);
    }
    message.to_vec().unwrap()
}

fn dns4(src: Ipv4Addr, message: &[u8]) -> PacketBuilder {
    PacketBuilder::ipv4(src, addr::CLIENT_V4)
        .udp(40000, DNS)
        .payload(message)
}

fn dns6(src: Ipv6Addr, message: &[u8]) -> PacketBuilder {
    PacketBuilder::ipv6(src, addr::CLIENT_V6)
        .udp(40000, DNS)
        .payload(message)
}

/// An NTP request of `mode` (48 bytes, version 4).
fn ntp4(src: Ipv4Addr, mode: u8) -> Frame {
    let mut payload = [0u8; 48];
    payload[0] = 4 << 3 | mode;
    payload[40..48].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
    PacketBuilder::ipv4(src, addr::CLIENT_V4)
        .udp(40123, NTP)
        .payload(&payload)
        .build()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

/// A filter with the DNS levels off but for `settings` (rates and bursts),
/// no slip (nor a cap on slips); NTP as it comes.
fn dns_only(settings: &[(&str, &str)]) -> Filter {
    let mut filter = Filter::load();
    filter.set(&[
        ("dns_query_name_rate", "off"),
        ("dns_query_source_rate", "off"),
        ("dns_query_prefix_rate", "off"),
        ("dns_query_global_rate", "off"),
        ("dns_slip", "0"),
        ("dns_slip_rate", "off"),
    ]);
    filter.set(settings);
    filter
}

/// The same for NTP (DNS as it comes).
fn ntp_only(settings: &[(&str, &str)]) -> Filter {
    let mut filter = Filter::load();
    filter.set(&[
        ("ntp_query_source_rate", "off"),
        ("ntp_query_prefix_rate", "off"),
        ("ntp_query_global_rate", "off"),
    ]);
    filter.set(settings);
    filter
}

fn moved(before: &Counts, after: &Counts, reason: Reason) -> u64 {
    after[reason.index() as usize].packets - before[reason.index() as usize].packets
}

fn len(frame: &Frame) -> u64 {
    frame.bytes.len() as u64
}

/// Runs `frames` through ingress, bracketed by the programs' clock.
fn run_all(filter: &Filter, frames: &[&Frame]) -> (Vec<u32>, Span) {
    Span::around(|| frames.iter().map(|f| filter.ingress(&f.bytes)).collect())
}

/// Runs a burst of `frames` against one limit and checks it: the first
/// `burst` pass, the rest are dropped under `dropped`, unless the bucket
/// refilled (at `rate` per second) within the run's span (returned): then
/// at most that many more pass, in between. Exact counters either way.
#[track_caller]
fn assert_limited(
    filter: &Filter,
    frames: &[&Frame],
    (burst, rate): (u64, u64),
    passed_as: Reason,
    dropped: Reason,
) -> (Vec<u32>, Span) {
    let before = filter.counts();
    let (verdicts, span) = run_all(filter, frames);
    let passed = verdicts.iter().filter(|v| **v == XDP_PASS).count() as u64;
    let most = burst + span.refill(rate);
    assert!(
        (burst..=most).contains(&passed),
        "{passed} passed of {}, burst {burst}, refilled at most {} at {rate}/s: {verdicts:?}",
        frames.len(),
        most - burst
    );
    if most == burst {
        let mut expected = vec![XDP_PASS; burst as usize];
        expected.resize(frames.len(), XDP_DROP);
        assert_eq!(verdicts, expected);
    }
    let bytes = |verdict: u32| -> u64 {
        frames
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == verdict)
            .map(|(f, _)| len(f))
            .sum()
    };
    let dropped_count = frames.len() as u64 - passed;
    filter.assert_moved(
        &before,
        &[
            (passed_as, passed, bytes(XDP_PASS)),
            (dropped, dropped_count, bytes(XDP_DROP)),
        ],
        dropped.name(),
    );
    (verdicts, span)
}

/// The name level (issue 27): every address of a /24 (IPv6: /56) asking
/// one name and type shares one bucket, whatever the name's case; another
/// name, another type or another prefix has its own, so a /24 of
/// resolvers asking many names is never limited there.
#[test]
fn the_name_level_is_per_prefix_name_and_type() {
    let filter = dns_only(&[
        ("dns_query_name_rate", "1/s"),
        ("dns_query_name_burst", "3"),
    ]);
    let message = query_message(3, "big.example.com.", true);
    let hosts: Vec<Frame> = (1..=6)
        .map(|host| dns4(v4(203, 0, 113, host), &message).build())
        .collect();
    let frames: Vec<&Frame> = hosts.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (3, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryName,
    );
    // 0x20 encoding: the same name in mixed case is the same question.
    let mixed = dns4(
        v4(203, 0, 113, 77),
        &query_message(4, "bIG.ExAmPlE.CoM.", false),
    )
    .build();
    let before = filter.counts();
    assert_eq!(filter.ingress(&mixed.bytes), XDP_DROP);
    filter.assert_moved(
        &before,
        &[(Reason::DropDnsQueryName, 1, len(&mixed))],
        "the name in mixed case",
    );
    // Another type, another /24, and 60 other names from the same /24
    // (names of 1 to 250 bytes, so that the hash reads every chunk layout):
    // all pass.
    let mut others = vec![
        dns4(
            v4(203, 0, 113, 1),
            &typed_query(5, "big.example.com.", RecordType::A, false),
        )
        .build(),
        dns4(v4(198, 51, 100, 1), &message).build(),
    ];
    for n in 0..60usize {
        let label = format!("{n:02}").repeat(1 + n % 30);
        let name = if n % 2 == 0 {
            format!("{label}.example.com.")
        } else {
            // Up to 250 bytes: labels of at most 63.
            let long = label.repeat(4);
            let parts: Vec<&str> = long
                .as_bytes()
                .chunks(60)
                .map(|c| std::str::from_utf8(c).unwrap())
                .take(4)
                .collect();
            format!("{}.", parts.join("."))
        };
        others.push(dns4(v4(203, 0, 113, 200), &query_message(6, &name, n % 3 == 0)).build());
    }
    let before = filter.counts();
    let bytes: u64 = others.iter().map(len).sum();
    for frame in &others {
        assert_eq!(filter.ingress(&frame.bytes), XDP_PASS);
    }
    filter.assert_moved(
        &before,
        &[(Reason::PassDnsQuery, others.len() as u64, bytes)],
        "other questions, another /24",
    );
    // Names that differ only in their last byte, at lengths that put it
    // in each place of a chunk: one spends its bucket, the other still
    // passes.
    for len in [1usize, 5, 6, 7, 13, 14, 60, 61, 62, 63] {
        let name = |last: char| {
            let name = format!("{}{last}.", "x".repeat(len - 1));
            dns4(v4(203, 0, 113, 9), &query_message(7, &name, false)).build()
        };
        let (a, b) = (name('a'), name('b'));
        let verdicts: Vec<u32> = [&a, &a, &a, &b, &a]
            .iter()
            .map(|frame| filter.ingress(&frame.bytes))
            .collect();
        assert_eq!(
            verdicts,
            [XDP_PASS, XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP],
            "a name of {len} bytes"
        );
    }
    // IPv6: the hosts and /64s of one /56 share the name's bucket.
    let nets: Vec<Frame> = (0..6u16)
        .map(|net| dns6(Ipv6Addr::new(0x2001, 0xdb8, 3, net, 0, 0, 0, 1), &message).build())
        .collect();
    let frames: Vec<&Frame> = nets.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (3, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryName,
    );
}

/// A flood of one name that the name level refuses spends nothing of the
/// catch-alls: the prefix's other queries still find its bucket full.
/// Queries whose question the filter cannot read share one bucket of their
/// prefix.
#[test]
fn a_flood_refused_by_name_leaves_the_catch_alls_to_others() {
    let filter = dns_only(&[
        ("dns_query_name_rate", "1/s"),
        ("dns_query_name_burst", "1"),
        ("dns_query_prefix_rate", "1/s"),
        ("dns_query_prefix_burst", "6"),
    ]);
    let flood = dns4(v4(192, 0, 2, 10), &query_message(1, "big.example.", true)).build();
    assert_limited(
        &filter,
        &[&flood; 30],
        (1, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryName,
    );
    // Five more names from the /24: the prefix had 6, the flood took 1.
    let names: Vec<Frame> = (1..=6)
        .map(|n| {
            dns4(
                v4(192, 0, 2, 20 + n),
                &query_message(2, &format!("n{n}.example."), false),
            )
            .build()
        })
        .collect();
    let frames: Vec<&Frame> = names.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (5, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryPrefix,
    );

    // No readable question: a compression pointer, or no question at all.
    let filter = dns_only(&[
        ("dns_query_name_rate", "1/s"),
        ("dns_query_name_burst", "2"),
    ]);
    let mut pointer = query_message(1, "a.", false);
    pointer[12] = 0xc0;
    let mut none = query_message(1, "a.", false);
    none[5] = 0;
    let (pointer, none) = (
        dns4(v4(192, 0, 2, 1), &pointer).build(),
        dns4(v4(192, 0, 2, 2), &none).build(),
    );
    assert_limited(
        &filter,
        &[&pointer, &none, &pointer, &none],
        (2, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryName,
    );
}

/// Over the name level, the slip answers as over any level (the question
/// walked once, in the request rule), and what cannot get a reply is
/// dropped under the name level's reason; monitor mode counts the same.
#[test]
fn the_slip_answers_over_the_name_level() {
    let mut filter = dns_only(&[
        ("dns_query_name_rate", "1/s"),
        ("dns_query_name_burst", "1"),
    ]);
    filter.set(&[("dns_slip", "1")]);
    for edns in [true, false] {
        let message = query_message(0xbeef, "www.Example.com.", edns);
        let query = dns4(addr::ATTACKER_V4, &message).build();
        filter.ingress(&query.bytes);
        let before = filter.counts();
        check_slip_reply(&filter, &query, edns);
        filter.assert_moved(
            &before,
            &[(Reason::TxDnsTruncated, 1, len(&query))],
            "one reply over the name level",
        );
        let query = dns6(addr::ATTACKER_V6, &message).build();
        filter.ingress(&query.bytes);
        check_slip_reply(&filter, &query, edns);
    }
    let mut edns_v1 = query_message(1, "a.", true);
    edns_v1[12 + 3 + 4 + 6] = 1;
    let frame = dns4(addr::ATTACKER_V4, &edns_v1).build();
    filter.ingress(&frame.bytes);
    let before = filter.counts();
    assert_eq!(filter.ingress(&frame.bytes), XDP_DROP);
    filter.assert_moved(
        &before,
        &[(Reason::DropDnsQueryName, 1, len(&frame))],
        "EDNS version 1 over the name level",
    );
    // Monitor mode: a query that could get the reply would; one whose
    // question is malformed would be dropped (the rule walked it).
    filter.set(&[("monitor", "on")]);
    let mut pointer = query_message(1, "a.", false);
    pointer[12] = 0xc0;
    let pointer = dns4(addr::ATTACKER_V4, &pointer).build();
    filter.ingress(&pointer.bytes);
    let before = filter.counts();
    assert_eq!(filter.ingress(&pointer.bytes), XDP_PASS);
    filter.assert_would_drop(
        &before,
        &[(Reason::DropDnsQueryName, 1, len(&pointer))],
        "would drop a query with a pointer",
    );
}

#[test]
fn a_source_gets_its_burst_then_is_dropped_and_refills() {
    let filter = dns_only(&[
        ("dns_query_source_rate", "10/s"),
        ("dns_query_source_burst", "5"),
    ]);
    let frame = dns4(addr::ATTACKER_V4, &query_message(1, "example.com.", true)).build();
    let (verdicts, first) = assert_limited(
        &filter,
        &[&frame; 8],
        (5, 10),
        Reason::PassDnsQuery,
        Reason::DropDnsQuerySource,
    );
    // Another source has its own bucket.
    let other = dns4(
        v4(198, 51, 100, 7),
        &query_message(2, "example.com.", false),
    )
    .build();
    assert_eq!(filter.ingress(&other.bytes), XDP_PASS);
    // 10/s: after 350 ms, 3 more, as the clock allows. At least a token per
    // whole interval between the runs (the bucket ended the first run at
    // most its burst ahead); at most the burst and a token per interval
    // over both runs together (the GCRA bound), less what the first took.
    let first_passed = verdicts.iter().filter(|v| **v == XDP_PASS).count() as u64;
    thread::sleep(Duration::from_millis(350));
    let before = filter.counts();
    let (_, second) = run_all(&filter, &[&frame; 10]);
    let passed = moved(&before, &filter.counts(), Reason::PassDnsQuery);
    let between = Span {
        from_ns: first.to_ns,
        to_ns: second.from_ns,
    };
    let both = Span {
        from_ns: first.from_ns,
        to_ns: second.to_ns,
    };
    let (least, most) = (
        between.refill(10).min(5),
        5 + both.refill(10) - first_passed,
    );
    assert!(
        (least..=most).contains(&passed),
        "{passed} passed after 350 ms at 10/s, expected {least}..={most}"
    );
}

#[test]
fn a_prefix_shares_one_bucket_and_ipv6_groups_by_64_and_56() {
    let filter = dns_only(&[
        ("dns_query_prefix_rate", "1/s"),
        ("dns_query_prefix_burst", "4"),
    ]);
    let message = query_message(3, "example.com.", false);
    let hosts: Vec<Frame> = (1..=6)
        .map(|host| dns4(v4(203, 0, 113, host), &message).build())
        .collect();
    let frames: Vec<&Frame> = hosts.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (4, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryPrefix,
    );
    // Another /24 has its own.
    assert_eq!(
        filter.ingress(&dns4(v4(198, 51, 100, 1), &message).build().bytes),
        XDP_PASS
    );
    // Six /64s of one /56 (2001:db8:3:0::/56): four pass.
    let nets: Vec<Frame> = (0..6u16)
        .map(|net| dns6(Ipv6Addr::new(0x2001, 0xdb8, 3, net, 0, 0, 0, 1), &message).build())
        .collect();
    let frames: Vec<&Frame> = nets.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (4, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryPrefix,
    );
    // The next /56 is another prefix.
    let src = Ipv6Addr::new(0x2001, 0xdb8, 3, 0x100, 0, 0, 0, 1);
    assert_eq!(filter.ingress(&dns6(src, &message).build().bytes), XDP_PASS);
}

/// `query_prefix_v4` and `query_prefix_v6` group sources by other lengths:
/// a /16 and a /48 here, each one bucket, while the default /24 and /56
/// would have given each host its own.
#[test]
fn the_prefix_lengths_of_the_limits_are_settings() {
    let filter = dns_only(&[
        ("dns_query_prefix_rate", "1/s"),
        ("dns_query_prefix_burst", "3"),
        ("query_prefix_v4", "16"),
        ("query_prefix_v6", "48"),
    ]);
    let message = query_message(8, "example.com.", false);
    // One host in each of five /24s of 198.51.0.0/16.
    let hosts: Vec<Frame> = (1..=5)
        .map(|net| dns4(v4(198, 51, net, 9), &message).build())
        .collect();
    let frames: Vec<&Frame> = hosts.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (3, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryPrefix,
    );
    // The next /16 is another prefix.
    assert_eq!(
        filter.ingress(&dns4(v4(198, 52, 1, 9), &message).build().bytes),
        XDP_PASS
    );
    // One host in each of five /56s of 2001:db8:3::/48.
    let nets: Vec<Frame> = (1..=5u16)
        .map(|net| {
            dns6(
                Ipv6Addr::new(0x2001, 0xdb8, 3, net << 8, 0, 0, 0, 1),
                &message,
            )
            .build()
        })
        .collect();
    let frames: Vec<&Frame> = nets.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (3, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryPrefix,
    );
    let other = Ipv6Addr::new(0x2001, 0xdb8, 4, 0, 0, 0, 0, 1);
    assert_eq!(
        filter.ingress(&dns6(other, &message).build().bytes),
        XDP_PASS
    );
}

#[test]
fn an_ipv6_source_is_its_64() {
    let filter = dns_only(&[
        ("dns_query_source_rate", "1/s"),
        ("dns_query_source_burst", "3"),
    ]);
    let message = query_message(4, "example.com.", false);
    // Hosts of one /64 share the source bucket.
    let hosts: Vec<Frame> = (1..=5u16)
        .map(|host| dns6(Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, host), &message).build())
        .collect();
    let frames: Vec<&Frame> = hosts.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (3, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQuerySource,
    );
    let next = dns6(Ipv6Addr::new(0x2001, 0xdb8, 3, 1, 0, 0, 0, 1), &message).build();
    let before = filter.counts();
    assert_eq!(filter.ingress(&next.bytes), XDP_PASS);
    filter.assert_moved(
        &before,
        &[(Reason::PassDnsQuery, 1, len(&next))],
        "the next /64 is another source",
    );
}

#[test]
fn the_global_level_limits_everyone_together() {
    let filter = dns_only(&[
        ("dns_query_global_rate", "1/s"),
        ("dns_query_global_burst", "10"),
    ]);
    let message = query_message(5, "example.com.", false);
    let hosts: Vec<Frame> = (0..30u8)
        .map(|n| dns4(v4(198, 18, n, 1), &message).build())
        .collect();
    let frames: Vec<&Frame> = hosts.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (10, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQueryGlobal,
    );
}

/// `dns_service_ports` moves the DNS limits to another port: queries to
/// 5300 are limited, queries to 53 are plain traffic.
#[test]
fn the_dns_service_ports_are_a_setting() {
    let filter = {
        let mut filter = dns_only(&[
            ("dns_query_source_rate", "1/s"),
            ("dns_query_source_burst", "2"),
        ]);
        filter.set(&[("dns_service_ports", "5300")]);
        filter
    };
    let message = query_message(9, "example.com.", false);
    let to = |port: u16| {
        PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
            .udp(40000, port)
            .payload(&message)
            .build()
    };
    let (moved_port, old_port) = (to(5300), to(DNS));
    assert_limited(
        &filter,
        &[&moved_port; 4],
        (2, 1),
        Reason::PassDnsQuery,
        Reason::DropDnsQuerySource,
    );
    let before = filter.counts();
    let (verdicts, _) = run_all(&filter, &[&old_port; 4]);
    assert_eq!(verdicts, [XDP_PASS; 4]);
    filter.assert_moved(
        &before,
        &[(Reason::PassIpv4, 4, 4 * len(&old_port))],
        "port 53 is no DNS service port now",
    );
}

/// NTP client requests at each level: a source, a prefix (at a /16 here,
/// `query_prefix_v4`), everyone; the drops are counted per level.
#[test]
fn ntp_requests_are_limited_per_source_prefix_and_globally() {
    let filter = ntp_only(&[
        ("ntp_query_source_rate", "1/s"),
        ("ntp_query_source_burst", "2"),
    ]);
    let one = ntp4(addr::ATTACKER_V4, 3);
    assert_limited(
        &filter,
        &[&one; 5],
        (2, 1),
        Reason::PassNtpQuery,
        Reason::DropNtpQuerySource,
    );

    let filter = ntp_only(&[
        ("ntp_query_prefix_rate", "1/s"),
        ("ntp_query_prefix_burst", "3"),
        ("query_prefix_v4", "16"),
    ]);
    let hosts: Vec<Frame> = (1..=5).map(|net| ntp4(v4(198, 51, net, 9), 3)).collect();
    let frames: Vec<&Frame> = hosts.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (3, 1),
        Reason::PassNtpQuery,
        Reason::DropNtpQueryPrefix,
    );
    assert_eq!(filter.ingress(&ntp4(v4(198, 52, 1, 9), 3).bytes), XDP_PASS);

    let filter = ntp_only(&[
        ("ntp_query_global_rate", "1/s"),
        ("ntp_query_global_burst", "4"),
    ]);
    let hosts: Vec<Frame> = (1..=7).map(|net| ntp4(v4(198, 18, net, 1), 3)).collect();
    let frames: Vec<&Frame> = hosts.iter().collect();
    assert_limited(
        &filter,
        &frames,
        (4, 1),
        Reason::PassNtpQuery,
        Reason::DropNtpQueryGlobal,
    );
}

#[test]
fn the_slip_share_is_one_in_n() {
    let mut filter = dns_only(&[
        ("dns_query_source_rate", "1/s"),
        ("dns_query_source_burst", "1"),
    ]);
    filter.set(&[("dns_slip", "2")]);
    let frame = dns4(addr::ATTACKER_V4, &query_message(6, "example.com.", true)).build();
    filter.ingress(&frame.bytes);
    let before = filter.counts();
    let runs = 2000;
    let tx = (0..runs)
        .filter(|_| filter.ingress(&frame.bytes) == XDP_TX)
        .count() as u64;
    let after = filter.counts();
    // A slow run may see the bucket refill once or twice (1/s).
    let passed = moved(&before, &after, Reason::PassDnsQuery);
    assert!(passed <= 3, "{passed} passed");
    assert_eq!(moved(&before, &after, Reason::TxDnsTruncated), tx);
    assert_eq!(
        moved(&before, &after, Reason::DropDnsQuerySource),
        runs - passed - tx
    );
    // 1 in 2 of 2000: 1000, the binomial's 5 sigma is 112.
    assert!(
        (880..=1120).contains(&tx),
        "{tx} of {runs} slipped at slip 2"
    );

    filter.set(&[("dns_slip", "1")]);
    assert!((0..50).all(|_| filter.ingress(&frame.bytes) == XDP_TX));
    filter.set(&[("dns_slip", "0")]);
    assert!((0..50).all(|_| filter.ingress(&frame.bytes) == XDP_DROP));
}

#[test]
fn slips_beyond_the_slip_rate_are_dropped() {
    let mut filter = dns_only(&[
        ("dns_query_source_rate", "1/s"),
        ("dns_query_source_burst", "1"),
    ]);
    filter.set(&[("dns_slip", "1"), ("dns_slip_rate", "5/s")]);
    let frame = dns4(addr::ATTACKER_V4, &query_message(7, "example.com.", true)).build();
    filter.ingress(&frame.bytes);
    let started = Instant::now();
    let before = filter.counts();
    let runs = 100;
    let tx = (0..runs)
        .filter(|_| filter.ingress(&frame.bytes) == XDP_TX)
        .count() as u64;
    let after = filter.counts();
    // The cap's burst (5), and what it refilled meanwhile (5/s, rounded
    // up to whole seconds).
    let most = 5 + 5 * (started.elapsed().as_secs() + 1);
    assert!((5..=most).contains(&tx), "{tx} slipped");
    assert_eq!(moved(&before, &after, Reason::TxDnsTruncated), tx);
    let passed = moved(&before, &after, Reason::PassDnsQuery);
    assert_eq!(
        moved(&before, &after, Reason::DropDnsQuerySource),
        runs - passed - tx
    );

    // Off: no cap.
    filter.set(&[("dns_slip_rate", "off")]);
    assert!((0..50).all(|_| filter.ingress(&frame.bytes) == XDP_TX));
}

/// The reply as an independent parser reads it, after its frame's IP and
/// UDP checksums are checked; `l3` is where its IP header starts.
fn parse_reply(reply: &[u8], l3: usize) -> Message {
    checksum::verify_ip(&reply[l3..]).expect("the reply's checksums");
    let ip_len = if reply[l3] >> 4 == 4 { 20 } else { 40 };
    let udp = &reply[l3 + ip_len..];
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    assert_eq!(udp_len, udp.len(), "the UDP length is the frame's rest");
    Message::from_vec(&udp[8..]).expect("hickory-proto parses the reply")
}

/// Sends `query` (a frame over its limit with slip 1) and checks the reply
/// frame: addresses, ports and MACs swapped, the DNS message a truncated
/// answer to the query.
fn check_slip_reply(filter: &Filter, query: &Frame, expect_opt: bool) -> Vec<u8> {
    let (verdict, reply) = filter.ingress_output(&query.bytes);
    assert_eq!(verdict, XDP_TX);
    assert!(
        reply.len() <= query.bytes.len(),
        "never larger than the query"
    );
    assert_eq!(&reply[0..6], &query.bytes[6..12], "destination MAC");
    assert_eq!(&reply[6..12], &query.bytes[0..6], "source MAC");
    // The link headers are kept, but for a PPPoE session header's length
    // (checked by the caller): the EtherType 0x8864, its 6 bytes, the PPP protocol.
    let mut link = query.bytes[12..query.l3].to_vec();
    let pppoe = query.l3 >= 20 && query.bytes[query.l3 - 10..query.l3 - 8] == [0x88, 0x64];
    if pppoe {
        let at = link.len() - 4;
        link[at..at + 2].copy_from_slice(&reply[query.l3 - 4..query.l3 - 2]);
    }
    assert_eq!(&reply[12..query.l3], &link, "tags kept");
    let (l3, l4) = (query.l3, query.l4.unwrap());
    let (src_at, addr_len) = if reply[l3] >> 4 == 4 {
        (12, 4)
    } else {
        (8, 16)
    };
    let (src, dst) = (l3 + src_at, l3 + src_at + addr_len);
    assert_eq!(
        &reply[src..src + addr_len],
        &query.bytes[dst..dst + addr_len]
    );
    assert_eq!(
        &reply[dst..dst + addr_len],
        &query.bytes[src..src + addr_len]
    );
    assert_eq!(&reply[l4..l4 + 2], &query.bytes[l4 + 2..l4 + 4], "ports");
    assert_eq!(&reply[l4 + 2..l4 + 4], &query.bytes[l4..l4 + 2]);

    let sent = Message::from_vec(&query.bytes[query.payload..]).unwrap();
    let answer = parse_reply(&reply, l3);
    assert_eq!(answer.id(), sent.id());
    assert_eq!(answer.message_type(), MessageType::Response);
    assert_eq!(answer.op_code(), OpCode::Query);
    assert!(answer.truncated(), "TC");
    assert!(!answer.authoritative());
    assert_eq!(answer.recursion_desired(), sent.recursion_desired());
    assert!(!answer.recursion_available());
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    assert_eq!(answer.queries(), sent.queries(), "the same question");
    assert!(answer.answers().is_empty() && answer.name_servers().is_empty());
    match (answer.extensions(), expect_opt) {
        (Some(edns), true) => {
            assert_eq!(edns.max_payload(), 1232);
            assert_eq!(edns.version(), 0);
            assert!(edns.flags().dnssec_ok, "DO copied");
            assert!(edns.options().as_ref().is_empty(), "no options echoed");
        }
        (None, false) => {}
        (edns, _) => panic!("OPT record: {edns:?}, expected one: {expect_opt}"),
    }
    reply
}

fn slip_everything() -> Filter {
    let mut filter = dns_only(&[
        ("dns_query_source_rate", "1/s"),
        ("dns_query_source_burst", "1"),
    ]);
    filter.set(&[("dns_slip", "1")]);
    filter
}

#[test]
fn the_slip_reply_is_a_truncated_answer_over_ipv4_and_ipv6() {
    let filter = slip_everything();
    for edns in [true, false] {
        let message = query_message(0xbeef, "www.example.com.", edns);
        let query = dns4(addr::ATTACKER_V4, &message).build();
        filter.ingress(&query.bytes);
        let before = filter.counts();
        check_slip_reply(&filter, &query, edns);
        filter.assert_moved(
            &before,
            &[(Reason::TxDnsTruncated, 1, len(&query))],
            "one reply, counted with the query's bytes",
        );
        let query = dns6(addr::ATTACKER_V6, &message).build();
        filter.ingress(&query.bytes);
        let reply = check_slip_reply(&filter, &query, edns);
        assert_eq!(reply[query.l3 + 7], 64, "a fresh hop limit");
    }
    // Padding after the datagram (a short frame padded to 60) is cut.
    let message = query_message(7, "a.", false);
    let query = dns4(addr::ATTACKER_V4, &message).pad_to(80).build();
    let reply = check_slip_reply(&filter, &query, false);
    assert_eq!(reply.len(), query.l4.unwrap() + 8 + message.len());
}

#[test]
fn the_slip_reply_keeps_vlan_tags_and_pppoe() {
    let filter = slip_everything();
    let message = query_message(0x1234, "example.org.", true);
    for builder in [
        dns4(addr::ATTACKER_V4, &message).vlan(7),
        dns4(addr::ATTACKER_V4, &message).qinq(100, 7),
        dns4(addr::ATTACKER_V4, &message).pppoe(0x2a),
        dns6(addr::ATTACKER_V6, &message).vlan(7).pppoe(0x2a),
    ] {
        let query = builder.build();
        filter.ingress(&query.bytes);
        let reply = check_slip_reply(&filter, &query, true);
        // PPPoE: the session header sits right before the PPP protocol
        // field and the IP header; its length is the PPP payload's + 2.
        if query.bytes[query.l3 - 2..query.l3] == [0x00, 0x21]
            || query.bytes[query.l3 - 2..query.l3] == [0x00, 0x57]
        {
            let at = query.l3 - 4;
            let length = usize::from(u16::from_be_bytes([reply[at], reply[at + 1]]));
            assert_eq!(length, reply.len() - query.l3 + 2, "PPPoE length");
        }
    }
}

#[test]
fn queries_that_cannot_get_a_reply_are_dropped_and_malformed_ones_pass() {
    let filter = slip_everything();
    let source = addr::ATTACKER_V4;
    filter.ingress(&dns4(source, &query_message(1, "a.", false)).build().bytes);
    let mut two_questions = query_message(1, "a.", false);
    two_questions[5] = 2;
    two_questions.extend_from_slice(&[1, b'b', 0, 0, 16, 0, 1]);
    let mut edns_v1 = query_message(1, "a.", true);
    // The OPT follows the header (12) and the question (name 3, type and
    // class 4); its version byte is the sixth.
    edns_v1[12 + 3 + 4 + 6] = 1;
    let mut pointer_in_question = query_message(1, "a.", false);
    pointer_in_question[12] = 0xc0;
    let mut notify = query_message(1, "a.", false);
    notify[2] = 0x20; // opcode NOTIFY
    for (what, message) in [
        ("two questions", two_questions),
        ("EDNS version 1", edns_v1),
        ("a compression pointer in the question", pointer_in_question),
        ("NOTIFY", notify),
    ] {
        let frame = dns4(source, &message).build();
        let before = filter.counts();
        assert_eq!(filter.ingress(&frame.bytes), XDP_DROP, "{what}");
        filter.assert_moved(
            &before,
            &[(Reason::DropDnsQuerySource, 1, len(&frame))],
            what,
        );
    }
    // Shorter than a DNS header: passes as malformed, whatever the limits.
    for _ in 0..3 {
        let frame = dns4(source, &[0x12, 0x34, 1, 0]).build();
        let before = filter.counts();
        assert_eq!(filter.ingress(&frame.bytes), XDP_PASS);
        filter.assert_moved(&before, &[(Reason::PassMalformed, 1, len(&frame))], "short");
    }
}

#[test]
fn responses_and_other_ports_are_never_limited() {
    let filter = slip_everything();
    let source = addr::ATTACKER_V4;
    let mut response = query_message(9, "a.", false);
    response[2] |= 0x80;
    let before = filter.counts();
    for _ in 0..5 {
        // A response to our DNS port: the reflection defence's, not limited.
        filter.ingress(&dns4(source, &response).build().bytes);
        // A query to another port.
        let other = PacketBuilder::ipv4(source, addr::CLIENT_V4)
            .udp(40000, 5353)
            .payload(&query_message(9, "a.", false))
            .build();
        assert_eq!(filter.ingress(&other.bytes), XDP_PASS);
    }
    let after = filter.counts();
    for reason in [
        Reason::PassDnsQuery,
        Reason::DropDnsQuerySource,
        Reason::TxDnsTruncated,
    ] {
        assert_eq!(moved(&before, &after, reason), 0, "{reason:?}");
    }
}

#[test]
fn ntp_client_requests_are_limited_control_dropped_others_untouched() {
    let mut filter = Filter::load();
    filter.set(&[
        ("ntp_query_source_rate", "1/s"),
        ("ntp_query_source_burst", "2"),
    ]);
    let client = ntp4(addr::ATTACKER_V4, 3);
    let verdicts: Vec<u32> = (0..4).map(|_| filter.ingress(&client.bytes)).collect();
    assert_eq!(verdicts, [XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP]);
    let before = filter.counts();
    let monlist = ntp4(addr::ATTACKER_V4, 7);
    let symmetric = ntp4(addr::ATTACKER_V4, 1);
    assert_eq!(filter.ingress(&monlist.bytes), XDP_DROP);
    assert_eq!(filter.ingress(&symmetric.bytes), XDP_PASS);
    let after = filter.counts();
    assert_eq!(moved(&before, &after, Reason::DropNtpControl), 1);
    assert_eq!(moved(&before, &after, Reason::DropNtpQuerySource), 0);
    assert_eq!(moved(&before, &after, Reason::PassNtpQuery), 0);

    // A service port moved to 1123: its client requests are limited there.
    filter.set(&[("ntp_service_ports", "1123")]);
    let mut payload = [0u8; 48];
    payload[0] = 4 << 3 | 3;
    let moved_port = PacketBuilder::ipv4(v4(198, 51, 100, 9), addr::CLIENT_V4)
        .udp(40123, 1123)
        .payload(&payload)
        .build();
    let verdicts: Vec<u32> = (0..3).map(|_| filter.ingress(&moved_port.bytes)).collect();
    assert_eq!(verdicts, [XDP_PASS, XDP_PASS, XDP_DROP]);
}

#[test]
fn monitor_mode_counts_would_tx_and_passes_the_query_untouched() {
    let mut filter = slip_everything();
    filter.set(&[("monitor", "on")]);
    let query = dns4(addr::ATTACKER_V4, &query_message(1, "a.", true)).build();
    filter.ingress(&query.bytes);
    let before = filter.counts();
    let (verdict, out) = filter.ingress_output(&query.bytes);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, query.bytes, "untouched");
    filter.assert_would_drop(
        &before,
        &[(Reason::TxDnsTruncated, 1, len(&query))],
        "would_tx",
    );
}

#[test]
fn rejected_settings_change_nothing() {
    let mut filter = Filter::load();
    let before = filter.config();
    for assignment in [
        ("dns_slip", "11"),
        ("query_prefix_v4", "7"),
        ("query_prefix_v6", "65"),
        ("dns_query_source_rate", "2000000/s"),
        ("dns_query_source_burst", "0"),
        ("dns_query_name_rate", "0/s"),
        ("dns_query_name_burst", "2000000"),
        ("ntp_service_ports", "53"),
    ] {
        assert!(
            filter.try_set(&[assignment]).is_err(),
            "{assignment:?} accepted"
        );
    }
    // A valid change with a rejected one: neither applies.
    assert!(
        filter
            .try_set(&[("dns_slip", "3"), ("query_prefix_v4", "40")])
            .is_err()
    );
    assert_eq!(filter.config(), before);
    filter.set(&[("dns_slip", "3"), ("query_prefix_v4", "20")]);
    assert_eq!(filter.config().dns_slip, 3);
    assert_eq!(filter.config().query_prefix_v4, 20);
}
