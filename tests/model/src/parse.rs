//! What a frame is, as the rules of docs/rules.md read it: the link layer (Ethernet,
//! up to two VLAN tags, a PPPoE session; or none on a device without an
//! Ethernet header, [`Link::Ip`]), the IP header with its options or
//! extension headers, and where the transport header starts; and the IP
//! packet inside IPv6 or IPv4 one tunnel deep ([`Ip::inner`]).
//!
//! Written from docs/rules.md, not from filter-ebpf: etherparse reads the
//! Ethernet, VLAN, IPv4, IPv6, IPv6 fragment and UDP headers. Three things
//! are read by hand, each for a stated reason:
//! - the PPPoE session header, which etherparse does not know;
//! - the other IPv6 extension headers (hop-by-hop, routing, destination
//!   options, AH): the rule walks each by its next-header and length bytes
//!   and needs only its first 8 bytes to do so (a header cut after those is
//!   noticed where the next one is read), where etherparse wants the whole
//!   header and refuses an AH whose length field is 0;
//! - the fixed TCP header (ports, sequence and acknowledgement numbers,
//!   flags), which the TCP rules read whatever the data offset says.
//!
//! Length fields. Headers are read from the frame as it arrives; an IP or
//! UDP length that claims more than the frame holds is not an error here
//! (the stack drops such a packet, so judging it by what is there costs
//! nothing and keeps a lie about lengths from bypassing a rule). What a rule
//! reads from the *payload* (the DNS and NTP fields) must lie inside the
//! datagram: the UDP payload as far as the UDP length counts it, so that
//! Ethernet padding after a short datagram is never read as its content.
//! The IP length is not looked at: the stack drops a datagram whose UDP
//! length exceeds its IP packet, so for every datagram it delivers the UDP
//! length is the bound (docs/rules.md, *Edges*).

use etherparse::{
    EtherType, Ethernet2HeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice,
    SingleVlanHeaderSlice, UdpHeaderSlice,
};

/// VLAN tags walked; a third tag is not parsed (the frame passes as not IP).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers walked; a longer chain is not guessed at.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
/// Headers starting further into the frame than this are not parsed.
pub const MAX_L4_OFFSET: usize = 512;
/// A tunnel's inner IP header further into the frame than this is not
/// parsed (docs/rules.md, *Tunnels*: `pass_malformed`).
pub const MAX_TUNNEL_L3: usize = 128;

const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const PPPOE_SESSION_LEN: usize = 6;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// IPv4 inside IP: inside IPv6, DS-Lite and MAP-E.
pub const IPPROTO_IPV4_IN_IP: u8 = 4;
/// IPv6 inside IP: inside IPv4, 6in4 and 6rd.
pub const IPPROTO_IPV6_IN_IP: u8 = 41;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;

const TCP_FIXED_LEN: usize = 20;

/// What the frames of a device start with: the link layer the programs
/// are loaded for (`filter_common::link_layer`, chosen by `attach` from the
/// device's link type, docs/commands.md), fixed for the life of a load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// Ethernet, with up to two VLAN tags and a PPPoE session header.
    #[default]
    Ethernet,
    /// The IP header itself: a device without an Ethernet header (ppp0,
    /// WireGuard, ip6tnl, tun). No VLAN or PPPoE parse, and no slip reply
    /// (docs/query-limits.md, *No slip on devices without Ethernet*).
    Ip,
}

impl Link {
    pub const ALL: [Link; 2] = [Link::Ethernet, Link::Ip];

    /// Its name in the sequences' text form and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Link::Ethernet => "ethernet",
            Link::Ip => "ip",
        }
    }

    pub fn from_name(name: &str) -> Option<Link> {
        Link::ALL.into_iter().find(|link| link.name() == name)
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

/// An address as on the wire; IPv4 uses the first 4 bytes, the rest are 0.
pub type Addr = [u8; 16];

/// Where a packet stands in IP fragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    Whole,
    /// Offset 0 with more to come: carries the transport header.
    First(FragmentId),
    /// A non-zero offset: payload only.
    Later(FragmentId),
}

