//! End-to-end proof of the reflection defence: real DNS and NTP servers on the
//! lab's internet (dnsmasq, chronyd), real clients on the gateway and on the
//! LAN client behind NAT (dig, chronyd -Q), the filter attached to the
//! gateway's `wan0` by the real filter-ctl, and an attacker on the WAN segment
//! flooding `wan0` with spoofed DNS responses (whole and fragmented, IPv4 and
//! IPv6), NTP mode 7 responses and NTP mode 7 queries
//! (harness::traffic::reflection).
//!
//! Three independent counts are compared: what the attacker sent (per kind
//! and per expected verdict), the filter's counters (per reason), and what
//! reached the gateway's stack after XDP, counted by nftables on `wan0`
//! ingress: per spoofed source range (`spoofed4`, `spoofed6`) and per real
//! server (`real_dns`, `real_ntp`) (harness::lab::Topology::stack_counters).
//!
//! Needs root. Every test builds its own lab, attacker and servers, with
//! unique names; everything is removed when a test ends, also when it fails.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use filter_common::{Action, Reason};
use harness::{
    ctl::Stats,
    fixture::FilterLab,
    lab::{self, LAN_IF, StackCounters, WAN_IF, addr},
    netns::Netns,
    process,
    servers::real::{self, Servers},
    traffic::{
        reflection::{self, Attack, Fate, Kind, Pace, Report, Target},
        sender::RawSender,
        sources::{Prefix, Sources},
    },
};

/// A lab with an attacker on the WAN segment and the filter on `wan0`.
/// Drop order: the servers stop, then the lab (pins first, which detaches
/// the filter, then the namespaces).
struct Lab {
    servers: Option<Servers>,
    lab: FilterLab,
}

fn lab(with_servers: bool) -> Lab {
    let mut lab = FilterLab::build();
    // The attacker first: its MLD reports reach wan0 before the filter counts.
    lab.topo.add_wan_host().expect("adding the attacker");
    let topo = &lab.topo;
    // Nothing on the WAN segment needs ARP or neighbour discovery: the links
    // carry only what a test sends, so the counters can be exact.
    let neighbours = topo
        .internet
        .ip(["neigh", "show", "dev", lab::INET_BRIDGE, "nud", "permanent"])
        .unwrap();
    for gw in [addr::GW_WAN4.to_string(), addr::GW_WAN6.to_string()] {
        assert!(neighbours.contains(&gw), "{gw} not permanent: {neighbours}");
    }
    let out = lab.attach(None);
    assert!(out.contains("native mode"), "{out}");
    let servers = with_servers.then(|| Servers::start(&topo.internet).expect("starting servers"));
    Lab { servers, lab }
}

impl std::ops::Deref for Lab {
    type Target = FilterLab;

    fn deref(&self) -> &FilterLab {
        &self.lab
    }
}

impl Lab {
    fn stack(&self) -> StackCounters {
        self.topo.stack_counters().expect("nft counters")
    }

    /// `status --json`: (XDP program id, XDP link id).
    fn program(&self) -> (Option<u32>, Option<u32>) {
        let status = self.status();
        (status.xdp_program_id, status.xdp_link_id)
    }

    /// The attacker's raw socket and an attack on wan0 of these kinds.
    fn attacker(&self, kinds: &[Kind]) -> (RawSender, Attack) {
        let host = &self.topo.wan_hosts[0];
        let sender = RawSender::open(host, LAN_IF).expect("raw socket");
        let target = Target {
            mac: self.gw().mac(WAN_IF).unwrap(),
            v4: addr::GW_WAN4,
            // IPv6 is routed: the LAN client is attacked on wan0 too.
            v6: vec![addr::GW_WAN6, addr::LAN_CLIENT6],
        };
        let sources = Sources::new(
            Prefix::all(&addr::SPOOFED4).unwrap(),
            Prefix::all(&addr::SPOOFED6).unwrap(),
        )
        .unwrap();
        let attack = Attack::new(target, sources, sender.mac(), kinds);
        (sender, attack)
    }

