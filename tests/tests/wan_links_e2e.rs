//! End-to-end tests of the filter on WAN links whose device has no Ethernet
//! header (ppp0, wg0, IP tunnels, tun): `filter-ctl attach` chooses generic
//! (skb) XDP and says why, the programs parse from the IP header, egress
//! records the gateway's queries on the same device.
//!
//! On this machine's kernel: a tun device as the gateway's WAN
//! (harness::netns::tun: `wan0` in the gateway, `isp0` in the internet
//! namespace, joined by relay threads), real DNS and NTP servers on the
//! internet (dnsmasq, chronyd), and floods written into `wan0` as if they
//! came from the ISP. What reached the gateway's stack is counted by
//! nftables at `wan0`'s ingress (after XDP): spoofed sources per family,
//! the real servers' answers, the SYN flooder's SYNs. Each flood is sent
//! without the filter, then with it.
//!
//! Needs root. Every test makes its own namespaces (unique names) and
//! removes them when it ends, also when it fails.

use std::time::{Duration, Instant};

use harness::{
    ctl::{
        FilterCtl,
        daemon::Daemon,
        report::{LinkLayer, XdpMode},
    },
    kernel,
    lab::{
        StackCounters, addr,
        wan_checks::{
            self, Filtered, FloodPath, Floods, attach_skb, count_nft, spoofed_answers4,
            spoofed_answers6, syns,
        },
    },
    names::TEST_PREFIX,
    netns::{Netns, tun::TunLink},
    packet::PacketBuilder,
    process::is_root,
    servers::real::Servers,
};

const WAN_IF: &str = "wan0";
const ISP_IF: &str = "isp0";

/// The gateway and the internet joined by a tun link, the internet's
/// servers running. Drop order: the filter's pins, the servers, the link
/// (its devices), the namespaces.
struct TunWan {
    ctl: FilterCtl,
    _servers: Servers,
    link: TunLink,
    gw: Netns,
    _internet: Netns,
}

fn tun_wan() -> TunWan {
    assert!(is_root(), "the end-to-end tests need root");
    let ctl = FilterCtl::new().expect("locating filter-ctl");
    let gw = Netns::unique(&format!("{TEST_PREFIX}-tgw")).expect("gateway namespace");
    let internet = Netns::unique(&format!("{TEST_PREFIX}-tnet")).expect("internet namespace");
    let link = TunLink::new(&gw, WAN_IF, &internet, ISP_IF).expect("the tun link");
    let (gw4, inet4) = (addr::GW_WAN4.to_string(), addr::INET_WAN4.to_string());
    let (gw6, inet6) = (addr::GW_WAN6.to_string(), addr::INET_WAN6.to_string());
    let setup = || -> anyhow::Result<()> {
        for (ns, iface, local4, peer4, local6) in [
            (&gw, WAN_IF, &gw4, &inet4, &gw6),
            (&internet, ISP_IF, &inet4, &gw4, &inet6),
        ] {
            ns.ip(["addr", "add", local4, "peer", peer4, "dev", iface])?;
            ns.ip([
                "-6",
                "addr",
                "add",
                &format!("{local6}/{}", addr::WAN6_PREFIX),
                "dev",
                iface,
                "nodad",
            ])?;
            ns.up(iface)?;
            ns.up("lo")?;
        }
        gw.ip(["route", "add", "default", "dev", WAN_IF])?;
        gw.ip(["-6", "route", "add", "default", "dev", WAN_IF])?;
        internet.add_addr("lo", &format!("{}/32", addr::SERVER4))?;
        internet.add_addr("lo", &format!("{}/128", addr::SERVER6))?;
        gw.nft(&counters_nft())
    };
    setup().expect("setting up the tun WAN");
    let servers = Servers::start(&internet).expect("starting dnsmasq and chronyd");
    TunWan {
        ctl,
        _servers: servers,
        link,
        gw,
        _internet: internet,
    }
}

