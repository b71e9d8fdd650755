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

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    thread,
    time::{Duration, Instant},
};

use filter_common::Reason;
use harness::{
    ctl::{
        FilterCtl, Stats,
        daemon::Daemon,
        report::{LinkLayer, XdpMode},
    },
    kernel,
    lab::{StackCounters, addr},
    names::TEST_PREFIX,
    netns::{Netns, tun::TunLink},
    packet::{PacketBuilder, dns_message, tcp_flags},
    process::is_root,
    servers::real::{self, Servers},
};

const WAN_IF: &str = "wan0";
const ISP_IF: &str = "isp0";
/// The SYN flooder: one address, outside every spoofed range.
const FLOODER4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
/// The filter's SYN bucket for one source in these tests.
const SYN_RATE: u64 = 10;
const SYN_BURST: u64 = 20;

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
    let (spoofed4, spoofed6) = (addr::cidrs(&addr::SPOOFED4), addr::cidrs(&addr::SPOOFED6));
    let (server4, server6) = (addr::SERVER4, addr::SERVER6);
    format!(
        r#"
table netdev wan_link_count {{
    counter spoofed4 {{ }}
    counter spoofed6 {{ }}
    counter real_dns {{ }}
    counter real_ntp {{ }}
    counter syn {{ }}
    chain wan_ingress {{
        type filter hook ingress device "{WAN_IF}" priority -500; policy accept;
        ip saddr {{ {spoofed4} }} counter name "spoofed4"
        ip6 saddr {{ {spoofed6} }} counter name "spoofed6"
        ip saddr {server4} udp sport 53 counter name "real_dns"
        ip6 saddr {server6} udp sport 53 counter name "real_dns"
        ip saddr {server4} udp sport 123 counter name "real_ntp"
        ip saddr {FLOODER4} tcp flags & (syn | ack) == syn counter name "syn"
    }}
}}
"#
    )
}

impl TunWan {
    fn stack(&self) -> StackCounters {
        let text = self
            .gw
            .run([
                "nft",
                "list",
                "counters",
                "table",
                "netdev",
                "wan_link_count",
            ])
            .expect("nft counters");
        StackCounters::parse(&text).expect("parsing nft counters")
    }

    fn stats(&self) -> Stats {
        self.ctl.stats(&self.gw, WAN_IF).expect("filter-ctl stats")
    }

    /// Writes spoofed DNS responses into `wan0`: `v4` from the spoofed IPv4
    /// ranges, `v6` from the IPv6 one, each to another port of the gateway.
    fn reflection_flood(&self, v4: u32, v6: u32) {
        let answer = dns_message(0x1234, true, 400);
        for i in 0..v4 {
            let [_, _, hi, lo] = i.to_be_bytes();
            let src = Ipv4Addr::new(198, 19, hi, lo);
            let packet = PacketBuilder::ipv4(src, addr::GW_WAN4)
                .udp(53, 1024 + (i % 60000) as u16)
                .payload(&answer)
                .build()
                .ip_only();
            self.link.inject(&packet).expect("injecting into wan0");
        }
        let [net, ..] = addr::SPOOFED6;
        for i in 0..v6 {
            let src = Ipv6Addr::from(u128::from(net.0) | u128::from(i + 1));
            let packet = PacketBuilder::ipv6(src, addr::GW_WAN6)
                .udp(53, 1024 + (i % 60000) as u16)
                .payload(&answer)
                .build()
                .ip_only();
            self.link.inject(&packet).expect("injecting into wan0");
        }
    }

    /// Writes `count` SYNs from one source to the gateway's port 80, as
    /// fast as the device takes them; returns how long that took.
    fn syn_flood(&self, count: u32) -> Duration {
        let start = Instant::now();
        for i in 0..count {
            let packet = PacketBuilder::ipv4(FLOODER4, addr::GW_WAN4)
                .tcp(20000 + (i % 40000) as u16, 80, tcp_flags::SYN)
                .build()
                .ip_only();
            self.link.inject(&packet).expect("injecting into wan0");
        }
        start.elapsed()
    }
}

const FLOOD4: u32 = 2000;
const FLOOD6: u32 = 1000;
const SYNS: u32 = 600;
const LOOKUPS: usize = 20;

