//! The builder's tests: byte layouts checked field by field, and checksums
//! checked by an independent decoder (etherparse, [`checksum::verify_ip`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

fn be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// The IP header and UDP/TCP checksums, as etherparse computes them.
fn checksums_ok(frame: &Frame) -> bool {
    checksum::verify_ip(&frame[frame.l3..])
        .map_err(|err| eprintln!("{err}"))
        .is_ok()
}

#[test]
fn ipv4_udp_layout() {
    let frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(b"0123456789")
        .build();
    assert_eq!(frame.len(), 14 + 20 + 8 + 10);
    assert_eq!((frame.l3, frame.l4, frame.payload), (14, Some(34), 42));
    assert_eq!(&frame[0..6], &addr::GATEWAY_MAC);
    assert_eq!(&frame[6..12], &addr::PEER_MAC);
    assert_eq!(be16(&frame, 12), ethertype::IPV4);
    assert_eq!(frame[14], 0x45);
    assert_eq!(be16(&frame, 16), 20 + 8 + 10, "total length");
    assert_eq!(frame[14 + 8], 64, "ttl");
    assert_eq!(frame[14 + 9], proto::UDP);
    assert_eq!(&frame[26..30], &[198, 51, 100, 53]);
    assert_eq!(&frame[30..34], &[192, 0, 2, 10]);
    assert_eq!(be16(&frame, 34), 53);
    assert_eq!(be16(&frame, 36), 40000);
    assert_eq!(be16(&frame, 38), 18, "UDP length");
    assert_eq!(&frame[42..], b"0123456789");
    assert!(checksums_ok(&frame));
}

#[test]
fn ipv4_checksum_matches_a_hand_computed_header() {
    // 45 00 0030 0001 4000 40 11 ____ 198.51.100.53 192.0.2.10, worked by hand: 0x4e49.
    let frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .dont_fragment()
        .udp(53, 40000)
        .payload(&[0; 20])
        .build();
    assert_eq!(&frame[14..24], &[0x45, 0, 0, 0x30, 0, 1, 0x40, 0, 64, 17]);
    assert_eq!(be16(&frame, 24), 0x4e49);
    assert_eq!(checksum::internet(&[0x45, 0, 0, 0x14]), !0x4514);
}

#[test]
fn ipv4_options_are_padded_and_counted_in_ihl() {
    let frame = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .ipv4_options(&[0x94, 0x04, 0x00]) // router alert, one byte short
        .udp(1000, 2000)
        .build();
    assert_eq!(frame[14], 0x46, "IHL 6 words");
    assert_eq!(&frame[34..38], &[0x94, 0x04, 0x00, 0x00]);
    assert_eq!(frame.l4, Some(38));
    assert_eq!(be16(&frame, 16), 24 + 8);
    assert!(checksums_ok(&frame));

    let longest = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .ipv4_options(&[1; 40])
        .build();
    assert_eq!(longest[14], 0x4f);
    assert_eq!(longest.l3_end(), 14 + 60);
    assert_eq!(longest[14 + 9], proto::EXPERIMENTAL);
}

#[test]
fn ipv4_fragment_fields() {
    let first = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .fragment(0xbeef, true, 0)
        .udp(53, 40000)
        .payload(&[7; 16])
        .build();
    assert_eq!(be16(&first, 18), 0xbeef);
    assert_eq!(be16(&first, 20), 0x2000, "MF, offset 0");

    let later = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .fragment(0xbeef, false, 3)
        .protocol(proto::UDP)
        .payload(&[7; 16])
        .build();
    assert_eq!(be16(&later, 20), 3, "no MF, offset 3 units = 24 bytes");
    assert_eq!(later[14 + 9], proto::UDP);
    assert_eq!(later.l4, None);
    assert_eq!(later.len(), 14 + 20 + 16);

    let df = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .dont_fragment()
        .build();
    assert_eq!(be16(&df, 20), 0x4000);
}

