//! Run-time settings: the one table of keys that `filter-ctl set`, `config`,
//! `apply`, TOML files, `set --help` and the man page are made from, and the
//! typed [`Settings`] they read and write.
//!
//! A row names a key, its [`Kind`] (which values are allowed, how they are
//! written and shown), where its value lives and what it means; its default
//! is the value in [`Config::DEFAULT`] (or [`DEFAULT_WATCHED_PORTS`]). A new
//! setting is one row here plus its field in [`Config`].
//!
//! Every value is checked before anything is written: [`Settings::with`]
//! either returns the whole new state or names the key, the value and what
//! is allowed. `filter-ctl config --json` prints [`Settings`] (a map of key
//! to the value as `set` takes it) and the tests deserialize it back.

pub mod duration;
pub mod kind;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    str::FromStr,
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser::SerializeMap as _};

pub use kind::{
    Budget, Choice, Count, Input, Kind, PortLimits, Ports, PrefixLen, Rate, Span, Switch,
};

use filter_common::{
    Config, DEFAULT_SERVICE_PORTS, DEFAULT_WATCHED_PORTS, OrphanPolicy, PortClass, ServiceClass,
    WatchedPorts,
    conn::ConnLimits,
    halfopen::MAX_BUDGET,
    query::MAX_SLIP,
    rate::{MAX_BURST, MAX_RATE},
    sample,
};

