//! Per-reason packet and byte counters, one slot per CPU so the hot path
//! never contends on a shared cache line. Slots `Reason::COUNT..` hold what
//! monitor mode would have dropped.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use filter_common::{Counter, Reason};

#[map]
static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(2 * Reason::COUNT, 0);

#[inline(always)]
pub fn count(reason: Reason, bytes: u64) {
    add(reason.index(), bytes);
}

/// Counts a drop (or an XDP reply) that monitor mode turned into a pass.
#[inline(always)]
pub fn count_would_drop(reason: Reason, bytes: u64) {
    add(Reason::COUNT + reason.index(), bytes);
}

/// How many packets this CPU has counted under `reason` (`would_drop`: as
/// monitor mode's would-drops), the one just counted included.
#[inline(always)]
pub fn seen(reason: Reason, would_drop: bool) -> Option<u64> {
    let index = if would_drop {
        Reason::COUNT + reason.index()
    } else {
        reason.index()
    };
    // SAFETY: this CPU's slot, read by value.
    STATS
        .get_ptr(index)
        .map(|counter| unsafe { (*counter).packets })
}

#[inline(always)]
fn add(index: u32, bytes: u64) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: the slot belongs to this CPU and stays valid for the map's life;
        // a program runs to completion on one CPU without preemption by itself.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}
