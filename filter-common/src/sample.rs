//! Drop sampling: the XDP program copies a few of the packets it drops (or
//! would drop, in monitor mode) into a ring buffer as [`DropEvent`]s, for
//! `filter-ctl daemon` and `filter-ctl top` to say who is flooding.
//!
//! A flood of millions of packets per second must cost almost nothing
//! extra. Only some drops are offered to their reason's rate limiter
//! ([`is_offered`]: the first and every [`OFFER_EVERY`]th of a reason on a
//! CPU, by the per-CPU packet counter the drop path increments anyway), because
//! the limiter needs the clock, a helper call that would otherwise be
//! a third of a drop's cost. The limiter ([`admit`], one timestamp per reason
//! in an array map shared by all CPUs) then refuses all but `rate` a second.
//! Only an admitted drop reserves ring space and copies the frame's first
//! bytes into it (the reader parses them); a full ring (nobody reading) is
//! counted as lost, never waited for.
//!
//! The rate is `sample_rate` events per second per drop reason (a setting;
//! 0 = off), so a DNS flood never crowds the SYN flood's events out, for any
//! flood of more than `OFFER_EVERY * sample_rate` drops per second on a CPU
//! (3,200 at the default); slower drops give one event in `OFFER_EVERY`.
//! Estimates scale the sampled events by the exact per-reason counters.

use crate::rate;

/// Header bytes an event carries: enough for Ethernet, two VLAN tags,
/// PPPoE, IPv4 with the longest options or IPv6 with some extension
/// headers, and the ports behind them.
pub const HEADER_BYTES: usize = 128;

/// One sampled drop, as the ring buffer carries it: the frame's first bytes,
/// copied as they are. The program does not parse them again (a second walk
/// of the parser on every drop path multiplied the verifier's work
/// fivefold); the reader does, once per event (filter-ctl's daemon/drops.rs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// The frame's length in bytes, as counted in the `STATS` map.
    pub len: u32,
    /// The drop reason's index ([`crate::Reason::index`]).
    pub reason: u8,
    /// 1 when monitor mode passed the packet (action `would_drop`).
    pub would_drop: u8,
    /// How many bytes of `headers` hold the frame (the rest is zero).
    pub captured: u16,
    pub headers: [u8; HEADER_BYTES],
}

/// Slots of the `DROP_EVENT_COUNTS` per-CPU array.
pub const COUNT_SAMPLED: u32 = 0;
/// Admitted by the rate limiter, but the ring was full: nobody is reading
/// fast enough (or at all).
pub const COUNT_LOST: u32 = 1;
pub const COUNT_SLOTS: u32 = 2;

/// Bytes of the ring buffer: about 3,600 events (136 bytes plus an 8-byte
/// record header each), 18 s of one reason at the default rate with nobody
/// reading.
pub const RING_BYTES: u32 = 1 << 19;

/// Default and highest `sample_rate` (events per second per drop reason).
/// 200 per second keep a top-10 within a few percent after a few seconds
/// and cost a reader nothing; more only shortens how long it must watch.
pub const DEFAULT_RATE: u32 = 200;
pub const MAX_RATE: u32 = 100_000;

/// Drops of a reason on one CPU per drop offered to the rate limiter.
pub const OFFER_EVERY: u64 = 16;

/// Whether the drop that brought its reason's per-CPU packet counter to
/// `count` is offered to the rate limiter: the first and then every
/// [`OFFER_EVERY`]th. Every packet of a flood is equally likely to be the
/// one (a source cannot know the counter's phase: all traffic of the reason
/// on that CPU moves it), so the sampled shares stay unbiased.
#[inline(always)]
pub const fn is_offered(count: u64) -> bool {
    count % OFFER_EVERY == 1
}

/// The rate limiter of one reason at `now_ns`: its new timestamp if one more
/// event may be sent, `None` if not (the slot is left as it is). A GCRA
/// bucket ([`rate::admit`], the arithmetic of the SYN buckets and query limits) holding
/// one second's worth of events, so that a flood's first second is sampled
/// at once. `rate` 0 is off.
#[inline(always)]
pub fn admit(tat_ns: u64, now_ns: u64, rate: u32) -> Option<u64> {
    if rate == 0 {
        return None;
    }
    rate::admit(tat_ns, now_ns, rate, rate)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::DropEvent {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn the_event_has_no_hidden_padding() {
        assert_eq!(size_of::<DropEvent>(), 8 + HEADER_BYTES);
        assert_eq!(align_of::<DropEvent>(), 4);
    }

    #[test]
    fn one_drop_in_offer_every_is_offered_starting_with_the_first() {
        let offered: Vec<u64> = (1..=50).filter(|&count| is_offered(count)).collect();
        assert_eq!(offered, [1, 17, 33, 49]);
        let per_million = (1..=1_000_000).filter(|&count| is_offered(count)).count() as u64;
        assert_eq!(per_million, 1_000_000 / OFFER_EVERY);
    }

    #[test]
    fn off_admits_nothing() {
        assert_eq!(admit(0, 5 * SEC, 0), None);
    }

    /// A flood at any pace yields one second's worth at once, then `rate`
    /// per second.
    #[test]
    fn a_flood_is_sampled_at_the_rate() {
        let rate = 100;
        let mut tat = 0;
        let mut admitted = 0;
        let start = 10 * SEC;
        // A million packets over 10 s.
        for i in 0..1_000_000u64 {
            let now = start + i * 10_000;
            if let Some(next) = admit(tat, now, rate) {
                tat = next;
                admitted += 1;
            }
        }
        // The burst (100) plus 10 s at 100/s.
        assert!((1_095..=1_101).contains(&admitted), "{admitted}");
    }

    /// A coarse clock (one tick every 4 ms) still gives the rate: each tick
    /// admits the tokens it refilled.
    #[test]
    fn a_coarse_clock_keeps_the_rate() {
        let rate = 1000;
        let mut tat = 0;
        let mut admitted = 0;
        let start = 10 * SEC;
        for tick in 0..2500u64 {
            let now = start + tick * 4_000_000;
            for _ in 0..100 {
                if let Some(next) = admit(tat, now, rate) {
                    tat = next;
                    admitted += 1;
                }
            }
        }
        // 10 s: the burst plus 10,000.
        assert!((10_990..=11_010).contains(&admitted), "{admitted}");
    }
}
