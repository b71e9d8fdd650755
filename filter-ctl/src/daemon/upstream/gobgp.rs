//! gobgpd as the speaker, driven through its command line tool `gobgp`
//! (Debian's gobgpd package ships both), which talks to gobgpd's gRPC API.
//!
//! The CLI rather than the API: the API is gRPC with protobuf types that
//! would have to be generated from gobgp's .proto files (tonic, prost and
//! protoc at build time, for four calls), and no well-kept Rust client
//! exists; the CLI is gobgp's own client, stable across releases, and its
//! JSON output (`-j`) reads back what the RIB holds. A call costs a process
//! start (about 10 ms), and the daemon makes a handful per attack.
//!
//! Routes go into gobgpd's global RIB, from which it advertises them to the
//! peers that have the family configured (and to a peer whose session is
//! down once it is up). Each carries LOCAL_PREF [`Config::mark`], which is
//! never sent to an external peer: [`Gobgp::list`] finds the daemon's own
//! routes by it. Adding a route gobgpd has replaces it (same NLRI), and
//! deleting one it does not have is no error, so no call is harmful to
//! repeat.
//!
//! [`Config::mark`]: super::config::Config::mark

use std::{
    net::{IpAddr, SocketAddr},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use super::{
    Speaker,
    route::{BLACKHOLE, Community, FlowRule, NO_EXPORT, Route},
};

/// The families the daemon's routes are in.
const FAMILIES: [&str; 4] = ["ipv4-flowspec", "ipv6-flowspec", "ipv4", "ipv6"];
/// A call that takes longer is killed (gobgp itself gives up connecting
/// after a second).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The `gobgp` tool pointed at one gobgpd.
#[derive(Clone, Debug)]
pub struct Gobgp {
    api: SocketAddr,
    mark: u32,
    communities: Vec<Community>,
}

impl Gobgp {
    pub fn new(api: SocketAddr, mark: u32, communities: &[Community]) -> Self {
        Self {
            api,
            mark,
            communities: communities.to_vec(),
        }
    }

    /// The daemon's routes in gobgpd's global RIB (those with its mark).
    pub fn list(&self) -> anyhow::Result<Vec<Route>> {
        let mut routes = Vec::new();
        for family in FAMILIES {
            let text = self.run(&["-j", "global", "rib", "-a", family])?;
            let rib: Value = serde_json::from_str(&text)
                .with_context(|| format!("reading `gobgp global rib -a {family}`: {text}"))?;
            routes.extend(routes_in(&rib, self.mark));
        }
        routes.sort();
        Ok(routes)
    }

    fn announce(&self, route: &Route) -> anyhow::Result<()> {
        let mut args = self.target(route, "add");
        args.extend(["local-pref".into(), self.mark.to_string()]);
        let mut communities = self.communities.clone();
        if matches!(route, Route::Rtbh { .. }) {
            communities.extend([BLACKHOLE, NO_EXPORT]);
        }
        if !communities.is_empty() {
            let list: Vec<String> = communities.iter().map(Community::to_string).collect();
            args.extend(["community".into(), list.join(",")]);
        }
        self.run_strings(&args).map(drop)
    }

    fn withdraw(&self, route: &Route) -> anyhow::Result<()> {
        let args = self.target(route, "del");
        self.run_strings(&args).map(drop)
    }

    /// `global rib -a FAMILY VERB <the route>`.
    fn target(&self, route: &Route, verb: &str) -> Vec<String> {
        let family = match (route, route.is_v6()) {
            (Route::Flowspec(_), false) => "ipv4-flowspec",
            (Route::Flowspec(_), true) => "ipv6-flowspec",
            (Route::Rtbh { .. }, false) => "ipv4",
            (Route::Rtbh { .. }, true) => "ipv6",
        };
        let mut args: Vec<String> = ["global", "rib", "-a", family, verb]
            .map(String::from)
            .to_vec();
        match route {
            Route::Rtbh { .. } => args.push(route.prefix()),
            Route::Flowspec(rule) => {
                args.extend(flow_match(rule));
                if verb == "add" {
                    args.extend(["then".into(), "discard".into()]);
                }
            }
        }
        args
    }

    fn run_strings(&self, args: &[String]) -> anyhow::Result<String> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }

    /// `gobgp -u HOST -p PORT ARGS...`; its stdout.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let host = self.api.ip().to_string();
        let port = self.api.port().to_string();
        let mut command = Command::new("gobgp");
        command
            .args(["-u", &host, "-p", &port])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("gobgp {}", args.join(" "));
        let mut child = command.spawn().with_context(|| {
            format!("starting `{shown}` (is gobgpd's package, with its gobgp tool, installed?)")
        })?;
        let started = Instant::now();
        while child.try_wait()?.is_none() {
            if started.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`{shown}` took longer than {TIMEOUT:?}: killed");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let output = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            let said = format!(
                "{}{}",
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return Err(anyhow!(
                "`{shown}` failed ({}): {}",
                output.status,
                said.lines().next().unwrap_or_default()
            ))
            .context(format!("gobgpd at {}", self.api));
        }
        Ok(stdout)
    }
}

