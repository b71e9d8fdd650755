//! Verdict tests of IP inside IP on the Ethernet device (issue 22): IPv4
//! inside IPv6 (DS-Lite, MAP-E; with the encapsulation limit option Linux's
//! ip6tnl adds by default, and without) and IPv6 inside IPv4 (6in4, 6rd)
//! meet every rule as the packet inside, under the same reason as the bare
//! packet: the reflection defence (the query recorded by the egress
//! program from the wrapped query), the SYN source bucket, the limits on
//! DNS queries (no slip reply over a tunnel: the drop), the lists (inner
//! addresses). A tunnel inside the tunnel passes; the outer datagram's
//! later fragments follow its first. Real object, crafted frames,
//! BPF_PROG_TEST_RUN (tests::bpf); exact counters every time, the
//! tunnelled ones (by encapsulation) too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{Encap, Reason};
use filter_ctl::lists::List;
use harness::packet::{
    DEFAULT_ENCAP_LIMIT, ExtHeader, Frame, PacketBuilder, addr, dns_message, tcp_flags,
};
use tests::bpf::{Counts, Filter, Span, TC_ACT_OK, XDP_DROP, XDP_PASS};

const CLIENT_PORT: u16 = 40000;
const TXID: u16 = 0x5a5a;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tunnel {
    /// IPv4 inside IPv6, the encapsulation limit option first (ip6tnl's default).
    FourInSixLimited,
    /// IPv4 inside IPv6, nothing between (ip6tnl `encaplimit none`).
    FourInSix,
    /// IPv6 inside IPv4 (sit).
    SixInFour,
}

const TUNNELS: [Tunnel; 3] = [
    Tunnel::FourInSixLimited,
    Tunnel::FourInSix,
    Tunnel::SixInFour,
];

impl Tunnel {
    fn inner_v6(self) -> bool {
        self == Tunnel::SixInFour
    }

    /// The far end of the tunnel and ours.
    fn ends(self) -> (IpAddr, IpAddr) {
        match self {
            Tunnel::SixInFour => (addr::RELAY_V4.into(), addr::CLIENT_V4.into()),
            _ => (addr::RELAY_V6.into(), addr::CLIENT_V6.into()),
        }
    }

    /// `inner` in this tunnel, inbound (relay to us) or outbound.
    fn wrap(self, inner: PacketBuilder, inbound: bool) -> PacketBuilder {
        let (relay, us) = self.ends();
        let (src, dst) = if inbound { (relay, us) } else { (us, relay) };
        match (self, src, dst) {
            (Tunnel::FourInSixLimited, IpAddr::V6(src), IpAddr::V6(dst)) => {
                inner.in_ipv6(src, dst).encap_limit(DEFAULT_ENCAP_LIMIT)
            }
            (Tunnel::FourInSix, IpAddr::V6(src), IpAddr::V6(dst)) => inner.in_ipv6(src, dst),
            (Tunnel::SixInFour, IpAddr::V4(src), IpAddr::V4(dst)) => inner.in_ipv4(src, dst),
            _ => unreachable!("the ends match the tunnel"),
        }
    }

    /// A bare inner packet from `remote` (a server, an attacker: the IPv4
    /// or IPv6 address of the inner family) to us.
    fn inbound(self, remote: (Ipv4Addr, Ipv6Addr)) -> PacketBuilder {
        if self.inner_v6() {
            PacketBuilder::ipv6(remote.1, addr::CLIENT_V6)
        } else {
            PacketBuilder::ipv4(remote.0, addr::CLIENT_V4)
        }
    }

    fn outbound(self, remote: (Ipv4Addr, Ipv6Addr)) -> PacketBuilder {
        if self.inner_v6() {
            PacketBuilder::ipv6(addr::CLIENT_V6, remote.1)
        } else {
            PacketBuilder::ipv4(addr::CLIENT_V4, remote.0)
        }
    }

    /// The plain pass of the inner family.
    fn pass(self) -> Reason {
        if self.inner_v6() {
            Reason::PassIpv6
        } else {
            Reason::PassIpv4
        }
    }
}

