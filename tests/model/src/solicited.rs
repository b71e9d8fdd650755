//! The solicited table (docs/rules.md, *State that attackers can write is kept
//! apart*): queries egress recorded, waiting for their answers.
//!
//! The filter keeps them in a set-associative table, and docs/rules.md states
//! its approximation: a key hashes to one bucket of 4 slots; a query takes
//! a free, expired or identical slot of its bucket (the first such, in slot
//! order); when the bucket is full of live entries, the entry closest to
//! expiry is evicted (`egress_query_evicted`). The model mirrors that
//! approximation rather than keeping an exact set, because the generator
//! fills buckets on purpose to check the eviction rule: it uses the
//! documented bucket hash, `filter_common::SolicitedKey::bucket`. An answer
//! consumes the first live slot holding its key.

use std::collections::{BTreeMap, BTreeSet};

use filter_common::{SOLICITED_WAYS, SolicitedKey};

use crate::parse::{Addr, Family};

/// What an answer must echo: addresses and ports seen from our side, and
/// the DNS id, the NTP request's transmit timestamp, or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub family: Family,
    pub local: Addr,
    pub remote: Addr,
    pub local_port: u16,
    pub remote_port: u16,
    pub token: Token,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Token {
    Dns(u16),
    Ntp([u8; 8]),
    None,
}

impl Key {
    /// The key as the filter's table stores it (filter_common's layout:
    /// addresses as wire bytes, the token as a number), for its bucket.
    pub fn stored(&self) -> SolicitedKey {
        let words = |addr: &Addr| {
            std::array::from_fn(|i| {
                u32::from_ne_bytes(addr[4 * i..4 * i + 4].try_into().expect("4 bytes"))
            })
        };
        SolicitedKey {
            local_addr: words(&self.local),
            remote_addr: words(&self.remote),
            local_port: self.local_port,
            remote_port: self.remote_port,
            family: match self.family {
                Family::V4 => 4,
                Family::V6 => 6,
            },
            token: match self.token {
                Token::Dns(id) => u64::from(id),
                Token::Ntp(bytes) => u64::from_ne_bytes(bytes),
                Token::None => 0,
            },
        }
    }

    pub fn bucket(&self) -> u32 {
        self.stored().bucket()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    key: Key,
    expires_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    Evicted,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Solicited {
    buckets: BTreeMap<u32, [Option<Slot>; SOLICITED_WAYS as usize]>,
}

impl Solicited {
    pub fn record(&mut self, key: Key, now: u64, lifetime_ns: u64) -> Recorded {
        let ways = self.buckets.entry(key.bucket()).or_default();
        let fresh = Slot {
            key,
            expires_ns: now + lifetime_ns,
        };
        let reusable = ways.iter().position(|slot| match slot {
            None => true,
            Some(slot) => slot.expires_ns <= now || slot.key == key,
        });
        if let Some(way) = reusable {
            ways[way] = Some(fresh);
            return Recorded::Stored;
        }
        // Full of live entries: the one closest to expiry goes (the first
        // of equals).
        let mut victim = 0;
        for way in 1..ways.len() {
            if ways[way].map(|s| s.expires_ns) < ways[victim].map(|s| s.expires_ns) {
                victim = way;
            }
        }
        ways[victim] = Some(fresh);
        Recorded::Evicted
    }

    /// True, and the entry is consumed, if `key` is live.
    pub fn consume(&mut self, key: &Key, now: u64) -> bool {
        let Some(ways) = self.buckets.get_mut(&key.bucket()) else {
            return false;
        };
        for slot in ways.iter_mut() {
            if let Some(live) = slot
                && live.expires_ns > now
                && live.key == *key
            {
                live.expires_ns = 0;
                return true;
            }
        }
        false
    }

    /// The buckets written, for resetting the real table.
    pub fn buckets(&self) -> BTreeSet<u32> {
        self.buckets.keys().copied().collect()
    }
}