    /// Packet drops on the attack's way to wan0 (the bridge port and the
    /// internet's end of the WAN veth): a frame lost there never reached XDP.
    fn path_drops(&self) -> String {
        let mut out = String::new();
        for (ns, iface) in [
            (&self.topo.wan_hosts[0], LAN_IF),
            (&self.topo.internet, "h0"),
            (&self.topo.internet, lab::INET_IF),
            (self.gw(), WAN_IF),
        ] {
            let read = |what: &str| {
                ns.link_stat(iface, what)
                    .map_or_else(|err| format!("({err:#})"), |n| n.to_string())
            };
            out.push_str(&format!(
                "{iface}: tx_dropped {} rx_dropped {}; ",
                read("tx_dropped"),
                read("rx_dropped")
            ));
        }
        out
    }
}

/// A fixed-size flood: exactly `frames` frames (whole datagrams) at `pps`.
fn fixed_flood(sender: &RawSender, attack: &mut Attack, pps: u32, frames: u64) -> Report {
    let pace = Pace {
        pps,
        min_frames: frames,
        max_frames: frames,
    };
    reflection::flood(sender, attack, pace, &AtomicBool::new(false), None).expect("flood")
}

fn reason(name: &str) -> Reason {
    Reason::ALL
        .into_iter()
        .find(|r| r.name() == name)
        .unwrap_or_else(|| panic!("no reason named {name}"))
}

/// Asserts that every expected reason counted exactly the flood's frames and
/// bytes: as drops, or in monitor mode as would-drops with no real drops.
fn assert_counted(delta: &Stats, report: &Report, orphans_dropped: bool, monitor: bool) {
    for (name, count) in report.expected(orphans_dropped) {
        let reason = reason(name);
        if reason.action() == Action::Drop && monitor {
            assert_eq!(
                delta.would_drop(reason),
                (count.frames, count.bytes),
                "would_drop {name}: (packets, bytes) against what was sent; {delta:?}"
            );
            assert_eq!(delta.packets(reason), 0, "{name} dropped in monitor mode");
        } else {
            assert_eq!(
                (delta.packets(reason), delta.bytes(reason)),
                (count.frames, count.bytes),
                "{name}: (packets, bytes) against what was sent; {delta:?}"
            );
        }
    }
}

/// `reason` (orphans dropped) counted the flood's frames of its verdict,
/// as the sender counted them.
fn shown_as_sent(delta: &Stats, report: &Report, reason: Reason) {
    let sent = report
        .expected(true)
        .get(reason.name())
        .map_or(0, |count| count.frames);
    delta.assert_shown(reason, sent, "the flood's frames of this verdict sent");
}

/// The drop reasons' rows of `stats`, summed.
fn drops(stats: &Stats) -> u64 {
    Reason::ALL
        .into_iter()
        .filter(|r| r.action() == Action::Drop)
        .map(|r| stats.packets(r))
        .sum()
}

fn print_filter_delta(delta: &Stats) {
    println!("filter counters gained:");
    for (reason, packets, bytes) in delta.nonzero() {
        println!("  {reason:<34} {packets:>8} packets {bytes:>11} bytes");
    }
}

fn print_stack_delta(stack: &StackCounters) {
    let line: Vec<String> = stack
        .counters
        .iter()
        .filter(|(_, packets, _)| *packets > 0)
        .map(|(name, packets, _)| format!("{name} {packets}"))
        .collect();
    println!(
        "reached the gateway's stack (nftables, wan0 ingress after XDP): {}",
        if line.is_empty() {
            "nothing".to_owned()
        } else {
            line.join(", ")
        }
    );
}

/// What a client did during the flood.
#[derive(Default)]
struct Lookups {
    dig_ok: u64,
    dig_failed: Vec<String>,
    ntp_ok: u64,
    ntp_failed: Vec<String>,
    offsets: Vec<f64>,
}

/// `digs` lookups of each family and one NTP exchange of each family from
/// `ns`, one at a time, alternating.
fn lookups(ns: &Netns, digs: u32) -> Lookups {
    let mut done = Lookups::default();
    let servers: [IpAddr; 2] = [addr::SERVER4.into(), addr::SERVER6.into()];
    for i in 0..digs {
        for (v6, server) in [false, true].into_iter().zip(servers) {
            match real::dig(ns, server, v6) {
                Ok(_) => done.dig_ok += 1,
                Err(err) => done.dig_failed.push(format!("{err:#}")),
            }
        }
        if i == digs / 2 || i == digs - 1 {
            let server = servers[usize::from(i == digs - 1)];
            match real::ntp_exchange(ns, server) {
                Ok(sample) => {
                    done.ntp_ok += 1;
                    done.offsets.push(sample.offset);
                }
                Err(err) => done.ntp_failed.push(format!("{err:#}")),
            }
        }
    }
    done
}

