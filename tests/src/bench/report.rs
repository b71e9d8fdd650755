//! The outputs: results.json (every raw number), BENCHMARKS.md (tables) and
//! a PNG chart of the per-packet ratios (gnuplot).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::{
    flood::{self, Row, Sample},
    scale::{LegitRow, MemoryResults, ScaleResults},
    stats::Summary,
    testrun::TestRunResults,
    traffic::FloodKind,
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

/// One target of the issue, with what was measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TargetCheck {
    pub what: String,
    pub goal: String,
    pub measured: String,
    /// None: not measurable in this build or run.
    pub met: Option<bool>,
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
            cpus: super::sys::cpu_count(),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            mode: mode.to_owned(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            ..Self::default()
        }
    }
}

/// A markdown table; columns after the first are right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", headers.join(" | ")));
    let aligns: Vec<&str> = (0..headers.len())
        .map(|i| if i == 0 { "---" } else { "--:" })
        .collect();
    out.push_str(&format!("|{}|\n", aligns.join("|")));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Per round, `numerator / denominator` of two configurations of one flood.
pub fn round_ratios(
    samples: &[Sample],
    kind: FloodKind,
    numerator: &str,
    denominator: &str,
) -> Summary {
    Summary::of(
        samples
            .iter()
            .filter(|s| s.flood == kind && s.config == numerator)
            .filter_map(|n| {
                let d = samples
                    .iter()
                    .find(|d| d.flood == kind && d.config == denominator && d.round == n.round)?;
                (d.ns_per_packet > 0.0).then(|| n.ns_per_packet / d.ns_per_packet)
            }),
    )
}

/// Per round, `(numerator - floor) / (denominator - floor)`: how the two
/// compare in what they add to the floor's cost.
pub fn marginal_ratios(
    samples: &[Sample],
    kind: FloodKind,
    numerator: &str,
    denominator: &str,
) -> Summary {
    let floor = flood::floor_of(kind).key();
    let at = |config: &str, round| {
        samples
            .iter()
            .find(|s| s.flood == kind && s.config == config && s.round == round)
            .map(|s| s.ns_per_packet)
    };
    Summary::of(
        samples
            .iter()
            .filter(|s| s.flood == kind && s.config == numerator)
            .filter_map(|n| {
                let (d, f) = (at(denominator, n.round)?, at(floor, n.round)?);
                (d > f).then(|| (n.ns_per_packet - f) / (d - f))
            }),
    )
}

fn row<'a>(rows: &'a [Row], kind: FloodKind, config: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.flood == kind && r.config == config)
}

/// The issue's targets against the measurements.
pub fn targets(results: &Results, syn_ready: bool) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    let at_most = |what: &str, goal: f64, s: Option<Summary>| TargetCheck {
        what: what.into(),
        goal: format!("<= {goal:.2}x floor"),
        measured: s.map_or("not measured".into(), |s| format!("{}x", s.show(2))),
        met: s.filter(|s| !s.is_empty()).map(|s| s.median <= goal),
    };
    let at_least = |what: &str, goal: f64, s: Option<Summary>| TargetCheck {
        what: what.into(),
        goal: format!(">= {goal:.0}x less CPU per packet"),
        measured: s.map_or("not measured".into(), |s| format!("{}x", s.show(1))),
        met: s.filter(|s| !s.is_empty()).map(|s| s.median >= goal),
    };
    let flood = results.flood.as_ref();
    let ratio = |kind, config: &str| {
        flood
            .and_then(|f| row(&f.rows, kind, config))
            .map(|r| r.ratio)
    };
    out.push(at_most(
        "drop path: unsolicited DNS flood, this filter (native) / XDP_DROP",
        1.25,
        ratio(FloodKind::Dns, "filter_native"),
    ));
    out.push(if syn_ready {
        at_most(
            "drop path: SYN flood over the source bucket, this filter (native) / XDP_DROP",
            1.25,
            ratio(FloodKind::Syn, "filter_native"),
        )
    } else {
        TargetCheck {
            what: "drop path: SYN flood over the source bucket, this filter / XDP_DROP".into(),
            goal: "<= 1.25x floor".into(),
            measured: "no SYN defence in this build".into(),
            met: None,
        }
    });
    out.push(at_most(
        "pass path: ordinary UDP, this filter (native) / XDP_PASS",
        1.4,
        ratio(FloodKind::Udp, "filter_native"),
    ));
    let vs = |what: &str, goal: f64, kind, other: &str| {
        let Some(f) = flood else {
            return at_least(what, goal, None);
        };
        let mut check = at_least(
            what,
            goal,
            Some(round_ratios(&f.samples, kind, other, "filter_native")),
        );
        let above = marginal_ratios(&f.samples, kind, other, "filter_native");
        if !above.is_empty() {
            check.measured = format!("{} (above the floor: {}x)", check.measured, above.show(1));
        }
        check
    };
    out.push(vs(
        "unsolicited DNS: nft `ct state new` drop / this filter",
        10.0,
        FloodKind::Dns,
        "nft_ct_new",
    ));
    if syn_ready {
        out.push(vs(
            "SYN flood: nft per-source SYN meter (ingress) / this filter",
            5.0,
            FloodKind::Syn,
            "nft_syn_meter_ingress",
        ));
        out.push(vs(
            "SYN flood: nft per-source SYN meter (input) / this filter",
            5.0,
            FloodKind::Syn,
            "nft_syn_meter_input",
        ));
    } else {
        out.push(TargetCheck {
            what: "SYN flood: nft per-source SYN meter / this filter".into(),
            goal: ">= 5x less CPU per packet".into(),
            measured: "no SYN defence in this build".into(),
            met: None,
        });
    }
    if let Some(scale) = &results.scale {
        let (ok, failed) = scale
            .phases
            .iter()
            .filter(|p| p.flood.is_some() && p.on_wan == "filter")
            .fold((0, 0), |(o, f), p| (o + p.lookups_ok, f + p.lookups_failed));
        out.push(TargetCheck {
            what: "real DNS lookups during the million-source floods".into(),
            goal: "100%".into(),
            measured: format!(
                "{ok} of {} ({})",
                ok + failed,
                pct(ok as f64 / (ok + failed).max(1) as f64)
            ),
            met: Some(failed == 0 && ok > 0),
        });
    }
    out
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "n/a",
    }
}

