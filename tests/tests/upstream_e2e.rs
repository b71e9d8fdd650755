//! End-to-end tests of the daemon's upstream mode with real BGP peers in
//! the lab ([`harness::bgp`]): gobgpd (or ExaBGP) on the gateway, driven by
//! `filter-ctl daemon`, peering over the WAN link with BIRD 2 as the
//! provider's router. An attacker on the WAN segment floods `wan0` with
//! spoofed DNS responses.
//!
//! What is checked, in BIRD's own tables (`birdc show route table flowtab4
//! all`, `flowtab6`, `master4`): an attack puts exactly the expected
//! FlowSpec rule there and its end withdraws it; RTBH carries the
//! BLACKHOLE community on the /32; a dry run announces nothing; max_rules
//! holds; a daemon killed and restarted neither announces again (BIRD's
//! route keeps its time) nor loses the route, and withdraws what its new
//! config no longer wants; a session down when the attack starts gets the
//! rule once it is up; the same through ExaBGP. The provider enforcing
//! the rule during a flood that fills the uplink is
//! `upstream_uplink_e2e.rs`.
//!
//! Userspace only: they run on the host; a VM leg's guest skips them
//! (`vm-test --tests all`), saying so.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
    thread,
    time::{Duration, Instant},
};

use filter_ctl::daemon::upstream::status::{RouteState, UpstreamStatus};
use harness::{
    bgp::{BIRD_SESSION4, BgpLab, BirdRoute, FLOOD_FLOW4, FLOOD_FLOW6, FRAGMENTS_FLOW4, nets},
    ctl::daemon::{Daemon, samples},
    lab::WAN_IF,
    traffic::{StopOnDrop, reflection::Kind},
};
use nix::sys::signal::Signal;
use tempfile::TempDir;

/// A config file with `[upstream]` (gobgp, announcing after 1 s over 300
/// pkt/s, holding for `hold`) and `extra` keys of the section.
fn config(dir: &TempDir, name: &str, hold: &str, extra: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(
        &path,
        format!(
            "[upstream]\n\
             speaker = \"gobgp\"\n\
             attack_pps = 300\n\
             sustain = \"1s\"\n\
             hold = \"{hold}\"\n\
             {extra}\n"
        ),
    )
    .unwrap();
    path
}

fn upstream_status(bgp: &BgpLab) -> UpstreamStatus {
    let json = bgp
        .lab
        .ctl(&["upstream", "status", "--iface", WAN_IF, "--json"]);
    serde_json::from_str(&json).unwrap_or_else(|err| panic!("upstream status: {err}: {json}"))
}

