//! Attaching the filter to an interface and removing it again.
//!
//! Attach loads both programs, attaches XDP on ingress and TC on egress, and
//! pins maps and links (see [`crate::pins`]) so the filter outlives filter-ctl.
//! Attaching again replaces the programs atomically through the pinned links
//! and keeps the pinned maps: counters and state survive an upgrade.

use std::{fs, path::Path};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, SchedClassifier, TcAttach, TcAttachType, Xdp,
        links::{FdLink, LinkInfo, LinkOrder, PinnedLink},
        tc::{NlOptions, SchedClassifierLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use filter_common::{
    map, program,
    report::{EgressHook, XdpMode},
};
use nix::errno::Errno;

use crate::{
    EBPF_OBJECT, health,
    iface::Interface,
    pins::{IfacePins, PinRoot},
    probe,
    settings::SettingsMaps,
};

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

/// What `attach` did.
#[derive(Debug)]
pub struct AttachReport {
    pub iface: String,
    pub mode: XdpMode,
    /// True when the filter was already attached and its programs were replaced.
    pub replaced: bool,
    /// Why native mode was not used under `--mode auto`.
    pub native_unavailable: Option<String>,
    pub xdp_program_id: u32,
    pub tc_program_id: u32,
}

pub fn attach(
    root: &PinRoot,
    iface: &Interface,
    choice: ModeChoice,
) -> anyhow::Result<AttachReport> {
    // Refuses a kernel without what the programs need before touching anything.
    let hook = probe::check(iface.index)?;
    let pins = root.iface(&iface.name)?;
    match pins.find_xdp_link() {
        Some((mode, _)) if !health::is_severed(&pins)? => replace(&pins, iface, mode, choice),
        Some(_) => {
            // The interface was deleted and is back: new links, same maps.
            for link in [
                pins.xdp_link(XdpMode::Native),
                pins.xdp_link(XdpMode::Skb),
                pins.tc_link(),
                pins.tc_prog(),
            ] {
                remove_pin(&link)?;
            }
            fresh_attach(&pins, iface, choice, hook)
        }
        None => {
            // Pins without an XDP link are leftovers of an interrupted attach.
            pins.remove_all()?;
            fs::create_dir_all(pins.dir())
                .with_context(|| format!("creating pin directory {}", pins.dir().display()))?;
            fresh_attach(&pins, iface, choice, hook).inspect_err(|_| {
                let _ = pins.remove_all();
            })
        }
    }
}

/// Attaches the filter pinned for `iface` again, in the XDP mode it had,
/// keeping its maps (settings, lists, counters, recorded queries): what a
/// supervisor calls when [`health::is_severed`] says the interface was
/// deleted and an interface of that name is back. Where the filter is
/// attached and healthy, this replaces its programs, like `attach`.
pub fn reattach(root: &PinRoot, iface: &Interface) -> anyhow::Result<AttachReport> {
    let pins = root.iface(&iface.name)?;
    let choice = match pins.find_xdp_link() {
        Some((XdpMode::Native, _)) => ModeChoice::Native,
        Some((XdpMode::Skb, _)) => ModeChoice::Skb,
        None => ModeChoice::Auto,
    };
    attach(root, iface, choice)
}

fn remove_pin(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Loads the programs with every map reusing (or creating) its pin.
fn load(pins: &IfacePins) -> anyhow::Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    let map_paths: Vec<_> = map::ALL
        .iter()
        .map(|name| (*name, pins.map(name)))
        .collect();
    for (name, path) in &map_paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(EBPF_OBJECT).context(
        "loading the eBPF object (if maps changed layout after an upgrade, `filter-ctl detach` first)",
    )?;
    xdp_program(&mut ebpf)?
        .load()
        .context("the kernel rejected the XDP program (does this kernel support XDP?)")?;
    tc_program(&mut ebpf)?
        .load()
        .context("the kernel rejected the TC egress program")?;
    Ok(ebpf)
}

fn fresh_attach(
    pins: &IfacePins,
    iface: &Interface,
    choice: ModeChoice,
    hook: EgressHook,
) -> anyhow::Result<AttachReport> {
    // Maps that are pinned already (a severed filter attached again) keep
    // their state; fresh settings only go into a settings map made now.
    let settings_kept = pins.map(map::CONFIG).exists();
    let mut ebpf = load(pins)?;
    if !settings_kept {
        SettingsMaps::of(&mut ebpf)?.write_defaults()?;
    }
    let xdp = xdp_program(&mut ebpf)?;
    let (mode, native_unavailable, link_id) = match choice {
        ModeChoice::Native => (
            XdpMode::Native,
            None,
            attach_xdp(xdp, iface, XdpMode::Native)?,
        ),
        ModeChoice::Skb => (XdpMode::Skb, None, attach_xdp(xdp, iface, XdpMode::Skb)?),
        ModeChoice::Auto => match attach_xdp(xdp, iface, XdpMode::Native) {
            Ok(id) => (XdpMode::Native, None, id),
            Err(XdpAttachError::Failed(err)) => {
                let id = attach_xdp(xdp, iface, XdpMode::Skb)?;
                (XdpMode::Skb, Some(format!("{err:#}")), id)
            }
            Err(occupied) => return Err(occupied.into()),
        },
    };
    let xdp_link = FdLink::try_from(xdp.take_link(link_id)?)
        .context("this kernel attached XDP without a bpf_link (Linux 5.9+ needed)")?;
    let xdp_program_id = xdp_link.info()?.program_id();
    xdp_link
        .pin(pins.xdp_link(mode))
        .context("pinning the XDP link")?;

    let tc = tc_program(&mut ebpf)?;
    if hook == EgressHook::Tcx {
        let tcx = TcAttach::Tcx {
            attach_type: TcAttachType::Egress,
            order: LinkOrder::default(),
        };
        let link_id = tc
            .attach(iface.index, tcx)
            .context("attaching the TC egress program (TCX)")?;
        let link = FdLink::try_from(tc.take_link(link_id)?)?;
        link.pin(pins.tc_link())
            .context("pinning the TC egress link")?;
    } else {
        attach_egress_clsact(tc, iface, pins)?;
    }
    let tc_program_id = tc.info()?.id();
    Ok(AttachReport {
        iface: iface.name.clone(),
        mode,
        replaced: false,
        native_unavailable,
        xdp_program_id,
        tc_program_id,
    })
}

/// Swaps new programs into the existing links; maps are reused through their pins.
fn replace(
    pins: &IfacePins,
    iface: &Interface,
    mode: XdpMode,
    choice: ModeChoice,
) -> anyhow::Result<AttachReport> {
    let wanted = match choice {
        ModeChoice::Auto => mode,
        ModeChoice::Native => XdpMode::Native,
        ModeChoice::Skb => XdpMode::Skb,
    };
    if wanted != mode {
        bail!(
            "the filter is already attached to {} in {} mode; `filter-ctl detach --iface {}` first to change the mode",
            iface.name,
            mode.name(),
            iface.name
        );
    }
    let mut ebpf = load(pins)?;

    let xdp = xdp_program(&mut ebpf)?;
    let xdp_link = XdpLink::try_from(pinned_link(&pins.xdp_link(mode))?)?;
    let link_id = xdp
        .attach_to_link(xdp_link)
        .context("replacing the XDP program")?;
    // The pin keeps the link; dropping our handle must not detach it.
    drop(xdp.take_link(link_id)?);
    let xdp_program_id = xdp.info()?.id();

    let tc = tc_program(&mut ebpf)?;
    if pins.tc_link().exists() {
        let tc_link = SchedClassifierLink::try_from(pinned_link(&pins.tc_link())?)?;
        let link_id = tc
            .attach_to_link(tc_link)
            .context("replacing the TC egress program")?;
        drop(FdLink::try_from(tc.take_link(link_id)?)?);
    } else {
        // Netlink-attached (kernel < 6.6): swap the filter, then the program pin.
        let _ = aya::programs::tc::qdisc_detach_program(
            iface.index,
            TcAttachType::Egress.into(),
            program::EGRESS,
        );
        let _ = fs::remove_file(pins.tc_prog());
        attach_egress_clsact(tc, iface, pins)?;
    }
    let tc_program_id = tc.info()?.id();
    Ok(AttachReport {
        iface: iface.name.clone(),
        mode,
        replaced: true,
        native_unavailable: None,
        xdp_program_id,
        tc_program_id,
    })
}

/// Before Linux 6.6 there is no TCX link: a netlink clsact filter, which lives
/// with the interface. The program is pinned so later calls can find it.
fn attach_egress_clsact(
    tc: &mut SchedClassifier,
    iface: &Interface,
    pins: &IfacePins,
) -> anyhow::Result<()> {
    let _ = aya::programs::tc::qdisc_add_clsact(iface.index);
    let clsact = TcAttach::Netlink {
        parent: TcAttachType::Egress.into(),
        options: NlOptions::default(),
    };
    let link_id = tc
        .attach(iface.index, clsact)
        .context("attaching the TC egress program (clsact)")?;
    // Dropping the link would remove the filter; it must outlive us.
    std::mem::forget(tc.take_link(link_id)?);
    tc.pin(pins.tc_prog())
        .context("pinning the TC egress program")?;
    Ok(())
}

/// Removes the filter pinned at `pins`: unpinning the links detaches the
/// programs, unpinning the maps frees them.
pub fn detach(pins: &IfacePins) -> anyhow::Result<()> {
    if pins.tc_prog().exists() {
        // Netlink-attached TC filters are not links: remove the filter itself.
        if let Ok(iface) = Interface::lookup(pins.iface()) {
            let _ = aya::programs::tc::qdisc_detach_program(
                iface.index,
                TcAttachType::Egress.into(),
                program::EGRESS,
            );
        }
    }
    pins.remove_all()
}

/// Kernel view of a pinned link: its id and program id.
pub fn link_info(path: &Path) -> anyhow::Result<LinkInfo> {
    Ok(pinned_link(path)?.info()?)
}

fn pinned_link(path: &Path) -> anyhow::Result<FdLink> {
    let pinned = PinnedLink::from_pin(path)
        .with_context(|| format!("opening pinned link {}", path.display()))?;
    Ok(FdLink::from(pinned))
}

fn xdp_program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    let program = ebpf
        .program_mut(program::INGRESS)
        .ok_or_else(|| anyhow!("program {} missing from the eBPF object", program::INGRESS))?;
    Ok(program.try_into()?)
}

