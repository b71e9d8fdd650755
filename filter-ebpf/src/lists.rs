//! Rules 2 and 3 of ingress, the allow and deny lists: LPM tries of CIDR
//! prefixes, one per list and family (see `filter_common::lists`). Only
//! filter-ctl writes them, except the SYN penalty (syn.rs), which adds deny
//! entries for sources that keep exceeding their bucket.
//!
//! An entry whose expiry has passed stops matching at once; since an LPM
//! lookup returns only the longest match, the lookup then retries past it, so
//! an expired /32 never hides a live /24 around it until filter-ctl removes it.
//!
//! A trie is searched only when its LISTS_IN_USE slot says it may hold
//! entries: an LPM lookup costs a helper call even on an empty trie, and
//! most boxes have empty lists most of the time.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, LpmTrie, lpm_trie::Key};
use filter_common::{
    ListEntry, ListSource,
    lists::{
        IN_USE_ALLOW_V4, IN_USE_ALLOW_V6, IN_USE_DENY_V4, IN_USE_DENY_V6, IN_USE_SLOTS,
        LIST_ENTRIES,
    },
    prefix,
};

use crate::packet::{Family, Ip};

#[map]
static ALLOW_V4: LpmTrie<[u8; 4], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static ALLOW_V6: LpmTrie<[u8; 16], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static DENY_V4: LpmTrie<[u8; 4], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static DENY_V6: LpmTrie<[u8; 16], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static LISTS_IN_USE: Array<u32> = Array::with_max_entries(IN_USE_SLOTS, 0);

/// One list: its two tries and their LISTS_IN_USE slots.
struct Tries {
    v4: &'static LpmTrie<[u8; 4], ListEntry>,
    v6: &'static LpmTrie<[u8; 16], ListEntry>,
    v4_in_use: u32,
    v6_in_use: u32,
}

static ALLOW: Tries = Tries {
    v4: &ALLOW_V4,
    v6: &ALLOW_V6,
    v4_in_use: IN_USE_ALLOW_V4,
    v6_in_use: IN_USE_ALLOW_V6,
};
static DENY: Tries = Tries {
    v4: &DENY_V4,
    v6: &DENY_V6,
    v4_in_use: IN_USE_DENY_V4,
    v6_in_use: IN_USE_DENY_V6,
};

/// Expired entries looked past in one lookup; a deeper pile of nested expired
/// entries (only until filter-ctl cleans up) counts as no match.
const MAX_EXPIRED_SKIPS: usize = 4;

/// True if the packet's source is on the allow list.
#[inline(always)]
pub fn allowed(ip: &Ip, now: u64) -> bool {
    matches(ip, &ALLOW, now)
}

/// True if the packet's source is on the deny list.
#[inline(always)]
pub fn denied(ip: &Ip, now: u64) -> bool {
    matches(ip, &DENY, now)
}

#[inline(always)]
fn matches(ip: &Ip, list: &Tries, now: u64) -> bool {
    match ip.family {
        Family::Ipv4 => {
            in_use(list.v4_in_use) && live_match(list.v4, ip.src[0].to_ne_bytes(), 32, now)
        }
        Family::Ipv6 => {
            in_use(list.v6_in_use) && live_match(list.v6, prefix::v6_bytes(&ip.src), 128, now)
        }
    }
}

#[inline(always)]
fn in_use(slot: u32) -> bool {
    // SAFETY: a valid, aligned element of the array map; read by value (the
    // penalty on another CPU may set it).
    LISTS_IN_USE
        .get_ptr(slot)
        .is_some_and(|flag| unsafe { *flag } != 0)
}

/// The longest live entry covering `addr`: an expired one is skipped by
/// looking again with a prefix one bit shorter than its own.
#[inline(always)]
fn live_match<K: Copy>(trie: &LpmTrie<K, ListEntry>, addr: K, bits: u32, now: u64) -> bool {
    let mut len = bits;
    for _ in 0..MAX_EXPIRED_SKIPS {
        let Some(entry) = trie.get(&Key::new(len, addr)) else {
            return false;
        };
        if entry.is_live(now) {
            return true;
        }
        let Some(shorter) = entry.shorter_lookup() else {
            return false;
        };
        len = shorter;
    }
    false
}

pub enum Penalised {
    Denied,
    /// The deny list is full: the source stays only rate-limited.
    ListFull,
}

/// Puts the packet's source (IPv4 /32, IPv6 /64: the per-source bucket's
/// grain) on the deny list until `expires_ns`.
#[inline(always)]
pub fn penalise(ip: &Ip, expires_ns: u64) -> Penalised {
    let entry = |prefix_len| ListEntry {
        expires_ns,
        prefix_len,
        source: ListSource::SynPenalty as u8,
        _padding: [0; 6],
    };
    let (inserted, slot) = match ip.family {
        Family::Ipv4 => (
            DENY_V4.insert(&Key::new(32, ip.src[0].to_ne_bytes()), &entry(32), 0),
            IN_USE_DENY_V4,
        ),
        Family::Ipv6 => (
            DENY_V6.insert(
                &Key::new(64, prefix::v6_slash64_bytes(&ip.src)),
                &entry(64),
                0,
            ),
            IN_USE_DENY_V6,
        ),
    };
    if inserted.is_err() {
        return Penalised::ListFull;
    }
    // After the insert, so the entry is there when the slot says so. If
    // filter-ctl, finding the trie empty a moment earlier, clears the slot
    // after this store, the source is only rate-limited again until its next
    // penalty sets the slot anew.
    if let Some(flag) = LISTS_IN_USE.get_ptr_mut(slot) {
        // SAFETY: a valid, aligned element of the array map.
        unsafe { *flag = 1 };
    }
    Penalised::Denied
}