/// BENCHMARKS.md; `chart` is the PNG's path relative to the file.
pub fn markdown(results: &Results, chart: Option<&str>) -> String {
    let m = &results.meta;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmark results\n\nWritten by `cargo xtask bench` ({} mode); README.md, section \
         \"Benchmark\", explains the method. Do not edit by hand: run the benchmark again.\n",
        m.mode
    );
    let _ = writeln!(
        out,
        "{}",
        table(
            &["", ""],
            &[
                vec!["date".into(), m.date.clone()],
                vec!["commit".into(), m.commit.clone()],
                vec!["kernel".into(), m.kernel.clone()],
                vec![
                    "machine".into(),
                    format!("{} CPUs ({}), {:.0} GiB", m.cpus, m.cpu_model, m.memory_gib)
                ],
                vec!["command".into(), format!("`{}`", m.command)],
                vec!["run time".into(), format!("{:.0} s", m.runtime_s)],
                vec![
                    "other load".into(),
                    format!(
                        "median {} of the machine's CPU during flood runs; {} runs above the limit",
                        pct(m.others_cpu_median),
                        m.busy_runs
                    )
                ],
            ]
        )
    );
    if m.busy_runs > 0 {
        let _ = writeln!(
            out,
            "**The machine was busy** (other processes above the limit during {} runs): \
             treat CPU figures as provisional.\n",
            m.busy_runs
        );
    }

    let _ = writeln!(out, "## Targets\n");
    let rows: Vec<Vec<String>> = results
        .targets
        .iter()
        .map(|t| {
            vec![
                t.what.clone(),
                t.goal.clone(),
                t.measured.clone(),
                met(t.met).into(),
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "{}",
        table(
            &["target", "goal", "measured: median (min-max)", "met"],
            &rows
        )
    );

    if let Some(f) = &results.flood {
        let _ = writeln!(
            out,
            "## 2. DUT CPU per packet under a flood\n\n\
             Generator paced at {:.2} Mpps in bursts of {}, {} rounds of {:.1} s per \
             configuration, interleaved. \"ns/pkt\" is the DUT NAPI thread's CPU time per \
             frame it took off its ring; \"x floor\" divides by the floor measured in the same \
             round (XDP_DROP for drop floods, XDP_PASS for the passed UDP); \"+ns\" is the \
             difference of the medians. \"XDP_DROP after reading the headers\" is the floor \
             plus what reading a packet costs, which every filter pays. \"lost\": sent frames \
             the DUT never took (its ring was full: the configuration could not keep up, and \
             its ns/pkt is its cost at saturation).\n",
            f.rate_pps / 1e6,
            f.burst,
            f.repeats,
            f.duration_s
        );
        for kind in [FloodKind::Dns, FloodKind::Syn, FloodKind::Udp] {
            let rows: Vec<&Row> = f.rows.iter().filter(|r| r.flood == kind).collect();
            if rows.is_empty() {
                continue;
            }
            let floor = row(&f.rows, kind, flood::floor_of(kind).key());
            let _ = writeln!(out, "### {} flood: {}\n", kind.name(), kind.describe());
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.name.to_owned(),
                        r.ns_per_packet.show(0),
                        r.ratio.show(2),
                        floor.map_or("-".into(), |fl| {
                            format!("{:+.0}", r.ns_per_packet.median - fl.ns_per_packet.median)
                        }),
                        r.offered_mpps.show(2),
                        r.dut_mpps.show(2),
                        pct(r.lost.median),
                        r.busy_runs.to_string(),
                    ]
                })
                .collect();
            let _ = writeln!(
                out,
                "{}",
                table(
                    &[
                        "configuration",
                        "ns/pkt",
                        "x floor",
                        "+ns",
                        "offered Mpps",
                        "DUT Mpps",
                        "lost",
                        "busy runs"
                    ],
                    &body
                )
            );
        }
        if let Some(chart) = chart {
            let _ = writeln!(
                out,
                "![DUT CPU per packet as a ratio to the floor]({chart})\n"
            );
        }
    }

    if let Some(t) = &results.testrun {
        let _ = writeln!(
            out,
            "## 1. BPF_PROG_TEST_RUN time per packet class\n\n\
             Kernel-reported mean time per run, `repeat` {} per measurement, {} rounds \
             interleaved with a one-line XDP_DROP program (floor: {} ns). The ingress program: \
             {} instructions processed by the verifier, {} bytes translated, {} bytes JITed. \
             Solicited answers are estimated from single runs (see README).\n",
            t.repeat,
            t.rounds,
            t.floor_ns.show(1),
            t.verified_insns.map_or("?".into(), |v| v.to_string()),
            t.xlated_bytes.map_or("?".into(), |v| v.to_string()),
            t.jited_bytes
        );
        let body: Vec<Vec<String>> = t
            .classes
            .iter()
            .map(|c| {
                vec![
                    c.name.to_owned(),
                    format!("`{}`", c.reason),
                    c.ns.show(1),
                    c.ratio.show(1),
                    format!("{:+.1}", c.ns.median - t.floor_ns.median),
                    pct(c.share_in_reason),
                ]
            })
            .collect();
        let _ = writeln!(
            out,
            "{}",
            table(
                &[
                    "packet class",
                    "counted as",
                    "ns/run",
                    "x floor",
                    "+ns",
                    "runs in that reason"
                ],
                &body
            )
        );
        for c in &t.classes {
            if let Some(s) = &c.single_run {
                let _ = writeln!(
                    out,
                    "- {}: single runs (incl. the kernel's timer overhead): solicited {} ns, \
                     unsolicited twin {} ns, floor {} ns.",
                    c.name,
                    s.solicited.show(0),
                    s.unsolicited.show(0),
                    s.floor.show(0)
                );
            }
        }
        for s in &t.skipped {
            let _ = writeln!(out, "- skipped: {s}");
        }
        out.push('\n');
    }

    if let Some(s) = &results.scale {
        let _ = writeln!(
            out,
            "## 3. A million spoofed sources while real lookups continue\n\n\
             The lab's gateway with the filter on `wan0`; floods from {} distinct IPv6 \
             sources (one /64 each) paced at {:.2} Mpps (the generator shares its CPU with \
             the internet side here, so the rate it reached is shown per phase); `dig` from \
             the gateway to dnsmasq on the internet side throughout.\n",
            super::scale::SCALE_SOURCES,
            s.rate_pps / 1e6
        );
        let body: Vec<Vec<String>> = s
            .phases
            .iter()
            .map(|p| {
                let total = p.lookups_ok + p.lookups_failed;
                vec![
                    p.flood.map_or("none".into(), |k| k.describe().to_owned()),
                    if p.on_wan == "filter" {
                        "this filter".into()
                    } else {
                        "XDP_DROP floor".into()
                    },
                    if p.on_wan == "filter" {
                        format!("{} / {}", p.lookups_ok, total)
                    } else {
                        "-".into()
                    },
                    p.cost
                        .map_or("-".into(), |c| format!("{:.0}", c.ns_per_packet)),
                    p.cost
                        .map_or("-".into(), |c| format!("{:.2}", c.offered_pps / 1e6)),
                    p.counters
                        .iter()
                        .map(|(r, n)| format!("{r} {n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.maps
                        .iter()
                        .filter(|(_, used, max)| used < max)
                        .map(|(m, used, max)| format!("{m} {used}/{max}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        let _ = writeln!(
            out,
            "{}",
            table(
                &[
                    "flood",
                    "on wan0",
                    "lookups ok",
                    "wan0 ns/pkt",
                    "offered Mpps",
                    "counters",
                    "map fill after",
                ],
                &body
            )
        );
    }

    if let Some(legit) = &results.legit {
        let _ = writeln!(
            out,
            "## 4. Legitimate traffic under attack\n\n\
             TCP request/response (64 bytes each way, one connection) from the internet to a \
             server in the gateway, through `wan0`; the flood is unsolicited DNS from 65536 IPv6 \
             sources at the state-scale rate. Transactions per second, median (min-max).\n"
        );
        let body: Vec<Vec<String>> = legit
            .iter()
            .map(|r| {
                vec![
                    r.config.name().into(),
                    if r.flood { "on" } else { "off" }.into(),
                    r.rate.show(0),
                    r.errors.to_string(),
                ]
            })
            .collect();
        let _ = writeln!(
            out,
            "{}",
            table(
                &["on wan0", "flood", "transactions/s", "failed runs"],
                &body
            )
        );
    }

    if let Some(mem) = &results.memory {
        let _ = writeln!(
            out,
            "## 5. Memory\n\nKernel memory of the filter's maps at their default sizes \
             (memlock, as bpftool reports it from fdinfo): **{:.1} MiB** in total. \
             filter-ctl `stats --watch 1`: {} KiB resident (peak {} KiB).\n",
            mem.maps_total_bytes as f64 / 1048576.0,
            mem.ctl_rss_kib,
            mem.ctl_hwm_kib
        );
        let body: Vec<Vec<String>> = mem
            .maps
            .iter()
            .map(|(name, kind, max, bytes)| {
                vec![
                    name.clone(),
                    kind.clone(),
                    max.to_string(),
                    format!("{:.1}", *bytes as f64 / 1024.0),
                ]
            })
            .collect();
        let _ = writeln!(
            out,
            "{}",
            table(&["map", "type", "max entries", "KiB"], &body)
        );
        let body: Vec<Vec<String>> = mem
            .programs
            .iter()
            .map(|(name, insns, xlated, jited, memlock)| {
                vec![
                    name.clone(),
                    insns.to_string(),
                    xlated.to_string(),
                    jited.to_string(),
                    memlock.to_string(),
                ]
            })
            .collect();
        let _ = writeln!(
            out,
            "{}",
            table(
                &[
                    "program",
                    "verified insns",
                    "xlated bytes",
                    "JITed bytes",
                    "memlock bytes"
                ],
                &body
            )
        );
    }

    if !results.notes.is_empty() {
        let _ = writeln!(out, "## Notes\n");
        for note in &results.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

/// The chart's data: one line per non-floor configuration of each flood:
/// label, median, min, max ratio, and the flood's colour index.
pub fn chart_data(rows: &[Row]) -> String {
    let mut out = String::from("# label median min max flood\n");
    for r in rows {
        if r.config == flood::floor_of(r.flood).key() || r.ratio.is_empty() {
            continue;
        }
        let colour = match r.flood {
            FloodKind::Dns => 1,
            FloodKind::Syn => 2,
            FloodKind::Udp => 3,
        };
        let _ = writeln!(
            out,
            "\"{}: {}\" {:.4} {:.4} {:.4} {colour}",
            r.flood.name(),
            r.name.replace('"', "'"),
            r.ratio.median,
            r.ratio.min,
            r.ratio.max
        );
    }
    out
}

/// Writes the chart with gnuplot; returns the PNG's path.
pub fn chart(rows: &[Row], dir: &Path, title: &str) -> anyhow::Result<PathBuf> {
    let data = dir.join("ratios.dat");
    let png = dir.join("ratios.png");
    fs::write(&data, chart_data(rows))?;
    // Bars grow from 1 (the floor) to the median, whiskers span min..max.
    let script = format!(
        r##"set terminal pngcairo size 1400,800 font "DejaVu Sans,11" noenhanced
set output "{png}"
set title "{title}"
set ylabel "DUT CPU time per packet / floor of the same round (log scale)"
set logscale y
set yrange [0.7:*]
set offsets 0.6, 0.6, 0, 0
set grid ytics mytics
set mytics 10
set style fill solid 0.7 border -1
set xtics rotate by -35 left nomirror
set bmargin 14
set rmargin 14
set key top left box opaque
set linetype 1 lc rgb "#4477aa"
set linetype 2 lc rgb "#ee6677"
set linetype 3 lc rgb "#228833"
plot "{data}" using 0:(($2+1)/2):(0.35):(abs($2-1)/2):5:xtic(1) with boxxyerror lc variable notitle, \
     "{data}" using 0:2:3:4 with yerrorbars lc rgb "black" pt 0 notitle, \
     "{data}" using 0:4:(sprintf("%.2f", $2)) with labels offset 0,0.8 notitle, \
     1.25 with lines dt 2 lw 2 lc rgb "#cc3311" title "target for drop paths: 1.25", \
     1.4 with lines dt 3 lw 2 lc rgb "#aa7700" title "target for pass paths: 1.4", \
     NaN with boxes lt 1 title "unsolicited DNS flood (floor XDP_DROP)", \
     NaN with boxes lt 2 title "SYN flood (floor XDP_DROP)", \
     NaN with boxes lt 3 title "passed UDP (floor XDP_PASS)"
"##,
        png = png.display(),
        data = data.display(),
    );
    let script_path = dir.join("ratios.gp");
    fs::write(&script_path, script)?;
    let out = Command::new("gnuplot")
        .arg(&script_path)
        .output()
        .context("running gnuplot (Debian package gnuplot-nox)")?;
    if !out.status.success() {
        anyhow::bail!("gnuplot failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: FloodKind, config: &'static str, round: usize, ns: f64) -> Sample {
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

    #[test]
    fn tables_are_markdown() {
        let t = table(&["a", "b"], &[vec!["x".into(), "1".into()]]);
        assert_eq!(t, "| a | b |\n|---|--:|\n| x | 1 |\n");
    }

    #[test]
    fn ratios_pair_samples_of_the_same_round() {
        let samples = vec![
            sample(FloodKind::Dns, "xdp_drop", 0, 100.0),
            sample(FloodKind::Dns, "filter_native", 0, 120.0),
            sample(FloodKind::Dns, "xdp_drop", 1, 200.0),
            sample(FloodKind::Dns, "filter_native", 1, 220.0),
            sample(FloodKind::Syn, "xdp_drop", 0, 1.0),
        ];
        let s = round_ratios(&samples, FloodKind::Dns, "filter_native", "xdp_drop");
        assert_eq!(s.n, 2);
        assert!((s.min - 1.1).abs() < 1e-9 && (s.max - 1.2).abs() < 1e-9);
        let rows = flood::summarise(&samples);
        let filter = rows.iter().find(|r| r.config == "filter_native").unwrap();
        assert!((filter.ratio.median - 1.15).abs() < 1e-9);
        assert_eq!(filter.ns_per_packet.median, 170.0);
        // The floor is not charted; the filter is.
        let data = chart_data(&rows);
        assert!(data.contains("\"dns: this filter, native\" 1.1500 1.1000 1.2000 1"));
        assert!(!data.contains("XDP_DROP"));
    }

    #[test]
    fn targets_compare_medians_with_the_goals() {
        let samples = vec![
            sample(FloodKind::Dns, "xdp_drop", 0, 100.0),
            sample(FloodKind::Dns, "filter_native", 0, 130.0),
            sample(FloodKind::Dns, "nft_ct_new", 0, 1400.0),
            sample(FloodKind::Udp, "xdp_pass", 0, 500.0),
            sample(FloodKind::Udp, "filter_native", 0, 550.0),
        ];
        let results = Results {
            flood: Some(FloodResults {
                rows: flood::summarise(&samples),
                samples,
                ..FloodResults::default()
            }),
            ..Results::default()
        };
        let t = targets(&results, false);
        let find = |prefix: &str| t.iter().find(|t| t.what.starts_with(prefix)).unwrap();
        assert_eq!(find("drop path: unsolicited DNS").met, Some(false)); // 1.30 > 1.25
        assert_eq!(find("drop path: SYN").met, None);
        assert_eq!(find("pass path").met, Some(true)); // 1.10
        assert_eq!(find("unsolicited DNS: nft").met, Some(true)); // 10.8
        // (1400 - 100) / (130 - 100)
        assert!(
            find("unsolicited DNS: nft")
                .measured
                .contains("above the floor: 43.3x")
        );
        let md = markdown(&results, Some("ratios.png"));
        assert!(md.contains("## Targets"));
        assert!(md.contains("![DUT CPU per packet"));
        assert!(md.contains("| this filter, native | 130 | 1.30 | +30 |"));
    }
}
