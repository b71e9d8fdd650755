//! Who is being dropped: the sampled drop events of a window of seconds,
//! split by source and by source prefix (IPv4 /24, IPv6 /48), each share
//! applied to the exact counters of the same seconds. `filter-ctl top` prints
//! it; the daemon keeps the history it is made from ([`History`]) and its
//! attack lines use the same estimates.
//!
//! The estimate of a source is its share of the reason's sampled events
//! times the packets the reason really dropped: sampling is a rate limit in
//! time, not in sources, so every source's packets are equally likely to be
//! sampled and the shares are unbiased; their error shrinks with the number
//! of events (about 1/sqrt(events) for a source with a large share).

use std::{
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, Instant},
};

use filter_common::{Action, Reason};
use filter_ctl_api::report::{Stats, TopEntry, TopKind};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{drops::Sample, units};

/// The longest window `top` can ask the daemon for, in seconds.
pub const MAX_SECONDS: u64 = 600;
/// Events the daemon keeps at most (about 100 bytes each): the window is
/// shorter when every drop reason floods at once at a high `sample_rate`.
const MAX_SAMPLES: usize = 500_000;
/// Sources and prefixes listed per reason.
pub const LIMIT: usize = 10;
/// The prefix lengths sources are grouped by.
const PREFIX_V4: u8 = 24;
const PREFIX_V6: u8 = 48;

/// What `top` reports: per drop reason, its exact totals over the window
/// and the estimated top sources and prefixes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopReport {
    /// The seconds the window really covers.
    pub seconds: f64,
    pub reasons: Vec<ReasonTop>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReasonTop {
    /// The reason's name.
    pub reason: String,
    /// Exact: dropped (or, in monitor mode, would-drop) packets and bytes.
    pub packets: u64,
    pub bytes: u64,
    /// Sampled events of the window.
    pub sampled: u64,
    pub sources: Vec<TopEntry>,
    pub prefixes: Vec<TopEntry>,
}

impl TopReport {
    /// `top --json`: every source row, then every prefix row, reason by reason.
    pub fn entries(&self) -> Vec<TopEntry> {
        self.reasons
            .iter()
            .flat_map(|reason| reason.sources.iter().chain(&reason.prefixes))
            .cloned()
            .collect()
    }

    /// The text `top` prints.
    pub fn describe(&self, iface: &str) -> String {
        // One counters snapshot (the daemon's first second) spans nothing.
        if self.seconds < 0.5 {
            return format!(
                "The daemon on {iface} has just started: it has no second of counters to \
                 report on yet. Ask again in a few seconds.\n"
            );
        }
        let mut out = format!(
            "Dropped on {iface} in the last {:.0} s, by source. Packets and bytes per source are \
             estimates: each source's share of the sampled drop events, applied to the exact \
             counters of its reason.\n",
            self.seconds
        );
        if self.reasons.is_empty() {
            out.push_str("\nnothing was dropped\n");
        }
        for reason in &self.reasons {
            let _ = writeln!(
                out,
                "\n{}: {} packets ({}) dropped, {} sampled",
                reason.reason,
                units::thousands(reason.packets),
                units::bytes(reason.bytes),
                units::thousands(reason.sampled)
            );
            if reason.sampled == 0 {
                out.push_str("  no sampled events: is sample_rate off?\n");
                continue;
            }
            for (title, rows) in [("source", &reason.sources), ("prefix", &reason.prefixes)] {
                let _ = writeln!(
                    out,
                    "  {title:<42} {:>14} {:>11} {:>7}",
                    "~packets", "~bytes", "share"
                );
                for row in rows {
                    let _ = writeln!(
                        out,
                        "  {:<42} {:>14} {:>11} {:>7}",
                        row.source,
                        units::thousands(row.packets),
                        units::bytes(row.bytes),
                        units::percent(row.share)
                    );
                }
            }
        }
        out
    }
}

/// Packets and bytes of `reason` in `delta`: dropped, and would-drop in
/// monitor mode (one of the two is zero unless monitor mode changed).
pub fn dropped(delta: &Stats, reason: Reason) -> (u64, u64) {
    [delta.counted(reason), delta.would_drop(reason)]
        .into_iter()
        .flatten()
        .fold((0, 0), |(p, b), row| (p + row.packets, b + row.bytes))
}

/// The prefix a source is grouped under.
pub fn prefix(source: IpAddr) -> IpNet {
    let len = if source.is_ipv4() {
        PREFIX_V4
    } else {
        PREFIX_V6
    };
    IpNet::new(source, len)
        .expect("the prefix lengths fit both families")
        .trunc()
}

/// Sampled events and bytes per key.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub events: u64,
    pub bytes: u64,
}

