//! Rule 1 of ingress, second part: IP inside IP on the Ethernet device.
//! IPv4 inside IPv6 (next header 4: DS-Lite, MAP-E, the ip6tnl the gateway
//! reaches the IPv4 internet through) and IPv6 inside IPv4 (protocol 41:
//! 6in4, 6rd, tunnel brokers) meet every rule as the packet inside, exactly
//! as if it had come bare: the lists (its addresses, not the relay's), its
//! fragments, the reflection defence, the limits on requests, the SYN and
//! connection rules. Egress records queries and handshakes from the packet
//! inside too (egress/mod.rs), after NAT, so the keys match.
//!
//! - One unwrap: a tunnel inside the tunnel passes as the inner packet's
//!   other protocols do. A second level reaches a socket only through a
//!   second tunnel device, where the filter can be attached.
//! - The outer datagram's fragments: a first fragment is judged by the
//!   packet inside it, and that verdict is remembered under the outer
//!   datagram's key (its addresses, id and protocol 4 or 41), which its
//!   later fragments follow (asked of `wan_inner_rules`, fragments.rs), as a bare
//!   datagram's do. Inner headers cut short by the fragmentation pass as
//!   malformed, remembered so, as a bare first fragment's would. Fragments
//!   of the inner packet are keyed by the inner addresses, as bare ones.
//! - No slip reply over a tunnel: a DNS query over its limit is dropped
//!   under its level's reason (reply.rs says why).
//!
//! # How the work is split
//!
//! The dispatcher makes one call, `wan_tunnelled` (main.rs, [`verdict`]).
//! It asks `wan_inner_rules` ([`next`]) to parse the inner packet and run
//! the rules the dispatcher runs inline for a bare one ([`super::rules`]):
//! a function of its own, or they would be walked again for every outer
//! header shape. `wan_inner_rules` calls no other function: a chain of
//! calls shares 512 bytes of stack, and its frame with the dispatcher's and
//! one of the rule functions' would not fit. It hands back a [`Next`]
//! instead: a verdict, or which function to call with the inner packet's
//! [`Located`], which `wan_tunnelled` then calls, as the dispatcher does
//! for a bare one. The inner fragment id is not handed back (no room in
//! one number): no rule function reads it, and a first fragment's verdict
//! is remembered by `wan_inner_rules` itself, asked once more.

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use filter_common::{Config, Encap, Reason};

use super::{LISTS, NO_VERDICT, Next, rules};
use crate::{
    config, fragments, lists,
    packet::{Family, Located, Network, Packet},
    stats,
};

/// What `wan_tunnelled` asks of `wan_inner_rules`: its first look, the rules
/// past the lists (they had no verdict), to remember a verdict (in the
/// low bits) for the fragments of the outer and the inner datagram, or the
/// verdict of an outer later fragment.
pub const ASK: u32 = 0;
pub const PAST_LISTS: u32 = 1 << 8;
pub const REMEMBER: u32 = 2 << 8;
/// A later fragment of the outer datagram: the verdict its first left.
pub const FOLLOW: u32 = 4 << 8;

/// The body of `wan_tunnelled`: the index of the reason of the packet the
/// IP packet `at` locates carries; an outer later fragment follows its
/// first (asked of `wan_inner_rules`, which rebuilds the outer packet). It
/// keeps nothing on the stack but a few numbers: the
/// dispatcher, this and the deepest function it calls share 512 bytes.
#[inline(always)]
pub fn verdict(raw: *mut xdp_md, at: Located) -> u32 {
    if at.is_later_fragment() {
        let reason = crate::wan_inner_rules(raw, at.shape, at.fragment_id, FOLLOW) as u32;
        count(raw, at, reason);
        return reason;
    }
    let mut next = Next(crate::wan_inner_rules(raw, at.shape, at.fragment_id, ASK));
    if next.what() == LISTS {
        let inner = next.located();
        let listed = crate::wan_listed(raw, inner.shape, inner.fragment_id);
        next = if listed == NO_VERDICT {
            Next(crate::wan_inner_rules(
                raw,
                at.shape,
                at.fragment_id,
                PAST_LISTS,
            ))
        } else {
            Next::verdict(inner.shape, listed)
        };
    }
    // Decided before the calls: fewer values live across them, or this
    // frame grows (512 bytes for a chain of calls).
    let remember = next.located().is_first_fragment() || at.is_first_fragment();
    // No fragment id for the inner packet: `wan_inner_rules` remembers its
    // verdict below, under both datagrams' keys.
    let reason = next.call(raw, 0);
    if remember {
        crate::wan_inner_rules(raw, at.shape, at.fragment_id, REMEMBER | reason);
    }
    count(raw, at, reason);
    reason
}

/// Counts the packet `at` locates, which got the reason at index `reason`,
/// under its encapsulation (`TUNNELLED`).
#[inline(always)]
fn count(raw: *mut xdp_md, at: Located, reason: u32) {
    let ctx = XdpContext::new(raw);
    let encap = Encap::of_outer(at.family() == Family::Ipv6);
    stats::count_tunnelled(encap, reason, (ctx.data_end() - ctx.data()) as u64);
}

/// The body of `wan_inner_rules`: what the packet carried by the IP
/// packet `at` locates asks for next (`asked`: [`ASK`], [`PAST_LISTS`],
/// [`REMEMBER`] and a reason, or [`FOLLOW`] for an outer later fragment).
/// The outer packet is only rebuilt to follow or remember: its addresses
/// would take stack the rules need.
#[inline(always)]
pub fn next(ctx: *mut xdp_md, at: Located, asked: u32) -> u64 {
    let packet = Packet::from_xdp(&XdpContext::new(ctx));
    let Some(config) = config::get() else {
        return Reason::PassMalformed.index().into();
    };
    if asked == FOLLOW {
        let reason = match packet.ip_at(at) {
            Some(outer) => fragments::follow(&outer, config),
            None => Reason::PassMalformed,
        };
        return reason.index().into();
    }
    if asked & REMEMBER != 0 {
        remember(&packet, at, asked & 0xff, config);
        return 0;
    }
    let (inner, walked) = match packet.tunnelled(at.family(), at.l4_offset()) {
        Network::Ip(inner) => (inner, true),
        Network::UnwalkedFirstFragment(inner) => (inner, false),
        Network::NotIp | Network::Malformed => return Reason::PassMalformed.index().into(),
    };
    let shape = inner.located().shape;
    if asked == ASK && lists::in_use(&inner, config) {
        return Next::new(shape, LISTS, 0).0;
    }
    Next::of(rules(&packet, &inner, walked, config), shape).0
}

/// Remembers the verdict (the reason at index `reason`) of a first
/// fragment of the outer datagram `at` locates, and of the inner one.
#[inline(always)]
fn remember(packet: &Packet, at: Located, reason: u32, config: &Config) {
    let Some(outer) = packet.ip_at(at) else {
        return;
    };
    fragments::remember(&outer, reason, config);
    if let Network::Ip(inner) | Network::UnwalkedFirstFragment(inner) =
        packet.tunnelled(outer.family, outer.l4_offset)
    {
        fragments::remember(&inner, reason, config);
    }
}
