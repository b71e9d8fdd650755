//! Set-associative tables: the one rule for where a key goes, shared by the
//! solicited queries ([`crate::solicited`]), the handshakes
//! ([`crate::handshake`]) and the connections ([`crate::conn`]), each an
//! array map of sets of a few slots (filter-ebpf's sets.rs reads and writes
//! them). A key hashes to one set (each table's own hash).
//!
//! Every slot has a stamp: a number that says whether it is occupied (not
//! 0), whether its entry is live, and in which order live entries go: the
//! deadline of a solicited query or a handshake, the window of a
//! connection's last activity. What "live" is, each table says (a deadline
//! not yet passed; a window that still counts).
//!
//! Recording a key into its set takes, looking at the slots in order:
//! 1. the slot that holds the key already, if one does: a key is never in
//!    two slots of its set. What recording does there is the table's
//!    duplicate rule: a solicited query (sent again with the same id and
//!    port) and a handshake (a SYN-ACK sent again) refresh their deadline,
//!    so one answer passes, and one ACK completes; a connection seen
//!    opening twice (its completing ACK sent again) stays as it is;
//! 2. otherwise the first slot whose entry is not live (free, consumed,
//!    expired): a live entry is never evicted while its set has such a slot;
//! 3. otherwise the live entry with the lowest stamp (closest to its
//!    deadline, least recently active), the first of equals in slot order:
//!    it is evicted, and the table counts it.
//!
//! A key is found (an answer consumes its query, an ACK completes its
//! handshake, a segment follows its connection) in the slot that holds it,
//! if that slot's stamp says it may be used (live, or for connections,
//! occupied).

/// Where recording a key goes in its set: a way (slot) of the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The key's own slot: the table's duplicate rule applies.
    Own(u32),
    /// A slot whose entry is not live.
    Free(u32),
    /// A live entry of another key, the first in eviction order.
    Evict(u32),
}

impl Place {
    /// The way, whatever the kind of place.
    #[inline(always)]
    pub const fn way(self) -> u32 {
        match self {
            Place::Own(way) | Place::Free(way) | Place::Evict(way) => way,
        }
    }
}

/// The choice of a place, made one slot at a time in slot order: the eBPF
/// side reads each slot from its map as it goes, and stops reading once
/// [`Choice::see`] says the key's own slot is found.
#[derive(Clone, Copy, Debug)]
pub struct Choice {
    own: Option<u32>,
    free: Option<u32>,
    victim: u32,
    lowest: u64,
}

impl Default for Choice {
    fn default() -> Self {
        Choice::new()
    }
}

impl Choice {
    #[inline(always)]
    pub const fn new() -> Choice {
        Choice {
            own: None,
            free: None,
            victim: 0,
            lowest: u64::MAX,
        }
    }

    /// Way `way` of the set, with its `stamp` and whether its entry is
    /// `live`; `holds` tells whether an occupied slot holds the key (asked
    /// only of occupied slots, until the key's own is found). True once
    /// it is: the later ways change nothing.
    #[inline(always)]
    pub fn see(&mut self, way: u32, stamp: u64, live: bool, holds: impl FnOnce() -> bool) -> bool {
        if self.own.is_some() {
            return true;
        }
        if stamp != 0 && holds() {
            self.own = Some(way);
            return true;
        }
        if !live {
            if self.free.is_none() {
                self.free = Some(way);
            }
        } else if stamp < self.lowest {
            self.lowest = stamp;
            self.victim = way;
        }
        false
    }

