//! The DNS slip reply: a DNS query over its limit that got the slip
//! (ingress/request.rs) is turned into a minimal truncated answer and sent
//! back out of the interface it came in on (XDP_TX). What the reply says is
//! filter_common::dns; this module rewrites the frame.
//!
//! It runs in a program of its own, `wan_slip`, which `wan_ingress` enters
//! by a tail call (through SLIP_PROGRAM, filled at load): the checksum over
//! the reply is a loop the verifier would otherwise explore once for every
//! path through the rules before it. The verdict decides: [`plan`] checks
//! that the query's shape can get a reply (its question, walked once by
//! ingress/request.rs for the name level, and what follows it: nothing, or
//! an OPT record of EDNS version 0 that ends the message) and notes where
//! its parts lie in SLIP_PLAN, a per-CPU scratch value (a program and its
//! tail call run to completion on one CPU, so the value is this packet's).
//! main.rs calls [`send`] when the finish returns XDP_TX (never in monitor
//! mode, where the query passes untouched). [`answer`] (the tail-called
//! program) rewrites the frame and counts the packet: as
//! `tx_dns_truncated`, or as the drop its query had earned when no reply
//! can be built (a plan it cannot read, a refused resize).
//!
//! The reply keeps the frame's encapsulation (VLAN tags as they are, a
//! PPPoE session header with its length updated) and swaps the MAC
//! addresses, the IP addresses and the UDP ports. IPv4 gets a fresh TTL and
//! header checksum, IPv6 a fresh hop limit; the UDP checksum is computed
//! over the whole reply (IPv6 requires one). The frame is cut after the
//! reply (bpf_xdp_adjust_tail), which is never longer than the query.
//!
//! Only IPv4 without options and IPv6 without extension headers, whole
//! (unfragmented) datagrams, get a reply: anything else over the limit is
//! dropped, as is a query whose reply cannot be built.
//!
//! A query that came through a tunnel (IPv4 inside IPv6, IPv6 inside IPv4:
//! ingress/tunnel.rs), whose IP header lies past the link layer, gets no
//! reply either, only the drop: a reply must go back the way the query
//! came, inside a new outer header (the outer addresses swapped, its
//! lengths, hop limit and checksum anew), which this rewrite does not
//! build. The resolver asks again, as after any drop.

