//! Loading the programs: onto the pinned maps whose layout this build
//! shares, with the others made anew (unpinned until they hold their
//! state), and the slip program put where the ingress program's tail call
//! finds it. A refusal by the verifier is explained by [`super::verifier`].

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{MapError, ProgramArray},
    programs::Xdp,
};
use filter_common::{link_layer, map, program};
use filter_ctl_api::report::LinkLayer;

use super::verifier::rejected;
use crate::{EBPF_OBJECT, hook, layout, pins::IfacePins};

/// A loaded object and the maps it made anew (the others are the pinned ones).
pub(super) struct Loaded {
    pub ebpf: Ebpf,
    pub fresh: Vec<&'static str>,
}

/// Loads the programs to parse frames that start with `layer`. Every
/// pinned map whose layout this build shares is reused as it is; the others
/// are made anew, unpinned, so that nothing is pinned before it holds its
/// settings.
pub(super) fn load(pins: &IfacePins, layer: LinkLayer) -> anyhow::Result<Loaded> {
    let recorded = layout::recorded(pins.dir());
    let mut reuse: Vec<&'static str> = map::ALL
        .iter()
        .copied()
        .filter(|name| layout::version_matches(pins.dir(), &recorded, name))
        .collect();
    let map_paths: Vec<(&'static str, PathBuf)> = map::ALL
        .iter()
        .map(|name| (*name, pins.map(name)))
        .collect();
    let mut ebpf = loop {
        let mut loader = loader(layer);
        for (name, path) in &map_paths {
            if reuse.contains(name) {
                loader.map_pin_path(name, path.as_path());
            }
        }
        match loader.load(EBPF_OBJECT) {
            Ok(ebpf) => break ebpf,
            // Pinned with another type, size or flags: made anew.
            Err(EbpfError::MapError(MapError::IncompatiblePinnedMap { name, .. }))
                if reuse.contains(&name.as_str()) =>
            {
                reuse.retain(|reused| *reused != name);
            }
            Err(err) => return Err(err).context("loading the eBPF object"),
        }
    };
    hook::xdp::program(&mut ebpf)?
        .load()
        .map_err(|err| rejected("XDP program", err))?;
    hook::tc::program(&mut ebpf)?
        .load()
        .map_err(|err| rejected("TC egress program", err))?;
    install_slip(&mut ebpf)?;
    let fresh = map::ALL
        .iter()
        .copied()
        .filter(|name| !reuse.contains(name))
        .collect();
    Ok(Loaded { ebpf, fresh })
}

/// A loader of the object whose programs parse frames that start with
/// `layer`: the constant `filter_common::link_layer::GLOBAL` in its
/// read-only data, frozen at load.
pub fn loader<'a>(layer: LinkLayer) -> EbpfLoader<'a> {
    let value: &'static u8 = match layer {
        LinkLayer::Ethernet => &link_layer::ETHERNET,
        LinkLayer::Ip => &link_layer::IP,
    };
    let mut loader = EbpfLoader::new();
    loader.override_global(link_layer::GLOBAL, value, true);
    loader
}

/// Loads the slip program (the DNS truncated reply, docs/query-limits.md)
/// and puts it where the ingress program's tail call finds it. A pinned
/// SLIP_PROGRAM (replace, upgrade) gets it at once: the running ingress
/// program then enters the new slip program, which reads the plan the
/// running one wrote where SLIP_PLAN is reused, and finds an empty plan
/// (and drops the query, as without a slip) where SLIP_PLAN is made anew.
pub fn install_slip(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let slip: &mut Xdp = ebpf
        .program_mut(program::SLIP)
        .ok_or_else(|| anyhow!("program {} missing from the eBPF object", program::SLIP))?
        .try_into()?;
    slip.load()
        .map_err(|err| rejected("XDP slip program", err))?;
    let fd = slip.fd()?.try_clone()?;
    let mut slots = ProgramArray::try_from(
        ebpf.map_mut(map::SLIP_PROGRAM)
            .ok_or_else(|| anyhow!("map {} missing from the eBPF object", map::SLIP_PROGRAM))?,
    )?;
    slots
        .set(0, &fd, 0)
        .context("installing the slip program for the tail call")?;
    Ok(())
}
