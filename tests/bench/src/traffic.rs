//! The floods: template frames for the generator and what it rewrites in them.
//!
//! Every source comes from a range reserved for benchmarking or documentation:
//! IPv4 sources from 198.18.0.0/15, IPv6 sources from 2001:db8:8000::/33
//! (one /64, and so one /48 prefix too, per source).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use harness::{
    netns::Mac,
    packet::{ETH_HLEN, Frame, PacketBuilder, checksum, dns_message, tcp_flags},
};

use crate::object::{GenConfig, SPOOF4_MASK, SPOOF4_NET, SPOOF6_WORD0, SPOOF6_WORD1_MIN};

/// What a flood sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FloodKind {
    /// DNS responses (source port 53, QR set) nobody asked for, to random
    /// destination ports, random ids: the reflection flood.
    Dns,
    /// TCP SYNs to port 80 from random source ports.
    Syn,
    /// Ordinary UDP (source port 4444, not watched) to random ports: what
    /// passes the filter and reaches the stack.
    Udp,
}

impl FloodKind {
    pub fn name(self) -> &'static str {
        match self {
            FloodKind::Dns => "dns",
            FloodKind::Syn => "syn",
            FloodKind::Udp => "udp",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            FloodKind::Dns => "unsolicited DNS responses (UDP sport 53)",
            FloodKind::Syn => "TCP SYN to port 80",
            FloodKind::Udp => "ordinary UDP (passed)",
        }
    }
}

/// Where the flood goes and where it comes from.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    /// The victim's address; its family is the flood's.
    pub dst: IpAddr,
    /// How many distinct sources the flood cycles through.
    pub sources: u32,
}

/// A template frame and the generator configuration that varies it.
#[derive(Clone, Debug)]
pub struct Flood {
    pub frame: Frame,
    pub config: GenConfig,
}

/// The first spoofed source, as the 32-bit word the generator varies.
pub fn first_source_word(v6: bool) -> u32 {
    if v6 { SPOOF6_WORD1_MIN } else { SPOOF4_NET }
}

/// Source number `n` of a flood (what the generator writes for packet `n`).
pub fn source(v6: bool, n: u32) -> IpAddr {
    let word = first_source_word(v6).wrapping_add(n);
    if v6 {
        let [p, q, r, s] = SPOOF6_WORD0.to_be_bytes();
        let [a, b, c, d] = word.to_be_bytes();
        Ipv6Addr::from([p, q, r, s, a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 1]).into()
    } else {
        Ipv4Addr::from(word).into()
    }
}

/// Most sources an IPv4 flood can have inside 198.18.0.0/15 (the sink's range).
pub const MAX_SOURCES4: u32 = !SPOOF4_MASK + 1;

/// The template and rewrite rules of a flood of `kind` (unpaced: see
/// [`crate::generator::pace`]).
pub fn flood(kind: FloodKind, target: Target) -> Flood {
    let v6 = target.dst.is_ipv6();
    let sources = if v6 {
        target.sources.max(1)
    } else {
        target.sources.clamp(1, MAX_SOURCES4)
    };
    let builder = match (source(v6, 0), target.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => PacketBuilder::ipv4(src, dst),
        (IpAddr::V6(src), IpAddr::V6(dst)) => PacketBuilder::ipv6(src, dst),
        _ => unreachable!("source() follows the target's family"),
    }
    .macs(target.src_mac.0, target.dst_mac.0);
    let frame = match kind {
        FloodKind::Dns => builder
            .udp(53, 40000)
            .payload(&dns_message(0x1234, true, 88))
            .build(),
        FloodKind::Syn => builder.tcp(40000, 80, tcp_flags::SYN).build(),
        FloodKind::Udp => builder.udp(4444, 40000).payload(&[0x5a; 100]).build(),
    };
    let l3 = frame.l3;
    let l4 = frame.l4.expect("UDP or TCP");
    let off = |x: usize| u16::try_from(x).expect("headers are near the start");
    let mut config = GenConfig {
        src_base: first_source_word(v6),
        src_count: sources,
        // IPv4: the source address; IPv6: bytes 4..8 of the source address.
        src_off: off(if v6 { l3 + 8 + 4 } else { l3 + 12 }),
        ip_csum_off: if v6 { 0 } else { off(l3 + 10) },
        ..GenConfig::default()
    };
    match kind {
        FloodKind::Dns | FloodKind::Udp => {
            config.port_off = off(l4 + 2);
            config.port_min = 1024;
            config.port_span = 65535 - 1024;
            config.l4_csum_off = off(l4 + 6);
            if kind == FloodKind::Dns {
                // The DNS id.
                config.rand_off = off(frame.payload);
            }
        }
        FloodKind::Syn => {
            config.port_off = off(l4);
            config.port_min = 1024;
            config.port_span = 65535 - 1024;
            // The high half of the sequence number.
            config.rand_off = off(l4 + 4);
            config.l4_csum_off = off(l4 + 16);
        }
    }
    Flood { frame, config }
}

