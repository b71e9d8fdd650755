//! What every WAN link type's end-to-end test checks the same way, whatever
//! carries the floods (a tun device, a PPPoE session or a bond:
//! [`super::wan_link`], an ip6tnl or WireGuard: [`super::tunnel_wan`]):
//!
//! - the skip check for a kernel without the link's module ([`has_modules`],
//!   [`skipped`]: the VM legs load them);
//! - the floods: DNS responses from spoofed sources ([`addr::SPOOFED4`],
//!   [`addr::SPOOFED6`]) and SYNs from one source ([`FLOODER4`]), sent by a
//!   [`FloodPath`];
//! - the stack's counters (nftables, netdev ingress: after XDP) of what
//!   reached the gateway: [`count_nft`] (and NAT: [`nat_nft`]);
//! - attaching the filter and checking the mode and parse filter-ctl chose
//!   ([`attach_native`], [`attach_skb`]);
//! - the phase without the filter ([`unfiltered`]: every flood packet
//!   reaches the stack) and the one with it ([`Filtered`]: no spoofed answer
//!   and only the SYN bucket reach the stack, the filter's counters agree,
//!   real lookups and NTP are answered during the flood), with the printed
//!   summary line.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use filter_common::{Encap, Reason};

use super::{StackCounters, addr};
use crate::{
    ctl::{
        FilterCtl,
        report::{LinkLayer, Tunnelled, XdpMode},
    },
    kernel,
    netns::Netns,
    packet::{PacketBuilder, dns_message, tcp_flags},
    process::note,
    servers::real,
};

/// The SYN flooder: one address, outside every spoofed range.
pub const FLOODER4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
/// The filter's SYN bucket for one source in these tests.
pub const SYN_RATE: u64 = 10;
pub const SYN_BURST: u64 = 20;

/// The nftables table (netdev) of the stack's counters.
pub const COUNT_TABLE: &str = "wan_link_count";

/// NAT of the LAN's IPv4 on `wan_dev` (masquerade).
pub fn nat_nft(wan_dev: &str) -> String {
    format!(
        r#"
table ip wan_link_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{wan_dev}" masquerade
    }}
}}
"#
    )
}

/// The table [`COUNT_TABLE`] (netdev): on each of `devices` an ingress
/// chain (after XDP) that counts what reached the stack: spoofed sources per
/// family (`spoofed4`, `spoofed6`), the real servers' answers (`real_dns`,
/// `real_ntp`), the flooder's SYNs (`syn`). `first`: a counter and a rule
/// that names it, put before the others (a marker).
pub fn count_nft(devices: &[&str], first: Option<(&str, &str)>) -> String {
    let (spoofed4, spoofed6) = (addr::cidrs(&addr::SPOOFED4), addr::cidrs(&addr::SPOOFED6));
    let (server4, server6) = (addr::SERVER4, addr::SERVER6);
    let (first_counter, first_rule) = match first {
        Some((counter, rule)) => (format!("counter {counter} {{ }}"), rule),
        None => (String::new(), ""),
    };
    let chains: String = devices
        .iter()
        .map(|device| {
            format!(
                r#"
    chain {device}_ingress {{
        type filter hook ingress device "{device}" priority -500; policy accept;
        {first_rule}
        ip saddr {{ {spoofed4} }} counter name "spoofed4"
        ip6 saddr {{ {spoofed6} }} counter name "spoofed6"
        ip saddr {server4} udp sport 53 counter name "real_dns"
        ip6 saddr {server6} udp sport 53 counter name "real_dns"
        ip saddr {server4} udp sport 123 counter name "real_ntp"
        ip saddr {FLOODER4} tcp flags & (syn | ack) == syn counter name "syn"
    }}"#
            )
        })
        .collect();
    format!(
        r#"
table netdev {COUNT_TABLE} {{
    {first_counter}
    counter spoofed4 {{ }}
    counter spoofed6 {{ }}
    counter real_dns {{ }}
    counter real_ntp {{ }}
    counter syn {{ }}{chains}
}}
"#
    )
}