/// Every setting, in the order `config` shows them.
pub static SETTINGS: &[&dyn Setting] = &[
    &Row {
        key: "monitor",
        kind: Switch,
        get: |s| s.config.monitor != 0,
        set: |s, on| s.config.monitor = u8::from(on),
        help: "count what would be dropped (action would_drop) and pass everything",
    },
    &Row {
        key: "solicited_lifetime",
        kind: lifetime(Duration::from_millis(100), Duration::from_secs(300)),
        get: |s| Duration::from_nanos(s.config.solicited_ttl_ns),
        set: |s, lifetime| s.config.solicited_ttl_ns = nanos(lifetime),
        help: "how long a recorded query waits for its answer",
    },
    &Row {
        key: "fragment_lifetime",
        kind: lifetime(Duration::from_millis(100), Duration::from_secs(60)),
        get: |s| Duration::from_nanos(s.config.fragment_ttl_ns),
        set: |s, lifetime| s.config.fragment_ttl_ns = nanos(lifetime),
        help: "how long a first fragment's verdict applies to the rest",
    },
    &Row {
        key: "orphan_fragments",
        kind: Choice(&[
            ("pass", OrphanPolicy::Pass as u8),
            ("drop", OrphanPolicy::Drop as u8),
        ]),
        get: |s| s.config.orphan_fragments,
        set: |s, policy| s.config.orphan_fragments = policy,
        help: "what a later fragment does whose first fragment was not seen",
    },
    &Row {
        key: "dns_ports",
        kind: Ports,
        get: |s| s.dns_ports.clone(),
        set: |s, ports| s.dns_ports = ports,
        help: "UDP source ports whose responses must answer a recorded DNS query (id checked)",
    },
    &Row {
        key: "ntp_ports",
        kind: Ports,
        get: |s| s.ntp_ports.clone(),
        set: |s, ports| s.ntp_ports = ports,
        help: "UDP source ports whose responses must answer a recorded NTP request \
               (origin timestamp checked)",
    },
    &Row {
        key: "amplifier_ports",
        kind: Ports,
        get: |s| s.amplifier_ports.clone(),
        set: |s, ports| s.amplifier_ports = ports,
        help: "other UDP amplification ports: responses must answer a recorded request",
    },
    &Row {
        key: "syn_source_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.syn_source_rate,
        set: |s, rate| s.config.syn_source_rate = rate,
        help: "TCP SYNs per second one source (IPv4 /32, IPv6 /64) may send; more are dropped",
    },
    &Row {
        key: "syn_source_burst",
        kind: BURST,
        get: |s| s.config.syn_source_burst,
        set: |s, burst| s.config.syn_source_burst = burst,
        help: "SYNs one source may send at once before its rate applies",
    },
    &Row {
        key: "syn_prefix_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.syn_prefix_rate,
        set: |s, rate| s.config.syn_prefix_rate = rate,
        help: "TCP SYNs per second all sources of one prefix (syn_prefix_v4/v6) may send",
    },
    &Row {
        key: "syn_prefix_burst",
        kind: BURST,
        get: |s| s.config.syn_prefix_burst,
        set: |s, burst| s.config.syn_prefix_burst = burst,
        help: "SYNs one prefix may send at once before its rate applies",
    },
    &Row {
        key: "syn_global_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.syn_global_rate,
        set: |s, rate| s.config.syn_global_rate = rate,
        help: "TCP SYNs per second from everywhere together",
    },
    &Row {
        key: "syn_global_burst",
        kind: BURST,
        get: |s| s.config.syn_global_burst,
        set: |s, burst| s.config.syn_global_burst = burst,
        help: "SYNs from everywhere at once before the global rate applies",
    },
    &Row {
        key: "syn_prefix_v4",
        kind: PrefixLen(Count { min: 8, max: 32 }),
        get: |s| s.config.syn_prefix_v4,
        set: |s, len| s.config.syn_prefix_v4 = len,
        help: "prefix length that groups IPv4 sources for syn_prefix_rate",
    },
    &Row {
        key: "syn_prefix_v6",
        kind: PrefixLen(Count { min: 16, max: 64 }),
        get: |s| s.config.syn_prefix_v6,
        set: |s, len| s.config.syn_prefix_v6 = len,
        help: "prefix length that groups IPv6 sources for syn_prefix_rate",
    },
    &Row {
        key: "syn_penalty",
        kind: Span {
            min: Duration::from_secs(1),
            max: Duration::from_secs(24 * 3600),
            off: true,
        },
        get: |s| Duration::from_nanos(s.config.syn_penalty_ns),
        set: |s, penalty| s.config.syn_penalty_ns = nanos(penalty),
        help: "deny-list a source this long when it keeps exceeding its SYN bucket (off: never)",
    },
    // Issue 11, the connection-aware TCP defence (docs/tcp-connections.md).
    &Row {
        key: "syn_halfopen_budget",
        kind: Budget { max: MAX_BUDGET },
        get: |s| s.config.syn_halfopen_budget,
        set: |s, budget| s.config.syn_halfopen_budget = budget,
        help: "unanswered TCP handshakes one source (IPv4 /32, IPv6 /64) may have at once; \
               a completed handshake gives its unit back",
    },
    &Row {
        key: "syn_halfopen_prefix_budget",
        kind: Budget { max: MAX_BUDGET },
        get: |s| s.config.syn_halfopen_prefix_budget,
        set: |s, budget| s.config.syn_halfopen_prefix_budget = budget,
        help: "unanswered TCP handshakes all sources of one prefix (syn_prefix_v4/v6) may have at once",
    },
    &Row {
        key: "syn_halfopen_timeout",
        kind: lifetime(Duration::from_secs(1), Duration::from_secs(3600)),
        get: |s| Duration::from_nanos(s.config.syn_halfopen_timeout_ns),
        set: |s, timeout| s.config.syn_halfopen_timeout_ns = nanos(timeout),
        help: "how long an unanswered handshake holds its unit at most",
    },
    &Row {
        key: "conn_limit",
        kind: PortLimits,
        get: |s| s.conn_limits.clone(),
        set: |s, limits| s.conn_limits = limits,
        help: "TCP connections one source may hold per local port, PORT:MAX pairs \
               (25:3,80:64); a SYN over it is dropped",
    },
    &Row {
        key: "conn_idle_timeout",
        kind: lifetime(Duration::from_secs(1), Duration::from_secs(86_400)),
        get: |s| Duration::from_nanos(s.config.conn_idle_timeout_ns),
        set: |s, timeout| s.config.conn_idle_timeout_ns = nanos(timeout),
        help: "a connection idle this long (up to twice that) no longer counts for conn_limit",
    },
    // Issue 12, the limits on inbound DNS and NTP requests (docs/query-limits.md).
    &Row {
        key: "dns_service_ports",
        kind: Ports,
        get: |s| s.dns_service_ports.clone(),
        set: |s, ports| s.dns_service_ports = ports,
        help: "UDP ports of a DNS server on this side (the gateway or a port forward): \
               queries to them from outside are rate-limited (dns_ports is the other \
               direction: the source ports of answers to our own lookups)",
    },
    &Row {
        key: "ntp_service_ports",
        kind: Ports,
        get: |s| s.ntp_service_ports.clone(),
        set: |s, ports| s.ntp_service_ports = ports,
        help: "UDP ports of an NTP server on this side: client requests (mode 3) to them \
               from outside are rate-limited (ntp_ports is the other direction)",
    },
    &Row {
        key: "dns_query_name_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.dns_query_name_rate,
        set: |s, rate| s.config.dns_query_name_rate = rate,
        help: "DNS queries per second for one question (name and type, any case) from one \
               prefix (query_prefix_v4/v6) to dns_service_ports; more are dropped or slipped \
               (stops a reflection attack however many addresses of a prefix it spoofs)",
    },
    &Row {
        key: "dns_query_name_burst",
        kind: BURST,
        get: |s| s.config.dns_query_name_burst,
        set: |s, burst| s.config.dns_query_name_burst = burst,
        help: "DNS queries for one question from one prefix at once before its rate applies",
    },
    &Row {
        key: "dns_query_source_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.dns_query.source_rate,
        set: |s, rate| s.config.dns_query.source_rate = rate,
        help: "DNS queries per second, all names together, one source (IPv4 /32, IPv6 /64) \
               may send to dns_service_ports; more are dropped or slipped",
    },
    &Row {
        key: "dns_query_source_burst",
        kind: BURST,
        get: |s| s.config.dns_query.source_burst,
        set: |s, burst| s.config.dns_query.source_burst = burst,
        help: "DNS queries one source may send at once before its rate applies",
    },
    &Row {
        key: "dns_query_prefix_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.dns_query.prefix_rate,
        set: |s, rate| s.config.dns_query.prefix_rate = rate,
        help: "DNS queries per second, all names together, all sources of one prefix \
               (query_prefix_v4/v6) may send",
    },
    &Row {
        key: "dns_query_prefix_burst",
        kind: BURST,
        get: |s| s.config.dns_query.prefix_burst,
        set: |s, burst| s.config.dns_query.prefix_burst = burst,
        help: "DNS queries one prefix may send at once before its rate applies",
    },
    &Row {
        key: "dns_query_global_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.dns_query.global_rate,
        set: |s, rate| s.config.dns_query.global_rate = rate,
        help: "DNS queries per second from everywhere together",
    },
    &Row {
        key: "dns_query_global_burst",
        kind: BURST,
        get: |s| s.config.dns_query.global_burst,
        set: |s, burst| s.config.dns_query.global_burst = burst,
        help: "DNS queries from everywhere at once before the global rate applies",
    },
    &Row {
        key: "dns_slip",
        kind: Count {
            min: 0,
            max: MAX_SLIP,
        },
        get: |s| s.config.dns_slip,
        set: |s, slip| s.config.dns_slip = slip,
        help: "1 in N DNS queries over a limit get a truncated answer (TC), so a real \
               resolver retries over TCP; 0: all are dropped",
    },
    &Row {
        key: "dns_slip_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.dns_slip_rate,
        set: |s, rate| s.config.dns_slip_rate = rate,
        help: "truncated answers per second at most, from everywhere together (burst as \
               large); a query that would get one beyond it is dropped; off: no cap",
    },
    &Row {
        key: "ntp_query_source_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.ntp_query.source_rate,
        set: |s, rate| s.config.ntp_query.source_rate = rate,
        help: "NTP client requests per second one source (IPv4 /32, IPv6 /64) may send to \
               ntp_service_ports; more are dropped",
    },
    &Row {
        key: "ntp_query_source_burst",
        kind: BURST,
        get: |s| s.config.ntp_query.source_burst,
        set: |s, burst| s.config.ntp_query.source_burst = burst,
        help: "NTP requests one source may send at once before its rate applies",
    },
    &Row {
        key: "ntp_query_prefix_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.ntp_query.prefix_rate,
        set: |s, rate| s.config.ntp_query.prefix_rate = rate,
        help: "NTP requests per second all sources of one prefix may send",
    },
    &Row {
        key: "ntp_query_prefix_burst",
        kind: BURST,
        get: |s| s.config.ntp_query.prefix_burst,
        set: |s, burst| s.config.ntp_query.prefix_burst = burst,
        help: "NTP requests one prefix may send at once before its rate applies",
    },
    &Row {
        key: "ntp_query_global_rate",
        kind: Rate { max: MAX_RATE },
        get: |s| s.config.ntp_query.global_rate,
        set: |s, rate| s.config.ntp_query.global_rate = rate,
        help: "NTP requests per second from everywhere together",
    },
    &Row {
        key: "ntp_query_global_burst",
        kind: BURST,
        get: |s| s.config.ntp_query.global_burst,
        set: |s, burst| s.config.ntp_query.global_burst = burst,
        help: "NTP requests from everywhere at once before the global rate applies",
    },
    &Row {
        key: "query_prefix_v4",
        kind: PrefixLen(Count { min: 8, max: 32 }),
        get: |s| s.config.query_prefix_v4,
        set: |s, len| s.config.query_prefix_v4 = len,
        help: "prefix length that groups IPv4 sources for the DNS name level and the DNS and \
               NTP prefix limits",
    },
    &Row {
        key: "query_prefix_v6",
        kind: PrefixLen(Count { min: 16, max: 64 }),
        get: |s| s.config.query_prefix_v6,
        set: |s, len| s.config.query_prefix_v6 = len,
        help: "prefix length that groups IPv6 sources for the DNS name level and the DNS and \
               NTP prefix limits",
    },
    // Issue 13, drop sampling (docs/daemon.md).
    &Row {
        key: "sample_rate",
        kind: Rate {
            max: sample::MAX_RATE,
        },
        get: |s| s.config.sample_rate,
        set: |s, rate| s.config.sample_rate = rate,
        help: "dropped packets per second per drop reason copied to the daemon and `top` \
               (who is flooding; off: none); below 16 times that per CPU, one drop in 16",
    },
];

