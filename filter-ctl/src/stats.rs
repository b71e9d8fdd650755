//! Per-reason counters, read from the pinned per-CPU `STATS` map and summed
//! over CPUs into [`Stats`] (what `stats --json` prints), and their table;
//! the tunnelled packets among them from `TUNNELLED` ([`Tunnelled`]).

use std::{borrow::Borrow, fmt::Write as _};

use anyhow::Context as _;
use aya::maps::{MapData, PerCpuArray};
use filter_common::{Action, Counter, Encap, Reason, map};
use filter_ctl_api::report::{
    CountedAction, ReasonCount, Stats, Tunnelled, TunnelledCount, direction_name,
};

use crate::pins::IfacePins;

/// Every reason's counters of the filter pinned at `pins`.
pub fn read(pins: &IfacePins) -> anyhow::Result<Stats> {
    sum(&PerCpuArray::try_from(pins.open_map(map::STATS)?)?)
}

/// The tunnelled packets' counters of the filter pinned at `pins`.
pub fn read_tunnelled(pins: &IfacePins) -> anyhow::Result<Tunnelled> {
    let map = pins.open_map(map::TUNNELLED).with_context(|| {
        format!(
            "the filter attached to {} predates the tunnelled counters: attach this build to count them",
            pins.iface()
        )
    })?;
    sum_tunnelled(&PerCpuArray::try_from(map)?)
}

/// The rows of a `TUNNELLED` map that counted any packet: by
/// encapsulation, then in reason order.
pub fn sum_tunnelled<T: Borrow<MapData>>(
    counters: &PerCpuArray<T, Counter>,
) -> anyhow::Result<Tunnelled> {
    let mut rows = Vec::new();
    for encap in Encap::ALL {
        for reason in Reason::ALL {
            let total = summed(counters, encap.slot(reason.index()))?;
            if total.packets > 0 {
                rows.push(TunnelledCount {
                    encap,
                    reason,
                    packets: total.packets,
                    bytes: total.bytes,
                });
            }
        }
    }
    Ok(Tunnelled(rows))
}

/// The counter at `index`, summed over CPUs.
fn summed<T: Borrow<MapData>>(
    counters: &PerCpuArray<T, Counter>,
    index: u32,
) -> anyhow::Result<Counter> {
    Ok(counters
        .get(&index, 0)?
        .iter()
        .fold(Counter::default(), |sum, c| Counter {
            packets: sum.packets + c.packets,
            bytes: sum.bytes + c.bytes,
        }))
}

/// Every reason's counters in a `STATS` map (pinned, or of a program loaded
/// by a test): a row per reason in reason order, then for each drop reason
/// what monitor mode passed instead (action `would_drop`, `would_tx`).
pub fn sum<T: Borrow<MapData>>(stats: &PerCpuArray<T, Counter>) -> anyhow::Result<Stats> {
    let row = |reason: Reason, action: CountedAction, index: u32| -> anyhow::Result<_> {
        let total = summed(stats, index)?;
        Ok(ReasonCount {
            reason,
            direction: reason.direction(),
            action,
            packets: total.packets,
            bytes: total.bytes,
        })
    };
    let counted = Reason::ALL
        .into_iter()
        .map(|reason| row(reason, reason.action().into(), reason.index()));
    // Monitor mode's rows: would_drop for drop reasons, then would_tx.
    let monitored = [Action::Drop, Action::Tx].into_iter().flat_map(|action| {
        Reason::ALL
            .into_iter()
            .filter(move |reason| reason.action() == action)
            .filter_map(|reason| {
                CountedAction::monitored(reason.action())
                    .map(|monitored| row(reason, monitored, Reason::COUNT + reason.index()))
            })
    });
    Ok(Stats(
        counted.chain(monitored).collect::<anyhow::Result<_>>()?,
    ))
}

