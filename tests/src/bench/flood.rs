//! Part 2: DUT CPU time per packet under a paced flood, for every
//! configuration that could do the job, as a ratio to an XDP_DROP floor
//! measured in the same round.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{Ebpf, programs::XdpMode};

use super::{
    Options,
    generator::{self, GenRun, Generator, Placement},
    object::names,
    pair::{self, DUT_IF, GENERATOR_PRIORITY, Pair},
    stats::Summary,
    sys,
    traffic::{self, FloodKind, Target},
};
use crate::{ctl::FilterCtl, netns::Netns};

/// What sits on the DUT's ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DutConfig {
    /// Nothing: the kernel's stack handles the flood.
    None,
    /// `return XDP_DROP` in native mode: the floor of drop paths.
    XdpDrop,
    /// `return XDP_PASS` in native mode: the floor of pass paths.
    XdpPass,
    /// Reads EtherType, IP protocol and ports, then XDP_DROP: what touching
    /// the packet costs on top of the floor.
    XdpTouch,
    /// This filter, attached with filter-ctl.
    Filter(XdpMode),
    /// nftables netdev ingress: `udp sport 53 drop`.
    NftIngressSport53,
    /// nftables input: `ct state new drop` (what a stateful firewall does to
    /// unsolicited responses and to SYNs).
    NftCtNew,
    /// nftables per-source SYN meter (a dynamic set with a limit per source), at
    /// the netdev ingress hook.
    NftSynMeterIngress,
    /// The same meter in the input hook.
    NftSynMeterInput,
    /// xdp-filter (Debian's xdp-tools), dropping UDP source port 53.
    XdpFilter(XdpMode),
}

impl DutConfig {
    pub fn name(self) -> &'static str {
        match self {
            DutConfig::None => "no filter (stack)",
            DutConfig::XdpDrop => "XDP_DROP floor",
            DutConfig::XdpPass => "XDP_PASS floor",
            DutConfig::XdpTouch => "XDP_DROP after reading the headers",
            DutConfig::Filter(XdpMode::Skb) => "this filter, generic",
            DutConfig::Filter(_) => "this filter, native",
            DutConfig::NftIngressSport53 => "nft ingress udp sport 53 drop",
            DutConfig::NftCtNew => "nft input ct state new drop",
            DutConfig::NftSynMeterIngress => "nft ingress SYN meter",
            DutConfig::NftSynMeterInput => "nft input SYN meter",
            DutConfig::XdpFilter(XdpMode::Skb) => "xdp-filter, skb",
            DutConfig::XdpFilter(_) => "xdp-filter, native",
        }
    }

    /// A short key for JSON and the chart.
    pub fn key(self) -> &'static str {
        match self {
            DutConfig::None => "none",
            DutConfig::XdpDrop => "xdp_drop",
            DutConfig::XdpPass => "xdp_pass",
            DutConfig::XdpTouch => "xdp_touch",
            DutConfig::Filter(XdpMode::Skb) => "filter_generic",
            DutConfig::Filter(_) => "filter_native",
            DutConfig::NftIngressSport53 => "nft_ingress_sport53",
            DutConfig::NftCtNew => "nft_ct_new",
            DutConfig::NftSynMeterIngress => "nft_syn_meter_ingress",
            DutConfig::NftSynMeterInput => "nft_syn_meter_input",
            DutConfig::XdpFilter(XdpMode::Skb) => "xdp_filter_skb",
            DutConfig::XdpFilter(_) => "xdp_filter_native",
        }
    }
}

/// The floor a flood's configurations are divided by.
pub fn floor_of(kind: FloodKind) -> DutConfig {
    match kind {
        FloodKind::Udp => DutConfig::XdpPass,
        FloodKind::Dns | FloodKind::Syn => DutConfig::XdpDrop,
    }
}

