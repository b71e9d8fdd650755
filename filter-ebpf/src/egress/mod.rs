//! WAN egress, after NAT: records UDP queries to watched ports as solicited,
//! so their answers pass ingress (udp.rs), and TCP handshakes and connection
//! ends (tcp.rs). Never drops. IP inside IP (IPv4 inside IPv6, IPv6 inside
//! IPv4: ingress/tunnel.rs) is recorded from the packet inside, the keys
//! its answers will carry; the outer addresses (the tunnel's ends) never.
//!
//! [`observe`] is the dispatcher, as for ingress: it parses, then calls the
//! global function of the protocol (`wan_egress_udp`, `wan_egress_tcp` in
//! main.rs), which the verifier reads once each.

pub mod tcp;
pub mod udp;

use core::ptr::NonNull;

use aya_ebpf::{EbpfContext as _, bindings::__sk_buff, programs::TcContext};
use filter_common::{Config, Reason};

use crate::{
    config,
    packet::{Fragment, IPPROTO_TCP, IPPROTO_UDP, Ip, Located, Network, Packet},
};

/// The index of the reason of the outbound packet in `ctx` (`packet`).
#[inline(always)]
pub fn observe(ctx: &TcContext, packet: &Packet) -> u32 {
    let Network::Ip(mut ip) = packet.network() else {
        return Reason::EgressOther.index();
    };
    // Unwrapped here, not in a function of its own: this dispatcher is
    // small, walking it for the inner shapes costs less than a call.
    if ip.carries_tunnel() && !matches!(ip.fragment, Fragment::Later { .. }) {
        let Network::Ip(inner) = packet.tunnelled(ip.family, ip.l4_offset) else {
            return Reason::EgressOther.index();
        };
        ip = inner;
    }
    if let Fragment::Later { .. } = ip.fragment {
        return Reason::EgressOther.index();
    }
    let at = ip.located();
    let raw = ctx.as_ptr().cast::<__sk_buff>();
    match ip.protocol {
        IPPROTO_UDP => crate::wan_egress_udp(raw, at.shape, at.fragment_id),
        IPPROTO_TCP => crate::wan_egress_tcp(raw, at.shape, at.fragment_id),
        _ => Reason::EgressOther.index(),
    }
}

/// The body of an egress global function: as ingress's `with_ip`, for the
/// TC context (whose headers the dispatcher pulled in already).
#[inline(always)]
pub fn with_ip(
    ctx: *mut __sk_buff,
    at: Located,
    rule: impl FnOnce(&Packet, &Ip, &Config) -> Reason,
) -> u32 {
    let Some(ctx) = NonNull::new(ctx) else {
        return Reason::EgressOther.index();
    };
    let packet = Packet::from_tc_pulled(&TcContext::new(ctx));
    match (packet.ip_at(at), config::get()) {
        (Some(ip), Some(config)) => rule(&packet, &ip, config).index(),
        _ => Reason::EgressOther.index(),
    }
}