/// Whether the kernel has every one of `modules`: loaded, built in, or
/// loaded now by modprobe. If not, prints that `test` is skipped for want
/// of the first one missing ([`skipped`]): this machine's kernel lacks ppp
/// and bonding, and the VM legs (`./xtask/run vm-test`) load them at boot
/// (xtask/src/vm.rs: GUEST_MODULES).
pub fn has_modules(test: &str, modules: &[&str]) -> bool {
    for module in modules {
        let loaded = std::path::Path::new("/sys/module").join(module).exists();
        let loadable = || {
            Command::new("modprobe")
                .args(["-q", module])
                .status()
                .is_ok_and(|status| status.success())
        };
        if !loaded && !loadable() {
            skipped(test, module);
            return false;
        }
    }
    true
}

/// Prints that `test` is skipped: this kernel has no `module`.
pub fn skipped(test: &str, module: &str) {
    note(format_args!(
        "{test} skipped: this kernel has no {module} module (the VM legs load it: \
         ./xtask/run vm-test)"
    ));
}

/// What reached the stack of `gw`, per counter of [`COUNT_TABLE`].
pub fn stack(gw: &Netns) -> StackCounters {
    let text = gw
        .run(["nft", "list", "counters", "table", "netdev", COUNT_TABLE])
        .expect("nft counters");
    StackCounters::parse(&text).expect("parsing nft counters")
}

/// `count` DNS responses from the spoofed IPv4 ranges (198.19.0.0/16) to
/// the gateway's public IPv4 address, each to another port.
pub fn spoofed_answers4(count: u32) -> impl Iterator<Item = PacketBuilder> {
    let answer = dns_message(0x1234, true, 400);
    (0..count).map(move |i| {
        let [_, _, hi, lo] = i.to_be_bytes();
        PacketBuilder::ipv4(Ipv4Addr::new(198, 19, hi, lo), addr::GW_WAN4)
            .udp(53, 1024 + (i % 60000) as u16)
            .payload(&answer)
    })
}

/// `count` DNS responses from the spoofed IPv6 range to `dst`, each to
/// another port.
pub fn spoofed_answers6(count: u32, dst: Ipv6Addr) -> impl Iterator<Item = PacketBuilder> {
    let answer = dns_message(0x1234, true, 400);
    let [(net, _)] = addr::SPOOFED6;
    (0..count).map(move |i| {
        PacketBuilder::ipv6(Ipv6Addr::from(u128::from(net) | u128::from(i + 1)), dst)
            .udp(53, 1024 + (i % 60000) as u16)
            .payload(&answer)
    })
}

/// `count` SYNs from [`FLOODER4`] to the gateway's port 80.
pub fn syns(count: u32) -> impl Iterator<Item = PacketBuilder> {
    (0..count).map(|i| {
        PacketBuilder::ipv4(FLOODER4, addr::GW_WAN4).tcp(
            20000 + (i % 40000) as u16,
            80,
            tcp_flags::SYN,
        )
    })
}

/// How one link type's floods reach the gateway, and what its stack
/// counted.
pub trait FloodPath {
    /// What reached the gateway's stack so far.
    fn stack(&self) -> StackCounters;
    /// Sends `v4` spoofed answers over IPv4 and `v6` over IPv6.
    fn reflection_flood(&self, v4: u32, v6: u32);
    /// Sends `count` SYNs from [`FLOODER4`]; returns how long that took.
    fn syn_flood(&self, count: u32) -> Duration;
    /// Returns once everything sent so far was judged (and counted).
    fn settle(&self) {}
    /// The pause between two rounds of the reflection flood while the
    /// lookups run.
    fn round_pause(&self) -> Duration {
        Duration::from_millis(20)
    }
}

/// The floods of one test: spoofed answers per family, SYNs, and the real
/// lookups during the filtered phase.
#[derive(Clone, Copy, Debug)]
pub struct Floods {
    pub spoofed4: u32,
    pub spoofed6: u32,
    pub syns: u32,
    pub lookups: usize,
}

/// Attaches the filter to `iface` of `gw` (default mode), asserting that
/// filter-ctl chose native XDP and the Ethernet parse; returns what it
/// printed.
pub fn attach_native(ctl: &FilterCtl, gw: &Netns, iface: &str) -> String {
    let shown = ctl
        .attach(gw, iface, None)
        .unwrap_or_else(|err| panic!("attaching to {iface}: {err:#}"));
    assert!(
        shown.contains(&format!(
            "attached filter on {iface} in native mode, ethernet link layer"
        )),
        "{shown}"
    );
    let status = &ctl.status(gw, Some(iface)).expect("status")[0];
    assert_eq!(
        (status.xdp_mode, status.link_layer),
        (Some(XdpMode::Native), Some(LinkLayer::Ethernet))
    );
    shown
}