#[test]
fn wrong_fields_are_kept_as_asked() {
    let frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .ip_version(6)
        .ihl(4)
        .build();
    assert_eq!(frame[14], 0x64);
    let v6 = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ip_version(4)
        .build();
    assert_eq!(v6[14] >> 4, 4);
}

#[test]
fn tcp_header_flags_and_checksum() {
    let frame = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .tcp(40000, 80, tcp_flags::SYN)
        .tcp_seq_ack(0x01020304, 0)
        .tcp_options(&[2, 4, 0x05, 0xb4]) // MSS 1460
        .build();
    let l4 = frame.l4.unwrap();
    assert_eq!(frame[14 + 9], proto::TCP);
    assert_eq!(be16(&frame, l4), 40000);
    assert_eq!(be16(&frame, l4 + 2), 80);
    assert_eq!(&frame[l4 + 4..l4 + 8], &[1, 2, 3, 4]);
    assert_eq!(frame[l4 + 12], 6 << 4, "data offset 6 words");
    assert_eq!(frame[l4 + 13], tcp_flags::SYN);
    assert_eq!(frame.len(), l4 + 24);
    assert!(checksums_ok(&frame), "TCP checksum");
}

#[test]
fn vlan_tags_and_pppoe_shift_the_network_header() {
    let tagged = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .vlan(100)
        .udp(53, 40000)
        .build();
    assert_eq!(be16(&tagged, 12), ethertype::VLAN);
    assert_eq!(be16(&tagged, 14), 100);
    assert_eq!(be16(&tagged, 16), ethertype::IPV4);
    assert_eq!(tagged.l3, 18);
    assert_eq!(tagged[18], 0x45);

    let qinq = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .qinq(10, 20)
        .tag(VlanTag {
            tpid: ethertype::VLAN,
            pcp: 5,
            dei: true,
            vid: 4095,
        })
        .build();
    assert_eq!(be16(&qinq, 12), ethertype::QINQ);
    assert_eq!(be16(&qinq, 14), 10);
    assert_eq!(be16(&qinq, 16), ethertype::VLAN);
    assert_eq!(be16(&qinq, 18), 20);
    assert_eq!(be16(&qinq, 20), ethertype::VLAN);
    assert_eq!(be16(&qinq, 22), 0xbfff, "PCP 5, DEI, VID 4095");
    assert_eq!(be16(&qinq, 24), ethertype::IPV6);
    assert_eq!(qinq.l3, 26);

    let pppoe = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .pppoe(0x1234)
        .udp(123, 123)
        .payload(&[0; 48])
        .build();
    assert_eq!(be16(&pppoe, 12), ethertype::PPPOE_SESSION);
    assert_eq!(&pppoe[14..16], &[0x11, 0x00]);
    assert_eq!(be16(&pppoe, 16), 0x1234);
    assert_eq!(be16(&pppoe, 18), 2 + 20 + 8 + 48, "PPPoE length");
    assert_eq!(be16(&pppoe, 20), ppp::IPV4);
    assert_eq!(pppoe.l3, 22);
    assert_eq!(pppoe.len(), 22 + 20 + 8 + 48);
    assert!(checksums_ok(&pppoe));

    let both = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .vlan(7)
        .pppoe(1)
        .build();
    assert_eq!(be16(&both, 16), ethertype::PPPOE_SESSION);
    assert_eq!(be16(&both, 24), ppp::IPV6);
    assert_eq!(both.l3, 26);
}

