//! Verdict tests of the edges the model check ran into (docs/rules.md, *Edges*),
//! each a case where the filter disagreed with the model and the filter was
//! wrong: fragments keyed differently on their two sides, a first fragment
//! whose header chain could not be walked, Ethernet padding read as the
//! content of a short datagram, a one-byte NTP packet.

use filter_common::Reason;
use harness::packet::{ExtHeader, Frame, PacketBuilder, addr, dns_message};
use tests::bpf::{Filter, TC_ACT_OK, XDP_DROP, XDP_PASS, zero};

const CLIENT_PORT: u16 = 40000;
const TXID: u16 = 0x5a5a;

fn len(frame: &[u8]) -> u64 {
    frame.len() as u64
}

fn dns_query_v6() -> Frame {
    PacketBuilder::ipv6(addr::CLIENT_V6, addr::SERVER_V6)
        .udp(CLIENT_PORT, 53)
        .payload(&dns_message(TXID, false, 20))
        .build()
}

/// An IPv6 DNS answer in two fragments: `before` the fragment header
/// (unfragmentable, in every fragment), `after` it in the first fragment
/// only (RFC 8200's order: destination options and AH belong to the
/// fragmentable part). The later fragment carries the fragment header's next
/// header: the first of `after`.
fn fragmented_v6_answer(before: &[ExtHeader], after: &[ExtHeader], id: u32) -> [Frame; 2] {
    let headers = |fragment: ExtHeader, after: &[ExtHeader]| {
        before.iter().chain([&fragment]).chain(after).fold(
            PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6),
            |b, h| b.ext(h.clone()),
        )
    };
    let first = headers(
        ExtHeader::Fragment {
            offset: 0,
            more: true,
            id,
        },
        after,
    )
    .udp(53, CLIENT_PORT)
    .payload(&dns_message(TXID, true, 200))
    .build();
    let fragment_at = first.l3 + 40 + before.iter().map(header_len).sum::<usize>();
    let next_header = first[fragment_at];
    let later = headers(
        ExtHeader::Fragment {
            offset: 64,
            more: false,
            id,
        },
        &[],
    )
    .protocol(next_header)
    .payload(&[0x61; 300])
    .build();
    [first, later]
}

/// The length of an extension header as the builder writes it.
fn header_len(header: &ExtHeader) -> usize {
    let frame = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ext(header.clone())
        .build();
    frame.len() - frame.l3 - 40
}

/// Destination options (or hop-by-hop) of `len` bytes in all: one PadN.
fn padded_options(len: usize) -> Vec<u8> {
    let mut options = vec![1, (len - 4) as u8];
    options.resize(len - 2, 0);
    options
}

fn auth() -> ExtHeader {
    ExtHeader::Auth {
        spi: 0x100,
        seq: 1,
        icv: vec![0xab; 12],
    }
}

/// Both fragments are keyed under the fragment header's next header, so the
/// later one follows its first (it was an orphan before).
#[test]
fn ipv6_fragments_with_headers_after_the_fragment_header_follow_their_first() {
    let filter = Filter::load();
    let query = dns_query_v6();
    let [first, later] = fragmented_v6_answer(&[], &[ExtHeader::DestinationOptions(vec![])], 7);
    assert_eq!(filter.egress(&query), TC_ACT_OK);
    assert_eq!(filter.ingress(&first), XDP_PASS);
    assert_eq!(
        filter.ingress(&later),
        XDP_PASS,
        "the rest of a solicited answer"
    );
    filter.assert_moved(
        &zero(),
        &[
            (Reason::EgressQueryRecorded, 1, len(&query)),
            (Reason::PassSolicited, 1, len(&first)),
            (Reason::PassFragment, 1, len(&later)),
        ],
        "solicited, destination options after the fragment header",
    );

    let before = filter.counts();
    let [first, later] = fragmented_v6_answer(&[], &[auth()], 8);
    assert_eq!(filter.ingress(&first), XDP_DROP);
    assert_eq!(filter.ingress(&later), XDP_DROP);
    filter.assert_moved(
        &before,
        &[
            (Reason::DropUnsolicitedDns, 1, len(&first)),
            (Reason::DropFragment, 1, len(&later)),
        ],
        "unsolicited, AH after the fragment header",
    );
}