/// One sample of the daemon's `/metrics`.
fn metric(bgp: &BgpLab, daemon: &Daemon, series: &str) -> f64 {
    let (_, text) = daemon.get(bgp.lab.gw(), "/metrics").expect("scrape");
    samples(&text)
        .get(series)
        .copied()
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Kills `daemon` (kill -9) while the attack goes on and starts another
/// with `config` (a hold of 3 s at most): it finds its route at the speaker,
/// the attack claims it, and BIRD's routes stay `before` (not announced
/// again: the same time; not lost), with nothing announced by the new one.
fn restart_during_the_attack(
    bgp: &BgpLab,
    daemon: Daemon,
    config: &Path,
    before: &[BirdRoute],
) -> Daemon {
    daemon.signal(Signal::SIGKILL).unwrap();
    daemon.stop().unwrap();
    let mut daemon = bgp.start_daemon(config);
    daemon
        .wait_for_line(
            &["was announced before this daemon started: kept"],
            Duration::from_secs(10),
        )
        .unwrap();
    // Longer than the hold: the attack under way claimed it.
    thread::sleep(Duration::from_secs(4));
    assert_eq!(bgp.bird.flows().unwrap(), before, "announced again or lost");
    assert_eq!(
        metric(
            bgp,
            &daemon,
            "wan_filter_upstream_announced_total{iface=\"wan0\"}"
        ),
        0.0
    );
    daemon
}

const ANNOUNCED_FLOWSPEC: &str =
    "wan_filter_upstream_announcements{iface=\"wan0\",kind=\"flowspec\"}";

#[test]
fn an_attack_puts_its_flowspec_rules_in_birds_tables_and_its_end_withdraws_them() {
    let Some(bgp) = BgpLab::build() else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let mut daemon = bgp.start_daemon(&config(&dir, "wan0.toml", "1s", ""));
    let stop = AtomicBool::new(false);
    // Whole responses over both families, and fragmented ones over IPv4:
    // their later fragments are dropped as drop_fragment.
    let kinds = [Kind::DnsResponse4, Kind::DnsResponse6, Kind::DnsFragments4];
    let (announced_after, withdrawn_after) = thread::scope(|scope| {
        let stopping = StopOnDrop(&stop);
        let started = Instant::now();
        let flooding = bgp.flood(scope, &kinds, 1000, &stop);
        let flows = bgp.wait_for_flows(Duration::from_secs(15), |flows| flows.len() == 3);
        let announced_after = started.elapsed();
        // Exactly the expected rules: destination, protocol, source port,
        // length, or the fragment bit; discard (traffic-rate 0).
        assert_eq!(
            nets(&flows),
            [FRAGMENTS_FLOW4, FLOOD_FLOW4, FLOOD_FLOW6],
            "{flows:#?}"
        );
        for flow in &flows {
            println!("BIRD: {}\n\t{}", flow.line, flow.attributes.join("\n\t"));
            assert_eq!(
                flow.attribute("BGP.ext_community"),
                Some("(generic, 0x80060000, 0x0)"),
                "{flow:#?}"
            );
            // The daemon's mark (LOCAL_PREF 4242) stays inside the AS.
            assert_eq!(flow.attribute("BGP.local_pref"), Some("100"), "{flow:#?}");
        }
        let line = daemon
            .wait_for_line(
                &[
                    "upstream: announced flowspec destination 203.0.113.2/32 protocol udp \
                     source-port 53 packet-length >=1228 then discard",
                    "attack on wan0: drop_unsolicited_dns",
                ],
                Duration::from_secs(5),
            )
            .unwrap();
        assert!(line.contains("gobgpd 127.0.0.1:50051"), "{line}");
        // The operator sees them: status and metrics.
        thread::sleep(Duration::from_millis(1200));
        let status = upstream_status(&bgp);
        assert_eq!(status.live().count(), 3, "{status:#?}");
        let mut reasons: Vec<_> = status
            .routes
            .iter()
            .filter(|route| route.state == RouteState::Announced)
            .map(|route| route.reasons.join(","))
            .collect();
        reasons.sort_unstable();
        assert_eq!(
            reasons,
            [
                "drop_fragment",
                "drop_unsolicited_dns",
                "drop_unsolicited_dns"
            ],
            "{status:#?}"
        );
        let text = bgp.lab.ctl(&["upstream", "status", "--iface", WAN_IF]);
        assert!(
            text.contains("3 routes announced") && text.contains(&status.routes[0].text),
            "{text}"
        );
        assert_eq!(metric(&bgp, &daemon, ANNOUNCED_FLOWSPEC), 3.0);
        assert_eq!(
            metric(
                &bgp,
                &daemon,
                "wan_filter_upstream_announced_total{iface=\"wan0\"}"
            ),
            3.0
        );

        drop(stopping);
        let stopped = Instant::now();
        let report = flooding.join().unwrap();
        assert!(report.total.frames > 1000, "{}", report.describe());
        bgp.wait_for_flows(Duration::from_secs(15), <[BirdRoute]>::is_empty);
        (announced_after, stopped.elapsed())
    });
    daemon
        .wait_for_line(
            &["upstream: withdrew flowspec destination 2001:db8:0:1::2/128"],
            Duration::from_secs(5),
        )
        .unwrap();
    let held = daemon
        .wait_for_line(
            &[
                "attack on wan0 ended: drop_unsolicited_dns",
                "stays announced for 1s",
            ],
            Duration::from_secs(1),
        )
        .unwrap();
    assert!(held.contains("then is withdrawn"), "{held}");
    thread::sleep(Duration::from_millis(1200));
    assert_eq!(metric(&bgp, &daemon, ANNOUNCED_FLOWSPEC), 0.0);
    assert_eq!(
        metric(
            &bgp,
            &daemon,
            "wan_filter_upstream_withdrawn_total{iface=\"wan0\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &bgp,
            &daemon,
            "wan_filter_upstream_speaker_errors_total{iface=\"wan0\"}"
        ),
        0.0
    );
    println!(
        "flowspec: announced in BIRD {:.1} s after the flood started (sustain 1s), \
         withdrawn {:.1} s after it stopped (attack-quiet 1s, hold 1s)",
        announced_after.as_secs_f64(),
        withdrawn_after.as_secs_f64()
    );
}

#[test]
fn rtbh_announces_the_host_route_with_the_blackhole_community() {
    let Some(bgp) = BgpLab::build() else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let mut daemon = bgp.start_daemon(&config(&dir, "wan0.toml", "1s", "mode = \"rtbh\"\n"));
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let stopping = StopOnDrop(&stop);
        let flooding = bgp.flood(scope, &[Kind::DnsResponse4], 1000, &stop);
        let routes = bgp.wait_for_blackholes(Duration::from_secs(15), |routes| !routes.is_empty());
        assert_eq!(nets(&routes), ["203.0.113.2/32"], "{routes:#?}");
        println!(
            "BIRD: {}\n\t{}",
            routes[0].line,
            routes[0].attributes.join("\n\t")
        );
        assert_eq!(
            routes[0].attribute("BGP.community"),
            Some("(65535,666) (65535,65281)"),
            "BLACKHOLE and NO_EXPORT: {routes:#?}"
        );
        // No FlowSpec rule in this mode.
        assert!(bgp.bird.flows().unwrap().is_empty());
        daemon
            .wait_for_line(
                &["upstream: announced rtbh 203.0.113.2/32 community 65535:666"],
                Duration::from_secs(5),
            )
            .unwrap();
        drop(stopping);
        flooding.join().unwrap();
        bgp.wait_for_blackholes(Duration::from_secs(15), <[BirdRoute]>::is_empty);
    });
}

