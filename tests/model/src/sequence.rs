//! A concrete sequence: settings, list entries, then frames in order. The
//! generator expands each case into one; the runner plays it through the
//! real programs and the model; a mismatch is saved as one, in a text form
//! that does not depend on the generator (frames as hex), so the normal test
//! suite replays it whatever the generator has become since.
//!
//! ```text
//! # why this case is kept
//! link ip
//! set monitor=on orphan_fragments=pass
//! allow 198.18.0.0/24 forever
//! deny 2001:db8::/48 5ms
//! egress 0200000000010200000000020800...
//! ingress 0200000000010200000000020800...
//! wait 10ms
//! ```
//! `link` names what the frames start with, the link layer the programs are
//! loaded for: `ethernet` (the default, when there is no such line) or `ip`
//! (a device without an Ethernet header: frames start at the IP header).
//! `set` lists only the keys that differ from the defaults (docs/commands.md's
//! settings table); a list entry lasts `forever` or some milliseconds from
//! when it is added (`0ms`: already expired).

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use crate::{
    lists::{List, Prefix},
    parse::{Family, Link},
    settings::{Orphans, Settings},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// What the frames start with: the variant of the programs it runs on.
    pub link: Link,
    pub settings: Settings,
    pub lists: Vec<ListItem>,
    pub steps: Vec<Step>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListItem {
    pub list: List,
    pub prefix: Prefix,
    /// Milliseconds from when it is added; `None`: never expires.
    pub lasting_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A frame arriving on the WAN link (the XDP program).
    Ingress(Vec<u8>),
    /// A frame leaving through the WAN link (the TC program).
    Egress(Vec<u8>),
    /// Let the clock run.
    Wait { ms: u64 },
    /// A live settings change (boxed: the settings are far larger than a
    /// frame's vector).
    Set(Box<Settings>),
}

impl Step {
    pub fn frames(&self) -> usize {
        usize::from(matches!(self, Step::Ingress(_) | Step::Egress(_)))
    }
}

impl Sequence {
    pub fn frames(&self) -> usize {
        self.steps.iter().map(Step::frames).sum()
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let defaults = Settings::default();
        let set_line = |settings: &Settings| {
            let changes = defaults.changes_to(settings);
            let pairs: Vec<String> = changes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("set {}", pairs.join(" "))
        };
        if self.link != Link::Ethernet {
            writeln!(out, "link {}", self.link).unwrap();
        }
        if self.settings != defaults {
            writeln!(out, "{}", set_line(&self.settings)).unwrap();
        }
        for item in &self.lists {
            let list = match item.list {
                List::Allow => "allow",
                List::Deny => "deny",
            };
            let lasting = item
                .lasting_ms
                .map_or("forever".to_string(), |ms| format!("{ms}ms"));
            writeln!(out, "{list} {} {lasting}", item.prefix).unwrap();
        }
        for step in &self.steps {
            match step {
                Step::Ingress(frame) => writeln!(out, "ingress {}", hex(frame)).unwrap(),
                Step::Egress(frame) => writeln!(out, "egress {}", hex(frame)).unwrap(),
                Step::Wait { ms } => writeln!(out, "wait {ms}ms").unwrap(),
                Step::Set(settings) => writeln!(out, "{}", set_line(settings)).unwrap(),
            }
        }
        out
    }

    /// Reads [`Sequence::to_text`]'s form; `#` starts a comment line.
    pub fn from_text(text: &str) -> Result<Sequence, String> {
        let mut sequence = Sequence {
            link: Link::Ethernet,
            settings: Settings::default(),
            lists: Vec::new(),
            steps: Vec::new(),
        };
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let context = |err: String| format!("line {}: {err}: {line}", number + 1);
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match word {
                "link" => {
                    sequence.link = Link::from_name(rest)
                        .ok_or_else(|| context(format!("unknown link layer '{rest}'")))?;
                }
                "set" => {
                    let settings = apply(Settings::default(), rest).map_err(context)?;
                    if sequence.steps.is_empty() {
                        sequence.settings = settings;
                    } else {
                        sequence.steps.push(Step::Set(Box::new(settings)));
                    }
                }
                "allow" | "deny" => {
                    let (prefix, lasting) = rest
                        .split_once(' ')
                        .ok_or_else(|| context("expected PREFIX LASTING".into()))?;
                    sequence.lists.push(ListItem {
                        list: if word == "allow" {
                            List::Allow
                        } else {
                            List::Deny
                        },
                        prefix: parse_prefix(prefix).map_err(context)?,
                        lasting_ms: match lasting {
                            "forever" => None,
                            ms => Some(parse_ms(ms).map_err(context)?),
                        },
                    });
                }
                "ingress" => sequence
                    .steps
                    .push(Step::Ingress(unhex(rest).map_err(context)?)),
                "egress" => sequence
                    .steps
                    .push(Step::Egress(unhex(rest).map_err(context)?)),
                "wait" => sequence.steps.push(Step::Wait {
                    ms: parse_ms(rest).map_err(context)?,
                }),
                other => return Err(context(format!("unknown step '{other}'"))),
            }
        }
        Ok(sequence)
    }
}