    /// Where the key goes, after every way was seen (or its own was found).
    #[inline(always)]
    pub const fn place(&self) -> Place {
        match (self.own, self.free) {
            (Some(way), _) => Place::Own(way),
            (None, Some(way)) => Place::Free(way),
            (None, None) => Place::Evict(self.victim),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::{collections::BTreeSet, vec::Vec};

    use proptest::prelude::*;

    use super::*;

    /// One slot of a set in the tests: a key and a deadline (0: free).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Slot {
        key: u8,
        stamp: u64,
    }

    fn is_live(stamp: u64, now: u64) -> bool {
        stamp > now
    }

    /// The choice, as the eBPF side makes it: way by way, stopping at the
    /// key's own.
    fn choose(set: &[Slot], key: u8, now: u64) -> Place {
        let mut choice = Choice::new();
        for (way, slot) in set.iter().enumerate() {
            if choice.see(way as u32, slot.stamp, is_live(slot.stamp, now), || {
                slot.key == key
            }) {
                break;
            }
        }
        choice.place()
    }

    /// The same rule, written from the module documentation with iterators.
    fn expected(set: &[Slot], key: u8, now: u64) -> Place {
        if let Some(way) = set.iter().position(|s| s.stamp != 0 && s.key == key) {
            return Place::Own(way as u32);
        }
        if let Some(way) = set.iter().position(|s| !is_live(s.stamp, now)) {
            return Place::Free(way as u32);
        }
        let lowest = set.iter().map(|s| s.stamp).min().expect("a set has slots");
        let way = set
            .iter()
            .position(|s| s.stamp == lowest)
            .expect("it is there");
        Place::Evict(way as u32)
    }

    fn any_set() -> impl Strategy<Value = Vec<Slot>> {
        // Few keys and stamps, so that duplicates, ties and expired slots
        // are common.
        proptest::collection::vec(
            (0..6u8, prop_oneof![Just(0u64), 1..8u64]).prop_map(|(key, stamp)| Slot { key, stamp }),
            1..=8,
        )
    }

    #[test]
    fn a_full_set_evicts_the_lowest_stamp_first_of_equals() {
        let set = [
            Slot { key: 1, stamp: 9 },
            Slot { key: 2, stamp: 7 },
            Slot { key: 3, stamp: 7 },
            Slot { key: 4, stamp: 8 },
        ];
        assert_eq!(choose(&set, 5, 0), Place::Evict(1));
        assert_eq!(choose(&set, 3, 0), Place::Own(2));
        // At 7, the two entries of deadline 7 are no longer live.
        assert_eq!(choose(&set, 5, 7), Place::Free(1));
    }

    #[test]
    fn an_expired_slot_of_the_key_is_still_its_own() {
        let set = [Slot { key: 1, stamp: 0 }, Slot { key: 2, stamp: 3 }];
        assert_eq!(choose(&set, 2, 5), Place::Own(1));
        // A free slot (stamp 0) holds nothing, whatever its key says.
        assert_eq!(choose(&set, 1, 5), Place::Free(0));
    }

    proptest! {
        /// The way-by-way choice is the documented rule.
        #[test]
        fn the_choice_is_the_documented_rule(set in any_set(), key in 0..6u8, now in 0..9u64) {
            prop_assert_eq!(choose(&set, key, now), expected(&set, key, now));
        }

        /// The duplicate rule: where a slot holds the key, recording goes
        /// there, so no sequence of recordings stores a key twice.
        #[test]
        fn a_key_is_never_stored_twice(
            steps in proptest::collection::vec((0..6u8, 1..5u64, 0..3u64), 1..60),
            ways in 1..6usize,
        ) {
            let mut set = std::vec![Slot { key: 0, stamp: 0 }; ways];
            let mut now = 1;
            for (key, lifetime, wait) in steps {
                now += wait;
                let way = choose(&set, key, now).way() as usize;
                set[way] = Slot { key, stamp: now + lifetime };
                let occupied: Vec<u8> = set.iter().filter(|s| s.stamp != 0).map(|s| s.key).collect();
                let distinct: BTreeSet<u8> = occupied.iter().copied().collect();
                prop_assert_eq!(distinct.len(), occupied.len(), "{:?}", set);
            }
        }

        /// A live entry is evicted only from a set whose every entry is
        /// live, and then the one with the lowest stamp, the first of equals.
        #[test]
        fn only_a_full_set_evicts_and_then_in_order(set in any_set(), key in 0..6u8, now in 0..9u64) {
            match choose(&set, key, now) {
                Place::Evict(way) => {
                    prop_assert!(set.iter().all(|s| is_live(s.stamp, now)));
                    let way = way as usize;
                    prop_assert!(set[..way].iter().all(|s| s.stamp > set[way].stamp));
                    prop_assert!(set[way..].iter().all(|s| s.stamp >= set[way].stamp));
                }
                Place::Free(way) => {
                    prop_assert!(!is_live(set[way as usize].stamp, now));
                    prop_assert!(set[..way as usize].iter().all(|s| is_live(s.stamp, now)));
                }
                Place::Own(way) => {
                    prop_assert_eq!(set[way as usize].key, key);
                    prop_assert!(set[way as usize].stamp != 0);
                }
            }
        }
    }
}