/// A lifetime: a duration that cannot be off.
const fn lifetime(min: Duration, max: Duration) -> Span {
    Span {
        min,
        max,
        off: false,
    }
}

/// The size of a bucket (SYN or query limits).
const BURST: Count<u32> = Count {
    min: 1,
    max: MAX_BURST,
};

/// Nanoseconds on the programs' clock (every span in the table is far below
/// the 584 years a u64 holds).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// One row of [`SETTINGS`], whatever the kind of its value.
pub trait Setting: Sync {
    fn key(&self) -> &'static str;
    /// What it means, one line.
    fn help(&self) -> &'static str;
    /// Which values it takes: `on|off`, `100ms..5m`.
    fn allowed(&self) -> String;
    /// Its value in `settings`, as `set` takes it.
    fn show(&self, settings: &Settings) -> String;
    /// Checks `input` and sets it in `settings`; the error names the key,
    /// the value and what is allowed.
    fn assign(&self, settings: &mut Settings, input: &Input) -> Result<(), Error>;
}

impl fmt::Debug for dyn Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A setting whose values are of kind `K`, and where they live in [`Settings`].
struct Row<K: Kind> {
    key: &'static str,
    kind: K,
    get: fn(&Settings) -> K::Value,
    set: fn(&mut Settings, K::Value),
    help: &'static str,
}