/// Attaches the filter to `iface` of `gw`, a device without an Ethernet
/// header, asserting that filter-ctl chose generic (skb) XDP and the IP
/// parse and said why (the device's `link_type`), and that the kernel shows
/// the program in skb mode.
pub fn attach_skb(ctl: &FilterCtl, gw: &Netns, iface: &str, link_type: &str) {
    let out = ctl
        .output(gw, ["attach", "--iface", iface])
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
    let status = &ctl.status(gw, Some(iface)).expect("status")[0];
    assert!(status.attached, "{status:?}");
    assert_eq!(
        (status.xdp_mode, status.link_layer),
        (Some(XdpMode::Skb), Some(LinkLayer::Ip))
    );
    let (mode, _) = kernel::xdp_on(gw, iface)
        .expect("ip link")
        .unwrap_or_else(|| panic!("no XDP program on {iface}"));
    assert_eq!(mode, "skb");
}

/// The SYN source bucket alone ([`SYN_BURST`] + [`SYN_RATE`]/s), as a
/// flood from one address meets it first.
pub fn set_syn_bucket(ctl: &FilterCtl, gw: &Netns, iface: &str) {
    ctl.run(
        gw,
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

/// Without the filter: every spoofed answer and every SYN of `floods`
/// reaches the stack (asserted). Returns what the stack counted.
pub fn unfiltered(path: &impl FloodPath, floods: Floods) -> StackCounters {
    let before = path.stack();
    path.reflection_flood(floods.spoofed4, floods.spoofed6);
    path.syn_flood(floods.syns);
    path.settle();
    let reached = path.stack().since(&before);
    assert_eq!(
        (
            reached.packets("spoofed4"),
            reached.packets("spoofed6"),
            reached.packets("syn")
        ),
        (
            u64::from(floods.spoofed4),
            u64::from(floods.spoofed6),
            u64::from(floods.syns)
        ),
        "spoofed4, spoofed6, syn at the stack without the filter: {reached:?}"
    );
    reached
}

/// The phase with the filter attached on `iface` of `gw`.
pub struct Filtered<'a> {
    /// The first words of the summary line and of messages.
    pub label: &'a str,
    pub ctl: &'a FilterCtl,
    pub gw: &'a Netns,
    pub iface: &'a str,
    /// Where the real lookups and the NTP exchange run (the gateway, or a
    /// LAN client behind NAT).
    pub client: &'a Netns,
    pub floods: Floods,
    /// A lookup over IPv6 from the gateway after the floods: `None`, or
    /// whether its query leaves through `iface` (its egress records it).
    pub aaaa: Option<bool>,
    /// The tunnel the filter on `iface` unwraps the IPv4 floods from, if
    /// any: its tunnelled counters (`stats --tunnelled`) must count them.
    pub tunnelled: Option<Encap>,
}

impl Filtered<'_> {
    /// Sets the SYN bucket, runs the lookups and an NTP exchange from the
    /// client while the reflection flood runs in rounds, then the SYN
    /// flood (and the IPv6 lookup); prints the numbers beside
    /// `unfiltered`'s and asserts that no spoofed answer reached the
    /// stack, that the SYNs were cut to the bucket, that every lookup and
    /// the NTP exchange were answered, and that the filter's counters
    /// agree.
    pub fn run(&self, path: &impl FloodPath, unfiltered: &StackCounters) {
        let (label, ctl, gw, iface, floods) =
            (self.label, self.ctl, self.gw, self.iface, self.floods);
        set_syn_bucket(ctl, gw, iface);
        let stats_before = ctl.stats(gw, iface).expect("filter-ctl stats");
        let tunnelled_before = ctl
            .tunnelled(gw, iface)
            .expect("filter-ctl stats --tunnelled");
        let before = path.stack();
        let (client, server4) = (self.client, IpAddr::from(addr::SERVER4));
        let started = Instant::now();
        let (answered, ntp, (sent4, sent6), took) = thread::scope(|scope| {
            let lookups = scope.spawn(|| {
                real::lookups(client, server4, floods.lookups, Duration::from_millis(50))
            });
            let ntp = scope.spawn(|| real::ntp_exchange(client, server4));
            let (round4, round6) = (floods.spoofed4 / 10, floods.spoofed6 / 10);
            let mut sent = (0, 0);
            while sent.0 < floods.spoofed4 || !lookups.is_finished() || !ntp.is_finished() {
                path.reflection_flood(round4, round6);
                sent = (sent.0 + round4, sent.1 + round6);
                thread::sleep(path.round_pause());
            }
            let took = path.syn_flood(floods.syns);
            (
                lookups.join().unwrap().expect("dig"),
                ntp.join().unwrap(),
                sent,
                took,
            )
        });
        let aaaa = self
            .aaaa
            .map(|_| real::dig(gw, IpAddr::V6(addr::SERVER6), true));
        path.settle();
        let filtered = path.stack().since(&before);
        let stats = ctl
            .stats(gw, iface)
            .expect("filter-ctl stats")
            .since(&stats_before);
        let syns = floods.syns;
        println!(
            "{label}: spoofed answers that reached the stack without the filter {} (IPv4) + {} \
             (IPv6) of as many sent, with it {} + {} of {sent4} + {sent6} sent; SYNs from one \
             source without the filter {} of {syns}, with it {} (bucket {SYN_BURST} + \
             {SYN_RATE}/s over {took:?}); real lookups answered {answered} of {} during the \
             flood, stack real_dns {}, real_ntp {}; filtered phase {:?}",
            unfiltered.packets("spoofed4"),
            unfiltered.packets("spoofed6"),
            filtered.packets("spoofed4"),
            filtered.packets("spoofed6"),
            unfiltered.packets("syn"),
            filtered.packets("syn"),
            floods.lookups,
            filtered.packets("real_dns"),
            filtered.packets("real_ntp"),
            started.elapsed(),
        );
        assert_eq!(
            (filtered.packets("spoofed4"), filtered.packets("spoofed6")),
            (0, 0),
            "{label}: spoofed answers at the stack; the filter's counters: {:?}",
            stats.nonzero()
        );
        stats.assert_shown(
            Reason::DropUnsolicitedDns,
            u64::from(sent4 + sent6),
            "spoofed answers sent (none reached the stack)",
        );
        let passed = filtered.packets("syn");
        let most = SYN_BURST + SYN_RATE * (took.as_millis() as u64 + 999) / 1000;
        assert!(
            (SYN_BURST..=most).contains(&passed),
            "{label}: {passed} of {syns} SYNs reached the stack; the bucket allows {SYN_BURST} \
             to {most}; the filter's counters: {:?}",
            stats.nonzero()
        );
        stats.assert_shown(
            Reason::DropSynSource,
            u64::from(syns) - passed,
            "SYNs sent less those that reached the stack",
        );
        if let Some(encap) = self.tunnelled {
            let after = ctl
                .tunnelled(gw, iface)
                .expect("filter-ctl stats --tunnelled");
            let moved = |reason| {
                let count = |rows: &Tunnelled| rows.counted(encap, reason).map_or(0, |r| r.packets);
                count(&after) - count(&tunnelled_before)
            };
            assert_eq!(
                (
                    moved(Reason::DropUnsolicitedDns),
                    moved(Reason::DropSynSource)
                ),
                (u64::from(sent4), u64::from(syns) - passed),
                "{label}: {} rows of stats --tunnelled (spoofed IPv4 answers, SYNs dropped): {after:?}",
                encap.name()
            );
        }
        assert_eq!(answered, floods.lookups, "{label}: real lookups answered");
        assert!(
            filtered.packets("real_dns") >= floods.lookups as u64,
            "{filtered:?}"
        );
        if let Some(aaaa) = aaaa {
            assert_eq!(
                aaaa.expect("a lookup over IPv6"),
                IpAddr::V6(addr::DNS_ANSWER6)
            );
        }
        ntp.expect("an NTP exchange through the filter");
        assert!(filtered.packets("real_ntp") >= 1, "{filtered:?}");
        // Egress recorded every query that left through `iface`: the
        // lookups, at least one NTP request, the IPv6 lookup if it went
        // that way.
        let recorded = floods.lookups as u64 + 1 + u64::from(self.aaaa == Some(true));
        assert!(
            stats.packets(Reason::EgressQueryRecorded) >= recorded,
            "{label}: {:?}",
            stats.nonzero()
        );
    }
}
