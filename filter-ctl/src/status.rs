//! What is attached where: links, programs and map fill levels, read from
//! the pins into [`Status`] (what `status --json` prints). Reads only.

use std::fmt::Write as _;

use aya::{
    Pod,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapInfo},
};
use filter_common::{
    Config, FragmentKey, FragmentVerdict, ListEntry, SolicitedSlot, SynBucket, WatchedPorts,
    conn::{ConnCount, ConnLimits, ConnOwner, ConnSlot},
    handshake::{HandshakeSlot, ServicePorts},
    lists::{COPY_SLOTS, in_use_slot},
    map,
};
use filter_ctl_api::report::{EgressHook, LinkLayer, LinkState, MapStatus, PinnedFilter, Status};

use crate::{
    attach::recovery::map_problems,
    clock::now_ns,
    health::{Health, health},
    hook::links::link_info,
    iface::Interface,
    kernel::link_ifindex,
    layout,
    lists::{List, live_entries},
    pins::{self, IfacePins, PinRoot},
    rawmap,
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
    // The config says which copy of the double-buffered maps is live.
    let config = pins
        .open_map(map::CONFIG)
        .ok()
        .and_then(|config| Array::<MapData, Config>::try_from(config).ok())
        .and_then(|config| config.get(&0, 0).ok());
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
                // Unknown for a map of another build's layout.
                entries: entries_in_use(name, MapData::from_pin(pins.map(name))?, config.as_ref())
                    .ok()
                    .flatten(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let mut problems = problems(pins, &health);
    if health.xdp != LinkState::Missing {
        problems.extend(map_problems(pins)?);
        let differ = layout::mismatches(pins.dir())?;
        if !differ.is_empty() {
            problems.push(format!(
                "attached by a build whose maps differ from this one's ({}): only `attach` with \
                 this build (an upgrade, state kept) or the other build can change it",
                differ.join(", ")
            ));
        }
    }
    let iface = Interface::lookup(pins.iface()).ok();
    Ok(Status {
        iface: pins.iface().to_owned(),
        iface_present: iface.is_some(),
        attached: health.is_attached(),
        xdp_link: health.xdp,
        egress_link: health.egress,
        problems,
        xdp_mode: xdp.map(|(mode, _)| mode),
        // The interface's, which `attach` loaded the programs for.
        link_layer: iface
            .and_then(|iface| iface.link().ok())
            .map(|link| link.layer),
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
fn problems(pins: &IfacePins, health: &Health) -> Vec<String> {
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
    problems
}

/// How many entries of a map are in use, for the maps where that means
/// something (see `MapStatus::entries`); `None` for the others. Of the
/// double-buffered maps, only the live copy counts (per `config`).
fn entries_in_use(
    name: &str,
    data: MapData,
    config: Option<&Config>,
) -> anyhow::Result<Option<u32>> {
    let count = |n: usize| Some(u32::try_from(n).unwrap_or(u32::MAX));
    let now = now_ns();
    let live_copy = |list: List, copy: u32| config.is_some_and(|c| list.live_copy(c) == copy);
    Ok(match name {
        map::WATCHED_PORTS => {
            let ports: Array<MapData, WatchedPorts> = Array::try_from(Map::from_map_data(data)?)?;
            let slot = config.map_or(0, Config::ports_slot);
            let classes = Box::new(ports.get(&slot, 0)?);
            count(classes.0.iter().filter(|&&class| class != 0).count())
        }
        map::SOLICITED => {
            let slots = rawmap::snapshot::<SolicitedSlot>(&data)?;
            count(slots.iter().filter(|s| s.expires_ns > now).count())
        }
        map::LISTS_IN_USE => {
            let flags: Array<MapData, u32> = Array::try_from(Map::from_map_data(data)?)?;
            let flagged = |slot: u32| flags.get(&slot, 0).is_ok_and(|flag| flag != 0);
            let live = (0..COPY_SLOTS).filter(|slot| {
                let list = if *slot < 2 { List::Allow } else { List::Deny };
                let copy = config.map_or(0, |config| list.live_copy(config));
                flagged(in_use_slot(*slot, copy))
            });
            count(live.count())
        }
        map::SOLICITED_LATEST => {
            let buckets = rawmap::snapshot::<u64>(&data)?;
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
            let buckets = rawmap::snapshot::<SynBucket>(&data)?;
            count(buckets.iter().filter(|b| b.tat_ns > now).count())
        }
        map::ALLOW_V4
        | map::ALLOW_V6
        | map::ALLOW_V4_B
        | map::ALLOW_V6_B
        | map::DENY_V4
        | map::DENY_V6
        | map::DENY_V4_B
        | map::DENY_V6_B => {
            let list = if name.starts_with("ALLOW") {
                List::Allow
            } else {
                List::Deny
            };
            let copy = u32::from(name.ends_with("_B"));
            if !live_copy(list, copy) {
                // The spare copy: nothing there matches.
                count(0)
            } else if name.contains("V4") {
                count(live::<[u8; 4]>(data, now)?)
            } else {
                count(live::<[u8; 16]>(data, now)?)
            }
        }
        map::SERVICE_PORTS => {
            let ports: Array<MapData, ServicePorts> = Array::try_from(Map::from_map_data(data)?)?;
            let marked = Box::new(ports.get(&0, 0)?);
            count(marked.marked().count())
        }
        map::CONN_LIMITS => {
            let limits: Array<MapData, ConnLimits> = Array::try_from(Map::from_map_data(data)?)?;
            let slot = config.map_or(0, Config::ports_slot);
            let limits = Box::new(limits.get(&slot, 0)?);
            count(limits.0.iter().filter(|&&max| max != 0).count())
        }
        map::HANDSHAKES => {
            let slots = rawmap::snapshot::<HandshakeSlot>(&data)?;
            count(slots.iter().filter(|s| s.expires_ns > now).count())
        }
        map::HANDSHAKES_LATEST => {
            let buckets = rawmap::snapshot::<u64>(&data)?;
            count(buckets.iter().filter(|&&latest| latest > now).count())
        }
        // Counters with a unit in use: charged by an unanswered SYN (the
        // half-open budgets) or a handshake in flight (connection limits);
        // query limit buckets not full again yet (a recent request).
        map::HALFOPEN_SOURCES
        | map::HALFOPEN_PREFIXES
        | map::CONN_PENDING
        | map::QUERY_SOURCES
        | map::QUERY_PREFIXES
        | map::QUERY_GLOBAL => {
            let counters = rawmap::snapshot::<u64>(&data)?;
            count(counters.iter().filter(|&&tat| tat > now).count())
        }
        // Connections tracked and not ended (idle ones included until their
        // slot is taken).
        map::CONNECTIONS => {
            let slots = rawmap::snapshot::<ConnSlot>(&data)?;
            count(slots.iter().filter(|s| s.window != 0).count())
        }
        map::CONN_COUNTS => {
            let counts: HashMap<MapData, ConnOwner, ConnCount> =
                HashMap::try_from(Map::from_map_data(data)?)?;
            count(counts.keys().filter(Result::is_ok).count())
        }
        _ => None,
    })
}

/// Entries of a list trie that have not expired (expired ones stay until a
/// list change removes them, but no longer match).
fn live<K: Pod>(data: MapData, now: u64) -> anyhow::Result<usize> {
    let trie: LpmTrie<MapData, K, ListEntry> = LpmTrie::try_from(Map::from_map_data(data)?)?;
    Ok(live_entries(&trie, now))
}

/// Every filter pinned under the root, in every network namespace, and
/// whether its namespace still exists (`status --all`).
pub fn everywhere(root: &PinRoot) -> anyhow::Result<Vec<PinnedFilter>> {
    let here = pins::this_netns()?;
    root.everywhere()?
        .into_iter()
        .map(|(netns, pins)| {
            let link_ifindex = pins
                .find_xdp_link()
                .and_then(|(_, link)| link_ifindex(&link).ok());
            Ok(PinnedFilter {
                netns,
                this_netns: netns == here,
                netns_exists: netns == here || pins::netns_exists(netns),
                iface: pins.iface().to_owned(),
                xdp_ifindex: link_ifindex,
                pin_dir: pins.shown_dir().to_owned(),
            })
        })
        .collect()
}

/// Removes the pins of `pinned` (`cleanup`), under its lock.
pub fn remove_pinned(root: &PinRoot, pinned: &PinnedFilter) -> anyhow::Result<()> {
    let pins = root
        .everywhere()?
        .into_iter()
        .find(|(netns, pins)| *netns == pinned.netns && pins.iface() == pinned.iface)
        .map(|(_, pins)| pins);
    let Some(pins) = pins else {
        return Ok(()); // removed meanwhile
    };
    let Some(_lock) = pins.lock(false)? else {
        return Ok(());
    };
    pins.staging().remove_all()?;
    pins.remove_all()
}

/// One line of `status --all`.
pub fn describe_pinned(pinned: &PinnedFilter) -> String {
    let place = if pinned.this_netns {
        "this network namespace".to_owned()
    } else if pinned.netns_exists {
        format!("network namespace {}", pinned.netns)
    } else {
        format!(
            "network namespace {}, which is GONE (`filter-ctl cleanup` removes the pins)",
            pinned.netns
        )
    };
    let link = match pinned.xdp_ifindex {
        None => "no XDP link".to_owned(),
        Some(0) => "XDP link severed".to_owned(),
        Some(index) => format!("XDP link on ifindex {index}"),
    };
    format!(
        "{}: {place}; {link}; pins {}\n",
        pinned.iface,
        pinned.pin_dir.display()
    )
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
        "{}, XDP {} mode{} (link {}, program {}), egress {} (program {})",
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
        match status.link_layer {
            Some(LinkLayer::Ip) => ", IP link layer (no Ethernet header)",
            _ => "",
        },
        opt(status.xdp_link_id),
        opt(status.xdp_program_id),
        status.egress_hook.map_or("missing", |hook| hook.name()),
        opt(status.egress_program_id),
    );
    problems(&mut out);
    let _ = writeln!(out, "  pins: {}", status.pin_dir.display());
    let rows: Vec<[String; 5]> = status
        .maps
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.id.to_string(),
                m.kind.clone(),
                m.entries.map_or("-".to_owned(), |n| n.to_string()),
                m.max_entries.to_string(),
            ]
        })
        .collect();
    out += &table(
        &["map", "id", "type", "in use", "max"],
        &[false, true, false, true, true],
        &rows,
    );
    out
}

