//! The model's own tests, without the kernel: rules where docs/rules.md is
//! precise enough to state an expectation by hand. The model check compares
//! the rest with the real programs.

use std::net::{Ipv4Addr, Ipv6Addr};

use filter_common::Reason;
use harness::packet::{ExtHeader, PacketBuilder, addr, dns_message};

use crate::{
    Model, Settings,
    lists::{List, Lists, Prefix},
    parse::{self, Family, Fragment, Link, Parsed, Upper},
    settings::MS,
    solicited::{Key, Recorded, Solicited, Token},
};

const NOW: u64 = 1_000_000 * MS;

fn model() -> Model {
    Model::new(Settings::default(), 0x1234)
}

#[test]
fn encapsulations_are_walked_up_to_two_tags() {
    let udp = |builder: PacketBuilder| builder.udp(40000, 80).payload(b"x").build();
    let v6 = || PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6);
    for frame in [
        udp(v6().qinq(1, 2).pppoe(7)),
        udp(v6().vlan(3).pppoe(7)),
        udp(v6().pppoe(7)),
    ] {
        assert!(
            matches!(parse::parse(Link::Ethernet, &frame), Parsed::Ip(ip) if ip.family == Family::V6)
        );
    }
    let three = udp(v6().qinq(1, 2).vlan(3));
    assert!(matches!(
        parse::parse(Link::Ethernet, &three),
        Parsed::NotIp
    ));
    let mut model = model();
    assert_eq!(model.ingress(&three, NOW).reason, Reason::PassNotIp);
    // Cut inside the second tag: malformed, not "not IP".
    let qinq = udp(v6().qinq(1, 2));
    assert!(matches!(
        parse::parse(Link::Ethernet, &qinq[..20]),
        Parsed::Malformed
    ));
}

#[test]
fn fragments_are_keyed_by_the_header_after_the_fragmentation() {
    let first = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ext(ExtHeader::Fragment {
            offset: 0,
            more: true,
            id: 9,
        })
        .ext(ExtHeader::DestinationOptions(vec![]))
        .udp(53, 40000)
        .payload(&dns_message(1, true, 40))
        .build();
    let Parsed::Ip(ip) = parse::parse(Link::Ethernet, &first) else {
        panic!("an IPv6 packet");
    };
    let Fragment::First(id) = ip.fragment else {
        panic!("a first fragment");
    };
    assert_eq!(
        (id.id, id.protocol),
        (9, 60),
        "the fragment header's next header"
    );
    assert!(matches!(ip.upper, Upper::At { protocol: 17, .. }));

    // Seven extension headers after it: the chain is not walked, the
    // datagram is still known.
    let long = (0..7)
        .fold(
            PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6).ext(ExtHeader::Fragment {
                offset: 0,
                more: true,
                id: 9,
            }),
            |b, _| b.ext(ExtHeader::DestinationOptions(vec![])),
        )
        .udp(53, 40000)
        .build();
    let Parsed::Ip(ip) = parse::parse(Link::Ethernet, &long) else {
        panic!("a first fragment is an IP packet even unwalked");
    };
    assert_eq!(ip.upper, Upper::Unparsed);
    assert_eq!(model().ingress(&long, NOW).reason, Reason::PassMalformed);
}

#[test]
fn a_datagram_ends_at_its_udp_length() {
    let mut frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(&[0x12, 0x34])
        .build()
        .bytes;
    frame.resize(60, 0x80);
    assert_eq!(model().ingress(&frame, NOW).reason, Reason::PassMalformed);
}

