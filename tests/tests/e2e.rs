//! End-to-end tests: the real `filter-ctl` binary attaches the filter to the
//! `wan0` of a gateway namespace, real traffic flows between namespaces, and
//! the counters must match what was sent.
//!
//! Needs root. Every test builds its own lab (unique namespace and pin-root
//! names), so tests run in parallel, and everything is removed when a test
//! ends, also when it fails. The filter-ctl binary is found as described in
//! [`harness::ctl::binary`]: build it first (`cargo build -p filter-ctl`, or
//! `cargo xtask test`, which does).
//!
//! Exact counts are possible because the lab's links carry nothing but the
//! test's traffic: neighbours are permanent (no ARP or neighbour discovery),
//! DAD, router solicitations and autoconfiguration are off, and the lab waits
//! for the kernel's MLD reports to be over before it is handed out.
//! [`lab_links_are_quiet`] checks that assumption directly.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Shutdown, SocketAddr},
    thread,
    time::Duration,
};

use filter_common::Reason;
use harness::{
    bpffs::BpffsDir,
    ctl::report::{EgressHook, XdpMode},
    fixture::FilterLab,
    kernel,
    lab::{GW_LAN_IF, INET_BRIDGE, LAN_IF, StackCounters, Topology, WAN_IF, addr},
    names::TEST_PIN_PREFIX,
    netns::sockets::unspecified,
    process,
    servers::local::{TcpEchoServer, UdpServer},
};

/// Ethernet + IPv4 / IPv6 header lengths: the filter counts whole frames.
const ETH: u64 = 14;
const IPV4: u64 = 20;
const IPV6: u64 = 40;
const UDP: u64 = 8;
/// iputils ping: 56 bytes of data after the 8-byte ICMP header.
const PING: u64 = 8 + 56;
/// An ARP request or reply for IPv4 over Ethernet (unpadded on veth).
const ARP: u64 = 14 + 28;

fn lab() -> FilterLab {
    FilterLab::build()
}

fn id(id: Option<u32>, what: &str) -> u32 {
    id.unwrap_or_else(|| panic!("no {what} in the status"))
}

/// Waits until `f` is true (the kernel frees programs asynchronously).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    process::wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || Ok(f()),
    )
    .unwrap_or_else(|_| panic!("{what}: still not true after 5 s"));
}

#[test]
fn lab_links_are_quiet() {
    let lab = lab();
    let t = &lab.topo;
    let links = [
        (&t.internet, INET_BRIDGE),
        (&t.gateway, WAN_IF),
        (&t.gateway, GW_LAN_IF),
        (&t.lan, LAN_IF),
    ];
    let count = || -> Vec<(u64, u64)> {
        links
            .iter()
            .map(|(ns, iface)| ns.link_packets(iface).unwrap())
            .collect()
    };
    let before = count();
    thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count(),
        before,
        "the lab's links carried traffic nobody sent"
    );
}

#[test]
fn wan_host_reaches_wan0_directly() {
    let mut lab = lab();
    lab.attach(None);
    let server = UdpServer::start(lab.gw(), Topology::gateway_wan(false, 5300), false).unwrap();
    let server6 = UdpServer::start(lab.gw(), Topology::gateway_wan(true, 5300), false).unwrap();
    // Adding the host sends its MLD reports to wan0 too: count from here on.
    lab.topo.add_wan_host().unwrap();
    let host = &lab.topo.wan_hosts[0];
    let start = lab.stats();
    let from = host.send_udp(server.addr(), 30, 100).unwrap();
    host.send_udp(server6.addr(), 20, 100).unwrap();
    assert_eq!(server.wait_for(30, Duration::from_secs(5)), 30);
    assert_eq!(server6.wait_for(20, Duration::from_secs(5)), 20);
    assert_eq!(server.senders(), vec![from]);
    assert_eq!(from.ip(), IpAddr::from(addr::wan_host4(0)));
    assert_eq!(server6.senders()[0].ip(), IpAddr::from(addr::wan_host6(0)));
    let ping = host.ping(addr::SERVER4.into(), 2).unwrap();
    assert_eq!(ping.received, 2, "the host reaches the internet too");
    lab.flush();
    let delta = lab.stats().since(&start);
    assert_eq!(delta.packets(Reason::PassIpv4), 30);
    assert_eq!(delta.packets(Reason::PassIpv6), 20);
    assert_eq!(delta.nonzero().len(), 2, "{delta:?}");
}

