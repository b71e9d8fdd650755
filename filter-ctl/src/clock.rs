//! The clock of every deadline in the maps (list expiry, solicited entries,
//! SYN buckets): the kernel's coarse monotonic clock. The programs read it
//! with bpf_ktime_get_coarse_ns, which costs a few nanoseconds where the
//! precise clock costs about thirty; its resolution is one tick (1-10 ms),
//! far finer than any lifetime or rate it measures.

/// Now on the programs' clock, in nanoseconds (CLOCK_MONOTONIC_COARSE).
pub fn now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