#[test]
fn ipv6_extension_headers_chain_and_align() {
    let frame = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ext(ExtHeader::HopByHop(vec![5, 2, 0, 0])) // router alert: 6 bytes -> PadN 2
        .ext(ExtHeader::Routing {
            routing_type: 4,
            segments_left: 0,
            data: vec![0; 4],
        })
        .ext(ExtHeader::DestinationOptions(vec![0x1e, 3, 1, 2, 3])) // 7 bytes -> Pad1
        .ext(ExtHeader::Fragment {
            offset: 0,
            more: true,
            id: 0xdeadbeef,
        })
        .udp(53, 40000)
        .payload(b"abc")
        .build();
    let l3 = frame.l3;
    assert_eq!(be16(&frame, 12), ethertype::IPV6);
    assert_eq!(frame[l3] >> 4, 6);
    assert_eq!(frame[l3 + 6], proto::HOP_BY_HOP);
    assert_eq!(frame[l3 + 7], 64);
    assert_eq!(&frame[l3 + 8..l3 + 10], &[0x20, 0x01]);
    let mut at = l3 + IPV6_HLEN;
    // Hop-by-hop: 8 bytes, PadN of 2 at the end.
    assert_eq!(frame[at], proto::ROUTING);
    assert_eq!(frame[at + 1], 0);
    assert_eq!(&frame[at + 2..at + 8], &[5, 2, 0, 0, 1, 0]);
    at += 8;
    // Routing: 8 bytes.
    assert_eq!(&frame[at..at + 4], &[proto::DESTINATION_OPTIONS, 0, 4, 0]);
    at += 8;
    // Destination options: 8 bytes, Pad1 at the end.
    assert_eq!(frame[at], proto::FRAGMENT);
    assert_eq!(&frame[at + 2..at + 8], &[0x1e, 3, 1, 2, 3, 0]);
    at += 8;
    // Fragment: offset 0, M set.
    assert_eq!(frame[at], proto::UDP);
    assert_eq!(be16(&frame, at + 2), 1);
    assert_eq!(&frame[at + 4..at + 8], &[0xde, 0xad, 0xbe, 0xef]);
    at += 8;
    assert_eq!(frame.l4, Some(at));
    assert_eq!(
        usize::from(be16(&frame, l3 + 4)),
        32 + 8 + 3,
        "payload length"
    );
    // UDP checksum over the IPv6 pseudo-header.
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[l3 + 8..l3 + 24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[l3 + 24..l3 + 40]).unwrap());
    // (etherparse does not decode the transport of a fragment: sum it here.)
    assert_eq!(
        checksum::transport(src.into(), dst.into(), proto::UDP, &frame[at..]),
        0xffff,
        "the UDP checksum sums to zero"
    );

    let longer = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ext(ExtHeader::DestinationOptions(vec![
            1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]))
        .build();
    assert_eq!(
        longer[longer.l3 + IPV6_HLEN + 1],
        1,
        "16 bytes = 1 + 1 units"
    );
    assert_eq!(longer[longer.l3 + IPV6_HLEN], proto::NO_NEXT_HEADER);
}

#[test]
fn ipv6_fragment_without_transport_names_the_upper_protocol() {
    let frame = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ext(ExtHeader::Fragment {
            offset: 185,
            more: false,
            id: 7,
        })
        .protocol(proto::UDP)
        .payload(&[1; 8])
        .build();
    let at = frame.l3 + IPV6_HLEN;
    assert_eq!(frame[frame.l3 + 6], proto::FRAGMENT);
    assert_eq!(frame[at], proto::UDP);
    assert_eq!(be16(&frame, at + 2), 185 << 3);
    assert_eq!(frame.l4, None);
    assert_eq!(frame.l3_end(), at + 8);
}

