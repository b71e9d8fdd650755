//! The packet and its parser, shared by the ingress and egress hooks: finds
//! the IP header behind the link-layer encapsulations a WAN link carries,
//! then the transport header behind IPv4 options or IPv6 extension headers.
//!
//! This is the unsafe boundary for packet memory. A [`Packet`] is made only
//! from the program's context, so its bounds are the kernel's. Every read is
//! checked against the end of the packet, as the verifier requires, and
//! yields a [`Plain`] type (bytes or an integer of a few fixed sizes, valid
//! for any bit pattern), so safe code can neither read out of bounds nor
//! build an invalid value. [`Header`] checks a fixed header once and reads
//! its fields at offsets checked when the program is compiled. Writes (only
//! the XDP reply rewrites a packet, reply.rs) are checked the same way and
//! need the packet `mut`; [`Packet::resize_xdp`] moves its end.

use core::mem::size_of;

use aya_ebpf::{
    Global,
    helpers::bpf_xdp_adjust_tail,
    programs::{TcContext, XdpContext},
};
use filter_common::link_layer;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

const ETH_HDR_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
/// PPPoE session header (6 bytes) plus the PPP protocol field (2 bytes).
pub const PPPOE_HDR_LEN: usize = 8;
pub const IPV4_MIN_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;

/// At most this many stacked VLAN tags (802.1ad outer + 802.1Q inner).
const MAX_VLAN_TAGS: usize = 2;
/// At most this many IPv6 extension headers are walked; a longer chain is malformed.
const MAX_IPV6_EXT_HEADERS: usize = 6;
/// Transport headers further in than this are not parsed (counted as malformed).
/// Bounding offsets also lets the verifier prove every access is in range.
pub const MAX_L4_OFFSET: usize = 512;
/// Every transport offset up to [`MAX_L4_OFFSET`] fits in these bits.
const L4_OFFSET_MASK: u64 = (MAX_L4_OFFSET as u64 + 1).next_power_of_two() - 1;
/// Bytes of an outgoing packet egress reads: headers up to the deepest
/// transport header we parse, plus the DNS/NTP fields behind it.
const EGRESS_HEADROOM: u32 = (MAX_L4_OFFSET + 64) as u32;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// IPv4 inside IP: an IPv6 packet with this next header is DS-Lite or MAP-E.
pub const IPPROTO_IPIP: u8 = 4;
/// IPv6 inside IP: an IPv4 packet with this protocol is 6in4 or 6rd.
pub const IPPROTO_IPV6: u8 = 41;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;

/// The linear packet bytes a program may read: `[start, end)`.
pub struct Packet {
    start: usize,
    end: usize,
}

mod sealed {
    pub trait Sealed {}
}

/// What a read of packet bytes may produce: bytes and integers of the sizes
/// the parser reads. Any bit pattern is a valid value of each, and each is
/// small, so a read never reaches past the bounds checked for it. Sealed:
/// the list below is the whole list.
pub trait Plain: sealed::Sealed + Copy {
    /// Reads a value at `at`, whatever its alignment.
    ///
    /// # Safety
    /// `[at, at + size_of::<Self>())` lies inside the packet.
    unsafe fn load(at: *const u8) -> Self;
}

/// Byte strings: LLVM reads them byte by byte, which is what they are.
macro_rules! plain_bytes {
    ($($n:literal),*) => {
        $(
            impl sealed::Sealed for [u8; $n] {}
            impl Plain for [u8; $n] {
                #[inline(always)]
                unsafe fn load(at: *const u8) -> Self {
                    // SAFETY: in bounds (the caller's promise); any bytes are valid.
                    unsafe { core::ptr::read_unaligned(at.cast()) }
                }
            }
        )*
    };
}