#[test]
fn a_dry_run_announces_nothing_and_max_rules_holds() {
    let Some(bgp) = BgpLab::build() else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let kinds = [Kind::DnsResponse4, Kind::DnsResponse6];
    // A bad value stops the daemon before it touches anything, naming it.
    let bad = config(
        &dir,
        "bad.toml",
        "1s",
        "uplink_percent = 120\nuplink_capacity = \"1gbit\"\n",
    );
    let mut refused = Daemon::start(
        &bgp.lab.ctl,
        bgp.lab.gw(),
        WAN_IF,
        &["--config", &bad.to_string_lossy()],
    )
    .unwrap();
    let err = format!(
        "{:#}",
        refused
            .wait_for_line(&["serving metrics"], Duration::from_secs(10))
            .unwrap_err()
    );
    assert!(
        err.contains("line 6, column 18: invalid value '120' for upstream.uplink_percent: out of range (allowed: 1..100)"),
        "{err}"
    );
    let status = bgp.lab.ctl.status(bgp.lab.gw(), Some(WAN_IF)).unwrap();
    assert!(
        status.iter().all(|s| !s.attached),
        "nothing was attached: {status:?}"
    );
    let dry = bgp.start_daemon(&config(&dir, "dry.toml", "1s", "dry_run = true\n"));
    let stop = AtomicBool::new(false);
    let mut dry = thread::scope(|scope| {
        let _stopping = StopOnDrop(&stop);
        let _flooding = bgp.flood(scope, &kinds, 1000, &stop);
        let mut dry = dry;
        let line = dry
            .wait_for_line(
                &["dry run: would announce flowspec"],
                Duration::from_secs(15),
            )
            .unwrap();
        assert!(line.contains("drop_unsolicited_dns"), "{line}");
        for address in ["203.0.113.2/32", "2001:db8:0:1::2/128"] {
            dry.wait_for_line(
                &[&format!(
                    "dry run: would announce flowspec destination {address}"
                )],
                Duration::from_secs(5),
            )
            .unwrap();
        }
        // The status is published at the daemon's next tick.
        thread::sleep(Duration::from_millis(1200));
        let status = upstream_status(&bgp);
        assert!(status.dry_run, "{status:#?}");
        assert!(
            status.routes.len() == 2
                && status
                    .routes
                    .iter()
                    .all(|route| route.state == RouteState::DryRun),
            "{status:#?}"
        );
        assert_eq!(status.live().count(), 0);
        dry
    });
    // Nothing reached gobgpd, nor BIRD.
    assert!(!bgp.gobgp_rib("ipv4-flowspec").contains("destination"));
    assert!(!bgp.gobgp_rib("ipv6-flowspec").contains("destination"));
    assert!(bgp.bird.flows().unwrap().is_empty());
    dry.wait_for_line(&["dry run: would withdraw"], Duration::from_secs(10))
        .unwrap();
    dry.stop().unwrap();

    // Two addresses under attack, room for one rule.
    let mut daemon = bgp.start_daemon(&config(&dir, "one.toml", "1s", "max_rules = 1\n"));
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let stopping = StopOnDrop(&stop);
        let flooding = bgp.flood(scope, &kinds, 1000, &stop);
        let line = daemon
            .wait_for_line(
                &["routes are announced, the most max_rules allows"],
                Duration::from_secs(15),
            )
            .unwrap();
        assert!(line.contains("not announcing flowspec"), "{line}");
        let flows = bgp.wait_for_flows(Duration::from_secs(5), |flows| !flows.is_empty());
        thread::sleep(Duration::from_secs(2));
        let flows_later = bgp.bird.flows().unwrap();
        assert_eq!(flows_later.len(), 1, "{flows_later:#?}");
        assert_eq!(nets(&flows), nets(&flows_later));
        assert!(
            [FLOOD_FLOW4, FLOOD_FLOW6].contains(&flows[0].net.as_str()),
            "{flows:#?}"
        );
        assert_eq!(
            metric(
                &bgp,
                &daemon,
                "wan_filter_upstream_skipped_total{iface=\"wan0\",why=\"max_rules\"}"
            ),
            1.0
        );
        drop(stopping);
        flooding.join().unwrap();
        bgp.wait_for_flows(Duration::from_secs(15), <[BirdRoute]>::is_empty);
    });
}