#[test]
fn attach_status_detach_leaves_nothing_behind() {
    let lab = lab();
    let out = lab.attach(None);
    assert!(
        out.contains("attached filter on wan0 in native mode"),
        "veth supports native XDP: {out}"
    );

    let status = lab.status();
    assert_eq!(status.iface, "wan0");
    assert!(status.attached);
    assert!(status.iface_present);
    assert_eq!(status.xdp_mode, Some(XdpMode::Native));
    // TCX links exist from Linux 6.6; before, the egress program is a netlink
    // filter on a clsact qdisc (the VM legs boot 6.1 and 6.12).
    let tcx =
        aya::util::KernelVersion::current().unwrap() >= aya::util::KernelVersion::new(6, 6, 0);
    assert_eq!(
        status.egress_hook,
        Some(if tcx {
            EgressHook::Tcx
        } else {
            EgressHook::Clsact
        })
    );
    let (xdp_prog, tc_prog) = (
        id(status.xdp_program_id, "XDP program"),
        id(status.egress_program_id, "egress program"),
    );
    let xdp_link = id(status.xdp_link_id, "XDP link");
    assert_eq!(
        kernel::xdp_on(lab.gw(), WAN_IF).unwrap(),
        Some(("native".to_owned(), xdp_prog)),
        "ip link shows the program status reports"
    );
    assert!(kernel::program_exists(xdp_prog).unwrap());
    assert!(kernel::program_exists(tc_prog).unwrap());
    assert!(kernel::link_exists(xdp_link).unwrap());
    let pins = lab.ctl.pin_root();
    assert!(pins.is_dir(), "pins under {}", pins.display());

    // The human forms work too.
    let text = lab.ctl.run(lab.gw(), ["status"]).unwrap();
    assert!(text.contains("wan0: attached, XDP native mode"), "{text}");
    let table = lab.ctl.run(lab.gw(), ["stats", "--iface", WAN_IF]).unwrap();
    assert!(table.contains("pass_ipv4"), "{table}");

    let out = lab.ctl.detach(lab.gw(), WAN_IF).unwrap();
    assert!(out.contains("detached filter from wan0"), "{out}");

    assert!(!pins.exists(), "pin root {} still there", pins.display());
    assert_eq!(kernel::xdp_on(lab.gw(), WAN_IF).unwrap(), None);
    let link = lab.gw().ip(["-d", "link", "show", "dev", WAN_IF]).unwrap();
    assert!(!link.contains("xdp"), "{link}");
    // bpftool 7.1 `net show` does not list TCX: look the programs up by id.
    eventually("the XDP program is freed", || {
        !kernel::program_exists(xdp_prog).unwrap()
    });
    eventually("the egress program is freed", || {
        !kernel::program_exists(tc_prog).unwrap()
    });
    assert!(!kernel::link_exists(xdp_link).unwrap());
    assert!(lab.ctl.status(lab.gw(), None).unwrap().is_empty());

    // The interface works as before.
    let ping = lab.topo.internet.ping(addr::GW_WAN4.into(), 3).unwrap();
    assert_eq!(ping.received, 3, "{ping:?}");
    let ping = lab.topo.internet.ping(addr::GW_WAN6.into(), 3).unwrap();
    assert_eq!(ping.received, 3, "{ping:?}");

    // Nothing left to detach or count: clear errors.
    let err = lab.failure(&["detach", "--iface", WAN_IF]);
    assert!(err.contains("not attached to wan0"), "{err}");
    let err = lab.failure(&["stats", "--iface", WAN_IF]);
    assert!(err.contains("not attached to wan0"), "{err}");
}

/// Datagrams too big for the link (the internet's stack fragments each
/// into three) and datagrams from the DNS port too short for a DNS header,
/// sent with the ordinary ones.
const BIG: u32 = 3;
const BIG_LEN: usize = 3000;
const SHORT: u32 = 4;

