//! Crash recovery and consistency: what a command finds may be what a
//! killed one left. [`finish_interrupted`] finishes or undoes an upgrade
//! stopped before or after its commit; [`require_consistent`] refuses a
//! change unless the programs use exactly the pinned maps;
//! [`map_problems`] says where they disagree (for `status`); maps whose
//! pins were removed by hand are pinned again from the running programs
//! before an attach ([`repin_missing_maps`]).

use std::{collections::BTreeSet, path::Path};

use anyhow::{Context as _, bail};
use aya::maps::MapData;
use filter_common::{map, report::LinkState};

use crate::{
    fault,
    health::{Health, health},
    hook::links::link_info,
    kernel::program_map_ids,
    layout,
    pins::IfacePins,
};

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
        staging.exchange(pins)?;
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
    for id in program_map_ids(programs)? {
        let info = aya::maps::MapInfo::from_id(id)?;
        let name = info.name_as_str().unwrap_or_default();
        if map::ALL
            .iter()
            .any(|pinned| kernel_map_name(pinned) == name)
        {
            ids.insert(id);
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
pub(super) fn repin_missing_maps(pins: &IfacePins, health: &Health) -> anyhow::Result<()> {
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