#[test]
fn real_lookups_succeed_while_a_reflection_flood_is_dropped() {
    let mut lab = lab(true);
    // All defaults: later fragments sent before their first one are dropped
    // too (orphan_fragments=drop; `pass` is tested below).
    let (sender, mut attack) = lab.attacker(&Kind::MIX);
    let before = lab.stats();
    let stack_before = lab.stack();

    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let pace = Pace {
        pps: 50_000,
        min_frames: 120_000,
        max_frames: 600_000,
    };
    let started = Instant::now();
    let (report, gw, lan, sent_at_start, sent_at_end, lookups_took) = thread::scope(|s| {
        let flooder =
            s.spawn(|| reflection::flood(&sender, &mut attack, pace, &stop, Some(&progress)));
        // The lookups start once the flood is well under way.
        process::wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
            Ok(progress.load(Ordering::Relaxed) >= 5_000 || flooder.is_finished())
        })
        .expect("the flood did not start");
        let sent_at_start = progress.load(Ordering::Relaxed);
        let lookups_started = Instant::now();
        let gw = s.spawn(|| lookups(&lab.topo.gateway, 10));
        let lan = s.spawn(|| lookups(&lab.topo.lan, 10));
        let (gw, lan) = (gw.join().unwrap(), lan.join().unwrap());
        let lookups_took = lookups_started.elapsed();
        let sent_at_end = progress.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let report = flooder.join().unwrap().expect("flood");
        (report, gw, lan, sent_at_start, sent_at_end, lookups_took)
    });
    let (stats, stack) = lab.snapshot(|| lab.stack());
    let (delta, stack) = (stats.since(&before), stack.since(&stack_before));
    let took = started.elapsed();
    let servers = lab.servers.as_mut().expect("servers");
    servers.check_running().expect("the servers ran throughout");

    // The numbers, for the record.
    println!("=== reflection flood against wan0 during real lookups");
    println!("flood sent (attacker on the WAN segment, spoofed sources):");
    print!("{}", report.describe());
    println!(
        "  {} frames were out before the lookups started, {} when they ended ({:.2} s of lookups); \
         first-hop retries {}",
        sent_at_start,
        sent_at_end,
        lookups_took.as_secs_f64(),
        report.retries
    );
    println!("expected verdicts (orphan_fragments=drop):");
    for (name, count) in report.expected(true) {
        println!(
            "  {name:<34} {:>8} frames {:>11} bytes",
            count.frames, count.bytes
        );
    }
    print_filter_delta(&delta);
    print_stack_delta(&stack);
    let leaked = stack.packets("spoofed4") + stack.packets("spoofed6");
    let dropped = drops(&delta);
    println!(
        "flood: sent {} frames, dropped at XDP {} ({:.4} %), leaked to the stack {} (nftables)",
        report.total.frames,
        dropped,
        100.0 * dropped as f64 / report.total.frames as f64,
        leaked
    );
    for (who, done) in [("gateway", &gw), ("LAN client", &lan)] {
        println!(
            "{who}: dig {} ok, {} failed; NTP exchanges {} ok, {} failed (offsets {:?})",
            done.dig_ok,
            done.dig_failed.len(),
            done.ntp_ok,
            done.ntp_failed.len(),
            done.offsets
        );
    }
    println!(
        "real answers: {} DNS + {} NTP reached the stack; pass_solicited {}, egress_query_recorded {}; test took {:.2} s",
        stack.packets("real_dns"),
        stack.packets("real_ntp"),
        delta.packets(Reason::PassSolicited),
        delta.packets(Reason::EgressQueryRecorded),
        took.as_secs_f64()
    );

    // (a) Every real lookup and NTP exchange succeeded, during the flood.
    for (who, done) in [("gateway", &gw), ("LAN client", &lan)] {
        assert!(
            done.dig_failed.is_empty() && done.ntp_failed.is_empty(),
            "{who}: failed lookups: {:#?} {:#?}",
            done.dig_failed,
            done.ntp_failed
        );
        assert_eq!((done.dig_ok, done.ntp_ok), (20, 2), "{who}");
    }
    assert!(
        report.stopped && sent_at_end < report.total.frames,
        "the flood must outlast the lookups (raise max_frames): {report:?}"
    );

    // (c) The filter counted exactly what was sent, per reason and in bytes.
    assert_eq!(
        report.total.frames,
        dropped,
        "every flood frame dropped, nothing else; path drops: {}",
        lab.path_drops()
    );
    assert_counted(&delta, &report, true, false);

    // (b) Independently of the filter: nothing of the flood reached the stack.
    assert!(
        leaked * 1000 <= report.total.frames,
        "more than 0.1 % leaked: {leaked} of {}",
        report.total.frames
    );
    assert_eq!(leaked, 0, "no spoofed frame reached the gateway's stack");
    // Each drop, against what the sender sent (the guard, coverage.rs, reads
    // the reasons named here).
    shown_as_sent(&delta, &report, Reason::DropUnsolicitedDns);
    shown_as_sent(&delta, &report, Reason::DropNtpControl);
    shown_as_sent(&delta, &report, Reason::DropFragment);
    shown_as_sent(&delta, &report, Reason::DropOrphanFragment);

    // The real answers: one per dig, one per NTP request, all solicited.
    let (dns_answers, ntp_answers) = (stack.packets("real_dns"), stack.packets("real_ntp"));
    assert_eq!(dns_answers, gw.dig_ok + lan.dig_ok, "one answer per dig");
    assert!(
        ntp_answers >= gw.ntp_ok + lan.ntp_ok,
        "at least one NTP answer per exchange: {ntp_answers}"
    );
    // chronyd may send several requests per exchange: each was recorded on
    // egress and each answer consumed its entry.
    delta.assert_shown(
        Reason::PassSolicited,
        dns_answers + ntp_answers,
        "real answers at the stack (every one passed as solicited)",
    );
    delta.assert_shown(
        Reason::EgressQueryRecorded,
        dns_answers + ntp_answers,
        "real answers at the stack (one recorded query each)",
    );
    // Everything that reached the stack was a real answer.
    assert_eq!(
        stack.packets("ipv4") + stack.packets("ipv6"),
        dns_answers + ntp_answers
    );
    let mut moved: Vec<String> = delta.nonzero().into_iter().map(|(r, _, _)| r).collect();
    moved.sort_unstable();
    assert_eq!(
        moved,
        [
            "drop_fragment",
            "drop_ntp_control",
            "drop_orphan_fragment",
            "drop_unsolicited_dns",
            "egress_query_recorded",
            "pass_solicited",
        ],
        "no other reason moved: {delta:?}"
    );
}

