//! Writes a [`PacketBuilder`]'s frame: every header from the outside in, then
//! lengths and checksums, except the fields a test set on purpose.

use super::{
    ARP_LEN, Arp, ExtHeader, Frame, IPV4_HLEN, IPV6_HLEN, Ipv4, Ipv6, Network, Outer,
    PacketBuilder, TCP_HLEN, Transport, UDP_HLEN, checksum, ethertype, ppp, proto,
};

impl PacketBuilder {
    /// Serializes the frame, filling in lengths and checksums.
    pub fn build(&self) -> Frame {
        let mut out = Vec::with_capacity(128);
        out.extend(self.dst_mac);
        out.extend(self.src_mac);
        for tag in &self.tags {
            out.extend(tag.tpid.to_be_bytes());
            out.extend(tag.tci().to_be_bytes());
        }
        let network_ethertype = match (&self.outer, &self.network) {
            (Some(Outer::Ipv4(_)), _) | (None, Network::Ipv4(_)) => ethertype::IPV4,
            (Some(Outer::Ipv6(_)), _) | (None, Network::Ipv6(_)) => ethertype::IPV6,
            (None, Network::Arp(_)) => ethertype::ARP,
            (None, Network::Other(ethertype)) => *ethertype,
        };
        let pppoe_at = self.pppoe.map(|session_id| {
            out.extend(ethertype::PPPOE_SESSION.to_be_bytes());
            let at = out.len();
            let ppp_protocol = match network_ethertype {
                ethertype::IPV4 => ppp::IPV4,
                ethertype::IPV6 => ppp::IPV6,
                other => panic!("PPPoE carries IPv4 or IPv6, not EtherType {other:#06x}"),
            };
            // Version 1, type 1, code 0 (session data); length filled in below.
            out.extend([0x11, 0x00]);
            out.extend(session_id.to_be_bytes());
            out.extend([0, 0]);
            out.extend(ppp_protocol.to_be_bytes());
            at
        });
        if pppoe_at.is_none() {
            out.extend(network_ethertype.to_be_bytes());
        }

        let network = self.network_bytes();
        let outer_l3 = self.outer.as_ref().map(|outer| {
            let at = out.len();
            out.extend(self.outer_header(outer, network.bytes.len()));
            at
        });
        let l3 = out.len();
        out.extend(&network.bytes);

        if let Some(at) = pppoe_at {
            // PPPoE length: the PPP protocol field and everything after it.
            let len = u16::try_from(out.len() - (at + 6)).expect("PPPoE payload over 64 KiB");
            out[at + 4..at + 6].copy_from_slice(&len.to_be_bytes());
        }
        if out.len() < self.pad_to {
            out.resize(self.pad_to, 0);
        }
        Frame {
            bytes: out,
            outer_l3,
            l3,
            l4: network
                .l4
                .filter(|_| !matches!(self.transport, Transport::None))
                .map(|l4| l3 + l4),
            payload: l3 + network.payload,
        }
    }

    /// The network layer's bytes (an IP packet: header, transport and
    /// payload, checksums filled in) and where in them the transport header
    /// and the payload start.
    fn network_bytes(&self) -> NetworkBytes {
        let mut out = Vec::with_capacity(128);
        let transport = self.transport_bytes();
        let (l4, payload) = match &self.network {
            Network::Ipv4(ip) => {
                out.extend(ipv4_header(ip, &transport, self.payload.len()));
                let l4 = out.len();
                out.extend(&transport.bytes);
                (Some(l4), out.len())
            }
            Network::Ipv6(ip) => {
                out.extend(ipv6_header(ip, &transport, self.payload.len()));
                let l4 = out.len();
                out.extend(&transport.bytes);
                (Some(l4), out.len())
            }
            Network::Arp(arp) => {
                out.extend(arp_bytes(arp));
                (None, out.len())
            }
            Network::Other(_) => (None, out.len()),
        };
        out.extend(&self.payload);

        // Transport checksums cover the pseudo-header, the transport header and the payload.
        if let (Some(l4), Some(offset)) = (l4, transport.checksum_offset) {
            let (src, dst) = match &self.network {
                Network::Ipv4(ip) => (ip.src.into(), ip.dst.into()),
                Network::Ipv6(ip) => (ip.src.into(), ip.dst.into()),
                _ => unreachable!("transport only after IP"),
            };
            let checksum = checksum::transport(src, dst, transport.protocol, &out[l4..]);
            out[l4 + offset..l4 + offset + 2].copy_from_slice(&checksum.to_be_bytes());
        }
        NetworkBytes {
            bytes: out,
            l4,
            payload,
        }
    }

