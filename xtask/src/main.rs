//! Project tasks: `cargo xtask COMMAND`, or on a fresh machine `./xtask/run COMMAND`,
//! which first installs the host toolchain pinned in rust-toolchain.toml.
//!
//! Every command that builds runs `setup` first, so nothing has to be installed
//! by hand: Debian packages, the pinned eBPF nightly and bpf-linker (see setup.rs).

mod lab;
mod package;
mod setup;
mod suite;
mod vm;

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
pub use harness::process::describe;

/// Tasks of the WAN filter workspace: setup, build, lab, test, lint, bench.
#[derive(Parser)]
#[command(
    name = "xtask",
    after_help = "On a fresh machine start with `./xtask/run lab` or `./xtask/run test` (as root)."
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build, the tests and the lab need: Debian packages, the
    /// pinned eBPF nightly with rust-src, and bpf-linker in .tools/. Idempotent;
    /// quiet when everything is there. (`build` installs only what building needs.)
    Setup,
    /// Install what building needs (gcc, libc6-dev, the toolchains; no test
    /// package), then build the workspace in release mode (target/release/filter-ctl).
    Build,
    /// Setup, build, then make the Debian package wan-filter_<version>_amd64.deb
    /// in target/debian/ (with Debian's dpkg-deb).
    Package,
    /// Setup, build, then run every test (needs root): controller unit tests,
    /// verdict tests through BPF_PROG_TEST_RUN, end-to-end tests in network namespaces.
    ///
    /// ARGS go to `cargo test --release --no-fail-fast`: a test-name filter, `-p tests`, and after
    /// `--` the test harness's own options, e.g. `test -- --test-threads=1`.
    ///
    /// Beside it, what can differ between kernels (xtask/src/vm/selection.rs:
    /// every verdict test, attach, pins, upgrade, one end-to-end test per
    /// defence) runs on Debian's Linux 6.1 under qemu at a lower priority (see
    /// `vm-test`), unless `--no-vm` is given. Prints each phase's time at the end. The whole suite on 6.1
    /// and 6.12 is `vm-test --kernel all`.
    Test {
        /// Skip the VM leg: only for quick local runs (CI runs it).
        #[arg(long, conflicts_with = "kernel")]
        no_vm: bool,
        #[command(flatten)]
        vm: vm::VmOptions,
        /// Options and test-name filters for `cargo test`.
        #[arg(allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<OsString>,
        /// After `--`: options of the test harness.
        #[arg(last = true, value_name = "HARNESS_ARGS")]
        harness: Vec<OsString>,
    },
    /// rustfmt check and clippy with -D warnings: the host crates, then the eBPF
    /// crates (the filter's and the benchmark's) with the pinned nightly for the BPF target.
    Lint,
    /// Setup, build, then run the model check for as long as asked (needs
    /// root): generated packet sequences through the real programs
    /// (BPF_PROG_TEST_RUN) and the reference model (tests/model), compared
    /// frame by frame, on the programs loaded for Ethernet devices and for
    /// devices without an Ethernet header; prints packets per second and
    /// every mismatch, shrunk and saved under tests/regressions/. ARGS:
    /// [--packets N] [--seconds S] [--seed N] [--link ethernet|ip|both]
    /// (default: 60 seconds, both).
    Fuzz {
        /// Options of the model check, e.g. --seconds 300.
        #[arg(
            allow_hyphen_values = true,
            trailing_var_arg = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Setup (with qemu), build, then boot Debian's own kernels under qemu (KVM,
    /// or TCG where KVM cannot boot them) and run the whole suite inside as
    /// root (`--tests kernel`: only what `test`'s VM leg runs): unit tests,
    /// verdict tests and end-to-end tests with veth pairs and the real
    /// DNS/NTP/HTTP peers. `vm-test --kernel all` is the full matrix: run it
    /// before calling a change to filter-ebpf done. The kernel packages are the newest of each series
    /// that apt offers, cached in .cache/vm/. Needs root.
    ///
    /// TEST ARGS are `test`'s: `vm-test -- verdict`,
    /// `vm-test --kernel all -- -p tests --test e2e -- --test-threads=1`.
    VmTest {
        #[command(flatten)]
        vm: vm::VmOptions,
        /// After `--`: `cargo test` options and filter, then `--` and the harness's options.
        #[arg(last = true, value_name = "TEST_ARGS")]
        test_args: Vec<OsString>,
    },
    /// Inside a vm-test guest: stage 2 (PID 1), or with --worker what it runs.
    #[command(hide = true)]
    VmGuest {
        plan: PathBuf,
        #[arg(long)]
        worker: bool,
    },
    /// Setup (with the benchmark's packages), build, then run the benchmark
    /// (needs root): cost per packet against an XDP_DROP floor and nftables,
    /// a million-source flood, legitimate traffic under attack, memory.
    /// Writes target/bench/; a full run also BENCHMARKS.md and tests/bench/.
    /// About 10 minutes; `bench --quick` about one. ARGS go to the benchmark
    /// (`cargo xtask bench -- --help` lists them).
    Bench {
        /// Options of the benchmark, e.g. --quick, --repeats N, --only flood.
        #[arg(
            allow_hyphen_values = true,
            trailing_var_arg = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Setup, build, then replay the incidents the filter answers in network
    /// namespaces (needs root): each attack runs without the filter, then with it
    /// on the gateway's wan0, with real servers (dnsmasq, chrony, Postfix, nginx)
    /// and clients, the damage measured independently of the filter; a verdict
    /// for each and a closing table. About 3 minutes after the build; exits 1
    /// if a defence did not hold.
    Lab(lab::LabArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.task) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<ExitCode> {
    match task {
        Task::Setup => setup::run(setup::Needs::Tests)?,
        Task::Build => {
            let filter_ctl = build_release()?;
            println!("built {}", shown(&filter_ctl).display());
        }
        Task::Package => {
            let deb = package::make(&build_release()?)?;
            println!("built {}", shown(&deb).display());
        }
        Task::Test {
            no_vm,
            vm,
            args,
            harness,
        } => return test(&args, &harness, (!no_vm).then_some(&vm)),
        Task::VmTest { vm, test_args } => return vm_test(&vm, &test_args),
        Task::VmGuest { plan, worker } => return vm::guest(&plan, worker),
        Task::Lint => return lint(),
        Task::Bench { args } => return bench(args),
        Task::Fuzz { args } => return fuzz(args),
        Task::Lab(opts) => {
            if !opts.list {
                require_root("the lab (it creates network namespaces and attaches XDP)")?;
                // Given a filter-ctl (the test suite gives its own), nothing is built.
                if opts.filter_ctl.is_none() {
                    build_release()?;
                }
                setup::packages(setup::Needs::Lab)?;
            }
            if !lab::run(opts)? {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The workspace root: xtask lives in `<root>/xtask`.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
}

/// `path` relative to the workspace root when it lies inside it, for messages.
pub fn shown(path: &Path) -> &Path {
    path.strip_prefix(repo_root()).unwrap_or(path)
}

/// Fails early and clearly unless we run as root.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    if !harness::process::is_root() {
        bail!("{what} needs root: run it as root");
    }
    Ok(())
}

/// `cargo` (the rustup proxy, so `+toolchain` works) run from the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo_root());
    cmd
}

/// Runs `cmd` with inherited output; fails if it cannot start or exits non-zero.
pub fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Setup of what building needs (never a test package), then [`build`].
pub fn build_release() -> anyhow::Result<PathBuf> {
    setup::run(setup::Needs::Build)?;
    build()
}

/// `cargo build --release` of the default members (filter-ctl's build
/// script builds the eBPF object). Returns the filter-ctl binary.
fn build() -> anyhow::Result<PathBuf> {
    run_cmd(cargo().args(["build", "--release"]))?;
    let filter_ctl = repo_root().join("target/release/filter-ctl");
    if !filter_ctl.is_file() {
        bail!("the build did not produce {}", filter_ctl.display());
    }
    Ok(filter_ctl)
}

/// The test build of filter-ctl whose maps have another layout (feature
/// `layout-next` of filter-common, filter-ebpf and filter-ctl), copied to
/// [`harness::ctl::NEXT_BINARY`]; the upgrade tests attach it over the
/// normal build and back. Built in the normal target directory, so that it
/// shares every dependency already built (only the three crates with the
/// feature are built again), then the normal binary is put back in place
/// (cargo only copies it again: both builds' artifacts are kept).
fn build_layout_next() -> anyhow::Result<PathBuf> {
    // Features are resolved over the workspace's default members, as in the
    // normal build: only the crates with the feature differ.
    let filter_ctl = ["build", "--release", "--bin", "filter-ctl"];
    run_cmd(
        cargo()
            .args(filter_ctl)
            .args(["--features", "filter-ctl/layout-next"]),
    )?;
    let built = repo_root().join("target/release/filter-ctl");
    let binary = repo_root().join(harness::ctl::NEXT_BINARY);
    fs::copy(&built, &binary).with_context(|| {
        format!(
            "copying {} to {}",
            shown(&built).display(),
            shown(&binary).display()
        )
    })?;
    run_cmd(cargo().args(filter_ctl))?;
    Ok(binary)
}

/// The whole suite in release mode: the same profile as `build` and the lab, so
/// the end-to-end tests drive the very target/release/filter-ctl an operator
/// installs, and a lab or build before a test run leaves nothing to recompile.
///
/// Beside it the VM leg (`vm`: what can differ between kernels, unless told
/// otherwise): both are reported, and the time of each phase.
fn test(
    args: &[OsString],
    harness: &[OsString],
    vm: Option<&vm::VmOptions>,
) -> anyhow::Result<ExitCode> {
    require_root("the test suite (it loads BPF programs and creates network namespaces)")?;
    // Bad arguments fail before anything is installed or built.
    let split = vm::TestArgs::split(args)?;
    vm::refuse_cargo_options(harness)?;
    let mut phases = Phases::new();
    let prepared = phases.time("setup", || {
        // The host suite runs the lab (xtask/tests/lab.rs): its packages too.
        setup::run(setup::Needs::Tests)?;
        // Here, not beside the build: apt takes one lock.
        setup::debian_packages(&["debootstrap"])?;
        vm.map(vm::prepare).transpose()
    })?;
    // The package test's clean Debian root (once per machine: debootstrap,
    // mostly downloads) is made while the build keeps the cores busy.
    let debian_root = std::thread::spawn(package::debian_root);
    let (filter_ctl, next, package) = phases.time("build", || {
        // target/release/filter-ctl too: `cargo test` alone does not build
        // another package's binary, and the end-to-end tests run it.
        let filter_ctl = if split.cargo.is_empty() {
            // The binaries and every test executable in one cargo run, which
            // keeps both cores busy longer than two runs one after the other.
            run_cmd(cargo().args(["build", "--release", "--all-targets"]))?;
            repo_root().join("target/release/filter-ctl")
        } else {
            let filter_ctl = build()?;
            run_cmd(
                cargo()
                    .args(["test", "--release", "--no-run"])
                    .args(&split.cargo),
            )?;
            filter_ctl
        };
        let next = build_layout_next()?;
        // The package test installs the package into a clean Debian root.
        let package = package::make(&filter_ctl)?;
        anyhow::Ok((filter_ctl, next, package))
    })?;
    let debian_root = phases.time("Debian root (beyond the build)", || {
        debian_root
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    // The kernel leg runs beside the host suite: that suite mostly waits
    // (floods of fixed length, expiries, servers' timeouts), while the
    // emulated guests keep the cores busy at a lower priority.
    let (host_passed, vm_passed) = std::thread::scope(|scope| {
        let leg = match (vm, prepared) {
            (Some(options), Some(prepared)) => {
                let options = vm::VmOptions {
                    beside_host_suite: true,
                    ..options.clone()
                };
                let filter_ctl = &filter_ctl;
                Some(scope.spawn(move || {
                    let start = std::time::Instant::now();
                    let passed = vm::run(
                        prepared,
                        &options,
                        options.tests.unwrap_or(vm::Selection::Kernel),
                        filter_ctl,
                        args,
                        harness,
                    );
                    (options.kernel, passed, start.elapsed())
                }))
            }
            _ => {
                eprintln!("xtask: the VM leg was skipped (--no-vm)");
                None
            }
        };
        let host_passed = phases.time("host suite", || {
            host_suite(
                &split,
                harness,
                &filter_ctl,
                &next,
                (&package, &debian_root),
            )
        });
        let vm_passed = leg.map_or(Ok(true), |leg| {
            let (kernel, passed, took) = leg
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let kernels = match kernel {
                vm::KernelChoice::All => "6.1 and 6.12 legs".to_owned(),
                one => format!("Linux {} leg", one.name()),
            };
            phases.record(format!("{kernels} (beside the host suite)"), took);
            passed
        });
        (host_passed, vm_passed)
    });
    let (host_passed, vm_passed) = (host_passed?, vm_passed?);
    if !host_passed {
        eprintln!("xtask: tests failed on this machine's kernel");
    }
    if !vm_passed {
        eprintln!("xtask: tests failed in the VM");
    }
    phases.print();
    Ok(if host_passed && vm_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The suite on this machine's kernel: every test executable `cargo test`
/// would run, as jobs (suite.rs), two at once, then the doctests. Its
/// outcome, kept in target/host-suite/, orders the next run. Returns
/// whether everything passed.
fn host_suite(
    split: &vm::TestArgs,
    harness: &[OsString],
    filter_ctl: &Path,
    next: &Path,
    (deb, debian_root): (&Path, &Path),
) -> anyhow::Result<bool> {
    let binaries = vm::plan::build_test_binaries(&split.cargo)?;
    let filter = split
        .filter
        .as_ref()
        .map(|f| f.to_string_lossy().into_owned());
    let harness_args: Vec<String> = split
        .harness
        .iter()
        .chain(harness)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let mut jobs = vm::selection::jobs(
        vm::Selection::All,
        &binaries,
        filter.as_deref(),
        &harness_args,
    )?;
    let outcome_file = repo_root().join("target/host-suite/outcome.json");
    let measured = suite::measured(std::slice::from_ref(&outcome_file));
    suite::order(&mut jobs, &measured, true);
    let slots = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    println!(
        "xtask: host suite: {} tests in {} jobs, {slots} at once (those that measure rates alone, first), longest first by {}",
        jobs.iter().map(|job| job.tests).sum::<usize>(),
        jobs.len(),
        if measured.is_empty() {
            "an estimate (no earlier run)"
        } else {
            "the last run's times (target/host-suite/outcome.json)"
        }
    );
    let env = [
        // The end-to-end tests drive this binary (tests/harness/src/ctl).
        ("FILTER_CTL", filter_ctl.as_os_str().to_owned()),
        // The upgrade tests attach this one over it, and back.
        (harness::ctl::NEXT_BINARY_ENV, next.as_os_str().to_owned()),
        // The package test installs this into a copy of that.
        (harness::debian::DEB_ENV, deb.as_os_str().to_owned()),
        (
            harness::debian::ROOT_ENV,
            debian_root.as_os_str().to_owned(),
        ),
    ];
    let outcome = suite::run_on_host(jobs, slots, &env, &outcome_file)?;
    let (passed, failed, ignored) = outcome.totals();
    let failed_jobs = outcome.failed_jobs();
    // Doctests are no executables: cargo runs them (only when no option
    // narrowed the build to some targets, which --doc cannot take).
    let doctests = split.cargo.is_empty()
        && cargo()
            .args(["test", "--release", "--doc", "--quiet"])
            .args(&split.filter)
            .status()
            .context("starting cargo test --doc")?
            .success();
    println!(
        "xtask: host suite: {passed} passed, {failed} failed, {ignored} ignored in {:.0} s{}{}",
        outcome.suite_secs,
        if failed_jobs.is_empty() {
            String::new()
        } else {
            format!("; failed: {}", failed_jobs.join(", "))
        },
        if split.cargo.is_empty() && !doctests {
            "; the doctests failed"
        } else {
            ""
        }
    );
    Ok(failed_jobs.is_empty() && (doctests || !split.cargo.is_empty()))
}

/// The wall time of each phase of a command, printed at its end; phases may
/// overlap, the total is the command's own wall time.
struct Phases {
    start: std::time::Instant,
    times: Vec<(String, std::time::Duration)>,
}

impl Phases {
    fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            times: Vec::new(),
        }
    }

    fn time<T>(&mut self, phase: &str, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let result = f();
        self.record(phase.to_owned(), start.elapsed());
        result
    }

    fn record(&mut self, phase: String, took: std::time::Duration) {
        self.times.push((phase, took));
    }

    fn print(&self) {
        let total = self.start.elapsed();
        let shown: Vec<String> = self
            .times
            .iter()
            .map(|(phase, d)| format!("{phase} {}", minutes(*d)))
            .collect();
        println!(
            "xtask: times: {}; total {}",
            shown.join(", "),
            minutes(total)
        );
    }
}

/// `7 min 05 s`, or `42 s` under a minute.
fn minutes(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs} s")
    } else {
        format!("{} min {:02} s", secs / 60, secs % 60)
    }
}

/// `vm-test`: the VM legs alone. TEST_ARGS are `test`'s ARGS, then after a
/// second `--` its HARNESS_ARGS.
fn vm_test(options: &vm::VmOptions, test_args: &[OsString]) -> anyhow::Result<ExitCode> {
    require_root("vm-test (it shares this machine's root filesystem with the guest)")?;
    let (args, harness) = match test_args.iter().position(|a| a == "--") {
        Some(at) => (&test_args[..at], &test_args[at + 1..]),
        None => (test_args, &[][..]),
    };
    setup::run(setup::Needs::VmTests)?;
    let prepared = vm::prepare(options)?;
    let filter_ctl = build()?;
    // The guest's upgrade tests find it at its default path, as on the host.
    build_layout_next()?;
    let selection = options.tests.unwrap_or(vm::Selection::All);
    Ok(
        if vm::run(prepared, options, selection, &filter_ctl, args, harness)? {
            ExitCode::SUCCESS
        } else {
            eprintln!("xtask: tests failed in the VM");
            ExitCode::FAILURE
        },
    )
}

/// The benchmark (the `bench` crate, tests/bench), built and run in release
/// mode next to the filter-ctl it attaches.
fn bench(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    require_root("the benchmark (it loads BPF programs and creates network namespaces)")?;
    setup::run(setup::Needs::Bench)?;
    let filter_ctl = build()?;
    run_release_binary("bench", "bench", &args, "the benchmark", &filter_ctl)
}

/// The model check's long run (the `fuzz` binary of the tests crate), in
/// release mode like the test suite, whose bounded run it extends.
fn fuzz(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    require_root("the model check (it loads BPF programs)")?;
    let filter_ctl = build_release()?;
    run_release_binary("tests", "fuzz", &args, "the model check", &filter_ctl)
}

/// `cargo run --release` of one binary of the workspace with `args`, told
/// which filter-ctl to drive; its failure becomes xtask's exit code.
fn run_release_binary(
    package: &str,
    binary: &str,
    args: &[OsString],
    what: &str,
    filter_ctl: &Path,
) -> anyhow::Result<ExitCode> {
    let status = cargo()
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            package,
            "--bin",
            binary,
            "--",
        ])
        .args(args)
        .env("FILTER_CTL", filter_ctl)
        .status()
        .with_context(|| format!("starting {what}"))?;
    if !status.success() {
        eprintln!("xtask: {what} failed ({status})");
        return Ok(ExitCode::from(
            status.code().map_or(1, |c| c.clamp(1, 255) as u8),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every check runs even when an earlier one fails; the exit code says if any did.
fn lint() -> anyhow::Result<ExitCode> {
    setup::run(setup::Needs::Build)?;
    let nightly = setup::ensure_nightly_component("clippy")?;
    let tools_bin = setup::tools_dir().join("bin");
    let path = std::env::join_paths(std::iter::once(tools_bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;

    let mut checks: Vec<(&str, Command)> = Vec::new();
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    checks.push(("rustfmt (all crates)", fmt));
    let mut clippy = cargo();
    clippy.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    checks.push(("clippy (host crates)", clippy));
    let mut clippy_ebpf = cargo();
    clippy_ebpf
        .arg(format!("+{nightly}"))
        .args([
            "clippy",
            "-p",
            "filter-ebpf",
            "-p",
            "bench-ebpf",
            "--target",
            "bpfel-unknown-none",
        ])
        .args(["-Z", "build-std=core", "--release", "--", "-D", "warnings"])
        .env("PATH", &path);
    checks.push((
        "clippy (filter-ebpf and bench-ebpf, BPF target)",
        clippy_ebpf,
    ));

    let mut failed = Vec::new();
    for (name, mut cmd) in checks {
        eprintln!("lint: {name}");
        if let Err(err) = run_cmd(&mut cmd) {
            eprintln!("lint: {name}: {err:#}");
            failed.push(name);
        }
    }
    if failed.is_empty() {
        eprintln!("lint: all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("lint: FAILED: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_args(argv: &[&str]) -> Vec<String> {
        let cli = Cli::try_parse_from(argv).unwrap();
        match cli.task {
            Task::Test { args, harness, .. } => args
                .into_iter()
                .chain((!harness.is_empty()).then(|| "--".into()))
                .chain(harness)
                .map(|a| a.into_string().unwrap())
                .collect(),
            _ => panic!("not the test task"),
        }
    }

    fn bench_args(argv: &[&str]) -> Vec<String> {
        let cli = Cli::try_parse_from(argv).unwrap();
        match cli.task {
            Task::Bench { args } => args.into_iter().map(|a| a.into_string().unwrap()).collect(),
            _ => panic!("not the bench task"),
        }
    }

    #[test]
    fn bench_args_pass_through_to_the_benchmark() {
        assert_eq!(bench_args(&["xtask", "bench"]), Vec::<String>::new());
        assert_eq!(bench_args(&["xtask", "bench", "--quick"]), ["--quick"]);
        assert_eq!(
            bench_args(&["xtask", "bench", "--only", "flood", "--repeats", "3"]),
            ["--only", "flood", "--repeats", "3"]
        );
        assert_eq!(bench_args(&["xtask", "bench", "--", "--help"]), ["--help"]);
    }

    #[test]
    fn the_vm_leg_is_skipped_only_when_asked() {
        let parse = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().task {
            Task::Test {
                no_vm, vm, args, ..
            } => (no_vm, vm.kernel, args.len()),
            _ => panic!("not the test task"),
        };
        assert_eq!(
            parse(&["xtask", "test"]),
            (false, vm::KernelChoice::V6_1, 0)
        );
        assert_eq!(
            parse(&["xtask", "test", "--no-vm", "verdict"]),
            (true, vm::KernelChoice::V6_1, 1)
        );
        assert_eq!(
            parse(&["xtask", "test", "--kernel", "all", "-p", "tests"]),
            (false, vm::KernelChoice::All, 2)
        );
        assert!(Cli::try_parse_from(["xtask", "test", "--no-vm", "--kernel", "6.12"]).is_err());
    }

    #[test]
    fn vm_test_takes_test_args_after_the_separator() {
        let parse = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().task {
            Task::VmTest { vm, test_args } => (
                vm.kernel,
                test_args
                    .into_iter()
                    .map(|a| a.into_string().unwrap())
                    .collect::<Vec<_>>(),
            ),
            _ => panic!("not the vm-test task"),
        };
        assert_eq!(
            parse(&["xtask", "vm-test"]),
            (vm::KernelChoice::V6_1, vec![])
        );
        assert_eq!(
            parse(&["xtask", "vm-test", "--kernel", "6.12", "--", "verdict"]),
            (vm::KernelChoice::V6_12, vec!["verdict".to_owned()])
        );
        assert_eq!(
            parse(&[
                "xtask",
                "vm-test",
                "--",
                "-p",
                "tests",
                "--",
                "--test-threads=1"
            ])
            .1,
            ["-p", "tests", "--", "--test-threads=1"]
        );
    }

    #[test]
    fn test_args_pass_through_to_cargo_test() {
        assert_eq!(test_args(&["xtask", "test"]), Vec::<String>::new());
        assert_eq!(test_args(&["xtask", "test", "verdict"]), ["verdict"]);
        assert_eq!(
            test_args(&["xtask", "test", "-p", "tests", "verdict"]),
            ["-p", "tests", "verdict"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "--", "--test-threads=1"]),
            ["--", "--test-threads=1"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "verdict", "--", "--nocapture"]),
            ["verdict", "--", "--nocapture"]
        );
    }
}