#[test]
fn a_full_bucket_evicts_the_entry_closest_to_expiry() {
    let key = |id| Key {
        family: Family::V4,
        local: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        remote: [198, 51, 100, 53, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        local_port: 40000,
        remote_port: 53,
        token: Token::Dns(id),
    };
    let bucket = key(0).bucket();
    let ids: Vec<u16> = (0..=u16::MAX)
        .filter(|&id| key(id).bucket() == bucket)
        .take(5)
        .collect();
    let mut table = Solicited::default();
    for (i, &id) in ids[..4].iter().enumerate() {
        // The first is recorded last-but-soonest: lifetimes 10 s apart.
        let lifetime = (4 - i as u64) * 10_000 * MS;
        assert_eq!(table.record(key(id), NOW, lifetime), Recorded::Stored);
    }
    assert_eq!(
        table.record(key(ids[4]), NOW, 50_000 * MS),
        Recorded::Evicted
    );
    assert!(
        !table.consume(&key(ids[3]), NOW),
        "the soonest to expire went"
    );
    for &id in [ids[0], ids[1], ids[2], ids[4]].iter() {
        assert!(table.consume(&key(id), NOW), "{id}");
    }
}

#[test]
fn expired_list_entries_are_looked_past_four_times_at_most() {
    let src: [u8; 16] = {
        let mut a = [0; 16];
        a[..4].copy_from_slice(&Ipv4Addr::new(198, 18, 7, 9).octets());
        a
    };
    let prefix = |len| Prefix::new(Family::V4, src, len);
    let mut lists = Lists::default();
    lists.add(List::Deny, prefix(8), 0);
    for len in [32, 24, 16] {
        lists.add(List::Deny, prefix(len), NOW - 1);
    }
    assert!(
        lists.matches(List::Deny, Family::V4, &src, NOW),
        "the 4th lookup finds /8"
    );
    lists.add(List::Deny, prefix(12), NOW - 1);
    assert!(
        !lists.matches(List::Deny, Family::V4, &src, NOW),
        "four expired entries hide the /8"
    );
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets();
    assert!(!lists.matches(List::Deny, Family::V6, &v6, NOW));
}

/// A TCP segment between the test client (remote) and server (ours).
fn segment(inbound: bool, client_port: u16, port: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let builder = if inbound {
        PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4).tcp(client_port, port, flags)
    } else {
        PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4).tcp(port, client_port, flags)
    };
    builder.tcp_seq_ack(seq, ack).build().bytes
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

/// docs/tcp-connections.md: 16 units per source by default; a completed
/// handshake gives one back, a wrong acknowledgement number does not.
#[test]
fn a_half_open_budget_runs_out_and_a_completion_gives_a_unit_back() {
    let mut model = model();
    for port in 1000..1016 {
        let syn = segment(true, port, 80, SYN, 1, 0);
        assert_eq!(model.ingress(&syn, NOW).reason, Reason::PassSyn, "{port}");
    }
    let over = segment(true, 2000, 80, SYN, 1, 0);
    assert_eq!(model.ingress(&over, NOW).reason, Reason::DropSynHalfopen);
    let synack = segment(false, 1000, 80, SYN | ACK, 700, 2);
    assert_eq!(model.egress(&synack, NOW), Reason::EgressHandshakeRecorded);
    let wrong = segment(true, 1000, 80, ACK, 2, 700);
    assert_eq!(model.ingress(&wrong, NOW).reason, Reason::PassIpv4);
    assert_eq!(model.ingress(&over, NOW).reason, Reason::DropSynHalfopen);
    let right = segment(true, 1000, 80, ACK, 2, 701);
    assert_eq!(model.ingress(&right, NOW).reason, Reason::PassHandshake);
    assert_eq!(model.ingress(&right, NOW).reason, Reason::PassIpv4, "once");
    assert_eq!(model.ingress(&over, NOW).reason, Reason::PassSyn);
}

/// `conn_limit=25:1`: a completed connection holds the one place until its
/// FIN, or until it has been idle for two timeouts.
#[test]
fn a_connection_counts_until_its_fin_or_idleness() {
    let mut settings = Settings::default();
    settings.tcp.conn_limits = [(25, 1)].into();
    settings.tcp.conn_idle_timeout_ms = 1000;
    let mut model = Model::new(settings, 0x1234);
    let open = |model: &mut Model, port: u16, now: u64| {
        let syn = segment(true, port, 25, SYN, 1, 0);
        assert_eq!(model.ingress(&syn, now).reason, Reason::PassSyn);
        let synack = segment(false, port, 25, SYN | ACK, 700, 2);
        assert_eq!(model.egress(&synack, now), Reason::EgressHandshakeRecorded);
        let ack = segment(true, port, 25, ACK, 2, 701);
        assert_eq!(model.ingress(&ack, now).reason, Reason::PassHandshake);
    };
    open(&mut model, 1000, NOW);
    let next = segment(true, 1001, 25, SYN, 1, 0);
    assert_eq!(model.ingress(&next, NOW).reason, Reason::DropConnLimit);
    let fin = segment(true, 1000, 25, FIN | ACK, 2, 701);
    assert_eq!(model.ingress(&fin, NOW).reason, Reason::PassConnClosed);
    open(&mut model, 1001, NOW);
    let later = NOW + 1000 * MS;
    assert_eq!(model.ingress(&next, later).reason, Reason::DropConnLimit);
    let idle = NOW + 2000 * MS;
    let third = segment(true, 1002, 25, SYN, 1, 0);
    assert_eq!(model.ingress(&third, idle).reason, Reason::PassSyn);
}

