//! Part 3: a flood from a million distinct spoofed sources (DNS responses,
//! then SYNs) at the gateway's `wan0`, while the gateway keeps doing real DNS
//! lookups (dig) against a real resolver (dnsmasq) on the internet side.
//!
//! The topology is the lab's (tests/src/lab.rs): the generator runs in the
//! internet namespace and transmits out of `isp0`, `wan0`'s peer, so the flood
//! arrives on `wan0` exactly like the resolver's answers do. An XDP program on
//! `isp0` drops the gateway's replies to the spoofed sources (and passes the
//! rest to the internet's bridge). `wan0`'s NAPI thread is pinned and
//! real-time like the DUT's in part 2, and its CPU time is the cost.
//!
//! IPv6 sources: one million distinct /64s of 2001:db8:8000::/33 (IPv4's
//! benchmarking and documentation ranges hold only ~132,000 addresses).

use std::{
    net::IpAddr,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::{Ebpf, programs::XdpMode};
use serde_json::Value;

use super::{
    Options,
    generator::{self, Generator, Placement},
    object::names,
    pair::{self, DUT_NAPI_PRIORITY, GEN_NAPI_PRIORITY},
    stats::Summary,
    sys,
    traffic::{self, FloodKind, Target},
};
use crate::{
    ctl::{FilterCtl, Stats},
    lab::{INET_IF, Topology, WAN_IF, addr},
    netns::{self, Background, Netns},
};

/// The resolver's name and the address it answers for every name under it.
const ZONE: &str = "bench.example";
const ANSWER: &str = "192.0.2.53";

/// The lab, prepared for floods.
pub struct LabBench {
    pub topology: Topology,
    pub ctl: FilterCtl,
    pub wan_napi: u32,
    pub isp_napi: u32,
    pub wan_mac: [u8; 6],
    pub isp_mac: [u8; 6],
    pub cpus: pair::Cpus,
    _sink: Ebpf,
    _resolver: Background,
}

impl LabBench {
    pub fn build(opts: &Options) -> anyhow::Result<Self> {
        let topology = Topology::build(pair::BENCH_PREFIX)?;
        let (inet, gw) = (&topology.internet, &topology.gateway);
        // NAPI on wan0 also without an XDP program (the "no filter" runs).
        sys::sh(gw, &format!("ethtool -K {WAN_IF} gro on"))?;
        // Without TSO on the sending side, veth hands every skb to wan0's NAPI
        // (GRO) rather than straight to the stack, with or without XDP: the
        // path a real NIC takes, the same in every configuration of part 4.
        sys::sh(inet, &format!("ethtool -K {INET_IF} tso off gso off"))?;
        // The lab's counting chain on wan0 would add its cost to every packet
        // the stack sees; the benchmark does not need it.
        sys::nft(gw, "delete table netdev lab_count\n")?;
        let sink = pair::attach_bench_program(inet, INET_IF, names::SINK, XdpMode::Driver)?;
        let wan_napi = sys::threaded_napi(gw, WAN_IF)?;
        let isp_napi = sys::threaded_napi(inet, INET_IF)?;
        let wan_mac = pair::parse_mac(&gw.mac(WAN_IF)?)?;
        let isp_mac = pair::parse_mac(&inet.mac(INET_IF)?)?;
        let resolver = inet.spawn(
            "dnsmasq",
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--pid-file",
                "--bind-interfaces",
                &format!("--listen-address={}", addr::SERVER4),
                "--port=53",
                "--cache-size=0",
                &format!("--address=/{ZONE}/{ANSWER}"),
            ],
        )?;
        inet.wait_listening(netns::Proto::Udp, 53, Duration::from_secs(5))?;
        let lab = Self {
            ctl: FilterCtl::new()?,
            topology,
            wan_napi,
            isp_napi,
            wan_mac,
            isp_mac,
            cpus: opts.cpus,
            _sink: sink,
            _resolver: resolver,
        };
        lab.pin_napi()?;
        Ok(lab)
    }

    pub fn pin_napi(&self) -> anyhow::Result<()> {
        sys::pin(self.wan_napi, self.cpus.dut)?;
        sys::set_fifo(self.wan_napi, DUT_NAPI_PRIORITY)?;
        sys::pin(self.isp_napi, self.cpus.generator)?;
        sys::set_fifo(self.isp_napi, GEN_NAPI_PRIORITY)?;
        Ok(())
    }

    pub fn gateway(&self) -> &Netns {
        &self.topology.gateway
    }

    pub fn attach(&self) -> anyhow::Result<()> {
        self.ctl
            .attach(self.gateway(), WAN_IF, Some("native"))
            .map(drop)
    }

    pub fn detach(&self) -> anyhow::Result<()> {
        self.ctl.detach(self.gateway(), WAN_IF)?;
        wait_no_xdp(self.gateway())
    }

    /// A flood of `kind` at the gateway's IPv6 address from `sources` sources.
    pub fn flood(
        &self,
        kind: FloodKind,
        sources: u32,
        rate_pps: f64,
        burst: u32,
    ) -> traffic::Flood {
        let mut flood = traffic::flood(
            kind,
            Target {
                src_mac: self.isp_mac,
                dst_mac: self.wan_mac,
                dst: IpAddr::from(addr::GW_WAN6),
                sources,
            },
        );
        generator::pace(&mut flood.config, rate_pps, burst);
        flood
    }

    /// Sends `flood` for `duration` from the internet side; returns what the
    /// generator did and what wan0's NAPI thread spent on it.
    pub fn send(
        &self,
        generator: &mut Generator,
        flood: &traffic::Flood,
        duration: Duration,
    ) -> anyhow::Result<FloodCost> {
        generator.self_test(&flood.frame, flood.config)?;
        self.pin_napi()?;
        let gw = self.gateway();
        let before = sys::ethtool_stats(gw, WAN_IF)?;
        let cpu_before = sys::schedstat_ns(self.wan_napi)?;
        let placement = lab_placement(self.cpus);
        let (run, ()) = generator.run(
            &self.topology.internet,
            INET_IF,
            &flood.frame,
            duration,
            placement,
            || {},
        )?;
        thread::sleep(Duration::from_millis(20));
        let cpu = sys::schedstat_ns(self.wan_napi)? - cpu_before;
        let after = sys::ethtool_stats(gw, WAN_IF)?;
        let packets = sys::stat(&after, "rx_queue_0_xdp_packets")
            - sys::stat(&before, "rx_queue_0_xdp_packets");
        Ok(FloodCost {
            sent: run.sent,
            offered_pps: run.rate_pps(),
            wan_packets: packets,
            wan_cpu_ns: cpu,
            ns_per_packet: if packets > 0 {
                cpu as f64 / packets as f64
            } else {
                0.0
            },
            seconds: run.seconds,
        })
    }
}

