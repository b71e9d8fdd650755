//! The WAN filter's kernel side: one XDP program for ingress, where every
//! verdict is taken, and one TC program for egress, which records what the
//! inside asked for and never drops. Both count every packet under one
//! reason (stats.rs) and read the settings in config.rs. Drops are sampled
//! into a ring buffer (sample.rs); rare events go to the daemon's log
//! through aya-log (events.rs), never anything per packet.
//!
//! # What the verifier reads
//!
//! `wan_ingress` is a short dispatcher: it parses the headers once
//! (ingress/mod.rs), then hands the packet to the BPF global function of its
//! rule family. The kernel verifies a global function once, on its own,
//! with its arguments unknown (the context, and scalars: where the headers
//! lie, see `packet::Located`), and a call to it as one instruction. So
//! each part costs the verifier its own instructions, not a multiple of
//! every path before it, and a new rule costs what it adds. Every verdict
//! then goes through one finish (ingress/finish.rs: count, monitor mode,
//! sampling), which gets the reason as a number from the functions, so the
//! verifier walks it once per path of the dispatcher, not once per reason.
//! A call costs the packet more than its instructions (10-15 ns here,
//! docs/kernel-programs.md), so the dispatcher takes itself the verdicts a
//! flood is made of, where they need only a few reads: traffic no rule
//! looks at passes, a later fragment follows its first (one lookup), the
//! UDP rules run up to the solicited table (a response whose set holds
//! nothing live is dropped), a SYN meets its source's bucket; and the
//! finish is inlined. The functions, in the order a packet meets them
//! (docs/kernel-programs.md has their verifier counts):
//!
//! - `wan_tunnelled` (ingress/tunnel.rs): IP inside IP; `wan_inner_rules`
//!   parses the packet inside and runs the rules the dispatcher runs
//!   itself for a bare one, then `wan_tunnelled` calls the functions below
//!   for it as the dispatcher does;
//! - `wan_listed_rules` (ingress/mod.rs): only called when one of the
//!   packet family's lists holds entries: the allow and deny lists
//!   (lists.rs), then the rules the dispatcher runs itself, and it names
//!   the function below to call next (nothing after a call in the
//!   dispatcher may branch on what it knew before: ingress/mod.rs says why);
//! - `wan_listed` (lists.rs): the lists alone, for a tunnel's inner packet;
//! - `wan_udp` (ingress/udp.rs): a response whose set of the solicited
//!   table may hold its query consumes it;
//! - `wan_request` (ingress/request.rs): requests to our DNS and NTP
//!   services, their limits and the DNS slip; it calls `wan_dns_question`
//!   (proto/dns.rs) to read a DNS query's question, the name level's key;
//! - `wan_tcp` (ingress/tcp.rs): inbound TCP past the source's SYN bucket,
//!   connection attempts and the segments that complete or end connections;
//! - `wan_first_fragment` (fragments.rs): remembers a first fragment's
//!   verdict (the rule functions' answer asks for it);
//! - `wan_sample_offered` (sample.rs): a drop the finish offers to the
//!   sampler (one in 64 of each reason per CPU).
//!
//! The DNS slip's reply is `wan_slip`, a program of its own entered by a
//! tail call (reply.rs). All of them are one object, attached and replaced
//! together: an upgrade never runs two versions' halves together.
//!
//! # Where each rule lives
//! - ingress/mod.rs: the rule order of `wan_ingress`; ingress/udp.rs the
//!   reflection defence (an inbound response must answer a recorded query),
//!   ingress/tcp.rs what happens to inbound TCP: connection attempts meet
//!   the SYN rules (syn.rs: rate buckets, halfopen.rs: half-open budgets,
//!   conn.rs: connection limits), other segments to service ports complete
//!   handshakes (handshake.rs) and keep connections counted;
//!   ingress/request.rs the limits on requests to our DNS and NTP services
//!   (query.rs; tokens through rate.rs, as syn.rs) and the DNS slip
//!   (reply.rs builds the truncated answer);
//!   lists.rs the allow and deny lists, fragments.rs later IP fragments;
//! - egress/mod.rs, egress/udp.rs and egress/tcp.rs: what `wan_egress`
//!   records (queries, handshakes, connection ends);
//! - proto/{dns,ntp}.rs: the application fields both directions read;
//! - solicited.rs (the queries egress records and answers consume),
//!   handshake.rs, conn.rs: the set-associative tables, one implementation
//!   (sets.rs over filter_common::sets);
//! - packet.rs: the packet (made only from the program's context, read only
//!   through bounds-checked, typed reads) and the header parser;
//! - kernel.rs: map elements, through one safe cell type, and the kernel's
//!   helpers. packet.rs and kernel.rs are the only modules with `unsafe`
//!   code (main.rs names the global functions' symbols).
//!
//! The arithmetic (SYN bucket math, hashes, masks, deadlines, slot choice)
//! is in filter-common, where it is tested on the host.
#![no_std]
// Packet reads are single load instructions in inline assembly (packet.rs).
#![feature(asm_experimental_arch)]
#![no_main]
// aya's #[classifier] macro generates a safe fn that dereferences its raw
// context; the global functions take the raw context and only wrap it.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod config;
mod conn;
mod egress;
mod events;
mod fragments;
mod halfopen;
mod handshake;
mod ingress;
mod kernel;
mod lists;
mod packet;
mod proto;
mod query;
mod rate;
mod reply;
mod sample;
mod sets;
mod solicited;
mod stats;
mod syn;