#[test]
fn monitor_mode_passes_the_flood_and_counts_what_it_would_drop() {
    let lab = lab(false);
    lab.set(&["monitor=on"]);
    let program = lab.program();
    let (sender, mut attack) = lab.attacker(&Kind::MIX);

    let before = lab.stats();
    let stack_before = lab.stack();
    let report = fixed_flood(&sender, &mut attack, 20_000, 6_000);
    lab.flush();
    let delta = lab.stats().since(&before);
    let stack = lab.stack().since(&stack_before);
    println!(
        "=== monitor mode: a flood of {} frames",
        report.total.frames
    );
    print!("{}", report.describe());
    print_filter_delta(&delta);
    print_stack_delta(&stack);

    // Everything passed: the stack saw every spoofed frame.
    let reached = stack.packets("spoofed4") + stack.packets("spoofed6");
    assert_eq!(
        reached,
        report.total.frames,
        "monitor mode passes everything; path drops: {}",
        lab.path_drops()
    );
    // And the filter counted what it would have dropped, per reason, exactly.
    assert_counted(&delta, &report, true, true);
    assert_eq!(delta.would_drops(), report.total.frames);
    assert_eq!(drops(&delta), 0, "nothing really dropped: {delta:?}");

    // Back to dropping at run time: same program, same link, no reattach.
    let out = lab.set(&["monitor=off"]);
    assert!(out.contains("monitor") && out.contains("off"), "{out}");
    assert_eq!(lab.setting("monitor"), "off");
    assert_eq!(lab.program(), program, "monitor=off did not reattach");
    let before = lab.stats();
    let stack_before = lab.stack();
    let report = fixed_flood(&sender, &mut attack, 20_000, 3_000);
    lab.flush();
    let delta = lab.stats().since(&before);
    let stack = lab.stack().since(&stack_before);
    println!("=== monitor=off: a flood of {} frames", report.total.frames);
    print_filter_delta(&delta);
    print_stack_delta(&stack);
    assert_counted(&delta, &report, true, false);
    assert_eq!(drops(&delta), report.total.frames);
    assert_eq!(delta.would_drops(), 0);
    assert_eq!(stack.packets("spoofed4") + stack.packets("spoofed6"), 0);
}

