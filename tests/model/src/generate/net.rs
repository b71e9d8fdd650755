//! The addresses, encapsulations (the link layer, IP inside IP), IP header
//! variations and damage of the generated frames, built with the harness's
//! packet builder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use harness::packet::{
    DEFAULT_ENCAP_LIMIT, ETH_HLEN, ExtHeader, Frame, PacketBuilder, VlanTag, ethertype, proto,
};
use proptest::{collection::vec, prelude::*};

use super::fragment::{FragPlan, frag_plan};

/// The addresses of one case: our side (the gateway after NAT) and the
/// internet side, from the ranges the project may spoof (192.0.2.0/24,
/// 198.18.0.0/15, 2001:db8::/32). Remote addresses share /24s and /48s on
/// purpose, for the SYN prefix level.
#[derive(Clone, Debug)]
pub struct Peers {
    pub local_v4: [Ipv4Addr; 2],
    pub remote_v4: [Ipv4Addr; 4],
    pub local_v6: [Ipv6Addr; 2],
    pub remote_v6: [Ipv6Addr; 4],
}

pub fn peers() -> BoxedStrategy<Peers> {
    (
        any::<[u8; 2]>(),
        any::<(u8, [(bool, u8); 4])>(),
        any::<[u16; 2]>(),
        any::<(u16, u16, [(bool, bool, u16); 4])>(),
    )
        .prop_map(
            |(local4, (third, remote4), local6, (p, s, remote6))| Peers {
                local_v4: local4.map(|x| Ipv4Addr::new(192, 0, 2, x.max(1))),
                remote_v4: remote4.map(|(next, x)| {
                    Ipv4Addr::new(198, 18 + (third & 1), third.wrapping_add(u8::from(next)), x)
                }),
                local_v6: local6.map(|x| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, x.max(1))),
                remote_v6: remote6.map(|(next48, next64, h)| {
                    Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0x8000 | (p & 0x7ffe) | u16::from(next48),
                        s.wrapping_add(u16::from(next64)),
                        0,
                        0,
                        0,
                        h,
                    )
                }),
            },
        )
        .boxed()
}

/// Which two ends a packet has: family, one of our addresses, one remote.
#[derive(Clone, Copy, Debug)]
pub struct Ends {
    pub v6: bool,
    pub local: u8,
    pub remote: u8,
}

pub fn ends() -> impl Strategy<Value = Ends> {
    (prop::bool::weighted(0.4), 0..2u8, 0..4u8).prop_map(|(v6, local, remote)| Ends {
        v6,
        local,
        remote,
    })
}

impl Peers {
    pub fn local(&self, ends: Ends) -> IpAddr {
        let i = usize::from(ends.local) % 2;
        if ends.v6 {
            self.local_v6[i].into()
        } else {
            self.local_v4[i].into()
        }
    }

    pub fn remote(&self, ends: Ends) -> IpAddr {
        let i = usize::from(ends.remote) % 4;
        if ends.v6 {
            self.remote_v6[i].into()
        } else {
            self.remote_v4[i].into()
        }
    }
}

/// The link-layer encapsulation.
#[derive(Clone, Copy, Debug)]
pub enum Link {
    Plain,
    Vlan(u16),
    QinQ(u16, u16),
    /// An 802.1ad tag alone.
    ServiceTag(u16),
    Pppoe(u16),
    VlanPppoe(u16, u16),
    QinQPppoe(u16, u16, u16),
    /// One tag more than the filter walks.
    ThreeTags(u16, u16, u16),
    /// A tag protocol id that is no 802.1Q/802.1ad (0x9100, pre-standard QinQ).
    OtherTpid(u16),
}