impl Speaker for Gobgp {
    fn name(&self) -> String {
        format!("gobgpd {}", self.api)
    }

    fn list(&mut self) -> anyhow::Result<Vec<Route>> {
        Gobgp::list(self)
    }

    fn announce(&mut self, route: &Route) -> anyhow::Result<()> {
        Gobgp::announce(self, route)
    }

    fn withdraw(&mut self, route: &Route) -> anyhow::Result<()> {
        Gobgp::withdraw(self, route)
    }
}

/// The `match ...` words of a rule, as `gobgp` takes them.
fn flow_match(rule: &FlowRule) -> Vec<String> {
    let mut words = vec![
        "match".into(),
        "destination".into(),
        super::route::host_prefix(rule.destination),
    ];
    if let Some(protocol) = rule.protocol {
        words.extend(["protocol".into(), format!("=={protocol}")]);
    }
    if !rule.source_ports.is_empty() {
        words.push("source-port".into());
        words.extend(rule.source_ports.iter().map(|port| format!("=={port}")));
    }
    if rule.fragments {
        words.extend(["fragment".into(), "is-fragment".into()]);
    }
    if let Some(length) = rule.min_length {
        words.extend(["packet-length".into(), format!(">={length}")]);
    }
    words
}

/// The routes with LOCAL_PREF `mark` in one family's RIB as `gobgp -j`
/// prints it: `{"<nlri>": [path, ...], ...}`.
fn routes_in(rib: &Value, mark: u32) -> Vec<Route> {
    let Some(entries) = rib.as_object() else {
        return Vec::new();
    };
    entries
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter(|path| local_pref(path) == Some(mark))
        .filter_map(|path| match route_of(path) {
            Some(route) => Some(route),
            None => {
                log::warn!(
                    "upstream: a route at gobgpd carries the daemon's mark (LOCAL_PREF {mark}) but \
                     is not one it makes; left alone: {path}"
                );
                None
            }
        })
        .collect()
}

fn attrs(path: &Value) -> impl Iterator<Item = &Value> {
    path["attrs"].as_array().into_iter().flatten()
}

/// Path attribute 5, LOCAL_PREF.
fn local_pref(path: &Value) -> Option<u32> {
    attrs(path)
        .find(|attr| attr["type"] == 5)
        .and_then(|attr| attr["value"].as_u64())
        .and_then(|value| u32::try_from(value).ok())
}

/// A host address from `"203.0.113.2/32"`.
fn host(prefix: &Value) -> Option<IpAddr> {
    let (address, len) = prefix.as_str()?.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    let host_len = if address.is_ipv4() { "32" } else { "128" };
    (len == host_len).then_some(address)
}

/// The route a path is, if the daemon could have made it.
fn route_of(path: &Value) -> Option<Route> {
    let nlri = &path["nlri"];
    if let Some(address) = nlri.get("prefix").and_then(host) {
        let communities = attrs(path)
            .find(|attr| attr["type"] == 8)
            .and_then(|attr| attr["communities"].as_array())?;
        let blackhole = u64::from(BLACKHOLE.0) << 16 | u64::from(BLACKHOLE.1);
        return communities
            .iter()
            .any(|community| community.as_u64() == Some(blackhole))
            .then_some(Route::Rtbh { address });
    }
    let mut rule: Option<FlowRule> = None;
    let mut components = Vec::new();
    for component in nlri["value"].as_array()? {
        let items = || component["value"].as_array().into_iter().flatten();
        // One item, compared with "==" (or ">=" for the length).
        let single = |op: u64| -> Option<u64> {
            let mut items = items();
            let item = items.next()?;
            (items.next().is_none() && item["op"].as_u64()? & 0x07 == op)
                .then(|| item["value"].as_u64())?
        };
        match component["type"].as_u64()? {
            1 => {
                rule = Some(FlowRule {
                    destination: host(&component["value"]["prefix"])?,
                    protocol: None,
                    source_ports: Vec::new(),
                    fragments: false,
                    min_length: None,
                });
            }
            3 => components.push(Part::Protocol(u8::try_from(single(1)?).ok()?)),
            6 => {
                let mut ports = Vec::new();
                for item in items() {
                    // Each "==": OR'ed, not AND'ed.
                    let op = item["op"].as_u64()?;
                    if op & 0x07 != 1 || op & 0x40 != 0 {
                        return None;
                    }
                    ports.push(u16::try_from(item["value"].as_u64()?).ok()?);
                }
                components.push(Part::Ports(ports));
            }
            10 => components.push(Part::Length(u16::try_from(single(3)?).ok()?)),
            // "is-fragment", matched (any of the bits), not negated.
            12 if single(0) == Some(2) => components.push(Part::Fragments),
            _ => return None,
        }
    }
    let mut rule = rule?;
    for part in components {
        match part {
            Part::Protocol(protocol) => rule.protocol = Some(protocol),
            Part::Ports(mut ports) => {
                ports.sort_unstable();
                rule.source_ports = ports;
            }
            Part::Length(length) => rule.min_length = Some(length),
            Part::Fragments => rule.fragments = true,
        }
    }
    Some(Route::Flowspec(rule))
}

