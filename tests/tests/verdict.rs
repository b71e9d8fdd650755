//! Verdict tests: the real eBPF object, loaded into this kernel, fed crafted
//! frames through BPF_PROG_TEST_RUN. Each test asserts the verdict and that
//! exactly the expected reason counters moved, by the expected packets and bytes.
//!
//! These cover the parse paths and the plain pass reasons; the reflection
//! rules have their own file (reflection.rs). Every test loads its own
//! instance (tests::bpf), so counters start at zero and tests run in parallel.
//!
//! Plain UDP here uses port 40001, which nothing watches: a datagram from a
//! watched port (53, 123, ...) would be judged by the reflection rules.

use filter_common::{Action, Direction, Reason};
use harness::packet::{
    ETH_HLEN, ExtHeader, Frame, IPV4_HLEN, IPV6_HLEN, PacketBuilder, addr, ethertype, tcp_flags,
};
use tests::bpf::{Filter, TC_ACT_OK, XDP_DROP, XDP_PASS, XDP_TX, zero};

fn len(frame: &[u8]) -> u64 {
    frame.len() as u64
}

/// UDP between two unwatched ports.
const PLAIN: u16 = 40001;

fn udp_v4() -> Frame {
    PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(PLAIN, 40000)
        .payload(&[0xab; 60])
        .build()
}

fn udp_v6() -> Frame {
    PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .udp(PLAIN, 40000)
        .payload(&[0xab; 60])
        .build()
}

#[test]
fn a_fresh_instance_counts_nothing() {
    let filter = Filter::load();
    assert_eq!(filter.counts(), zero());
}

/// Tests share loaded instances (tests/src/bpf.rs): one that another test
/// used, even one written all over, reads as a fresh load once reset.
#[test]
fn a_reused_instance_reads_as_a_fresh_load() {
    let mut used = Filter::load();
    // A sampled drop in the ring buffer (a reason's first drop is offered).
    let unsolicited = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(&[0x42, 0x42, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0])
        .build();
    assert_eq!(used.ingress(&unsolicited), XDP_DROP);
    assert_eq!(used.drop_event_counts().0, 1, "one drop sampled");
    used.scribble();
    let mut reused = used.reused();
    let mut fresh = Filter::load_fresh();
    let (mut reused_config, fresh_config) = (reused.config(), fresh.config());
    reused_config.syn_hash_seed = fresh_config.syn_hash_seed;
    assert_eq!(reused_config, fresh_config);
    let (reused, fresh) = (reused.contents(), fresh.contents());
    assert_eq!(
        reused.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>()
    );
    for (name, elements) in &fresh {
        assert!(
            reused[name] == *elements,
            "{name} differs from a fresh load's after the reset"
        );
    }
}

#[test]
fn ipv4_udp_passes_as_pass_ipv4() {
    let filter = Filter::load();
    let frame = udp_v4();
    assert_eq!(filter.ingress(&frame), XDP_PASS);
    filter.assert_moved(&zero(), &[(Reason::PassIpv4, 1, len(&frame))], "IPv4 UDP");

    let syn = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .tcp(40000, 80, tcp_flags::SYN)
        .pad_to(60)
        .build();
    let before = filter.counts();
    assert_eq!(filter.ingress(&syn), XDP_PASS);
    filter.assert_moved(&before, &[(Reason::PassSyn, 1, 60)], "IPv4 TCP SYN");
}

#[test]
fn counters_add_up_over_runs_and_frame_sizes() {
    let filter = Filter::load();
    let small = udp_v4();
    let big = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(PLAIN, 40000)
        .payload(&[0xcd; 1400])
        .build();
    // `repeat` runs the program N times on the same frame.
    assert_eq!(filter.try_ingress(&small, 5).unwrap(), XDP_PASS);
    assert_eq!(filter.ingress(&big), XDP_PASS);
    filter.assert_moved(
        &zero(),
        &[(Reason::PassIpv4, 6, 5 * len(&small) + len(&big))],
        "5 small and 1 big IPv4 frames",
    );
}

