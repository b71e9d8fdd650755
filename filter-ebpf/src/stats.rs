//! Per-reason packet and byte counters, one slot per CPU so the hot path
//! never contends on a shared cache line. Slots `Reason::COUNT..` hold what
//! monitor mode would have dropped.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use filter_common::{Counter, Reason};

#[map]
static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(2 * Reason::COUNT, 0);

/// Counts a packet under `reason`; returns the reason's packet count on
/// this CPU, this one included (drop sampling offers every Nth drop).
#[inline(always)]
pub fn count(reason: Reason, bytes: u64) -> u64 {
    add(reason.index(), bytes)
}

/// Counts a drop that monitor mode turned into a pass; returns the count
/// like [`count`].
#[inline(always)]
pub fn count_would_drop(reason: Reason, bytes: u64) -> u64 {
    add(Reason::COUNT + reason.index(), bytes)
}

#[inline(always)]
fn add(index: u32, bytes: u64) -> u64 {
    let Some(counter) = STATS.get_ptr_mut(index) else {
        return 0;
    };
    // SAFETY: the slot belongs to this CPU and stays valid for the map's life;
    // a program runs to completion on one CPU without preemption by itself.
    unsafe {
        let packets = (*counter).packets + 1;
        (*counter).packets = packets;
        (*counter).bytes += bytes;
        packets
    }
}
