//! Run-time settings: the keys `filter-ctl set`, `config`, `apply` and a TOML
//! config file share. Every value is parsed and validated before anything is
//! written, so a rejected change leaves the running filter exactly as it was.
//!
//! The settings live in two maps: `CONFIG` (one [`Config`]) and
//! `WATCHED_PORTS` (one [`WatchedPorts`]: a [`PortClass`] per UDP port).

use std::{
    borrow::{Borrow, BorrowMut},
    collections::BTreeSet,
    fmt::Write as _,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};

use crate::duration;
use aya::maps::{Array, MapData};
use filter_common::{Config, DEFAULT_WATCHED_PORTS, OrphanPolicy, PortClass, WatchedPorts};

/// One settable key: its name, what it takes, and what it means.
pub struct Key {
    pub name: &'static str,
    pub values: &'static str,
    pub help: &'static str,
}

/// Every key, in the order `config` shows them.
pub const KEYS: &[Key] = &[
    Key {
        name: "monitor",
        values: "on|off",
        help: "count what would be dropped (action would_drop) and pass everything",
    },
    Key {
        name: "solicited_lifetime",
        values: "100ms..300s",
        help: "how long a recorded query waits for its answer",
    },
    Key {
        name: "fragment_lifetime",
        values: "100ms..60s",
        help: "how long a first fragment's verdict applies to the rest",
    },
    Key {
        name: "orphan_fragments",
        values: "pass|drop",
        help: "what a later fragment does whose first fragment was not seen",
    },
    Key {
        name: "dns_ports",
        values: "port list",
        help: "UDP source ports whose responses must answer a recorded DNS query (id checked)",
    },
    Key {
        name: "ntp_ports",
        values: "port list",
        help: "UDP source ports whose responses must answer a recorded NTP request (origin timestamp checked)",
    },
    Key {
        name: "amplifier_ports",
        values: "port list",
        help: "other UDP amplification ports: responses must answer a recorded request",
    },
    Key {
        name: "syn_source_rate",
        values: "1..1000000/s|off",
        help: "TCP SYNs per second one source (IPv4 /32, IPv6 /64) may send; more are dropped",
    },
    Key {
        name: "syn_source_burst",
        values: "1..1000000",
        help: "SYNs one source may send at once before its rate applies",
    },
    Key {
        name: "syn_prefix_rate",
        values: "1..1000000/s|off",
        help: "TCP SYNs per second all sources of one prefix (syn_prefix_v4/v6) may send",
    },
    Key {
        name: "syn_prefix_burst",
        values: "1..1000000",
        help: "SYNs one prefix may send at once before its rate applies",
    },
    Key {
        name: "syn_global_rate",
        values: "1..1000000/s|off",
        help: "TCP SYNs per second from everywhere together",
    },
    Key {
        name: "syn_global_burst",
        values: "1..1000000",
        help: "SYNs from everywhere at once before the global rate applies",
    },
    Key {
        name: "syn_prefix_v4",
        values: "8..32",
        help: "prefix length that groups IPv4 sources for syn_prefix_rate",
    },
    Key {
        name: "syn_prefix_v6",
        values: "16..64",
        help: "prefix length that groups IPv6 sources for syn_prefix_rate",
    },
    Key {
        name: "syn_penalty",
        values: "off|1s..24h",
        help: "deny-list a source this long when it keeps exceeding its SYN bucket (off: never)",
    },
];

const SOLICITED_LIFETIME: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(300));
const FRAGMENT_LIFETIME: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(60));

/// The whole settable state, as read from (or to be written to) the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub config: Config,
    pub dns_ports: BTreeSet<u16>,
    pub ntp_ports: BTreeSet<u16>,
    pub amplifier_ports: BTreeSet<u16>,
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
        Settings {
            config: Config::DEFAULT,
            dns_ports: ports(PortClass::Dns),
            ntp_ports: ports(PortClass::Ntp),
            amplifier_ports: ports(PortClass::Other),
        }
    }
}

impl Settings {
    /// Applies `key=value` assignments to a copy; the first bad one is an error
    /// naming the key, the value and what is allowed.
    pub fn with<'a>(
        &self,
        assignments: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<Settings> {
        let mut next = self.clone();
        for (key, value) in assignments {
            next.assign(key, value.trim())?;
        }
        next.check_ports_disjoint()?;
        Ok(next)
    }

