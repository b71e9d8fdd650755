//! Upgrades across a change of map layout: the test build of filter-ctl
//! (feature `layout-next`: a field appended to `Config` and to the lists'
//! `ListEntry`, so the settings map and the eight list tries change layout;
//! harness::ctl::next_binary, built by `cargo xtask test`) attached over a
//! running filter of the normal build, and the normal build attached back
//! over it.
//!
//! - What can be carried is carried: settings, lists (converted), counters
//!   and recorded queries (reused: same layout), in both directions.
//! - During a reflection flood with real lookups going on, upgrades and
//!   downgrades one after the other drop no answer and leak no flood
//!   packet to the stack (nftables counts both after XDP).
//! - Killed at every fault point of the upgrade (and at random times), the
//!   filter keeps working with its state, and the next attach completes it.
//!
//! Needs root. Each test builds its own lab with unique names.

use std::{
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use filter_common::Reason;
use filter_ctl_api::report::Status;
use harness::{
    ctl::{self, FilterCtl, report::Settings},
    lab::{LAN_IF, WAN_IF, addr},
    netns::Netns,
    packet::PacketBuilder,
    process,
    servers::real,
    traffic::{
        reflection::{self, Attack, Kind, Pace, Target},
        sender::RawSender,
        sources::{Prefix, Sources},
    },
};
use tests::faults::{
    Lab, Tally, kill_at, lab, points_of, random_delay, random_rounds, spoofed4, spoofed6,
};

/// The test build, driving the same pin root as the lab's normal one.
fn next(lab: &Lab) -> FilterCtl {
    let binary = ctl::next_binary().expect("the layout-next build of filter-ctl");
    lab.ctl.with_binary_at(binary)
}

/// The state an upgrade must carry, set up on the running filter; returns
/// when the hour-long allow entry was added (its expiry is checked against
/// the time since: under emulation a test takes many minutes).
fn set_state(lab: &Lab) -> Instant {
    // A recorded query must outlive an upgrade: loading the programs takes
    // seconds under emulation (Linux 6.1 in the VM legs).
    lab.set(&[
        "dns_ports=53,853",
        "solicited_lifetime=2m",
        "syn_source_burst=9",
    ]);
    lab.ctl(&[
        "deny",
        "add",
        "--iface",
        WAN_IF,
        "198.19.9.0/24",
        "2001:db8:bad::9",
    ]);
    let added = Instant::now();
    lab.ctl(&[
        "allow",
        "add",
        "--iface",
        WAN_IF,
        "192.0.2.99",
        "--for",
        "1h",
    ]);
    added
}

/// The state `set_state` made is the live one, per `ctl` and per traffic.
fn assert_state(lab: &Lab, ctl: &FilterCtl, set_at: Instant) {
    let config: Settings = ctl.config(lab.gw(), WAN_IF).expect("config");
    let value = |key: &str| {
        config
            .values()
            .find_map(|(k, v)| (k == key).then_some(v))
            .unwrap()
    };
    assert_eq!(value("dns_ports"), "53,853");
    assert_eq!(value("solicited_lifetime"), "2m");
    assert_eq!(value("syn_source_burst"), "9");
    let deny = ctl.list(lab.gw(), "deny", WAN_IF).unwrap();
    let shown: Vec<String> = deny.iter().map(|e| e.cidr.to_string()).collect();
    assert_eq!(shown, ["198.19.9.0/24", "2001:db8:bad::9/128"]);
    let allow = ctl.list(lab.gw(), "allow", WAN_IF).unwrap();
    assert_eq!(allow.len(), 1);
    let left = allow[0].expires_in_ms.expect("an expiry");
    // An hour from when it was added, give or take a second for the command.
    let since = set_at.elapsed().as_millis() as u64;
    let expected = 3_600_000u64.saturating_sub(since);
    assert!(
        left <= 3_600_000 && left + 1_000 >= expected,
        "{left} ms left, {since} ms after adding it for an hour"
    );
    let denied = [IpAddr::from(spoofed4(0x0909)), IpAddr::from(spoofed6(9))];
    assert_eq!(lab.probe(&denied, 5000), 0, "the deny list drops");
    assert_eq!(
        lab.probe(&[spoofed4(853).into()], 853),
        0,
        "port 853 is watched"
    );
    assert_eq!(
        lab.probe(&[spoofed4(0x0a0a).into()], 5000),
        1,
        "others pass"
    );
}

fn status(lab: &Lab, ctl: &FilterCtl) -> Status {
    ctl.status(lab.gw(), Some(WAN_IF)).unwrap().remove(0)
}

/// Up and down again, checking every piece of state each way, and that the
/// layout record follows the build.
#[test]
fn an_upgrade_and_a_downgrade_carry_settings_lists_counters_and_recorded_queries() {
    let lab = lab(true);
    let next = next(&lab);
    lab.attach(None);
    let set_at = set_state(&lab);
    assert!(lab.lookup_works());
    for (to, from, build) in [
        (&next, &lab.ctl, "layout-next"),
        (&lab.ctl, &next, "normal"),
    ] {
        // The other build sees another layout and refuses to change it.
        let err = to.failure(lab.gw(), &["set", "--iface", WAN_IF, "monitor=off"]);
        assert!(err.contains("whose maps differ"), "{build}: {err}");
        let problems = status(&lab, to).problems;
        assert!(
            problems.iter().any(|p| p.contains("whose maps differ")),
            "{problems:?}"
        );

        // A query recorded before the upgrade, answered after it.
        let (socket, query_id) = recorded_query(&lab);
        let before = lab.stats();
        let out = to.run(lab.gw(), ["attach", "--iface", WAN_IF]).unwrap();
        assert!(out.contains("upgraded filter on wan0"), "{build}: {out}");
        // Nothing crossed wan0 meanwhile: every counter carried as it was.
        let after = lab.stats();
        assert_eq!(after, before, "{build}: the counters carried over");
        assert!(after.packets(Reason::PassSolicited) > 0, "counters carried");
        let status = status(&lab, to);
        assert!(status.attached && status.problems.is_empty(), "{status:?}");
        assert!(
            status_of_other_build_complains(&lab, from),
            "the build left behind sees another layout"
        );
        let answered = answer(&lab, &socket, query_id);
        assert_eq!(
            answered,
            (1, 0),
            "{build}: the recorded query was carried over"
        );
        assert_state(&lab, to, set_at);
        assert!(lab.lookup_works());
    }
}

/// `status` of `ctl` reports a layout it does not share.
fn status_of_other_build_complains(lab: &Lab, ctl: &FilterCtl) -> bool {
    status(lab, ctl)
        .problems
        .iter()
        .any(|p| p.contains("whose maps differ"))
}

/// A DNS query from the gateway to the internet's router, which runs no DNS
/// server: egress records it, nobody answers. Returns the socket and the id.
fn recorded_query(lab: &Lab) -> (std::net::UdpSocket, u16) {
    let socket = lab
        .gw()
        .udp_bind(SocketAddr::new(addr::GW_WAN4.into(), 0))
        .unwrap();
    let id: u16 = rand::random();
    let mut query = vec![0u8; 12];
    query[..2].copy_from_slice(&id.to_be_bytes());
    query[5] = 1; // one question (none follows: enough for the filter)
    socket
        .send_to(&query, SocketAddr::new(addr::INET_WAN4.into(), 53))
        .unwrap();
    thread::sleep(Duration::from_millis(50));
    (socket, id)
}

/// Sends the answer to `socket`'s query twice from the router's address;
/// (answers received, duplicates received): a recorded query lets exactly
/// one through.
fn answer(lab: &Lab, socket: &std::net::UdpSocket, id: u16) -> (u32, u32) {
    let port = socket.local_addr().unwrap().port();
    let mut response = tests::faults::DNS_RESPONSE.to_vec();
    response[..2].copy_from_slice(&id.to_be_bytes());
    let frame = PacketBuilder::ipv4(addr::INET_WAN4, addr::GW_WAN4)
        .macs(lab.probe.mac().0, lab.gw_mac.0)
        .udp(53, port)
        .payload(&response)
        .build();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = 0;
    for _ in 0..2 {
        lab.probe.send(&frame.bytes).unwrap();
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if from.port() == 53 && n == response.len() && buf[..2] == id.to_be_bytes() {
                got += 1;
            }
        }
    }
    (got.min(1), got.saturating_sub(1))
}

