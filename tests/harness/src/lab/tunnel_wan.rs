//! A gateway whose IPv4 WAN is a tunnel to its ISP, with real peers on both
//! ends: a DS-Lite/MAP-E-like ip6tnl (IPv4 inside IPv6, `mode ipip6`, with
//! the encapsulation limit option Linux adds) or a WireGuard link, over an
//! Ethernet uplink (a veth pair carrying IPv6).
//!
//! ```text
//!  isp ns                                 gw ns                                    lan ns
//!  isp0 2001:db8:0:1::1/64  ═══ veth ═══  wan0 2001:db8:0:1::2/64
//!  tunnel (aftr0 | wg0) 203.0.113.1 ───── tunnel (tnl0 | wg0) 203.0.113.2   lan0 ══ eth0 198.18.0.2/24
//!  (wg0 also 2001:db8:0:3::1/64)          (wg0 also 2001:db8:0:3::2/64)     198.18.0.1/24
//!  lo 198.51.100.1, 2001:db8:ff::1: dnsmasq, chronyd
//! ```
//!
//! The gateway routes IPv4 into its tunnel and masquerades the LAN there
//! (nftables); IPv6 goes natively over `wan0` (ip6tnl: the IPoE line) or
//! through `wg0`. The ISP has no route to the LAN: only NAT lets the client
//! out. Floods are sent by the ISP into its end of the tunnel (raw IP
//! sockets, routed there), so they reach the gateway encapsulated by the
//! kernel's own ip6tnl or WireGuard, as a real tunnel's would.
//!
//! What reached the gateway's stack is counted by nftables at the ingress of
//! `wan0` and of the tunnel device (netdev hooks: after XDP on each), as in
//! [`super::nft`]. Every batch of a flood is followed by a marker datagram
//! along the same path, from the same CPU, received on a socket of the
//! gateway: once it is there, every packet before it has been judged and
//! counted.
//!
//! On a kernel without the tunnel's module, [`TunnelWan::build`] says the test
//! is skipped, naming the module, and returns `None` (the VM legs load it).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sched,
    sys::socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, sendto,
        socket,
    },
    unistd::Pid,
};
use tempfile::TempDir;

use super::{
    StackCounters,
    addr::{self, cidrs},
};
use filter_common::Reason;

use crate::{
    ctl::{
        FilterCtl,
        report::{LinkLayer, XdpMode},
    },
    kernel,
    names::{self, TEST_PREFIX},
    netns::{self, Netns},
    packet::{PacketBuilder, dns_message, ip_endpoints, tcp_flags},
    process::{self, is_root, note},
    servers::real::{self as real, Servers, temp_dir, write},
    traffic::marker::usable_cpus,
};

/// The gateway's Ethernet uplink (a veth end), under the tunnel.
pub const WAN_IF: &str = "wan0";
/// The ISP's end of the uplink.
pub const ISP_IF: &str = "isp0";
const GW_LAN_IF: &str = "lan0";
const LAN_IF: &str = "eth0";
/// The SYN flooder: one address, outside every spoofed range.
pub const FLOODER4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
/// WireGuard's IPv6 inside the tunnel (the uplink's /64 carries the outer packets).
const WG_ISP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 3, 0, 0, 0, 1);
const WG_GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 3, 0, 0, 0, 2);
const WG_PORT: u16 = 51820;
/// The markers' ports: no reflection or service port, so the filter passes them.
const MARKER_SPORT: u16 = 40000;
const MARKER_PORT: u16 = 40001;
/// Packets sent before each marker: below WireGuard's queues (1024 packets),
/// which drop what does not fit.
const BATCH: usize = 250;

/// The kind of tunnel the gateway's IPv4 WAN is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// IPv4 inside IPv6 (DS-Lite, MAP-E): ip6tnl `mode ipip6`.
    Ip6tnl,
    /// A WireGuard peer over the uplink.
    WireGuard,
}