pub fn link() -> BoxedStrategy<Link> {
    let vid = || 0..4096u16;
    prop_oneof![
        10 => Just(Link::Plain),
        3 => vid().prop_map(Link::Vlan),
        2 => (vid(), vid()).prop_map(|(a, b)| Link::QinQ(a, b)),
        1 => vid().prop_map(Link::ServiceTag),
        2 => any::<u16>().prop_map(Link::Pppoe),
        1 => (vid(), any::<u16>()).prop_map(|(v, s)| Link::VlanPppoe(v, s)),
        1 => (vid(), vid(), any::<u16>()).prop_map(|(a, b, s)| Link::QinQPppoe(a, b, s)),
        1 => (vid(), vid(), vid()).prop_map(|(a, b, c)| Link::ThreeTags(a, b, c)),
        1 => vid().prop_map(Link::OtherTpid),
    ]
    .boxed()
}

impl Link {
    pub fn apply(self, builder: PacketBuilder) -> PacketBuilder {
        match self {
            Link::Plain => builder,
            Link::Vlan(v) => builder.vlan(v),
            Link::QinQ(a, b) => builder.qinq(a, b),
            Link::ServiceTag(v) => builder.tag(VlanTag::dot1ad(v)),
            Link::Pppoe(s) => builder.pppoe(s),
            Link::VlanPppoe(v, s) => builder.vlan(v).pppoe(s),
            Link::QinQPppoe(a, b, s) => builder.qinq(a, b).pppoe(s),
            Link::ThreeTags(a, b, c) => builder.qinq(a, b).vlan(c),
            Link::OtherTpid(v) => builder.tag(VlanTag {
                tpid: OTHER_TPID,
                ..VlanTag::dot1q(v)
            }),
        }
    }
}

/// The tag protocol id of [`Link::OtherTpid`].
const OTHER_TPID: u16 = 0x9100;
/// The PPPoE session header and the PPP protocol field.
const PPPOE_LEN: usize = 8;

/// `frame`, built on Ethernet with one of the [`Link`]s, as a device
/// without an Ethernet header (ppp0, WireGuard, ip6tnl, tun) hands the same
/// packet over: from the (outer) IP header on, damage included. The link
/// headers taken off are those the generator builds: the Ethernet header,
/// up to three tags (802.1Q, 802.1ad, [`OTHER_TPID`]), a PPPoE session
/// header. What is left of a frame cut inside them is empty; a frame that
/// is not IP keeps what followed its EtherType (ARP's hardware type, an
/// LLDP TLV, PPP control, raw bytes), which such a device would see as a
/// packet of a version other than 4 or 6, or as one that lies about it.
pub fn without_link(frame: &[u8]) -> Vec<u8> {
    let ethertype = |end: usize| {
        frame
            .get(end - 2..end)
            .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let mut at = ETH_HLEN;
    for _ in 0..3 {
        match ethertype(at) {
            Some(ethertype::VLAN | ethertype::QINQ | OTHER_TPID) => at += 4,
            _ => break,
        }
    }
    if ethertype(at) == Some(ethertype::PPPOE_SESSION) {
        at += PPPOE_LEN;
    }
    frame.get(at..).unwrap_or_default().to_vec()
}

/// An IPv6 extension header of a whole packet (or of the unfragmentable or
/// fragmentable part of a fragmented one).
#[derive(Clone, Debug)]
pub enum Ext {
    HopByHop(Vec<u8>),
    Routing {
        kind: u8,
        left: u8,
        data: Vec<u8>,
    },
    DestOpts(Vec<u8>),
    /// An AH with an ICV of this many 4-byte words.
    Auth {
        icv_words: u8,
        spi: u32,
    },
    /// A fragment header that fragments nothing (offset 0, M clear).
    Atomic(u32),
}

fn options() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(vec![]),
        2 => vec(any::<u8>(), 0..14),
        // Long enough to push later headers past the 512-byte limit.
        1 => vec(any::<u8>(), 200..260),
    ]
}

