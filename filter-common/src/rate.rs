//! Rate limits on hashed slots: the arithmetic shared by every level of
//! every limit the ingress program keeps (the SYN buckets of [`crate::syn`],
//! the query limits of [`crate::query`]).
//!
//! A level keeps its state in a plain array of slots; a source (or its
//! prefix) is hashed with a secret per-attach seed onto one slot. There are
//! no keys and no eviction, on purpose: attackers write these maps (every
//! packet they send charges a slot), and with an LRU hash a flood from a
//! million spoofed sources would push a real offender's bucket out and hand
//! it a fresh, full one on its next packet, over and over. Here a flood can
//! only *share* a slot with an offender, which makes that bucket emptier,
//! never fuller. The price is collateral: a source hashed onto the slot of
//! a flooder is limited with it (a collision, which the secret seed keeps
//! attackers from aiming), or every slot runs dry under a spoofed flood so
//! large that the global level is shedding load anyway.
//!
//! A bucket is one timestamp (GCRA, the "virtual scheduling" form of a token
//! bucket): the time at which it is full again. [`admit`] is the check;
//! [`Source`] says which slot a source or its prefix takes. Levels are kept
//! apart by [`Tags`]: the same address hashes to unrelated slots in two
//! levels, so a collision in one says nothing about another.

use crate::{hash, prefix};

/// Highest rate and burst a level accepts (filter-ctl refuses more; the
/// program clamps the rate, which bounds its arithmetic).
pub const MAX_RATE: u32 = 1_000_000;
pub const MAX_BURST: u32 = 1_000_000;

const NS_PER_SEC: u64 = 1_000_000_000;

/// The GCRA check of one bucket for a packet at `now_ns`: the bucket's new
/// `tat_ns` if the packet is admitted (one token taken), `None` if it is
/// over the limit (the bucket is left as it is). The bucket holds `burst`
/// tokens and gains one every `1 s / rate`; the rate is clamped to
/// 1..=MAX_RATE. A `tat_ns` of 0 is a bucket never used: full.
///
/// Refused when the bucket's "full again" time lies more than burst - 1
/// intervals (1 s / rate) ahead of now. A 64-bit division costs more than the
/// rest of a refused packet's path, so this compares multiplied out (rate
/// below 2^20: no overflow below 2^44 ns ahead, about 5 hours) and only an
/// admitted packet, or a bucket hours ahead after its burst was cut down,
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

/// The hash tags of one level, one per address family: they keep the hash
/// inputs of the levels (and families) of every limit apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tags {
    pub v4: u64,
    pub v6: u64,
}

/// A packet's source as the levels see it: the address as a number (IPv4
/// all 32 bits, IPv6 the /64) and its width, hashed onto a level's slots
/// with the per-attach seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    number: u64,
    width: u32,
}

impl Source {
    /// From the source address's word as the parser reads it (wire bytes).
    #[inline(always)]
    pub fn ipv4(word: u32) -> Source {
        Source {
            number: u64::from(prefix::v4_number(word)),
            width: 32,
        }
    }

    /// From the source address's words as the parser reads them (wire bytes).
    #[inline(always)]
    pub fn ipv6(words: &[u32; 4]) -> Source {
        Source {
            number: prefix::v6_top64(words),
            width: 64,
        }
    }

    /// The source's own slot (IPv4 /32, IPv6 /64) among `slots` (a power of two).
    #[inline(always)]
    pub fn slot(&self, tags: Tags, slots: u32, seed: u64) -> u32 {
        self.hashed(self.number, tags, slots, seed)
    }

    /// The slot of the source's `/prefix_len` among `slots` (a power of two).
    #[inline(always)]
    pub fn prefix_slot(&self, prefix_len: u8, tags: Tags, slots: u32, seed: u64) -> u32 {
        let prefix = self.number & prefix::mask(prefix_len, self.width);
        self.hashed(prefix, tags, slots, seed)
    }

    /// The slot of the source's `/prefix_len` together with `key` (a hash
    /// of what else the bucket is for) among `slots` (a power of two).
    #[inline(always)]
    pub fn prefix_key_slot(
        &self,
        prefix_len: u8,
        key: u64,
        tags: Tags,
        slots: u32,
        seed: u64,
    ) -> u32 {
        let prefix = self.number & prefix::mask(prefix_len, self.width);
        // The key mixed first, so that a prefix and a key never cancel out
        // into another pair's value by a plain XOR.
        self.hashed(prefix ^ hash::keyed_mix(key, !seed), tags, slots, seed)
    }