#[test]
fn ipv4_with_options_passes_as_pass_ipv4() {
    let filter = Filter::load();
    for options in [
        &[0x94, 0x04, 0x00, 0x00][..], // router alert: IHL 6
        &[0x01; 40][..],               // 40 NOPs: IHL 15, the longest header
    ] {
        let frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
            .ipv4_options(options)
            .udp(PLAIN, 40000)
            .payload(b"answer")
            .build();
        assert_eq!(frame.l3_end() - frame.l3, IPV4_HLEN + options.len());
        let before = filter.counts();
        assert_eq!(filter.ingress(&frame), XDP_PASS);
        filter.assert_moved(
            &before,
            &[(Reason::PassIpv4, 1, len(&frame))],
            &format!("IPv4 with {} option bytes", options.len()),
        );
    }
}

#[test]
fn ipv4_fragments_pass_the_first_as_pass_ipv4_and_the_rest_follow_it() {
    let filter = Filter::load();
    let first = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .fragment(0x1234, true, 0)
        .udp(PLAIN, 40000)
        .payload(&[0; 64])
        .build();
    let last = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .fragment(0x1234, false, 9)
        .protocol(17)
        .payload(&[0; 100])
        .build();
    assert_eq!(filter.ingress(&first), XDP_PASS);
    assert_eq!(filter.ingress(&last), XDP_PASS);
    filter.assert_moved(
        &zero(),
        &[
            (Reason::PassIpv4, 1, len(&first)),
            (Reason::PassFragment, 1, len(&last)),
        ],
        "first and last fragment",
    );
}

#[test]
fn ipv6_passes_as_pass_ipv6() {
    let filter = Filter::load();
    let udp = udp_v6();
    let syn = PacketBuilder::ipv6(addr::ATTACKER_V6, addr::CLIENT_V6)
        .tcp(40000, 443, tcp_flags::SYN)
        .build();
    let with_ext = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ext(ExtHeader::HopByHop(vec![5, 2, 0, 0]))
        .ext(ExtHeader::DestinationOptions(vec![]))
        .ext(ExtHeader::Fragment {
            offset: 0,
            more: true,
            id: 99,
        })
        .udp(PLAIN, 40000)
        .payload(&[1; 32])
        .build();
    for frame in [&udp, &syn, &with_ext] {
        assert_eq!(filter.ingress(frame), XDP_PASS);
    }
    filter.assert_moved(
        &zero(),
        &[
            (Reason::PassIpv6, 2, len(&udp) + len(&with_ext)),
            (Reason::PassSyn, 1, len(&syn)),
        ],
        "IPv6 UDP, TCP SYN, UDP behind extension headers",
    );
}

#[test]
fn arp_and_other_ethertypes_pass_as_pass_not_ip() {
    let filter = Filter::load();
    let arp = PacketBuilder::arp_request(addr::SERVER_V4, addr::CLIENT_V4)
        .pad_to(60)
        .build();
    assert_eq!(filter.ingress(&arp), XDP_PASS);
    filter.assert_moved(&zero(), &[(Reason::PassNotIp, 1, 60)], "ARP request");

    let lldp = PacketBuilder::ethertype(ethertype::LLDP)
        .payload(&[0x02, 0x07, 0x04, 0, 0, 0, 0, 0, 1])
        .build();
    let before = filter.counts();
    assert_eq!(filter.ingress(&lldp), XDP_PASS);
    filter.assert_moved(&before, &[(Reason::PassNotIp, 1, len(&lldp))], "LLDP");
}

/// Frames shorter than an Ethernet header: this kernel refuses to run a program
/// on them (BPF_PROG_TEST_RUN wants ETH_HLEN bytes), as a NIC would never hand
/// one up. If a kernel ever accepts one, the filter must pass it and count it
/// as malformed.
#[test]
fn frames_shorter_than_ethernet_pass_as_malformed_or_never_reach_the_program() {
    let filter = Filter::load();
    let frame = udp_v4();
    for cut in 0..ETH_HLEN {
        let cut_frame = frame.truncated(cut);
        let before = filter.counts();
        match filter.try_ingress(&cut_frame, 1) {
            Err(_) => filter.assert_moved(&before, &[], &format!("refused {cut}-byte frame")),
            Ok(verdict) => {
                assert_eq!(verdict, XDP_PASS, "{cut}-byte frame");
                filter.assert_moved(
                    &before,
                    &[(Reason::PassMalformed, 1, cut as u64)],
                    &format!("{cut}-byte frame"),
                );
            }
        }
        let before = filter.counts();
        match filter.try_egress(&cut_frame) {
            Err(_) => filter.assert_moved(&before, &[], &format!("refused {cut}-byte skb")),
            Ok(verdict) => {
                assert_eq!(verdict, TC_ACT_OK, "{cut}-byte skb");
                filter.assert_moved(
                    &before,
                    &[(Reason::EgressOther, 1, cut as u64)],
                    &format!("egress {cut}-byte skb"),
                );
            }
        }
    }
}

