//! End-to-end proofs of reasons no other end-to-end test counts: real
//! frames cross the lab's links into the filter on the gateway's `wan0`,
//! and each reason's counter must equal what was sent or what nftables
//! counted at the gateway's stack, independently of the filter
//! (`Stats::assert_shown`; tests/tests/coverage.rs requires one for every
//! reason real traffic reaches). Settings make each reason cheap to reach:
//! small budgets and rates, a connection limit on a port of the test's own.
//!
//! Every count is read after the lab's marker (`FilterLab::snapshot`): what
//! did not reach the stack by then was dropped, not late.
//!
//! Needs root; every test builds its own lab (unique names) and removes it
//! however it ends. Spoofed sources come from the lab's spoofed ranges
//! (`addr::SPOOFED4`), counted at the stack as `spoofed4`.

use std::{
    io::Read as _,
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use filter_common::Reason;
use harness::{
    ctl::Stats,
    fixture::FilterLab,
    lab::{LAN_IF, StackCounters, Topology, WAN_IF, addr},
    netns::Netns,
    packet::PacketBuilder,
    process,
    servers::local::UdpServer,
    traffic::{sender::RawSender, sources::Prefix, syn::SynFlood},
};

/// A closed port of the gateway: passed SYNs get an RST, no handshake.
const CLOSED: u16 = 9;
/// The port of the connection-limit test's server.
const LIMITED: u16 = 2525;

/// The lab with one WAN host (the spoofing sender), the filter attached.
fn lab() -> FilterLab {
    let mut lab = FilterLab::build();
    lab.topo.add_wan_host().expect("adding a WAN host");
    lab.attach(None);
    lab
}

fn host(lab: &FilterLab) -> &Netns {
    &lab.topo.wan_hosts[0]
}

/// The counters of an nftables table of the gateway.
fn counters(ns: &Netns, family: &str, table: &str) -> StackCounters {
    StackCounters::parse(
        &ns.run(["nft", "list", "counters", "table", family, table])
            .unwrap(),
    )
    .unwrap()
}

/// A DNS query for `example.test` (QR clear), id `id`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut query = Vec::new();
    query.extend(id.to_be_bytes());
    query.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    query.extend(b"\x07example\x04test\x00");
    query.extend([0, 1, 0, 1]);
    query
}

/// A 48-byte NTP packet of `mode`, with `timestamp` as its origin (24..32)
/// and transmit (40..48) timestamps.
fn ntp(mode: u8, timestamp: u64) -> Vec<u8> {
    let mut packet = vec![0; 48];
    packet[0] = (4 << 3) | mode;
    packet[24..32].copy_from_slice(&timestamp.to_be_bytes());
    packet[40..48].copy_from_slice(&timestamp.to_be_bytes());
    packet
}

/// DNS queries and NTP client requests (mode 3) from the internet to
/// servers on the gateway, within their limits: each passes, counted as
/// `pass_dns_query` or `pass_ntp_query`, exactly as many as reached the
/// stack at those ports (and as the servers received).
#[test]
fn dns_and_ntp_requests_within_their_limits_pass() {
    let lab = lab();
    lab.set(&["dns_query_source_burst=100", "ntp_query_source_burst=100"]);
    count_requests(lab.gw());
    let dns = UdpServer::start(lab.gw(), Topology::gateway_wan(false, 53), false).unwrap();
    let ntp_server = UdpServer::start(lab.gw(), Topology::gateway_wan(false, 123), false).unwrap();
    let start = lab.stats();
    let stack_start = counters(lab.gw(), "netdev", "requests");

    // A fixed, unwatched source port: an ephemeral one might be a watched
    // amplification port, and the requests would be taken for responses.
    let client = lab
        .topo
        .internet
        .udp_bind(SocketAddr::new(addr::INET_WAN4.into(), 40_000))
        .unwrap();
    let (queries, ntp_requests) = (12u16, 9u16);
    for id in 0..queries {
        client.send_to(&dns_query(id), dns.addr()).unwrap();
    }
    for n in 0..ntp_requests {
        client
            .send_to(&ntp(3, 0x1000 + u64::from(n)), ntp_server.addr())
            .unwrap();
    }
    let timeout = Duration::from_secs(5);
    assert_eq!(dns.wait_for(queries.into(), timeout), u64::from(queries));
    assert_eq!(
        ntp_server.wait_for(ntp_requests.into(), timeout),
        u64::from(ntp_requests)
    );
    let (stats, stack) = lab.snapshot(|| counters(lab.gw(), "netdev", "requests"));
    let (delta, stack) = (stats.since(&start), stack.since(&stack_start));

    assert_eq!(stack.packets("dns"), u64::from(queries));
    assert_eq!(stack.packets("ntp"), u64::from(ntp_requests));
    delta.assert_shown(
        Reason::PassDnsQuery,
        stack.packets("dns"),
        "DNS queries at the stack's port 53",
    );
    delta.assert_shown(
        Reason::PassNtpQuery,
        stack.packets("ntp"),
        "NTP client requests at the stack's port 123",
    );
}