/// Pings, UDP datagrams, fragmented datagrams and too short "DNS" datagrams
/// from the internet to wan0, and for IPv4 the internet's ARP request for
/// wan0's address first: the filter counts exactly them, in packets and
/// bytes, each under its reason (`pass_ipv4`/`pass_ipv6`, `pass_fragment`,
/// `pass_malformed`, `pass_not_ip`), and the echo replies (and the ARP
/// reply) out; nftables saw exactly them reach the stack.
fn counted_exactly(v6: bool, pings: u32, datagrams: u32, len: u64) {
    let lab = lab();
    lab.attach(None);
    lab.gw()
        .nft(&format!(
            "table netdev exact {{\n    counter short_dns {{ }}\n    chain wan_ingress {{\n        \
             type filter hook ingress device \"{WAN_IF}\" priority -450; policy accept;\n        \
             udp sport 53 udp length < 20 counter name \"short_dns\"\n    }}\n}}\n"
        ))
        .unwrap();
    let start = lab.stats();
    assert_eq!(start.nonzero(), vec![], "nothing flowed yet");
    let stack_start = lab.topo.stack_counters().unwrap();
    let inet = &lab.topo.internet;
    if !v6 {
        // The internet forgets wan0's MAC address: its first ping asks by ARP.
        inet.ip([
            "neigh",
            "del",
            &addr::GW_WAN4.to_string(),
            "dev",
            INET_BRIDGE,
        ])
        .unwrap();
    }

    let server = UdpServer::start(lab.gw(), Topology::gateway_wan(v6, 5300), false).unwrap();
    let ping = inet.ping(server.addr().ip(), pings).unwrap();
    assert_eq!(ping.received, pings, "{ping:?}");
    inet.send_udp(server.addr(), datagrams, len as usize)
        .unwrap();
    inet.send_udp(server.addr(), BIG, BIG_LEN).unwrap();
    let from_53 = inet
        .udp_bind(SocketAddr::new(unspecified(server.addr()).ip(), 53))
        .unwrap();
    for _ in 0..SHORT {
        from_53.send_to(&[0x12, 0x34], server.addr()).unwrap();
    }
    let all = u64::from(datagrams + BIG + SHORT);
    assert_eq!(server.wait_for(all, Duration::from_secs(5)), all);
    let (stats, stack) = lab.settled();
    let (delta, stack) = (stats.since(&start), stack.since(&stack_start));
    let short = StackCounters::parse(
        &lab.gw()
            .run(["nft", "list", "counters", "table", "netdev", "exact"])
            .unwrap(),
    )
    .unwrap();

    let (pings, datagrams) = (u64::from(pings), u64::from(datagrams));
    let (ip, pass, family, other_family) = if v6 {
        (IPV6, Reason::PassIpv6, "6", "ipv4")
    } else {
        (IPV4, Reason::PassIpv4, "4", "ipv6")
    };
    let counter = |name: &str| format!("{name}{family}");
    let (big, short_count) = (u64::from(BIG), u64::from(SHORT));
    let arp = u64::from(!v6);
    // The stack's view, independently of the filter.
    assert_eq!(stack.packets(&counter("icmp")), pings);
    assert_eq!(stack.packets(&counter("fragments")), 2 * big, "{stack:?}");
    assert_eq!(
        stack.packets(&counter("udp")),
        datagrams + 3 * big + short_count
    );
    assert_eq!(short.packets("short_dns"), short_count);
    assert_eq!(stack.packets("arp_any"), arp);
    assert_eq!(stack.packets(other_family) + stack.packets("other"), 0);

    // The filter's, against it: the whole frames, Ethernet header included.
    let passed =
        stack.packets(&counter("ipv")) - stack.packets(&counter("fragments")) - short_count;
    let what = "IP packets at the stack, less later fragments and short DNS-port datagrams";
    // Each reason named (the guard, coverage.rs, reads them).
    if v6 {
        delta.assert_shown(Reason::PassIpv6, passed, what);
    } else {
        delta.assert_shown(Reason::PassIpv4, passed, what);
    }
    delta.assert_shown(
        Reason::PassFragment,
        stack.packets(&counter("fragments")),
        "later fragments at the stack",
    );
    delta.assert_shown(
        Reason::PassMalformed,
        short.packets("short_dns"),
        "datagrams from port 53 too short for DNS at the stack",
    );
    let ping_bytes = pings * (ETH + ip + PING);
    let udp_bytes = datagrams * (ETH + ip + UDP + len);
    let short_bytes = short_count * (ETH + ip + UDP + 2);
    assert_eq!(
        delta.bytes(pass) + delta.bytes(Reason::PassFragment) + delta.bytes(Reason::PassMalformed),
        stack.bytes(&counter("ipv")) + ETH * stack.packets(&counter("ipv")),
        "the filter's bytes are the stack's, plus an Ethernet header each"
    );
    assert_eq!(delta.bytes(Reason::PassMalformed), short_bytes);
    let first_fragments = delta.bytes(pass) - ping_bytes - udp_bytes;
    assert_eq!(
        first_fragments + delta.bytes(Reason::PassFragment),
        big * (3 * (ETH + ip) + UDP + BIG_LEN as u64 + if v6 { 3 * 8 } else { 0 }),
        "each big datagram whole in three fragments (IPv6: a fragment header each)"
    );
    // ARP is not IP: pass_not_ip, the one request; its reply goes out.
    let egress = pings + arp;
    let egress_bytes = ping_bytes + arp * ARP;
    let mut expected = vec![
        ("egress_other".to_owned(), egress, egress_bytes),
        (
            "pass_fragment".to_owned(),
            2 * big,
            delta.bytes(Reason::PassFragment),
        ),
        (
            pass.name().to_owned(),
            pings + datagrams + big,
            delta.bytes(pass),
        ),
        ("pass_malformed".to_owned(), short_count, short_bytes),
    ];
    if !v6 {
        delta.assert_shown(
            Reason::PassNotIp,
            stack.packets("arp_any"),
            "ARP requests at the stack",
        );
        expected.push(("pass_not_ip".to_owned(), 1, ARP));
    }
    delta.assert_shown(
        Reason::EgressOther,
        u64::from(ping.received) + arp,
        "echo replies the internet received (IPv4: and the ARP reply its first ping needed)",
    );
    expected.sort();
    assert_eq!(
        delta.nonzero(),
        expected,
        "exactly the pings, datagrams and fragments in, the replies out"
    );
}