/// The settings after `KEY=VALUE ...`, in the forms [`Settings::assignments`] writes.
fn apply(mut settings: Settings, assignments: &str) -> Result<Settings, String> {
    for pair in assignments.split_whitespace() {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("'{pair}' is not KEY=VALUE"))?;
        let ports = |value: &str| -> Result<_, String> {
            if value == "none" {
                return Ok(Default::default());
            }
            value
                .split(',')
                .map(|p| p.parse().map_err(|_| format!("bad port '{p}'")))
                .collect()
        };
        let number = |value: &str| -> Result<u32, String> {
            value.parse().map_err(|_| format!("bad number '{value}'"))
        };
        let rate = |value: &str| -> Result<Option<u32>, String> {
            match value {
                "off" => Ok(None),
                v => number(v.trim_end_matches("/s")).map(Some),
            }
        };
        let budget = |value: &str| -> Result<Option<u32>, String> {
            match value {
                "off" => Ok(None),
                v => number(v).map(Some),
            }
        };
        let limits = |value: &str| -> Result<BTreeMap<u16, u16>, String> {
            if value == "none" {
                return Ok(BTreeMap::new());
            }
            value
                .split(',')
                .map(|pair| {
                    let bad = || format!("bad PORT:MAX '{pair}'");
                    let (port, max) = pair.split_once(':').ok_or_else(bad)?;
                    Ok((
                        port.parse().map_err(|_| bad())?,
                        max.parse().map_err(|_| bad())?,
                    ))
                })
                .collect()
        };
        let syn = &mut settings.syn;
        let tcp = &mut settings.tcp;
        let query = &mut settings.query;
        match key {
            "monitor" => settings.monitor = value == "on",
            "solicited_lifetime" => settings.solicited_lifetime_ms = parse_ms(value)?,
            "fragment_lifetime" => settings.fragment_lifetime_ms = parse_ms(value)?,
            "orphan_fragments" => {
                settings.orphans = match value {
                    "pass" => Orphans::Pass,
                    _ => Orphans::Drop,
                }
            }
            "dns_ports" => settings.dns_ports = ports(value)?,
            "ntp_ports" => settings.ntp_ports = ports(value)?,
            "amplifier_ports" => settings.amplifier_ports = ports(value)?,
            "syn_source_rate" => syn.source.rate = rate(value)?,
            "syn_source_burst" => syn.source.burst = number(value)?,
            "syn_prefix_rate" => syn.prefix.rate = rate(value)?,
            "syn_prefix_burst" => syn.prefix.burst = number(value)?,
            "syn_global_rate" => syn.global.rate = rate(value)?,
            "syn_global_burst" => syn.global.burst = number(value)?,
            "syn_prefix_v4" => syn.prefix_v4 = number(value)? as u8,
            "syn_prefix_v6" => syn.prefix_v6 = number(value)? as u8,
            "syn_penalty" => {
                syn.penalty_ms = match value {
                    "off" => None,
                    v => Some(parse_ms(v)?),
                }
            }
            "syn_halfopen_budget" => tcp.halfopen_budget = budget(value)?,
            "syn_halfopen_prefix_budget" => tcp.halfopen_prefix_budget = budget(value)?,
            "syn_halfopen_timeout" => tcp.halfopen_timeout_ms = parse_ms(value)?,
            "conn_limit" => tcp.conn_limits = limits(value)?,
            "conn_idle_timeout" => tcp.conn_idle_timeout_ms = parse_ms(value)?,
            "dns_service_ports" => query.dns_service_ports = ports(value)?,
            "ntp_service_ports" => query.ntp_service_ports = ports(value)?,
            "dns_query_name_rate" => query.dns_name.rate = rate(value)?,
            "dns_query_name_burst" => query.dns_name.burst = number(value)?,
            "dns_query_source_rate" => query.dns.source.rate = rate(value)?,
            "dns_query_source_burst" => query.dns.source.burst = number(value)?,
            "dns_query_prefix_rate" => query.dns.prefix.rate = rate(value)?,
            "dns_query_prefix_burst" => query.dns.prefix.burst = number(value)?,
            "dns_query_global_rate" => query.dns.global.rate = rate(value)?,
            "dns_query_global_burst" => query.dns.global.burst = number(value)?,
            "dns_slip" => query.dns_slip = number(value)? as u8,
            "dns_slip_rate" => query.dns_slip_rate = rate(value)?,
            "ntp_query_source_rate" => query.ntp.source.rate = rate(value)?,
            "ntp_query_source_burst" => query.ntp.source.burst = number(value)?,
            "ntp_query_prefix_rate" => query.ntp.prefix.rate = rate(value)?,
            "ntp_query_prefix_burst" => query.ntp.prefix.burst = number(value)?,
            "ntp_query_global_rate" => query.ntp.global.rate = rate(value)?,
            "ntp_query_global_burst" => query.ntp.global.burst = number(value)?,
            "query_prefix_v4" => query.prefix_v4 = number(value)? as u8,
            "query_prefix_v6" => query.prefix_v6 = number(value)? as u8,
            other => return Err(format!("unknown setting '{other}'")),
        }
    }
    Ok(settings)
}

