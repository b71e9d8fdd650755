//! Verdict tests of the SYN defence: token buckets per source (IPv4 /32,
//! IPv6 /64), per prefix and global, the penalty, and what is never limited.
//! Real object, crafted frames, BPF_PROG_TEST_RUN (tests::bpf); every test
//! asserts the exact counters that moved.
//!
//! Refill is tested with real sleeps (the programs read the coarse monotonic
//! clock), so those expectations are computed from the elapsed time measured
//! around the runs, widened by the coarse clock's resolution, rather than
//! from the sleep asked for: a slow machine makes them wider, never wrong.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    thread,
    time::{Duration, Instant},
};

use filter_common::{Config, Reason};
use filter_ctl::lists::List;
use harness::packet::{Frame, PacketBuilder, addr, tcp_flags};
use tests::bpf::{Counts, Filter, TC_ACT_OK, XDP_DROP, XDP_PASS};

const HTTP: u16 = 80;
const SMTP: u16 = 25;

fn syn4(src: Ipv4Addr, sport: u16, dport: u16) -> Frame {
    PacketBuilder::ipv4(src, addr::CLIENT_V4)
        .tcp(sport, dport, tcp_flags::SYN)
        .build()
}

fn syn6(src: Ipv6Addr, sport: u16) -> Frame {
    PacketBuilder::ipv6(src, addr::CLIENT_V6)
        .tcp(sport, HTTP, tcp_flags::SYN)
        .build()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn v6(segments: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::from(segments)
}

fn bytes(frame: &Frame) -> u64 {
    frame.len() as u64
}

/// A filter with only the levels named switched on (rate/burst pairs): the
/// other buckets and the half-open budgets (tests/tcp.rs) are off.
fn only(levels: &[(&str, &str, &str)]) -> Filter {
    let mut filter = Filter::load();
    filter.set(&[
        ("syn_source_rate", "off"),
        ("syn_prefix_rate", "off"),
        ("syn_global_rate", "off"),
        ("syn_halfopen_budget", "off"),
        ("syn_halfopen_prefix_budget", "off"),
    ]);
    for (level, rate, burst) in levels {
        filter.set(&[
            (&format!("syn_{level}_rate"), rate),
            (&format!("syn_{level}_burst"), burst),
        ]);
    }
    filter
}

/// Packets counted under `reason` between two snapshots.
fn moved(before: &Counts, after: &Counts, reason: Reason) -> u64 {
    after[reason.index() as usize].packets - before[reason.index() as usize].packets
}

/// Runs `frame` `n` times in one BPF_PROG_TEST_RUN; returns the counters
/// before and after, and when the run started and ended.
fn run(filter: &Filter, frame: &Frame, n: u32) -> (Counts, Counts, Instant, Instant) {
    let before = filter.counts();
    let start = Instant::now();
    filter.try_ingress(frame, n).expect("test run");
    let end = Instant::now();
    (before, filter.counts(), start, end)
}

/// How far the programs' coarse clock may lag real time: one tick at the
/// slowest tick rate a kernel is built with (HZ=100).
const COARSE_CLOCK_LAG_NS: u64 = 10_000_000;

/// Whole intervals of `1 s / rate` that may have passed on the programs'
/// clock between two runs, at least and at most, given when each started
/// and ended.
fn intervals(rate: u64, first: (Instant, Instant), second: (Instant, Instant)) -> (u64, u64) {
    let interval = 1_000_000_000 / rate;
    let shortest = second.0.duration_since(first.1).as_nanos() as u64;
    let longest = second.1.duration_since(first.0).as_nanos() as u64;
    let least = shortest.saturating_sub(COARSE_CLOCK_LAG_NS) / interval;
    let most = (longest + COARSE_CLOCK_LAG_NS) / interval;
    (least, most)
}

#[test]
fn a_source_gets_its_burst_then_its_rate() {
    let filter = only(&[("source", "10/s", "5")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    let (before, after, s1, e1) = run(&filter, &frame, 8);
    filter.assert_moved(
        &before,
        &[
            (Reason::PassSyn, 5, 5 * bytes(&frame)),
            (Reason::DropSynSource, 3, 3 * bytes(&frame)),
        ],
        "burst of 5, then nothing left",
    );
    assert_eq!(moved(&before, &after, Reason::PassSyn), 5);

    // One token every 100 ms.
    thread::sleep(Duration::from_millis(250));
    let (before, after, s2, e2) = run(&filter, &frame, 10);
    let (least, most) = intervals(10, (s1, e1), (s2, e2));
    let passed = moved(&before, &after, Reason::PassSyn);
    assert!(
        (least.min(5)..=most.min(5)).contains(&passed),
        "{passed} SYNs passed after {least}..={most} intervals"
    );
    assert!(passed >= 2, "250 ms refill two tokens: {passed}");
    assert_eq!(moved(&before, &after, Reason::DropSynSource), 10 - passed);
}

#[test]
fn a_long_pause_refills_only_up_to_the_burst() {
    let filter = only(&[("source", "20/s", "3")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    run(&filter, &frame, 3);
    thread::sleep(Duration::from_millis(400)); // 8 intervals, but the bucket holds 3
    let (before, after, ..) = run(&filter, &frame, 10);
    assert_eq!(moved(&before, &after, Reason::PassSyn), 3);
    assert_eq!(moved(&before, &after, Reason::DropSynSource), 7);
}

#[test]
fn every_source_has_its_own_bucket_and_ports_do_not_matter() {
    let filter = only(&[("source", "1/s", "2")]);
    let before = filter.counts();
    // Ever-changing source ports: still one source.
    for sport in 1000..1010 {
        filter.ingress(&syn4(addr::ATTACKER_V4, sport, HTTP));
    }
    for host in 1..=5 {
        filter.ingress(&syn4(v4(198, 51, 100, host), 40000, HTTP));
        filter.ingress(&syn4(v4(198, 51, 100, host), 40001, SMTP));
    }
    let frame_len = bytes(&syn4(addr::ATTACKER_V4, 1, HTTP));
    filter.assert_moved(
        &before,
        &[
            (Reason::PassSyn, 2 + 5 * 2, 12 * frame_len),
            (Reason::DropSynSource, 8, 8 * frame_len),
        ],
        "one flooder, five polite hosts",
    );
}

#[test]
fn a_prefix_shares_one_bucket_between_its_sources() {
    let filter = only(&[("prefix", "1/s", "4")]);
    let before = filter.counts();
    for host in 1..=10 {
        let verdict = filter.ingress(&syn4(v4(203, 0, 113, host), 40000, HTTP));
        assert_eq!(
            verdict,
            if host <= 4 { XDP_PASS } else { XDP_DROP },
            "host {host}"
        );
    }
    // Another /24 has its own.
    for host in 1..=4 {
        assert_eq!(
            filter.ingress(&syn4(v4(198, 51, 100, host), 40000, HTTP)),
            XDP_PASS
        );
    }
    let len = bytes(&syn4(addr::ATTACKER_V4, 1, HTTP));
    filter.assert_moved(
        &before,
        &[
            (Reason::PassSyn, 8, 8 * len),
            (Reason::DropSynPrefix, 6, 6 * len),
        ],
        "ten hosts of one /24, four of another",
    );
}

#[test]
fn the_prefix_length_is_configurable() {
    let mut filter = only(&[("prefix", "1/s", "3")]);
    filter.set(&[("syn_prefix_v4", "16")]);
    // 198.18.0.0/16 spans many /24s: one bucket now.
    let verdicts: Vec<u32> = (0..5)
        .map(|c| filter.ingress(&syn4(v4(198, 18, c * 40, 7), 40000, HTTP)))
        .collect();
    assert_eq!(verdicts, [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP]);
    // 198.19.0.0/16 is another /16.
    assert_eq!(
        filter.ingress(&syn4(v4(198, 19, 0, 7), 40000, HTTP)),
        XDP_PASS
    );

    // IPv6: /56 instead of /48.
    filter.set(&[("syn_prefix_v6", "56")]);
    let a = v6([0x2001, 0xdb8, 7, 0x0100, 0, 0, 0, 1]);
    let b = v6([0x2001, 0xdb8, 7, 0x01ff, 0, 0, 0, 1]); // same /56
    let c = v6([0x2001, 0xdb8, 7, 0x0200, 0, 0, 0, 1]); // same /48, other /56
    let verdicts: Vec<u32> = [a, b, a, b, c]
        .iter()
        .map(|src| filter.ingress(&syn6(*src, 40000)))
        .collect();
    assert_eq!(verdicts, [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_PASS]);
}

#[test]
fn the_global_bucket_counts_every_source() {
    let filter = only(&[("global", "1/s", "3")]);
    let sources = [
        syn4(v4(192, 0, 2, 1), 1, HTTP),
        syn4(v4(198, 51, 100, 1), 1, HTTP),
        syn6(v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 1]), 1),
        syn4(v4(203, 0, 113, 1), 1, HTTP),
        syn6(v6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 1]), 1),
    ];
    let verdicts: Vec<u32> = sources.iter().map(|f| filter.ingress(f)).collect();
    assert_eq!(verdicts, [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP]);
    let counts = filter.counts();
    assert_eq!(counts[Reason::PassSyn.index() as usize].packets, 3);
    assert_eq!(counts[Reason::DropSynGlobal.index() as usize].packets, 2);
}

#[test]
fn the_narrowest_full_level_names_the_drop() {
    let mut filter = Filter::load();
    filter.set(&[
        ("syn_source_rate", "1/s"),
        ("syn_source_burst", "2"),
        ("syn_prefix_rate", "1/s"),
        ("syn_prefix_burst", "3"),
        ("syn_global_rate", "1/s"),
        ("syn_global_burst", "4"),
    ]);
    let a = syn4(v4(203, 0, 113, 1), 1, HTTP);
    let b = syn4(v4(203, 0, 113, 2), 1, HTTP);
    let c = syn4(v4(198, 51, 100, 1), 1, HTTP);
    let len = bytes(&a);
    let before = filter.counts();
    // A: 2 pass, the third is over A's own bucket.
    assert_eq!(
        [&a, &a, &a].map(|f| filter.ingress(f)),
        [XDP_PASS, XDP_PASS, XDP_DROP]
    );
    filter.assert_moved(
        &before,
        &[
            (Reason::PassSyn, 2, 2 * len),
            (Reason::DropSynSource, 1, len),
        ],
        "source level",
    );
    // B, same /24: one left in the prefix's bucket of 3.
    let before = filter.counts();
    assert_eq!([&b, &b].map(|f| filter.ingress(f)), [XDP_PASS, XDP_DROP]);
    filter.assert_moved(
        &before,
        &[(Reason::PassSyn, 1, len), (Reason::DropSynPrefix, 1, len)],
        "prefix level",
    );
    // C, another /24: the global bucket of 4 has one left.
    let before = filter.counts();
    assert_eq!([&c, &c].map(|f| filter.ingress(f)), [XDP_PASS, XDP_DROP]);
    filter.assert_moved(
        &before,
        &[(Reason::PassSyn, 1, len), (Reason::DropSynGlobal, 1, len)],
        "global level",
    );
}

#[test]
fn ipv6_sources_are_grouped_by_their_64() {
    let filter = only(&[("source", "1/s", "3")]);
    let host1 = v6([0x2001, 0xdb8, 3, 0, 0, 0, 0, 1]);
    let host2 = v6([0x2001, 0xdb8, 3, 0, 0xffff, 0xffff, 0xffff, 0xfffe]); // same /64
    let other64 = v6([0x2001, 0xdb8, 3, 1, 0, 0, 0, 1]); // same /48, next /64
    let verdicts: Vec<u32> = [host1, host2, host1, host2, other64, other64]
        .iter()
        .map(|src| filter.ingress(&syn6(*src, 40000)))
        .collect();
    assert_eq!(
        verdicts,
        [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_PASS, XDP_PASS]
    );
}

#[test]
fn ipv6_prefixes_are_48s_by_default() {
    let filter = only(&[("prefix", "1/s", "4")]);
    let in_48 = |n: u16| v6([0x2001, 0xdb8, 5, n, 0, 0, 0, 1]); // 5 different /64s
    let verdicts: Vec<u32> = (0..5).map(|n| filter.ingress(&syn6(in_48(n), 1))).collect();
    assert_eq!(verdicts, [XDP_PASS, XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP]);
    let elsewhere = v6([0x2001, 0xdb8, 6, 0, 0, 0, 0, 1]);
    assert_eq!(filter.ingress(&syn6(elsewhere, 1)), XDP_PASS);
    assert_eq!(filter.config().syn_prefix_v6, 48);
}

#[test]
fn only_connection_attempts_are_limited() {
    let mut filter = Filter::load();
    for level in ["source", "prefix", "global"] {
        filter.set(&[
            (&format!("syn_{level}_rate"), "1/s"),
            (&format!("syn_{level}_burst"), "1"),
        ]);
    }
    let from = addr::ATTACKER_V4;
    let syn = syn4(from, 40000, HTTP);
    assert_eq!(filter.ingress(&syn), XDP_PASS);
    assert_eq!(filter.ingress(&syn), XDP_DROP);
    // The same source's other TCP segments: SYN-ACK (an answer to a
    // connection we opened), ACK, data, FIN, RST: never limited.
    let segment = |flags: u8, payload: &[u8]| {
        PacketBuilder::ipv4(from, addr::CLIENT_V4)
            .tcp(HTTP, 40000, flags)
            .payload(payload)
            .build()
    };
    use tcp_flags::*;
    let others = [
        segment(SYN | ACK, b""),
        segment(ACK, b""),
        segment(PSH | ACK, b"HTTP/1.1 200 OK\r\n\r\n"),
        segment(FIN | ACK, b""),
        segment(RST, b""),
        segment(RST | ACK, b""),
    ];
    let before = filter.counts();
    for frame in &others {
        assert_eq!(filter.try_ingress(frame, 200).unwrap(), XDP_PASS);
    }
    let total: u64 = others.iter().map(|f| 200 * bytes(f)).sum();
    filter.assert_moved(
        &before,
        &[(Reason::PassIpv4, 6 * 200, total)],
        "non-SYN TCP from a limited source",
    );
    // And its SYNs are still limited: nothing refilled the buckets.
    assert_eq!(filter.ingress(&syn), XDP_DROP);
}

#[test]
fn the_gateways_own_connections_are_never_limited() {
    let mut filter = Filter::load();
    filter.set(&[("syn_source_burst", "1"), ("syn_global_burst", "1")]);
    // Outgoing SYNs (egress never drops), and their SYN-ACKs coming back.
    let out = PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4)
        .tcp(40000, 443, tcp_flags::SYN)
        .build();
    let answer = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .tcp(443, 40000, tcp_flags::SYN | tcp_flags::ACK)
        .build();
    let before = filter.counts();
    for _ in 0..50 {
        assert_eq!(filter.egress(&out), TC_ACT_OK);
    }
    assert_eq!(filter.try_ingress(&answer, 1000).unwrap(), XDP_PASS);
    filter.assert_moved(
        &before,
        &[
            (Reason::EgressOther, 50, 50 * bytes(&out)),
            (Reason::PassIpv4, 1000, 1000 * bytes(&answer)),
        ],
        "50 outgoing SYNs, 1000 SYN-ACKs",
    );
}