/// A later fragment of another protocol with the same id is another
/// datagram: it does not follow that first fragment's verdict.
#[test]
fn a_later_fragment_never_follows_a_first_fragment_of_another_protocol() {
    let mut filter = Filter::load();
    filter.set(&[("orphan_fragments", "pass")]);
    let [first, _] = fragmented_v6_answer(&[], &[ExtHeader::DestinationOptions(vec![])], 9);
    let other = PacketBuilder::ipv6(addr::SERVER_V6, addr::CLIENT_V6)
        .ext(ExtHeader::Fragment {
            offset: 64,
            more: false,
            id: 9,
        })
        .protocol(17)
        .payload(&[0x61; 300])
        .build();
    assert_eq!(filter.ingress(&first), XDP_DROP);
    assert_eq!(filter.ingress(&other), XDP_PASS);
    filter.assert_moved(
        &zero(),
        &[
            (Reason::DropUnsolicitedDns, 1, len(&first)),
            (Reason::PassOrphanFragment, 1, len(&other)),
        ],
        "a UDP later fragment after a dropped first fragment of protocol 60",
    );
}

/// A first fragment whose header chain after the fragment header is longer
/// than the filter walks, or reaches past 512 bytes, passes as malformed:
/// its later fragments follow that pass (they were dropped as orphans).
#[test]
fn a_first_fragment_whose_headers_are_not_walked_passes_and_its_datagram_too() {
    let filter = Filter::load();
    let too_many: Vec<ExtHeader> = (0..6)
        .map(|_| ExtHeader::DestinationOptions(vec![]))
        .collect();
    // 14 + 40 + 256 (hop-by-hop) + 8 (fragment) + 208 (destination
    // options): the next header would start at 526, past 512.
    let deep_before = [ExtHeader::HopByHop(padded_options(256))];
    let deep_after = [
        ExtHeader::DestinationOptions(padded_options(208)),
        ExtHeader::DestinationOptions(vec![]),
    ];
    for (case, (before_fragment, after)) in [(&[][..], &too_many[..]), (&deep_before, &deep_after)]
        .into_iter()
        .enumerate()
    {
        let [first, later] = fragmented_v6_answer(before_fragment, after, 20 + case as u32);
        let before = filter.counts();
        assert_eq!(filter.ingress(&first), XDP_PASS, "case {case}");
        assert_eq!(filter.ingress(&later), XDP_PASS, "case {case}");
        filter.assert_moved(
            &before,
            &[
                (Reason::PassMalformed, 1, len(&first)),
                (Reason::PassFragment, 1, len(&later)),
            ],
            &format!("case {case}"),
        );
    }
}