/// docs/query-limits.md: a DNS query for `a.` (maybe with an OPT record).
fn dns_query(flaw: crate::generate::app::Flaw, edns: bool) -> Vec<u8> {
    use crate::generate::app::{DnsQuery, Edns};
    DnsQuery {
        id: 7,
        flags: 0x0100,
        labels: vec![1],
        upper: 0,
        qtype: 16,
        edns: edns.then_some(Edns {
            version: 0,
            dnssec_ok: true,
            options: 12,
        }),
        flaw,
    }
    .bytes()
}

/// The defaults with only the DNS source level on (`rate`/s, `burst`),
/// slip `slip`, no cap on slips.
fn query_model(rate: u32, burst: u32, slip: u8) -> Model {
    let mut settings = Settings::default();
    settings.query.dns_name.rate = None;
    let dns = &mut settings.query.dns;
    dns.source = crate::settings::Level {
        rate: Some(rate),
        burst,
    };
    dns.prefix.rate = None;
    dns.global.rate = None;
    settings.query.dns_slip = slip;
    settings.query.dns_slip_rate = None;
    Model::new(settings, 0x1234)
}

fn to_dns(src: Ipv4Addr, message: &[u8]) -> Vec<u8> {
    PacketBuilder::ipv4(src, addr::CLIENT_V4)
        .udp(40000, 53)
        .payload(message)
        .build()
        .bytes
}

#[test]
fn dns_queries_get_their_burst_then_are_dropped_or_slipped() {
    use crate::{Action, generate::app::Flaw};
    let query = to_dns(addr::ATTACKER_V4, &dns_query(Flaw::None, true));
    let mut model = query_model(10, 5, 0);
    let reasons: Vec<Reason> = (0..7).map(|_| model.ingress(&query, NOW).reason).collect();
    assert_eq!(
        reasons,
        [
            [Reason::PassDnsQuery; 5].as_slice(),
            &[Reason::DropDnsQuerySource; 2]
        ]
        .concat()
    );
    // 100 ms later at 10/s: one more.
    assert_eq!(
        model.ingress(&query, NOW + 100 * MS).reason,
        Reason::PassDnsQuery
    );

    let mut model = query_model(10, 1, 1);
    model.ingress(&query, NOW);
    let slipped = model.ingress(&query, NOW);
    assert_eq!(
        (slipped.reason, slipped.action),
        (Reason::TxDnsTruncated, Action::Tx)
    );
    // No reply for a compression pointer, two questions, IPv4 options.
    for message in [
        dns_query(Flaw::Pointer, false),
        dns_query(Flaw::Counts(2, 0, 0, 0), false),
    ] {
        let frame = to_dns(addr::ATTACKER_V4, &message);
        assert_eq!(
            model.ingress(&frame, NOW).reason,
            Reason::DropDnsQuerySource
        );
    }
    let options = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .ipv4_options(&[1, 1, 1, 0])
        .udp(40000, 53)
        .payload(&dns_query(Flaw::None, false))
        .build()
        .bytes;
    assert_eq!(
        model.ingress(&options, NOW).reason,
        Reason::DropDnsQuerySource
    );
    // Short: passes whatever the limits; a response is no request.
    let short = to_dns(addr::ATTACKER_V4, &[0x12, 0x34, 1, 0]);
    assert_eq!(model.ingress(&short, NOW).reason, Reason::PassMalformed);
    let response = to_dns(addr::ATTACKER_V4, &dns_query(Flaw::Response, false));
    assert_eq!(model.ingress(&response, NOW).reason, Reason::PassIpv4);
    // Monitor mode walks the question too: no reply for a pointer, a
    // reply for a well-formed query.
    let mut settings = model.settings().clone();
    settings.monitor = true;
    model.set(settings);
    let pointer = to_dns(addr::ATTACKER_V4, &dns_query(Flaw::Pointer, false));
    let verdict = model.ingress(&pointer, NOW);
    assert_eq!(
        (verdict.reason, verdict.action, verdict.would),
        (Reason::DropDnsQuerySource, Action::Pass, true)
    );
    let verdict = model.ingress(&query, NOW);
    assert_eq!(
        (verdict.reason, verdict.action, verdict.would),
        (Reason::TxDnsTruncated, Action::Pass, true)
    );
}

