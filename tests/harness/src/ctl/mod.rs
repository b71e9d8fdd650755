//! The one driver of the real `filter-ctl` binary, for the end-to-end tests,
//! the lab and the benchmark: inside a namespace (`ip netns exec`), with a pin
//! root of its own on the bpffs that is removed when the driver is dropped,
//! however the caller ends. The JSON that `stats`, `status`, `config` and
//! `allow|deny list` print is read into the types of [`report`], the only
//! place that parses it.

pub mod daemon;
pub mod fault;
pub mod report;

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Arc, OnceLock},
    time::SystemTime,
};

use anyhow::{Context as _, anyhow, bail};
use serde::de::DeserializeOwned;

pub use self::report::{ListedEntry, Settings, Stats, Status, Tunnelled};
use crate::{bpffs::BpffsDir, names::TEST_PIN_PREFIX, netns::Netns, process};

/// Environment variable naming the filter-ctl binary to test (xtask may set it).
pub const BINARY_ENV: &str = "FILTER_CTL";
/// Environment variable naming the test build of filter-ctl whose maps have
/// another layout (feature `layout-next`), for the upgrade tests.
pub const NEXT_BINARY_ENV: &str = "FILTER_CTL_NEXT";
/// Where `cargo xtask test` leaves it, relative to the workspace: a copy
/// next to the normal build's binary, which keeps the path.
pub const NEXT_BINARY: &str = "target/release/filter-ctl-layout-next";

/// The filter-ctl built with the feature `layout-next`: `$FILTER_CTL_NEXT`,
/// else [`NEXT_BINARY`], which must be newer than the sources (`cargo xtask
/// test` and `vm-test` build it).
pub fn next_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(NEXT_BINARY_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{NEXT_BINARY_ENV}={} is not a file", path.display());
        }
        return Ok(fs::canonicalize(path)?);
    }
    let workspace = workspace();
    let path = workspace.join(NEXT_BINARY);
    let build = "cargo xtask test";
    let built = fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .with_context(|| {
            format!(
                "{} is missing: `{build}` builds it; or set {NEXT_BINARY_ENV}",
                path.display()
            )
        })?;
    if let Some((newest, source)) = newest_source(&workspace)
        && newest > built
    {
        bail!(
            "{} is older than {}: `{build}` builds it again; or set {NEXT_BINARY_ENV}",
            path.display(),
            source.display()
        );
    }
    Ok(path)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/harness lives in the workspace")
        .to_owned()
}

/// The filter-ctl binary: `$FILTER_CTL` if set, else `filter-ctl` in the
/// target directory this test binary was built in (`target/<profile>/deps/e2e-*`
/// → `target/<profile>/filter-ctl`), so debug tests use the debug build and
/// release tests the release build.
///
/// `cargo test` does not build another package's binaries, so the fallback
/// binary may be missing or older than the sources: both are errors with the
/// command that fixes them, never a silent run of stale code.
pub fn binary() -> anyhow::Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| locate().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow!(err))
}

fn locate() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{BINARY_ENV}={} is not a file", path.display());
        }
        return Ok(fs::canonicalize(path)?);
    }
    let exe = std::env::current_exe().context("finding the test binary")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("unexpected test binary location {}", exe.display()))?;
    let path = profile_dir.join("filter-ctl");
    let release = profile_dir.ends_with("release");
    let build = format!(
        "cargo build -p filter-ctl{}",
        if release { " --release" } else { "" }
    );
    let built = fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .with_context(|| {
            format!(
                "{} is missing: `cargo test` does not build it; run `{build}` \
                 (`cargo xtask test` does), or set {BINARY_ENV}",
                path.display()
            )
        })?;
    if let Some((newest, source)) = newest_source(&workspace())
        && newest > built
    {
        bail!(
            "{} is older than {}: run `{build}` (`cargo xtask test` does), or set {BINARY_ENV}",
            path.display(),
            source.display()
        );
    }
    Ok(path)
}

/// The newest file the filter-ctl binary is built from.
fn newest_source(workspace: &Path) -> Option<(SystemTime, PathBuf)> {
    fn walk(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
        let Ok(meta) = fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            for entry in fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(modified) = meta.modified()
            && newest.as_ref().is_none_or(|(time, _)| modified > *time)
        {
            *newest = Some((modified, path.to_owned()));
        }
    }
    let mut newest = None;
    for part in [
        "filter-ctl/src",
        "filter-ctl/build.rs",
        "filter-ctl/Cargo.toml",
        "filter-ebpf/src",
        "filter-ebpf/Cargo.toml",
        "filter-common/src",
        "filter-common/Cargo.toml",
    ] {
        walk(&workspace.join(part), &mut newest);
    }
    newest
}

