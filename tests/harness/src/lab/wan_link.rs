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
//! the Ethernet link ([`IspSide`]), framed as the link frames them.

use std::{
    thread,
    time::{Duration, Instant},
};

use filter_common::Reason;

use super::{GW_LAN_IF, LAN_IF, StackCounters, addr};
use crate::{
    ctl::FilterCtl,
    netns::{self, Netns},
    packet::{Frame, PacketBuilder, dns_message, tcp_flags},
    servers::real,
    traffic::{
        marker::{Counter, Marker},
        sender::RawSender,
    },
};

/// The nftables table (netdev) of the stack's counters.
pub const COUNT_TABLE: &str = "wan_link_count";
/// The marker's ports (source and destination): UDP nobody listens on.
pub const MARKER_PORT: u16 = 40001;
/// The SYN flooder: one address, outside every spoofed range.
pub const FLOODER4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 66);
/// The filter's SYN bucket for one source in these tests.
pub const SYN_RATE: u64 = 10;
pub const SYN_BURST: u64 = 20;

/// Spoofed answers per flood, SYNs, lookups.
pub const FLOOD: u32 = 1000;
pub const SYNS: u32 = 400;
pub const LOOKUPS: usize = 10;

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

/// NAT on `wan_dev`, and the counters of what reaches the stack there.
fn gateway_nft(wan_dev: &str) -> String {
    let spoofed4 = addr::cidrs(&addr::SPOOFED4);
    let (router, server) = (addr::INET_WAN4, addr::SERVER4);
    format!(
        r#"
table ip wan_link_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{wan_dev}" masquerade
    }}
}}
table netdev {COUNT_TABLE} {{
    counter marker {{ }}
    counter spoofed4 {{ }}
    counter real_dns {{ }}
    counter real_ntp {{ }}
    counter syn {{ }}
    chain wan_ingress {{
        type filter hook ingress device "{wan_dev}" priority -500; policy accept;
        ip saddr {router} udp dport {MARKER_PORT} counter name "marker" drop
        ip saddr {{ {spoofed4} }} counter name "spoofed4"
        ip saddr {server} udp sport 53 counter name "real_dns"
        ip saddr {server} udp sport 123 counter name "real_ntp"
        ip saddr {FLOODER4} tcp flags & (syn | ack) == syn counter name "syn"
    }}
}}
"#
    )
}

/// What reached the stack of `gw`, per counter of [`COUNT_TABLE`].
pub fn stack(gw: &Netns) -> StackCounters {
    let text = gw
        .run(["nft", "list", "counters", "table", "netdev", COUNT_TABLE])
        .expect("nft counters");
    StackCounters::parse(&text).expect("parsing nft counters")
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

    /// `count` DNS responses from spoofed sources (198.19.0.0/16) to the
    /// gateway's public address, each to another port.
    pub fn reflection_flood(&self, count: u32) {
        let answer = dns_message(0x1234, true, 400);
        self.deliver((0..count).map(|i| {
            let [_, _, hi, lo] = i.to_be_bytes();
            PacketBuilder::ipv4(std::net::Ipv4Addr::new(198, 19, hi, lo), addr::GW_WAN4)
                .udp(53, 1024 + (i % 60000) as u16)
                .payload(&answer)
        }));
    }

    /// `count` SYNs from [`FLOODER4`] to the gateway's port 80; returns how
    /// long sending them took.
    pub fn syn_flood(&self, count: u32) -> Duration {
        let start = Instant::now();
        self.deliver((0..count).map(|i| {
            PacketBuilder::ipv4(FLOODER4, addr::GW_WAN4).tcp(
                20000 + (i % 40000) as u16,
                80,
                tcp_flags::SYN,
            )
        }));
        start.elapsed()
    }
}

/// One link type's gateway under the floods: `gw` behind `isp`, the
/// filter (once attached) on `filter_if`, the LAN client `lan`.
pub struct Floods<'a> {
    pub label: &'a str,
    pub gw: &'a Netns,
    pub lan: &'a Netns,
    pub isp: &'a IspSide,
    pub ctl: &'a FilterCtl,
    pub filter_if: &'a str,
}

