//! The XDP hook (ingress): attaching the program in the mode asked for,
//! telling an interface occupied by someone else's program from one that
//! holds our own filter under an old name, and swapping a new program into
//! the pinned link.

use std::{fs, path::Path};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{
        ProgramError, Xdp,
        links::FdLink,
        xdp::{XdpLink, XdpLinkId},
    },
};
use filter_common::{program, report::XdpMode};
use nix::errno::Errno;

use crate::{hook::links::pinned_link, iface::Interface, kernel::link_ifindex, pins::IfacePins};

/// The XDP mode asked for on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeChoice {
    /// Native if the driver supports it, otherwise generic (skb), with a message.
    #[default]
    Auto,
    /// Native (driver) mode only; fail if the driver lacks it.
    Native,
    /// Generic (skb) mode: works on any interface, costs more per packet.
    Skb,
}

impl ModeChoice {
    /// The mode of a filter already attached in `mode`, unless another was asked for.
    pub fn resolve(self, mode: XdpMode) -> XdpMode {
        match self {
            ModeChoice::Auto => mode,
            ModeChoice::Native => XdpMode::Native,
            ModeChoice::Skb => XdpMode::Skb,
        }
    }

    /// What attaches the filter again in the mode it had (none pinned: auto).
    pub fn keeping(mode: Option<XdpMode>) -> Self {
        match mode {
            Some(XdpMode::Native) => ModeChoice::Native,
            Some(XdpMode::Skb) => ModeChoice::Skb,
            None => ModeChoice::Auto,
        }
    }
}

/// The loaded object's XDP program.
pub fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    let found = ebpf
        .program_mut(program::INGRESS)
        .ok_or_else(|| anyhow!("program {} missing from the eBPF object", program::INGRESS))?;
    Ok(found.try_into()?)
}

/// An XDP program attached by a link only this process holds, not pinned
/// yet: the kernel detaches it if we die before.
pub struct Attached {
    pub mode: XdpMode,
    /// Why native mode was not used under `--mode auto`.
    pub native_unavailable: Option<String>,
    pub link: FdLink,
    pub program_id: u32,
}

/// Attaches the loaded XDP program to `iface` in the mode `choice` asks for
/// (auto: native, else generic with the reason). An interface with another
/// XDP program is refused with how to remove it, or, if that program is our
/// own filter pinned under the interface's old name, with that.
pub fn attach(
    ebpf: &mut Ebpf,
    pins: &IfacePins,
    iface: &Interface,
    choice: ModeChoice,
) -> anyhow::Result<Attached> {
    let xdp = program(ebpf)?;
    let attached = match choice {
        ModeChoice::Native => {
            attach_in(xdp, iface, XdpMode::Native).map(|id| (XdpMode::Native, None, id))
        }
        ModeChoice::Skb => attach_in(xdp, iface, XdpMode::Skb).map(|id| (XdpMode::Skb, None, id)),
        ModeChoice::Auto => match attach_in(xdp, iface, XdpMode::Native) {
            Ok(id) => Ok((XdpMode::Native, None, id)),
            Err(AttachError::Failed(err)) => attach_in(xdp, iface, XdpMode::Skb)
                .map(|id| (XdpMode::Skb, Some(format!("{err:#}")), id)),
            Err(occupied) => Err(occupied),
        },
    };
    let (mode, native_unavailable, link_id) =
        attached.map_err(|err| occupied_by_our_pins(pins, iface, err))?;
    let link = FdLink::try_from(xdp.take_link(link_id)?)
        .context("this kernel attached XDP without a bpf_link (Linux 5.9+ needed)")?;
    let program_id = link.info()?.program_id();
    Ok(Attached {
        mode,
        native_unavailable,
        link,
        program_id,
    })
}

/// Swaps the loaded XDP program into the link pinned at `link`: no moment
/// without a program. Returns the new program's id.
pub fn replace(ebpf: &mut Ebpf, link: &Path) -> anyhow::Result<u32> {
    let xdp = program(ebpf)?;
    let link_id = xdp
        .attach_to_link(XdpLink::try_from(pinned_link(link)?)?)
        .context("replacing the XDP program")?;
    // The pin keeps the link; dropping our handle must not detach it.
    drop(xdp.take_link(link_id)?);
    Ok(xdp.info()?.id())
}

/// Why an XDP attach failed: someone else's program, or anything else.
enum AttachError {
    Occupied(anyhow::Error),
    Failed(anyhow::Error),
}

impl From<AttachError> for anyhow::Error {
    fn from(err: AttachError) -> Self {
        match err {
            AttachError::Occupied(err) | AttachError::Failed(err) => err,
        }
    }
}

/// An occupied interface may hold our own filter under another name: the
/// interface was renamed after the filter was attached.
fn occupied_by_our_pins(pins: &IfacePins, iface: &Interface, err: AttachError) -> anyhow::Error {
    let AttachError::Occupied(err) = err else {
        return err.into();
    };
    let Some(netns) = pins.dir().parent() else {
        return err;
    };
    let ours = fs::read_dir(netns)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .find(|name| {
            let other = pins.dir().with_file_name(name);
            [XdpMode::Native, XdpMode::Skb].iter().any(|mode| {
                let link = other.join(format!("link_xdp_{}", mode.name()));
                link_ifindex(&link).is_ok_and(|index| index == iface.index)
            })
        });
    match ours {
        Some(name) if name != iface.name => anyhow!(
            "{} already has this filter, attached when it was called {name} (it was renamed); \
             `filter-ctl detach --iface {name}` removes it, or rename the interface back",
            iface.name
        ),
        _ => err,
    }
}

fn attach_in(xdp: &mut Xdp, iface: &Interface, mode: XdpMode) -> Result<XdpLinkId, AttachError> {
    let flags = match mode {
        XdpMode::Native => aya::programs::XdpMode::Driver,
        XdpMode::Skb => aya::programs::XdpMode::Skb,
    };
    xdp.attach(iface.index, flags)
        .map_err(|err| match errno(&err) {
            Some(Errno::EBUSY | Errno::EEXIST) => AttachError::Occupied(anyhow!(
                "{} already has an XDP program that filter-ctl did not attach; remove it first: \
                 `ip link set dev {} xdp off` if it was attached by netlink (ip, xdp-loader); \
                 if it is held by a bpf_link (`bpftool link show`), remove that link's pin or \
                 stop the process that holds it",
                iface.name,
                iface.name
            )),
            Some(Errno::ERANGE) if mode == XdpMode::Native => {
                let mtu = iface
                    .mtu()
                    .map_or_else(|_| "its MTU".to_owned(), |mtu| format!("its MTU {mtu}"));
                AttachError::Failed(anyhow!(err).context(format!(
                    "attaching XDP to {} in native mode: {mtu} is too large for native XDP on \
                     this driver (frames must fit in a page); lower it (`ip link set dev {} mtu \
                     1500`) or use `--mode skb`",
                    iface.name, iface.name
                )))
            }
            _ => AttachError::Failed(anyhow!(err).context(format!(
                "attaching XDP to {} in {} mode",
                iface.name,
                mode.name()
            ))),
        })
}

fn errno(err: &ProgramError) -> Option<Errno> {
    match err {
        ProgramError::SyscallError(syscall) => syscall.io_error.raw_os_error().map(Errno::from_raw),
        _ => None,
    }
}
