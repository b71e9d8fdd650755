//! What is announced upstream: a FlowSpec rule (RFC 8955/8956) that
//! discards the attack's packets to one local address, or an RTBH route
//! (RFC 7999): that address's /32 or /128 with the BLACKHOLE community.
//! Built from the sampled drop events of an attack ([`build`]): the
//! destination is the attacked address, the other components are the ones
//! the operator asked for, each read from what the attack's packets had in
//! common. Pure logic, tested here.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::config::Component;
use crate::daemon::drops::Sample;

/// A route the daemon announces. Ordered so that sets of them list the
/// same way everywhere (status, logs, tests).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Route {
    /// A FlowSpec rule whose action is discard (traffic-rate 0).
    Flowspec(FlowRule),
    /// The address's host route with the BLACKHOLE community: the provider
    /// drops everything to it.
    Rtbh { address: IpAddr },
}

/// The match of a FlowSpec rule. The destination is always there (a
/// provider accepts rules only for its customer's addresses); every other
/// component is optional.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FlowRule {
    /// The attacked address (as a /32 or /128).
    pub destination: IpAddr,
    /// IPv4 protocol / IPv6 upper-layer protocol (next header).
    pub protocol: Option<u8>,
    /// Any of these source ports (sorted).
    pub source_ports: Vec<u16>,
    /// Fragments only (first or later: "is-fragment").
    pub fragments: bool,
    /// At least this IP length (IPv4: total length; IPv6: payload length,
    /// so that the rule holds whichever of the two a router compares).
    pub min_length: Option<u16>,
}

/// The BLACKHOLE community of RFC 7999.
pub const BLACKHOLE: Community = Community(65535, 666);
/// NO_EXPORT (RFC 1997): the provider keeps a blackhole route to itself.
pub const NO_EXPORT: Community = Community(65535, 65281);

/// A standard BGP community, `ASN:VALUE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Community(pub u16, pub u16);

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

impl std::str::FromStr for Community {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (asn, value) = text
            .split_once(':')
            .ok_or_else(|| "a community is ASN:VALUE, e.g. 64500:666".to_owned())?;
        let part = |part: &str| {
            part.trim()
                .parse::<u16>()
                .map_err(|_| format!("'{part}' is not a number 0..65535"))
        };
        Ok(Community(part(asn)?, part(value)?))
    }
}

impl Route {
    pub fn address(&self) -> IpAddr {
        match self {
            Route::Flowspec(rule) => rule.destination,
            Route::Rtbh { address } => *address,
        }
    }

    pub fn is_v6(&self) -> bool {
        self.address().is_ipv6()
    }

    /// `flowspec` or `rtbh`.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Flowspec(_) => "flowspec",
            Route::Rtbh { .. } => "rtbh",
        }
    }

    /// The address as a host prefix: `203.0.113.2/32`, `2001:db8::2/128`.
    pub fn prefix(&self) -> String {
        host_prefix(self.address())
    }
}

pub fn host_prefix(address: IpAddr) -> String {
    let len = if address.is_ipv4() { 32 } else { 128 };
    format!("{address}/{len}")
}

/// How operators read a route (logs, `upstream status`): the words of
/// gobgp's and BIRD's flow syntax.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Flowspec(rule) => {
                write!(f, "flowspec destination {}", host_prefix(rule.destination))?;
                if let Some(protocol) = rule.protocol {
                    write!(f, " protocol {}", protocol_name(protocol))?;
                }
                if !rule.source_ports.is_empty() {
                    let ports: Vec<String> = rule.source_ports.iter().map(u16::to_string).collect();
                    write!(f, " source-port {}", ports.join(","))?;
                }
                if rule.fragments {
                    f.write_str(" fragment is-fragment")?;
                }
                if let Some(length) = rule.min_length {
                    write!(f, " packet-length >={length}")?;
                }
                f.write_str(" then discard")
            }
            Route::Rtbh { address } => write!(
                f,
                "rtbh {} community {BLACKHOLE} (blackhole)",
                host_prefix(*address)
            ),
        }
    }
}

pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        other => other.to_string(),
    }
}

/// A destination gets a route of its own when it has at least this share
/// of an attack's sampled events.
const MIN_DESTINATION_SHARE: f64 = 0.1;
/// A source port is part of the rule when it has at least this share of
/// the destination's events...
const MIN_PORT_SHARE: f64 = 0.05;
/// ...and the ports named must cover this share of them, or the rule
/// would miss much of the attack: then it is not built.
const PORTS_COVER: f64 = 0.9;
/// Source ports named in one rule at most (providers cap a rule's terms).
const MAX_PORTS: usize = 8;

/// Why no route could be built for a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unbuildable {
    pub destination: IpAddr,
    pub why: String,
}

/// What a reason's action builds: FlowSpec with these components, or RTBH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Flowspec(Vec<Component>),
    Rtbh,
}

/// The routes an attack calls for: one per attacked address with at least
/// a tenth of the attack's `samples` (most events first), each with the
/// components `shape` asks for, read from that address's samples. An
/// address for which a component cannot be read (no source port makes up
/// enough of it) gets no rule: a rule without it would discard far more
/// than the attack.
pub fn build(shape: &Shape, samples: &[&Sample]) -> (Vec<Route>, Vec<Unbuildable>) {
    let mut by_destination: BTreeMap<IpAddr, Vec<&Sample>> = BTreeMap::new();
    for sample in samples {
        by_destination
            .entry(sample.destination)
            .or_default()
            .push(sample);
    }
    let mut ranked: Vec<(IpAddr, Vec<&Sample>)> = by_destination.into_iter().collect();
    ranked.sort_by_key(|(destination, samples)| (std::cmp::Reverse(samples.len()), *destination));
    let total = samples.len().max(1) as f64;
    let mut routes = Vec::new();
    let mut unbuildable = Vec::new();
    for (destination, samples) in ranked {
        if (samples.len() as f64) / total < MIN_DESTINATION_SHARE {
            break;
        }
        match shape {
            Shape::Rtbh => routes.push(Route::Rtbh {
                address: destination,
            }),
            Shape::Flowspec(components) => match flow_rule(destination, components, &samples) {
                Ok(rule) => routes.push(Route::Flowspec(rule)),
                Err(why) => unbuildable.push(Unbuildable { destination, why }),
            },
        }
    }
    (routes, unbuildable)
}