pub fn ext() -> BoxedStrategy<Ext> {
    prop_oneof![
        options().prop_map(Ext::HopByHop),
        (0..5u8, 0..3u8, vec(any::<u8>(), 0..20)).prop_map(|(kind, left, data)| Ext::Routing {
            kind,
            left,
            data
        }),
        options().prop_map(Ext::DestOpts),
        (0..5u8, any::<u32>()).prop_map(|(icv_words, spi)| Ext::Auth { icv_words, spi }),
        any::<u32>().prop_map(Ext::Atomic),
    ]
    .boxed()
}

/// Headers that may follow a fragment header in the first fragment.
pub fn fragmentable_ext() -> BoxedStrategy<Ext> {
    prop_oneof![
        vec(any::<u8>(), 0..14).prop_map(Ext::DestOpts),
        (0..5u8, any::<u32>()).prop_map(|(icv_words, spi)| Ext::Auth { icv_words, spi }),
    ]
    .boxed()
}

impl Ext {
    pub fn header(&self) -> ExtHeader {
        match self {
            Ext::HopByHop(options) => ExtHeader::HopByHop(options.clone()),
            Ext::Routing { kind, left, data } => ExtHeader::Routing {
                routing_type: *kind,
                segments_left: *left,
                data: data.clone(),
            },
            Ext::DestOpts(options) => ExtHeader::DestinationOptions(options.clone()),
            Ext::Auth { icv_words, spi } => ExtHeader::Auth {
                spi: *spi,
                seq: 1,
                icv: vec![0x5a; 4 * usize::from(*icv_words)],
            },
            Ext::Atomic(id) => ExtHeader::Fragment {
                offset: 0,
                more: false,
                id: *id,
            },
        }
    }

    pub fn protocol(&self) -> u8 {
        match self {
            Ext::HopByHop(_) => 0,
            Ext::Routing { .. } => 43,
            Ext::DestOpts(_) => 60,
            Ext::Auth { .. } => 51,
            Ext::Atomic(_) => 44,
        }
    }
}

/// The IP header's variable parts: IPv4 options, IPv6 extension headers.
#[derive(Clone, Debug)]
pub struct IpLayer {
    pub v4_options: Vec<u8>,
    pub v6_exts: Vec<Ext>,
    pub ttl: u8,
}

pub fn ip_layer() -> BoxedStrategy<IpLayer> {
    let v4_options = prop_oneof![
        6 => Just(vec![]),
        // Well-formed: router alert, NOPs and end of list, record route.
        1 => Just(vec![0x94, 4, 0, 0]),
        1 => Just(vec![1, 1, 1, 0]),
        1 => Just(vec![7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]),
        1 => vec(any::<u8>(), 0..=40),
    ];
    let v6_exts = prop_oneof![
        6 => Just(vec![]),
        3 => vec(ext(), 1..4),
        // Around and over the six headers the filter walks.
        1 => vec(ext(), 5..9),
    ];
    (v4_options, v6_exts, any::<u8>())
        .prop_map(|(v4_options, v6_exts, ttl)| IpLayer {
            v4_options,
            v6_exts,
            ttl,
        })
        .boxed()
}

impl IpLayer {
    /// A packet from `src` to `dst` of the family of the addresses.
    pub fn builder(&self, link: Link, src: IpAddr, dst: IpAddr) -> PacketBuilder {
        let builder = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                PacketBuilder::ipv4(src, dst).ipv4_options(&self.v4_options)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => self
                .v6_exts
                .iter()
                .fold(PacketBuilder::ipv6(src, dst), |b, ext| b.ext(ext.header())),
            _ => unreachable!("both ends of one family"),
        };
        link.apply(builder).ttl(self.ttl.max(1))
    }
}

/// Damage done to a built frame.
#[derive(Clone, Copy, Debug)]
pub enum Mangle {
    None,
    /// Cut the frame at an offset from a header boundary (never below 14 bytes).
    Cut {
        at: Anchor,
        delta: i8,
    },
    /// Ethernet padding: bytes after the IP packet that its lengths do not count.
    Pad {
        len: u8,
        fill: u8,
    },
    /// Overwrite one byte near a header boundary.
    Poke {
        at: Anchor,
        delta: i8,
        value: u8,
    },
    /// A length or version field that lies.
    Lie(Lie),
}

