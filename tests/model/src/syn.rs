//! The SYN token buckets (docs/syn-and-lists.md): per source (IPv4 /32,
//! IPv6 /64), per source prefix and global, checked from the narrowest out
//! (with the half-open and connection rules between the prefix's and the
//! global bucket: ingress/tcp.rs); the first level that refuses names the
//! drop, and a level that admitted keeps its spent token. A bucket is a
//! GCRA "full again" time (rate.rs).
//!
//! The penalty: with `syn_penalty` on, a source whose bucket refused
//! `syn_source_burst` SYNs in a row (none admitted in between) is put on the
//! deny list for the penalty time (that SYN: `drop_syn_penalty`).
//!
//! The filter keeps the buckets in hashed slots, with no keys: sources that
//! hash onto one slot share a bucket (the documented approximation). The
//! model mirrors it: buckets are found by the same slot hash (murmur3's
//! finaliser over the address xor a secret seed, docs/syn-and-lists.md),
//! with the seed the runner reads from the loaded filter. The rest, the
//! GCRA arithmetic included, is the model's own.

use std::collections::{BTreeMap, BTreeSet};

use filter_common::{Reason, syn::SynSource};

use crate::{
    Judgement,
    lists::{List, Lists, Prefix},
    parse::{Addr, Family, Ip},
    rate::take,
    settings::{Level, SynSettings},
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    tat_ns: u64,
    /// Refused in a row (source level, while the penalty is on).
    strikes: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Syn {
    sources: BTreeMap<u32, Bucket>,
    prefixes: BTreeMap<u32, Bucket>,
    global: Bucket,
}

/// The slots a SYN's buckets take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slots {
    pub source: u32,
    pub prefix: u32,
}

impl Syn {
    /// The source's and the prefix's rate buckets, from the narrowest out:
    /// the drop, if one refuses (a level that admitted keeps its token).
    pub fn narrow(
        &mut self,
        ip: &Ip<'_>,
        slots: Slots,
        settings: &SynSettings,
        lists: &mut Lists,
        now: u64,
    ) -> Option<Judgement> {
        if let Some(rate) = settings.source.rate {
            let bucket = self.sources.entry(slots.source).or_default();
            if take(&mut bucket.tat_ns, now, rate, settings.source.burst) {
                bucket.strikes = 0;
            } else {
                let Some(penalty_ms) = settings.penalty_ms else {
                    return Some(Judgement::Drop(Reason::DropSynSource));
                };
                bucket.strikes = bucket.strikes.saturating_add(1);
                if bucket.strikes < settings.source.burst.max(1) {
                    return Some(Judgement::Drop(Reason::DropSynSource));
                }
                bucket.strikes = 0;
                let (family, len) = match ip.family {
                    Family::V4 => (Family::V4, 32),
                    Family::V6 => (Family::V6, 64),
                };
                lists.add(
                    List::Deny,
                    Prefix::new(family, ip.src, len),
                    now + penalty_ms * 1_000_000,
                );
                return Some(Judgement::Drop(Reason::DropSynPenalty));
            }
        }
        if let Some(rate) = settings.prefix.rate {
            let bucket = self.prefixes.entry(slots.prefix).or_default();
            if !take(&mut bucket.tat_ns, now, rate, settings.prefix.burst) {
                return Some(Judgement::Drop(Reason::DropSynPrefix));
            }
        }
        None
    }

    /// The global bucket: true if it admits (or is off).
    pub fn global(&mut self, settings: &SynSettings, now: u64) -> bool {
        match settings.global {
            Level {
                rate: Some(rate),
                burst,
            } => take(&mut self.global.tat_ns, now, rate, burst),
            _ => true,
        }
    }

    /// The slots written, for resetting the real buckets.
    pub fn slots_used(&self) -> (BTreeSet<u32>, BTreeSet<u32>) {
        (
            self.sources.keys().copied().collect(),
            self.prefixes.keys().copied().collect(),
        )
    }
}

/// The source's slot in the per-source level and its prefix's slot in the
/// per-prefix level: the filter's documented slot hash
/// (`filter_common::syn::SynSource`, host-tested there), so that sources
/// sharing a slot share a bucket here as they do in the filter.
pub fn slots(family: Family, src: &Addr, settings: &SynSettings, seed: u64) -> Slots {
    let word = |i: usize| u32::from_ne_bytes(src[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let (source, prefix_len) = match family {
        Family::V4 => (SynSource::ipv4(word(0)), settings.prefix_v4),
        Family::V6 => (
            SynSource::ipv6(&[word(0), word(1), word(2), word(3)]),
            settings.prefix_v6,
        ),
    };
    Slots {
        source: source.source_slot(seed),
        prefix: source.prefix_slot(prefix_len, seed),
    }
}
