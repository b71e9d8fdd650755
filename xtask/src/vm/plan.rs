//! What a VM leg runs and what it found: the plan the host writes (test
//! executables, their arguments, the modules to load) and the outcome the
//! guest writes back, both JSON. Also how `test`'s arguments are split between
//! the host's `cargo test --no-run` (which builds and lists the executables,
//! through cargo's JSON messages) and the executables themselves.

use std::{
    ffi::OsString,
    io::BufRead as _,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::{cargo, describe, repo_root, suite::Job};

/// Written by the host, read by the guest (stage 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The workspace root, which the guest must not hide under a fresh tmpfs.
    pub workspace: PathBuf,
    /// `uname -r` the guest must report.
    pub kernel_release: String,
    /// Loaded with modprobe before the suite.
    pub modules: Vec<String>,
    /// The filter-ctl the end-to-end tests drive (`FILTER_CTL`).
    pub filter_ctl: PathBuf,
    /// Every job of the leg, in the order to run them: each guest takes the
    /// next one no guest has taken yet (guest.rs).
    pub jobs: Vec<Job>,
}

/// A test executable, run like `cargo test` runs it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestBinary {
    /// Its source, relative to the workspace: `tests/tests/e2e.rs`, `filter-ctl/src/lib.rs`.
    pub name: String,
    pub path: PathBuf,
    /// Its package's directory, the working directory `cargo test` gives it.
    pub cwd: PathBuf,
}

/// Written by the guest into the shared output directory, read by the host.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// `uname -r` in the guest.
    pub kernel_release: String,
    /// The guest's uptime when stage 2 started, seconds.
    pub boot_secs: f64,
    /// The filter attached to a veth in the guest, before the suite.
    pub attach: Option<AttachCheck>,
    /// The jobs this guest (or the host) ran.
    pub jobs: Vec<JobOutcome>,
    pub suite_secs: f64,
    /// Modules loaded when the suite ended: the plan's and what the kernel autoloaded.
    pub modules_loaded: Vec<String>,
    /// Kernel log lines of warnings, bugs and oopses seen during the run.
    pub kernel_problems: Vec<String>,
    /// What went wrong outside the tests (a module that did not load, the attach check).
    pub errors: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
            && self.kernel_problems.is_empty()
            && self.jobs.iter().all(|b| b.exit_code == Some(0))
    }

    /// Adds the outcome of another guest of the same leg (which ran other
    /// executables on the same kernel).
    pub fn absorb(&mut self, other: Outcome) {
        if self.kernel_release.is_empty() {
            self.kernel_release = other.kernel_release;
        }
        self.boot_secs = self.boot_secs.max(other.boot_secs);
        self.attach = self.attach.take().or(other.attach);
        self.jobs.extend(other.jobs);
        self.suite_secs = self.suite_secs.max(other.suite_secs);
        self.modules_loaded.extend(other.modules_loaded);
        self.modules_loaded.sort();
        self.modules_loaded.dedup();
        self.kernel_problems.extend(other.kernel_problems);
        self.errors.extend(other.errors);
    }

    /// Tests passed, failed and ignored, over every executable.
    pub fn totals(&self) -> (u32, u32, u32) {
        self.jobs.iter().fold((0, 0, 0), |(p, f, i), b| {
            (p + b.passed, f + b.failed, i + b.ignored)
        })
    }

    /// The names of the jobs that did not exit with 0.
    pub fn failed_jobs(&self) -> Vec<&str> {
        self.jobs
            .iter()
            .filter(|job| job.exit_code != Some(0))
            .map(|job| job.name.as_str())
            .collect()
    }
}

/// What `filter-ctl attach` did on the guest's kernel.
#[derive(Debug, Serialize, Deserialize)]
pub struct AttachCheck {
    pub xdp_mode: String,
    pub egress_hook: String,
    pub programs: Vec<ProgramInsns>,
}