/// Integers: one load instruction each. A `read_unaligned` in Rust would
/// become a load per byte plus shifts (LLVM's BPF backend assumes loads
/// must be aligned; packet headers often are not), several times the cost
/// on the hot path. The kernel accepts misaligned packet loads where the
/// CPU handles them (x86-64, arm64: the verifier's strict alignment is off).
/// bpf-linker's allows-misaligned-mem-access would do the same for all
/// code, but also lets LLVM merge stores into misaligned stack slots, which
/// the verifier refuses; inline assembly keeps it to packet reads.
macro_rules! plain_int {
    ($($t:ty => $width:literal),*) => {
        $(
            impl sealed::Sealed for $t {}
            impl Plain for $t {
                #[inline(always)]
                unsafe fn load(at: *const u8) -> Self {
                    let value: u64;
                    // SAFETY: reads in-bounds packet memory (the caller's
                    // promise); writes nothing.
                    unsafe {
                        core::arch::asm!(
                            concat!("{value} = *(", $width, " *)({at} + 0)"),
                            at = in(reg) at,
                            value = lateout(reg) value,
                            options(pure, readonly, nostack, preserves_flags),
                        );
                    }
                    value as $t
                }
            }
        )*
    };
}

plain_bytes!(2, 4, 8);
plain_int!(u16 => "u16", u32 => "u32", u64 => "u64");

impl sealed::Sealed for u8 {}
impl Plain for u8 {
    #[inline(always)]
    unsafe fn load(at: *const u8) -> Self {
        // SAFETY: in bounds (the caller's promise).
        unsafe { *at }
    }
}

/// A whole IPv6 header, read as ten words.
impl sealed::Sealed for [u32; 10] {}
impl Plain for [u32; 10] {
    #[inline(always)]
    unsafe fn load(at: *const u8) -> Self {
        // SAFETY: the ten words lie in the header (the caller's promise).
        core::array::from_fn(|i| unsafe { u32::load(at.add(4 * i)) })
    }
}