const SERVER: (Ipv4Addr, Ipv6Addr) = (addr::SERVER_V4, addr::SERVER_V6);
const ATTACKER: (Ipv4Addr, Ipv6Addr) = (addr::ATTACKER_V4, addr::ATTACKER_V6);

fn len(frame: &Frame) -> u64 {
    frame.len() as u64
}

/// The tunnel the filter unwraps `frame` from, if any: IPv4 inside IPv6
/// or IPv6 inside IPv4 (its outer header and the one it carries).
fn unwrapped(frame: &Frame) -> Option<Encap> {
    let outer = frame.outer_l3?;
    match (frame[outer] >> 4, frame[frame.l3] >> 4) {
        (6, 4) => Some(Encap::Ipv4InIpv6),
        (4, 6) => Some(Encap::Ipv6InIpv4),
        _ => None,
    }
}

/// The verdict on `frame`, checked, and exactly `reason` counted for it;
/// also under its encapsulation if it was unwrapped, else there nothing.
#[track_caller]
fn judged(filter: &Filter, frame: &Frame, action: u32, reason: Reason, context: &str) {
    let before = filter.counts();
    let tunnelled = filter.tunnelled();
    assert_eq!(filter.ingress(frame), action, "{context}");
    filter.assert_moved(&before, &[(reason, 1, len(frame))], context);
    let expected: Vec<_> = unwrapped(frame)
        .map(|encap| (encap, reason, 1, len(frame)))
        .into_iter()
        .collect();
    filter.assert_tunnelled(&tunnelled, &expected, context);
}

fn dns_answer(tunnel: Tunnel, from: (Ipv4Addr, Ipv6Addr), id: u16) -> PacketBuilder {
    tunnel
        .inbound(from)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(id, true, 200))
}

fn dns_query(tunnel: Tunnel, id: u16) -> PacketBuilder {
    tunnel
        .outbound(SERVER)
        .udp(CLIENT_PORT, 53)
        .payload(&dns_message(id, false, 20))
}

/// An NTP packet of `mode` with a transmit timestamp.
fn ntp(mode: u8) -> Vec<u8> {
    let mut payload = vec![0u8; 48];
    payload[0] = (4 << 3) | mode;
    payload[40..48].copy_from_slice(&0xe9a1_2345_6789_abcdu64.to_be_bytes());
    payload
}

#[test]
fn reflection_inside_a_tunnel_meets_the_rules_of_a_bare_packet() {
    for tunnel in TUNNELS {
        let filter = Filter::load();
        let context = |what: &str| format!("{tunnel:?}: {what}");
        let answer = tunnel.wrap(dns_answer(tunnel, SERVER, TXID), true).build();
        judged(
            &filter,
            &answer,
            XDP_DROP,
            Reason::DropUnsolicitedDns,
            &context("a DNS answer before its query"),
        );
        let bare = dns_answer(tunnel, SERVER, TXID).build();
        judged(
            &filter,
            &bare,
            XDP_DROP,
            Reason::DropUnsolicitedDns,
            &context("the same answer bare"),
        );

        // The wrapped query, through egress, records the inner packet's key.
        let query = tunnel.wrap(dns_query(tunnel, TXID), false).build();
        let before = filter.counts();
        assert_eq!(filter.egress(&query), TC_ACT_OK, "{tunnel:?}: egress");
        filter.assert_moved(
            &before,
            &[(Reason::EgressQueryRecorded, 1, len(&query))],
            &context("the wrapped query"),
        );
        judged(
            &filter,
            &answer,
            XDP_PASS,
            Reason::PassSolicited,
            &context("the answer to the wrapped query"),
        );
        judged(
            &filter,
            &answer,
            XDP_DROP,
            Reason::DropUnsolicitedDns,
            &context("the answer replayed"),
        );

        let ntp_answer = tunnel
            .wrap(
                tunnel
                    .inbound(SERVER)
                    .udp(123, CLIENT_PORT)
                    .payload(&ntp(4)),
                true,
            )
            .build();
        judged(
            &filter,
            &ntp_answer,
            XDP_DROP,
            Reason::DropUnsolicitedNtp,
            &context("an unsolicited NTP answer"),
        );
        let monlist = tunnel
            .wrap(
                tunnel.inbound(ATTACKER).udp(40123, 123).payload(&ntp(7)),
                true,
            )
            .build();
        judged(
            &filter,
            &monlist,
            XDP_DROP,
            Reason::DropNtpControl,
            &context("an NTP mode 7 request"),
        );
        let other = tunnel
            .wrap(tunnel.inbound(SERVER).udp(4000, 5000), true)
            .build();
        judged(
            &filter,
            &other,
            XDP_PASS,
            tunnel.pass(),
            &context("UDP no rule looks at"),
        );
    }
}

