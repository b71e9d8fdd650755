//! The unit as systemd runs it: the Debian package installed into a clean
//! Debian root, systemd booted there as PID 1 of the test's own namespaces
//! ([`harness::systemd`]), and `systemctl start wan-filter@wan0` on a veth
//! named wan0 in them. The shipped unit itself, with every sandbox setting
//! it has (ProtectSystem, the capability set, the system call filter, ...),
//! starts the daemon; `systemctl start` returns when systemd considers the
//! service started, which for `Type=notify` is the daemon's READY=1: the
//! filter must be attached by then (with `Type=exec` it returned before the
//! attach, and network-pre.target was reached without the filter).
//!
//! Needs root and what `cargo xtask test` prepares (the package and the
//! Debian root, as for the package test), and a cgroup file system it can
//! make a cgroup in; otherwise it says it is skipped.

use harness::{
    debian::{self, Scratch},
    process,
    systemd::Booted,
};

#[test]
fn the_unit_is_ready_only_once_the_filter_is_attached() {
    let Some((deb, root)) = debian::given("service test") else {
        return;
    };
    if let Some(why) = Booted::unavailable() {
        process::note(format_args!(
            "service test skipped: systemd cannot be booted in a test namespace here: {why}"
        ));
        return;
    }
    let scratch = Scratch::over(&root).unwrap();
    scratch.install(&deb).unwrap();
    let system = Booted::boot(&scratch).unwrap();
    for command in [
        "ip link set lo up",
        "ip link add wan0 type veth peer name wan0-peer",
        "ip link set wan0 up",
        "ip link set wan0-peer up",
    ] {
        system.run(command.split(' ')).unwrap();
    }
    let journal = || {
        system
            .run(["journalctl", "--no-pager", "-u", "wan-filter@wan0"])
            .unwrap_or_else(|err| format!("{err:#}"))
    };

    // Returns once systemd has the daemon's READY=1.
    let started = system
        .output(["systemctl", "start", "wan-filter@wan0"])
        .unwrap();
    assert!(
        started.status.success(),
        "systemctl start wan-filter@wan0: {}{}\n{}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr),
        journal()
    );
    let attached = system
        .output(["filter-ctl", "status", "--iface", "wan0"])
        .unwrap();
    assert!(
        attached.status.success(),
        "the unit was started (ready), but the filter is not attached yet: status exited {} \
         ({}{}); the journal: {}",
        attached.status,
        String::from_utf8_lossy(&attached.stdout),
        String::from_utf8_lossy(&attached.stderr),
        journal()
    );
    let link = system.run(["ip", "link", "show", "wan0"]).unwrap();
    assert!(link.contains("xdp"), "no XDP program on wan0: {link}");
    let shown = system
        .run([
            "systemctl",
            "show",
            "wan-filter@wan0",
            "--property=Type,ActiveState,SubState,StatusText",
        ])
        .unwrap();
    for wanted in [
        "Type=notify",
        "ActiveState=active",
        "SubState=running",
        "StatusText=filtering on wan0; metrics on http://127.0.0.1:10213/metrics",
    ] {
        assert!(
            shown.lines().any(|line| line == wanted),
            "{wanted} in {shown}"
        );
    }
    println!("systemctl start returned with the filter attached:\n{shown}");

    // Stopping the service leaves the filter attached.
    system
        .run(["systemctl", "stop", "wan-filter@wan0"])
        .unwrap();
    let still = system
        .output(["filter-ctl", "status", "--iface", "wan0"])
        .unwrap();
    assert!(still.status.success(), "stopping detached: {}", journal());
    let log = journal();
    assert!(
        log.contains("attached the filter to wan0") && log.contains("stays attached"),
        "{log}"
    );
    println!("stopped; the filter stays on wan0. The journal:\n{log}");
}
