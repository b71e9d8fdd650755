//! Attaching the filter to an interface, replacing or upgrading it, and
//! removing it again.
//!
//! Every one of them holds the interface's lock ([`IfacePins::lock`]) from
//! start to end, so two at once run one after the other, and each first
//! finishes or undoes what a killed predecessor left
//! ([`finish_interrupted`]). What is really attached is asked of the kernel
//! ([`crate::health`]), not read from the pins.
//!
//! - Fresh attach (or again, after the interface was deleted: its links are
//!   severed): the maps are made and filled (settings written) before
//!   anything is pinned; then egress and XDP are attached, held by file
//!   descriptors only, and pinned in this order: maps, egress link, XDP
//!   link. Pinning the XDP link is the commit: killed before it, the kernel
//!   drops the unpinned links with the process, and at most pinned maps or
//!   an egress link are left, which only record queries and which the next
//!   attach reuses or replaces (`status` reports them). Pinned maps are
//!   reused as they are, so a filter attached again keeps its settings,
//!   lists and counters.
//! - Replace (attached and healthy, same map layout): the new programs use
//!   the pinned maps and are swapped into the pinned links (bpf_link_update),
//!   egress first: no gap, no lost state.
//! - Upgrade (attached, but some maps have another layout in this build,
//!   see [`crate::layout`]): those maps are made anew and what can be is
//!   carried over ([`crate::migrate`]); the complete new set of pins is
//!   built in a staging directory, the programs are swapped into the
//!   links, and one rename exchanges the staging directory with the live
//!   one.

use std::{
    collections::BTreeSet,
    fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{MapData, MapError, ProgramArray},
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp,
        links::{FdLink, Link as _, LinkInfo, PinnedLink},
        tc::{NlOptions, SchedClassifierLink, TcAttach, TcHandle},
        xdp::{XdpLink, XdpLinkId},
    },
};
use filter_common::{DEFAULT_SERVICE_PORTS, ServiceClass, WatchedPorts, map, program};
use filter_ctl_api::{
    report::{EgressHook, LinkState, XdpMode},
    settings::Assignment,
};
use nix::{
    errno::Errno,
    fcntl::{AT_FDCWD, RenameFlags, renameat2},
};

use crate::{
    EBPF_OBJECT, fault,
    health::{Health, health},
    iface::Interface,
    kernel::prog_map_ids,
    layout::{self, map_data},
    migrate::{self, Carried},
    pins::{IfaceLock, IfacePins, PinRoot},
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Attached where it was not.
    Attached,
    /// Attached again to an interface that had been deleted, with its state.
    Reattached,
    /// New programs swapped into the running filter; maps kept.
    Replaced,
    /// New programs and maps of another layout, state carried over.
    Upgraded,
}

impl Outcome {
    pub fn verb(self) -> &'static str {
        match self {
            Outcome::Attached => "attached",
            Outcome::Reattached => "attached again (settings, lists and counters kept)",
            Outcome::Replaced => "replaced",
            Outcome::Upgraded => "upgraded",
        }
    }
}

/// What `attach` did.
#[derive(Debug)]
pub struct AttachReport {
    pub iface: String,
    pub mode: XdpMode,
    pub outcome: Outcome,
    /// Why native mode was not used under `--mode auto`.
    pub native_unavailable: Option<String>,
    pub xdp_program_id: u32,
    pub tc_program_id: u32,
    /// An upgrade's carried-over maps.
    pub carried: Vec<Carried>,
}