/// A human table; with the counters of `secs` seconds before, adds per-second rates.
pub fn table(stats: &Stats, previous: Option<(&Stats, f64)>) -> String {
    // As wide as the longest reason name.
    let width = stats
        .0
        .iter()
        .map(|count| count.reason.name().len())
        .chain(["reason".len()])
        .max()
        .unwrap_or_default();
    let mut out = format!(
        "{:<width$} {:<9} {:<10} {:>14} {:>16}",
        "reason", "direction", "action", "packets", "bytes"
    );
    if previous.is_some() {
        out.push_str(&format!(" {:>12} {:>14}", "pkt/s", "bit/s"));
    }
    out.push('\n');
    let rates = previous.map(|(before, secs)| (stats.since(before), secs));
    for (i, count) in stats.0.iter().enumerate() {
        let _ = write!(
            out,
            "{:<width$} {:<9} {:<10} {:>14} {:>16}",
            count.reason.name(),
            direction_name(count.direction),
            count.action.name(),
            count.packets,
            count.bytes
        );
        if let Some((delta, secs)) = &rates {
            let pps = delta.0[i].packets as f64 / secs;
            let bps = delta.0[i].bytes as f64 * 8.0 / secs;
            let _ = write!(out, " {pps:>12.0} {bps:>14.0}");
        }
        out.push('\n');
    }
    out
}

/// The tunnelled rows as a table, under a title that says `stats` counts
/// them too.
pub fn tunnelled_table(tunnelled: &Tunnelled) -> String {
    let width = tunnelled
        .0
        .iter()
        .map(|row| row.reason.name().len())
        .chain(["reason".len()])
        .max()
        .unwrap_or_default();
    let mut out = format!(
        "{:<14} {:<width$} {:>14} {:>16}\n",
        "tunnelled", "reason", "packets", "bytes"
    );
    for row in &tunnelled.0 {
        let _ = writeln!(
            out,
            "{:<14} {:<width$} {:>14} {:>16}",
            row.encap.name(),
            row.reason.name(),
            row.packets,
            row.bytes
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(reason: Reason, packets: u64, bytes: u64) -> ReasonCount {
        ReasonCount {
            reason,
            direction: reason.direction(),
            action: reason.action().into(),
            packets,
            bytes,
        }
    }

    #[test]
    fn table_lists_every_reason_with_its_numbers() {
        let stats = Stats(vec![
            count(Reason::PassIpv4, 3, 180),
            count(Reason::PassNotIp, 1, 42),
        ]);
        let text = table(&stats, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("pass_ipv4") && lines[1].ends_with("180"));
        assert!(lines[2].contains("pass_not_ip") && lines[2].contains(" 1 "));
    }

    /// The column after the reason starts at the same place in every row,
    /// whatever the reasons' lengths.
    #[test]
    fn every_reason_fits_its_column() {
        let stats = Stats(Reason::ALL.into_iter().map(|r| count(r, 1, 64)).collect());
        for text in [table(&stats, None), table(&stats, Some((&stats, 1.0)))] {
            let starts: Vec<usize> = text
                .lines()
                .map(|line| {
                    line.find(" ingress")
                        .or(line.find(" egress"))
                        .or(line.find(" direction"))
                        .unwrap()
                })
                .collect();
            assert!(starts.iter().all(|&at| at == starts[0]), "{text}");
        }
    }

    #[test]
    fn tunnelled_table_has_a_row_per_encapsulation_and_reason() {
        let rows = Tunnelled(vec![
            TunnelledCount {
                encap: Encap::Ipv4InIpv6,
                reason: Reason::DropUnsolicitedDns,
                packets: 3000,
                bytes: 420_000,
            },
            TunnelledCount {
                encap: Encap::Ipv6InIpv4,
                reason: Reason::PassIpv6,
                packets: 2,
                bytes: 200,
            },
        ]);
        let text = tunnelled_table(&rows);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[1],
            ["ipv4_in_ipv6", "drop_unsolicited_dns", "3000", "420000"]
        );
        assert_eq!(lines[2], ["ipv6_in_ipv4", "pass_ipv6", "2", "200"]);
    }

    #[test]
    fn table_rates_are_deltas_over_the_interval() {
        let before = Stats(vec![count(Reason::PassIpv4, 100, 1_000)]);
        let after = Stats(vec![count(Reason::PassIpv4, 300, 3_000)]);
        let text = table(&after, Some((&before, 2.0)));
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        // 200 packets and 16000 bits over 2 s.
        assert_eq!(row[row.len() - 2], "100");
        assert_eq!(row[row.len() - 1], "8000");
    }
}
