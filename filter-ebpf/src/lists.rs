//! Allow and deny lists: LPM tries of CIDR prefixes, one per list and family
//! (see `filter_common::lists`). Only filter-ctl writes them, except the SYN
//! penalty, which adds deny entries for sources that keep exceeding their bucket.
//!
//! An entry whose expiry has passed stops matching at once; since an LPM
//! lookup returns only the longest match, the lookup then retries past it, so
//! an expired /32 never hides a live /24 around it until filter-ctl removes it.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{LpmTrie, lpm_trie::Key};
use filter_common::{ListEntry, ListSource, lists::LIST_ENTRIES};

use crate::packet::{Family, Ip};

#[map]
static ALLOW_V4: LpmTrie<[u8; 4], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static ALLOW_V6: LpmTrie<[u8; 16], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static DENY_V4: LpmTrie<[u8; 4], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);
#[map]
static DENY_V6: LpmTrie<[u8; 16], ListEntry> = LpmTrie::with_max_entries(LIST_ENTRIES, 0);

/// Expired entries looked past in one lookup; a deeper pile of nested expired
/// entries (only until filter-ctl cleans up) counts as no match.
const MAX_EXPIRED_SKIPS: usize = 4;

/// True if the packet's source is on the allow list.
#[inline(always)]
pub fn allowed(ip: &Ip, now: u64) -> bool {
    matches(ip, &ALLOW_V4, &ALLOW_V6, now)
}

/// True if the packet's source is on the deny list.
#[inline(always)]
pub fn denied(ip: &Ip, now: u64) -> bool {
    matches(ip, &DENY_V4, &DENY_V6, now)
}

#[inline(always)]
fn matches(
    ip: &Ip,
    v4: &LpmTrie<[u8; 4], ListEntry>,
    v6: &LpmTrie<[u8; 16], ListEntry>,
    now: u64,
) -> bool {
    match ip.family {
        Family::Ipv4 => live_match(v4, ip.src[0].to_ne_bytes(), 32, now),
        Family::Ipv6 => live_match(v6, v6_bytes(&ip.src), 128, now),
    }
}

/// The source address as on the wire (the words hold wire bytes).
#[inline(always)]
fn v6_bytes(words: &[u32; 4]) -> [u8; 16] {
    let [a, b, c, d] = words.map(u32::to_ne_bytes);
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
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
        if entry.expires_ns == 0 || entry.expires_ns > now {
            return true;
        }
        if entry.prefix_len == 0 {
            return false;
        }
        len = u32::from(entry.prefix_len) - 1;
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
    let inserted = match ip.family {
        Family::Ipv4 => DENY_V4.insert(&Key::new(32, ip.src[0].to_ne_bytes()), &entry(32), 0),
        Family::Ipv6 => {
            let mut addr = v6_bytes(&ip.src);
            addr[8..].fill(0);
            DENY_V6.insert(&Key::new(64, addr), &entry(64), 0)
        }
    };
    match inserted {
        Ok(()) => Penalised::Denied,
        Err(_) => Penalised::ListFull,
    }
}