/// Attaches the filter to `iface` (or replaces or upgrades it there) and
/// applies `settings` (validated first; nothing is attached if one is
/// rejected). See the module documentation.
pub fn attach(
    root: &PinRoot,
    iface: &Interface,
    choice: ModeChoice,
    settings: &[Assignment],
) -> anyhow::Result<AttachReport> {
    // Refuses a kernel without what the programs need before touching anything.
    probe::check(iface.index)?;
    let pins = root.iface(&iface.name)?;
    let _lock = pins
        .lock(true)?
        .ok_or_else(|| anyhow!("{} vanished while being created", pins.dir().display()))?;
    attach_locked(&pins, iface, choice, settings).inspect_err(|_| {
        // A refused attach leaves no empty pin directory behind.
        if fs::read_dir(pins.dir()).is_ok_and(|mut entries| entries.next().is_none()) {
            let _ = pins.remove_all();
        }
    })
}

fn attach_locked(
    pins: &IfacePins,
    iface: &Interface,
    choice: ModeChoice,
    settings: &[Assignment],
) -> anyhow::Result<AttachReport> {
    let pins = pins.clone();
    finish_interrupted(&pins)?;
    let health = health(&pins)?;
    if let LinkState::Elsewhere { ifindex, name } = &health.xdp {
        bail!(
            "the filter pinned for {} is attached to {} (ifindex {ifindex}), not to the interface \
             now called {}: `filter-ctl detach --iface {}` first",
            iface.name,
            name.as_deref().unwrap_or("another interface"),
            iface.name,
            iface.name
        );
    }
    let pinned_mode = pins.find_xdp_link().map(|(mode, _)| mode);
    let keep_links = health.xdp.is_attached();
    if keep_links {
        let mode = pinned_mode.expect("an attached XDP link is pinned");
        let wanted = match choice {
            ModeChoice::Auto => mode,
            ModeChoice::Native => XdpMode::Native,
            ModeChoice::Skb => XdpMode::Skb,
        };
        if wanted != mode {
            bail!(
                "the filter is already attached to {} in {} mode; `filter-ctl detach --iface {}` \
                 first to change the mode",
                iface.name,
                mode.name(),
                iface.name
            );
        }
        repin_missing_maps(&pins, &health)?;
    }
    let Loaded { mut ebpf, fresh } = load(&pins)?;
    let carried = fill_fresh_maps(&pins, &mut ebpf, &fresh)?;
    if !settings.is_empty() {
        SettingsMaps::of(&mut ebpf)?.apply(settings)?;
    }
    fault::point("attach: loaded");
    let mut report = if !keep_links {
        let outcome = if pinned_mode.is_some() {
            Outcome::Reattached
        } else {
            Outcome::Attached
        };
        link_anew(&pins, iface, &mut ebpf, &fresh, choice, outcome)?
    } else if fresh.is_empty() {
        swap_programs(&pins, iface, &mut ebpf, health.egress.is_attached())?
    } else {
        upgrade(&pins, iface, &mut ebpf, health.egress.is_attached())?
    };
    report.carried = carried;
    let now = crate::health::health(&pins)?;
    if !now.is_attached() {
        bail!(
            "attach finished, but the kernel shows XDP {} and egress {} on {}",
            now.xdp.describe(),
            now.egress.describe(),
            iface.name
        );
    }
    Ok(report)
}

/// Attaches the filter pinned for `iface` again, in the XDP mode it had,
/// keeping its maps (settings, lists, counters, recorded queries): what a
/// supervisor calls when [`crate::health::is_severed`] says the interface
/// was deleted and an interface of that name is back. Where the filter is
/// attached and healthy, this replaces its programs, like `attach`.
/// `settings` are applied with it, as `attach` does (none: the kept ones).
pub fn reattach(
    root: &PinRoot,
    iface: &Interface,
    settings: &[Assignment],
) -> anyhow::Result<AttachReport> {
    let pins = root.iface(&iface.name)?;
    let choice = match pins.find_xdp_link() {
        Some((XdpMode::Native, _)) => ModeChoice::Native,
        Some((XdpMode::Skb, _)) => ModeChoice::Skb,
        None => ModeChoice::Auto,
    };
    attach(root, iface, choice, settings)
}

