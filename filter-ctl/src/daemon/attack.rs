//! Attack start and end lines: a drop reason whose rate rises past a
//! threshold starts an attack; when it stays below half the threshold for a
//! while, the attack ends with a summary. The rates are the exact counters'
//! (dropped plus, in monitor mode, would-drop packets), read each second; who
//! is behind it comes from the sampled events (see [`super::top`]).
//!
//! Distinct sources: the sampled sources of an attack are counted exactly
//! (up to [`MAX_TRACKED`] of them); from how many distinct ones `k` sampled
//! events found, the number of sources is estimated as the `n` for which `k`
//! draws among `n` equally busy sources would find as many (the inverse of
//! `n (1 - e^(-k/n))`). Exact when every source was sampled; for sources of
//! very unequal rates it is a lower bound, and when no source was sampled
//! twice it is only "at least".

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use filter_common::{Action, Reason};
use filter_ctl_api::report::Stats;
use ipnet::IpNet;

use super::{
    drops::Sample,
    top::{self, History, Tally},
    units,
};

/// When an attack starts and ends (`filter-ctl daemon --attack-pps`,
/// `--attack-quiet`).
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// A drop reason counting this many packets per second or more starts an attack.
    pub start_pps: u64,
    /// Below half of `start_pps` for this long, it ends.
    pub quiet: Duration,
}

/// Sources tracked per attack for the distinct count and the summary's top
/// list; beyond it, new sources are only counted as events.
pub const MAX_TRACKED: usize = 100_000;
/// Sources named in a line.
const NAMED: usize = 3;

/// One attack under way.
#[derive(Debug)]
struct Attack {
    /// When the counters were read before its first second over the
    /// threshold: its packets are counted from there.
    started: Instant,
    /// The counters then (packets and bytes of the reason).
    at_start: (u64, u64),
    /// The last second over the end threshold.
    last_busy: Instant,
    peak_pps: f64,
    peak_bps: f64,
    sources: HashMap<IpAddr, Tally>,
    prefixes: HashMap<IpNet, Tally>,
    total: Tally,
    /// The history was read up to here.
    seen_until: Instant,
}

/// The attacks of one interface, by reason.
#[derive(Debug)]
pub struct Detector {
    iface: String,
    thresholds: Thresholds,
    active: HashMap<u32, Attack>,
}

impl Detector {
    pub fn new(iface: &str, thresholds: Thresholds) -> Self {
        Self {
            iface: iface.to_owned(),
            thresholds,
            active: HashMap::new(),
        }
    }

