//! Crafted Ethernet frames for the verdict and end-to-end tests.
//!
//! A [`PacketBuilder`] describes one frame from the outside in: Ethernet (with
//! optional 802.1Q / 802.1ad tags and a PPPoE session header), then IPv4 (with
//! options and fragment fields), IPv6 (with extension headers) or ARP, then UDP
//! or TCP, then the payload. [`PacketBuilder::build`] fills in every length and
//! checksum (IPv4 header, UDP, TCP), unless a test overrides a field on purpose
//! to make the frame malformed. The resulting [`Frame`] knows where each layer
//! starts, so a test can cut it at any byte ([`Frame::truncated`]).
//!
//! ```
//! use tests::packet::{PacketBuilder, addr, tcp_flags};
//! let frame = PacketBuilder::ipv4(addr::SERVER_V4, addr::CLIENT_V4)
//!     .udp(53, 40000)
//!     .payload(b"an answer")
//!     .build();
//! assert_eq!(frame.len(), 14 + 20 + 8 + 9);
//! let syn = PacketBuilder::ipv6(addr::ATTACKER_V6, addr::CLIENT_V6)
//!     .vlan(7)
//!     .tcp(40000, 80, tcp_flags::SYN)
//!     .build();
//! assert_eq!(syn.l3, 18);
//! ```
//!
//! Addresses in tests come only from the ranges reserved for documentation and
//! benchmarking ([`addr::is_test_address`]); [`addr`] names a few.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ethernet header length without tags.
pub const ETH_HLEN: usize = 14;
/// One 802.1Q / 802.1ad tag.
pub const VLAN_HLEN: usize = 4;
/// PPPoE session header (6 bytes) plus the PPP protocol field (2 bytes).
pub const PPPOE_HLEN: usize = 8;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const TCP_HLEN: usize = 20;
pub const ARP_LEN: usize = 28;

/// EtherType values.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (outer tag of QinQ).
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
    pub const PPPOE_DISCOVERY: u16 = 0x8863;
    pub const PPPOE_SESSION: u16 = 0x8864;
    pub const LLDP: u16 = 0x88cc;
}

/// PPP protocol numbers inside a PPPoE session.
pub mod ppp {
    pub const IPV4: u16 = 0x0021;
    pub const IPV6: u16 = 0x0057;
}

/// IP protocol / IPv6 next-header numbers.
pub mod proto {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DESTINATION_OPTIONS: u8 = 60;
    /// RFC 3692 "use for experimentation and testing": the default protocol of
    /// an IPv4 packet without UDP or TCP.
    pub const EXPERIMENTAL: u8 = 253;
}

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// ARP operations.
pub mod arp_op {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// Addresses for tests: only the ranges reserved for documentation (RFC 5737,
/// RFC 3849) and benchmarking (RFC 2544), so no test ever names a real host.
pub mod addr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// The gateway's WAN address (the "inside" after NAT).
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    /// A server the client asked (a resolver, an NTP server).
    pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
    /// Someone nobody asked.
    pub const ATTACKER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
    /// Benchmarking range, for many distinct sources.
    pub const BENCH_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
    pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x53);
    pub const ATTACKER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x66);

    /// Locally administered MAC addresses.
    pub const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

    /// True for 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15
    /// and 2001:db8::/32.
    pub fn is_test_address(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
                    || (a == 198 && (b & 0xfe) == 18)
            }
            IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0x0db8],
        }
    }

    /// `is_test_address` for both ends of a packet.
    pub fn both_are_test_addresses(src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> bool {
        is_test_address(src.into()) && is_test_address(dst.into())
    }
}

/// One VLAN tag: TPID and the TCI fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag {
    /// [`ethertype::VLAN`] (802.1Q) or [`ethertype::QINQ`] (802.1ad).
    pub tpid: u16,
    /// Priority code point, 0..=7.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id, 0..=4095.
    pub vid: u16,
}

impl VlanTag {
    pub fn dot1q(vid: u16) -> Self {
        Self {
            tpid: ethertype::VLAN,
            pcp: 0,
            dei: false,
            vid,
        }
    }

    pub fn dot1ad(vid: u16) -> Self {
        Self {
            tpid: ethertype::QINQ,
            ..Self::dot1q(vid)
        }
    }