#[test]
fn arp_request_layout() {
    let frame = PacketBuilder::arp_request(addr::CLIENT_V4, addr::SERVER_V4).build();
    assert_eq!(frame.len(), 14 + 28);
    assert_eq!(&frame[0..6], &[0xff; 6]);
    assert_eq!(be16(&frame, 12), ethertype::ARP);
    assert_eq!(&frame[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
    assert_eq!(&frame[28..32], &[192, 0, 2, 10]);
    assert_eq!(&frame[38..42], &[198, 51, 100, 53]);
}

#[test]
fn padding_and_truncation() {
    let frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .pad_to(60)
        .build();
    assert_eq!(frame.len(), 60);
    assert_eq!(be16(&frame, 16), 28, "padding is not in the IP length");
    assert!(frame[42..].iter().all(|&b| b == 0));
    for len in 0..=frame.len() {
        let cut = frame.truncated(len);
        assert_eq!(cut.len(), len);
        assert_eq!(&cut[..], &frame[..len]);
    }
    let other = PacketBuilder::ethertype(ethertype::LLDP)
        .payload(&[1, 2, 3])
        .build();
    assert_eq!(other.len(), 17);
    assert_eq!(be16(&other, 12), ethertype::LLDP);
}

#[test]
#[should_panic(expected = "cannot cut")]
fn truncating_past_the_end_panics() {
    PacketBuilder::arp_request(addr::CLIENT_V4, addr::SERVER_V4)
        .build()
        .truncated(43);
}

#[test]
fn test_addresses() {
    for ip in [
        IpAddr::V4(addr::CLIENT_V4),
        IpAddr::V4(addr::SERVER_V4),
        IpAddr::V4(addr::ATTACKER_V4),
        IpAddr::V4(addr::BENCH_V4),
        IpAddr::V4(Ipv4Addr::new(198, 19, 255, 255)),
        IpAddr::V6(addr::CLIENT_V6),
        IpAddr::V6(addr::SERVER_V6),
        IpAddr::V6(addr::ATTACKER_V6),
    ] {
        assert!(addr::is_test_address(ip), "{ip}");
    }
    for ip in [
        "192.0.3.1",
        "198.20.0.1",
        "198.17.255.255",
        "203.0.114.1",
        "10.0.0.1",
        "2001:db9::1",
        "fe80::1",
    ] {
        assert!(!addr::is_test_address(ip.parse().unwrap()), "{ip}");
    }
    let builder = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4);
    let (src, dst) = ip_endpoints(&builder).unwrap();
    assert!(addr::both_are_test_addresses(src, dst));
}

#[test]
fn ipv6_authentication_headers_count_their_length_in_words() {
    let frame = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ext(ExtHeader::Fragment {
            offset: 0,
            more: false,
            id: 7,
        })
        .ext(ExtHeader::Auth {
            spi: 0x1234,
            seq: 9,
            icv: vec![0xaa; 12],
        })
        .udp(53, 40000)
        .payload(b"abcd")
        .build();
    let at = frame.l3 + IPV6_HLEN + 8;
    assert_eq!(
        frame[frame.l3 + IPV6_HLEN],
        proto::AUTH,
        "after the fragment header"
    );
    // 24 bytes: 6 words, payload length 4.
    assert_eq!(&frame[at..at + 4], &[proto::UDP, 4, 0, 0]);
    assert_eq!(frame.l4, Some(at + 24));
    let sliced = etherparse::SlicedPacket::from_ethernet(&frame).expect("etherparse reads it");
    let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
        panic!("etherparse finds the UDP header behind AH: {sliced:?}");
    };
    assert_eq!(udp.destination_port(), 40000);
}

#[test]
fn ipv4_in_ipv6_with_the_encapsulation_limit_option() {
    let frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(b"0123456789")
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
        .encap_limit(DEFAULT_ENCAP_LIMIT)
        .build();
    let inner_len = 20 + 8 + 10;
    assert_eq!(frame.len(), 14 + 40 + 8 + inner_len);
    assert_eq!(frame.outer_l3, Some(14));
    assert_eq!((frame.l3, frame.l4, frame.payload), (62, Some(82), 90));
    assert_eq!(be16(&frame, 12), ethertype::IPV6);
    assert_eq!(frame[14] >> 4, 6);
    assert_eq!(
        be16(&frame, 18),
        8 + inner_len as u16,
        "outer payload length"
    );
    assert_eq!(frame[20], proto::DESTINATION_OPTIONS, "outer next header");
    assert_eq!(&frame[22..38], &addr::RELAY_V6.octets());
    assert_eq!(&frame[38..54], &addr::CLIENT_V6.octets());
    // What Linux's ip6tnl writes (ip6_tnl_dst_opt): next header 4, length
    // 0, the encapsulation limit option (type 4, length 1, 4), PadN of 1.
    assert_eq!(&frame[54..62], &[proto::IPV4_IN_IP, 0, 4, 1, 4, 1, 1, 0]);
    // The inner packet as if it were bare.
    let bare = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, 40000)
        .payload(b"0123456789")
        .build();
    assert_eq!(&frame[62..], &bare[14..]);
    assert_eq!(bare.outer_l3, None);
    assert!(checksums_ok(&frame));
}

