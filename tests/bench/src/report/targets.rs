//! The targets against the measurements: ratios to the floor and
//! to nftables, per round ([`round_ratios`], [`marginal_ratios`]), and
//! whether the real lookups all succeeded during the million-source floods.

use super::Results;
use crate::{
    flood::{self, Row, Sample},
    stats::Summary,
    traffic::FloodKind,
};

/// One target of the issue, with what was measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TargetCheck {
    pub what: String,
    pub goal: String,
    pub measured: String,
    /// None: not measurable in this build or run.
    pub met: Option<bool>,
}

/// Per round, `numerator / denominator` of two configurations of one flood.
pub fn round_ratios(
    samples: &[Sample],
    kind: FloodKind,
    numerator: &str,
    denominator: &str,
) -> Summary {
    Summary::of(
        samples
            .iter()
            .filter(|s| s.flood == kind && s.config == numerator)
            .filter_map(|n| {
                let d = samples
                    .iter()
                    .find(|d| d.flood == kind && d.config == denominator && d.round == n.round)?;
                (d.ns_per_packet > 0.0).then(|| n.ns_per_packet / d.ns_per_packet)
            }),
    )
}

/// Per round, `(numerator - floor) / (denominator - floor)`: how the two
/// compare in what they add to the floor's cost.
pub fn marginal_ratios(
    samples: &[Sample],
    kind: FloodKind,
    numerator: &str,
    denominator: &str,
) -> Summary {
    let floor = flood::floor_of(kind).key();
    let at = |config: &str, round| {
        samples
            .iter()
            .find(|s| s.flood == kind && s.config == config && s.round == round)
            .map(|s| s.ns_per_packet)
    };
    Summary::of(
        samples
            .iter()
            .filter(|s| s.flood == kind && s.config == numerator)
            .filter_map(|n| {
                let (d, f) = (at(denominator, n.round)?, at(floor, n.round)?);
                (d > f).then(|| (n.ns_per_packet - f) / (d - f))
            }),
    )
}

pub(super) fn row<'a>(rows: &'a [Row], kind: FloodKind, config: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.flood == kind && r.config == config)
}

