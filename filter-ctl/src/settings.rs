//! The settings maps of a filter: `CONFIG` (one [`Config`]), and
//! `WATCHED_PORTS` (two [`WatchedPorts`]) and `CONN_LIMITS` (two
//! [`ConnLimits`]), each the live element and a spare, read into and
//! written from [`Settings`]. The keys, their values and their checks are
//! the table in `filter_common::settings`; this module only moves them in
//! and out of the kernel.
//!
//! A change takes effect in one write, so that the programs, and whoever
//! looks after a filter-ctl killed halfway, see the old settings or the new
//! ones, never a mix: new ports and limits go into the spare elements, then
//! the one write of the config switches `ports_slot` to them along with
//! every other changed key. Changes run under the interface's lock
//! ([`crate::pins::IfacePins::lock`]), so two at once cannot lose each
//! other's keys.

use std::{
    borrow::{Borrow, BorrowMut},
    fs::File,
    io::Read as _,
};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{Array, MapData},
};
use filter_common::{
    Config, WatchedPorts,
    conn::ConnLimits,
    map,
    settings::{Assignment, Settings},
};

use crate::{fault, pins::IfacePins};

/// The settings maps of a pinned filter (`MapData`) or of a loaded object
/// (`&mut MapData`).
pub struct SettingsMaps<T> {
    pub config: Array<T, Config>,
    pub ports: Array<T, WatchedPorts>,
    pub conn_limits: Array<T, ConnLimits>,
}

impl<T> std::fmt::Debug for SettingsMaps<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SettingsMaps")
    }
}

impl SettingsMaps<MapData> {
    /// The maps of the filter pinned at `pins`.
    pub fn open(pins: &IfacePins) -> anyhow::Result<Self> {
        Ok(Self {
            config: Array::try_from(pins.open_map(map::CONFIG)?)?,
            ports: Array::try_from(pins.open_map(map::WATCHED_PORTS)?)?,
            conn_limits: Array::try_from(pins.open_map(map::CONN_LIMITS)?)?,
        })
    }
}

impl<'a> SettingsMaps<&'a mut MapData> {
    /// The maps of a loaded object (a fresh attach, or a test's own instance).
    pub fn of(ebpf: &'a mut Ebpf) -> anyhow::Result<Self> {
        let [config, ports, conn_limits] =
            ebpf.maps_disjoint_mut([map::CONFIG, map::WATCHED_PORTS, map::CONN_LIMITS]);
        let missing = || anyhow!("settings maps missing from the eBPF object");
        Ok(Self {
            config: Array::try_from(config.ok_or_else(missing)?)?,
            ports: Array::try_from(ports.ok_or_else(missing)?)?,
            conn_limits: Array::try_from(conn_limits.ok_or_else(missing)?)?,
        })
    }
}

impl<T: Borrow<MapData>> SettingsMaps<T> {
    /// The live settings.
    pub fn read(&self) -> anyhow::Result<Settings> {
        let config = self.config.get(&0, 0).context("reading the config map")?;
        let ports = Box::new(
            self.ports
                .get(&config.ports_slot(), 0)
                .context("reading the watched ports map")?,
        );
        let conn_limits = Box::new(
            self.conn_limits
                .get(&config.ports_slot(), 0)
                .context("reading the connection limits map")?,
        );
        Ok(Settings::from_maps(config, &ports).with_conn_limits(&conn_limits))
    }
}

impl<T: BorrowMut<MapData>> SettingsMaps<T> {
    /// Checks every assignment against the live settings, then writes what
    /// changed: all or nothing. Returns the new settings.
    pub fn apply(&mut self, assignments: &[Assignment]) -> anyhow::Result<Settings> {
        let live = self.read()?;
        let mut next = live.with(assignments)?;
        let (classes, limits) = (next.watched_ports(), next.conn_limits_map());
        if *classes != *live.watched_ports() || *limits != *live.conn_limits_map() {
            // Both into the spare slot, which the config's write switches to.
            let spare = 1 - live.config.ports_slot();
            self.ports
                .set(spare, &*classes, 0)
                .context("writing the watched ports map")?;
            fault::point("set: ports written");
            self.conn_limits
                .set(spare, &*limits, 0)
                .context("writing the connection limits map")?;
            fault::point("set: connection limits written");
            next.config.ports_slot = spare as u8;
        }
        if next.config != live.config {
            self.config
                .set(0, &next.config, 0)
                .context("writing the config map")?;
            fault::point("set: config written");
        }
        Ok(next)
    }

    /// Writes the defaults into freshly created maps (a fresh attach), with
    /// a new secret seed for the SYN bucket hash; replacing the programs
    /// later keeps what the operator set.
    pub fn write_defaults(&mut self) -> anyhow::Result<()> {
        let defaults = Settings::default();
        let config = Config {
            syn_hash_seed: random_seed()?,
            ..defaults.config
        };
        self.ports
            .set(config.ports_slot(), &*defaults.watched_ports(), 0)
            .context("writing the watched ports map")?;
        self.conn_limits
            .set(config.ports_slot(), &*defaults.conn_limits_map(), 0)
            .context("writing the connection limits map")?;
        self.config
            .set(0, &config, 0)
            .context("writing the config map")?;
        Ok(())
    }
}

/// What changed from `before` to `after`, one `key old -> new` each, in
/// the table's order: what `set`, `apply` and the daemon's reloads say.
pub fn changes(before: &Settings, after: &Settings) -> Vec<String> {
    before
        .values()
        .zip(after.values())
        .filter(|((_, old), (_, new))| old != new)
        .map(|((key, old), (_, new))| format!("{key} {old} -> {new}"))
        .collect()
}

/// A fresh secret seed for the bucket hash, from the kernel's random
/// source, so that nobody can compute which addresses share a bucket slot
/// with a victim.
fn random_seed() -> anyhow::Result<u64> {
    let mut seed = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut seed))
        .context("reading /dev/urandom")?;
    Ok(u64::from_ne_bytes(seed))
}