impl Packet {
    /// The packet an XDP program sees.
    #[inline(always)]
    pub fn from_xdp(ctx: &XdpContext) -> Packet {
        Packet {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// The packet a TC program sees, with the headers the parser reads in
    /// its linear part. It pulls only when they are not: pulling also makes
    /// the skb writable, copying cloned TCP packets. A failed pull only means
    /// we see less of this packet.
    #[inline(always)]
    pub fn from_tc(ctx: &TcContext) -> Packet {
        let wanted = ctx.len().min(EGRESS_HEADROOM);
        if ((ctx.data_end() - ctx.data()) as u32) < wanted {
            let _ = ctx.pull_data(wanted);
        }
        Packet {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// The packet of a TC context whose headers [`Packet::from_tc`] pulled
    /// already (egress's global functions).
    #[inline(always)]
    pub fn from_tc_pulled(ctx: &TcContext) -> Packet {
        Packet {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// The XDP packet of `ctx`, `from` bytes long, after moving its end so
    /// that it is `to` bytes long (bpf_xdp_adjust_tail: shrinking always
    /// works in native and generic mode), or `None` if the kernel refused.
    /// Every earlier `Packet` of `ctx` is stale afterwards: its end may lie
    /// past the new one. (The caller knows the length: computed here, LLVM
    /// would fold it into arithmetic on the packet's end, which the
    /// verifier refuses.)
    #[inline(always)]
    pub fn resize_xdp(ctx: &XdpContext, from: usize, to: usize) -> Option<Packet> {
        let delta = to as i64 - from as i64;
        // SAFETY: a helper taking the program's own context and a length
        // change, which the kernel checks against the buffer.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
            return None;
        }
        Some(Packet::from_xdp(ctx))
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// The `N` bytes at `offset`, bounds-checked once, to read and write, or
    /// `None` if they would reach past the end. (Several separately checked
    /// writes are as fragile as reads, see [`Header`].)
    #[inline(always)]
    pub fn header_mut<const N: usize>(&mut self, offset: usize) -> Option<HeaderMut<'_, N>> {
        let at = self.start + offset;
        if at + N > self.end {
            return None;
        }
        Some(HeaderMut {
            base: at as *mut u8,
            _packet: core::marker::PhantomData,
        })
    }

    /// The `T` at `offset`, whatever its alignment, or `None` if it would
    /// read past the end. There is no single-byte read: LLVM turns a
    /// one-byte bounds check into a form the verifier cannot use, so bytes
    /// are read in pairs or from a [`Header`].
    #[inline(always)]
    pub fn read<T: Plain>(&self, offset: usize) -> Option<T> {
        const { assert!(size_of::<T>() >= 2, "read bytes in pairs or from a Header") };
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: [at, at + size_of::<T>()) lies inside the packet (checked
        // above) and any bytes are a valid T (T: Plain).
        Some(unsafe { T::load(at as *const u8) })
    }

    /// The `N` bytes at `offset`, bounds-checked once, or `None` if they
    /// would reach past the end.
    #[inline(always)]
    pub fn header<const N: usize>(&self, offset: usize) -> Option<Header<N>> {
        let at = self.start + offset;
        if at + N > self.end {
            return None;
        }
        Some(Header {
            base: at as *const u8,
        })
    }

    /// A big-endian u16 at `offset`.
    #[inline(always)]
    pub fn be16_at(&self, offset: usize) -> Option<u16> {
        self.read(offset).map(u16::from_be_bytes)
    }

    /// A big-endian u32 at `offset`.
    #[inline(always)]
    pub fn be32_at(&self, offset: usize) -> Option<u32> {
        self.read(offset).map(u32::from_be_bytes)
    }

    /// Eight payload bytes at `offset`, as stored on the wire (for tokens that
    /// are only compared, never interpreted).
    #[inline(always)]
    pub fn raw64_at(&self, offset: usize) -> Option<u64> {
        self.read(offset)
    }
}

/// `N` packet bytes whose bounds were checked as a whole, for reading
/// several fields without a check each: LLVM may compute fields of several
/// separately checked reads before knowing they all succeeded, which the
/// verifier rejects.
pub struct Header<const N: usize> {
    base: *const u8,
}

impl<const N: usize> Header<N> {
    /// The `T` at `AT` bytes into the header, whatever its alignment. A
    /// field that would reach past the header does not compile.
    #[inline(always)]
    pub fn get<T: Plain, const AT: usize>(&self) -> T {
        const { assert!(AT + size_of::<T>() <= N, "field past the end of the header") };
        // SAFETY: the header's N bytes lie inside the packet (checked by
        // Packet::header), the field lies inside the header (checked above
        // at compile time) and any bytes are a valid T.
        unsafe { T::load(self.base.add(AT)) }
    }
}

/// `N` packet bytes whose bounds were checked as a whole, to read and write
/// at offsets checked when the program is compiled. It borrows the packet
/// mutably: nothing else reads it meanwhile.
pub struct HeaderMut<'a, const N: usize> {
    base: *mut u8,
    _packet: core::marker::PhantomData<&'a mut Packet>,
}

impl<const N: usize> HeaderMut<'_, N> {
    /// The `T` at `AT` bytes into the header.
    #[inline(always)]
    pub fn get<T: Plain, const AT: usize>(&self) -> T {
        const { assert!(AT + size_of::<T>() <= N, "field past the end of the header") };
        // SAFETY: as Header::get: the N bytes lie inside the packet (checked
        // by Packet::header_mut), the field inside the header (checked at
        // compile time), and any bytes are a valid T.
        unsafe { T::load(self.base.add(AT)) }
    }

    /// Writes `value` at `AT` bytes into the header.
    #[inline(always)]
    pub fn set<T: Plain, const AT: usize>(&mut self, value: T) {
        const { assert!(AT + size_of::<T>() <= N, "field past the end of the header") };
        // SAFETY: the field lies inside the packet (as for `get`), which this
        // program owns while it runs; any bytes make a valid packet. Stored
        // byte by byte (LLVM's BPF backend): only slips write, and they are rare.
        unsafe { core::ptr::write_unaligned(self.base.add(AT).cast::<T>(), value) }
    }

    /// Writes a big-endian u16 at `AT` bytes into the header.
    #[inline(always)]
    pub fn set_be16<const AT: usize>(&mut self, value: u16) {
        self.set::<u16, AT>(value.to_be());
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// 4 or 6, as stored in map keys.
    #[inline(always)]
    pub fn number(self) -> u32 {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 6,
        }
    }
}

/// Where a packet stands in IP fragmentation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// A whole datagram.
    Whole,
    /// The first fragment: carries the transport header.
    First { id: u32 },
    /// A later fragment: no transport header, only payload.
    Later { id: u32 },
}

/// An IP packet, located.
pub struct Ip {
    pub family: Family,
    /// Addresses as read from the wire; IPv4 uses word 0.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// The upper-layer protocol, after any IPv6 extension headers.
    pub protocol: u8,
    pub fragment: Fragment,
    /// The protocol that follows the fragmentation, which a datagram's
    /// fragments share (its key, with the addresses and the id): IPv4's
    /// protocol field, the IPv6 fragment header's next header. Every
    /// fragment carries it, whatever headers the first fragment then has
    /// (RFC 8200 puts destination options and AH after the fragment header).
    /// A field of its own: in `Fragment`'s payload it cost the verifier a
    /// quarter more states.
    pub fragmented_protocol: u8,
    /// Offset of the IP header.
    pub l3_offset: usize,
    /// The frame is a PPPoE session's: its header is right before the IP header.
    pub pppoe: bool,
    /// Offset of the transport header; meaningless for `Fragment::Later`.
    pub l4_offset: usize,
}

impl Ip {
    /// Whether the packet carries another IP packet the filter unwraps:
    /// IPv4 inside IPv6 (DS-Lite, MAP-E) or IPv6 inside IPv4 (6in4, 6rd).
    /// (IPv4 inside IPv4 and IPv6 inside IPv6 reach no WAN gateway as its
    /// access line: they pass as any other protocol.)
    #[inline(always)]
    pub fn carries_tunnel(&self) -> bool {
        match self.family {
            Family::Ipv6 => self.protocol == IPPROTO_IPIP,
            Family::Ipv4 => self.protocol == IPPROTO_IPV6,
        }
    }
}

pub enum Network {
    Ip(Ip),
    /// A first fragment whose headers after the fragment header could not
    /// be walked (cut short, too many, too deep): passed as malformed, and
    /// its datagram's later fragments follow that pass.
    UnwalkedFirstFragment(Ip),
    /// A frame we never filter: ARP, LLDP, PPP control, ...
    NotIp,
    /// Headers cut short or invalid: passed, and counted.
    Malformed,
}

/// The link-layer headers of a frame, located.
pub struct LinkLayer {
    /// The EtherType of the network layer (IPv4/IPv6 for PPPoE sessions
    /// carrying IP; 0 for PPP control).
    pub ethertype: u16,
    /// Offset of the network header.
    pub l3_offset: usize,
    /// A PPPoE session frame: the session header (with the PPP protocol
    /// field) lies right before the network header.
    pub pppoe: bool,
}

/// Offset of the length field in the PPPoE session header: the length of
/// the PPP frame (protocol field and packet).
pub const PPPOE_LENGTH: usize = 4;
/// The PPP protocol field before the packet, counted in the PPPoE length.
pub const PPP_PROTOCOL_LEN: usize = 2;

/// What the frames start with (`filter_common::link_layer`): Ethernet, or
/// the IP header on a device without one. filter-ctl sets it at load from
/// the interface's link type; `.rodata` is frozen, so the verifier knows the
/// value and never walks the other link layer's parse.
#[unsafe(no_mangle)]
static LINK_LAYER: Global<u8> = Global::new(link_layer::ETHERNET);

/// Whether the frames start at the IP header (no Ethernet, no PPPoE).
#[inline(always)]
pub fn ip_link() -> bool {
    LINK_LAYER.load() == link_layer::IP
}

impl Packet {
    /// Finds the IP header behind Ethernet, up to two VLAN tags and PPPoE,
    /// or at the start on a device without a link-layer header.
    #[inline(always)]
    pub fn network(&self) -> Network {
        let Some(link) = self.link_layer() else {
            return Network::Malformed;
        };
        match link.ethertype {
            ETH_P_IPV4 => self.ipv4(link.l3_offset, link.pppoe),
            ETH_P_IPV6 => self.ipv6(link.l3_offset, link.pppoe),
            _ => Network::NotIp,
        }
    }

    /// The link-layer headers, or `None` if they are cut short; on a device
    /// without them, where the IP header starts (at 0).
    #[inline(always)]
    fn link_layer(&self) -> Option<LinkLayer> {
        if ip_link() {
            // Out of line, so that LLVM lays the Ethernet walk out straight:
            // behind the jumps it placed otherwise, bare drops on Ethernet
            // cost 1-3 ns more (docs/kernel-programs.md, "the IP variant").
            core::hint::cold_path();
            // Returned here, not merged into the walk below: the Ethernet
            // walk keeps its constant offsets (a merged offset of 0 or 14
            // made Linux 6.1's verifier walk 40% more).
            return self.ip_start();
        }
        let mut ethertype = self.be16_at(12)?;
        let mut offset = ETH_HDR_LEN;
        for _ in 0..MAX_VLAN_TAGS {
            if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
                break;
            }
            ethertype = self.be16_at(offset + 2)?;
            offset += VLAN_TAG_LEN;
        }
        let pppoe = ethertype == ETH_P_PPPOE_SESSION;
        if pppoe {
            let ppp_protocol = self.be16_at(offset + 6)?;
            offset += PPPOE_HDR_LEN;
            ethertype = match ppp_protocol {
                PPP_IPV4 => ETH_P_IPV4,
                PPP_IPV6 => ETH_P_IPV6,
                // LCP, IPCP, ... keep the session alive: never filtered.
                _ => 0,
            };
        }
        Some(LinkLayer {
            ethertype,
            l3_offset: offset,
            pppoe,
        })
    }

    /// The IP header that starts the frame: its version nibble says which
    /// (the kernel's IP receive drops a packet whose nibble disagrees with
    /// the protocol the device gave it); anything else is not IP.
    #[inline(always)]
    fn ip_start(&self) -> Option<LinkLayer> {
        let ethertype = match self.be16_at(0)? >> 12 {
            4 => ETH_P_IPV4,
            6 => ETH_P_IPV6,
            _ => 0,
        };
        Some(LinkLayer {
            ethertype,
            l3_offset: 0,
            pppoe: false,
        })
    }

    #[inline(always)]
    fn ipv4(&self, offset: usize, pppoe: bool) -> Network {
        let Some(h) = self.header::<IPV4_MIN_HDR_LEN>(offset) else {
            return Network::Malformed;
        };
        let version_ihl: u8 = h.get::<u8, 0>();
        let header_len = usize::from(version_ihl & 0x0f) * 4;
        // The whole header, options included, must be there.
        if version_ihl >> 4 != 4
            || header_len < IPV4_MIN_HDR_LEN
            || self.start + offset + header_len > self.end
        {
            return Network::Malformed;
        }
        let id = u32::from(u16::from_be(h.get::<u16, 4>()));
        let flags_fragment = u16::from_be(h.get::<u16, 6>());
        let more_fragments = flags_fragment & 0x2000 != 0;
        let fragment = match (flags_fragment & 0x1fff, more_fragments) {
            (0, false) => Fragment::Whole,
            (0, true) => Fragment::First { id },
            _ => Fragment::Later { id },
        };
        let protocol = h.get::<u8, 9>();
        Network::Ip(Ip {
            family: Family::Ipv4,
            src: [h.get::<u32, 12>(), 0, 0, 0],
            dst: [h.get::<u32, 16>(), 0, 0, 0],
            protocol,
            fragment,
            fragmented_protocol: protocol,
            l3_offset: offset,
            pppoe,
            l4_offset: offset + header_len,
        })
    }

    #[inline(always)]
    fn ipv6(&self, offset: usize, pppoe: bool) -> Network {
        let Some(h) = self.read::<[u32; IPV6_HDR_LEN / 4]>(offset) else {
            return Network::Malformed;
        };
        let [version_class_flow, length_next_hop, ..] = h.map(u32::from_be);
        if version_class_flow >> 28 != 6 {
            return Network::Malformed;
        }
        let next_header = (length_next_hop >> 8) as u8;
        let src = [h[2], h[3], h[4], h[5]];
        let dst = [h[6], h[7], h[8], h[9]];
        let mut ip = Ip {
            family: Family::Ipv6,
            src,
            dst,
            protocol: next_header,
            fragment: Fragment::Whole,
            fragmented_protocol: 0,
            l3_offset: offset,
            pppoe,
            l4_offset: offset + IPV6_HDR_LEN,
        };
        for _ in 0..MAX_IPV6_EXT_HEADERS {
            if !is_ipv6_extension(ip.protocol) {
                break;
            }
            if ip.l4_offset > MAX_L4_OFFSET {
                return unwalked(ip);
            }
            // Every extension header is at least 8 bytes and starts with the
            // next header and a length.
            let Some(ext) = self.read::<[u8; 8]>(ip.l4_offset) else {
                return unwalked(ip);
            };
            let len = usize::from(ext[1]);
            let header_len = match ip.protocol {
                IPV6_AUTH => (len + 2) * 4,
                IPV6_FRAGMENT => {
                    let offset_flags = u16::from_be_bytes([ext[2], ext[3]]);
                    let id = u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]);
                    ip.fragment = match (offset_flags >> 3, offset_flags & 1 != 0) {
                        (0, false) => Fragment::Whole,
                        (0, true) => Fragment::First { id },
                        _ => Fragment::Later { id },
                    };
                    ip.fragmented_protocol = ext[0];
                    8
                }
                // Hop-by-hop, routing, destination options.
                _ => (len + 1) * 8,
            };
            ip.protocol = ext[0];
            ip.l4_offset += header_len;
            if let Fragment::Later { .. } = ip.fragment {
                // No upper-layer header follows in a later fragment.
                return Network::Ip(ip);
            }
        }
        if is_ipv6_extension(ip.protocol) {
            // The chain is longer than we walk: do not guess.
            return unwalked(ip);
        }
        Network::Ip(ip)
    }
}

