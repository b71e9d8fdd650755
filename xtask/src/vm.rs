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
//! the executables as root and writes its outcome into
//! `target/vm/<kernel>/guest-N/out`. Under TCG two guests run at once, each
//! with its share of the executables ([`share_out`]). qemu.rs streams the
//! console and kills a guest that hangs.
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
pub mod plan;
mod qemu;
pub mod selection;

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    thread,
    time::Duration,
};

use anyhow::{Context as _, anyhow};

pub use kernel::Series;
use plan::{Outcome, Plan};
pub use plan::{TestArgs, refuse_cargo_options};
use qemu::{Accel, AccelChoice};
pub use selection::Selection;

use crate::{repo_root, shown, suite};

/// Modules the suite needs that the guest loads before it starts (the kernel
/// loads more on demand, e.g. nftables expressions; the outcome lists all).
const GUEST_MODULES: &[&str] = &[
    // Every test topology: veth pairs, the lab's "internet" bridge.
    "veth",
    "bridge",
    // A WAN device without Ethernet (tests/tests/wan_links_e2e.rs).
    "tun",
    // A real PPPoE session (tests/tests/pppoe_e2e.rs): the gateway's kernel
    // PPPoE (with ppp_generic), the ISP's pppoe-server sessions over a pty.
    "pppoe",
    "ppp_async",
    // A bond of two veth pairs (tests/tests/bond_e2e.rs).
    "bonding",
    // The ip6tnl and WireGuard WANs (tests/tests/ip6tnl_e2e.rs, wireguard_e2e.rs).
    "ip6_tunnel",
    "wireguard",
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
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::V6_1 => "6.1",
            KernelChoice::V6_12 => "6.12",
            KernelChoice::All => "all",
        }
    }

    fn series(self) -> Vec<Series> {
        match self {
            KernelChoice::V6_1 => vec![Series::V6_1],
            KernelChoice::V6_12 => vec![Series::V6_12],
            KernelChoice::All => Series::ALL.to_vec(),
        }
    }
}

/// qemu's `nice` increment while the host suite runs beside the leg: at 10,
/// a busy host test gets about nine tenths of a core the guests also want.
const BESIDE_HOST_SUITE_NICENESS: u8 = 10;

/// Options of the VM legs, shared by `vm-test` and `test`.
#[derive(clap::Args, Clone, Debug)]
pub struct VmOptions {
    /// The kernel series to boot: Debian's newest 6.1 or 6.12 package, or both.
    #[arg(long, value_enum, default_value = "6.1")]
    pub kernel: KernelChoice,
    /// KVM, TCG (emulation), or auto: KVM when this machine's KVM can boot
    /// Debian's kernels, TCG otherwise (with a note saying why).
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// Which tests the guests run: `kernel`, what can differ between kernels
    /// (xtask/src/vm/selection.rs, listed in docs/testing.md), or `all`, the whole
    /// suite. Default: `kernel` for `test`, `all` for `vm-test`.
    #[arg(long, value_enum, value_name = "WHICH")]
    pub tests: Option<Selection>,
    /// Kill a guest that runs longer than this many minutes (boot to
    /// power-off). Under TCG the whole 6.1 suite takes about 30 minutes in
    /// two guests on a 2-core machine.
    #[arg(long, value_name = "MINUTES", default_value_t = 70)]
    pub timeout: u64,
    /// Set by `test`, whose leg runs while the host suite does: the guests'
    /// qemu then runs at a lower priority (nice 10), so the host's timed
    /// tests keep the CPU they need and the guests take what they leave.
    #[arg(skip)]
    pub beside_host_suite: bool,
}

/// What the legs need downloaded before anything is built: the kernel
/// packages and busybox (the setup phase of `test`).
pub struct Prepared {
    kernels: Vec<(Series, anyhow::Result<kernel::Kernel>)>,
    busybox: PathBuf,
}

/// Installs the VM packages and downloads the chosen kernels and busybox
/// (once: they are cached in .cache/vm). A kernel that cannot be had fails
/// its leg, with the reason, after the others ran.
pub fn prepare(options: &VmOptions) -> anyhow::Result<Prepared> {
    crate::setup::packages(crate::setup::Needs::VmTests)?;
    let busybox = kernel::busybox()?;
    let kernels = options
        .kernel
        .series()
        .into_iter()
        .map(|series| (series, kernel::fetch(series)))
        .collect();
    Ok(Prepared { kernels, busybox })
}

/// One leg's result, for the closing summary.
struct Leg {
    series: Series,
    line: String,
    passed: bool,
}

