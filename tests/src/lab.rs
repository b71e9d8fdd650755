//! The standard lab: an "internet", a gateway with `wan0` and NAT, and a LAN
//! client behind it, each in its own network namespace.
//!
//! ```text
//!  internet ns                      gateway ns                        lan ns
//!  br0 203.0.113.1/24 ─ isp0 ══ wan0 203.0.113.2/24   lan0 198.18.0.1/24 ══ eth0 198.18.0.2/24
//!      2001:db8:0:1::1/64            2001:db8:0:1::2/64     2001:db8:0:2::1/64    2001:db8:0:2::2/64
//!  lo  198.51.100.1, 2001:db8:ff::1  (a server "out there")
//!  br0 also takes extra WAN hosts (attackers, ...): Topology::add_wan_host
//! ```
//!
//! - The gateway forwards IPv4 and IPv6; IPv4 from the LAN is masqueraded on
//!   `wan0` (nftables), IPv6 is routed (the internet has a route to the LAN /64).
//! - The internet namespace has no route to the LAN's IPv4 addresses: only NAT
//!   lets LAN clients out. No namespace has a route to anywhere else, and none
//!   is connected to the host's network: nothing leaves the lab.
//! - Neighbours on every link are permanent entries, and DAD, router
//!   solicitations and autoconfiguration are off, so no ARP or neighbour
//!   discovery runs: a test's traffic is all there is on the links, and
//!   counters can be compared exactly. (MLD reports are still sent when
//!   addresses appear; [`Topology::build`] waits until they are over.)
//! - An nftables `netdev ingress` chain on `wan0` counts what reaches the
//!   gateway's stack after XDP ([`Topology::stack_counters`]), as an
//!   independent count to compare with the filter's: per family and
//!   protocol, from the floods' spoofed sources ([`addr::SPOOFED4`],
//!   [`addr::SPOOFED6`]), and the answers of the internet's servers.
//! - [`Servers`] starts real servers on the internet's server addresses
//!   (dnsmasq for DNS, chronyd for NTP); [`dig`] and [`ntp_exchange`] are the
//!   real clients, run in any namespace (the gateway, the LAN client).
//!
//! Like `netns.rs`, this file is also compiled into xtask with `#[path]`: it
//! reaches the harness only as `super::netns`.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Once,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

use super::netns::{self, Background, Netns, Proto};

/// Name prefix of the test namespaces; [`netns::sweep_stale`] knows it.
pub const TEST_PREFIX: &str = "wft";
/// Name prefix of the lab's namespaces.
pub const LAB_PREFIX: &str = "wflab";
/// Prefixes of pin roots under /sys/fs/bpf made by tests and by the lab.
pub const TEST_PIN_PREFIX: &str = "wan-filter-test";
pub const LAB_PIN_PREFIX: &str = "wan-filter-lab";

/// The gateway's WAN interface: the filter's home.
pub const WAN_IF: &str = "wan0";
/// The gateway's LAN interface.
pub const GW_LAN_IF: &str = "lan0";
/// The internet's end of the WAN link (a port of [`INET_BRIDGE`]).
pub const INET_IF: &str = "isp0";
/// The bridge that is the internet's side of the WAN segment.
pub const INET_BRIDGE: &str = "br0";
/// The bridge's MAC address, set so that it never changes (see `wire`).
pub const INET_BRIDGE_MAC: &str = "02:00:cb:00:71:01";
/// The LAN client's interface.
pub const LAN_IF: &str = "eth0";

