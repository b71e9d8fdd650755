//! What `dist/` installs and `filter-ctl` generates for an install: the
//! systemd unit passes `systemd-analyze verify` (with ExecStart pointing at
//! the built binary, which verify requires to exist), the shell completion
//! scripts are valid for their shells, and the man page renders.

use std::{fs, path::Path, process::Command};

use harness::{ctl, process};

const UNIT: &str = "wan-filter@.service";

fn dist() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist"))
}

fn filter_ctl(args: &[&str]) -> String {
    process::run(Command::new(ctl::binary().unwrap()).args(args)).unwrap()
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = fs::read_to_string(dist().join(UNIT)).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/sbin/filter-ctl daemon --iface %I"),
        "{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let binary = ctl::binary().unwrap();
    let instance = dir.path().join("wan-filter@wan0.service");
    fs::write(
        &instance,
        unit.replace("/usr/sbin/filter-ctl", binary.to_str().unwrap()),
    )
    .unwrap();
    // --man=no: the man page (Documentation=) is installed apart, from `filter-ctl man`.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&instance)
        .output()
        .expect("running systemd-analyze (xtask setup installs systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines about other units on this machine are not ours.
    let ours: Vec<&str> = said
        .lines()
        .filter(|line| line.contains("wan-filter"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {said}"
    );

    // The hardening systemd measures: "OK" or better means exposure below 5.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&instance)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|line| line.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|level| level.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(exposure < 5.0, "exposure {exposure}:\n{report}");
}

#[test]
fn the_default_config_is_the_defaults() {
    let text = fs::read_to_string(dist().join("filter.toml")).unwrap();
    let filter_ctl_api::settings::Assignments(assignments) = toml::from_str(&text).unwrap();
    // Every key is there, so that the file shows the whole configuration.
    let listed: Vec<&str> = assignments.iter().map(|a| a.key()).collect();
    for setting in filter_ctl_api::settings::SETTINGS {
        assert!(
            listed.contains(&setting.key()),
            "{} is missing",
            setting.key()
        );
    }
    let settings = filter_ctl_api::settings::Settings::default()
        .with(&assignments)
        .unwrap();
    assert_eq!(settings, filter_ctl_api::settings::Settings::default());
}

#[test]
fn completions_are_valid_scripts() {
    let bash = filter_ctl(&["completions", "bash"]);
    assert!(
        bash.contains("filter-ctl") && bash.contains("daemon"),
        "{bash}"
    );
    process::run_with_input(Command::new("bash").arg("-n"), &bash).expect("bash -n");
    let zsh = filter_ctl(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef filter-ctl"), "{zsh}");
    process::run_with_input(Command::new("zsh").arg("-n"), &zsh).expect("zsh -n");
    let fish = filter_ctl(&["completions", "fish"]);
    assert!(
        fish.contains("complete -c filter-ctl") && fish.contains("top"),
        "{fish}"
    );
    process::run_with_input(Command::new("fish").arg("--no-execute"), &fish)
        .expect("fish --no-execute");
    let man = filter_ctl(&["man"]);
    assert!(
        man.contains("FILTER-CTL DAEMON") && man.contains("sample_rate"),
        "{man}"
    );
}

/// `completions --help` names the shells it takes, and it takes those only.
#[test]
fn completions_take_the_shells_they_name() {
    let help = filter_ctl(&["completions", "--help"]);
    assert!(help.contains("bash, zsh or fish"), "{help}");
    for other in ["elvish", "powershell"] {
        let out = Command::new(ctl::binary().unwrap())
            .args(["completions", other])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{other} was accepted");
    }
}

/// The man page is one page, filter-ctl(8): it names no page per command
/// (there are none), it has every command, `allow`'s and `deny`'s own with
/// `--for`, and the config file the README and the unit use.
#[test]
fn the_man_page_is_whole_and_names_no_missing_pages() {
    let man = filter_ctl(&["man"]);
    assert!(!man.contains("filter\\-ctl\\-"), "pages named: {man}");
    for section in [
        "FILTER-CTL ALLOW ADD",
        "FILTER-CTL ALLOW DEL",
        "FILTER-CTL ALLOW LIST",
        "FILTER-CTL DENY ADD",
        "FILTER-CTL TOP",
        "FILTER-CTL CLEANUP",
        "COMMANDS",
    ] {
        assert!(man.contains(section), "{section} missing");
    }
    assert!(man.contains("\\-\\-for"), "--for missing");
    assert!(
        man.contains("/etc/wan\\-filter/wan0.toml"),
        "wan0.toml missing"
    );
    assert!(!man.contains("filter.toml"), "filter.toml named");
}