/// The name level (issue 27): one bucket per /24, name (any case) and
/// type. Every address of a /24 asking one name shares it; other names,
/// other types and other /24s have their own; the catch-alls (per source,
/// per prefix) are not spent by a query the name level refuses.
#[test]
fn the_name_level_is_per_prefix_name_and_type() {
    use crate::generate::app::{DnsQuery, Flaw};
    let question = |labels: Vec<u8>, qtype: u16, upper: bool| {
        DnsQuery {
            id: 9,
            flags: 0x0100,
            labels,
            upper: if upper { 0xff } else { 0 },
            qtype,
            edns: None,
            flaw: Flaw::None,
        }
        .bytes()
    };
    let mut settings = Settings::default();
    settings.query.dns_name = crate::settings::Level {
        rate: Some(1),
        burst: 3,
    };
    settings.query.dns_slip = 0;
    let mut model = Model::new(settings, 0x1234);
    let txt = question(vec![3, 7], 16, false);
    let from = |host: u8| Ipv4Addr::new(198, 51, 100, host);
    // Three hosts of one /24, one name: the burst of 3, then refused.
    let reasons: Vec<Reason> = (1..=5)
        .map(|host| model.ingress(&to_dns(from(host), &txt), NOW).reason)
        .collect();
    assert_eq!(
        reasons,
        [
            [Reason::PassDnsQuery; 3].as_slice(),
            &[Reason::DropDnsQueryName; 2]
        ]
        .concat()
    );
    // The same name in upper case: the same bucket.
    let upper = question(vec![3, 7], 16, true);
    assert_eq!(
        model.ingress(&to_dns(from(9), &upper), NOW).reason,
        Reason::DropDnsQueryName
    );
    // Another type, another name, another /24: buckets of their own.
    for (src, message) in [
        (from(1), question(vec![3, 7], 1, false)),
        (from(1), question(vec![4, 7], 16, false)),
        (Ipv4Addr::new(198, 51, 101, 1), txt.clone()),
    ] {
        assert_eq!(
            model.ingress(&to_dns(src, &message), NOW).reason,
            Reason::PassDnsQuery
        );
    }
    // Queries without a readable question share one bucket of the prefix.
    let pointer = dns_query(Flaw::Pointer, false);
    let none = dns_query(Flaw::Counts(0, 0, 0, 0), false);
    let reasons: Vec<Reason> = [&pointer, &none, &pointer, &none]
        .iter()
        .map(|message| model.ingress(&to_dns(from(2), message), NOW).reason)
        .collect();
    assert_eq!(
        reasons,
        [
            [Reason::PassDnsQuery; 3].as_slice(),
            &[Reason::DropDnsQueryName]
        ]
        .concat()
    );
    // 30 different names from one host: the name level never refuses, the
    // source catch-all (burst 100 by default) neither.
    let reasons: Vec<Reason> = (1..=30u8)
        .map(|n| {
            let message = question(vec![n, 3], 1, false);
            model.ingress(&to_dns(from(3), &message), NOW).reason
        })
        .collect();
    assert_eq!(reasons, [Reason::PassDnsQuery; 30]);
}

#[test]
fn the_slip_is_drawn_and_capped() {
    use crate::{Action, generate::app::Flaw};
    let query = to_dns(addr::ATTACKER_V4, &dns_query(Flaw::None, false));
    let pointer = to_dns(addr::ATTACKER_V4, &dns_query(Flaw::Pointer, false));
    let mut model = query_model(1, 1, 2);
    model.ingress(&query, NOW);
    // 1 in 2: either, each with its state.
    let outcomes = model.ingress_outcomes(&query, NOW);
    let actions: Vec<Action> = outcomes.iter().map(|(_, v)| v.action).collect();
    assert_eq!(actions, [Action::Tx, Action::Drop]);
    // Without a cap a drawn query that gets no reply leaves nothing behind.
    assert_eq!(model.ingress_outcomes(&pointer, NOW).len(), 1);
    // With one, a chosen query spends a token even if it gets no reply.
    let mut settings = model.settings().clone();
    settings.query.dns_slip_rate = Some(2);
    model.set(settings.clone());
    assert_eq!(model.ingress_outcomes(&pointer, NOW).len(), 2);

    // Slip 1, cap 2/s: two replies, then drops under the level's reason.
    settings.query.dns_slip = 1;
    model.set(settings);
    let reasons: Vec<Reason> = (0..4).map(|_| model.ingress(&query, NOW).reason).collect();
    assert_eq!(
        reasons,
        [
            Reason::TxDnsTruncated,
            Reason::TxDnsTruncated,
            Reason::DropDnsQuerySource,
            Reason::DropDnsQuerySource
        ]
    );
    assert_eq!(
        model.ingress(&query, NOW + 500 * MS).reason,
        Reason::TxDnsTruncated,
        "refilled at 2/s"
    );
}