/// What ties a datagram's fragments together besides the addresses: the IP
/// identification and the protocol that follows the fragmentation (IPv4:
/// the protocol field; IPv6: the fragment header's next header, which every
/// fragment carries, whatever headers the first fragment then has).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragmentId {
    pub id: u32,
    pub protocol: u8,
}

/// Where the upper-layer header is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upper {
    At {
        protocol: u8,
        offset: usize,
    },
    /// After a first fragment's fragment header, the rest of the header chain
    /// could not be walked (cut short, too long, too deep). The datagram is
    /// known, so the verdict can still be remembered for its later fragments.
    Unparsed,
}

#[derive(Clone, Debug)]
pub struct Ip<'a> {
    pub family: Family,
    pub src: Addr,
    pub dst: Addr,
    pub fragment: Fragment,
    pub upper: Upper,
    /// Carried inside another IP packet (docs/rules.md, *Tunnels*).
    pub tunnelled: bool,
    /// The link layer the frame came on.
    pub link: Link,
    /// Where the IP header starts.
    l3: usize,
    frame: &'a [u8],
}

#[derive(Clone, Debug)]
pub enum Parsed<'a> {
    /// Not IPv4/IPv6: ARP, LLDP, PPPoE discovery or control, a third VLAN tag, ...
    NotIp,
    /// Link or IP headers cut short or invalid.
    Malformed,
    Ip(Ip<'a>),
}

/// A UDP header and the datagram the stack would deliver.
#[derive(Clone, Debug)]
pub struct Udp<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    /// The UDP payload, bounded by the frame and the UDP length.
    pub datagram: &'a [u8],
    /// The frame holds the whole datagram the UDP length counts.
    pub complete: bool,
}

/// The fixed TCP header's fields the rules read.
#[derive(Clone, Copy, Debug)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

/// What `frame` is, on a device whose frames start with `link`.
pub fn parse(link: Link, frame: &[u8]) -> Parsed<'_> {
    let start = match link {
        Link::Ethernet => link_layer(frame),
        Link::Ip => ip_start(frame),
    };
    let Some((ethertype, offset)) = start else {
        return Parsed::Malformed;
    };
    match ethertype {
        EtherType::IPV4 => ipv4(link, frame, offset),
        EtherType::IPV6 => ipv6(link, frame, offset),
        _ => Parsed::NotIp,
    }
}

/// On a device without an Ethernet header the packet starts with its IP
/// header, IPv4 or IPv6 by its version nibble; any other is not IP
/// (docs/rules.md, *Parsing*). An empty frame is cut short. (A frame of
/// one byte the filter finds cut short too, reading two; the test runs
/// refuse frames under 14 bytes, so neither is ever compared.)
fn ip_start(frame: &[u8]) -> Option<(EtherType, usize)> {
    let ethertype = match frame.first()? >> 4 {
        4 => EtherType::IPV4,
        6 => EtherType::IPV6,
        _ => EtherType(0),
    };
    Some((ethertype, 0))
}

/// The network layer's EtherType and offset, or `None` if cut short.
fn link_layer(frame: &[u8]) -> Option<(EtherType, usize)> {
    let ethernet = Ethernet2HeaderSlice::from_slice(frame).ok()?;
    let mut ethertype = ethernet.ether_type();
    let mut offset = ethernet.slice().len();
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != EtherType::VLAN_TAGGED_FRAME && ethertype != EtherType::PROVIDER_BRIDGING {
            break;
        }
        let tag = SingleVlanHeaderSlice::from_slice(&frame[offset..]).ok()?;
        ethertype = tag.ether_type();
        offset += tag.slice().len();
    }
    if ethertype == EtherType(ETHERTYPE_PPPOE_SESSION) {
        // Version/type, code, session id, length, then the PPP protocol.
        let ppp = be16(frame, offset + PPPOE_SESSION_LEN)?;
        offset += PPPOE_SESSION_LEN + 2;
        ethertype = match ppp {
            PPP_IPV4 => EtherType::IPV4,
            PPP_IPV6 => EtherType::IPV6,
            // LCP, IPCP, ...: the session's own control traffic.
            _ => EtherType(0),
        };
    }
    Some((ethertype, offset))
}