/// A program's verifier statistics, as the kernel reports them.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProgramInsns {
    pub name: String,
    /// Instructions the verifier processed (`verified_insns`).
    pub verified_insns: u64,
    /// Instructions after the verifier's rewrites (`bytes_xlated` / 8).
    pub xlated_insns: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JobOutcome {
    pub name: String,
    /// None when it could not start or was killed by a signal.
    pub exit_code: Option<i32>,
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
    pub secs: f64,
}

/// `./xtask/run test`'s ARGS split: what selects and builds the executables
/// (for `cargo test --no-run`), the test-name filter and, after `--`, the
/// harness's options (for the executables).
#[derive(Debug, PartialEq)]
pub struct TestArgs {
    pub cargo: Vec<OsString>,
    pub filter: Option<OsString>,
    pub harness: Vec<OsString>,
}

/// `cargo test` options that take a value in the next argument.
const CARGO_TEST_OPTIONS_WITH_VALUE: &[&str] = &[
    "-p",
    "--package",
    "--exclude",
    "--test",
    "--bench",
    "--bin",
    "--example",
    "-F",
    "--features",
    "-j",
    "--jobs",
    "--target",
    "--target-dir",
    "--manifest-path",
    "--profile",
    "--color",
    "--message-format",
    "--config",
    "-Z",
    "--lockfile-path",
];

/// `cargo test` options that no test executable takes: after `--` every job
/// would fail on them.
const CARGO_ONLY_OPTIONS: &[&str] = &[
    "-p",
    "--package",
    "--workspace",
    "--exclude",
    "--lib",
    "--bins",
    "--bin",
    "--all-targets",
    "--doc",
    "-F",
    "--features",
    "--release",
];

/// Refuses a `cargo test` option among the harness's options (after `--`).
pub fn refuse_cargo_options(harness: &[OsString]) -> anyhow::Result<()> {
    for arg in harness {
        let text = arg.to_string_lossy();
        let name = text.split('=').next().unwrap_or_default();
        if CARGO_ONLY_OPTIONS.contains(&name) {
            bail!(
                "`{text}` is an option of cargo test, but it comes after `--`, where the \
                 test harness's own options go (e.g. --nocapture): put it before `--`, as in \
                 `./xtask/run test -p tests --test e2e -- --nocapture`"
            );
        }
    }
    Ok(())
}

impl TestArgs {
    /// `cargo test` takes one positional argument, the test-name filter; the
    /// rest are options, some with a value in the next argument.
    pub fn split(args: &[OsString]) -> anyhow::Result<Self> {
        let mut cargo = Vec::new();
        let mut filter = None;
        let mut harness = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let text = arg.to_string_lossy();
            if text == "--" {
                harness.extend(args.by_ref().cloned());
            } else if CARGO_TEST_OPTIONS_WITH_VALUE.contains(&text.as_ref()) {
                cargo.push(arg.clone());
                cargo.extend(args.next().cloned());
            } else if text.starts_with('-') {
                cargo.push(arg.clone());
            } else if filter.is_none() {
                filter = Some(arg.clone());
            } else {
                bail!(
                    "two test-name filters ({} and {text}): cargo test takes one",
                    filter.unwrap_or_default().to_string_lossy()
                );
            }
        }
        refuse_cargo_options(&harness)?;
        Ok(Self {
            cargo,
            filter,
            harness,
        })
    }
}

/// Builds the test executables (`cargo test --release --no-run CARGO_ARGS`) and
/// lists them from cargo's JSON messages, sorted by name. Doctests are not
/// executables: they run on the host only.
pub fn build_test_binaries(cargo_args: &[OsString]) -> anyhow::Result<Vec<TestBinary>> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--release",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .args(cargo_args)
    .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", describe(&cmd)))?;
    let stdout = child.stdout.take().expect("piped");
    let mut binaries = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        if let Some(binary) = test_binary(&line?)? {
            binaries.push(binary);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&cmd));
    }
    binaries.sort_by(|a, b| a.name.cmp(&b.name));
    binaries.dedup_by(|a, b| a.path == b.path);
    Ok(binaries)
}

