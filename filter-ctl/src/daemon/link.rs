//! The filter's interface as the daemon watches it: there, gone, or back
//! after it was deleted and made again (`ip link del`/`add`, a VLAN, PPPoE
//! or USB device recreated). The kernel's side of it is
//! [`crate::health`]; attaching again is [`crate::attach::reattach`].

use filter_ctl_api::report::LinkState;

use crate::{health, iface::Interface, pins::IfacePins};

/// Where the filter stands against the device that has its interface's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Its links are attached to that device.
    Attached { ifindex: u32 },
    /// No device has the name; the links are severed and the maps stay pinned.
    Gone,
    /// A device has the name again, and the filter's links were severed
    /// from the one deleted: attach again.
    Back { ifindex: u32 },
    /// The XDP link is on another device (the interface was renamed, and
    /// another took its name): left as it is, `status` tells.
    Elsewhere { link: LinkState },
}

/// Asks the kernel where the links pinned at `pins` are; an error if the
/// filter has no XDP link pinned (it was detached).
pub fn presence(pins: &IfacePins) -> anyhow::Result<Presence> {
    let health = health::health(pins)?;
    if health.xdp == LinkState::Missing {
        anyhow::bail!("the filter on {} has no XDP link pinned", pins.iface());
    }
    let Ok(iface) = Interface::lookup(pins.iface()) else {
        return Ok(Presence::Gone);
    };
    Ok(if health.is_severed() {
        Presence::Back {
            ifindex: iface.index,
        }
    } else if let LinkState::Elsewhere { .. } = health.xdp {
        Presence::Elsewhere { link: health.xdp }
    } else {
        Presence::Attached {
            ifindex: iface.index,
        }
    })
}