#[test]
fn ipv4_from_the_internet_is_counted_exactly() {
    counted_exactly(false, 5, 100, 200);
}

#[test]
fn ipv6_from_the_internet_is_counted_exactly() {
    counted_exactly(true, 4, 60, 500);
}

#[test]
fn lan_client_reaches_the_internet_through_the_gateway() {
    let lab = lab();
    lab.attach(None);
    let start = lab.stats();
    let (lan, inet) = (&lab.topo.lan, &lab.topo.internet);

    // IPv4: masqueraded on wan0, so the server sees the gateway's address.
    let echo4 = UdpServer::start(inet, Topology::server(false, 7000), true).unwrap();
    let (pings, requests) = (3, 20);
    let ping = lan.ping(addr::SERVER4.into(), pings).unwrap();
    assert_eq!(ping.received, pings, "{ping:?}");
    let answered = lan
        .udp_exchange(echo4.addr(), requests, Duration::from_secs(2))
        .unwrap();
    assert_eq!(answered, requests, "every UDP request answered through NAT");
    let senders: Vec<IpAddr> = echo4.senders().iter().map(|s| s.ip()).collect();
    assert_eq!(
        senders,
        vec![IpAddr::from(addr::GW_WAN4)],
        "NAT hides the LAN"
    );

    // IPv6: routed, so the server sees the client itself.
    let echo6 = UdpServer::start(inet, Topology::server(true, 7000), true).unwrap();
    let ping = lan.ping(addr::SERVER6.into(), pings).unwrap();
    assert_eq!(ping.received, pings, "{ping:?}");
    let answered = lan
        .udp_exchange(echo6.addr(), requests, Duration::from_secs(2))
        .unwrap();
    assert_eq!(answered, requests);
    let senders: Vec<IpAddr> = echo6.senders().iter().map(|s| s.ip()).collect();
    assert_eq!(senders, vec![IpAddr::from(addr::LAN_CLIENT6)]);
    lab.flush();

    // Each request went out of wan0 and each answer came in.
    let delta = lab.stats().since(&start);
    let each = u64::from(pings + requests);
    for (reason, packets) in [
        (Reason::EgressOther, 2 * each),
        (Reason::PassIpv4, each),
        (Reason::PassIpv6, each),
    ] {
        assert_eq!(delta.packets(reason), packets, "{reason:?}: {delta:?}");
    }
    assert_eq!(delta.nonzero().len(), 3, "{delta:?}");
}