/// Cuts `frame` at every byte from the end of the Ethernet header to the end
/// of the network header. On ingress each cut must pass and count as
/// pass_malformed. On egress each must count as egress_other, where the kernel
/// builds an skb at all: it refuses IPv4/IPv6 frames without a whole base
/// header (as its own stack never sends one), and then nothing may move.
fn assert_every_cut_is_malformed(filter: &Filter, frame: &Frame, what: &str) {
    assert!(frame.l3_end() > frame.l3);
    for cut in ETH_HLEN..frame.l3_end() {
        let cut_frame = frame.truncated(cut);
        let before = filter.counts();
        assert_eq!(
            filter.ingress(&cut_frame),
            XDP_PASS,
            "{what} cut at {cut} bytes must pass"
        );
        filter.assert_moved(
            &before,
            &[(Reason::PassMalformed, 1, cut as u64)],
            &format!("{what} cut at {cut} bytes"),
        );

        let before = filter.counts();
        match filter.try_egress(&cut_frame) {
            Err(_) => filter.assert_moved(
                &before,
                &[],
                &format!("egress {what}, refused cut at {cut}"),
            ),
            Ok(verdict) => {
                assert_eq!(verdict, TC_ACT_OK, "egress {what} cut at {cut} bytes");
                filter.assert_moved(
                    &before,
                    &[(Reason::EgressOther, 1, cut as u64)],
                    &format!("egress {what} cut at {cut} bytes"),
                );
            }
        }
    }
}

#[test]
fn ipv4_cut_inside_its_header_passes_as_malformed() {
    let filter = Filter::load();
    let frame = udp_v4();
    assert_eq!(frame.l3_end(), ETH_HLEN + IPV4_HLEN);
    assert_every_cut_is_malformed(&filter, &frame, "IPv4");
}

#[test]
fn ipv4_cut_inside_its_options_passes_as_malformed() {
    let filter = Filter::load();
    let frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .ipv4_options(&[0x01; 40])
        .udp(PLAIN, 40000)
        .build();
    assert_eq!(frame.l3_end(), ETH_HLEN + 60);
    assert_every_cut_is_malformed(&filter, &frame, "IPv4 with 40 option bytes");
}

#[test]
fn ipv6_cut_inside_its_header_passes_as_malformed() {
    let filter = Filter::load();
    let frame = udp_v6();
    assert_eq!(frame.l3_end(), ETH_HLEN + IPV6_HLEN);
    assert_every_cut_is_malformed(&filter, &frame, "IPv6");
}

#[test]
fn wrong_ip_version_or_header_length_passes_as_malformed() {
    let filter = Filter::load();
    let mut frames = Vec::new();
    for version in [0, 5, 6, 15] {
        frames.push((
            format!("EtherType IPv4, version {version}"),
            PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
                .ip_version(version)
                .udp(PLAIN, 40000)
                .build(),
        ));
    }
    for version in [0, 4, 7, 15] {
        frames.push((
            format!("EtherType IPv6, version {version}"),
            PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
                .ip_version(version)
                .udp(PLAIN, 40000)
                .build(),
        ));
    }
    for ihl in [0, 1, 4] {
        frames.push((
            format!("IPv4 header length {ihl} words"),
            PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
                .ihl(ihl)
                .udp(PLAIN, 40000)
                .build(),
        ));
    }
    for (what, frame) in &frames {
        let before = filter.counts();
        assert_eq!(filter.ingress(frame), XDP_PASS, "{what} must pass");
        filter.assert_moved(&before, &[(Reason::PassMalformed, 1, len(frame))], what);
    }
}