#[derive(Clone, Copy, Debug)]
pub enum Anchor {
    Network,
    Transport,
    Payload,
    End,
}

#[derive(Clone, Copy, Debug)]
pub enum Lie {
    /// IPv4 total length or IPv6 payload length.
    IpLength(u16),
    UdpLength(u16),
    /// The IP version nibble.
    Version(u8),
    /// The IPv4 header length nibble.
    Ihl(u8),
    /// The TCP data offset nibble.
    TcpDataOffset(u8),
}

pub fn mangle() -> BoxedStrategy<Mangle> {
    let anchor = prop_oneof![
        Just(Anchor::Network),
        Just(Anchor::Transport),
        Just(Anchor::Payload),
        Just(Anchor::End),
    ];
    let lie = prop_oneof![
        prop_oneof![0..80u16, any::<u16>()].prop_map(Lie::IpLength),
        prop_oneof![0..40u16, any::<u16>()].prop_map(Lie::UdpLength),
        (0..16u8).prop_map(Lie::Version),
        (0..16u8).prop_map(Lie::Ihl),
        (0..16u8).prop_map(Lie::TcpDataOffset),
    ];
    prop_oneof![
        30 => Just(Mangle::None),
        5 => (anchor.clone(), -12..12i8).prop_map(|(at, delta)| Mangle::Cut { at, delta }),
        2 => (1..60u8, prop_oneof![Just(0u8), any::<u8>()])
            .prop_map(|(len, fill)| Mangle::Pad { len, fill }),
        2 => (anchor, -8..16i8, any::<u8>())
            .prop_map(|(at, delta, value)| Mangle::Poke { at, delta, value }),
        2 => lie.prop_map(Mangle::Lie),
    ]
    .boxed()
}

impl Mangle {
    pub fn apply(self, frame: &Frame) -> Vec<u8> {
        let mut bytes = frame.bytes.clone();
        let anchor = |at: Anchor| match at {
            Anchor::Network => frame.l3,
            Anchor::Transport => frame.l3_end(),
            Anchor::Payload => frame.payload,
            Anchor::End => frame.len(),
        };
        let offset = |at: Anchor, delta: i8| {
            anchor(at)
                .saturating_add_signed(isize::from(delta))
                .min(frame.len())
        };
        match self {
            Mangle::None => {}
            Mangle::Cut { at, delta } => bytes.truncate(offset(at, delta).max(14)),
            Mangle::Pad { len, fill } => bytes.extend(std::iter::repeat_n(fill, usize::from(len))),
            Mangle::Poke { at, delta, value } => {
                if let Some(byte) = bytes.get_mut(offset(at, delta)) {
                    *byte = value;
                }
            }
            Mangle::Lie(lie) => {
                let l3 = frame.l3;
                let is_v6 = bytes.get(l3).is_some_and(|b| b >> 4 == 6);
                let put16 = |bytes: &mut Vec<u8>, at: usize, value: u16| {
                    if at + 2 <= bytes.len() {
                        bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
                    }
                };
                let nibble = |bytes: &mut Vec<u8>, at: usize, high: bool, value: u8| {
                    if let Some(byte) = bytes.get_mut(at) {
                        *byte = if high {
                            (*byte & 0x0f) | value << 4
                        } else {
                            (*byte & 0xf0) | (value & 0x0f)
                        };
                    }
                };
                match lie {
                    Lie::IpLength(len) => put16(&mut bytes, l3 + if is_v6 { 4 } else { 2 }, len),
                    Lie::UdpLength(len) => {
                        if let Some(l4) = frame.l4 {
                            put16(&mut bytes, l4 + 4, len);
                        }
                    }
                    Lie::Version(v) => nibble(&mut bytes, l3, true, v),
                    Lie::Ihl(ihl) if !is_v6 => nibble(&mut bytes, l3, false, ihl),
                    Lie::TcpDataOffset(words) => {
                        if let Some(l4) = frame.l4 {
                            nibble(&mut bytes, l4 + 12, true, words);
                        }
                    }
                    Lie::Ihl(_) => {}
                }
            }
        }
        bytes
    }
}

