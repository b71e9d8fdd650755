//! Filling the maps a load made anew, before anything can see them: what
//! the pinned map of the same name held (an upgrade carries it over,
//! [`crate::migrate`]), or for the settings maps, the defaults.

use anyhow::{Context as _, anyhow};
use aya::{Ebpf, maps::MapData};
use filter_common::{Config, DEFAULT_SERVICE_PORTS, ServiceClass, WatchedPorts, map, query};

use crate::{
    layout::{self, map_data},
    migrate::{self, Carried},
    pins::IfacePins,
    settings::SettingsMaps,
};

/// Gives the maps made anew their state before anything can see them:
/// what the pinned map of the same name held (another layout: an
/// upgrade), or for the settings maps, the defaults.
pub(super) fn fill_fresh_maps(
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
            let mut map = migrate::carry(name, &old, map_data(new))?;
            if *name == map::CONFIG && old.info()?.value_size() as usize <= NAME_LEVEL_AT {
                map.changed = raise_pre_name_level_defaults(&mut SettingsMaps::of(ebpf)?)?;
            }
            carried.push(map);
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

/// Where the DNS name level's settings start in `Config`: a carried
/// settings value that ends there comes from a build before it.
const NAME_LEVEL_AT: usize = std::mem::offset_of!(Config, dns_query_name_rate);

/// Raises the carried DNS catch-alls still at their defaults before the name
/// level (issue 27) to this build's (filter_common::query); says so.
fn raise_pre_name_level_defaults(
    maps: &mut SettingsMaps<&mut MapData>,
) -> anyhow::Result<Option<String>> {
    let mut config = maps.config.get(&0, 0)?;
    let old = config.dns_query;
    if !query::raise_pre_name_level_defaults(&mut config.dns_query) {
        return Ok(None);
    }
    maps.config.set(0, &config, 0)?;
    let new = config.dns_query;
    let mut raised = Vec::new();
    if (old.source_rate, old.source_burst) != (new.source_rate, new.source_burst) {
        raised.push(format!(
            "per source {}/s burst {} -> {}/s burst {}",
            old.source_rate, old.source_burst, new.source_rate, new.source_burst
        ));
    }
    if (old.prefix_rate, old.prefix_burst) != (new.prefix_rate, new.prefix_burst) {
        raised.push(format!(
            "per prefix {}/s burst {} -> {}/s burst {}",
            old.prefix_rate, old.prefix_burst, new.prefix_rate, new.prefix_burst
        ));
    }
    Ok(Some(format!(
        "the DNS query limits the old build had at their defaults are raised to this build's, \
         which its name level allows ({}; docs/query-limits.md); values you had set are kept",
        raised.join(", ")
    )))
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