/// Addresses of the lab, all from documentation and benchmarking ranges.
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The internet's router on the WAN segment.
    pub const INET_WAN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    /// The gateway's `wan0`: its public address.
    pub const GW_WAN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    pub const WAN4_PREFIX: u8 = 24;
    /// A server somewhere on the internet (on the internet namespace's `lo`).
    pub const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// The gateway on the LAN.
    pub const GW_LAN4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    /// The LAN client (private to the lab: only reaches out through NAT).
    pub const LAN_CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    pub const LAN4_PREFIX: u8 = 24;

    pub const INET_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
    pub const GW_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 2);
    pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
    pub const GW_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
    pub const LAN_CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 2);
    /// The LAN's routed IPv6 prefix.
    pub const LAN6_NET: &str = "2001:db8:0:2::/64";
    pub const WAN6_PREFIX: u8 = 64;
    pub const LAN6_PREFIX: u8 = 64;

    /// What the internet's DNS server ([`super::Servers`]) answers for
    /// [`super::DNS_NAME`] and every name under it.
    pub const DNS_ANSWER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
    pub const DNS_ANSWER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x80, 0, 0, 0, 0, 0x80);

    /// Spoofed source ranges of the floods: documentation and benchmarking
    /// addresses that no host of the lab uses, so that what reaches the
    /// gateway from them is counted apart ([`super::Topology::stack_counters`]:
    /// `spoofed4`, `spoofed6`).
    pub const SPOOFED4: [(Ipv4Addr, u8); 3] = [
        (Ipv4Addr::new(198, 19, 0, 0), 16),
        (Ipv4Addr::new(192, 0, 2, 0), 24),
        (Ipv4Addr::new(198, 51, 100, 128), 25),
    ];
    pub const SPOOFED6: [(Ipv6Addr, u8); 1] =
        [(Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 0), 48)];

    /// Extra WAN host number `n` (from 0): 203.0.113.(10 + n), 2001:db8:0:1::(10 + n).
    pub fn wan_host4(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, 10 + n)
    }
    pub fn wan_host6(n: u8) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 10 + u16::from(n))
    }
}

/// nftables in the gateway: NAT for the LAN, and counters of what reaches the
/// stack on `wan0` (a netdev ingress hook runs after XDP).
const GATEWAY_NFT: &str = r#"
table ip lab_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
    }
}
table netdev lab_count {
    counter ipv4 { }
    counter ipv6 { }
    counter arp_any { }
    counter other { }
    counter udp4 { }
    counter tcp4 { }
    counter icmp4 { }
    counter udp6 { }
    counter tcp6 { }
    counter icmp6 { }
    chain wan_ingress {
        type filter hook ingress device "wan0" priority -500; policy accept;
        meta protocol ip counter name "ipv4"
        meta protocol ip6 counter name "ipv6"
        meta protocol arp counter name "arp_any"
        meta protocol != { ip, ip6, arp } counter name "other"
        meta protocol ip meta l4proto udp counter name "udp4"
        meta protocol ip meta l4proto tcp counter name "tcp4"
        meta protocol ip meta l4proto icmp counter name "icmp4"
        meta protocol ip6 meta l4proto udp counter name "udp6"
        meta protocol ip6 meta l4proto tcp counter name "tcp6"
        meta protocol ip6 meta l4proto ipv6-icmp counter name "icmp6"
    }
}
"#;

/// More counters in the same chain: what reaches the stack from the floods'
/// spoofed sources (`spoofed4`, `spoofed6`), and the answers of the
/// internet's DNS and NTP servers (`real_dns`, `real_ntp`).
fn flood_counters_nft() -> String {
    fn cidrs<T: std::fmt::Display>(ranges: &[(T, u8)]) -> String {
        let cidrs: Vec<String> = ranges
            .iter()
            .map(|(net, len)| format!("{net}/{len}"))
            .collect();
        cidrs.join(", ")
    }
    let (spoofed4, spoofed6) = (cidrs(&addr::SPOOFED4), cidrs(&addr::SPOOFED6));
    let (server4, server6) = (addr::SERVER4, addr::SERVER6);
    format!(
        r#"
table netdev lab_count {{
    counter spoofed4 {{ }}
    counter spoofed6 {{ }}
    counter real_dns {{ }}
    counter real_ntp {{ }}
    chain wan_ingress {{
        ip saddr {{ {spoofed4} }} counter name "spoofed4"
        ip6 saddr {{ {spoofed6} }} counter name "spoofed6"
        ip saddr {server4} udp sport 53 counter name "real_dns"
        ip6 saddr {server6} udp sport 53 counter name "real_dns"
        ip saddr {server4} udp sport 123 counter name "real_ntp"
        ip6 saddr {server6} udp sport 123 counter name "real_ntp"
    }}
}}
"#
    )
}