#[test]
fn an_ipv6_source_is_its_64_and_ntp_requests_are_limited() {
    use crate::generate::app::Flaw;
    let message = dns_query(Flaw::None, false);
    let mut model = query_model(1, 3, 0);
    let reasons: Vec<Reason> = (1..=5u16)
        .map(|host| {
            let src = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, host);
            let frame = PacketBuilder::ipv6(src, addr::CLIENT_V6)
                .udp(40000, 53)
                .payload(&message)
                .build()
                .bytes;
            model.ingress(&frame, NOW).reason
        })
        .collect();
    assert_eq!(
        reasons,
        [
            [Reason::PassDnsQuery; 3].as_slice(),
            &[Reason::DropDnsQuerySource; 2]
        ]
        .concat()
    );

    // NTP: 1/s burst 8 by default; mode 7 to a moved service port is control.
    let mut settings = Settings::default();
    settings.query.ntp_service_ports = [1123].into();
    let mut model = Model::new(settings, 0x1234);
    let ntp = |mode: u8| {
        let mut payload = [0u8; 48];
        payload[0] = 4 << 3 | mode;
        PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
            .udp(40123, 1123)
            .payload(&payload)
            .build()
            .bytes
    };
    let reasons: Vec<Reason> = (0..9).map(|_| model.ingress(&ntp(3), NOW).reason).collect();
    assert_eq!(
        reasons,
        [
            [Reason::PassNtpQuery; 8].as_slice(),
            &[Reason::DropNtpQuerySource]
        ]
        .concat()
    );
    assert_eq!(model.ingress(&ntp(7), NOW).reason, Reason::DropNtpControl);
    assert_eq!(model.ingress(&ntp(1), NOW).reason, Reason::PassIpv4);
}

/// The link of a regression case (its text) and the reasons the model
/// gives its inbound frames, in order.
fn replayed(text: &str) -> (Link, Vec<Reason>) {
    use crate::sequence::{Sequence, Step};
    let sequence = Sequence::from_text(text).expect("the regression case parses");
    let mut model = Model::on(sequence.link, sequence.settings.clone(), 0x1234);
    let reasons = sequence
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Ingress(frame) => Some(model.ingress(frame, NOW).reason),
            _ => None,
        })
        .collect();
    (sequence.link, reasons)
}

#[test]
fn the_hand_written_slip_cap_case_says_what_its_comment_says() {
    let (_, reasons) = replayed(include_str!(
        "../../regressions/slip-cap-spent-by-a-chosen-query.txt"
    ));
    assert_eq!(
        reasons,
        [
            Reason::PassDnsQuery,
            Reason::DropDnsQuerySource,
            Reason::TxDnsTruncated,
            Reason::DropDnsQuerySource
        ]
    );
}

/// An unsolicited DNS answer from `addr::SERVER_V4` inside IPv6 (4in6).
fn answer_in_ipv6(limit: bool) -> PacketBuilder {
    let builder = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(&dns_message(7, true, 40))
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6);
    if limit {
        builder.encap_limit(harness::packet::DEFAULT_ENCAP_LIMIT)
    } else {
        builder
    }
}

