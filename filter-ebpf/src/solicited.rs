//! The solicited table: queries our egress sent, waiting for their answers.
//! egress/udp.rs records into it, ingress/udp.rs consumes from it; the key,
//! its set hash and the slot layout are in filter_common::solicited.
//!
//! Only egress writes it, so a flood of spoofed responses can never evict a
//! real entry. It is set-associative (sets.rs, filter_common::sets): a key
//! hashes to one set of a few slots; recording takes the key's own slot (a
//! query sent again with the same id and port refreshes its deadline: one
//! entry, so one answer passes), else a free, consumed or expired slot,
//! else evicts the entry closest to expiry, counted as
//! `egress_query_evicted`. An answer consumes its entry.
//!
//! In front of it, SOLICITED_LATEST holds each set's latest deadline, so
//! that a response to a set with nothing live in it (every response of a
//! spoofed flood, almost) is refused after reading 8 bytes of a 128 KiB array
//! that stays in the CPU's cache, instead of four slots of a 3.5 MiB table
//! that does not: that cache miss was a fifth of the drop path's cost.

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{
    SOLICITED_BUCKETS, SOLICITED_WAYS, SolicitedKey, SolicitedSlot, expiry, sets::Place,
};

use crate::{
    config,
    kernel::{Cell, field},
    sets::{Latest, Slot, Table},
};

// Both memory-mappable, so that `filter-ctl status` counts what is in use
// without one syscall per slot.
#[map]
static SOLICITED: Array<SolicitedSlot> =
    Array::with_max_entries(SOLICITED_BUCKETS * SOLICITED_WAYS, BPF_F_MMAPABLE);

#[map]
static SOLICITED_LATEST: Array<u64> = Array::with_max_entries(SOLICITED_BUCKETS, BPF_F_MMAPABLE);

static TABLE: Table<SolicitedSlot, SOLICITED_WAYS> = Table::new(&SOLICITED);
static LATEST: Latest = Latest::new(&SOLICITED_LATEST);

impl Slot for SolicitedSlot {
    type Key = SolicitedKey;

    #[inline(always)]
    fn stamp(slot: Cell<Self>) -> Cell<u64> {
        field!(slot, expires_ns)
    }

    /// The token first: a slot of the same set that holds another query
    /// nearly always differs there.
    #[inline(always)]
    fn holds(slot: Cell<Self>, key: &SolicitedKey) -> bool {
        field!(slot, key.token).get() == key.token
            && field!(slot, key.local_port).get() == key.local_port
            && field!(slot, key.remote_port).get() == key.remote_port
            && field!(slot, key.family).get() == key.family
            && field!(slot, key.local_addr).get() == key.local_addr
            && field!(slot, key.remote_addr).get() == key.remote_addr
    }
}

/// Whether recording a query found room or had to evict a live entry.
pub enum Recorded {
    Stored,
    Evicted,
}

/// Records `key` as asked for until `now + lifetime`.
#[inline(always)]
pub fn record(key: &SolicitedKey, now: u64, lifetime: u64) -> Recorded {
    let set = key.bucket();
    let expires_ns = expiry::deadline(now, lifetime);
    LATEST.raise(set, expires_ns);
    let Some((place, slot)) = TABLE.place(set, key, |stamp| expiry::is_live(stamp, now)) else {
        return Recorded::Stored;
    };
    // Its own slot refreshed, or a free or evicted one filled.
    field!(slot, key).set(*key);
    field!(slot, expires_ns).set(expires_ns);
    match place {
        Place::Evict(_) => Recorded::Evicted,
        Place::Own(_) | Place::Free(_) => Recorded::Stored,
    }
}

/// True, and the entry is consumed, if `key` was asked for and has not expired.
#[inline(always)]
pub fn consume(key: &SolicitedKey) -> bool {
    let set = key.bucket();
    let Some(now) = live_set(set) else {
        return false;
    };
    match TABLE.find(set, key, |stamp| expiry::is_live(stamp, now)) {
        Some(slot) => {
            // Consumed: free for the next query of the set.
            field!(slot, expires_ns).set(0);
            true
        }
        None => false,
    }
}

/// Whether `key`'s set may hold it: false for a set with nothing live
/// (every response of a spoofed flood, almost), which the dispatcher drops
/// without entering `wan_udp` (ingress/mod.rs).
#[inline(always)]
pub fn may_hold(key: &SolicitedKey) -> bool {
    live_set(key.bucket()).is_some()
}

/// The clock, if set `set` holds a live entry by its latest deadline.
#[inline(always)]
fn live_set(set: u32) -> Option<u64> {
    let latest = LATEST.get(set);
    // A set nothing was ever recorded in (most of a flood's) needs no clock.
    if latest == 0 {
        return None;
    }
    let now = config::now_ns();
    expiry::is_live(latest, now).then_some(now)
}
