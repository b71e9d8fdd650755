//! `/metrics`: the filter's counters, map fill levels, settings, sampling
//! counts and program ids, read from the pinned maps at each scrape, so a
//! scrape shows exactly what `stats --json` would at that moment. Served in
//! the OpenMetrics text format to scrapers that ask for it (Prometheus
//! does) and in the Prometheus text format 0.0.4 otherwise (curl, promtool).
//!
//! Names follow the Prometheus conventions: a `wan_filter_` prefix,
//! `_total` counters, units in the name (`_bytes`, `_seconds`), one metric
//! per thing measured with labels for its dimensions, and `_info` metrics
//! of value 1 whose labels carry text (build version, program ids). The
//! reasons and settings come from their tables (`Reason::ALL`, `SETTINGS`),
//! so a new one appears without a change here.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use filter_common::{Action, Reason};
use filter_ctl_api::{report::direction_name, settings::duration};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};

use crate::{
    health,
    pins::{IfacePins, PinRoot},
    settings::SettingsMaps,
    stats, status,
};

use super::drops;

/// What the daemon itself knows, for the metrics.
#[derive(Debug, Default)]
pub struct DaemonState {
    /// Drop reasons under attack now.
    pub attacks: Vec<Reason>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Times the filter was attached again after its interface came back.
    pub reattached: u64,
    /// Sampled events the daemon read.
    pub events_read: u64,
    /// The upstream mode, if the config has it.
    pub upstream: Option<super::upstream::status::UpstreamStatus>,
}

/// Reads the filter at each scrape.
#[derive(Debug)]
struct FilterCollector {
    root: PinRoot,
    pins: IfacePins,
    state: Arc<Mutex<DaemonState>>,
}