/// The lab's three namespaces, deleted (with everything in them) on drop.
pub struct Topology {
    /// The unique stem of every name in this topology, e.g. `wft-1234-0`.
    pub stem: String,
    /// Servers and attackers; routes the LAN's IPv6 prefix to the gateway.
    pub internet: Netns,
    /// `wan0` towards the internet, `lan0` towards the client, forwarding, NAT.
    pub gateway: Netns,
    /// A client behind NAT.
    pub lan: Netns,
    /// Extra hosts on the WAN segment, from [`Topology::add_wan_host`].
    pub wan_hosts: Vec<Netns>,
}

static SWEEP: Once = Once::new();

impl Topology {
    /// Builds the lab with names `<prefix>-<pid>-<n>-{inet,gw,lan}`; use
    /// [`TEST_PREFIX`] in tests and [`LAB_PREFIX`] in the lab. The first call
    /// in a process also removes leftovers of killed runs.
    pub fn build(prefix: &str) -> anyhow::Result<Self> {
        if !netns::is_root() {
            bail!("the lab needs root (network namespaces, nftables, XDP): run it with sudo");
        }
        SWEEP.call_once(|| {
            netns::sweep_stale(&[TEST_PREFIX, LAB_PREFIX, TEST_PIN_PREFIX, LAB_PIN_PREFIX])
        });
        let stem = netns::unique_name(prefix);
        // Each Netns deletes itself if a later step fails.
        let topology = Self {
            internet: Netns::create(&format!("{stem}-inet"))?,
            gateway: Netns::create(&format!("{stem}-gw"))?,
            lan: Netns::create(&format!("{stem}-lan"))?,
            stem,
            wan_hosts: Vec::new(),
        };
        topology
            .wire()
            .with_context(|| format!("building the lab {}", topology.stem))?;
        Ok(topology)
    }