/// What every frame of the generator needs besides its content.
#[derive(Clone, Debug)]
pub struct Look {
    pub link: Link,
    pub ip: IpLayer,
    pub mangle: Mangle,
    pub tunnel: Tunnel,
}

pub fn look() -> BoxedStrategy<Look> {
    (link(), ip_layer(), mangle(), tunnel())
        .prop_map(|(link, ip, mangle, tunnel)| Look {
            link,
            ip,
            mangle,
            tunnel,
        })
        .boxed()
}

impl Look {
    /// The link layer the packet is built with: its own, or plain Ethernet
    /// (taken off again by [`Look::carry`]) under a tunnel.
    pub fn inner_link(&self) -> Link {
        match self.tunnel {
            Tunnel::None => self.link,
            _ => Link::Plain,
        }
    }

    /// A frame built with [`Look::inner_link`] (an IPv6 packet if `v6`),
    /// as sent: bare, or carried in the tunnel (several frames where the
    /// outer datagram is fragmented). `inbound`: from the internet to us.
    pub fn carry(&self, frame: Vec<u8>, v6: bool, inbound: bool) -> Vec<Vec<u8>> {
        match &self.tunnel {
            Tunnel::None => vec![frame],
            tunnel => tunnel.carry(self.link, &frame[ETH_HLEN.min(frame.len())..], v6, inbound),
        }
    }

    /// The frames of the packet from `src` to `dst` that `transport`
    /// completes, damaged as the look says and carried as it says.
    pub fn frames(
        &self,
        src: IpAddr,
        dst: IpAddr,
        transport: impl FnOnce(PacketBuilder) -> PacketBuilder,
    ) -> Vec<Vec<u8>> {
        let frame = transport(self.ip.builder(self.inner_link(), src, dst)).build();
        self.carry(self.mangle.apply(&frame), src.is_ipv6(), is_local(dst))
    }
}

/// Whether `addr` is one of our side's ([`Peers`]: 192.0.2.0/24,
/// 2001:db8:1::/48), so that a packet to it is inbound.
pub fn is_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.octets()[..3] == [192, 0, 2],
        IpAddr::V6(v6) => v6.segments()[..3] == [0x2001, 0xdb8, 1],
    }
}

/// IP inside IP on the Ethernet device (docs/rules.md, *Tunnels*).
#[derive(Clone, Debug)]
pub enum Tunnel {
    None,
    /// The tunnel of the packet's family: IPv4 inside IPv6 (DS-Lite,
    /// MAP-E), with ip6tnl's encapsulation limit option (`limit`) or
    /// without, or IPv6 inside IPv4 (6in4, 6rd). The outer datagram may be
    /// fragmented (`fragments`: the limit option before the fragment header
    /// or after it, `limit_first`); the outer header damaged (`mangle`,
    /// unfragmented only).
    Carried {
        relay: u8,
        limit: Option<u8>,
        fragments: Option<FragPlan>,
        limit_first: bool,
        mangle: Mangle,
    },
    /// Carried in the other family's tunnel, and that in the packet's own
    /// family's: a tunnel inside the tunnel, which passes.
    Nested {
        relay: u8,
        limit: Option<u8>,
    },
    /// IPv4 inside IPv4, IPv6 inside IPv6: not unwrapped.
    SameFamily {
        relay: u8,
    },
}

