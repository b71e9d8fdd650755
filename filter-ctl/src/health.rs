//! What the kernel really has attached for a pinned filter, link by link.
//!
//! Pins alone do not say it: a pinned link outlives its interface. When
//! `wan0` is deleted (`ip link del`, an ifdown of a VLAN, a namespace that
//! goes away) its links are *severed*: they still hold their programs, which
//! run nowhere, and a new `wan0` starts without them. [`health`] asks the
//! kernel for the interface each link is attached to; [`is_severed`] is the
//! question a supervisor asks before it attaches again
//! ([`crate::attach::reattach`]).

pub use filter_common::report::LinkState;
use nix::net::if_::if_nametoindex;

use crate::{hook::tc::ClsactFilter, kernel::link_ifindex, pins::IfacePins};

/// The filter's XDP (ingress) and egress attachments as the kernel has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub xdp: LinkState,
    pub egress: LinkState,
}

impl Health {
    /// True when a link is pinned but its interface is gone.
    pub fn is_severed(&self) -> bool {
        self.xdp == LinkState::Severed || self.egress == LinkState::Severed
    }

    /// True when both programs are attached to the interface the pins name.
    pub fn is_attached(&self) -> bool {
        self.xdp.is_attached() && self.egress.is_attached()
    }
}

/// Where the links pinned at `pins` are attached, per the kernel.
pub fn health(pins: &IfacePins) -> anyhow::Result<Health> {
    let current = if_nametoindex(pins.iface()).ok();
    let by_index = |ifindex: u32| match ifindex {
        0 => LinkState::Severed,
        index if Some(index) == current => LinkState::Attached,
        index => LinkState::Elsewhere {
            ifindex: index,
            name: nix::net::if_::if_indextoname(index)
                .ok()
                .and_then(|name| name.into_string().ok()),
        },
    };
    let xdp = match pins.find_xdp_link() {
        None => LinkState::Missing,
        Some((_, path)) => by_index(link_ifindex(&path)?),
    };
    let egress = if pins.tc_link().exists() {
        by_index(link_ifindex(&pins.tc_link())?)
    } else if pins.tc_prog().exists() {
        clsact_state(pins, by_index)
    } else {
        LinkState::Missing
    };
    Ok(Health { xdp, egress })
}

/// True when the filter pinned at `pins` has a link whose interface is gone:
/// `filter-ctl attach` (or [`crate::attach::reattach`]) attaches it again to
/// the interface of that name, keeping settings, lists and counters.
pub fn is_severed(pins: &IfacePins) -> anyhow::Result<bool> {
    Ok(health(pins)?.is_severed())
}

/// Before Linux 6.6 the egress program is a netlink clsact filter, which
/// lives and dies with its interface; the program is pinned, the filter is
/// recorded with its interface index (see `attach`).
fn clsact_state(pins: &IfacePins, by_index: impl Fn(u32) -> LinkState) -> LinkState {
    match ClsactFilter::read(pins) {
        Some(filter) if if_exists(filter.ifindex) => by_index(filter.ifindex),
        _ => LinkState::Severed,
    }
}

fn if_exists(ifindex: u32) -> bool {
    nix::net::if_::if_indextoname(ifindex).is_ok()
}