/// Runs `frame` `n` times in one test run: the counters before and after,
/// and the span of the programs' clock it took.
fn run(filter: &Filter, frame: &Frame, n: u32) -> (Counts, Counts, Span) {
    let before = filter.counts();
    let ((), span) = Span::around(|| {
        filter.try_ingress(frame, n).expect("test run");
    });
    (before, filter.counts(), span)
}

fn moved(before: &Counts, after: &Counts, reason: Reason) -> u64 {
    after[reason.index() as usize].packets - before[reason.index() as usize].packets
}

#[test]
fn a_syn_flood_inside_a_tunnel_meets_its_source_bucket() {
    for tunnel in TUNNELS {
        let mut filter = Filter::load();
        filter.set(&[
            ("syn_prefix_rate", "off"),
            ("syn_global_rate", "off"),
            ("syn_halfopen_budget", "off"),
            ("syn_halfopen_prefix_budget", "off"),
            ("syn_source_rate", "1/s"),
            ("syn_source_burst", "4"),
        ]);
        let syn = tunnel
            .wrap(
                tunnel.inbound(ATTACKER).tcp(40000, 80, tcp_flags::SYN),
                true,
            )
            .build();
        let (before, after, span) = run(&filter, &syn, 10);
        let passed = moved(&before, &after, Reason::PassSyn);
        assert!(
            (4..=4 + span.refill(1)).contains(&passed),
            "{tunnel:?}: {passed} SYNs past a burst of 4"
        );
        filter.assert_moved(
            &before,
            &[
                (Reason::PassSyn, passed, passed * len(&syn)),
                (
                    Reason::DropSynSource,
                    10 - passed,
                    (10 - passed) * len(&syn),
                ),
            ],
            &format!("{tunnel:?}: one source's SYNs"),
        );
    }
}

/// A DNS query for example.org TXT, a shape that gets a slip reply bare.
fn txt_query(id: u16) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend(id.to_be_bytes());
    message.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    message.extend(b"\x07example\x03org\x00");
    message.extend([0, 16, 0, 1]);
    message
}

#[test]
fn dns_queries_inside_a_tunnel_meet_their_limits_and_get_no_slip() {
    for tunnel in TUNNELS {
        let mut filter = Filter::load();
        filter.set(&[
            ("dns_query_prefix_rate", "off"),
            ("dns_query_global_rate", "off"),
            ("dns_slip_rate", "off"),
            ("dns_query_source_rate", "1/s"),
            ("dns_query_source_burst", "2"),
            // Every query over its limit would get the slip, bare.
            ("dns_slip", "1"),
        ]);
        let query = |from| {
            tunnel
                .inbound(from)
                .udp(CLIENT_PORT, 53)
                .payload(&txt_query(TXID))
        };
        let wrapped = tunnel.wrap(query(ATTACKER), true).build();
        let (before, after, span) = run(&filter, &wrapped, 5);
        let passed = moved(&before, &after, Reason::PassDnsQuery);
        assert!(
            (2..=2 + span.refill(1)).contains(&passed),
            "{tunnel:?}: {passed} queries past a burst of 2"
        );
        // Over the limit: dropped, never answered (the slip would have to
        // go back inside the tunnel).
        filter.assert_moved(
            &before,
            &[
                (Reason::PassDnsQuery, passed, passed * len(&wrapped)),
                (
                    Reason::DropDnsQuerySource,
                    5 - passed,
                    (5 - passed) * len(&wrapped),
                ),
            ],
            &format!("{tunnel:?}: one source's queries"),
        );
        // The same source bare has used up the same bucket, and gets the slip.
        let bare = query(ATTACKER).build();
        let before = filter.counts();
        assert_eq!(
            filter.ingress(&bare),
            tests::bpf::XDP_TX,
            "{tunnel:?}: bare"
        );
        filter.assert_moved(
            &before,
            &[(Reason::TxDnsTruncated, 1, len(&bare))],
            &format!("{tunnel:?}: the bare query over the limit"),
        );
    }
}