#[test]
fn tcp_connections_count_the_same_as_the_stack() {
    let lab = lab();
    lab.attach(None);
    let start = lab.stats();
    let stack_start = lab.topo.stack_counters().unwrap();

    for v6 in [false, true] {
        let server = TcpEchoServer::start(lab.gw(), Topology::gateway_wan(v6, 8080)).unwrap();
        let mut stream = lab
            .topo
            .internet
            .tcp_connect(server.addr(), Duration::from_secs(3))
            .unwrap();
        stream.write_all(b"hello through the filter").unwrap();
        let mut echoed = [0u8; 24];
        stream.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"hello through the filter");
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(server.connections(), 1);
    }
    // TCP's packet count depends on ACK timing, so compare with what reached
    // the stack rather than a fixed number. Small writes and GRO: on this path
    // no segments are merged, so the two counts agree exactly.
    let (stats, stack) = lab.settled();
    let delta = stats.since(&start);
    for (reason, counter) in [(Reason::PassIpv4, "tcp4"), (Reason::PassIpv6, "tcp6")] {
        let seen = stack.packets(counter) - stack_start.packets(counter);
        assert!(seen >= 4, "SYN, ACK, data, FIN at least: {seen}");
        // The connection's SYN is counted as pass_syn, the ACK that
        // completes its handshake as pass_handshake.
        assert_eq!(delta.packets(reason) + 2, seen, "{reason:?}: {delta:?}");
    }
    assert_eq!(delta.packets(Reason::PassSyn), 2, "{delta:?}");
    assert_eq!(delta.packets(Reason::PassHandshake), 2, "{delta:?}");
    assert_eq!(
        delta.packets(Reason::EgressHandshakeRecorded),
        2,
        "{delta:?}"
    );
}

#[test]
fn attaching_again_replaces_the_program_and_keeps_the_counters() {
    let lab = lab();
    lab.attach(None);
    let first = lab.status();
    let server = UdpServer::start(lab.gw(), Topology::gateway_wan(false, 5300), false).unwrap();
    lab.topo.internet.send_udp(server.addr(), 10, 64).unwrap();
    assert_eq!(server.wait_for(10, Duration::from_secs(5)), 10);
    lab.flush();
    let before = lab.stats();
    assert_eq!(before.packets(Reason::PassIpv4), 10);

    let out = lab.attach(None);
    assert!(
        out.contains("replaced filter on wan0 in native mode"),
        "{out}"
    );
    let second = lab.status();
    assert!(second.attached);
    assert_eq!(second.xdp_mode, Some(XdpMode::Native));
    assert_eq!(
        second.xdp_link_id, first.xdp_link_id,
        "the same link, with the program swapped"
    );
    let (old, new) = (
        id(first.xdp_program_id, "XDP program"),
        id(second.xdp_program_id, "XDP program"),
    );
    assert_ne!(old, new);
    assert_eq!(
        kernel::xdp_on(lab.gw(), WAN_IF).unwrap(),
        Some(("native".to_owned(), new)),
        "exactly one XDP program on wan0: the new one"
    );
    let old_tc = id(first.egress_program_id, "egress program");
    assert_ne!(second.egress_program_id, Some(old_tc));
    eventually("the replaced programs are freed", || {
        !kernel::program_exists(old).unwrap() && !kernel::program_exists(old_tc).unwrap()
    });

    // Counters survived the swap, and the new program counts into the same map.
    assert_eq!(lab.stats(), before);
    lab.topo.internet.send_udp(server.addr(), 7, 64).unwrap();
    assert_eq!(server.wait_for(17, Duration::from_secs(5)), 17);
    lab.flush();
    assert_eq!(lab.stats().packets(Reason::PassIpv4), 17);

    // Changing the mode needs a detach first.
    let err = lab.failure(&["attach", "--iface", WAN_IF, "--mode", "skb"]);
    assert!(
        err.contains("already attached to wan0 in native mode"),
        "{err}"
    );
    assert_eq!(
        kernel::xdp_on(lab.gw(), WAN_IF).unwrap(),
        Some(("native".to_owned(), new))
    );
}