impl<K: Kind> Setting for Row<K> {
    fn key(&self) -> &'static str {
        self.key
    }

    fn help(&self) -> &'static str {
        self.help
    }

    fn allowed(&self) -> String {
        self.kind.allowed()
    }

    fn show(&self, settings: &Settings) -> String {
        self.kind.show(&(self.get)(settings))
    }

    fn assign(&self, settings: &mut Settings, input: &Input) -> Result<(), Error> {
        let value = self.kind.native(input).map_err(|why| {
            Error(format!(
                "invalid value '{input}' for {}: {why} (allowed: {})",
                self.key,
                self.allowed()
            ))
        })?;
        (self.set)(settings, value);
        Ok(())
    }
}

/// The setting named `key`.
pub fn find(key: &str) -> Result<&'static dyn Setting, Error> {
    SETTINGS
        .iter()
        .copied()
        .find(|setting| setting.key() == key)
        .ok_or_else(|| Error(format!("unknown setting '{key}' (known: {})", keys())))
}

fn keys() -> String {
    SETTINGS
        .iter()
        .map(|setting| setting.key())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rejected setting, with the key, the value and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// One checked `KEY=VALUE`: the key exists and the value is allowed for it.
/// (Whether it fits with the other settings is checked by [`Settings::with`].)
#[derive(Clone)]
pub struct Assignment {
    setting: &'static dyn Setting,
    input: Input,
}

impl Assignment {
    pub fn new(key: &str, input: Input) -> Result<Self, Error> {
        let setting = find(key)?;
        setting.assign(&mut Settings::default(), &input)?;
        Ok(Self { setting, input })
    }

    /// `key=value` as written on the command line.
    pub fn text(key: &str, value: &str) -> Result<Self, Error> {
        Self::new(key.trim(), Input::Text(value.trim().into()))
    }

    pub fn key(&self) -> &'static str {
        self.setting.key()
    }
}

impl fmt::Debug for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key(), self.input)
    }
}

/// `KEY=VALUE`, as `filter-ctl set` takes it.
impl FromStr for Assignment {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| Error(format!("'{text}' is not KEY=VALUE (keys: {})", keys())))?;
        Self::text(key, value)
    }
}

/// The assignments of a settings file (TOML: the keys of `set`, with values
/// as text or natively: `monitor = true`, `dns_ports = [53, 5353]`,
/// `syn_source_burst = 20`, `solicited_lifetime = "5s"`).
#[derive(Clone, Debug, Default)]
pub struct Assignments(pub Vec<Assignment>);

impl<'de> Deserialize<'de> for Assignments {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Assignments;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "settings (KEY = VALUE) with the keys {}", keys())
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Assignments, A::Error> {
                let mut assignments = Vec::new();
                while let Some(key) = map.next_key_seed(KeyOf)? {
                    match key {
                        Some(setting) => assignments.push(map.next_value_seed(ValueOf(setting))?),
                        None => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Assignments(assignments))
            }
        }

        deserializer.deserialize_map(Visitor)
    }
}

/// The keys of a settings file that are not settings, which filter-ctl
/// reads from the same file: its allow and deny lists (they go into the
/// list maps, not the config) and the daemon's `[upstream]` section.
pub const OTHER_KEYS: [&str; 3] = ["allow", "deny", "upstream"];

/// A key of a settings file, checked where it stands (so that a TOML error
/// points at it); `None` for one of [`OTHER_KEYS`].
struct KeyOf;

impl<'de> de::DeserializeSeed<'de> for KeyOf {
    type Value = Option<&'static dyn Setting>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(deserializer)?;
        if OTHER_KEYS.contains(&key.as_str()) {
            return Ok(None);
        }
        find(&key).map(Some).map_err(de::Error::custom)
    }
}