#[test]
fn a_tunnelled_packet_meets_the_rules_as_the_packet_inside() {
    let mut model = model();
    for limit in [false, true] {
        let answer = answer_in_ipv6(limit).build();
        assert_eq!(
            model.ingress(&answer, NOW).reason,
            Reason::DropUnsolicitedDns
        );
    }
    let six_in_four = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .udp(53, 40000)
        .payload(&dns_message(7, true, 40))
        .in_ipv4(addr::RELAY_V4, addr::CLIENT_V4)
        .build();
    assert_eq!(
        model.ingress(&six_in_four, NOW).reason,
        Reason::DropUnsolicitedDns
    );
    // The query recorded from inside the tunnel lets the answer through.
    let query = PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4)
        .udp(40000, 53)
        .payload(&dns_message(7, false, 20))
        .in_ipv6(addr::CLIENT_V6, addr::RELAY_V6)
        .build();
    assert_eq!(model.egress(&query, NOW), Reason::EgressQueryRecorded);
    assert_eq!(
        model.ingress(&answer_in_ipv6(true).build(), NOW).reason,
        Reason::PassSolicited
    );
    // One level only: the same answer two deep passes; IPIP is not unwrapped.
    let nested = PacketBuilder::ipv4(addr::RELAY_V4, addr::CLIENT_V4)
        .protocol(41)
        .payload(&six_in_four.ip_only()[..])
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
        .build();
    assert_eq!(model.ingress(&nested, NOW).reason, Reason::PassIpv4);
    let ipip = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(&dns_message(7, true, 40))
        .in_ipv4(addr::RELAY_V4, addr::CLIENT_V4)
        .build();
    assert_eq!(model.ingress(&ipip, NOW).reason, Reason::PassIpv4);
}

#[test]
fn the_generator_sends_every_kind_of_tunnel() {
    use proptest::{
        strategy::{Strategy as _, ValueTree as _},
        test_runner::TestRunner,
    };

    let mut runner = TestRunner::deterministic();
    let strategy = crate::generate::case(false);
    // Ingress frames: 4in6, 6in4, the outer datagram's first and later
    // fragments, a tunnel inside the tunnel, IPv4 in IPv4 / IPv6 in IPv6;
    // on Ethernet and without link headers.
    let mut seen = [[0u32; 6]; 2];
    for _ in 0..60 {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        for (link, seen) in Link::ALL.into_iter().zip(&mut seen) {
            count_tunnels(link, &case.sequence_on(link, 0).steps, seen);
        }
    }
    assert!(
        seen.iter().flatten().all(|&n| n > 0),
        "frames of each kind (Ethernet, IP link): {seen:?}"
    );
}

/// Counts `steps`' ingress frames (on `link`) by the kinds of
/// [`the_generator_sends_every_kind_of_tunnel`].
fn count_tunnels(link: Link, steps: &[crate::sequence::Step], seen: &mut [u32; 6]) {
    use crate::{parse::Ip, sequence::Step};
    for step in steps {
        let Step::Ingress(frame) = step else { continue };
        let Parsed::Ip(ip) = parse::parse(link, frame) else {
            continue;
        };
        let inner_carries = |ip: &Ip<'_>| match ip.inner() {
            Parsed::Ip(inner) => {
                matches!(inner.upper(), Some((4 | 41, _)))
            }
            _ => false,
        };
        let same = matches!(
            (ip.family, ip.upper()),
            (Family::V4, Some((4, _))) | (Family::V6, Some((41, _)))
        );
        let kind = match ip.fragment {
            _ if same => 5,
            _ if !ip.carries_tunnel() => continue,
            Fragment::First(_) => 2,
            Fragment::Later(_) => 3,
            Fragment::Whole if inner_carries(&ip) => 4,
            Fragment::Whole if ip.family == Family::V6 => 0,
            Fragment::Whole => 1,
        };
        seen[kind] += 1;
    }
}

#[test]
fn the_outer_datagrams_later_fragments_follow_its_first() {
    let mut model = model();
    let first = answer_in_ipv6(true).outer_fragment(5, true, 0).build();
    assert_eq!(
        model.ingress(&first, NOW).reason,
        Reason::DropUnsolicitedDns
    );
    let later = answer_in_ipv6(true).outer_fragment(5, false, 100).build();
    assert_eq!(model.ingress(&later, NOW).reason, Reason::DropFragment);
    // Cut inside the inner header: malformed, and so the rest passes.
    let first = answer_in_ipv6(false).outer_fragment(6, true, 0).build();
    let cut = first.truncated(first.l3 + 10);
    assert_eq!(model.ingress(&cut, NOW).reason, Reason::PassMalformed);
    let later = answer_in_ipv6(false).outer_fragment(6, false, 100).build();
    assert_eq!(model.ingress(&later, NOW).reason, Reason::PassFragment);
    // Denied relays are no one's business: the lists see the inner source.
    model.list_add(
        List::Deny,
        Prefix::new(Family::V6, addr::RELAY_V6.octets(), 128),
        0,
    );
    let first = answer_in_ipv6(false).outer_fragment(8, true, 0).build();
    assert_eq!(
        model.ingress(&first, NOW).reason,
        Reason::DropUnsolicitedDns
    );
}

