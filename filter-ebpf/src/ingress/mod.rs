//! WAN ingress: the verdict of every inbound packet, in rule order.
//! 1. not IP, or headers we cannot parse: pass (counted; the parser is packet.rs);
//!    IP inside IP (DS-Lite, MAP-E, 6in4, 6rd): the rules below for the
//!    packet inside (tunnel.rs);
//! 2. source on the allow list: pass, no drop rule looks at it (lists.rs);
//! 3. source on the deny list: drop;
//! 4. a later IP fragment: the verdict of its first fragment (fragments.rs);
//! 5. UDP: the reflection rules (udp.rs; protocol headers in proto/), then
//!    the limits on requests to our DNS and NTP services (request.rs);
//! 6. TCP: connection attempts meet the SYN rules, other segments complete
//!    or end connections (tcp.rs);
//! 7. anything else: pass.
//!
//! Then every verdict is counted (finish.rs).
//!
//! A first fragment's verdict is remembered for the rest of its datagram,
//! also when its headers after the fragment header could not be walked
//! (it then passes as malformed, and so do the rest).
//!
//! [`verdict`] is the dispatcher: it parses, then [`judge`] calls the
//! global function of each rule (main.rs lists them), which the verifier
//! reads once each.
//! It stays short: whatever it does, the verifier walks once for every
//! shape of header the parser can find. It takes itself only the verdicts
//! a flood is made of that need a few reads (a call costs more than they
//! do): later fragments, UDP up to the solicited table, the SYN's source
//! bucket.

pub mod finish;
pub mod request;
pub mod tcp;
pub mod tunnel;
pub mod udp;

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use filter_common::{Config, Reason, query::Service};

use crate::{
    config, fragments, lists,
    packet::{Family, Fragment, IPPROTO_TCP, IPPROTO_UDP, Ip, Located, Network, Packet},
    solicited, syn,
};

/// What a global function that may leave the verdict to later rules
/// (`wan_listed`) returns when it does.
pub const NO_VERDICT: u32 = u32::MAX;

/// The index of the reason of the inbound packet in `ctx`.
#[inline(always)]
pub fn verdict(ctx: &XdpContext, config: &Config) -> u32 {
    let packet = Packet::from_xdp(ctx);
    let (ip, walked) = match packet.network() {
        Network::Ip(ip) => (ip, true),
        Network::UnwalkedFirstFragment(ip) => (ip, false),
        Network::NotIp => return Reason::PassNotIp.index(),
        Network::Malformed => return Reason::PassMalformed.index(),
    };
    let at = ip.located();
    if walked && ip.carries_tunnel() {
        // One call for every outer header shape, later fragments too (they
        // follow their first there): each branch taken here is walked once
        // per shape, and on 6.1 an inline follow made the dispatcher a
        // quarter longer.
        return crate::wan_tunnelled(ctx.ctx, at.shape, at.fragment_id);
    }
    judge(ctx.ctx, &packet, &ip, at, walked, config)
}

/// The rules from the lists on for `ip`, a bare IP packet of `packet` (the
/// packet in `raw`); `walked`: its headers after a fragment header were
/// walked.
#[inline(always)]
fn judge(
    raw: *mut xdp_md,
    packet: &Packet,
    ip: &Ip,
    at: Located,
    walked: bool,
    config: &Config,
) -> u32 {
    if lists::in_use(ip, config) {
        let listed = crate::wan_listed(raw, at.shape, at.fragment_id);
        if listed != NO_VERDICT {
            return listed;
        }
    }
    let reason = match rules(packet, ip, walked, config) {
        Step::Verdict(reason) => reason,
        Step::Udp => crate::wan_udp(raw, at.shape, at.fragment_id),
        Step::Request(service) => crate::wan_request(raw, at.shape, at.fragment_id, service as u32),
        Step::Tcp { now, source } => {
            crate::wan_tcp(raw, at.shape, at.fragment_id, now, source as u32)
        }
    };
    match ip.fragment {
        Fragment::First { .. } => crate::wan_first_fragment(raw, at.shape, at.fragment_id, reason),
        _ => reason,
    }
}