fn ipv4(link: Link, frame: &[u8], offset: usize) -> Parsed<'_> {
    let Ok(header) = Ipv4HeaderSlice::from_slice(frame.get(offset..).unwrap_or_default()) else {
        return Parsed::Malformed;
    };
    let id = FragmentId {
        id: u32::from(header.identification()),
        protocol: header.protocol().0,
    };
    let fragment = match (header.fragments_offset().value(), header.more_fragments()) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First(id),
        _ => Fragment::Later(id),
    };
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src[..4].copy_from_slice(&header.source());
    dst[..4].copy_from_slice(&header.destination());
    Parsed::Ip(Ip {
        family: Family::V4,
        src,
        dst,
        fragment,
        upper: Upper::At {
            protocol: header.protocol().0,
            offset: offset + header.slice().len(),
        },
        tunnelled: false,
        link,
        l3: offset,
        frame,
    })
}

fn ipv6(link: Link, frame: &[u8], offset: usize) -> Parsed<'_> {
    let Ok(header) = Ipv6HeaderSlice::from_slice(frame.get(offset..).unwrap_or_default()) else {
        return Parsed::Malformed;
    };
    let mut ip = Ip {
        family: Family::V6,
        src: header.source(),
        dst: header.destination(),
        fragment: Fragment::Whole,
        upper: Upper::Unparsed,
        tunnelled: false,
        link,
        l3: offset,
        frame,
    };
    let mut next = header.next_header().0;
    let mut at = offset + header.slice().len();
    // Gives up: before a fragment header nothing is known about the
    // datagram; after a first fragment's, its later fragments can follow it.
    fn give_up(ip: Ip<'_>) -> Parsed<'_> {
        match ip.fragment {
            Fragment::First(_) => Parsed::Ip(Ip {
                upper: Upper::Unparsed,
                ..ip
            }),
            _ => Parsed::Malformed,
        }
    }
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_extension(next) {
            break;
        }
        if at > MAX_L4_OFFSET {
            return give_up(ip);
        }
        if next == IPV6_FRAGMENT {
            let Ok(fragment) =
                Ipv6FragmentHeaderSlice::from_slice(frame.get(at..).unwrap_or_default())
            else {
                return give_up(ip);
            };
            let id = FragmentId {
                id: fragment.identification(),
                protocol: fragment.next_header().0,
            };
            ip.fragment = match (
                fragment.fragment_offset().value(),
                fragment.more_fragments(),
            ) {
                (0, false) => Fragment::Whole,
                (0, true) => Fragment::First(id),
                _ => Fragment::Later(id),
            };
            next = fragment.next_header().0;
            at += fragment.slice().len();
            if let Fragment::Later(_) = ip.fragment {
                // Only payload follows.
                ip.upper = Upper::At {
                    protocol: next,
                    offset: at,
                };
                return Parsed::Ip(ip);
            }
            continue;
        }
        // Next header, length; AH counts 4-byte words beyond the first two,
        // the others 8-byte words beyond the first.
        let Some(first_eight) = frame.get(at..at + 8) else {
            return give_up(ip);
        };
        let len = usize::from(first_eight[1]);
        at += match next {
            IPV6_AUTH => (len + 2) * 4,
            _ => (len + 1) * 8,
        };
        next = first_eight[0];
    }
    if is_extension(next) {
        // Longer than we walk: not guessed at.
        return give_up(ip);
    }
    ip.upper = Upper::At {
        protocol: next,
        offset: at,
    };
    Parsed::Ip(ip)
}