    /// Reasons under attack now.
    pub fn active(&self) -> impl Iterator<Item = Reason> + '_ {
        Reason::ALL
            .into_iter()
            .filter(|reason| self.active.contains_key(&reason.index()))
    }

    /// One second more: `delta` is what the counters moved since the last
    /// call, `secs` how long ago that was, `total` the counters now.
    pub fn update(
        &mut self,
        now: Instant,
        delta: &Stats,
        secs: f64,
        total: &Stats,
        history: &History,
    ) {
        if secs <= 0.0 {
            return;
        }
        for reason in Reason::ALL
            .into_iter()
            .filter(|reason| reason.action() == Action::Drop)
        {
            let (packets, bytes) = top::dropped(delta, reason);
            let pps = packets as f64 / secs;
            let bps = bytes as f64 / secs;
            let key = reason.index();
            match self.active.get_mut(&key) {
                None if pps >= self.thresholds.start_pps as f64 => {
                    // The events of the seconds that started it.
                    let since = now - Duration::from_secs_f64(secs.max(2.0));
                    let mut attack = Attack {
                        started: now - Duration::from_secs_f64(secs),
                        at_start: sub(top::dropped(total, reason), (packets, bytes)),
                        last_busy: now,
                        peak_pps: pps,
                        peak_bps: bps,
                        sources: HashMap::new(),
                        prefixes: HashMap::new(),
                        total: Tally::default(),
                        seen_until: since,
                    };
                    attack.absorb(reason, history, now);
                    log::warn!(
                        target: "attack",
                        event = "attack_started", iface = self.iface.as_str(), reason = reason.name(),
                        pps = pps.round() as u64, bits_per_second = (bps * 8.0).round() as u64,
                        sources = attack.distinct().0, top = attack.top_json();
                        "attack started on {}: {} {} pkt/s ({}) from {}; top {}",
                        self.iface,
                        reason.name(),
                        units::thousands(pps.round() as u64),
                        units::bit_rate(bps),
                        attack.describe_distinct(),
                        attack.describe_top(&attack.sources, NAMED),
                    );
                    self.active.insert(key, attack);
                }
                None => {}
                Some(attack) => {
                    attack.absorb(reason, history, now);
                    attack.peak_pps = attack.peak_pps.max(pps);
                    attack.peak_bps = attack.peak_bps.max(bps);
                    if pps >= self.thresholds.start_pps as f64 / 2.0 {
                        attack.last_busy = now;
                    } else if now.duration_since(attack.last_busy) >= self.thresholds.quiet {
                        let attack = self.active.remove(&key).expect("found above");
                        let summary = attack.summary(now, top::dropped(total, reason));
                        self.ended(reason, &attack, &summary, "ended");
                    }
                }
            }
        }
    }

    /// The attacks still under way when the daemon stops, summed up with
    /// the counters read then (`total`), so that no packet goes unreported.
    pub fn stop(&mut self, now: Instant, total: &Stats) {
        for reason in Reason::ALL {
            if let Some(attack) = self.active.remove(&reason.index()) {
                let summary = attack.summary(now, top::dropped(total, reason));
                self.ended(
                    reason,
                    &attack,
                    &summary,
                    "still under way as the daemon stops",
                );
            }
        }
    }

    fn ended(&self, reason: Reason, attack: &Attack, summary: &Summary, how: &str) {
        let Summary {
            lasted,
            quiet,
            packets,
            bytes,
        } = *summary;
        log::warn!(
            target: "attack",
            event = "attack_ended", iface = self.iface.as_str(), reason = reason.name(),
            duration_seconds = lasted.as_secs_f64(), quiet_seconds = quiet.as_secs_f64(),
            packets = packets, bytes = bytes,
            peak_pps = attack.peak_pps.round() as u64, sources = attack.distinct().0,
            top = attack.top_json();
            "attack {how} on {}: {} after {} (the last {} below half the threshold): {} \
             packets ({}), peak {} pkt/s ({}), from {}; top sources {}; top prefixes {}",
            self.iface,
            reason.name(),
            units::seconds(lasted),
            units::seconds(quiet),
            units::thousands(packets),
            units::bytes(bytes),
            units::thousands(attack.peak_pps.round() as u64),
            units::bit_rate(attack.peak_bps),
            attack.describe_distinct(),
            attack.describe_top(&attack.sources, NAMED),
            attack.describe_top(&attack.prefixes, NAMED),
        );
    }
}

/// An attack's totals when it ends: exact, from the counters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Summary {
    /// From the counters read before its first second over the threshold
    /// to those read as it ends.
    lasted: Duration,
    /// The end of it spent below half the threshold.
    quiet: Duration,
    /// Every packet (and byte) of the reason counted in that time.
    packets: u64,
    bytes: u64,
}

fn sub(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))
}

impl Attack {
    /// Its totals as of `now`, with the reason's counters then.
    fn summary(&self, now: Instant, counts: (u64, u64)) -> Summary {
        let (packets, bytes) = sub(counts, self.at_start);
        Summary {
            lasted: now.duration_since(self.started),
            quiet: now.duration_since(self.last_busy),
            packets,
            bytes,
        }
    }

    /// Adds the reason's events that arrived since the last call.
    fn absorb(&mut self, reason: Reason, history: &History, now: Instant) {
        for sample in history
            .samples_since(self.seen_until)
            .filter(|sample| sample.reason == reason && sample.at <= now)
        {
            self.add(sample);
        }
        self.seen_until = now;
    }