/// Real lookups from the gateway and the LAN client while spoofed DNS
/// responses flood wan0, and meanwhile the filter is upgraded and
/// downgraded three times each: every lookup answered, every answer passed
/// as solicited, no flood frame at the stack.
#[test]
fn upgrades_during_a_flood_drop_no_answer_and_leak_nothing() {
    let lab = lab(true);
    let next = next(&lab);
    lab.attach(None);
    let set_at = set_state(&lab);
    let host = &lab.topo.wan_hosts[0];
    let sender = RawSender::open(host, LAN_IF).unwrap();
    let mut attack = Attack::new(
        Target {
            mac: lab.gw_mac,
            v4: addr::GW_WAN4,
            v6: vec![addr::GW_WAN6, addr::LAN_CLIENT6],
        },
        Sources::new(
            Prefix::all(&addr::SPOOFED4).unwrap(),
            Prefix::all(&addr::SPOOFED6).unwrap(),
        )
        .unwrap(),
        sender.mac(),
        &[Kind::DnsResponse4, Kind::DnsResponse6, Kind::DnsFragments4],
    );
    let before = lab.stats();
    let stack_before = lab.topo.stack_counters().unwrap();
    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let swaps_done = AtomicBool::new(false);
    let (report, gw, lan, swaps) = thread::scope(|s| {
        let flooder = s.spawn(|| {
            let pace = Pace {
                pps: 20_000,
                min_frames: 10_000,
                max_frames: 2_000_000,
            };
            reflection::flood(&sender, &mut attack, pace, &stop, Some(&progress))
        });
        process::wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
            Ok(progress.load(Ordering::Relaxed) >= 2_000)
        })
        .expect("the flood did not start");
        let gw = s.spawn(|| lookups_until(&lab.topo.gateway, &swaps_done));
        let lan = s.spawn(|| lookups_until(&lab.topo.lan, &swaps_done));
        let mut swaps = Vec::new();
        for round in 0..6 {
            let ctl = if round % 2 == 0 { &next } else { &lab.ctl };
            thread::sleep(Duration::from_millis(300));
            let out = ctl.run(lab.gw(), ["attach", "--iface", WAN_IF]).unwrap();
            swaps.push(out.trim().to_owned());
        }
        swaps_done.store(true, Ordering::Relaxed);
        let (gw, lan) = (gw.join().unwrap(), lan.join().unwrap());
        stop.store(true, Ordering::Relaxed);
        let report = flooder.join().unwrap().expect("flood");
        (report, gw, lan, swaps)
    });
    let (stats, stack) = lab.settled();
    let (delta, stack) = (stats.since(&before), stack.since(&stack_before));
    let leaked = stack.packets("spoofed4") + stack.packets("spoofed6");
    let answers = stack.packets("real_dns");
    println!(
        "upgrades during a flood: {} swaps ({}); flood {} frames, leaked to the stack {leaked}; \
         lookups gateway {} ok {} failed, LAN {} ok {} failed; real DNS answers at the stack \
         {answers}, pass_solicited {}, drop_unsolicited_dns {}",
        swaps.len(),
        swaps.join("; "),
        report.total.frames,
        gw.0,
        gw.1.len(),
        lan.0,
        lan.1.len(),
        delta.packets(Reason::PassSolicited),
        delta.packets(Reason::DropUnsolicitedDns),
    );
    assert!(
        swaps
            .iter()
            .all(|out| out.starts_with("upgraded filter on wan0")),
        "{swaps:?}"
    );
    assert!(
        gw.1.is_empty() && lan.1.is_empty(),
        "failed lookups: {:?} {:?}",
        gw.1,
        lan.1
    );
    assert_eq!(leaked, 0, "no flood frame reached the stack");
    assert_eq!(answers, gw.0 + lan.0, "one answer per lookup, none lost");
    assert_eq!(
        delta.packets(Reason::PassSolicited),
        answers,
        "every answer passed as solicited, counted across the swaps"
    );
    assert!(report.total.frames > 10_000, "{report:?}");
    // Six swaps: the last one took the normal build back.
    assert_state(&lab, &lab.ctl, set_at);
}

