//! `cargo xtask vm-test`: the suite on Debian's own kernels under qemu, and the
//! VM leg of `cargo xtask test` (Linux 6.1, the oldest supported kernel).
//!
//! Per kernel (a "leg"): the newest package of the series that apt offers is
//! downloaded and unpacked into `.cache/vm/` (kernel.rs); the test executables
//! are built on the host and listed from cargo's JSON (plan.rs); qemu boots the
//! kernel with a small initramfs (initramfs.rs, init.sh) that mounts this
//! machine's root filesystem read-only over 9p under a tmpfs overlay, so
//! dnsmasq, chrony, nft, iproute2 and the built executables are all there;
//! stage 2 (guest.rs) loads the kernel package's modules, checks attach, runs
//! the executables as root and writes its outcome into `target/vm/<kernel>/out`.
//! qemu.rs streams the console and kills a guest that hangs.
//!
//! Why our own runner rather than virtme-ng: the guest needs the modules of a
//! kernel package that is unpacked, not installed (virtme-ng looks for them in
//! /lib/modules or a kernel build tree), and the leg needs a result it can
//! trust (an outcome file, not an exit code guessed from a console), a hard
//! time limit and no Python environment to install in CI. The parts are small:
//! busybox for stage 1, qemu, 9p and overlayfs, which are all in Debian.

mod guest;
mod initramfs;
mod kernel;
mod plan;
mod qemu;

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, anyhow};

pub use kernel::Series;
use plan::{Outcome, Plan, TestArgs};
use qemu::{Accel, AccelChoice};

use crate::{repo_root, shown};

/// Modules the suite needs that the guest loads before it starts (the kernel
/// loads more on demand, e.g. nftables expressions; the outcome lists all).
const GUEST_MODULES: &[&str] = &[
    // Every test topology: veth pairs, the lab's "internet" bridge.
    "veth",
    "bridge",
    // The egress program before Linux 6.6: a clsact qdisc with a BPF classifier.
    "sch_ingress",
    "cls_bpf",
    // The lab's NAT and the counters that check the filter from outside
    // (nftables expressions the kernel loads on demand where they are modules).
    "nf_tables",
    "nft_chain_nat",
    "nft_masq",
    // `ss`, with which the harness waits for its servers to listen.
    "udp_diag",
    "tcp_diag",
];

/// How long a guest may take to reach stage 2: seconds under KVM, about 20 s
/// under TCG on these machines, more when they are busy.
const READY_WITHIN_KVM: Duration = Duration::from_secs(120);
const READY_WITHIN_TCG: Duration = Duration::from_secs(300);

/// Which kernels to boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelChoice {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    All,
}

impl KernelChoice {
    fn series(self) -> Vec<Series> {
        match self {
            KernelChoice::V6_1 => vec![Series::V6_1],
            KernelChoice::V6_12 => vec![Series::V6_12],
            KernelChoice::All => Series::ALL.to_vec(),
        }
    }
}

/// Options of the VM legs, shared by `vm-test` and `test`.
#[derive(clap::Args, Debug)]
pub struct VmOptions {
    /// The kernel series to boot: Debian's newest 6.1 or 6.12 package, or both.
    #[arg(long, value_enum, default_value = "6.1")]
    pub kernel: KernelChoice,
    /// KVM, TCG (emulation), or auto: KVM when this machine's KVM can boot
    /// Debian's kernels, TCG otherwise (with a note saying why).
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// Kill a guest that runs longer than this many minutes (boot to
    /// power-off). Under TCG the whole suite takes about 50 minutes on a
    /// 2-core machine; CI gives the whole test command 90.
    #[arg(long, value_name = "MINUTES", default_value_t = 70)]
    pub timeout: u64,
}

/// One leg's result, for the closing summary.
struct Leg {
    series: Series,
    line: String,
    passed: bool,
}

/// Boots every chosen kernel and runs the selected tests in it. `args` and
/// `harness` are `test`'s: cargo test's options and filter, the harness's
/// options. Returns whether every leg passed.
pub fn run(
    options: &VmOptions,
    filter_ctl: &Path,
    args: &[OsString],
    harness: &[OsString],
) -> anyhow::Result<bool> {
    crate::setup::run_for_vm()?;
    let split = TestArgs::split(args)?;
    let binaries = plan::build_test_binaries(&split.cargo)?;
    if binaries.is_empty() {
        anyhow::bail!("cargo test built no test executables for {args:?}");
    }
    let test_args = plan::executable_args(split.filter.as_deref(), harness);
    let (accel, note) = qemu::choose(options.accel);
    if let Some(why) = &note {
        println!(
            "vm-test: using TCG, qemu's emulator ({why}): the legs take several times longer than under KVM"
        );
    }
    let mut legs = Vec::new();
    for series in options.kernel.series() {
        let plan = Plan {
            workspace: repo_root().to_owned(),
            // Set once the kernel package is known.
            kernel_release: String::new(),
            modules: GUEST_MODULES.iter().map(|m| (*m).to_owned()).collect(),
            filter_ctl: filter_ctl.to_owned(),
            binaries: binaries.clone(),
            test_args: test_args.clone(),
        };
        let leg = match leg(series, accel, options, plan) {
            Ok(leg) => leg,
            Err(err) => Leg {
                series,
                line: format!("FAILED: {err:#}"),
                passed: false,
            },
        };
        println!("vm-test: Linux {}: {}", leg.series.name(), leg.line);
        legs.push(leg);
    }
    if legs.len() > 1 {
        println!("vm-test: summary");
        for leg in &legs {
            println!("  Linux {}: {}", leg.series.name(), leg.line);
        }
    }
    Ok(legs.iter().all(|leg| leg.passed))
}

