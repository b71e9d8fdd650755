//! Limits on inbound requests to the DNS and NTP servers on this side of the
//! link (on the gateway, or behind one of its port forwards): per source
//! (IPv4 /32, IPv6 /64), per source prefix and for all sources together, each
//! level with its own rate and burst, in the style of DNS Response Rate
//! Limiting (BIND's RRL). A spoofed flood of requests (a reflection attack
//! that uses our server as the amplifier) is cut at the few requests per
//! second a victim's address may send; real clients, which ask at a far lower
//! pace, are never limited. For DNS, a share of the requests over the limit
//! ("slip", 1 in N) get a minimal truncated answer built in XDP, so that a
//! real resolver sharing a prefix with a victim retries over TCP.
//!
//! The levels are hashed-slot GCRA buckets ([`crate::rate`]: no keys, no
//! eviction, the per-attach secret seed), one `u64` "full again" time per
//! slot. DNS and NTP share the maps but never a bucket: each service hashes
//! with its own tags, and has its own global bucket.
//!
//! docs/query-limits.md has the defaults and why, the slip reply and the rules.

use crate::rate::{Source, Tags};

/// Slots of the per-source level (IPv4 /32, IPv6 /64) of both services: 1 MiB.
pub const QUERY_SOURCE_SLOTS: u32 = 1 << 17;
/// Slots of the per-prefix level of both services: 512 KiB.
pub const QUERY_PREFIX_SLOTS: u32 = 1 << 16;

/// A service whose inbound requests are limited. The value is its slot in
/// QUERY_GLOBAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Dns = 0,
    Ntp = 1,
}

impl Service {
    pub const COUNT: u32 = 2;

    #[inline(always)]
    pub const fn global_slot(self) -> u32 {
        self as u32
    }

    /// Hash tags of the per-source and per-prefix levels.
    #[inline(always)]
    const fn tags(self) -> (Tags, Tags) {
        match self {
            Service::Dns => (
                Tags {
                    v4: 0x7a11_d051,
                    v6: 0x7a11_d061,
                },
                Tags {
                    v4: 0x7a11_d052,
                    v6: 0x7a11_d062,
                },
            ),
            Service::Ntp => (
                Tags {
                    v4: 0x7a11_a051,
                    v6: 0x7a11_a061,
                },
                Tags {
                    v4: 0x7a11_a052,
                    v6: 0x7a11_a062,
                },
            ),
        }
    }

    /// The slot of `source` in QUERY_SOURCES.
    #[inline(always)]
    pub fn source_slot(self, source: &Source, seed: u64) -> u32 {
        source.slot(self.tags().0, QUERY_SOURCE_SLOTS, seed)
    }

    /// The slot of `source`'s `/prefix_len` in QUERY_PREFIXES.
    #[inline(always)]
    pub fn prefix_slot(self, source: &Source, prefix_len: u8, seed: u64) -> u32 {
        source.prefix_slot(prefix_len, self.tags().1, QUERY_PREFIX_SLOTS, seed)
    }
}

/// The limits of one service: requests per second and burst of each level;
/// a rate of 0 switches the level off.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub source_rate: u32,
    pub source_burst: u32,
    pub prefix_rate: u32,
    pub prefix_burst: u32,
    pub global_rate: u32,
    pub global_burst: u32,
}

/// DNS defaults. A resolver asks an authoritative server for a name again
/// only when its cached answer expires, so even a large resolver sends a
/// home or office domain well under 1 query per second; a cold cache with
/// DNSSEC validation, or a mail server checking MX, SPF, DKIM, DMARC and
/// TLSA, asks about ten at once. 10/s with a burst of 20 per address is
/// ten times that pace, and cuts a victim's spoofed 100 queries per second
/// (the incident) by 90 %. A /24 (or /56) of resolvers together: 20/s,
/// burst 40. Everyone together: 200/s, burst 400, which bounds what a flood
/// from many spoofed sources, each under its own limit, can make the server
/// send (200 answers of 3 KB: 4.8 Mbit/s). Slip 2 as BIND's RRL: every
/// second request over a limit gets a truncated answer (a 1 in 2 chance, in
/// random order), so a real resolver among them gets one within a few
/// retries and asks again over TCP, which these limits do not touch.
pub const DEFAULT_DNS: Limits = Limits {
    source_rate: 10,
    source_burst: 20,
    prefix_rate: 20,
    prefix_burst: 40,
    global_rate: 200,
    global_burst: 400,
};
pub const DEFAULT_DNS_SLIP: u8 = 2;
/// Slip is 1 in N, N at most this (BIND's range).
pub const MAX_SLIP: u8 = 10;

/// NTP defaults. A client polls every 64 to 1024 s (16 s at the fastest)
/// after a start-up burst of 4 to 8 requests 2 s apart (iburst). chrony's
/// and ntpd's own rate limits, when an operator turns them on, allow one
/// request per 8 s with a burst of 8 per address; 1/s with a burst of 8 is
/// eight times that, enough for 64 clients behind one NAT address at a
/// 64 s poll. A prefix: 8/s, burst 32. Everyone: 100/s, burst 200 (6400
/// clients at a 64 s poll). An NTP answer is as large as the request, so
/// NTP gets no slip: a limited client simply asks again at its next poll.
pub const DEFAULT_NTP: Limits = Limits {
    source_rate: 1,
    source_burst: 8,
    prefix_rate: 8,
    prefix_burst: 32,
    global_rate: 100,
    global_burst: 200,
};

