//! The benchmark's settings, from the command line (`main.rs`).

use std::time::Duration;

use crate::pair::Cpus;

/// How the benchmark runs; `main.rs` fills it from the command line.
#[derive(Clone, Debug)]
pub struct Options {
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
    pub cpus: Cpus,
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