/// The value of a setting in a file, checked where it stands.
struct ValueOf(&'static dyn Setting);

impl<'de> de::DeserializeSeed<'de> for ValueOf {
    type Value = Assignment;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Assignment, D::Error> {
        let key = self.0.key();
        let input = Input::deserialize(deserializer)
            .map_err(|err| de::Error::custom(format!("{key}: {err}")))?;
        Assignment::new(key, input).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Input;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a whole number, true or false, or a list of numbers")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Input, E> {
                Ok(Input::Text(text.into()))
            }

            fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Input, E> {
                Ok(Input::Flag(flag))
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<Input, E> {
                Ok(Input::Number(number))
            }

            fn visit_u64<E: de::Error>(self, number: u64) -> Result<Input, E> {
                i64::try_from(number)
                    .map(Input::Number)
                    .map_err(|_| E::custom(format!("{number} is too large")))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
                let mut numbers = Vec::new();
                while let Some(item) = seq.next_element::<Input>()? {
                    match item {
                        Input::Number(number) => numbers.push(number),
                        other => {
                            return Err(de::Error::custom(format!(
                                "list items must be numbers, not {other}"
                            )));
                        }
                    }
                }
                Ok(Input::Numbers(numbers))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// Everything settable, as the maps hold it: the [`Config`] the programs
/// read and the port roles (one map: the response lists and the service
/// lists). (`config.syn_hash_seed` is not a setting:
/// filter-ctl draws it at attach and no assignment changes it.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub config: Config,
    pub dns_ports: BTreeSet<u16>,
    pub ntp_ports: BTreeSet<u16>,
    pub amplifier_ports: BTreeSet<u16>,
    /// `conn_limit`: port -> connections per source (the CONN_LIMITS map).
    pub conn_limits: BTreeMap<u16, u16>,
    pub dns_service_ports: BTreeSet<u16>,
    pub ntp_service_ports: BTreeSet<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        let ports = |wanted: PortClass| {
            DEFAULT_WATCHED_PORTS
                .iter()
                .filter(|(_, class)| *class == wanted)
                .map(|(port, _)| *port)
                .collect()
        };
        let services = |wanted: ServiceClass| {
            DEFAULT_SERVICE_PORTS
                .iter()
                .filter(|(_, service)| *service == wanted)
                .map(|(port, _)| *port)
                .collect()
        };
        Settings {
            config: Config::DEFAULT,
            dns_ports: ports(PortClass::Dns),
            ntp_ports: ports(PortClass::Ntp),
            amplifier_ports: ports(PortClass::Other),
            conn_limits: BTreeMap::new(),
            dns_service_ports: services(ServiceClass::Dns),
            ntp_service_ports: services(ServiceClass::Ntp),
        }
    }
}

impl Settings {
    /// The settings with `assignments` applied in order, if together they
    /// make sense; `self` is left as it is either way.
    pub fn with(&self, assignments: &[Assignment]) -> Result<Settings, Error> {
        for (i, first) in assignments.iter().enumerate() {
            if let Some(again) = assignments[i + 1..].iter().find(|a| a.key() == first.key()) {
                return Err(Error(format!(
                    "{} is given twice ({}={}, {}={}): give each key once",
                    first.key(),
                    first.key(),
                    first.input,
                    again.key(),
                    again.input
                )));
            }
        }
        let mut next = self.clone();
        for Assignment { setting, input } in assignments {
            setting.assign(&mut next, input)?;
        }
        next.check()?;
        Ok(next)
    }

    /// The rules between keys: a port has one meaning in each direction (as
    /// a response's source port; as a service's port).
    fn check(&self) -> Result<(), Error> {
        let responses = [
            ("dns_ports", &self.dns_ports),
            ("ntp_ports", &self.ntp_ports),
            ("amplifier_ports", &self.amplifier_ports),
        ];
        let services = [
            ("dns_service_ports", &self.dns_service_ports),
            ("ntp_service_ports", &self.ntp_service_ports),
        ];
        for lists in [&responses[..], &services[..]] {
            for (i, (name_a, a)) in lists.iter().enumerate() {
                for (name_b, b) in &lists[i + 1..] {
                    if let Some(port) = a.intersection(b).next() {
                        return Err(Error(format!(
                            "port {port} is in both {name_a} and {name_b}: a port has one meaning"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every key with its value as `set` takes it, in table order.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        SETTINGS
            .iter()
            .map(|setting| (setting.key(), setting.show(self)))
    }

    /// A TOML settings file, `key = "value"` lines in table order, which
    /// `filter-ctl apply` takes back.
    pub fn describe(&self) -> String {
        let width = SETTINGS.iter().map(|s| s.key().len()).max().unwrap_or(0);
        self.values()
            .map(|(key, value)| format!("{key:<width$} = \"{value}\"\n"))
            .collect()
    }

    /// The settings held in the two maps.
    pub fn from_maps(config: Config, ports: &WatchedPorts) -> Settings {
        let mut settings = Settings {
            config,
            dns_ports: BTreeSet::new(),
            ntp_ports: BTreeSet::new(),
            amplifier_ports: BTreeSet::new(),
            conn_limits: BTreeMap::new(),
            dns_service_ports: BTreeSet::new(),
            ntp_service_ports: BTreeSet::new(),
        };
        for port in 0..=u16::MAX {
            match ports.class(port) {
                PortClass::Unwatched => None,
                PortClass::Dns => Some(&mut settings.dns_ports),
                PortClass::Ntp => Some(&mut settings.ntp_ports),
                PortClass::Other => Some(&mut settings.amplifier_ports),
            }
            .map(|list| list.insert(port));
            match ports.service(port) {
                ServiceClass::None => None,
                ServiceClass::Dns => Some(&mut settings.dns_service_ports),
                ServiceClass::Ntp => Some(&mut settings.ntp_service_ports),
            }
            .map(|list| list.insert(port));
        }
        settings
    }

    /// These settings with the connection limits the CONN_LIMITS map holds.
    pub fn with_conn_limits(mut self, limits: &ConnLimits) -> Settings {
        self.conn_limits = (0..=u16::MAX)
            .filter_map(|port| Some((port, limits.limit(port))).filter(|(_, max)| *max != 0))
            .collect();
        self
    }

    /// The connection limits as the CONN_LIMITS map holds them (128 KiB, boxed).
    pub fn conn_limits_map(&self) -> Box<ConnLimits> {
        let mut limits = Box::new(ConnLimits::NONE);
        for (&port, &max) in &self.conn_limits {
            limits.set(port, max);
        }
        limits
    }

    /// The port roles as the WATCHED_PORTS map holds them (64 KiB, boxed).
    pub fn watched_ports(&self) -> Box<WatchedPorts> {
        let mut classes = Box::new(WatchedPorts::NONE);
        for (list, class) in [
            (&self.dns_ports, PortClass::Dns),
            (&self.ntp_ports, PortClass::Ntp),
            (&self.amplifier_ports, PortClass::Other),
        ] {
            for &port in list {
                classes.set(port, class);
            }
        }
        for (list, service) in [
            (&self.dns_service_ports, ServiceClass::Dns),
            (&self.ntp_service_ports, ServiceClass::Ntp),
        ] {
            for &port in list {
                classes.set_service(port, service);
            }
        }
        classes
    }
}

/// A map of every key to its value as `set` takes it: `config --json`.
impl Serialize for Settings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(SETTINGS.len()))?;
        for (key, value) in self.values() {
            map.serialize_entry(key, &value)?;
        }
        map.end()
    }
}

/// The defaults with the keys given applied (all of them in `config --json`).
impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Assignments(assignments) = Assignments::deserialize(deserializer)?;
        Settings::default()
            .with(&assignments)
            .map_err(de::Error::custom)
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, Error> {
        let assignments = pairs
            .iter()
            .map(|(key, value)| Assignment::text(key, value))
            .collect::<Result<Vec<_>, _>>()?;
        Settings::default().with(&assignments)
    }

    #[test]
    fn keys_are_unique_and_snake_case() {
        let mut seen = BTreeSet::new();
        for setting in SETTINGS {
            let key = setting.key();
            assert!(seen.insert(key), "{key} twice");
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{key}"
            );
            assert!(!setting.help().is_empty() && !setting.allowed().is_empty());
        }
    }

    /// Every default is allowed by its own row: shown, it parses back.
    #[test]
    fn defaults_are_within_their_ranges() {
        let defaults = Settings::default();
        let pairs: Vec<(&str, String)> = defaults.values().collect();
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(with(&borrowed), Ok(defaults));
    }

    /// Whether `described` (Settings::describe) has the line `key = "value"`,
    /// whatever the padding (the longest key sets it).
    fn shows(described: &str, key: &str, value: &str) -> bool {
        described.lines().any(|line| {
            line.split_once(" = ")
                .is_some_and(|(k, v)| k.trim_end() == key && v == format!("\"{value}\""))
        })
    }

    #[test]
    fn defaults_watch_dns_ntp_and_amplifiers() {
        let settings = Settings::default();
        assert_eq!(settings.dns_ports, BTreeSet::from([53]));
        assert_eq!(settings.ntp_ports, BTreeSet::from([123]));
        assert!(settings.amplifier_ports.contains(&11211));
        assert_eq!(settings.dns_service_ports, BTreeSet::from([53]));
        assert_eq!(settings.ntp_service_ports, BTreeSet::from([123]));
        assert_eq!(settings.config, Config::DEFAULT);
        assert!(shows(&settings.describe(), "monitor", "off"));
    }

    #[test]
    fn assignments_change_only_their_keys() {
        let settings = with(&[
            ("monitor", "on"),
            ("solicited_lifetime", "3s"),
            ("dns_ports", "53,5353"),
            ("amplifier_ports", "19"),
            ("syn_prefix_v6", "/56"),
            ("syn_penalty", "10m"),
        ])
        .unwrap();
        let expected = Config {
            monitor: 1,
            solicited_ttl_ns: 3_000_000_000,
            syn_prefix_v6: 56,
            syn_penalty_ns: 600_000_000_000,
            ..Config::DEFAULT
        };
        assert_eq!(settings.config, expected);
        assert_eq!(settings.dns_ports, BTreeSet::from([53, 5353]));
        assert_eq!(settings.amplifier_ports, BTreeSet::from([19]));
    }

    #[test]
    fn bad_values_name_the_key_the_value_and_what_is_allowed() {
        for ((key, value), expected) in [
            (
                ("monitor", "maybe"),
                "invalid value 'maybe' for monitor: expected on or off (allowed: on|off)",
            ),
            (
                ("solicited_lifetime", "50ms"),
                "out of range (allowed: 100ms..5m)",
            ),
            (
                ("solicited_lifetime", "10 parsecs"),
                "for solicited_lifetime",
            ),
            (("fragment_lifetime", "2y"), "unknown unit 'y'"),
            (("fragment_lifetime", "2h"), "100ms..1m"),
            (("orphan_fragments", "keep"), "pass|drop"),
            (("dns_ports", "53,0"), "'0' is not a port"),
            (("ntp_ports", "70000"), "'70000' is not a port"),
            (("syn_prefix_v4", "7"), "8..32"),
            (("syn_penalty", "25h"), "off|1s..1d"),
            (("syn_source_burst", "0"), "1..1000000"),
            (("syn_global_rate", "fast"), "1..1000000/s|off"),
            (
                ("colour", "blue"),
                "unknown setting 'colour' (known: monitor, ",
            ),
        ] {
            let err = with(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(expected), "{key}={value}: {err}");
        }
        let err = "monitor".parse::<Assignment>().unwrap_err().to_string();
        assert!(err.contains("'monitor' is not KEY=VALUE"), "{err}");
    }

    #[test]
    fn a_key_is_given_once() {
        let err = with(&[("monitor", "on"), ("dns_ports", "53"), ("monitor", "off")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "monitor is given twice (monitor=on, monitor=off): give each key once"
        );
    }

    /// What `config` prints is a TOML file that gives the same settings.
    #[test]
    fn the_description_is_a_settings_file() {
        let settings = with(&[
            ("monitor", "on"),
            ("dns_ports", "53,853"),
            ("ntp_ports", "none"),
            ("solicited_lifetime", "1.5s"),
            ("syn_global_rate", "off"),
            ("syn_penalty", "1h30m"),
        ])
        .unwrap();
        let Assignments(assignments) = toml::from_str(&settings.describe()).unwrap();
        assert_eq!(assignments.len(), SETTINGS.len());
        assert_eq!(Settings::default().with(&assignments), Ok(settings));
    }

    #[test]
    fn a_port_has_one_meaning() {
        let err = with(&[("ntp_ports", "123,53")]).unwrap_err().to_string();
        assert!(
            err.contains("port 53 is in both dns_ports and ntp_ports"),
            "{err}"
        );
        // Moving a port in one go is fine.
        assert!(with(&[("dns_ports", "none"), ("ntp_ports", "123,53")]).is_ok());
    }

    #[test]
    fn a_service_port_has_one_service_but_may_also_be_a_response_port() {
        let err = with(&[("ntp_service_ports", "123,53")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("port 53 is in both dns_service_ports and ntp_service_ports"),
            "{err}"
        );
        // Port 53 is both by default: a service port and a response source port.
        let settings = with(&[("dns_service_ports", "53,5300")]).unwrap();
        assert_eq!(settings.dns_ports, BTreeSet::from([53]));
        let ports = settings.watched_ports();
        assert_eq!(
            (ports.class(53), ports.service(53)),
            (PortClass::Dns, ServiceClass::Dns)
        );
        assert_eq!(ports.service(5300), ServiceClass::Dns);
        assert_eq!(ports.service(123), ServiceClass::Ntp);
        assert_eq!(Settings::from_maps(settings.config, &ports), settings);
    }

    #[test]
    fn query_limits_are_set_and_checked() {
        let settings = with(&[
            ("dns_query_source_rate", "5/s"),
            ("dns_query_source_burst", "7"),
            ("dns_query_prefix_rate", "off"),
            ("dns_query_global_burst", "900"),
            ("dns_slip", "0"),
            ("ntp_query_source_rate", "3"),
            ("ntp_query_global_rate", "off"),
            ("query_prefix_v4", "/20"),
            ("query_prefix_v6", "48"),
            ("dns_query_name_rate", "off"),
            ("dns_query_name_burst", "3"),
        ])
        .unwrap();
        let dns = filter_common::query::Limits {
            source_rate: 5,
            source_burst: 7,
            prefix_rate: 0,
            global_burst: 900,
            ..filter_common::query::DEFAULT_DNS
        };
        let ntp = filter_common::query::Limits {
            source_rate: 3,
            global_rate: 0,
            ..filter_common::query::DEFAULT_NTP
        };
        let expected = Config {
            dns_query: dns,
            ntp_query: ntp,
            dns_slip: 0,
            query_prefix_v4: 20,
            query_prefix_v6: 48,
            dns_query_name_rate: 0,
            dns_query_name_burst: 3,
            ..Config::DEFAULT
        };
        assert_eq!(settings.config, expected);
        for ((key, value), allowed) in [
            (("dns_slip", "11"), "0..10"),
            (("dns_slip", "off"), "expected a whole number"),
            (("dns_query_source_burst", "0"), "1..1000000"),
            (("dns_query_name_burst", "0"), "1..1000000"),
            (("ntp_query_prefix_rate", "fast"), "1..1000000/s|off"),
            (("query_prefix_v6", "65"), "16..64"),
            (("query_prefix_v4", "4"), "8..32"),
            (("dns_service_ports", "53,x"), "'x' is not a port"),
        ] {
            let err = with(&[(key, value)]).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains(allowed),
                "{key}={value}: {err}"
            );
        }
    }

    #[test]
    fn command_line_assignments_parse() {
        let assignment: Assignment = " monitor = on ".parse().unwrap();
        assert_eq!(assignment.key(), "monitor");
        assert_eq!(format!("{assignment:?}"), "monitor=on");
    }

    #[test]
    fn toml_takes_text_and_native_values() {
        let text = "monitor = true\nsolicited_lifetime = \"5s\"\ndns_ports = [53, 853]\n\
                    ntp_ports = []\nsyn_source_burst = 20\nsyn_source_rate = \"5/s\"\n\
                    syn_prefix_rate = 7\nsyn_prefix_v6 = 56\norphan_fragments = \"pass\"\n";
        let Assignments(assignments) = toml::from_str(text).unwrap();
        let settings = Settings::default().with(&assignments).unwrap();
        assert_eq!(settings.config.monitor, 1);
        assert_eq!(settings.config.solicited_ttl_ns, 5_000_000_000);
        assert_eq!(settings.dns_ports, BTreeSet::from([53, 853]));
        assert!(settings.ntp_ports.is_empty());
        assert_eq!(settings.config.syn_source_burst, 20);
        assert_eq!(settings.config.syn_source_rate, 5);
        assert_eq!(settings.config.syn_prefix_rate, 7);
        assert_eq!(settings.config.syn_prefix_v6, 56);
        assert_eq!(settings.config.orphan_fragments, OrphanPolicy::Pass as u8);
    }

    #[test]
    fn bad_toml_names_the_key() {
        for (text, expected) in [
            (
                "dns_ports = [\"x\"]",
                "dns_ports: list items must be numbers, not x",
            ),
            (
                "syn_prefix_v6 = 65",
                "invalid value '65' for syn_prefix_v6: out of range (allowed: 16..64)",
            ),
            (
                "solicited_lifetime = 5",
                "for solicited_lifetime: expected a string",
            ),
            ("monitor = 1.5", "monitor: invalid type: floating point"),
            ("colour = \"blue\"", "unknown setting 'colour'"),
            ("[monitor]\non = true", "monitor: invalid type"),
            ("= broken", ""),
        ] {
            let err = toml::from_str::<Assignments>(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    /// `config --json` deserializes back into the same settings.
    #[test]
    fn json_round_trips() {
        let settings = with(&[
            ("monitor", "on"),
            ("fragment_lifetime", "1500ms"),
            ("ntp_ports", "none"),
            ("syn_penalty", "90s"),
            ("syn_global_rate", "off"),
        ])
        .unwrap();
        let json = serde_json::to_string(&settings).unwrap();
        assert!(
            json.starts_with("{\"monitor\":\"on\",\"solicited_lifetime\":\"10s\""),
            "{json}"
        );
        assert!(json.contains("\"syn_source_burst\":\"40\""), "{json}");
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), settings);
        let err = serde_json::from_str::<Settings>("{\"ntp_ports\":\"53\"}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port 53 is in both"), "{err}");
    }

    #[test]
    fn connection_limits_and_half_open_budgets_are_settings() {
        let defaults = Settings::default();
        assert!(defaults.conn_limits.is_empty());
        assert!(shows(&defaults.describe(), "conn_limit", "none"));
        assert!(shows(&defaults.describe(), "syn_halfopen_budget", "16"));
        let settings = with(&[
            ("conn_limit", "25:3,80:64"),
            ("conn_idle_timeout", "90s"),
            ("syn_halfopen_budget", "off"),
            ("syn_halfopen_prefix_budget", "200"),
            ("syn_halfopen_timeout", "30s"),
        ])
        .unwrap();
        assert_eq!(settings.conn_limits, BTreeMap::from([(25, 3), (80, 64)]));
        assert_eq!(settings.config.conn_idle_timeout_ns, 90_000_000_000);
        assert_eq!(settings.config.syn_halfopen_budget, 0);
        assert_eq!(settings.config.syn_halfopen_prefix_budget, 200);
        assert_eq!(settings.config.syn_halfopen_timeout_ns, 30_000_000_000);
        let limits = settings.conn_limits_map();
        assert_eq!(
            (limits.limit(25), limits.limit(80), limits.limit(443)),
            (3, 64, 0)
        );
        let back = Settings::from_maps(settings.config, &settings.watched_ports())
            .with_conn_limits(&limits);
        assert_eq!(back, settings);
        let json = serde_json::to_string(&settings).unwrap();
        assert!(json.contains("\"conn_limit\":\"25:3,80:64\""), "{json}");
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), settings);
        let Assignments(file) =
            toml::from_str("conn_limit = \"25:3\"\nsyn_halfopen_budget = 8\n").unwrap();
        let from_file = Settings::default().with(&file).unwrap();
        assert_eq!(from_file.conn_limits, BTreeMap::from([(25, 3)]));
        assert_eq!(from_file.config.syn_halfopen_budget, 8);
        for ((key, value), expected) in [
            (
                ("conn_limit", "25"),
                "invalid value '25' for conn_limit: '25' is not PORT:MAX (allowed: PORT:MAX,...|none)",
            ),
            (("conn_limit", "25:3,25:4"), "port 25 is given twice"),
            (("conn_idle_timeout", "500ms"), "1s..1d"),
            (("syn_halfopen_timeout", "2h"), "1s..1h"),
            (("syn_halfopen_budget", "0"), "1..1000000|off"),
        ] {
            let err = with(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(expected), "{key}={value}: {err}");
        }
        let err = toml::from_str::<Assignments>("conn_limit = 25")
            .unwrap_err()
            .to_string();
        assert!(err.contains("conn_limit"), "{err}");
    }

    #[test]
    fn the_maps_hold_the_same_settings() {
        let settings = with(&[("dns_ports", "53,5353"), ("amplifier_ports", "none")]).unwrap();
        let ports = settings.watched_ports();
        assert_eq!(ports.class(5353), PortClass::Dns);
        assert_eq!(ports.class(19), PortClass::Unwatched);
        assert_eq!(Settings::from_maps(settings.config, &ports), settings);
    }
}