#[test]
fn skb_mode_attaches_generic_xdp() {
    let lab = lab();
    let out = lab.attach(Some("skb"));
    assert!(out.contains("attached filter on wan0 in skb mode"), "{out}");
    let status = lab.status();
    assert_eq!(status.xdp_mode, Some(XdpMode::Skb));
    let prog = id(status.xdp_program_id, "XDP program");
    assert_eq!(
        kernel::xdp_on(lab.gw(), WAN_IF).unwrap(),
        Some(("skb".to_owned(), prog))
    );
    let link = lab.gw().ip(["-d", "link", "show", "dev", WAN_IF]).unwrap();
    assert!(link.contains("xdpgeneric"), "{link}");

    let ping = lab.topo.internet.ping(addr::GW_WAN4.into(), 3).unwrap();
    assert_eq!(ping.received, 3);
    lab.flush();
    let stats = lab.stats();
    assert_eq!(stats.packets(Reason::PassIpv4), 3);
    assert_eq!(stats.packets(Reason::EgressOther), 3);

    lab.ctl.detach(lab.gw(), WAN_IF).unwrap();
    assert_eq!(kernel::xdp_on(lab.gw(), WAN_IF).unwrap(), None);
    assert!(!lab.ctl.pin_root().exists());
}

/// XDP on a PPP or loopback device sees bare IP packets, which the parser
/// does not expect: attach refuses and says where the filter belongs.
#[test]
fn a_link_type_the_filter_cannot_parse_is_refused() {
    // Devices without an Ethernet header (ppp, WireGuard, tunnels, tun) are
    // attached in skb mode (wan_links_e2e.rs); loopback is no WAN.
    let lab = lab();
    for mode in ["auto", "skb"] {
        let err = lab.failure(&["attach", "--iface", "lo", "--mode", mode]);
        assert!(err.contains("lo has link type loopback"), "{err}");
        assert!(err.contains("devices without a link-layer header"), "{err}");
    }
    assert_eq!(kernel::xdp_on(lab.gw(), "lo").unwrap(), None);
}

#[test]
fn unknown_interface_is_named_in_the_error() {
    let lab = lab();
    for args in [
        &["attach", "--iface", "nosuch0"][..],
        &["attach", "--iface", "nosuch0", "--mode", "native"],
    ] {
        let err = lab.failure(args);
        assert!(
            err.contains("no interface named 'nosuch0'"),
            "{args:?}: {err}"
        );
    }
    let err = lab.failure(&["stats", "--iface", "nosuch0"]);
    assert!(err.contains("nosuch0"), "{err}");
    let err = lab.failure(&["detach", "--iface", "nosuch0"]);
    assert!(err.contains("nosuch0"), "{err}");
    // wan0 is in the gateway namespace, not in the internet one.
    let out = lab
        .ctl
        .output(&lab.topo.internet, ["attach", "--iface", WAN_IF])
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface named 'wan0'"));
    assert!(!lab.ctl.pin_root().exists(), "a failed attach pins nothing");
}

#[test]
fn non_root_is_refused_with_a_clear_message() {
    let lab = lab();
    // A copy that user nobody can run wherever the workspace lives (e.g. /root).
    let dir = tempfile::Builder::new()
        .prefix("wft-bin-")
        .tempdir()
        .unwrap();
    let binary = dir.path().join("filter-ctl");
    std::fs::copy(lab.ctl.binary(), &binary).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    for path in [dir.path(), &binary] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    for args in [
        &["attach", "--iface", WAN_IF][..],
        &["detach", "--iface", WAN_IF],
        &["status"],
        &["stats", "--iface", WAN_IF],
    ] {
        let out = process::output(
            lab.gw()
                .command("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&binary)
                .arg("--pin-root")
                .arg(lab.ctl.pin_root())
                .args(args),
        )
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("needs root"), "{args:?}: {err}");
    }
    assert_eq!(kernel::xdp_on(lab.gw(), WAN_IF).unwrap(), None);
    assert!(!lab.ctl.pin_root().exists());
}

