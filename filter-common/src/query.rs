//! Limits on inbound requests to the DNS and NTP servers on this side of the
//! link (on the gateway, or behind one of its port forwards), in the style
//! of DNS Response Rate Limiting (BIND's and Knot's RRL). A spoofed flood of
//! requests (a reflection attack that uses our server as the amplifier) is
//! cut at the few requests per second a victim's address may send; real
//! clients, which ask at a far lower pace, are never limited. For DNS, a
//! share of the requests over the limit ("slip", 1 in N) get a minimal
//! truncated answer built in XDP, so that a real resolver sharing a limit
//! with a victim retries over TCP.
//!
//! DNS queries meet the *name* level first: one bucket per client prefix,
//! question name (case folded) and type ([`name_slot`], the key
//! [`crate::dns::QuestionHash`]), as RRL keys its buckets on the answer. A
//! reflection attack repeats the few names with big answers, and is caught
//! however many addresses of a prefix it spoofs; a resolver farm asks many
//! different names from one prefix, and never shares a bucket across them.
//! Then both services meet the catch-alls: per source (IPv4 /32, IPv6 /64),
//! per source prefix, for all sources together, each with its own rate and
//! burst. NTP has no name level: a client asks one server one question.
//!
//! The levels are hashed-slot GCRA buckets ([`crate::rate`]: no keys, no
//! eviction, the per-attach secret seed), one `u64` "full again" time per
//! slot. DNS and NTP share the maps but never a bucket: each service hashes
//! with its own tags, and has its own global bucket. The name level shares
//! QUERY_SOURCES with the per-source level, under tags of its own.
//!
//! docs/query-limits.md has the defaults and why, the slip reply and the rules.

use crate::rate::{Source, Tags};

/// Slots of the per-source level (IPv4 /32, IPv6 /64) of both services and
/// of the DNS name level: 1 MiB.
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

/// Hash tags of the DNS name level.
const NAME_TAGS: Tags = Tags {
    v4: 0x7a11_d054,
    v6: 0x7a11_d064,
};

/// The key of a DNS query whose question the filter cannot read (none, a
/// compression pointer, a reserved label type, cut short): all of them from
/// one prefix share one name bucket.
pub const NO_QUESTION: u64 = 0x6e6f_2071_7565_7374;

