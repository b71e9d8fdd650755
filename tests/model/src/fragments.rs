//! Fragments (docs/rules.md, *Fragments*): the verdict of every first fragment is
//! remembered for `fragment_lifetime`, keyed by source, destination, IP id
//! and the protocol that follows the fragmentation, and later fragments
//! follow it. A later fragment whose first was not seen (or has expired) is
//! an orphan: the `orphan_fragments` policy decides.
//!
//! The filter's table is an LRU of 8192 entries that attackers can fill;
//! the generator never comes near that, so the model keeps every entry.

use std::collections::BTreeMap;

use filter_common::Reason;

use crate::{
    Judgement,
    parse::{Addr, Family, FragmentId},
    settings::Orphans,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub family: Family,
    pub src: Addr,
    pub dst: Addr,
    pub id: FragmentId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verdict {
    expires_ns: u64,
    dropped: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragments {
    entries: BTreeMap<Key, Verdict>,
}

impl Fragments {
    pub fn remember(&mut self, key: Key, dropped: bool, now: u64, lifetime_ns: u64) {
        self.entries.insert(
            key,
            Verdict {
                expires_ns: now + lifetime_ns,
                dropped,
            },
        );
    }

    pub fn follow(&self, key: &Key, now: u64, orphans: Orphans) -> Judgement {
        match self.entries.get(key) {
            Some(verdict) if verdict.expires_ns > now => {
                if verdict.dropped {
                    Judgement::Drop(Reason::DropFragment)
                } else {
                    Judgement::Pass(Reason::PassFragment)
                }
            }
            _ => match orphans {
                Orphans::Drop => Judgement::Drop(Reason::DropOrphanFragment),
                Orphans::Pass => Judgement::Pass(Reason::PassOrphanFragment),
            },
        }
    }

    /// The keys written, for resetting the real table.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.entries.keys()
    }
}