/// Where the rules past the lists leave a packet: with a verdict, or at
/// the global function of its rule family.
pub enum Step {
    /// The index of the reason.
    Verdict(u32),
    /// A response that may answer a recorded query: `wan_udp`.
    Udp,
    /// A request to one of our services: `wan_request`.
    Request(Service),
    /// TCP some rule looks at, past the source's bucket at `now`: `wan_tcp`.
    Tcp { now: u64, source: syn::SourceLevel },
}

/// The rules past the lists the dispatcher runs itself, for `ip` (bare or
/// inside a tunnel) in `packet`: later fragments, UDP up to the solicited
/// table, the SYN's source bucket (a call costs more than their
/// instructions: see docs/kernel-programs.md).
#[inline(always)]
pub fn rules(packet: &Packet, ip: &Ip, walked: bool, config: &Config) -> Step {
    let reason = match ip.fragment {
        // One lookup: the dispatcher's own, a call would cost more.
        Fragment::Later { .. } => fragments::follow(ip, config),
        _ if !walked => Reason::PassMalformed,
        // Only a datagram or segment some rule looks at enters its family's
        // function; the rest pass here.
        _ => match ip.protocol {
            IPPROTO_UDP => match packet.udp(ip.l4_offset) {
                None => Reason::PassMalformed,
                Some(datagram) => {
                    let roles = udp::Roles::of(datagram.src_port, datagram.dst_port);
                    if !roles.have_rules(datagram.dst_port) {
                        pass(ip)
                    } else {
                        match udp::verdict(packet, ip, &datagram, roles) {
                            udp::Verdict::Reason(reason) => reason,
                            udp::Verdict::Request(service) => return Step::Request(service),
                            // A flood of spoofed responses ends here.
                            udp::Verdict::Response(key, class) if !solicited::may_hold(&key) => {
                                udp::answered(class, false)
                            }
                            udp::Verdict::Response(..) => return Step::Udp,
                        }
                    }
                }
            },
            IPPROTO_TCP => match packet.tcp(ip.l4_offset) {
                None => Reason::PassMalformed,
                Some(tcp) if tcp::has_rules(&tcp) => {
                    let now = config::now_ns();
                    let source = if tcp::is_attempt(&tcp) {
                        syn::source_level(ip, config, now)
                    } else {
                        syn::SourceLevel::Admitted
                    };
                    match source {
                        // A SYN flood from few sources ends here.
                        syn::SourceLevel::Refused => Reason::DropSynSource,
                        _ => return Step::Tcp { now, source },
                    }
                }
                Some(_) => pass(ip),
            },
            _ => pass(ip),
        },
    };
    Step::Verdict(reason.index())
}

/// The body of a global function of an IP rule: the packet, the IP packet
/// `at` locates in it and the config, handed to `rule`; its number is the
/// function's result. (Neither can be missing: the dispatcher located the
/// packet and read the config. The verifier cannot know that.)
#[inline(always)]
pub fn with_ip(
    ctx: *mut xdp_md,
    at: Located,
    rule: impl FnOnce(&Packet, &Ip, &Config) -> u32,
) -> u32 {
    let packet = Packet::from_xdp(&XdpContext::new(ctx));
    match (packet.ip_at(at), config::get()) {
        (Some(ip), Some(config)) => rule(&packet, &ip, config),
        _ => Reason::PassMalformed.index(),
    }
}

/// The plain pass reason of an IP packet no rule matched.
#[inline(always)]
pub fn pass(ip: &Ip) -> Reason {
    match ip.family {
        Family::Ipv4 => Reason::PassIpv4,
        Family::Ipv6 => Reason::PassIpv6,
    }
}
