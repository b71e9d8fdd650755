//! The WAN filter's kernel side: one XDP program for ingress, where every
//! verdict is taken, and one TC program for egress, which only observes.
#![no_std]
#![no_main]
// aya's #[classifier] macro generates a safe fn that dereferences its raw context.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod egress;
mod ingress;
mod packet;
mod stats;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use filter_common::Action;

use crate::packet::Packet;

#[xdp]
pub fn wan_ingress(ctx: XdpContext) -> u32 {
    let packet = Packet::new(ctx.data(), ctx.data_end());
    let reason = ingress::verdict(&packet);
    stats::count(reason, packet.len() as u64);
    match reason.action() {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Drop => xdp_action::XDP_DROP,
    }
}

#[classifier]
pub fn wan_egress(ctx: TcContext) -> i32 {
    let packet = Packet::new(ctx.data(), ctx.data_end());
    stats::count(egress::observe(&packet), u64::from(ctx.len()));
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
