//! What is attached where: links, programs and map fill levels, from the pins.

use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, MapInfo};
use filter_common::{FragmentKey, FragmentVerdict, ListEntry, SolicitedSlot, WatchedPorts, map};

use crate::{
    attach::link_info,
    iface::Interface,
    mapped,
    pins::{IfacePins, PinRoot, XdpMode},
};

#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub iface: String,
    /// False when pins remain but the interface is gone (deleted or moved).
    pub iface_present: bool,
    pub attached: bool,
    pub xdp_mode: Option<XdpMode>,
    pub xdp_link_id: Option<u32>,
    pub xdp_program_id: Option<u32>,
    /// "tcx" (a bpf_link) or "clsact" (netlink filter, kernels before 6.6).
    pub egress_hook: Option<&'static str>,
    pub egress_program_id: Option<u32>,
    pub pin_dir: String,
    pub maps: Vec<MapStatus>,
}

#[derive(Debug, serde::Serialize)]
pub struct MapStatus {
    pub name: &'static str,
    pub id: u32,
    pub kind: String,
    pub max_entries: u32,
    /// Entries in use: watched ports, live solicited queries, tracked
    /// fragmented datagrams, SYN bucket slots not full (charged by a recent
    /// SYN), allow/deny prefixes; the counter and config arrays are always full.
    pub entries: u32,
}

/// Status of every interface with pins in this network namespace, or of one.
pub fn status(root: &PinRoot, iface: Option<&str>) -> anyhow::Result<Vec<Status>> {
    let names = match iface {
        Some(name) => vec![name.to_owned()],
        None => root.ifaces()?,
    };
    names
        .iter()
        .map(|name| one(&root.iface(name)?, name))
        .collect()
}

fn one(pins: &IfacePins, name: &str) -> anyhow::Result<Status> {
    // Expired allow/deny entries no longer match; drop them before counting.
    if pins.map(map::DENY_V4).exists() {
        crate::lists::cleanup(pins)?;
    }
    let xdp = pins.find_xdp_link();
    let xdp_link = xdp.as_ref().map(|(_, path)| link_info(path)).transpose()?;
    let (egress_hook, egress_program_id) = if pins.tc_link().exists() {
        (Some("tcx"), Some(link_info(&pins.tc_link())?.program_id()))
    } else if pins.tc_prog().exists() {
        let info = aya::programs::ProgramInfo::from_pin(pins.tc_prog())?;
        (Some("clsact"), Some(info.id()))
    } else {
        (None, None)
    };
    let maps = map::ALL
        .iter()
        .filter(|name| pins.map(name).exists())
        .map(|&name| {
            let info = MapInfo::from_pin(pins.map(name))?;
            Ok(MapStatus {
                name,
                id: info.id(),
                kind: format!("{:?}", info.map_type()?),
                // The watched ports are one map value with a slot per port.
                max_entries: match name {
                    map::WATCHED_PORTS => WatchedPorts::PORTS as u32,
                    _ => info.max_entries(),
                },
                entries: entries_in_use(name, MapData::from_pin(pins.map(name))?)?
                    .unwrap_or(info.max_entries()),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Status {
        iface: name.to_owned(),
        iface_present: Interface::lookup(name).is_ok(),
        attached: xdp_link.is_some(),
        xdp_mode: xdp.map(|(mode, _)| mode),
        xdp_link_id: xdp_link.as_ref().map(|info| info.id()),
        xdp_program_id: xdp_link.as_ref().map(|info| info.program_id()),
        egress_hook,
        egress_program_id,
        pin_dir: pins.shown_dir().display().to_string(),
        maps,
    })
}

/// How many entries of a map are in use, for maps where that is not simply all.
fn entries_in_use(name: &str, data: MapData) -> anyhow::Result<Option<u32>> {
    let count = |n: usize| Some(u32::try_from(n).unwrap_or(u32::MAX));
    Ok(match name {
        map::WATCHED_PORTS => {
            let ports: Array<MapData, WatchedPorts> = Array::try_from(Map::from_map_data(data)?)?;
            let classes = Box::new(ports.get(&0, 0)?);
            count(classes.0.iter().filter(|&&class| class != 0).count())
        }
        map::SOLICITED => {
            let now = crate::clock::now_ns();
            let slots = mapped::snapshot::<SolicitedSlot>(&data)?;
            count(slots.iter().filter(|s| s.expires_ns > now).count())
        }
        map::LISTS_IN_USE => {
            let flags: Array<MapData, u32> = Array::try_from(Map::from_map_data(data)?)?;
            count(
                flags
                    .iter()
                    .filter(|flag| matches!(flag, Ok(f) if *f != 0))
                    .count(),
            )
        }
        map::SOLICITED_LATEST => {
            let now = crate::clock::now_ns();
            let buckets = mapped::snapshot::<u64>(&data)?;
            count(buckets.iter().filter(|&&latest| latest > now).count())
        }
        map::FRAGMENTS => {
            let fragments: HashMap<MapData, FragmentKey, FragmentVerdict> =
                HashMap::try_from(Map::from_map_data(data)?)?;
            count(fragments.keys().filter(Result::is_ok).count())
        }
        map::SYN_SOURCES | map::SYN_PREFIXES | map::SYN_GLOBAL => {
            count(crate::syn::buckets_in_use(&data, crate::clock::now_ns())?)
        }
        map::ALLOW_V4 | map::DENY_V4 => {
            let trie: LpmTrie<MapData, [u8; 4], ListEntry> =
                LpmTrie::try_from(Map::from_map_data(data)?)?;
            count(trie.keys().filter(Result::is_ok).count())
        }
        map::ALLOW_V6 | map::DENY_V6 => {
            let trie: LpmTrie<MapData, [u8; 16], ListEntry> =
                LpmTrie::try_from(Map::from_map_data(data)?)?;
            count(trie.keys().filter(Result::is_ok).count())
        }
        _ => None,
    })
}

/// The human form of one status.
pub fn describe(status: &Status) -> String {
    let opt = |v: Option<u32>| v.map_or("-".to_owned(), |v| v.to_string());
    let mut out = format!("{}: ", status.iface);
    if !status.attached {
        out.push_str("not attached\n");
        return out;
    }
    out.push_str(&format!(
        "attached, XDP {} mode (link {}, program {}), egress {} (program {})\n",
        status.xdp_mode.map_or("?", XdpMode::name),
        opt(status.xdp_link_id),
        opt(status.xdp_program_id),
        status.egress_hook.unwrap_or("missing"),
        opt(status.egress_program_id),
    ));
    if !status.iface_present {
        out.push_str(
            "  WARNING: the interface is gone; `filter-ctl detach` removes the leftover pins\n",
        );
    }
    out.push_str(&format!("  pins: {}\n", status.pin_dir));
    out.push_str(&format!(
        "  {:<16} {:>6} {:<12} {:>9} {:>11}\n",
        "map", "id", "type", "in use", "max"
    ));
    for m in &status.maps {
        out.push_str(&format!(
            "  {:<16} {:>6} {:<12} {:>9} {:>11}\n",
            m.name, m.id, m.kind, m.entries, m.max_entries
        ));
    }
    out
}