/// The cap on truncated answers, from everywhere together: a flood over
/// the global level (many spoofed sources) would otherwise get 1 in
/// `dns_slip` of its queries answered from XDP, which costs the gateway far
/// more than a drop (building, checksumming and sending the reply) and
/// sends the victims as many packets as the flood brings. 1000/s is about
/// 0.8 Mbit/s of replies, and still leaves real resolvers a truncated
/// answer to find now and then during such a flood.
pub const DEFAULT_DNS_SLIP_RATE: u32 = 1000;

/// QUERY_GLOBAL: one bucket per service ([`Service::global_slot`]), then
/// the slip cap's.
pub const SLIP_CAP_SLOT: u32 = Service::COUNT;
pub const QUERY_GLOBAL_SLOTS: u32 = Service::COUNT + 1;

/// Prefix lengths of the per-prefix levels: BIND's RRL defaults.
pub const DEFAULT_PREFIX_V4: u8 = 24;
pub const DEFAULT_PREFIX_V6: u8 = 56;

/// Which level refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Source,
    Prefix,
    Global,
}

/// Whether a request over its limit gets a truncated answer: with slip
/// `slip` (0: never, N: 1 in N), given a random number.
#[inline(always)]
pub fn slips(slip: u8, random: u32) -> bool {
    // max(1): no division by zero, not even one LLVM cannot rule out
    // (its panic path would not load as BPF).
    slip != 0 && random.is_multiple_of(u32::from(slip.max(1)))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::collections::HashSet;

    use super::*;
    use crate::rate::admit;

    const SEC: u64 = 1_000_000_000;

    /// Requests at `per_second` for `seconds` from a fresh bucket: how many
    /// are admitted.
    fn admitted(limit: (u32, u32), per_second: u64, seconds: u64) -> u64 {
        let (rate, burst) = limit;
        let mut tat = 0;
        let mut count = 0;
        let start = 1000 * SEC;
        for i in 0..per_second * seconds {
            if let Some(next) = admit(tat, start + i * SEC / per_second, rate, burst) {
                tat = next;
                count += 1;
            }
        }
        count
    }

    /// The defaults' claims (docs/query-limits.md): a victim's spoofed
    /// 100 queries/s lose at least 88 % at its source bucket; a resolver
    /// at 3/s, and a start-up burst of 10, are never limited; an NTP
    /// client's iburst and polls pass, a flood is cut to about 1/s.
    #[test]
    fn the_defaults_cut_floods_and_spare_clients() {
        let dns_source = (DEFAULT_DNS.source_rate, DEFAULT_DNS.source_burst);
        let flood = admitted(dns_source, 100, 10);
        assert!(flood <= 120, "{flood} of 1000 admitted");
        assert_eq!(admitted(dns_source, 3, 60), 180);
        assert_eq!(
            admitted(dns_source, 1000, 0) + admitted(dns_source, 10_000, 0),
            0
        );
        let mut tat = 0;
        for _ in 0..10 {
            tat = admit(tat, 5 * SEC, dns_source.0, dns_source.1).expect("a burst of 10 passes");
        }
        let ntp_source = (DEFAULT_NTP.source_rate, DEFAULT_NTP.source_burst);
        // iburst: 8 requests 2 s apart, then a poll every 16 s.
        let mut tat = 0;
        let times = (0..8)
            .map(|i| i * 2 * SEC)
            .chain((1..20).map(|i| 14 * SEC + i * 16 * SEC));
        for now in times {
            tat = admit(tat, 100 * SEC + now, ntp_source.0, ntp_source.1)
                .expect("an NTP client is never limited");
        }
        let flood = admitted(ntp_source, 200, 10);
        assert!(flood <= 18, "{flood} of 2000 admitted");
    }

    #[test]
    fn slip_is_one_in_n() {
        assert!((0..1000).all(|r| !slips(0, r)));
        assert!((0..1000).all(|r| slips(1, r)));
        for n in 2..=MAX_SLIP {
            let slipped = (0..10_000u32).filter(|&r| slips(n, r)).count();
            assert_eq!(slipped, 10_000usize.div_ceil(usize::from(n)), "slip {n}");
        }
    }

    /// The services never share a slot for the same source by construction
    /// of their tags (only by chance), and each level stays in its map.
    #[test]
    fn services_hash_apart() {
        let seed = 0x0bad_5eed;
        let sources: std::vec::Vec<Source> = (0..4096u32)
            .map(|n| Source::ipv4((0xc633_6400 + n).to_be()))
            .collect();
        let same = sources
            .iter()
            .filter(|s| Service::Dns.source_slot(s, seed) == Service::Ntp.source_slot(s, seed))
            .count();
        assert!(same <= 2, "{same} of 4096 share a slot across services");
        let slots: HashSet<u32> = sources
            .iter()
            .map(|s| Service::Dns.prefix_slot(s, 24, seed))
            .collect();
        // 4096 addresses in 16 /24s.
        assert_eq!(slots.len(), 16);
        assert!(slots.iter().all(|&slot| slot < QUERY_PREFIX_SLOTS));
        assert!(
            sources
                .iter()
                .all(|s| Service::Ntp.source_slot(s, seed) < QUERY_SOURCE_SLOTS)
        );
        assert_ne!(Service::Dns.global_slot(), Service::Ntp.global_slot());
        assert!(Service::Ntp.global_slot() < Service::COUNT);
    }
}
