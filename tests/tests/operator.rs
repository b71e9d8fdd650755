//! What a careful operator ran into (issue 14, "found when it was tried"),
//! one test each: arguments that must be refused and change nothing, lists
//! and settings written as asked, output that ends quietly on a closed pipe,
//! and errors and warnings that say what is wrong and what to do.
//!
//! Needs root. Each test builds its own lab (or namespaces), with unique
//! names, removed at the end even when the test fails.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::IpAddr,
    os::unix::fs::symlink,
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use harness::{
    ctl::FilterCtl, fixture::FilterLab, lab::WAN_IF, names::TEST_PREFIX, netns::Netns, process,
};
use tests::faults::{lab, spoofed4};

/// A settings file in a temporary directory; its path as text.
fn settings_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("filter.toml");
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The live settings as `key=value`, to compare before and after.
fn settings(lab: &FilterLab) -> Vec<String> {
    lab.config()
        .values()
        .map(|(key, value)| format!("{key}={value}"))
        .collect()
}

#[test]
fn deleting_a_prefix_named_twice_deletes_it_once() {
    let lab = lab(false);
    lab.attach(None);
    lab.ctl(&[
        "deny",
        "add",
        "--iface",
        WAN_IF,
        "198.19.4.0/24",
        "198.19.5.5",
    ]);
    let out = lab.ctl(&[
        "deny",
        "del",
        "--iface",
        WAN_IF,
        "198.19.4.0/24",
        "198.19.4.0/24",
    ]);
    assert!(out.contains("removed 1 prefix"), "{out}");
    let listed: Vec<String> = lab
        .list("deny")
        .iter()
        .map(|e| e.cidr.to_string())
        .collect();
    assert_eq!(listed, ["198.19.5.5/32"]);
    assert_eq!(
        lab.probe(&[spoofed4(0x0404).into()], 5000),
        1,
        "no longer denied"
    );
}