impl Tunnel {
    /// The kernel module that provides it.
    pub fn module(self) -> &'static str {
        match self {
            Tunnel::Ip6tnl => "ip6_tunnel",
            Tunnel::WireGuard => "wireguard",
        }
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Tunnel::Ip6tnl => "ip6tnl",
            Tunnel::WireGuard => "WireGuard",
        }
    }

    /// The gateway's tunnel device.
    pub fn gw_if(self) -> &'static str {
        match self {
            Tunnel::Ip6tnl => "tnl0",
            Tunnel::WireGuard => "wg0",
        }
    }

    fn isp_if(self) -> &'static str {
        match self {
            Tunnel::Ip6tnl => "aftr0",
            Tunnel::WireGuard => "wg0",
        }
    }

    /// The gateway's IPv6 address that floods over IPv6 go to: on the
    /// uplink for ip6tnl (native IPv6 beside the tunnel), inside WireGuard.
    pub fn gw_addr6(self) -> Ipv6Addr {
        match self {
            Tunnel::Ip6tnl => addr::GW_WAN6,
            Tunnel::WireGuard => WG_GW6,
        }
    }
}

/// The three namespaces, the ISP's servers, and the sockets that send the
/// floods and receive the markers. Drop order: servers, sockets, namespaces.
pub struct TunnelWan {
    pub tunnel: Tunnel,
    _servers: Servers,
    raw4: OwnedFd,
    raw6: OwnedFd,
    markers: UdpSocket,
    marker_seq: AtomicU32,
    pub gw: Netns,
    pub isp: Netns,
    pub lan: Netns,
    /// WireGuard's private keys.
    _keys: Option<TempDir>,
}

impl TunnelWan {
    /// Builds it, or says the test is skipped and returns `None` when this
    /// kernel has no `tunnel.module()`.
    pub fn build(tunnel: Tunnel) -> anyhow::Result<Option<Self>> {
        if !is_root() {
            bail!("the tunnel WAN needs root (namespaces, nftables, XDP)");
        }
        let stem = names::unique_name(&format!("{TEST_PREFIX}-{}", tunnel.gw_if()));
        let gw = Netns::create(&format!("{stem}-gw"))?;
        if !link_kind_known(&gw, tunnel)? {
            note(format_args!(
                "{} WAN test skipped: this kernel has no {} module (the VM legs load it)",
                tunnel.name(),
                tunnel.module()
            ));
            return Ok(None);
        }
        let isp = Netns::create(&format!("{stem}-isp"))?;
        let lan = Netns::create(&format!("{stem}-lan"))?;
        let keys = wire(tunnel, &gw, &isp, &lan).with_context(|| format!("building {stem}"))?;
        let servers = Servers::start(&isp)?;
        let raw = |family, ns: &Netns| {
            ns.enter(|| {
                socket(
                    family,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::Raw,
                )
                .context("a raw IP socket")
            })
        };
        let markers = gw.udp_bind(SocketAddr::new(addr::GW_WAN4.into(), MARKER_PORT))?;
        let timeout = if kernel::emulated() { 60 } else { 10 };
        markers.set_read_timeout(Some(Duration::from_secs(timeout)))?;
        let wan = Self {
            tunnel,
            _servers: servers,
            raw4: raw(AddressFamily::Inet, &isp)?,
            raw6: raw(AddressFamily::Inet6, &isp)?,
            markers,
            marker_seq: AtomicU32::new(0),
            gw,
            isp,
            lan,
            _keys: keys,
        };
        // The path works (and WireGuard has its handshake) before a test counts.
        wan.send(std::iter::empty())?;
        Ok(Some(wan))
    }

    /// What reached the gateway's stack so far (after XDP on `wan0` and on
    /// the tunnel device): spoofed4, spoofed6, real_dns, real_ntp, syn.
    pub fn stack(&self) -> anyhow::Result<StackCounters> {
        let text = self.gw.run([
            "nft",
            "list",
            "counters",
            "table",
            "netdev",
            "wan_link_count",
        ])?;
        StackCounters::parse(&text)
    }

