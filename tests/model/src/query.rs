//! The limits on inbound requests to our DNS and NTP servers
//! (docs/query-limits.md): a DNS query (QR clear, any opcode) or an NTP
//! client request (mode 3) to one of the service ports. A DNS query meets
//! the name level first: one bucket per source prefix (`query_prefix_v4`/
//! `_v6`), question name (without case) and type (`dns_query_name_rate`);
//! a query whose first question cannot be read (none announced, a
//! compression pointer, a reserved label type, a name over 255 bytes, cut
//! short) has the key "no question", shared by all such queries of the
//! prefix. Then both services are limited per source (IPv4 /32, IPv6 /64),
//! per source prefix and for all sources together. Each level is a GCRA
//! bucket (rate.rs) with its own rate and burst, `off` switching a level
//! off. Checked in that order; the first level that refuses names the
//! drop, and a level that admitted keeps its spent token. DNS and NTP never
//! share a bucket.
//!
//! The slip: 1 in `dns_slip` DNS queries over a limit (drawn at random in
//! the filter: the model is asked with both outcomes, [`crate::Chance`])
//! are chosen for a truncated reply sent back (XDP_TX, `tx_dns_truncated`)
//! instead of the drop. A chosen query then asks the slip cap, one more
//! bucket (`dns_slip_rate` per second, the burst as large, `off`: no cap,
//! for all sources together); beyond it the query is dropped under its
//! level's reason. Then the reply must be buildable: a whole datagram
//! without IPv4 options or IPv6 extension headers, all of it in the frame,
//! whose message fits (proto/dns.rs), not come through a tunnel (docs/rules.md,
//! *Tunnels*); otherwise dropped, its cap token
//! spent (the docs' "asked only when a query would slip" read as "chosen").
//! (The reply also needs the link headers within 64 bytes; the parser walks
//! at most 30.) Monitor mode sends nothing: a query that would get the
//! reply is counted as `would_tx`, one that would not as a drop.
//!
//! On a device without an Ethernet header ([`Link::Ip`]) there is no slip
//! at all (docs/query-limits.md, *No slip on devices without Ethernet*): a
//! query over a limit is dropped under its level's reason, nothing is
//! drawn and no cap token is spent.
//!
//! The filter keeps the buckets in hashed slots without keys, as the SYN
//! buckets: sources (and questions) hashed onto one slot share a bucket.
//! The model finds them by the same documented slot hash
//! (`filter_common::query`, `filter_common::dns::question_hash`, host-tested
//! there), with the seed the runner reads from the loaded filter. The name
//! level's slots are in the per-source slots' map.

use std::collections::{BTreeMap, BTreeSet};

use filter_common::{
    Reason,
    dns::question_hash,
    query::{NO_QUESTION, Service, name_slot},
    rate::Source,
};

use crate::{
    Chance, Judgement,
    parse::{Addr, Family, Fragment, Ip, Link, Udp},
    proto::dns::{self, Fit},
    rate::take,
    settings::{QuerySettings, Settings},
};

/// The buckets, by slot; the global level by service; the slip cap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Queries {
    sources: BTreeMap<u32, u64>,
    prefixes: BTreeMap<u32, u64>,
    global: BTreeMap<u32, u64>,
    slip_cap: u64,
}

/// The level that refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Name,
    Source,
    Prefix,
    Global,
}

impl Queries {
    /// Takes a token at every level of `service` that is on, in order:
    /// the level that refuses the request, if one does. `question` is a DNS
    /// query's name level key (`None` for NTP, which has no name level).
    pub fn over_limit(
        &mut self,
        service: Service,
        ip: &Ip<'_>,
        question: Option<u64>,
        settings: &QuerySettings,
        seed: u64,
        now: u64,
    ) -> Option<Limit> {
        let limits = settings.limits(service);
        let (source, prefix_len) = source(ip.family, &ip.src, settings);
        if let Some(question) = question
            && let Some(rate) = settings.dns_name.rate
        {
            let slot = name_slot(&source, prefix_len, question, seed);
            let bucket = self.sources.entry(slot).or_default();
            if !take(bucket, now, rate, settings.dns_name.burst) {
                return Some(Limit::Name);
            }
        }
        let levels = [
            (
                Limit::Source,
                limits.source,
                &mut self.sources,
                service.source_slot(&source, seed),
            ),
            (
                Limit::Prefix,
                limits.prefix,
                &mut self.prefixes,
                service.prefix_slot(&source, prefix_len, seed),
            ),
            (
                Limit::Global,
                limits.global,
                &mut self.global,
                service.global_slot(),
            ),
        ];
        for (limit, level, buckets, slot) in levels {
            let Some(rate) = level.rate else {
                continue;
            };
            if !take(buckets.entry(slot).or_default(), now, rate, level.burst) {
                return Some(limit);
            }
        }
        None
    }

