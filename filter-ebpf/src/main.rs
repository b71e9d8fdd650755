//! The WAN filter's kernel side: one XDP program for ingress, where every
//! verdict is taken, and one TC program for egress, which records what the
//! inside asked for and never drops.
#![no_std]
#![no_main]
// aya's #[classifier] macro generates a safe fn that dereferences its raw context.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod config;
mod egress;
mod fragments;
mod ingress;
mod lists;
mod packet;
mod proto;
mod solicited;
mod stats;
mod syn;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use filter_common::Action;

use crate::packet::{MAX_L4_OFFSET, Packet};

/// Bytes of an outgoing packet egress may read: headers up to the deepest
/// transport header we parse, plus the DNS/NTP fields behind it.
const EGRESS_HEADROOM: u32 = (MAX_L4_OFFSET + 64) as u32;

#[xdp]
pub fn wan_ingress(ctx: XdpContext) -> u32 {
    let Some(config) = config::get() else {
        return xdp_action::XDP_PASS;
    };
    let packet = Packet::new(ctx.data(), ctx.data_end());
    let reason = ingress::verdict(&packet, config, config::now_ns());
    let bytes = packet.len() as u64;
    match reason.action() {
        Action::Pass => {
            stats::count(reason, bytes);
            xdp_action::XDP_PASS
        }
        Action::Drop if config.monitor != 0 => {
            stats::count_would_drop(reason, bytes);
            xdp_action::XDP_PASS
        }
        Action::Drop => {
            stats::count(reason, bytes);
            xdp_action::XDP_DROP
        }
    }
}

#[classifier]
pub fn wan_egress(ctx: TcContext) -> i32 {
    // The headers we read must be in the linear part. Pull only when they are
    // not: pulling also makes the skb writable, copying cloned TCP packets.
    let wanted = ctx.len().min(EGRESS_HEADROOM);
    if ((ctx.data_end() - ctx.data()) as u32) < wanted {
        // A failure only means we see less of this packet.
        let _ = ctx.pull_data(wanted);
    }
    let Some(config) = config::get() else {
        return TC_ACT_OK;
    };
    let packet = Packet::new(ctx.data(), ctx.data_end());
    stats::count(
        egress::observe(&packet, config, config::now_ns()),
        u64::from(ctx.len()),
    );
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
