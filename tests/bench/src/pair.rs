//! The flood bench's topology: two namespaces joined by one veth pair.
//!
//! ```text
//!  <stem>-gen                                   <stem>-dut (device under test)
//!  gen0 192.0.2.1/24 2001:db8:b::1/64  ══  dut0 192.0.2.2/24 2001:db8:b::2/64
//!  generator (live frames, CPU 0)           the configuration under test on
//!  XDP_DROP swallows the DUT's replies      dut0's ingress; NAPI thread on CPU 1
//! ```
//!
//! - dut0 has GRO on (a veth has no NAPI otherwise, and then cannot receive
//!   XDP frames) and threaded NAPI; its NAPI thread is pinned to the DUT CPU
//!   and SCHED_FIFO, so builds elsewhere on the machine cannot steal its time,
//!   and its CPU time (/proc/PID/schedstat) is the DUT's cost.
//! - gen0 has an XDP_DROP program, so the DUT's replies (ICMP errors, SYN-ACKs,
//!   RSTs) cost nothing there; its NAPI thread is threaded too and pinned to
//!   the generator's CPU, so that work never lands on the DUT's thread.
//! - The DUT routes the spoofed ranges via gen0 with a permanent neighbour
//!   entry: no ARP or neighbour discovery for a million sources.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use harness::{
    names::{BENCH_PREFIX, unique_name},
    netns::{self, Mac, Netns},
};

use crate::{object, sys};

pub const GEN_IF: &str = "gen0";
pub const DUT_IF: &str = "dut0";
pub const GEN4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const DUT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const GEN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);
pub const DUT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 2);

/// CPUs and real-time priorities of the measurement.
#[derive(Clone, Copy, Debug)]
pub struct Cpus {
    pub generator: usize,
    pub dut: usize,
}

/// SCHED_FIFO priorities: the generator's NAPI thread (replies) must preempt
/// the spinning generator on the same CPU.
const DUT_NAPI_PRIORITY: i32 = 50;
const GEN_NAPI_PRIORITY: i32 = 60;
pub const GENERATOR_PRIORITY: i32 = 40;

/// Pins the DUT's NAPI thread to the DUT's CPU and the generator side's to
/// the generator's, both SCHED_FIFO (again before every run: cheap, and safe
/// if the kernel recreated a thread).
pub fn pin_napi(cpus: Cpus, dut_napi: u32, gen_napi: u32) -> anyhow::Result<()> {
    sys::pin(dut_napi, cpus.dut)?;
    sys::set_fifo(dut_napi, DUT_NAPI_PRIORITY)?;
    sys::pin(gen_napi, cpus.generator)?;
    sys::set_fifo(gen_napi, GEN_NAPI_PRIORITY)
}

pub struct Pair {
    pub sender: Netns,
    pub dut: Netns,
    pub gen_mac: Mac,
    pub dut_mac: Mac,
    pub dut_napi: u32,
    pub gen_napi: u32,
    pub cpus: Cpus,
    /// The XDP_DROP program on gen0 (detached when dropped).
    _sink: Ebpf,
}

/// Loads `program` of the bench object and attaches it to `iface` in `ns`.
pub fn attach_bench_program(
    ns: &Netns,
    iface: &str,
    program: &str,
    mode: XdpMode,
) -> anyhow::Result<Ebpf> {
    let mut ebpf = object::load()?;
    let xdp: &mut Xdp = ebpf
        .program_mut(program)
        .ok_or_else(|| anyhow!("no {program} in the bench object"))?
        .try_into()?;
    xdp.load()?;
    let iface_c = std::ffi::CString::new(iface)?;
    ns.enter(|| {
        xdp.attach(iface_c.as_c_str(), mode)
            .with_context(|| format!("attaching {program} to {iface}"))
    })?;
    Ok(ebpf)
}

impl Pair {
    pub fn build(cpus: Cpus) -> anyhow::Result<Self> {
        let stem = unique_name(BENCH_PREFIX);
        let sender = Netns::create(&format!("{stem}-gen"))?;
        let dut = Netns::create(&format!("{stem}-dut"))?;
        netns::veth(&sender, GEN_IF, &dut, DUT_IF)?;
        sender.add_addr(GEN_IF, &format!("{GEN4}/24"))?;
        sender.add_addr(GEN_IF, &format!("{GEN6}/64"))?;
        dut.add_addr(DUT_IF, &format!("{DUT4}/24"))?;
        dut.add_addr(DUT_IF, &format!("{DUT6}/64"))?;
        sys::ethtool_features(&sender, GEN_IF, &["tso", "off", "gso", "off", "gro", "on"])?;
        sys::ethtool_features(&dut, DUT_IF, &["gro", "on"])?;
        sender.up(GEN_IF)?;
        dut.up(DUT_IF)?;
        let (gen_mac, dut_mac) = (sender.mac(GEN_IF)?, dut.mac(DUT_IF)?);
        dut.add_neighbour(DUT_IF, GEN4.into(), gen_mac)?;
        dut.add_neighbour(DUT_IF, GEN6.into(), gen_mac)?;
        sender.add_neighbour(GEN_IF, DUT4.into(), dut_mac)?;
        sender.add_neighbour(GEN_IF, DUT6.into(), dut_mac)?;
        // Replies to the spoofed sources go back to the generator.
        dut.ip([
            "-4",
            "route",
            "add",
            "198.18.0.0/15",
            "via",
            &GEN4.to_string(),
        ])?;
        dut.ip([
            "-6",
            "route",
            "add",
            "2001:db8:8000::/33",
            "via",
            &GEN6.to_string(),
        ])?;
        let sink = attach_bench_program(&sender, GEN_IF, object::names::DROP, XdpMode::Driver)?;

        let dut_napi = sys::threaded_napi(&dut, DUT_IF)?;
        let gen_napi = sys::threaded_napi(&sender, GEN_IF)?;
        let pair = Self {
            sender,
            dut,
            gen_mac,
            dut_mac,
            dut_napi,
            gen_napi,
            cpus,
            _sink: sink,
        };
        pair.pin_napi()?;
        Ok(pair)
    }

    /// See [`pin_napi`].
    pub fn pin_napi(&self) -> anyhow::Result<()> {
        pin_napi(self.cpus, self.dut_napi, self.gen_napi)
    }

    pub fn dut_addr(v6: bool) -> IpAddr {
        if v6 { DUT6.into() } else { DUT4.into() }
    }
}