/// Real lookups (IPv4 and IPv6) from `ns` until `done` is set, and a few
/// more after: (answered, errors of the failed ones).
fn lookups_until(ns: &Netns, done: &AtomicBool) -> (u64, Vec<String>) {
    let (mut ok, mut failed) = (0u64, Vec::new());
    let mut after = 0;
    while after < 4 {
        if done.load(Ordering::Relaxed) {
            after += 1;
        }
        for (v6, server) in [
            (false, IpAddr::from(addr::SERVER4)),
            (true, addr::SERVER6.into()),
        ] {
            match real::dig(ns, server, v6) {
                Ok(_) => ok += 1,
                Err(err) => failed.push(format!("{err:#}")),
            }
        }
    }
    (ok, failed)
}

/// The upgrade killed at each of its fault points and at random times: the
/// filter keeps running with its state and lookups work; `status` is clean
/// or names the command that finishes; the next attach does.
#[test]
fn an_upgrade_killed_anywhere_keeps_the_filter_and_its_state() {
    let lab = lab(true);
    let next = next(&lab);
    lab.attach(None);
    let set_at = set_state(&lab);
    let upgrade = ["attach", "--iface", WAN_IF];
    let (points, took) = points_of(&next, lab.gw(), &upgrade);
    lab.attach(None);
    let mut tally = Tally::default();
    let rounds = (1..=points.len())
        .map(Some)
        .chain((0..random_rounds(8)).map(|_| None));
    for k in rounds {
        let ending = kill_at(&next, lab.gw(), &upgrade, k, random_delay(took));
        assert!(lab.lookup_works(), "a lookup after a kill at {k:?}");
        let denied = [IpAddr::from(spoofed4(0x0909))];
        assert_eq!(lab.probe(&denied, 5000), 0, "the deny list drops");
        assert_eq!(
            lab.probe(&[spoofed4(853).into()], 853),
            0,
            "port 853 is watched"
        );
        // Clean for one build, or a problem that names the fix.
        let problems: Vec<String> = [&lab.ctl, &next]
            .iter()
            .flat_map(|ctl| status(&lab, ctl).problems)
            .collect();
        assert!(
            problems
                .iter()
                .all(|p| p.contains("filter-ctl attach --iface wan0")
                    || p.contains("attach` with this build")),
            "{problems:?}"
        );
        let was_new = status(&lab, &next).problems.is_empty();
        tally.record(ending, k.is_some(), was_new);
        // The next attach of the new build finishes it; the old build's
        // takes it back for the next round.
        next.run(lab.gw(), upgrade).unwrap();
        assert!(status(&lab, &next).problems.is_empty());
        assert_state(&lab, &next, set_at);
        lab.attach(None);
        assert_state(&lab, &lab.ctl, set_at);
    }
    tally.finish(points, "upgrade to another map layout");
}