#[test]
fn a_tun_wan_is_filtered_in_skb_mode_from_the_ip_header() {
    let wan = tun_wan();
    let gw = &wan.gw;

    // Without the filter: every spoofed answer and every SYN reaches the stack.
    let before = wan.stack();
    wan.reflection_flood(FLOOD4, FLOOD6);
    wan.syn_flood(SYNS);
    let unfiltered = wan.stack().since(&before);
    assert_eq!(unfiltered.packets("spoofed4"), u64::from(FLOOD4));
    assert_eq!(unfiltered.packets("spoofed6"), u64::from(FLOOD6));
    assert_eq!(unfiltered.packets("syn"), u64::from(SYNS));

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
    let out = wan
        .ctl
        .output(gw, ["attach", "--iface", WAN_IF])
        .expect("running filter-ctl attach");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("attached filter on wan0 in skb mode, ip link layer"),
        "{stdout}"
    );
    assert!(
        stderr.contains("skb mode: wan0 has no Ethernet header (link type none)"),
        "{stderr}"
    );
    let status = &wan.ctl.status(gw, Some(WAN_IF)).expect("status")[0];
    assert_eq!(status.xdp_mode, Some(XdpMode::Skb));
    assert_eq!(status.link_layer, Some(LinkLayer::Ip));
    assert!(status.attached, "{status:?}");
    let (mode, _) = kernel::xdp_on(gw, WAN_IF).unwrap().expect("XDP on wan0");
    assert_eq!(mode, "skb");
    let shown = wan
        .ctl
        .run(gw, ["status", "--iface", WAN_IF])
        .expect("status");
    assert!(
        shown.contains("XDP skb mode, IP link layer (no Ethernet header)"),
        "{shown}"
    );
    wan.ctl
        .run(
            gw,
            [
                "set",
                "--iface",
                WAN_IF,
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

    // With the filter: real lookups and an NTP exchange through the link
    // while the flood runs, in rounds, until they are done.
    let stats_before = wan.stats();
    let before = wan.stack();
    let (answered, ntp, (sent4, sent6), took) = thread::scope(|scope| {
        let lookups = scope
            .spawn(|| real::lookups(gw, addr::SERVER4.into(), LOOKUPS, Duration::from_millis(50)));
        let ntp = scope.spawn(|| real::ntp_exchange(gw, addr::SERVER4.into()));
        let mut sent = (0, 0);
        while sent.0 < FLOOD4 || !lookups.is_finished() || !ntp.is_finished() {
            wan.reflection_flood(FLOOD4 / 10, FLOOD6 / 10);
            sent = (sent.0 + FLOOD4 / 10, sent.1 + FLOOD6 / 10);
            thread::sleep(Duration::from_millis(20));
        }
        let took = wan.syn_flood(SYNS);
        (
            lookups.join().unwrap().expect("dig"),
            ntp.join().unwrap(),
            sent,
            took,
        )
    });
    let aaaa = real::dig(gw, IpAddr::V6(addr::SERVER6), true);
    let filtered = wan.stack().since(&before);
    let stats = wan.stats().since(&stats_before);
    println!(
        "tun WAN: spoofed answers that reached the stack without the filter {} (IPv4) + {} (IPv6) \
         of as many sent, with it {} + {} of {sent4} + {sent6} sent; SYNs from one source \
         without the filter {} of {SYNS}, with it {} (bucket {SYN_BURST} + {SYN_RATE}/s over \
         {took:?}); real lookups answered {answered} of {LOOKUPS} during the flood, stack \
         real_dns {}, real_ntp {}",
        unfiltered.packets("spoofed4"),
        unfiltered.packets("spoofed6"),
        filtered.packets("spoofed4"),
        filtered.packets("spoofed6"),
        unfiltered.packets("syn"),
        filtered.packets("syn"),
        filtered.packets("real_dns"),
        filtered.packets("real_ntp"),
    );
    assert_eq!(filtered.packets("spoofed4"), 0);
    assert_eq!(filtered.packets("spoofed6"), 0);
    stats.assert_shown(
        Reason::DropUnsolicitedDns,
        u64::from(sent4 + sent6),
        "spoofed answers sent (none reached the stack)",
    );
    let passed = filtered.packets("syn");
    let most = SYN_BURST + SYN_RATE * (took.as_millis() as u64 + 999) / 1000;
    assert!(
        (SYN_BURST..=most).contains(&passed),
        "{passed} of {SYNS} SYNs reached the stack; the bucket allows {SYN_BURST} to {most}; \
         the filter's counters: {:?}",
        stats.nonzero()
    );
    stats.assert_shown(
        Reason::DropSynSource,
        u64::from(SYNS) - passed,
        "SYNs sent less those that reached the stack",
    );
    assert_eq!(answered, LOOKUPS, "real lookups answered");
    assert!(
        filtered.packets("real_dns") >= LOOKUPS as u64,
        "{filtered:?}"
    );
    assert_eq!(
        aaaa.expect("a lookup over IPv6"),
        IpAddr::V6(addr::DNS_ANSWER6)
    );
    ntp.expect("an NTP exchange through the filter");
    assert!(filtered.packets("real_ntp") >= 1, "{filtered:?}");
    // Egress recorded every query the gateway sent on wan0.
    assert!(
        stats.packets(Reason::EgressQueryRecorded) >= LOOKUPS as u64 + 2,
        "{:?}",
        stats.nonzero()
    );
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