#[test]
fn a_dns_query_over_a_tunnel_gets_no_slip() {
    let query = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .udp(40000, 53)
        .payload(&dns_query(crate::generate::app::Flaw::None, false))
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
        .build();
    let mut model = query_model(10, 1, 1);
    assert_eq!(model.ingress(&query, NOW).reason, Reason::PassDnsQuery);
    assert_eq!(
        model.ingress(&query, NOW).reason,
        Reason::DropDnsQuerySource
    );
}

/// A model of the filter loaded for a device without an Ethernet header.
fn ip_link_model(settings: Settings) -> Model {
    Model::on(Link::Ip, settings, 0x1234)
}

#[test]
fn on_an_ip_link_frames_start_at_the_ip_header() {
    let answer4 = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(&dns_message(7, true, 40));
    let answer6 = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .udp(53, 40000)
        .payload(&dns_message(7, true, 40));
    let mut model = ip_link_model(Settings::default());
    for (builder, family) in [(answer4.clone(), Family::V4), (answer6, Family::V6)] {
        // No VLAN or PPPoE parse: whatever the Ethernet frame had, the
        // device hands over the IP packet.
        let frame = builder.qinq(1, 2).pppoe(7).build().ip_only();
        let Parsed::Ip(ip) = parse::parse(Link::Ip, &frame) else {
            panic!("an IP packet");
        };
        assert_eq!((ip.family, ip.link), (family, Link::Ip));
        assert!(ip.bare(), "the IP header at 0");
        assert_eq!(
            model.ingress(&frame, NOW).reason,
            Reason::DropUnsolicitedDns
        );
    }
    // An Ethernet frame on such a device starts with a MAC address: its
    // first nibble (0) is no IP version. Versions other than 4 and 6 are
    // not IP; a 6 in front of an IPv4 packet is an IPv6 header cut short.
    let ethernet = answer4.clone().build();
    assert!(matches!(parse::parse(Link::Ip, &ethernet), Parsed::NotIp));
    let mut packet = answer4.clone().build().ip_only().bytes;
    for (version, expected) in [
        (5, Reason::PassNotIp),
        (0, Reason::PassNotIp),
        (15, Reason::PassNotIp),
        (6, Reason::PassMalformed),
    ] {
        packet[0] = (packet[0] & 0x0f) | version << 4;
        let short = &packet[..39];
        assert_eq!(model.ingress(short, NOW).reason, expected, "{version}");
    }
    // Cut inside the IP header; empty.
    let cut = answer4.build().ip_only();
    assert_eq!(model.ingress(&cut[..19], NOW).reason, Reason::PassMalformed);
    assert!(matches!(parse::parse(Link::Ip, &[]), Parsed::Malformed));
    // Egress reads from the IP header too: the recorded query lets its
    // answer through.
    let query = PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4)
        .udp(40000, 53)
        .payload(&dns_message(9, false, 20))
        .build()
        .ip_only();
    assert_eq!(model.egress(&query, NOW), Reason::EgressQueryRecorded);
    let answer = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(&dns_message(9, true, 40))
        .build()
        .ip_only();
    assert_eq!(model.ingress(&answer, NOW).reason, Reason::PassSolicited);
}

#[test]
fn on_an_ip_link_tunnels_are_unwrapped_and_counted() {
    let mut model = ip_link_model(Settings::default());
    let first = answer_in_ipv6(true)
        .outer_fragment(5, true, 0)
        .build()
        .ip_only();
    let verdict = model.ingress(&first, NOW);
    assert_eq!(
        (verdict.reason, verdict.tunnel),
        (
            Reason::DropUnsolicitedDns,
            Some(filter_common::Encap::of_outer(true))
        )
    );
    let later = answer_in_ipv6(true)
        .outer_fragment(5, false, 100)
        .build()
        .ip_only();
    assert_eq!(model.ingress(&later, NOW).reason, Reason::DropFragment);
}