/// Loads the filter's own object through aya, unpinned: a program filter-ctl
/// did not attach and has no pins for.
fn foreign_program() -> aya::Ebpf {
    let mut ebpf = aya::Ebpf::load(filter_ctl::EBPF_OBJECT).expect("loading the object");
    let xdp: &mut aya::programs::Xdp = ebpf
        .program_mut(filter_common::program::INGRESS)
        .unwrap()
        .try_into()
        .unwrap();
    xdp.load().unwrap();
    ebpf
}

fn foreign_xdp(ebpf: &mut aya::Ebpf) -> &mut aya::programs::Xdp {
    ebpf.program_mut(filter_common::program::INGRESS)
        .unwrap()
        .try_into()
        .unwrap()
}

fn assert_refused_and_untouched(lab: &FilterLab, foreign: (String, u32)) {
    assert_eq!(
        kernel::xdp_on(lab.gw(), WAN_IF).unwrap(),
        Some(foreign.clone())
    );
    for mode in ["auto", "native", "skb"] {
        let err = lab.failure(&["attach", "--iface", WAN_IF, "--mode", mode]);
        assert!(
            err.contains("wan0 already has an XDP program that filter-ctl did not attach"),
            "--mode {mode}: {err}"
        );
        assert_eq!(
            kernel::xdp_on(lab.gw(), WAN_IF).unwrap(),
            Some(foreign.clone()),
            "the foreign program is still attached after --mode {mode}"
        );
        assert!(
            !lab.ctl.pin_root().exists(),
            "a refused attach leaves no pins"
        );
        assert!(lab.ctl.status(lab.gw(), None).unwrap().is_empty());
    }
}

#[test]
fn foreign_xdp_program_attached_by_ip_link_is_left_alone() {
    let lab = lab();
    // Someone ran `ip link set dev wan0 xdpgeneric pinned FILE` (netlink, no bpf_link).
    let mut ebpf = foreign_program();
    let pin_dir = BpffsDir::unique(TEST_PIN_PREFIX);
    std::fs::create_dir(pin_dir.path()).unwrap();
    let pinned = pin_dir.path().join("foreign_xdp");
    let xdp = foreign_xdp(&mut ebpf);
    xdp.pin(&pinned).unwrap();
    let foreign_id = xdp.info().unwrap().id();
    // nsenter keeps our mounts, where the pin is (`ip -n` would remount /sys).
    process::run(
        lab.gw()
            .nsenter("ip")
            .args(["link", "set", "dev", WAN_IF, "xdpgeneric", "pinned"])
            .arg(&pinned),
    )
    .unwrap();
    drop(ebpf);

    assert_refused_and_untouched(&lab, ("skb".to_owned(), foreign_id));
    process::run(
        lab.gw()
            .nsenter("ip")
            .args(["link", "set", "dev", WAN_IF, "xdpgeneric", "off"]),
    )
    .unwrap();
}

#[test]
fn foreign_xdp_link_is_left_alone() {
    let lab = lab();
    // Another loader holds a native-mode bpf_link on wan0 (as long as `ebpf` lives).
    let (ebpf, foreign_id) = lab
        .gw()
        .enter(|| {
            let mut ebpf = foreign_program();
            let xdp = foreign_xdp(&mut ebpf);
            xdp.attach(c"wan0", aya::programs::XdpMode::Driver)?;
            let id = xdp.info()?.id();
            Ok((ebpf, id))
        })
        .unwrap();

    assert_refused_and_untouched(&lab, ("native".to_owned(), foreign_id));
    drop(ebpf);
    assert_eq!(kernel::xdp_on(lab.gw(), WAN_IF).unwrap(), None);
    // With the foreign program gone, filter-ctl attaches normally.
    assert!(lab.attach(None).contains("attached filter on wan0"));
}