#[test]
fn the_lists_see_the_inner_addresses() {
    for tunnel in TUNNELS {
        let mut filter = Filter::load();
        let context = |what: &str| format!("{tunnel:?}: {what}");
        let (relay, _) = tunnel.ends();
        filter.list_add(List::Deny, &["203.0.113.0/24", "2001:db8:3::/48"], None);
        filter.list_add(List::Allow, &["198.51.100.53/32", "2001:db8:2::/48"], None);
        let syn = |from| tunnel.wrap(tunnel.inbound(from).tcp(40000, 80, tcp_flags::SYN), true);
        judged(
            &filter,
            &syn(ATTACKER).build(),
            XDP_DROP,
            Reason::DropDenyList,
            &context("a denied inner source"),
        );
        judged(
            &filter,
            &tunnel.wrap(dns_answer(tunnel, SERVER, TXID), true).build(),
            XDP_PASS,
            Reason::PassAllowList,
            &context("an allowed inner source's unsolicited answer"),
        );
        // The relay's address is on no list's mind: deny it, and what it
        // carries is judged by its own addresses.
        let relay_prefix = match relay {
            IpAddr::V4(v4) => format!("{v4}/32"),
            IpAddr::V6(v6) => format!("{v6}/128"),
        };
        filter.list_add(List::Deny, &[relay_prefix.as_str()], None);
        let other = (
            Ipv4Addr::new(192, 0, 2, 77),
            Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 1),
        );
        judged(
            &filter,
            &tunnel
                .wrap(tunnel.inbound(other).udp(4000, 5000), true)
                .build(),
            XDP_PASS,
            tunnel.pass(),
            &context("a denied relay's packet from an unlisted source"),
        );
    }
}

#[test]
fn a_tunnel_inside_the_tunnel_passes() {
    // An unsolicited DNS answer, dropped at one level, carried two deep.
    let innermost = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(TXID, true, 200))
        .build();
    let six_in_four = PacketBuilder::ipv4(addr::RELAY_V4, addr::CLIENT_V4)
        .protocol(41)
        .payload(&innermost[innermost.l3..])
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
        .encap_limit(DEFAULT_ENCAP_LIMIT)
        .build();
    let filter = Filter::load();
    judged(
        &filter,
        &six_in_four,
        XDP_PASS,
        Reason::PassIpv4,
        "6in4 inside 4in6: one unwrap, then IPv4 of protocol 41",
    );
    // The same answer one level deep is dropped.
    let one_deep = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(TXID, true, 200))
        .in_ipv4(addr::RELAY_V4, addr::CLIENT_V4)
        .build();
    judged(
        &filter,
        &one_deep,
        XDP_DROP,
        Reason::DropUnsolicitedDns,
        "6in4",
    );
}

#[test]
fn ipv4_inside_ipv4_is_not_unwrapped() {
    // No access line carries IPIP: it passes as any other protocol would.
    let filter = Filter::load();
    let ipip = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(TXID, true, 200))
        .in_ipv4(addr::RELAY_V4, addr::CLIENT_V4)
        .build();
    judged(&filter, &ipip, XDP_PASS, Reason::PassIpv4, "IPIP");
}