fn is_extension(protocol: u8) -> bool {
    matches!(
        protocol,
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AUTH | IPV6_DEST_OPTS
    )
}

fn be16(frame: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
}

impl<'a> Ip<'a> {
    /// The upper-layer protocol and header offset, if the chain was walked.
    pub fn upper(&self) -> Option<(u8, usize)> {
        match self.upper {
            Upper::At { protocol, offset } => Some((protocol, offset)),
            Upper::Unparsed => None,
        }
    }

    /// Whether it carries an IP packet the rules unwrap (docs/rules.md,
    /// *Tunnels*): IPv4 inside IPv6, IPv6 inside IPv4, the upper protocol
    /// after the walked header chain (of a later fragment, the protocol
    /// that follows the fragmentation). Not IPv4 inside IPv4, nor IPv6
    /// inside IPv6; never one level deeper.
    pub fn carries_tunnel(&self) -> bool {
        !self.tunnelled
            && matches!(
                (self.family, self.upper()),
                (Family::V6, Some((IPPROTO_IPV4_IN_IP, _)))
                    | (Family::V4, Some((IPPROTO_IPV6_IN_IP, _)))
            )
    }

    /// The IP packet it carries ([`Ip::carries_tunnel`]), parsed as a bare
    /// one of the other family where the upper header would start: an
    /// inner header past [`MAX_TUNNEL_L3`], cut short or invalid is
    /// malformed.
    pub fn inner(&self) -> Parsed<'a> {
        let Some((_, offset)) = self.upper() else {
            return Parsed::Malformed;
        };
        if offset > MAX_TUNNEL_L3 {
            return Parsed::Malformed;
        }
        let parsed = match self.family {
            Family::V6 => ipv4(self.link, self.frame, offset),
            Family::V4 => ipv6(self.link, self.frame, offset),
        };
        match parsed {
            Parsed::Ip(inner) => Parsed::Ip(Ip {
                tunnelled: true,
                ..inner
            }),
            other => other,
        }
    }

    /// The IP header alone: no IPv4 options, no IPv6 extension headers.
    pub fn bare(&self) -> bool {
        let fixed = match self.family {
            Family::V4 => 20,
            Family::V6 => 40,
        };
        self.upper().is_some_and(|(_, at)| at == self.l3 + fixed)
    }

    /// The UDP header, or `None` if it is cut short or too deep to parse.
    pub fn udp(&self) -> Option<Udp<'a>> {
        let (_, offset) = self.upper()?;
        if offset > MAX_L4_OFFSET {
            return None;
        }
        let header = UdpHeaderSlice::from_slice(self.frame.get(offset..)?).ok()?;
        let start = offset + header.slice().len();
        let counted = offset + usize::from(header.length());
        let end = self.frame.len().min(counted);
        Some(Udp {
            src_port: header.source_port(),
            dst_port: header.destination_port(),
            datagram: self.frame.get(start..end.max(start)).unwrap_or_default(),
            complete: counted <= self.frame.len(),
        })
    }

    /// The fixed TCP header, or `None` if cut short or too deep.
    pub fn tcp(&self) -> Option<Tcp> {
        let (_, offset) = self.upper()?;
        if offset > MAX_L4_OFFSET {
            return None;
        }
        let fixed = self.frame.get(offset..offset + TCP_FIXED_LEN)?;
        let be32 = |at: usize| u32::from_be_bytes(fixed[at..at + 4].try_into().expect("4 bytes"));
        Some(Tcp {
            src_port: u16::from_be_bytes([fixed[0], fixed[1]]),
            dst_port: u16::from_be_bytes([fixed[2], fixed[3]]),
            seq: be32(4),
            ack: be32(8),
            flags: fixed[13],
        })
    }
}