    fn wire(&self) -> anyhow::Result<()> {
        use addr::*;
        let (inet, gw, lan) = (&self.internet, &self.gateway, &self.lan);

        // Forwarding first, so interfaces come up as a router's.
        gw.sysctls([
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.conf.default.forwarding", "1"),
        ])?;

        netns::veth(gw, WAN_IF, inet, INET_IF)?;
        netns::veth(gw, GW_LAN_IF, lan, LAN_IF)?;
        // A bridge's MAC follows its ports' unless set: adding a port with a
        // lower MAC (a WAN host) would change it, and a MAC change flushes the
        // bridge's neighbours, permanent ones included, so the internet would
        // fall back to ARP and neighbour discovery for the gateway. Fix it.
        inet.ip([
            "link",
            "add",
            INET_BRIDGE,
            "address",
            INET_BRIDGE_MAC,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        inet.ip(["link", "set", INET_IF, "master", INET_BRIDGE])?;
        // Pin the bridge's MAC (after its first port: before, the bridge
        // would not come up): otherwise it follows the lowest MAC of its
        // ports, and a port added later (add_wan_host) can change it, which
        // flushes the internet's neighbour table, permanent entries included,
        // and ARP and neighbour discovery show up on wan0.
        let bridge_mac = inet.mac(INET_BRIDGE)?;
        inet.ip(["link", "set", "dev", INET_BRIDGE, "address", &bridge_mac])?;

        inet.add_addr(INET_BRIDGE, &format!("{INET_WAN4}/{WAN4_PREFIX}"))?;
        inet.add_addr(INET_BRIDGE, &format!("{INET_WAN6}/{WAN6_PREFIX}"))?;
        inet.add_addr("lo", &format!("{SERVER4}/32"))?;
        inet.add_addr("lo", &format!("{SERVER6}/128"))?;
        gw.add_addr(WAN_IF, &format!("{GW_WAN4}/{WAN4_PREFIX}"))?;
        gw.add_addr(WAN_IF, &format!("{GW_WAN6}/{WAN6_PREFIX}"))?;
        gw.add_addr(GW_LAN_IF, &format!("{GW_LAN4}/{LAN4_PREFIX}"))?;
        gw.add_addr(GW_LAN_IF, &format!("{GW_LAN6}/{LAN6_PREFIX}"))?;
        lan.add_addr(LAN_IF, &format!("{LAN_CLIENT4}/{LAN4_PREFIX}"))?;
        lan.add_addr(LAN_IF, &format!("{LAN_CLIENT6}/{LAN6_PREFIX}"))?;
        for (ns, iface) in [
            (inet, INET_IF),
            (inet, INET_BRIDGE),
            (gw, WAN_IF),
            (gw, GW_LAN_IF),
            (lan, LAN_IF),
        ] {
            ns.up(iface)?;
        }

        // Permanent neighbours: no ARP or neighbour discovery on either link.
        let (inet_mac, wan_mac) = (inet.mac(INET_BRIDGE)?, gw.mac(WAN_IF)?);
        let (gw_lan_mac, lan_mac) = (gw.mac(GW_LAN_IF)?, lan.mac(LAN_IF)?);
        inet.add_neighbour(INET_BRIDGE, GW_WAN4.into(), &wan_mac)?;
        inet.add_neighbour(INET_BRIDGE, GW_WAN6.into(), &wan_mac)?;
        gw.add_neighbour(WAN_IF, INET_WAN4.into(), &inet_mac)?;
        gw.add_neighbour(WAN_IF, INET_WAN6.into(), &inet_mac)?;
        gw.add_neighbour(GW_LAN_IF, LAN_CLIENT4.into(), &lan_mac)?;
        gw.add_neighbour(GW_LAN_IF, LAN_CLIENT6.into(), &lan_mac)?;
        lan.add_neighbour(LAN_IF, GW_LAN4.into(), &gw_lan_mac)?;
        lan.add_neighbour(LAN_IF, GW_LAN6.into(), &gw_lan_mac)?;

        gw.add_route("default", INET_WAN4.into())?;
        gw.add_route("default", INET_WAN6.into())?;
        lan.add_route("default", GW_LAN4.into())?;
        lan.add_route("default", GW_LAN6.into())?;
        // IPv6 is routed to the LAN; IPv4 is not: the LAN is only reachable through NAT.
        inet.add_route(LAN6_NET, GW_WAN6.into())?;

        netns::run_with_input(gw.command("nft").args(["-f", "-"]), GATEWAY_NFT)?;
        netns::run_with_input(gw.command("nft").args(["-f", "-"]), &flood_counters_nft())?;

        self.settle()
    }

    /// Waits until the links are up and quiet. The kernel brings IPv6 up on
    /// an interface (link-local address, multicast groups) only once it sees
    /// the carrier, which its link watcher reports up to a second later; then
    /// it sends MLD reports (made immediate by [`Netns::create`]). That is the
    /// only traffic it starts by itself here, so: wait until every interface is
    /// operationally up with no tentative address, then until no interface
    /// has sent anything for 300 ms.
    pub fn settle(&self) -> anyhow::Result<()> {
        let links = self.links();
        netns::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            for (ns, iface) in &links {
                if ns.operstate(iface)? != "up" {
                    return Ok(false);
                }
            }
            for ns in self.namespaces() {
                if !ns
                    .ip(["-6", "addr", "show", "tentative"])?
                    .trim()
                    .is_empty()
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .with_context(|| format!("the links of lab {} did not come up", self.stem))?;

        let quiet_for = Duration::from_millis(300);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.tx_packets()?;
        let mut since = Instant::now();
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            let now = self.tx_packets()?;
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet_for {
                return Ok(());
            }
        }
        // Not fatal: tests that count exactly will say what they saw.
        eprintln!("lab {}: links still busy after 5 s", self.stem);
        Ok(())
    }

    /// Every interface of the lab that carries traffic, with its namespace.
    fn links(&self) -> Vec<(&Netns, String)> {
        let mut links = vec![
            (&self.internet, INET_BRIDGE.to_owned()),
            (&self.internet, INET_IF.to_owned()),
            (&self.gateway, WAN_IF.to_owned()),
            (&self.gateway, GW_LAN_IF.to_owned()),
            (&self.lan, LAN_IF.to_owned()),
        ];
        for (n, host) in self.wan_hosts.iter().enumerate() {
            links.push((host, LAN_IF.to_owned()));
            links.push((&self.internet, format!("h{n}")));
        }
        links
    }

    fn namespaces(&self) -> impl Iterator<Item = &Netns> {
        [&self.internet, &self.gateway, &self.lan]
            .into_iter()
            .chain(&self.wan_hosts)
    }

    /// Packets sent so far by every interface of the lab.
    fn tx_packets(&self) -> anyhow::Result<Vec<u64>> {
        self.links()
            .into_iter()
            .map(|(ns, iface)| Ok(ns.link_packets(&iface)?.0))
            .collect()
    }

    /// Adds a host on the WAN segment (a namespace `<stem>-h<n>` whose `eth0`
    /// is bridged to the internet's `br0`): an attacker or another server that
    /// reaches `wan0` directly, without routing, so it can send with any
    /// source address. It gets [`addr::wan_host4`]`(n)` and
    /// [`addr::wan_host6`]`(n)`, the internet router as default route, and
    /// permanent neighbour entries with the gateway and the router both ways.
    pub fn add_wan_host(&mut self) -> anyhow::Result<&Netns> {
        let n = u8::try_from(self.wan_hosts.len()).ok().filter(|n| *n < 200);
        let Some(n) = n else {
            bail!("too many WAN hosts");
        };
        let host = Netns::create(&format!("{}-h{n}", self.stem))?;
        let port = format!("h{n}");
        netns::veth(&host, LAN_IF, &self.internet, &port)?;
        self.internet
            .ip(["link", "set", &port, "master", INET_BRIDGE])?;
        self.internet.up(&port)?;
        let (v4, v6) = (addr::wan_host4(n), addr::wan_host6(n));
        host.add_addr(LAN_IF, &format!("{v4}/{}", addr::WAN4_PREFIX))?;
        host.add_addr(LAN_IF, &format!("{v6}/{}", addr::WAN6_PREFIX))?;
        host.up(LAN_IF)?;
        let host_mac = host.mac(LAN_IF)?;
        let wan_mac = self.gateway.mac(WAN_IF)?;
        let inet_mac = self.internet.mac(INET_BRIDGE)?;
        for (ip, mac) in [
            (IpAddr::from(addr::GW_WAN4), &wan_mac),
            (addr::GW_WAN6.into(), &wan_mac),
            (addr::INET_WAN4.into(), &inet_mac),
            (addr::INET_WAN6.into(), &inet_mac),
        ] {
            host.add_neighbour(LAN_IF, ip, mac)?;
        }
        for ns in [&self.gateway, &self.internet] {
            let iface = if ns.name() == self.gateway.name() {
                WAN_IF
            } else {
                INET_BRIDGE
            };
            ns.add_neighbour(iface, v4.into(), &host_mac)?;
            ns.add_neighbour(iface, v6.into(), &host_mac)?;
        }
        host.add_route("default", addr::INET_WAN4.into())?;
        host.add_route("default", addr::INET_WAN6.into())?;
        self.wan_hosts.push(host);
        self.settle()?;
        Ok(self.wan_hosts.last().expect("just pushed"))
    }

    /// What reached the gateway's stack on `wan0` (after XDP), counted by nftables.
    pub fn stack_counters(&self) -> anyhow::Result<StackCounters> {
        let text = self
            .gateway
            .run(["nft", "list", "counters", "table", "netdev", "lab_count"])?;
        StackCounters::parse(&text)
    }

    /// Keeps the namespaces after drop, for inspection.
    pub fn keep(&self) {
        self.namespaces().for_each(Netns::keep);
    }

    /// A few lines describing the lab, with its namespace names.
    pub fn describe(&self) -> String {
        use addr::*;
        format!(
            "  {inet:<24} \"internet\": router {INET_WAN4} / {INET_WAN6} on {INET_BRIDGE}, \
             server {SERVER4} / {SERVER6}\n  \
             {gw:<24} gateway: {WAN_IF} {GW_WAN4} / {GW_WAN6} (the filter's interface), \
             {GW_LAN_IF} {GW_LAN4} / {GW_LAN6}, NAT for IPv4\n  \
             {lan:<24} LAN client: {LAN_IF} {LAN_CLIENT4} / {LAN_CLIENT6}\n",
            inet = self.internet.name(),
            gw = self.gateway.name(),
            lan = self.lan.name(),
        )
    }

    /// `addr:port` of the internet server, in either family.
    pub fn server(v6: bool, port: u16) -> SocketAddr {
        if v6 {
            (addr::SERVER6, port).into()
        } else {
            (addr::SERVER4, port).into()
        }
    }

    /// `addr:port` on the gateway's `wan0`, in either family.
    pub fn gateway_wan(v6: bool, port: u16) -> SocketAddr {
        if v6 {
            (addr::GW_WAN6, port).into()
        } else {
            (addr::GW_WAN4, port).into()
        }
    }
}

/// Counters of the gateway's `wan0` ingress chain: packets that reached the stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackCounters {
    /// (counter name, packets, bytes): ipv4, ipv6, arp_any, other, udp4, tcp4,
    /// icmp4, udp6, tcp6, icmp6; spoofed4, spoofed6 (from [`addr::SPOOFED4`],
    /// [`addr::SPOOFED6`]); real_dns, real_ntp (answers of [`Servers`]).
    pub counters: Vec<(String, u64, u64)>,
}

impl StackCounters {
    /// Packets counted under `name`; panics on an unknown name (a test bug).
    pub fn packets(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no nftables counter {name}"))
            .1
    }

