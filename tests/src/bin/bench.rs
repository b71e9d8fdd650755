//! The benchmark driver: `cargo xtask bench` runs it as root after building.
//! See README.md, "Benchmark".

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser;
use tests::bench::{
    self, Options,
    generator::Generator,
    pair::Cpus,
    report::{self, FloodResults, Meta, Results},
    scale::LabBench,
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
        .parent()
        .expect("tests/ lives in the workspace")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if !tests::netns::is_root() {
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
    if std::env::var_os(tests::ctl::BINARY_ENV).is_none()
        && let Some(dir) = std::env::current_exe()?.parent()
        && dir.join("filter-ctl").is_file()
    {
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var(tests::ctl::BINARY_ENV, dir.join("filter-ctl")) };
    }
    bench::catch_signals()?;
    let started = Instant::now();
    let quick = cli.quick;
    let opts = Options {
        quick,
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
    if tests::bench::sys::cpu_count() < 2 {
        anyhow::bail!("the benchmark needs two CPUs (generator and DUT)");
    }
    let wants = |part: &str| cli.only.is_empty() || cli.only.iter().any(|p| p == part);
    let complete = cli.only.is_empty()
        && cli.configs.is_empty()
        && cli.floods.is_empty()
        && cli.sources.is_none()
        && !cli.fixed_fields;
    tests::netns::sweep_stale(&[bench::pair::BENCH_PREFIX, tests::lab::TEST_PIN_PREFIX]);
    bench::flood::XdpFilterEnv::sweep_stale();
    let syn_ready = bench::syn_ready();

    let mode = if quick { "quick" } else { "full" };
    let mut results = Results {
        meta: Meta::collect(repo_root(), mode),
        ..Results::default()
    };
    let mut notes = Vec::new();
    if !syn_ready {
        notes.push(
            "this build of the filter has no SYN flood defence (no reason drop_syn_source): \
             the SYN classes and the filter's SYN flood rows are skipped"
                .to_owned(),
        );
    }

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
    if wants("testrun") {
        eprintln!("bench: 1. BPF_PROG_TEST_RUN per packet class");
        results.testrun = Some(bench::testrun::run(
            opts.test_run_repeat,
            opts.repeats,
            if quick { 200 } else { 2000 },
            opts.cpus.dut,
        )?);
    }
    if wants("flood") {
        eprintln!("bench: 2. DUT CPU per packet under a flood (veth pair)");
        let samples = bench::flood::run(&opts, syn_ready, &mut notes)?;
        let others = Summary::of(samples.iter().map(|s| s.others_cpu));
        results.meta.others_cpu_median = others.median;
        results.meta.busy_runs = samples.iter().filter(|s| s.busy).count();
        results.flood = Some(FloodResults {
            rate_pps: opts.rate_pps,
            burst: opts.burst,
            duration_s: opts.duration.as_secs_f64(),
            repeats: opts.repeats,
            rows: bench::flood::summarise(&samples),
            samples,
        });
    }
    if wants("scale") || wants("legit") || wants("memory") {
        let lab = LabBench::build(&opts)?;
        let mut generator = Generator::load()?;
        if wants("memory") {
            eprintln!("bench: 5. memory");
            results.memory = Some(bench::scale::memory(&lab)?);
        }
        if wants("scale") {
            eprintln!("bench: 3. a million spoofed sources while real lookups continue");
            results.scale = Some(bench::scale::run(
                &lab,
                &mut generator,
                &opts,
                syn_ready,
                &mut notes,
            )?);
        }
        if wants("legit") {
            eprintln!("bench: 4. legitimate traffic under attack");
            results.legit = Some(bench::scale::legit(&lab, &mut generator, &opts)?);
        }
    }

    results.notes = notes;
    results.targets = report::targets(&results, syn_ready);
    results.meta.runtime_s = started.elapsed().as_secs_f64();
    let out = cli.out.unwrap_or_else(|| repo_root().join("target/bench"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let chart = match &results.flood {
        Some(f) if !f.rows.is_empty() => {
            let title = format!(
                "DUT CPU per packet / floor, {} ({}, kernel {})",
                results.meta.date, results.meta.commit, results.meta.kernel
            );
            match report::chart(&f.rows, &out, &title) {
                Ok(png) => Some(png),
                Err(err) => {
                    results.notes.push(format!("no chart: {err:#}"));
                    None
                }
            }
        }
        _ => None,
    };
    let json = serde_json::to_string_pretty(&results)?;
    fs::write(out.join("results.json"), &json)?;
    fs::write(
        out.join("BENCHMARKS.md"),
        report::markdown(&results, chart.as_ref().map(|_| "ratios.png")),
    )?;
    println!("{}", report::markdown(&results, None));
    eprintln!("bench: results in {}", out.display());

    let publish = cli.publish || (!quick && complete && !cli.no_publish);
    if publish {
        let committed = repo_root().join("tests/bench");
        fs::create_dir_all(&committed)?;
        fs::write(committed.join("results.json"), &json)?;
        let chart_link = match &chart {
            Some(png) => {
                fs::copy(png, committed.join("ratios.png"))?;
                Some("tests/bench/ratios.png")
            }
            None => None,
        };
        fs::write(
            repo_root().join("BENCHMARKS.md"),
            report::markdown(&results, chart_link),
        )?;
        eprintln!("bench: updated BENCHMARKS.md and tests/bench/");
    }
    Ok(())
}