/// Boots every prepared kernel and runs `selection`'s tests in it. `args`
/// and `harness` are `test`'s: cargo test's options and filter, the
/// harness's options. Returns whether every leg passed.
pub fn run(
    prepared: Prepared,
    options: &VmOptions,
    selection: Selection,
    filter_ctl: &Path,
    args: &[OsString],
    harness: &[OsString],
) -> anyhow::Result<bool> {
    let split = TestArgs::split(args)?;
    let binaries = plan::build_test_binaries(&split.cargo)?;
    let filter = split.filter.map(|f| f.to_string_lossy().into_owned());
    let harness: Vec<String> = split
        .harness
        .iter()
        .chain(harness)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let jobs = selection::jobs(selection, &binaries, filter.as_deref(), &harness)?;
    if jobs.is_empty() {
        anyhow::bail!(
            "no test executable has tests for the VM legs (tests: {}, arguments {args:?})",
            selection.name()
        );
    }
    println!(
        "vm-test: tests: {} ({} tests in {} jobs)",
        match selection {
            Selection::Kernel => "what can differ between kernels (xtask/src/vm/selection.rs)",
            Selection::All => "the whole suite",
        },
        jobs.iter().map(|job| job.tests).sum::<usize>(),
        jobs.len()
    );
    let (accel, note) = qemu::choose(options.accel);
    if let Some(why) = &note {
        println!(
            "vm-test: using TCG, qemu's emulator ({why}): the legs take several times longer than under KVM"
        );
    }
    let mut legs = Vec::new();
    for (series, kernel) in prepared.kernels {
        let plan = Plan {
            workspace: repo_root().to_owned(),
            // Set once the kernel package is known.
            kernel_release: String::new(),
            modules: GUEST_MODULES.iter().map(|m| (*m).to_owned()).collect(),
            filter_ctl: filter_ctl.to_owned(),
            jobs: jobs.clone(),
        };
        let leg = kernel
            .and_then(|kernel| {
                leg(
                    series,
                    &kernel,
                    &prepared.busybox,
                    accel,
                    options,
                    selection,
                    plan,
                )
            })
            .unwrap_or_else(|err| Leg {
                series,
                line: format!("FAILED: {err:#}"),
                passed: false,
            });
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

/// One kernel: boot it in [`guest_count`] guests at once, which take the
/// plan's jobs one after the other from a shared queue (longest first by
/// the leg's last run), and read their outcomes.
fn leg(
    series: Series,
    kernel: &kernel::Kernel,
    busybox: &Path,
    accel: Accel,
    options: &VmOptions,
    selection: Selection,
    mut plan: Plan,
) -> anyhow::Result<Leg> {
    println!(
        "vm-test: Linux {}: {} {} (the newest {} package apt offers), release {}",
        series.name(),
        kernel.package,
        kernel.version,
        series.name(),
        kernel.release
    );
    plan.kernel_release = kernel.release.clone();
    let leg_dir = repo_root()
        .join("target/vm")
        .join(series.name())
        .join(selection.name());
    let measured = suite::measured(&outcome_files(&leg_dir));
    suite::order(&mut plan.jobs, &measured, false);
    let _ = fs::remove_dir_all(&leg_dir);
    let queue = leg_dir.join("queue");
    fs::create_dir_all(&queue).with_context(|| format!("creating {}", queue.display()))?;
    for index in 0..plan.jobs.len() {
        fs::write(queue.join(guest::queue_entry(index)), "")?;
    }
    let guests = guest_count(accel, plan.jobs.len());
    println!(
        "vm-test: Linux {}: {guests} guest(s) at once, one emulated CPU each, taking the jobs longest first by {}",
        series.name(),
        if measured.is_empty() {
            "an estimate (no earlier run of this leg)".to_owned()
        } else {
            format!(
                "their times in the last run ({})",
                shown(&leg_dir).display()
            )
        }
    );
    let runs: Vec<anyhow::Result<GuestRun>> = thread::scope(|scope| {
        let handles: Vec<_> = (1..=guests)
            .map(|number| {
                let guest = Guest {
                    number,
                    dir: leg_dir.join(format!("guest-{number}")),
                    plan: plan.clone(),
                    queue: &queue,
                };
                scope.spawn(move || guest.run(series, kernel, busybox, accel, options))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a guest's thread panicked"))
            .collect()
    });
    let mut outcome = Outcome::default();
    let (mut passed, mut boot_secs, mut elapsed, mut used) = (true, 0.0_f64, 0.0_f64, accel);
    for run in runs {
        let run = run?;
        passed &= run.outcome.passed() && run.killed_because.is_none();
        boot_secs = boot_secs.max(run.boot_secs);
        elapsed = elapsed.max(run.elapsed_secs);
        used = run.accel;
        outcome.absorb(run.outcome);
    }
    let left: Vec<&str> = plan
        .jobs
        .iter()
        .enumerate()
        .filter(|(index, _)| queue.join(guest::queue_entry(*index)).exists())
        .map(|(_, job)| job.name.as_str())
        .collect();
    if !left.is_empty() {
        passed = false;
        outcome
            .errors
            .push(format!("no guest ran {}", left.join(", ")));
    }
    Ok(Leg {
        series,
        passed,
        line: format!(
            "{} (the leg took {elapsed:.0} s)",
            describe_outcome(kernel, used, boot_secs, &outcome)
        ),
    })
}

/// How many guests a leg boots at once. Under TCG a guest has one emulated
/// CPU (qemu.rs says why), which one host core runs: a second guest on the
/// second core halves the leg. Under KVM one guest has every CPU.
fn guest_count(accel: Accel, jobs: usize) -> usize {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    match accel {
        Accel::Kvm => 1,
        Accel::Tcg => cores.min(2).min(jobs).max(1),
    }
}

/// The outcome files a leg's guests wrote under `leg_dir`.
fn outcome_files(leg_dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(leg_dir)
        .map(|guests| {
            guests
                .filter_map(Result::ok)
                .map(|guest| guest.path().join("out").join(guest::OUTCOME_FILE))
                .collect()
        })
        .unwrap_or_default()
}

/// One guest of a leg: its number, its directory under `target/vm/<kernel>`
/// and its plan.
struct Guest<'a> {
    number: usize,
    dir: PathBuf,
    plan: Plan,
    /// The leg's queue of jobs, shared by its guests.
    queue: &'a Path,
}

/// What one guest found.
struct GuestRun {
    outcome: Outcome,
    accel: Accel,
    boot_secs: f64,
    elapsed_secs: f64,
    killed_because: Option<String>,
}

impl Guest<'_> {
    /// Boots the guest with its plan (again under TCG if it does not come up
    /// under KVM) and reads its outcome.
    fn run(
        self,
        series: Series,
        kernel: &kernel::Kernel,
        busybox: &Path,
        accel: Accel,
        options: &VmOptions,
    ) -> anyhow::Result<GuestRun> {
        let out = self.dir.join("out");
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let plan_path = self.dir.join("plan.json");
        fs::write(&plan_path, serde_json::to_string_pretty(&self.plan)?)?;
        let initramfs = self.dir.join("initramfs.cpio");
        let xtask = std::env::current_exe().context("finding the xtask binary")?;
        initramfs::write(&initramfs, kernel, busybox, &xtask, &plan_path)?;

        let modules_root = kernel.modules_root.clone();
        let root = PathBuf::from("/");
        let label = format!("[{} guest {}] ", series.name(), self.number);
        let mut boot = qemu::Boot {
            accel,
            kernel: &kernel.image,
            initramfs: &initramfs,
            shares: vec![
                (&root, "wanroot", true),
                (&modules_root, guest::MODULES_TAG, true),
                (&out, guest::OUTPUT_TAG, false),
                (self.queue, guest::QUEUE_TAG, false),
            ],
            memory_mib: 3072,
            timeout: Duration::from_secs(options.timeout * 60),
            silence: Duration::from_secs(10 * 60),
            ready_within: match accel {
                Accel::Kvm => READY_WITHIN_KVM,
                Accel::Tcg => READY_WITHIN_TCG,
            },
            log: self.dir.join("console.log"),
            ready_marker: guest::READY_MARKER,
            label: &label,
            niceness: if options.beside_host_suite {
                BESIDE_HOST_SUITE_NICENESS
            } else {
                0
            },
        };
        println!(
            "vm-test: Linux {}: booting {} under {} (console in {})",
            series.name(),
            kernel.release,
            accel.name(),
            shown(&boot.log).display()
        );
        let mut ended = boot.run()?;
        if ended.ready_after.is_none()
            && boot.accel == Accel::Kvm
            && options.accel == AccelChoice::Auto
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
                "vm-test: Linux {} guest {}: {why}; the console's last lines (all of it in {}):\n{}",
                series.name(),
                self.number,
                shown(&boot.log).display(),
                qemu::log_tail(&boot.log, 60)?
            );
            return Err(anyhow!("guest {}: {why}", self.number));
        };
        Ok(GuestRun {
            boot_secs: ended
                .ready_after
                .map_or(outcome.boot_secs, |d| d.as_secs_f64()),
            outcome,
            accel: boot.accel,
            elapsed_secs: ended.elapsed.as_secs_f64(),
            killed_because: ended.killed_because,
        })
    }
}

/// One line per leg: the kernel, the times, the tests, the verifier's counts.
fn describe_outcome(
    kernel: &kernel::Kernel,
    accel: Accel,
    boot_secs: f64,
    outcome: &Outcome,
) -> String {
    let (passed, failed, ignored) = outcome.totals();
    let failed_jobs = outcome.failed_jobs();
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
        ("failed jobs", failed_jobs.join(", ")),
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
