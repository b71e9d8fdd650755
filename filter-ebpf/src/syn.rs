//! Rule 6 of ingress, the TCP SYN token buckets: per source (IPv4 /32, IPv6
//! /64), per source prefix and global, each with its own rate and burst.
//! ingress/tcp.rs sends connection attempts here. The arithmetic (the GCRA
//! check, the penalty count, which slots a source takes) is
//! filter_common::{rate, syn}, tested on the host; this module reads and
//! writes the buckets (a token is taken by rate.rs). Map design and
//! concurrency: see filter_common::rate and ::syn (hashed slots, no
//! eviction; shared between CPUs, updated with benign races).
//!
//! A SYN passes only if every level that is switched on admits it, checked
//! from the narrowest level out; the first level that refuses names the
//! drop reason. A level that admits has spent its token even when a wider
//! level refuses the SYN: the wider levels only refuse when the prefix or the
//! whole link is flooded, and then the few tokens that costs the source are
//! the least of its problems.
//!
//! Between the prefix and the global bucket sit the connection-aware rules
//! (docs/tcp-connections.md): the half-open budgets of the source and its
//! prefix (halfopen.rs), then, for a port with a connection limit, the
//! source's connections there (conn.rs). They come before the global bucket
//! so that a flood they stop does not spend the tokens everybody shares;
//! they only read until the SYN has passed every rule, then take its units.

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{
    Config, Reason, SynBucket,
    conn::ConnOwner,
    expiry,
    syn::{self, SYN_PREFIX_SLOTS, SYN_SOURCE_SLOTS, SynSource},
};

use crate::{
    conn, events, halfopen,
    kernel::{Cell, IndexedCells as _, field},
    lists::{self, Penalised},
    packet::{Family, Ip},
    rate,
};

// Memory-mappable, so that `filter-ctl status` counts the slots in use
// without one syscall per slot.
#[map]
static SYN_SOURCES: Array<SynBucket> = Array::with_max_entries(SYN_SOURCE_SLOTS, BPF_F_MMAPABLE);

#[map]
static SYN_PREFIXES: Array<SynBucket> = Array::with_max_entries(SYN_PREFIX_SLOTS, BPF_F_MMAPABLE);

#[map]
static SYN_GLOBAL: Array<SynBucket> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// What the source's bucket, the first level a SYN meets, made of it.
/// The dispatcher takes its token (ingress/mod.rs): a SYN flood over its
/// source's bucket is dropped there, without a call; the rest go on to
/// `wan_tcp` with this as a number.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SourceLevel {
    /// A token was taken, or the level is off.
    Admitted = 0,
    Refused = 1,
    /// Refused, and the source has earned the penalty.
    Penalised = 2,
}

impl SourceLevel {
    /// The level a dispatcher's number stands for.
    #[inline(always)]
    pub fn from_number(number: u32) -> SourceLevel {
        match number {
            0 => SourceLevel::Admitted,
            1 => SourceLevel::Refused,
            _ => SourceLevel::Penalised,
        }
    }
}

/// A SYN's source (its address as the buckets number it) and the length of
/// its prefix.
#[inline(always)]
fn source_of(ip: &Ip, config: &Config) -> (SynSource, u8) {
    match ip.family {
        Family::Ipv4 => (SynSource::ipv4(ip.src[0]), config.syn_prefix_v4),
        Family::Ipv6 => (SynSource::ipv6(&ip.src), config.syn_prefix_v6),
    }
}

/// Takes the SYN's token from its source's bucket, if that level is on.
#[inline(always)]
pub fn source_level(ip: &Ip, config: &Config, now: u64) -> SourceLevel {
    if config.syn_source_rate == 0 {
        return SourceLevel::Admitted;
    }
    let slot = source_of(ip, config).0.source_slot(config.syn_hash_seed);
    let Some(bucket) = Bucket::at(&SYN_SOURCES, slot) else {
        return SourceLevel::Admitted;
    };
    if bucket.take(now, config.syn_source_rate, config.syn_source_burst) {
        bucket.clear_strikes();
        SourceLevel::Admitted
    } else if config.syn_penalty_ns != 0 && bucket.strike(config.syn_source_burst) {
        // A source that has had `burst` SYNs refused since its last
        // admitted one goes on the deny list for the penalty time.
        SourceLevel::Penalised
    } else {
        SourceLevel::Refused
    }
}

