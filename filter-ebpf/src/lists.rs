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
//!
//! Each list has two copies of its tries; the config says which is live
//! (Config::list_copy). filter-ctl writes a change into the other copy and
//! switches, so a change of many prefixes takes effect at once, and a
//! filter-ctl killed halfway leaves the old list live.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, LpmTrie, lpm_trie::Key};
use filter_common::{
    Config, ListEntry, ListSource, Reason,
    lists::{
        IN_USE_ALLOW_V4, IN_USE_ALLOW_V6, IN_USE_DENY_V4, IN_USE_DENY_V6, IN_USE_SLOTS,
        LIST_ENTRIES, in_use_slot,
    },
    prefix,
};

use crate::{
    config,
    kernel::IndexedCells as _,
    packet::{Family, Ip},
};

#[map]
static ALLOW_V4: LpmTrie<[u8; 4], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static ALLOW_V6: LpmTrie<[u8; 16], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static DENY_V4: LpmTrie<[u8; 4], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static DENY_V6: LpmTrie<[u8; 16], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static ALLOW_V4_B: LpmTrie<[u8; 4], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static ALLOW_V6_B: LpmTrie<[u8; 16], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static DENY_V4_B: LpmTrie<[u8; 4], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static DENY_V6_B: LpmTrie<[u8; 16], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static LISTS_IN_USE: Array<u32> = Array::with_max_entries(IN_USE_SLOTS, 0);

/// One list: the two copies of its two tries and their LISTS_IN_USE slots
/// (of copy 0).
struct Tries {
    deny: bool,
    v4: [&'static LpmTrie<[u8; 4], ListEntry>; 2],
    v6: [&'static LpmTrie<[u8; 16], ListEntry>; 2],
    v4_in_use: u32,
    v6_in_use: u32,
}

static ALLOW: Tries = Tries {
    deny: false,
    v4: [&ALLOW_V4, &ALLOW_V4_B],
    v6: [&ALLOW_V6, &ALLOW_V6_B],
    v4_in_use: IN_USE_ALLOW_V4,
    v6_in_use: IN_USE_ALLOW_V6,
};
static DENY: Tries = Tries {
    deny: true,
    v4: [&DENY_V4, &DENY_V4_B],
    v6: [&DENY_V6, &DENY_V6_B],
    v4_in_use: IN_USE_DENY_V4,
    v6_in_use: IN_USE_DENY_V6,
};

/// The live copy of one of a list's tries: the map reference is picked by a
/// branch, never loaded from memory (the verifier needs map pointers to be
/// constants of the code).
#[inline(always)]
fn live<K>(
    copies: &[&'static LpmTrie<K, ListEntry>; 2],
    copy: u32,
) -> &'static LpmTrie<K, ListEntry> {
    if copy == 0 { copies[0] } else { copies[1] }
}

/// Expired entries looked past in one lookup; a deeper pile of nested expired
/// entries (only until filter-ctl cleans up) counts as no match.
const MAX_EXPIRED_SKIPS: usize = 4;

/// Whether the allow or the deny list of the packet's family may hold
/// entries: the dispatcher's test before it calls `wan_listed`. Most boxes
/// have empty lists most of the time, and then no packet pays the call.
#[inline(always)]
pub fn in_use(ip: &Ip, config: &Config) -> bool {
    let (allow, deny) = match ip.family {
        Family::Ipv4 => (ALLOW.v4_in_use, DENY.v4_in_use),
        Family::Ipv6 => (ALLOW.v6_in_use, DENY.v6_in_use),
    };
    slot_in_use(in_use_slot(allow, config.list_copy(false)))
        || slot_in_use(in_use_slot(deny, config.list_copy(true)))
}

/// The body of `wan_listed`: the source on the allow list passes, on the
/// deny list it is dropped; otherwise the later rules decide (`None`).
#[inline(always)]
pub fn verdict(ip: &Ip, config: &Config) -> Option<Reason> {
    if matches(ip, &ALLOW, config) {
        Some(Reason::PassAllowList)
    } else if matches(ip, &DENY, config) {
        Some(Reason::DropDenyList)
    } else {
        None
    }
}

#[inline(always)]
fn matches(ip: &Ip, list: &Tries, config: &Config) -> bool {
    let copy = config.list_copy(list.deny);
    match ip.family {
        Family::Ipv4 => {
            slot_in_use(in_use_slot(list.v4_in_use, copy))
                && live_match(live(&list.v4, copy), ip.src[0].to_ne_bytes(), 32)
        }
        Family::Ipv6 => {
            slot_in_use(in_use_slot(list.v6_in_use, copy))
                && live_match(live(&list.v6, copy), prefix::v6_bytes(&ip.src), 128)
        }
    }
}

#[inline(always)]
fn slot_in_use(slot: u32) -> bool {
    // Read by value: the penalty on another CPU may set it.
    LISTS_IN_USE.cell(slot).is_some_and(|flag| flag.get() != 0)
}

/// The longest live entry covering `addr`: an expired one is skipped by
/// looking again with a prefix one bit shorter than its own.
#[inline(always)]
fn live_match<K: Copy>(trie: &LpmTrie<K, ListEntry>, addr: K, bits: u32) -> bool {
    let Some(mut entry) = trie.get(&Key::new(bits, addr)) else {
        return false;
    };
    // Read only on a match: most sources match nothing.
    let now = config::now_ns();
    for _ in 0..MAX_EXPIRED_SKIPS {
        if entry.is_live(now) {
            return true;
        }
        let Some(shorter) = entry.shorter_lookup() else {
            return false;
        };
        let Some(next) = trie.get(&Key::new(shorter, addr)) else {
            return false;
        };
        entry = next;
    }
    false
}

pub enum Penalised {
    Denied,
    /// The deny list is full: the source stays only rate-limited.
    ListFull,
}

/// Puts the packet's source (IPv4 /32, IPv6 /64: the per-source bucket's
/// grain) on the live copy of the deny list until `expires_ns`. (If
/// filter-ctl switches copies at this moment, the entry can be lost: the
/// source is then only rate-limited until its next penalty.)
#[inline(always)]
pub fn penalise(ip: &Ip, config: &Config, expires_ns: u64) -> Penalised {
    let entry = |prefix_len| ListEntry::new(expires_ns, prefix_len, ListSource::SynPenalty);
    let copy = config.list_copy(true);
    let (inserted, slot) = match ip.family {
        Family::Ipv4 => (
            live(&DENY.v4, copy).insert(&Key::new(32, ip.src[0].to_ne_bytes()), &entry(32), 0),
            in_use_slot(IN_USE_DENY_V4, copy),
        ),
        Family::Ipv6 => (
            live(&DENY.v6, copy).insert(
                &Key::new(64, prefix::v6_slash64_bytes(&ip.src)),
                &entry(64),
                0,
            ),
            in_use_slot(IN_USE_DENY_V6, copy),
        ),
    };
    if inserted.is_err() {
        return Penalised::ListFull;
    }
    // After the insert, so the entry is there when the slot says so. If
    // filter-ctl, finding the trie empty a moment earlier, clears the slot
    // after this store, the source is only rate-limited again until its next
    // penalty sets the slot anew.
    if let Some(flag) = LISTS_IN_USE.cell(slot) {
        flag.set(1);
    }
    Penalised::Denied
}