    fn tci(&self) -> u16 {
        assert!(self.pcp < 8 && self.vid < 4096, "invalid VLAN tag {self:?}");
        (u16::from(self.pcp) << 13) | (u16::from(self.dei) << 12) | self.vid
    }
}

/// IPv4 header fields. `None` means "computed by build()".
#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub tos: u8,
    pub id: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units (13 bits).
    pub fragment_offset: u16,
    pub ttl: u8,
    /// Option bytes; padded with zeros (end of option list) to a multiple of 4.
    pub options: Vec<u8>,
    /// Version nibble; 4 unless a test wants it wrong.
    pub version: u8,
    /// Header length in 32-bit words; default from the options.
    pub ihl: Option<u8>,
    pub total_length: Option<u16>,
    /// Protocol; default from the transport (UDP, TCP) or [`proto::EXPERIMENTAL`].
    pub protocol: Option<u8>,
    pub checksum: Option<u16>,
}

/// An IPv6 extension header, in the order given to the builder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtHeader {
    /// Options (TLVs); padded with Pad1/PadN to a multiple of 8 bytes.
    HopByHop(Vec<u8>),
    /// Type-specific data after the 4 fixed bytes; padded with zeros to a multiple of 8.
    Routing {
        routing_type: u8,
        segments_left: u8,
        data: Vec<u8>,
    },
    /// Options (TLVs); padded with Pad1/PadN to a multiple of 8 bytes.
    DestinationOptions(Vec<u8>),
    Fragment {
        /// Offset in 8-byte units (13 bits).
        offset: u16,
        more: bool,
        id: u32,
    },
}

impl ExtHeader {
    fn protocol(&self) -> u8 {
        match self {
            ExtHeader::HopByHop(_) => proto::HOP_BY_HOP,
            ExtHeader::Routing { .. } => proto::ROUTING,
            ExtHeader::DestinationOptions(_) => proto::DESTINATION_OPTIONS,
            ExtHeader::Fragment { .. } => proto::FRAGMENT,
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
        }
        let len = out.len() - start;
        if !matches!(self, ExtHeader::Fragment { .. }) {
            assert!(len / 8 - 1 <= 255, "extension header too long");
            out[start + 1] = (len / 8 - 1) as u8;
        }
    }
}

/// IPv6 header fields. `None` means "computed by build()".
#[derive(Clone, Debug)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    pub hop_limit: u8,
    pub ext: Vec<ExtHeader>,
    /// Version nibble; 6 unless a test wants it wrong.
    pub version: u8,
    pub payload_length: Option<u16>,
    /// Upper-layer protocol after the extension headers; default from the
    /// transport (UDP, TCP) or [`proto::NO_NEXT_HEADER`].
    pub protocol: Option<u8>,
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Clone, Debug)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

#[derive(Clone, Debug)]
pub enum Network {
    Ipv4(Ipv4),
    Ipv6(Ipv6),
    Arp(Arp),
    /// Any other EtherType; the payload follows the Ethernet header directly.
    Other(u16),
}

#[derive(Clone, Debug)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// [`tcp_flags`] bits.
    pub flags: u8,
    pub window: u16,
    /// Option bytes; padded with zeros (end of option list) to a multiple of 4.
    pub options: Vec<u8>,
}

#[derive(Clone, Debug)]
pub enum Transport {
    None,
    Udp { sport: u16, dport: u16 },
    Tcp(Tcp),
}

/// A frame under construction. See the module documentation.
#[derive(Clone, Debug)]
pub struct PacketBuilder {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// Outermost first.
    pub tags: Vec<VlanTag>,
    /// PPPoE session id, if the IP packet rides in a PPPoE session.
    pub pppoe: Option<u16>,
    pub network: Network,
    pub transport: Transport,
    pub payload: Vec<u8>,
    /// Minimum frame length: zeros appended after everything (Ethernet padding).
    pub pad_to: usize,
}

impl PacketBuilder {
    fn with(network: Network) -> Self {
        Self {
            dst_mac: addr::GATEWAY_MAC,
            src_mac: addr::PEER_MAC,
            tags: Vec::new(),
            pppoe: None,
            network,
            transport: Transport::None,
            payload: Vec::new(),
            pad_to: 0,
        }
    }