use aya_ebpf::{
    bindings::{__sk_buff, TC_ACT_OK, xdp_action, xdp_md},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

use filter_common::{Reason, query::Service};

use crate::packet::{Located, Packet};

#[xdp]
// Inlined into the entry point: left to itself, LLVM makes the body a BPF
// function of its own, and every packet pays the call.
#[inline(always)]
pub fn wan_ingress(ctx: XdpContext) -> u32 {
    let Some(config) = config::get() else {
        return xdp_action::XDP_PASS;
    };
    let reason = ingress::verdict(&ctx, config);
    match ingress::finish::finish(&ctx, reason) {
        // The tail call counts the packet; it only returns if it failed.
        xdp_action::XDP_TX => ingress::finish::finish(&ctx, reply::send(&ctx)),
        action => action,
    }
}

/// Entered only by `wan_ingress`'s tail call, with a DNS query that gets
/// the slip: answers it with a truncated reply (reply.rs).
#[xdp]
pub fn wan_slip(ctx: XdpContext) -> u32 {
    reply::answer(&ctx)
}

#[classifier]
pub fn wan_egress(ctx: TcContext) -> i32 {
    let packet = Packet::from_tc(&ctx);
    if config::get().is_none() {
        return TC_ACT_OK;
    }
    stats::count(egress::observe(&ctx, &packet), u64::from(ctx.len()));
    // Egress never drops: it only learns what the inside asked for.
    TC_ACT_OK
}

// The global functions of `wan_ingress`. Each takes the context and
// scalars, rebuilds what it needs from them, and returns a number: a
// reason's index (`Reason::index`), or `ingress::NO_VERDICT`. Only their
// symbols are here; the rules are in the modules each one names.

/// An IP packet that carries another (ingress/tunnel.rs): the rules for
/// the packet inside. It asks `wan_inner_rules` what the packet inside
/// needs, then calls the functions below for it as the dispatcher does
/// for a bare one.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_tunnelled(ctx: *mut xdp_md, shape: u64, fragment_id: u64) -> u32 {
    // Both arguments are used: no `Located::from_arguments`, whose empty
    // assembly block here left two line records at one instruction, which
    // the kernel refuses.
    ingress::tunnel::verdict(ctx, Located { shape, fragment_id })
}

/// The packet inside the IP packet `shape` and `fragment_id` locate
/// (ingress/tunnel.rs): parsed, and the rules the dispatcher runs itself
/// for a bare one; what `wan_tunnelled` `asked` (`ingress::tunnel::ASK`,
/// ...), and what it does next is the result (`ingress::Next`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_inner_rules(
    ctx: *mut xdp_md,
    shape: u64,
    fragment_id: u64,
    asked: u32,
) -> u64 {
    // As `wan_tunnelled`: both arguments are used.
    ingress::tunnel::next(ctx, Located { shape, fragment_id }, asked)
}

/// The allow and deny lists (lists.rs) for a tunnel's inner packet:
/// `PassAllowList`, `DropDenyList`, or no verdict.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_listed(ctx: *mut xdp_md, shape: u64, fragment_id: u64) -> u32 {
    ingress::with_ip(
        ctx,
        Located::from_arguments(shape, fragment_id),
        |_, ip, config| lists::verdict(ip, config).map_or(ingress::NO_VERDICT, Reason::index),
    )
}

/// A bare IP packet when the lists of its family hold entries: the allow
/// and deny lists (lists.rs), then the rules the dispatcher runs itself
/// past them; what to do next is the result (`ingress::Next`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_listed_rules(ctx: *mut xdp_md, shape: u64, fragment_id: u64) -> u64 {
    ingress::listed_rules(ctx, Located { shape, fragment_id })
}

/// Remembers the verdict (`reason`) of a first IP fragment for the rest of
/// its datagram (fragments.rs); returns `reason`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_first_fragment(
    ctx: *mut xdp_md,
    shape: u64,
    fragment_id: u64,
    reason: u32,
) -> u32 {
    ingress::with_ip(
        ctx,
        Located::from_arguments(shape, fragment_id),
        |_, ip, config| {
            fragments::remember(ip, reason, config);
            reason
        },
    )
}