/// The gateway's counters of requests at its DNS and NTP ports (`dns`,
/// `ntp`): table `requests`.
fn count_requests(gw: &Netns) {
    gw.nft(&format!(
        "table netdev requests {{\n    counter dns {{ }}\n    counter ntp {{ }}\n    \
         chain wan_ingress {{\n        \
         type filter hook ingress device \"{WAN_IF}\" priority -400; policy accept;\n        \
         udp dport 53 counter name \"dns\"\n        \
         udp dport 123 counter name \"ntp\"\n    }}\n}}\n"
    ))
    .unwrap();
}

/// One spoofed request per source in `sources` (a source may repeat),
/// through the WAN host, to the gateway's DNS (`dns`) or NTP port: what
/// the filter counted, how many reached the stack's port, and how long the
/// sending took.
fn requests(lab: &FilterLab, dns: bool, sources: &[Ipv4Addr]) -> (Stats, u64, Duration) {
    let sender = RawSender::open(host(lab), LAN_IF).unwrap();
    let wan_mac = lab.gw().mac(WAN_IF).unwrap();
    let (port, counter) = if dns { (53, "dns") } else { (123, "ntp") };
    let read = || counters(lab.gw(), "netdev", "requests").packets(counter);
    let (start, stack_start) = (lab.stats(), read());
    let started = Instant::now();
    for (n, src) in sources.iter().enumerate() {
        let n = u16::try_from(n).unwrap();
        let payload = if dns {
            dns_query(n)
        } else {
            ntp(3, 0x5000 + u64::from(n))
        };
        let frame = PacketBuilder::ipv4(*src, addr::GW_WAN4)
            .macs(sender.mac().0, wan_mac.0)
            .udp(41_000 + n, port)
            .payload(&payload)
            .build();
        sender.send(&frame.bytes).unwrap();
    }
    let elapsed = started.elapsed();
    let (stats, reached) = lab.snapshot(read);
    (stats.since(&start), reached - stack_start, elapsed)
}

