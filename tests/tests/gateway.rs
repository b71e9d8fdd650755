//! The operator's path on a gateway, end to end through the real
//! `filter-ctl daemon`: allow and deny lists kept in the daemon's config
//! file survive a restart of the daemon and a reboot (simulated: the daemon
//! stopped and every pin removed, which detaches the filter as a reboot
//! does), while entries added by hand are said to last only until then; and
//! a daemon adopting programs that another build attached says so and how
//! to swap its own in.

use std::{fs, path::Path, time::Duration};

use filter_common::ListSource;
use filter_ctl_api::report::ListedEntry;
use harness::{
    ctl::{FilterCtl, daemon::Daemon},
    kernel,
    names::TEST_PREFIX,
    netns::{self, Netns},
    process,
};

const WAIT: Duration = Duration::from_secs(60);

/// A driver and a namespace of their own with a veth pair `a`-`b`, both up.
fn veth_pair(a: &str, b: &str) -> (FilterCtl, Netns) {
    assert!(process::is_root(), "needs root");
    let ctl = FilterCtl::new().unwrap();
    let ns = Netns::unique(TEST_PREFIX).unwrap();
    netns::veth(&ns, a, &ns, b).unwrap();
    for iface in [a, b] {
        ns.up(iface).unwrap();
    }
    (ctl, ns)
}

/// `prefix reason` of each entry, and whether it expires.
fn shown(entries: &[ListedEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|entry| {
            format!(
                "{} {}{}",
                entry.cidr,
                entry.reason.name(),
                if entry.expires_in_ms.is_some() {
                    " expiring"
                } else {
                    ""
                }
            )
        })
        .collect()
}