/// Checks the IP and UDP/TCP checksums of an untagged Ethernet frame (an
/// independent decoder's, etherparse's): what the generator must keep
/// right while rewriting.
pub fn checksums_ok(frame: &[u8]) -> Result<(), String> {
    checksum::verify_ip(frame.get(ETH_HLEN..).ok_or("shorter than Ethernet")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::packet::addr::is_test_address;

    fn target(dst: IpAddr) -> Target {
        Target {
            src_mac: Mac([2, 0, 0, 0, 0, 1]),
            dst_mac: Mac([2, 0, 0, 0, 0, 2]),
            dst,
            sources: 1000,
        }
    }

    #[test]
    fn sources_stay_in_the_benchmark_and_documentation_ranges() {
        for n in [0, 1, 65535, MAX_SOURCES4 - 1] {
            let ip = source(false, n);
            assert!(is_test_address(ip), "{ip}");
            let IpAddr::V4(v4) = ip else { panic!() };
            assert_eq!(v4.octets()[..1], [198]);
            assert!(v4.octets()[1] == 18 || v4.octets()[1] == 19, "{v4}");
        }
        for n in [0, 999_999, u32::MAX >> 1] {
            let ip = source(true, n);
            assert!(is_test_address(ip), "{ip}");
        }
        // Consecutive sources differ in their /64 (bytes 4..8 of the address).
        let IpAddr::V6(a) = source(true, 0) else {
            panic!()
        };
        let IpAddr::V6(b) = source(true, 1) else {
            panic!()
        };
        assert_ne!(a.segments()[..4], b.segments()[..4]);
    }

    #[test]
    fn templates_have_valid_checksums_and_offsets_inside() {
        for dst in [
            IpAddr::from(Ipv4Addr::new(192, 0, 2, 2)),
            IpAddr::from("2001:db8:b::2".parse::<Ipv6Addr>().unwrap()),
        ] {
            for kind in [FloodKind::Dns, FloodKind::Syn, FloodKind::Udp] {
                let flood = flood(kind, target(dst));
                checksums_ok(&flood.frame).unwrap();
                let c = flood.config;
                for off in [c.src_off, c.port_off, c.rand_off, c.l4_csum_off] {
                    if off == 0 && kind == FloodKind::Udp {
                        continue; // no random field in plain UDP
                    }
                    assert!(off != 0 && usize::from(off) + 2 <= flood.frame.len());
                    assert!(off < 256, "the generator masks offsets to 8 bits");
                }
                assert_eq!(c.ip_csum_off != 0, dst.is_ipv4());
                // The template's source is the first source.
                let word = u32::from_be_bytes(
                    flood.frame[usize::from(c.src_off)..usize::from(c.src_off) + 4]
                        .try_into()
                        .unwrap(),
                );
                assert_eq!(word, c.src_base);
            }
        }
    }

    #[test]
    fn a_broken_checksum_is_noticed() {
        let flood = flood(FloodKind::Dns, target(Ipv4Addr::new(192, 0, 2, 2).into()));
        let mut bytes = flood.frame.bytes.clone();
        bytes[usize::from(flood.config.rand_off)] ^= 0xff;
        assert!(checksums_ok(&bytes).is_err());
        let mut bytes = flood.frame.bytes.clone();
        bytes[usize::from(flood.config.src_off) + 3] ^= 1;
        assert!(checksums_ok(&bytes).is_err());
    }
}
