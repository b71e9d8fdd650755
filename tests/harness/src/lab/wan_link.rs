//! The gateway on a WAN link of one type (a PPPoE session, a bond), checked
//! as every link type's end-to-end test checks it (tests/tests/pppoe_e2e.rs,
//! bond_e2e.rs): a reflection flood of DNS responses from spoofed sources
//! ([`addr::SPOOFED4`]) dropped, a SYN flood from one source cut to its
//! bucket, and real lookups and an NTP exchange from a LAN client behind
//! NAT answered, while the floods run.
//!
//! What reached the gateway's stack is counted by nftables at the ingress
//! of the device the stack receives the link's packets on (ppp0 for PPPoE,
//! the bond itself: a netdev ingress chain runs after XDP, and on ppp0
//! after the PPPoE driver took the session header off), independently of
//! the filter: `spoofed4`, `real_dns`, `real_ntp`, `syn`. A marker (a UDP
//! packet from the ISP's router that the filter passes, counted and dropped
//! first) shows that everything sent before it was judged.
//!
//! The ISP's side sends the floods itself, on raw sockets on its end of
//! the Ethernet link ([`IspSide`]), framed as the link frames them. The
//! phases and their checks are [`super::wan_checks`]'.

use std::time::{Duration, Instant};

use super::{
    GW_LAN_IF, LAN_IF, StackCounters, addr,
    wan_checks::{
        self, COUNT_TABLE, FloodPath, Floods, count_nft, nat_nft, spoofed_answers4, syns,
    },
};
use crate::{
    ctl::FilterCtl,
    netns::{self, Netns},
    packet::{Frame, PacketBuilder},
    traffic::{
        marker::{Counter, Marker},
        sender::RawSender,
    },
};

/// The marker's ports (source and destination): UDP nobody listens on.
pub const MARKER_PORT: u16 = 40001;

/// Spoofed answers, SYNs, lookups (no IPv6 on these links).
pub const FLOODS: Floods = Floods {
    spoofed4: 1000,
    spoofed6: 0,
    syns: 400,
    lookups: 10,
};

/// A LAN client behind the gateway `gw`: `lan0` — `eth0` in a new
/// namespace `name`, the lab's LAN addresses, forwarding on, the LAN's
/// IPv4 masqueraded on `wan_dev`, and the stack's counters on `wan_dev`
/// (which must exist).
pub fn lan_behind(gw: &Netns, wan_dev: &str, name: &str) -> anyhow::Result<Netns> {
    let lan = Netns::create(name)?;
    netns::veth(gw, GW_LAN_IF, &lan, LAN_IF)?;
    gw.sysctl("net.ipv4.ip_forward", "1")?;
    gw.add_addr(
        GW_LAN_IF,
        &format!("{}/{}", addr::GW_LAN4, addr::LAN4_PREFIX),
    )?;
    lan.add_addr(
        LAN_IF,
        &format!("{}/{}", addr::LAN_CLIENT4, addr::LAN4_PREFIX),
    )?;
    gw.up(GW_LAN_IF)?;
    lan.up(LAN_IF)?;
    lan.add_route("default", addr::GW_LAN4.into())?;
    gw.nft(&gateway_nft(wan_dev))?;
    Ok(lan)
}

/// NAT on `wan_dev`, and the counters of what reaches the stack there
/// (the marker first: counted and dropped).
fn gateway_nft(wan_dev: &str) -> String {
    let marker = format!(
        r#"ip saddr {} udp dport {MARKER_PORT} counter name "marker" drop"#,
        addr::INET_WAN4
    );
    nat_nft(wan_dev) + &count_nft(&[wan_dev], Some(("marker", &marker)))
}

/// How a packet goes on the wire of the link, from the ISP to the gateway.
pub type Framing = Box<dyn Fn(PacketBuilder) -> Frame + Send + Sync>;

/// The ISP's end of the link: raw senders on its Ethernet devices (a
/// packet goes out on each in turn), the link's framing, and the marker.
pub struct IspSide {
    senders: Vec<RawSender>,
    framing: Framing,
    marker: Marker,
}

impl IspSide {
    /// Senders on `ifaces` of `isp`; each frame leaves with the source
    /// address of its sender's interface.
    pub fn new(isp: &Netns, ifaces: &[&str], framing: Framing) -> anyhow::Result<Self> {
        let senders = ifaces
            .iter()
            .map(|iface| RawSender::open(isp, iface))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let marker = PacketBuilder::ipv4(addr::INET_WAN4, addr::GW_WAN4)
            .udp(MARKER_PORT, MARKER_PORT)
            .payload(b"marker");
        let counter = Counter {
            family: "netdev",
            table: COUNT_TABLE,
            name: "marker",
        };
        let marker = Marker::new(framing(marker).bytes, counter);
        Ok(Self {
            senders,
            framing,
            marker,
        })
    }

    /// Sends `packets` to the gateway.
    pub fn deliver(&self, packets: impl IntoIterator<Item = PacketBuilder>) {
        for (packet, sender) in packets.into_iter().zip(self.senders.iter().cycle()) {
            let mut frame = (self.framing)(packet).bytes;
            frame[6..12].copy_from_slice(&sender.mac().0);
            sender.send(&frame).expect("sending to the gateway");
        }
    }

    /// Returns once everything sent so far reached the stack of `gw` or was
    /// dropped on the way.
    pub fn settle(&self, gw: &Netns) {
        let senders: Vec<&RawSender> = self.senders.iter().collect();
        self.marker.pass(&senders, gw).expect("the marker");
    }
}

/// One link type's gateway under the floods: `gw` behind `isp`, the
/// filter (once attached) on `filter_if`, the LAN client `lan`.
pub struct Phases<'a> {
    pub label: &'a str,
    pub gw: &'a Netns,
    pub lan: &'a Netns,
    pub isp: &'a IspSide,
    pub ctl: &'a FilterCtl,
    pub filter_if: &'a str,
}

impl FloodPath for Phases<'_> {
    fn stack(&self) -> StackCounters {
        wan_checks::stack(self.gw)
    }

    /// DNS responses from spoofed IPv4 sources to the gateway's public
    /// address, each to another port (`v6` must be 0: no IPv6 here).
    fn reflection_flood(&self, v4: u32, v6: u32) {
        assert_eq!(v6, 0, "no IPv6 on {}", self.label);
        self.isp.deliver(spoofed_answers4(v4));
    }

    fn syn_flood(&self, count: u32) -> Duration {
        let start = Instant::now();
        self.isp.deliver(syns(count));
        start.elapsed()
    }

    fn settle(&self) {
        self.isp.settle(self.gw);
    }
}

impl Phases<'_> {
    /// Without the filter: every spoofed answer and every SYN of [`FLOODS`]
    /// reaches the stack (asserted). Returns what the stack counted.
    pub fn without_filter(&self) -> StackCounters {
        wan_checks::unfiltered(self, FLOODS)
    }

    /// With the filter attached on `filter_if`: [`wan_checks::Filtered`],
    /// the lookups and NTP from the LAN client through NAT.
    pub fn with_filter(&self, unfiltered: &StackCounters) {
        wan_checks::Filtered {
            label: self.label,
            ctl: self.ctl,
            gw: self.gw,
            iface: self.filter_if,
            client: self.lan,
            floods: FLOODS,
            aaaa: None,
            tunnelled: None,
        }
        .run(self, unfiltered);
    }
}
