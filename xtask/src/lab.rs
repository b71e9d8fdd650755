//! `cargo xtask lab`: the incidents the filter answers, replayed in network
//! namespaces, each seen failing without the filter and held with it.
//!
//! Every incident (one module each under `lab/`) tells its story, builds a
//! fresh lab (the end-to-end tests' topology: an "internet", a gateway with
//! `wan0` and NAT, a LAN client, hosts on the WAN segment; see
//! harness::lab) with the real servers it needs, runs its attack without the
//! filter and measures the damage independently of the filter; then builds
//! the same lab again, attaches the filter with the real filter-ctl (and
//! sets what the incident needs, as an operator types it), runs the same
//! attack and shows the same measures, the counters that moved and why, the
//! daemon's attack lines and `filter-ctl top`. A verdict computed from the
//! measures ends it; a table ends the run. Everything is removed at the end,
//! on error and on Ctrl-C (`--keep` leaves the last lab up until Ctrl-C).
//!
//! The topology, the servers, the floods, the measures and the filter-ctl
//! driver come from the `harness` crate, which the end-to-end tests share;
//! this module and its children only tell the story. The harness builds no
//! eBPF, so xtask builds before `xtask setup` installed the eBPF toolchain.

mod amplifier;
mod dns_server;
mod ntp_amplifier;
mod reflection;
mod smtp_slots;
mod stage;
mod syn_halfopen;

use std::{
    path::{Path, PathBuf},
    sync::atomic::Ordering,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use harness::signals::{INTERRUPTED, catch_signals, check_interrupted};

use self::stage::Stage;

/// Options of `cargo xtask lab`.
#[derive(Debug, clap::Args)]
#[command(after_help = incidents_help())]
pub struct LabArgs {
    /// Which incident to replay (`--list` names them).
    #[arg(long, value_name = "NAME", default_value = "all",
          value_parser = clap::builder::PossibleValuesParser::new(incident_names()))]
    incident: String,
    /// Name the incidents, a line each, and exit.
    #[arg(long)]
    pub list: bool,
    /// Shorter attacks (about 3 s instead of 8 s each), for the test suite.
    #[arg(long)]
    quick: bool,
    /// Frames per second of the reflection flood.
    #[arg(long, value_name = "PPS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    pps: u32,
    /// After the last incident, leave its lab (the filter attached, its
    /// servers running) up until Ctrl-C, to explore by hand; then clean up.
    #[arg(long)]
    keep: bool,
    /// The filter-ctl binary to use [default: target/release/filter-ctl,
    /// which the lab builds first; given a binary, it builds nothing].
    #[arg(long, value_name = "PATH", env = "FILTER_CTL")]
    pub filter_ctl: Option<PathBuf>,
}

/// What an incident needs from the run.
pub struct Ctx<'a> {
    pub binary: &'a Path,
    pub quick: bool,
    pub pps: u32,
}

impl Ctx<'_> {
    /// How long each attack lasts.
    pub fn attack(&self) -> Duration {
        Duration::from_secs(if self.quick { 3 } else { 8 })
    }
}

/// How an incident ended: the closing table's row, its verdict, and the lab
/// of its second phase (kept up with `--keep`).
pub struct Outcome {
    pub without: String,
    pub with: String,
    pub legit: String,
    pub held: bool,
    pub verdict: String,
    pub stage: Stage,
}

/// One incident: its name, a line for `--list`, its story, and its run.
pub struct Incident {
    pub name: &'static str,
    pub summary: &'static str,
    pub story: &'static str,
    pub run: fn(&Ctx) -> anyhow::Result<Outcome>,
}

/// Every incident, in the order `all` runs them.
const INCIDENTS: [&Incident; 5] = [
    &reflection::INCIDENT,
    &ntp_amplifier::INCIDENT,
    &syn_halfopen::INCIDENT,
    &smtp_slots::INCIDENT,
    &dns_server::INCIDENT,
];

/// What `lab --help` ends with: the incidents, a line each.
fn incidents_help() -> String {
    let mut help = "Incidents (--incident NAME):\n".to_owned();
    for incident in INCIDENTS {
        help.push_str(&format!("  {:<14} {}\n", incident.name, incident.summary));
    }
    help + "  all            every incident, one after the other (the default)"
}

fn incident_names() -> Vec<&'static str> {
    INCIDENTS
        .iter()
        .map(|incident| incident.name)
        .chain(["all"])
        .collect()
}

pub fn run(opts: LabArgs) -> anyhow::Result<bool> {
    if opts.list {
        for incident in INCIDENTS {
            println!("{:<14} {}", incident.name, incident.summary);
        }
        return Ok(true);
    }
    catch_signals()?;
    let binary = match &opts.filter_ctl {
        Some(path) => path.clone(),
        None => crate::repo_root().join("target/release/filter-ctl"),
    };
    if !binary.is_file() {
        bail!(
            "{} not found: build it with `cargo xtask build`",
            binary.display()
        );
    }
    let binary = binary.canonicalize()?;
    let ctx = Ctx {
        binary: &binary,
        quick: opts.quick,
        pps: opts.pps,
    };
    let chosen: Vec<&Incident> = INCIDENTS
        .into_iter()
        .filter(|incident| opts.incident == "all" || opts.incident == incident.name)
        .collect();
    let started = Instant::now();
    let result = replay(&ctx, &chosen, opts.keep);
    match &result {
        Ok(_) => println!(
            "\nThe labs are gone: servers stopped, namespaces deleted, pins removed ({:.0} s in all).",
            started.elapsed().as_secs_f64()
        ),
        Err(_) if INTERRUPTED.load(Ordering::Relaxed) => {
            println!(
                "\nInterrupted: the lab is gone (servers stopped, namespaces deleted, pins removed)."
            );
            return Ok(true);
        }
        Err(_) => eprintln!("\nThe lab failed; it was removed all the same."),
    }
    result
}

