//! Per-reason counters, read from the pinned per-CPU `STATS` map and summed over CPUs.

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuArray};
use filter_common::{Action, Counter, Direction, Reason, map};

use crate::pins::IfacePins;

/// Packets and bytes counted under one reason, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReasonCount {
    pub reason: &'static str,
    pub direction: &'static str,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// Every reason's counters of the filter pinned at `pins`, in reason order.
pub fn read(pins: &IfacePins) -> anyhow::Result<Vec<ReasonCount>> {
    let path = pins.map(map::STATS);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening {} (is the filter attached?)", path.display()))?;
    sum(&PerCpuArray::try_from(Map::from_map_data(data)?)?)
}

/// Every reason's counters in a `STATS` map (pinned, or of a program loaded by a test).
pub fn sum<T: std::borrow::Borrow<MapData>>(
    stats: &PerCpuArray<T, Counter>,
) -> anyhow::Result<Vec<ReasonCount>> {
    Reason::ALL
        .iter()
        .map(|&reason| {
            let per_cpu = stats.get(&reason.index(), 0)?;
            let total = per_cpu.iter().fold(Counter::default(), |sum, c| Counter {
                packets: sum.packets + c.packets,
                bytes: sum.bytes + c.bytes,
            });
            Ok(ReasonCount {
                reason: reason.name(),
                direction: match reason.direction() {
                    Direction::Ingress => "ingress",
                    Direction::Egress => "egress",
                },
                action: match reason.action() {
                    Action::Pass => "pass",
                    Action::Drop => "drop",
                },
                packets: total.packets,
                bytes: total.bytes,
            })
        })
        .collect()
}

/// The counters of one reason, by name.
pub fn find(counts: &[ReasonCount], reason: Reason) -> &ReasonCount {
    counts
        .iter()
        .find(|count| count.reason == reason.name())
        .expect("read() returns every reason")
}

/// A human table; with `previous` and `secs`, adds per-second rates.
pub fn table(counts: &[ReasonCount], previous: Option<(&[ReasonCount], f64)>) -> String {
    let mut out = format!(
        "{:<16} {:<9} {:<6} {:>14} {:>16}",
        "reason", "direction", "action", "packets", "bytes"
    );
    if previous.is_some() {
        out.push_str(&format!(" {:>12} {:>14}", "pkt/s", "bit/s"));
    }
    out.push('\n');
    for (i, count) in counts.iter().enumerate() {
        out.push_str(&format!(
            "{:<16} {:<9} {:<6} {:>14} {:>16}",
            count.reason, count.direction, count.action, count.packets, count.bytes
        ));
        if let Some((before, secs)) = previous {
            let pps = count.packets.saturating_sub(before[i].packets) as f64 / secs;
            let bps = count.bytes.saturating_sub(before[i].bytes) as f64 * 8.0 / secs;
            out.push_str(&format!(" {pps:>12.0} {bps:>14.0}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(reason: Reason, packets: u64, bytes: u64) -> ReasonCount {
        ReasonCount {
            reason: reason.name(),
            direction: "ingress",
            action: "pass",
            packets,
            bytes,
        }
    }

    #[test]
    fn table_lists_every_reason_with_its_numbers() {
        let counts = vec![
            count(Reason::PassIpv4, 3, 180),
            count(Reason::PassNotIp, 1, 42),
        ];
        let text = table(&counts, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("pass_ipv4") && lines[1].ends_with("180"));
        assert!(lines[2].contains("pass_not_ip") && lines[2].contains(" 1 "));
    }

    #[test]
    fn table_rates_are_deltas_over_the_interval() {
        let before = vec![count(Reason::PassIpv4, 100, 1_000)];
        let after = vec![count(Reason::PassIpv4, 300, 3_000)];
        let text = table(&after, Some((&before, 2.0)));
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        // 200 packets and 16000 bits over 2 s.
        assert_eq!(row[row.len() - 2], "100");
        assert_eq!(row[row.len() - 1], "8000");
    }

    #[test]
    fn find_returns_the_named_reason() {
        let counts = vec![
            count(Reason::PassIpv4, 3, 180),
            count(Reason::PassIpv6, 5, 500),
        ];
        assert_eq!(find(&counts, Reason::PassIpv6).packets, 5);
    }
}
