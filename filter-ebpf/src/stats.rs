//! Per-reason packet and byte counters, one slot per CPU so the hot path
//! never contends on a shared cache line. Slots `Reason::COUNT..` hold what
//! monitor mode would have dropped.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use filter_common::{Counter, Encap, Reason};

use crate::kernel::IndexedCells as _;

#[map]
static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(2 * Reason::COUNT, 0);

#[map]
static TUNNELLED: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(Encap::COUNT * Reason::COUNT, 0);

/// Counts a packet of `bytes` under the reason at index `reason`; returns
/// how many this CPU has counted there, this one included.
#[inline(always)]
pub fn count(reason: u32, bytes: u64) -> u64 {
    add(reason, bytes)
}

/// Counts a drop (or an XDP reply) that monitor mode turned into a pass;
/// returns the count as [`count`] does.
#[inline(always)]
pub fn count_would_drop(reason: u32, bytes: u64) -> u64 {
    add(Reason::COUNT + reason, bytes)
}

/// Counts a packet of `bytes` that came inside a tunnel of `encap`, whose
/// inner packet got the reason at index `reason` (counted in STATS too, by
/// the program's end).
#[inline(always)]
pub fn count_tunnelled(encap: Encap, reason: u32, bytes: u64) {
    add_to(&TUNNELLED, encap.slot(reason), bytes);
}

#[inline(always)]
fn add(index: u32, bytes: u64) -> u64 {
    add_to(&STATS, index, bytes)
}

#[inline(always)]
fn add_to(counters: &PerCpuArray<Counter>, index: u32, bytes: u64) -> u64 {
    // This CPU's slot: a program runs to completion on one CPU without
    // preemption by itself, so nothing else writes it meanwhile.
    let Some(counter) = counters.cell(index) else {
        return 0;
    };
    let Counter {
        packets,
        bytes: total,
    } = counter.get();
    counter.set(Counter {
        packets: packets + 1,
        bytes: total + bytes,
    });
    packets + 1
}
