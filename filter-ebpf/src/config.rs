//! Run-time settings written by filter-ctl (the CONFIG and WATCHED_PORTS
//! maps; what they mean is in filter_common::config and ::ports), and the
//! programs' clock.

use aya_ebpf::{macros::map, maps::Array};
use filter_common::{Config, PortClass, WatchedPorts};

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map]
static WATCHED_PORTS: Array<WatchedPorts> = Array::with_max_entries(1, 0);

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
    // Older verifiers (Linux 6.1) know nothing of a byte swap's result, so a
    // port swapped from network order would index the 64 KiB table with an
    // unbounded value, which they refuse. A 2-byte load is bounded to
    // 0..=65535 for every verifier; LLVM would drop a mere `& 0xffff`.
    // SAFETY: reads a local that lives for the whole call.
    let port = unsafe { core::ptr::read_volatile(&port) };
    WATCHED_PORTS
        .get(0)
        .map_or(PortClass::Unwatched, |ports| ports.class(port))
}

/// The clock of every deadline in the maps: the coarse monotonic clock,
/// which filter-ctl reads as CLOCK_MONOTONIC_COARSE. It costs a few ns where
/// bpf_ktime_get_ns costs ~30 (half of this program's run time when it read
/// that); its one-tick resolution is far finer than any lifetime or rate.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments or side effects.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_coarse_ns() }
}
