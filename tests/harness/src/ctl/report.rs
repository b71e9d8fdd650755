//! What `filter-ctl` prints with `--json`, as types: `stats` ([`Stats`], from
//! rows of [`ReasonCount`]), `status` ([`Status`], [`MapStatus`]), `config`
//! ([`Settings`]) and `allow|deny list` ([`ListEntry`]). The only place in
//! the workspace's tests, lab and benchmark that parses that output.
//!
//! The field names are filter-ctl's (filter-ctl/src/{stats,status,lists}.rs);
//! an unknown or missing field is an error naming the command, never a
//! silent default.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use filter_common::Reason;
use serde::{Deserialize, de::DeserializeOwned};

/// Reads the JSON `command` printed.
pub fn parse<T: DeserializeOwned>(json: &str, command: &str) -> anyhow::Result<T> {
    serde_json::from_str(json).with_context(|| format!("parsing {command} --json: {json}"))
}

/// One row of `stats --json`: packets and bytes counted under one reason,
/// summed over CPUs. Monitor mode's rows have action `would_drop`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonCount {
    pub reason: String,
    pub direction: String,
    pub action: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Per-reason counters from `stats --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// reason name → (packets, bytes); monitor mode's rows are keyed
    /// `would_drop:<reason>`.
    pub counts: BTreeMap<String, (u64, u64)>,
}

impl Stats {
    /// Reads `stats --json`; an error unless every reason of this build is there.
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let rows: Vec<ReasonCount> = parse(json, "stats")?;
        let counts: BTreeMap<String, (u64, u64)> = rows
            .into_iter()
            .map(|row| {
                let key = match row.action.as_str() {
                    "would_drop" => format!("would_drop:{}", row.reason),
                    _ => row.reason,
                };
                (key, (row.packets, row.bytes))
            })
            .collect();
        for reason in Reason::ALL {
            if !counts.contains_key(reason.name()) {
                bail!("stats --json lacks reason {}: {json}", reason.name());
            }
        }
        Ok(Self { counts })
    }

    pub fn packets(&self, reason: Reason) -> u64 {
        self.counts[reason.name()].0
    }

    pub fn bytes(&self, reason: Reason) -> u64 {
        self.counts[reason.name()].1
    }

    /// Packets monitor mode passed that `reason` would have dropped.
    pub fn would_drop(&self, reason: Reason) -> u64 {
        self.counts[&format!("would_drop:{}", reason.name())].0
    }

    /// What was counted since `before`, per reason (saturating at zero).
    pub fn since(&self, before: &Stats) -> Stats {
        let counts = self
            .counts
            .iter()
            .map(|(reason, &(packets, bytes))| {
                let (p0, b0) = before.counts.get(reason).copied().unwrap_or_default();
                (
                    reason.clone(),
                    (packets.saturating_sub(p0), bytes.saturating_sub(b0)),
                )
            })
            .collect();
        Stats { counts }
    }

    /// Reasons with a non-zero packet count, for assertion messages.
    pub fn nonzero(&self) -> Vec<(&str, u64, u64)> {
        self.counts
            .iter()
            .filter(|(_, (packets, _))| *packets > 0)
            .map(|(reason, &(packets, bytes))| (reason.as_str(), packets, bytes))
            .collect()
    }
}

/// One interface of `status --json`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub iface: String,
    /// False when pins remain but the interface is gone.
    pub iface_present: bool,
    pub attached: bool,
    /// "native" or "skb".
    pub xdp_mode: Option<String>,
    pub xdp_link_id: Option<u32>,
    pub xdp_program_id: Option<u32>,
    /// "tcx" or "clsact".
    pub egress_hook: Option<String>,
    pub egress_program_id: Option<u32>,
    pub pin_dir: String,
    pub maps: Vec<MapStatus>,
}

impl Status {
    /// The map named `name`; an error naming the maps there are if it is not.
    pub fn map(&self, name: &str) -> anyhow::Result<&MapStatus> {
        self.maps
            .iter()
            .find(|map| map.name == name)
            .with_context(|| format!("no map {name} in the status of {}", self.iface))
    }
}

/// One map of a [`Status`]: its kernel id, type, size and entries in use.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapStatus {
    pub name: String,
    pub id: u32,
    pub kind: String,
    pub max_entries: u32,
    pub entries: u32,
}

/// `config --json`: every setting by key, in the form `set` accepts.
pub type Settings = BTreeMap<String, String>;

/// One entry of `allow|deny list --json`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    pub cidr: String,
    /// Milliseconds until it expires; `None`: never.
    pub expires_in_ms: Option<u64>,
    /// Who made it: `operator` or `syn_penalty`.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(rows: &[(&str, u64, u64)]) -> String {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(reason, packets, bytes)| {
                serde_json::json!({
                    "reason": reason, "direction": "ingress", "action": "pass",
                    "packets": packets, "bytes": bytes,
                })
            })
            .collect();
        serde_json::to_string(&rows).unwrap()
    }

    fn all(packets: u64) -> Vec<(&'static str, u64, u64)> {
        Reason::ALL
            .iter()
            .map(|reason| (reason.name(), packets, packets * 100))
            .collect()
    }

    #[test]
    fn stats_parse_and_difference() {
        let before = Stats::parse(&json(&all(1))).unwrap();
        let mut rows = all(1);
        rows[Reason::PassIpv4.index() as usize] = ("pass_ipv4", 11, 1100);
        let after = Stats::parse(&json(&rows)).unwrap();
        let delta = after.since(&before);
        assert_eq!(delta.packets(Reason::PassIpv4), 10);
        assert_eq!(delta.bytes(Reason::PassIpv4), 1000);
        assert_eq!(delta.packets(Reason::PassIpv6), 0);
        assert_eq!(delta.nonzero(), vec![("pass_ipv4", 10, 1000)]);
    }

    #[test]
    fn stats_must_list_every_reason() {
        let err = Stats::parse(&json(&[("pass_ipv4", 1, 1)])).unwrap_err();
        assert!(format!("{err}").contains("lacks reason"), "{err}");
        assert!(Stats::parse("not json").is_err());
    }

    #[test]
    fn status_is_read_with_its_maps() {
        let text = r#"[{"iface": "wan0", "iface_present": true, "attached": true,
            "xdp_mode": "native", "xdp_link_id": 7, "xdp_program_id": 8,
            "egress_hook": "tcx", "egress_program_id": 9, "pin_dir": "/sys/fs/bpf/x/wan0",
            "maps": [{"name": "STATS", "id": 3, "kind": "PerCpuArray",
                      "max_entries": 48, "entries": 48}]}]"#;
        let status: Vec<Status> = parse(text, "status").unwrap();
        assert_eq!(status[0].xdp_mode.as_deref(), Some("native"));
        assert_eq!(status[0].map("STATS").unwrap().id, 3);
        assert!(status[0].map("NOPE").is_err());
        let err = parse::<Vec<Status>>(r#"[{"iface": "wan0"}]"#, "status").unwrap_err();
        assert!(format!("{err:#}").contains("status --json"), "{err:#}");
    }
}