    /// Sends spoofed DNS responses into the ISP's end of the tunnel: `v4`
    /// from the spoofed IPv4 ranges to the gateway's tunnel address, `v6`
    /// from the IPv6 one to [`Tunnel::gw_addr6`], each to another port.
    pub fn reflection_flood(&self, v4: u32, v6: u32) -> anyhow::Result<()> {
        let answer = dns_message(0x1234, true, 400);
        let answer = &answer;
        let flood4 = (0..v4).map(move |i| {
            let [_, _, hi, lo] = i.to_be_bytes();
            PacketBuilder::ipv4(Ipv4Addr::new(198, 19, hi, lo), addr::GW_WAN4)
                .udp(53, 1024 + (i % 60000) as u16)
                .payload(answer)
        });
        let [(net, _)] = addr::SPOOFED6;
        let flood6 = (0..v6).map(move |i| {
            PacketBuilder::ipv6(
                Ipv6Addr::from(u128::from(net) | u128::from(i + 1)),
                self.tunnel.gw_addr6(),
            )
            .udp(53, 1024 + (i % 60000) as u16)
            .payload(answer)
        });
        self.send(flood4.chain(flood6))
    }

    /// Sends `count` SYNs from [`FLOODER4`] to the gateway's port 80 into the
    /// tunnel; returns how long that took (until the last was judged).
    pub fn syn_flood(&self, count: u32) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.send((0..count).map(|i| {
            PacketBuilder::ipv4(FLOODER4, addr::GW_WAN4).tcp(
                20000 + (i % 40000) as u16,
                80,
                tcp_flags::SYN,
            )
        }))?;
        Ok(start.elapsed())
    }

    /// Sends `packets` from the ISP, routed by their destination, in batches
    /// each followed by a marker, from one CPU; returns once the last
    /// marker reached the gateway's socket.
    fn send(&self, packets: impl Iterator<Item = PacketBuilder> + Send) -> anyhow::Result<()> {
        let cpu = *usable_cpus()?.first().expect("usable_cpus is never empty");
        thread::scope(|scope| {
            scope
                .spawn(move || -> anyhow::Result<()> {
                    let mut set = sched::CpuSet::new();
                    set.set(cpu)?;
                    sched::sched_setaffinity(Pid::from_raw(0), &set)
                        .context("keeping the flood on one CPU")?;
                    let mut in_batch = 0;
                    for packet in packets {
                        self.send_one(&packet)?;
                        in_batch += 1;
                        if in_batch == BATCH {
                            self.marker()?;
                            in_batch = 0;
                        }
                    }
                    self.marker()
                })
                .join()
                .expect("the flood's thread panicked")
        })
    }

    fn send_one(&self, packet: &PacketBuilder) -> anyhow::Result<()> {
        let frame = packet.clone().build().ip_only();
        let Some((_, dst)) = ip_endpoints(packet) else {
            bail!("not an IP packet: {packet:?}");
        };
        let (fd, sent) = match dst {
            IpAddr::V4(dst) => (
                &self.raw4,
                sendto(
                    self.raw4.as_raw_fd(),
                    &frame,
                    &SockaddrIn::from(std::net::SocketAddrV4::new(dst, 0)),
                    MsgFlags::empty(),
                ),
            ),
            IpAddr::V6(dst) => (
                &self.raw6,
                sendto(
                    self.raw6.as_raw_fd(),
                    &frame,
                    &SockaddrIn6::from(std::net::SocketAddrV6::new(dst, 0, 0, 0)),
                    MsgFlags::empty(),
                ),
            ),
        };
        let sent = sent.with_context(|| format!("sending a packet on socket {fd:?}"))?;
        if sent != frame.len() {
            bail!("sent {sent} of {} bytes", frame.len());
        }
        Ok(())
    }

    /// Sends a marker datagram along the floods' IPv4 path and waits until
    /// the gateway's socket has it.
    fn marker(&self) -> anyhow::Result<()> {
        let seq = self.marker_seq.fetch_add(1, Ordering::Relaxed);
        self.send_one(
            &PacketBuilder::ipv4(addr::INET_WAN4, addr::GW_WAN4)
                .udp(MARKER_SPORT, MARKER_PORT)
                .payload(&seq.to_be_bytes()),
        )?;
        let mut buffer = [0u8; 16];
        loop {
            let len = self.markers.recv(&mut buffer).with_context(|| {
                format!(
                    "marker {seq} did not reach the gateway through {}: packets lost, or the filter dropped it",
                    self.tunnel.gw_if()
                )
            })?;
            if buffer[..len] == seq.to_be_bytes() {
                return Ok(());
            }
        }
    }
}

