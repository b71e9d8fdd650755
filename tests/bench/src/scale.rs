//! Part 3: a flood from a million distinct spoofed sources (DNS responses,
//! then SYNs) at the gateway's `wan0`, while the gateway keeps doing real DNS
//! lookups (dig) against a real resolver (dnsmasq) on the internet side; then
//! the same DNS flood against the XDP_DROP floor. The lab is prepared by
//! [`crate::lab_bench`].
//!
//! IPv6 sources: one million distinct /64s of 2001:db8:8000::/33 (IPv4's
//! benchmarking and documentation ranges hold only ~132,000 addresses).

use std::{
    io::Write as _,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::bail;
use aya::programs::XdpMode;
use harness::{
    ctl::{FilterCtl, Stats},
    kernel,
    lab::{WAN_IF, addr},
    netns::Netns,
    process::{output, run as run_command},
    servers::real::DNS_NAME,
    signals::check_interrupted,
};

use crate::{
    generator::Generator,
    lab_bench::{FloodCost, LabBench},
    object::names,
    options::Options,
    pair,
    traffic::FloodKind,
};

/// What the resolver answers for every name under [`DNS_NAME`], as `dig +short` prints it.
static ANSWER: LazyLock<String> = LazyLock::new(|| addr::DNS_ANSWER4.to_string());

/// Real lookups from the gateway, in a loop on a thread: `dig` batches
/// against the resolver, each answer checked.
pub struct Lookups {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Queries per dig batch: small, so a phase boundary splits few batches.
const BATCH: usize = 10;

impl Lookups {
    pub fn start(gateway: &Netns) -> anyhow::Result<Self> {
        let mut file = tempfile::Builder::new().prefix("wfb-queries-").tempfile()?;
        let tag = std::process::id();
        for n in 0..BATCH {
            writeln!(file, "q{tag}-{n}.{DNS_NAME} A")?;
        }
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut command = gateway.command("dig");
        command
            .arg(format!("@{}", addr::SERVER4))
            .args(["+tries=1", "+time=2", "+short", "-f"])
            .arg(file.path());
        let thread = thread::spawn({
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            // The thread owns the file: it is removed when the thread ends.
            move || -> anyhow::Result<()> {
                let _file = file;
                while !stop.load(Ordering::Relaxed) {
                    let out = output(&mut command)?;
                    let text = String::from_utf8_lossy(&out.stdout);
                    let answered = count_answers(&text, &ANSWER).min(BATCH);
                    ok.fetch_add(answered as u64, Ordering::Relaxed);
                    failed.fetch_add((BATCH - answered) as u64, Ordering::Relaxed);
                }
                Ok(())
            }
        });
        Ok(Self {
            ok,
            failed,
            stop,
            thread: Some(thread),
        })
    }

    /// (answered, failed) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    pub fn stop(mut self) -> anyhow::Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("the lookup thread panicked"))??;
        }
        Ok(self.counts())
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lines of `dig +short` output that are the expected answer.
pub fn count_answers(text: &str, answer: &str) -> usize {
    text.lines().filter(|line| line.trim() == answer).count()
}

/// One phase of the state-scale run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Phase {
    pub flood: Option<FloodKind>,
    /// What was on wan0: the filter, or (last phase, no lookups) the XDP_DROP floor.
    pub on_wan: &'static str,
    pub sources: u32,
    pub seconds: f64,
    pub lookups_ok: u64,
    pub lookups_failed: u64,
    pub cost: Option<FloodCost>,
    /// The filter's counters that moved during the phase (reason: packets).
    pub counters: Vec<(String, u64)>,
    /// Map fill after the phase: (map, entries in use, max entries).
    pub maps: Vec<(String, u64, u64)>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ScaleResults {
    pub rate_pps: f64,
    pub phases: Vec<Phase>,
}

/// Map fill levels from `filter-ctl status --json`, of the maps where
/// entries in use mean something.
pub fn map_fill(ctl: &FilterCtl, ns: &Netns) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let status = ctl.status(ns, Some(WAN_IF))?;
    Ok(status
        .iter()
        .flat_map(|s| &s.maps)
        .filter_map(|m| {
            Some((
                m.name.clone(),
                u64::from(m.entries?),
                u64::from(m.max_entries),
            ))
        })
        .collect())
}

pub const SCALE_SOURCES: u32 = 1_000_000;

pub fn run(
    lab: &LabBench,
    generator: &mut Generator,
    opts: &Options,
) -> anyhow::Result<ScaleResults> {
    lab.attach()?;
    let gw = lab.gateway();
    // The resolver must answer before the floods start.
    let probe = run_command(
        gw.command("dig")
            .arg(format!("@{}", addr::SERVER4))
            .args(["+tries=3", "+time=1", "+short"])
            .arg(format!("probe.{DNS_NAME}")),
    )?;
    if count_answers(&probe, &ANSWER) != 1 {
        bail!("the resolver in the lab does not answer: {probe:?}");
    }
    let lookups = Lookups::start(gw)?;
    let mut phases = Vec::new();
    let duration = opts.duration.max(Duration::from_secs(2));
    for flood in [None, Some(FloodKind::Dns), Some(FloodKind::Syn)] {
        check_interrupted()?;
        let (ok0, failed0) = lookups.counts();
        let stats0 = lab.ctl.stats(gw, WAN_IF)?;
        let start = std::time::Instant::now();
        let cost = match flood {
            None => {
                thread::sleep(duration);
                None
            }
            Some(kind) => {
                let f = lab.flood(kind, SCALE_SOURCES, opts.scale_rate_pps, opts.burst);
                Some(lab.send(generator, &f, duration)?)
            }
        };
        // Lookups in flight finish within dig's timeout.
        thread::sleep(Duration::from_millis(500));
        let seconds = start.elapsed().as_secs_f64();
        let (ok1, failed1) = lookups.counts();
        let stats1 = lab.ctl.stats(gw, WAN_IF)?;
        let counters = moved(&stats1.since(&stats0));
        let maps = map_fill(&lab.ctl, gw)?;
        eprintln!(
            "bench: scale {:<5} lookups ok {} failed {}  {}",
            flood.map_or("none", FloodKind::name),
            ok1 - ok0,
            failed1 - failed0,
            cost.map_or(String::new(), |c| format!(
                "{:.1} ns/pkt at {:.2} Mpps offered",
                c.ns_per_packet,
                c.offered_pps / 1e6
            ))
        );
        phases.push(Phase {
            flood,
            on_wan: "filter",
            sources: if flood.is_some() { SCALE_SOURCES } else { 0 },
            seconds,
            lookups_ok: ok1 - ok0,
            lookups_failed: failed1 - failed0,
            cost,
            counters,
            maps,
        });
    }
    lookups.stop()?;
    lab.detach()?;
    // The same DNS flood against the floor, for the cost per packet (the
    // floor drops the resolver's answers too, so no lookups here).
    {
        let _floor = pair::attach_bench_program(gw, WAN_IF, names::DROP, XdpMode::Driver)?;
        let f = lab.flood(
            FloodKind::Dns,
            SCALE_SOURCES,
            opts.scale_rate_pps,
            opts.burst,
        );
        let cost = lab.send(generator, &f, duration)?;
        eprintln!(
            "bench: scale dns   XDP_DROP floor {:.1} ns/pkt at {:.2} Mpps offered",
            cost.ns_per_packet,
            cost.offered_pps / 1e6
        );
        phases.push(Phase {
            flood: Some(FloodKind::Dns),
            on_wan: "xdp_drop",
            sources: SCALE_SOURCES,
            seconds: cost.seconds,
            lookups_ok: 0,
            lookups_failed: 0,
            cost: Some(cost),
            counters: Vec::new(),
            maps: Vec::new(),
        });
    }
    kernel::wait_no_xdp(gw, WAN_IF)?;
    Ok(ScaleResults {
        rate_pps: opts.scale_rate_pps,
        phases,
    })
}

fn moved(delta: &Stats) -> Vec<(String, u64)> {
    delta
        .nonzero()
        .into_iter()
        .map(|(reason, packets, _)| (reason, packets))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dig_short_answers_are_counted() {
        let text =
            "198.51.100.80\n;; connection timed out; no servers could be reached\n198.51.100.80\n";
        assert_eq!(count_answers(text, &ANSWER), 2);
        assert_eq!(count_answers("", &ANSWER), 0);
    }
}