/// The verdict on a TCP SYN (SYN set, ACK clear) to our `port`, whose
/// source's bucket gave `source` ([`source_level`]).
#[inline(always)]
pub fn verdict(ip: &Ip, port: u16, config: &Config, now: u64, source: SourceLevel) -> Reason {
    match source {
        SourceLevel::Admitted => {}
        SourceLevel::Refused => return Reason::DropSynSource,
        SourceLevel::Penalised => return penalise(ip, config, now),
    }
    let (source, prefix_len) = source_of(ip, config);
    let seed = config.syn_hash_seed;
    let source_slot = source.source_slot(seed);

    let prefix_slot = source.prefix_slot(prefix_len, seed);
    if config.syn_prefix_rate != 0
        && let Some(bucket) = Bucket::at(&SYN_PREFIXES, prefix_slot)
        && !bucket.take(now, config.syn_prefix_rate, config.syn_prefix_burst)
    {
        return Reason::DropSynPrefix;
    }

    let units = match halfopen::check(source_slot, prefix_slot, config, now) {
        Ok(units) => units,
        Err(halfopen::Exhausted::Source) => return Reason::DropSynHalfopen,
        Err(halfopen::Exhausted::Prefix) => return Reason::DropSynHalfopenPrefix,
    };

    let limit = conn::limit(port);
    let pending = if limit == 0 {
        None
    } else {
        let owner = ConnOwner::new(&ip.src, ip.family.number(), port);
        match conn::check_syn(&owner, limit, config, now) {
            Some(pending) => Some(pending),
            None => return Reason::DropConnLimit,
        }
    };

    if config.syn_global_rate != 0
        && let Some(bucket) = Bucket::at(&SYN_GLOBAL, 0)
        && !bucket.take(now, config.syn_global_rate, config.syn_global_burst)
    {
        return Reason::DropSynGlobal;
    }
    units.take();
    if let Some(pending) = pending {
        pending.count();
    }
    Reason::PassSyn
}

/// A SYN whose source earned the penalty: on the deny list.
#[inline(always)]
fn penalise(ip: &Ip, config: &Config, now: u64) -> Reason {
    match lists::penalise(ip, config, expiry::deadline(now, config.syn_penalty_ns)) {
        Penalised::Denied => {
            events::penalised(ip, config.syn_penalty_ns, now);
            Reason::DropSynPenalty
        }
        Penalised::ListFull => Reason::DropSynPenaltyFull,
    }
}

/// A bucket, by its cell. All CPUs share it, so it is read and written
/// field by field.
#[derive(Clone, Copy)]
struct Bucket(Cell<SynBucket>);

impl Bucket {
    #[inline(always)]
    fn at(map: &Array<SynBucket>, index: u32) -> Option<Bucket> {
        map.cell(index).map(Bucket)
    }

    /// Takes a token if the bucket has one (rate::take: a plain read, a
    /// write only when a token is taken).
    #[inline(always)]
    fn take(self, now: u64, rate: u32, burst: u32) -> bool {
        rate::take(field!(self.0, tat_ns), now, rate, burst)
    }

    /// An admitted SYN ends a run of refused ones. Read first: most admitted
    /// SYNs find nothing to clear.
    #[inline(always)]
    fn clear_strikes(self) {
        let strikes = field!(self.0, strikes);
        if strikes.get() != 0 {
            strikes.set(0);
        }
    }

    /// Counts a refused SYN; true when it earns the penalty (see
    /// `syn::strike`). A lost count (two CPUs at once) only delays it.
    #[inline(always)]
    fn strike(self, burst: u32) -> bool {
        let strikes = field!(self.0, strikes);
        let next = syn::strike(strikes.get(), burst);
        strikes.set(next.unwrap_or(0));
        next.is_none()
    }
}
