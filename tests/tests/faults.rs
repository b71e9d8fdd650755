//! Faults around the controller: filter-ctl killed (SIGKILL, SIGTERM) in the
//! middle of `set`, `apply`, `allow|deny add` and `attach`; several
//! filter-ctl at once; pins removed and the bpf filesystem unmounted by
//! hand; the interface deleted, renamed, set down and up while the filter is
//! attached. After each, the live state must be the old one or the new one,
//! never a mix, and the next command must either work or say what to do.
//!
//! Where filter-ctl is killed: at every one of its fault points
//! (filter_ctl::fault, driven by harness::ctl::fault: a dry run lists the
//! points a command passes, then each round stops it at the next point with
//! SIGSTOP and kills it there with SIGKILL), which hits every step whose
//! order matters deterministically; and, in between, after random delays
//! over the command's whole run, which also hits the middle of long steps
//! (writing 50,000 list entries, loading the programs). The rounds, points
//! and outcomes are printed.
//!
//! "Live" is judged by what the filter does to traffic, counted by nftables
//! on `wan0` ingress after XDP (the lab's `spoofed4`/`spoofed6` counters):
//! probe frames from the spoofed ranges must all reach the stack or all be
//! dropped, and agree with what `config`/`list`/`status` say.
//!
//! Needs root. Each test builds its own lab, with unique names, removed at
//! the end even when the test fails.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use filter_ctl_api::report::{EgressHook, LinkState, Status};
use harness::{
    ctl::FilterCtl,
    kernel,
    lab::WAN_IF,
    names::TEST_PREFIX,
    netns::Netns,
    packet::PacketBuilder,
    process,
    traffic::{
        marker::{self, Counter, Marker},
        sender::RawSender,
    },
};
use nix::sys::signal::Signal;
use tests::faults::{
    Ending, Lab, RANDOM_ROUNDS, Tally, kill_at, kill_rounds, lab, points_of, random_delay,
    random_rounds, spoofed4, spoofed6,
};