/// filter-ctl's stderr for `args`, which must succeed.
fn said(ctl: &FilterCtl, ns: &Netns, args: &[&str]) -> String {
    let out = ctl.output(ns, args).unwrap();
    assert!(
        out.status.success(),
        "filter-ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a reboot does to the filter: every pin gone (the bpf filesystem
/// is in memory), and with the links' pins the programs.
fn reboot(pin_root: &Path) {
    for entry in fs::read_dir(pin_root).unwrap() {
        fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
}

#[test]
fn lists_in_the_config_file_survive_a_restart_and_a_reboot() {
    let (ctl, ns) = veth_pair("wfg0", "wfg1");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wfg0.toml");
    fs::write(
        &config,
        "monitor = false\n\
         allow = [\"192.0.2.53\"]\n\
         deny = [\"203.0.113.0/24\", { prefix = \"198.51.100.0/24\", for = \"1h\" }]\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let args = ["--config", config_arg];

    let mut daemon = Daemon::start(&ctl, &ns, "wfg0", &args).unwrap();
    let line = daemon
        .wait_for_line(&["attached the filter to wfg0"], WAIT)
        .unwrap();
    assert!(
        line.contains("allow list: 1 entry from the file")
            && line.contains("deny list: 2 entries from the file"),
        "{line}"
    );
    daemon.wait_for_line(&["serving metrics"], WAIT).unwrap();
    let from_file = [
        "198.51.100.0/24 config_file expiring",
        "203.0.113.0/24 config_file",
    ];
    assert_eq!(shown(&ctl.list(&ns, "deny", "wfg0").unwrap()), from_file);
    assert_eq!(
        shown(&ctl.list(&ns, "allow", "wfg0").unwrap()),
        ["192.0.2.53/32 config_file"]
    );

    // By hand: said to last until a reboot, and where to keep it.
    let note = said(&ctl, &ns, &["deny", "add", "--iface", "wfg0", "198.18.0.7"]);
    assert!(
        note.contains("a reboot empties") && note.contains(config_arg) && note.contains("deny"),
        "{note}"
    );
    let note = said(
        &ctl,
        &ns,
        &["deny", "del", "--iface", "wfg0", "203.0.113.0/24"],
    );
    assert!(
        note.contains("203.0.113.0/24 came from the deny list") && note.contains(config_arg),
        "{note}"
    );
    let note = said(&ctl, &ns, &["set", "--iface", "wfg0", "monitor=on"]);
    assert!(
        note.contains(config_arg) && note.contains("whenever it starts"),
        "{note}"
    );

    // A restart adopts the filter: the file's lists and settings are put
    // back, the entry added by hand stays (the maps outlive the daemon).
    daemon.stop().unwrap();
    let mut daemon = Daemon::start(&ctl, &ns, "wfg0", &args).unwrap();
    let line = daemon
        .wait_for_line(&["adopted the filter attached to wfg0"], WAIT)
        .unwrap();
    assert!(
        line.contains("monitor on -> off") && line.contains("deny list: 2 entries"),
        "{line}"
    );
    let mut after_restart = vec!["198.18.0.7/32 operator"];
    after_restart.extend(from_file);
    assert_eq!(
        shown(&ctl.list(&ns, "deny", "wfg0").unwrap()),
        after_restart
    );

    // An entry taken out of the file goes at the reload.
    fs::write(
        &config,
        "allow = [\"192.0.2.53\"]\ndeny = [{ prefix = \"198.51.100.0/24\", for = \"1h\" }]\n",
    )
    .unwrap();
    daemon
        .wait_for_line(&["reloaded", "deny list: 1 entry from the file"], WAIT)
        .unwrap();
    assert_eq!(
        shown(&ctl.list(&ns, "deny", "wfg0").unwrap()),
        [
            "198.18.0.7/32 operator",
            "198.51.100.0/24 config_file expiring"
        ]
    );

    // A reboot: no pins, no filter. The daemon attaches it anew with the
    // file's lists; the entry added by hand is gone, as it was told.
    daemon.stop().unwrap();
    reboot(ctl.pin_root());
    // The kernel frees an unpinned link in deferred work, so the program
    // leaves the interface shortly after the pin does.
    process::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        Ok(kernel::xdp_on(&ns, "wfg0")?.is_none())
    })
    .expect("the reboot left XDP on wfg0");
    let mut daemon = Daemon::start(&ctl, &ns, "wfg0", &args).unwrap();
    daemon
        .wait_for_line(&["attached the filter to wfg0", "deny list: 1 entry"], WAIT)
        .unwrap();
    let deny = ctl.list(&ns, "deny", "wfg0").unwrap();
    assert_eq!(shown(&deny), ["198.51.100.0/24 config_file expiring"]);
    // Still counted from the file's last change: under an hour left.
    let left = deny[0].expires_in_ms.unwrap();
    assert!((3_000_000..=3_600_000).contains(&left), "{left} ms left");
    assert_eq!(deny[0].reason, ListSource::ConfigFile);
    assert_eq!(
        shown(&ctl.list(&ns, "allow", "wfg0").unwrap()),
        ["192.0.2.53/32 config_file"]
    );
    daemon.stop().unwrap();
}

#[test]
fn a_daemon_adopting_another_builds_programs_says_how_to_swap_its_own_in() {
    let (ctl, ns) = veth_pair("wfu0", "wfu1");
    ctl.attach(&ns, "wfu0", None).unwrap();
    // Programs attached by a build from before builds were recorded (the
    // package's previous version): their pins have no record.
    let pins = fs::read_dir(ctl.pin_root())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("wfu0");
    fs::remove_file(pins.join("BUILD")).unwrap();

    let mut daemon = Daemon::start(&ctl, &ns, "wfu0", &[]).unwrap();
    let line = daemon
        .wait_for_line(
            &["the programs running on wfu0 are not this binary's"],
            WAIT,
        )
        .unwrap();
    assert!(
        line.contains("filter-ctl attach --iface wfu0") && line.contains("without a gap"),
        "{line}"
    );
    // The swap, with the daemon running; a restarted daemon has nothing to say.
    let swapped = ctl.attach(&ns, "wfu0", None).unwrap();
    assert!(swapped.starts_with("replaced filter on wfu0"), "{swapped}");
    daemon.stop().unwrap();
    let mut daemon = Daemon::start(&ctl, &ns, "wfu0", &[]).unwrap();
    daemon.wait_for_line(&["serving metrics"], WAIT).unwrap();
    assert!(
        !daemon.log().contains("not this binary's"),
        "{}",
        daemon.log()
    );
    daemon.stop().unwrap();
}