/// The pins of the filter on `iface`, locked for a change of settings or
/// lists: waits while another command changes the filter, finishes what a
/// killed one left ([`finish_interrupted`]), and fails with the fix unless
/// the filter is attached and its programs use the pinned maps
/// ([`require_consistent`]). The lock holds until the guard is dropped.
pub fn lock_for_change(root: &PinRoot, iface: &str) -> anyhow::Result<(IfaceLock, IfacePins)> {
    let pins = root.iface(iface)?;
    let Some(lock) = pins.lock(false)? else {
        bail!("the filter is not attached to {iface} in this network namespace");
    };
    finish_interrupted(&pins)?;
    require_consistent(&pins)?;
    Ok((lock, pins))
}

/// Removes the filter pinned at `pins`: unpinning the links detaches the
/// programs, unpinning the maps frees them. Holds the interface's lock, so
/// a change running meanwhile ends first, and one waiting finds nothing.
pub fn detach(pins: &IfacePins) -> anyhow::Result<()> {
    let Some(_lock) = pins.lock(false)? else {
        bail!(
            "the filter is not attached to {} in this network namespace",
            pins.iface()
        );
    };
    remove_locked(pins)
}

/// [`detach`] with the lock held.
fn remove_locked(pins: &IfacePins) -> anyhow::Result<()> {
    if let Some(filter) = ClsactFilter::read(pins) {
        // A netlink filter is not a link: remove it from the interface.
        filter.detach();
    }
    fault::point("detach: egress filter removed");
    pins.staging().remove_all()?;
    pins.remove_all()
}

/// The state a command finds may be what a killed attach left: an upgrade
/// stopped before or after its commit. Finishes it or undoes it, so that
/// the pin directory again names exactly the maps the programs use. Every
/// command that changes the filter calls this with the lock held.
pub fn finish_interrupted(pins: &IfacePins) -> anyhow::Result<()> {
    let staging = pins.staging();
    if !staging.exists() {
        return Ok(());
    }
    // Past the point of no return when the XDP program already uses the
    // staged maps.
    let staged_in_use = match pins.find_xdp_link() {
        Some((_, link)) => {
            let used = maps_used(&[program_of(&link)?])?;
            let staged = pinned_map_ids(&staging)?;
            let live = pinned_map_ids(pins)?;
            !used.is_subset(&live) && used.is_subset(&staged)
        }
        None => false,
    };
    if staged_in_use {
        exchange(staging.dir(), pins.dir())?;
        fault::point("recover: upgrade committed");
    }
    staging.remove_all()
}

/// Fails with the fix unless the filter pinned at `pins` is attached and
/// its programs use exactly the pinned maps: what every command that
/// changes settings or lists checks (with the lock held), so that a change
/// never goes into maps nothing reads.
pub fn require_consistent(pins: &IfacePins) -> anyhow::Result<()> {
    let iface = pins.iface();
    let health = health(pins)?;
    match &health.xdp {
        LinkState::Missing => {
            bail!("the filter is not attached to {iface} in this network namespace")
        }
        LinkState::Severed => bail!(
            "{iface} was deleted, so the filter's links are severed and nothing is filtered: \
             `filter-ctl attach --iface {iface}` attaches it again once {iface} exists \
             (settings and lists are kept), `filter-ctl detach --iface {iface}` removes it"
        ),
        LinkState::Attached | LinkState::Elsewhere { .. } => {}
    }
    if let Some(problem) = map_problems(pins)?.into_iter().next() {
        bail!("{problem}");
    }
    let differ = layout::mismatches(pins.dir())?;
    if !differ.is_empty() {
        bail!(
            "the filter on {iface} was attached by a build whose maps differ from this one's \
             ({}): `filter-ctl attach --iface {iface}` with this build upgrades it, keeping its \
             state, or use the build that attached it",
            differ.join(", ")
        );
    }
    Ok(())
}

