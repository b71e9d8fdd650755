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
//! [`verdict`] is the dispatcher: it parses, then calls the global
//! function of each rule family (main.rs lists them), which the verifier
//! reads once each; with lists in use, `wan_listed_rules` first
//! ([`listed_rules`]), which names the function to call ([`Next`]).
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
///
/// Nothing after a call to a global function here branches on what the
/// dispatcher knew before it (the header shape, the fragment kind): on
/// 6.1, the verifier's precision tracking stops at such a call and then
/// marks every number it knows exact, so the dispatcher's states stop
/// matching and it is walked once per header shape (docs/kernel-programs.md).
/// So with lists in use, one function runs the lists and the rules past
/// them and names the function to call next, and a rule function's answer
/// says whether a first fragment's verdict is to be remembered.
#[inline(always)]
pub fn verdict(ctx: &XdpContext, config: &Config) -> u32 {
    let packet = Packet::from_xdp(ctx);
    let (ip, walked) = match packet.network() {
        Network::Ip(ip) => (ip, true),
        Network::UnwalkedFirstFragment(ip) => (ip, false),
        Network::NotIp => return Reason::PassNotIp.index(),
        Network::Malformed => return Reason::PassMalformed.index(),
    };
    let at = ip.located().walked(walked);
    if walked && ip.carries_tunnel() {
        // One call for every outer header shape, later fragments too (they
        // follow their first there): each branch taken here is walked once
        // per shape, and on 6.1 an inline follow made the dispatcher a
        // quarter longer.
        return crate::wan_tunnelled(ctx.ctx, at.shape, at.fragment_id);
    }
    if lists::in_use(&ip, config) {
        let next = Next(crate::wan_listed_rules(ctx.ctx, at.shape, at.fragment_id));
        return next.call(ctx.ctx, at.fragment_id);
    }
    match rules(&packet, &ip, walked, config) {
        // Not `at.is_first_fragment()`: a branch on the shape would have the
        // verifier keep every offset in it exact.
        Step::Verdict(reason) if matches!(ip.fragment, Fragment::First { .. }) => {
            crate::wan_first_fragment(ctx.ctx, at.shape, at.fragment_id, reason)
        }
        Step::Verdict(reason) => reason,
        Step::Udp => remembered(
            ctx.ctx,
            at,
            crate::wan_udp(ctx.ctx, at.shape, at.fragment_id),
        ),
        Step::Request(service) => remembered(
            ctx.ctx,
            at,
            crate::wan_request(ctx.ctx, at.shape, at.fragment_id, service as u32),
        ),
        Step::Tcp { now, source } => remembered(
            ctx.ctx,
            at,
            crate::wan_tcp(ctx.ctx, at.shape, at.fragment_id, now, source as u32),
        ),
    }
}

/// The body of `wan_listed_rules`: for the bare IP packet `at` locates,
/// the lists' verdict, or the rules past them (a first fragment's verdict
/// taken here is remembered here).
#[inline(always)]
pub fn listed_rules(ctx: *mut xdp_md, at: Located) -> u64 {
    let packet = Packet::from_xdp(&XdpContext::new(ctx));
    let (Some(ip), Some(config)) = (packet.ip_at(at), config::get()) else {
        return Next::verdict(at.shape, Reason::PassMalformed.index()).0;
    };
    if let Some(reason) = lists::verdict(&ip, config) {
        return Next::verdict(at.shape, reason.index()).0;
    }
    let step = rules(&packet, &ip, at.was_walked(), config);
    if let Step::Verdict(reason) = step {
        fragments::remember(&ip, reason, config);
    }
    Next::of(step, at.shape).0
}

/// What a function that runs the rules the dispatcher runs itself
/// (`wan_listed_rules`, `wan_inner_rules`) hands back: an argument (bits
/// 0-7), what to do next (bits 8-15) and the packet's `Located::shape`
/// (from bit 16). A reason's index alone is a verdict.
#[derive(Clone, Copy)]
pub struct Next(pub u64);

const NEXT_WHAT: u32 = 8;
const NEXT_SHAPE: u32 = 16;
const NEXT_SHAPE_BITS: u64 = (1 << 48) - 1;

