//! TCP SYN defence: token buckets per source, per source prefix and global.
//!
//! Every level is an array of [`SynBucket`] slots, one GCRA timestamp each
//! plus the penalty count; which slot a source takes and the GCRA check are
//! the shared rate-limit arithmetic of [`crate::rate`] (hashed slots, no keys,
//! no eviction, a secret per-attach seed: see there why). With
//! `SYN_SOURCE_SLOTS` slots a collision with a flooder is 1 in 262144 per
//! pair, and every slot runs dry only under a spoofed flood of over 5
//! million SYN/s with the defaults (slots x source rate), where the global level is
//! shedding load anyway.
//!
//! The buckets are shared by all CPUs, not per-CPU: per-CPU buckets would
//! multiply every rate by the number of CPUs that RSS spreads a flood over.
//! A SYN over the limit only reads its bucket, so a flood against an empty
//! bucket costs a read of a shared cache line and never bounces it between
//! CPUs. An admitted SYN writes it with a plain store (the BPF target of our
//! Rust toolchain has no compare-and-swap): two CPUs that take the same
//! token within the same few nanoseconds both pass. That race only exists
//! while the bucket has tokens and costs at most one extra SYN per colliding
//! CPU, which is the usual, benign trade for a rate limit.
//!
//! Here: [`strike`] (the penalty count) and [`SynSource`] (which slots a
//! source's buckets take). The program only reads and writes the slots.

use crate::rate::{Source, Tags};

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

/// A SYN's source as the buckets see it: its [`Source`] (IPv4 /32, IPv6
/// /64), hashed onto the slots of the per-source and per-prefix levels with
/// the per-attach seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynSource(Source);

/// Distinguish the hash inputs of the two levels (and families).
const SOURCE_TAGS: Tags = Tags {
    v4: 0x5f4e_7c01,
    v6: 0x5f4e_7c02,
};
const PREFIX_TAGS: Tags = Tags {
    v4: 0x5f4e_7c03,
    v6: 0x5f4e_7c04,
};

impl SynSource {
    /// From the source address's word as the parser reads it (wire bytes).
    #[inline(always)]
    pub fn ipv4(word: u32) -> SynSource {
        SynSource(Source::ipv4(word))
    }

    /// From the source address's words as the parser reads them (wire bytes).
    #[inline(always)]
    pub fn ipv6(words: &[u32; 4]) -> SynSource {
        SynSource(Source::ipv6(words))
    }

    /// The source's slot in SYN_SOURCES.
    #[inline(always)]
    pub fn source_slot(&self, seed: u64) -> u32 {
        self.0.slot(SOURCE_TAGS, SYN_SOURCE_SLOTS, seed)
    }

    /// The slot of the source's `/prefix_len` in SYN_PREFIXES.
    #[inline(always)]
    pub fn prefix_slot(&self, prefix_len: u8, seed: u64) -> u32 {
        self.0
            .prefix_slot(prefix_len, PREFIX_TAGS, SYN_PREFIX_SLOTS, seed)
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::SynBucket {}
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::prefix;

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

    proptest! {
        /// The SYN levels' slots are in their maps' ranges, and a prefix's
        /// sources share its slot (the placement itself: crate::rate).
        #[test]
        fn syn_slots_are_in_range_and_follow_the_prefix(
            seed in any::<u64>(),
            a in any::<u32>(),
            host in any::<u32>(),
            len in 8..=32u8,
        ) {
            let source = SynSource::ipv4(a.to_be());
            let neighbour = SynSource::ipv4((a ^ (host & !(prefix::mask(len, 32) as u32))).to_be());
            prop_assert!(source.source_slot(seed) < SYN_SOURCE_SLOTS);
            prop_assert!(source.prefix_slot(len, seed) < SYN_PREFIX_SLOTS);
            prop_assert_eq!(source.prefix_slot(len, seed), neighbour.prefix_slot(len, seed));
        }
    }
}