impl Packet {
    /// The IP packet an `outer` IP packet carries ([`Ip::carries_tunnel`]),
    /// parsed as a bare one: its header at `offset`, the outer transport
    /// offset, which must be within [`MAX_TUNNEL_L3`] (deeper: malformed). Its `pppoe` is false:
    /// no session header lies right before it.
    #[inline(always)]
    pub fn tunnelled(&self, outer: Family, offset: usize) -> Network {
        if offset > MAX_TUNNEL_L3 {
            return Network::Malformed;
        }
        match outer {
            Family::Ipv6 => self.ipv4(offset, false),
            Family::Ipv4 => self.ipv6(offset, false),
        }
    }
}

/// The deepest IP header right behind the link layer: two VLAN tags and a
/// PPPoE session header put it at 30 bytes. An IP header further in is
/// a tunnel's inner one.
pub const MAX_LINK_L3: usize = 30;

/// The deepest IP header a tunnel's inner packet may start at: the link
/// layer, an outer IPv6 header, the encapsulation limit option Linux's
/// ip6tnl adds and a fragment header take up to 86 bytes; the rest leaves
/// room for other outer options.
pub const MAX_TUNNEL_L3: usize = 128;

/// The deepest IP header the parser finds: a tunnel's inner one.
pub const MAX_L3_OFFSET: usize = MAX_TUNNEL_L3;