#[test]
fn a_level_with_rate_off_never_drops() {
    let filter = only(&[]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    assert_eq!(filter.try_ingress(&frame, 5000).unwrap(), XDP_PASS);
    filter.assert_moved(
        &tests::bpf::zero(),
        &[(Reason::PassSyn, 5000, 5000 * bytes(&frame))],
        "all levels off",
    );
}

#[test]
fn monitor_mode_counts_what_the_buckets_would_drop() {
    let mut filter = only(&[("source", "1/s", "2")]);
    filter.set(&[("monitor", "on")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    let first = Instant::now();
    for _ in 0..5 {
        assert_eq!(filter.ingress(&frame), XDP_PASS);
    }
    let len = bytes(&frame);
    filter.assert_moved_and_would_drop(
        &tests::bpf::zero(),
        &[(Reason::PassSyn, 2, 2 * len)],
        &[(Reason::DropSynSource, 3, 3 * len)],
        "monitor mode",
    );
    // The bucket really was spent: with monitor mode off, only what refilled
    // since then passes.
    filter.set(&[("monitor", "off")]);
    let (before, after, s2, e2) = run(&filter, &frame, 5);
    let (_, most) = intervals(1, (first, first), (s2, e2));
    assert!(moved(&before, &after, Reason::PassSyn) <= most.min(2));
}

#[test]
fn defaults_let_a_browser_and_mail_relays_through_and_cut_a_half_open_flooder() {
    let filter = Filter::load();
    let defaults = filter.config();
    assert_eq!(
        (defaults.syn_source_rate, defaults.syn_source_burst),
        (20, 40)
    );
    assert_eq!(
        (defaults.syn_prefix_rate, defaults.syn_prefix_burst),
        (100, 200)
    );
    assert_eq!(defaults.syn_penalty_ns, 0, "no penalty by default");
    let before = filter.counts();
    // A browser opening a dozen connections at once (three such bursts in
    // a second, their handshakes completing, are in tests/tcp.rs: SYNs that
    // are never answered take half-open units).
    let browser = v4(198, 51, 100, 20);
    for sport in 0..12 {
        assert_eq!(
            filter.ingress(&syn4(browser, 50000 + sport, 443)),
            XDP_PASS,
            "browser connection {sport}"
        );
    }
    // A provider's mail relays: three hosts of one /24 delivering at once.
    for host in 1..=3 {
        for sport in 0..10 {
            assert_eq!(
                filter.ingress(&syn4(v4(192, 0, 2, host), 40000 + sport, SMTP)),
                XDP_PASS
            );
        }
    }
    // One host sending SYNs it never completes: its half-open budget (16)
    // stops it long before its bucket would.
    let flooder = addr::ATTACKER_V4;
    let verdicts: Vec<u32> = (0..30)
        .map(|sport| filter.ingress(&syn4(flooder, 30000 + sport, HTTP)))
        .collect();
    assert_eq!(verdicts[..16], [XDP_PASS; 16]);
    assert_eq!(verdicts[16..], [XDP_DROP; 14]);
    let len = bytes(&syn4(flooder, 1, SMTP));
    filter.assert_moved(
        &before,
        &[
            (Reason::PassSyn, 12 + 30 + 16, 58 * len),
            (Reason::DropSynHalfopen, 14, 14 * len),
        ],
        "browser, relays, half-open flooder",
    );
}

#[test]
fn a_source_that_keeps_exceeding_its_bucket_is_denied_for_the_penalty() {
    let mut filter = only(&[("source", "1/s", "3")]);
    filter.set(&[("syn_penalty", "60s")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    let len = bytes(&frame);
    // 3 admitted, then `burst` (3) refused in a row: the third earns the penalty.
    let verdicts: Vec<u32> = (0..6).map(|_| filter.ingress(&frame)).collect();
    assert_eq!(
        verdicts,
        [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP, XDP_DROP]
    );
    filter.assert_moved(
        &tests::bpf::zero(),
        &[
            (Reason::PassSyn, 3, 3 * len),
            (Reason::DropSynSource, 2, 2 * len),
            (Reason::DropSynPenalty, 1, len),
        ],
        "penalty on the third refused SYN",
    );
    assert_eq!(
        filter.lists_in_use(),
        [0, 0, 1, 0],
        "the penalty marked the IPv4 deny trie in use"
    );
    let entries = filter.list_entries(List::Deny);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].cidr.to_string(), "203.0.113.66/32");
    assert_eq!(entries[0].reason.name(), "syn_penalty");
    let left = entries[0].expires_in_ms.expect("a penalty expires");
    assert!((50_000..=60_000).contains(&left), "{left} ms left");

    // Everything from it is dropped now, before any other rule; others pass.
    let udp = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .udp(40000, 40001)
        .build();
    let before = filter.counts();
    assert_eq!(filter.try_ingress(&frame, 100).unwrap(), XDP_DROP);
    assert_eq!(filter.ingress(&udp), XDP_DROP);
    assert_eq!(filter.ingress(&syn4(addr::SERVER_V4, 1, HTTP)), XDP_PASS);
    filter.assert_moved(
        &before,
        &[
            (Reason::DropDenyList, 101, 100 * len + bytes(&udp)),
            (Reason::PassSyn, 1, len),
        ],
        "denied",
    );
}

#[test]
fn an_ipv6_penalty_denies_the_whole_64() {
    let mut filter = only(&[("source", "1/s", "2")]);
    filter.set(&[("syn_penalty", "5m")]);
    let flooder = v6([0x2001, 0xdb8, 3, 4, 0, 0, 0, 0x66]);
    let frame = syn6(flooder, 40000);
    filter.try_ingress(&frame, 4).unwrap();
    let counts = filter.counts();
    assert_eq!(counts[Reason::DropSynPenalty.index() as usize].packets, 1);
    assert_eq!(filter.lists_in_use(), [0, 0, 0, 1]);
    let entries = filter.list_entries(List::Deny);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].cidr.to_string(), "2001:db8:3:4::/64");
    // Its neighbour in the /64 is denied too; the next /64 is not.
    let neighbour = v6([0x2001, 0xdb8, 3, 4, 0, 0, 0, 0x67]);
    assert_eq!(filter.ingress(&syn6(neighbour, 1)), XDP_DROP);
    assert_eq!(
        filter.ingress(&syn6(v6([0x2001, 0xdb8, 3, 5, 0, 0, 0, 0x66]), 1)),
        XDP_PASS
    );
}

#[test]
fn in_monitor_mode_the_penalty_is_recorded_and_only_counted_as_would_drop() {
    let mut filter = only(&[("source", "1/s", "2")]);
    filter.set(&[("syn_penalty", "60s"), ("monitor", "on")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    let len = bytes(&frame);
    assert_eq!(filter.try_ingress(&frame, 10).unwrap(), XDP_PASS);
    filter.assert_moved_and_would_drop(
        &tests::bpf::zero(),
        &[(Reason::PassSyn, 2, 2 * len)],
        &[
            (Reason::DropSynSource, 1, len),
            (Reason::DropSynPenalty, 1, len),
            (Reason::DropDenyList, 6, 6 * len),
        ],
        "monitor mode shows what enforcement would do",
    );
    let entries = filter.list_entries(List::Deny);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].reason.name(), "syn_penalty");
}

#[test]
fn a_polite_source_over_its_bucket_now_and_then_is_never_penalised() {
    let mut filter = only(&[("source", "20/s", "4")]);
    filter.set(&[("syn_penalty", "60s")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    // Bursts of 5 with pauses that bring back at least 2 tokens: every
    // admitted SYN ends the run of refusals, which never reaches 4.
    for _ in 0..4 {
        filter.try_ingress(&frame, 5).unwrap();
        thread::sleep(Duration::from_millis(120));
    }
    let counts = filter.counts();
    assert_eq!(counts[Reason::DropSynPenalty.index() as usize].packets, 0);
    assert!(counts[Reason::DropSynSource.index() as usize].packets > 0);
    assert!(filter.list_entries(List::Deny).is_empty());
}

#[test]
fn the_penalty_ends_and_the_source_is_only_rate_limited_again() {
    let mut filter = only(&[("source", "1/s", "2")]);
    filter.set(&[("syn_penalty", "1s")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    filter.try_ingress(&frame, 4).unwrap();
    assert_eq!(filter.ingress(&frame), XDP_DROP);
    assert_eq!(
        filter.counts()[Reason::DropDenyList.index() as usize].packets,
        1
    );
    thread::sleep(Duration::from_millis(1100));
    // The entry expired in the kernel (filter-ctl has not removed it yet);
    // the bucket has refilled at least one token.
    assert_eq!(filter.list(List::Deny).raw_entries().unwrap().len(), 1);
    let before = filter.counts();
    assert_eq!(filter.ingress(&frame), XDP_PASS);
    filter.assert_moved(
        &before,
        &[(Reason::PassSyn, 1, bytes(&frame))],
        "after the penalty",
    );
    assert_eq!(filter.list(List::Deny).cleanup(tests_now()).unwrap(), 1);
    assert!(filter.list(List::Deny).raw_entries().unwrap().is_empty());
}

fn tests_now() -> u64 {
    filter_ctl::clock::now_ns()
}

#[test]
fn a_bucket_hours_ahead_is_judged_by_the_current_burst() {
    // 20,000 SYNs at 1/s put the bucket's "full again" time 5.5 hours ahead,
    // past where the program compares multiplied out (2^44 ns): there it
    // divides instead, with the same verdicts.
    let mut filter = only(&[("source", "1/s", "20000")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    let len = bytes(&frame);
    filter.try_ingress(&frame, 20_000).unwrap();
    filter.set(&[("syn_source_burst", "5")]);
    assert_eq!(filter.ingress(&frame), XDP_DROP, "burst cut to 5");
    filter.set(&[("syn_source_burst", "1000000")]);
    assert_eq!(filter.ingress(&frame), XDP_PASS, "burst raised to 10^6");
    filter.assert_moved(
        &tests::bpf::zero(),
        &[
            (Reason::PassSyn, 20_001, 20_001 * len),
            (Reason::DropSynSource, 1, len),
        ],
        "hours ahead",
    );
}

#[test]
fn without_the_penalty_a_flooder_stays_rate_limited_only() {
    let mut filter = only(&[("source", "1/s", "2")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    filter.try_ingress(&frame, 1000).unwrap();
    filter.assert_moved(
        &tests::bpf::zero(),
        &[
            (Reason::PassSyn, 2, 2 * bytes(&frame)),
            (Reason::DropSynSource, 998, 998 * bytes(&frame)),
        ],
        "no penalty",
    );
    assert!(filter.list_entries(List::Deny).is_empty());
}

#[test]
fn a_full_deny_list_is_counted_and_the_flooder_stays_rate_limited() {
    let mut filter = only(&[("source", "1/s", "2")]);
    filter.set(&[("syn_penalty", "60s")]);
    // Fill the IPv4 deny list but for one entry: 198.18.0.0/16 less one /32.
    let cidr = |text: &str| filter_ctl::lists::Cidr::parse(text).unwrap();
    let cidrs: Vec<filter_ctl::lists::Cidr> = (1..filter_common::lists::LIST_ENTRIES)
        .map(|n| {
            filter_ctl::lists::Cidr::from(IpAddr::from(Ipv4Addr::from(
                u32::from(v4(198, 18, 0, 0)) + n,
            )))
        })
        .collect();
    let add = |filter: &mut Filter, cidrs: &[filter_ctl::lists::Cidr]| {
        filter.list(List::Deny).add(
            cidrs,
            None,
            filter_common::ListSource::Operator,
            tests_now(),
        )
    };
    add(&mut filter, &cidrs).unwrap();
    // Two more do not fit, and adding is all or nothing: the first is undone.
    let err = add(&mut filter, &[cidr("198.19.0.1"), cidr("198.19.0.2")]).unwrap_err();
    assert!(format!("{err:#}").contains("at most 65536"), "{err:#}");
    assert_eq!(
        filter.list(List::Deny).get(&cidr("198.19.0.1")).unwrap(),
        None
    );
    add(&mut filter, &[cidr("198.18.0.0")]).unwrap();
    assert_eq!(
        filter.list(List::Deny).raw_entries().unwrap().len(),
        filter_common::lists::LIST_ENTRIES as usize
    );

    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    let len = bytes(&frame);
    filter.try_ingress(&frame, 5).unwrap();
    filter.assert_moved(
        &tests::bpf::zero(),
        &[
            (Reason::PassSyn, 2, 2 * len),
            (Reason::DropSynSource, 2, 2 * len),
            (Reason::DropSynPenaltyFull, 1, len),
        ],
        "2 admitted, 2nd refusal earns the penalty, no room; strikes start over",
    );
}

#[test]
fn rates_and_bursts_change_live_without_resetting_the_buckets() {
    // Settings are written between the runs, which takes a while on a busy
    // machine: the expectations count the tokens that time may have added.
    let mut filter = only(&[("source", "1/s", "3")]);
    let frame = syn4(addr::ATTACKER_V4, 40000, HTTP);
    let (before, after, s1, e1) = run(&filter, &frame, 4);
    assert_eq!(moved(&before, &after, Reason::PassSyn), 3);
    // A bigger burst takes effect on the next SYN, from the same state: the
    // bucket (3 spent of 3) now has room for 2 more, plus what refilled.
    filter.set(&[("syn_source_burst", "5")]);
    let (before, after, s2, e2) = run(&filter, &frame, 10);
    let (least, most) = intervals(1, (s1, e1), (s2, e2));
    let passed = moved(&before, &after, Reason::PassSyn);
    assert!(
        ((2 + least).min(5)..=(2 + most).min(5)).contains(&passed),
        "{passed} passed after {least}..={most} intervals"
    );
    // Switching the level off lets everything through without touching the
    // bucket; switched on again, it is as spent as it was (a reset bucket
    // would let 5 through at once).
    filter.set(&[("syn_source_rate", "off")]);
    let (before, after, ..) = run(&filter, &frame, 10);
    assert_eq!(moved(&before, &after, Reason::PassSyn), 10);
    filter.set(&[("syn_source_rate", "1/s")]);
    let (before, after, s3, e3) = run(&filter, &frame, 10);
    let (_, most) = intervals(1, (s2, e2), (s3, e3));
    let passed = moved(&before, &after, Reason::PassSyn);
    assert!(
        passed <= most.min(5),
        "{passed} passed after at most {most} intervals"
    );
    let _: Config = filter.config();
}
