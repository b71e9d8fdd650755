//! End-to-end proof of the query limits (docs/query-limits.md): an
//! authoritative DNS server on the gateway (dnsmasq on `wan0`'s address,
//! serving a 3 KB TXT record) is used as a reflector. Three spoofed victims
//! send it TXT queries with EDNS 4096 at 200 per second each for 10 s, while
//! ten real resolvers with their own addresses (`dig` in the internet
//! namespace: a farm of eight in one /24 of their own, two in the victims'
//! /24) look up names at about 4 per second each, a name of its own per
//! lookup as caching resolvers do (issue 27), and the gateway keeps
//! resolving names upstream. The same run without the filter is the
//! baseline. The DNS attack runs over IPv4 and over IPv6, and once more
//! spoofing every address of the victims' /24 in turn, each far below its
//! own limit: the name level (one name from one prefix) stops it.
//!
//! Counted independently of the filter: the bytes sent to the victims on the
//! wire (nftables in the internet namespace, on the WAN link's far end, so
//! that the filter's truncated answers, sent with XDP_TX past the gateway's
//! stack, count too), the victims' queries that reached the gateway's stack
//! and the answers it sent them (nftables input and output hooks), what
//! every resolver and upstream lookup got (dig's output), the upstream
//! lookups' queries and answers at the gateway's stack, and the gateway's
//! conntrack table (nf_conntrack_count, sampled every 100 ms).
//!
//! The same for NTP: chronyd serving on the gateway, the victims sending
//! client (mode 3) requests and now and then a monlist (mode 7) request,
//! and eight real clients (`chronyd -Q`, which measures and exits) from the
//! same addresses as the resolvers.
//!
//! Needs root. Each run builds its own lab with unique names; everything is
//! removed when it ends, also when it fails.

use std::{ops::Deref, time::Instant};

use filter_common::Reason;
use harness::{
    attacks::amplifier::{Amplifier, Family, Plan, Run, Victims, own_prefix},
    ctl::Stats,
    fixture::FilterLab,
    kernel, process,
    traffic::queries::Service,
};

/// One run's measures (harness::attacks::amplifier), and with the filter
/// the counters it gained.
#[derive(Debug)]
struct Measured {
    run: Run,
    filter: Option<Stats>,
}

impl Deref for Measured {
    type Target = Run;

    fn deref(&self) -> &Run {
        &self.run
    }
}

impl Measured {
    fn print(&self, title: &str) {
        println!("{}", self.run.describe(title));
        if let Some(stats) = &self.filter {
            println!("{title}: filter counters gained:");
            for (reason, packets, bytes) in stats.nonzero() {
                println!("  {reason:<34} {packets:>8} packets {bytes:>11} bytes");
            }
        }
    }
}

/// The tests' plan: 200 requests per second per victim for 10 s.
fn plan(service: Service, family: Family) -> Plan {
    Plan::new(service, family)
}

/// One run of the attack on `service` over `family`, with or without the
/// filter on `wan0`, in a lab of its own.
fn run(service: Service, family: Family, with_filter: bool) -> Measured {
    run_plan(plan(service, family), with_filter)
}

fn run_plan(plan: Plan, with_filter: bool) -> Measured {
    let mut lab = FilterLab::build();
    lab.topo.add_wan_host().expect("adding the attacker");
    let mut amplifier = Amplifier::prepare(&lab.topo, plan).expect("staging the attack");
    if with_filter {
        // Generic (skb) mode: a veth in native mode hands XDP_TX frames to
        // its peer only when the peer runs an XDP program too (a real NIC
        // sends them itself); in skb mode they leave through wan0's queue.
        // (GRO on the peer is not enough: tried, wan0's ethtool -S counted
        // 256 xdp_tx, the peer's ring, and 2,664 xdp_tx_errors.)
        let out = lab.attach(Some("skb"));
        assert!(out.contains("skb mode"), "{out}");
    }
    let before = with_filter.then(|| lab.stats());
    let run = amplifier.attack(&lab.topo).expect("the attack");
    let filter = before.map(|before| lab.stats().since(&before));
    Measured { run, filter }
}