/// An IP packet the dispatcher located, as the two scalars a BPF global
/// function takes (its arguments can only be scalars and the context):
/// where the headers lie, the protocols, the fragment kind and the family
/// in `shape`, the fragment's id apart. The function locates the packet
/// again with [`Packet::ip_at`], reading the addresses anew from the IP
/// header (in the CPU's cache by then).
#[derive(Clone, Copy)]
pub struct Located {
    pub shape: u64,
    pub fragment_id: u64,
}

/// Bit positions in [`Located::shape`]: the IP header's offset (8 bits),
/// the transport header's (16), the protocol (8), the fragmented protocol
/// (8), the fragment kind (2: whole, first, later), IPv6 (1), PPPoE (1);
/// and, set by the dispatcher only, a first fragment whose headers after
/// the fragment header could not be walked (1).
const SHAPE_L4: u32 = 8;
const SHAPE_PROTOCOL: u32 = 24;
const SHAPE_FRAGMENTED_PROTOCOL: u32 = 32;
const SHAPE_FRAGMENT: u32 = 40;
const SHAPE_V6: u32 = 42;
const SHAPE_PPPOE: u32 = 43;
const SHAPE_UNWALKED: u32 = 44;

/// In [`Located::fragment_id`], above the 32-bit id: the verdict of this
/// first fragment is to be remembered by the rule function that takes it
/// (a tunnel's inner packet goes without: `wan_inner_rules` remembers it
/// under both datagrams' keys).
const REMEMBER_VERDICT: u64 = 1 << 32;

