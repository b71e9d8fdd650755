//! The set-associative tables (solicited.rs, handshake.rs, conn.rs) in
//! their array maps: the one loop over a set's slots. Where a key goes and
//! which entry is evicted is filter_common::sets, tested on the host; each
//! table says what its stamp is, how its key compares and what it does on
//! a duplicate.
//!
//! Every CPU's egress and ingress use the same slots at the same time, so a
//! slot is only read and written field by field through its cell.

use aya_ebpf::maps::Array;
use filter_common::sets::{Choice, Place};

use crate::kernel::{Cell, IndexedCells as _};

/// A slot of a set-associative table.
pub trait Slot: Copy + 'static {
    type Key;

    /// The slot's stamp: its deadline or window; 0 when free.
    fn stamp(slot: Cell<Self>) -> Cell<u64>;

    /// Whether the slot's key is `key`, compared field by field, the field
    /// in which keys sharing a set differ most often first.
    fn holds(slot: Cell<Self>, key: &Self::Key) -> bool;
}

/// A table of sets of `WAYS` slots in an array map.
pub struct Table<S: Slot, const WAYS: u32> {
    slots: &'static Array<S>,
}

impl<S: Slot, const WAYS: u32> Table<S, WAYS> {
    pub const fn new(slots: &'static Array<S>) -> Self {
        Table { slots }
    }

    /// Where `key` goes in set `set` (see filter_common::sets; `live`
    /// tells from a stamp whether its entry is live), and that slot.
    #[inline(always)]
    pub fn place(
        &self,
        set: u32,
        key: &S::Key,
        live: impl Fn(u64) -> bool,
    ) -> Option<(Place, Cell<S>)> {
        let first = set * WAYS;
        let mut choice = Choice::new();
        for way in 0..WAYS {
            let Some(slot) = self.slots.cell(first + way) else {
                continue;
            };
            let stamp = S::stamp(slot).get();
            if choice.see(way, stamp, live(stamp), || S::holds(slot, key)) {
                break;
            }
        }
        let place = choice.place();
        self.slots
            .cell(first + place.way())
            .map(|slot| (place, slot))
    }

    /// The slot of set `set` holding `key`, if its stamp says it may be
    /// used (`usable`: live, or occupied).
    #[inline(always)]
    pub fn find(&self, set: u32, key: &S::Key, usable: impl Fn(u64) -> bool) -> Option<Cell<S>> {
        let first = set * WAYS;
        for way in 0..WAYS {
            let Some(slot) = self.slots.cell(first + way) else {
                continue;
            };
            if usable(S::stamp(slot).get()) && S::holds(slot, key) {
                return Some(slot);
            }
        }
        None
    }
}

/// Each set's latest deadline, in front of a table whose entries expire
/// (solicited.rs, handshake.rs): a lookup in a set with nothing live (every
/// one of a spoofed flood, almost) reads 8 bytes of a small array that
/// stays in the CPU's cache instead of the set's slots, which do not.
pub struct Latest(&'static Array<u64>);

impl Latest {
    pub const fn new(deadlines: &'static Array<u64>) -> Self {
        Latest(deadlines)
    }

    /// The latest deadline recorded in set `set`; 0 if none ever was.
    #[inline(always)]
    pub fn get(&self, set: u32) -> u64 {
        self.0.cell(set).map_or(0, Cell::get)
    }

    /// Moves set `set`'s latest deadline up to `deadline`. Two CPUs
    /// recording into one set at the same instant may leave the earlier of
    /// their two deadlines (a plain store, no atomic max in BPF): they
    /// differ by at most a clock tick, which shortens one entry's life by
    /// as much.
    #[inline(always)]
    pub fn raise(&self, set: u32, deadline: u64) {
        if let Some(latest) = self.0.cell(set)
            && latest.get() < deadline
        {
            latest.set(deadline);
        }
    }
}
