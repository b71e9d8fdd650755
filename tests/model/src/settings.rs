//! The settings the rules depend on, in the terms of docs/rules.md, and the
//! `filter-ctl set` assignments that give the real filter the same ones.

use std::collections::{BTreeMap, BTreeSet};

use filter_common::query::Service;

pub const MS: u64 = 1_000_000;
pub const SECOND: u64 = 1_000 * MS;

/// What a later fragment does when its first fragment was not seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Orphans {
    Pass,
    Drop,
}

/// How a UDP port is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortClass {
    Unwatched,
    Dns,
    Ntp,
    Other,
}

/// One level of a rate limit (SYN buckets, query limits): packets per
/// second (`None`: off) and burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub rate: Option<u32>,
    pub burst: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynSettings {
    pub source: Level,
    pub prefix: Level,
    pub global: Level,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    /// How long a source that keeps exceeding its bucket is denied; `None`: off.
    pub penalty_ms: Option<u64>,
}

/// The connection-aware TCP defence (docs/tcp-connections.md, *Settings*).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSettings {
    /// Unanswered handshakes per source (`None`: off).
    pub halfopen_budget: Option<u32>,
    /// Unanswered handshakes per prefix (`None`: off).
    pub halfopen_prefix_budget: Option<u32>,
    /// How long an unanswered unit is held at most, and how long a
    /// recorded handshake waits.
    pub halfopen_timeout_ms: u64,
    /// `conn_limit`: local port -> connections per source.
    pub conn_limits: BTreeMap<u16, u16>,
    pub conn_idle_timeout_ms: u64,
}

/// One service's query limits (docs/query-limits.md, *The limits*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    pub source: Level,
    pub prefix: Level,
    pub global: Level,
}

/// The limits on inbound DNS and NTP requests (docs/query-limits.md,
/// *Settings*).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerySettings {
    /// Destination ports of requests to our DNS and NTP servers (never one
    /// port in both).
    pub dns_service_ports: BTreeSet<u16>,
    pub ntp_service_ports: BTreeSet<u16>,
    pub dns: QueryLimits,
    /// The DNS name level: one bucket per prefix, question name and type.
    pub dns_name: Level,
    pub ntp: QueryLimits,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    /// 1 in this many DNS queries over a limit get the slip reply; 0: none.
    pub dns_slip: u8,
    /// At most this many slip replies per second from everywhere together,
    /// the burst as large (`None`: no cap).
    pub dns_slip_rate: Option<u32>,
}

impl QuerySettings {
    /// The service a request to our `port` is for, if any.
    pub fn service(&self, port: u16) -> Option<Service> {
        if self.dns_service_ports.contains(&port) {
            Some(Service::Dns)
        } else if self.ntp_service_ports.contains(&port) {
            Some(Service::Ntp)
        } else {
            None
        }
    }

