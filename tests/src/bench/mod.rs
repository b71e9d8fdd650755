//! `cargo xtask bench`: what the filter costs per packet, against an XDP_DROP
//! floor and against nftables doing the same job, measured side by side.
//! The driver is `src/bin/bench.rs`; README.md ("Benchmark") explains the method.
//!
//! - [`testrun`]: BPF_PROG_TEST_RUN time per packet class (part 1);
//! - [`flood`]: DUT CPU per packet under a paced flood on a veth pair (part 2),
//!   on the topology of [`pair`], with the generator of [`generator`] and the
//!   floods of [`traffic`];
//! - [`scale`]: a million spoofed sources while real lookups go on (part 3),
//!   a TCP request/response client under attack (part 4), map memory and
//!   filter-ctl's RSS (part 5), all in the lab's topology;
//! - [`report`]: BENCHMARKS.md, results.json and the chart.

pub mod flood;
pub mod generator;
pub mod object;
pub mod pair;
pub mod report;
pub mod scale;
pub mod stats;
pub mod sys;
pub mod testrun;
pub mod traffic;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::bail;

/// How the benchmark runs; `src/bin/bench.rs` fills it from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    /// Rounds of the interleaved flood matrix (and of the other parts).
    pub repeats: usize,
    /// Length of one flood run.
    pub duration: Duration,
    /// The generator's fixed rate, and how many packets leave back to back.
    pub rate_pps: f64,
    pub burst: u32,
    /// The rate of the floods in the lab (parts 3 and 4): one the filter
    /// keeps up with, so the lookups measure the filter, not a full ring.
    pub scale_rate_pps: f64,
    pub cpus: pair::Cpus,
    /// SCHED_FIFO for the generating thread (steadier pacing).
    pub rt_generator: bool,
    /// Others' CPU share above which a run is measured again (and flagged busy).
    pub max_others: f64,
    pub retries: usize,
    /// How long to wait for a quiet machine before a run.
    pub patience: Duration,
    /// Time the whole flood matrix may spend waiting for a quiet machine and
    /// measuring again, so a busy machine cannot stretch the run without end.
    pub busy_budget: Duration,
    /// Only these flood configurations (keys, e.g. `xdp_drop`), and floods; empty: all.
    pub configs: Vec<String>,
    pub floods: Vec<String>,
    /// Diagnostics of part 2: this many sources instead of each flood's own,
    /// and the same port and DNS id / TCP sequence in every packet.
    pub sources: Option<u32>,
    pub fixed_fields: bool,
    /// BPF_PROG_TEST_RUN repeat count per measurement.
    pub test_run_repeat: u32,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// SIGINT, SIGTERM and SIGHUP set a flag that every step checks, so the
/// guards (namespaces, pins, attached programs, mounts) clean up on the way out.
pub fn catch_signals() -> anyhow::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a handler that only stores to an atomic, without SA_RESTART, so
        // that a long BPF_PROG_RUN call in progress ends with EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                bail!("installing a signal handler failed");
            }
        }
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Fails once Ctrl-C was pressed, so that `?` unwinds through the cleanup.
pub fn check_interrupted() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// True if this build of the filter has the SYN flood defence (issue 4).
pub fn syn_ready() -> bool {
    testrun::reason("drop_syn_source").is_some()
}