/// The generator in the lab runs with normal scheduling on its CPU: the
/// internet side's real peers (the resolver, the TCP client) share that CPU
/// with it, as other machines would carry them on a real network, and a
/// real-time generator would starve them. Preempted, it sends less (the
/// offered rate is reported), never in catch-up bursts.
fn lab_placement(cpus: pair::Cpus) -> Placement {
    Placement {
        cpu: cpus.generator,
        rt_priority: 0,
    }
}

/// Waits until `wan0` has no XDP program (a link goes a moment after its pin).
fn wait_no_xdp(gateway: &Netns) -> anyhow::Result<()> {
    netns::wait_until(Duration::from_secs(3), Duration::from_millis(10), || {
        Ok(crate::ctl::xdp_on(gateway, WAN_IF)?.is_none())
    })
    .context("wan0 kept an XDP program")
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FloodCost {
    pub sent: u64,
    pub offered_pps: f64,
    /// Frames wan0's NAPI took from its ring.
    pub wan_packets: u64,
    pub wan_cpu_ns: u64,
    pub ns_per_packet: f64,
    pub seconds: f64,
}

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
        let file = std::env::temp_dir().join(format!("{}.queries", netns::unique_name("wfb")));
        let mut text = String::new();
        let tag = std::process::id();
        for n in 0..BATCH {
            text.push_str(&format!("q{tag}-{n}.{ZONE} A\n"));
        }
        std::fs::write(&file, text)?;
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut command = gateway.command("dig");
        command
            .arg(format!("@{}", addr::SERVER4))
            .args(["+tries=1", "+time=2", "+short", "-f"])
            .arg(&file);
        let thread = thread::spawn({
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            move || -> anyhow::Result<()> {
                let result = (|| {
                    while !stop.load(Ordering::Relaxed) {
                        let out = netns::output(&mut command)?;
                        let text = String::from_utf8_lossy(&out.stdout);
                        let answered = count_answers(&text, ANSWER).min(BATCH);
                        ok.fetch_add(answered as u64, Ordering::Relaxed);
                        failed.fetch_add((BATCH - answered) as u64, Ordering::Relaxed);
                    }
                    Ok(())
                })();
                let _ = std::fs::remove_file(&file);
                result
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

/// Map fill levels from `filter-ctl status --json`.
pub fn map_fill(ctl: &FilterCtl, ns: &Netns) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let status = ctl.status(ns, Some(WAN_IF))?;
    let maps = status
        .first()
        .and_then(|s| s.get("maps"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(maps
        .iter()
        .map(|m| {
            (
                m.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned(),
                m.get("entries").and_then(Value::as_u64).unwrap_or(0),
                m.get("max_entries").and_then(Value::as_u64).unwrap_or(0),
            )
        })
        .collect())
}

pub const SCALE_SOURCES: u32 = 1_000_000;

pub fn run(
    lab: &LabBench,
    generator: &mut Generator,
    opts: &Options,
    syn_ready: bool,
    notes: &mut Vec<String>,
) -> anyhow::Result<ScaleResults> {
    lab.attach()?;
    let gw = lab.gateway();
    // The resolver must answer before the floods start.
    let probe = netns::run(
        gw.command("dig")
            .arg(format!("@{}", addr::SERVER4))
            .args(["+tries=3", "+time=1", "+short"])
            .arg(format!("probe.{ZONE}")),
    )?;
    if count_answers(&probe, ANSWER) != 1 {
        bail!("the resolver in the lab does not answer: {probe:?}");
    }
    if !syn_ready {
        notes.push(
            "state scale: this build has no SYN defence, so the SYN phase measures SYNs \
             passing to the gateway's stack"
                .into(),
        );
    }
    let lookups = Lookups::start(gw)?;
    let mut phases = Vec::new();
    let duration = opts.duration.max(Duration::from_secs(2));
    for flood in [None, Some(FloodKind::Dns), Some(FloodKind::Syn)] {
        super::check_interrupted()?;
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
    wait_no_xdp(gw)?;
    Ok(ScaleResults {
        rate_pps: opts.scale_rate_pps,
        phases,
    })
}

fn moved(delta: &Stats) -> Vec<(String, u64)> {
    delta
        .nonzero()
        .into_iter()
        .map(|(reason, packets, _)| (reason.to_owned(), packets))
        .collect()
}

/// What sits on `wan0` in part 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WanConfig {
    None,
    /// `return XDP_PASS`: what any native XDP program costs on this path.
    XdpPass,
    Filter,
}

impl WanConfig {
    pub fn name(self) -> &'static str {
        match self {
            WanConfig::None => "no XDP program",
            WanConfig::XdpPass => "XDP_PASS floor",
            WanConfig::Filter => "this filter",
        }
    }
}

/// Part 4: TCP request/response over `wan0` to a server in the gateway, with
/// and without the flood, with and without the filter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LegitRow {
    pub config: WanConfig,
    pub flood: bool,
    /// Transactions per second.
    pub rate: Summary,
    pub errors: usize,
}

const RR_PORT: u16 = 8080;
const RR_SIZE: usize = 64;

/// Request/response transactions on one connection for `duration`.
fn tcp_rr(client: &Netns, duration: Duration) -> anyhow::Result<f64> {
    use std::io::{Read as _, Write as _};
    let server: std::net::SocketAddr = (addr::GW_WAN4, RR_PORT).into();
    let mut stream = client.tcp_connect(server, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    let request = [0x42u8; RR_SIZE];
    let mut reply = [0u8; RR_SIZE];
    let start = std::time::Instant::now();
    let mut done = 0u64;
    while start.elapsed() < duration {
        stream.write_all(&request)?;
        stream.read_exact(&mut reply)?;
        done += 1;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

pub fn legit(
    lab: &LabBench,
    generator: &mut Generator,
    opts: &Options,
) -> anyhow::Result<Vec<LegitRow>> {
    let _server = netns::TcpEchoServer::start(lab.gateway(), (addr::GW_WAN4, RR_PORT).into())?;
    let mut combos = Vec::new();
    for config in [WanConfig::None, WanConfig::XdpPass, WanConfig::Filter] {
        for flood in [false, true] {
            combos.push((config, flood));
        }
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); combos.len()];
    let mut errors = vec![0usize; combos.len()];
    let flood = lab.flood(FloodKind::Dns, 65536, opts.scale_rate_pps, opts.burst);
    let internet = &lab.topology.internet;
    // Three rounds are enough to see the pattern; the time goes to part 2.
    for _round in 0..opts.repeats.min(3) {
        for (i, &(config, with_flood)) in combos.iter().enumerate() {
            super::check_interrupted()?;
            let floor_prog = match config {
                WanConfig::None => None,
                WanConfig::XdpPass => Some(pair::attach_bench_program(
                    lab.gateway(),
                    WAN_IF,
                    names::PASS,
                    XdpMode::Driver,
                )?),
                WanConfig::Filter => {
                    lab.attach()?;
                    None
                }
            };
            let result = if with_flood {
                // The client runs while the generator floods.
                generator.configure(flood.config)?;
                lab.pin_napi()?;
                let placement = lab_placement(lab.cpus);
                let rr_time = opts.duration.min(Duration::from_secs(2));
                let (_, rate) = generator.run(
                    internet,
                    INET_IF,
                    &flood.frame,
                    rr_time + Duration::from_millis(300),
                    placement,
                    || {
                        thread::sleep(Duration::from_millis(150));
                        tcp_rr(internet, rr_time)
                    },
                )?;
                rate
            } else {
                tcp_rr(internet, opts.duration.min(Duration::from_secs(2)))
            };
            match result {
                Ok(rate) => rates[i].push(rate),
                Err(err) => {
                    errors[i] += 1;
                    rates[i].push(0.0);
                    eprintln!("bench: legit traffic failed: {err:#}");
                }
            }
            eprintln!(
                "bench: legit {:<16} flood {:<3} {:>9.0} transactions/s",
                config.name(),
                if with_flood { "on" } else { "off" },
                rates[i].last().copied().unwrap_or(0.0)
            );
            if config == WanConfig::Filter {
                lab.detach()?;
            }
            drop(floor_prog);
            wait_no_xdp(lab.gateway())?;
        }
    }
    Ok(combos
        .iter()
        .enumerate()
        .map(|(i, &(config, flood))| LegitRow {
            config,
            flood,
            rate: Summary::of(rates[i].iter().copied()),
            errors: errors[i],
        })
        .collect())
}

/// Part 5: kernel memory of the filter's maps and programs at their default
/// sizes (memlock from fdinfo, as bpftool shows it), and filter-ctl's RSS.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MemoryResults {
    /// (map, type, max entries, bytes)
    pub maps: Vec<(String, String, u64, u64)>,
    pub maps_total_bytes: u64,
    /// (program, verified instructions, xlated bytes, jited bytes, memlock bytes)
    pub programs: Vec<(String, u64, u64, u64, u64)>,
    /// filter-ctl `stats --watch 1`: resident and peak resident KiB.
    pub ctl_rss_kib: u64,
    pub ctl_hwm_kib: u64,
}

fn bpftool_json(args: &[&str]) -> anyhow::Result<Value> {
    let out = netns::run(Command::new("bpftool").arg("-j").args(args))?;
    serde_json::from_str(&out).with_context(|| format!("parsing bpftool {args:?}: {out}"))
}

pub fn memory(lab: &LabBench) -> anyhow::Result<MemoryResults> {
    lab.attach()?;
    let gw = lab.gateway();
    let status = lab.ctl.status(gw, Some(WAN_IF))?;
    let status = status.first().cloned().unwrap_or(Value::Null);
    let mut result = MemoryResults::default();
    for m in status
        .get("maps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = m.get("id").and_then(Value::as_u64).unwrap_or(0);
        let info = bpftool_json(&["map", "show", "id", &id.to_string()])?;
        let bytes = info
            .get("bytes_memlock")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        result.maps.push((
            m.get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            info.get("type")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            m.get("max_entries").and_then(Value::as_u64).unwrap_or(0),
            bytes,
        ));
        result.maps_total_bytes += bytes;
    }
    for key in ["xdp_program_id", "egress_program_id"] {
        let Some(id) = status.get(key).and_then(Value::as_u64) else {
            continue;
        };
        let info = bpftool_json(&["prog", "show", "id", &id.to_string()])?;
        let field = |name: &str| info.get(name).and_then(Value::as_u64).unwrap_or(0);
        // bpftool 7.1 does not show the verifier's count; the kernel's info has it.
        let verified = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| u64::from(p.id()) == id)
            .and_then(|p| p.verified_instruction_count())
            .unwrap_or(0);
        result.programs.push((
            info.get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            u64::from(verified),
            field("bytes_xlated"),
            field("bytes_jited"),
            field("bytes_memlock"),
        ));
    }
    // filter-ctl while it watches the counters (`ip netns exec` execs it in place).
    let watch = Background::spawn(
        "filter-ctl stats --watch",
        lab.ctl
            .command(gw, ["stats", "--iface", WAN_IF, "--watch", "1"]),
    )?;
    thread::sleep(Duration::from_millis(2500));
    let status_text = std::fs::read_to_string(format!("/proc/{}/status", watch.pid()))?;
    let kib = |key: &str| {
        status_text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    result.ctl_rss_kib = kib("VmRSS:");
    result.ctl_hwm_kib = kib("VmHWM:");
    drop(watch);
    lab.detach()?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dig_short_answers_are_counted() {
        let text = "192.0.2.53\n;; connection timed out; no servers could be reached\n192.0.2.53\n";
        assert_eq!(count_answers(text, ANSWER), 2);
        assert_eq!(count_answers("", ANSWER), 0);
    }
}
