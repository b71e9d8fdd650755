//! The solicited table: queries our egress sent, waiting for their answers.
//!
//! Only egress writes it, so a flood of spoofed responses can never evict a
//! real entry. It is set-associative (an array of buckets of a few slots): a
//! key hashes to one bucket; recording takes a free, expired or identical slot,
//! and when the bucket is full of live entries evicts the one closest to expiry,
//! counted as `egress_query_evicted`. An answer consumes its entry.

use aya_ebpf::{macros::map, maps::Array};
use filter_common::{SOLICITED_BUCKETS, SOLICITED_WAYS, SolicitedKey, SolicitedSlot};

#[map]
static SOLICITED: Array<SolicitedSlot> =
    Array::with_max_entries(SOLICITED_BUCKETS * SOLICITED_WAYS, 0);

/// Whether recording a query found room or had to evict a live entry.
pub enum Recorded {
    Stored,
    Evicted,
}

/// Records `key` as asked for until `now + ttl`.
#[inline(always)]
pub fn record(key: &SolicitedKey, now: u64, ttl: u64) -> Recorded {
    let first = bucket(key);
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
    let first = bucket(key);
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

/// First slot of the key's bucket: FNV-1a over the key's words.
#[inline(always)]
fn bucket(key: &SolicitedKey) -> u32 {
    let words = [
        key.local_addr[0],
        key.local_addr[1],
        key.local_addr[2],
        key.local_addr[3],
        key.remote_addr[0],
        key.remote_addr[1],
        key.remote_addr[2],
        key.remote_addr[3],
        u32::from(key.local_port) << 16 | u32::from(key.remote_port),
        key.token as u32,
        (key.token >> 32) as u32,
    ];
    let mut hash: u32 = 0x811c_9dc5;
    for word in words {
        hash ^= word;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % SOLICITED_BUCKETS) * SOLICITED_WAYS
}