#[test]
fn a_restarted_daemon_keeps_what_it_wants_and_withdraws_what_it_no_longer_wants() {
    let Some(bgp) = BgpLab::build() else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let wanted = config(&dir, "wan0.toml", "3s", "");
    let daemon = bgp.start_daemon(&wanted);
    let stop = AtomicBool::new(false);
    let daemon = thread::scope(|scope| {
        let stopping = StopOnDrop(&stop);
        let flooding = bgp.flood(scope, &[Kind::DnsResponse4], 1000, &stop);
        let before = bgp.wait_for_flows(Duration::from_secs(15), |flows| flows.len() == 1);
        assert_eq!(nets(&before), [FLOOD_FLOW4]);

        // Killed during the attack, started again: the route stays as it
        // was (BIRD got no new announcement: the same time), once.
        let daemon = restart_during_the_attack(&bgp, daemon, &wanted, &before);
        assert_eq!(
            bgp.gobgp_rib("ipv4-flowspec")
                .matches("destination")
                .count(),
            1,
            "{}",
            bgp.gobgp_rib("ipv4-flowspec")
        );
        assert_eq!(metric(&bgp, &daemon, ANNOUNCED_FLOWSPEC), 1.0);
        let status = upstream_status(&bgp);
        assert!(
            status.routes.len() == 1
                && status.routes[0].adopted
                && status.routes[0].reasons == ["drop_unsolicited_dns"],
            "{status:#?}"
        );

        // Killed again; the attack ends meanwhile.
        daemon.signal(Signal::SIGKILL).unwrap();
        drop(stopping);
        flooding.join().unwrap();
        daemon
    });
    daemon.stop().unwrap();
    assert_eq!(
        bgp.bird.flows().unwrap().len(),
        1,
        "nothing withdraws it while no daemon runs"
    );
    // Without a daemon, `upstream status --config` reads the speaker.
    let json = bgp.lab.ctl(&[
        "upstream",
        "status",
        "--iface",
        WAN_IF,
        "--config",
        &wanted.to_string_lossy(),
        "--json",
    ]);
    let status: UpstreamStatus = serde_json::from_str(&json).unwrap();
    assert!(!status.from_daemon);
    assert_eq!(
        status
            .routes
            .iter()
            .map(|r| r.text.as_str())
            .collect::<Vec<_>>(),
        [
            "flowspec destination 203.0.113.2/32 protocol udp source-port 53 packet-length >=1228 then discard"
        ]
    );
    // The next daemon no longer wants FlowSpec rules (RTBH only): it
    // withdraws the rule at once, without waiting for the hold.
    let started = Instant::now();
    let rtbh_only = config(&dir, "rtbh.toml", "1h", "mode = \"rtbh\"\n");
    let mut daemon = bgp.start_daemon(&rtbh_only);
    bgp.wait_for_flows(Duration::from_secs(10), <[BirdRoute]>::is_empty);
    assert!(started.elapsed() < Duration::from_secs(10));
    daemon
        .wait_for_line(
            &["the config no longer wants it", "withdrawing it"],
            Duration::from_secs(1),
        )
        .unwrap();
    daemon
        .wait_for_line(
            &["upstream: withdrew flowspec destination 203.0.113.2/32"],
            Duration::from_secs(5),
        )
        .unwrap();
}

