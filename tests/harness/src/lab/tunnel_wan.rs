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
//! The phases and their checks are [`super::wan_checks`]'.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use filter_common::Encap;
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
    StackCounters, addr,
    wan_checks::{
        self, FloodPath, Floods, count_nft, nat_nft, spoofed_answers4, spoofed_answers6, syns,
    },
};

use crate::{
    ctl::FilterCtl,
    kernel,
    names::{self, TEST_PREFIX},
    netns::{self, Netns},
    packet::{PacketBuilder, ip_endpoints},
    process::{self, is_root},
    servers::real::{Servers, temp_dir, write},
    traffic::marker::usable_cpus,
};

/// The gateway's Ethernet uplink (a veth end), under the tunnel.
pub const WAN_IF: &str = "wan0";
/// The ISP's end of the uplink.
pub const ISP_IF: &str = "isp0";
const GW_LAN_IF: &str = "lan0";
const LAN_IF: &str = "eth0";
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
            wan_checks::skipped(&format!("{} WAN test", tunnel.name()), tunnel.module());
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
    nat_nft(tunnel_if) + &count_nft(&[WAN_IF, tunnel_if], None)
}

/// The floods are sent into the ISP's end of the tunnel, each batch
/// followed by a marker (so each call returns once all was judged).
impl FloodPath for TunnelWan {
    /// After XDP on `wan0` and on the tunnel device.
    fn stack(&self) -> StackCounters {
        wan_checks::stack(&self.gw)
    }

    /// `v4` to the gateway's tunnel address, `v6` to [`Tunnel::gw_addr6`].
    fn reflection_flood(&self, v4: u32, v6: u32) {
        self.send(spoofed_answers4(v4).chain(spoofed_answers6(v6, self.tunnel.gw_addr6())))
            .expect("the reflection flood");
    }

    /// Until the last SYN was judged.
    fn syn_flood(&self, count: u32) -> Duration {
        let start = Instant::now();
        self.send(syns(count)).expect("the SYN flood");
        start.elapsed()
    }

    /// None: the markers pace the rounds.
    fn round_pause(&self) -> Duration {
        Duration::ZERO
    }
}

impl TunnelWan {
    /// Attaches the filter to the uplink `wan0` (a veth: native XDP,
    /// Ethernet parse).
    pub fn attach_to_uplink(&self, ctl: &FilterCtl) {
        wan_checks::attach_native(ctl, &self.gw, WAN_IF);
    }

    /// Attaches the filter to the tunnel device, asserting that filter-ctl
    /// chose generic (skb) XDP and the IP parse, saying why (the device's
    /// `link_type`).
    pub fn attach_to_tunnel(&self, ctl: &FilterCtl, link_type: &str) {
        wan_checks::attach_skb(ctl, &self.gw, self.tunnel.gw_if(), link_type);
    }

    /// Without a filter: every spoofed answer and every SYN sent into the
    /// tunnel reaches the gateway's stack (asserted). Returns the counts.
    pub fn unfiltered(&self, floods: Floods) -> StackCounters {
        wan_checks::unfiltered(self, floods)
    }

    /// With the filter attached to `iface` (by [`Self::attach_to_uplink`]
    /// or [`Self::attach_to_tunnel`]): [`wan_checks::Filtered`], the
    /// lookups and NTP from the LAN client through NAT, then a lookup over
    /// IPv6 from the gateway. `v6_query_seen`: whether that lookup leaves
    /// through `iface` (its egress records it).
    pub fn filtered(
        &self,
        ctl: &FilterCtl,
        iface: &str,
        floods: Floods,
        unfiltered: &StackCounters,
        v6_query_seen: bool,
    ) {
        let label = format!("{} WAN, filter on {iface}", self.tunnel.name());
        wan_checks::Filtered {
            label: &label,
            ctl,
            gw: &self.gw,
            iface,
            client: &self.lan,
            floods,
            aaaa: Some(v6_query_seen),
            // On the uplink the filter unwraps the ip6tnl's IPv4; WireGuard
            // is UDP to it there, and on the tunnel device the IPv4 is bare.
            tunnelled: (matches!(self.tunnel, Tunnel::Ip6tnl) && iface != self.tunnel.gw_if())
                .then_some(Encap::Ipv4InIpv6),
        }
        .run(self, unfiltered);
    }
}