/// The measured configurations per flood. The filter's rows for the SYN
/// flood are run only once the filter has a SYN defence (see `syn_ready`).
pub fn matrix(syn_ready: bool) -> Vec<(FloodKind, Vec<DutConfig>)> {
    use DutConfig::*;
    let mut syn = vec![XdpDrop, XdpTouch, None];
    if syn_ready {
        syn.extend([Filter(XdpMode::Driver), Filter(XdpMode::Skb)]);
    }
    syn.extend([NftSynMeterIngress, NftSynMeterInput, NftCtNew]);
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

/// A configuration applied to the DUT; undone by [`Applied::remove`] or drop.
pub struct Applied<'a> {
    pair: &'a Pair,
    config: DutConfig,
    bench_prog: Option<Ebpf>,
    ctl: Option<&'a FilterCtl>,
    xdp_filter: Option<&'a XdpFilterEnv>,
}

impl Applied<'_> {
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.undo()
    }

    fn undo(&mut self) -> anyhow::Result<()> {
        self.bench_prog = None;
        let dut = &self.pair.dut;
        match self.config {
            DutConfig::Filter(_) => {
                if let Some(ctl) = self.ctl.take() {
                    ctl.detach(dut, DUT_IF)?;
                }
            }
            DutConfig::XdpFilter(_) => {
                if let Some(env) = self.xdp_filter.take() {
                    env.command(dut)
                        .args(["unload", DUT_IF])
                        .output()
                        .context("xdp-filter unload")?;
                }
            }
            DutConfig::NftIngressSport53
            | DutConfig::NftCtNew
            | DutConfig::NftSynMeterIngress
            | DutConfig::NftSynMeterInput => {
                sys::nft(dut, "flush ruleset\n")?;
            }
            DutConfig::None | DutConfig::XdpDrop | DutConfig::XdpPass | DutConfig::XdpTouch => {}
        }
        self.config = DutConfig::None;
        // A link's last reference may go a moment after its pin or fd: wait
        // until the interface has no XDP program, so the next one can attach.
        crate::netns::wait_until(Duration::from_secs(3), Duration::from_millis(10), || {
            Ok(crate::ctl::xdp_on(dut, DUT_IF)?.is_none())
        })
        .context("dut0 kept an XDP program after its configuration was removed")
    }
}

impl Drop for Applied<'_> {
    fn drop(&mut self) {
        let _ = self.undo();
    }
}

/// A private bpffs for libxdp (xdp-filter), so it never touches /sys/fs/bpf.
pub struct XdpFilterEnv {
    dir: PathBuf,
}

impl XdpFilterEnv {
    pub fn new() -> anyhow::Result<Self> {
        if !sys::have("xdp-filter") {
            bail!("xdp-filter is not installed (Debian package xdp-tools)");
        }
        let dir = std::env::temp_dir().join(crate::netns::unique_name("wfb-bpffs"));
        fs::create_dir_all(&dir)?;
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()?;
        if !status.success() {
            let _ = fs::remove_dir(&dir);
            bail!("mounting a private bpffs on {} failed", dir.display());
        }
        Ok(Self { dir })
    }

    /// Unmounts and removes private bpffs mounts that a killed run left behind.
    pub fn sweep_stale() {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = crate::netns::pid_in_name(&name, "wfb-bpffs") else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let _ = std::process::Command::new("umount")
                .arg(entry.path())
                .status();
            let _ = fs::remove_dir(entry.path());
        }
    }

    fn command(&self, ns: &Netns) -> std::process::Command {
        let mut command = ns.command("xdp-filter");
        command.env("LIBXDP_BPFFS", &self.dir);
        command
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for XdpFilterEnv {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
        let _ = fs::remove_dir(&self.dir);
    }
}

const NFT_INGRESS_SPORT53: &str = r#"
table netdev bench {
    chain ingress {
        type filter hook ingress device "dut0" priority 0; policy accept;
        udp sport 53 drop
    }
}
"#;

const NFT_CT_NEW: &str = r#"
table inet bench {
    chain input {
        type filter hook input priority 0; policy accept;
        ct state established,related accept
        ct state new drop
    }
}
"#;

