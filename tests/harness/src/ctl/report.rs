//! What `filter-ctl` prints with `--json`, read with filter-common's types
//! (`filter_ctl_api::report` and `settings`, the ones filter-ctl prints):
//! `stats` ([`Stats`], filter-common's rows with the look-ups the tests make),
//! `status` ([`Status`]), `config` ([`Settings`]) and `allow|deny list`
//! ([`ListedEntry`]). The only place in the tests, the lab and the benchmark
//! that parses that output.

use anyhow::{Context as _, bail};
use filter_common::Reason;
use filter_ctl_api::report;
pub use filter_ctl_api::{
    report::{
        CountedAction, EgressHook, LinkLayer, ListedEntry, MapStatus, Status, Tunnelled, XdpMode,
    },
    settings::Settings,
};
use serde::de::DeserializeOwned;

/// Reads the JSON `command` printed.
pub fn parse<T: DeserializeOwned>(json: &str, command: &str) -> anyhow::Result<T> {
    serde_json::from_str(json).with_context(|| format!("parsing {command} --json: {json}"))
}

/// Per-reason counters from `stats --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats(pub report::Stats);

impl Stats {
    /// Reads `stats --json`; an error unless every reason of this build is there.
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let stats: report::Stats = parse(json, "stats")?;
        for reason in Reason::ALL {
            if stats.counted(reason).is_none() {
                bail!("stats --json lacks reason {}: {json}", reason.name());
            }
        }
        Ok(Self(stats))
    }

    /// (packets, bytes) counted under `reason` (for a drop reason: dropped).
    fn counted(&self, reason: Reason) -> (u64, u64) {
        self.0
            .counted(reason)
            .map_or((0, 0), |row| (row.packets, row.bytes))
    }

    pub fn packets(&self, reason: Reason) -> u64 {
        self.counted(reason).0
    }

    pub fn bytes(&self, reason: Reason) -> u64 {
        self.counted(reason).1
    }

    /// (packets, bytes) monitor mode passed that `reason` would have dropped.
    pub fn would_drop(&self, reason: Reason) -> (u64, u64) {
        self.0
            .would_drop(reason)
            .map_or((0, 0), |row| (row.packets, row.bytes))
    }

    /// Packets of every monitor mode row (`would_drop`, `would_tx`), summed.
    pub fn would_drops(&self) -> u64 {
        self.rows()
            .filter(|row| row.action.is_monitored())
            .map(|row| row.packets)
            .sum()
    }

    /// Asserts that `reason` counted exactly `independent` packets, and
    /// some: the end-to-end proof of a reason that the coverage guard
    /// (tests/tests/coverage.rs) looks for. `independent` is a count the
    /// filter has no part in: what reached the stack or left it (nftables),
    /// or what a sender sent less what reached the stack; `what` says which.
    #[track_caller]
    pub fn assert_shown(&self, reason: Reason, independent: u64, what: &str) {
        let counted = self.packets(reason);
        assert!(
            independent > 0,
            "{}: nothing to show ({what} is 0); counters: {:?}",
            reason.name(),
            self.nonzero()
        );
        assert_eq!(
            counted,
            independent,
            "{} counted {counted} packets, {what}: {independent}; counters: {:?}",
            reason.name(),
            self.nonzero()
        );
    }

    /// These counters less `packets` and `bytes` of `reason`'s own row:
    /// what the tests' traffic did without frames the harness added (the
    /// markers, harness::traffic::marker). Panics if the row holds fewer.
    #[track_caller]
    pub fn less(&self, reason: Reason, packets: u64, bytes: u64) -> Stats {
        let mut rows = self.0.clone();
        for row in rows.0.iter_mut() {
            if row.reason == reason && !row.action.is_monitored() {
                assert!(
                    row.packets >= packets && row.bytes >= bytes,
                    "{} counted {} packets, {} bytes: fewer than the {packets} packets, \
                     {bytes} bytes to leave out",
                    reason.name(),
                    row.packets,
                    row.bytes
                );
                row.packets -= packets;
                row.bytes -= bytes;
            }
        }
        Self(rows)
    }

    pub fn rows(&self) -> impl Iterator<Item = &report::ReasonCount> {
        self.0.0.iter()
    }

    /// What was counted since `before`.
    pub fn since(&self, before: &Stats) -> Stats {
        Self(self.0.since(&before.0))
    }

    /// The rows with packets, as (reason, packets, bytes) sorted by name;
    /// monitor mode's rows are named `would_drop:<reason>` and
    /// `would_tx:<reason>`. For assertions and messages.
    pub fn nonzero(&self) -> Vec<(String, u64, u64)> {
        let mut rows: Vec<(String, u64, u64)> = self
            .rows()
            .filter(|row| row.packets > 0)
            .map(|row| {
                let name = if row.action.is_monitored() {
                    format!("{}:{}", row.action.name(), row.reason.name())
                } else {
                    row.reason.name().to_owned()
                };
                (name, row.packets, row.bytes)
            })
            .collect();
        rows.sort();
        rows
    }
}