/// Padding after a datagram (Ethernet pads frames to 60 bytes, some NICs
/// with garbage) is no part of it: a DNS "response" of 2 bytes or an empty
/// NTP "response" is malformed, whatever follows it in the frame.
#[test]
fn padding_after_a_short_datagram_is_not_its_content() {
    let filter = Filter::load();
    let padded = |sport: u16, dport: u16, payload: &[u8], fill: u8| {
        let frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
            .udp(sport, dport)
            .payload(payload)
            .build();
        let mut bytes = frame.bytes;
        bytes.resize(60, fill);
        bytes
    };
    // The padding reads as QR set, and as NTP mode 4 with an origin timestamp.
    let dns = padded(53, CLIENT_PORT, &[0x12, 0x34], 0x84);
    let ntp = padded(123, 123, &[], 0x24);
    for frame in [&dns, &ntp] {
        assert_eq!(filter.ingress(frame), XDP_PASS);
    }
    filter.assert_moved(
        &zero(),
        &[(Reason::PassMalformed, 2, len(&dns) + len(&ntp))],
        "short datagrams padded",
    );

    // The UDP length ends the datagram before the DNS header: what follows
    // is not delivered, so not judged. (The IP length is not looked at: the
    // stack delivers no datagram whose UDP length exceeds it.)
    let answer = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
        .udp(53, CLIENT_PORT)
        .payload(&dns_message(TXID, true, 100))
        .build();
    let l4 = answer.l4.expect("a UDP header");
    let mut short_udp = answer.bytes.clone();
    short_udp[l4 + 4..l4 + 6].copy_from_slice(&10u16.to_be_bytes());
    let before = filter.counts();
    assert_eq!(filter.ingress(&short_udp), XDP_PASS);
    filter.assert_moved(
        &before,
        &[(Reason::PassMalformed, 1, len(&short_udp))],
        "a UDP length shorter than the frame",
    );

    // Egress: an NTP request one byte short of its transmit timestamp
    // records nothing, padding or not.
    let mut request = vec![0u8; 47];
    request[0] = 0x23;
    let request = padded(CLIENT_PORT, 123, &request, 0x55);
    let before = filter.counts();
    assert_eq!(filter.egress(&request), TC_ACT_OK);
    filter.assert_moved(
        &before,
        &[(Reason::EgressOther, 1, len(&request))],
        "a short NTP request",
    );
}

/// The NTP mode is the first byte: a one-byte mode 7 packet to port 123 is
/// a control packet like any other (it passed as malformed: the byte was
/// read in a pair with one past the frame).
#[test]
fn a_one_byte_ntp_control_packet_is_dropped() {
    let filter = Filter::load();
    let frame = PacketBuilder::ipv4(addr::ATTACKER_V4, addr::CLIENT_V4)
        .udp(40000, 123)
        .payload(&[0x17])
        .build();
    assert_eq!(frame.len(), 43, "no padding");
    assert_eq!(filter.ingress(&frame), XDP_DROP);
    filter.assert_moved(
        &zero(),
        &[(Reason::DropNtpControl, 1, len(&frame))],
        "one-byte NTP mode 7",
    );
}

/// A handshake to a port with a connection limit, completed by an ACK that
/// also carries FIN (docs/tcp-connections.md: the handshake in flight is
/// given back when the handshake completes): the source's next SYN to that
/// port passes at once. It was dropped as `drop_conn_limit` for up to a
/// second, its completed handshake still counted as in flight.
#[test]
fn a_handshake_completed_with_fin_is_no_longer_in_flight() {
    use harness::packet::tcp_flags::{ACK, FIN, SYN};

    let mut filter = Filter::load();
    filter.set(&[("conn_limit", "443:1")]);
    let (client, server) = (addr::CLIENT_V4, addr::SERVER_V4);
    let segment = |inbound: bool, client_port: u16, flags: u8, seq: u32, ack: u32| {
        let builder = if inbound {
            PacketBuilder::ipv4(client, server).tcp(client_port, 443, flags)
        } else {
            PacketBuilder::ipv4(server, client).tcp(443, client_port, flags)
        };
        builder.tcp_seq_ack(seq, ack).build()
    };
    let syn = segment(true, 1024, SYN, 100, 0);
    let synack = segment(false, 1024, SYN | ACK, 5000, 101);
    let ack_fin = segment(true, 1024, ACK | FIN, 101, 5001);
    let next_syn = segment(true, 1025, SYN, 200, 0);
    assert_eq!(filter.ingress(&syn), XDP_PASS);
    assert_eq!(filter.egress(&synack), TC_ACT_OK);
    assert_eq!(filter.ingress(&ack_fin), XDP_PASS);
    assert_eq!(
        filter.ingress(&next_syn),
        XDP_PASS,
        "the next connection attempt, with nothing in flight and nothing open"
    );
    filter.assert_moved(
        &zero(),
        &[
            (Reason::PassSyn, 2, len(&syn) + len(&next_syn)),
            (Reason::EgressHandshakeRecorded, 1, len(&synack)),
            (Reason::PassHandshake, 1, len(&ack_fin)),
        ],
        "a handshake completed by an ACK with FIN on a limited port",
    );
}