/// Whether the kernel knows the tunnel's link kind: creating one in `ns`
/// (deleted again) fails with "Unknown device type" when the module is
/// missing; any other failure is an error.
fn link_kind_known(ns: &Netns, tunnel: Tunnel) -> anyhow::Result<bool> {
    // An ip6tnl without endpoints would clash with the namespace's fallback
    // device (ip6tnl0): give it some (it never sends).
    let args: &[&str] = match tunnel {
        Tunnel::Ip6tnl => &[
            "ip6tnl",
            "local",
            "2001:db8:f::1",
            "remote",
            "2001:db8:f::2",
        ],
        Tunnel::WireGuard => &["wireguard"],
    };
    match ns.ip(["link", "add", "probe0", "type"].iter().chain(args)) {
        Ok(_) => {
            ns.ip(["link", "del", "probe0"])?;
            Ok(true)
        }
        Err(err) if format!("{err:#}").contains("Unknown device type") => Ok(false),
        Err(err) => Err(err),
    }
}

/// Links, addresses, routes, NAT and counters (see the module
/// documentation); returns WireGuard's key directory.
fn wire(tunnel: Tunnel, gw: &Netns, isp: &Netns, lan: &Netns) -> anyhow::Result<Option<TempDir>> {
    use addr::*;
    gw.sysctl("net.ipv4.ip_forward", "1")?;
    netns::veth(gw, WAN_IF, isp, ISP_IF)?;
    netns::veth(gw, GW_LAN_IF, lan, LAN_IF)?;
    for (ns, iface, local6) in [(gw, WAN_IF, GW_WAN6), (isp, ISP_IF, INET_WAN6)] {
        ns.add_addr(iface, &format!("{local6}/{WAN6_PREFIX}"))?;
        ns.up(iface)?;
    }
    isp.add_addr("lo", &format!("{SERVER4}/32"))?;
    isp.add_addr("lo", &format!("{SERVER6}/128"))?;
    let (gw_if, isp_if) = (tunnel.gw_if(), tunnel.isp_if());
    let keys = match tunnel {
        Tunnel::Ip6tnl => {
            for (ns, iface, dev, local, remote) in [
                (gw, gw_if, WAN_IF, GW_WAN6, INET_WAN6),
                (isp, isp_if, ISP_IF, INET_WAN6, GW_WAN6),
            ] {
                ns.ip([
                    "link",
                    "add",
                    iface,
                    "type",
                    "ip6tnl",
                    "mode",
                    "ipip6",
                    "local",
                    &local.to_string(),
                    "remote",
                    &remote.to_string(),
                    "dev",
                    dev,
                ])?;
            }
            gw.add_route("default", INET_WAN6.into())?;
            None
        }
        Tunnel::WireGuard => {
            let dir = temp_dir("wireguard")?;
            let (gw_key, gw_public) = wg_key(gw, dir.path(), "gw")?;
            let (isp_key, isp_public) = wg_key(isp, dir.path(), "isp")?;
            for (ns, iface, key, peer, allowed, endpoint, local6) in [
                (
                    gw,
                    gw_if,
                    &gw_key,
                    &isp_public,
                    "0.0.0.0/0,::/0".to_owned(),
                    INET_WAN6,
                    WG_GW6,
                ),
                (
                    isp,
                    isp_if,
                    &isp_key,
                    &gw_public,
                    format!("{GW_WAN4}/32,{WG_GW6}/128"),
                    GW_WAN6,
                    WG_ISP6,
                ),
            ] {
                ns.ip(["link", "add", iface, "type", "wireguard"])?;
                ns.run([
                    "wg",
                    "set",
                    iface,
                    "private-key",
                    key,
                    "listen-port",
                    &WG_PORT.to_string(),
                    "peer",
                    peer,
                    "allowed-ips",
                    &allowed,
                    "endpoint",
                    &format!("[{endpoint}]:{WG_PORT}"),
                ])?;
                ns.ip([
                    "-6",
                    "addr",
                    "add",
                    &format!("{local6}/64"),
                    "dev",
                    iface,
                    "nodad",
                ])?;
            }
            Some(dir)
        }
    };
    for (ns, iface, local4, peer4) in [
        (gw, gw_if, GW_WAN4, INET_WAN4),
        (isp, isp_if, INET_WAN4, GW_WAN4),
    ] {
        ns.ip([
            "addr",
            "add",
            &local4.to_string(),
            "peer",
            &peer4.to_string(),
            "dev",
            iface,
        ])?;
        ns.up(iface)?;
    }
    gw.ip(["route", "add", "default", "dev", gw_if])?;
    if tunnel == Tunnel::WireGuard {
        // Once wg0 is up (a route needs its device up).
        gw.ip(["-6", "route", "add", "default", "dev", gw_if])?;
    }
    gw.add_addr(GW_LAN_IF, &format!("{GW_LAN4}/{LAN4_PREFIX}"))?;
    lan.add_addr(LAN_IF, &format!("{LAN_CLIENT4}/{LAN4_PREFIX}"))?;
    gw.up(GW_LAN_IF)?;
    lan.up(LAN_IF)?;
    lan.add_route("default", GW_LAN4.into())?;
    gw.nft(&gateway_nft(gw_if))?;
    // The uplink carries the tunnel once neighbour discovery is done: wait
    // for the first ping through it (WireGuard's handshake too).
    process::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        Ok(gw
            .command("ping")
            .args(["-c", "1", "-W", "2", &INET_WAN4.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?
            .success())
    })
    .with_context(|| format!("no ping through {gw_if}"))?;
    Ok(keys)
}

