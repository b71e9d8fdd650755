//! Carrying the state of a map over to a new map of another layout, when an
//! upgrade changes it (see [`crate::layout`]).
//!
//! Fields are only ever appended (filter_common::layout), so an old value
//! is the start of the new one: each value is copied as far as both reach,
//! and the rest takes the new build's default (the default `Config` for the
//! settings, zero elsewhere). What is carried:
//! - arrays indexed by something stable (settings, ports, counters, list
//!   flags): element by element; the counters' monitor-mode half moves with
//!   the number of reasons;
//! - arrays indexed by a hash slot (the solicited table, SYN buckets): only
//!   when their size is unchanged, since a slot's place depends on it;
//! - hash maps and LPM tries (fragments, lists): entry by entry, as many as
//!   the new map holds;
//! - anything else (ring buffers, the slip's program array, filled at
//!   load, and its scratch plan): nothing.

use anyhow::Context as _;
use aya::maps::{MapData, MapType};
use filter_common::{Config, map};

use crate::rawmap::RawMap;

/// What was carried over from one map.
#[derive(Debug)]
pub struct Carried {
    pub map: String,
    /// Elements or entries copied.
    pub entries: usize,
    /// Why some or all were not, if so.
    pub lost: Option<String>,
    /// What the new build changed in what it carried, if anything.
    pub changed: Option<String>,
}

/// Arrays whose index is a hash slot: copied only at an unchanged size.
const HASHED_ARRAYS: [&str; 12] = [
    map::SOLICITED,
    map::SOLICITED_LATEST,
    map::SYN_SOURCES,
    map::SYN_PREFIXES,
    map::HANDSHAKES,
    map::HANDSHAKES_LATEST,
    map::HALFOPEN_SOURCES,
    map::HALFOPEN_PREFIXES,
    map::CONNECTIONS,
    map::CONN_PENDING,
    map::QUERY_SOURCES,
    map::QUERY_PREFIXES,
];

/// Copies what `old` holds into `new`, which was just made for the map
/// `name` (same key size and kind, another layout).
pub fn carry(name: &str, old: &MapData, new: &MapData) -> anyhow::Result<Carried> {
    let (old_info, new_info) = (old.info()?, new.info()?);
    let (old_type, new_type) = (old_info.map_type()?, new_info.map_type()?);
    let done = |entries, lost: Option<String>| Carried {
        map: name.to_owned(),
        entries,
        lost,
        changed: None,
    };
    if name == map::SLIP_PLAN {
        // Scratch of the packet in flight: a plan carried over would be
        // another packet's.
        return Ok(done(0, None));
    }
    if old_type != new_type || old_info.key_size() != new_info.key_size() {
        return Ok(done(
            0,
            Some(format!(
                "{name} changed kind or key ({old_type:?}, {}-byte keys -> {new_type:?}, {}-byte keys)",
                old_info.key_size(),
                new_info.key_size()
            )),
        ));
    }
    let per_cpu = matches!(
        new_type,
        MapType::PerCpuArray | MapType::PerCpuHash | MapType::LruPerCpuHash
    );
    let (from, to) = (RawMap::new(old, per_cpu)?, RawMap::new(new, per_cpu)?);
    let default = default_value(name, to.value_size);
    let convert = |value: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(to.stride() * to.copies);
        for copy in 0..to.copies {
            let start = copy * from.stride();
            let old = &value[start..start + from.value_size];
            let mut new = default.clone();
            let shared = old.len().min(new.len());
            new[..shared].copy_from_slice(&old[..shared]);
            new.resize(to.stride(), 0);
            out.extend_from_slice(&new);
        }
        out
    };
    match new_type {
        MapType::Array | MapType::PerCpuArray => {
            let (old_len, new_len) = (old_info.max_entries(), new_info.max_entries());
            if old_len != new_len && HASHED_ARRAYS.contains(&name) {
                return Ok(done(
                    0,
                    Some(format!(
                        "{name} changed size ({old_len} -> {new_len} slots): its entries hash elsewhere"
                    )),
                ));
            }
            let pairs: Vec<(u32, u32)> = if name == map::STATS {
                // Counters, then "would drop" counters: each half follows
                // the number of reasons.
                let (old_half, new_half) = (old_len / 2, new_len / 2);
                (0..old_half.min(new_half))
                    .flat_map(|i| [(i, i), (old_half + i, new_half + i)])
                    .collect()
            } else {
                (0..old_len.min(new_len)).map(|i| (i, i)).collect()
            };
            for (from_index, to_index) in &pairs {
                if let Some(value) = from.get(&from_index.to_ne_bytes())? {
                    to.set(&to_index.to_ne_bytes(), &convert(&value))
                        .with_context(|| format!("copying {name}[{from_index}]"))?;
                }
            }
            let lost = (new_len < old_len)
                .then(|| format!("{name} shrank from {old_len} to {new_len} elements"));
            Ok(done(pairs.len(), lost))
        }
        MapType::Hash
        | MapType::LruHash
        | MapType::PerCpuHash
        | MapType::LruPerCpuHash
        | MapType::LpmTrie => {
            let mut copied = 0;
            for key in from.keys()? {
                let Some(value) = from.get(&key)? else {
                    continue; // removed meanwhile
                };
                if let Err(err) = to.set(&key, &convert(&value)) {
                    return Ok(done(
                        copied,
                        Some(format!(
                            "{name}: the new map took {copied} entries ({err:#})"
                        )),
                    ));
                }
                copied += 1;
            }
            Ok(done(copied, None))
        }
        other => Ok(done(
            0,
            Some(format!("{name} ({other:?}) holds nothing to carry")),
        )),
    }
}

/// The value a new field takes when an old value does not reach it: the
/// default settings for the config, zero elsewhere.
fn default_value(name: &str, size: usize) -> Vec<u8> {
    let mut value = vec![0u8; size];
    if name == map::CONFIG {
        // SAFETY: Config is #[repr(C)] with explicit padding fields, so all
        // its bytes are initialised; we only read them.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&Config::DEFAULT as *const Config).cast::<u8>(),
                size_of::<Config>(),
            )
        };
        let shared = size.min(bytes.len());
        value[..shared].copy_from_slice(&bytes[..shared]);
    }
    value
}
