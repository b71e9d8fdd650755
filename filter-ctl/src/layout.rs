//! The layout of the maps, pinned with them as a symlink (`LAYOUT`), so that
//! a later build knows which pinned maps it can use as they are.
//!
//! The symlink's target names every map with its layout version
//! (`filter_common::layout`) and what the kernel knows of it, e.g.
//! `wan-filter-layout CONFIG=v1:array:4:104:1 STATS=v1:percpu_array:4:16:48 ...`
//! (version, type, key size, value size, entries). A pinned map is reused
//! when its recorded version is this build's and aya finds its type, sizes
//! and flags equal to the object's; otherwise an upgrade makes it anew and
//! carries over what it can ([`crate::migrate`]). Pins made before the
//! record existed count as version 1.

use std::{collections::BTreeMap, fs, io, os::unix::fs::symlink, path::Path};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Map, MapData},
};
use filter_common::layout::map_version;

/// The record's name in the pin directory.
pub const LAYOUT_PIN: &str = "LAYOUT";
const HEAD: &str = "wan-filter-layout";

/// The loaded map's kernel data, whatever its type.
pub fn map_data(map: &Map) -> &MapData {
    match map {
        Map::Array(data)
        | Map::ArrayOfMaps(data)
        | Map::BloomFilter(data)
        | Map::CgroupArray(data)
        | Map::CgroupStorage(data)
        | Map::CgrpStorage(data)
        | Map::CpuMap(data)
        | Map::DevMap(data)
        | Map::DevMapHash(data)
        | Map::HashMap(data)
        | Map::HashOfMaps(data)
        | Map::InodeStorage(data)
        | Map::LpmTrie(data)
        | Map::LruHashMap(data)
        | Map::PerCpuArray(data)
        | Map::PerCpuCgroupStorage(data)
        | Map::PerCpuHashMap(data)
        | Map::PerCpuLruHashMap(data)
        | Map::PerfEventArray(data)
        | Map::ProgramArray(data)
        | Map::Queue(data)
        | Map::ReusePortSockArray(data)
        | Map::RingBuf(data)
        | Map::SockHash(data)
        | Map::SockMap(data)
        | Map::SkStorage(data)
        | Map::Stack(data)
        | Map::StackTraceMap(data)
        | Map::Unsupported(data)
        | Map::XskMap(data) => data,
    }
}

/// The versions recorded in the pin directory `dir`: map name -> version.
/// Empty when there is no record (pins of a build before it: version 1).
pub fn recorded(dir: &Path) -> BTreeMap<String, u32> {
    let Ok(target) = fs::read_link(dir.join(LAYOUT_PIN)) else {
        return BTreeMap::new();
    };
    let target = target.to_string_lossy();
    target
        .split_whitespace()
        .skip(1)
        .filter_map(|item| {
            let (name, rest) = item.split_once('=')?;
            let version = rest.strip_prefix('v')?.split(':').next()?.parse().ok()?;
            Some((name.to_owned(), version))
        })
        .collect()
}

/// Whether the map `name` pinned in `dir` has this build's layout version.
/// (Its type and sizes aya checks when it reuses the pin.)
pub fn version_matches(dir: &Path, recorded: &BTreeMap<String, u32>, name: &str) -> bool {
    dir.join(name).exists() && recorded.get(name).copied().unwrap_or(1) == map_version(name)
}

/// The record of the maps of `ebpf`, as the symlink's target.
pub fn describe(ebpf: &Ebpf) -> anyhow::Result<String> {
    let mut maps: Vec<(&str, &Map)> = ebpf.maps().collect();
    maps.sort_by_key(|(name, _)| *name);
    let mut text = String::from(HEAD);
    for (name, map) in maps {
        let info = map_data(map).info()?;
        let kind = format!("{:?}", info.map_type()?).to_lowercase();
        text += &format!(
            " {name}=v{}:{kind}:{}:{}:{}",
            map_version(name),
            info.key_size(),
            info.value_size(),
            info.max_entries()
        );
    }
    Ok(text)
}

/// Writes the record of `ebpf`'s maps into `dir`, replacing any in one
/// rename.
pub fn record(dir: &Path, ebpf: &Ebpf) -> anyhow::Result<()> {
    let text = describe(ebpf)?;
    let fresh = dir.join(format!("{LAYOUT_PIN}:new"));
    match fs::remove_file(&fresh) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err.into()),
        _ => {}
    }
    symlink(&text, &fresh).with_context(|| format!("writing {}", fresh.display()))?;
    fs::rename(&fresh, dir.join(LAYOUT_PIN))
        .with_context(|| format!("writing {}", dir.join(LAYOUT_PIN).display()))
}

/// A map as the embedded object defines it: name, type, key size, value
/// size, entries.
type MapDefinition = (String, u32, u32, u32, u32);

/// The maps of the embedded object as it defines them.
fn object_maps() -> anyhow::Result<&'static [MapDefinition]> {
    static MAPS: std::sync::OnceLock<Result<Vec<MapDefinition>, String>> =
        std::sync::OnceLock::new();
    MAPS.get_or_init(|| {
        let object = aya_obj::Object::parse(crate::EBPF_OBJECT).map_err(|err| err.to_string())?;
        Ok(object
            .maps
            .iter()
            .map(|(name, map)| {
                (
                    name.clone(),
                    map.map_type(),
                    map.key_size(),
                    map.value_size(),
                    map.max_entries(),
                )
            })
            .collect())
    })
    .as_deref()
    .map_err(|err| anyhow::anyhow!("parsing the embedded eBPF object: {err}"))
}

/// BPF_MAP_TYPE_RINGBUF, whose size the loader rounds to pages.
const RINGBUF: u32 = 27;

/// The pinned maps in `dir` whose layout is not this build's: another
/// type, size or entry count than the object defines, or another layout
/// version recorded. Commands other than `attach` refuse to touch those.
pub fn mismatches(dir: &Path) -> anyhow::Result<Vec<String>> {
    let recorded = recorded(dir);
    let mut differ = Vec::new();
    for (name, map_type, key_size, value_size, max_entries) in object_maps()? {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(&path)?;
        let sizes_differ = info.key_size() != *key_size
            || info.value_size() != *value_size
            || (*map_type != RINGBUF && info.max_entries() != *max_entries);
        let version_differs = recorded.get(name).copied().unwrap_or(1) != map_version(name);
        if sizes_differ || version_differs {
            differ.push(name.clone());
        }
    }
    differ.sort();
    Ok(differ)
}