/// 20 SYNs per second per source, bursts of 40: a home gateway's web server limit.
const NFT_SYN_METER_INGRESS: &str = r#"
table netdev bench {
    set syn_meter {
        type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s;
    }
    chain ingress {
        type filter hook ingress device "dut0" priority 0; policy accept;
        meta protocol ip tcp flags & (syn | ack) == syn update @syn_meter { ip saddr limit rate over 20/second burst 40 packets } drop
    }
}
"#;

const NFT_SYN_METER_INPUT: &str = r#"
table inet bench {
    set syn_meter {
        type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s;
    }
    chain input {
        type filter hook input priority 0; policy accept;
        meta nfproto ipv4 tcp flags & (syn | ack) == syn update @syn_meter { ip saddr limit rate over 20/second burst 40 packets } drop
    }
}
"#;

/// Applies `config` to the DUT.
pub fn apply<'a>(
    pair: &'a Pair,
    config: DutConfig,
    ctl: &'a FilterCtl,
    xdp_filter: Option<&'a XdpFilterEnv>,
) -> anyhow::Result<Applied<'a>> {
    let mut applied = Applied {
        pair,
        config,
        bench_prog: None,
        ctl: None,
        xdp_filter: None,
    };
    let dut = &pair.dut;
    match config {
        DutConfig::None => {}
        DutConfig::XdpDrop | DutConfig::XdpPass | DutConfig::XdpTouch => {
            let program = match config {
                DutConfig::XdpDrop => names::DROP,
                DutConfig::XdpPass => names::PASS,
                _ => names::TOUCH,
            };
            applied.bench_prog = Some(pair::attach_bench_program(
                dut,
                DUT_IF,
                program,
                XdpMode::Driver,
            )?);
        }
        DutConfig::Filter(mode) => {
            let mode = if mode == XdpMode::Skb {
                "skb"
            } else {
                "native"
            };
            applied.ctl = Some(ctl);
            ctl.attach(dut, DUT_IF, Some(mode))?;
        }
        DutConfig::NftIngressSport53 => sys::nft(dut, NFT_INGRESS_SPORT53)?,
        DutConfig::NftCtNew => sys::nft(dut, NFT_CT_NEW)?,
        DutConfig::NftSynMeterIngress => sys::nft(dut, NFT_SYN_METER_INGRESS)?,
        DutConfig::NftSynMeterInput => sys::nft(dut, NFT_SYN_METER_INPUT)?,
        DutConfig::XdpFilter(mode) => {
            let env = xdp_filter.ok_or_else(|| anyhow!("xdp-filter is not available"))?;
            applied.xdp_filter = Some(env);
            let mode = if mode == XdpMode::Skb {
                "skb"
            } else {
                "native"
            };
            for args in [
                vec!["load", "--mode", mode, DUT_IF],
                vec!["port", "--mode", "src", "--proto", "udp", "53"],
            ] {
                crate::netns::run(env.command(dut).args(&args))?;
            }
        }
    }
    Ok(applied)
}

/// CPU used by processes other than ours and the two NAPI threads, as a share
/// of the whole machine, between two readings.
pub struct Others {
    ticks: sys::CpuTicks,
    process_ns: u64,
    napi_ns: u64,
    wall_ns: u64,
}

impl Others {
    pub fn start(napi: &[u32]) -> anyhow::Result<Self> {
        Ok(Self {
            ticks: sys::CpuTicks::read()?,
            process_ns: sys::process_cpu_ns(),
            napi_ns: napi
                .iter()
                .map(|pid| sys::schedstat_ns(*pid).unwrap_or(0))
                .sum(),
            wall_ns: sys::monotonic_ns(),
        })
    }