/// The targets against the measurements.
pub fn targets(results: &Results) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    let at_most = |what: &str, goal: f64, s: Option<Summary>| TargetCheck {
        what: what.into(),
        goal: format!("<= {goal:.2}x floor"),
        measured: s.map_or("not measured".into(), |s| format!("{}x", s.show(2))),
        met: s.filter(|s| !s.is_empty()).map(|s| s.median <= goal),
    };
    let at_least = |what: &str, goal: f64, s: Option<Summary>| TargetCheck {
        what: what.into(),
        goal: format!(">= {goal:.0}x less CPU per packet"),
        measured: s.map_or("not measured".into(), |s| format!("{}x", s.show(1))),
        met: s.filter(|s| !s.is_empty()).map(|s| s.median >= goal),
    };
    let flood = results.flood.as_ref();
    let ratio = |kind, config: &str| {
        flood
            .and_then(|f| row(&f.rows, kind, config))
            .map(|r| r.ratio)
    };
    out.push(at_most(
        "drop path: unsolicited DNS flood, this filter (native) / XDP_DROP",
        1.25,
        ratio(FloodKind::Dns, "filter_native"),
    ));
    out.push(at_most(
        "drop path: SYN flood over the source bucket, this filter (native) / XDP_DROP",
        1.25,
        ratio(FloodKind::Syn, "filter_native"),
    ));
    out.push(at_most(
        "pass path: ordinary UDP, this filter (native) / XDP_PASS",
        1.4,
        ratio(FloodKind::Udp, "filter_native"),
    ));
    let vs = |what: &str, goal: f64, kind, other: &str| {
        let Some(f) = flood else {
            return at_least(what, goal, None);
        };
        let mut check = at_least(
            what,
            goal,
            Some(round_ratios(&f.samples, kind, other, "filter_native")),
        );
        let above = marginal_ratios(&f.samples, kind, other, "filter_native");
        if !above.is_empty() {
            check.measured = format!("{} (above the floor: {}x)", check.measured, above.show(1));
        }
        check
    };
    out.push(vs(
        "unsolicited DNS: nft `ct state new` drop / this filter",
        10.0,
        FloodKind::Dns,
        "nft_ct_new",
    ));
    out.push(vs(
        "SYN flood: nft per-source SYN meter (ingress) / this filter",
        5.0,
        FloodKind::Syn,
        "nft_syn_meter_ingress",
    ));
    out.push(vs(
        "SYN flood: nft per-source SYN meter (input) / this filter",
        5.0,
        FloodKind::Syn,
        "nft_syn_meter_input",
    ));
    if let Some(scale) = &results.scale {
        let (ok, failed) = scale
            .phases
            .iter()
            .filter(|p| p.flood.is_some() && p.on_wan == "filter")
            .fold((0, 0), |(o, f), p| (o + p.lookups_ok, f + p.lookups_failed));
        out.push(TargetCheck {
            what: "real DNS lookups during the million-source floods".into(),
            goal: "100%".into(),
            measured: format!(
                "{ok} of {} ({})",
                ok + failed,
                super::markdown::pct(ok as f64 / (ok + failed).max(1) as f64)
            ),
            met: Some(failed == 0 && ok > 0),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{FloodResults, chart, markdown, sample};

    #[test]
    fn ratios_pair_samples_of_the_same_round() {
        let samples = vec![
            sample(FloodKind::Dns, "xdp_drop", 0, 100.0),
            sample(FloodKind::Dns, "filter_native", 0, 120.0),
            sample(FloodKind::Dns, "xdp_drop", 1, 200.0),
            sample(FloodKind::Dns, "filter_native", 1, 220.0),
            sample(FloodKind::Syn, "xdp_drop", 0, 1.0),
        ];
        let s = round_ratios(&samples, FloodKind::Dns, "filter_native", "xdp_drop");
        assert_eq!(s.n, 2);
        assert!((s.min - 1.1).abs() < 1e-9 && (s.max - 1.2).abs() < 1e-9);
        let rows = flood::summarise(&samples);
        let filter = rows.iter().find(|r| r.config == "filter_native").unwrap();
        assert!((filter.ratio.median - 1.15).abs() < 1e-9);
        assert_eq!(filter.ns_per_packet.median, 170.0);
        // The floor is not charted; the filter is.
        let data = chart::chart_data(&rows);
        assert!(data.contains("\"dns: this filter, native\" 1.1500 1.1000 1.2000 1"));
        assert!(!data.contains("XDP_DROP"));
    }

    #[test]
    fn targets_compare_medians_with_the_goals() {
        let samples = vec![
            sample(FloodKind::Dns, "xdp_drop", 0, 100.0),
            sample(FloodKind::Dns, "filter_native", 0, 130.0),
            sample(FloodKind::Dns, "nft_ct_new", 0, 1400.0),
            sample(FloodKind::Udp, "xdp_pass", 0, 500.0),
            sample(FloodKind::Udp, "filter_native", 0, 550.0),
        ];
        let results = Results {
            flood: Some(FloodResults {
                rows: flood::summarise(&samples),
                samples,
                ..FloodResults::default()
            }),
            ..Results::default()
        };
        let t = targets(&results);
        let find = |prefix: &str| t.iter().find(|t| t.what.starts_with(prefix)).unwrap();
        assert_eq!(find("drop path: unsolicited DNS").met, Some(false)); // 1.30 > 1.25
        assert_eq!(find("drop path: SYN").met, None, "no SYN flood measured");
        assert_eq!(find("pass path").met, Some(true)); // 1.10
        assert_eq!(find("unsolicited DNS: nft").met, Some(true)); // 10.8
        // (1400 - 100) / (130 - 100)
        assert!(
            find("unsolicited DNS: nft")
                .measured
                .contains("above the floor: 43.3x")
        );
        let md = markdown::markdown(&results, Some("ratios.png"));
        assert!(md.contains("## Targets"));
        assert!(md.contains("![DUT CPU per packet"));
        assert!(md.contains("| this filter, native | 130 | 1.30 | +30 |"));
    }
}
