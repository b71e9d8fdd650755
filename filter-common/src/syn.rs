//! TCP SYN defence: token buckets per source, per source prefix and global.
//!
//! Every level keeps its state in a plain array of [`SynBucket`] slots; a
//! source (or prefix) is hashed with a secret per-attach seed
//! ([`crate::Config::syn_hash_seed`]) onto one slot. There are no keys and no
//! eviction, on purpose: attackers write these maps (every SYN they send
//! charges a slot), and with an LRU hash a flood from a million spoofed
//! sources would push a real offender's bucket out and hand it a fresh, full
//! one on its next SYN, over and over. Here a flood can only *share* a slot
//! with an offender, which makes that bucket emptier, never fuller. The price
//! is collateral: a source hashed onto the slot of a flooder is limited with
//! it. With `SYN_SOURCE_SLOTS` slots that needs a collision (1 in 262144 per
//! pair, and the seed keeps attackers from aiming), or a spoofed flood so
//! large that every slot runs dry (slots x source rate: over 5 million SYN/s
//! with the defaults), where the global level is shedding load anyway.
//!
//! The buckets are shared by all CPUs, not per-CPU: per-CPU buckets would
//! multiply every rate by the number of CPUs that RSS spreads a flood over.
//! A bucket is one timestamp (GCRA, the "virtual scheduling" form of a token
//! bucket): the time at which it is full again. A SYN over the limit only
//! reads it, so a flood against an empty bucket costs a read of a shared
//! cache line and never bounces it between CPUs. An admitted SYN writes it
//! with a plain store (the BPF target of our Rust toolchain has no
//! compare-and-swap): two CPUs that take the same token within the same few
//! nanoseconds both pass. That race only exists while the bucket has tokens
//! and costs at most one extra SYN per colliding CPU, which is the usual,
//! benign trade for a rate limit.
//!
//! The arithmetic lives here, tested on the host: [`admit`] (the GCRA check),
//! [`strike`] (the penalty count) and [`SynSource`] (which slots a source's
//! buckets take). The program only reads and writes the slots.

use crate::{hash, prefix};

/// Slots of the per-source level (IPv4 /32, IPv6 /64): 4 MiB.
pub const SYN_SOURCE_SLOTS: u32 = 1 << 18;
/// Slots of the per-prefix level (IPv4 /24, IPv6 /48 by default): 1 MiB.
pub const SYN_PREFIX_SLOTS: u32 = 1 << 16;

/// One token bucket, in the GCRA form.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynBucket {
    /// Time on the programs' clock (bpf_ktime_get_coarse_ns) at which the bucket is full again
    /// ("theoretical arrival time"): each admitted SYN pushes it one interval
    /// (1 s / rate) further; a SYN is over the limit when it lies more than
    /// `(burst - 1)` intervals ahead of now. 0: never used, full.
    pub tat_ns: u64,
    /// Per-source level: SYNs over the limit since the last one admitted,
    /// for the penalty. Unused elsewhere.
    pub strikes: u32,
    pub _padding: u32,
}

/// Highest rate and burst a level accepts (filter-ctl refuses more; the
/// program clamps the rate, which bounds its arithmetic).
pub const MAX_RATE: u32 = 1_000_000;
pub const MAX_BURST: u32 = 1_000_000;

/// Defaults, chosen for a home or small-office gateway (docs/syn-and-lists.md
/// and docs/tcp-connections.md explain them). The half-open budgets
/// ([`crate::halfopen`]) stop sources that do not complete their handshakes;
/// the rate buckets are the backstop against sources that do (a connection
/// flood) and against spoofed floods spread over many sources, so they let
/// a busy legitimate source through: a browser reloading a page three times
/// (3 bursts of 12 connections within a second: 36 of the source's 40) or a
/// mail relay flushing its queue (20 new connections a second, sustained).
/// A prefix holds five such browsers at once (200) and a hundred
/// connections a second.
pub const DEFAULT_SOURCE_RATE: u32 = 20;
pub const DEFAULT_SOURCE_BURST: u32 = 40;
pub const DEFAULT_PREFIX_RATE: u32 = 100;
pub const DEFAULT_PREFIX_BURST: u32 = 200;
pub const DEFAULT_GLOBAL_RATE: u32 = 2000;
pub const DEFAULT_GLOBAL_BURST: u32 = 4000;
pub const DEFAULT_PREFIX_V4: u8 = 24;
pub const DEFAULT_PREFIX_V6: u8 = 48;
/// Off: SYN sources can be spoofed, so an automatic deny can be turned against
/// the gateway's own peers (see docs/syn-and-lists.md).
pub const DEFAULT_PENALTY_NS: u64 = 0;

