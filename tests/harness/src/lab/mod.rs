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
//! - [`nft`] sets up NAT and the counters of what reaches the gateway's stack
//!   ([`Topology::stack_counters`]); [`addr`] names every address.
//! - The real servers and clients that run in it are in
//!   [`crate::servers::real`], the floods in [`crate::traffic`].
//!
//! The end-to-end tests, `cargo xtask lab` and the benchmark's parts 3 to 5
//! all build this topology.

pub mod addr;
pub mod measure;
pub mod nft;
pub mod tunnel_wan;
pub mod wan_checks;
pub mod wan_link;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Once,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

pub use self::nft::StackCounters;
use crate::{
    names::{self, LAB_PIN_PREFIX, LAB_PREFIX, TEST_PIN_PREFIX, TEST_PREFIX},
    netns::{self, Netns},
    process::{self, is_root, note},
    traffic::{
        marker::{self, Counter, Marker},
        sender::RawSender,
    },
};

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
        if !is_root() {
            bail!("the lab needs root (network namespaces, nftables, XDP): run it with sudo");
        }
        SWEEP.call_once(|| {
            names::sweep_stale(&[TEST_PREFIX, LAB_PREFIX, TEST_PIN_PREFIX, LAB_PIN_PREFIX])
        });
        let stem = names::unique_name(prefix);
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
        let bridge_mac = inet.mac(INET_BRIDGE)?.to_string();
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
        inet.add_neighbour(INET_BRIDGE, GW_WAN4.into(), wan_mac)?;
        inet.add_neighbour(INET_BRIDGE, GW_WAN6.into(), wan_mac)?;
        gw.add_neighbour(WAN_IF, INET_WAN4.into(), inet_mac)?;
        gw.add_neighbour(WAN_IF, INET_WAN6.into(), inet_mac)?;
        gw.add_neighbour(GW_LAN_IF, LAN_CLIENT4.into(), lan_mac)?;
        gw.add_neighbour(GW_LAN_IF, LAN_CLIENT6.into(), lan_mac)?;
        lan.add_neighbour(LAN_IF, GW_LAN4.into(), gw_lan_mac)?;
        lan.add_neighbour(LAN_IF, GW_LAN6.into(), gw_lan_mac)?;

        gw.add_route("default", INET_WAN4.into())?;
        gw.add_route("default", INET_WAN6.into())?;
        lan.add_route("default", GW_LAN4.into())?;
        lan.add_route("default", GW_LAN6.into())?;
        // IPv6 is routed to the LAN; IPv4 is not: the LAN is only reachable through NAT.
        inet.add_route(LAN6_NET, GW_WAN6.into())?;

        gw.nft(nft::GATEWAY_NFT)?;
        gw.nft(&nft::flood_counters_nft())?;

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
        process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
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
        note(format_args!(
            "lab {}: links still busy after 5 s",
            self.stem
        ));
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
            (IpAddr::from(addr::GW_WAN4), wan_mac),
            (addr::GW_WAN6.into(), wan_mac),
            (addr::INET_WAN4.into(), inet_mac),
            (addr::INET_WAN6.into(), inet_mac),
        ] {
            host.add_neighbour(LAN_IF, ip, mac)?;
        }
        for ns in [&self.gateway, &self.internet] {
            let iface = if ns.name() == self.gateway.name() {
                WAN_IF
            } else {
                INET_BRIDGE
            };
            ns.add_neighbour(iface, v4.into(), host_mac)?;
            ns.add_neighbour(iface, v6.into(), host_mac)?;
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

    /// The lab's marker (harness::traffic::marker) to `wan0`, counted (and
    /// dropped) first in the gateway's `lab_count` chain.
    pub fn marker(&self) -> anyhow::Result<Marker> {
        let frame = marker::frame(self.gateway.mac(WAN_IF)?);
        let counter = Counter {
            family: "netdev",
            table: "lab_count",
            name: "marker",
        };
        Ok(Marker::new(frame, counter))
    }

    /// Raw senders on every way into `wan0`: the internet's bridge (its
    /// own traffic) and each WAN host's link (what it sends, crafted or not).
    pub fn paths_to_wan0(&self) -> anyhow::Result<Vec<RawSender>> {
        let mut senders = vec![RawSender::open(&self.internet, INET_BRIDGE)?];
        for host in &self.wan_hosts {
            senders.push(RawSender::open(host, LAN_IF)?);
        }
        Ok(senders)
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
