//! TCP SYN token buckets: per source (IPv4 /32, IPv6 /64), per source prefix
//! and global, each with its own rate and burst. Map design and concurrency:
//! see `filter_common::syn` (hashed slots, no eviction; shared between CPUs,
//! updated with benign races).
//!
//! A SYN passes only if every level that is switched on admits it, checked
//! from the narrowest level out; the first level that refuses names the
//! drop reason. A level that admits has spent its token even when a wider
//! level refuses the SYN: the wider levels only refuse when the prefix or the
//! whole link is flooded, and then the few tokens that costs the source are
//! the least of its problems.

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{
    Config, Reason, SynBucket,
    syn::{MAX_RATE, SYN_PREFIX_SLOTS, SYN_SOURCE_SLOTS},
};

use crate::{
    lists::{self, Penalised},
    packet::{Family, Ip},
};

// Memory-mappable, so that `filter-ctl status` counts the slots in use
// without one syscall per slot.
#[map]
static SYN_SOURCES: Array<SynBucket> = Array::with_max_entries(SYN_SOURCE_SLOTS, BPF_F_MMAPABLE);

#[map]
static SYN_PREFIXES: Array<SynBucket> = Array::with_max_entries(SYN_PREFIX_SLOTS, BPF_F_MMAPABLE);

#[map]
static SYN_GLOBAL: Array<SynBucket> = Array::with_max_entries(1, BPF_F_MMAPABLE);

const NS_PER_SEC: u64 = 1_000_000_000;

/// Distinguishes the hash inputs of the two families and levels.
const TAG_SOURCE_V4: u64 = 0x5f4e_7c01;
const TAG_SOURCE_V6: u64 = 0x5f4e_7c02;
const TAG_PREFIX_V4: u64 = 0x5f4e_7c03;
const TAG_PREFIX_V6: u64 = 0x5f4e_7c04;

/// The verdict on a TCP SYN (SYN set, ACK clear).
#[inline(always)]
pub fn verdict(ip: &Ip, config: &Config, now: u64) -> Reason {
    // The source's address as a number: IPv4 all 32 bits, IPv6 the /64.
    let (source, source_tag, prefix_len, width, prefix_tag) = match ip.family {
        Family::Ipv4 => (
            u64::from(u32::from_be(ip.src[0])),
            TAG_SOURCE_V4,
            config.syn_prefix_v4,
            32,
            TAG_PREFIX_V4,
        ),
        Family::Ipv6 => (
            u64::from(u32::from_be(ip.src[0])) << 32 | u64::from(u32::from_be(ip.src[1])),
            TAG_SOURCE_V6,
            config.syn_prefix_v6,
            64,
            TAG_PREFIX_V6,
        ),
    };

    if config.syn_source_rate != 0 {
        let index = slot(source ^ source_tag, config.syn_hash_seed) & (SYN_SOURCE_SLOTS - 1);
        if let Some(bucket) = SYN_SOURCES.get_ptr_mut(index) {
            if take(bucket, now, config.syn_source_rate, config.syn_source_burst) {
                clear_strikes(bucket);
            } else {
                return over_source(bucket, ip, config, now);
            }
        }
    }

    if config.syn_prefix_rate != 0 {
        let prefix = source & mask(prefix_len, width);
        let index = slot(prefix ^ prefix_tag, config.syn_hash_seed) & (SYN_PREFIX_SLOTS - 1);
        if let Some(bucket) = SYN_PREFIXES.get_ptr_mut(index)
            && !take(bucket, now, config.syn_prefix_rate, config.syn_prefix_burst)
        {
            return Reason::DropSynPrefix;
        }
    }

    if config.syn_global_rate != 0
        && let Some(bucket) = SYN_GLOBAL.get_ptr_mut(0)
        && !take(bucket, now, config.syn_global_rate, config.syn_global_burst)
    {
        return Reason::DropSynGlobal;
    }
    Reason::PassSyn
}

/// Takes a token from `bucket` if it has one (GCRA): the bucket holds
/// `burst` tokens and gains one every `1 s / rate`.
///
/// A plain read, then a write only when a token is taken. Two CPUs taking the
/// same last token at the same instant both pass and the bucket is charged
/// once: the race costs at most one extra SYN per colliding CPU, only while
/// the bucket has tokens, and SYNs over the limit never write (the BPF target
/// of our toolchain has no compare-and-swap; see filter_common::syn).
#[inline(always)]
fn take(bucket: *mut SynBucket, now: u64, rate: u32, burst: u32) -> bool {
    let rate = u64::from(rate.clamp(1, MAX_RATE));
    let spare = u64::from(burst.max(1) - 1);
    // SAFETY: a valid, aligned slot of an array map, alive while the program runs.
    let tat = unsafe { (*bucket).tat_ns };
    let start = if tat > now { tat } else { now };
    // Refused when the bucket's "full again" time lies more than burst - 1
    // intervals (1 s / rate) ahead of now. A 64-bit division costs more than
    // the rest of a refused SYN's path, so this compares multiplied out
    // (rate < 2^20: no overflow below 2^44 ns ahead, about 5 hours) and only
    // an admitted SYN, or a bucket hours ahead after its burst was cut
    // down, divides.
    let ahead = start - now;
    let refused = if ahead < 1 << 44 {
        ahead * rate > spare * NS_PER_SEC
    } else {
        ahead > spare * (NS_PER_SEC / rate)
    };
    if refused {
        return false;
    }
    // SAFETY: as above.
    unsafe { (*bucket).tat_ns = start + NS_PER_SEC / rate };
    true
}

/// An admitted SYN ends a run of refused ones.
#[inline(always)]
fn clear_strikes(bucket: *mut SynBucket) {
    // SAFETY: as in `take`. Read first: most admitted SYNs find nothing to clear.
    unsafe {
        if (*bucket).strikes != 0 {
            (*bucket).strikes = 0;
        }
    }
}

/// A SYN over its source's bucket. With the penalty on, a source that has
/// had `burst` SYNs refused since its last admitted one (it keeps sending at
/// well over twice its rate, without pausing for a single token) goes on the
/// deny list for the penalty time.
#[inline(always)]
fn over_source(bucket: *mut SynBucket, ip: &Ip, config: &Config, now: u64) -> Reason {
    if config.syn_penalty_ns == 0 {
        return Reason::DropSynSource;
    }
    // SAFETY: as in `take`. A lost increment (two CPUs at once) only delays the penalty.
    let strikes = unsafe { &mut (*bucket).strikes };
    *strikes = strikes.saturating_add(1);
    if *strikes < config.syn_source_burst.max(1) {
        return Reason::DropSynSource;
    }
    *strikes = 0;
    match lists::penalise(ip, now + config.syn_penalty_ns) {
        Penalised::Denied => Reason::DropSynPenalty,
        Penalised::ListFull => Reason::DropSynPenaltyFull,
    }
}

/// The top `len` of a `width`-bit address (held in the low bits of a u64).
#[inline(always)]
fn mask(len: u8, width: u32) -> u64 {
    let len = u32::from(len).min(width);
    if len == 0 {
        return 0;
    }
    (u64::MAX << (width - len)) & (u64::MAX >> (64 - width))
}

/// A keyed mix of `key` (murmur3's 64-bit finaliser over key ^ seed): with
/// the seed secret, nobody can pick addresses that share a slot with a victim.
#[inline(always)]
fn slot(key: u64, seed: u64) -> u32 {
    let mut h = key ^ seed;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}