/// The gateway's own lookups upstream during the attack (one `dig` every
/// 500 ms, one query each, no retry): every one answered, its query and its
/// answer counted at the gateway's stack, one each (an answer the filter
/// dropped fails its lookup and is missing there), and as many as the
/// attack's length allows on the host (each lookup ends within dig's 2 s
/// timeout: at least one per 3 s). An emulated CPU starts few processes in
/// that time (Linux 6.1 under TCG, beside a second guest, managed one in
/// 10 s) and says so.
fn assert_upstream(run: &Run, plan: &Plan) {
    assert_eq!(
        run.upstream_ok, run.upstream_total,
        "failed upstream lookups: {run:?}"
    );
    assert_eq!(
        run.upstream_queries, run.upstream_total,
        "upstream queries at the gateway's stack, one per lookup: {run:?}"
    );
    assert_eq!(
        run.upstream_answers, run.upstream_ok,
        "upstream answers at the gateway's stack, one per lookup: {run:?}"
    );
    let expected = plan.duration.as_secs() / 3;
    if kernel::emulated() && run.upstream_total < expected {
        process::note(format!(
            "{:?} attack under emulation: {} upstream lookups, fewer than the host's {expected}",
            plan.service, run.upstream_total
        ));
        assert!(run.upstream_total >= 1, "no upstream lookup: {run:?}");
    } else {
        assert!(
            run.upstream_total >= expected,
            "{} upstream lookups in the {:?} attack, expected one per 3 s at least: {run:?}",
            run.upstream_total,
            plan.duration
        );
    }
}

/// The reflection attack on a DNS server on the gateway, without and with
/// the filter (default settings).
#[test]
fn a_dns_server_on_the_gateway_is_no_amplifier() {
    dns_attack(Family::V4);
}

/// The same over IPv6 (sources grouped by /64 and /56), where the
/// truncated answers are built for IPv6.
#[test]
fn a_dns_server_on_the_gateway_is_no_amplifier_over_ipv6() {
    dns_attack(Family::V6);
}

/// Spoofed queries for the big TXT record from every address of the
/// victims' /24 in turn (about 2.4 per second each: under every source's
/// limit), during the resolvers' lookups: one name from one prefix, the
/// name level limits them as it limits three victims.
#[test]
fn a_dns_flood_from_every_address_of_a_prefix_is_limited() {
    dns_attack_plan(Plan {
        victims: Victims::WholePrefix,
        ..plan(Service::Dns, Family::V4)
    });
}

fn dns_attack(family: Family) {
    dns_attack_plan(plan(Service::Dns, family));
}

