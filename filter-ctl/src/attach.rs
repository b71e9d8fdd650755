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
    EBPF_OBJECT,
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
        Some((mode, _)) => replace(&pins, iface, mode, choice),
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
        .map_err(|err| rejected("XDP program", err))?;
    tc_program(&mut ebpf)?
        .load()
        .map_err(|err| rejected("TC egress program", err))?;
    Ok(ebpf)
}

/// Why the kernel refused to load `program`. A verifier refusal leads with
/// the verifier's reason: its log runs to hundreds of lines (the path it
/// refused) and states the reason only at the end, before its statistics.
fn rejected(program: &str, err: ProgramError) -> anyhow::Error {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            anyhow!(
                "the kernel's verifier rejected the {program} ({io_error}): {}\n\
                 The verifier's log follows: the path it refused, its reason at the end.\n{}",
                verifier_reason(&log),
                log.trim_end()
            )
        }
        other => anyhow!(other).context(format!("the kernel rejected the {program}")),
    }
}

/// The verifier's reason in its log: the last instruction it checked and
/// what it said about it, without the statistics that end the log.
fn verifier_reason(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_verifier_statistic(line))
        .collect();
    if lines.is_empty() {
        return "the verifier gave no log".to_owned();
    }
    let last_instruction = lines.iter().rposition(|line| is_instruction(line));
    let start = match last_instruction {
        // The complaint, when one follows the instruction.
        Some(at) if at + 1 < lines.len() => at,
        _ => lines.len() - 1,
    };
    lines[start..]
        .iter()
        // Instruction lines carry the register state after a ';'.
        .map(|line| line.split(" ;").next().unwrap_or(line).trim_end())
        .collect::<Vec<_>>()
        .join(": ")
}

/// A line such as `1086: (67) r3 <<= 8`.
fn is_instruction(line: &str) -> bool {
    line.split_once(": (")
        .is_some_and(|(index, _)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
}

fn is_verifier_statistic(line: &str) -> bool {
    ["verification time ", "stack depth ", "processed "]
        .iter()
        .any(|prefix| line.starts_with(prefix))
}

fn fresh_attach(
    pins: &IfacePins,
    iface: &Interface,
    choice: ModeChoice,
    hook: EgressHook,
) -> anyhow::Result<AttachReport> {
    let mut ebpf = load(pins)?;
    SettingsMaps::of(&mut ebpf)?.write_defaults()?;
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

#[cfg(test)]
mod tests {
    use super::verifier_reason;

    /// The end of the log of Linux 6.1's refusal of a wan_egress build
    /// (R3 read on a path that never wrote it).
    const REFUSAL: &str = "\
0: R1=ctx(off=0,imm=0) R10=fp0
; #[classifier]
0: (bf) r6 = r1                       ; R1=ctx(off=0,imm=0) R6_w=ctx(off=0,imm=0)
1081: (2d) if r5 > r9 goto pc+4 1086: R0=scalar(id=10) R1=scalar() R2=0
; }
1086: (67) r3 <<= 8
R3 !read_ok
verification time 81787 usec
stack depth 160
processed 2360 insns (limit 1000000) max_states_per_insn 7 total_states 123 peak_states 108 mark_read 23
";

    #[test]
    fn the_reason_is_the_last_instruction_and_the_complaint() {
        assert_eq!(verifier_reason(REFUSAL), "1086: (67) r3 <<= 8: R3 !read_ok");
    }

    #[test]
    fn an_instruction_line_loses_its_register_state() {
        let log = "5: (61) r7 = *(u32 *)(r6 +76)   ; R6_w=ctx(off=0,imm=0)\n\
                   invalid bpf_context access off=76 size=4\nprocessed 6 insns\n";
        assert_eq!(
            verifier_reason(log),
            "5: (61) r7 = *(u32 *)(r6 +76): invalid bpf_context access off=76 size=4"
        );
    }

    #[test]
    fn a_complaint_without_an_instruction_is_the_reason() {
        assert_eq!(
            verifier_reason(
                "BPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns\n"
            ),
            "BPF program is too large. Processed 1000001 insn"
        );
        assert_eq!(verifier_reason(""), "the verifier gave no log");
    }
}