/// Where the pins and the attached programs disagree: pins removed of maps
/// the programs use, or programs using maps that are not pinned (an
/// interrupted upgrade). Each problem says how to fix it.
pub fn map_problems(pins: &IfacePins) -> anyhow::Result<Vec<String>> {
    let iface = pins.iface();
    let mut problems = Vec::new();
    let programs = attached_programs(pins)?;
    if programs.is_empty() {
        return Ok(problems);
    }
    let used = maps_used(&programs)?;
    let used_names: Vec<String> = used
        .iter()
        .filter_map(|id| aya::maps::MapInfo::from_id(*id).ok())
        .filter_map(|info| info.name_as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&str> = map::ALL
        .iter()
        .copied()
        .filter(|name| !pins.map(name).exists())
        .filter(|name| used_names.iter().any(|used| *used == kernel_map_name(name)))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "map pins missing: {}; `filter-ctl attach --iface {iface}` pins them again",
            missing.join(", ")
        ));
    } else if !used.is_subset(&pinned_map_ids(pins)?) {
        problems.push(format!(
            "the programs use maps that are not pinned (an attach or upgrade was \
             interrupted): `filter-ctl attach --iface {iface}` completes it"
        ));
    }
    Ok(problems)
}

/// A map's name as the kernel keeps it: the first 15 bytes.
fn kernel_map_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// The ids of the programs behind the pinned links (and the pinned egress
/// program, before Linux 6.6).
fn attached_programs(pins: &IfacePins) -> anyhow::Result<Vec<u32>> {
    let mut programs = Vec::new();
    if let Some((_, link)) = pins.find_xdp_link() {
        programs.push(program_of(&link)?);
    }
    if pins.tc_link().exists() {
        programs.push(program_of(&pins.tc_link())?);
    } else if pins.tc_prog().exists() {
        programs.push(aya::programs::ProgramInfo::from_pin(pins.tc_prog())?.id());
    }
    Ok(programs)
}

fn program_of(link: &Path) -> anyhow::Result<u32> {
    Ok(link_info(link)?.program_id())
}

/// The ids of the filter's maps (those of [`map::ALL`]) that `programs`
/// use. The others are aya-log's ring and level, which every load makes
/// for itself and nothing pins.
fn maps_used(programs: &[u32]) -> anyhow::Result<BTreeSet<u32>> {
    let mut ids = BTreeSet::new();
    for program in programs {
        for id in prog_map_ids(*program)? {
            let info = aya::maps::MapInfo::from_id(id)?;
            let name = info.name_as_str().unwrap_or_default();
            if map::ALL
                .iter()
                .any(|pinned| kernel_map_name(pinned) == name)
            {
                ids.insert(id);
            }
        }
    }
    Ok(ids)
}

/// The ids of the maps pinned at `pins`.
fn pinned_map_ids(pins: &IfacePins) -> anyhow::Result<BTreeSet<u32>> {
    map::ALL
        .iter()
        .filter(|name| pins.map(name).exists())
        .map(|name| Ok(aya::maps::MapInfo::from_pin(pins.map(name))?.id()))
        .collect()
}

