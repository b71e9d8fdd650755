//! What is attached where: links, programs and map fill levels, read from
//! the pins into [`Status`] (what `status --json` prints). Reads only.

use std::fmt::Write as _;

use aya::{
    Pod,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapInfo},
};
use filter_common::{
    FragmentKey, FragmentVerdict, ListEntry, SolicitedSlot, SynBucket, WatchedPorts,
    conn::{ConnCount, ConnLimits, ConnOwner, ConnSlot},
    handshake::{HandshakeSlot, ServicePorts},
    map,
    report::{EgressHook, LinkState, MapStatus, Status},
};

use crate::{
    attach::link_info,
    clock::now_ns,
    health::{Health, health},
    iface::Interface,
    lists::live_entries,
    mapped,
    pins::{IfacePins, PinRoot},
};

/// Status of every interface with pins in this network namespace, or of one.
pub fn status(root: &PinRoot, iface: Option<&str>) -> anyhow::Result<Vec<Status>> {
    let names = match iface {
        Some(name) => vec![name.to_owned()],
        None => root.ifaces()?,
    };
    names.iter().map(|name| one(&root.iface(name)?)).collect()
}

fn one(pins: &IfacePins) -> anyhow::Result<Status> {
    let xdp = pins.find_xdp_link();
    let xdp_link = xdp.as_ref().map(|(_, path)| link_info(path)).transpose()?;
    let (egress_hook, egress_program_id) = if pins.tc_link().exists() {
        (
            Some(EgressHook::Tcx),
            Some(link_info(&pins.tc_link())?.program_id()),
        )
    } else if pins.tc_prog().exists() {
        let info = aya::programs::ProgramInfo::from_pin(pins.tc_prog())?;
        (Some(EgressHook::Clsact), Some(info.id()))
    } else {
        (None, None)
    };
    let health = health(pins)?;
    let maps: Vec<MapStatus> = map::ALL
        .iter()
        .filter(|name| pins.map(name).exists())
        .map(|&name| {
            let info = MapInfo::from_pin(pins.map(name))?;
            Ok(MapStatus {
                name: name.to_owned(),
                id: info.id(),
                kind: format!("{:?}", info.map_type()?),
                // These are one map value with a slot per port.
                max_entries: match name {
                    map::WATCHED_PORTS => WatchedPorts::PORTS as u32,
                    map::SERVICE_PORTS => ServicePorts::PORTS as u32,
                    map::CONN_LIMITS => ConnLimits::PORTS as u32,
                    _ => info.max_entries(),
                },
                entries: entries_in_use(name, MapData::from_pin(pins.map(name))?)?
                    .unwrap_or(info.max_entries()),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let problems = problems(pins, &health, &maps);
    Ok(Status {
        iface: pins.iface().to_owned(),
        iface_present: Interface::lookup(pins.iface()).is_ok(),
        attached: health.is_attached(),
        xdp_link: health.xdp,
        egress_link: health.egress,
        problems,
        xdp_mode: xdp.map(|(mode, _)| mode),
        xdp_link_id: xdp_link.as_ref().map(|info| info.id()),
        xdp_program_id: xdp_link.as_ref().map(|info| info.program_id()),
        egress_hook,
        egress_program_id,
        pin_dir: pins.shown_dir().to_owned(),
        maps,
    })
}

/// What is wrong with the filter pinned at `pins`, each with the command
/// that fixes it.
fn problems(pins: &IfacePins, health: &Health, maps: &[MapStatus]) -> Vec<String> {
    let iface = pins.iface();
    let mut problems = Vec::new();
    match &health.xdp {
        LinkState::Severed => problems.push(format!(
            "{iface} was deleted, so the filter's links are severed: its programs run nowhere. \
             `filter-ctl attach --iface {iface}` attaches it again once {iface} exists (settings, \
             lists and counters are kept); `filter-ctl detach --iface {iface}` removes the pins"
        )),
        LinkState::Elsewhere {
            name: Some(name), ..
        } => problems.push(format!(
            "{iface} was renamed to {name}: the filter still runs there. Rename it back \
             (`ip link set dev {name} name {iface}`), or `filter-ctl detach --iface {iface}` \
             and attach to {name}"
        )),
        LinkState::Elsewhere {
            ifindex,
            name: None,
        } => problems.push(format!(
            "the XDP link is attached to interface index {ifindex}, which is not {iface}; \
             `filter-ctl detach --iface {iface}` removes it"
        )),
        LinkState::Missing if health.egress != LinkState::Missing => problems.push(format!(
            "an attach was interrupted: egress is attached without XDP (nothing is filtered); \
             `filter-ctl attach --iface {iface}` completes it, `filter-ctl detach --iface {iface}` \
             removes it"
        )),
        LinkState::Missing | LinkState::Attached => {}
    }
    if health.xdp.is_attached() && !health.egress.is_attached() {
        problems.push(format!(
            "XDP is attached but egress is {}: queries are not recorded, so their answers are \
             dropped; `filter-ctl attach --iface {iface}` attaches it again",
            health.egress.describe()
        ));
    }
    let missing: Vec<&str> = map::ALL
        .iter()
        .copied()
        .filter(|name| !maps.iter().any(|m| m.name == *name))
        .collect();
    if health.xdp != LinkState::Missing && !missing.is_empty() {
        problems.push(format!(
            "map pins missing: {}; `filter-ctl attach --iface {iface}` pins them again",
            missing.join(", ")
        ));
    }
    problems
}

/// How many entries of a map are in use, for maps where that is not simply all.
fn entries_in_use(name: &str, data: MapData) -> anyhow::Result<Option<u32>> {
    let count = |n: usize| Some(u32::try_from(n).unwrap_or(u32::MAX));
    let now = now_ns();
    Ok(match name {
        map::WATCHED_PORTS => {
            let ports: Array<MapData, WatchedPorts> = Array::try_from(Map::from_map_data(data)?)?;
            let classes = Box::new(ports.get(&0, 0)?);
            count(classes.0.iter().filter(|&&class| class != 0).count())
        }
        map::SOLICITED => {
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
            let buckets = mapped::snapshot::<u64>(&data)?;
            count(buckets.iter().filter(|&&latest| latest > now).count())
        }
        map::FRAGMENTS => {
            let fragments: HashMap<MapData, FragmentKey, FragmentVerdict> =
                HashMap::try_from(Map::from_map_data(data)?)?;
            count(fragments.keys().filter(Result::is_ok).count())
        }
        // A SYN bucket is in use while it is not full: charged by a SYN
        // within the last burst's worth of refill.
        map::SYN_SOURCES | map::SYN_PREFIXES | map::SYN_GLOBAL => {
            let buckets = mapped::snapshot::<SynBucket>(&data)?;
            count(buckets.iter().filter(|b| b.tat_ns > now).count())
        }
        map::SERVICE_PORTS => {
            let ports: Array<MapData, ServicePorts> = Array::try_from(Map::from_map_data(data)?)?;
            let marked = Box::new(ports.get(&0, 0)?);
            count(marked.marked().count())
        }
        map::CONN_LIMITS => {
            let limits: Array<MapData, ConnLimits> = Array::try_from(Map::from_map_data(data)?)?;
            let limits = Box::new(limits.get(&0, 0)?);
            count(limits.0.iter().filter(|&&max| max != 0).count())
        }
        map::HANDSHAKES => {
            let slots = mapped::snapshot::<HandshakeSlot>(&data)?;
            count(slots.iter().filter(|s| s.expires_ns > now).count())
        }
        map::HANDSHAKES_LATEST => {
            let buckets = mapped::snapshot::<u64>(&data)?;
            count(buckets.iter().filter(|&&latest| latest > now).count())
        }
        // Counters with a unit in use: charged by an unanswered SYN (the
        // half-open budgets) or a handshake in flight (connection limits).
        map::HALFOPEN_SOURCES | map::HALFOPEN_PREFIXES | map::CONN_PENDING => {
            let counters = mapped::snapshot::<u64>(&data)?;
            count(counters.iter().filter(|&&tat| tat > now).count())
        }
        // Connections tracked and not ended (idle ones included until their
        // slot is taken).
        map::CONNECTIONS => {
            let slots = mapped::snapshot::<ConnSlot>(&data)?;
            count(slots.iter().filter(|s| s.window != 0).count())
        }
        map::CONN_COUNTS => {
            let counts: HashMap<MapData, ConnOwner, ConnCount> =
                HashMap::try_from(Map::from_map_data(data)?)?;
            count(counts.keys().filter(Result::is_ok).count())
        }
        map::ALLOW_V4 | map::DENY_V4 => count(live::<[u8; 4]>(data, now)?),
        map::ALLOW_V6 | map::DENY_V6 => count(live::<[u8; 16]>(data, now)?),
        _ => None,
    })
}

/// Entries of a list trie that have not expired (expired ones stay until a
/// list change removes them, but no longer match).
fn live<K: Pod>(data: MapData, now: u64) -> anyhow::Result<usize> {
    let trie: LpmTrie<MapData, K, ListEntry> = LpmTrie::try_from(Map::from_map_data(data)?)?;
    Ok(live_entries(&trie, now))
}

/// The human form of one status.
pub fn describe(status: &Status) -> String {
    let opt = |v: Option<u32>| v.map_or("-".to_owned(), |v| v.to_string());
    let mut out = format!("{}: ", status.iface);
    let problems = |out: &mut String| {
        for problem in &status.problems {
            let _ = writeln!(out, "  PROBLEM: {problem}");
        }
    };
    if status.xdp_link == LinkState::Missing {
        out.push_str("not attached\n");
        problems(&mut out);
        return out;
    }
    let _ = writeln!(
        out,
        "{}, XDP {} mode (link {}, program {}), egress {} (program {})",
        if status.attached {
            "attached".to_owned()
        } else {
            format!(
                "NOT attached (XDP link {}, egress {})",
                status.xdp_link.describe(),
                status.egress_link.describe()
            )
        },
        status.xdp_mode.map_or("?", |mode| mode.name()),
        opt(status.xdp_link_id),
        opt(status.xdp_program_id),
        status.egress_hook.map_or("missing", |hook| hook.name()),
        opt(status.egress_program_id),
    );
    problems(&mut out);
    let _ = writeln!(out, "  pins: {}", status.pin_dir.display());
    let row = |out: &mut String, cells: [&str; 5]| {
        let [name, id, kind, in_use, max] = cells;
        let _ = writeln!(out, "  {name:<16} {id:>6} {kind:<12} {in_use:>9} {max:>11}");
    };
    row(&mut out, ["map", "id", "type", "in use", "max"]);
    for m in &status.maps {
        let (id, in_use, max) = (
            m.id.to_string(),
            m.entries.to_string(),
            m.max_entries.to_string(),
        );
        row(&mut out, [&m.name, &id, &m.kind, &in_use, &max]);
    }
    out
}
