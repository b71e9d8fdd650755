//! Half-open budgets: how many unanswered connection attempts a source (IPv4
//! /32, IPv6 /64) and a source prefix may have at once.
//!
//! A SYN that passes takes one unit of its source's budget and of its
//! prefix's; the ACK that completes its handshake gives both back; a unit
//! nobody gives back is free again at the latest `timeout` after it was
//! taken. A client that completes its handshakes therefore never runs out,
//! however many connections it opens one after the other: only the
//! handshakes it has in flight at one moment count. A half-open flooder never
//! completes one and is held to `budget` units, then to one more every
//! `timeout / budget`.
//!
//! # The counter: one virtual time per slot
//!
//! Like a SYN bucket ([`crate::syn`]), a budget is one u64 in a slot of an
//! array, hashed from the source with the secret seed (no keys, no eviction:
//! a spoofed flood can only share a slot, which makes it fuller, never hand
//! an offender a fresh one). The value is the time at which every unit is
//! free again. With `unit = timeout / budget`:
//!
//! - units in use at `now`: `ceil((tat - now) / unit)` (0 once `tat <= now`);
//! - a SYN is admitted if fewer than `budget` are in use, that is
//!   `max(tat, now) - now <= (budget - 1) * unit`, and moves `tat` to
//!   `max(tat, now) + unit` ([`take`]);
//! - a completed handshake moves it back by one unit, never below `now`
//!   ([`give_back`]): completions return units, they never bank credit.
//!
//! Units in use drain continuously, one per `unit`, so "expires after the
//! timeout" is exact for a full budget and an upper bound otherwise: a unit
//! taken at `t` is free by `t + timeout` (the admission keeps `tat` within
//! `budget * unit <= timeout` of the SYN's time). What the host tests prove:
//!
//! - at most `budget` units are ever in use; a rested slot admits exactly `budget`;
//! - over any stretch of `elapsed` ns, admitted SYNs <= `budget + elapsed / unit`
//!   \+ the handshakes completed in it;
//! - a source is never refused while fewer than `budget` of its own
//!   handshakes are in flight (SYNs admitted minus handshakes completed),
//!   whatever it did before.
//!
//! Units are not named: a completion returns *a* unit, not the one its SYN
//! took. A source that completes some handshakes and leaves others open is
//! held to its budget for the open ones, plus one per completion.
//!
//! The same counter, with a unit of [`crate::conn::PENDING_NS`], holds the
//! handshakes in flight per source and port for the connection limit
//! ([`crate::conn`]).

/// Defaults (docs/tcp-connections.md explains them): a browser opening a
/// dozen connections at once to one server has them all in flight within
/// one round trip, so a source's budget is above that; a prefix's holds
/// four of them. An unanswered unit comes back after a minute at most: the
/// kernel stops resending a SYN-ACK after about 63 s, and a flooder that
/// never completes gets 16 SYNs through, then one every 3.75 s.
pub const DEFAULT_BUDGET: u32 = 16;
pub const DEFAULT_PREFIX_BUDGET: u32 = 64;
pub const DEFAULT_TIMEOUT_NS: u64 = 60_000_000_000;

/// Highest budget filter-ctl accepts.
pub const MAX_BUDGET: u32 = 1_000_000;

/// The virtual time one unit stands for: `timeout / budget`, at least 1 ns.
#[inline(always)]
pub const fn unit_ns(timeout_ns: u64, budget: u32) -> u64 {
    let budget = if budget == 0 { 1 } else { budget as u64 };
    let unit = timeout_ns / budget;
    if unit == 0 { 1 } else { unit }
}

/// Takes a unit from a counter whose units are `unit_ns` long and of which
/// `budget` exist: the new `tat` if one was free, `None` if all are in use
/// (the counter is left as it is). A budget of 0 has no unit to give.
#[inline(always)]
pub fn take(tat: u64, now: u64, unit_ns: u64, budget: u32) -> Option<u64> {
    if budget == 0 {
        return None;
    }
    let start = if tat > now { tat } else { now };
    // No overflow: filter-ctl keeps budget * unit within the timeout (1 h at
    // most); pending counters use budgets below 2^16 of 1 s units.
    if start - now > u64::from(budget - 1) * unit_ns {
        None
    } else {
        Some(start + unit_ns)
    }
}

/// Gives a unit back: the counter's new `tat`, or `None` if no unit is in
/// use (nothing to write). Never below `now`: a completion cannot free units
/// for later.
#[inline(always)]
pub fn give_back(tat: u64, now: u64, unit_ns: u64) -> Option<u64> {
    if tat <= now {
        return None;
    }
    let back = tat.saturating_sub(unit_ns);
    Some(if back > now { back } else { now })
}