impl Located {
    /// The `Located` a global function got in two of its arguments. Both
    /// are kept used: where the function's body ignores one (`wan_listed`
    /// needs no fragment id), LLVM would otherwise pass nothing in it, and
    /// the verifier refuses a call that passes a register never written.
    /// An empty assembly block that reads them, no instruction.
    #[inline(always)]
    pub fn from_arguments(shape: u64, fragment_id: u64) -> Located {
        // SAFETY: emits nothing; it only reads two registers.
        unsafe {
            core::arch::asm!(
                "/* {0} {1} */",
                in(reg) shape,
                in(reg) fragment_id,
                options(nomem, nostack, preserves_flags)
            );
        }
        Located { shape, fragment_id }
    }

    /// The same, with whether the headers after a first fragment's
    /// fragment header were walked (`Network::UnwalkedFirstFragment`).
    #[inline(always)]
    pub fn walked(self, walked: bool) -> Located {
        Located {
            shape: self.shape | u64::from(!walked) << SHAPE_UNWALKED,
            fragment_id: self.fragment_id,
        }
    }

    /// Whether the headers after the fragment header were walked.
    #[inline(always)]
    pub fn was_walked(&self) -> bool {
        self.shape >> SHAPE_UNWALKED & 1 == 0
    }

    /// Whether the rule function that takes it remembers the verdict for
    /// the rest of the datagram (a first fragment the dispatcher located).
    #[inline(always)]
    pub fn remembers_verdict(&self) -> bool {
        self.fragment_id & REMEMBER_VERDICT != 0
    }