    pub fn limits(&self, service: Service) -> &QueryLimits {
        match service {
            Service::Dns => &self.dns,
            Service::Ntp => &self.ntp,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub monitor: bool,
    pub solicited_lifetime_ms: u64,
    pub fragment_lifetime_ms: u64,
    pub orphans: Orphans,
    pub dns_ports: BTreeSet<u16>,
    pub ntp_ports: BTreeSet<u16>,
    pub amplifier_ports: BTreeSet<u16>,
    pub syn: SynSettings,
    pub tcp: TcpSettings,
    pub query: QuerySettings,
}

/// The list of amplification ports (docs/rules.md) watched by default.
pub const DEFAULT_AMPLIFIER_PORTS: [u16; 15] = [
    17, 19, 69, 111, 137, 161, 389, 520, 1900, 3283, 3702, 5353, 10001, 11211, 37810,
];

impl Default for Settings {
    /// The documented defaults (its settings table, docs/syn-and-lists.md,
    /// docs/tcp-connections.md and docs/query-limits.md).
    fn default() -> Self {
        Settings {
            monitor: false,
            solicited_lifetime_ms: 10_000,
            fragment_lifetime_ms: 2_000,
            orphans: Orphans::Drop,
            dns_ports: BTreeSet::from([53]),
            ntp_ports: BTreeSet::from([123]),
            amplifier_ports: DEFAULT_AMPLIFIER_PORTS.into(),
            syn: SynSettings {
                source: Level {
                    rate: Some(20),
                    burst: 40,
                },
                prefix: Level {
                    rate: Some(100),
                    burst: 200,
                },
                global: Level {
                    rate: Some(2000),
                    burst: 4000,
                },
                prefix_v4: 24,
                prefix_v6: 48,
                penalty_ms: None,
            },
            tcp: TcpSettings {
                halfopen_budget: Some(16),
                halfopen_prefix_budget: Some(64),
                halfopen_timeout_ms: 60_000,
                conn_limits: BTreeMap::new(),
                conn_idle_timeout_ms: 300_000,
            },
            query: QuerySettings {
                dns_service_ports: BTreeSet::from([53]),
                ntp_service_ports: BTreeSet::from([123]),
                dns: QueryLimits {
                    source: level(50, 100),
                    prefix: level(100, 200),
                    global: level(200, 400),
                },
                dns_name: level(10, 20),
                ntp: QueryLimits {
                    source: level(1, 8),
                    prefix: level(8, 32),
                    global: level(100, 200),
                },
                prefix_v4: 24,
                prefix_v6: 56,
                dns_slip: 2,
                dns_slip_rate: Some(1000),
            },
        }
    }
}

const fn level(rate: u32, burst: u32) -> Level {
    Level {
        rate: Some(rate),
        burst,
    }
}

impl Settings {
    pub fn port_class(&self, port: u16) -> PortClass {
        if self.dns_ports.contains(&port) {
            PortClass::Dns
        } else if self.ntp_ports.contains(&port) {
            PortClass::Ntp
        } else if self.amplifier_ports.contains(&port) {
            PortClass::Other
        } else {
            PortClass::Unwatched
        }
    }

    pub fn solicited_lifetime_ns(&self) -> u64 {
        self.solicited_lifetime_ms * MS
    }

    pub fn fragment_lifetime_ns(&self) -> u64 {
        self.fragment_lifetime_ms * MS
    }

    pub fn halfopen_timeout_ns(&self) -> u64 {
        self.tcp.halfopen_timeout_ms * MS
    }

    pub fn conn_idle_timeout_ns(&self) -> u64 {
        self.tcp.conn_idle_timeout_ms * MS
    }

    /// The connection limit of our TCP `port`, if it has one.
    pub fn conn_limit(&self, port: u16) -> Option<u16> {
        self.tcp.conn_limits.get(&port).copied()
    }

    /// Every setting as a `filter-ctl set KEY=VALUE` assignment.
    pub fn assignments(&self) -> Vec<(&'static str, String)> {
        let ports = |set: &BTreeSet<u16>| {
            if set.is_empty() {
                "none".to_string()
            } else {
                set.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
            }
        };
        let rate = |level: &Level| level.rate.map_or("off".into(), |r| format!("{r}/s"));
        let syn = &self.syn;
        let tcp = &self.tcp;
        let query = &self.query;
        let budget = |b: Option<u32>| b.map_or("off".into(), |b| b.to_string());
        let limits = if tcp.conn_limits.is_empty() {
            "none".to_string()
        } else {
            tcp.conn_limits
                .iter()
                .map(|(port, max)| format!("{port}:{max}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        vec![
            ("monitor", if self.monitor { "on" } else { "off" }.into()),
            (
                "solicited_lifetime",
                format!("{}ms", self.solicited_lifetime_ms),
            ),
            (
                "fragment_lifetime",
                format!("{}ms", self.fragment_lifetime_ms),
            ),
            (
                "orphan_fragments",
                match self.orphans {
                    Orphans::Pass => "pass",
                    Orphans::Drop => "drop",
                }
                .into(),
            ),
            ("dns_ports", ports(&self.dns_ports)),
            ("ntp_ports", ports(&self.ntp_ports)),
            ("amplifier_ports", ports(&self.amplifier_ports)),
            ("syn_source_rate", rate(&syn.source)),
            ("syn_source_burst", syn.source.burst.to_string()),
            ("syn_prefix_rate", rate(&syn.prefix)),
            ("syn_prefix_burst", syn.prefix.burst.to_string()),
            ("syn_global_rate", rate(&syn.global)),
            ("syn_global_burst", syn.global.burst.to_string()),
            ("syn_prefix_v4", syn.prefix_v4.to_string()),
            ("syn_prefix_v6", syn.prefix_v6.to_string()),
            (
                "syn_penalty",
                syn.penalty_ms.map_or("off".into(), |ms| format!("{ms}ms")),
            ),
            ("syn_halfopen_budget", budget(tcp.halfopen_budget)),
            (
                "syn_halfopen_prefix_budget",
                budget(tcp.halfopen_prefix_budget),
            ),
            (
                "syn_halfopen_timeout",
                format!("{}ms", tcp.halfopen_timeout_ms),
            ),
            ("conn_limit", limits),
            (
                "conn_idle_timeout",
                format!("{}ms", tcp.conn_idle_timeout_ms),
            ),
            ("dns_service_ports", ports(&query.dns_service_ports)),
            ("ntp_service_ports", ports(&query.ntp_service_ports)),
            ("dns_query_name_rate", rate(&query.dns_name)),
            ("dns_query_name_burst", query.dns_name.burst.to_string()),
            ("dns_query_source_rate", rate(&query.dns.source)),
            ("dns_query_source_burst", query.dns.source.burst.to_string()),
            ("dns_query_prefix_rate", rate(&query.dns.prefix)),
            ("dns_query_prefix_burst", query.dns.prefix.burst.to_string()),
            ("dns_query_global_rate", rate(&query.dns.global)),
            ("dns_query_global_burst", query.dns.global.burst.to_string()),
            ("dns_slip", query.dns_slip.to_string()),
            (
                "dns_slip_rate",
                query
                    .dns_slip_rate
                    .map_or("off".into(), |r| format!("{r}/s")),
            ),
            ("ntp_query_source_rate", rate(&query.ntp.source)),
            ("ntp_query_source_burst", query.ntp.source.burst.to_string()),
            ("ntp_query_prefix_rate", rate(&query.ntp.prefix)),
            ("ntp_query_prefix_burst", query.ntp.prefix.burst.to_string()),
            ("ntp_query_global_rate", rate(&query.ntp.global)),
            ("ntp_query_global_burst", query.ntp.global.burst.to_string()),
            ("query_prefix_v4", query.prefix_v4.to_string()),
            ("query_prefix_v6", query.prefix_v6.to_string()),
        ]
    }

    /// The assignments that turn `self` into `next`: only the keys that differ.
    pub fn changes_to(&self, next: &Settings) -> Vec<(&'static str, String)> {
        let now = self.assignments();
        next.assignments()
            .into_iter()
            .zip(now)
            .filter(|(new, old)| new != old)
            .map(|(new, _)| new)
            .collect()
    }
}
