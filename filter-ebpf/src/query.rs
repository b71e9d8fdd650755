//! The limits on inbound requests to our DNS and NTP services: for DNS the
//! name level first (the client prefix's bucket for the question's name and
//! type), then per source (IPv4 /32, IPv6 /64), per source prefix and
//! global, each with its own rate and burst. ingress/request.rs sends
//! requests here. The arithmetic (the GCRA check, which slots a source and
//! a question take) is filter_common::{rate, query}, tested on the host;
//! this module reads and writes the buckets. Map design and concurrency:
//! see filter_common::rate (hashed slots, no eviction; shared between CPUs,
//! updated with benign races).
//!
//! A request passes only if every level that is switched on admits it,
//! checked in that order; the first level that refuses is the one named.
//! As with the SYN buckets, a level that admits has spent its token even
//! when a later level refuses the request. The name level comes first, so
//! that a flood of one name, refused there, spends nothing of the
//! catch-alls its prefix shares with real resolvers.

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{
    Config,
    query::{
        Level, NO_QUESTION, QUERY_GLOBAL_SLOTS, QUERY_PREFIX_SLOTS, QUERY_SOURCE_SLOTS,
        SLIP_CAP_SLOT, Service, name_slot,
    },
    rate::Source,
};

use crate::{
    kernel::IndexedCells as _,
    packet::{Family, Ip},
    rate,
};

// Memory-mappable, so that `filter-ctl status` counts the slots in use
// without one syscall per slot.
#[map]
static QUERY_SOURCES: Array<u64> = Array::with_max_entries(QUERY_SOURCE_SLOTS, BPF_F_MMAPABLE);

#[map]
static QUERY_PREFIXES: Array<u64> = Array::with_max_entries(QUERY_PREFIX_SLOTS, BPF_F_MMAPABLE);

#[map]
static QUERY_GLOBAL: Array<u64> = Array::with_max_entries(QUERY_GLOBAL_SLOTS, BPF_F_MMAPABLE);

/// The level that refuses a request from `ip`'s source to `service`, or
/// `None` if every level admits it. `question` is a DNS query's key for
/// the name level (`None`: no question the filter can read); NTP has no
/// name level.
#[inline(always)]
pub fn over_limit(
    service: Service,
    ip: &Ip,
    question: Option<u64>,
    config: &Config,
    now: u64,
) -> Option<Level> {
    let limits = match service {
        Service::Dns => &config.dns_query,
        Service::Ntp => &config.ntp_query,
    };
    let (source, prefix_len) = match ip.family {
        Family::Ipv4 => (Source::ipv4(ip.src[0]), config.query_prefix_v4),
        Family::Ipv6 => (Source::ipv6(&ip.src), config.query_prefix_v6),
    };
    let seed = config.syn_hash_seed;
    let name_rate = config.dns_query_name_rate;
    if service == Service::Dns
        && name_rate != 0
        && !take(
            &QUERY_SOURCES,
            name_slot(&source, prefix_len, question.unwrap_or(NO_QUESTION), seed),
            now,
            name_rate,
            config.dns_query_name_burst,
        )
    {
        return Some(Level::Name);
    }
    if limits.source_rate != 0
        && !take(
            &QUERY_SOURCES,
            service.source_slot(&source, seed),
            now,
            limits.source_rate,
            limits.source_burst,
        )
    {
        return Some(Level::Source);
    }
    if limits.prefix_rate != 0
        && !take(
            &QUERY_PREFIXES,
            service.prefix_slot(&source, prefix_len, seed),
            now,
            limits.prefix_rate,
            limits.prefix_burst,
        )
    {
        return Some(Level::Prefix);
    }
    if limits.global_rate != 0
        && !take(
            &QUERY_GLOBAL,
            service.global_slot(),
            now,
            limits.global_rate,
            limits.global_burst,
        )
    {
        return Some(Level::Global);
    }
    None
}

/// Whether one more truncated answer fits under `dns_slip_rate` (and takes
/// its token).
#[inline(always)]
pub fn slip_allowed(config: &Config, now: u64) -> bool {
    let rate = config.dns_slip_rate;
    rate == 0 || take(&QUERY_GLOBAL, SLIP_CAP_SLOT, now, rate, rate)
}

/// Takes a token from slot `index` of `map`; a slot that is not there (only
/// the verifier's worry: every index is masked into range) admits.
#[inline(always)]
fn take(map: &Array<u64>, index: u32, now: u64, rate: u32, burst: u32) -> bool {
    map.cell(index)
        .is_none_or(|tat| rate::take(tat, now, rate, burst))
}