pub fn tunnel() -> BoxedStrategy<Tunnel> {
    let limit = || {
        prop_oneof![
            Just(Some(DEFAULT_ENCAP_LIMIT)),
            Just(None),
            any::<u8>().prop_map(Some)
        ]
    };
    let outer_mangle = prop_oneof![
        8 => Just(Mangle::None),
        1 => (prop_oneof![Just(Anchor::Network), Just(Anchor::Transport)], -12..12i8)
            .prop_map(|(at, delta)| Mangle::Cut { at, delta }),
        1 => (Just(Anchor::Network), 0..48i8, any::<u8>())
            .prop_map(|(at, delta, value)| Mangle::Poke { at, delta, value }),
    ];
    prop_oneof![
        12 => Just(Tunnel::None),
        4 => (
            0..4u8,
            limit(),
            prop_oneof![3 => Just(None), 1 => frag_plan().prop_map(Some)],
            any::<bool>(),
            outer_mangle,
        )
            .prop_map(|(relay, limit, fragments, limit_first, mangle)| Tunnel::Carried {
                relay,
                limit,
                fragments,
                limit_first,
                mangle,
            }),
        1 => (0..4u8, limit()).prop_map(|(relay, limit)| Tunnel::Nested { relay, limit }),
        1 => (0..4u8).prop_map(|relay| Tunnel::SameFamily { relay }),
    ]
    .boxed()
}

/// An outer header from a relay (one of four, in 198.18.0.0/15 and
/// 2001:db8::/32) to our end of the tunnel, or back; IPv6 if `v6`.
fn outer(v6: bool, relay: u8, inbound: bool) -> PacketBuilder {
    let relay = relay % 4 + 1;
    if v6 {
        let relay = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, relay.into());
        let us = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xfe);
        let (src, dst) = if inbound { (relay, us) } else { (us, relay) };
        PacketBuilder::ipv6(src, dst)
    } else {
        let relay = Ipv4Addr::new(198, 19, 255, relay);
        let us = Ipv4Addr::new(192, 0, 2, 254);
        let (src, dst) = if inbound { (relay, us) } else { (us, relay) };
        PacketBuilder::ipv4(src, dst)
    }
}

/// The protocol of a packet inside IP: 4 for IPv4, 41 for IPv6.
fn carried(v6: bool) -> u8 {
    if v6 {
        proto::IPV6_IN_IP
    } else {
        proto::IPV4_IN_IP
    }
}

/// The encapsulation limit option, if any, as the outer IPv6 header's
/// destination options.
fn with_limit(builder: PacketBuilder, limit: Option<u8>) -> PacketBuilder {
    match limit {
        Some(limit) => builder.ext(ExtHeader::DestinationOptions(vec![4, 1, limit])),
        None => builder,
    }
}

impl Tunnel {
    /// The same tunnel sending every packet whole, in one undamaged frame.
    pub fn whole(self) -> Tunnel {
        match self {
            Tunnel::Carried {
                relay,
                limit,
                limit_first,
                ..
            } => Tunnel::Carried {
                relay,
                limit,
                fragments: None,
                limit_first,
                mangle: Mangle::None,
            },
            other => other,
        }
    }

