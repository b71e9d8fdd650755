//! The solicited table: queries our egress sent, waiting for their answers.
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

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{SOLICITED_BUCKETS, SOLICITED_WAYS, SolicitedKey, SolicitedSlot};

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

/// Records `key` as asked for until `now + ttl`.
#[inline(always)]
pub fn record(key: &SolicitedKey, now: u64, ttl: u64) -> Recorded {
    let bucket = key.bucket();
    raise_latest(bucket, now + ttl);
    let first = bucket * SOLICITED_WAYS;
    let mut victim = first;
    let mut soonest = u64::MAX;
    for way in 0..SOLICITED_WAYS {
        let index = first + way;
        let Some(slot) = SOLICITED.get_ptr_mut(index) else {
            continue;
        };
        // SAFETY: the pointer is a valid slot of the array map.
        let slot = unsafe { &mut *slot };
        if slot.expires_ns <= now || slot.key == *key {
            slot.key = *key;
            slot.expires_ns = now + ttl;
            return Recorded::Stored;
        }
        if slot.expires_ns < soonest {
            soonest = slot.expires_ns;
            victim = index;
        }
    }
    if let Some(slot) = SOLICITED.get_ptr_mut(victim) {
        // SAFETY: as above.
        let slot = unsafe { &mut *slot };
        slot.key = *key;
        slot.expires_ns = now + ttl;
    }
    Recorded::Evicted
}

/// True, and the entry is consumed, if `key` was asked for and has not expired.
#[inline(always)]
pub fn consume(key: &SolicitedKey, now: u64) -> bool {
    let bucket = key.bucket();
    match SOLICITED_LATEST.get(bucket) {
        Some(latest) if *latest > now => {}
        _ => return false,
    }
    let first = bucket * SOLICITED_WAYS;
    for way in 0..SOLICITED_WAYS {
        let Some(slot) = SOLICITED.get_ptr_mut(first + way) else {
            continue;
        };
        // SAFETY: the pointer is a valid slot of the array map.
        let slot = unsafe { &mut *slot };
        if slot.expires_ns > now && slot.key == *key {
            slot.expires_ns = 0;
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
        // SAFETY: a valid, aligned element of the array map.
        unsafe {
            if *latest < expires_ns {
                *latest = expires_ns;
            }
        }
    }
}