/// Rows under a header, each column as wide as its widest cell (numbers
/// right-aligned), indented by two spaces.
pub fn table<const N: usize>(
    header: &[&str; N],
    right: &[bool; N],
    rows: &[[String; N]],
) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .zip(right)
            .map(|((cell, width), right)| {
                if *right {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use filter_ctl_api::report::{LinkState, MapStatus, Status};

    use super::describe;

    #[test]
    fn maps_line_up_and_full_arrays_show_no_count() {
        let map = |name: &str, entries| MapStatus {
            name: name.into(),
            id: 12345,
            kind: "PerCpuArray".into(),
            max_entries: 262144,
            entries,
        };
        let status = Status {
            iface: "wan0".into(),
            iface_present: true,
            attached: true,
            xdp_link: LinkState::Attached,
            egress_link: LinkState::Attached,
            problems: Vec::new(),
            xdp_mode: None,
            link_layer: None,
            xdp_link_id: Some(1),
            xdp_program_id: Some(2),
            egress_hook: None,
            egress_program_id: Some(3),
            pin_dir: "/sys/fs/bpf/wan-filter/net1/wan0".into(),
            maps: vec![
                map("STATS", None),
                map("HALFOPEN_PREFIXES", Some(17)),
                map("DROP_EVENT_COUNTS", None),
            ],
        };
        let text = describe(&status);
        let rows: Vec<&str> = text.lines().skip_while(|l| !l.contains("in use")).collect();
        assert_eq!(rows.len(), 4, "{text}");
        let ends: Vec<usize> = rows.iter().map(|row| row.len()).collect();
        assert!(ends.iter().all(|&end| end == ends[0]), "{text}");
        let stats_row = rows[1].split_whitespace().collect::<Vec<_>>();
        assert_eq!(stats_row[3], "-", "{text}");
        assert!(rows[2].contains(" 17 "), "{text}");
    }
}