/// The slot in QUERY_SOURCES of the DNS name level's bucket for `source`'s
/// `/prefix_len` asking `question` (a [`crate::dns::QuestionHash`], or
/// [`NO_QUESTION`]).
#[inline(always)]
pub fn name_slot(source: &Source, prefix_len: u8, question: u64, seed: u64) -> u32 {
    source.prefix_key_slot(prefix_len, question, NAME_TAGS, QUERY_SOURCE_SLOTS, seed)
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

/// DNS catch-alls (docs/query-limits.md, *Defaults and why*). The name
/// level stops a reflection attack, however many addresses of a prefix it
/// spoofs; these only bound what one source, one prefix and everyone
/// together may ask of all names, so they must stay above what a busy
/// resolver farm sends a home or office zone: a resolver asks a name again
/// only when its cached copy expires, each cache of a farm for itself, and
/// DNSSEC validation or a mail server's checks (MX, SPF, DKIM, DMARC, TLSA)
/// ask about ten names at once. Per source 50/s, burst 100 (five such
/// bursts a second); per prefix 100/s, burst 200 (the farm of issue 27,
/// eight resolvers at 4 names a second, three times over); everyone
/// together 200/s, burst 400, as before: what a flood of many names from
/// many prefixes can make the server send (200 answers of 3 KB: 4.8
/// Mbit/s). A random-name flood (water torture) meets these, not the name
/// level. Slip 2 as BIND's RRL: every second request over a limit gets a
/// truncated answer (a 1 in 2 chance, in random order), so a real resolver
/// among them gets one within a few retries and asks again over TCP, which
/// these limits do not touch.
pub const DEFAULT_DNS: Limits = Limits {
    source_rate: 50,
    source_burst: 100,
    prefix_rate: 100,
    prefix_burst: 200,
    global_rate: 200,
    global_burst: 400,
};
/// The DNS catch-alls' defaults before the name level (issue 27): per
/// source 10/s, burst 20; per prefix 20/s, burst 40, which a resolver
/// farm's /24 met.
pub const PRE_NAME_LEVEL_DNS: Limits = Limits {
    source_rate: 10,
    source_burst: 20,
    prefix_rate: 20,
    prefix_burst: 40,
    global_rate: 200,
    global_burst: 400,
};

/// What an upgrade from a build without the name level makes of the DNS
/// limits it carries over: a level still at its old default (rate and
/// burst) takes the new one, which the name level allows; a value an
/// operator set stays. Whether anything changed.
pub fn raise_pre_name_level_defaults(limits: &mut Limits) -> bool {
    let old = PRE_NAME_LEVEL_DNS;
    let mut raised = false;
    if (limits.source_rate, limits.source_burst) == (old.source_rate, old.source_burst) {
        limits.source_rate = DEFAULT_DNS.source_rate;
        limits.source_burst = DEFAULT_DNS.source_burst;
        raised = true;
    }
    if (limits.prefix_rate, limits.prefix_burst) == (old.prefix_rate, old.prefix_burst) {
        limits.prefix_rate = DEFAULT_DNS.prefix_rate;
        limits.prefix_burst = DEFAULT_DNS.prefix_burst;
        raised = true;
    }
    raised
}

/// The DNS name level: queries per second for one name and type from one
/// prefix, and its burst. BIND's RRL suggests 5 identical responses a second
/// per /24, Windows DNS defaults to 5; we count queries rather than answers,
/// and allow twice that: 10/s, burst 20. A resolver farm asks one name
/// once per cache and TTL; a victim's spoofed flood of one big answer is cut
/// to 10/s whether it comes from one address or all of its /24.
pub const DEFAULT_DNS_NAME_RATE: u32 = 10;
pub const DEFAULT_DNS_NAME_BURST: u32 = 20;
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

/// Which level refused a request (the value is what the slip's plan notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Source = 0,
    Prefix = 1,
    Global = 2,
    /// DNS only: the client prefix's bucket for the question's name and type.
    Name = 3,
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
    #[test]
    fn an_upgrade_raises_only_the_old_defaults() {
        let mut limits = PRE_NAME_LEVEL_DNS;
        assert!(raise_pre_name_level_defaults(&mut limits));
        assert_eq!(limits, DEFAULT_DNS);
        // An operator's values stay, level by level (a rate changed alone
        // is no default either).
        let mut limits = Limits {
            source_rate: 10,
            source_burst: 30,
            ..PRE_NAME_LEVEL_DNS
        };
        assert!(raise_pre_name_level_defaults(&mut limits));
        assert_eq!((limits.source_rate, limits.source_burst), (10, 30));
        assert_eq!(
            (limits.prefix_rate, limits.prefix_burst),
            (DEFAULT_DNS.prefix_rate, DEFAULT_DNS.prefix_burst)
        );
        let mut limits = Limits {
            source_rate: 5,
            prefix_rate: 0,
            ..PRE_NAME_LEVEL_DNS
        };
        let before = limits;
        assert!(!raise_pre_name_level_defaults(&mut limits));
        assert_eq!(limits, before);
        // The new defaults are a fixed point.
        let mut limits = DEFAULT_DNS;
        assert!(!raise_pre_name_level_defaults(&mut limits));
    }

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
    /// 100 queries/s for one name lose at least 88 % at its name bucket,
    /// from one address or all of its /24; a resolver farm (issue 27: eight
    /// resolvers in one /24, 4 names a second each, different names) and
    /// a start-up burst of 10 names are never limited by a catch-all, nor a
    /// farm's caches asking one name at 6/s; an NTP client's iburst and
    /// polls pass, a flood is cut to about 1/s.
    #[test]
    fn the_defaults_cut_floods_and_spare_clients() {
        let name = (DEFAULT_DNS_NAME_RATE, DEFAULT_DNS_NAME_BURST);
        let flood = admitted(name, 100, 10);
        assert!(flood <= 120, "{flood} of 1000 admitted");
        let flood = admitted(name, 600, 10);
        assert!(flood <= 120, "{flood} of 6000 admitted");
        assert_eq!(admitted(name, 6, 60), 360);
        let dns_source = (DEFAULT_DNS.source_rate, DEFAULT_DNS.source_burst);
        let dns_prefix = (DEFAULT_DNS.prefix_rate, DEFAULT_DNS.prefix_burst);
        assert_eq!(admitted(dns_source, 4, 60), 240);
        assert_eq!(admitted(dns_prefix, 32, 60), 32 * 60);
        // Three times the farm's pace still passes its prefix.
        assert_eq!(admitted(dns_prefix, 96, 60), 96 * 60);
        // Two such farms together pass the global bucket.
        let dns_global = (DEFAULT_DNS.global_rate, DEFAULT_DNS.global_burst);
        assert_eq!(admitted(dns_global, 192, 60), 192 * 60);
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

    /// The name level: one slot per prefix, name and type, in QUERY_SOURCES;
    /// a /24 asking one name shares it, different names or another /24 do
    /// not (but for chance), nor the source level of the same addresses.
    #[test]
    fn names_hash_per_prefix_and_question() {
        use crate::dns::question_hash;
        let seed = 0x05ee_d0fa_0011;
        let www = question_hash(b"\x03www\x07example\x00\x00\x01", seed);
        let txt = question_hash(b"\x03www\x07example\x00\x00\x10", seed);
        let farm: std::vec::Vec<Source> = (0..=255u32)
            .map(|n| Source::ipv4((0xcb00_7100 + n).to_be()))
            .collect();
        let slots: HashSet<u32> = farm.iter().map(|s| name_slot(s, 24, www, seed)).collect();
        assert_eq!(slots.len(), 1, "one /24, one name: one bucket");
        let slot = name_slot(&farm[0], 24, www, seed);
        assert!(slot < QUERY_SOURCE_SLOTS);
        assert_ne!(name_slot(&farm[0], 24, txt, seed), slot, "another type");
        assert_ne!(
            name_slot(&farm[5], 32, www, seed),
            slot,
            "one address of it"
        );
        let next = Source::ipv4(0xcb00_7200u32.to_be());
        assert_ne!(name_slot(&next, 24, www, seed), slot, "another /24");
        assert_ne!(name_slot(&farm[0], 24, www, seed ^ 1), slot, "another seed");
        // 4096 names from one /24: spread over the slots like random keys
        // (~4032 of 131072 taken).
        let names: HashSet<u32> = (0..4096u32)
            .map(|n| {
                let label = std::format!("{n:04}");
                let question = [&b"\x04"[..], label.as_bytes(), b"\x00\x00\x01"].concat();
                name_slot(&farm[0], 24, question_hash(&question, seed), seed)
            })
            .collect();
        assert!(names.len() > 4000, "{}", names.len());
        let sources: HashSet<u32> = farm
            .iter()
            .map(|s| Service::Dns.source_slot(s, seed))
            .collect();
        assert!(!sources.contains(&slot) || sources.len() < 256);
        assert_ne!(name_slot(&farm[0], 24, NO_QUESTION, seed), slot);
    }
}