#[test]
fn a_session_down_when_the_attack_starts_gets_the_rule_once_it_is_up() {
    let Some(bgp) = BgpLab::build() else {
        return;
    };
    let dir = TempDir::new().unwrap();
    bgp.bird.set_session(BIRD_SESSION4, false).unwrap();
    let mut daemon = bgp.start_daemon(&config(&dir, "wan0.toml", "1m", ""));
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let stopping = StopOnDrop(&stop);
        let flooding = bgp.flood(scope, &[Kind::DnsResponse4], 1000, &stop);
        daemon
            .wait_for_line(
                &["upstream: announced flowspec destination 203.0.113.2/32"],
                Duration::from_secs(15),
            )
            .unwrap();
        assert!(bgp.gobgp_rib("ipv4-flowspec").contains("203.0.113.2/32"));
        thread::sleep(Duration::from_secs(1));
        assert!(bgp.bird.flows().unwrap().is_empty(), "the session is down");
        drop(stopping);
        flooding.join().unwrap();
    });
    // The attack is over, the rule is held (1m): the session comes up.
    let up = Instant::now();
    bgp.bird.set_session(BIRD_SESSION4, true).unwrap();
    let flows = bgp.wait_for_flows(Duration::from_secs(20), |flows| !flows.is_empty());
    assert_eq!(nets(&flows), [FLOOD_FLOW4]);
    println!(
        "the rule reached BIRD {:.1} s after its session came up",
        up.elapsed().as_secs_f64()
    );
}

#[test]
fn exabgp_announces_through_its_process_and_a_restarted_daemon_keeps_the_rules() {
    let Some(bgp) = BgpLab::build_with_exabgp() else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("wan0.toml");
    fs::write(
        &path,
        "[upstream]\n\
         speaker = \"exabgp\"\n\
         attack_pps = 300\n\
         sustain = \"1s\"\n\
         hold = \"3s\"\n",
    )
    .unwrap();
    let daemon = bgp.start_daemon(&path);
    let stop = AtomicBool::new(false);
    let kinds = [Kind::DnsResponse4, Kind::DnsResponse6];
    let mut daemon =
        thread::scope(|scope| {
            let stopping = StopOnDrop(&stop);
            let flooding = bgp.flood(scope, &kinds, 1000, &stop);
            // The same rules as through gobgpd.
            let before = bgp.wait_for_flows(Duration::from_secs(15), |flows| flows.len() == 2);
            assert_eq!(nets(&before), [FLOOD_FLOW4, FLOOD_FLOW6], "{before:#?}");
            assert!(
                before.iter().all(|flow| flow.attribute("BGP.ext_community")
                    == Some("(generic, 0x80060000, 0x0)")),
                "{before:#?}"
            );
            let mut daemon = daemon;
            daemon
                .wait_for_line(
                    &[
                        "upstream: announced flowspec destination 203.0.113.2/32",
                        "at exabgp",
                    ],
                    Duration::from_secs(5),
                )
                .unwrap();

            // Killed during the attack and started again: the bridge tells the
            // new daemon what ExaBGP holds; nothing is announced again or lost.
            let daemon = restart_during_the_attack(&bgp, daemon, &path, &before);
            drop(stopping);
            flooding.join().unwrap();
            daemon
        });
    bgp.wait_for_flows(Duration::from_secs(15), <[BirdRoute]>::is_empty);
    daemon
        .wait_for_line(
            &[
                "upstream: withdrew flowspec destination 203.0.113.2/32",
                "at exabgp",
            ],
            Duration::from_secs(5),
        )
        .unwrap();
}