enum Part {
    Protocol(u8),
    Ports(Vec<u16>),
    Length(u16),
    Fragments,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gobgp -j global rib -a ipv6-flowspec` and `-a ipv4` of gobgp 3.10,
    /// after the daemon's `announce` and one route of someone else.
    const FLOW6: &str = r#"{"[destination: 2001:db8::1/128/0][protocol: ==udp][source-port: ==53 ==5353][packet-length: >=1200]":[{"nlri":{"value":[{"type":1,"value":{"prefix":"2001:db8::1/128"},"offset":0},{"type":3,"value":[{"op":129,"value":17}]},{"type":6,"value":[{"op":1,"value":53},{"op":145,"value":5353}]},{"type":10,"value":[{"op":147,"value":1200}]}]},"age":1796553779,"best":true,"attrs":[{"type":1,"value":2},{"type":5,"value":4242},{"type":16,"value":[{"type":128,"subtype":6,"as":0,"rate":0}]},{"type":14,"nexthop":"::","afi":2,"safi":133,"value":[]}],"stale":false}],"[destination: 2001:db8::1/128/0][protocol: ==udp][fragment: is-fragment]":[{"nlri":{"value":[{"type":1,"value":{"prefix":"2001:db8::1/128"},"offset":0},{"type":3,"value":[{"op":129,"value":17}]},{"type":12,"value":[{"op":128,"value":2}]}]},"age":1796553779,"best":true,"attrs":[{"type":1,"value":2},{"type":5,"value":4242},{"type":16,"value":[{"type":128,"subtype":6,"as":0,"rate":0}]}],"stale":false}],"[destination: 2001:db8::9/128/0]":[{"nlri":{"value":[{"type":1,"value":{"prefix":"2001:db8::9/128"},"offset":0}]},"age":1796553779,"best":true,"attrs":[{"type":1,"value":2},{"type":16,"value":[{"type":128,"subtype":6,"as":0,"rate":0}]}],"stale":false}]}"#;
    const UNICAST4: &str = r#"{"192.0.2.1/32":[{"nlri":{"prefix":"192.0.2.1/32"},"age":1796553709,"best":true,"attrs":[{"type":1,"value":2},{"type":5,"value":4242},{"type":8,"communities":[4294902426,4294967041]},{"type":3,"nexthop":"0.0.0.0"}],"stale":false}],"192.0.2.0/24":[{"nlri":{"prefix":"192.0.2.0/24"},"age":1796553709,"best":true,"attrs":[{"type":1,"value":2},{"type":3,"nexthop":"0.0.0.0"}],"stale":false}]}"#;

    #[test]
    fn the_daemons_routes_read_back_as_they_were_made() {
        let mut routes = routes_in(&serde_json::from_str(FLOW6).unwrap(), 4242);
        routes.sort();
        let destination: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            routes,
            [
                Route::Flowspec(FlowRule {
                    destination,
                    protocol: Some(17),
                    source_ports: vec![],
                    fragments: true,
                    min_length: None,
                }),
                Route::Flowspec(FlowRule {
                    destination,
                    protocol: Some(17),
                    source_ports: vec![53, 5353],
                    fragments: false,
                    min_length: Some(1200),
                }),
            ]
        );
        // Unmarked routes are someone else's.
        assert!(routes_in(&serde_json::from_str(FLOW6).unwrap(), 1).is_empty());
        let rtbh = routes_in(&serde_json::from_str(UNICAST4).unwrap(), 4242);
        assert_eq!(
            rtbh,
            [Route::Rtbh {
                address: "192.0.2.1".parse().unwrap()
            }]
        );
        assert!(routes_in(&serde_json::from_str("{}").unwrap(), 4242).is_empty());
    }

    #[test]
    fn routes_become_gobgp_words() {
        let gobgp = Gobgp::new(
            "127.0.0.1:50051".parse().unwrap(),
            4242,
            &[Community(64500, 1)],
        );
        let rule = Route::Flowspec(FlowRule {
            destination: "203.0.113.2".parse().unwrap(),
            protocol: Some(17),
            source_ports: vec![53],
            fragments: false,
            min_length: Some(1228),
        });
        assert_eq!(
            gobgp.target(&rule, "add").join(" "),
            "global rib -a ipv4-flowspec add match destination 203.0.113.2/32 protocol ==17 \
             source-port ==53 packet-length >=1228 then discard"
        );
        assert_eq!(
            gobgp.target(&rule, "del").join(" "),
            "global rib -a ipv4-flowspec del match destination 203.0.113.2/32 protocol ==17 \
             source-port ==53 packet-length >=1228"
        );
        let rtbh = Route::Rtbh {
            address: "2001:db8::2".parse().unwrap(),
        };
        assert_eq!(
            gobgp.target(&rtbh, "del").join(" "),
            "global rib -a ipv6 del 2001:db8::2/128"
        );
    }
}
