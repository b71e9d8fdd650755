//! Half-open budgets (docs/tcp-connections.md, *Half-open budgets*): per
//! source (IPv4 /32, IPv6 /64) and per prefix, `budget` units each. A SYN
//! that passes every rule takes a unit at each level that is on; the ACK
//! that completes a handshake gives one back at each; a unit is free again
//! at the latest `syn_halfopen_timeout` after it was taken.
//!
//! The docs give the counter exactly, and the model keeps it in those terms:
//! a time `tat` at which every unit is free, `unit = timeout / budget`;
//! units in use at `now` are `ceil((tat - now) / unit)`; a SYN is admitted
//! while fewer than `budget` are in use and moves `tat` to
//! `max(tat, now) + unit`; a completion moves it back one unit, never below
//! `now`. Integer nanoseconds, the unit at least 1 ns (the docs do not say
//! how `timeout / budget` rounds: down, as the SYN buckets' interval).
//!
//! The counters sit on the same hashed slots as the source's and the
//! prefix's SYN rate buckets (no keys: sources on one slot share a budget,
//! the documented approximation); the model mirrors them with
//! `filter_common::syn::SynSource` like [`crate::syn`].

use std::collections::{BTreeMap, BTreeSet};

use crate::syn::Slots;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HalfOpen {
    sources: BTreeMap<u32, u64>,
    prefixes: BTreeMap<u32, u64>,
}

/// Which level has no unit free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    Source,
    Prefix,
}

/// A level's budget and timeout.
#[derive(Clone, Copy, Debug)]
pub struct Budgets {
    pub source: Option<u32>,
    pub prefix: Option<u32>,
    pub timeout_ns: u64,
}

fn unit(timeout_ns: u64, budget: u32) -> u64 {
    (timeout_ns / u64::from(budget.max(1))).max(1)
}

fn in_use(tat: u64, now: u64, unit: u64) -> u64 {
    tat.saturating_sub(now).div_ceil(unit)
}

impl HalfOpen {
    /// Whether both levels that are on have a unit free (nothing taken).
    pub fn check(&self, slots: Slots, budgets: &Budgets, now: u64) -> Result<(), Exhausted> {
        let full = |map: &BTreeMap<u32, u64>, slot: u32, budget: Option<u32>| {
            budget.is_some_and(|budget| {
                let tat = map.get(&slot).copied().unwrap_or(0);
                in_use(tat, now, unit(budgets.timeout_ns, budget)) >= u64::from(budget)
            })
        };
        if full(&self.sources, slots.source, budgets.source) {
            return Err(Exhausted::Source);
        }
        if full(&self.prefixes, slots.prefix, budgets.prefix) {
            return Err(Exhausted::Prefix);
        }
        Ok(())
    }

    /// A SYN passed: a unit taken at each level that is on.
    pub fn take(&mut self, slots: Slots, budgets: &Budgets, now: u64) {
        for (map, slot, budget) in [
            (&mut self.sources, slots.source, budgets.source),
            (&mut self.prefixes, slots.prefix, budgets.prefix),
        ] {
            if let Some(budget) = budget {
                let tat = map.entry(slot).or_default();
                *tat = (*tat).max(now) + unit(budgets.timeout_ns, budget);
            }
        }
    }

    /// A handshake completed: a unit back at each level that is on.
    pub fn give_back(&mut self, slots: Slots, budgets: &Budgets, now: u64) {
        for (map, slot, budget) in [
            (&mut self.sources, slots.source, budgets.source),
            (&mut self.prefixes, slots.prefix, budgets.prefix),
        ] {
            if let Some(budget) = budget
                && let Some(tat) = map.get_mut(&slot)
                && *tat > now
            {
                *tat = tat
                    .saturating_sub(unit(budgets.timeout_ns, budget))
                    .max(now);
            }
        }
    }

    /// The slots written, for resetting the real counters.
    pub fn slots_used(&self) -> (BTreeSet<u32>, BTreeSet<u32>) {
        (
            self.sources.keys().copied().collect(),
            self.prefixes.keys().copied().collect(),
        )
    }
}