const NS_PER_SEC: u64 = 1_000_000_000;

/// The GCRA check of one bucket for a SYN at `now_ns`: the bucket's new
/// `tat_ns` if the SYN is admitted (one token taken), `None` if it is over
/// the limit (the bucket is left as it is). The bucket holds `burst` tokens
/// and gains one every `1 s / rate`; the rate is clamped to 1..=MAX_RATE.
///
/// Refused when the bucket's "full again" time lies more than burst - 1
/// intervals (1 s / rate) ahead of now. A 64-bit division costs more than the
/// rest of a refused SYN's path, so this compares multiplied out (rate below
/// 2^20: no overflow below 2^44 ns ahead, about 5 hours) and only an
/// admitted SYN, or a bucket hours ahead after its burst was cut down,
/// divides. (saturating_mul would need __multi3, which BPF lacks.)
#[inline(always)]
pub fn admit(tat_ns: u64, now_ns: u64, rate: u32, burst: u32) -> Option<u64> {
    let rate = u64::from(rate.clamp(1, MAX_RATE));
    let spare = u64::from(burst.max(1) - 1);
    let start = if tat_ns > now_ns { tat_ns } else { now_ns };
    let ahead = start - now_ns;
    let refused = if ahead < 1 << 44 {
        ahead * rate > spare * NS_PER_SEC
    } else {
        ahead > spare * (NS_PER_SEC / rate)
    };
    if refused {
        None
    } else {
        Some(start + NS_PER_SEC / rate)
    }
}

/// One more SYN refused from a source whose bucket had `strikes` refused
/// since its last admitted SYN: the new count, or `None` when this one
/// earns the penalty (the count starts again from 0). A source is penalised
/// after `burst` refusals in a row: it keeps sending at well over twice its
/// rate without pausing for a single token.
#[inline(always)]
pub fn strike(strikes: u32, burst: u32) -> Option<u32> {
    let strikes = strikes.saturating_add(1);
    if strikes < burst.max(1) {
        Some(strikes)
    } else {
        None
    }
}

/// A SYN's source as the buckets see it: the address as a number (IPv4 all
/// 32 bits, IPv6 the /64) and its width, hashed onto the slots of the
/// per-source and per-prefix levels with the per-attach seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynSource {
    number: u64,
    width: u32,
    source_tag: u64,
    prefix_tag: u64,
}

/// Distinguish the hash inputs of the two families and levels.
const TAG_SOURCE_V4: u64 = 0x5f4e_7c01;
const TAG_SOURCE_V6: u64 = 0x5f4e_7c02;
const TAG_PREFIX_V4: u64 = 0x5f4e_7c03;
const TAG_PREFIX_V6: u64 = 0x5f4e_7c04;

impl SynSource {
    /// From the source address's word as the parser reads it (wire bytes).
    #[inline(always)]
    pub fn ipv4(word: u32) -> SynSource {
        SynSource {
            number: u64::from(prefix::v4_number(word)),
            width: 32,
            source_tag: TAG_SOURCE_V4,
            prefix_tag: TAG_PREFIX_V4,
        }
    }

    /// From the source address's words as the parser reads them (wire bytes).
    #[inline(always)]
    pub fn ipv6(words: &[u32; 4]) -> SynSource {
        SynSource {
            number: prefix::v6_top64(words),
            width: 64,
            source_tag: TAG_SOURCE_V6,
            prefix_tag: TAG_PREFIX_V6,
        }
    }

    /// The source's slot in SYN_SOURCES.
    #[inline(always)]
    pub fn source_slot(&self, seed: u64) -> u32 {
        hash::keyed_mix(self.number ^ self.source_tag, seed) as u32 & (SYN_SOURCE_SLOTS - 1)
    }

