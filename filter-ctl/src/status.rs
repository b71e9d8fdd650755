//! What is attached where: links, programs and map fill levels, from the pins.

use aya::maps::MapInfo;
use filter_common::map;

use crate::{
    attach::link_info,
    iface::Interface,
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
    /// Entries in use; arrays are always full.
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
                max_entries: info.max_entries(),
                entries: info.max_entries(),
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
        "  {:<12} {:>6} {:<12} {:>9} {:>11}\n",
        "map", "id", "type", "entries", "max"
    ));
    for m in &status.maps {
        out.push_str(&format!(
            "  {:<12} {:>6} {:<12} {:>9} {:>11}\n",
            m.name, m.id, m.kind, m.entries, m.max_entries
        ));
    }
    out
}
