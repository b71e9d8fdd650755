//! Part 2: DUT CPU time per packet under a paced flood, for every
//! configuration that could do the job ([`configs`]), as a ratio to an
//! XDP_DROP floor measured in the same round; [`measure`] takes one sample.
//! The topology is [`crate::pair`]'s.

pub mod configs;
pub mod measure;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use aya::programs::XdpMode;
use harness::{ctl::FilterCtl, signals::check_interrupted};

pub use self::configs::{DutConfig, XdpFilterEnv};
use self::{
    configs::apply,
    measure::{measure, wait_quiet},
};
use crate::{
    generator::Generator,
    options::Options,
    pair::{self, Pair},
    stats::Summary,
    traffic::FloodKind,
};

/// The floor a flood's configurations are divided by.
pub fn floor_of(kind: FloodKind) -> DutConfig {
    match kind {
        FloodKind::Udp => DutConfig::XdpPass,
        FloodKind::Dns | FloodKind::Syn => DutConfig::XdpDrop,
    }
}

/// The measured configurations per flood.
pub fn matrix() -> Vec<(FloodKind, Vec<DutConfig>)> {
    use DutConfig::*;
    let syn = vec![
        XdpDrop,
        XdpTouch,
        None,
        Filter(XdpMode::Driver),
        Filter(XdpMode::Skb),
        NftSynMeterIngress,
        NftSynMeterInput,
        NftCtNew,
        FilterUnsampled,
    ];
    vec![
        (
            FloodKind::Dns,
            vec![
                XdpDrop,
                XdpTouch,
                None,
                Filter(XdpMode::Driver),
                Filter(XdpMode::Skb),
                NftIngressSport53,
                NftCtNew,
                XdpFilter(XdpMode::Driver),
                XdpFilter(XdpMode::Skb),
                FilterUnsampled,
            ],
        ),
        (FloodKind::Syn, syn),
        (FloodKind::Udp, vec![XdpPass, None, Filter(XdpMode::Driver)]),
    ]
}

/// How many spoofed sources each flood cycles through. The SYN flood comes
/// from a few addresses with ever-changing source ports (the incident, and
/// what per-source limits are for); the others from many.
pub fn sources(kind: FloodKind) -> u32 {
    match kind {
        FloodKind::Syn => 4,
        FloodKind::Dns | FloodKind::Udp => 65536,
    }
}

/// One run of one configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sample {
    pub flood: FloodKind,
    pub config: &'static str,
    pub round: usize,
    /// What the generator sent, and at what rate.
    pub sent: u64,
    pub offered_pps: f64,
    /// Frames the DUT's NAPI took from its ring (ethtool rx_queue_0_xdp_packets).
    pub dut_packets: u64,
    /// CPU time of the DUT's NAPI thread.
    pub dut_cpu_ns: u64,
    pub ns_per_packet: f64,
    /// Share of the sent frames that did not reach the DUT (ring overflow).
    pub lost: f64,
    /// CPU used by other processes during the run, as a share of the machine.
    pub others_cpu: f64,
    /// True if `others_cpu` was above the limit after all retries.
    pub busy: bool,
    pub generator_restarts: u64,
    /// Wall time of the generator's call.
    pub seconds: f64,
}

/// The summary of one configuration over the rounds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub flood: FloodKind,
    pub config: &'static str,
    pub name: &'static str,
    pub floor: &'static str,
    pub ns_per_packet: Summary,
    /// Per round: this configuration's ns/packet divided by the floor's of the same round.
    pub ratio: Summary,
    pub offered_mpps: Summary,
    pub dut_mpps: Summary,
    pub lost: Summary,
    pub busy_runs: usize,
}

pub fn summarise(samples: &[Sample]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut seen: Vec<(FloodKind, &str)> = Vec::new();
    for s in samples {
        if seen.contains(&(s.flood, s.config)) {
            continue;
        }
        seen.push((s.flood, s.config));
        let mine: Vec<&Sample> = samples
            .iter()
            .filter(|x| x.flood == s.flood && x.config == s.config)
            .collect();
        let floor = floor_of(s.flood);
        let ratios: Vec<f64> = mine
            .iter()
            .filter_map(|x| {
                let f = samples.iter().find(|f| {
                    f.flood == x.flood && f.config == floor.key() && f.round == x.round
                })?;
                (f.ns_per_packet > 0.0).then(|| x.ns_per_packet / f.ns_per_packet)
            })
            .collect();
        let config = all_configs()
            .find(|c| c.key() == s.config)
            .expect("a known configuration");
        rows.push(Row {
            flood: s.flood,
            config: s.config,
            name: config.name(),
            floor: floor.key(),
            ns_per_packet: Summary::of(mine.iter().map(|x| x.ns_per_packet)),
            ratio: Summary::of(ratios),
            offered_mpps: Summary::of(mine.iter().map(|x| x.offered_pps / 1e6)),
            dut_mpps: Summary::of(
                mine.iter()
                    .map(|x| x.dut_packets as f64 / x.seconds.max(1e-9) / 1e6),
            ),
            lost: Summary::of(mine.iter().map(|x| x.lost)),
            busy_runs: mine.iter().filter(|x| x.busy).count(),
        });
    }
    rows
}