impl Floods<'_> {
    /// Without the filter: every spoofed answer and every SYN reaches the
    /// stack (asserted). Returns what the stack counted.
    pub fn without_filter(&self) -> StackCounters {
        let before = stack(self.gw);
        self.isp.reflection_flood(FLOOD);
        self.isp.syn_flood(SYNS);
        self.isp.settle(self.gw);
        let unfiltered = stack(self.gw).since(&before);
        assert_eq!(
            unfiltered.packets("spoofed4"),
            u64::from(FLOOD),
            "{unfiltered:?}"
        );
        assert_eq!(unfiltered.packets("syn"), u64::from(SYNS), "{unfiltered:?}");
        unfiltered
    }

    /// With the filter attached on `filter_if`: sets the SYN bucket to
    /// [`SYN_BURST`] + [`SYN_RATE`]/s for one source alone, runs the
    /// lookups and an NTP exchange from the LAN while the reflection flood
    /// runs in rounds, then the SYN flood; asserts that no spoofed answer
    /// reached the stack, that the SYNs were cut to the bucket, that every
    /// lookup and the NTP exchange were answered, and that the filter's
    /// counters agree; prints the numbers beside `unfiltered`'s.
    pub fn with_filter(&self, unfiltered: &StackCounters) {
        let (gw, ctl, iface) = (self.gw, self.ctl, self.filter_if);
        ctl.run(
            gw,
            [
                "set",
                "--iface",
                iface,
                &format!("syn_source_rate={SYN_RATE}/s"),
                &format!("syn_source_burst={SYN_BURST}"),
                // The source's bucket alone, as a flood from one address
                // meets it first.
                "syn_prefix_rate=off",
                "syn_global_rate=off",
                "syn_halfopen_budget=off",
                "syn_halfopen_prefix_budget=off",
            ],
        )
        .expect("setting the SYN bucket");
        let stats_before = ctl.stats(gw, iface).expect("filter-ctl stats");
        let before = stack(gw);
        let server = addr::SERVER4.into();
        let (answered, ntp, sent, took) = thread::scope(|scope| {
            let lookups =
                scope.spawn(|| real::lookups(self.lan, server, LOOKUPS, Duration::from_millis(50)));
            let ntp = scope.spawn(|| real::ntp_exchange(self.lan, server));
            let mut sent = 0;
            while sent < FLOOD || !lookups.is_finished() || !ntp.is_finished() {
                self.isp.reflection_flood(FLOOD / 10);
                sent += FLOOD / 10;
                thread::sleep(Duration::from_millis(20));
            }
            let took = self.isp.syn_flood(SYNS);
            (
                lookups.join().unwrap().expect("dig"),
                ntp.join().unwrap(),
                sent,
                took,
            )
        });
        self.isp.settle(gw);
        let filtered = stack(gw).since(&before);
        let stats = ctl
            .stats(gw, iface)
            .expect("filter-ctl stats")
            .since(&stats_before);
        let label = self.label;
        println!(
            "{label}: spoofed answers that reached the stack without the filter {} of {FLOOD}, \
             with it {} of {sent}; SYNs from one source without the filter {} of {SYNS}, with \
             it {} (bucket {SYN_BURST} + {SYN_RATE}/s over {took:?}); real lookups from the LAN \
             answered {answered} of {LOOKUPS} during the flood, stack real_dns {}, real_ntp {}",
            unfiltered.packets("spoofed4"),
            filtered.packets("spoofed4"),
            unfiltered.packets("syn"),
            filtered.packets("syn"),
            filtered.packets("real_dns"),
            filtered.packets("real_ntp"),
        );
        assert_eq!(filtered.packets("spoofed4"), 0, "{label}");
        stats.assert_shown(
            Reason::DropUnsolicitedDns,
            u64::from(sent),
            "spoofed answers sent (none reached the stack)",
        );
        let passed = filtered.packets("syn");
        let most = SYN_BURST + SYN_RATE * (took.as_millis() as u64 + 999) / 1000;
        assert!(
            (SYN_BURST..=most).contains(&passed),
            "{label}: {passed} of {SYNS} SYNs reached the stack; the bucket allows \
             {SYN_BURST} to {most}; the filter's counters: {:?}",
            stats.nonzero()
        );
        stats.assert_shown(
            Reason::DropSynSource,
            u64::from(SYNS) - passed,
            "SYNs sent less those that reached the stack",
        );
        assert_eq!(answered, LOOKUPS, "{label}: real lookups answered");
        assert!(
            filtered.packets("real_dns") >= LOOKUPS as u64,
            "{filtered:?}"
        );
        ntp.expect("an NTP exchange through the filter");
        assert!(filtered.packets("real_ntp") >= 1, "{filtered:?}");
        // Egress recorded every query that left (after NAT) on the link:
        // the lookups and at least one NTP request.
        assert!(
            stats.packets(Reason::EgressQueryRecorded) > LOOKUPS as u64,
            "{label}: {:?}",
            stats.nonzero()
        );
    }
}
