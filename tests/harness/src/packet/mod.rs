//! Crafted Ethernet frames for the verdict tests, the floods of the
//! end-to-end tests and the lab, and the benchmark's templates.
//!
//! A [`PacketBuilder`] describes one frame from the outside in: Ethernet (with
//! optional 802.1Q / 802.1ad tags and a PPPoE session header), optionally an
//! outer IP header that tunnels the packet ([`PacketBuilder::in_ipv6`],
//! [`PacketBuilder::in_ipv4`]), then IPv4 (with options and fragment fields),
//! IPv6 (with extension headers) or ARP, then UDP or TCP, then the payload. [`PacketBuilder::build`] fills in every length and
//! checksum (IPv4 header, UDP, TCP), unless a test overrides a field on purpose
//! to make the frame malformed. The resulting [`Frame`] knows where each layer
//! starts, so a test can cut it at any byte ([`Frame::truncated`]).
//!
//! ```
//! use harness::packet::{PacketBuilder, addr, tcp_flags};
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
//!
//! The parts: this module holds the header fields and the builder's API,
//! [`serialize`] writes the bytes, [`checksum`] computes the checksums (and
//! [`checksum::verify_ip`] checks them with an independent decoder,
//! etherparse), [`payload`] builds DNS and NTP payloads. The serialisation
//! is our own rather than etherparse's: a verdict test must be able to
//! write wrong fields on purpose (version, header length, lengths,
//! checksums), PPPoE session headers and padded extension headers, which a
//! library that writes only valid packets does not.

pub mod addr;
pub mod checksum;
pub mod payload;
mod serialize;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use self::payload::dns_message;

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
    /// IPsec Authentication Header (RFC 4302).
    pub const AUTH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DESTINATION_OPTIONS: u8 = 60;
    /// IPv4 inside IP (IPv6 next header 4: DS-Lite, MAP-E; IPv4: IPIP).
    pub const IPV4_IN_IP: u8 = 4;
    /// IPv6 inside IP (IPv4 protocol 41: 6in4, 6rd).
    pub const IPV6_IN_IP: u8 = 41;
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

impl Ipv4 {
    /// TTL 64, no options, not fragmented, everything else computed.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self {
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
        }
    }
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
    /// An Authentication Header: SPI, sequence number and an integrity
    /// check value of a multiple of 4 bytes (8 keeps the IPv6 alignment).
    Auth { spi: u32, seq: u32, icv: Vec<u8> },
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

/// The outer header of a tunnelled packet: the builder's IP packet is its
/// payload. Its protocol (`None`: 4 for IPv4 inside, 41 for IPv6) and
/// lengths are computed by build() as for a packet of its own.
#[derive(Clone, Debug)]
pub enum Outer {
    Ipv4(Ipv4),
    Ipv6(Ipv6),
}

/// Linux's ip6tnl default: the tunnel encapsulation limit (RFC 2473) in a
/// destination options header before the inner packet.
pub const DEFAULT_ENCAP_LIMIT: u8 = 4;

impl Ipv6 {
    /// Hop limit 64, no extension headers, everything else computed.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self {
            src,
            dst,
            traffic_class: 0,
            flow_label: 0,
            hop_limit: 64,
            ext: Vec::new(),
            version: 6,
            payload_length: None,
            protocol: None,
        }
    }
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

/// How IP rides on the WAN link in a test frame: the encapsulations the
/// filter's parser walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Plain,
    Vlan,
    QinQ,
    Pppoe,
}

impl Link {
    pub const ALL: [Link; 4] = [Link::Plain, Link::Vlan, Link::QinQ, Link::Pppoe];

    /// `builder`'s packet carried this way (fixed tags and session id).
    pub fn carry(self, builder: PacketBuilder) -> PacketBuilder {
        match self {
            Link::Plain => builder,
            Link::Vlan => builder.vlan(100),
            Link::QinQ => builder.qinq(200, 100),
            Link::Pppoe => builder.pppoe(0x1234),
        }
    }
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
    /// The outer IP header, if the packet is tunnelled.
    pub outer: Option<Outer>,
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
            outer: None,
            network,
            transport: Transport::None,
            payload: Vec::new(),
            pad_to: 0,
        }
    }

    /// An IPv4 packet, TTL 64, no options, not fragmented.
    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self::with(Network::Ipv4(Ipv4::new(src, dst)))
    }

    /// An IPv6 packet, hop limit 64, no extension headers.
    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self::with(Network::Ipv6(Ipv6::new(src, dst)))
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

    // ------------------------------------------------------------ tunnel

    /// Tunnels the packet in IPv6 (hop limit 64, no extension headers) from
    /// `src` to `dst`: DS-Lite and MAP-E (IPv4 inside, next header 4).
    pub fn in_ipv6(mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        self.outer = Some(Outer::Ipv6(Ipv6::new(src, dst)));
        self
    }

    /// Tunnels the packet in IPv4 (TTL 64, not fragmented) from `src` to
    /// `dst`: 6in4 and 6rd (IPv6 inside, protocol 41).
    pub fn in_ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        self.outer = Some(Outer::Ipv4(Ipv4::new(src, dst)));
        self
    }

    /// Appends an extension header to the outer IPv6 header.
    pub fn outer_ext(mut self, header: ExtHeader) -> Self {
        match &mut self.outer {
            Some(Outer::Ipv6(ip)) => ip.ext.push(header),
            other => panic!("no outer IPv6 header: {other:?}"),
        }
        self
    }

    /// The destination option Linux's ip6tnl puts before the inner packet
    /// unless told `encaplimit none`: the tunnel encapsulation limit
    /// (type 4, RFC 2473) and a PadN, 8 bytes.
    pub fn encap_limit(self, limit: u8) -> Self {
        self.outer_ext(ExtHeader::DestinationOptions(vec![4, 1, limit]))
    }

    /// Fragments the outer packet: IPv4's fragment fields, or a fragment
    /// header after the outer IPv6 header's others. In a later fragment
    /// (`offset` > 0) the inner packet's bytes are only payload.
    pub fn outer_fragment(mut self, id: u32, more_fragments: bool, offset: u16) -> Self {
        assert!(offset < 1 << 13, "fragment offset {offset} over 13 bits");
        match &mut self.outer {
            Some(Outer::Ipv4(ip)) => {
                ip.id = u16::try_from(id).expect("an IPv4 fragment id has 16 bits");
                ip.more_fragments = more_fragments;
                ip.fragment_offset = offset;
            }
            Some(Outer::Ipv6(ip)) => ip.ext.push(ExtHeader::Fragment {
                offset,
                more: more_fragments,
                id,
            }),
            None => panic!("no outer header to fragment"),
        }
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
}

/// A built frame and where its layers start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Offset of the outer IP header of a tunnelled packet.
    pub outer_l3: Option<usize>,
    /// Offset of the network header (IPv4, IPv6, ARP, or the payload of
    /// another EtherType); of a tunnelled packet, the inner IP header.
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

    /// The packet as a device without a link-layer header (ppp, WireGuard,
    /// an IP tunnel, tun) hands it over: from the (outer) network header on.
    pub fn ip_only(&self) -> Frame {
        let start = self.outer_l3.unwrap_or(self.l3);
        Frame {
            bytes: self.bytes[start..].to_vec(),
            outer_l3: self.outer_l3.map(|outer| outer - start),
            l3: self.l3 - start,
            l4: self.l4.map(|l4| l4 - start),
            payload: self.payload - start,
        }
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
