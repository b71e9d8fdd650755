//! Attaching the filter to an interface, replacing or upgrading it, and
//! removing it again.
//!
//! Every one of them holds the interface's lock ([`IfacePins::lock`]) from
//! start to end, so two at once run one after the other, and each first
//! finishes or undoes what a killed predecessor left
//! ([`recovery::finish_interrupted`]). What is really attached is asked of
//! the kernel ([`crate::health`]), not read from the pins.
//!
//! - Fresh attach (or again, after the interface was deleted: its links are
//!   severed): the maps are made and filled (settings written) before
//!   anything is pinned; then egress and XDP are attached, held by file
//!   descriptors only, and pinned in this order: the maps' layout, maps,
//!   egress link, XDP link. Pinning the XDP link is the commit: killed before it, the kernel
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
//!
//! This module is the transaction, step by step; each job has its module:
//! [`load`] (the programs onto the pinned maps), [`fill`] (the maps made
//! anew), [`recovery`] (what a killed command left, and consistency
//! checks), [`verifier`] (a refusal explained); the hooks are
//! [`crate::hook::xdp`] and [`crate::hook::tc`].

mod fill;
mod load;
pub mod recovery;
mod verifier;

use std::fs;

use anyhow::{Context as _, anyhow, bail};
use aya::Ebpf;
use filter_common::map;
use filter_ctl_api::{
    report::{LinkLayer, LinkState, XdpMode},
    settings::Assignment,
};

pub use self::load::{install_slip, loader};
use self::{
    fill::fill_fresh_maps,
    load::{Loaded, load},
    recovery::{finish_interrupted, repin_missing_maps, require_consistent},
};
pub use crate::hook::xdp::ModeChoice;
use crate::{
    fault,
    health::health,
    hook::{self, links::pin_replacing},
    iface::{Interface, Link},
    layout,
    migrate::Carried,
    pins::{IfaceLock, IfacePins, PinRoot},
    probe, release,
    settings::SettingsMaps,
};

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
    /// What the interface's frames start with: the programs parse that.
    pub link: Link,
    pub mode: XdpMode,
    pub outcome: Outcome,
    /// Why native mode was not used under `--mode auto`.
    pub native_unavailable: Option<String>,
    pub xdp_program_id: u32,
    pub tc_program_id: u32,
    /// An upgrade's carried-over maps.
    pub carried: Vec<Carried>,
}

impl AttachReport {
    /// Why the mode is not native, when it is not: for the operator.
    pub fn mode_note(&self) -> Option<String> {
        if self.link.layer == LinkLayer::Ip {
            return Some(format!(
                "skb mode: {} has no Ethernet header (link type {}); the filter parses its \
                 packets from the IP header, in generic XDP, which costs more per packet than \
                 native XDP on an Ethernet device",
                self.iface, self.link.kind
            ));
        }
        self.native_unavailable.as_ref().map(|why| {
            format!(
                "native XDP is not available on {} ({why}); using generic (skb) mode, which \
                 costs more per packet",
                self.iface
            )
        })
    }
}

/// The mode `choice` comes to on an interface of `link`: a device without
/// an Ethernet header has generic (skb) XDP only (no driver of one has
/// native XDP: ppp, WireGuard, the IP tunnels, tun).
fn mode_for_link(iface: &Interface, link: Link, choice: ModeChoice) -> anyhow::Result<ModeChoice> {
    match (link.layer, choice) {
        (LinkLayer::Ethernet, _) => Ok(choice),
        (LinkLayer::Ip, ModeChoice::Native) => bail!(
            "{} has no Ethernet header (link type {}): XDP runs on it in generic (skb) mode \
             only, not native; attach with `--mode skb` or `--mode auto`",
            iface.name,
            link.kind
        ),
        (LinkLayer::Ip, ModeChoice::Auto | ModeChoice::Skb) => Ok(ModeChoice::Skb),
    }
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
    // A link type the programs cannot parse, or a mode it cannot have, is
    // refused before anything is touched.
    let link = iface.link()?;
    let choice = mode_for_link(iface, link, choice)?;
    // Refuses a kernel without what the programs need before touching anything.
    probe::check(iface.index)?;
    let pins = root.iface(&iface.name)?;
    let _lock = pins
        .lock(true)?
        .ok_or_else(|| anyhow!("{} vanished while being created", pins.dir().display()))?;
    attach_locked(&pins, iface, link, choice, settings).inspect_err(|_| {
        // A refused attach leaves no empty pin directory behind.
        if fs::read_dir(pins.dir()).is_ok_and(|mut entries| entries.next().is_none()) {
            let _ = pins.remove_all();
        }
    })
}