/// Whatever the frame, exactly one ingress reason counts it, and the verdict is
/// that reason's action.
#[test]
fn the_verdict_is_the_action_of_the_one_reason_counted() {
    let mut filter = Filter::load();
    // One DNS query per source, and every query over it answered (the slip).
    filter.set(&[
        ("dns_query_source_rate", "1"),
        ("dns_query_source_burst", "1"),
        ("dns_slip", "1"),
    ]);
    let dns_query = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .udp(40000, 53)
        .payload(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01")
        .build()
        .bytes;
    let frames: Vec<Vec<u8>> = vec![
        udp_v4().bytes,
        udp_v6().bytes,
        PacketBuilder::arp_request(addr::SERVER_V4, addr::CLIENT_V4)
            .build()
            .bytes,
        udp_v4().truncated(ETH_HLEN + 5),
        PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
            .tcp(1234, 80, tcp_flags::SYN)
            .build()
            .bytes,
        // An unsolicited DNS response: dropped.
        PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
            .udp(53, 40000)
            .payload(&[0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0])
            .build()
            .bytes,
        // A query within its limit passes; the same again is answered (XDP_TX).
        dns_query.clone(),
        dns_query,
    ];
    let mut seen = Vec::new();
    for frame in &frames {
        let before = filter.counts();
        let verdict = filter.ingress(frame);
        let after = filter.counts();
        let moved: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|r| after[r.index() as usize] != before[r.index() as usize])
            .collect();
        assert_eq!(moved.len(), 1, "one reason per packet, got {moved:?}");
        let reason = moved[0];
        assert_eq!(reason.direction(), Direction::Ingress, "{reason:?}");
        let expected = match reason.action() {
            Action::Pass => XDP_PASS,
            Action::Drop => XDP_DROP,
            Action::Tx => XDP_TX,
        };
        assert_eq!(verdict, expected, "verdict for {reason:?}");
        seen.push(reason);
    }
    for action in [Action::Pass, Action::Drop, Action::Tx] {
        assert!(
            seen.iter().any(|reason| reason.action() == action),
            "no frame was given {action:?}: {seen:?}"
        );
    }
}

/// Egress records DNS queries (QR clear, to a watched port) as solicited and
/// observes everything else as egress_other; it never drops.
#[test]
fn egress_records_queries_observes_the_rest_and_never_drops() {
    let filter = Filter::load();
    let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let query_v4 = PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4)
        .udp(40000, 53)
        .payload(&query)
        .build();
    let query_v6 = PacketBuilder::ipv6(addr::CLIENT_V6, addr::SERVER_V6)
        .udp(40000, 53)
        .payload(&query)
        .build();
    let plain = PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4)
        .udp(40000, PLAIN)
        .payload(&[0x11; 33])
        .build();
    let arp = PacketBuilder::arp_request(addr::CLIENT_V4, addr::SERVER_V4).build();
    let bad_version = PacketBuilder::ipv4(addr::CLIENT_V4, addr::SERVER_V4)
        .ip_version(7)
        .udp(40000, 53)
        .build();

    for (what, frame) in [("IPv4 DNS query", &query_v4), ("IPv6 DNS query", &query_v6)] {
        let before = filter.counts();
        assert_eq!(filter.egress(frame), TC_ACT_OK, "egress {what}");
        filter.assert_moved(
            &before,
            &[(Reason::EgressQueryRecorded, 1, len(frame))],
            what,
        );
    }
    for (what, frame) in [
        ("UDP to an unwatched port", &plain[..]),
        ("ARP", &arp[..]),
        ("IPv4 with version 7", &bad_version[..]),
    ] {
        let before = filter.counts();
        assert_eq!(filter.egress(frame), TC_ACT_OK, "egress {what}");
        filter.assert_moved(
            &before,
            &[(Reason::EgressOther, 1, len(frame))],
            &format!("egress {what}"),
        );
    }
}

#[test]
fn ingress_and_egress_count_in_their_own_reasons() {
    let filter = Filter::load();
    let frame = udp_v4();
    assert_eq!(filter.ingress(&frame), XDP_PASS);
    assert_eq!(filter.egress(&frame), TC_ACT_OK);
    filter.assert_moved(
        &zero(),
        &[
            (Reason::PassIpv4, 1, len(&frame)),
            (Reason::EgressOther, 1, len(&frame)),
        ],
        "one frame each way",
    );
}
