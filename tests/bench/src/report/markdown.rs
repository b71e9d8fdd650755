//! BENCHMARKS.md: a header (where and on what it ran), the targets, then one
//! section per part of the benchmark that ran, and the notes. Each section
//! is a function of its part's results.

use std::fmt::Write as _;

use super::{FloodResults, Meta, Results, TargetCheck, targets::row};
use crate::{
    flood::{self, Row},
    legit::LegitRow,
    memory::MemoryResults,
    scale::{self, ScaleResults},
    testrun::TestRunResults,
    traffic::FloodKind,
};

/// BENCHMARKS.md; `chart` is the PNG's path relative to the file.
pub fn markdown(results: &Results, chart: Option<&str>) -> String {
    let mut out = String::new();
    header(&mut out, &results.meta);
    targets(&mut out, &results.targets);
    if let Some(f) = &results.flood {
        flood_section(&mut out, f, chart);
    }
    if let Some(t) = &results.testrun {
        testrun_section(&mut out, t);
    }
    if let Some(s) = &results.scale {
        scale_section(&mut out, s);
    }
    if let Some(legit) = &results.legit {
        legit_section(&mut out, legit);
    }
    if let Some(mem) = &results.memory {
        memory_section(&mut out, mem);
    }
    if !results.notes.is_empty() {
        let _ = writeln!(out, "## Notes\n");
        for note in &results.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
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

pub(super) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "n/a",
    }
}

/// Where and on what it ran, and whether the machine was busy.
fn header(out: &mut String, m: &Meta) {
    let _ = writeln!(
        out,
        "# Benchmark results\n\nWritten by `cargo xtask bench` ({} mode); docs/benchmark.md \
         explains the method. Do not edit by hand: run the benchmark again.\n",
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
}

/// The targets, met or not.
fn targets(out: &mut String, targets: &[TargetCheck]) {
    let _ = writeln!(out, "## Targets\n");
    let rows: Vec<Vec<String>> = targets
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
}

/// Part 2: a table per flood, and the chart.
fn flood_section(out: &mut String, f: &FloodResults, chart: Option<&str>) {
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

/// Part 1: a row per packet class.
fn testrun_section(out: &mut String, t: &TestRunResults) {
    let _ = writeln!(
        out,
        "## 1. BPF_PROG_TEST_RUN time per packet class\n\n\
         Kernel-reported mean time per run, `repeat` {} per measurement, {} rounds \
         interleaved with a one-line XDP_DROP program (floor: {} ns; the same through one \
         call to a global function: {} ns, so one call costs {:+.1} ns on this CPU; \
         docs/kernel-programs.md says which paths make one). The ingress program: {} instructions processed by the verifier, {} bytes translated, {} bytes \
         JITed. Solicited answers are estimated from single runs (see docs/benchmark.md).\n",
        t.repeat,
        t.rounds,
        t.floor_ns.show(1),
        t.call_ns.show(1),
        t.call_ns.median - t.floor_ns.median,
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
    out.push('\n');
}

/// Part 3: a row per phase of the million-source flood.
fn scale_section(out: &mut String, s: &ScaleResults) {
    let _ = writeln!(
        out,
        "## 3. A million spoofed sources while real lookups continue\n\n\
         The lab's gateway with the filter on `wan0`; floods from {} distinct IPv6 \
         sources (one /64 each) paced at {:.2} Mpps (the generator shares its CPU with \
         the internet side here, so the rate it reached is shown per phase); `dig` from \
         the gateway to dnsmasq on the internet side throughout.\n",
        scale::SCALE_SOURCES,
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

/// Part 4: transactions per second with and without the flood.
fn legit_section(out: &mut String, legit: &[LegitRow]) {
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

/// Part 5: maps and programs.
fn memory_section(out: &mut String, mem: &MemoryResults) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_markdown() {
        let t = table(&["a", "b"], &[vec!["x".into(), "1".into()]]);
        assert_eq!(t, "| a | b |\n|---|--:|\n| x | 1 |\n");
    }
}