    /// Whether it locates the first fragment of a datagram.
    #[inline(always)]
    pub fn is_first_fragment(&self) -> bool {
        self.shape >> SHAPE_FRAGMENT & 3 == 1
    }

    /// Whether it locates a later fragment of a datagram.
    #[inline(always)]
    pub fn is_later_fragment(&self) -> bool {
        self.shape >> SHAPE_FRAGMENT & 3 == 2
    }

    /// The family of the IP packet it locates.
    #[inline(always)]
    pub fn family(&self) -> Family {
        if self.shape >> SHAPE_V6 & 1 != 0 {
            Family::Ipv6
        } else {
            Family::Ipv4
        }
    }

    /// The offset of its transport header.
    #[inline(always)]
    pub fn l4_offset(&self) -> usize {
        (self.shape >> SHAPE_L4 & 0xffff) as usize
    }
}

impl Ip {
    #[inline(always)]
    pub fn located(&self) -> Located {
        let (kind, id) = match self.fragment {
            Fragment::Whole => (0, 0),
            Fragment::First { id } => (1, u64::from(id) | REMEMBER_VERDICT),
            Fragment::Later { id } => (2, u64::from(id)),
        };
        Located {
            shape: self.l3_offset as u64
                | (self.l4_offset as u64) << SHAPE_L4
                | u64::from(self.protocol) << SHAPE_PROTOCOL
                | u64::from(self.fragmented_protocol) << SHAPE_FRAGMENTED_PROTOCOL
                | kind << SHAPE_FRAGMENT
                | u64::from(self.family == Family::Ipv6) << SHAPE_V6
                | u64::from(self.pppoe) << SHAPE_PPPOE,
            fragment_id: id,
        }
    }
}

impl Packet {
    /// The IP packet `at` locates in this packet, its addresses read again
    /// from the IP header; `None` only if `at` was not made from it.
    #[inline(always)]
    pub fn ip_at(&self, at: Located) -> Option<Ip> {
        let l3 = (at.shape & 0xff) as usize;
        if l3 > MAX_L3_OFFSET {
            return None;
        }
        let (family, src, dst) = if at.shape >> SHAPE_V6 & 1 != 0 {
            let h = self.header::<IPV6_HDR_LEN>(l3)?;
            let src = [
                h.get::<u32, 8>(),
                h.get::<u32, 12>(),
                h.get::<u32, 16>(),
                h.get::<u32, 20>(),
            ];
            let dst = [
                h.get::<u32, 24>(),
                h.get::<u32, 28>(),
                h.get::<u32, 32>(),
                h.get::<u32, 36>(),
            ];
            (Family::Ipv6, src, dst)
        } else {
            let h = self.header::<IPV4_MIN_HDR_LEN>(l3)?;
            (
                Family::Ipv4,
                [h.get::<u32, 12>(), 0, 0, 0],
                [h.get::<u32, 16>(), 0, 0, 0],
            )
        };
        let id = at.fragment_id as u32;
        let fragment = match at.shape >> SHAPE_FRAGMENT & 3 {
            0 => Fragment::Whole,
            1 => Fragment::First { id },
            _ => Fragment::Later { id },
        };
        Some(Ip {
            family,
            src,
            dst,
            protocol: (at.shape >> SHAPE_PROTOCOL) as u8,
            fragment,
            fragmented_protocol: (at.shape >> SHAPE_FRAGMENTED_PROTOCOL) as u8,
            l3_offset: l3,
            pppoe: at.shape >> SHAPE_PPPOE & 1 != 0,
            // Masked to the bits an offset the parser accepts can have: a
            // value LLVM reloads unchecked then still bounds a packet read.
            l4_offset: (at.shape >> SHAPE_L4 & L4_OFFSET_MASK) as usize,
        })
    }
}