#[test]
fn ipv4_in_ipv6_without_options_names_the_inner_protocol() {
    let frame = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .tcp(40000, 80, tcp_flags::SYN)
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
        .vlan(7)
        .build();
    assert_eq!(frame.outer_l3, Some(18));
    assert_eq!((frame.l3, frame.l4), (58, Some(78)));
    assert_eq!(frame[18 + 6], proto::IPV4_IN_IP);
    assert_eq!(be16(&frame, 18 + 4), 40, "outer payload length");
    assert!(checksums_ok(&frame));
}

#[test]
fn ipv6_in_ipv4_carries_protocol_41() {
    let frame = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .udp(123, 40000)
        .payload(&[0; 48])
        .in_ipv4(addr::RELAY_V4, addr::CLIENT_V4)
        .pppoe(0x1234)
        .build();
    let inner_len = 40 + 8 + 48;
    assert_eq!(frame.outer_l3, Some(22));
    assert_eq!((frame.l3, frame.l4), (42, Some(82)));
    assert_eq!(be16(&frame, 20), ppp::IPV4);
    assert_eq!(be16(&frame, 18), 2 + 20 + inner_len as u16, "PPPoE length");
    assert_eq!(frame[22], 0x45);
    assert_eq!(
        be16(&frame, 24),
        20 + inner_len as u16,
        "outer total length"
    );
    assert_eq!(frame[22 + 9], proto::IPV6_IN_IP);
    assert_eq!(&frame[34..38], &addr::RELAY_V4.octets());
    assert_eq!(
        checksum::internet(&frame[22..42]),
        0,
        "outer header checksum"
    );
    assert!(checksums_ok(&frame));
}

#[test]
fn outer_fragments() {
    let inner = || PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4).udp(53, 40000);
    let first = inner()
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
        .encap_limit(DEFAULT_ENCAP_LIMIT)
        .outer_fragment(0x1234_5678, true, 0)
        .build();
    // The destination option, then the fragment header naming IPv4.
    assert_eq!(first[14 + 6], proto::DESTINATION_OPTIONS);
    assert_eq!(first[54], proto::FRAGMENT);
    assert_eq!(
        &first[62..70],
        &[proto::IPV4_IN_IP, 0, 0, 1, 0x12, 0x34, 0x56, 0x78]
    );
    assert_eq!(first.l3, 70);
    let later = inner()
        .in_ipv6(addr::RELAY_V6, addr::CLIENT_V6)
        .outer_fragment(7, false, 3)
        .build();
    assert_eq!(&later[54..62], &[proto::IPV4_IN_IP, 0, 0, 24, 0, 0, 0, 7]);
    let v4 = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .udp(53, 40000)
        .in_ipv4(addr::RELAY_V4, addr::CLIENT_V4)
        .outer_fragment(9, true, 0)
        .build();
    assert_eq!(be16(&v4, 14 + 4), 9, "outer id");
    assert_eq!(be16(&v4, 14 + 6), 0x2000, "more fragments, offset 0");
    assert_eq!(v4[14 + 9], proto::IPV6_IN_IP);
    assert_eq!(checksum::internet(&v4[14..34]), 0, "outer header checksum");
}