type Labels = Vec<(&'static str, String)>;

/// One family: its descriptor and samples.
struct Family<'e, 'a> {
    encoder: prometheus_client::encoding::MetricEncoder<'e>,
    iface: &'a str,
}

impl Family<'_, '_> {
    fn labels(&self, more: &[(&'static str, String)]) -> Labels {
        let mut labels = vec![("iface", self.iface.to_owned())];
        labels.extend_from_slice(more);
        labels
    }

    fn counter(&mut self, more: &[(&'static str, String)], value: u64) -> std::fmt::Result {
        let labels = self.labels(more);
        ConstCounter::new(value).encode(self.encoder.encode_family(&labels)?)
    }

    fn gauge(&mut self, more: &[(&'static str, String)], value: f64) -> std::fmt::Result {
        let labels = self.labels(more);
        ConstGauge::new(value).encode(self.encoder.encode_family(&labels)?)
    }
}

impl FilterCollector {
    fn family<'e>(
        &'e self,
        encoder: &'e mut DescriptorEncoder,
        name: &'e str,
        help: &str,
        unit: Option<&'e Unit>,
        kind: MetricType,
    ) -> Result<Family<'e, 'e>, std::fmt::Error> {
        Ok(Family {
            encoder: encoder.encode_descriptor(name, help, unit, kind)?,
            iface: self.pins.iface(),
        })
    }
}

impl Collector for FilterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // What `status` says: both programs attached to the interface of
        // that name; 0 while the links are severed (the interface was
        // deleted) or on another device, and when nothing is pinned.
        let pinned = self.pins.find_xdp_link().is_some();
        let attached = pinned && health::health(&self.pins).is_ok_and(|h| h.is_attached());
        self.family(
            &mut encoder,
            "wan_filter_attached",
            "1 while the filter is attached to the interface, as filter-ctl status says (0: severed, elsewhere or not attached)",
            None,
            MetricType::Gauge,
        )?
        .gauge(&[], f64::from(u8::from(attached)))?;
        if !pinned {
            return Ok(());
        }

        if let Ok(counts) = stats::read(&self.pins) {
            let labels: Vec<[(&'static str, String); 3]> = counts
                .0
                .iter()
                .map(|row| {
                    [
                        ("reason", row.reason.name().to_owned()),
                        ("direction", direction_name(row.direction).to_owned()),
                        ("action", row.action.name().to_owned()),
                    ]
                })
                .collect();
            let mut packets = self.family(
                &mut encoder,
                "wan_filter_packets",
                "Packets the programs counted, by verdict reason and action (would_drop: passed in monitor mode)",
                None,
                MetricType::Counter,
            )?;
            for (row, labels) in counts.0.iter().zip(&labels) {
                packets.counter(labels, row.packets)?;
            }
            let mut bytes = self.family(
                &mut encoder,
                "wan_filter",
                "Bytes of the packets the programs counted, by verdict reason and action",
                Some(&Unit::Bytes),
                MetricType::Counter,
            )?;
            for (row, labels) in counts.0.iter().zip(&labels) {
                bytes.counter(labels, row.bytes)?;
            }
        }

        // Only rows that counted a packet: two encapsulations times every
        // reason would be mostly zeros.
        if let Ok(tunnelled) = stats::read_tunnelled(&self.pins) {
            let labels: Vec<[(&'static str, String); 2]> = tunnelled
                .0
                .iter()
                .map(|row| {
                    [
                        ("encap", row.encap.name().to_owned()),
                        ("reason", row.reason.name().to_owned()),
                    ]
                })
                .collect();
            let mut packets = self.family(
                &mut encoder,
                "wan_filter_tunnelled_packets",
                "Packets that came inside a tunnel the filter unwraps, by encapsulation and the reason of the packet inside (counted in wan_filter_packets_total too)",
                None,
                MetricType::Counter,
            )?;
            for (row, labels) in tunnelled.0.iter().zip(&labels) {
                packets.counter(labels, row.packets)?;
            }
            let mut bytes = self.family(
                &mut encoder,
                "wan_filter_tunnelled",
                "Bytes of the tunnelled packets, outer headers included",
                Some(&Unit::Bytes),
                MetricType::Counter,
            )?;
            for (row, labels) in tunnelled.0.iter().zip(&labels) {
                bytes.counter(labels, row.bytes)?;
            }
        }

        if let Ok(mut all) = status::status(&self.root, Some(self.pins.iface()))
            && let Some(status) = all.pop()
        {
            let mut entries = self.family(
                &mut encoder,
                "wan_filter_map_entries",
                "Entries in use of each map where that means something (live entries for the tables with lifetimes); not for counters, the config and the event ring",
                None,
                MetricType::Gauge,
            )?;
            for map in &status.maps {
                if let Some(in_use) = map.entries {
                    entries.gauge(&[("map", map.name.clone())], f64::from(in_use))?;
                }
            }
            let mut capacity = self.family(
                &mut encoder,
                "wan_filter_map_capacity_entries",
                "Entries each map holds at most",
                None,
                MetricType::Gauge,
            )?;
            for map in &status.maps {
                capacity.gauge(&[("map", map.name.clone())], f64::from(map.max_entries))?;
            }
            let mut programs = self.family(
                &mut encoder,
                "wan_filter_program",
                "The attached programs: hook, XDP mode or egress hook, kernel program id",
                None,
                MetricType::Info,
            )?;
            let mode = status.xdp_mode.map_or("none", |mode| mode.name());
            let egress = status.egress_hook.map_or("none", |hook| hook.name());
            for (program, hook, id) in [
                (filter_common::program::INGRESS, mode, status.xdp_program_id),
                (
                    filter_common::program::EGRESS,
                    egress,
                    status.egress_program_id,
                ),
            ] {
                if let Some(id) = id {
                    let labels = programs.labels(&[
                        ("program", program.to_owned()),
                        ("mode", hook.to_owned()),
                        ("id", id.to_string()),
                    ]);
                    programs.encoder.encode_info(&labels)?;
                }
            }
        }

        if let Ok(settings) = SettingsMaps::open(&self.pins).and_then(|maps| maps.read()) {
            let values: Vec<(&str, String)> = settings.values().collect();
            let mut numeric = self.family(
                &mut encoder,
                "wan_filter_setting",
                "The live settings that are numbers: on/off as 1/0, rates per second, durations in seconds, port lists and conn_limit as their number of ports",
                None,
                MetricType::Gauge,
            )?;
            for (key, value) in &values {
                numeric.gauge(&[("key", (*key).to_owned())], setting_number(key, value))?;
            }
            let mut text = self.family(
                &mut encoder,
                "wan_filter_settings",
                "Every live setting as `filter-ctl config` shows it",
                None,
                MetricType::Info,
            )?;
            for (key, value) in &values {
                let labels = text.labels(&[("key", (*key).to_owned()), ("value", value.clone())]);
                text.encoder.encode_info(&labels)?;
            }
        }

        if let Ok((sampled, lost)) = drops::kernel_counts(&self.pins) {
            self.family(
                &mut encoder,
                "wan_filter_drop_events_sampled",
                "Dropped packets the XDP program copied to the drop event ring (sample_rate)",
                None,
                MetricType::Counter,
            )?
            .counter(&[], sampled)?;
            self.family(
                &mut encoder,
                "wan_filter_drop_events_lost",
                "Sampled drops that found the ring full (nobody reading fast enough)",
                None,
                MetricType::Counter,
            )?
            .counter(&[], lost)?;
        }

        let state = self
            .state
            .lock()
            .expect("the daemon never panics holding it");
        self.family(
            &mut encoder,
            "wan_filter_drop_events_read",
            "Sampled drop events the daemon read",
            None,
            MetricType::Counter,
        )?
        .counter(&[], state.events_read)?;
        let mut attacks = self.family(
            &mut encoder,
            "wan_filter_attack_active",
            "1 while a drop reason is over the attack threshold (see the attack log lines)",
            None,
            MetricType::Gauge,
        )?;
        for reason in Reason::ALL
            .into_iter()
            .filter(|reason| reason.action() == Action::Drop)
        {
            let active = state.attacks.contains(&reason);
            attacks.gauge(
                &[("reason", reason.name().to_owned())],
                f64::from(u8::from(active)),
            )?;
        }
        let mut reloads = self.family(
            &mut encoder,
            "wan_filter_config_reloads",
            "Config file reloads, applied (ok) or refused (error)",
            None,
            MetricType::Counter,
        )?;
        reloads.counter(&[("result", "ok".into())], state.reloads_ok)?;
        reloads.counter(&[("result", "error".into())], state.reloads_failed)?;
        self.family(
            &mut encoder,
            "wan_filter_reattached",
            "Times the daemon attached the filter again after its interface came back",
            None,
            MetricType::Counter,
        )?
        .counter(&[], state.reattached)?;
        if let Some(upstream) = &state.upstream {
            upstream.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// A setting's value as a number: `on` 1, `off` 0, `200/s` 200, `10s` 10;
/// a port list (`dns_ports=53,5353`) or `conn_limit` (`25:3`) is the
/// number of its ports, also for one (`53` is 1), `none` 0; anything else
/// (a choice) 0.
fn setting_number(key: &str, value: &str) -> f64 {
    if key.ends_with("_ports") || key == "conn_limit" {
        return match value {
            "none" => 0.0,
            list => list.split(',').count() as f64,
        };
    }
    match value {
        "on" => return 1.0,
        "off" | "none" => return 0.0,
        _ => {}
    }
    if let Ok(number) = value.strip_suffix("/s").unwrap_or(value).parse::<f64>() {
        return number;
    }
    if let Ok(span) = duration::parse(value) {
        return span.as_secs_f64();
    }
    0.0
}

/// The registry of one daemon: the filter collector plus build info.
fn registry(root: PinRoot, pins: IfacePins, state: Arc<Mutex<DaemonState>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FilterCollector { root, pins, state }));
    registry.register_collector(Box::new(BuildInfo));
    registry
}

#[derive(Debug)]
struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let mut family = encoder.encode_descriptor(
            "wan_filter_build",
            "The filter-ctl build serving these metrics",
            None,
            MetricType::Info,
        )?;
        family.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
    }
}

/// The scrape: OpenMetrics if the scraper asks for it, else the Prometheus text format.
fn render(registry: &Registry, headers: &HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, content_type) = if openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut body, registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut body, registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    match encoded {
        Ok(()) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

/// Serves `/metrics` on `listen` until the runtime stops: the address it
/// listens on (the port the kernel chose for port 0), and the server.
pub async fn serve(
    listen: SocketAddr,
    root: PinRoot,
    pins: IfacePins,
    state: Arc<Mutex<DaemonState>>,
) -> anyhow::Result<(SocketAddr, impl Future<Output = ()>)> {
    let registry = Arc::new(registry(root, pins, state));
    let app = Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let registry = registry.clone();
                async move {
                    // Reading the maps is a few system calls and mmaps: off the event loop.
                    tokio::task::spawn_blocking(move || render(&registry, &headers))
                        .await
                        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
                }
            }),
        )
        .route(
            "/",
            get(|| async { "wan-filter daemon: metrics at /metrics\n" }),
        );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} for /metrics"))?;
    let listening = listener.local_addr()?;
    Ok((listening, async move {
        if let Err(err) = axum::serve(listener, app).await {
            log::error!("the metrics server stopped: {err}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_as_numbers() {
        assert_eq!(setting_number("monitor", "on"), 1.0);
        assert_eq!(setting_number("monitor", "off"), 0.0);
        assert_eq!(setting_number("sample_rate", "200/s"), 200.0);
        assert_eq!(setting_number("syn_penalty", "1m30s"), 90.0);
        assert_eq!(setting_number("fragment_lifetime", "100ms"), 0.1);
        assert_eq!(setting_number("syn_source_burst", "12"), 12.0);
        assert_eq!(setting_number("orphan_fragments", "pass"), 0.0);
    }

    /// A list is as long as it is: one port is 1, not the port's number.
    #[test]
    fn port_lists_read_as_their_length() {
        assert_eq!(setting_number("dns_ports", "53"), 1.0);
        assert_eq!(setting_number("ntp_service_ports", "123"), 1.0);
        assert_eq!(setting_number("dns_ports", "53,5353"), 2.0);
        assert_eq!(setting_number("amplifier_ports", "none"), 0.0);
        assert_eq!(setting_number("conn_limit", "25:3"), 1.0);
        assert_eq!(setting_number("conn_limit", "25:3,80:64"), 2.0);
        assert_eq!(setting_number("conn_limit", "none"), 0.0);
    }
}
