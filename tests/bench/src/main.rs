//! `cargo xtask bench`: what the filter costs per packet, against an XDP_DROP
//! floor and against nftables doing the same job, measured side by side.
//! `xtask bench` runs this binary as root after building; README.md
//! ("Benchmark") explains the method. The parts, each a module:
//!
//! 1. [`testrun`]: BPF_PROG_TEST_RUN time per packet class;
//! 2. [`flood`]: DUT CPU per packet under a paced flood on a veth pair (the
//!    topology of [`pair`]), with the XDP generator of [`generator`] and the
//!    floods of [`traffic`];
//! 3. [`scale`]: a million spoofed sources while real lookups go on;
//! 4. [`legit`]: a TCP request/response client under attack;
//! 5. [`memory`]: map memory, program sizes, filter-ctl's RSS.
//!
//! Parts 3 to 5 run in the lab's topology, prepared by [`lab_bench`].
//! [`report`] writes results.json, BENCHMARKS.md and the chart. [`sys`]
//! reads CPU times and pins threads, [`stats`] summarises repeated runs,
//! [`object`] embeds tests/bench-ebpf. Namespaces, the lab, servers and the
//! filter-ctl driver come from the `harness` crate.

mod flood;
mod generator;
mod lab_bench;
mod legit;
mod memory;
mod object;
mod options;
mod pair;
mod report;
mod scale;
mod stats;
mod sys;
mod testrun;
mod traffic;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Parser;
use harness::{
    ctl,
    names::{self, BENCH_PREFIX, TEST_PIN_PREFIX},
    process::is_root,
    signals,
};

use crate::{
    generator::Generator,
    lab_bench::LabBench,
    options::Options,
    pair::Cpus,
    report::{FloodResults, Meta, Results},
    stats::Summary,
};

/// Cost per packet of the WAN filter against an XDP_DROP floor and nftables,
/// measured side by side. Writes results.json, BENCHMARKS.md and ratios.png
/// to --out; a full run also updates BENCHMARKS.md at the repository root and
/// tests/bench/ (results.json, ratios.png).
#[derive(Parser)]
#[command(name = "bench")]
struct Cli {
    /// A short run for development: one round of 1-second runs, no retries,
    /// fewer BPF_PROG_TEST_RUN repeats. Does not update the committed results.
    #[arg(long)]
    quick: bool,
    /// Rounds of every interleaved measurement [default: 5, quick: 1].
    #[arg(long)]
    repeats: Option<usize>,
    /// Seconds per flood run [default: 2.5, quick: 1].
    #[arg(long)]
    duration: Option<f64>,
    /// The generator's paced rate on the veth pair, in Mpps.
    #[arg(long, default_value_t = 3.0)]
    rate: f64,
    /// The flood rate in the lab (state scale, legitimate traffic), in Mpps.
    #[arg(long, default_value_t = 1.0)]
    scale_rate: f64,
    /// Packets the generator sends back to back (the same average rate).
    #[arg(long, default_value_t = 32)]
    burst: u32,
    /// Only these parts (comma-separated): testrun, flood, scale, legit, memory.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these flood configurations (keys as in results.json, e.g. xdp_drop,filter_native).
    #[arg(long, value_delimiter = ',')]
    configs: Vec<String>,
    /// Only these floods (dns, syn, udp).
    #[arg(long, value_delimiter = ',')]
    floods: Vec<String>,
    /// Diagnostic: every flood of part 2 from this many sources.
    #[arg(long)]
    sources: Option<u32>,
    /// Diagnostic: the same port and DNS id / TCP sequence number in every
    /// packet of part 2 (only the source varies), e.g. to see what the
    /// filter's table lookups cost when they miss the cache and when not.
    #[arg(long)]
    fixed_fields: bool,
    /// Diagnostic: only these test-run classes (keys as in results.json).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Diagnostic: load the filter this many times per test-run class and
    /// measure every instance. One load can be faster or slower than the next
    /// by more than two builds differ (placement of the program and its
    /// maps); compare builds with several.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    loads: u16,
    /// Run the generating thread with normal scheduling instead of SCHED_FIFO.
    #[arg(long)]
    no_rt_generator: bool,
    /// Measure a flood run again (twice at most) when other processes used more
    /// than this share of the machine's CPU during it, in percent.
    #[arg(long, default_value_t = 10.0)]
    max_others: f64,
    /// Where results go [default: target/bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Update BENCHMARKS.md and tests/bench/ even after a quick or partial run.
    #[arg(long, conflicts_with = "no_publish")]
    publish: bool,
    /// Leave BENCHMARKS.md and tests/bench/ alone even after a full run.
    #[arg(long)]
    no_publish: bool,
}