fn attach_locked(
    pins: &IfacePins,
    iface: &Interface,
    link: Link,
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
        if choice.resolve(mode) != mode {
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
    let Loaded { mut ebpf, fresh } = load(&pins, link.layer)?;
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
        link_anew(&pins, (iface, link), &mut ebpf, &fresh, choice, outcome)?
    } else if fresh.is_empty() {
        swap_programs(&pins, (iface, link), &mut ebpf, health.egress.is_attached())?
    } else {
        upgrade(&pins, (iface, link), &mut ebpf, health.egress.is_attached())?
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
    // Which build's programs run now: a daemon adopting them compares.
    release::record(pins.dir())?;
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
    let choice = ModeChoice::keeping(pins.find_xdp_link().map(|(mode, _)| mode));
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
    // A netlink filter is not a link: remove it from the interface.
    hook::tc::remove_filter(pins);
    fault::point("detach: egress filter removed");
    pins.staging().remove_all()?;
    pins.remove_all()
}

/// Attaches new links where none is attached (fresh, or after the interface
/// was deleted) and pins maps, egress link and XDP link in this order.
fn link_anew(
    pins: &IfacePins,
    (iface, link): (&Interface, Link),
    ebpf: &mut Ebpf,
    fresh: &[&'static str],
    choice: ModeChoice,
    outcome: Outcome,
) -> anyhow::Result<AttachReport> {
    // Held by this process only until pinned: the kernel detaches them if
    // we die before.
    let egress = hook::tc::attach(ebpf, iface, pins)?;
    fault::point("attach: egress attached");
    let xdp = match hook::xdp::attach(ebpf, pins, iface, choice) {
        Ok(xdp) => xdp,
        Err(err) => {
            egress.undo(pins);
            return Err(err);
        }
    };
    fault::point("attach: ingress attached");

    // The layout is recorded before the maps are pinned, so that maps an
    // attach killed before its commit left are known as this build's (they
    // hold what it wrote: its settings). Only where a map made anew replaces
    // a pin of another layout (a severed filter attached again by another
    // build) does the record follow the pins.
    let replaces_other_layout = fresh.iter().any(|name| pins.map(name).exists());
    if !replaces_other_layout {
        layout::record(pins.dir(), ebpf)?;
    }
    for name in fresh {
        let new = ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
        pin_replacing(&pins.map(name), |path| Ok(new.pin(path)?))?;
        fault::point("attach: map pinned");
    }
    if replaces_other_layout {
        layout::record(pins.dir(), ebpf)?;
    }
    let tc_program_id = egress.pin(ebpf, pins)?;
    fault::point("attach: egress pinned");
    let mode = xdp.mode;
    pin_replacing(&pins.xdp_link(mode), |path| {
        xdp.link.pin(path).map(drop).context("pinning the XDP link")
    })?;
    fault::point("attach: ingress pinned");
    // A severed link of the other mode (or a leftover clsact program pin).
    let other = match mode {
        XdpMode::Native => XdpMode::Skb,
        XdpMode::Skb => XdpMode::Native,
    };
    hook::links::remove_pin(&pins.xdp_link(other))?;
    Ok(AttachReport {
        iface: iface.name.clone(),
        link,
        mode,
        outcome,
        native_unavailable: xdp.native_unavailable,
        xdp_program_id: xdp.program_id,
        tc_program_id,
        carried: Vec::new(),
    })
}

/// Swaps the loaded programs into the pinned links: egress first, then XDP.
/// The maps are the pinned ones. An egress that is not attached (its pin
/// was removed, or an attach was interrupted) is attached anew.
fn swap_programs(
    pins: &IfacePins,
    (iface, link): (&Interface, Link),
    ebpf: &mut Ebpf,
    egress_attached: bool,
) -> anyhow::Result<AttachReport> {
    let tc_program_id = hook::tc::replace_or_attach(ebpf, iface, pins, pins, egress_attached)?;
    fault::point("attach: egress replaced");
    let (mode, xdp_link) = pins
        .find_xdp_link()
        .ok_or_else(|| anyhow!("the XDP link pin vanished"))?;
    let xdp_program_id = hook::xdp::replace(ebpf, &xdp_link)?;
    fault::point("attach: ingress replaced");
    Ok(AttachReport {
        iface: iface.name.clone(),
        link,
        mode,
        outcome: Outcome::Replaced,
        native_unavailable: None,
        xdp_program_id,
        tc_program_id,
        carried: Vec::new(),
    })
}

/// Upgrades a running filter to maps of another layout: see the module
/// documentation. The staging directory gets every pin of the new filter,
/// the links included (pinned twice meanwhile); the programs are swapped
/// into the links; then one rename exchange makes it the live directory.
fn upgrade(
    pins: &IfacePins,
    (iface, link): (&Interface, Link),
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
    hook::links::pinned_link(&xdp_link)?
        .pin(staging.xdp_link(mode))
        .context("pinning the XDP link in the staging directory")?;
    if egress_attached && pins.tc_link().exists() {
        hook::links::pinned_link(&pins.tc_link())?
            .pin(staging.tc_link())
            .context("pinning the egress link in the staging directory")?;
    }
    fault::point("upgrade: staged");

    let tc_program_id = hook::tc::replace_or_attach(ebpf, iface, pins, &staging, egress_attached)?;
    fault::point("upgrade: egress replaced");
    let xdp_program_id = hook::xdp::replace(ebpf, &xdp_link)?;
    fault::point("upgrade: ingress replaced");

    staging.exchange(pins)?;
    fault::point("upgrade: committed");
    staging.remove_all()?;
    Ok(AttachReport {
        iface: iface.name.clone(),
        link,
        mode,
        outcome: Outcome::Upgraded,
        native_unavailable: None,
        xdp_program_id,
        tc_program_id,
        carried: Vec::new(),
    })
}
