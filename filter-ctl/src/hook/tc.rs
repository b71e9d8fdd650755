//! The egress hook: the TC program on the interface's egress, through a
//! TCX link (Linux 6.6 and later) or, before, a netlink filter under a
//! clsact qdisc. A netlink filter is no link: it is recorded in the pin
//! directory (a symlink, [`ClsactFilter`]) so that later calls replace or
//! remove exactly it, together with whether attach added the qdisc.

use std::{fs, os::unix::fs::symlink};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{
        SchedClassifier, TcAttachType,
        links::{FdLink, Link as _},
        tc::{NlOptions, SchedClassifierLink, TcAttach, TcHandle},
    },
};
use filter_common::{program, report::EgressHook};

use crate::{
    hook::links::{pin_replacing, pinned_link, remove_pin},
    iface::Interface,
    pins::IfacePins,
    probe,
};

/// The loaded object's egress program.
pub fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut SchedClassifier> {
    let found = ebpf
        .program_mut(program::EGRESS)
        .ok_or_else(|| anyhow!("program {} missing from the eBPF object", program::EGRESS))?;
    Ok(found.try_into()?)
}

/// The egress program of the running filter replaced by the loaded one
/// (`attached`), or attached anew (its pin was removed, or an attach was
/// interrupted) and pinned at `pin_at`. Returns the program's id.
pub fn replace_or_attach(
    ebpf: &mut Ebpf,
    iface: &Interface,
    pins: &IfacePins,
    pin_at: &IfacePins,
    attached: bool,
) -> anyhow::Result<u32> {
    if attached {
        replace(pins, iface, ebpf, pin_at)
    } else {
        attach(ebpf, iface, pins)?.pin(ebpf, pin_at)
    }
}

/// Removes the netlink filter recorded at `pins` from its interface, if
/// there is one (a TCX link goes with its pin).
pub fn remove_filter(pins: &IfacePins) {
    if let Some(filter) = ClsactFilter::read(pins) {
        filter.detach();
    }
}

/// Replaces the egress program: through the TCX link, or (before Linux 6.6)
/// the netlink filter in place. The program's pin (netlink only) goes to
/// `pin_at`.
pub fn replace(
    pins: &IfacePins,
    iface: &Interface,
    ebpf: &mut Ebpf,
    pin_at: &IfacePins,
) -> anyhow::Result<u32> {
    let tc = program(ebpf)?;
    if pins.tc_link().exists() {
        let tc_link = SchedClassifierLink::try_from(pinned_link(&pins.tc_link())?)?;
        let link_id = tc
            .attach_to_link(tc_link)
            .context("replacing the TC egress program")?;
        drop(FdLink::try_from(tc.take_link(link_id)?)?);
    } else {
        let filter = ClsactFilter::read(pins)
            .ok_or_else(|| anyhow!("no egress link or filter is pinned for {}", iface.name))?;
        let link_id = tc
            .attach_to_link(filter.link()?)
            .context("replacing the TC egress filter")?;
        // The filter must outlive us: dropping the link would remove it.
        std::mem::forget(tc.take_link(link_id)?);
        pin_replacing(&pin_at.tc_prog(), |path| {
            tc.pin(path).context("pinning the TC egress program")
        })?;
        filter.record(pin_at)?;
    }
    Ok(tc.info()?.id())
}

/// The egress program attached but not yet pinned.
pub enum Egress {
    /// A TCX link, detached by the kernel if we die before pinning it.
    Tcx(FdLink),
    /// A netlink filter (before Linux 6.6): it stays until removed.
    Clsact(ClsactFilter),
}

impl Egress {
    /// Undoes the attach after a later step failed.
    pub fn undo(self, pins: &IfacePins) {
        match self {
            Egress::Tcx(link) => drop(link),
            Egress::Clsact(filter) => {
                filter.detach();
                // The qdisc is gone or in use by others: no longer ours to mark.
                let _ = fs::remove_file(pins.dir().join(CLSACT_ADDED_MARK));
            }
        }
    }

    /// Pins it; returns the program's id.
    pub fn pin(self, ebpf: &mut Ebpf, pins: &IfacePins) -> anyhow::Result<u32> {
        let tc = program(ebpf)?;
        match self {
            Egress::Tcx(link) => {
                let id = link.info()?.program_id();
                pin_replacing(&pins.tc_link(), |path| {
                    link.pin(path)
                        .map(drop)
                        .context("pinning the TC egress link")
                })?;
                remove_pin(&pins.tc_prog())?;
                Ok(id)
            }
            Egress::Clsact(filter) => {
                pin_replacing(&pins.tc_prog(), |path| {
                    tc.pin(path).context("pinning the TC egress program")
                })?;
                filter.record(pins)?;
                remove_pin(&pins.tc_link())?;
                Ok(tc.info()?.id())
            }
        }
    }
}

