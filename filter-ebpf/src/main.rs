//! The WAN filter's kernel side: one XDP program for ingress, where every
//! verdict is taken, and one TC program for egress, which records what the
//! inside asked for and never drops. Both count every packet under one
//! reason (stats.rs) and read the settings in config.rs. Drops are sampled
//! into a ring buffer (sample.rs); rare events go to the daemon's log
//! through aya-log (events.rs), never anything per packet.
//!
//! Where each rule lives:
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
//! - solicited.rs: the table egress records into and ingress consumes from;
//! - packet.rs: the packet (made only from the program's context, read only
//!   through bounds-checked, typed reads) and the header parser.
//!
//! The arithmetic (SYN bucket math, hashes, masks, deadlines) is in
//! filter-common, where it is tested on the host.
#![no_std]
// Packet reads are single load instructions in inline assembly (packet.rs).
#![feature(asm_experimental_arch)]
#![no_main]
// aya's #[classifier] macro generates a safe fn that dereferences its raw context.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod config;
mod conn;
mod egress;
mod events;
mod fragments;
mod halfopen;
mod handshake;
mod ingress;
mod lists;
mod packet;
mod proto;
mod query;
mod rate;
mod reply;
mod sample;
mod solicited;
mod stats;
mod syn;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use filter_common::Action;

use crate::packet::Packet;

#[xdp]
// Inlined into the entry point: left to itself, LLVM makes the body a BPF
// function of its own, and every packet pays the call.
#[inline(always)]
pub fn wan_ingress(ctx: XdpContext) -> u32 {
    let Some(config) = config::get() else {
        return xdp_action::XDP_PASS;
    };
    let packet = Packet::from_xdp(&ctx);
    let reason = ingress::verdict(&packet, config);
    let bytes = packet.len() as u64;
    match reason.action() {
        Action::Pass => {
            stats::count(reason, bytes);
            xdp_action::XDP_PASS
        }
        Action::Drop => {
            let monitor = config.monitor != 0;
            if monitor {
                stats::count_would_drop(reason, bytes);
            } else {
                stats::count(reason, bytes);
            }
            sample::drop(&ctx, reason, bytes, monitor, config);
            if monitor {
                xdp_action::XDP_PASS
            } else {
                xdp_action::XDP_DROP
            }
        }
        // Monitor mode answers nothing: the query passes untouched.
        Action::Tx if config.monitor != 0 => {
            stats::count_would_drop(reason, bytes);
            xdp_action::XDP_PASS
        }
        // The tail call counts the packet; it only returns if it failed.
        Action::Tx => {
            stats::count(reply::send(&ctx), bytes);
            xdp_action::XDP_DROP
        }
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
    let Some(config) = config::get() else {
        return TC_ACT_OK;
    };
    stats::count(egress::observe(&packet, config), u64::from(ctx.len()));
    // Egress never drops: it only learns what the inside asked for.
    TC_ACT_OK
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