    /// `inner`, the bytes of an IP packet (IPv6 if `v6`), carried on `link`.
    fn carry(&self, link: Link, inner: &[u8], v6: bool, inbound: bool) -> Vec<Vec<u8>> {
        let wrap = |outer: PacketBuilder, inner: &[u8]| link.apply(outer.payload(inner)).build();
        match *self {
            Tunnel::None => unreachable!("carried only in a tunnel"),
            Tunnel::SameFamily { relay } => {
                vec![wrap(outer(v6, relay, inbound).protocol(carried(v6)), inner).bytes]
            }
            Tunnel::Nested { relay, limit } => {
                // The packet in the other family's tunnel, that in its own.
                let middle = outer(!v6, relay, inbound);
                let middle = if v6 {
                    middle
                } else {
                    with_limit(middle, limit)
                };
                let middle = middle.protocol(carried(v6)).payload(inner).build();
                let first = if v6 {
                    with_limit(outer(v6, relay, inbound), limit)
                } else {
                    outer(v6, relay, inbound)
                };
                vec![wrap(first.protocol(carried(!v6)), &middle.bytes[ETH_HLEN..]).bytes]
            }
            Tunnel::Carried {
                relay,
                limit,
                ref fragments,
                limit_first,
                mangle,
            } => {
                let base = outer(!v6, relay, inbound);
                let Some(plan) = fragments else {
                    let base = if v6 { base } else { with_limit(base, limit) };
                    return vec![mangle.apply(&wrap(base.protocol(carried(v6)), inner))];
                };
                // The unfragmentable part (with the limit option if it comes
                // first), then the fragment header or fields, then the
                // rest: the limit option if it comes after, and the packet.
                let (base, body, after) = match (v6, limit) {
                    (false, Some(limit)) if !limit_first => {
                        let whole = with_limit(outer(true, relay, inbound), Some(limit))
                            .protocol(carried(v6))
                            .payload(inner)
                            .build();
                        let after = whole.bytes[ETH_HLEN + 40..].to_vec();
                        (base, after, 60)
                    }
                    (false, limit) => (with_limit(base, limit), inner.to_vec(), carried(v6)),
                    (true, _) => (base, inner.to_vec(), carried(v6)),
                };
                let frames = plan
                    .chunks(&body)
                    .into_iter()
                    .map(|(words, more, chunk)| {
                        let builder = if v6 {
                            base.clone().fragment(plan.id as u16, more, words)
                        } else {
                            base.clone().ext(ExtHeader::Fragment {
                                offset: words,
                                more,
                                id: plan.id,
                            })
                        };
                        wrap(builder.protocol(after), chunk).bytes
                    })
                    .collect();
                plan.sent(frames)
            }
        }
    }
}

/// A frame that is not IP: ARP, LLDP, PPPoE discovery and session control,
/// or any EtherType.
#[derive(Clone, Debug)]
pub enum NotIp {
    Arp,
    Lldp(Vec<u8>),
    PppoeDiscovery(Vec<u8>),
    /// A PPPoE session frame carrying this PPP protocol (LCP: 0xc021).
    PppoeControl(u16),
    EtherType(u16, Vec<u8>),
}

pub fn not_ip() -> BoxedStrategy<NotIp> {
    prop_oneof![
        Just(NotIp::Arp),
        vec(any::<u8>(), 0..40).prop_map(NotIp::Lldp),
        vec(any::<u8>(), 0..40).prop_map(NotIp::PppoeDiscovery),
        prop_oneof![Just(0xc021u16), Just(0x8021), any::<u16>()].prop_map(NotIp::PppoeControl),
        (any::<u16>(), vec(any::<u8>(), 0..60)).prop_map(|(t, b)| NotIp::EtherType(t, b)),
    ]
    .boxed()
}

impl NotIp {
    pub fn frame(&self, link: Link) -> Vec<u8> {
        let builder = match self {
            NotIp::Arp => {
                PacketBuilder::arp_request(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2))
            }
            NotIp::Lldp(bytes) => PacketBuilder::ethertype(ethertype::LLDP).payload(bytes),
            NotIp::PppoeDiscovery(bytes) => {
                PacketBuilder::ethertype(ethertype::PPPOE_DISCOVERY).payload(bytes)
            }
            NotIp::PppoeControl(protocol) => {
                let mut session = vec![0x11, 0, 0, 7, 0, 6];
                session.extend(protocol.to_be_bytes());
                session.extend([1, 1, 0, 4]);
                PacketBuilder::ethertype(ethertype::PPPOE_SESSION).payload(&session)
            }
            NotIp::EtherType(ethertype, bytes) => {
                PacketBuilder::ethertype(*ethertype).payload(bytes)
            }
        };
        match link {
            // The builder puts PPPoE only around IP.
            Link::Pppoe(_) | Link::VlanPppoe(..) | Link::QinQPppoe(..) => Link::Plain,
            other => other,
        }
        .apply(builder)
        .build()
        .bytes
    }
}