/// 0 is not a rate, however it is written: `set`, `apply` and `attach
/// --config` refuse it and nothing changes; `off` switches a level off.
#[test]
fn a_rate_of_zero_is_refused_everywhere() {
    let lab = lab(false);
    lab.attach(None);
    let before = settings(&lab);
    for value in ["0", "0/s"] {
        let err = lab.failure(&[
            "set",
            "--iface",
            WAN_IF,
            &format!("syn_source_rate={value}"),
        ]);
        assert!(err.contains("write off"), "{value}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    for line in ["syn_source_rate = 0", "syn_source_rate = \"0/s\""] {
        let file = settings_file(&dir, &format!("monitor = true\n{line}\n"));
        let err = lab.failure(&["apply", "--iface", WAN_IF, &file]);
        assert!(err.contains("write off"), "{line}: {err}");
        let err = lab.failure(&["attach", "--iface", WAN_IF, "--config", &file]);
        assert!(err.contains("write off"), "attach --config {line}: {err}");
    }
    assert_eq!(settings(&lab), before, "nothing changed");
    lab.set(&["syn_source_rate=off"]);
    assert_eq!(lab.setting("syn_source_rate"), "off");
}

/// An IPv4-mapped IPv6 address is an IPv4 source: stored as IPv4, so that
/// IPv4 traffic from it is dropped.
#[test]
fn an_ipv4_mapped_address_is_denied_as_ipv4() {
    let lab = lab(false);
    lab.attach(None);
    let out = lab.ctl(&["deny", "add", "--iface", WAN_IF, "::ffff:198.19.7.7"]);
    assert!(out.contains("198.19.7.7/32"), "{out}");
    let listed: Vec<String> = lab
        .list("deny")
        .iter()
        .map(|e| e.cidr.to_string())
        .collect();
    assert_eq!(listed, ["198.19.7.7/32"]);
    let sources: [IpAddr; 2] = [spoofed4(0x0707).into(), spoofed4(0x0708).into()];
    assert_eq!(
        lab.probe(&sources, 5000),
        1,
        "198.19.7.7 dropped, its neighbour not"
    );
    lab.ctl(&["deny", "del", "--iface", WAN_IF, "::ffff:198.19.7.7"]);
    assert!(lab.list("deny").is_empty());
}

/// `dns_ports=` does not switch the DNS defence off, nor `conn_limit=` the
/// connection limits: `none` does.
#[test]
fn an_empty_port_list_is_refused() {
    let lab = lab(false);
    lab.attach(None);
    for key in ["dns_ports", "ntp_ports", "amplifier_ports", "conn_limit"] {
        let err = lab.failure(&["set", "--iface", WAN_IF, &format!("{key}=")]);
        assert!(err.contains(key) && err.contains("none"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = settings_file(&dir, "dns_ports = \"\"\n");
    let err = lab.failure(&["apply", "--iface", WAN_IF, &file]);
    assert!(err.contains("dns_ports") && err.contains("empty"), "{err}");
    assert_eq!(lab.setting("dns_ports"), "53");
    assert_eq!(
        lab.probe(&[spoofed4(0x3535).into()], 53),
        0,
        "DNS defence on"
    );
}

/// `set` says what it changed, not the whole configuration (`config` does).
#[test]
fn set_prints_what_changed() {
    let lab = lab(false);
    lab.attach(None);
    let out = lab.set(&["monitor=on", "solicited_lifetime=5s"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["monitor off -> on", "solicited_lifetime 10s -> 5s"]
    );
    let out = lab.set(&["monitor=on"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("no change"), "{out}");
}

#[test]
fn a_key_given_twice_is_refused() {
    let lab = lab(false);
    lab.attach(None);
    let err = lab.failure(&["set", "--iface", WAN_IF, "monitor=on", "monitor=off"]);
    assert!(err.contains("monitor is given twice"), "{err}");
    assert_eq!(lab.setting("monitor"), "off");
}

/// `apply /dev/zero` stops at the size cap at once, without reading on.
#[test]
fn apply_reads_at_most_a_mebibyte() {
    let lab = lab(false);
    lab.attach(None);
    let started = Instant::now();
    let err = lab.failure(&["apply", "--iface", WAN_IF, "/dev/zero"]);
    assert!(
        err.contains("/dev/zero") && err.contains("1024 KiB"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// What `config` prints, `apply` takes back: the same settings again.
#[test]
fn config_output_is_a_file_apply_takes() {
    let lab = lab(false);
    lab.attach(None);
    lab.set(&[
        "monitor=on",
        "dns_ports=53,853",
        "ntp_ports=none",
        "solicited_lifetime=1.5s",
        "syn_global_rate=off",
        "syn_penalty=1h30m",
    ]);
    let printed = lab.ctl(&["config", "--iface", WAN_IF]);
    let wanted = settings(&lab);
    lab.ctl(&["detach", "--iface", WAN_IF]);
    lab.attach(None);
    assert_ne!(settings(&lab), wanted);
    let dir = tempfile::tempdir().unwrap();
    let file = settings_file(&dir, &printed);
    lab.ctl(&["apply", "--iface", WAN_IF, &file]);
    assert_eq!(settings(&lab), wanted, "{printed}");
}

/// A bad value in a file: the error names the file, the line and the key.
#[test]
fn apply_errors_name_the_file_and_the_line() {
    let lab = lab(false);
    lab.attach(None);
    let dir = tempfile::tempdir().unwrap();
    let file = settings_file(
        &dir,
        "monitor = true\n# a comment\nsolicited_lifetime = \"10 minutes\"\n",
    );
    let err = lab.failure(&["apply", "--iface", WAN_IF, &file]);
    assert!(
        err.contains(&file) && err.contains("line 3") && err.contains("solicited_lifetime"),
        "{err}"
    );
    // A rule between keys (a port in two lists) points at a line too.
    let file = settings_file(&dir, "dns_ports = [53]\nntp_ports = [53]\n");
    let err = lab.failure(&["apply", "--iface", WAN_IF, &file]);
    assert!(err.contains(&file) && err.contains("line "), "{err}");
    assert_eq!(lab.setting("monitor"), "off", "nothing changed");
}

/// `status --iface` tells a script whether the filter is attached: 0
/// attached, 3 not attached, 1 an error. (A severed filter, 3 too, is
/// faults' a_deleted_interface_is_severed_and_attach_brings_the_filter_back.)
#[test]
fn status_exits_with_3_when_not_attached() {
    let lab = lab(false);
    let code = |args: &[&str]| lab.ctl.output(lab.gw(), args).unwrap().status.code();
    assert_eq!(code(&["status"]), Some(0), "a listing of nothing");
    assert_eq!(code(&["status", "--iface", WAN_IF]), Some(3));
    assert_eq!(code(&["status", "--iface", WAN_IF, "--json"]), Some(3));
    assert_eq!(code(&["status", "--iface", "nosuch0"]), Some(1));
    lab.attach(None);
    assert_eq!(code(&["status"]), Some(0));
    assert_eq!(code(&["status", "--iface", WAN_IF]), Some(0));
    lab.ctl(&["detach", "--iface", WAN_IF]);
    assert_eq!(code(&["status", "--iface", WAN_IF]), Some(3));
}

#[test]
fn status_of_an_interface_that_does_not_exist_is_an_error() {
    let lab = lab(false);
    let err = lab.failure(&["status", "--iface", "nosuch0"]);
    assert!(
        err.contains("nosuch0") && err.contains("no interface"),
        "{err}"
    );
    lab.attach(None);
    let err = lab.failure(&["status", "--iface", "nosuch0"]);
    assert!(err.contains("no interface"), "{err}");
}

/// Runs `args` with stdout a pipe whose reading end is closed at once:
/// filter-ctl must end as Unix tools do (by SIGPIPE, or exit 0), never
/// with a panic (exit 101).
fn with_closed_stdout(ctl: &FilterCtl, ns: &Netns, args: &[&str]) {
    let mut child = ctl
        .command(ns, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} went on writing to a closed pipe"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "{args:?}: {status}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn a_closed_pipe_ends_filter_ctl_quietly() {
    let lab = lab(false);
    lab.attach(None);
    let many: Vec<String> = (0..2000).map(|n| spoofed4(n).to_string()).collect();
    let mut add = vec!["deny", "add", "--iface", WAN_IF];
    add.extend(many.iter().map(String::as_str));
    lab.ctl(&add);
    for args in [
        &["man"][..],
        &["deny", "list", "--iface", WAN_IF],
        &["stats", "--iface", WAN_IF, "--watch", "1"],
        &["status"],
        &["set", "--help"],
    ] {
        with_closed_stdout(&lab.ctl, lab.gw(), args);
    }
}

/// A list change prints what changed, not the whole list; a full list is
/// one clear error.
#[test]
fn a_change_to_a_large_list_prints_a_summary_and_a_full_list_one_error() {
    let lab = lab(false);
    lab.attach(None);
    let all: Vec<String> = (0..=u16::MAX).map(|n| spoofed4(n).to_string()).collect();
    let mut add = vec!["allow", "add", "--iface", WAN_IF];
    add.extend(all.iter().map(String::as_str));
    let out = lab.ctl(&add);
    assert_eq!(out.lines().count(), 1, "{}", &out[..out.len().min(2000)]);
    assert!(out.contains("added 65536 prefixes"), "{out}");
    let out = lab
        .ctl
        .output(lab.gw(), ["allow", "add", "--iface", WAN_IF, "198.18.0.1"])
        .unwrap();
    assert!(!out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.lines().count() + stderr.lines().count() <= 3,
        "{stdout}{stderr}"
    );
    assert!(stderr.contains("at most 65536"), "{stderr}");
    assert_eq!(lab.list("allow").len(), 65_536, "the list as it was");
}

/// A prefix wider than /8 (IPv4) or /16 (IPv6) on either list denies (or
/// exempts from every rule) a large part of the Internet: `add` refuses it
/// without `--force`, names it and what it would do, and changes nothing;
/// with `--force` it is added with a warning. `::ffff:0:0/96`, in common
/// bogon lists, is all of IPv4 (stored as 0.0.0.0/0).
#[test]
fn a_prefix_wider_than_8_or_16_bits_needs_force() {
    let lab = lab(false);
    lab.attach(None);
    let probe = IpAddr::from(spoofed4(0x0909));
    for list in ["deny", "allow"] {
        for wide in [
            "0.0.0.0/0",
            "::/0",
            "::ffff:0:0/96",
            "198.0.0.0/7",
            "2000::/15",
        ] {
            let err = lab.failure(&[list, "add", "--iface", WAN_IF, "192.0.2.1", wide]);
            assert!(
                err.contains("--force") && err.contains(&format!("on the {list} list")),
                "{list} {wide}: {err}"
            );
            assert!(lab.list(list).is_empty(), "{list} {wide}: nothing added");
        }
    }
    let err = lab.failure(&["deny", "add", "--iface", WAN_IF, "::ffff:0:0/96"]);
    assert!(
        err.contains("0.0.0.0/0") && err.contains("every IPv4 source"),
        "{err}"
    );
    assert_eq!(lab.probe(&[probe], 5000), 1, "nothing denied");
    for narrow in ["10.0.0.0/8", "2001::/16"] {
        let out = lab
            .ctl
            .output(lab.gw(), ["deny", "add", "--iface", WAN_IF, narrow])
            .unwrap();
        assert!(out.status.success());
        assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    }
    let out = lab
        .ctl
        .output(
            lab.gw(),
            ["deny", "add", "--iface", WAN_IF, "--force", "::ffff:0:0/96"],
        )
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("drops everything"),
        "{stderr}"
    );
    assert_eq!(lab.probe(&[probe], 5000), 0, "all of IPv4 denied");
    lab.ctl(&["deny", "del", "--iface", WAN_IF, "0.0.0.0/0"]);
    let out = lab
        .ctl
        .output(
            lab.gw(),
            ["allow", "add", "--iface", WAN_IF, "--force", "::/0"],
        )
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("exempts every IPv6 source"),
        "{stderr}"
    );
}

/// `--iface` is explained in every command that takes it.
#[test]
fn every_iface_option_has_help() {
    let ctl = FilterCtl::new().unwrap();
    let ns = Netns::unique(TEST_PREFIX).unwrap();
    for command in [
        &["attach"][..],
        &["detach"],
        &["status"],
        &["set"],
        &["apply"],
        &["config"],
        &["stats"],
        &["allow", "add"],
        &["allow", "del"],
        &["allow", "list"],
        &["deny", "add"],
        &["deny", "del"],
        &["deny", "list"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = ctl.run(&ns, &args).unwrap();
        // `--help` puts the text on the next line, `-h` on the same one.
        let mut lines = help.lines();
        let option = lines
            .find(|line| line.trim_start().starts_with("--iface"))
            .unwrap_or_else(|| panic!("{command:?}: {help}"));
        let text = match option.split_once("<IFACE>") {
            Some((_, same)) if !same.trim().is_empty() => same,
            _ => lines.next().unwrap_or_default(),
        };
        assert!(text.contains("interface"), "{command:?}: {option} {text}");
    }
}

/// The man page's settings, rendered at 80 columns: no line wider, and each
/// key starts a line of its own with its values.
#[test]
fn the_man_page_settings_fit_80_columns() {
    let ctl = FilterCtl::new().unwrap();
    let ns = Netns::unique(TEST_PREFIX).unwrap();
    let roff = ctl.run(&ns, ["man"]).unwrap();
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    man.stdin
        .take()
        .unwrap()
        .write_all(roff.as_bytes())
        .unwrap();
    let out = man.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let settings: Vec<&str> = text
        .lines()
        .skip_while(|line| line.trim() != "SETTINGS")
        .take_while(|line| !line.contains("filter-ctl(8)")) // the footer
        .collect();
    assert!(settings.len() > 20, "{text}");
    for line in &settings {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
        assert!(
            !line.trim().contains("   "),
            "spread over the width: {line:?}"
        );
    }
    // Each key on a line of its own, nothing else on it (a long default
    // there was spread over the width), its default in the text below.
    let help = ctl.run(&ns, ["set", "--help"]).unwrap();
    let defaults: Vec<(&str, &str)> = help
        .lines()
        .skip_while(|line| !line.starts_with("Defaults:"))
        .filter_map(|line| line.trim().split_once('='))
        .collect();
    assert!(defaults.len() > 10, "{help}");
    for (key, default) in defaults {
        let at = settings
            .iter()
            .position(|line| line.trim_start().starts_with(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} has no line of its own"));
        assert!(
            !settings[at].trim().contains(char::is_whitespace),
            "{key}: {:?}",
            settings[at]
        );
        // The paragraph as one line, words hyphenated at line ends joined.
        let mut text = String::new();
        for line in settings[at + 1..]
            .iter()
            .take_while(|l| !l.trim().is_empty())
        {
            let words = line.split_whitespace().collect::<Vec<_>>().join(" ");
            match text.strip_suffix('\u{2010}') {
                Some(cut) => text = format!("{cut}{words}"),
                None if text.is_empty() => text = words,
                None => text = format!("{text} {words}"),
            }
        }
        assert!(
            text.contains(&format!("default: {default}")),
            "{key}: {text}"
        );
    }
}

/// Native XDP on a veth whose peer has a 9000-byte MTU: the kernel's ERANGE
/// comes with what to do about it.
#[test]
fn native_mode_on_a_jumbo_mtu_gives_a_hint() {
    let ctl = FilterCtl::new().unwrap();
    let gw = Netns::unique(TEST_PREFIX).unwrap();
    let peer = Netns::unique(TEST_PREFIX).unwrap();
    harness::netns::veth(&gw, WAN_IF, &peer, "p0").unwrap();
    gw.ip(["link", "set", "dev", WAN_IF, "mtu", "9000"])
        .unwrap();
    peer.ip(["link", "set", "dev", "p0", "mtu", "9000"])
        .unwrap();
    gw.up(WAN_IF).unwrap();
    peer.up("p0").unwrap();
    let err = ctl.failure(&gw, &["attach", "--iface", WAN_IF, "--mode", "native"]);
    assert!(err.contains("MTU") && err.contains("--mode skb"), "{err}");
    assert!(
        ctl.status(&gw, None).unwrap().is_empty(),
        "nothing left attached"
    );
    // auto falls back to generic XDP, which takes any MTU.
    ctl.run(&gw, ["attach", "--iface", WAN_IF]).unwrap();
    ctl.run(&gw, ["detach", "--iface", WAN_IF]).unwrap();
}

/// Runs `command` for at most `limit`: its exit status (`None`: it was
/// still running and was killed) and its stderr.
fn run_within(mut command: Command, limit: Duration) -> (Option<ExitStatus>, String) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    (status, stderr)
}

/// `--iface ..`, `../..` and the like are paths, and `wan0:1` an alias of
/// wan0: every command that takes `--iface` refuses them at once, with the
/// name in the error, and nothing outside the interface's own pin directory
/// is touched (detach used to remove the directory `..` named). The pin
/// root is three levels down in the test's own, so that whatever `..`
/// reaches stays in it.
#[test]
fn an_interface_name_that_is_a_path_or_an_alias_is_refused_by_every_command() {
    let lab = lab(false);
    let root = lab.ctl.pin_root().join("a/b/c");
    let ctl = |args: &[&str]| {
        let mut command = lab.gw().command(lab.ctl.binary());
        command.arg("--pin-root").arg(&root).args(args);
        command
    };
    process::run(&mut ctl(&["attach", "--iface", WAN_IF])).unwrap();
    // Another tool's pins next to the root.
    let sibling = lab.ctl.pin_root().join("a/b/other-tool");
    fs::create_dir_all(&sibling).unwrap();
    symlink("kept", sibling.join("pin")).unwrap();
    let pins = fs::read_dir(&root).unwrap().count();
    let dir = tempfile::tempdir().unwrap();
    let file = settings_file(&dir, "monitor = true\n");
    for name in ["..", "../..", ".", "a/b", "wan0:1", "wan 0", ""] {
        for command in [
            &["attach", "--iface", name][..],
            &["detach", "--iface", name],
            &["status", "--iface", name],
            &["set", "--iface", name, "monitor=on"],
            &["apply", "--iface", name, &file],
            &["config", "--iface", name],
            &["stats", "--iface", name],
            &["allow", "add", "--iface", name, "192.0.2.1"],
            &["allow", "del", "--iface", name, "192.0.2.1"],
            &["allow", "list", "--iface", name],
            &["deny", "add", "--iface", name, "192.0.2.1"],
            &["deny", "del", "--iface", name, "192.0.2.1"],
            &["deny", "list", "--iface", name],
            &["top", "--iface", name, "--seconds", "1"],
            &["daemon", "--iface", name, "--listen", "127.0.0.1:0"],
        ] {
            let (status, stderr) = run_within(ctl(command), Duration::from_secs(20));
            assert!(
                status.is_some_and(|status| !status.success()),
                "{command:?} was not refused ({status:?}): {stderr}"
            );
            assert!(
                stderr.contains(&format!("'{name}' is not an interface name")),
                "{command:?}: {stderr}"
            );
        }
        assert_eq!(
            fs::read_dir(&root).unwrap().count(),
            pins,
            "{name}: the root's entries"
        );
        assert!(sibling.join("pin").symlink_metadata().is_ok(), "{name}");
    }
    assert!(
        !root.join("wan0:1").exists(),
        "no pin directory for an alias"
    );
    // Still attached, and filtering.
    let status = process::run(&mut ctl(&["status", "--iface", WAN_IF, "--json"])).unwrap();
    assert!(status.contains("\"attached\": true"), "{status}");
    assert_eq!(
        lab.probe(&[spoofed4(0x2424).into()], 53),
        0,
        "still dropped"
    );
    process::run(&mut ctl(&["detach", "--iface", WAN_IF])).unwrap();
}