    fn add(&mut self, sample: &Sample) {
        let len = u64::from(sample.len);
        let count = |tally: &mut Tally| {
            tally.events += 1;
            tally.bytes += len;
        };
        count(&mut self.total);
        if self.sources.len() < MAX_TRACKED || self.sources.contains_key(&sample.source) {
            count(self.sources.entry(sample.source).or_default());
        }
        let prefix = top::prefix(sample.source);
        if self.prefixes.len() < MAX_TRACKED || self.prefixes.contains_key(&prefix) {
            count(self.prefixes.entry(prefix).or_default());
        }
    }

    /// The estimated number of sources, and whether it is only a lower bound.
    fn distinct(&self) -> (u64, bool) {
        estimate_sources(self.sources.len() as u64, self.total.events)
    }

    fn describe_distinct(&self) -> String {
        match self.distinct() {
            (0, _) => "unknown sources (no sampled events; is sample_rate off?)".into(),
            (1, false) => "1 source".into(),
            (n, false) => format!("~{} sources", units::thousands(round_estimate(n))),
            (n, true) => format!("at least {} sources", units::thousands(n)),
        }
    }

    /// `198.51.100.7 (3%), 203.0.113.9 (2%)`.
    fn describe_top<K: ToString>(&self, tallies: &HashMap<K, Tally>, count: usize) -> String {
        let ranked = ranked(tallies, count);
        if ranked.is_empty() {
            return "unknown".into();
        }
        ranked
            .iter()
            .map(|(key, tally)| {
                let share = tally.events as f64 / self.total.events.max(1) as f64;
                format!("{} ({})", key.to_string(), units::percent(share))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The top sources as a JSON list, for JSON log lines.
    fn top_json(&self) -> String {
        let rows: Vec<_> = ranked(&self.sources, NAMED)
            .into_iter()
            .map(|(source, tally)| {
                serde_json::json!({
                    "source": source.to_string(),
                    "share": tally.events as f64 / self.total.events.max(1) as f64,
                })
            })
            .collect();
        serde_json::Value::from(rows).to_string()
    }
}

fn ranked<K>(tallies: &HashMap<K, Tally>, count: usize) -> Vec<(&K, Tally)> {
    let mut all: Vec<(&K, Tally)> = tallies.iter().map(|(k, t)| (k, *t)).collect();
    all.sort_by_key(|(_, tally)| std::cmp::Reverse(tally.events));
    all.truncate(count);
    all
}

/// Two significant digits are all an estimate has: 10,437 -> 10,000.
fn round_estimate(n: u64) -> u64 {
    if n < 100 {
        return n;
    }
    let magnitude = 10u64.pow(n.ilog10() - 1);
    (n + magnitude / 2) / magnitude * magnitude
}

/// How many equally busy sources `events` draws would have come from to
/// find `distinct` of them; `(distinct, true)` when no source was drawn twice
/// (then there could be any number more).
pub fn estimate_sources(distinct: u64, events: u64) -> (u64, bool) {
    if distinct == 0 || events == 0 {
        return (0, false);
    }
    if distinct >= events {
        return (distinct, true);
    }
    let (k, d) = (events as f64, distinct as f64);
    let found = |n: f64| n * (1.0 - (-k / n).exp());
    // found(n) grows with n from 1 towards k: bisect for found(n) = d.
    let (mut low, mut high) = (d, d);
    while found(high) < d {
        high *= 2.0;
    }
    for _ in 0..100 {
        let mid = (low + high) / 2.0;
        if found(mid) < d {
            low = mid;
        } else {
            high = mid;
        }
    }
    (high.round() as u64, false)
}

#[cfg(test)]
mod tests {
    use filter_ctl_api::report::{CountedAction, ReasonCount};

    use super::*;

    #[test]
    fn sources_are_estimated_from_repeats() {
        // Every source sampled: exact.
        assert_eq!(estimate_sources(1, 500), (1, false));
        assert_eq!(estimate_sources(10, 5000), (10, false));
        // 2,000 events among 10,400 equally busy sources find about 1,817.
        let (n, bound) = estimate_sources(1817, 2000);
        assert!(!bound && (10_000..=10_800).contains(&n), "{n}");
        assert_eq!(estimate_sources(200, 200), (200, true));
        assert_eq!(estimate_sources(0, 0), (0, false));
        assert_eq!(round_estimate(10_437), 10_000);
        assert_eq!(round_estimate(1_267), 1_300);
        assert_eq!(round_estimate(42), 42);
    }

    fn stats(packets: u64) -> Stats {
        Stats(vec![ReasonCount {
            reason: Reason::DropUnsolicitedDns,
            direction: Reason::DropUnsolicitedDns.direction(),
            action: CountedAction::Drop,
            packets,
            bytes: packets * 1200,
        }])
    }

    #[test]
    fn an_attack_starts_over_the_threshold_and_ends_after_a_quiet_while() {
        let thresholds = Thresholds {
            start_pps: 1000,
            quiet: Duration::from_secs(3),
        };
        let mut detector = Detector::new("wan0", thresholds);
        let mut history = History::default();
        let start = Instant::now();
        let mut total = 0;
        let mut second = |detector: &mut Detector, history: &mut History, n: u64, pps: u64| {
            let now = start + Duration::from_secs(n);
            history.add(Sample {
                at: now - Duration::from_millis(500),
                reason: Reason::DropUnsolicitedDns,
                source: "198.51.100.7".parse().unwrap(),
                destination: "203.0.113.2".parse().unwrap(),
                len: 1200,
                ip_len: 1186,
                protocol: 17,
                src_port: 53,
                dst_port: 1,
                fragment: false,
                would_drop: false,
            });
            total += pps;
            history.tick(now, stats(total));
            detector.update(now, &stats(pps), 1.0, &stats(total), history);
        };
        second(&mut detector, &mut history, 1, 500);
        assert_eq!(detector.active().count(), 0);
        second(&mut detector, &mut history, 2, 5000);
        assert_eq!(
            detector.active().collect::<Vec<_>>(),
            [Reason::DropUnsolicitedDns]
        );
        // Half the threshold keeps it going.
        second(&mut detector, &mut history, 3, 500);
        // Below half the threshold, but not yet for 3 s.
        for n in 4..=5 {
            second(&mut detector, &mut history, n, 100);
            assert_eq!(detector.active().count(), 1, "second {n}");
        }
        second(&mut detector, &mut history, 6, 100);
        assert_eq!(detector.active().count(), 0);
    }

    /// The summary counts every packet from the counters read before the
    /// first second over the threshold to those read at the end (the quiet
    /// tail included), and its duration is that time, not rounded.
    #[test]
    fn an_attack_sums_every_packet_of_its_exact_time() {
        let thresholds = Thresholds {
            start_pps: 1000,
            quiet: Duration::from_secs(2),
        };
        let mut detector = Detector::new("wan0", thresholds);
        let history = History::default();
        let start = Instant::now();
        // Reads 1.3 s apart: 100 packets, then 4000, 3000, then a trickle.
        let reads = [100, 4100, 7100, 7150, 7200];
        let at = |n: usize| start + Duration::from_millis(1300 * (n as u64 + 1));
        let mut ending = None;
        for (n, total) in reads.into_iter().enumerate() {
            let before = if n == 0 { 0 } else { reads[n - 1] };
            if n == reads.len() - 1 {
                // What the end line will say, computed as `update` does.
                let attack = &detector.active[&Reason::DropUnsolicitedDns.index()];
                ending = Some(attack.summary(at(n), (total, total * 1200)));
            }
            detector.update(at(n), &stats(total - before), 1.3, &stats(total), &history);
        }
        assert_eq!(detector.active().count(), 0, "ended at the last read");
        let summary = ending.unwrap();
        assert_eq!(
            (summary.packets, summary.bytes),
            (7200 - 100, (7200 - 100) * 1200),
            "from the read before its first second to the end"
        );
        assert_eq!(summary.lasted, Duration::from_millis(1300 * 4));
        assert_eq!(summary.quiet, Duration::from_millis(1300 * 2));
    }
}
