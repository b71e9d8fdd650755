//! Run-time settings written by filter-ctl (the CONFIG and WATCHED_PORTS
//! maps; what they mean is in filter_common::config and ::ports), and the
//! programs' clock.

use aya_ebpf::{macros::map, maps::Array};
use filter_common::{Config, PortClass, ServiceClass, WatchedPorts};

use crate::kernel;

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Two elements: the live one (Config::ports_slot) and the one filter-ctl
/// writes a change into before it switches.
#[map]
static WATCHED_PORTS: Array<WatchedPorts> = Array::with_max_entries(WatchedPorts::SLOTS, 0);

/// The live config, read in place (a copy would cost more than the fields
/// a packet needs); the programs never write it. Always there: an array's
/// elements exist from its creation, so `None` only satisfies the verifier.
#[inline(always)]
pub fn get() -> Option<&'static Config> {
    CONFIG.get(0)
}

/// How UDP `port` is watched.
#[inline(always)]
pub fn port_class(port: u16) -> PortClass {
    let slot = get().map_or(0, Config::ports_slot);
    let port = bounded_port(port);
    WATCHED_PORTS
        .get(slot)
        .map_or(PortClass::Unwatched, |ports| ports.class(port))
}

/// The roles of an inbound UDP packet's ports, from one look-up in the live
/// copy: how its source port is watched (is it a response the reflection
/// defence checks?) and what its destination port serves (is it a request
/// to a limited service?).
#[inline(always)]
pub fn udp_roles(src_port: u16, dst_port: u16) -> (PortClass, ServiceClass) {
    let slot = get().map_or(0, Config::ports_slot);
    let (src_port, dst_port) = (bounded_port(src_port), bounded_port(dst_port));
    WATCHED_PORTS
        .get(slot)
        .map_or((PortClass::Unwatched, ServiceClass::None), |ports| {
            (ports.class(src_port), ports.service(dst_port))
        })
}

/// `port`, fit to index a 64 KiB per-port table on every verifier. Older
/// verifiers (Linux 6.1) know nothing of a byte swap's result, so a port
/// swapped from network order would index the table with an unbounded value,
/// which they refuse. A 2-byte load is bounded to 0..=65535 for every
/// verifier; LLVM would drop a mere `& 0xffff`.
#[inline(always)]
pub fn bounded_port(port: u16) -> u16 {
    kernel::through_memory(port)
}

/// The clock of every deadline in the maps: the coarse monotonic clock,
/// which filter-ctl reads as CLOCK_MONOTONIC_COARSE (bpf_ktime_get_ns costs
/// twice as much); its one-tick resolution is far finer than any lifetime or
/// rate. Still a helper call, ~15 ns in the benchmark (a third of a passed
/// packet's cost): read only by a rule that needs it, once per packet, never
/// up front.
#[inline(always)]
pub fn now_ns() -> u64 {
    kernel::coarse_ns()
}
