//! What an attack costs, measured independently of the filter: the
//! gateway's conntrack table, half-open connections at a server (`ss`),
//! bytes sent to victims on the wire (nftables at the WAN link's far end),
//! SYNs per source that reach the gateway's stack (nftables after XDP), and
//! frames lost on the way to `wan0` (link statistics). [`Peak`] samples any
//! of them in the background.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::Context as _;
use std::process::Command;

use super::{INET_IF, LAN_IF, StackCounters, Topology, WAN_IF};
use crate::process;

/// Entries in the conntrack table of the namespace named `ns` now (by
/// name, so that a [`Peak`] sampler can own it).
pub fn conntrack_count(ns: &str) -> anyhow::Result<u64> {
    let text = run_in(ns, &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])?;
    text.trim()
        .parse()
        .with_context(|| format!("nf_conntrack_count: {text:?}"))
}

/// Half-open connections (SYN-RECV: the server answered a SYN and waits for
/// the ACK) to local TCP port `port` in the namespace named `ns`, as `ss`
/// lists them.
pub fn half_open(ns: &str, port: u16) -> anyhow::Result<u64> {
    let filter = format!("sport = :{port}");
    let text = run_in(ns, &["ss", "-Htn", "state", "syn-recv", &filter])?;
    Ok(text.lines().filter(|line| !line.trim().is_empty()).count() as u64)
}

fn run_in(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    process::run(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

/// The largest value `read` returned, sampled every `every` on a thread of
/// its own until [`Peak::stop`] (or drop). A read that fails is skipped.
pub struct Peak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Peak {
    pub fn sample(
        every: Duration,
        mut read: impl FnMut() -> anyhow::Result<u64> + Send + 'static,
    ) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(value) = read() {
                        peak.fetch_max(value, Ordering::Relaxed);
                    }
                    thread::sleep(every);
                }
            }
        });
        Self {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak.
    pub fn stop(mut self) -> u64 {
        self.finish();
        self.peak.load(Ordering::Relaxed)
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Counts what is sent to `victims` across the WAN link, at its far end
/// (the internet's `isp0`, ingress): the gateway stack's answers and the
/// filter's XDP_TX replies alike. Table `victims_wire`, counter `to_victims`.
pub fn count_to_victims(topo: &Topology, victims: &[IpAddr]) -> anyhow::Result<()> {
    // One rule per family, the victims in a set (an attack may spoof a
    // whole prefix).
    let mut rules = String::new();
    for (family, v4) in [("ip", true), ("ip6", false)] {
        let set: Vec<String> = victims
            .iter()
            .filter(|victim| victim.is_ipv4() == v4)
            .map(ToString::to_string)
            .collect();
        if !set.is_empty() {
            rules.push_str(&format!(
                "        {family} daddr {{ {} }} counter name \"to_victims\"\n",
                set.join(", ")
            ));
        }
    }
    topo.internet.nft(&format!(
        "table netdev victims_wire {{\n    counter to_victims {{ }}\n    chain wan_link {{\n        \
         type filter hook ingress device \"{INET_IF}\" priority 0; policy accept;\n{rules}    }}\n}}\n"
    ))
}

/// (packets, bytes) counted by [`count_to_victims`] so far.
pub fn to_victims(topo: &Topology) -> anyhow::Result<(u64, u64)> {
    let counters = StackCounters::parse(&topo.internet.run([
        "nft",
        "list",
        "counters",
        "table",
        "netdev",
        "victims_wire",
    ])?)?;
    let (_, packets, bytes) = counters
        .counters
        .iter()
        .find(|(name, _, _)| name == "to_victims")
        .context("no counter to_victims")?;
    Ok((*packets, *bytes))
}

/// Counters of SYNs (SYN without ACK) that reach the gateway's stack on
/// `wan0` (after XDP), one per named source address, in table `table`.
pub fn count_syns_at_gateway(
    topo: &Topology,
    table: &str,
    sources: &[(&str, IpAddr)],
) -> anyhow::Result<()> {
    let counters: String = sources
        .iter()
        .map(|(name, _)| format!("    counter {name} {{ }}\n"))
        .collect();
    let rules: String = sources
        .iter()
        .map(|(name, ip)| {
            let family = if ip.is_ipv4() { "ip" } else { "ip6" };
            format!(
                "        {family} saddr {ip} tcp flags & (syn | ack) == syn counter name \"{name}\"\n"
            )
        })
        .collect();
    topo.gateway.nft(&format!(
        "table netdev {table} {{\n{counters}    chain wan_ingress {{\n        \
         type filter hook ingress device \"{WAN_IF}\" priority -400; policy accept;\n\
         {rules}    }}\n}}\n"
    ))
}

/// Frames dropped on the way from the first WAN host (the attacker) to
/// `wan0`, by the queues of its link, the bridge and the WAN link: they
/// never reached XDP.
pub fn path_drops(topo: &Topology) -> anyhow::Result<u64> {
    let mut drops = 0;
    for (ns, iface) in [
        (&topo.wan_hosts[0], LAN_IF),
        (&topo.internet, "h0"),
        (&topo.internet, INET_IF),
        (&topo.gateway, WAN_IF),
    ] {
        for what in ["tx_dropped", "rx_dropped"] {
            drops += ns.link_stat(iface, what)?;
        }
    }
    Ok(drops)
}
