//! The solicited table: queries our egress sent, waiting for their answers.
//! egress/udp.rs records into it, ingress/udp.rs consumes from it; the key,
//! its bucket hash and the slot layout are in filter_common::solicited.
//!
//! Only egress writes it, so a flood of spoofed responses can never evict a
//! real entry. It is set-associative (an array of buckets of a few slots): a
//! key hashes to one bucket; recording takes a free, expired or identical slot,
//! and when the bucket is full of live entries evicts the one closest to expiry,
//! counted as `egress_query_evicted`. An answer consumes its entry.
//!
//! In front of it, SOLICITED_LATEST holds each bucket's latest deadline, so
//! that a response to a bucket with nothing live in it (every response of a
//! spoofed flood, almost) is refused after reading 8 bytes of a 128 KiB array
//! that stays in the CPU's cache, instead of four slots of a 3.5 MiB table
//! that does not: that cache miss was a fifth of the drop path's cost.
//!
//! Every CPU's egress and ingress use the same slots at the same time, so a
//! slot is only ever read and written field by field through its map
//! pointer ([`Slot`]), never through a reference.

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{SOLICITED_BUCKETS, SOLICITED_WAYS, SolicitedKey, SolicitedSlot, expiry};

use crate::config;

// Both memory-mappable, so that `filter-ctl status` counts what is in use
// without one syscall per slot.
#[map]
static SOLICITED: Array<SolicitedSlot> =
    Array::with_max_entries(SOLICITED_BUCKETS * SOLICITED_WAYS, BPF_F_MMAPABLE);

#[map]
static SOLICITED_LATEST: Array<u64> = Array::with_max_entries(SOLICITED_BUCKETS, BPF_F_MMAPABLE);

/// Whether recording a query found room or had to evict a live entry.
pub enum Recorded {
    Stored,
    Evicted,
}

/// Records `key` as asked for until `now + lifetime`.
#[inline(always)]
pub fn record(key: &SolicitedKey, now: u64, lifetime: u64) -> Recorded {
    let bucket = key.bucket();
    let expires_ns = expiry::deadline(now, lifetime);
    raise_latest(bucket, expires_ns);
    let first = bucket * SOLICITED_WAYS;
    let mut victim = first;
    let mut soonest = u64::MAX;
    for way in 0..SOLICITED_WAYS {
        let index = first + way;
        let Some(slot) = Slot::at(index) else {
            continue;
        };
        let slot_expires = slot.expires_ns();
        if !expiry::is_live(slot_expires, now) || slot.holds(key) {
            slot.fill(key, expires_ns);
            return Recorded::Stored;
        }
        if slot_expires < soonest {
            soonest = slot_expires;
            victim = index;
        }
    }
    if let Some(slot) = Slot::at(victim) {
        slot.fill(key, expires_ns);
    }
    Recorded::Evicted
}

/// True, and the entry is consumed, if `key` was asked for and has not expired.
#[inline(always)]
pub fn consume(key: &SolicitedKey) -> bool {
    let bucket = key.bucket();
    // SAFETY: a valid, aligned element of the array map; read by value.
    let latest = SOLICITED_LATEST
        .get_ptr(bucket)
        .map_or(0, |latest| unsafe { *latest });
    // A bucket nothing was ever recorded in (most of a flood's) needs no clock.
    if latest == 0 {
        return false;
    }
    let now = config::now_ns();
    if !expiry::is_live(latest, now) {
        return false;
    }
    let first = bucket * SOLICITED_WAYS;
    for way in 0..SOLICITED_WAYS {
        let Some(slot) = Slot::at(first + way) else {
            continue;
        };
        if expiry::is_live(slot.expires_ns(), now) && slot.holds(key) {
            slot.clear();
            return true;
        }
    }
    false
}

/// Moves the bucket's latest deadline up to `expires_ns`. Two CPUs recording
/// into one bucket at the same instant may leave the earlier of their two
/// deadlines (a plain store, no atomic max in BPF): they differ by at most a
/// clock tick, which shortens one entry's life by as much.
#[inline(always)]
fn raise_latest(bucket: u32, expires_ns: u64) {
    if let Some(latest) = SOLICITED_LATEST.get_ptr_mut(bucket) {
        // SAFETY: a valid, aligned element of the array map, read and
        // written by value.
        unsafe {
            if *latest < expires_ns {
                *latest = expires_ns;
            }
        }
    }
}

/// A slot of SOLICITED, by its map pointer.
#[derive(Clone, Copy)]
struct Slot(*mut SolicitedSlot);

// SAFETY (every access below): the pointer is a valid, aligned element of
// the array map, which outlives the program; fields are copied in and out,
// no reference to the shared slot is made.
impl Slot {
    #[inline(always)]
    fn at(index: u32) -> Option<Slot> {
        SOLICITED.get_ptr_mut(index).map(Slot)
    }

    #[inline(always)]
    fn expires_ns(self) -> u64 {
        unsafe { (*self.0).expires_ns }
    }

    /// Field by field, the token first: a slot of the same bucket that
    /// holds another query nearly always differs there. (`{ .. }` copies an
    /// address out before comparing it.)
    #[inline(always)]
    fn holds(self, key: &SolicitedKey) -> bool {
        let stored = unsafe { &raw const (*self.0).key };
        unsafe {
            (*stored).token == key.token
                && (*stored).local_port == key.local_port
                && (*stored).remote_port == key.remote_port
                && (*stored).family == key.family
                && { (*stored).local_addr } == key.local_addr
                && { (*stored).remote_addr } == key.remote_addr
        }
    }

    #[inline(always)]
    fn fill(self, key: &SolicitedKey, expires_ns: u64) {
        unsafe {
            (*self.0).key = *key;
            (*self.0).expires_ns = expires_ns;
        }
    }

    /// Consumed: free for the next query of the bucket.
    #[inline(always)]
    fn clear(self) {
        unsafe { (*self.0).expires_ns = 0 };
    }
}