fn tc_program(ebpf: &mut Ebpf) -> anyhow::Result<&mut SchedClassifier> {
    let program = ebpf
        .program_mut(program::EGRESS)
        .ok_or_else(|| anyhow!("program {} missing from the eBPF object", program::EGRESS))?;
    Ok(program.try_into()?)
}

/// Why an XDP attach failed: someone else's program, or anything else.
enum XdpAttachError {
    Occupied(anyhow::Error),
    Failed(anyhow::Error),
}

impl From<XdpAttachError> for anyhow::Error {
    fn from(err: XdpAttachError) -> Self {
        match err {
            XdpAttachError::Occupied(err) | XdpAttachError::Failed(err) => err,
        }
    }
}

fn attach_xdp(
    xdp: &mut Xdp,
    iface: &Interface,
    mode: XdpMode,
) -> Result<XdpLinkId, XdpAttachError> {
    let flags = match mode {
        XdpMode::Native => aya::programs::XdpMode::Driver,
        XdpMode::Skb => aya::programs::XdpMode::Skb,
    };
    xdp.attach(iface.index, flags)
        .map_err(|err| match errno(&err) {
            Some(Errno::EBUSY | Errno::EEXIST) => XdpAttachError::Occupied(anyhow!(
                "{} already has an XDP program that filter-ctl did not attach; remove it first \
             (`ip link set dev {} xdp off`, or the tool that attached it)",
                iface.name,
                iface.name
            )),
            _ => XdpAttachError::Failed(anyhow!(err).context(format!(
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
