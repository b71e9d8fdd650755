//! The clock of every deadline in the maps (list expiry, solicited entries,
//! SYN buckets): the kernel's coarse monotonic clock. The programs read it
//! with bpf_ktime_get_coarse_ns, which costs a few nanoseconds where the
//! precise clock costs about thirty; its resolution is one tick (1-10 ms),
//! far finer than any lifetime or rate it measures.

use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

/// Now on the programs' clock, in nanoseconds (CLOCK_MONOTONIC_COARSE).
pub fn now_ns() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE)
        .expect("Linux has CLOCK_MONOTONIC_COARSE since 2.6.32");
    u64::try_from(Duration::from(now).as_nanos()).unwrap_or(u64::MAX)
}