#[test]
fn settings_change_the_live_filter_and_bad_values_change_nothing() {
    let lab = lab(false);
    let program = lab.program();
    let leaked = |stack: &StackCounters| stack.packets("spoofed4") + stack.packets("spoofed6");
    let measure = |kinds: &[Kind], frames: u64| -> (Report, Stats, StackCounters) {
        let (sender, mut attack) = lab.attacker(kinds);
        let before = lab.stats();
        let stack_before = lab.stack();
        let report = fixed_flood(&sender, &mut attack, 20_000, frames);
        lab.flush();
        (
            report,
            lab.stats().since(&before),
            lab.stack().since(&stack_before),
        )
    };
    let dns = [Kind::DnsResponse4, Kind::DnsResponse6];

    // Port 53 unwatched: spoofed DNS responses are plain UDP and pass.
    lab.set(&["dns_ports=none"]);
    assert_eq!(lab.setting("dns_ports"), "none");
    let (report, delta, stack) = measure(&dns, 1_000);
    let v4 = report.kinds[&Kind::DnsResponse4].1.frames;
    let v6 = report.kinds[&Kind::DnsResponse6].1.frames;
    assert_eq!(delta.packets(Reason::PassIpv4), v4, "{delta:?}");
    assert_eq!(delta.packets(Reason::PassIpv6), v6, "{delta:?}");
    assert_eq!(delta.packets(Reason::DropUnsolicitedDns), 0);
    assert_eq!(leaked(&stack), report.total.frames);

    // Watched again: dropped again.
    lab.set(&["dns_ports=53"]);
    assert_eq!(lab.setting("dns_ports"), "53");
    let (report, delta, stack) = measure(&dns, 1_000);
    assert_counted(&delta, &report, true, false);
    assert_eq!(drops(&delta), report.total.frames);
    assert_eq!(leaked(&stack), 0);

    // The default orphan policy drops later fragments that come before their
    // first one; `pass` passes them (and counts them).
    assert_eq!(lab.setting("orphan_fragments"), "drop");
    let fragments = [Kind::DnsFragments4, Kind::DnsFragments6];
    for orphans_dropped in [true, false] {
        if !orphans_dropped {
            lab.set(&["orphan_fragments=pass"]);
        }
        let (report, delta, stack) = measure(&fragments, 1_200);
        let orphans = report.fate(Fate::Orphan).frames;
        assert!(orphans > 0);
        assert_counted(&delta, &report, orphans_dropped, false);
        assert_eq!(
            leaked(&stack),
            if orphans_dropped { 0 } else { orphans },
            "orphans_dropped={orphans_dropped}"
        );
        if !orphans_dropped {
            delta.assert_shown(
                Reason::PassOrphanFragment,
                leaked(&stack),
                "orphan fragments at the stack",
            );
        }
    }

    // Bad values are refused, naming the key, and change nothing.
    let config = lab.config();
    for (args, key) in [
        (&["monitor=maybe"][..], "monitor"),
        (&["dns_ports=53,0"], "dns_ports"),
        (&["monitor=on", "dns_ports=53,0"], "dns_ports"),
        (&["solicited_lifetime=1h"], "solicited_lifetime"),
    ] {
        let mut argv = vec!["set", "--iface", WAN_IF];
        argv.extend(args);
        let out = lab.ctl.output(lab.gw(), &argv).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(key), "{args:?}: {stderr}");
        assert_eq!(lab.config(), config, "{args:?} changed the config");
    }
    assert_eq!(lab.program(), program, "settings never reattach");
}