    /// The outer header of a tunnel whose payload is `inner_len` bytes of
    /// the builder's IP packet.
    fn outer_header(&self, outer: &Outer, inner_len: usize) -> Vec<u8> {
        let carried = TransportBytes {
            bytes: Vec::new(),
            protocol: match &self.network {
                Network::Ipv4(_) => proto::IPV4_IN_IP,
                Network::Ipv6(_) => proto::IPV6_IN_IP,
                other => panic!("a tunnel carries IP, not {other:?}"),
            },
            checksum_offset: None,
        };
        match outer {
            Outer::Ipv4(ip) => ipv4_header(ip, &carried, inner_len),
            Outer::Ipv6(ip) => ipv6_header(ip, &carried, inner_len),
        }
    }

    fn transport_bytes(&self) -> TransportBytes {
        match &self.transport {
            Transport::None => TransportBytes {
                bytes: Vec::new(),
                protocol: match &self.network {
                    Network::Ipv6(_) => proto::NO_NEXT_HEADER,
                    _ => proto::EXPERIMENTAL,
                },
                checksum_offset: None,
            },
            Transport::Udp { sport, dport } => {
                let len = u16::try_from(UDP_HLEN + self.payload.len()).expect("UDP over 64 KiB");
                let mut bytes = Vec::with_capacity(UDP_HLEN);
                bytes.extend(sport.to_be_bytes());
                bytes.extend(dport.to_be_bytes());
                bytes.extend(len.to_be_bytes());
                bytes.extend([0, 0]);
                TransportBytes {
                    bytes,
                    protocol: proto::UDP,
                    checksum_offset: Some(6),
                }
            }
            Transport::Tcp(tcp) => {
                let options = padded(&tcp.options, 4);
                assert!(options.len() <= 40, "TCP options over 40 bytes");
                let data_offset = ((TCP_HLEN + options.len()) / 4) as u8;
                let mut bytes = Vec::with_capacity(TCP_HLEN + options.len());
                bytes.extend(tcp.sport.to_be_bytes());
                bytes.extend(tcp.dport.to_be_bytes());
                bytes.extend(tcp.seq.to_be_bytes());
                bytes.extend(tcp.ack.to_be_bytes());
                bytes.extend([data_offset << 4, tcp.flags]);
                bytes.extend(tcp.window.to_be_bytes());
                bytes.extend([0, 0, 0, 0]); // checksum, urgent pointer
                bytes.extend(options);
                TransportBytes {
                    bytes,
                    protocol: proto::TCP,
                    checksum_offset: Some(16),
                }
            }
        }
    }
}

struct NetworkBytes {
    bytes: Vec<u8>,
    l4: Option<usize>,
    payload: usize,
}

struct TransportBytes {
    bytes: Vec<u8>,
    /// The protocol number the transport implies.
    protocol: u8,
    /// Where the checksum sits in `bytes`, if the transport has one.
    checksum_offset: Option<usize>,
}

fn ipv4_header(ip: &Ipv4, transport: &TransportBytes, payload_len: usize) -> Vec<u8> {
    let options = padded(&ip.options, 4);
    assert!(options.len() <= 40, "IPv4 options over 40 bytes");
    let header_len = IPV4_HLEN + options.len();
    let ihl = ip.ihl.unwrap_or((header_len / 4) as u8);
    let total_length = ip.total_length.unwrap_or_else(|| {
        u16::try_from(header_len + transport.bytes.len() + payload_len)
            .expect("IPv4 packet over 64 KiB")
    });
    let flags_offset = (u16::from(ip.dont_fragment) << 14)
        | (u16::from(ip.more_fragments) << 13)
        | ip.fragment_offset;
    let mut h = Vec::with_capacity(header_len);
    h.extend([(ip.version << 4) | (ihl & 0x0f), ip.tos]);
    h.extend(total_length.to_be_bytes());
    h.extend(ip.id.to_be_bytes());
    h.extend(flags_offset.to_be_bytes());
    h.extend([ip.ttl, ip.protocol.unwrap_or(transport.protocol)]);
    h.extend([0, 0]);
    h.extend(ip.src.octets());
    h.extend(ip.dst.octets());
    h.extend(options);
    let checksum = ip.checksum.unwrap_or_else(|| checksum::internet(&h));
    h[10..12].copy_from_slice(&checksum.to_be_bytes());
    h
}

