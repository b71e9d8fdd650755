//! Parts 3 to 5 run in the lab's topology (harness::lab), prepared here for
//! floods: the generator runs in the internet namespace and transmits out of
//! `isp0`, `wan0`'s peer, so the flood arrives on `wan0` exactly like the
//! resolver's answers do. An XDP program on `isp0` drops the gateway's
//! replies to the spoofed sources (and passes the rest to the internet's
//! bridge). `wan0`'s NAPI thread is pinned and real-time like the DUT's in
//! part 2, and its CPU time is the cost. The lab's DNS server (dnsmasq)
//! answers the gateway's lookups.

use std::{net::IpAddr, time::Duration};

use aya::{Ebpf, programs::XdpMode};
use harness::{
    ctl::FilterCtl,
    kernel,
    lab::{INET_IF, Topology, WAN_IF, addr},
    names::BENCH_PREFIX,
    netns::{Mac, Netns},
    process::Background,
    servers::real,
};

use crate::{
    generator::{self, Generator, Placement},
    object::names,
    options::Options,
    pair::{self, Cpus},
    sys::{self, NapiMeter},
    traffic::{self, FloodKind, Target},
};

/// The lab, prepared for floods.
pub struct LabBench {
    pub topology: Topology,
    pub ctl: FilterCtl,
    pub wan_napi: u32,
    pub isp_napi: u32,
    pub wan_mac: Mac,
    pub isp_mac: Mac,
    pub cpus: Cpus,
    _sink: Ebpf,
    _resolver: Background,
}

impl LabBench {
    pub fn build(opts: &Options) -> anyhow::Result<Self> {
        let topology = Topology::build(BENCH_PREFIX)?;
        let (inet, gw) = (&topology.internet, &topology.gateway);
        // NAPI on wan0 also without an XDP program (the "no filter" runs).
        sys::ethtool_features(gw, WAN_IF, &["gro", "on"])?;
        // Without TSO on the sending side, veth hands every skb to wan0's NAPI
        // (GRO) rather than straight to the stack, with or without XDP: the
        // path a real NIC takes, the same in every configuration of part 4.
        sys::ethtool_features(inet, INET_IF, &["tso", "off", "gso", "off"])?;
        // The lab's counting chain on wan0 would add its cost to every packet
        // the stack sees; the benchmark does not need it.
        gw.nft("delete table netdev lab_count\n")?;
        let sink = pair::attach_bench_program(inet, INET_IF, names::SINK, XdpMode::Driver)?;
        let wan_napi = sys::threaded_napi(gw, WAN_IF)?;
        let isp_napi = sys::threaded_napi(inet, INET_IF)?;
        let wan_mac = gw.mac(WAN_IF)?;
        let isp_mac = inet.mac(INET_IF)?;
        // The resolver of part 3's lookups, answering with no log (it is busy).
        let resolver = real::dns_server(inet, false)?;
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

    /// wan0 is the DUT, isp0 the generator's side: see [`pair::pin_napi`].
    pub fn pin_napi(&self) -> anyhow::Result<()> {
        pair::pin_napi(self.cpus, self.wan_napi, self.isp_napi)
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
        kernel::wait_no_xdp(self.gateway(), WAN_IF)
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
        let meter = NapiMeter::start(self.gateway(), WAN_IF, self.wan_napi)?;
        let placement = lab_placement(self.cpus);
        let run = generator.flood(
            &self.topology.internet,
            INET_IF,
            &flood.frame,
            duration,
            placement,
        )?;
        let (packets, cpu) = meter.finish()?;
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
pub fn lab_placement(cpus: Cpus) -> Placement {
    Placement {
        cpu: cpus.generator,
        rt_priority: 0,
    }
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
/// What a flood from the internet side cost wan0.
pub struct FloodCost {
    pub sent: u64,
    pub offered_pps: f64,
    /// Frames wan0's NAPI took from its ring.
    pub wan_packets: u64,
    pub wan_cpu_ns: u64,
    pub ns_per_packet: f64,
    pub seconds: f64,
}