/// Units in use at `now`.
#[inline(always)]
pub const fn in_use(tat: u64, now: u64, unit_ns: u64) -> u64 {
    if tat <= now {
        0
    } else {
        (tat - now).div_ceil(unit_ns)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    const SEC: u64 = 1_000_000_000;
    const MAX_NOW: u64 = 1 << 62;

    #[test]
    fn the_defaults_give_a_flooder_16_then_one_every_3_75_s() {
        let unit = unit_ns(DEFAULT_TIMEOUT_NS, DEFAULT_BUDGET);
        assert_eq!(unit, 3_750_000_000);
        let mut tat = 0;
        let now = 100 * SEC;
        for _ in 0..16 {
            tat = take(tat, now, unit, DEFAULT_BUDGET).unwrap();
        }
        assert_eq!(take(tat, now, unit, DEFAULT_BUDGET), None);
        assert_eq!(take(tat, now + unit - 1, unit, DEFAULT_BUDGET), None);
        assert!(take(tat, now + unit, unit, DEFAULT_BUDGET).is_some());
        // All 16 are free again one timeout later.
        assert_eq!(in_use(tat, now + DEFAULT_TIMEOUT_NS, unit), 0);
    }

    #[test]
    fn a_budget_of_zero_admits_nothing_and_units_are_never_zero() {
        assert_eq!(take(0, 5, 10, 0), None);
        assert_eq!(unit_ns(5, 10), 1);
        assert_eq!(unit_ns(5, 0), 5);
        assert_eq!(give_back(0, 5, 10), None);
        assert_eq!(give_back(20, 5, 10), Some(10));
        assert_eq!(give_back(12, 5, 10), Some(5));
    }

    /// A SYN (admitted or not) or a completed handshake, at a time.
    #[derive(Clone, Copy, Debug)]
    enum Event {
        Syn(u64),
        Completion(u64),
    }

    fn events() -> impl Strategy<Value = (u64, Vec<Event>)> {
        (
            0..MAX_NOW,
            proptest::collection::vec((0..3 * SEC, any::<bool>()), 1..200),
        )
            .prop_map(|(start, steps)| {
                let mut now = start;
                let events = steps
                    .into_iter()
                    .map(|(gap, syn)| {
                        // Many events at one instant, some far apart.
                        now += gap.saturating_sub(SEC);
                        if syn {
                            Event::Syn(now)
                        } else {
                            Event::Completion(now)
                        }
                    })
                    .collect();
                (start, events)
            })
    }

    proptest! {
        /// Never more than `budget` units in use, and over any run of events
        /// at most `budget + elapsed / unit + completions` SYNs admitted.
        #[test]
        fn admissions_are_bounded_by_budget_time_and_completions(
            (start, events) in events(),
            budget in 1..=64u32,
            timeout in 1..=120 * SEC,
            tat in 0..MAX_NOW,
        ) {
            let unit = unit_ns(timeout, budget);
            let mut tat = tat.min(start);
            let (mut admitted, mut completions) = (0u64, 0u64);
            let mut last = start;
            for event in events {
                match event {
                    Event::Syn(now) => {
                        if let Some(next) = take(tat, now, unit, budget) {
                            tat = next;
                            admitted += 1;
                        }
                        last = now;
                    }
                    Event::Completion(now) => {
                        if let Some(back) = give_back(tat, now, unit) {
                            tat = back;
                        }
                        completions += 1;
                        last = now;
                    }
                }
                prop_assert!(in_use(tat, last, unit) <= u64::from(budget));
            }
            let elapsed = last - start;
            prop_assert!(admitted <= u64::from(budget) + elapsed / unit + completions);
        }

        /// A source with fewer than `budget` handshakes in flight is admitted,
        /// whatever came before: bursts of up to `budget` SYNs, each burst's
        /// handshakes completing at random later times.
        #[test]
        fn a_source_that_completes_is_never_refused(
            budget in 1..=32u32,
            timeout in 1..=120 * SEC,
            bursts in proptest::collection::vec((1..=32u32, 0..2 * SEC, 0..SEC), 1..30),
            start in 0..MAX_NOW,
        ) {
            let unit = unit_ns(timeout, budget);
            let (mut tat, mut now) = (0, start);
            for (size, gap, round_trip) in bursts {
                let size = size.min(budget);
                now += gap;
                for _ in 0..size {
                    tat = take(tat, now, unit, budget).expect("a unit for a handshake in flight");
                }
                // Completions one round trip later, one after the other.
                for n in 0..u64::from(size) {
                    if let Some(back) = give_back(tat, now + round_trip + n, unit) {
                        tat = back;
                    }
                }
                now += round_trip + u64::from(size);
            }
        }

        /// A rested counter admits exactly `budget` at one instant; one
        /// timeout after the last of them, all are free again.
        #[test]
        fn units_are_free_again_one_timeout_after_they_were_taken(
            budget in 1..=1000u32,
            timeout in 1..=3600 * SEC,
            old_tat in 0..MAX_NOW,
            rest in 0..MAX_NOW,
        ) {
            let unit = unit_ns(timeout, budget);
            let now = old_tat + rest;
            let mut tat = old_tat;
            for _ in 0..budget {
                tat = take(tat, now, unit, budget).expect("a rested counter has its budget");
            }
            prop_assert_eq!(take(tat, now, unit, budget), None);
            prop_assert_eq!(in_use(tat, now, unit), u64::from(budget));
            prop_assert_eq!(in_use(tat, now + timeout, unit), 0);
        }

        /// Giving back never goes below now (no credit) and frees exactly one
        /// unit of a counter with more than one in use.
        #[test]
        fn giving_back_frees_one_unit_and_banks_nothing(
            tat in 0..MAX_NOW,
            now in 0..MAX_NOW,
            unit in 1..1u64 << 40,
        ) {
            match give_back(tat, now, unit) {
                None => prop_assert!(tat <= now),
                Some(back) => {
                    prop_assert!(back >= now && back < tat);
                    let before = in_use(tat, now, unit);
                    prop_assert_eq!(in_use(back, now, unit), before - 1);
                }
            }
        }
    }
}
