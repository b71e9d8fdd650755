//! What the operator sees of the upstream mode: `filter-ctl upstream
//! status` (text, or these types as JSON) and the `wan_filter_upstream_*`
//! metrics.

use std::fmt::Write as _;

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};
use serde::{Deserialize, Serialize};

use super::route::Route;
use crate::daemon::units;

/// The upstream mode of one interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    pub iface: String,
    /// The speaker and where it is.
    pub speaker: String,
    pub dry_run: bool,
    pub max_rules: usize,
    /// Every route the daemon wants or the speaker has of it.
    pub routes: Vec<RouteStatus>,
    pub announced_total: u64,
    pub withdrawn_total: u64,
    pub speaker_errors_total: u64,
    /// Routes an attack called for that were not announced, by why.
    pub skipped_max_rules_total: u64,
    pub skipped_dry_run_total: u64,
    /// The speaker's last error, while calls fail.
    pub last_error: Option<String>,
    /// Whether a daemon said this (or it was read from the speaker).
    pub from_daemon: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    pub route: Route,
    /// As the log lines show it.
    pub text: String,
    pub state: RouteState,
    /// The attacks under way that want it (drop reasons).
    pub reasons: Vec<String>,
    /// Seconds since the daemon wanted it.
    pub age_seconds: Option<u64>,
    /// Seconds until it is withdrawn, once its attacks ended.
    pub withdraw_in_seconds: Option<u64>,
    /// Found at the speaker when the daemon started (an earlier daemon's).
    pub adopted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteState {
    /// The speaker has it.
    Announced,
    /// Wanted, not at the speaker yet (a call pending or failing).
    Announcing,
    /// At the speaker, no longer wanted: being withdrawn.
    Withdrawing,
    /// Dry run: it would be announced.
    DryRun,
}

impl RouteState {
    fn name(self) -> &'static str {
        match self {
            RouteState::Announced => "announced",
            RouteState::Announcing => "announcing",
            RouteState::Withdrawing => "withdrawing",
            RouteState::DryRun => "dry run",
        }
    }
}

impl UpstreamStatus {
    /// Routes the speaker has.
    pub fn live(&self) -> impl Iterator<Item = &RouteStatus> {
        self.routes
            .iter()
            .filter(|route| matches!(route.state, RouteState::Announced | RouteState::Withdrawing))
    }

    /// The text `filter-ctl upstream status` prints.
    pub fn describe(&self) -> String {
        let live = self.live().count();
        let mut out = format!(
            "upstream of {}: {}{}, {live} route{} announced (at most {})\n",
            self.iface,
            self.speaker,
            if self.dry_run {
                ", dry run (announces nothing)"
            } else {
                ""
            },
            if live == 1 { "" } else { "s" },
            self.max_rules,
        );
        if !self.from_daemon {
            out.push_str(
                "  (no daemon answered: read from the speaker, the routes with the daemon's mark)\n",
            );
        }
        for route in &self.routes {
            let _ = writeln!(out, "  {:<12} {}", route.state.name(), route.text);
            let mut why = Vec::new();
            if !route.reasons.is_empty() {
                why.push(format!("for {} (under way)", route.reasons.join(", ")));
            }
            if route.adopted {
                why.push("found at start (an earlier daemon's)".into());
            }
            if let Some(age) = route.age_seconds {
                why.push(format!(
                    "wanted for {}",
                    units::duration(std::time::Duration::from_secs(age))
                ));
            }
            if let Some(left) = route.withdraw_in_seconds {
                why.push(format!(
                    "withdrawn in {}",
                    units::duration(std::time::Duration::from_secs(left))
                ));
            }
            if !why.is_empty() {
                let _ = writeln!(out, "  {:<12} {}", "", why.join("; "));
            }
        }
        let _ = writeln!(
            out,
            "  totals: {} announced, {} withdrawn, {} speaker errors; not announced: {} over \
             max_rules, {} in dry run",
            self.announced_total,
            self.withdrawn_total,
            self.speaker_errors_total,
            self.skipped_max_rules_total,
            self.skipped_dry_run_total
        );
        if let Some(error) = &self.last_error {
            let _ = writeln!(out, "  the speaker fails: {error}");
        }
        out
    }

    /// The `wan_filter_upstream_*` metrics.
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let iface = || ("iface", self.iface.clone());
        let mut announcements = encoder.encode_descriptor(
            "wan_filter_upstream_announcements",
            "Routes the daemon has announced at the BGP speaker now, by kind (flowspec, rtbh)",
            None,
            MetricType::Gauge,
        )?;
        for kind in ["flowspec", "rtbh"] {
            let count = self.live().filter(|r| r.route.kind() == kind).count();
            let labels = [iface(), ("kind", kind.to_owned())];
            ConstGauge::new(count as i64).encode(announcements.encode_family(&labels)?)?;
        }
        let counters: [(&str, &str, u64); 3] = [
            (
                "wan_filter_upstream_announced",
                "Routes announced at the BGP speaker",
                self.announced_total,
            ),
            (
                "wan_filter_upstream_withdrawn",
                "Routes withdrawn at the BGP speaker",
                self.withdrawn_total,
            ),
            (
                "wan_filter_upstream_speaker_errors",
                "Calls to the BGP speaker that failed (each is tried again)",
                self.speaker_errors_total,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(family.encode_family(&[iface()])?)?;
        }
        let mut skipped = encoder.encode_descriptor(
            "wan_filter_upstream_skipped",
            "Routes an attack called for that were not announced: over max_rules, or dry_run",
            None,
            MetricType::Counter,
        )?;
        for (why, value) in [
            ("max_rules", self.skipped_max_rules_total),
            ("dry_run", self.skipped_dry_run_total),
        ] {
            let labels = [iface(), ("why", why.to_owned())];
            ConstCounter::new(value).encode(skipped.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