/// A filter attached by a build before the query limits (issue 12): its
/// WATCHED_PORTS (layout version 1) gives no port a service role. Made to
/// look so by hand (the roles cleared, version 1 recorded), it is refused by
/// `set` and upgraded by `attach`, which keeps its watched ports and adds
/// the default service ports.
#[test]
fn ports_of_a_build_without_query_limits_get_the_default_service_ports() {
    use aya::maps::{Array, Map, MapData};
    use filter_common::{ServiceClass, WatchedPorts, map};

    let lab = lab(false);
    lab.attach(None);
    lab.set(&["dns_ports=53,853"]);
    let dir = lab.status().pin_dir;
    {
        let data = MapData::from_pin(dir.join(map::WATCHED_PORTS)).unwrap();
        let mut ports: Array<MapData, WatchedPorts> = Array::try_from(Map::Array(data)).unwrap();
        for slot in 0..WatchedPorts::SLOTS {
            let mut roles = Box::new(ports.get(&slot, 0).unwrap());
            for port in 0..=u16::MAX {
                roles.set_service(port, ServiceClass::None);
            }
            ports.set(slot, &*roles, 0).unwrap();
        }
    }
    let record = dir.join("LAYOUT");
    let layout = std::fs::read_link(&record).unwrap();
    let layout = layout.to_string_lossy();
    assert!(layout.contains(" WATCHED_PORTS=v2:"), "{layout}");
    std::fs::remove_file(&record).unwrap();
    std::os::unix::fs::symlink(
        layout.replace(" WATCHED_PORTS=v2:", " WATCHED_PORTS=v1:"),
        &record,
    )
    .unwrap();

    let err = lab.failure(&["set", "--iface", WAN_IF, "monitor=off"]);
    assert!(
        err.contains("whose maps differ") && err.contains("WATCHED_PORTS"),
        "{err}"
    );
    let out = lab.attach(None);
    assert!(out.contains("upgraded filter on wan0"), "{out}");
    let settings = lab.config();
    assert_eq!(settings.dns_service_ports, [53].into());
    assert_eq!(settings.ntp_service_ports, [123].into());
    assert_eq!(settings.dns_ports, [53, 853].into());
}