    /// What was counted since `before`, per counter.
    pub fn since(&self, before: &StackCounters) -> StackCounters {
        let counters = self
            .counters
            .iter()
            .map(|(name, packets, bytes)| {
                let (p0, b0) = before
                    .counters
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map_or((0, 0), |(_, p, b)| (*p, *b));
                (name.clone(), packets - p0, bytes - b0)
            })
            .collect();
        StackCounters { counters }
    }

    /// Parses the output of `nft list counters table netdev lab_count`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut counters = Vec::new();
        let mut name = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("counter ") {
                name = rest.split_whitespace().next().map(str::to_owned);
            } else if let Some(rest) = line.strip_prefix("packets ") {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let (Some(name), [packets, "bytes", bytes, ..]) = (name.take(), fields.as_slice())
                else {
                    bail!("unexpected nft counter line {line:?}");
                };
                counters.push((name, packets.parse()?, bytes.parse()?));
            }
        }
        Ok(Self { counters })
    }
}

/// The name the lab's DNS server answers (with [`addr::DNS_ANSWER4`] and
/// [`addr::DNS_ANSWER6`]), and every name under it.
pub const DNS_NAME: &str = "lab.test";

/// A directory of our own under the system temp dir (config, pid and log
/// files of the servers and clients), removed with its contents on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(netns::unique_name(prefix));
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.path.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Real servers on the internet's server addresses ([`addr::SERVER4`],
/// [`addr::SERVER6`]), from Debian packages, started in the foreground as our
/// children and stopped on drop:
/// - dnsmasq, answering [`DNS_NAME`] itself (no upstream, no /etc/hosts), on port 53;
/// - chronyd, an NTP server on its local clock (stratum 8), on port 123, that
///   never touches the clock (`-x`) and has no command port.
///
/// They listen only on those two addresses, inside the internet namespace;
/// their config, pid and log files live in a temp dir of their own.
pub struct Servers {
    dns: Background,
    ntp: Background,
    dir: TempDir,
}