/// What to do next, in [`Next`].
const VERDICT: u64 = 0;
/// The lists (only `wan_inner_rules` asks for them).
pub const LISTS: u64 = 1;
const UDP: u64 = 2;
const REQUEST: u64 = 3;
const TCP: u64 = 4;

impl Next {
    #[inline(always)]
    pub fn new(shape: u64, what: u64, argument: u32) -> Next {
        Next(
            (shape & NEXT_SHAPE_BITS) << NEXT_SHAPE
                | what << NEXT_WHAT
                | u64::from(argument & 0xff),
        )
    }

    /// The verdict (a reason's index) on the packet `shape` locates.
    #[inline(always)]
    pub fn verdict(shape: u64, reason: u32) -> Next {
        Next::new(shape, VERDICT, reason)
    }

    /// Where `step` leaves the packet `shape` locates. (`Step::Tcp`'s clock
    /// is read again by [`Next::call`]: a tick later at most.)
    #[inline(always)]
    pub fn of(step: Step, shape: u64) -> Next {
        match step {
            Step::Verdict(reason) => Next::new(shape, VERDICT, reason),
            Step::Udp => Next::new(shape, UDP, 0),
            Step::Request(service) => Next::new(shape, REQUEST, service as u32),
            Step::Tcp { source, .. } => Next::new(shape, TCP, source as u32),
        }
    }

    #[inline(always)]
    pub fn what(self) -> u64 {
        self.0 >> NEXT_WHAT & 0xff
    }

    #[inline(always)]
    pub fn argument(self) -> u32 {
        (self.0 & 0xff) as u32
    }

    /// The packet, located (its fragment id left out).
    #[inline(always)]
    pub fn located(self) -> Located {
        Located {
            shape: self.0 >> NEXT_SHAPE & NEXT_SHAPE_BITS,
            fragment_id: 0,
        }
    }

    /// The verdict, or the rule family's function called for the packet
    /// (in `raw`, its fragment id `fragment_id`).
    #[inline(always)]
    pub fn call(self, raw: *mut xdp_md, fragment_id: u64) -> u32 {
        let at = Located {
            shape: self.located().shape,
            fragment_id,
        };
        let answer = match self.what() {
            VERDICT => return self.argument(),
            UDP => crate::wan_udp(raw, at.shape, fragment_id),
            REQUEST => crate::wan_request(raw, at.shape, fragment_id, self.argument()),
            TCP => crate::wan_tcp(
                raw,
                at.shape,
                fragment_id,
                config::now_ns(),
                self.argument(),
            ),
            _ => return Reason::PassMalformed.index(),
        };
        remembered(raw, at, answer)
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

/// In the answer of a rule family's function, above the reason's index:
/// the packet is a first fragment whose verdict its caller has remembered
/// ([`remembered`]). The function could not remember it itself: the key
/// would take its frame past what a chain of calls may use (512 bytes).
const REMEMBER_ANSWER: u32 = 1 << 8;

/// The reason in `answer`, the answer of a rule family's function for the
/// packet `at` locates in `raw`, whose verdict is remembered if the
/// function asked (`wan_first_fragment`). The branch is on the answer, a
/// number the verifier learns only from the call: see [`verdict`].
#[inline(always)]
fn remembered(raw: *mut xdp_md, at: Located, answer: u32) -> u32 {
    let reason = answer & !REMEMBER_ANSWER;
    if answer & REMEMBER_ANSWER != 0 {
        crate::wan_first_fragment(raw, at.shape, at.fragment_id, reason)
    } else {
        reason
    }
}

/// The body of a global function of a rule family (`wan_udp`,
/// `wan_request`, `wan_tcp`): as [`with_ip`]; for a first fragment the
/// dispatcher located, its answer asks for the verdict to be remembered
/// ([`REMEMBER_ANSWER`]).
#[inline(always)]
pub fn judged(
    ctx: *mut xdp_md,
    at: Located,
    rule: impl FnOnce(&Packet, &Ip, &Config) -> u32,
) -> u32 {
    let reason = with_ip(ctx, at, rule);
    if at.remembers_verdict() {
        reason | REMEMBER_ANSWER
    } else {
        reason
    }
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