    fn assign(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let allowed = KEYS
            .iter()
            .find(|k| k.name == key)
            .ok_or_else(|| anyhow!("unknown setting '{key}' (known: {})", key_names()))?
            .values;
        let bad =
            |why: String| anyhow!("invalid value '{value}' for {key}: {why} (allowed: {allowed})");
        match key {
            "monitor" => self.config.monitor = u8::from(parse_switch(value).map_err(bad)?),
            "solicited_lifetime" => {
                self.config.solicited_ttl_ns =
                    parse_duration_in(value, SOLICITED_LIFETIME).map_err(bad)?
            }
            "fragment_lifetime" => {
                self.config.fragment_ttl_ns =
                    parse_duration_in(value, FRAGMENT_LIFETIME).map_err(bad)?
            }
            "orphan_fragments" => {
                self.config.orphan_fragments = match value {
                    "pass" => OrphanPolicy::Pass as u8,
                    "drop" => OrphanPolicy::Drop as u8,
                    _ => return Err(bad("expected pass or drop".into())),
                }
            }
            "dns_ports" => self.dns_ports = parse_ports(value).map_err(bad)?,
            "ntp_ports" => self.ntp_ports = parse_ports(value).map_err(bad)?,
            "amplifier_ports" => self.amplifier_ports = parse_ports(value).map_err(bad)?,
            _ => match crate::syn::assign(&mut self.config, key, value) {
                Some(result) => result.map_err(bad)?,
                None => unreachable!("every key in KEYS is handled"),
            },
        }
        Ok(())
    }

    fn check_ports_disjoint(&self) -> anyhow::Result<()> {
        let lists = [
            ("dns_ports", &self.dns_ports),
            ("ntp_ports", &self.ntp_ports),
            ("amplifier_ports", &self.amplifier_ports),
        ];
        for (i, (name_a, a)) in lists.iter().enumerate() {
            for (name_b, b) in &lists[i + 1..] {
                if let Some(port) = a.intersection(b).next() {
                    bail!("port {port} is in both {name_a} and {name_b}: a port has one meaning");
                }
            }
        }
        Ok(())
    }

    /// `key = value` lines, in the order of [`KEYS`].
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (key, value) in self.values() {
            let _ = writeln!(out, "{key:<20} = {value}");
        }
        out
    }

    /// Every key with its current value, as `set` accepts it back.
    pub fn values(&self) -> Vec<(&'static str, String)> {
        let ports = |set: &BTreeSet<u16>| {
            if set.is_empty() {
                "none".to_owned()
            } else {
                set.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
            }
        };
        let mut values = vec![
            (
                "monitor",
                if self.config.monitor != 0 {
                    "on"
                } else {
                    "off"
                }
                .to_owned(),
            ),
            (
                "solicited_lifetime",
                duration::format(Duration::from_nanos(self.config.solicited_ttl_ns)),
            ),
            (
                "fragment_lifetime",
                duration::format(Duration::from_nanos(self.config.fragment_ttl_ns)),
            ),
            (
                "orphan_fragments",
                if self.config.orphan_fragments == OrphanPolicy::Drop as u8 {
                    "drop"
                } else {
                    "pass"
                }
                .to_owned(),
            ),
            ("dns_ports", ports(&self.dns_ports)),
            ("ntp_ports", ports(&self.ntp_ports)),
            ("amplifier_ports", ports(&self.amplifier_ports)),
        ];
        values.extend(crate::syn::values(&self.config));
        values
    }

    /// Reads the live settings from the maps.
    pub fn read<C: Borrow<MapData>, P: Borrow<MapData>>(
        config: &Array<C, Config>,
        ports: &Array<P, WatchedPorts>,
    ) -> anyhow::Result<Settings> {
        let mut settings = Settings {
            config: config.get(&0, 0).context("reading the config map")?,
            dns_ports: BTreeSet::new(),
            ntp_ports: BTreeSet::new(),
            amplifier_ports: BTreeSet::new(),
        };
        let classes = Box::new(ports.get(&0, 0).context("reading the watched ports map")?);
        for port in 0..=u16::MAX {
            match classes.class(port) {
                PortClass::Unwatched => {}
                PortClass::Dns => _ = settings.dns_ports.insert(port),
                PortClass::Ntp => _ = settings.ntp_ports.insert(port),
                PortClass::Other => _ = settings.amplifier_ports.insert(port),
            }
        }
        Ok(settings)
    }

    /// Writes the settings whose values differ from `live` into the maps.
    pub fn write<C: BorrowMut<MapData>, P: BorrowMut<MapData>>(
        &self,
        live: &Settings,
        config: &mut Array<C, Config>,
        ports: &mut Array<P, WatchedPorts>,
    ) -> anyhow::Result<()> {
        if self.config != live.config {
            config
                .set(0, &self.config, 0)
                .context("writing the config map")?;
        }
        let classes = self.port_classes();
        if *classes != *live.port_classes() {
            // One write: the programs see each port's old class or its new one.
            ports
                .set(0, &*classes, 0)
                .context("writing the watched ports map")?;
        }
        Ok(())
    }

    /// The watched ports as the WATCHED_PORTS map holds them.
    fn port_classes(&self) -> Box<WatchedPorts> {
        let mut classes = Box::new(WatchedPorts::NONE);
        for (set, class) in [
            (&self.dns_ports, PortClass::Dns),
            (&self.ntp_ports, PortClass::Ntp),
            (&self.amplifier_ports, PortClass::Other),
        ] {
            for &port in set {
                classes.set(port, class);
            }
        }
        classes
    }
}