#[test]
fn on_an_ip_link_a_query_over_its_limit_gets_no_slip() {
    use crate::{Action, generate::app::Flaw};
    let query = to_dns(addr::ATTACKER_V4, &dns_query(Flaw::None, true));
    let bare = |frame: &[u8]| ip_packet(frame);
    // Slip 1 in 1, no cap: the Ethernet device answers the second query,
    // the IP device drops it under its level's reason.
    let settings = query_model(10, 1, 1).settings().clone();
    let mut ethernet = Model::new(settings.clone(), 0x1234);
    let mut ip = ip_link_model(settings.clone());
    let reasons = |model: &mut Model, frame: &[u8]| -> Vec<Reason> {
        (0..2).map(|_| model.ingress(frame, NOW).reason).collect()
    };
    assert_eq!(
        reasons(&mut ethernet, &query),
        [Reason::PassDnsQuery, Reason::TxDnsTruncated]
    );
    assert_eq!(
        reasons(&mut ip, &bare(&query)),
        [Reason::PassDnsQuery, Reason::DropDnsQuerySource]
    );
    // 1 in 2 with a cap: nothing is drawn, no cap token spent (one
    // outcome, and the cap's state as before).
    let mut capped = settings.clone();
    capped.query.dns_slip = 2;
    capped.query.dns_slip_rate = Some(1);
    ip.set(capped.clone());
    let before = ip.state().clone();
    let outcomes = ip.ingress_outcomes(&bare(&query), NOW);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].1.reason, Reason::DropDnsQuerySource);
    assert_eq!(outcomes[0].0.state().queries, before.queries);
    ethernet.set(capped);
    assert_eq!(ethernet.ingress_outcomes(&query, NOW).len(), 2);
    // Monitor mode: a would-drop, never a would-send.
    let mut monitor = settings;
    monitor.monitor = true;
    ip.set(monitor);
    let verdict = ip.ingress(&bare(&query), NOW);
    assert_eq!(
        (verdict.reason, verdict.action, verdict.would),
        (Reason::DropDnsQuerySource, Action::Pass, true)
    );
}

/// The IP packet of a plain Ethernet frame (no tags).
fn ip_packet(frame: &[u8]) -> Vec<u8> {
    frame[harness::packet::ETH_HLEN..].to_vec()
}

#[test]
fn the_ip_link_frames_are_the_ethernet_frames_packets() {
    use proptest::{
        strategy::{Strategy as _, ValueTree as _},
        test_runner::TestRunner,
    };

    use crate::sequence::Step;
    let mut runner = TestRunner::deterministic();
    let strategy = crate::generate::case(false);
    let mut compared = 0;
    for _ in 0..60 {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        let ethernet = case.sequence_on(Link::Ethernet, 0);
        let ip = case.sequence_on(Link::Ip, 0);
        assert_eq!((ethernet.link, ip.link), (Link::Ethernet, Link::Ip));
        assert_eq!(ethernet.steps.len(), ip.steps.len());
        for (on_ethernet, on_ip) in ethernet.steps.iter().zip(&ip.steps) {
            let (
                Step::Ingress(frame) | Step::Egress(frame),
                Step::Ingress(packet) | Step::Egress(packet),
            ) = (on_ethernet, on_ip)
            else {
                assert_eq!(on_ethernet, on_ip);
                continue;
            };
            // Where Ethernet finds an IP packet, the IP device gets the
            // same one: the frame's end from its IP header on.
            let Parsed::Ip(outer) = parse::parse(Link::Ethernet, frame) else {
                continue;
            };
            let Parsed::Ip(bare) = parse::parse(Link::Ip, packet) else {
                panic!("an IP packet on Ethernet, not on the IP link");
            };
            assert!(frame.ends_with(packet) && frame.len() > packet.len());
            assert_eq!(
                (outer.family, outer.src, outer.dst, outer.fragment),
                (bare.family, bare.src, bare.dst, bare.fragment)
            );
            compared += 1;
        }
    }
    assert!(compared > 1000, "{compared} frames compared");
}

#[test]
fn the_hand_written_ip_link_case_says_what_its_comment_says() {
    let (link, reasons) = replayed(include_str!(
        "../../regressions/ip-link-query-over-its-limit-gets-no-slip.txt"
    ));
    assert_eq!(link, Link::Ip);
    assert_eq!(
        reasons,
        [
            Reason::PassDnsQuery,
            Reason::DropDnsQuerySource,
            Reason::DropDnsQuerySource,
            Reason::DropDnsQuerySource,
            Reason::PassNotIp,
        ]
    );
}
