//! Driving the real `filter-ctl` binary from the end-to-end tests: inside a
//! namespace (`ip netns exec`), with a pin root of its own on the bpffs that
//! is removed when the test ends, however it ends.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::SystemTime,
};

use anyhow::{Context as _, anyhow, bail};
use filter_common::Reason;
use serde_json::Value;

use crate::{
    lab::TEST_PIN_PREFIX,
    netns::{self, BpffsDir, Netns},
};

/// Environment variable naming the filter-ctl binary to test (xtask may set it).
pub const BINARY_ENV: &str = "FILTER_CTL";

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
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace");
    if let Some((newest, source)) = newest_source(workspace)
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
/// there, which detaches it) when this is dropped.
pub struct FilterCtl {
    binary: PathBuf,
    pin_root: BpffsDir,
}

impl FilterCtl {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            binary: binary()?,
            pin_root: BpffsDir::unique(TEST_PIN_PREFIX),
        })
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
        netns::output(&mut self.command(ns, args))
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
        netns::run(&mut self.command(ns, args))
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

    /// `filter-ctl status --json [--iface IFACE]`: the list of interface statuses.
    pub fn status(&self, ns: &Netns, iface: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let mut args = vec!["status", "--json"];
        if let Some(iface) = iface {
            args.extend(["--iface", iface]);
        }
        let text = self.run(ns, args)?;
        serde_json::from_str(&text).with_context(|| format!("parsing status --json: {text}"))
    }

    /// `filter-ctl stats --iface IFACE --json`.
    pub fn stats(&self, ns: &Netns, iface: &str) -> anyhow::Result<Stats> {
        let text = self.run(ns, ["stats", "--iface", iface, "--json"])?;
        Stats::parse(&text)
    }
}

/// Per-reason counters from `stats --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// reason name → (packets, bytes); monitor mode's rows are keyed
    /// `would_drop:<reason>`.
    pub counts: BTreeMap<String, (u64, u64)>,
}

impl Stats {
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let rows: Vec<Value> =
            serde_json::from_str(json).with_context(|| format!("parsing stats --json: {json}"))?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let field = |name: &str| {
                row.get(name)
                    .ok_or_else(|| anyhow!("stats row without {name}: {row}"))
            };
            let reason = field("reason")?
                .as_str()
                .ok_or_else(|| anyhow!("reason is not a string: {row}"))?;
            let number = |name: &str| {
                field(name)?
                    .as_u64()
                    .ok_or_else(|| anyhow!("{name} is not a number: {row}"))
            };
            let key = match field("action")?.as_str() {
                Some("would_drop") => format!("would_drop:{reason}"),
                _ => reason.to_owned(),
            };
            counts.insert(key, (number("packets")?, number("bytes")?));
        }
        for reason in Reason::ALL {
            if !counts.contains_key(reason.name()) {
                bail!("stats --json lacks reason {}: {json}", reason.name());
            }
        }
        Ok(Self { counts })
    }

    pub fn packets(&self, reason: Reason) -> u64 {
        self.counts[reason.name()].0
    }

    pub fn bytes(&self, reason: Reason) -> u64 {
        self.counts[reason.name()].1
    }

    /// Packets monitor mode passed that `reason` would have dropped.
    pub fn would_drop(&self, reason: Reason) -> u64 {
        self.counts[&format!("would_drop:{}", reason.name())].0
    }

    /// What was counted since `before`, per reason (saturating at zero).
    pub fn since(&self, before: &Stats) -> Stats {
        let counts = self
            .counts
            .iter()
            .map(|(reason, &(packets, bytes))| {
                let (p0, b0) = before.counts.get(reason).copied().unwrap_or_default();
                (
                    reason.clone(),
                    (packets.saturating_sub(p0), bytes.saturating_sub(b0)),
                )
            })
            .collect();
        Stats { counts }
    }

    /// Reasons with a non-zero packet count, for assertion messages.
    pub fn nonzero(&self) -> Vec<(&str, u64, u64)> {
        self.counts
            .iter()
            .filter(|(_, (packets, _))| *packets > 0)
            .map(|(reason, &(packets, bytes))| (reason.as_str(), packets, bytes))
            .collect()
    }
}

/// The XDP program attached to `iface` in `ns`, per `ip -d -j link show`:
/// (mode, program id), with mode "native", "skb", "hw" or "multi", or None.
pub fn xdp_on(ns: &Netns, iface: &str) -> anyhow::Result<Option<(String, u32)>> {
    let text = ns.ip(["-d", "-j", "link", "show", "dev", iface])?;
    let links: Vec<Value> = serde_json::from_str(&text)?;
    let Some(xdp) = links.first().and_then(|link| link.get("xdp")) else {
        return Ok(None);
    };
    // iproute2: XDP_ATTACHED_DRV = 1, SKB = 2, HW = 3, MULTI = 4.
    let mode = match xdp.get("mode").and_then(Value::as_u64) {
        Some(1) => "native",
        Some(2) => "skb",
        Some(3) => "hw",
        Some(4) => "multi",
        other => bail!("unexpected XDP mode {other:?} in {xdp}"),
    };
    let id = xdp
        .pointer("/prog/id")
        .or_else(|| xdp.pointer("/attached/0/prog/id"))
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("no program id in {xdp}"))?;
    Ok(Some((mode.to_owned(), u32::try_from(id)?)))
}

/// Whether the kernel still has a BPF program with this id (`bpftool prog show id N`).
pub fn program_exists(id: u32) -> anyhow::Result<bool> {
    let out = netns::output(Command::new("bpftool").args(["prog", "show", "id", &id.to_string()]))?;
    Ok(out.status.success())
}

/// Whether the kernel still has a BPF link with this id (`bpftool link show id N`).
pub fn link_exists(id: u32) -> anyhow::Result<bool> {
    let out = netns::output(Command::new("bpftool").args(["link", "show", "id", &id.to_string()]))?;
    Ok(out.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(rows: &[(&str, u64, u64)]) -> String {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(reason, packets, bytes)| {
                serde_json::json!({
                    "reason": reason, "direction": "ingress", "action": "pass",
                    "packets": packets, "bytes": bytes,
                })
            })
            .collect();
        serde_json::to_string(&rows).unwrap()
    }

    fn all(packets: u64) -> Vec<(&'static str, u64, u64)> {
        Reason::ALL
            .iter()
            .map(|reason| (reason.name(), packets, packets * 100))
            .collect()
    }

    #[test]
    fn stats_parse_and_difference() {
        let before = Stats::parse(&json(&all(1))).unwrap();
        let mut rows = all(1);
        rows[Reason::PassIpv4.index() as usize] = ("pass_ipv4", 11, 1100);
        let after = Stats::parse(&json(&rows)).unwrap();
        let delta = after.since(&before);
        assert_eq!(delta.packets(Reason::PassIpv4), 10);
        assert_eq!(delta.bytes(Reason::PassIpv4), 1000);
        assert_eq!(delta.packets(Reason::PassIpv6), 0);
        assert_eq!(delta.nonzero(), vec![("pass_ipv4", 10, 1000)]);
    }

    #[test]
    fn stats_must_list_every_reason() {
        let err = Stats::parse(&json(&[("pass_ipv4", 1, 1)])).unwrap_err();
        assert!(format!("{err}").contains("lacks reason"), "{err}");
        assert!(Stats::parse("not json").is_err());
    }
}