/// Writes the defaults into freshly created maps (a fresh attach), so that
/// replacing the programs later keeps what the operator set.
pub fn write_defaults<C: BorrowMut<MapData>, P: BorrowMut<MapData>>(
    config: &mut Array<C, Config>,
    ports: &mut Array<P, WatchedPorts>,
) -> anyhow::Result<()> {
    let empty = Settings {
        config: Config {
            solicited_ttl_ns: 0,
            fragment_ttl_ns: 0,
            monitor: 0,
            orphan_fragments: 0,
            _padding: [0; 6],
            syn_source_rate: 0,
            syn_source_burst: 0,
            syn_prefix_rate: 0,
            syn_prefix_burst: 0,
            syn_global_rate: 0,
            syn_global_burst: 0,
            syn_prefix_v4: 0,
            syn_prefix_v6: 0,
            _syn_padding: [0; 6],
            syn_penalty_ns: 0,
            syn_hash_seed: 0,
        },
        dns_ports: BTreeSet::new(),
        ntp_ports: BTreeSet::new(),
        amplifier_ports: BTreeSet::new(),
    };
    let mut defaults = Settings::default();
    defaults.config.syn_hash_seed = crate::syn::random_seed()?;
    defaults.write(&empty, config, ports)
}

/// Parses `KEY=VALUE` as given on the command line.
pub fn parse_assignment(text: &str) -> anyhow::Result<(&str, &str)> {
    text.split_once('=')
        .map(|(key, value)| (key.trim(), value.trim()))
        .ok_or_else(|| anyhow!("'{text}' is not KEY=VALUE (keys: {})", key_names()))
}

/// Turns a TOML config file into `key=value` assignments with the same keys.
pub fn assignments_from_toml(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match &value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Boolean(b) => if *b { "on" } else { "off" }.to_owned(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Array(items) if items.is_empty() => "none".to_owned(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        toml::Value::Integer(i) => Ok(i.to_string()),
                        other => Err(anyhow!(
                            "{key}: list items must be port numbers, not {other}"
                        )),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .join(","),
                other => bail!("{key}: unsupported value {other}"),
            };
            Ok((key, text))
        })
        .collect()
}

fn key_names() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

fn parse_switch(value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

/// A duration within `[min, max]`, in nanoseconds.
fn parse_duration_in(value: &str, (min, max): (Duration, Duration)) -> Result<u64, String> {
    let duration = duration::parse(value)?;
    if duration < min || duration > max {
        return Err("out of range".into());
    }
    Ok(duration.as_nanos() as u64)
}

/// A comma-separated list of ports 1..=65535, or `none`.
fn parse_ports(value: &str) -> Result<BTreeSet<u16>, String> {
    if value == "none" || value.is_empty() {
        return Ok(BTreeSet::new());
    }
    value
        .split(',')
        .map(|item| match item.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("'{}' is not a port number 1..65535", item.trim())),
        })
        .collect()
}

/// The settings maps of a filter pinned on an interface.
pub struct PinnedSettings {
    config: Array<MapData, Config>,
    ports: Array<MapData, WatchedPorts>,
}

