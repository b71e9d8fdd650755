//! The end of every inbound packet's way, once its reason is known: it is
//! counted under the reason (stats.rs), a drop is offered to the sampler
//! (sample.rs), and monitor mode turns drops and replies into passes,
//! counted as what they would have been. Inlined into the dispatcher
//! rather than a global function of its own, which every packet would pay
//! a call for: the reason comes in as a number from the rule functions, so
//! the verifier still walks this once per path of the dispatcher, not once
//! per reason.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use filter_common::{Action, Reason};

use crate::{config, sample, stats};

/// The XDP action for the packet in `ctx` counted under the reason at
/// index `reason`: XDP_TX (not yet counted: the slip counts its reply) for
/// a reply outside monitor mode.
#[inline(always)]
pub fn finish(ctx: &XdpContext, reason: u32) -> u32 {
    let Some(config) = config::get() else {
        return xdp_action::XDP_PASS;
    };
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let monitor = config.monitor != 0;
    match Reason::action_at(reason) {
        Action::Pass => {
            stats::count(reason, bytes);
            xdp_action::XDP_PASS
        }
        Action::Drop => {
            let seen = if monitor {
                stats::count_would_drop(reason, bytes)
            } else {
                stats::count(reason, bytes)
            };
            sample::drop(ctx, reason, seen, bytes, monitor, config);
            if monitor {
                xdp_action::XDP_PASS
            } else {
                xdp_action::XDP_DROP
            }
        }
        // Monitor mode answers nothing: the query passes untouched.
        Action::Tx if monitor => {
            stats::count_would_drop(reason, bytes);
            xdp_action::XDP_PASS
        }
        Action::Tx => xdp_action::XDP_TX,
    }
}