const PARTS: [&str; 5] = ["testrun", "flood", "scale", "legit", "memory"];

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/bench lives in the workspace")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if !is_root() {
        anyhow::bail!(
            "the benchmark loads BPF programs and creates network namespaces: run it as root"
        );
    }
    for part in &cli.only {
        if !PARTS.contains(&part.as_str()) {
            anyhow::bail!("unknown part {part:?}: the parts are {}", PARTS.join(", "));
        }
    }
    // The end-to-end driver looks for filter-ctl next to a test binary; ours
    // sits next to this binary (xtask sets FILTER_CTL anyway).
    if std::env::var_os(ctl::BINARY_ENV).is_none()
        && let Some(dir) = std::env::current_exe()?.parent()
        && dir.join("filter-ctl").is_file()
    {
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var(ctl::BINARY_ENV, dir.join("filter-ctl")) };
    }
    signals::catch_signals()?;
    let started = Instant::now();
    let quick = cli.quick;
    let opts = Options {
        repeats: cli.repeats.unwrap_or(if quick { 1 } else { 5 }).max(1),
        duration: Duration::from_secs_f64(cli.duration.unwrap_or(if quick { 1.0 } else { 2.5 })),
        rate_pps: cli.rate * 1e6,
        burst: cli.burst.max(1),
        scale_rate_pps: cli.scale_rate * 1e6,
        cpus: Cpus {
            generator: 0,
            dut: 1,
        },
        rt_generator: !cli.no_rt_generator,
        max_others: cli.max_others / 100.0,
        retries: if quick { 0 } else { 2 },
        patience: Duration::from_secs(if quick { 0 } else { 5 }),
        busy_budget: Duration::from_secs(if quick { 0 } else { 60 }),
        configs: cli.configs.clone(),
        floods: cli.floods.clone(),
        sources: cli.sources,
        fixed_fields: cli.fixed_fields,
        test_run_repeat: if quick { 20_000 } else { 200_000 },
    };
    if sys::cpu_count() < 2 {
        anyhow::bail!("the benchmark needs two CPUs (generator and DUT)");
    }
    let wants = |part: &str| cli.only.is_empty() || cli.only.iter().any(|p| p == part);
    let complete = cli.only.is_empty()
        && cli.configs.is_empty()
        && cli.floods.is_empty()
        && cli.classes.is_empty()
        && cli.loads == 1
        && cli.sources.is_none()
        && !cli.fixed_fields;
    names::sweep_stale(&[BENCH_PREFIX, TEST_PIN_PREFIX]);
    flood::XdpFilterEnv::sweep_stale();

    let mode = if quick { "quick" } else { "full" };
    let mut results = Results {
        meta: Meta::collect(repo_root(), mode),
        ..Results::default()
    };
    let mut notes = Vec::new();

    if let Some(n) = opts.sources {
        notes.push(format!(
            "diagnostic run: every flood of part 2 from {n} sources"
        ));
    }
    if opts.fixed_fields {
        notes.push(
            "diagnostic run: the same port and DNS id / TCP sequence in every flood packet".into(),
        );
    }
    if !cli.classes.is_empty() {
        notes.push(format!(
            "diagnostic run: only the test-run classes {}",
            cli.classes.join(", ")
        ));
    }
    if cli.loads > 1 {
        notes.push(format!(
            "diagnostic run: {} loads of the filter per test-run class",
            cli.loads
        ));
    }
    if wants("testrun") {
        eprintln!("bench: 1. BPF_PROG_TEST_RUN per packet class");
        results.testrun = Some(testrun::run(
            opts.test_run_repeat,
            opts.repeats,
            if quick { 200 } else { 2000 },
            opts.cpus.dut,
            &testrun::Selection {
                keys: cli.classes.clone(),
                loads: cli.loads.into(),
            },
        )?);
    }
    if wants("flood") {
        eprintln!("bench: 2. DUT CPU per packet under a flood (veth pair)");
        let samples = flood::run(&opts, &mut notes)?;
        let others = Summary::of(samples.iter().map(|s| s.others_cpu));
        results.meta.others_cpu_median = others.median;
        results.meta.busy_runs = samples.iter().filter(|s| s.busy).count();
        results.flood = Some(FloodResults {
            rate_pps: opts.rate_pps,
            burst: opts.burst,
            duration_s: opts.duration.as_secs_f64(),
            repeats: opts.repeats,
            rows: flood::summarise(&samples),
            samples,
        });
    }
    if wants("scale") || wants("legit") || wants("memory") {
        let lab = LabBench::build(&opts)?;
        let mut generator = Generator::load()?;
        if wants("memory") {
            eprintln!("bench: 5. memory");
            results.memory = Some(memory::run(&lab)?);
        }
        if wants("scale") {
            eprintln!("bench: 3. a million spoofed sources while real lookups continue");
            results.scale = Some(scale::run(&lab, &mut generator, &opts)?);
        }
        if wants("legit") {
            eprintln!("bench: 4. legitimate traffic under attack");
            results.legit = Some(legit::run(&lab, &mut generator, &opts)?);
        }
    }

    results.notes = notes;
    results.targets = report::targets::targets(&results);
    results.meta.runtime_s = started.elapsed().as_secs_f64();
    let out = cli.out.unwrap_or_else(|| repo_root().join("target/bench"));
    let publish = cli.publish || (!quick && complete && !cli.no_publish);
    report::write(&mut results, &out, publish.then(repo_root))?;
    Ok(())
}
