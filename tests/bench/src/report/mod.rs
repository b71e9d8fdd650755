//! The outputs of a run: results.json (every raw number), BENCHMARKS.md
//! ([`markdown`]: one function per section), the chart of the per-packet
//! ratios ([`chart`], gnuplot), and the issue's targets checked against the
//! measurements ([`targets`]).

pub mod chart;
pub mod markdown;
pub mod targets;

use std::{fs, path::Path, process::Command};

use anyhow::Context as _;

pub use self::targets::TargetCheck;
use crate::{
    flood::{Row, Sample},
    legit::LegitRow,
    memory::MemoryResults,
    scale::ScaleResults,
    testrun::TestRunResults,
};

/// Where and on what the benchmark ran.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Meta {
    pub date: String,
    pub commit: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub mode: String,
    pub command: String,
    pub runtime_s: f64,
    /// Median share of the machine's CPU other processes used during the flood runs.
    pub others_cpu_median: f64,
    pub busy_runs: usize,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FloodResults {
    pub rate_pps: f64,
    pub burst: u32,
    pub duration_s: f64,
    pub repeats: usize,
    pub rows: Vec<Row>,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Results {
    pub meta: Meta,
    pub testrun: Option<TestRunResults>,
    pub flood: Option<FloodResults>,
    pub scale: Option<ScaleResults>,
    pub legit: Option<Vec<LegitRow>>,
    pub memory: Option<MemoryResults>,
    pub targets: Vec<TargetCheck>,
    pub notes: Vec<String>,
}

fn command_output(program: &str, args: &[&str], dir: &Path) -> String {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Meta {
    pub fn collect(repo: &Path, mode: &str) -> Self {
        let mut commit = command_output("git", &["rev-parse", "--short=12", "HEAD"], repo);
        if !command_output(
            "git",
            &["status", "--porcelain", "--untracked-files=no"],
            repo,
        )
        .is_empty()
        {
            commit.push_str(" (with uncommitted changes)");
        }
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Self {
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"], repo),
            commit,
            kernel: command_output("uname", &["-r"], repo),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            cpus: crate::sys::cpu_count(),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            mode: mode.to_owned(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            ..Self::default()
        }
    }
}

/// Writes results.json, BENCHMARKS.md and ratios.png to `out` and prints the
/// report. With `publish` (the repository root), a full run also goes to
/// BENCHMARKS.md there and to tests/bench/ (results.json, ratios.png).
pub fn write(results: &mut Results, out: &Path, publish: Option<&Path>) -> anyhow::Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let png = match &results.flood {
        Some(f) if !f.rows.is_empty() => {
            let title = format!(
                "DUT CPU per packet / floor, {} ({}, kernel {})",
                results.meta.date, results.meta.commit, results.meta.kernel
            );
            match chart::chart(&f.rows, out, &title) {
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
        markdown::markdown(results, png.as_ref().map(|_| "ratios.png")),
    )?;
    println!("{}", markdown::markdown(results, None));
    eprintln!("bench: results in {}", out.display());

    if let Some(root) = publish {
        let committed = root.join("tests/bench");
        fs::create_dir_all(&committed)?;
        fs::write(committed.join("results.json"), &json)?;
        let chart_link = match &png {
            Some(png) => {
                fs::copy(png, committed.join("ratios.png"))?;
                Some("tests/bench/ratios.png")
            }
            None => None,
        };
        fs::write(
            root.join("BENCHMARKS.md"),
            markdown::markdown(results, chart_link),
        )?;
        eprintln!("bench: updated BENCHMARKS.md and tests/bench/");
    }
    Ok(())
}

/// A flood sample with `ns` per packet, for the report's tests.
#[cfg(test)]
pub(crate) fn sample(
    kind: crate::traffic::FloodKind,
    config: &'static str,
    round: usize,
    ns: f64,
) -> Sample {
    Sample {
        flood: kind,
        config,
        round,
        sent: 1000,
        offered_pps: 1e6,
        dut_packets: 1000,
        dut_cpu_ns: (ns * 1000.0) as u64,
        ns_per_packet: ns,
        lost: 0.0,
        others_cpu: 0.0,
        busy: false,
        generator_restarts: 0,
        seconds: 1.0,
    }
}
