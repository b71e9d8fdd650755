//! Stage 2 of the guest: `xtask vm-guest PLAN`, exec'd by stage 1 (init.sh) as
//! PID 1 on the overlay of this machine's root filesystem. It mounts what a
//! Linux system has (proc, sys, dev, tmpfs on /run and /tmp, bpffs), the
//! kernel package's modules on /lib/modules and the host's output directory,
//! then starts itself again as a worker and reaps every orphan until the
//! worker exits, then powers the guest off (qemu exits).
//!
//! The worker loads the plan's modules, attaches the filter to a veth pair with
//! filter-ctl (what this kernel's verifier makes of the programs, which egress
//! hook it gets), runs the test executables like `cargo test` does and writes
//! the [`Outcome`] for the host.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, ExitCode, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use nix::{errno::Errno, sys::wait::waitpid, unistd::Pid};
use serde_json::Value;

use super::plan::{AttachCheck, JobOutcome, Outcome, Plan, ProgramInsns};
use crate::suite::{self, Job};
use harness::process::run;

/// The first line the worker prints; the host times the boot by it.
pub const READY_MARKER: &str = "vm-test guest: up";
/// 9p tags of the kernel package's `lib/modules` and of the output directory.
pub const MODULES_TAG: &str = "wanmods";
pub const OUTPUT_TAG: &str = "wanout";
/// 9p tag of the leg's queue: one empty file per job not taken yet
/// ([`queue_entry`]), shared by the leg's guests.
pub const QUEUE_TAG: &str = "wanqueue";
/// The outcome's file name in the output directory.
pub const OUTCOME_FILE: &str = "outcome.json";

const OUTPUT_DIR: &str = "/run/vm-test-out";
const QUEUE_DIR: &str = "/run/vm-test-queue";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// PID 1: mounts, runs the worker, reaps, powers off. Never returns.
pub fn init(plan: &Path) -> ! {
    match read_plan(plan).and_then(|p| mount_filesystems(&p.workspace)) {
        Ok(()) => run_worker(plan),
        Err(err) => println!("vm-test guest: {err:#}"),
    }
    // Power-off ends qemu. reboot only returns on failure; then PID 1 exits,
    // the kernel panics, and that ends qemu as well (panic=-1, -no-reboot).
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    std::process::exit(1)
}

fn run_worker(plan: &Path) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return println!("vm-test guest: finding xtask: {err}"),
    };
    let worker = Command::new(exe)
        .args(["vm-guest", "--worker"])
        .arg(plan)
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .spawn();
    let worker = match worker {
        Ok(child) => Pid::from_raw(child.id().cast_signed()),
        Err(err) => return println!("vm-test guest: starting the worker: {err}"),
    };
    // Orphans (daemons the tests started, whose parents are gone) become our
    // children: reap them all until the worker itself exits.
    loop {
        match waitpid(None, None) {
            Ok(status) if status.pid() == Some(worker) => return,
            Err(Errno::ECHILD) => return,
            _ => {}
        }
    }
}

/// Mounts what the guest needs. A fresh tmpfs does not go where it would hide
/// the workspace (a clone under /tmp): there the overlay keeps it writable.
fn mount_filesystems(workspace: &Path) -> anyhow::Result<()> {
    let mounts: &[(&str, &str, &str, &str)] = &[
        ("proc", "proc", "/proc", ""),
        ("sysfs", "sysfs", "/sys", ""),
        ("devtmpfs", "devtmpfs", "/dev", ""),
        ("devpts", "devpts", "/dev/pts", "ptmxmode=0666"),
        ("tmpfs", "tmpfs", "/dev/shm", ""),
        ("tmpfs", "tmpfs", "/run", "mode=0755"),
        ("tmpfs", "tmpfs", "/tmp", "mode=1777"),
        ("bpf", "bpffs", "/sys/fs/bpf", "mode=0700"),
        // The kernel package's modules where modprobe (and the kernel's
        // module autoloading, which runs modprobe) look for them.
        (
            "9p",
            MODULES_TAG,
            "/lib/modules",
            "trans=virtio,version=9p2000.L,ro,msize=512000",
        ),
        (
            "9p",
            OUTPUT_TAG,
            OUTPUT_DIR,
            "trans=virtio,version=9p2000.L,msize=512000",
        ),
        // No cache: a job another guest took must be gone at once.
        (
            "9p",
            QUEUE_TAG,
            QUEUE_DIR,
            "trans=virtio,version=9p2000.L,msize=512000,cache=none",
        ),
    ];
    for (fstype, source, target, options) in mounts {
        if *fstype == "tmpfs" && workspace.starts_with(target) {
            continue;
        }
        fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
        let mut mount = Command::new("/usr/bin/mount");
        mount.args(["-t", fstype]);
        if !options.is_empty() {
            mount.args(["-o", options]);
        }
        mount.args([source, target]);
        run(&mut mount)?;
    }
    Ok(())
}