impl Servers {
    pub fn start(internet: &Netns) -> anyhow::Result<Self> {
        let dir = TempDir::new("wft-servers")?;
        let (server4, server6) = (addr::SERVER4, addr::SERVER6);
        let dns = internet.spawn(
            "dnsmasq",
            [
                "dnsmasq".to_owned(),
                "--keep-in-foreground".to_owned(),
                // No config file, no upstream servers, no /etc/hosts: it only
                // knows the name it is given here.
                "--conf-file=/dev/null".to_owned(),
                "--no-resolv".to_owned(),
                "--no-hosts".to_owned(),
                format!("--address=/{DNS_NAME}/{}", addr::DNS_ANSWER4),
                format!("--address=/{DNS_NAME}/{}", addr::DNS_ANSWER6),
                format!("--listen-address={server4}"),
                format!("--listen-address={server6}"),
                "--bind-interfaces".to_owned(),
                "--port=53".to_owned(),
                format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()),
                "--log-facility=-".to_owned(),
                "--log-queries".to_owned(),
                // Stay root: changing user would clear the parent-death
                // signal (netns::die_with_us) that ends it if we are killed.
                "--user=root".to_owned(),
            ],
        )?;
        let conf = dir.write(
            "chronyd.conf",
            &format!(
                "# NTP server of the lab: its own clock at stratum 8, for anyone.\n\
                 local stratum 8\n\
                 allow all\n\
                 bindaddress {server4}\n\
                 bindaddress {server6}\n\
                 cmdport 0\n\
                 pidfile {}\n",
                dir.path().join("chronyd.pid").display()
            ),
        )?;
        // -x: never touch the clock; -d: foreground, log to stderr; -u root:
        // as dnsmasq's --user=root above.
        let ntp = internet.spawn(
            "chronyd",
            [
                "chronyd",
                "-x",
                "-d",
                "-u",
                "root",
                "-f",
                &conf.to_string_lossy(),
            ],
        )?;
        let mut servers = Self { dns, ntp, dir };
        for (port, what) in [(53, "dnsmasq"), (123, "chronyd")] {
            internet
                .wait_listening(Proto::Udp, port, Duration::from_secs(5))
                .with_context(|| format!("{what} did not start"))
                .and_then(|()| servers.check_running())?;
        }
        Ok(servers)
    }

    /// Fails, with its log, if a server has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.dns.check_running()?;
        self.ntp.check_running()
    }

    /// The DNS server's log (with --log-queries: one line per query).
    pub fn dns_log(&self) -> String {
        self.dns.log()
    }

    /// The NTP server's log.
    pub fn ntp_log(&self) -> String {
        self.ntp.log()
    }

    /// The directory of their files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// One `dig @server DNS_NAME A|AAAA +tries=1 +time=2` from `ns`: one query,