    /// Takes a token from the slip cap (`rate` per second, the burst as
    /// large; `None`: no cap), if it has one.
    pub fn slip_allowed(&mut self, rate: Option<u32>, now: u64) -> bool {
        rate.is_none_or(|rate| take(&mut self.slip_cap, now, rate, rate))
    }

    /// The per-source and per-prefix slots written, for resetting the real
    /// buckets.
    pub fn slots_used(&self) -> (BTreeSet<u32>, BTreeSet<u32>) {
        (
            self.sources.keys().copied().collect(),
            self.prefixes.keys().copied().collect(),
        )
    }
}

/// The source as the slot hash takes it, and its prefix length.
fn source(family: Family, src: &Addr, settings: &QuerySettings) -> (Source, u8) {
    let word = |i: usize| u32::from_ne_bytes(src[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    match family {
        Family::V4 => (Source::ipv4(word(0)), settings.prefix_v4),
        Family::V6 => (
            Source::ipv6(&[word(0), word(1), word(2), word(3)]),
            settings.prefix_v6,
        ),
    }
}

/// A DNS query to one of our service ports, whose message fits the slip
/// reply as far as `fit` says.
#[allow(clippy::too_many_arguments)]
pub fn dns_query(
    queries: &mut Queries,
    chance: &mut Chance,
    ip: &Ip<'_>,
    udp: &Udp<'_>,
    fit: Fit,
    settings: &Settings,
    seed: u64,
    now: u64,
) -> Judgement {
    let question = dns::question(udp.datagram).map_or(NO_QUESTION, |name_and_type| {
        question_hash(name_and_type, seed)
    });
    let Some(limit) =
        queries.over_limit(Service::Dns, ip, Some(question), &settings.query, seed, now)
    else {
        return Judgement::Pass(Reason::PassDnsQuery);
    };
    let drop = match limit {
        Limit::Name => Reason::DropDnsQueryName,
        Limit::Source => Reason::DropDnsQuerySource,
        Limit::Prefix => Reason::DropDnsQueryPrefix,
        Limit::Global => Reason::DropDnsQueryGlobal,
    };
    // A device without an Ethernet header cannot send a slip (generic XDP
    // reads the reply's first 14 bytes as an Ethernet header): the drop,
    // before any draw or cap token.
    if ip.link == Link::Ip {
        return Judgement::Drop(drop);
    }
    let query = &settings.query;
    if !chance.slip(query.dns_slip) || !queries.slip_allowed(query.dns_slip_rate, now) {
        return Judgement::Drop(drop);
    }
    // Over a tunnel the reply would have to go back inside a new outer
    // header: no reply.
    let frame_fits = ip.fragment == Fragment::Whole && ip.bare() && !ip.tunnelled && udp.complete;
    if frame_fits && fit == Fit::Message {
        Judgement::Tx(Reason::TxDnsTruncated)
    } else {
        Judgement::Drop(drop)
    }
}

/// An NTP client request (mode 3) to one of our service ports.
pub fn ntp_request(
    queries: &mut Queries,
    ip: &Ip<'_>,
    settings: &QuerySettings,
    seed: u64,
    now: u64,
) -> Judgement {
    match queries.over_limit(Service::Ntp, ip, None, settings, seed, now) {
        None => Judgement::Pass(Reason::PassNtpQuery),
        Some(Limit::Source) => Judgement::Drop(Reason::DropNtpQuerySource),
        Some(Limit::Prefix) => Judgement::Drop(Reason::DropNtpQueryPrefix),
        Some(Limit::Global | Limit::Name) => Judgement::Drop(Reason::DropNtpQueryGlobal),
    }
}