/// A WireGuard private key in `dir` (its path) and its public key.
fn wg_key(ns: &Netns, dir: &Path, name: &str) -> anyhow::Result<(String, String)> {
    let private = ns.run(["wg", "genkey"])?;
    let path = write(dir, &format!("{name}.key"), &private)?;
    let public = process::run_with_input(ns.command("wg").arg("pubkey"), &private)?;
    Ok((path, public.trim().to_owned()))
}

/// NAT of the LAN into the tunnel, and the counters at the ingress of the
/// uplink and of the tunnel device (after XDP on each): a packet is counted
/// where its source is seen, the tunnel's outer packets by neither.
fn gateway_nft(tunnel_if: &str) -> String {
    let (spoofed4, spoofed6) = (cidrs(&addr::SPOOFED4), cidrs(&addr::SPOOFED6));
    let (server4, server6) = (addr::SERVER4, addr::SERVER6);
    let rules = format!(
        r#"ip saddr {{ {spoofed4} }} counter name "spoofed4"
        ip6 saddr {{ {spoofed6} }} counter name "spoofed6"
        ip saddr {server4} udp sport 53 counter name "real_dns"
        ip6 saddr {server6} udp sport 53 counter name "real_dns"
        ip saddr {server4} udp sport 123 counter name "real_ntp"
        ip saddr {FLOODER4} tcp flags & (syn | ack) == syn counter name "syn""#
    );
    format!(
        r#"
table ip wan_link_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{tunnel_if}" masquerade
    }}
}}
table netdev wan_link_count {{
    counter spoofed4 {{ }}
    counter spoofed6 {{ }}
    counter real_dns {{ }}
    counter real_ntp {{ }}
    counter syn {{ }}
    chain uplink {{
        type filter hook ingress device "{WAN_IF}" priority -500; policy accept;
        {rules}
    }}
    chain tunnel {{
        type filter hook ingress device "{tunnel_if}" priority -500; policy accept;
        {rules}
    }}
}}
"#
    )
}

/// Floods of the tunnel WAN tests, per family, and the SYN flood.
#[derive(Clone, Copy, Debug)]
pub struct Floods {
    pub spoofed4: u32,
    pub spoofed6: u32,
    pub syns: u32,
    pub lookups: usize,
}

