//! `cargo xtask setup`: installs everything the build, the tests and the lab
//! need, idempotently. Quiet when nothing is to do; one line per step that works.
//!
//! 1. Debian packages, only those missing, and only those of the groups the
//!    command needs ([`Needs`]): building installs [`BUILD_PACKAGES`] alone.
//! 2. The eBPF nightly pinned in filter-ebpf/rust-toolchain.toml, with rust-src.
//! 3. bpf-linker built against that nightly's own LLVM, into `<repo>/.tools`,
//!    rebuilt only when its version or the nightly changes (a stamp file records both).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};

use crate::{describe, repo_root, shown};

/// A group of Debian packages and what needs them.
pub type Packages = (&'static str, &'static [&'static str]);

/// What building needs: a C linker and libc for the host crates and
/// bpf-linker. The only packages `build`, `package` and `lint` install, so
/// that building on the gateway itself adds nothing else to it.
pub const BUILD_PACKAGES: Packages = ("build", &["gcc", "libc6-dev"]);

/// What the tests need besides the build's, by purpose. `test` and
/// `vm-test` install them (the lab and the benchmark the groups they use),
/// never `build`: chrony would replace systemd-timesyncd, prometheus is a
/// server enabled at boot, and none of it belongs on a gateway that only
/// builds the filter.
pub const TEST_PACKAGES: &[Packages] = &[
    // Inspecting loaded programs, maps and links.
    BPF_TOOLS,
    // Lab and end-to-end tests: namespaces, veth, NAT, traffic, nsenter/mount.
    NETWORK_TOOLS,
    // Real DNS and NTP peers for the solicited-response tests. dnsmasq-base is the
    // dnsmasq binary without the system service, which would bind port 53 here.
    SERVERS,
    // The daemon's tests: promtool (a real Prometheus parser for /metrics)
    // and systemd-analyze (verifies the unit in dist/).
    ("daemon tests", &["prometheus", "systemd"]),
    // The upstream tests: the BGP speakers the daemon's upstream mode drives
    // (gobgpd with its `gobgp` CLI, exabgp) and the provider's router they
    // peer with (bird2, whose `birdc` shows the FlowSpec and RTBH routes).
    (
        "upstream tests (BGP speakers and the provider's router)",
        &["gobgpd", "exabgp", "bird2"],
    ),
    // The shells whose completion scripts filter-ctl prints, to parse them
    // (`zsh -n`, `fish --no-execute`; bash is there already).
    ("completion tests", &["zsh", "fish"]),
    // A real PPPoE session: pppoe-server, and pppd with its rp-pppoe plugin.
    ("PPPoE test", &["pppoe", "ppp"]),
    // The WireGuard WAN test's peers (`wg`; the module is the kernel's).
    ("WireGuard WAN test", &["wireguard-tools"]),
];

const BPF_TOOLS: Packages = ("bpf tools", &["bpftool"]);
const NETWORK_TOOLS: Packages = (
    "lab and end-to-end tests",
    &[
        "iproute2",
        "iputils-ping",
        "nftables",
        "netcat-openbsd",
        "procps",
        "util-linux",
    ],
);
const SERVERS: Packages = (
    "DNS and NTP servers and clients",
    &["dnsmasq-base", "chrony", "bind9-dnsutils"],
);

/// Debian packages only the lab needs (`cargo xtask lab`, and `test`, whose
/// host suite runs the lab): the real servers and clients of its incidents
/// that the end-to-end tests do without. Postfix is the mail server with a
/// fixed number of SMTP slots (its `smtpd` process limit) and swaks the
/// sending servers; nginx the web server and curl the browser. `build` never
/// installs them.
pub const LAB_PACKAGES: Packages = ("lab", &["postfix", "swaks", "nginx", "curl"]);

/// Debian packages only the benchmark needs (`cargo xtask bench`), installed
/// by that command alone: interface statistics (ethtool), a peer filter to
/// compare with (xdp-filter from xdp-tools) and the chart (gnuplot and a font).
pub const BENCH_PACKAGES: Packages = (
    "benchmark",
    &["ethtool", "xdp-tools", "gnuplot-nox", "fonts-dejavu-core"],
);

/// Debian packages only the VM legs need (`cargo xtask vm-test`, and `test`
/// unless `--no-vm`): qemu, kmod (depmod for the kernel package's modules,
/// modprobe inside the guest, which runs on this machine's root filesystem) and
/// xz (some kernel packages compress their modules). The kernels and busybox
/// are downloaded, not installed (see vm/kernel.rs).
pub const VM_PACKAGES: Packages = ("VM test legs", &["qemu-system-x86", "kmod", "xz-utils"]);

/// What a command needs installed besides the toolchains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// `build`, `package`, `lint`, `fuzz`: building (and loading programs
    /// through BPF_PROG_TEST_RUN, which needs no tools).
    Build,
    /// `test` and `setup`: the build and every test (the lab's included).
    Tests,
    /// `vm-test`: the tests' and qemu's.
    VmTests,
    /// `lab`: the build, the network tools, the servers and the lab's own.
    Lab,
    /// `bench`: the build, the network tools, the servers and the benchmark's own.
    Bench,
}

impl Needs {
    /// The package groups, the build's first.
    pub fn packages(self) -> Vec<Packages> {
        let mut groups = vec![BUILD_PACKAGES];
        match self {
            Needs::Build => {}
            Needs::Tests => groups.extend(TEST_PACKAGES.iter().copied().chain([LAB_PACKAGES])),
            Needs::VmTests => groups.extend(TEST_PACKAGES.iter().copied().chain([VM_PACKAGES])),
            Needs::Lab => groups.extend([BPF_TOOLS, NETWORK_TOOLS, SERVERS, LAB_PACKAGES]),
            Needs::Bench => groups.extend([BPF_TOOLS, NETWORK_TOOLS, SERVERS, BENCH_PACKAGES]),
        }
        groups
    }
}

/// The bpf-linker release we build.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// The file naming the eBPF nightly: the one source of truth (filter-ctl's
/// build.rs reads the same `channel = "..."` line).
const NIGHTLY_TOOLCHAIN_FILE: &str = "filter-ebpf/rust-toolchain.toml";

/// Installs what `needs` names (only what is missing), the pinned nightly
/// and bpf-linker.
pub fn run(needs: Needs) -> anyhow::Result<()> {
    packages(needs)?;
    let nightly = nightly()?;
    bpf_linker(&nightly)
}

/// The Debian packages of `needs` alone (the lab given a filter-ctl builds
/// nothing).
pub fn packages(needs: Needs) -> anyhow::Result<()> {
    let wanted: Vec<&str> = needs
        .packages()
        .iter()
        .flat_map(|(_, pkgs)| pkgs.iter().copied())
        .collect();
    debian_packages(&wanted)
}

/// Project-local tools: bpf-linker in `bin/`, its stamp, the LLVM prefix it links.
pub fn tools_dir() -> PathBuf {
    repo_root().join(".tools")
}

// ---------------------------------------------------------------- Debian packages

/// Installs those of `wanted` that are missing.
pub fn debian_packages(wanted: &[&str]) -> anyhow::Result<()> {
    let missing = missing_packages(wanted)?;
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    crate::require_root("installing Debian packages")?;
    // Keep package scripts from starting services (chrony) on this machine;
    // container images usually ship this file already.
    let _no_services = PolicyRcD::install()?;
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        cmd
    };
    apt_update()?;
    run_captured(apt(&["install", "-y", "-q", "--no-install-recommends"]).args(&missing))?;
    let still = missing_packages(wanted)?;
    if !still.is_empty() {
        bail!("apt-get did not install: {}", still.join(" "));
    }
    Ok(())
}

