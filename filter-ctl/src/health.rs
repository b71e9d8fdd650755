//! What the kernel really has attached for a pinned filter, link by link.
//!
//! Pins alone do not say it: a pinned link outlives its interface. When
//! `wan0` is deleted (`ip link del`, an ifdown of a VLAN, a namespace that
//! goes away) its links are *severed*: they still hold their programs, which
//! run nowhere, and a new `wan0` starts without them. [`health`] asks the
//! kernel for the interface each link is attached to; [`is_severed`] is the
//! question a supervisor asks before it attaches again
//! ([`crate::attach::reattach`]).

use std::process::Command;

use anyhow::Context as _;
use aya::programs::ProgramInfo;
pub use filter_common::report::LinkState;
use nix::net::if_::if_nametoindex;

use crate::{iface::Interface, kernel::link_ifindex, pins::IfacePins};

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
        clsact_state(pins, current)?
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
/// not. It is attached if the interface's egress filters include that
/// program (`tc -j filter show dev IFACE egress`).
fn clsact_state(pins: &IfacePins, current: Option<u32>) -> anyhow::Result<LinkState> {
    if current.is_none() {
        return Ok(LinkState::Severed);
    }
    let id = ProgramInfo::from_pin(pins.tc_prog())
        .context("reading the pinned egress program")?
        .id();
    let iface = Interface::lookup(pins.iface())?;
    let out = Command::new("tc")
        .args(["-j", "filter", "show", "dev", &iface.name, "egress"])
        .output()
        .context("running `tc filter show` to find the egress filter")?;
    let filters: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let attached = filters.as_array().into_iter().flatten().any(|filter| {
        filter
            .pointer("/options/prog/id")
            .and_then(serde_json::Value::as_u64)
            == Some(id.into())
    });
    Ok(if attached {
        LinkState::Attached
    } else {
        LinkState::Severed
    })
}