fn flow_rule(
    destination: IpAddr,
    components: &[Component],
    samples: &[&Sample],
) -> Result<FlowRule, String> {
    let mut rule = FlowRule {
        destination,
        protocol: None,
        source_ports: Vec::new(),
        fragments: false,
        min_length: None,
    };
    for component in components {
        match component {
            Component::Protocol => rule.protocol = most_common(samples.iter().map(|s| s.protocol)),
            Component::SourcePort => rule.source_ports = source_ports(samples)?,
            Component::Fragment => rule.fragments = true,
            Component::PacketLength => {
                rule.min_length = samples.iter().map(|sample| sample.ip_len).min();
            }
        }
    }
    Ok(rule)
}

fn most_common<T: Ord + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: BTreeMap<T, usize> = BTreeMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(value, count)| (*count, std::cmp::Reverse(*value)))
        .map(|(value, _)| value)
}

/// The source ports that make up the attack to one address.
fn source_ports(samples: &[&Sample]) -> Result<Vec<u16>, String> {
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for sample in samples {
        *counts.entry(sample.src_port).or_default() += 1;
    }
    let total = samples.len().max(1) as f64;
    let mut ports: Vec<(u16, usize)> = counts
        .into_iter()
        .filter(|(port, count)| *port != 0 && *count as f64 / total >= MIN_PORT_SHARE)
        .collect();
    ports.sort_by_key(|(port, count)| (std::cmp::Reverse(*count), *port));
    ports.truncate(MAX_PORTS);
    let covered: usize = ports.iter().map(|(_, count)| count).sum();
    if (covered as f64) / total < PORTS_COVER {
        return Err(format!(
            "its packets come from no few source ports (the {} most common make up {:.0}%)",
            ports.len(),
            covered as f64 / total * 100.0
        ));
    }
    let mut ports: Vec<u16> = ports.into_iter().map(|(port, _)| port).collect();
    ports.sort_unstable();
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use filter_common::Reason;

    use super::*;

    fn sample(destination: &str, src_port: u16, ip_len: u16) -> Sample {
        Sample {
            at: Instant::now(),
            reason: Reason::DropUnsolicitedDns,
            source: "198.51.100.7".parse().unwrap(),
            destination: destination.parse().unwrap(),
            len: u32::from(ip_len) + 14,
            ip_len,
            protocol: 17,
            src_port,
            dst_port: 40000,
            fragment: false,
            would_drop: false,
        }
    }

    fn dns() -> Shape {
        Shape::Flowspec(vec![
            Component::Protocol,
            Component::SourcePort,
            Component::PacketLength,
        ])
    }

    #[test]
    fn a_rule_per_attacked_address_from_what_its_packets_share() {
        let mut samples = vec![];
        for i in 0..80 {
            samples.push(sample("203.0.113.2", 53, 1228 + i % 3));
        }
        for _ in 0..20 {
            samples.push(sample("2001:db8::2", 53, 1208));
        }
        // Too few to be an address under attack.
        samples.push(sample("203.0.113.9", 53, 1228));
        let refs: Vec<&Sample> = samples.iter().collect();
        let (routes, unbuildable) = build(&dns(), &refs);
        assert!(unbuildable.is_empty());
        assert_eq!(routes.len(), 2);
        assert_eq!(
            routes[0].to_string(),
            "flowspec destination 203.0.113.2/32 protocol udp source-port 53 packet-length >=1228 then discard"
        );
        assert_eq!(
            routes[1].to_string(),
            "flowspec destination 2001:db8::2/128 protocol udp source-port 53 packet-length >=1208 then discard"
        );
        let (rtbh, _) = build(&Shape::Rtbh, &refs);
        assert_eq!(
            rtbh[0].to_string(),
            "rtbh 203.0.113.2/32 community 65535:666 (blackhole)"
        );
    }

    #[test]
    fn scattered_source_ports_build_no_rule() {
        let samples: Vec<Sample> = (0..100)
            .map(|i| sample("203.0.113.2", 1024 + i, 76))
            .collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        let (routes, unbuildable) = build(&dns(), &refs);
        assert!(routes.is_empty());
        assert_eq!(unbuildable.len(), 1);
        assert!(
            unbuildable[0].why.contains("source ports"),
            "{unbuildable:?}"
        );
        // Two reflector ports together make the rule.
        let samples: Vec<Sample> = (0..100)
            .map(|i| sample("203.0.113.2", if i % 3 == 0 { 123 } else { 53 }, 500))
            .collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        let (routes, _) = build(&dns(), &refs);
        let Route::Flowspec(rule) = &routes[0] else {
            panic!("{routes:?}")
        };
        assert_eq!(rule.source_ports, [53, 123]);
    }

    #[test]
    fn communities_parse_and_show() {
        assert_eq!("65535:666".parse::<Community>(), Ok(BLACKHOLE));
        assert!("65536:1".parse::<Community>().is_err());
        assert!("666".parse::<Community>().is_err());
        assert_eq!(NO_EXPORT.to_string(), "65535:65281");
    }
}