    /// An IPv4 packet, TTL 64, no options, not fragmented.
    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self::with(Network::Ipv4(Ipv4 {
            src,
            dst,
            tos: 0,
            id: 1,
            dont_fragment: false,
            more_fragments: false,
            fragment_offset: 0,
            ttl: 64,
            options: Vec::new(),
            version: 4,
            ihl: None,
            total_length: None,
            protocol: None,
            checksum: None,
        }))
    }

    /// An IPv6 packet, hop limit 64, no extension headers.
    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self::with(Network::Ipv6(Ipv6 {
            src,
            dst,
            traffic_class: 0,
            flow_label: 0,
            hop_limit: 64,
            ext: Vec::new(),
            version: 6,
            payload_length: None,
            protocol: None,
        }))
    }

    /// An ARP request: who has `target_ip`? Tell `sender_ip`. Broadcast.
    pub fn arp_request(sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        let mut builder = Self::with(Network::Arp(Arp {
            op: arp_op::REQUEST,
            sender_mac: addr::PEER_MAC,
            sender_ip,
            target_mac: [0; 6],
            target_ip,
        }));
        builder.dst_mac = [0xff; 6];
        builder
    }

    /// A frame of another EtherType; its bytes are the payload.
    pub fn ethertype(ethertype: u16) -> Self {
        Self::with(Network::Other(ethertype))
    }

    // ------------------------------------------------------------ Ethernet

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Adds a tag inside those already given (the first call is the outermost).
    pub fn tag(mut self, tag: VlanTag) -> Self {
        self.tags.push(tag);
        self
    }

    /// One 802.1Q tag.
    pub fn vlan(self, vid: u16) -> Self {
        self.tag(VlanTag::dot1q(vid))
    }

    /// QinQ: an 802.1ad service tag outside an 802.1Q customer tag.
    pub fn qinq(self, outer_vid: u16, inner_vid: u16) -> Self {
        self.tag(VlanTag::dot1ad(outer_vid))
            .tag(VlanTag::dot1q(inner_vid))
    }

    /// Carries the IP packet in a PPPoE session (RFC 2516) with this session id.
    pub fn pppoe(mut self, session_id: u16) -> Self {
        self.pppoe = Some(session_id);
        self
    }

    /// Appends zeros so the frame is at least `len` bytes (e.g. 60, Ethernet's
    /// minimum without FCS). The IP lengths do not count the padding.
    pub fn pad_to(mut self, len: usize) -> Self {
        self.pad_to = len;
        self
    }

    // ------------------------------------------------------------ IP

    fn ipv4_mut(&mut self) -> &mut Ipv4 {
        match &mut self.network {
            Network::Ipv4(ip) => ip,
            other => panic!("not an IPv4 packet: {other:?}"),
        }
    }

    fn ipv6_mut(&mut self) -> &mut Ipv6 {
        match &mut self.network {
            Network::Ipv6(ip) => ip,
            other => panic!("not an IPv6 packet: {other:?}"),
        }
    }

    /// IPv4 options (at most 40 bytes after padding to a multiple of 4).
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_mut().options = options.to_vec();
        self
    }

    /// IPv4 fragment fields: identification, more-fragments flag, offset in 8-byte units.
    pub fn fragment(mut self, id: u16, more_fragments: bool, offset: u16) -> Self {
        assert!(offset < 1 << 13, "fragment offset {offset} over 13 bits");
        let ip = self.ipv4_mut();
        ip.id = id;
        ip.more_fragments = more_fragments;
        ip.fragment_offset = offset;
        self
    }

    pub fn dont_fragment(mut self) -> Self {
        self.ipv4_mut().dont_fragment = true;
        self
    }

    pub fn ttl(mut self, ttl: u8) -> Self {
        match &mut self.network {
            Network::Ipv4(ip) => ip.ttl = ttl,
            Network::Ipv6(ip) => ip.hop_limit = ttl,
            other => panic!("not an IP packet: {other:?}"),
        }
        self
    }

    /// The IP version nibble, to build a wrong one.
    pub fn ip_version(mut self, version: u8) -> Self {
        assert!(version < 16);
        match &mut self.network {
            Network::Ipv4(ip) => ip.version = version,
            Network::Ipv6(ip) => ip.version = version,
            other => panic!("not an IP packet: {other:?}"),
        }
        self
    }

    /// The IPv4 header length field in 32-bit words, to build a wrong one.
    pub fn ihl(mut self, words: u8) -> Self {
        assert!(words < 16);
        self.ipv4_mut().ihl = Some(words);
        self
    }

    /// The upper-layer protocol (IPv4 protocol, or the last IPv6 next header),
    /// e.g. for a non-first fragment that carries no transport header.
    pub fn protocol(mut self, protocol: u8) -> Self {
        match &mut self.network {
            Network::Ipv4(ip) => ip.protocol = Some(protocol),
            Network::Ipv6(ip) => ip.protocol = Some(protocol),
            other => panic!("not an IP packet: {other:?}"),
        }
        self
    }

    /// Appends an IPv6 extension header after those already given.
    pub fn ext(mut self, header: ExtHeader) -> Self {
        self.ipv6_mut().ext.push(header);
        self
    }

    // ------------------------------------------------------------ transport

    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.transport = Transport::Udp { sport, dport };
        self
    }

    /// A TCP segment with these [`tcp_flags`], sequence 1, window 65535.
    pub fn tcp(mut self, sport: u16, dport: u16, flags: u8) -> Self {
        self.transport = Transport::Tcp(Tcp {
            sport,
            dport,
            seq: 1,
            ack: 0,
            flags,
            window: 65535,
            options: Vec::new(),
        });
        self
    }

    fn tcp_mut(&mut self) -> &mut Tcp {
        match &mut self.transport {
            Transport::Tcp(tcp) => tcp,
            other => panic!("not a TCP segment: {other:?}"),
        }
    }

    pub fn tcp_seq_ack(mut self, seq: u32, ack: u32) -> Self {
        let tcp = self.tcp_mut();
        tcp.seq = seq;
        tcp.ack = ack;
        self
    }

    /// TCP options (at most 40 bytes after padding to a multiple of 4).
    pub fn tcp_options(mut self, options: &[u8]) -> Self {
        self.tcp_mut().options = options.to_vec();
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    // ------------------------------------------------------------ build

    /// Serializes the frame, filling in lengths and checksums.
    pub fn build(&self) -> Frame {
        let mut out = Vec::with_capacity(128);
        out.extend(self.dst_mac);
        out.extend(self.src_mac);
        for tag in &self.tags {
            out.extend(tag.tpid.to_be_bytes());
            out.extend(tag.tci().to_be_bytes());
        }
        let inner_ethertype = match &self.network {
            Network::Ipv4(_) => ethertype::IPV4,
            Network::Ipv6(_) => ethertype::IPV6,
            Network::Arp(_) => ethertype::ARP,
            Network::Other(ethertype) => *ethertype,
        };
        let pppoe_at = self.pppoe.map(|session_id| {
            out.extend(ethertype::PPPOE_SESSION.to_be_bytes());
            let at = out.len();
            let ppp_protocol = match inner_ethertype {
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
            out.extend(inner_ethertype.to_be_bytes());
        }

        let l3 = out.len();
        let transport = self.transport_bytes();
        let (l4, payload_at) = match &self.network {
            Network::Ipv4(ip) => {
                let header = ipv4_header(ip, &transport, self.payload.len());
                out.extend(&header);
                let l4 = out.len();
                out.extend(&transport.bytes);
                (Some(l4), out.len())
            }
            Network::Ipv6(ip) => {
                let header = ipv6_header(ip, &transport, self.payload.len());
                out.extend(&header);
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
            let segment = &out[l4..];
            let sum = match &self.network {
                Network::Ipv4(ip) => {
                    pseudo_header_v4(ip.src, ip.dst, transport.protocol, segment.len())
                }
                Network::Ipv6(ip) => {
                    pseudo_header_v6(ip.src, ip.dst, transport.protocol, segment.len())
                }
                _ => unreachable!("transport only after IP"),
            };
            let mut checksum = fold(sum + ones_complement_sum(segment));
            if checksum == 0 && transport.protocol == proto::UDP {
                checksum = 0xffff; // 0 means "no checksum" in UDP
            }
            out[l4 + offset..l4 + offset + 2].copy_from_slice(&checksum.to_be_bytes());
        }

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
            l3,
            l4: l4.filter(|_| !matches!(self.transport, Transport::None)),
            payload: payload_at,
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
    let checksum = ip.checksum.unwrap_or_else(|| internet_checksum(&h));
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

/// A DNS message for a UDP payload: the header (id, flags 0x0100 for a
/// query or 0x8180 for a response, one question, one answer if a
/// response) and `extra` filler bytes.
pub fn dns_message(id: u16, response: bool, extra: usize) -> Vec<u8> {
    let flags: u16 = if response { 0x8180 } else { 0x0100 };
    let mut payload = Vec::new();
    payload.extend(id.to_be_bytes());
    payload.extend(flags.to_be_bytes());
    payload.extend([0, 1, 0, u8::from(response), 0, 0, 0, 0]);
    payload.extend(std::iter::repeat_n(0x61, extra));
    payload
}

/// Sum of big-endian 16-bit words, an odd last byte padded with zero; not folded.
pub fn ones_complement_sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum (RFC 1071) of `bytes`, with the checksum field zeroed.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    fold(ones_complement_sum(bytes))
}

fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> u32 {
    let mut p = Vec::with_capacity(12);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend([0, protocol]);
    p.extend((len as u16).to_be_bytes());
    ones_complement_sum(&p)
}

fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, len: usize) -> u32 {
    let mut p = Vec::with_capacity(40);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend((len as u32).to_be_bytes());
    p.extend([0, 0, 0, protocol]);
    ones_complement_sum(&p)
}

/// A built frame and where its layers start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Offset of the network header (IPv4, IPv6, ARP, or the payload of another EtherType).
    pub l3: usize,
    /// Offset of the UDP or TCP header, if there is one.
    pub l4: Option<usize>,
    /// Offset of the payload.
    pub payload: usize,
}

impl Frame {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The first `len` bytes, as if the frame had been cut there.
    pub fn truncated(&self, len: usize) -> Vec<u8> {
        assert!(
            len <= self.len(),
            "cannot cut a {}-byte frame at {len}",
            self.len()
        );
        self.bytes[..len].to_vec()
    }

    /// Where the network layer's headers end: the transport header, or the
    /// payload when there is none.
    pub fn l3_end(&self) -> usize {
        self.l4.unwrap_or(self.payload)
    }
}

impl std::ops::Deref for Frame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Both ends of an IP frame built here, for checking the address rule.
pub fn ip_endpoints(builder: &PacketBuilder) -> Option<(IpAddr, IpAddr)> {
    match &builder.network {
        Network::Ipv4(ip) => Some((ip.src.into(), ip.dst.into())),
        Network::Ipv6(ip) => Some((ip.src.into(), ip.dst.into())),
        Network::Arp(arp) => Some((arp.sender_ip.into(), arp.target_ip.into())),
        Network::Other(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be16(frame: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([frame[at], frame[at + 1]])
    }

    /// A checksummed region verifies when its sum, checksum included, folds to 0xffff.
    fn verifies(sum: u32) -> bool {
        fold(sum) == 0
    }

    fn udp_checksum_ok_v4(frame: &Frame) -> bool {
        let l3 = frame.l3;
        let l4 = frame.l4.unwrap();
        let src = Ipv4Addr::new(
            frame[l3 + 12],
            frame[l3 + 13],
            frame[l3 + 14],
            frame[l3 + 15],
        );
        let dst = Ipv4Addr::new(
            frame[l3 + 16],
            frame[l3 + 17],
            frame[l3 + 18],
            frame[l3 + 19],
        );
        let segment = &frame[l4..];
        verifies(
            pseudo_header_v4(src, dst, frame[l3 + 9], segment.len()) + ones_complement_sum(segment),
        )
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
        assert!(verifies(ones_complement_sum(&frame[14..34])));
        assert!(udp_checksum_ok_v4(&frame));
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
        assert_eq!(internet_checksum(&[0x45, 0, 0, 0x14]), !0x4514);
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
        assert!(verifies(ones_complement_sum(&frame[14..38])));
        assert!(udp_checksum_ok_v4(&frame));

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
        assert!(udp_checksum_ok_v4(&frame), "TCP checksum");
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
        assert!(udp_checksum_ok_v4(&pppoe));

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
        let segment = &frame[at..];
        assert!(verifies(
            pseudo_header_v6(src, dst, proto::UDP, segment.len()) + ones_complement_sum(segment)
        ));

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
}