impl PinnedSettings {
    pub fn open(pins: &crate::pins::IfacePins) -> anyhow::Result<Self> {
        let open = |name: &str| -> anyhow::Result<aya::maps::Map> {
            let path = pins.map(name);
            let data = MapData::from_pin(&path)
                .with_context(|| format!("opening {} (is the filter attached?)", path.display()))?;
            Ok(aya::maps::Map::from_map_data(data)?)
        };
        Ok(Self {
            config: Array::try_from(open(filter_common::map::CONFIG)?)?,
            ports: Array::try_from(open(filter_common::map::WATCHED_PORTS)?)?,
        })
    }

    pub fn read(&self) -> anyhow::Result<Settings> {
        Settings::read(&self.config, &self.ports)
    }

    /// Validates every assignment, then writes what changed. Returns the new settings.
    pub fn apply<'a>(
        &mut self,
        assignments: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<Settings> {
        let live = self.read()?;
        let next = live.with(assignments)?;
        next.write(&live, &mut self.config, &mut self.ports)?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_watch_dns_ntp_and_amplifiers() {
        let settings = Settings::default();
        assert_eq!(settings.dns_ports, BTreeSet::from([53]));
        assert_eq!(settings.ntp_ports, BTreeSet::from([123]));
        assert!(
            settings.amplifier_ports.contains(&11211) && settings.amplifier_ports.contains(&1900)
        );
        assert_eq!(settings.config.monitor, 0);
    }

    #[test]
    fn assignments_change_only_their_keys() {
        let settings = Settings::default()
            .with([
                ("monitor", "on"),
                ("solicited_lifetime", "3s"),
                ("dns_ports", "53,5353"),
                ("amplifier_ports", "19"),
            ])
            .unwrap();
        assert_eq!(settings.config.monitor, 1);
        assert_eq!(settings.config.solicited_ttl_ns, 3_000_000_000);
        assert_eq!(
            settings.config.fragment_ttl_ns,
            Config::DEFAULT.fragment_ttl_ns
        );
        assert_eq!(settings.dns_ports, BTreeSet::from([53, 5353]));
        assert_eq!(settings.amplifier_ports, BTreeSet::from([19]));
    }

    #[test]
    fn bad_values_name_the_key_and_the_range() {
        let cases = [
            (("monitor", "maybe"), "monitor"),
            (("solicited_lifetime", "50ms"), "100ms..300s"),
            (("solicited_lifetime", "10 parsecs"), "solicited_lifetime"),
            (("fragment_lifetime", "2y"), "unknown unit"),
            (("fragment_lifetime", "2h"), "100ms..60s"),
            (("orphan_fragments", "keep"), "pass|drop"),
            (("dns_ports", "53,0"), "'0' is not a port"),
            (("ntp_ports", "70000"), "'70000' is not a port"),
            (("colour", "blue"), "unknown setting 'colour'"),
        ];
        for ((key, value), expected) in cases {
            let err = Settings::default()
                .with([(key, value)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{key}={value}: {err}");
        }
    }

    #[test]
    fn a_port_cannot_have_two_meanings() {
        let err = Settings::default()
            .with([("ntp_ports", "123,53")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("port 53 is in both dns_ports and ntp_ports"),
            "{err}"
        );
    }

    #[test]
    fn values_round_trip_through_with() {
        let changed = Settings::default()
            .with([
                ("monitor", "on"),
                ("fragment_lifetime", "1500ms"),
                ("ntp_ports", "none"),
            ])
            .unwrap();
        let values = changed.values();
        let again = Settings::default()
            .with(values.iter().map(|(k, v)| (*k, v.as_str())))
            .unwrap();
        assert_eq!(again, changed);
    }

    #[test]
    fn toml_values_become_assignments() {
        let text =
            "monitor = true\nsolicited_lifetime = \"5s\"\ndns_ports = [53, 5353]\nntp_ports = []\n";
        let mut assignments = assignments_from_toml(text).unwrap();
        assignments.sort();
        assert_eq!(
            assignments,
            [
                ("dns_ports".to_owned(), "53,5353".to_owned()),
                ("monitor".to_owned(), "on".to_owned()),
                ("ntp_ports".to_owned(), "none".to_owned()),
                ("solicited_lifetime".to_owned(), "5s".to_owned()),
            ]
        );
        assert!(assignments_from_toml("dns_ports = [\"x\"]").is_err());
        assert!(assignments_from_toml("= broken").is_err());
    }

    #[test]
    fn assignment_needs_an_equals_sign() {
        assert_eq!(parse_assignment("monitor = on").unwrap(), ("monitor", "on"));
        assert!(
            parse_assignment("monitor")
                .unwrap_err()
                .to_string()
                .contains("KEY=VALUE")
        );
    }
}