/// One kernel: fetch, boot, run, read the outcome.
fn leg(series: Series, accel: Accel, options: &VmOptions, mut plan: Plan) -> anyhow::Result<Leg> {
    let kernel = kernel::fetch(series)?;
    println!(
        "vm-test: Linux {}: {} {} (the newest {} package apt offers), release {}",
        series.name(),
        kernel.package,
        kernel.version,
        series.name(),
        kernel.release
    );
    let busybox = kernel::busybox()?;
    let work = repo_root().join("target/vm").join(series.name());
    let out = work.join("out");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let plan_path = work.join("plan.json");
    plan.kernel_release = kernel.release.clone();
    fs::write(&plan_path, serde_json::to_string_pretty(&plan)?)?;
    let initramfs = work.join("initramfs.cpio");
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    initramfs::write(&initramfs, &kernel, &busybox, &xtask, &plan_path)?;

    let modules_root = kernel.modules_root.clone();
    let root = PathBuf::from("/");
    let mut boot = qemu::Boot {
        accel,
        kernel: &kernel.image,
        initramfs: &initramfs,
        shares: vec![
            (&root, "wanroot", true),
            (&modules_root, guest::MODULES_TAG, true),
            (&out, guest::OUTPUT_TAG, false),
        ],
        memory_mib: 3072,
        timeout: Duration::from_secs(options.timeout * 60),
        silence: Duration::from_secs(10 * 60),
        ready_within: match accel {
            Accel::Kvm => READY_WITHIN_KVM,
            Accel::Tcg => READY_WITHIN_TCG,
        },
        log: work.join("console.log"),
        ready_marker: guest::READY_MARKER,
    };
    println!(
        "vm-test: Linux {}: booting {} under {} (console in {})",
        series.name(),
        kernel.release,
        accel.name(),
        shown(&boot.log).display()
    );
    let mut ended = boot.run()?;
    if ended.ready_after.is_none() && boot.accel == Accel::Kvm && options.accel == AccelChoice::Auto
    {
        println!(
            "vm-test: Linux {}: the kernel did not come up under KVM ({}); booting it again under TCG, qemu's emulator (several times slower)",
            series.name(),
            ended.killed_because.as_deref().unwrap_or("qemu exited")
        );
        boot.accel = Accel::Tcg;
        boot.ready_within = READY_WITHIN_TCG;
        ended = boot.run()?;
    }
    let outcome_file = out.join(guest::OUTCOME_FILE);
    let outcome: Option<Outcome> = fs::read_to_string(&outcome_file)
        .ok()
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .with_context(|| format!("parsing {}", outcome_file.display()))?;
    let Some(outcome) = outcome else {
        let why = ended.killed_because.clone().unwrap_or_else(|| {
            format!(
                "qemu exited ({}) without an outcome: the guest panicked or stage 2 failed",
                ended.status.map_or("killed".to_owned(), |s| s.to_string())
            )
        });
        eprintln!(
            "vm-test: Linux {}: {why}; the console's last lines (all of it in {}):\n{}",
            series.name(),
            shown(&boot.log).display(),
            qemu::log_tail(&boot.log, 60)?
        );
        return Err(anyhow!("{why}"));
    };
    let boot_secs = ended
        .ready_after
        .map_or(outcome.boot_secs, |d| d.as_secs_f64());
    Ok(Leg {
        series,
        passed: outcome.passed() && ended.killed_because.is_none(),
        line: format!(
            "{} (the leg took {:.0} s)",
            describe_outcome(&kernel, boot.accel, boot_secs, &outcome),
            ended.elapsed.as_secs_f64()
        ),
    })
}

/// One line per leg: the kernel, the times, the tests, the verifier's counts.
fn describe_outcome(
    kernel: &kernel::Kernel,
    accel: Accel,
    boot_secs: f64,
    outcome: &Outcome,
) -> String {
    let (passed, failed, ignored) = outcome.totals();
    let failed_binaries: Vec<&str> = outcome
        .binaries
        .iter()
        .filter(|b| b.exit_code != Some(0))
        .map(|b| b.name.as_str())
        .collect();
    let mut line = format!(
        "{} ({} {}, {}), booted in {boot_secs:.0} s, suite {:.0} s: {passed} passed, {failed} failed, {ignored} ignored",
        if outcome.passed() { "passed" } else { "FAILED" },
        kernel.package,
        kernel.version,
        accel.name(),
        outcome.suite_secs,
    );
    if let Some(attach) = &outcome.attach {
        line.push_str(&format!(
            "; XDP {}, egress {}; verifier: {}",
            attach.xdp_mode,
            attach.egress_hook,
            attach
                .programs
                .iter()
                .map(|p| format!("{} {}", p.name, p.verified_insns))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (what, list) in [
        ("failed executables", failed_binaries.join(", ")),
        ("errors", outcome.errors.join("; ")),
        ("kernel log", outcome.kernel_problems.join("; ")),
    ] {
        if !list.is_empty() {
            line.push_str(&format!("; {what}: {list}"));
        }
    }
    line
}

/// `xtask vm-guest PLAN` inside the guest: PID 1, or with `--worker` the worker.
pub fn guest(plan: &Path, worker: bool) -> anyhow::Result<ExitCode> {
    if worker {
        guest::worker(plan)
    } else {
        guest::init(plan)
    }
}