/// A test executable from one line of cargo's JSON output, if it names one.
fn test_binary(line: &str) -> anyhow::Result<Option<TestBinary>> {
    let message: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("cargo printed {line:?}"))?;
    let is_test = message["reason"] == "compiler-artifact" && message["profile"]["test"] == true;
    let (Some(path), Some(manifest), Some(source)) = (
        message["executable"].as_str(),
        message["manifest_path"].as_str(),
        message["target"]["src_path"].as_str(),
    ) else {
        return Ok(None);
    };
    if !is_test {
        return Ok(None);
    }
    let cwd = Path::new(manifest)
        .parent()
        .context("a manifest path without a directory")?
        .to_owned();
    let name = Path::new(source)
        .strip_prefix(repo_root())
        .unwrap_or(Path::new(source))
        .display()
        .to_string();
    Ok(Some(TestBinary {
        name,
        path: PathBuf::from(path),
        cwd,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(args: &[&str]) -> (Vec<String>, Option<String>) {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let split = TestArgs::split(&args).unwrap();
        (
            split
                .cargo
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            split.filter.map(|f| f.to_string_lossy().into_owned()),
        )
    }

    #[test]
    fn the_filter_is_the_one_positional_argument() {
        assert_eq!(split(&[]), (vec![], None));
        assert_eq!(split(&["verdict"]), (vec![], Some("verdict".into())));
        assert_eq!(
            split(&["-p", "tests", "--test", "e2e", "attach"]),
            (
                vec!["-p".into(), "tests".into(), "--test".into(), "e2e".into()],
                Some("attach".into())
            )
        );
        assert_eq!(
            split(&["--package=tests", "--lib", "netns"]),
            (
                vec!["--package=tests".into(), "--lib".into()],
                Some("netns".into())
            )
        );
        let two: Vec<OsString> = ["a", "b"].iter().map(OsString::from).collect();
        assert!(TestArgs::split(&two).is_err());
    }

    #[test]
    fn options_after_the_separator_are_the_harnesss() {
        let args: Vec<OsString> = ["-p", "tests", "verdict", "--", "--nocapture", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        let split = TestArgs::split(&args).unwrap();
        assert_eq!(split.cargo, ["-p", "tests"]);
        assert_eq!(split.filter, Some("verdict".into()));
        assert_eq!(split.harness, ["--nocapture", "x"]);
        for misplaced in [["--", "-p", "tests"], ["--", "--package=tests", "x"]] {
            let args: Vec<OsString> = misplaced.iter().map(OsString::from).collect();
            let err = TestArgs::split(&args).unwrap_err().to_string();
            assert!(err.contains("put it before `--`"), "{err}");
        }
    }

    #[test]
    fn test_executables_come_from_cargo_json() {
        let root = repo_root().display();
        let line = format!(
            r#"{{"reason":"compiler-artifact","manifest_path":"{root}/tests/Cargo.toml","target":{{"kind":["test"],"name":"e2e","src_path":"{root}/tests/tests/e2e.rs"}},"profile":{{"test":true}},"executable":"{root}/target/release/deps/e2e-0123"}}"#
        );
        let binary = test_binary(&line).unwrap().unwrap();
        assert_eq!(binary.name, "tests/tests/e2e.rs");
        assert_eq!(binary.cwd, repo_root().join("tests"));
        assert_eq!(
            binary.path,
            repo_root().join("target/release/deps/e2e-0123")
        );
        // The filter-ctl binary itself (built for the end-to-end tests) is not a test.
        let bin = line
            .replace(r#""test":true"#, r#""test":false"#)
            .replace("e2e-0123", "filter-ctl");
        assert!(test_binary(&bin).unwrap().is_none());
        // Libraries have no executable.
        let lib = line.replace(r#""executable":"#, r#""executable":null,"x":"#);
        assert!(test_binary(&lib).unwrap().is_none());
        assert!(
            test_binary(r#"{"reason":"build-finished","success":true}"#)
                .unwrap()
                .is_none()
        );
    }
}
