//! Checksums: the Internet checksum (RFC 1071) of an IPv4 header and the
//! UDP/TCP checksums over their pseudo-headers, summed with etherparse's
//! 16-bit word sums; and [`verify_ip`], which decodes a packet with
//! etherparse and recomputes its checksums independently of the builder
//! (the builder's tests, and the benchmark's check of its generator).

use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice, checksum::Sum16BitWords};

use super::proto;

/// etherparse sums native-endian words: its result, in native order, has
/// the wire's bytes; as a number, the checksum is their big-endian reading.
fn value(folded: u16) -> u16 {
    u16::from_be_bytes(folded.to_ne_bytes())
}

/// The Internet checksum of `bytes`, whose checksum field is zero.
pub fn internet(bytes: &[u8]) -> u16 {
    value(Sum16BitWords::new().add_slice(bytes).ones_complement())
}

/// The UDP or TCP checksum of `segment` (header with a zero checksum field,
/// and payload) from `src` to `dst`. A UDP checksum of 0 is sent as 0xffff:
/// 0 means "no checksum" there.
pub fn transport(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> u16 {
    let mut sum = Sum16BitWords::new();
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let len = u16::try_from(segment.len()).expect("a segment over 64 KiB");
            sum = sum
                .add_4bytes(src.octets())
                .add_4bytes(dst.octets())
                .add_2bytes([0, protocol])
                .add_2bytes(len.to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let len = u32::try_from(segment.len()).expect("a segment over 4 GiB");
            sum = sum
                .add_16bytes(src.octets())
                .add_16bytes(dst.octets())
                .add_4bytes(len.to_be_bytes())
                .add_4bytes([0, 0, 0, protocol]);
        }
        _ => panic!("{src} and {dst} are not of one family"),
    }
    let sum = sum.add_slice(segment);
    value(if protocol == proto::UDP {
        sum.to_ones_complement_with_no_zero()
    } else {
        sum.ones_complement()
    })
}

/// Checks the IPv4 header checksum and the UDP or TCP checksum of an IP
/// packet (from its IP header on), decoded by etherparse. A fragment, whose
/// transport header cannot be checked alone, is an error.
pub fn verify_ip(packet: &[u8]) -> Result<(), String> {
    let sliced = SlicedPacket::from_ip(packet).map_err(|err| format!("not an IP packet: {err}"))?;
    let (src, dst): (IpAddr, IpAddr) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            let header = ip.header();
            if header.header_checksum() != header.to_header().calc_header_checksum() {
                return Err("bad IPv4 header checksum".into());
            }
            (
                header.source_addr().into(),
                header.destination_addr().into(),
            )
        }
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return Err("not IPv4 or IPv6".into()),
    };
    let (name, protocol, segment, carried) = match &sliced.transport {
        Some(TransportSlice::Udp(udp)) => ("UDP", proto::UDP, udp.slice(), udp.checksum()),
        Some(TransportSlice::Tcp(tcp)) => ("TCP", proto::TCP, tcp.slice(), tcp.checksum()),
        _ => return Err("no UDP or TCP header (a fragment?)".into()),
    };
    if protocol == proto::UDP && carried == 0 {
        return Err("UDP checksum missing".into());
    }
    // The checksum over the segment with its own checksum field in it:
    // folds to 0 (sent as 0xffff by UDP) exactly when it is right.
    let sum = transport(src, dst, protocol, segment);
    if sum != 0 && sum != 0xffff {
        return Err(format!("bad {name} checksum"));
    }
    Ok(())
}