/// Attaches the loaded egress program to `iface`: a TCX link where the
/// kernel has them (Linux 6.6), a netlink filter under a clsact qdisc
/// before. Not pinned yet.
pub fn attach(ebpf: &mut Ebpf, iface: &Interface, pins: &IfacePins) -> anyhow::Result<Egress> {
    let tc = program(ebpf)?;
    // TCX links where the kernel has them (Linux 6.6), a clsact filter before.
    if probe::egress_hook(iface.index)? == EgressHook::Tcx {
        let link_id = tc
            .attach(
                iface.index,
                TcAttach::Tcx {
                    attach_type: TcAttachType::Egress,
                    order: Default::default(),
                },
            )
            .context("attaching the TC egress program (TCX)")?;
        return Ok(Egress::Tcx(FdLink::try_from(tc.take_link(link_id)?)?));
    }
    // A filter an interrupted attach left is not pinned: remove it first.
    let _ = aya::programs::tc::qdisc_detach_program(
        iface.index,
        TcAttachType::Egress.into(),
        program::EGRESS,
    );
    // Marked before the qdisc is added: an attach killed right after adding
    // it leaves the mark, so the next attach knows the qdisc is its own and
    // detach removes it.
    let mark = pins.dir().join(CLSACT_ADDED_MARK);
    let marked_before = fs::symlink_metadata(&mark).is_ok();
    if !marked_before {
        symlink("1", &mark).context("marking the clsact qdisc as added")?;
    }
    let qdisc_added = aya::programs::tc::qdisc_add_clsact(iface.index).is_ok() || marked_before;
    if !qdisc_added {
        let _ = fs::remove_file(&mark);
    }
    let link_id = tc
        .attach(
            iface.index,
            TcAttach::Netlink {
                parent: TcAttachType::Egress.into(),
                options: NlOptions::default(),
            },
        )
        .context("attaching the TC egress program (clsact)")?;
    let link = tc.take_link(link_id)?;
    let filter = ClsactFilter {
        ifindex: iface.index,
        priority: link.priority()?,
        handle: link.handle()?.into(),
        qdisc_added,
    };
    // Dropping the link would remove the filter; it must outlive us.
    std::mem::forget(link);
    Ok(Egress::Clsact(filter))
}

/// In the pin directory while the clsact qdisc is (or is being) added by
/// attach, not by someone else.
const CLSACT_ADDED_MARK: &str = "clsact_qdisc_added";

/// A netlink egress filter (before Linux 6.6), identified by interface,
/// priority and handle, recorded in the pin directory as a symlink
/// (`clsact_filter`) so that later calls replace or remove exactly it, and
/// whether attach added the clsact qdisc for it (detach then removes that
/// too, if nothing else uses it).
#[derive(Clone, Copy, Debug)]
pub struct ClsactFilter {
    pub ifindex: u32,
    priority: u16,
    handle: u32,
    qdisc_added: bool,
}

impl ClsactFilter {
    const PIN: &str = "clsact_filter";

    pub(crate) fn read(pins: &IfacePins) -> Option<Self> {
        let target = fs::read_link(pins.dir().join(Self::PIN)).ok()?;
        let target = target.to_string_lossy();
        let mut parts = target.split(':').map(str::parse::<u32>);
        let (Some(Ok(ifindex)), Some(Ok(priority)), Some(Ok(handle)), Some(Ok(added))) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Self {
            ifindex,
            priority: u16::try_from(priority).ok()?,
            handle,
            qdisc_added: added != 0,
        })
    }

    fn record(&self, pins: &IfacePins) -> anyhow::Result<()> {
        let path = pins.dir().join(Self::PIN);
        pin_replacing(&path, |fresh| {
            symlink(
                format!(
                    "{}:{}:{}:{}",
                    self.ifindex,
                    self.priority,
                    self.handle,
                    u8::from(self.qdisc_added)
                ),
                fresh,
            )
            .context("recording the egress filter")
        })
    }

    fn link(&self) -> anyhow::Result<SchedClassifierLink> {
        Ok(SchedClassifierLink::attached(
            self.ifindex,
            TcAttachType::Egress.into(),
            self.priority,
            TcHandle::from(self.handle),
            None,
        )?)
    }

    /// Removes the filter, if its interface still has it, and the clsact
    /// qdisc attach added for it if no other filter uses it.
    pub(crate) fn detach(&self) {
        if let Ok(link) = self.link() {
            let _ = link.detach();
        }
        let Ok(name) = nix::net::if_::if_indextoname(self.ifindex) else {
            return;
        };
        let name = name.to_string_lossy().into_owned();
        let unused = ["ingress", "egress"].iter().all(|dir| {
            std::process::Command::new("tc")
                .args(["filter", "show", "dev", &name, dir])
                .output()
                .is_ok_and(|out| out.status.success() && out.stdout.is_empty())
        });
        if self.qdisc_added && unused {
            let _ = std::process::Command::new("tc")
                .args(["qdisc", "del", "dev", &name, "clsact"])
                .status();
        }
    }
}