fn dns_attack_plan(plan: Plan) {
    let family = plan.family;
    let title = format!("{family:?} ({:?} victims)", plan.victims);
    let started = Instant::now();
    let without = run_plan(plan, false);
    without.print(&format!("{title} without the filter"));
    let with = run_plan(plan, true);
    with.print(&format!("{title} with the filter"));
    println!("both runs took {:?}", started.elapsed());

    // The baseline is an amplifier: every spoofed query reached the server,
    // and the victims got several times the bytes of the queries (a full
    // answer is 3 KB, 38 times its query; dnsmasq on an emulated CPU falls
    // behind and answered a third of them on Linux 6.12 under TCG, 9 times).
    assert!(
        without.stack_queries <= without.queries_sent
            && without.stack_queries + without.path_drops >= without.queries_sent,
        "{without:?}"
    );
    assert!(
        without.wire_bytes > without.queries_bytes * 5,
        "the baseline's answers to the victims: {without:?}"
    );
    // The bytes sent to the victims per spoofed query (the runs may send
    // a few less than planned) fall by at least 90 %: the figure,
    // for a server that answers the planned 200 queries per second per
    // victim. This job runs alone on the host (xtask/src/suite.rs: ALONE),
    // where the attack runs at that rate: there the figure is always
    // checked. Only an emulated CPU is too slow to send at that rate (Linux
    // 6.1 under emulation sends about half) or to answer it (the baseline's
    // answers under 20 times the queries' bytes), and says so.
    let planned = plan.planned();
    let full_scale =
        with.queries_sent * 10 >= planned * 9 && without.wire_bytes >= without.queries_bytes * 20;
    let scale = format!(
        "the attack ran at {} of the planned {planned} queries, the baseline's answers at {} \
         times the queries' bytes",
        with.queries_sent,
        without.wire_bytes / without.queries_bytes.max(1)
    );
    assert!(
        full_scale || kernel::emulated(),
        "{scale}: the 90 % figure needs the planned rate answered in full on this machine"
    );
    if full_scale {
        assert!(
            with.wire_bytes * without.queries_sent * 10 <= without.wire_bytes * with.queries_sent,
            "to the victims: {} bytes for {} queries with the filter, {} for {} without",
            with.wire_bytes,
            with.queries_sent,
            without.wire_bytes,
            without.queries_sent
        );
        assert!(with.stack_queries < with.queries_sent / 10, "{with:?}");
    } else {
        process::note(format!(
            "{family:?} DNS attack under emulation: {scale}; the 90 % figure is not \
             checked, the prefix's budget and the byte bound are"
        ));
    }
    // One name from one prefix: the name level's budget over the attack's
    // 10 s, and 2 s for the last queries and answers.
    let defaults = filter_common::Config::DEFAULT;
    let budget = u64::from(defaults.dns_query_name_burst)
        + u64::from(defaults.dns_query_name_rate) * (plan.duration.as_secs() + 2);
    assert!(
        with.stack_queries <= budget,
        "{} of the victims' queries reached the stack, over the name's budget of {budget}: {with:?}",
        with.stack_queries
    );
    // At any rate, the victims got at most the budget's answers (each at
    // most the EDNS size, 4096 bytes, with the headers of its fragments)
    // and a truncated answer per other query, never longer than the query.
    let answer_max = 4096 + 512;
    assert!(
        with.wire_bytes <= budget * answer_max + with.queries_bytes,
        "to the victims: {} bytes, over {budget} full answers and a truncated one per query \
         ({} bytes of queries): {with:?}",
        with.wire_bytes,
        with.queries_bytes
    );
    let stats = with.filter.as_ref().unwrap();
    // The name level limits the attack; no catch-all is reached.
    let limited = stats.packets(Reason::DropDnsQueryName);
    let truncated = stats.packets(Reason::TxDnsTruncated);
    assert!(limited > 0 && truncated > 0, "{stats:?}");
    for catch_all in [
        Reason::DropDnsQuerySource,
        Reason::DropDnsQueryPrefix,
        Reason::DropDnsQueryGlobal,
    ] {
        assert_eq!(stats.packets(catch_all), 0, "{catch_all:?}: {stats:?}");
    }
    // Every spoofed query that reached XDP was passed (and seen by the
    // stack), limited or truncated; the others were lost on the way (a VM
    // with one emulated CPU loses a few in the links' queues).
    assert!(
        with.stack_queries + limited + truncated + as_responses(stats) + with.path_drops
            >= with.queries_sent,
        "{with:?}"
    );
    // No slip or drop against the resolvers: every query the filter passed
    // that is not a victim's (counted at the stack) is a resolver's try
    // over UDP (dig: one per lookup and retry), and every one passed.
    let all = with.lookups(|_| true);
    let resolver_queries = stats
        .packets(Reason::PassDnsQuery)
        .saturating_sub(with.stack_queries);
    assert_eq!(
        resolver_queries,
        all.total + all.retries,
        "the resolvers' queries passed by the filter: {with:?}, {stats:?}"
    );

    // Every real lookup was answered, with and without the filter.
    for run in [&without, &with] {
        let all = run.lookups(|_| true);
        // Every resolver looked up (a VM with one CPU manages a few each,
        // the host about 35).
        assert!(
            run.resolvers.iter().all(|(_, lookups)| lookups.total > 0),
            "a resolver made no lookup: {run:?}"
        );
        assert_eq!(all.answered, all.total, "unanswered lookups: {run:?}");
        assert_upstream(run, &plan);
    }
    // No resolver was limited, neither the farm in a /24 of its own nor
    // those in the victims' /24 (they ask other names): never sent to TCP
    // by a slip, and at full scale answered at the first try. (A slow
    // machine's dnsmasq makes them retry now and then, with or without the
    // filter: Linux 6.1 under emulation, 2 retries of 6 lookups without.)
    assert_eq!(all.over_tcp, 0, "{with:?}");
    // The resolvers are dig processes: an emulated CPU runs fewer of them
    // than planned even when the spoofed attack keeps its rate, so what
    // they show is checked on the host (where `full_scale` always holds).
    let farm = with.lookups(own_prefix);
    if full_scale && !kernel::emulated() {
        assert_eq!(all.retries, 0, "{with:?}");
        // The farm of issue 27: 8 resolvers at about 4 lookups a second.
        assert!(farm.total >= 8 * 20, "the farm's lookups: {farm:?}");
    } else {
        process::note(format!(
            "{family:?} DNS attack under emulation: the resolvers made {} lookups ({} retries), \
             not checked for retries",
            all.total, all.retries
        ));
    }

    // Dropped queries never reached conntrack.
    assert!(
        without.conntrack_peak >= without.conntrack_before + without.queries_sent / 2,
        "the baseline's conntrack table: {without:?}"
    );
    assert!(
        with.conntrack_peak - with.conntrack_before
            <= (without.conntrack_peak - without.conntrack_before) / 5,
        "conntrack with the filter: {with:?}; without: {without:?}"
    );
}