use aya_ebpf::{
    bindings::xdp_action,
    macros::map,
    maps::{PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use filter_common::{
    Reason, checksum,
    dns::{
        self, Additional, HEADER_LEN, Header, MAX_QUESTION_LEN, MAX_REPLY_LEN, OPT_LEN,
        REPLY_UDP_PAYLOAD, TYPE_OPT,
    },
    query::Level,
};

use crate::{
    kernel::{self, IndexedCells as _, field},
    packet::{
        self, Family, Fragment, IPPROTO_UDP, IPV4_MIN_HDR_LEN, IPV6_HDR_LEN, Ip, MAX_L3_OFFSET,
        MAX_L4_OFFSET, MAX_LINK_L3, PPP_PROTOCOL_LEN, PPPOE_HDR_LEN, PPPOE_LENGTH, Packet,
        UDP_CHECKSUM, UDP_HDR_LEN, UDP_LENGTH, Udp,
    },
    proto::dns as dns_fields,
    stats,
};

/// Where the parts of one query lie, for its reply: [`plan`] fills it in,
/// [`answer`] reads it back for the rewrite.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Plan {
    /// The frame's length, and the offsets in it of the network header, the
    /// UDP header, the end of the UDP datagram, the end of the question and
    /// the PPPoE header (0: none).
    frame_len: u16,
    l3: u16,
    l4: u16,
    udp_end: u16,
    question_end: u16,
    pppoe: u16,
    /// The reply's DNS flags.
    flags: u16,
    /// The reply OPT record's TTL field (DO bit), if it has one.
    opt_ttl: u16,
    /// 1: the query has one additional record, which must be an OPT.
    opt: u8,
    /// 1: IPv6.
    v6: u8,
    /// The level that refused the query: what it counts as if no reply goes out.
    level: u8,
    _padding: u8,
}

#[map]
static SLIP_PLAN: PerCpuArray<Plan> = PerCpuArray::with_max_entries(1, 0);

/// The `wan_slip` program at index 0; filter-ctl puts it there at load.
#[map]
static SLIP_PROGRAM: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The hop limit of a reply: a fresh packet's, not what is left of the query's.
const REPLY_TTL: u8 = 64;
/// The furthest a question of a reply can end in the frame.
const MAX_QUESTION_END: usize = MAX_L4_OFFSET + UDP_HDR_LEN + HEADER_LEN + MAX_QUESTION_LEN;
/// 16-bit words of the longest reply's UDP header and message, rounded up.
const MAX_UDP_WORDS: usize = (UDP_HDR_LEN + MAX_REPLY_LEN).div_ceil(2);

/// Whether this interface can send a slip at all: not one without an
/// Ethernet header (ppp, WireGuard, IP tunnels, tun). XDP runs in generic
/// mode there, and after XDP_TX the kernel reads the frame's first 14 bytes
/// as an Ethernet header (`bpf_prog_run_generic_xdp`): with the addresses
/// swapped, bytes 12-13 (the IP source) make a protocol the device's own
/// transmit drops. The query is dropped as over its limit instead, and
/// spends none of the slip rate's tokens.
#[inline(always)]
pub fn possible() -> bool {
    !packet::ip_link()
}

/// Notes where the parts of a DNS query over its limit at `level` lie
/// (its question ends at `question_end`), if its shape can get a slip
/// reply (see the module documentation).
#[inline(always)]
pub fn plan(
    packet: &Packet,
    ip: &Ip,
    udp: &Udp,
    header: &Header,
    question_end: usize,
    level: Level,
) -> bool {
    let Some(additional) = header.slip_shape() else {
        return false;
    };
    if ip.fragment != Fragment::Whole {
        return false;
    }
    let l3 = ip.l3_offset;
    let header_len = match ip.family {
        Family::Ipv4 => IPV4_MIN_HDR_LEN,
        Family::Ipv6 => IPV6_HDR_LEN,
    };
    // Right behind the link layer: not inside a tunnel.
    if l3 > MAX_LINK_L3 || ip.l4_offset != l3 + header_len || ip.l4_offset > MAX_L4_OFFSET {
        return false;
    }
    // The message ends where the UDP length says (the frame may be padded).
    let udp_end = ip.l4_offset + usize::from(udp.length);
    if usize::from(udp.length) < UDP_HDR_LEN + HEADER_LEN || udp_end > packet.len() {
        return false;
    }
    // What follows the question: nothing, or the OPT record that ends it.
    let opt_ttl = match additional {
        Additional::Opt => {
            match dns_fields::opt_ttl(packet, question_end, udp_end).and_then(dns::reply_opt_ttl) {
                Some(ttl) => ttl as u16,
                None => return false,
            }
        }
        Additional::Nothing if question_end == udp_end => 0,
        Additional::Nothing => return false,
    };
    // This CPU's element, written field by field (a struct copy would call
    // memcpy).
    let Some(slot) = SLIP_PLAN.cell(0) else {
        return false;
    };
    field!(slot, frame_len).set(packet.len() as u16);
    field!(slot, l3).set(l3 as u16);
    field!(slot, l4).set(ip.l4_offset as u16);
    field!(slot, udp_end).set(udp_end as u16);
    field!(slot, question_end).set(question_end as u16);
    field!(slot, opt_ttl).set(opt_ttl);
    field!(slot, pppoe).set(if ip.pppoe { l3 - PPPOE_HDR_LEN } else { 0 } as u16);
    field!(slot, flags).set(header.reply_flags());
    field!(slot, opt).set(u8::from(additional == Additional::Opt));
    field!(slot, v6).set(u8::from(ip.family == Family::Ipv6));
    field!(slot, level).set(level as u8);
    true
}

/// Hands the packet planned by [`plan`] to `wan_slip`, which answers and
/// counts it. Returns only if the tail call failed (no program loaded in
/// SLIP_PROGRAM): the index of the reason to count the packet under, a drop.
#[inline(always)]
pub fn send(ctx: &XdpContext) -> u32 {
    kernel::tail_call(&SLIP_PROGRAM, ctx, 0);
    fallback(read_plan().map_or(Level::Source as u8, |plan| plan.level)).index()
}

/// The drop a DNS query over the limit at `level` earned.
#[inline(always)]
pub fn dropped(level: Level) -> Reason {
    match level {
        Level::Name => Reason::DropDnsQueryName,
        Level::Source => Reason::DropDnsQuerySource,
        Level::Prefix => Reason::DropDnsQueryPrefix,
        Level::Global => Reason::DropDnsQueryGlobal,
    }
}

/// [`dropped`], for the level as the plan notes it.
#[inline(always)]
fn fallback(level: u8) -> Reason {
    match level {
        l if l == Level::Name as u8 => Reason::DropDnsQueryName,
        l if l == Level::Prefix as u8 => Reason::DropDnsQueryPrefix,
        l if l == Level::Global as u8 => Reason::DropDnsQueryGlobal,
        _ => Reason::DropDnsQuerySource,
    }
}

/// This CPU's plan, read field by field through volatile reads: the values
/// come from the map, never from registers that still carry what the
/// verifier learnt on one path (which would keep it from merging paths).
#[inline(always)]
fn read_plan() -> Option<Plan> {
    let plan = SLIP_PLAN.cell(0)?;
    Some(Plan {
        frame_len: field!(plan, frame_len).get_volatile(),
        l3: field!(plan, l3).get_volatile(),
        l4: field!(plan, l4).get_volatile(),
        udp_end: field!(plan, udp_end).get_volatile(),
        question_end: field!(plan, question_end).get_volatile(),
        pppoe: field!(plan, pppoe).get_volatile(),
        flags: field!(plan, flags).get_volatile(),
        opt_ttl: field!(plan, opt_ttl).get_volatile(),
        opt: field!(plan, opt).get_volatile(),
        v6: field!(plan, v6).get_volatile(),
        level: field!(plan, level).get_volatile(),
        _padding: 0,
    })
}

/// The body of `wan_slip`: answers the planned query, or drops it.
#[inline(always)]
pub fn answer(ctx: &XdpContext) -> u32 {
    let Some(plan) = read_plan() else {
        return xdp_action::XDP_DROP;
    };
    let bytes = u64::from(plan.frame_len);
    if rewrite(ctx, &plan).is_some() {
        stats::count(Reason::TxDnsTruncated.index(), bytes);
        return xdp_action::XDP_TX;
    }
    stats::count(fallback(plan.level).index(), bytes);
    xdp_action::XDP_DROP
}

#[inline(always)]
fn rewrite(ctx: &XdpContext, plan: &Plan) -> Option<()> {
    // Masked before they are checked: Linux 6.1's verifier learns nothing
    // from a packet bounds check on a pointer whose offset may exceed
    // 0xffff, and LLVM keeps the u16 read's 0..=65535. The masks are wider
    // than every limit below, so they never change a planned value.
    let (l3, l4) = (usize::from(plan.l3 & 0xff), usize::from(plan.l4 & 0x3ff));
    let (pppoe, question_end) = (
        usize::from(plan.pppoe & 0xff),
        usize::from(plan.question_end & 0x3ff),
    );
    let message = l4 + UDP_HDR_LEN;
    // The plan came from the packet, but the verifier knows nothing of a
    // map value: bound every offset again, by constants it can use.
    if l3 > MAX_L3_OFFSET
        || pppoe > MAX_L3_OFFSET
        || l4 > MAX_L4_OFFSET
        || question_end > MAX_QUESTION_END
        || question_end < message + HEADER_LEN
    {
        return None;
    }
    let additional = if plan.opt != 0 {
        Additional::Opt
    } else {
        Additional::Nothing
    };
    let dns_len = dns::reply_len(question_end - message - HEADER_LEN, additional);
    if dns_len > MAX_REPLY_LEN {
        return None;
    }
    let len = message + dns_len;
    let mut packet = Packet::resize_xdp(ctx, usize::from(plan.frame_len), len)?;

    // Ethernet: back to the sender (each MAC as 4 + 2 bytes).
    let mut eth = packet.header_mut::<12>(0)?;
    let (dst_a, dst_b) = (eth.get::<u32, 0>(), eth.get::<u16, 4>());
    let (src_a, src_b) = (eth.get::<u32, 6>(), eth.get::<u16, 10>());
    eth.set::<u32, 0>(src_a);
    eth.set::<u16, 4>(src_b);
    eth.set::<u32, 6>(dst_a);
    eth.set::<u16, 10>(dst_b);
    if pppoe != 0 {
        let length = (len - l3 + PPP_PROTOCOL_LEN) as u16;
        let mut header = packet.header_mut::<PPPOE_HDR_LEN>(pppoe)?;
        header.set_be16::<PPPOE_LENGTH>(length);
    }

    // IP: swap the addresses, new lengths and hop limit; the pseudo-header's
    // sum for the UDP checksum.
    let udp_len = (len - l4) as u16;
    let pseudo = if plan.v6 != 0 {
        let mut ip = packet.header_mut::<IPV6_HDR_LEN>(l3)?;
        let src = [ip.get::<u64, 8>(), ip.get::<u64, 16>()];
        let dst = [ip.get::<u64, 24>(), ip.get::<u64, 32>()];
        ip.set::<u64, 8>(dst[0]);
        ip.set::<u64, 16>(dst[1]);
        ip.set::<u64, 24>(src[0]);
        ip.set::<u64, 32>(src[1]);
        ip.set_be16::<4>(udp_len);
        ip.set_be16::<6>(u16::from(IPPROTO_UDP) << 8 | u16::from(REPLY_TTL));
        checksum::wire_sum64(&src) + checksum::wire_sum64(&dst)
    } else {
        let mut ip = packet.header_mut::<IPV4_MIN_HDR_LEN>(l3)?;
        let (src, dst) = (ip.get::<u32, 12>(), ip.get::<u32, 16>());
        ip.set::<u32, 12>(dst);
        ip.set::<u32, 16>(src);
        ip.set_be16::<2>((len - l3) as u16);
        ip.set_be16::<8>(u16::from(REPLY_TTL) << 8 | u16::from(IPPROTO_UDP));
        ip.set_be16::<10>(0);
        let words = [
            ip.get::<u32, 0>(),
            ip.get::<u32, 4>(),
            ip.get::<u32, 8>(),
            src,
            dst,
        ];
        ip.set_be16::<10>(checksum::ip(checksum::wire_sum(&words)));
        checksum::wire_sum(&[src, dst])
    };

    // UDP: swap the ports, the new length; checksum below.
    let mut udp = packet.header_mut::<UDP_HDR_LEN>(l4)?;
    let ports = udp.get::<u32, 0>();
    udp.set::<u32, 0>(ports.rotate_left(16));
    udp.set_be16::<UDP_LENGTH>(udp_len);
    udp.set_be16::<UDP_CHECKSUM>(0);

    // DNS: flags, one question, no records but the OPT; the id and the
    // question stay as they are.
    let mut header = packet.header_mut::<HEADER_LEN>(message)?;
    header.set_be16::<2>(plan.flags);
    // Counts: 1 question, 0 answers, 0 authorities, the OPT or nothing.
    header.set::<u64, 4>((1u64 << 48 | u64::from(plan.opt)).to_be());
    if plan.opt != 0 {
        // Root name, type OPT, payload size, extended rcode and version 0,
        // the flags, an empty rdata.
        let mut opt = packet.header_mut::<OPT_LEN>(question_end)?;
        let head = u64::from(TYPE_OPT) << 40
            | u64::from(REPLY_UDP_PAYLOAD) << 24
            | u64::from(plan.opt_ttl >> 8);
        opt.set::<u64, 0>(head.to_be());
        opt.set::<u32, 7>((u32::from(plan.opt_ttl) << 16).to_be());
    }

    let sum = pseudo + u64::from(IPPROTO_UDP) + u64::from(udp_len) + words_sum(&packet, l4, len)?;
    packet
        .header_mut::<UDP_HDR_LEN>(l4)?
        .set_be16::<UDP_CHECKSUM>(checksum::udp(sum));
    Some(())
}

/// The sum of the 16-bit words of `[from, to)`, the last byte padded with
/// zero when the length is odd.
#[inline(always)]
fn words_sum(packet: &Packet, from: usize, to: usize) -> Option<u64> {
    let mut sum = 0u64;
    let mut at = from;
    for _ in 0..MAX_UDP_WORDS {
        if at + 2 > to {
            break;
        }
        sum += u64::from(packet.be16_at(at)?);
        at += 2;
    }
    if at < to {
        // The odd last byte is the high byte of a word padded with zero. It
        // is read with the byte before it, at an offset LLVM cannot see is
        // `to - 2`: it would check `to` against the end and read at -1 from
        // there, which the verifier refuses.
        // The mask (wider than any reply) keeps the offset non-negative for
        // Linux 6.1's verifier, which cannot see that `to` is at least 2.
        let last_pair = kernel::through_memory(to - 2) & 0x3ff;
        sum += u64::from(packet.be16_at(last_pair)? & 0xff) << 8;
    }
    Some(sum)
}