/// `set` (and `apply`, when `file` is given) changing three keys at once,
/// one of them a port list (the second map): killed anywhere, the filter
/// runs on all old or all new values, and says so.
fn settings_change_is_all_or_nothing(file: Option<&str>) {
    let lab = lab(false);
    lab.attach(None);
    let old = [
        ("dns_ports", "53"),
        ("syn_source_burst", "12"),
        ("solicited_lifetime", "10s"),
    ];
    let new = [
        ("dns_ports", "53,853"),
        ("syn_source_burst", "20"),
        ("solicited_lifetime", "5s"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.toml");
    let command: Vec<String> = match file {
        Some(text) => {
            std::fs::write(&path, text).unwrap();
            vec![
                "apply".into(),
                "--iface".into(),
                WAN_IF.into(),
                path.display().to_string(),
            ]
        }
        None => ["set", "--iface", WAN_IF]
            .iter()
            .map(|s| s.to_string())
            .chain(new.iter().map(|(k, v)| format!("{k}={v}")))
            .collect(),
    };
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let reset: Vec<String> = old.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let reset: Vec<&str> = reset.iter().map(String::as_str).collect();
    let responder = [IpAddr::from(spoofed4(853))];

    let check = |tally: &mut Tally, ending: Ending, at_point: bool| {
        let values: Vec<(String, String)> = old
            .iter()
            .map(|(key, _)| (key.to_string(), lab.setting(key)))
            .collect();
        let is = |wanted: &[(&str, &str)]| {
            values
                .iter()
                .zip(wanted)
                .all(|((_, have), (_, want))| have == want)
        };
        let was_new = is(&new);
        assert!(was_new || is(&old), "a mix of settings: {values:?}");
        // An unsolicited response from port 853 is dropped exactly when the
        // settings say it is watched.
        let reached = lab.probe(&responder, 853);
        assert_eq!(reached, u64::from(!was_new), "live settings {values:?}");
        let status = lab.status();
        assert!(status.attached && status.problems.is_empty(), "{status:?}");
        tally.record(ending, at_point, was_new);
        if was_new {
            lab.set(&reset);
        }
    };

    let what = if file.is_some() { "apply" } else { "set" };
    kill_rounds(&lab, &command, || drop(lab.set(&reset)), what, check);
}

#[test]
fn set_killed_anywhere_leaves_the_old_or_the_new_settings() {
    settings_change_is_all_or_nothing(None);
}

#[test]
fn apply_killed_anywhere_leaves_the_old_or_the_new_settings() {
    settings_change_is_all_or_nothing(Some(
        "dns_ports = \"53,853\"\nsyn_source_burst = 20\nsolicited_lifetime = \"5s\"\n",
    ));
}

/// `deny add` of IPv4 and IPv6 prefixes at once: killed anywhere, either
/// every prefix is listed and drops, or none.
#[test]
fn list_add_killed_anywhere_leaves_the_old_or_the_new_list() {
    let lab = lab(false);
    lab.attach(None);
    let cidrs = [
        "198.19.1.1",
        "198.19.1.2",
        "198.19.2.0/24",
        "2001:db8:bad::7",
    ];
    let sources: Vec<IpAddr> = vec![
        spoofed4(0x0101).into(),
        spoofed4(0x0102).into(),
        spoofed4(0x0207).into(),
        spoofed6(7).into(),
    ];
    let mut command = vec!["deny", "add", "--iface", WAN_IF];
    command.extend(cidrs);
    let mut reset = vec!["deny", "del", "--iface", WAN_IF];
    reset.extend(cidrs);

    let check = |tally: &mut Tally, ending: Ending, at_point: bool| {
        let listed = lab.list("deny").len();
        assert!(
            listed == 0 || listed == cidrs.len(),
            "{listed} of {} listed",
            cidrs.len()
        );
        let was_new = listed == cidrs.len();
        let reached = lab.probe(&sources, 5000);
        assert_eq!(
            reached,
            if was_new { 0 } else { sources.len() as u64 },
            "{listed} listed"
        );
        let status = lab.status();
        assert!(status.attached && status.problems.is_empty(), "{status:?}");
        let in_use = status.map("LISTS_IN_USE").unwrap().entries.unwrap();
        assert_eq!(
            in_use,
            if was_new { 2 } else { 0 },
            "deny v4 and v6 flagged"
        );
        tally.record(ending, at_point, was_new);
        if was_new {
            lab.ctl(&reset);
        }
    };

    kill_rounds(&lab, &command, || drop(lab.ctl(&reset)), "deny add", check);
}

/// 50,000 prefixes in one `deny add`, killed (SIGKILL) or terminated
/// (SIGTERM) while it writes them: the list is empty or whole, every listed
/// entry drops, and the in-use flags agree.
#[test]
fn a_50000_prefix_add_killed_or_terminated_leaves_the_old_or_the_new_list() {
    let lab = lab(false);
    lab.attach(None);
    const COUNT: u16 = 50_000;
    let cidrs: Vec<String> = (0..COUNT).map(|n| spoofed4(n).to_string()).collect();
    let mut command = vec!["deny", "add", "--iface", WAN_IF];
    command.extend(cidrs.iter().map(String::as_str));
    let samples: Vec<IpAddr> = (0..COUNT)
        .step_by(5000)
        .map(|n| spoofed4(n).into())
        .collect();

    let started = Instant::now();
    lab.ctl(&command);
    let took = started.elapsed();
    println!("one add of {COUNT} prefixes took {took:?}");
    let mut tally = Tally::default();
    for round in 0..9 {
        lab.ctl(&["detach", "--iface", WAN_IF]);
        lab.attach(None);
        let running = lab.ctl.start(lab.gw(), &command, None).unwrap();
        // The last round lets it finish, so that the whole new list is
        // checked in every run, whatever the machine's load makes of the
        // random delays.
        let (ending, signal) = if round == 8 {
            let out = running.finish().unwrap();
            assert!(out.status.success(), "{out:?}");
            (Ending::Finished, None)
        } else {
            thread::sleep(random_delay(took));
            let signal = if round % 2 == 0 {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            let status = running.signal(signal).unwrap();
            let ending = if status.success() {
                Ending::Finished
            } else {
                assert_eq!(status.code(), None, "ended by the signal: {status}");
                Ending::Killed
            };
            (ending, Some(signal))
        };
        let listed = lab.list("deny").len();
        assert!(
            listed == 0 || listed == usize::from(COUNT),
            "{signal:?}: {listed} of {COUNT} listed"
        );
        let was_new = listed != 0;
        let reached = lab.probe(&samples, 5000);
        assert_eq!(reached, if was_new { 0 } else { samples.len() as u64 });
        let status = lab.status();
        assert_eq!(
            status.map("LISTS_IN_USE").unwrap().entries.unwrap(),
            u32::from(was_new),
            "{status:?}"
        );
        tally.record(ending, false, was_new);
        // The next change works from whatever is left.
        lab.ctl(&["deny", "add", "--iface", WAN_IF, "198.18.99.0/24"]);
    }
    tally.print("deny add of 50,000 prefixes, SIGKILL and SIGTERM alternately");
    assert!(
        tally.old > 0,
        "a kill landed while the entries were written"
    );
    assert!(tally.new > 0);
}

/// What a fresh attach left after a kill: nothing attached (the interface
/// passes everything) or a working filter; never XDP without egress. The
/// next attach works and detach leaves the interface as it was.
#[test]
fn attach_killed_anywhere_leaves_nothing_or_a_working_filter() {
    let lab = lab(true);
    let attach = ["attach", "--iface", WAN_IF];
    let (points, took) = points_of(&lab.ctl, lab.gw(), &attach);
    lab.ctl(&["detach", "--iface", WAN_IF]);
    let mut tally = Tally::default();
    let rounds = (1..=points.len())
        .map(Some)
        .chain((0..random_rounds(RANDOM_ROUNDS)).map(|_| None));
    for k in rounds {
        let ending = kill_at(&lab.ctl, lab.gw(), &attach, k, random_delay(took));
        after_a_killed_fresh_attach(&lab, ending, k.is_some(), &mut tally);
    }
    tally.finish(points, "attach (fresh)");
}

/// The first fault point of each phase of a fresh attach: programs loaded
/// (maps created, nothing attached), both links attached but not pinned,
/// the first map pinned, the egress link pinned but not the XDP link.
const ATTACH_PHASES: [&str; 4] = [
    "attach: loaded",
    "attach: ingress attached",
    "attach: map pinned",
    "attach: egress pinned",
];

/// One kill in each phase of a fresh attach. What the kernel does with a
/// killed process's programs, maps and unpinned links is what can differ
/// between kernels, so the VM leg runs this; the kills at every point and
/// at random moments (above) are the controller's own logic.
#[test]
fn attach_killed_once_in_each_phase_leaves_nothing_or_a_working_filter() {
    let lab = lab(true);
    let attach = ["attach", "--iface", WAN_IF];
    let (points, _) = points_of(&lab.ctl, lab.gw(), &attach);
    lab.ctl(&["detach", "--iface", WAN_IF]);
    let mut tally = Tally::default();
    for phase in ATTACH_PHASES {
        let k = points
            .iter()
            .position(|point| point == phase)
            .unwrap_or_else(|| panic!("attach passes no fault point {phase:?}: {points:?}"));
        let ending = kill_at(&lab.ctl, lab.gw(), &attach, Some(k + 1), Duration::ZERO);
        after_a_killed_fresh_attach(&lab, ending, true, &mut tally);
    }
    tally.points = points;
    let what = "attach (fresh), one kill per phase";
    tally.print(what);
    assert_eq!(tally.killed_at_points, ATTACH_PHASES.len());
    tally.assert_commits_once(what);
}

/// After a fresh attach was killed: either nothing filters and nothing is
/// left, or the filter works with its defaults; either way the next attach
/// works and detach leaves nothing.
fn after_a_killed_fresh_attach(lab: &Lab, ending: Ending, at_point: bool, tally: &mut Tally) {
    let unsolicited = [IpAddr::from(spoofed4(53))];
    let xdp = kernel::xdp_on(lab.gw(), WAN_IF).unwrap();
    let status = lab.status();
    let was_new = xdp.is_some();
    if was_new {
        assert!(status.attached && status.problems.is_empty(), "{status:?}");
        assert_eq!(lab.probe(&unsolicited, 53), 0, "the filter drops");
        assert!(lab.lookup_works(), "egress records: answers pass");
        assert_eq!(lab.setting("dns_ports"), "53", "default settings written");
    } else {
        assert_eq!(status.xdp_link, LinkState::Missing, "{status:?}");
        assert_eq!(lab.probe(&unsolicited, 53), 1, "nothing filters");
        assert!(lab.lookup_works());
    }
    tally.record(ending, at_point, was_new);
    let out = lab.attach(None);
    assert!(out.contains("filter on wan0"), "{out}");
    assert!(lab.lookup_works() && lab.probe(&unsolicited, 53) == 0);
    assert!(lab.status().problems.is_empty());
    lab.ctl(&["detach", "--iface", WAN_IF]);
    assert_clean(lab);
}

/// Nothing of the filter is left on the interface or in the pins.
fn assert_clean(lab: &Lab) {
    kernel::wait_no_xdp(lab.gw(), WAN_IF).unwrap();
    let qdiscs = lab
        .gw()
        .run(["tc", "qdisc", "show", "dev", WAN_IF])
        .unwrap();
    assert!(!qdiscs.contains("clsact"), "{qdiscs}");
    assert!(lab.ctl.status(lab.gw(), None).unwrap().is_empty());
    let pins = lab.ctl.pin_root();
    assert!(!pins.exists(), "{} left", pins.display());
}

/// Attaching again over a running filter, killed anywhere: the filter keeps
/// running with its settings and lists, and lookups keep working.
#[test]
fn attach_again_killed_anywhere_keeps_a_working_filter() {
    let lab = lab(true);
    lab.attach(None);
    lab.set(&["dns_ports=53,853"]);
    lab.ctl(&["deny", "add", "--iface", WAN_IF, "198.19.7.0/24"]);
    let attach = ["attach", "--iface", WAN_IF];
    let (points, took) = points_of(&lab.ctl, lab.gw(), &attach);
    let probes = [IpAddr::from(spoofed4(0x0707)), IpAddr::from(spoofed4(853))];
    let mut tally = Tally::default();
    let rounds = (1..=points.len())
        .map(Some)
        .chain((0..random_rounds(RANDOM_ROUNDS)).map(|_| None));
    for k in rounds {
        let before = lab.status().xdp_program_id;
        let ending = kill_at(&lab.ctl, lab.gw(), &attach, k, random_delay(took));
        let status = lab.status();
        assert!(status.attached && status.problems.is_empty(), "{status:?}");
        assert_eq!(lab.setting("dns_ports"), "53,853");
        assert_eq!(lab.list("deny").len(), 1);
        assert_eq!(lab.probe(&probes[..1], 5000), 0, "denied");
        assert_eq!(lab.probe(&probes[1..], 853), 0, "watched port");
        assert!(lab.lookup_works());
        tally.record(ending, k.is_some(), status.xdp_program_id != before);
    }
    tally.finish(points, "attach over a running filter");
}

/// Ten `set` at once, each changing another key: every change is there.
#[test]
fn ten_sets_at_once_lose_nothing() {
    let lab = lab(false);
    lab.attach(None);
    let rounds: [[(&str, &str); 10]; 2] = [
        [
            ("syn_source_burst", "21"),
            ("syn_prefix_burst", "61"),
            ("syn_global_burst", "4001"),
            ("syn_source_rate", "3/s"),
            ("syn_prefix_rate", "21/s"),
            ("syn_global_rate", "2001/s"),
            ("solicited_lifetime", "9s"),
            ("fragment_lifetime", "3s"),
            ("orphan_fragments", "pass"),
            ("syn_penalty", "5m"),
        ],
        [
            ("syn_source_burst", "22"),
            ("syn_prefix_burst", "62"),
            ("syn_global_burst", "4002"),
            ("syn_source_rate", "4/s"),
            ("syn_prefix_rate", "22/s"),
            ("syn_global_rate", "2002/s"),
            ("solicited_lifetime", "8s"),
            ("fragment_lifetime", "4s"),
            ("orphan_fragments", "drop"),
            ("syn_penalty", "6m"),
        ],
    ];
    for round in rounds {
        thread::scope(|s| {
            for (key, value) in round {
                let lab = &lab;
                s.spawn(move || lab.set(&[&format!("{key}={value}")]));
            }
        });
        for (key, value) in round {
            assert_eq!(lab.setting(key), value, "{key}");
        }
    }
}

/// Settings and both lists changed by eight filter-ctl at once.
#[test]
fn settings_and_lists_changed_at_once_lose_nothing() {
    let lab = lab(false);
    lab.attach(None);
    thread::scope(|s| {
        for n in 0..4u16 {
            let lab = &lab;
            s.spawn(move || {
                lab.ctl(&["deny", "add", "--iface", WAN_IF, &spoofed4(n).to_string()]);
                lab.ctl(&["allow", "add", "--iface", WAN_IF, &spoofed6(n).to_string()]);
            });
            s.spawn(move || lab.set(&[&format!("syn_source_burst={}", 30 + n)]));
            s.spawn(move || lab.set(&[&format!("fragment_lifetime={}s", 3 + n)]));
        }
    });
    assert_eq!(lab.list("deny").len(), 4);
    assert_eq!(lab.list("allow").len(), 4);
    let burst: u16 = lab.setting("syn_source_burst").parse().unwrap();
    assert!((30..34).contains(&burst), "{burst}");
    let denied: Vec<IpAddr> = (0..4).map(|n| spoofed4(n).into()).collect();
    assert_eq!(lab.probe(&denied, 5000), 0);
}

/// Two attaches at once, many times: one attaches, the other replaces; the
/// result always has every pin, the default settings, and works.
#[test]
fn two_attaches_at_once_make_one_working_filter() {
    let lab = lab(true);
    for round in 0..8 {
        if round % 2 == 1 {
            // From an attached filter with settings of its own.
            lab.attach(None);
            lab.set(&["dns_ports=53,853"]);
        }
        let outputs: Vec<String> = thread::scope(|s| {
            let handles: Vec<_> = (0..2).map(|_| s.spawn(|| lab.attach(None))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let status = lab.status();
        assert!(
            status.attached && status.problems.is_empty(),
            "{outputs:?} {status:?}"
        );
        assert_eq!(status.maps.len(), filter_common::map::ALL.len());
        let want = if round % 2 == 1 { "53,853" } else { "53" };
        assert_eq!(lab.setting("dns_ports"), want, "{outputs:?}");
        assert_eq!(lab.setting("solicited_lifetime"), "10s");
        assert!(lab.lookup_works());
        lab.ctl(&["detach", "--iface", WAN_IF]);
        assert_clean(&lab);
    }
}

/// A list change and a detach at once: whichever takes the interface's
/// lock first ends first. A change that comes second fails with "not
/// attached"; one that came first is done before the detach.
#[test]
fn a_list_change_racing_a_detach_fails_cleanly() {
    let lab = lab(false);
    let add = ["allow", "add", "--iface", WAN_IF, "192.0.2.9"];
    let detach = ["detach", "--iface", WAN_IF];

    // The add holds the lock: the detach waits for it.
    lab.attach(None);
    let mut adding = lab.ctl.start(lab.gw(), add, Some("lock: taken")).unwrap();
    assert!(adding.wait_stopped().unwrap());
    let mut detaching = lab.ctl.start(lab.gw(), detach, None).unwrap();
    thread::sleep(Duration::from_millis(500));
    assert!(!detaching.has_ended(), "detach waited for the add");
    let added = adding.resume().unwrap();
    assert!(added.status.success(), "{added:?}");
    let detached = detaching.finish().unwrap();
    assert!(detached.status.success(), "{detached:?}");
    assert_clean(&lab);

    // The detach holds the lock: the add waits, then finds nothing.
    lab.attach(None);
    let mut detaching = lab
        .ctl
        .start(lab.gw(), detach, Some("detach: egress filter removed"))
        .unwrap();
    assert!(detaching.wait_stopped().unwrap());
    let mut adding = lab.ctl.start(lab.gw(), add, None).unwrap();
    thread::sleep(Duration::from_millis(500));
    assert!(!adding.has_ended(), "the add waited for the detach");
    assert!(detaching.resume().unwrap().status.success());
    let added = adding.finish().unwrap();
    assert!(!added.status.success(), "the add must fail: {added:?}");
    let err = String::from_utf8_lossy(&added.stderr);
    assert!(err.contains("not attached to wan0"), "{err}");
    assert_clean(&lab);
}

/// Map and link pins removed by hand: `status` says so, changes are refused
/// with the fix, and `attach` pins the maps again from the running programs
/// (settings kept, not zeros) or attaches new links with the pinned state.
#[test]
fn pins_removed_by_hand_are_reported_and_repaired_by_attach() {
    let lab = lab(true);
    lab.attach(None);
    lab.set(&["dns_ports=53,853", "solicited_lifetime=7s"]);
    lab.ctl(&["deny", "add", "--iface", WAN_IF, "198.19.8.0/24"]);
    let dir = pin_dir(&lab);
    for map in ["CONFIG", "WATCHED_PORTS", "STATS"] {
        std::fs::remove_file(dir.join(map)).unwrap();
        let status = lab.status();
        assert!(
            status
                .problems
                .iter()
                .any(|p| p.contains("map pins missing") && p.contains(map)),
            "{status:?}"
        );
        let err = lab.failure(&["set", "--iface", WAN_IF, "monitor=off"]);
        assert!(err.contains("filter-ctl attach --iface wan0"), "{err}");
        lab.attach(None);
        assert!(lab.status().problems.is_empty());
        assert_eq!(lab.setting("dns_ports"), "53,853");
        assert_eq!(lab.setting("solicited_lifetime"), "7s");
        assert_eq!(lab.probe(&[spoofed4(853).into()], 853), 0);
    }
    // The egress link's pin was its only holder: egress is gone.
    // With TCX (Linux 6.6) the egress link's pin was its only holder: egress
    // is gone. A clsact filter (before 6.6) is not a link and has no pin.
    if lab.status().egress_hook == Some(EgressHook::Tcx) {
        std::fs::remove_file(dir.join("link_tc_egress")).unwrap();
        let status = lab.status();
        assert!(!status.attached, "{status:?}");
        assert!(
            status
                .problems
                .iter()
                .any(|p| p.contains("egress is missing")),
            "{status:?}"
        );
        lab.attach(None);
        assert!(lab.status().attached && lab.lookup_works());
    }
    // The XDP link's: nothing filters; attach brings it back with the state.
    std::fs::remove_file(dir.join("link_xdp_native")).unwrap();
    kernel::wait_no_xdp(lab.gw(), WAN_IF).unwrap();
    assert_eq!(lab.probe(&[spoofed4(0x0808).into()], 5000), 1);
    let out = lab.attach(None);
    assert!(out.contains("attached filter on wan0"), "{out}");
    assert_eq!(
        lab.probe(&[spoofed4(0x0808).into()], 5000),
        0,
        "deny list kept"
    );
    assert_eq!(lab.setting("solicited_lifetime"), "7s");
    assert!(lab.lookup_works());
    lab.ctl(&["detach", "--iface", WAN_IF]);
    assert_clean(&lab);
}

/// The interface's pin directory, as this process sees it.
fn pin_dir(lab: &Lab) -> PathBuf {
    lab.status().pin_dir
}

/// A pin root on a bpf filesystem of its own, unmounted by hand while the
/// filter runs: its pins are gone, so is the filter; commands say the pin
/// root is not on a bpffs; mounted again, attach starts anew.
///
/// The whole story runs in a mount namespace of its own (`unshare -m`):
/// a bpffs mount copied into another process's namespace (a server another
/// test starts meanwhile) would keep the pins, and the filter, alive.
#[test]
fn an_unmounted_bpf_filesystem_is_a_clear_error_and_attach_starts_anew() {
    let lab = lab(false);
    let mount = tempfile::tempdir().unwrap();
    let point = mount.path().display().to_string();
    let binary = lab.ctl.binary().display().to_string();
    let gw = lab.gw().name().to_owned();
    let ctl = format!("ip netns exec {gw} {binary} --pin-root {point}/wan-filter");
    let script = format!(
        r#"
        set -u
        no_xdp() {{
            for _ in $(seq 100); do
                ip -n {gw} -d link show dev {WAN_IF} | grep -q 'prog/xdp' || return 0
                sleep 0.05
            done
            return 1
        }}
        mount -t bpf bpffs {point} || exit 10
        {ctl} attach --iface {WAN_IF} || exit 11
        ip -n {gw} -d link show dev {WAN_IF} | grep -q 'prog/xdp' || exit 12
        umount {point} || exit 13
        no_xdp || exit 14
        for args in "status" "set --iface {WAN_IF} monitor=on" "detach --iface {WAN_IF}"; do
            {ctl} $args 2>&1 && exit 15
            echo
        done
        mount -t bpf bpffs {point} || exit 16
        {ctl} attach --iface {WAN_IF} || exit 17
        {ctl} detach --iface {WAN_IF} || exit 18
        no_xdp || exit 19
        umount {point}
        echo story-complete
        "#
    );
    let out = process::output(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(&script),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("story-complete"),
        "{}: {text}{err}",
        out.status
    );
    assert_eq!(
        text.matches("is not on a bpf filesystem").count(),
        3,
        "status, set and detach each say so: {text}"
    );
    assert!(text.contains("attached filter on wan0"), "{text}");
}

/// Two namespaces joined by a veth `wan0` ⇄ `p0`, for what the lab cannot
/// do: delete `wan0` and make it again. Packets from p0 to wan0 are counted
/// by nftables on wan0 ingress (after XDP).
struct Pair {
    ctl: FilterCtl,
    gw: Netns,
    peer: Netns,
}

impl Pair {
    fn new() -> Self {
        let ctl = FilterCtl::new().unwrap();
        let gw = Netns::unique(TEST_PREFIX).unwrap();
        let peer = Netns::unique(TEST_PREFIX).unwrap();
        let pair = Self { ctl, gw, peer };
        pair.make_wan0();
        pair
    }

    fn make_wan0(&self) {
        harness::netns::veth(&self.gw, WAN_IF, &self.peer, "p0").unwrap();
        self.gw.up(WAN_IF).unwrap();
        self.peer.up("p0").unwrap();
        // Made again with wan0: a netdev chain goes with its device.
        self.gw
            .nft(&format!(
                r#"
table netdev pair
delete table netdev pair
table netdev pair {{
    counter marker {{ }}
    counter probes {{ }}
    chain ingress {{
        type filter hook ingress device "wan0" priority -500; policy accept;
        {}
        ip saddr 198.19.0.0/16 counter name "probes"
    }}
}}
"#,
                marker::rule("marker")
            ))
            .unwrap();
    }

    fn ctl(&self, args: &[&str]) -> String {
        self.ctl
            .run(&self.gw, args)
            .unwrap_or_else(|err| panic!("{args:?}: {err:#}"))
    }

    fn failure(&self, args: &[&str]) -> String {
        self.ctl.failure(&self.gw, args)
    }

    fn status(&self) -> Status {
        self.ctl.status(&self.gw, Some(WAN_IF)).unwrap().remove(0)
    }

    /// Frames from 198.19.0.0/16 sent into wan0 that reached its stack,
    /// counted once a marker sent behind them arrived.
    fn probe(&self, sources: &[Ipv4Addr]) -> u64 {
        let counter = |name| Counter {
            family: "netdev",
            table: "pair",
            name,
        };
        let probes = counter("probes");
        let before = probes.read(&self.gw).unwrap();
        let sender = RawSender::open(&self.peer, "p0").unwrap();
        let to = self.gw.mac(WAN_IF).unwrap();
        for src in sources {
            let frame = PacketBuilder::ipv4(*src, Ipv4Addr::new(192, 0, 2, 1))
                .macs(sender.mac().0, to.0)
                .udp(5000, 9)
                .payload(b"probe")
                .build();
            sender.send(&frame.bytes).unwrap();
        }
        Marker::new(marker::frame(to), counter("marker"))
            .pass(&[&sender], &self.gw)
            .unwrap();
        probes.read(&self.gw).unwrap() - before
    }
}

/// `ip link del wan0` while attached: status says severed (not attached),
/// changes are refused with the fix; when wan0 is back, attach attaches
/// again with the settings, lists and counters, and detach cleans up.
#[test]
fn a_deleted_interface_is_severed_and_attach_brings_the_filter_back() {
    let pair = Pair::new();
    pair.ctl(&["attach", "--iface", WAN_IF]);
    pair.ctl(&["set", "--iface", WAN_IF, "solicited_lifetime=4s"]);
    pair.ctl(&["deny", "add", "--iface", WAN_IF, "198.19.3.0/24"]);
    assert_eq!(pair.probe(&[spoofed4(0x0303), spoofed4(0x0404)]), 1);
    let counted = pair.ctl.stats(&pair.gw, WAN_IF).unwrap();

    pair.gw.ip(["link", "del", WAN_IF]).unwrap();
    let status = pair.status();
    assert!(!status.attached && !status.iface_present, "{status:?}");
    assert_eq!(status.xdp_link, LinkState::Severed);
    assert!(
        status.problems[0].contains("wan0 was deleted"),
        "{status:?}"
    );
    let out = pair.ctl.output(&pair.gw, ["status"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT attached"), "{text}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "a severed filter is not attached"
    );
    let err = pair.failure(&["set", "--iface", WAN_IF, "monitor=on"]);
    assert!(
        err.contains("severed") && err.contains("filter-ctl attach --iface wan0"),
        "{err}"
    );
    let err = pair.failure(&["attach", "--iface", WAN_IF]);
    assert!(err.contains("no interface named 'wan0'"), "{err}");

    pair.make_wan0();
    assert_eq!(
        pair.status().xdp_link,
        LinkState::Severed,
        "the new wan0 has no filter yet"
    );
    let out = pair.ctl(&["attach", "--iface", WAN_IF]);
    assert!(out.contains("attached again"), "{out}");
    let status = pair.status();
    assert!(status.attached && status.problems.is_empty(), "{status:?}");
    assert_eq!(
        pair.probe(&[spoofed4(0x0303), spoofed4(0x0404)]),
        1,
        "deny list kept"
    );
    let config = pair.ctl.config(&pair.gw, WAN_IF).unwrap();
    assert!(
        config
            .values()
            .any(|(k, v)| k == "solicited_lifetime" && v == "4s")
    );
    let now = pair.ctl.stats(&pair.gw, WAN_IF).unwrap();
    assert!(
        now.packets(filter_common::Reason::DropDenyList)
            > counted.packets(filter_common::Reason::DropDenyList),
        "counters kept and counting"
    );
    pair.ctl(&["detach", "--iface", WAN_IF]);
    kernel::wait_no_xdp(&pair.gw, WAN_IF).unwrap();
    assert!(!pair.ctl.pin_root().exists());
}

/// A renamed interface: status names its new name and the fix; attaching to
/// the new name is refused with the fix (not an `ip link ... xdp off` that
/// cannot remove a link); detach under the old name removes it.
#[test]
fn a_renamed_interface_is_reported_and_detach_removes_the_filter() {
    let pair = Pair::new();
    pair.ctl(&["attach", "--iface", WAN_IF]);
    // Linux before 6.2 renames only an interface that is down.
    pair.gw.ip(["link", "set", "dev", WAN_IF, "down"]).unwrap();
    pair.gw
        .ip(["link", "set", "dev", WAN_IF, "name", "wan9"])
        .unwrap();
    pair.gw.ip(["link", "set", "dev", "wan9", "up"]).unwrap();
    let status = pair.status();
    assert!(
        matches!(
            &status.xdp_link,
            LinkState::Elsewhere { name: Some(name), .. } if name == "wan9"
        ),
        "{status:?}"
    );
    assert!(status.problems[0].contains("renamed to wan9"), "{status:?}");
    assert!(
        kernel::xdp_on(&pair.gw, "wan9").unwrap().is_some(),
        "the filter still runs on wan9"
    );
    let err = pair.failure(&["attach", "--iface", "wan9"]);
    assert!(
        err.contains("attached when it was called wan0") && err.contains("detach --iface wan0"),
        "{err}"
    );
    pair.ctl(&["detach", "--iface", WAN_IF]);
    kernel::wait_no_xdp(&pair.gw, "wan9").unwrap();
    pair.ctl(&["attach", "--iface", "wan9"]);
    pair.ctl(&["detach", "--iface", "wan9"]);
}

/// Down and up: the links stay, the filter keeps filtering.
#[test]
fn an_interface_set_down_and_up_stays_filtered() {
    let pair = Pair::new();
    pair.ctl(&["attach", "--iface", WAN_IF]);
    pair.ctl(&["deny", "add", "--iface", WAN_IF, "198.19.5.0/24"]);
    pair.gw.ip(["link", "set", "dev", WAN_IF, "down"]).unwrap();
    let status = pair.status();
    assert!(status.attached && status.problems.is_empty(), "{status:?}");
    pair.gw.ip(["link", "set", "dev", WAN_IF, "up"]).unwrap();
    process::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        Ok(pair.gw.operstate(WAN_IF)? != "down")
    })
    .unwrap();
    assert!(pair.status().attached);
    assert_eq!(pair.probe(&[spoofed4(0x0505), spoofed4(0x0606)]), 1);
    pair.ctl(&["detach", "--iface", WAN_IF]);
}

/// A namespace deleted with the filter attached leaves pins that no
/// command of that namespace can reach: `status --all` lists them as gone,
/// `cleanup` removes them and nothing else.
#[test]
fn pins_of_a_deleted_namespace_are_listed_and_cleaned_up() {
    let pair = Pair::new();
    pair.ctl(&["attach", "--iface", WAN_IF]);
    // Namespace inodes are reused: another test's new namespace may take
    // the deleted one's at once, and then its pins are that namespace's.
    // Try again until the inode stays free.
    let doomed_netns = (0..10)
        .find_map(|_| {
            let doomed = Netns::unique(TEST_PREFIX).unwrap();
            let peer = Netns::unique(TEST_PREFIX).unwrap();
            harness::netns::veth(&doomed, WAN_IF, &peer, "p0").unwrap();
            pair.ctl
                .run(&doomed, ["attach", "--iface", WAN_IF])
                .unwrap();
            let inode = std::fs::metadata(doomed.path()).unwrap().ino();
            drop(doomed);
            drop(peer);
            let all = pinned_everywhere(&pair);
            let gone = all.iter().any(|p| p.netns == inode && !p.netns_exists);
            if !gone {
                // Reused: remove those pins and try with another namespace.
                pair.ctl(&["cleanup"]);
                for p in all.iter().filter(|p| p.netns == inode) {
                    let _ = std::fs::remove_dir_all(&p.pin_dir);
                }
            }
            gone.then_some(inode)
        })
        .expect("a deleted namespace's inode was reused ten times in a row");

    // The kernel tears a deleted namespace down in the background (its
    // interfaces, then their links): wait for the link to be severed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all = pinned_everywhere(&pair);
        let severed = all
            .iter()
            .any(|p| p.netns == doomed_netns && p.xdp_ifindex == Some(0));
        if severed || Instant::now() > deadline {
            break all;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let gone: Vec<_> = all.iter().filter(|p| !p.netns_exists).collect();
    assert_eq!(gone.len(), 1, "{all:?}");
    assert_eq!(gone[0].netns, doomed_netns);
    assert_eq!(
        gone[0].xdp_ifindex,
        Some(0),
        "its link is severed within 10 s"
    );
    assert!(all.iter().any(|p| p.this_netns && p.iface == WAN_IF));
    let text = pair.ctl(&["status", "--all"]);
    assert!(
        text.contains("GONE") && text.contains("filter-ctl cleanup"),
        "{text}"
    );
    let dry = pair.ctl(&["cleanup", "--dry-run"]);
    assert!(dry.contains("would remove"), "{dry}");
    assert_eq!(
        pinned_everywhere(&pair).len(),
        2,
        "a dry run removes nothing"
    );
    let out = pair.ctl(&["cleanup"]);
    assert!(
        out.contains("removed") && out.contains(&doomed_netns.to_string()),
        "{out}"
    );
    let all = pinned_everywhere(&pair);
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(pair.status().attached, "our own filter is untouched");
    assert!(pair.ctl(&["cleanup"]).contains("nothing to clean up"));
    pair.ctl(&["detach", "--iface", WAN_IF]);
}

fn pinned_everywhere(pair: &Pair) -> Vec<filter_ctl_api::report::PinnedFilter> {
    serde_json::from_str(&pair.ctl(&["status", "--all", "--json"])).unwrap()
}

/// `attach --config` killed after the maps are pinned and before the XDP
/// link is (the last map pinned): the next plain `attach` finds maps of
/// this build, with what the killed one wrote. It used to take them for
/// maps of a build without query limits (no layout pinned yet), said so,
/// and added default service ports to the file's.
#[test]
fn an_attach_killed_after_pinning_its_maps_leaves_them_as_this_builds() {
    let ctl = FilterCtl::new().unwrap();
    let ns = Netns::unique(TEST_PREFIX).unwrap();
    harness::netns::veth(&ns, "wfk0", &ns, "wfk1").unwrap();
    for iface in ["wfk0", "wfk1"] {
        ns.up(iface).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wfk0.toml");
    std::fs::write(
        &file,
        "dns_service_ports = [53, 5300]\nntp_service_ports = \"none\"\nmonitor = true\n",
    )
    .unwrap();
    let attach = [
        "attach",
        "--iface",
        "wfk0",
        "--config",
        file.to_str().unwrap(),
    ];
    let (_, points) = ctl.fault_points(&ns, attach).unwrap();
    ctl.run(&ns, ["detach", "--iface", "wfk0"]).unwrap();
    let last_map = points
        .iter()
        .rposition(|point| point == "attach: map pinned")
        .expect("attach pins maps");
    let mut running = ctl
        .start(&ns, attach, Some(&(last_map + 1).to_string()))
        .unwrap();
    assert!(
        running.wait_stopped().unwrap(),
        "stopped after the last map"
    );
    running.kill().unwrap();

    let out = ctl.output(&ns, ["attach", "--iface", "wfk0"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("carried over"), "{stderr}");
    let settings = ctl.config(&ns, "wfk0").unwrap();
    let value = |key: &str| {
        settings
            .values()
            .find_map(|(k, v)| (k == key).then_some(v))
            .unwrap()
    };
    assert_eq!(
        (
            value("dns_service_ports"),
            value("ntp_service_ports"),
            value("monitor")
        ),
        ("53,5300".into(), "none".into(), "on".into()),
        "the killed attach's settings, whole"
    );
    ctl.run(&ns, ["detach", "--iface", "wfk0"]).unwrap();
}