    #[inline(always)]
    fn hashed(&self, number: u64, tags: Tags, slots: u32, seed: u64) -> u32 {
        let tag = if self.width == 32 { tags.v4 } else { tags.v6 };
        hash::keyed_mix(number ^ tag, seed) as u32 & (slots - 1)
    }
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
    const TAGS: Tags = Tags { v4: 1, v6: 2 };
    const OTHER_TAGS: Tags = Tags { v4: 3, v6: 4 };

    /// Offers packets at `times` to one bucket: how many were admitted.
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

    fn v4(octets: [u8; 4]) -> Source {
        Source::ipv4(u32::from_ne_bytes(octets))
    }

    fn v6(addr: Ipv6Addr) -> Source {
        let o = addr.octets();
        Source::ipv6(&core::array::from_fn(|i| {
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

    /// Sources spread over the slots: a /16 of IPv4 sources, and IPv6 /64s
    /// that differ only in their last 16 bits, each take ~58,000 of 262,144.
    #[test]
    fn sources_spread_over_the_slots() {
        let seed = 0x0123_4567_89ab_cdef;
        let slots = 1 << 18;
        let v4_slots: HashSet<u32> = (0..=u16::MAX)
            .map(|n| v4([198, 18, (n >> 8) as u8, n as u8]).slot(TAGS, slots, seed))
            .collect();
        let v6_slots: HashSet<u32> = (0..=u16::MAX)
            .map(|n| v6(Ipv6Addr::new(0x2001, 0xdb8, 0, n, 0, 0, 0, 1)).slot(TAGS, slots, seed))
            .collect();
        // 65536 keys in 262144 slots: random placement fills ~57,800.
        assert!(v4_slots.len() > 56_000, "{}", v4_slots.len());
        assert!(v6_slots.len() > 56_000, "{}", v6_slots.len());
    }

    /// Two levels with different tags place a group of sources independently:
    /// sources sharing a slot in one level rarely share one in the other.
    #[test]
    fn tags_keep_levels_apart() {
        let seed = 0x5eed;
        let slots = 1 << 10;
        let sources: Vec<Source> = (0..=u16::MAX)
            .map(|n| v4([192, 0, (n >> 8) as u8, n as u8]))
            .collect();
        let target = sources[0].slot(TAGS, slots, seed);
        let sharing: Vec<&Source> = sources
            .iter()
            .filter(|s| s.slot(TAGS, slots, seed) == target)
            .collect();
        let target_other = sources[0].slot(OTHER_TAGS, slots, seed);
        let still_sharing = sharing
            .iter()
            .filter(|s| s.slot(OTHER_TAGS, slots, seed) == target_other)
            .count();
        // ~64 share the slot in one level; about 1 of them (1/1024) in the other.
        assert!(sharing.len() > 30, "{}", sharing.len());
        assert!(still_sharing <= 4, "{still_sharing} of {}", sharing.len());
    }

    proptest! {
        /// The GCRA bound: over any stretch of `elapsed` ns, at most
        /// 1 + ((burst - 1) * 1 s / rate + elapsed) / interval packets pass,
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

        /// A quiet bucket is full: `burst` packets at one instant pass, the
        /// next does not. (With the interval rounded down to whole ns, a burst
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

        /// Each admitted packet moves the bucket one interval past now or its
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
            slot_bits in 1..=20u32,
        ) {
            let slots = 1 << slot_bits;
            let source = v4(a.to_be_bytes());
            prop_assert!(source.slot(TAGS, slots, seed) < slots);
            prop_assert!(source.prefix_slot(len, TAGS, slots, seed) < slots);
            let neighbour = v4((a ^ (host as u32 & !(prefix::mask(len, 32) as u32))).to_be_bytes());
            prop_assert_eq!(
                source.prefix_slot(len, TAGS, slots, seed),
                neighbour.prefix_slot(len, TAGS, slots, seed)
            );

            let addr = v6(Ipv6Addr::from(x));
            let same_64 = v6(Ipv6Addr::from(x ^ (host & u128::from(u64::MAX))));
            prop_assert_eq!(addr.slot(TAGS, slots, seed), same_64.slot(TAGS, slots, seed));
            // Flip only bits of the /64 below the prefix length.
            let below = host.checked_shr(64 + u32::from(len6)).unwrap_or(0);
            let in_prefix = v6(Ipv6Addr::from(x ^ (below << 64)));
            prop_assert_eq!(
                addr.prefix_slot(len6, TAGS, slots, seed),
                in_prefix.prefix_slot(len6, TAGS, slots, seed)
            );
            prop_assert!(addr.slot(TAGS, slots, seed) < slots);
            prop_assert!(addr.prefix_slot(len6, TAGS, slots, seed) < slots);
        }
    }
}