    /// The slot of the source's `/prefix_len` in SYN_PREFIXES.
    #[inline(always)]
    pub fn prefix_slot(&self, prefix_len: u8, seed: u64) -> u32 {
        let prefix = self.number & prefix::mask(prefix_len, self.width);
        hash::keyed_mix(prefix ^ self.prefix_tag, seed) as u32 & (SYN_PREFIX_SLOTS - 1)
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::SynBucket {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::{collections::HashSet, net::Ipv6Addr, vec::Vec};

    use proptest::prelude::*;

    use super::*;

    const SEC: u64 = NS_PER_SEC;
    /// Times in tests: up to about 146 years of uptime.
    const MAX_NOW: u64 = 1 << 62;

    /// Offers SYNs at `times` to one bucket: how many were admitted.
    fn admitted(times: &[u64], rate: u32, burst: u32) -> u64 {
        let mut tat = 0;
        let mut count = 0;
        for &now in times {
            if let Some(next) = admit(tat, now, rate, burst) {
                tat = next;
                count += 1;
            }
        }
        count
    }

    fn v4(octets: [u8; 4]) -> SynSource {
        SynSource::ipv4(u32::from_ne_bytes(octets))
    }

    fn v6(addr: Ipv6Addr) -> SynSource {
        let o = addr.octets();
        SynSource::ipv6(&core::array::from_fn(|i| {
            u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
        }))
    }

    #[test]
    fn a_fresh_bucket_admits_its_burst_then_one_per_interval() {
        let now = 1000 * SEC;
        assert_eq!(admitted(&[now; 20], 2, 12), 12);
        // At 2/s, one more every half second.
        let times: Vec<u64> = (0..20).map(|_| now).chain([now + SEC / 2]).collect();
        assert_eq!(admitted(&times, 2, 12), 13);
    }

    /// A bucket driven far ahead (its burst cut down at run time) takes the
    /// division branch: refused until it is back within burst - 1 intervals.
    #[test]
    fn a_bucket_hours_ahead_is_refused_until_it_drains() {
        let now = 1000 * SEC;
        let tat = now + 20_000 * SEC; // 5.5 hours: past the multiplied-out range.
        assert_eq!(admit(tat, now, 2, 12), None);
        assert_eq!(admit(tat, tat - 11 * SEC / 2 - 1, 2, 12), None);
        assert_eq!(admit(tat, tat - 11 * SEC / 2, 2, 12), Some(tat + SEC / 2));
    }

    #[test]
    fn the_penalty_comes_on_the_bursts_refusal_in_a_row() {
        let mut strikes = 0;
        for _ in 1..12 {
            strikes = strike(strikes, 12).expect("no penalty before the 12th");
        }
        assert_eq!(strike(strikes, 12), None);
        assert_eq!(strike(0, 0), None, "a burst of 0 counts as 1");
        assert_eq!(strike(u32::MAX, u32::MAX), None);
    }

    /// Sources spread over the slots: a /16 of IPv4 sources, and IPv6 /64s
    /// that differ only in their last 16 bits, each take ~65,000 slots.
    #[test]
    fn sources_spread_over_the_slots() {
        let seed = 0x0123_4567_89ab_cdef;
        let v4_slots: HashSet<u32> = (0..=u16::MAX)
            .map(|n| v4([198, 18, (n >> 8) as u8, n as u8]).source_slot(seed))
            .collect();
        let v6_slots: HashSet<u32> = (0..=u16::MAX)
            .map(|n| v6(Ipv6Addr::new(0x2001, 0xdb8, 0, n, 0, 0, 0, 1)).source_slot(seed))
            .collect();
        // 65536 keys in 262144 slots: random placement fills ~57,800.
        assert!(v4_slots.len() > 56_000, "{}", v4_slots.len());
        assert!(v6_slots.len() > 56_000, "{}", v6_slots.len());
    }

    proptest! {
        /// The GCRA bound: over any stretch of `elapsed` ns, at most
        /// 1 + ((burst - 1) * 1 s / rate + elapsed) / interval SYNs pass,
        /// whatever the arrival times, and the arithmetic never overflows.
        #[test]
        fn admits_no_more_than_burst_plus_rate(
            start in 0..MAX_NOW,
            gaps in proptest::collection::vec(prop_oneof![Just(0), 0..SEC / 100, 0..2 * SEC], 1..200),
            rate in prop_oneof![0..=10u32, 0..=MAX_RATE + 10],
            burst in prop_oneof![0..=20u32, 0..=MAX_BURST],
        ) {
            let times: Vec<u64> = gaps
                .iter()
                .scan(start, |now, gap| { *now += gap; Some(*now) })
                .collect();
            let elapsed = u128::from(times[times.len() - 1] - start);
            let rate = u128::from(rate.clamp(1, MAX_RATE));
            let interval = u128::from(SEC) / rate;
            let spare = u128::from(burst.max(1) - 1);
            let allowed = 1 + (spare * u128::from(SEC) + elapsed * rate) / (rate * interval);
            prop_assert!(u128::from(admitted(&times, rate as u32, burst)) <= allowed);
        }

        /// A quiet bucket is full: `burst` SYNs at one instant pass, the next
        /// does not. (With the interval rounded down to whole ns, a burst
        /// near 1 s / (rate - 1) could gain a token; the limits stay far below.)
        #[test]
        fn a_rested_bucket_admits_exactly_its_burst(
            rate in 1..=MAX_RATE,
            burst in 1..=500u32,
            tat in 0..MAX_NOW,
            rest in 0..MAX_NOW,
        ) {
            let now = tat.saturating_add(rest);
            let mut tat = tat;
            for _ in 0..burst {
                tat = admit(tat, now, rate, burst).expect("a token left");
            }
            prop_assert_eq!(admit(tat, now, rate, burst), None);
        }

        /// Each admitted SYN moves the bucket one interval past now or its
        /// old deadline, whichever is later; a refused one passes once the
        /// clock is within burst - 1 intervals of the deadline.
        #[test]
        fn admission_moves_the_deadline_by_one_interval(
            now in 0..MAX_NOW,
            ahead in 0..1u64 << 50,
            rate in any::<u32>(),
            burst in any::<u32>(),
        ) {
            let tat = now + ahead;
            let interval = SEC / u64::from(rate.clamp(1, MAX_RATE));
            match admit(tat, now, rate, burst) {
                Some(next) => prop_assert_eq!(next, tat.max(now) + interval),
                None => {
                    let spare = u64::from(burst.max(1) - 1);
                    let later = tat.saturating_sub(spare * interval);
                    prop_assert!(later > now);
                    prop_assert!(admit(tat, later, rate, burst).is_some());
                }
            }
        }

        /// The multiplied-out check is the exact comparison
        /// ahead > (burst - 1) * (1 s / rate) in rationals, up to 2^44 ns
        /// ahead: checked around that threshold and anywhere in the range.
        #[test]
        fn the_check_is_exact_in_the_multiplied_range(
            now in 0..MAX_NOW,
            rate in 1..=MAX_RATE,
            burst in 1..=MAX_BURST,
            near in -2..=2i64,
            anywhere in 0..1u64 << 44,
        ) {
            let threshold = u64::from(burst - 1) * SEC / u64::from(rate);
            let around = threshold.saturating_add_signed(near).min((1 << 44) - 1);
            for ahead in [around, anywhere] {
                let exact_refusal = u128::from(ahead) * u128::from(rate)
                    > u128::from(burst - 1) * u128::from(SEC);
                prop_assert_eq!(admit(now + ahead, now, rate, burst).is_none(), exact_refusal);
            }
        }

        /// A source's slot is its own address's (IPv4) or its /64's (IPv6);
        /// its prefix slot is shared by its whole prefix; slots are in range.
        #[test]
        fn slots_follow_the_source_and_its_prefix(
            seed in any::<u64>(),
            a in any::<u32>(),
            len in 8..=32u8,
            x in any::<u128>(),
            host in any::<u128>(),
            len6 in 16..=64u8,
        ) {
            let source = v4(a.to_be_bytes());
            prop_assert!(source.source_slot(seed) < SYN_SOURCE_SLOTS);
            prop_assert!(source.prefix_slot(len, seed) < SYN_PREFIX_SLOTS);
            let neighbour = v4((a ^ (host as u32 & !(prefix::mask(len, 32) as u32))).to_be_bytes());
            prop_assert_eq!(source.prefix_slot(len, seed), neighbour.prefix_slot(len, seed));

            let addr = v6(Ipv6Addr::from(x));
            let same_64 = v6(Ipv6Addr::from(x ^ (host & u128::from(u64::MAX))));
            prop_assert_eq!(addr.source_slot(seed), same_64.source_slot(seed));
            // Flip only bits of the /64 below the prefix length.
            let below = host.checked_shr(64 + u32::from(len6)).unwrap_or(0);
            let in_prefix = v6(Ipv6Addr::from(x ^ (below << 64)));
            prop_assert_eq!(addr.prefix_slot(len6, seed), in_prefix.prefix_slot(len6, seed));
            prop_assert!(addr.source_slot(seed) < SYN_SOURCE_SLOTS);
            prop_assert!(addr.prefix_slot(len6, seed) < SYN_PREFIX_SLOTS);
        }
    }
}