/// A destination options header of one PadN option of `n` bytes.
fn padding(n: u8) -> ExtHeader {
    let mut options = vec![1, n];
    options.resize(2 + usize::from(n), 0);
    ExtHeader::DestinationOptions(options)
}

#[test]
fn an_inner_header_too_deep_is_malformed() {
    // 88 bytes of outer options put the inner header at 14 + 40 + 88 = 142,
    // past the 128 the parser follows a tunnel to.
    let filter = Filter::load();
    let deep = dns_answer(Tunnel::FourInSix, SERVER, TXID)
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
        .outer_ext(padding(84))
        .build();
    assert_eq!(deep.l3, 142);
    judged(&filter, &deep, XDP_PASS, Reason::PassMalformed, "too deep");
    let deepest_followed = dns_answer(Tunnel::FourInSix, SERVER, TXID)
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
        .outer_ext(padding(68))
        .build();
    assert_eq!(deepest_followed.l3, 126);
    judged(
        &filter,
        &deepest_followed,
        XDP_DROP,
        Reason::DropUnsolicitedDns,
        "deep, but within reach",
    );
}

#[test]
fn the_outer_datagrams_later_fragments_follow_its_first() {
    for tunnel in TUNNELS {
        let filter = Filter::load();
        let context = |what: &str| format!("{tunnel:?}: {what}");
        let fragment = |inner: PacketBuilder, id: u32, more: bool, offset: u16| {
            tunnel
                .wrap(inner, true)
                .outer_fragment(id, more, offset)
                .build()
        };
        // An unsolicited answer in the first fragment: dropped, and so is
        // the rest of the outer datagram.
        let answer = || dns_answer(tunnel, SERVER, TXID);
        judged(
            &filter,
            &fragment(answer(), 7, true, 0),
            XDP_DROP,
            Reason::DropUnsolicitedDns,
            &context("the first fragment"),
        );
        judged(
            &filter,
            &fragment(answer(), 7, false, 100),
            XDP_DROP,
            Reason::DropFragment,
            &context("its later fragment"),
        );
        // Plain UDP in the first fragment: it passes, and so does the rest.
        let other = || tunnel.inbound(SERVER).udp(4000, 5000).payload(&[0; 64]);
        judged(
            &filter,
            &fragment(other(), 8, true, 0),
            XDP_PASS,
            tunnel.pass(),
            &context("a first fragment no rule drops"),
        );
        judged(
            &filter,
            &fragment(other(), 8, false, 100),
            XDP_PASS,
            Reason::PassFragment,
            &context("its later fragment"),
        );
        // A later fragment whose first never came: the orphan policy (drop).
        judged(
            &filter,
            &fragment(other(), 9, false, 100),
            XDP_DROP,
            Reason::DropOrphanFragment,
            &context("an orphan later fragment"),
        );
    }
}

#[test]
fn an_outer_first_fragment_cut_inside_the_inner_header_passes_as_malformed() {
    for tunnel in TUNNELS {
        let filter = Filter::load();
        let context = |what: &str| format!("{tunnel:?}: {what}");
        let first = tunnel
            .wrap(dns_answer(tunnel, SERVER, TXID), true)
            .outer_fragment(11, true, 0)
            .build();
        // Cut 10 bytes into the inner IP header. The outer lengths still
        // say more: the filter reads the frame's bytes, not its lengths.
        let cut = Frame {
            bytes: first.truncated(first.l3 + 10),
            ..first.clone()
        };
        judged(
            &filter,
            &cut,
            XDP_PASS,
            Reason::PassMalformed,
            &context("inner header cut short"),
        );
        let later = tunnel
            .wrap(dns_answer(tunnel, SERVER, TXID), true)
            .outer_fragment(11, false, 100)
            .build();
        judged(
            &filter,
            &later,
            XDP_PASS,
            Reason::PassFragment,
            &context("the rest follows the pass"),
        );
    }
}