/// Pins again the maps whose pins were removed by hand while the programs
/// still hold them, so that attach picks up their state instead of making
/// empty maps (a settings map made anew would hold zeros).
fn repin_missing_maps(pins: &IfacePins, health: &Health) -> anyhow::Result<()> {
    if !health.xdp.is_attached() {
        return Ok(());
    }
    let missing: Vec<&str> = map::ALL
        .iter()
        .copied()
        .filter(|name| !pins.map(name).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for id in maps_used(&attached_programs(pins)?)? {
        let data = MapData::from_id(id)?;
        let info = data.info()?;
        let Some(kernel_name) = info.name_as_str() else {
            continue;
        };
        if let Some(name) = missing
            .iter()
            .find(|name| kernel_map_name(name) == kernel_name)
        {
            log::info!("pinning {name} again: its pin was removed, the filter still uses it");
            data.pin(pins.map(name))
                .with_context(|| format!("pinning {name} again"))?;
        }
    }
    Ok(())
}

/// A loaded object and the maps it made anew (the others are the pinned ones).
struct Loaded {
    ebpf: Ebpf,
    fresh: Vec<&'static str>,
}

/// Loads the programs. Every pinned map whose layout this build shares is
/// reused as it is; the others are made anew, unpinned, so that nothing is
/// pinned before it holds its settings.
fn load(pins: &IfacePins) -> anyhow::Result<Loaded> {
    let recorded = layout::recorded(pins.dir());
    let mut reuse: Vec<&'static str> = map::ALL
        .iter()
        .copied()
        .filter(|name| layout::version_matches(pins.dir(), &recorded, name))
        .collect();
    let map_paths: Vec<(&'static str, PathBuf)> = map::ALL
        .iter()
        .map(|name| (*name, pins.map(name)))
        .collect();
    let mut ebpf = loop {
        let mut loader = EbpfLoader::new();
        for (name, path) in &map_paths {
            if reuse.contains(name) {
                loader.map_pin_path(name, path.as_path());
            }
        }
        match loader.load(EBPF_OBJECT) {
            Ok(ebpf) => break ebpf,
            // Pinned with another type, size or flags: made anew.
            Err(EbpfError::MapError(MapError::IncompatiblePinnedMap { name, .. }))
                if reuse.contains(&name.as_str()) =>
            {
                reuse.retain(|reused| *reused != name);
            }
            Err(err) => return Err(err).context("loading the eBPF object"),
        }
    };
    xdp_program(&mut ebpf)?
        .load()
        .map_err(|err| rejected("XDP program", err))?;
    tc_program(&mut ebpf)?
        .load()
        .map_err(|err| rejected("TC egress program", err))?;
    install_slip(&mut ebpf)?;
    let fresh = map::ALL
        .iter()
        .copied()
        .filter(|name| !reuse.contains(name))
        .collect();
    Ok(Loaded { ebpf, fresh })
}

/// Loads the slip program (the DNS truncated reply, docs/query-limits.md)
/// and puts it where the ingress program's tail call finds it. A pinned
/// SLIP_PROGRAM (replace, upgrade) gets it at once: the running ingress
/// program then enters the new slip program, which reads the plan the
/// running one wrote where SLIP_PLAN is reused, and finds an empty plan
/// (and drops the query, as without a slip) where SLIP_PLAN is made anew.
pub fn install_slip(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let slip: &mut Xdp = ebpf
        .program_mut(program::SLIP)
        .ok_or_else(|| anyhow!("program {} missing from the eBPF object", program::SLIP))?
        .try_into()?;
    slip.load()
        .map_err(|err| rejected("XDP slip program", err))?;
    let fd = slip.fd()?.try_clone()?;
    let mut slots = ProgramArray::try_from(
        ebpf.map_mut(map::SLIP_PROGRAM)
            .ok_or_else(|| anyhow!("map {} missing from the eBPF object", map::SLIP_PROGRAM))?,
    )?;
    slots
        .set(0, &fd, 0)
        .context("installing the slip program for the tail call")?;
    Ok(())
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

/// Gives the maps made anew their state before anything can see them:
/// what the pinned map of the same name held (another layout: an
/// upgrade), or for the settings maps, the defaults.
fn fill_fresh_maps(
    pins: &IfacePins,
    ebpf: &mut Ebpf,
    fresh: &[&'static str],
) -> anyhow::Result<Vec<Carried>> {
    let mut carried = Vec::new();
    let recorded = layout::recorded(pins.dir());
    for name in fresh {
        let old = pins.map(name);
        if old.exists() {
            let old = MapData::from_pin(&old)
                .with_context(|| format!("opening the pinned {name} to carry it over"))?;
            let new = ebpf
                .map(name)
                .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
            carried.push(migrate::carry(name, &old, map_data(new))?);
            if *name == map::WATCHED_PORTS && recorded.get(*name).copied().unwrap_or(1) < 2 {
                add_default_services(&mut SettingsMaps::of(ebpf)?)?;
            }
        }
    }
    let made = |name: &str| fresh.contains(&name) && !pins.map(name).exists();
    if made(map::CONFIG) {
        SettingsMaps::of(ebpf)?.write_defaults()?;
        return Ok(carried);
    }
    // The config is kept; the ports or limits it points at were lost (their
    // pin removed while nothing held them): the defaults, not "none".
    let defaults = filter_ctl_api::settings::Settings::default();
    let mut maps = SettingsMaps::of(ebpf)?;
    let slot = maps.config.get(&0, 0)?.ports_slot();
    if made(map::WATCHED_PORTS) {
        maps.ports.set(slot, &*defaults.watched_ports(), 0)?;
        log::info!("WATCHED_PORTS made anew: the default watched ports are written");
    }
    if made(map::CONN_LIMITS) {
        maps.conn_limits
            .set(slot, &*defaults.conn_limits_map(), 0)?;
        log::info!("CONN_LIMITS made anew: the default connection limits are written");
    }
    Ok(carried)
}

/// Gives both copies of the port roles the default service ports (issue 12)
/// where a port has no service role: ports carried over from a build before
/// the query limits (WATCHED_PORTS version 1), which had none.
fn add_default_services(maps: &mut SettingsMaps<&mut MapData>) -> anyhow::Result<()> {
    for slot in 0..WatchedPorts::SLOTS {
        let mut ports = Box::new(maps.ports.get(&slot, 0)?);
        for (port, service) in DEFAULT_SERVICE_PORTS {
            if ports.service(port) == ServiceClass::None {
                ports.set_service(port, service);
            }
        }
        maps.ports.set(slot, &*ports, 0)?;
    }
    log::info!(
        "WATCHED_PORTS carried over from a build without query limits: default service ports added"
    );
    Ok(())
}

/// Attaches new links where none is attached (fresh, or after the interface
/// was deleted) and pins maps, egress link and XDP link in this order.
fn link_anew(
    pins: &IfacePins,
    iface: &Interface,
    ebpf: &mut Ebpf,
    fresh: &[&'static str],
    choice: ModeChoice,
    outcome: Outcome,
) -> anyhow::Result<AttachReport> {
    // Held by this process only until pinned: the kernel detaches them if
    // we die before.
    let egress = attach_egress(ebpf, iface, pins)?;
    fault::point("attach: egress attached");
    let xdp = xdp_program(ebpf)?;
    let attached = match choice {
        ModeChoice::Native => {
            attach_xdp(xdp, iface, XdpMode::Native).map(|id| (XdpMode::Native, None, id))
        }
        ModeChoice::Skb => attach_xdp(xdp, iface, XdpMode::Skb).map(|id| (XdpMode::Skb, None, id)),
        ModeChoice::Auto => match attach_xdp(xdp, iface, XdpMode::Native) {
            Ok(id) => Ok((XdpMode::Native, None, id)),
            Err(XdpAttachError::Failed(err)) => attach_xdp(xdp, iface, XdpMode::Skb)
                .map(|id| (XdpMode::Skb, Some(format!("{err:#}")), id)),
            Err(occupied) => Err(occupied),
        },
    };
    let (mode, native_unavailable, link_id) = match attached {
        Ok(attached) => attached,
        Err(err) => {
            egress.undo(pins);
            return Err(occupied_by_our_pins(pins, iface, err));
        }
    };
    let xdp_link = FdLink::try_from(xdp.take_link(link_id)?)
        .context("this kernel attached XDP without a bpf_link (Linux 5.9+ needed)")?;
    let xdp_program_id = xdp_link.info()?.program_id();
    fault::point("attach: ingress attached");

    for name in fresh {
        let new = ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
        pin_replacing(&pins.map(name), |path| Ok(new.pin(path)?))?;
        fault::point("attach: map pinned");
    }
    layout::record(pins.dir(), ebpf)?;
    let tc_program_id = egress.pin(pins, tc_program(ebpf)?)?;
    fault::point("attach: egress pinned");
    pin_replacing(&pins.xdp_link(mode), |path| {
        xdp_link.pin(path).map(drop).context("pinning the XDP link")
    })?;
    fault::point("attach: ingress pinned");
    // A severed link of the other mode (or a leftover clsact program pin).
    let other = match mode {
        XdpMode::Native => XdpMode::Skb,
        XdpMode::Skb => XdpMode::Native,
    };
    remove_pin(&pins.xdp_link(other))?;
    Ok(AttachReport {
        iface: iface.name.clone(),
        mode,
        outcome,
        native_unavailable,
        xdp_program_id,
        tc_program_id,
        carried: Vec::new(),
    })
}

/// Swaps the loaded programs into the pinned links: egress first, then XDP.
/// The maps are the pinned ones. An egress that is not attached (its pin
/// was removed, or an attach was interrupted) is attached anew.
fn swap_programs(
    pins: &IfacePins,
    iface: &Interface,
    ebpf: &mut Ebpf,
    egress_attached: bool,
) -> anyhow::Result<AttachReport> {
    let tc_program_id = if egress_attached {
        replace_egress(pins, iface, ebpf, pins)?
    } else {
        let egress = attach_egress(ebpf, iface, pins)?;
        egress.pin(pins, tc_program(ebpf)?)?
    };
    fault::point("attach: egress replaced");
    let (mode, link) = pins
        .find_xdp_link()
        .ok_or_else(|| anyhow!("the XDP link pin vanished"))?;
    let xdp = xdp_program(ebpf)?;
    let xdp_link = XdpLink::try_from(pinned_link(&link)?)?;
    let link_id = xdp
        .attach_to_link(xdp_link)
        .context("replacing the XDP program")?;
    // The pin keeps the link; dropping our handle must not detach it.
    drop(xdp.take_link(link_id)?);
    fault::point("attach: ingress replaced");
    Ok(AttachReport {
        iface: iface.name.clone(),
        mode,
        outcome: Outcome::Replaced,
        native_unavailable: None,
        xdp_program_id: xdp.info()?.id(),
        tc_program_id,
        carried: Vec::new(),
    })
}

/// Replaces the egress program: through the TCX link, or (before Linux 6.6)
/// the netlink filter in place. The program's pin (netlink only) goes to
/// `pin_at`.
fn replace_egress(
    pins: &IfacePins,
    iface: &Interface,
    ebpf: &mut Ebpf,
    pin_at: &IfacePins,
) -> anyhow::Result<u32> {
    let tc = tc_program(ebpf)?;
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

/// Upgrades a running filter to maps of another layout: see the module
/// documentation. The staging directory gets every pin of the new filter,
/// the links included (pinned twice meanwhile); the programs are swapped
/// into the links; then one rename exchange makes it the live directory.
fn upgrade(
    pins: &IfacePins,
    iface: &Interface,
    ebpf: &mut Ebpf,
    egress_attached: bool,
) -> anyhow::Result<AttachReport> {
    let staging = pins.staging();
    staging.remove_all()?;
    fs::create_dir(staging.dir())
        .with_context(|| format!("creating {}", staging.dir().display()))?;
    for name in map::ALL {
        let map = ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
        map.pin(staging.map(name))
            .with_context(|| format!("pinning {name} in {}", staging.dir().display()))?;
    }
    layout::record(staging.dir(), ebpf)?;
    let (mode, xdp_link) = pins
        .find_xdp_link()
        .ok_or_else(|| anyhow!("the XDP link pin vanished"))?;
    pinned_link(&xdp_link)?
        .pin(staging.xdp_link(mode))
        .context("pinning the XDP link in the staging directory")?;
    if egress_attached && pins.tc_link().exists() {
        pinned_link(&pins.tc_link())?
            .pin(staging.tc_link())
            .context("pinning the egress link in the staging directory")?;
    }
    fault::point("upgrade: staged");

    let tc_program_id = if egress_attached {
        replace_egress(pins, iface, ebpf, &staging)?
    } else {
        let egress = attach_egress(ebpf, iface, pins)?;
        egress.pin(&staging, tc_program(ebpf)?)?
    };
    fault::point("upgrade: egress replaced");
    let xdp = xdp_program(ebpf)?;
    let link_id = xdp
        .attach_to_link(XdpLink::try_from(pinned_link(&xdp_link)?)?)
        .context("replacing the XDP program")?;
    drop(xdp.take_link(link_id)?);
    fault::point("upgrade: ingress replaced");

    exchange(staging.dir(), pins.dir())?;
    fault::point("upgrade: committed");
    staging.remove_all()?;
    Ok(AttachReport {
        iface: iface.name.clone(),
        mode,
        outcome: Outcome::Upgraded,
        native_unavailable: None,
        xdp_program_id: xdp.info()?.id(),
        tc_program_id,
        carried: Vec::new(),
    })
}

/// Swaps two directories in one rename (RENAME_EXCHANGE); where the
/// filesystem lacks it, in two renames through a third name.
fn exchange(a: &Path, b: &Path) -> anyhow::Result<()> {
    match renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS) => {
            let aside = b.with_file_name(format!(
                "{}:old",
                b.file_name().unwrap_or_default().to_string_lossy()
            ));
            fs::rename(b, &aside)?;
            fs::rename(a, b)?;
            fs::rename(&aside, a)?;
            Ok(())
        }
        Err(err) => {
            Err(err).with_context(|| format!("exchanging {} and {}", a.display(), b.display()))
        }
    }
}

/// Pins through `pin` at a temporary name, then renames it over `path`: a
/// pin already there (a severed link, a map of another layout) is replaced
/// in one step.
fn pin_replacing(path: &Path, pin: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let fresh = path.with_file_name(format!(
        "{}:new",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    remove_pin(&fresh)?;
    pin(&fresh)?;
    fs::rename(&fresh, path).with_context(|| format!("pinning {}", path.display()))
}

fn remove_pin(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The egress program attached but not yet pinned.
enum Egress {
    /// A TCX link, detached by the kernel if we die before pinning it.
    Tcx(FdLink),
    /// A netlink filter (before Linux 6.6): it stays until removed.
    Clsact(ClsactFilter),
}

impl Egress {
    /// Undoes the attach after a later step failed.
    fn undo(self, pins: &IfacePins) {
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
    fn pin(self, pins: &IfacePins, tc: &mut SchedClassifier) -> anyhow::Result<u32> {
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

fn attach_egress(ebpf: &mut Ebpf, iface: &Interface, pins: &IfacePins) -> anyhow::Result<Egress> {
    let tc = tc_program(ebpf)?;
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
pub(crate) struct ClsactFilter {
    pub ifindex: u32,
    priority: u16,
    handle: u32,
    qdisc_added: bool,
}

impl ClsactFilter {
    const PIN: &str = "clsact_filter";

    pub fn read(pins: &IfacePins) -> Option<Self> {
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
    fn detach(&self) {
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

/// An occupied interface may hold our own filter under another name: the
/// interface was renamed after the filter was attached.
fn occupied_by_our_pins(pins: &IfacePins, iface: &Interface, err: XdpAttachError) -> anyhow::Error {
    let XdpAttachError::Occupied(err) = err else {
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
                crate::kernel::link_ifindex(&link).is_ok_and(|index| index == iface.index)
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
                XdpAttachError::Failed(anyhow!(err).context(format!(
                    "attaching XDP to {} in native mode: {mtu} is too large for native XDP on \
                     this driver (frames must fit in a page); lower it (`ip link set dev {} mtu \
                     1500`) or use `--mode skb`",
                    iface.name, iface.name
                )))
            }
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