/// The `limit` keys with the most events, as rows of `reason` scaled to
/// `packets` and `bytes` over `total` sampled.
pub fn ranked<K: ToString + Ord>(
    tallies: impl IntoIterator<Item = (K, Tally)>,
    total: Tally,
    reason: Reason,
    kind: TopKind,
    (packets, bytes): (u64, u64),
    limit: usize,
) -> Vec<TopEntry> {
    let mut all: Vec<(K, Tally)> = tallies.into_iter().collect();
    // Ties in address order, so that a report does not depend on hashing.
    all.sort_by(|a, b| {
        b.1.events
            .cmp(&a.1.events)
            .then(b.1.bytes.cmp(&a.1.bytes))
            .then(a.0.cmp(&b.0))
    });
    all.truncate(limit);
    let scale = |part: u64, whole: u64, of: u64| {
        if whole == 0 {
            0
        } else {
            (part as f64 / whole as f64 * of as f64).round() as u64
        }
    };
    all.into_iter()
        .map(|(key, tally)| TopEntry {
            reason,
            kind,
            source: key.to_string(),
            packets: scale(tally.events, total.events, packets),
            bytes: scale(tally.bytes, total.bytes, bytes),
            share: tally.events as f64 / total.events.max(1) as f64,
            sampled: tally.events,
        })
        .collect()
}

/// The report of `samples` against the counters' `delta` over `seconds`.
pub fn estimate<'a>(
    samples: impl IntoIterator<Item = &'a Sample>,
    delta: &Stats,
    seconds: f64,
    limit: usize,
) -> TopReport {
    let mut by_reason: HashMap<u32, Vec<&Sample>> = HashMap::new();
    for sample in samples {
        by_reason
            .entry(sample.reason.index())
            .or_default()
            .push(sample);
    }
    let mut reasons: Vec<ReasonTop> = Reason::ALL
        .into_iter()
        .filter(|reason| reason.action() == Action::Drop)
        .filter_map(|reason| {
            let totals = dropped(delta, reason);
            let samples = by_reason.remove(&reason.index()).unwrap_or_default();
            if totals.0 == 0 && samples.is_empty() {
                return None;
            }
            let mut sources: HashMap<IpAddr, Tally> = HashMap::new();
            let mut prefixes: HashMap<IpNet, Tally> = HashMap::new();
            let mut total = Tally::default();
            for sample in &samples {
                for tally in [
                    sources.entry(sample.source).or_default(),
                    prefixes.entry(prefix(sample.source)).or_default(),
                    &mut total,
                ] {
                    tally.events += 1;
                    tally.bytes += u64::from(sample.len);
                }
            }
            Some(ReasonTop {
                reason: reason.name().to_owned(),
                packets: totals.0,
                bytes: totals.1,
                sampled: total.events,
                sources: ranked(sources, total, reason, TopKind::Source, totals, limit),
                prefixes: ranked(prefixes, total, reason, TopKind::Prefix, totals, limit),
            })
        })
        .collect();
    reasons.sort_by_key(|reason| std::cmp::Reverse(reason.packets));
    TopReport { seconds, reasons }
}

/// The daemon's memory of the last [`MAX_SECONDS`]: every sampled event and
/// a snapshot of the counters each second.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
    counters: VecDeque<(Instant, Stats)>,
}

impl History {
    pub fn add(&mut self, sample: Sample) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Records the counters read at `at`, and forgets what is older than the longest window.
    pub fn tick(&mut self, at: Instant, stats: Stats) {
        self.counters.push_back((at, stats));
        let keep = Duration::from_secs(MAX_SECONDS + 1);
        while self
            .counters
            .front()
            .is_some_and(|(first, _)| at.duration_since(*first) > keep)
        {
            self.counters.pop_front();
        }
        while self
            .samples
            .front()
            .is_some_and(|sample| at.duration_since(sample.at) > keep)
        {
            self.samples.pop_front();
        }
    }

    /// Events taken off the ring after `since`.
    pub fn samples_since(&self, since: Instant) -> impl Iterator<Item = &Sample> {
        // Events are in arrival order: skip from the back.
        let start = self.samples.partition_point(|sample| sample.at <= since);
        self.samples.range(start..)
    }

    /// The latest counters snapshot.
    pub fn latest(&self) -> Option<&(Instant, Stats)> {
        self.counters.back()
    }

    /// The counters snapshot closest to `seconds` before the latest one (or
    /// the oldest): snapshots are about a second apart, not exactly, so the
    /// one just after the wanted instant may be the closer.
    fn window_start(&self, seconds: u64) -> Option<&(Instant, Stats)> {
        let (latest, _) = self.counters.back()?;
        let wanted = Duration::from_secs(seconds);
        let off = |(at, _): &&(Instant, Stats)| latest.duration_since(*at).abs_diff(wanted);
        self.counters.iter().min_by_key(off)
    }

    /// `top` over the last `seconds`, as of the latest counters snapshot.
    pub fn top(&self, seconds: u64, limit: usize) -> TopReport {
        let (Some((end, last)), Some((start, first))) =
            (self.counters.back(), self.window_start(seconds))
        else {
            return TopReport::default();
        };
        let samples = self
            .samples_since(*start)
            .take_while(|sample| sample.at <= *end);
        estimate(
            samples,
            &last.since(first),
            end.duration_since(*start).as_secs_f64(),
            limit,
        )
    }
}