/// `n` sources: one address (`Same`), addresses of one /24 (`Prefix`, or
/// another /24 for `OtherPrefix`), or one address in each of `n` /24s.
fn sources(spread: Spread, n: u8) -> Vec<Ipv4Addr> {
    (1..=n)
        .map(|i| match spread {
            Spread::Same => Ipv4Addr::new(192, 0, 2, 10),
            Spread::Prefix => Ipv4Addr::new(198, 51, 100, 128 + i),
            Spread::OtherPrefix => Ipv4Addr::new(203, 0, 113, 128 + i),
            Spread::Prefixes => Ipv4Addr::new(198, 19, i, 1),
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Spread {
    Same,
    Prefix,
    OtherPrefix,
    Prefixes,
}

/// Requests per limit: its burst of 3 spent at once, 7 over it.
const SENT: u8 = 10;

/// `service`'s (`dns`, `ntp`) limit at `level` a burst of 3, its other
/// levels' 1000 (DNS has a name level too).
fn limit(lab: &FilterLab, service: &str, level: &str) {
    let levels: &[&str] = if service == "dns" {
        &["name", "source", "prefix", "global"]
    } else {
        &["source", "prefix", "global"]
    };
    let bursts: Vec<String> = levels
        .iter()
        .map(|l| {
            let burst = if *l == level { 3 } else { 1000 };
            format!("{service}_query_{l}_burst={burst}")
        })
        .collect();
    let bursts: Vec<&str> = bursts.iter().map(String::as_str).collect();
    lab.set(&bursts);
}

/// The burst of 3 (and a token per second of sending) reached the stack,
/// not all.
fn within_burst(reached: u64, elapsed: Duration, what: &str) {
    let most = 3 + elapsed.as_secs() + 1;
    assert!(
        reached <= most && reached < u64::from(SENT),
        "{what}: {reached} of {SENT} reached the stack in {elapsed:?}, at most {most} expected"
    );
}

/// [`SENT`] requests of `service` from `spread` sources over the limit at
/// `level`: those that did not reach the stack are `reason`.
fn over_limit(lab: &FilterLab, service: &str, level: &str, spread: Spread, reason: Reason) {
    limit(lab, service, level);
    let (delta, reached, elapsed) = requests(lab, service == "dns", &sources(spread, SENT));
    within_burst(reached, elapsed, &format!("{service}, {level} limit"));
    delta.assert_shown(
        reason,
        u64::from(SENT) - reached,
        "requests sent less those at the stack",
    );
}

/// Spoofed DNS queries and NTP client requests over each of their limits
/// (burst 3, 1/s; the other levels with room): the burst reaches the stack
/// (a token more at most), every other is dropped under the limit's reason,
/// as many as were sent and did not reach the stack. With `dns_slip=1`
/// every DNS query over a limit gets a truncated answer from XDP
/// (`tx_dns_truncated`), as many as came back to the sending host.
#[test]
fn requests_over_each_query_limit_are_dropped_or_answered_truncated() {
    let mut lab = FilterLab::build();
    lab.topo.add_wan_host().expect("adding a WAN host");
    // Generic (skb) mode: a veth in native mode sends XDP_TX frames only to
    // a peer with an XDP program (query_e2e.rs says more).
    let out = lab.attach(Some("skb"));
    assert!(out.contains("skb mode"), "{out}");
    count_requests(lab.gw());
    host(&lab)
        .nft(&format!(
            "table netdev replies {{\n    counter truncated {{ }}\n    chain lan_ingress {{\n        \
             type filter hook ingress device \"{LAN_IF}\" priority 0; policy accept;\n        \
             udp sport 53 counter name \"truncated\"\n    }}\n}}\n"
        ))
        .unwrap();
    lab.set(&[
        "query_prefix_v4=24",
        "dns_slip=0",
        "dns_query_name_rate=1/s",
        "dns_query_source_rate=1/s",
        "dns_query_prefix_rate=1/s",
        "dns_query_global_rate=1/s",
        "ntp_query_source_rate=1/s",
        "ntp_query_prefix_rate=1/s",
        "ntp_query_global_rate=1/s",
    ]);
    // One name from addresses of a /24 no other case uses.
    over_limit(
        &lab,
        "dns",
        "name",
        Spread::OtherPrefix,
        Reason::DropDnsQueryName,
    );
    over_limit(
        &lab,
        "dns",
        "source",
        Spread::Same,
        Reason::DropDnsQuerySource,
    );
    over_limit(
        &lab,
        "dns",
        "prefix",
        Spread::Prefix,
        Reason::DropDnsQueryPrefix,
    );
    over_limit(
        &lab,
        "dns",
        "global",
        Spread::Prefixes,
        Reason::DropDnsQueryGlobal,
    );
    over_limit(
        &lab,
        "ntp",
        "source",
        Spread::Same,
        Reason::DropNtpQuerySource,
    );
    over_limit(
        &lab,
        "ntp",
        "prefix",
        Spread::Prefix,
        Reason::DropNtpQueryPrefix,
    );
    over_limit(
        &lab,
        "ntp",
        "global",
        Spread::Prefixes,
        Reason::DropNtpQueryGlobal,
    );

    // The slip: a source of its own over its limit, every query answered.
    lab.set(&["dns_slip=1"]);
    limit(&lab, "dns", "source");
    let answers = || counters(host(&lab), "netdev", "replies").packets("truncated");
    let answers_before = answers();
    let fresh = vec![Ipv4Addr::new(192, 0, 2, 11); SENT.into()];
    let (delta, reached, elapsed) = requests(&lab, true, &fresh);
    within_burst(reached, elapsed, "DNS with the slip");
    // The answers cross the WAN link back after the marker came in.
    let over = u64::from(SENT) - reached;
    let _ = process::wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        Ok(answers() - answers_before >= over)
    });
    let truncated = answers() - answers_before;
    assert_eq!(truncated, over, "every query over the limit answered");
    delta.assert_shown(
        Reason::TxDnsTruncated,
        truncated,
        "truncated answers at the sending host",
    );
    assert_eq!(delta.packets(Reason::DropDnsQuerySource), 0, "{delta:?}");
}

/// Responses nobody asked for, from spoofed sources: NTP server replies
/// (mode 4, source port 123) and chargen output (source port 19, one of
/// the other watched amplification ports). Every one sent is dropped,
/// `drop_unsolicited_ntp` and `drop_unsolicited_other`; none reaches the
/// stack, but those of an allowed source (`pass_allow_list`).
#[test]
fn unsolicited_ntp_and_other_amplifier_responses_are_dropped() {
    let lab = lab();
    let sender = RawSender::open(host(&lab), LAN_IF).unwrap();
    let wan_mac = lab.gw().mac(WAN_IF).unwrap();
    let start = lab.stats();
    let stack_start = lab.topo.stack_counters().unwrap();

    let frame = |n: u8, sport: u16, payload: &[u8]| {
        PacketBuilder::ipv4(Ipv4Addr::new(192, 0, 2, n), addr::GW_WAN4)
            .macs(sender.mac().0, wan_mac.0)
            .udp(sport, 40_000 + u16::from(n))
            .payload(payload)
            .build()
            .bytes
    };
    let (ntp_sent, other_sent, allowed_sent) = (20u8, 15u8, 8u8);
    for n in 1..=ntp_sent {
        sender
            .send(&frame(n, 123, &ntp(4, 0xabc0 + u64::from(n))))
            .unwrap();
    }
    for n in 1..=other_sent {
        sender.send(&frame(n, 19, &[b'!'; 100])).unwrap();
    }
    // The same responses from an allowed source pass, before any rule.
    lab.ctl(&["allow", "add", "--iface", WAN_IF, "192.0.2.200"]);
    for n in 0..allowed_sent {
        let port = if n % 2 == 0 { 123 } else { 19 };
        sender
            .send(&frame(200, port, &ntp(4, 0xdef0 + u64::from(n))))
            .unwrap();
    }
    let (stats, stack) = lab.settled();
    let (delta, stack) = (stats.since(&start), stack.since(&stack_start));

    assert_eq!(
        stack.packets("spoofed4"),
        u64::from(allowed_sent),
        "only the allowed source's: {stack:?}"
    );
    delta.assert_shown(
        Reason::PassAllowList,
        stack.packets("spoofed4"),
        "the allowed source's responses at the stack",
    );
    delta.assert_shown(
        Reason::DropUnsolicitedNtp,
        ntp_sent.into(),
        "NTP responses sent (none reached the stack)",
    );
    delta.assert_shown(
        Reason::DropUnsolicitedOther,
        other_sent.into(),
        "chargen responses sent (none reached the stack)",
    );
}

/// SYNs from spoofed sources to a closed port, as fast as they go; what
/// reached the stack (`spoofed4`) and the sender's count.
fn syns(lab: &FilterLab, sources: Prefix, count: u64) -> (u64, u64, Duration) {
    let mut flood = SynFlood::new(host(lab), LAN_IF, lab.gw().mac(WAN_IF).unwrap()).unwrap();
    let stack_start = lab.topo.stack_counters().unwrap();
    let started = Instant::now();
    let sent = flood
        .send(sources, Topology::gateway_wan(false, CLOSED), count, 0)
        .unwrap();
    let elapsed = started.elapsed();
    let (_, stack) = lab.settled();
    let reached = stack.since(&stack_start).packets("spoofed4");
    (sent.frames, reached, elapsed)
}

/// A SYN flood from many prefixes against a tiny global bucket: the burst
/// passes (and a token per second), every other SYN is dropped as
/// `drop_syn_global`: as many as were sent and did not reach the stack.
#[test]
fn syns_over_the_global_bucket_are_dropped() {
    let lab = lab();
    // Only the global bucket limits: the others have room for the flood.
    lab.set(&[
        "syn_global_rate=1/s",
        "syn_global_burst=5",
        "syn_source_burst=1000",
        "syn_prefix_burst=1000",
    ]);
    let start = lab.stats();
    let sources = Prefix::new(Ipv4Addr::new(198, 19, 0, 0), 16).unwrap();
    let (sent, reached, elapsed) = syns(&lab, sources, 40);
    let delta = lab.stats().since(&start);

    let most = 5 + elapsed.as_secs() + 1;
    assert!(
        (5..=most).contains(&reached),
        "{reached} SYNs reached the stack, the burst of 5 (and 1/s over {elapsed:?}) expected"
    );
    assert_eq!(delta.packets(Reason::PassSyn), reached);
    delta.assert_shown(
        Reason::DropSynGlobal,
        sent - reached,
        "SYNs sent less those at the stack",
    );
}

/// A SYN flood from many sources of one /24 against a tiny prefix bucket:
/// the burst passes (and a token per second), every other SYN is dropped as
/// `drop_syn_prefix`.
#[test]
fn syns_over_the_prefix_bucket_are_dropped() {
    let lab = lab();
    lab.set(&[
        "syn_prefix_v4=24",
        "syn_prefix_rate=1/s",
        "syn_prefix_burst=5",
        "syn_source_burst=1000",
    ]);
    let start = lab.stats();
    let sources = Prefix::new(Ipv4Addr::new(198, 51, 100, 128), 25).unwrap();
    let (sent, reached, elapsed) = syns(&lab, sources, 30);
    let delta = lab.stats().since(&start);

    let most = 5 + elapsed.as_secs() + 1;
    assert!(
        (5..=most).contains(&reached),
        "{reached} SYNs reached the stack, the burst of 5 (and 1/s over {elapsed:?}) expected"
    );
    assert_eq!(delta.packets(Reason::PassSyn), reached);
    delta.assert_shown(
        Reason::DropSynPrefix,
        sent - reached,
        "SYNs sent less those at the stack",
    );
}

/// Four sources, each sending 12 SYNs at once against a source bucket of
/// 3 with the penalty on: each is admitted its burst, then refused 3 times
/// in a row and deny-listed on the third (`drop_syn_penalty`, once per
/// source that kept sending), its other SYNs `drop_syn_source` before and
/// `drop_deny_list` after; only the bursts reach the stack.
#[test]
fn sources_that_keep_over_their_bucket_are_denied() {
    let lab = lab();
    lab.set(&[
        "syn_source_rate=1/s",
        "syn_source_burst=3",
        "syn_penalty=5m",
        "syn_prefix_burst=1000",
    ]);
    let start = lab.stats();
    let flooders = 4u8;
    let (mut sent, mut reached) = (0, 0);
    for n in 0..flooders {
        let source = Prefix::host(Ipv4Addr::new(192, 0, 2, 70 + n)).unwrap();
        let (s, r, elapsed) = syns(&lab, source, 12);
        let most = 3 + elapsed.as_secs() + 1;
        assert!(
            (3..=most).contains(&r),
            "source {n}: {r} SYNs at the stack in {elapsed:?}, 3 to {most} expected"
        );
        (sent, reached) = (sent + s, reached + r);
    }
    let delta = lab.stats().since(&start);

    delta.assert_shown(
        Reason::DropSynPenalty,
        flooders.into(),
        "sources that sent 12 SYNs at once, four times their burst",
    );
    assert_eq!(lab.list("deny").len(), usize::from(flooders));
    assert_eq!(delta.packets(Reason::PassSyn), reached);
    assert_eq!(
        delta.packets(Reason::DropSynSource)
            + delta.packets(Reason::DropSynPenalty)
            + delta.packets(Reason::DropDenyList),
        sent - reached,
        "every other SYN dropped: {delta:?}"
    );
}

/// SYNs from many sources of one /24 to a closed port, never completed:
/// the prefix's half-open budget of 4 lets 4 through (no unit comes back
/// within the timeout), every other is `drop_syn_halfopen_prefix`.
#[test]
fn syns_over_the_prefix_half_open_budget_are_dropped() {
    let lab = lab();
    lab.set(&[
        "syn_prefix_v4=24",
        "syn_halfopen_prefix_budget=4",
        "syn_source_burst=1000",
        "syn_prefix_burst=1000",
        "syn_global_burst=1000",
    ]);
    let start = lab.stats();
    let sources = Prefix::new(Ipv4Addr::new(192, 0, 2, 0), 24).unwrap();
    let (sent, reached, _) = syns(&lab, sources, 24);
    let delta = lab.stats().since(&start);

    assert_eq!(reached, 4, "the prefix's budget of SYNs at the stack");
    assert_eq!(delta.packets(Reason::PassSyn), reached);
    delta.assert_shown(
        Reason::DropSynHalfopenPrefix,
        sent - reached,
        "SYNs sent less those at the stack",
    );
}

/// Real connections to a port with a limit of 2 per source, closed by the
/// client (its FIN ends the counted connection: `pass_conn_closed`) or by
/// the gateway's server (its FIN: `egress_conn_closed`); the other side's
/// FIN then belongs to no counted connection. Each equals the FINs the
/// stack received or sent on that port (nftables ingress on `wan0`,
/// output), and every SYN-ACK the server sent was recorded
/// (`egress_handshake_recorded`). Then the client holds two connections:
/// its SYNs for a third are `drop_conn_limit`, as many as it sent (its own
/// nftables output) less those at the stack (none).
#[test]
fn connections_at_their_limit_are_counted_and_closed_from_either_side() {
    let lab = lab();
    lab.set(&[&format!("conn_limit={LIMITED}:2")]);
    lab.gw()
        .nft(&format!(
            "table netdev conn_in {{\n    counter fin_in {{ }}\n    counter syn_in {{ }}\n    \
             chain wan_ingress {{\n        \
             type filter hook ingress device \"{WAN_IF}\" priority -400; policy accept;\n        \
             tcp dport {LIMITED} tcp flags & (fin | rst) != 0 counter name \"fin_in\"\n        \
             tcp dport {LIMITED} tcp flags & (syn | ack) == syn counter name \"syn_in\"\n    \
             }}\n}}\n\
             table inet conn_out {{\n    counter fin_out {{ }}\n    counter synack_out {{ }}\n    \
             chain output {{\n        \
             type filter hook output priority 0; policy accept;\n        \
             tcp sport {LIMITED} tcp flags & (fin | rst) != 0 counter name \"fin_out\"\n        \
             tcp sport {LIMITED} tcp flags & (syn | ack) == syn | ack counter name \"synack_out\"\n    \
             }}\n}}\n"
        ))
        .unwrap();
    let inet = &lab.topo.internet;
    inet.nft(&format!(
        "table inet client {{\n    counter syn_out {{ }}\n    chain output {{\n        \
         type filter hook output priority 0; policy accept;\n        \
         tcp dport {LIMITED} tcp flags & (syn | ack) == syn counter name \"syn_out\"\n    \
         }}\n}}\n"
    ))
    .unwrap();
    // The stack's counters: the gateway's, then the client's.
    let read = || {
        let (inbound, outbound) = (
            counters(lab.gw(), "netdev", "conn_in"),
            counters(lab.gw(), "inet", "conn_out"),
        );
        let client = counters(inet, "inet", "client");
        StackCounters {
            counters: [inbound, outbound, client]
                .into_iter()
                .flat_map(|c| c.counters)
                .collect(),
        }
    };
    let to = Topology::gateway_wan(false, LIMITED);
    let listener = lab.gw().tcp_listen(to).unwrap();
    let timeout = Duration::from_secs(3);
    let connections = 3;
    let mut buf = [0; 1];

    // The client closes first; the server closes when it reads the end.
    let (start, stack_start) = (lab.stats(), read());
    for _ in 0..connections {
        let client = inet.tcp_connect(to, timeout).unwrap();
        let (mut served, _) = listener.accept().unwrap();
        served.set_read_timeout(Some(timeout)).unwrap();
        drop(client);
        assert_eq!(served.read(&mut buf).unwrap(), 0, "the client's FIN");
    }
    let (stats, stack) = lab.snapshot(read);
    let (delta, stack) = (stats.since(&start), stack.since(&stack_start));
    assert_eq!(stack.packets("fin_in"), connections);
    assert_eq!(stack.packets("fin_out"), connections);
    delta.assert_shown(
        Reason::PassConnClosed,
        stack.packets("fin_in"),
        "the clients' FINs at the stack",
    );
    delta.assert_shown(
        Reason::EgressHandshakeRecorded,
        stack.packets("synack_out"),
        "SYN-ACKs the stack sent",
    );
    assert_eq!(delta.packets(Reason::PassHandshake), connections);
    assert_eq!(delta.packets(Reason::EgressConnClosed), 0, "{delta:?}");

    // The server closes first; the client closes when it reads the end.
    let (start, stack_start) = (lab.stats(), read());
    for _ in 0..connections {
        let mut client = inet.tcp_connect(to, timeout).unwrap();
        let (served, _) = listener.accept().unwrap();
        drop(served);
        assert_eq!(client.read(&mut buf).unwrap(), 0, "the server's FIN");
    }
    let (stats, stack) = lab.snapshot(read);
    let (delta, stack) = (stats.since(&start), stack.since(&stack_start));
    assert_eq!(stack.packets("fin_out"), connections);
    delta.assert_shown(
        Reason::EgressConnClosed,
        stack.packets("fin_out"),
        "the server's FINs the stack sent",
    );
    assert_eq!(delta.packets(Reason::PassHandshake), connections);
    assert_eq!(
        stack.packets("fin_in"),
        connections,
        "the clients' FINs, after the server's"
    );
    assert_eq!(delta.packets(Reason::PassConnClosed), 0, "{delta:?}");

    // Two connections held: a third is refused at the limit.
    let (start, stack_start) = (lab.stats(), read());
    let held: Vec<_> = (0..2)
        .map(|_| {
            let client = inet.tcp_connect(to, timeout).unwrap();
            (client, listener.accept().unwrap())
        })
        .collect();
    let refused = inet.tcp_connect(to, Duration::from_millis(1500));
    assert!(refused.is_err(), "a third connection at a limit of 2");
    let (stats, stack) = lab.snapshot(read);
    let (delta, stack) = (stats.since(&start), stack.since(&stack_start));
    assert_eq!(
        stack.packets("syn_in"),
        2,
        "only the held connections' SYNs"
    );
    delta.assert_shown(
        Reason::DropConnLimit,
        stack.packets("syn_out") - stack.packets("syn_in"),
        "SYNs the client sent less those at the gateway's stack",
    );
    drop(held);
}
