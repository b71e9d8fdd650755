//! The DNS slip reply: a DNS query over its limit that got the slip
//! (ingress/request.rs) is turned into a minimal truncated answer and sent
//! back out of the interface it came in on (XDP_TX). What the reply says is
//! filter_common::dns; this module rewrites the frame.
//!
//! The verdict only decides: [`plan`] checks that the query can get a reply
//! and notes where its parts lie in SLIP_PLAN, a per-CPU scratch value (a
//! program runs to completion on its CPU, so the value is this packet's
//! until [`send`] reads it). main.rs calls [`send`] for the `tx` action,
//! except in monitor mode, where the query passes untouched.
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

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::XdpContext};
use filter_common::{
    Reason, checksum,
    dns::{
        self, Additional, HEADER_LEN, Header, MAX_QUESTION_LEN, MAX_REPLY_LEN, OPT_LEN,
        REPLY_UDP_PAYLOAD, TYPE_OPT,
    },
    query::Level,
};

use crate::{
    packet::{
        Family, Fragment, IPPROTO_UDP, IPV4_MIN_HDR_LEN, IPV6_HDR_LEN, Ip, MAX_L4_OFFSET,
        PPP_PROTOCOL_LEN, PPPOE_HDR_LEN, PPPOE_LENGTH, Packet, UDP_CHECKSUM, UDP_HDR_LEN,
        UDP_LENGTH, Udp,
    },
    proto::dns as dns_fields,
};

/// Where the parts of one query lie, for its reply.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Plan {
    /// The frame's length, and the offsets in it of the network header, the
    /// UDP header, the end of the question and the PPPoE header (0: none).
    frame_len: u16,
    l3: u16,
    l4: u16,
    question_end: u16,
    pppoe: u16,
    /// The reply's DNS flags.
    flags: u16,
    /// The reply OPT record's TTL field (DO bit), if it has one.
    opt_ttl: u16,
    /// 1: the reply has an OPT record.
    opt: u8,
    /// 1: IPv6.
    v6: u8,
    /// The level that refused the query: what it counts as if no reply goes out.
    level: u8,
    _padding: [u8; 3],
}

#[map]
static SLIP_PLAN: PerCpuArray<Plan> = PerCpuArray::with_max_entries(1, 0);

/// The hop limit of a reply: a fresh packet's, not what is left of the query's.
const REPLY_TTL: u8 = 64;
/// Frames with headers deeper than this get no reply (two VLAN tags and
/// PPPoE take 30 bytes).
const MAX_L3_OFFSET: usize = 64;
/// The furthest a question of a reply can end in the frame.
const MAX_QUESTION_END: usize = MAX_L4_OFFSET + UDP_HDR_LEN + HEADER_LEN + MAX_QUESTION_LEN;
/// 16-bit words of the longest reply's UDP header and message, rounded up.
const MAX_UDP_WORDS: usize = (UDP_HDR_LEN + MAX_REPLY_LEN).div_ceil(2);

/// Notes where the parts of a DNS query over its limit at `level` lie, if
/// it can get a slip reply (see the module documentation).
#[inline(always)]
pub fn plan(packet: &Packet, ip: &Ip, udp: &Udp, header: &Header, level: Level) -> bool {
    let Some(additional) = header.slip_shape() else {
        return false;
    };
    if ip.fragment != Fragment::Whole {
        return false;
    }
    let Some(link) = packet.link_layer() else {
        return false;
    };
    let l3 = link.l3_offset;
    let header_len = match ip.family {
        Family::Ipv4 => IPV4_MIN_HDR_LEN,
        Family::Ipv6 => IPV6_HDR_LEN,
    };
    if l3 > MAX_L3_OFFSET || ip.l4_offset != l3 + header_len || ip.l4_offset > MAX_L4_OFFSET {
        return false;
    }
    // The message ends where the UDP length says (the frame may be padded).
    let end = ip.l4_offset + usize::from(udp.length);
    if usize::from(udp.length) < UDP_HDR_LEN + HEADER_LEN || end > packet.len() {
        return false;
    }
    let Some(question_end) = dns_fields::question_end(packet, udp.payload + HEADER_LEN, end) else {
        return false;
    };
    let opt_ttl = match additional {
        Additional::Nothing if question_end == end => 0,
        Additional::Opt => {
            match dns_fields::opt_ttl(packet, question_end, end).and_then(dns::reply_opt_ttl) {
                Some(ttl) => ttl as u16,
                None => return false,
            }
        }
        Additional::Nothing => return false,
    };
    let Some(slot) = SLIP_PLAN.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's element of a per-CPU array, which outlives the
    // program; written field by field (a struct copy would call memcpy).
    unsafe {
        (*slot).frame_len = packet.len() as u16;
        (*slot).l3 = l3 as u16;
        (*slot).l4 = ip.l4_offset as u16;
        (*slot).question_end = question_end as u16;
        (*slot).pppoe = link.pppoe_offset.unwrap_or(0) as u16;
        (*slot).flags = header.reply_flags();
        (*slot).opt_ttl = opt_ttl;
        (*slot).opt = u8::from(additional == Additional::Opt);
        (*slot).v6 = u8::from(ip.family == Family::Ipv6);
        (*slot).level = level as u8;
    }
    true
}

/// Rewrites the packet planned by [`plan`] into its reply. On an error the
/// packet is dropped, counted under the returned reason (the drop its
/// query had earned); nothing else fails but a refused resize.
#[inline(always)]
pub fn send(ctx: &XdpContext) -> Result<(), Reason> {
    // Always there: a per-CPU array's element exists from its creation.
    let Some(plan) = SLIP_PLAN.get_ptr(0) else {
        return Err(Reason::DropDnsQuerySource);
    };
    // SAFETY: this CPU's element, written by `plan` during this run;
    // copied field by field.
    let plan = unsafe {
        Plan {
            frame_len: (*plan).frame_len,
            l3: (*plan).l3,
            l4: (*plan).l4,
            question_end: (*plan).question_end,
            pppoe: (*plan).pppoe,
            flags: (*plan).flags,
            opt_ttl: (*plan).opt_ttl,
            opt: (*plan).opt,
            v6: (*plan).v6,
            level: (*plan).level,
            _padding: [0; 3],
        }
    };
    let fallback = match plan.level {
        l if l == Level::Prefix as u8 => Reason::DropDnsQueryPrefix,
        l if l == Level::Global as u8 => Reason::DropDnsQueryGlobal,
        _ => Reason::DropDnsQuerySource,
    };
    rewrite(ctx, &plan).ok_or(fallback)
}

#[inline(always)]
fn rewrite(ctx: &XdpContext, plan: &Plan) -> Option<()> {
    let (l3, l4) = (usize::from(plan.l3), usize::from(plan.l4));
    let (pppoe, question_end) = (usize::from(plan.pppoe), usize::from(plan.question_end));
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
        // SAFETY: reads a local that lives for the whole call.
        let last_pair = unsafe { core::ptr::read_volatile(&(to - 2)) };
        sum += u64::from(packet.be16_at(last_pair)? & 0xff) << 8;
    }
    Some(sum)
}
