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

use crate::packet::Packet;

#[xdp]
pub fn wan_ingress(ctx: XdpContext) -> u32 {
    let Some(config) = config::get() else {
        return xdp_action::XDP_PASS;
    };
    let packet = Packet::from_xdp(&ctx);
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
    let packet = Packet::from_tc(&ctx);
    let Some(config) = config::get() else {
        return TC_ACT_OK;
    };
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