/// Counters at `wan0`'s ingress (netdev: after XDP). On a device without
/// Ethernet, nftables reads the protocol the driver set (tun: the version
/// nibble), so `ip saddr` and `ip6 saddr` work as on Ethernet.
fn counters_nft() -> String {
    count_nft(&[WAN_IF], None)
}

/// Floods written into `wan0` as if they came from the ISP.
impl FloodPath for TunWan {
    fn stack(&self) -> StackCounters {
        wan_checks::stack(&self.gw)
    }

    fn reflection_flood(&self, v4: u32, v6: u32) {
        self.inject(spoofed_answers4(v4).chain(spoofed_answers6(v6, addr::GW_WAN6)));
    }

    /// As fast as the device takes them.
    fn syn_flood(&self, count: u32) -> Duration {
        let start = Instant::now();
        self.inject(syns(count));
        start.elapsed()
    }
}

impl TunWan {
    fn inject(&self, packets: impl Iterator<Item = PacketBuilder>) {
        for packet in packets {
            self.link
                .inject(&packet.build().ip_only())
                .expect("injecting into wan0");
        }
    }
}

const FLOODS: Floods = Floods {
    spoofed4: 2000,
    spoofed6: 1000,
    syns: 600,
    lookups: 20,
};

#[test]
fn a_tun_wan_is_filtered_in_skb_mode_from_the_ip_header() {
    let wan = tun_wan();
    let gw = &wan.gw;

    // Without the filter: every spoofed answer and every SYN reaches the stack.
    let unfiltered = wan_checks::unfiltered(&wan, FLOODS);

    // Native XDP is refused by name, and nothing changes.
    let err = wan
        .ctl
        .failure(gw, &["attach", "--iface", WAN_IF, "--mode", "native"]);
    assert!(
        err.contains("wan0 has no Ethernet header (link type none)") && err.contains("--mode skb"),
        "{err}"
    );
    assert_eq!(kernel::xdp_on(gw, WAN_IF).unwrap(), None);

    // Attached: skb mode, and why.
    attach_skb(&wan.ctl, gw, WAN_IF, "none");
    let shown = wan
        .ctl
        .run(gw, ["status", "--iface", WAN_IF])
        .expect("status");
    assert!(
        shown.contains("XDP skb mode, IP link layer (no Ethernet header)"),
        "{shown}"
    );

    // With the filter: real lookups and an NTP exchange from the gateway
    // through the link while the flood runs, then a lookup over IPv6 (its
    // query leaves on wan0 too).
    Filtered {
        label: "tun WAN",
        ctl: &wan.ctl,
        gw,
        iface: WAN_IF,
        client: gw,
        floods: FLOODS,
        aaaa: Some(true),
        tunnelled: None,
    }
    .run(&wan, &unfiltered);
}

#[test]
fn the_daemon_attaches_a_tun_wan_the_same_way() {
    let wan = tun_wan();
    let gw = &wan.gw;
    let mut daemon = Daemon::start(&wan.ctl, gw, WAN_IF, &[]).expect("starting the daemon");
    let timeout = Duration::from_secs(30);
    daemon
        .wait_for_line(
            &["skb mode: wan0 has no Ethernet header (link type none)"],
            timeout,
        )
        .unwrap();
    daemon
        .wait_for_line(
            &["attached the filter to wan0 in skb mode, ip link layer"],
            timeout,
        )
        .unwrap();
    let status = &wan.ctl.status(gw, Some(WAN_IF)).expect("status")[0];
    assert_eq!(
        (status.xdp_mode, status.link_layer),
        (Some(XdpMode::Skb), Some(LinkLayer::Ip))
    );
    let before = wan.stack();
    wan.reflection_flood(200, 100);
    let reached = wan.stack().since(&before);
    assert_eq!(
        (reached.packets("spoofed4"), reached.packets("spoofed6")),
        (0, 0),
        "the daemon's filter lets spoofed answers through"
    );
    daemon.stop().expect("stopping the daemon");
}