/// Inbound UDP that may answer a recorded query: the reflection defence
/// (ingress/udp.rs) run again, the query consumed. The dispatcher takes
/// every other UDP verdict itself (a response whose set of the solicited
/// table holds nothing live is dropped there), and calls `wan_request` for
/// requests: a request reaches this function only if the ports' roles
/// changed between the dispatcher's look and this one (a settings change
/// in between), and passes as plain traffic. Calling `wan_request` from
/// here would stack its frame on this one's and the dispatcher's, past the
/// 512 bytes the kernel allows a chain of calls (issue 27's question walk
/// made `wan_request`'s frame 192 bytes).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_udp(ctx: *mut xdp_md, shape: u64, fragment_id: u64) -> u32 {
    ingress::judged(ctx, Located { shape, fragment_id }, |packet, ip, _| {
        let Some(udp) = packet.udp(ip.l4_offset) else {
            return Reason::PassMalformed.index();
        };
        let roles = ingress::udp::Roles::of(udp.src_port, udp.dst_port);
        match ingress::udp::verdict(packet, ip, &udp, roles) {
            ingress::udp::Verdict::Reason(reason) => reason.index(),
            ingress::udp::Verdict::Request(_) => ingress::pass(ip).index(),
            ingress::udp::Verdict::Response(key, class) => {
                ingress::udp::answered(class, solicited::consume(&key)).index()
            }
        }
    })
}

/// A request to one of our services, DNS (`service` 0) or NTP (1): the
/// limits on requests and the DNS slip (ingress/request.rs).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_request(ctx: *mut xdp_md, shape: u64, fragment_id: u64, service: u32) -> u32 {
    let service = if service == Service::Dns as u32 {
        Service::Dns
    } else {
        Service::Ntp
    };
    ingress::judged(ctx, Located { shape, fragment_id }, |packet, ip, config| {
        ingress::request::verdict(ctx, packet, ip, service, config).index()
    })
}

/// The first question of a DNS query to our server whose message starts at
/// `payload` and ends at `end` (proto/dns.rs): the name level's key and
/// the question's end, packed (`dns::Question::packed`; 0 if there is none
/// the filter can read). Called by `wan_request`, which would otherwise
/// have the verifier walk the label loop once per header shape.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_dns_question(ctx: *mut xdp_md, payload: u64, end: u64) -> u64 {
    let packet = Packet::from_xdp(&XdpContext::new(ctx));
    let Some(config) = config::get() else {
        return 0;
    };
    let question = proto::dns::question(
        &packet,
        payload as usize,
        end as usize,
        config.syn_hash_seed,
    );
    proto::dns::Question::packed(question)
}

/// Inbound TCP that some rule looks at (ingress/tcp.rs), at `now` (the
/// dispatcher read the clock); `source` is what the source's bucket made
/// of a connection attempt (`syn::SourceLevel`'s number).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_tcp(
    ctx: *mut xdp_md,
    shape: u64,
    fragment_id: u64,
    now: u64,
    source: u32,
) -> u32 {
    ingress::judged(ctx, Located { shape, fragment_id }, |packet, ip, config| {
        ingress::tcp::verdict(
            packet,
            ip,
            config,
            now,
            syn::SourceLevel::from_number(source),
        )
        .index()
    })
}

// The global functions of `wan_egress`, likewise.

/// An outbound UDP datagram: a query to a watched port is recorded
/// (egress/udp.rs).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_egress_udp(ctx: *mut __sk_buff, shape: u64, fragment_id: u64) -> u32 {
    egress::with_ip(
        ctx,
        Located::from_arguments(shape, fragment_id),
        egress::udp::record,
    )
}

/// An outbound TCP segment: a SYN-ACK's handshake is recorded, a FIN or RST
/// ends a counted connection (egress/tcp.rs).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_egress_tcp(ctx: *mut __sk_buff, shape: u64, fragment_id: u64) -> u32 {
    egress::with_ip(
        ctx,
        Located::from_arguments(shape, fragment_id),
        egress::tcp::observe,
    )
}

/// An offered drop (the reason at index `reason`, `len` bytes, monitor
/// mode's `would_drop` 1): its reason's limiter and, if it admits, the
/// event in the ring buffer (sample.rs). 1 if an event was sent.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn wan_sample_offered(
    ctx: *mut xdp_md,
    reason: u32,
    len: u64,
    would_drop: u32,
    rate: u32,
) -> u32 {
    u32::from(sample::offered(
        &XdpContext::new(ctx),
        reason,
        len,
        would_drop != 0,
        rate,
    ))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