#[cfg(test)]
mod tests {
    use filter_ctl_api::report::{CountedAction, ReasonCount};

    use super::*;

    fn sample(source: &str, at: Instant) -> Sample {
        Sample {
            at,
            reason: Reason::DropUnsolicitedDns,
            source: source.parse().unwrap(),
            destination: "203.0.113.2".parse().unwrap(),
            len: 1000,
            ip_len: 986,
            protocol: 17,
            src_port: 53,
            dst_port: 40000,
            fragment: false,
            would_drop: false,
        }
    }

    fn stats(dns_packets: u64) -> Stats {
        Stats(vec![ReasonCount {
            reason: Reason::DropUnsolicitedDns,
            direction: Reason::DropUnsolicitedDns.direction(),
            action: CountedAction::Drop,
            packets: dns_packets,
            bytes: dns_packets * 1000,
        }])
    }

    #[test]
    fn shares_scale_the_exact_counters() {
        let now = Instant::now();
        let mut samples = vec![];
        for i in 0..300 {
            samples.push(sample("198.51.100.7", now));
            samples.push(sample(&format!("203.0.113.{}", i % 100), now));
        }
        samples.push(sample("2001:db8:1:2::9", now));
        let report = estimate(&samples, &stats(60_100), 10.0, 3);
        assert_eq!(report.reasons.len(), 1);
        let dns = &report.reasons[0];
        assert_eq!((dns.packets, dns.sampled), (60_100, 601));
        let top = &dns.sources[0];
        assert_eq!(top.source, "198.51.100.7");
        assert_eq!(top.packets, 30_000);
        assert_eq!(top.bytes, 30_000_000);
        assert_eq!(dns.sources.len(), 3);
        // A tie (300 events each), in address order.
        assert_eq!(dns.prefixes[0].source, "198.51.100.0/24");
        assert_eq!(dns.prefixes[0].packets, 30_000);
        assert_eq!(dns.prefixes[1].source, "203.0.113.0/24");
        assert_eq!(dns.prefixes[2].source, "2001:db8:1::/48");
        let json = serde_json::to_value(report.entries()).unwrap();
        assert_eq!(json[0]["source"], "198.51.100.7");
        assert_eq!(json[0]["reason"], "drop_unsolicited_dns");
        assert_eq!(json[0]["kind"], "source");
        assert_eq!(json[0]["packets"], 30_000);
        let text = report.describe("wan0");
        assert!(
            text.contains("drop_unsolicited_dns: 60,100 packets"),
            "{text}"
        );
        assert!(text.contains("estimates"), "{text}");
    }

    /// Snapshots a little less than a second apart: `top --seconds 10`
    /// covers 10 s (it said "the last 11 s").
    #[test]
    fn the_window_is_the_seconds_asked_for() {
        let start = Instant::now();
        let mut history = History::default();
        for n in 0..30 {
            history.tick(start + Duration::from_millis(999 * n), stats(100 * n));
        }
        let report = history.top(10, LIMIT);
        assert!((report.seconds - 10.0).abs() < 0.5, "{}", report.seconds);
        assert!(report.describe("wan0").contains("in the last 10 s"));
        assert_eq!(report.reasons[0].packets, 1000);
    }

    /// Right after the daemon starts it said "in the last 0 s".
    #[test]
    fn a_daemon_just_started_says_so() {
        let mut history = History::default();
        assert!(
            history
                .top(10, LIMIT)
                .describe("wan0")
                .contains("just started")
        );
        history.tick(Instant::now(), stats(100));
        let text = history.top(10, LIMIT).describe("wan0");
        assert!(text.contains("just started"), "{text}");
        assert!(!text.contains("last 0 s"), "{text}");
    }

    #[test]
    fn the_window_takes_the_counters_and_events_of_its_seconds() {
        let start = Instant::now();
        let mut history = History::default();
        history.tick(start, stats(0));
        history.add(sample("192.0.2.1", start + Duration::from_millis(500)));
        history.tick(start + Duration::from_secs(1), stats(100));
        history.add(sample("192.0.2.2", start + Duration::from_millis(1500)));
        history.tick(start + Duration::from_secs(2), stats(300));
        // An event after the last snapshot waits for the next one.
        history.add(sample("192.0.2.3", start + Duration::from_millis(2500)));
        let last_second = history.top(1, LIMIT);
        let dns = &last_second.reasons[0];
        assert_eq!((dns.packets, dns.sampled), (200, 1));
        assert_eq!(dns.sources[0].source, "192.0.2.2");
        let all = history.top(60, LIMIT);
        assert_eq!(all.seconds, 2.0);
        assert_eq!((all.reasons[0].packets, all.reasons[0].sampled), (300, 2));
    }
}