fn ipv6_header(ip: &Ipv6, transport: &TransportBytes, payload_len: usize) -> Vec<u8> {
    assert!(ip.flow_label < 1 << 20, "flow label over 20 bits");
    let mut ext = Vec::new();
    for (i, header) in ip.ext.iter().enumerate() {
        let next = ip.ext.get(i + 1).map_or_else(
            || ip.protocol.unwrap_or(transport.protocol),
            ExtHeader::protocol,
        );
        header.write(next, &mut ext);
    }
    let first_next = ip.ext.first().map_or_else(
        || ip.protocol.unwrap_or(transport.protocol),
        ExtHeader::protocol,
    );
    let payload_length = ip.payload_length.unwrap_or_else(|| {
        u16::try_from(ext.len() + transport.bytes.len() + payload_len)
            .expect("IPv6 payload over 64 KiB")
    });
    let first_word =
        (u32::from(ip.version) << 28) | (u32::from(ip.traffic_class) << 20) | ip.flow_label;
    let mut h = Vec::with_capacity(IPV6_HLEN + ext.len());
    h.extend(first_word.to_be_bytes());
    h.extend(payload_length.to_be_bytes());
    h.extend([first_next, ip.hop_limit]);
    h.extend(ip.src.octets());
    h.extend(ip.dst.octets());
    h.extend(ext);
    h
}

fn arp_bytes(arp: &Arp) -> Vec<u8> {
    let mut b = Vec::with_capacity(ARP_LEN);
    b.extend(1u16.to_be_bytes()); // hardware: Ethernet
    b.extend(ethertype::IPV4.to_be_bytes());
    b.extend([6, 4]);
    b.extend(arp.op.to_be_bytes());
    b.extend(arp.sender_mac);
    b.extend(arp.sender_ip.octets());
    b.extend(arp.target_mac);
    b.extend(arp.target_ip.octets());
    b
}

fn padded(bytes: &[u8], multiple: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().div_ceil(multiple) * multiple, 0);
    v
}

impl ExtHeader {
    fn protocol(&self) -> u8 {
        match self {
            ExtHeader::HopByHop(_) => proto::HOP_BY_HOP,
            ExtHeader::Routing { .. } => proto::ROUTING,
            ExtHeader::DestinationOptions(_) => proto::DESTINATION_OPTIONS,
            ExtHeader::Fragment { .. } => proto::FRAGMENT,
            ExtHeader::Auth { .. } => proto::AUTH,
        }
    }

    fn write(&self, next_header: u8, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            ExtHeader::HopByHop(options) | ExtHeader::DestinationOptions(options) => {
                out.extend([next_header, 0]);
                out.extend(options);
                let pad = (8 - (out.len() - start) % 8) % 8;
                match pad {
                    0 => {}
                    1 => out.push(0), // Pad1
                    n => {
                        out.extend([1, (n - 2) as u8]); // PadN
                        out.extend(std::iter::repeat_n(0, n - 2));
                    }
                }
            }
            ExtHeader::Routing {
                routing_type,
                segments_left,
                data,
            } => {
                out.extend([next_header, 0, *routing_type, *segments_left]);
                out.extend(data);
                let pad = (8 - (out.len() - start) % 8) % 8;
                out.extend(std::iter::repeat_n(0, pad));
            }
            ExtHeader::Fragment { offset, more, id } => {
                assert!(*offset < 1 << 13, "fragment offset {offset} over 13 bits");
                out.extend([next_header, 0]);
                out.extend(((offset << 3) | u16::from(*more)).to_be_bytes());
                out.extend(id.to_be_bytes());
            }
            ExtHeader::Auth { spi, seq, icv } => {
                assert!(
                    icv.len() % 4 == 0,
                    "AH ICV of {} bytes, not whole words",
                    icv.len()
                );
                // Payload length: the header's 4-byte words minus 2.
                let words = (12 + icv.len()) / 4;
                assert!(words - 2 <= 255, "AH too long");
                out.extend([next_header, (words - 2) as u8, 0, 0]);
                out.extend(spi.to_be_bytes());
                out.extend(seq.to_be_bytes());
                out.extend(icv);
                return;
            }
        }
        let len = out.len() - start;
        if !matches!(self, ExtHeader::Fragment { .. }) {
            assert!(len / 8 - 1 <= 255, "extension header too long");
            out[start + 1] = (len / 8 - 1) as u8;
        }
    }
}