/// no retry. Returns the address answered; an error if there was no answer,
/// or not the one [`Servers`] gives.
pub fn dig(ns: &Netns, server: IpAddr, aaaa: bool) -> anyhow::Result<IpAddr> {
    let (rtype, want): (&str, IpAddr) = if aaaa {
        ("AAAA", addr::DNS_ANSWER6.into())
    } else {
        ("A", addr::DNS_ANSWER4.into())
    };
    let out = netns::output(ns.command("dig").args([
        &format!("@{server}"),
        DNS_NAME,
        rtype,
        "+tries=1",
        "+time=2",
        "+short",
    ]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let answer: Option<IpAddr> = text.lines().next().and_then(|l| l.trim().parse().ok());
    match answer {
        Some(answer) if out.status.success() && answer == want => Ok(answer),
        _ => bail!(
            "dig @{server} {DNS_NAME} {rtype} in {} ({}): {}{}",
            ns.name(),
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// The result of an NTP exchange by [`ntp_exchange`].
#[derive(Clone, Debug)]
pub struct NtpSample {
    /// How far our clock is from the server's, in seconds (chronyd's "System
    /// clock wrong by ..."; the lab's namespaces share one clock, so about 0).
    pub offset: f64,
    /// chronyd's output.
    pub output: String,
}

/// Measures the clock against the NTP server at `server` from `ns`, with
/// `chronyd -Q` (measure only, never set the clock): it sends requests until
/// it has a sample, prints the offset and exits 0. An error if it got no
/// sample within 10 s.
pub fn ntp_exchange(ns: &Netns, server: IpAddr) -> anyhow::Result<NtpSample> {
    let dir = TempDir::new("wft-ntp")?;
    let conf = dir.write(
        "chrony.conf",
        &format!(
            "server {server} iburst maxsamples 1\n\
             cmdport 0\n\
             pidfile {}\n",
            dir.path().join("chronyd.pid").display()
        ),
    )?;
    let out = netns::output(ns.command("chronyd").args([
        "-Q",
        "-t",
        "10",
        "-u",
        "root",
        "-f",
        &conf.to_string_lossy(),
    ]))?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let offset = output.lines().find_map(|line| {
        let rest = line.split("System clock wrong by ").nth(1)?;
        rest.split_whitespace().next()?.parse::<f64>().ok()
    });
    match offset {
        Some(offset) if out.status.success() => Ok(NtpSample { offset, output }),
        _ => Err(anyhow!(
            "chronyd -Q against {server} in {} ({}): no sample:\n{}",
            ns.name(),
            out.status,
            output.trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_counters_are_parsed() {
        let text = "table netdev lab_count {\n\
                    \tcounter ipv4 {\n\t\tpackets 12 bytes 1200\n\t}\n\
                    \tcounter arp_any {\n\t\tpackets 0 bytes 0\n\t}\n}\n";
        let counters = StackCounters::parse(text).unwrap();
        assert_eq!(
            counters.counters,
            vec![("ipv4".to_owned(), 12, 1200), ("arp_any".to_owned(), 0, 0)]
        );
        assert_eq!(counters.packets("ipv4"), 12);
        assert!(StackCounters::parse("counter x {\n packets many bytes 1\n}").is_err());
    }

    #[test]
    fn addresses_are_in_documentation_and_benchmark_ranges() {
        use addr::*;
        for v4 in [INET_WAN4, GW_WAN4, SERVER4, wan_host4(0), wan_host4(199)] {
            let [a, b, c, _] = v4.octets();
            assert!(
                matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113)),
                "{v4}"
            );
        }
        for v4 in [GW_LAN4, LAN_CLIENT4] {
            let [a, b, ..] = v4.octets();
            assert!(a == 198 && (b == 18 || b == 19), "{v4}");
        }
        for v6 in [
            INET_WAN6,
            GW_WAN6,
            SERVER6,
            GW_LAN6,
            LAN_CLIENT6,
            wan_host6(3),
        ] {
            assert_eq!(v6.segments()[..2], [0x2001, 0xdb8], "{v6}");
        }
    }

    #[test]
    fn flood_counters_cover_the_spoofed_ranges() {
        let script = flood_counters_nft();
        assert!(script.contains("ip saddr { 198.19.0.0/16, 192.0.2.0/24, 198.51.100.128/25 }"));
        assert!(script.contains("ip6 saddr { 2001:db8:bad::/48 }"));
        assert!(script.contains("ip saddr 198.51.100.1 udp sport 53"));
        // No lab host lives in a spoofed range.
        use addr::*;
        let in4 = |ip: std::net::Ipv4Addr| {
            SPOOFED4
                .iter()
                .any(|(net, len)| u32::from(ip) >> (32 - len) == u32::from(*net) >> (32 - len))
        };
        for ip in [
            INET_WAN4,
            GW_WAN4,
            SERVER4,
            GW_LAN4,
            LAN_CLIENT4,
            DNS_ANSWER4,
            wan_host4(199),
        ] {
            assert!(!in4(ip), "{ip}");
        }
        for ip in [
            INET_WAN6,
            GW_WAN6,
            SERVER6,
            GW_LAN6,
            LAN_CLIENT6,
            DNS_ANSWER6,
            wan_host6(199),
        ] {
            assert!(
                !SPOOFED6.iter().any(|(net, len)| {
                    u128::from(ip) >> (128 - len) == u128::from(*net) >> (128 - len)
                }),
                "{ip}"
            );
        }
    }

    #[test]
    fn the_nft_script_names_the_wan_interface() {
        assert!(GATEWAY_NFT.contains(&format!("oifname \"{WAN_IF}\" masquerade")));
        assert!(GATEWAY_NFT.contains(&format!("device \"{WAN_IF}\"")));
    }
}