/// The worker: everything the leg checks, then the outcome for the host.
pub fn worker(plan_path: &Path) -> anyhow::Result<ExitCode> {
    let plan = read_plan(plan_path)?;
    let mut outcome = Outcome {
        kernel_release: run(Command::new("uname").arg("-r"))?.trim().to_owned(),
        boot_secs: uptime()?,
        ..Outcome::default()
    };
    println!(
        "{READY_MARKER} after {:.1} s: Linux {}, {} CPUs",
        outcome.boot_secs,
        outcome.kernel_release,
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    if emulated()? {
        println!(
            "vm-test guest: under emulation (TCG): tests see {}=1 (the fault and upgrade tests kill at fewer random moments)",
            harness::kernel::EMULATED_ENV
        );
    }
    if outcome.kernel_release != plan.kernel_release {
        outcome.errors.push(format!(
            "booted Linux {}, expected {}",
            outcome.kernel_release, plan.kernel_release
        ));
    }
    if let Err(err) = run(Command::new("ip").args(["link", "set", "lo", "up"])) {
        outcome.errors.push(format!("{err:#}"));
    }
    outcome.errors.extend(load_modules(&plan.modules));

    match attach_check(&plan.filter_ctl) {
        Ok(check) => outcome.attach = Some(check),
        Err(err) => {
            let err = format!("attaching the filter to a veth: {err:#}");
            println!("vm-test guest: {err}");
            outcome.errors.push(err);
        }
    }

    let suite = Instant::now();
    for (index, job) in plan.jobs.iter().enumerate() {
        if take(index)? {
            outcome.jobs.push(run_job(job, &plan)?);
        }
    }
    outcome.suite_secs = suite.elapsed().as_secs_f64();

    outcome.modules_loaded = loaded_modules()?;
    outcome.kernel_problems = kernel_problems()?;
    for line in &outcome.kernel_problems {
        println!("vm-test guest: kernel log: {line}");
    }
    let (passed, failed, ignored) = outcome.totals();
    println!(
        "vm-test guest: {passed} passed, {failed} failed, {ignored} ignored in {:.0} s; modules loaded: {}",
        outcome.suite_secs,
        outcome.modules_loaded.join(" ")
    );
    let file = Path::new(OUTPUT_DIR).join(OUTCOME_FILE);
    fs::write(&file, serde_json::to_string_pretty(&outcome)?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_plan(path: &Path) -> anyhow::Result<Plan> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).context("parsing the plan")
}

/// Loads the modules; the errors name those that did not load.
fn load_modules(modules: &[String]) -> Vec<String> {
    modules
        .iter()
        .filter_map(|module| {
            run(Command::new("modprobe").arg(module))
                .err()
                .map(|err| format!("loading module {module}: {err:#}"))
        })
        .collect()
}

/// Attaches the filter to one end of a veth pair, reads what the kernel
/// reports about its programs, attaches again (the replace path) and detaches.
fn attach_check(filter_ctl: &Path) -> anyhow::Result<AttachCheck> {
    const IFACE: &str = "vmt0";
    run(Command::new("ip").args(["link", "add", IFACE, "type", "veth", "peer", "name", "vmt1"]))?;
    for iface in [IFACE, "vmt1"] {
        run(Command::new("ip").args(["link", "set", iface, "up"]))?;
    }
    let ctl = || {
        let mut cmd = Command::new(filter_ctl);
        cmd.args(["--pin-root", "/sys/fs/bpf/vm-test"]);
        cmd
    };
    let status = || -> anyhow::Result<Value> {
        let text = run(ctl().args(["status", "--iface", IFACE, "--json"]))?;
        let all: Value = serde_json::from_str(&text).context("parsing status --json")?;
        Ok(all[0].clone())
    };
    print!(
        "vm-test guest: {}",
        run(ctl().args(["attach", "--iface", IFACE]))?
    );
    let first = status()?;
    let field = |status: &Value, key: &str| -> anyhow::Result<String> {
        match &status[key] {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => bail!("status has {key} = {other}"),
        }
    };
    let mut programs = Vec::new();
    for key in ["xdp_program_id", "egress_program_id"] {
        programs.push(program_insns(&field(&first, key)?)?);
    }
    // The DNS slip's program, entered only by a tail call, is in no status
    // field; loading it costs as much as its verification.
    if let Some(slip) = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|info| info.name_as_str() == Some("wan_slip"))
    {
        programs.push(program_insns(&slip.id().to_string())?);
    }
    print!(
        "vm-test guest: {}",
        run(ctl().args(["attach", "--iface", IFACE]))?
    );
    let second = status()?;
    if field(&second, "egress_hook")? != field(&first, "egress_hook")?
        || field(&second, "xdp_program_id")? == field(&first, "xdp_program_id")?
    {
        bail!("attaching again did not replace the programs in place: {first} then {second}");
    }
    print!(
        "vm-test guest: {}",
        run(ctl().args(["detach", "--iface", IFACE]))?
    );
    run(Command::new("ip").args(["link", "del", IFACE]))?;
    let check = AttachCheck {
        xdp_mode: field(&first, "xdp_mode")?,
        egress_hook: field(&first, "egress_hook")?,
        programs,
    };
    println!(
        "vm-test guest: XDP {} mode, egress hook {}, verifier: {}",
        check.xdp_mode,
        check.egress_hook,
        check
            .programs
            .iter()
            .map(|p| format!(
                "{} {} insns processed ({} after rewrites)",
                p.name, p.verified_insns, p.xlated_insns
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(check)
}

/// A program's name and the verifier's figures, as the kernel reports them.
fn program_insns(id: &str) -> anyhow::Result<ProgramInsns> {
    let id: u32 = id.parse().context("a program id")?;
    let info = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|info| info.id() == id)
        .ok_or_else(|| anyhow!("no loaded program has id {id}"))?;
    let missing = |what: &str| anyhow!("the kernel reports no {what} for program {id}");
    Ok(ProgramInsns {
        name: info.name_as_str().unwrap_or("?").to_owned(),
        verified_insns: info
            .verified_instruction_count()
            .ok_or_else(|| missing("verified instruction count"))?
            .into(),
        xlated_insns: u64::from(info.size_translated().ok_or_else(|| missing("size"))?) / 8,
    })
}

/// Whether the host booted this guest under TCG (qemu.rs puts
/// [`super::qemu::EMULATED_PARAM`] on the kernel's command line).
fn emulated() -> anyhow::Result<bool> {
    let cmdline = fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    Ok(cmdline
        .split_whitespace()
        .any(|param| param == super::qemu::EMULATED_PARAM))
}

/// The queue's file for the job at `index` of the plan.
pub fn queue_entry(index: usize) -> String {
    format!("{index:04}")
}

/// Takes the job at `index` unless another guest did: the rename of its
/// queue file is atomic on the host's file system, so exactly one guest
/// gets it.
fn take(index: usize) -> anyhow::Result<bool> {
    let entry = Path::new(QUEUE_DIR).join(queue_entry(index));
    match fs::rename(&entry, entry.with_extension("taken")) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("taking {}", entry.display())),
    }
}