/// `apt-get update`, quietly (its output only if it fails).
pub fn apt_update() -> anyhow::Result<()> {
    run_captured(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    )
}

/// The packages of `wanted` that dpkg does not have installed.
fn missing_packages<'a>(wanted: &[&'a str]) -> anyhow::Result<Vec<&'a str>> {
    // Unknown packages make dpkg-query exit 1; its stdout still lists the known ones.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${db:Status-Status}\n"])
        .args(wanted)
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query (is this Debian?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(wanted
        .iter()
        .copied()
        .filter(|pkg| !installed(&text, pkg))
        .collect())
}

fn installed(dpkg_query_output: &str, pkg: &str) -> bool {
    dpkg_query_output.lines().any(|line| {
        let mut fields = line.split('\t');
        let name = fields.next().unwrap_or_default();
        // Multi-arch packages may show as name:arch.
        let name = name.split(':').next().unwrap_or_default();
        name == pkg && fields.next() == Some("installed")
    })
}

/// /usr/sbin/policy-rc.d answering "no" while packages install, if none exists.
struct PolicyRcD(Option<PathBuf>);

impl PolicyRcD {
    fn install() -> anyhow::Result<Self> {
        let path = Path::new("/usr/sbin/policy-rc.d");
        if path.exists() {
            return Ok(Self(None));
        }
        fs::write(
            path,
            "#!/bin/sh\n# written by cargo xtask setup while installing packages\nexit 101\n",
        )
        .with_context(|| format!("writing {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
        Ok(Self(Some(path.to_owned())))
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

// ---------------------------------------------------------------- the eBPF nightly

/// The pinned nightly's name, from filter-ebpf/rust-toolchain.toml.
pub fn nightly_name() -> anyhow::Result<String> {
    let file = repo_root().join(NIGHTLY_TOOLCHAIN_FILE);
    let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    parse_channel(&text).ok_or_else(|| anyhow!("no `channel = \"...\"` in {}", file.display()))
}

/// The `channel = "..."` value of a rust-toolchain.toml, read the same simple
/// way filter-ctl/build.rs reads it.
fn parse_channel(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
}

/// Installs the pinned nightly with rust-src if needed; returns its name.
fn nightly() -> anyhow::Result<String> {
    let name = nightly_name()?;
    let ready = toolchain_dir(&name)?.is_some_and(|dir| {
        dir.join("lib/rustlib/src/rust/library/core/Cargo.toml")
            .is_file()
    });
    if !ready {
        println!(
            "setup: installing Rust {name} with rust-src (pinned in {NIGHTLY_TOOLCHAIN_FILE})"
        );
        // An explicit name: a bare `rustup toolchain install` would follow
        // RUSTUP_TOOLCHAIN, which cargo's rustup proxy sets to the host toolchain.
        run_captured(Command::new("rustup").args([
            "toolchain",
            "install",
            &name,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
            "--no-self-update",
        ]))?;
    }
    Ok(name)
}

/// Adds a rustup component (e.g. clippy) to the pinned nightly if missing; returns its name.
pub fn ensure_nightly_component(component: &str) -> anyhow::Result<String> {
    let name = nightly_name()?;
    let dir = toolchain_dir(&name)?.ok_or_else(|| anyhow!("{name} is not installed"))?;
    let present = match component {
        "clippy" => dir.join("bin/cargo-clippy").is_file(),
        "rustfmt" => dir.join("bin/rustfmt").is_file(),
        _ => false,
    };
    if !present {
        println!("setup: adding {component} to Rust {name}");
        run_captured(Command::new("rustup").args([
            "component",
            "add",
            component,
            "--toolchain",
            &name,
        ]))?;
    }
    Ok(name)
}

/// Where rustup installed the toolchain `name`, if it did.
fn toolchain_dir(name: &str) -> anyhow::Result<Option<PathBuf>> {
    let out = Command::new("rustup")
        .args(["toolchain", "list", "-v"])
        .output()
        .context("running rustup (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "rustup toolchain list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(find_toolchain_dir(
        &String::from_utf8_lossy(&out.stdout),
        name,
    ))
}

/// Parses `rustup toolchain list -v`: `NAME-HOST [(active)] [(default)] PATH` per line.
fn find_toolchain_dir(listing: &str, name: &str) -> Option<PathBuf> {
    listing.lines().find_map(|line| {
        let full = line.split_whitespace().next()?;
        // NAME-HOST, where a host triple starts with its architecture, never a
        // digit: "nightly" must not match "nightly-2026-10-20-x86_64-...".
        let matches = full == name
            || full
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|host| host.starts_with(|c: char| c.is_ascii_alphabetic()));
        matches.then(|| line.split_whitespace().last().map(PathBuf::from))?
    })
}

// ---------------------------------------------------------------- bpf-linker

/// Builds bpf-linker into `.tools/bin` against the nightly's shared LLVM, unless
/// the stamp says this version was already built against this nightly.
fn bpf_linker(nightly: &str) -> anyhow::Result<()> {
    let tools = tools_dir();
    let binary = tools.join("bin/bpf-linker");
    let stamp = tools.join("bpf-linker.stamp");
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION} built against {nightly}\n");
    let stamp_ok = fs::read_to_string(&stamp).is_ok_and(|text| text == wanted);
    if stamp_ok && runs(&binary) {
        return Ok(());
    }

    let sysroot = rustc_output(nightly, &["--print", "sysroot"])?;
    let sysroot = PathBuf::from(sysroot.trim());
    let llvm_major = llvm_major(&rustc_output(nightly, &["-vV"])?)
        .ok_or_else(|| anyhow!("`rustc +{nightly} -vV` names no LLVM version"))?;
    let libllvm = find_libllvm(&sysroot.join("lib"))?;
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the LLVM {llvm_major} of {nightly} into {} (about a minute)",
        shown(&tools).display()
    );

    // An interrupted build must not leave a stamp that claims success.
    let _ = fs::remove_file(&stamp);
    // bpf-linker finds LLVM as $LLVM_PREFIX/lib/libLLVM.so: point that at rustc's own.
    let prefix = tools.join("llvm-prefix");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let link = prefix_lib.join("libLLVM.so");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {} to {}", link.display(), libllvm.display()))?;

    let mut install = crate::cargo();
    install
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--locked", "--force", "--quiet", "--no-default-features"])
        .arg("--features")
        .arg(format!("llvm-{llvm_major}"))
        .arg("--root")
        .arg(&tools)
        .env("LLVM_PREFIX", &prefix)
        // Without the rpath the binary does not find libLLVM at run time.
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", sysroot.join("lib").display()),
        )
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null());
    crate::run_cmd(&mut install)?;
    if !runs(&binary) {
        bail!("{} was built but does not run", binary.display());
    }
    fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

/// True if `binary --version` runs (it finds its libLLVM).
fn runs(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn rustc_output(toolchain: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("rustc");
    cmd.arg(format!("+{toolchain}")).args(args);
    let out = cmd
        .output()
        .with_context(|| format!("running {}", describe(&cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            describe(&cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The major of `LLVM version: 23.1.4` in `rustc -vV` output.
fn llvm_major(version_verbose: &str) -> Option<u32> {
    version_verbose
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next()?.parse().ok())
}

/// rustc's shared LLVM in the toolchain's lib dir, e.g. `libLLVM.so.23.1-rust-1.101.0-nightly`
/// (older toolchains: `libLLVM-17-rust-1.75.0-nightly.so`).
fn find_libllvm(lib: &Path) -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| anyhow!("no libLLVM shared library in {}", lib.display()))
}

/// Runs `cmd` with its output captured, shown only if it fails.
pub fn run_captured(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        bail!("{} failed ({})", describe(cmd), out.status);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_is_read_from_the_toolchain_file() {
        let text =
            "# comment\n[toolchain]\nchannel = \"nightly-2026-10-20\"\nprofile = \"minimal\"\n";
        assert_eq!(parse_channel(text).as_deref(), Some("nightly-2026-10-20"));
        assert_eq!(parse_channel("[toolchain]\nprofile = \"minimal\"\n"), None);
    }

    #[test]
    fn the_repo_pins_a_dated_nightly() {
        let name = nightly_name().unwrap();
        assert!(name.starts_with("nightly-20"), "{name}");
    }

    #[test]
    fn llvm_major_comes_from_rustc_vv() {
        let vv = "rustc 1.101.0-nightly (07e526db9 2026-10-19)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.101.0-nightly\nLLVM version: 23.1.4\n";
        assert_eq!(llvm_major(vv), Some(23));
        assert_eq!(llvm_major("rustc 1.0\n"), None);
    }

    #[test]
    fn toolchain_dir_is_the_last_column_of_the_matching_line() {
        let listing = "stable-x86_64-unknown-linux-gnu (default) /r/toolchains/stable-x86_64-unknown-linux-gnu\n\
                       nightly-x86_64-unknown-linux-gnu /r/toolchains/nightly-x86_64-unknown-linux-gnu\n\
                       nightly-2026-10-20-x86_64-unknown-linux-gnu /r/toolchains/nightly-2026-10-20-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            find_toolchain_dir(listing, "nightly-2026-10-20"),
            Some(PathBuf::from(
                "/r/toolchains/nightly-2026-10-20-x86_64-unknown-linux-gnu"
            ))
        );
        // "nightly" must not match "nightly-2026-10-20-...", nor the reverse.
        let reversed: String = listing.lines().rev().map(|l| format!("{l}\n")).collect();
        assert_eq!(
            find_toolchain_dir(&reversed, "nightly"),
            Some(PathBuf::from(
                "/r/toolchains/nightly-x86_64-unknown-linux-gnu"
            ))
        );
        assert_eq!(find_toolchain_dir(listing, "nightly-2026-10-21"), None);
    }

    #[test]
    fn dpkg_status_must_be_installed() {
        let out = "bpftool\tinstalled\nchrony\tnot-installed\nlibc6-dev:amd64\tinstalled\n";
        assert!(installed(out, "bpftool"));
        assert!(!installed(out, "chrony"));
        assert!(installed(out, "libc6-dev"));
        assert!(!installed(out, "dnsmasq-base"));
    }

    #[test]
    fn every_package_is_listed_once() {
        let mut all: Vec<&str> = TEST_PACKAGES
            .iter()
            .chain([
                &BUILD_PACKAGES,
                &LAB_PACKAGES,
                &BENCH_PACKAGES,
                &VM_PACKAGES,
            ])
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