#[cfg(test)]
mod tests {
    use filter_common::Direction;

    use super::*;

    fn json(rows: &[(Reason, u64)]) -> String {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(reason, packets)| {
                serde_json::json!({
                    "reason": reason.name(),
                    "direction": if reason.direction() == Direction::Ingress { "ingress" } else { "egress" },
                    "action": CountedAction::from(reason.action()).name(),
                    "packets": packets, "bytes": packets * 100,
                })
            })
            .collect();
        serde_json::to_string(&rows).unwrap()
    }

    fn all(packets: u64) -> Vec<(Reason, u64)> {
        Reason::ALL
            .iter()
            .map(|reason| (*reason, packets))
            .collect()
    }

    #[test]
    fn stats_parse_and_difference() {
        let before = Stats::parse(&json(&all(1))).unwrap();
        let mut rows = all(1);
        rows[Reason::PassIpv4.index() as usize] = (Reason::PassIpv4, 11);
        let after = Stats::parse(&json(&rows)).unwrap();
        let delta = after.since(&before);
        assert_eq!(delta.packets(Reason::PassIpv4), 10);
        assert_eq!(delta.bytes(Reason::PassIpv4), 1000);
        assert_eq!(delta.packets(Reason::PassIpv6), 0);
        assert_eq!(delta.nonzero(), vec![("pass_ipv4".to_owned(), 10, 1000)]);
        rows[Reason::EgressOther.index() as usize] = (Reason::EgressOther, 3);
        let names: Vec<String> = Stats::parse(&json(&rows))
            .unwrap()
            .since(&before)
            .nonzero()
            .into_iter()
            .map(|(name, ..)| name)
            .collect();
        assert_eq!(names, ["egress_other", "pass_ipv4"], "sorted by name");
        assert_eq!(delta.would_drops(), 0);
    }

    #[test]
    fn stats_must_list_every_reason() {
        let err = Stats::parse(&json(&[(Reason::PassIpv4, 1)])).unwrap_err();
        assert!(format!("{err}").contains("lacks reason"), "{err}");
        assert!(Stats::parse("not json").is_err());
    }

    #[test]
    fn settings_are_read_from_the_strings_config_prints() {
        let text = r#"{"monitor": "on", "dns_ports": "53,5300", "syn_global_burst": "5000"}"#;
        let settings: Settings = parse(text, "config").unwrap();
        let values: std::collections::BTreeMap<_, _> = settings.values().collect();
        assert_eq!(values["monitor"], "on");
        assert_eq!(values["dns_ports"], "53,5300");
        assert_eq!(values["syn_global_burst"], "5000");
        let err = parse::<Settings>(r#"{"monitor": "maybe"}"#, "config").unwrap_err();
        assert!(format!("{err:#}").contains("config --json"), "{err:#}");
    }
}