/// How often the worker says a job is still running. Under TCG one test can
/// run for minutes without a line: the host takes a silence of ten minutes
/// for a hung guest.
const HEARTBEAT: Duration = Duration::from_secs(120);

/// Runs one job like `cargo test` runs an executable: in its package's
/// directory, its output streamed, the summary line counted, a heartbeat
/// line every [`HEARTBEAT`] while it runs.
fn run_job(job: &Job, plan: &Plan) -> anyhow::Result<JobOutcome> {
    println!(
        "vm-test guest: running {} ({})",
        job.name,
        job.path.display()
    );
    let start = Instant::now();
    let mut command = Command::new(&job.path);
    command
        .args(&job.args)
        .current_dir(&job.cwd)
        .env("FILTER_CTL", &plan.filter_ctl)
        .env(harness::kernel::VM_GUEST_ENV, "1");
    if emulated()? {
        command.env(harness::kernel::EMULATED_ENV, "1");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", job.path.display()))?;
    let (finished, heartbeat_stop) = mpsc::channel::<()>();
    let name = job.name.clone();
    let heartbeat = thread::spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = heartbeat_stop.recv_timeout(HEARTBEAT) {
            println!(
                "vm-test guest: {name} still running ({} s)",
                start.elapsed().as_secs()
            );
        }
    });
    let stdout = child.stdout.take().expect("piped");
    let mut output = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        output.push_str(&line);
        output.push('\n');
    }
    let mut outcome = suite::outcome_of(job, &output);
    outcome.exit_code = child.wait()?.code();
    drop(finished);
    let _ = heartbeat.join();
    outcome.secs = start.elapsed().as_secs_f64();
    Ok(outcome)
}

/// The modules loaded now (/proc/modules), sorted.
fn loaded_modules() -> anyhow::Result<Vec<String>> {
    let text = fs::read_to_string("/proc/modules")?;
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    Ok(names)
}

/// Kernel log lines that report a warning, a bug or an oops.
fn kernel_problems() -> anyhow::Result<Vec<String>> {
    let log = run(Command::new("dmesg").arg("--notime"))?;
    Ok(log
        .lines()
        .filter(|line| {
            ["WARNING:", "BUG:", "Oops:"]
                .iter()
                .any(|m| line.contains(m))
        })
        .map(str::to_owned)
        .collect())
}

fn uptime() -> anyhow::Result<f64> {
    let text = fs::read_to_string("/proc/uptime")?;
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("/proc/uptime says {text:?}"))
}