/// Runs the incidents, prints the closing table; whether every defence held.
fn replay(ctx: &Ctx, incidents: &[&Incident], keep: bool) -> anyhow::Result<bool> {
    println!(
        "Each incident runs twice in a lab of its own (network namespaces joined by veth pairs,\n\
         connected to nothing outside): first without the filter, then with it on the gateway's\n\
         wan0. Spoofed sources are documentation addresses only. Damage is measured at the\n\
         servers and with nftables, independently of the filter's own counters."
    );
    let mut rows = Vec::new();
    let mut last = None;
    for (n, incident) in incidents.iter().enumerate() {
        check_interrupted()?;
        println!(
            "\n==================== {}/{}: {} ====================",
            n + 1,
            incidents.len(),
            incident.name
        );
        for line in incident.story.lines() {
            println!("{}", line.trim());
        }
        let started = Instant::now();
        let outcome = (incident.run)(ctx).with_context(|| format!("incident {}", incident.name))?;
        println!(
            "\nverdict {}: {} ({:.0} s)",
            incident.name,
            outcome.verdict,
            started.elapsed().as_secs_f64()
        );
        rows.push((
            incident.name,
            outcome.without.clone(),
            outcome.with.clone(),
            outcome.legit.clone(),
            outcome.held,
        ));
        // Only the last lab may stay; the others go now.
        last = Some(outcome.stage);
    }
    println!("\n==================== closing table ====================");
    let widths = [
        rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(8),
        rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(22),
        rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(19),
    ];
    let legit = "legitimate traffic served with filter";
    println!(
        "| {:<w0$} | {:<w1$} | {:<w2$} | {legit} |",
        "incident",
        "damage without filter",
        "damage with filter",
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2]
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(widths[0] + 2),
        "-".repeat(widths[1] + 2),
        "-".repeat(widths[2] + 2),
        "-".repeat(legit.len() + 2)
    );
    for (name, without, with, legit, _) in &rows {
        println!(
            "| {name:<w0$} | {without:<w1$} | {with:<w2$} | {legit} |",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    let failed: Vec<&str> = rows.iter().filter(|row| !row.4).map(|row| row.0).collect();
    if failed.is_empty() {
        println!("Every defence held.");
    } else {
        println!("The defence did not hold in: {}.", failed.join(", "));
    }

    if keep && let Some(stage) = &last {
        keep_up(stage)?;
    }
    drop(last);
    Ok(failed.is_empty())
}

/// `--keep`: the last lab stays up until Ctrl-C.
fn keep_up(stage: &Stage) -> anyhow::Result<()> {
    let pin_root = stage.ctl.pin_root().display();
    println!(
        "\nThe last lab stays up until Ctrl-C (the filter attached, its servers running); try, in\n\
         another shell:\n  \
         ip netns exec {gw} env FILTER_PIN_ROOT={pin_root} {bin} stats --iface wan0 --watch 1\n  \
         ip netns exec {gw} env FILTER_PIN_ROOT={pin_root} {bin} config --iface wan0\n  \
         ip netns exec {gw} nft list ruleset",
        gw = stage.gw().name(),
        bin = stage.ctl.binary().display(),
    );
    for hint in &stage.hints {
        println!("  {hint}");
    }
    println!(
        "Namespaces: {}",
        [&stage.topo.internet, &stage.topo.gateway, &stage.topo.lan]
            .into_iter()
            .chain(&stage.topo.wan_hosts)
            .map(|ns| ns.name())
            .collect::<Vec<_>>()
            .join(" ")
    );
    while !INTERRUPTED.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(100));
    }
    // Ctrl-C is how --keep ends: clean up as after a normal run.
    INTERRUPTED.store(false, Ordering::Relaxed);
    println!();
    Ok(())
}

/// The verdict of an incident whose checks found `failures` (each a
/// `Some` saying what went wrong): whether the defence held, and the line.
pub fn judge(held: String, failures: Vec<Option<String>>) -> (bool, String) {
    let failures: Vec<String> = failures.into_iter().flatten().collect();
    if failures.is_empty() {
        (true, format!("the defence held: {held}"))
    } else {
        (
            false,
            format!("the defence did NOT hold: {}", failures.join("; ")),
        )
    }
}

/// "1.2 MB", "345 kB", "678 B".
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 10_000_000 => format!("{:.0} MB", n as f64 / 1e6),
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.0} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

/// The reduction from `without` to `with`, as "97 %" (of `without`).
pub fn reduction(without: u64, with: u64) -> String {
    if without == 0 {
        return "-".to_owned();
    }
    format!("{:.0} %", 100.0 - with as f64 * 100.0 / without as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_incident_has_a_unique_name_a_summary_and_a_short_story() {
        let names = incident_names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for incident in INCIDENTS {
            assert!(!incident.summary.is_empty());
            let lines = incident.story.trim().lines().count();
            assert!((2..=3).contains(&lines), "{}: {lines} lines", incident.name);
        }
    }

    #[test]
    fn sizes_and_reductions_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(45_678), "46 kB");
        assert_eq!(bytes(1_234_567), "1.2 MB");
        assert_eq!(bytes(45_678_901), "46 MB");
        assert_eq!(reduction(1000, 30), "97 %");
        assert_eq!(reduction(0, 0), "-");
    }
}
