//! The filter's links when its interface goes away and comes back.
//!
//! Deleting a device (`ip link del`, a USB NIC unplugged, a VLAN or PPPoE
//! device recreated) severs the XDP and TCX links: they stay pinned but hold
//! no device, and a clsact filter (Linux < 6.6) goes with the device. The
//! pinned maps stay. [`state`] tells whether the links still hold the device
//! that has the interface's name now; [`reattach`] gives that device new
//! links and keeps every map, so counters, settings, lists and recorded
//! queries carry over. (`ip link set down/up` severs nothing.)

use std::{
    ffi::CString, fs, os::fd::FromRawFd as _, os::fd::OwnedFd, os::unix::ffi::OsStrExt as _,
};

use anyhow::{Context as _, bail};
use filter_common::report::XdpMode;

use crate::{
    attach::{self, AttachReport, ModeChoice},
    iface::Interface,
    pins::IfacePins,
};

/// Where the filter's XDP link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// It holds the device that has the interface's name.
    Attached { ifindex: u32 },
    /// No device has the interface's name.
    InterfaceGone,
    /// A device has the name, but the link holds another one, or none (it
    /// was deleted and made again): [`reattach`] is needed.
    Severed { ifindex: u32 },
}

/// The state of the filter pinned at `pins`; an error if it has no XDP link pinned.
pub fn state(pins: &IfacePins) -> anyhow::Result<LinkState> {
    let Some((_, link)) = pins.find_xdp_link() else {
        bail!("the filter on {} has no XDP link pinned", pins.iface());
    };
    let held = link_ifindex(&link)?;
    Ok(match Interface::lookup(pins.iface()) {
        Err(_) => LinkState::InterfaceGone,
        Ok(iface) if held == iface.index => LinkState::Attached {
            ifindex: iface.index,
        },
        Ok(iface) => LinkState::Severed {
            ifindex: iface.index,
        },
    })
}

/// Attaches new links to the device named like the severed one, in the same
/// XDP mode (a native link whose new device lacks native XDP falls back to
/// generic), loading the programs onto the pinned maps.
pub fn reattach(pins: &IfacePins) -> anyhow::Result<AttachReport> {
    let iface = Interface::lookup(pins.iface())?;
    iface.require_ethernet()?;
    let choice = match pins.find_xdp_link() {
        Some((XdpMode::Skb, _)) => ModeChoice::Skb,
        _ => ModeChoice::Auto,
    };
    for mode in [XdpMode::Native, XdpMode::Skb] {
        remove_pin(&pins.xdp_link(mode))?;
    }
    remove_pin(&pins.tc_link())?;
    remove_pin(&pins.tc_prog())?;
    let mut ebpf = attach::load(pins)?;
    attach::link(&mut ebpf, pins, &iface, choice)
}

fn remove_pin(path: &std::path::Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The ifindex a pinned XDP or TCX link holds; 0 once its device is gone.
/// (aya's LinkInfo has no accessor for it: bpf_link_info read directly.)
fn link_ifindex(path: &std::path::Path) -> anyhow::Result<u32> {
    let fd = obj_get(path)?;
    // struct bpf_link_info: type, id, prog_id, then (8-byte aligned) a union
    // whose xdp and tcx members both start with the ifindex.
    let mut info = [0u64; 8];
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = InfoByFd {
        bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
        info_len: size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)
        .with_context(|| format!("reading the link info of {}", path.display()))?;
    Ok((info[2] & 0xffff_ffff) as u32)
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// An fd of the object pinned at `path`.
fn obj_get(path: &std::path::Path) -> anyhow::Result<OwnedFd> {
    let name = CString::new(path.as_os_str().as_bytes())?;
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let mut attr = ObjGet {
        pathname: name.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    let fd = bpf(BPF_OBJ_GET, &mut attr).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: BPF_OBJ_GET returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bpf<T>(command: libc::c_long, attr: &mut T) -> std::io::Result<i32> {
    // SAFETY: `attr` is a bpf_attr prefix for `command` that lives across
    // the call; the kernel reads at most size_of::<T>() bytes of it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            std::ptr::from_mut(attr),
            size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}