/// Gives up on an IPv6 header chain: malformed, unless a first fragment's
/// header was seen, whose datagram can still be followed.
#[inline(always)]
fn unwalked(ip: Ip) -> Network {
    match ip.fragment {
        Fragment::First { .. } => Network::UnwalkedFirstFragment(ip),
        _ => Network::Malformed,
    }
}

#[inline(always)]
fn is_ipv6_extension(protocol: u8) -> bool {
    matches!(
        protocol,
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AUTH | IPV6_DEST_OPTS
    )
}

pub const UDP_HDR_LEN: usize = 8;

/// Offsets of the length and checksum fields in the UDP header.
pub const UDP_LENGTH: usize = 4;
pub const UDP_CHECKSUM: usize = 6;

/// A UDP header, located.
pub struct Udp {
    pub src_port: u16,
    pub dst_port: u16,
    /// The length field: header and payload (the frame may be longer).
    pub length: u16,
    /// Offset of the UDP payload.
    pub payload: usize,
    /// How many bytes of the UDP payload a rule may read, up to
    /// `MAX_PAYLOAD_READ`: those the UDP length counts (whether the frame
    /// holds them, the reads check). Bytes after the datagram, such as
    /// Ethernet padding, are not its content. (The IP length is not
    /// checked: the stack delivers no datagram whose UDP length exceeds it.)
    pub readable: usize,
}

/// The deepest payload byte a rule reads: the end of an NTP transmit timestamp.
pub const MAX_PAYLOAD_READ: usize = 48;

impl Packet {
    /// The UDP header at `l4_offset`, or `None` if cut short or too deep to parse.
    #[inline(always)]
    pub fn udp(&self, l4_offset: usize) -> Option<Udp> {
        if l4_offset > MAX_L4_OFFSET {
            return None;
        }
        let h = self.header::<UDP_HDR_LEN>(l4_offset)?;
        let ports = u32::from_be(h.get::<u32, 0>());
        let length = usize::from(u16::from_be(h.get::<u16, 4>()));
        Some(Udp {
            src_port: (ports >> 16) as u16,
            dst_port: ports as u16,
            length: length as u16,
            payload: l4_offset + UDP_HDR_LEN,
            readable: length.saturating_sub(UDP_HDR_LEN).min(MAX_PAYLOAD_READ),
        })
    }
}

/// The fixed TCP header; options are not needed.
pub const TCP_HDR_LEN: usize = 20;

/// TCP flag bits (byte 13 of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// The fields of a TCP header the filter reads.
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// [`tcp_flags`] bits.
    pub flags: u8,
}

impl Packet {
    /// The TCP header at `l4_offset` (the whole fixed header must be
    /// there), or `None` if cut short or too deep to parse.
    #[inline(always)]
    pub fn tcp(&self, l4_offset: usize) -> Option<Tcp> {
        if l4_offset > MAX_L4_OFFSET {
            return None;
        }
        let h = self.header::<TCP_HDR_LEN>(l4_offset)?;
        let ports = u32::from_be(h.get::<u32, 0>());
        Some(Tcp {
            src_port: (ports >> 16) as u16,
            dst_port: ports as u16,
            seq: u32::from_be(h.get::<u32, 4>()),
            ack: u32::from_be(h.get::<u32, 8>()),
            flags: h.get::<u8, 13>(),
        })
    }
}
