//! The half-open budgets: unanswered connection attempts per source (IPv4
//! /32, IPv6 /64) and per prefix. syn.rs checks them for every SYN the rate
//! buckets admit and charges them when the SYN passes; ingress/tcp.rs gives
//! the units back when a handshake completes. The counter's arithmetic is
//! filter_common::halfopen, tested on the host.
//!
//! The slots are those of the SYN buckets (the same hashed index into arrays
//! of the same length), so a source's budget costs no hash of its own. Like
//! the SYN buckets they are written by anyone's SYNs, shared by all CPUs and
//! updated with plain stores: two CPUs taking the last unit of one slot at
//! the same instant both pass (one extra half-open connection).

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{
    Config, halfopen,
    syn::{SYN_PREFIX_SLOTS, SYN_SOURCE_SLOTS, SynSource},
};

use crate::{
    kernel::{Deferred, IndexedCells as _},
    packet::{Family, Ip},
};

// Memory-mappable, so that `filter-ctl status` counts the slots in use.
#[map]
static HALFOPEN_SOURCES: Array<u64> = Array::with_max_entries(SYN_SOURCE_SLOTS, BPF_F_MMAPABLE);

#[map]
static HALFOPEN_PREFIXES: Array<u64> = Array::with_max_entries(SYN_PREFIX_SLOTS, BPF_F_MMAPABLE);

/// Which level of budget is used up.
pub enum Exhausted {
    Source,
    Prefix,
}

/// The units a SYN will take if it passes the remaining rules.
pub struct Units {
    source: Deferred<u64>,
    prefix: Deferred<u64>,
}

/// Whether a SYN from the source on `source_slot` / `prefix_slot` (its SYN
/// bucket slots) finds a unit free at both levels that are on. Nothing is
/// written yet: [`Units::take`] does that once the SYN passes.
#[inline(always)]
pub fn check(
    source_slot: u32,
    prefix_slot: u32,
    config: &Config,
    now: u64,
) -> Result<Units, Exhausted> {
    let timeout = config.halfopen_timeout_ns();
    let source = match level(
        &HALFOPEN_SOURCES,
        source_slot,
        config.syn_halfopen_budget,
        timeout,
        now,
    ) {
        Level::Off => Deferred::none(),
        Level::Free(units) => units,
        Level::Exhausted => return Err(Exhausted::Source),
    };
    let prefix = match level(
        &HALFOPEN_PREFIXES,
        prefix_slot,
        config.syn_halfopen_prefix_budget,
        timeout,
        now,
    ) {
        Level::Off => Deferred::none(),
        Level::Free(units) => units,
        Level::Exhausted => return Err(Exhausted::Prefix),
    };
    Ok(Units { source, prefix })
}

enum Level {
    Off,
    Free(Deferred<u64>),
    Exhausted,
}

#[inline(always)]
fn level(map: &Array<u64>, slot: u32, budget: u32, timeout: u64, now: u64) -> Level {
    if budget == 0 {
        return Level::Off;
    }
    let Some(counter) = map.cell(slot) else {
        return Level::Off;
    };
    match halfopen::take(
        counter.get(),
        now,
        halfopen::unit_ns(timeout, budget),
        budget,
    ) {
        Some(next) => Level::Free(Deferred::new(counter, next)),
        None => Level::Exhausted,
    }
}

impl Units {
    /// The SYN passed: its units are taken.
    #[inline(always)]
    pub fn take(self) {
        self.source.write();
        self.prefix.write();
    }
}

/// A handshake from `ip`'s source completed: one unit back at each level
/// that is on.
#[inline(always)]
pub fn give_back(ip: &Ip, config: &Config, now: u64) {
    let (source, prefix_len) = match ip.family {
        Family::Ipv4 => (SynSource::ipv4(ip.src[0]), config.syn_prefix_v4),
        Family::Ipv6 => (SynSource::ipv6(&ip.src), config.syn_prefix_v6),
    };
    let seed = config.syn_hash_seed;
    let timeout = config.halfopen_timeout_ns();
    if config.syn_halfopen_budget != 0 {
        refund(
            &HALFOPEN_SOURCES,
            source.source_slot(seed),
            halfopen::unit_ns(timeout, config.syn_halfopen_budget),
            now,
        );
    }
    if config.syn_halfopen_prefix_budget != 0 {
        refund(
            &HALFOPEN_PREFIXES,
            source.prefix_slot(prefix_len, seed),
            halfopen::unit_ns(timeout, config.syn_halfopen_prefix_budget),
            now,
        );
    }
}

#[inline(always)]
fn refund(map: &Array<u64>, slot: u32, unit: u64, now: u64) {
    if let Some(counter) = map.cell(slot)
        && let Some(back) = halfopen::give_back(counter.get(), now, unit)
    {
        counter.set(back);
    }
}