/// The filter's SYN bucket for one source in these tests.
const SYN_RATE: u64 = 10;
const SYN_BURST: u64 = 20;

impl TunnelWan {
    /// Attaches the filter to the uplink `wan0` (a veth: native XDP,
    /// Ethernet parse) and sets the SYN bucket.
    pub fn attach_to_uplink(&self, ctl: &FilterCtl) {
        ctl.attach(&self.gw, WAN_IF, None)
            .expect("attaching to wan0");
        let status = &ctl.status(&self.gw, Some(WAN_IF)).expect("status")[0];
        assert_eq!(
            (status.xdp_mode, status.link_layer),
            (Some(XdpMode::Native), Some(LinkLayer::Ethernet))
        );
        self.set_syn_bucket(ctl, WAN_IF);
    }

    /// Attaches the filter to the tunnel device, asserting that filter-ctl
    /// chose generic (skb) XDP and the IP parse, saying why (the device's
    /// `link_type`), and sets the SYN bucket.
    pub fn attach_to_tunnel(&self, ctl: &FilterCtl, link_type: &str) {
        let iface = self.tunnel.gw_if();
        let out = ctl
            .output(&self.gw, ["attach", "--iface", iface])
            .expect("running filter-ctl attach");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(
            stdout.contains(&format!(
                "attached filter on {iface} in skb mode, ip link layer"
            )),
            "{stdout}"
        );
        assert!(
            stderr.contains(&format!(
                "skb mode: {iface} has no Ethernet header (link type {link_type})"
            )),
            "{stderr}"
        );
        let status = &ctl.status(&self.gw, Some(iface)).expect("status")[0];
        assert_eq!(
            (status.xdp_mode, status.link_layer),
            (Some(XdpMode::Skb), Some(LinkLayer::Ip))
        );
        let (mode, _) = kernel::xdp_on(&self.gw, iface)
            .expect("ip link")
            .expect("an XDP program on the tunnel device");
        assert_eq!(mode, "skb");
        self.set_syn_bucket(ctl, iface);
    }

    /// The SYN source bucket alone in front of a flood from one address.
    fn set_syn_bucket(&self, ctl: &FilterCtl, iface: &str) {
        ctl.run(
            &self.gw,
            [
                "set",
                "--iface",
                iface,
                &format!("syn_source_rate={SYN_RATE}/s"),
                &format!("syn_source_burst={SYN_BURST}"),
                "syn_prefix_rate=off",
                "syn_global_rate=off",
                "syn_halfopen_budget=off",
                "syn_halfopen_prefix_budget=off",
            ],
        )
        .expect("setting the SYN bucket");
    }

    /// Without a filter: every spoofed answer and every SYN sent into the
    /// tunnel reaches the gateway's stack (asserted). Returns the counts.
    pub fn unfiltered(&self, floods: Floods) -> StackCounters {
        let before = self.stack().expect("nft counters");
        self.reflection_flood(floods.spoofed4, floods.spoofed6)
            .expect("the reflection flood");
        self.syn_flood(floods.syns).expect("the SYN flood");
        let reached = self.stack().expect("nft counters").since(&before);
        assert_eq!(reached.packets("spoofed4"), u64::from(floods.spoofed4));
        assert_eq!(reached.packets("spoofed6"), u64::from(floods.spoofed6));
        assert_eq!(reached.packets("syn"), u64::from(floods.syns));
        reached
    }

