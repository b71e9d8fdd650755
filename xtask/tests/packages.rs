//! What `xtask build` installs on a machine that has none of the project's
//! Debian packages: the build's alone (gcc, libc6-dev), never the test and
//! lab packages (chrony replaces systemd-timesyncd, prometheus is a server
//! enabled at boot). The machine is simulated: `dpkg-query`, `apt-get` and
//! `cargo` on the PATH are stand-ins that record what they are asked, and
//! dpkg knows only what apt-get "installed"; the toolchains are the real
//! ones (already installed by the run that built this test), so it runs on
//! the host only (a visible skip line in the VM legs).

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, process::Command};

/// `dpkg-query -W -f=... PKG...`: the packages apt-get "installed" so far.
const DPKG_QUERY: &str = r#"#!/bin/sh
for arg in "$@"; do
    case "$arg" in -*) continue ;; esac
    grep -qx "$arg" "$STATE/installed" 2>/dev/null && printf '%s\tinstalled\n' "$arg"
done
exit 0
"#;

/// `apt-get update|install ... PKG...`: recorded; installs "succeed".
const APT_GET: &str = r#"#!/bin/sh
echo "$*" >> "$STATE/apt-get.log"
if [ "$1" = install ]; then
    for arg in "$@"; do
        case "$arg" in -*|install) ;; *) echo "$arg" >> "$STATE/installed" ;; esac
    done
fi
exit 0
"#;

/// `cargo build --release`: recorded, nothing built (the test is about
/// packages; the binary it checks for exists, the suite built it).
const CARGO: &str = r#"#!/bin/sh
echo "$*" >> "$STATE/cargo.log"
exit 0
"#;

fn stand_in(dir: &Path, name: &str, script: &str) {
    let path = dir.join(name);
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn build_installs_only_what_building_needs() {
    // The guest has the built tests but no toolchains to run `xtask build`
    // with; what it installs does not depend on the kernel.
    if harness::kernel::in_vm_guest() {
        harness::process::note(
            "packages: skipped in the VM leg, `xtask build`'s packages are checked on the host only",
        );
        return;
    }
    assert!(
        harness::process::is_root(),
        "xtask build installs packages as root: run the tests as root"
    );
    let state = tempfile::Builder::new()
        .prefix("wft-packages-")
        .tempdir()
        .unwrap();
    let bin = state.path().join("bin");
    fs::create_dir(&bin).unwrap();
    stand_in(&bin, "dpkg-query", DPKG_QUERY);
    stand_in(&bin, "apt-get", APT_GET);
    stand_in(&bin, "cargo", CARGO);
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("build")
        .env("PATH", path)
        .env("STATE", state.path())
        .output()
        .expect("running xtask build");
    let log = fs::read_to_string(state.path().join("apt-get.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "xtask build failed: {}{}\napt-get was asked: {log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let installed: Vec<String> = fs::read_to_string(state.path().join("installed"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        installed,
        ["gcc", "libc6-dev"],
        "a build on a machine without the project's packages installs what building needs \
         and nothing else; apt-get was asked: {log}"
    );
    let cargo = fs::read_to_string(state.path().join("cargo.log")).unwrap_or_default();
    assert!(
        cargo.lines().any(|line| line == "build --release"),
        "and then builds: {cargo}"
    );
}
