//! Drop sampling, called from the drop path in main.rs: a few dropped
//! packets per second and reason become [`DropEvent`]s in the `DROP_EVENTS`
//! ring buffer, read by `filter-ctl daemon` or `filter-ctl top`. The rate
//! limiter's arithmetic and the event layout are filter_common::sample.
//!
//! What a drop costs here when it is not sampled: the `sample_rate` field of
//! the config (already in cache) and a test of the reason's per-CPU packet
//! count, which the drop path has just incremented. Only one drop in
//! `sample::OFFER_EVERY` goes on to its reason's limiter slot and the clock
//! (a helper call, which the drop paths that need no clock for their verdict
//! do not make otherwise). Only an admitted drop (at most `sample_rate` per
//! second per reason) reserves ring space and copies the frame's first
//! bytes into it with one helper call; the reader parses them.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use filter_common::{
    Config, DropEvent, Reason,
    sample::{self, COUNT_LOST, COUNT_SAMPLED, COUNT_SLOTS, HEADER_BYTES, RING_BYTES},
};

use crate::{
    config,
    kernel::{self, IndexedCells as _, field},
};

#[map]
static DROP_EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Each drop reason's limiter: a GCRA timestamp, shared by all CPUs (per-CPU
/// limiters would multiply the rate by the CPUs a flood is spread over). A
/// plain store when an event is admitted: two CPUs admitting at the same
/// instant send one event more, which is harmless.
#[map]
static DROP_SAMPLER: Array<u64> = Array::with_max_entries(Reason::COUNT, 0);

#[map]
static DROP_EVENT_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNT_SLOTS, 0);

/// Samples a packet of `len` bytes dropped (or, in monitor mode, passed
/// with `would_drop`) under the reason at index `reason`, the `seen`th this
/// CPU counted there, if it is offered to its reason's limiter and the
/// limiter admits one more event.
#[inline(always)]
pub fn drop(ctx: &XdpContext, reason: u32, seen: u64, len: u64, would_drop: bool, config: &Config) {
    if config.sample_rate == 0 || !sample::is_offered(seen) {
        return;
    }
    crate::wan_sample_offered(
        ctx.ctx,
        reason,
        len,
        u32::from(would_drop),
        config.sample_rate,
    );
}

/// The body of `wan_sample_offered`, the rest of [`drop`] for an offered
/// drop: the limiter and the event. A global function of its own: only
/// offered drops pay the call, and the dispatcher stays short. Returns
/// whether an event was sent.
#[inline(always)]
pub fn offered(ctx: &XdpContext, reason: u32, len: u64, would_drop: bool, rate: u32) -> bool {
    let Some(limiter) = DROP_SAMPLER.cell(reason) else {
        return false;
    };
    // The verdict reads the clock only where a rule needs it; the limiter
    // needs it on every drop offered.
    let now = config::now_ns();
    let Some(next) = sample::admit(limiter.get(), now, rate) else {
        return false;
    };
    limiter.set(next);
    let Some(mut entry) = DROP_EVENTS.reserve::<DropEvent>(0) else {
        count(COUNT_LOST);
        return false;
    };
    let event = kernel::ring_record(&mut entry);
    // min(len, HEADER_BYTES), written so that the verifier sees 1..=HEADER_BYTES
    // (a zero-length copy is refused): for len 1..HEADER_BYTES it is len.
    const MASK: u32 = HEADER_BYTES as u32 - 1;
    const { assert!(HEADER_BYTES.is_power_of_two()) };
    let captured = if len >= HEADER_BYTES as u64 {
        HEADER_BYTES as u32
    } else {
        ((len as u32).wrapping_sub(1) & MASK) + 1
    };
    field!(event, len).set(len as u32);
    field!(event, reason).set(reason as u8);
    field!(event, would_drop).set(u8::from(would_drop));
    let headers = field!(event, headers);
    headers.set([0; HEADER_BYTES]);
    let copied = kernel::xdp_load_bytes(ctx, headers, captured);
    field!(event, captured).set(if copied { captured as u16 } else { 0 });
    entry.submit(0);
    count(COUNT_SAMPLED);
    true
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(counter) = DROP_EVENT_COUNTS.cell(slot) {
        // This CPU's slot.
        counter.update(|count| count + 1);
    }
}