/// The same attack on an NTP server on the gateway: mode 3 requests are
/// limited (no slip: an NTP answer is as large as its request), monlist
/// requests stay dropped by the reflection defence.
#[test]
fn an_ntp_server_on_the_gateway_is_no_amplifier() {
    let without = run(Service::Ntp, Family::V4, false);
    without.print("without the filter");
    let with = run(Service::Ntp, Family::V4, true);
    with.print("with the filter");

    // chronyd answers client requests (most of them: it falls behind on a
    // loaded machine), never a monlist request.
    assert!(
        without.stack_queries <= without.queries_sent
            && without.stack_queries + without.path_drops >= without.queries_sent,
        "{without:?}"
    );
    let answered = without.queries_sent - without.monlist_sent;
    assert!(
        without.wire_packets >= answered / 2,
        "the baseline's answers to the victims: {without:?}"
    );
    assert!(
        with.wire_bytes * 10 <= without.wire_bytes,
        "to the victims: {} bytes with the filter, {} without",
        with.wire_bytes,
        without.wire_bytes
    );
    let stats = with.filter.as_ref().unwrap();
    let limited = [
        Reason::DropNtpQuerySource,
        Reason::DropNtpQueryPrefix,
        Reason::DropNtpQueryGlobal,
    ]
    .iter()
    .map(|reason| stats.packets(*reason))
    .sum::<u64>();
    // Every monlist request that reached XDP dropped.
    let control = stats.packets(Reason::DropNtpControl);
    assert!(
        control <= with.monlist_sent && control + with.path_drops >= with.monlist_sent,
        "monlist requests: {with:?}"
    );
    assert_eq!(stats.packets(Reason::TxDnsTruncated), 0, "{stats:?}");
    assert!(
        with.stack_queries + limited + control + as_responses(stats) + with.path_drops
            >= with.queries_sent,
        "{with:?}"
    );
    assert!(with.stack_queries < with.queries_sent / 10, "{with:?}");
    for run in [&without, &with] {
        let all = run.lookups(|_| true);
        assert!(
            run.resolvers
                .iter()
                .all(|(_, exchanges)| exchanges.total > 0),
            "a client made no exchange: {run:?}"
        );
        assert_eq!(all.answered, all.total, "failed exchanges: {run:?}");
        assert_upstream(run, &plan(Service::Ntp, Family::V4));
    }
    assert!(
        with.conntrack_peak - with.conntrack_before
            <= (without.conntrack_peak - without.conntrack_before) / 5,
        "conntrack with the filter: {with:?}; without: {without:?}"
    );
}

/// Spoofed queries whose random source port is a watched amplification port
/// (chargen, SSDP, memcached, ...): the filter takes them for unsolicited
/// responses from an amplifier and drops them before any query limit (2 of
/// 6,000 in a run, typically).
fn as_responses(stats: &Stats) -> u64 {
    stats.packets(Reason::DropUnsolicitedOther)
}