/// filter-ctl with a pin root of its own, removed (with whatever is pinned
/// there, which detaches it) when the last driver using it is dropped.
pub struct FilterCtl {
    binary: PathBuf,
    pin_root: Arc<BpffsDir>,
}

impl FilterCtl {
    /// The binary [`binary`] finds, with a pin root named for the tests.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self::with_binary(binary()?, TEST_PIN_PREFIX))
    }

    /// `binary`, with a pin root `/sys/fs/bpf/<pin_prefix>-<pid>-<n>`.
    pub fn with_binary(binary: PathBuf, pin_prefix: &str) -> Self {
        Self {
            binary,
            pin_root: Arc::new(BpffsDir::unique(pin_prefix)),
        }
    }

    /// Another binary (another build of filter-ctl) on the same pin root:
    /// the upgrade tests attach one over the other.
    pub fn with_binary_at(&self, binary: PathBuf) -> Self {
        Self {
            binary,
            pin_root: Arc::clone(&self.pin_root),
        }
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn pin_root(&self) -> &Path {
        self.pin_root.path()
    }

    /// `ip netns exec NS filter-ctl --pin-root ROOT ARGS...`, not yet run.
    pub fn command<I, S>(&self, ns: &Netns, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = ns.command(&self.binary);
        command
            .arg("--pin-root")
            .arg(self.pin_root())
            .args(args)
            .env("RUST_LOG", "info");
        command
    }

    /// Runs filter-ctl in `ns` and returns its output, whatever the exit status.
    pub fn output<I, S>(&self, ns: &Netns, args: I) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        process::output(&mut self.command(ns, args))
    }

    /// Runs filter-ctl in `ns` expecting it to fail; returns its stderr.
    /// Panics (a test helper) if it succeeds.
    pub fn failure(&self, ns: &Netns, args: &[&str]) -> String {
        let out = self.output(ns, args).expect("running filter-ctl");
        assert!(
            !out.status.success(),
            "filter-ctl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs filter-ctl in `ns`; fails unless it exits 0. Returns stdout.
    pub fn run<I, S>(&self, ns: &Netns, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        process::run(&mut self.command(ns, args))
    }

    /// `filter-ctl attach --iface IFACE [--mode MODE]`; returns stdout.
    pub fn attach(&self, ns: &Netns, iface: &str, mode: Option<&str>) -> anyhow::Result<String> {
        let mut args = vec!["attach", "--iface", iface];
        if let Some(mode) = mode {
            args.extend(["--mode", mode]);
        }
        self.run(ns, args)
    }

    /// `filter-ctl detach --iface IFACE`; returns stdout.
    pub fn detach(&self, ns: &Netns, iface: &str) -> anyhow::Result<String> {
        self.run(ns, ["detach", "--iface", iface])
    }

    /// Runs `filter-ctl ARGS...` in `ns` (ARGS ending in `--json`) and reads its output.
    fn json<T: DeserializeOwned>(&self, ns: &Netns, args: &[&str]) -> anyhow::Result<T> {
        report::parse(&self.run(ns, args)?, args[0])
    }

    /// `filter-ctl status [--iface IFACE] --json`: every interface's status,
    /// or IFACE's, attached or not (exit status 0 or 3).
    pub fn status(&self, ns: &Netns, iface: Option<&str>) -> anyhow::Result<Vec<Status>> {
        let args = match iface {
            Some(iface) => vec!["status", "--iface", iface, "--json"],
            None => vec!["status", "--json"],
        };
        let out = self.output(ns, &args)?;
        if !matches!(out.status.code(), Some(0 | 3)) {
            bail!(
                "filter-ctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        report::parse(&String::from_utf8_lossy(&out.stdout), "status")
    }

    /// `filter-ctl stats --iface IFACE --json`.
    pub fn stats(&self, ns: &Netns, iface: &str) -> anyhow::Result<Stats> {
        Stats::parse(&self.run(ns, ["stats", "--iface", iface, "--json"])?)
    }

    /// `filter-ctl stats --iface IFACE --tunnelled --json`: the tunnelled
    /// packets' rows.
    pub fn tunnelled(&self, ns: &Netns, iface: &str) -> anyhow::Result<Tunnelled> {
        self.json(ns, &["stats", "--iface", iface, "--tunnelled", "--json"])
    }

    /// `filter-ctl config --iface IFACE --json`: the live settings.
    pub fn config(&self, ns: &Netns, iface: &str) -> anyhow::Result<Settings> {
        self.json(ns, &["config", "--iface", iface, "--json"])
    }

    /// `filter-ctl allow|deny list --iface IFACE --json`.
    pub fn list(&self, ns: &Netns, list: &str, iface: &str) -> anyhow::Result<Vec<ListedEntry>> {
        self.json(ns, &[list, "list", "--iface", iface, "--json"])
    }
}