fn parse_ms(text: &str) -> Result<u64, String> {
    text.strip_suffix("ms")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("'{text}' is not a number of milliseconds (e.g. 5ms)"))
}

fn parse_prefix(text: &str) -> Result<Prefix, String> {
    let (addr, len) = text
        .split_once('/')
        .ok_or_else(|| format!("'{text}' is not ADDRESS/LENGTH"))?;
    let len: u8 = len.parse().map_err(|_| format!("bad length in '{text}'"))?;
    match addr
        .parse::<IpAddr>()
        .map_err(|_| format!("bad address in '{text}'"))?
    {
        IpAddr::V4(v4) if len <= 32 => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            Ok(Prefix::new(Family::V4, bytes, len))
        }
        IpAddr::V6(v6) if len <= 128 => Ok(Prefix::new(Family::V6, v6.octets(), len)),
        _ => Err(format!("prefix length too long in '{text}'")),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| "bad hex digit".to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let mut settings = Settings {
            monitor: true,
            dns_ports: [53, 5353].into(),
            ..Settings::default()
        };
        settings.amplifier_ports.remove(&5353);
        settings.syn.penalty_ms = Some(1000);
        settings.syn.global.rate = None;
        settings.tcp.conn_limits = [(25, 3), (80, 64)].into();
        settings.tcp.halfopen_prefix_budget = None;
        settings.query.ntp_service_ports = [123, 1230].into();
        settings.query.dns.prefix.rate = None;
        settings.query.ntp.global.burst = 3;
        settings.query.dns_slip = 0;
        settings.query.dns_slip_rate = None;
        settings.query.prefix_v6 = 64;
        let mut later = settings.clone();
        later.orphans = Orphans::Pass;
        later.tcp.conn_limits.clear();
        later.tcp.conn_idle_timeout_ms = 1000;
        let sequence = Sequence {
            link: Link::Ip,
            settings,
            lists: vec![
                ListItem {
                    list: List::Deny,
                    prefix: Prefix::new(
                        Family::V4,
                        [198, 18, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        24,
                    ),
                    lasting_ms: Some(5),
                },
                ListItem {
                    list: List::Allow,
                    prefix: Prefix::new(
                        Family::V6,
                        "2001:db8::1"
                            .parse::<std::net::Ipv6Addr>()
                            .unwrap()
                            .octets(),
                        48,
                    ),
                    lasting_ms: None,
                },
            ],
            steps: vec![
                Step::Egress(vec![1, 2, 0xab]),
                Step::Wait { ms: 12 },
                Step::Set(Box::new(later)),
                Step::Ingress(vec![0xff; 20]),
            ],
        };
        let text = sequence.to_text();
        assert_eq!(Sequence::from_text(&text), Ok(sequence), "{text}");
    }

    #[test]
    fn bad_lines_are_named() {
        let err = Sequence::from_text("ingress 0a0\n").unwrap_err();
        assert!(err.starts_with("line 1: odd number"), "{err}");
        let err = Sequence::from_text("# ok\nset colour=blue\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("colour"), "{err}");
        let err = Sequence::from_text("link ppp\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("ppp"), "{err}");
    }
}
