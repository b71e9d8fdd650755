//! The upstream mode end to end, when the uplink itself is full: the
//! provider enforces what BIRD received from the gateway's gobgpd (as
//! nftables rules on its egress to the gateway, [`harness::bgp::Enforcer`]),
//! the uplink is shaped to 10 Mbit/s, and during a reflection flood of six
//! times that the LAN's real lookups fail without the upstream mode and are
//! answered with it.
//!
//! It measures what a flood at a given rate did, so on the host it runs
//! with no other test at once (xtask/src/suite.rs). Userspace only: it runs
//! on the host; a VM leg's guest skips it, saying so.

use std::{
    fs,
    net::IpAddr,
    sync::atomic::AtomicBool,
    thread,
    time::{Duration, Instant},
};

use harness::{
    bgp::{BgpLab, Enforcer, FLOOD_FLOW4, nets, shape, shape_uplink},
    lab::{LAN_IF, addr},
    servers::real,
    traffic::{StopOnDrop, reflection::Kind},
};
use nix::sys::signal::Signal;
use tempfile::TempDir;

/// Lookups from the LAN during the flood, each with a second to answer.
const LOOKUPS: usize = 20;
/// The uplink's capacity, and the flood: 6,000 pkt/s of 1,242-byte frames,
/// 60 Mbit/s, six times the uplink.
const UPLINK_MBIT: u32 = 10;
const FLOOD_PPS: u32 = 6000;
/// A little above the flood's rate: it spreads the flood, never slows it.
const FLOOD_MBIT: u32 = 64;

#[test]
fn a_flood_that_fills_the_uplink_is_dropped_upstream_and_the_lans_lookups_are_answered() {
    let Some(bgp) = BgpLab::build() else {
        return;
    };
    let _servers = real::Servers::start(&bgp.lab.topo.internet).expect("DNS and NTP servers");
    shape_uplink(&bgp.lab.topo, UPLINK_MBIT).unwrap();
    // The flood arrives evenly spread, as from thousands of reflectors.
    shape(&bgp.lab.topo.wan_hosts[0], LAN_IF, FLOOD_MBIT, 64).unwrap();
    let enforcer = Enforcer::start(&bgp.lab.topo.internet, &bgp.bird).unwrap();
    let server: IpAddr = addr::SERVER4.into();
    let lan = &bgp.lab.topo.lan;
    assert_eq!(
        real::lookups(lan, server, 5, Duration::ZERO).unwrap(),
        5,
        "no flood, no loss"
    );

    // Without the upstream mode: the daemon and the filter drop the flood
    // at wan0, after it crossed the uplink, where the answers are lost.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("wan0.toml");
    fs::write(&path, "").unwrap();
    let mut daemon = bgp.start_daemon(&path);
    let stop = AtomicBool::new(false);
    let (without, report) = thread::scope(|scope| {
        let stopping = StopOnDrop(&stop);
        let flooding = bgp.flood(scope, &[Kind::DnsResponse4], FLOOD_PPS, &stop);
        daemon
            .wait_for_line(
                &["attack started on wan0: drop_unsolicited_dns"],
                Duration::from_secs(10),
            )
            .unwrap();
        let answered = real::lookups(lan, server, LOOKUPS, Duration::from_millis(100)).unwrap();
        drop(stopping);
        (answered, flooding.join().unwrap())
    });
    daemon
        .wait_for_line(
            &["attack ended on wan0: drop_unsolicited_dns"],
            Duration::from_secs(10),
        )
        .unwrap();

    // With it: when wan0 receives 70% of the uplink for 2 s, the rule goes
    // to the provider, which drops the flood before the uplink.
    fs::write(
        &path,
        format!(
            "[upstream]\n\
             speaker = \"gobgp\"\n\
             uplink_capacity = \"{UPLINK_MBIT}mbit\"\n\
             uplink_percent = 70\n\
             sustain = \"2s\"\n\
             hold = \"10m\"\n"
        ),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP).unwrap();
    daemon
        .wait_for_line(
            &["upstream: gobgp (gobgpd at 127.0.0.1:50051) announces when wan0 receives 70%"],
            Duration::from_secs(5),
        )
        .unwrap();
    let stop = AtomicBool::new(false);
    let (with, announced_after, enforced_after) = thread::scope(|scope| {
        let _stopping = StopOnDrop(&stop);
        let started = Instant::now();
        let _flooding = bgp.flood(scope, &[Kind::DnsResponse4], FLOOD_PPS, &stop);
        let flows = bgp.wait_for_flows(Duration::from_secs(20), |flows| !flows.is_empty());
        let announced_after = started.elapsed();
        assert_eq!(nets(&flows), [FLOOD_FLOW4]);
        println!(
            "BIRD's flowtab4:\n{}",
            bgp.bird
                .birdc(&["show", "route", "table", "flowtab4", "all"])
                .unwrap()
        );
        harness::process::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            Ok(!enforcer.rules.lock().unwrap().is_empty())
        })
        .unwrap();
        let enforced_after = started.elapsed();
        let with = real::lookups(lan, server, LOOKUPS, Duration::from_millis(100)).unwrap();
        (with, announced_after, enforced_after)
    });
    let dropped_upstream: u64 = enforcer.counters().unwrap().iter().map(|(_, n)| n).sum();
    println!(
        "uplink {UPLINK_MBIT} Mbit/s, flood {:.0} pkt/s ({:.0} Mbit/s): LAN lookups answered \
         without the upstream mode {without}/{LOOKUPS}, with it {with}/{LOOKUPS}; rule in BIRD \
         {:.1} s and enforced {:.1} s after the flood started; {dropped_upstream} flood packets \
         dropped by the provider",
        report.rate(),
        report.total.bytes as f64 * 8.0 / report.elapsed.as_secs_f64() / 1e6,
        announced_after.as_secs_f64(),
        enforced_after.as_secs_f64()
    );
    assert!(
        without <= LOOKUPS / 2,
        "the flood should fill the uplink: {without}/{LOOKUPS} answered\n{}",
        report.describe()
    );
    assert_eq!(with, LOOKUPS, "answered with the upstream rule");
    assert!(
        dropped_upstream > u64::from(FLOOD_PPS),
        "{dropped_upstream}"
    );
}