    pub fn share(&self, napi: &[u32]) -> anyhow::Result<f64> {
        let now = Self::start(napi)?;
        let busy_ns = (now.ticks.busy - self.ticks.busy) * sys::tick_ns();
        let ours = (now.process_ns - self.process_ns) + (now.napi_ns - self.napi_ns);
        let capacity = (now.wall_ns - self.wall_ns) as f64 * sys::cpu_count() as f64;
        Ok((busy_ns.saturating_sub(ours) as f64 / capacity).max(0.0))
    }
}

/// Waits up to `patience` for the machine to be quiet (others below `limit`).
pub fn wait_quiet(napi: &[u32], limit: f64, patience: Duration) -> anyhow::Result<f64> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let start = Others::start(napi)?;
        thread::sleep(Duration::from_millis(300));
        let share = start.share(napi)?;
        if share <= limit || std::time::Instant::now() >= deadline {
            return Ok(share);
        }
        super::check_interrupted()?;
    }
}

/// One measurement: `kind` at the configured rate into the DUT as it is now.
pub fn measure(
    pair: &Pair,
    generator: &mut Generator,
    kind: FloodKind,
    opts: &Options,
    duration: Duration,
) -> anyhow::Result<(GenRun, u64, u64, f64)> {
    let v6 = false;
    let mut flood = traffic::flood(
        kind,
        Target {
            src_mac: pair.gen_mac,
            dst_mac: pair.dut_mac,
            dst: Pair::dut_addr(v6),
            sources: opts.sources.unwrap_or_else(|| sources(kind)),
        },
    );
    if opts.fixed_fields {
        flood.config.port_off = 0;
        flood.config.rand_off = 0;
    }
    generator::pace(&mut flood.config, opts.rate_pps, opts.burst);
    generator.self_test(&flood.frame, flood.config)?;
    pair.pin_napi()?;
    let napi = [pair.dut_napi, pair.gen_napi];
    let stats_before = sys::ethtool_stats(&pair.dut, DUT_IF)?;
    let cpu_before = sys::schedstat_ns(pair.dut_napi)?;
    let others = Others::start(&napi)?;
    let placement = Placement {
        cpu: pair.cpus.generator,
        rt_priority: if opts.rt_generator {
            GENERATOR_PRIORITY
        } else {
            0
        },
    };
    let (run, ()) = generator.run(
        &pair.sender,
        pair::GEN_IF,
        &flood.frame,
        duration,
        placement,
        || {},
    )?;
    // Let the DUT drain its ring.
    thread::sleep(Duration::from_millis(20));
    let cpu_after = sys::schedstat_ns(pair.dut_napi)?;
    let others_share = others.share(&napi)?;
    let stats_after = sys::ethtool_stats(&pair.dut, DUT_IF)?;
    let packets = sys::stat(&stats_after, "rx_queue_0_xdp_packets")
        - sys::stat(&stats_before, "rx_queue_0_xdp_packets");
    Ok((run, packets, cpu_after - cpu_before, others_share))
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
            .into_iter()
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

fn all_configs() -> Vec<DutConfig> {
    use DutConfig::*;
    vec![
        None,
        XdpDrop,
        XdpPass,
        XdpTouch,
        Filter(XdpMode::Driver),
        Filter(XdpMode::Skb),
        NftIngressSport53,
        NftCtNew,
        NftSynMeterIngress,
        NftSynMeterInput,
        XdpFilter(XdpMode::Driver),
        XdpFilter(XdpMode::Skb),
    ]
}

/// Runs the whole matrix: `opts.repeats` rounds, each round every flood and
/// configuration once, in the same order (A B C A B C ...).
pub fn run(
    opts: &Options,
    syn_ready: bool,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Sample>> {
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
    let mut matrix = matrix(syn_ready);
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
                super::check_interrupted()?;
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
                    let waited = std::time::Instant::now();
                    wait_quiet(&napi, opts.max_others, opts.patience.min(budget_left))?;
                    busy_spent += waited.elapsed().saturating_sub(Duration::from_millis(300));
                    let measured = std::time::Instant::now();
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