    /// With the filter attached to `iface` (by [`Self::attach_to_uplink`] or
    /// [`Self::attach_to_tunnel`]): real lookups and an NTP exchange from the LAN
    /// client through NAT while the reflection flood runs, in rounds, then
    /// the SYN flood, and a lookup over IPv6 from the gateway. Asserts what
    /// reached the stack (nftables) and what the filter counted; prints
    /// both beside `unfiltered`. `v6_query_seen`: whether the gateway's
    /// IPv6 lookup leaves through `iface` (its egress records it).
    pub fn filtered(
        &self,
        ctl: &FilterCtl,
        iface: &str,
        floods: Floods,
        unfiltered: &StackCounters,
        v6_query_seen: bool,
    ) {
        let stats_before = ctl.stats(&self.gw, iface).expect("filter-ctl stats");
        let before = self.stack().expect("nft counters");
        let (lan, server4) = (&self.lan, IpAddr::from(addr::SERVER4));
        let started = Instant::now();
        let (answered, ntp, (sent4, sent6), took) = thread::scope(|scope| {
            let lookups = scope
                .spawn(|| real::lookups(lan, server4, floods.lookups, Duration::from_millis(50)));
            let ntp = scope.spawn(|| real::ntp_exchange(lan, server4));
            let (rounds4, rounds6) = (floods.spoofed4 / 10, floods.spoofed6 / 10);
            let mut sent = (0, 0);
            while sent.0 < floods.spoofed4 || !lookups.is_finished() || !ntp.is_finished() {
                self.reflection_flood(rounds4, rounds6)
                    .expect("the reflection flood");
                sent = (sent.0 + rounds4, sent.1 + rounds6);
            }
            let took = self.syn_flood(floods.syns).expect("the SYN flood");
            (
                lookups.join().unwrap().expect("dig"),
                ntp.join().unwrap(),
                sent,
                took,
            )
        });
        let aaaa = real::dig(&self.gw, IpAddr::V6(addr::SERVER6), true);
        let filtered = self.stack().expect("nft counters").since(&before);
        let stats = ctl
            .stats(&self.gw, iface)
            .expect("filter-ctl stats")
            .since(&stats_before);
        println!(
            "{} WAN, filter on {iface}: spoofed answers that reached the stack without the \
             filter {} (IPv4) + {} (IPv6) of as many sent, with it {} + {} of {sent4} + {sent6} \
             sent; SYNs from one source without the filter {} of {}, with it {} (bucket \
             {SYN_BURST} + {SYN_RATE}/s over {took:?}); real lookups from the LAN through NAT \
             answered {answered} of {} during the flood, stack real_dns {}, real_ntp {}; \
             filtered phase {:?}",
            self.tunnel.name(),
            unfiltered.packets("spoofed4"),
            unfiltered.packets("spoofed6"),
            filtered.packets("spoofed4"),
            filtered.packets("spoofed6"),
            unfiltered.packets("syn"),
            floods.syns,
            filtered.packets("syn"),
            floods.lookups,
            filtered.packets("real_dns"),
            filtered.packets("real_ntp"),
            started.elapsed(),
        );
        assert_eq!(filtered.packets("spoofed4"), 0, "{:?}", stats.nonzero());
        assert_eq!(filtered.packets("spoofed6"), 0, "{:?}", stats.nonzero());
        stats.assert_shown(
            Reason::DropUnsolicitedDns,
            u64::from(sent4 + sent6),
            "spoofed answers sent (none reached the stack)",
        );
        let passed = filtered.packets("syn");
        let most = SYN_BURST + SYN_RATE * (took.as_millis() as u64 + 999) / 1000;
        assert!(
            (SYN_BURST..=most).contains(&passed),
            "{passed} of {} SYNs reached the stack; the bucket allows {SYN_BURST} to {most}; \
             the filter's counters: {:?}",
            floods.syns,
            stats.nonzero()
        );
        stats.assert_shown(
            Reason::DropSynSource,
            u64::from(floods.syns) - passed,
            "SYNs sent less those that reached the stack",
        );
        assert_eq!(answered, floods.lookups, "real lookups answered");
        assert!(
            filtered.packets("real_dns") >= floods.lookups as u64,
            "{filtered:?}"
        );
        assert_eq!(
            aaaa.expect("a lookup over IPv6"),
            IpAddr::V6(addr::DNS_ANSWER6)
        );
        ntp.expect("an NTP exchange through the filter");
        assert!(filtered.packets("real_ntp") >= 1, "{filtered:?}");
        // Egress recorded every query that left through `iface`: the
        // lookups after NAT, at least one NTP request, the IPv6 lookup.
        let recorded = floods.lookups as u64 + 1 + u64::from(v6_query_seen);
        assert!(
            stats.packets(Reason::EgressQueryRecorded) >= recorded,
            "{:?}",
            stats.nonzero()
        );
    }
}