/// Every configuration of the matrix.
fn all_configs() -> impl Iterator<Item = DutConfig> {
    matrix().into_iter().flat_map(|(_, configs)| configs)
}

/// Runs the whole matrix: `opts.repeats` rounds, each round every flood and
/// configuration once, in the same order (A B C A B C ...).
pub fn run(opts: &Options, notes: &mut Vec<String>) -> anyhow::Result<Vec<Sample>> {
    let pair = Pair::build(opts.cpus)?;
    let mut generator = Generator::load()?;
    let ctl = FilterCtl::new()?;
    let xdp_filter = match XdpFilterEnv::new() {
        Ok(env) => Some(env),
        Err(err) => {
            notes.push(format!("xdp-filter skipped: {err:#}"));
            None
        }
    };
    // A TCP listener on port 80 in the DUT, so the SYN flood meets a server
    // (SYN-ACKs with syncookies) instead of RSTs; never accepted.
    let _listener = pair.dut.tcp_listen((pair::DUT4, 80).into())?;
    let mut matrix = matrix();
    let mut skipped: Vec<DutConfig> = Vec::new();
    let mut samples = Vec::new();
    let napi = [pair.dut_napi, pair.gen_napi];
    let mut busy_spent = Duration::ZERO;
    for round in 0..opts.repeats {
        for (kind, configs) in &mut matrix {
            for &config in configs.iter() {
                if skipped.contains(&config)
                    || !(opts.configs.is_empty() || opts.configs.iter().any(|c| c == config.key()))
                    || !(opts.floods.is_empty() || opts.floods.iter().any(|f| f == kind.name()))
                {
                    continue;
                }
                check_interrupted()?;
                let applied = match apply(&pair, config, &ctl, xdp_filter.as_ref()) {
                    Ok(applied) => applied,
                    Err(err) if matches!(config, DutConfig::XdpFilter(_)) => {
                        notes.push(format!("{} skipped: {err:#}", config.name()));
                        skipped.push(config);
                        continue;
                    }
                    Err(err) => return Err(err.context(format!("applying {}", config.name()))),
                };
                let mut attempt = 0;
                let sample = loop {
                    let budget_left = opts.busy_budget.saturating_sub(busy_spent);
                    let waited = Instant::now();
                    wait_quiet(&napi, opts.max_others, opts.patience.min(budget_left))?;
                    busy_spent += waited.elapsed().saturating_sub(Duration::from_millis(300));
                    let measured = Instant::now();
                    let (run, packets, cpu_ns, others) =
                        measure(&pair, &mut generator, *kind, opts, opts.duration)?;
                    let busy = others > opts.max_others;
                    let sample = Sample {
                        flood: *kind,
                        config: config.key(),
                        round,
                        sent: run.sent,
                        offered_pps: run.rate_pps(),
                        dut_packets: packets,
                        dut_cpu_ns: cpu_ns,
                        ns_per_packet: if packets > 0 {
                            cpu_ns as f64 / packets as f64
                        } else {
                            0.0
                        },
                        lost: if run.sent > 0 {
                            run.sent.saturating_sub(packets) as f64 / run.sent as f64
                        } else {
                            0.0
                        },
                        others_cpu: others,
                        busy,
                        generator_restarts: run.restarts,
                        seconds: run.seconds,
                    };
                    if !busy || attempt >= opts.retries || busy_spent >= opts.busy_budget {
                        break sample;
                    }
                    attempt += 1;
                    busy_spent += measured.elapsed();
                    eprintln!(
                        "bench: {} {}: others used {:.0}% CPU, measuring again",
                        kind.name(),
                        config.name(),
                        others * 100.0
                    );
                };
                eprintln!(
                    "bench: round {} {:<4} {:<32} {:>7.1} ns/pkt  offered {:.2} Mpps  lost {:>5.1}%  others {:>3.0}%{}",
                    round + 1,
                    kind.name(),
                    config.name(),
                    sample.ns_per_packet,
                    sample.offered_pps / 1e6,
                    sample.lost * 100.0,
                    sample.others_cpu * 100.0,
                    if sample.busy { "  (busy)" } else { "" }
                );
                samples.push(sample);
                applied
                    .remove()
                    .with_context(|| format!("removing {}", config.name()))?;
            }
        }
    }
    Ok(samples)
}
