//! Which build's programs are attached: a record pinned with the maps
//! (`BUILD`, a symlink whose target names filter-ctl's version and a hash
//! of its embedded eBPF object), written by every attach once the programs
//! are in place. After an upgrade of the package, a restarted daemon adopts
//! the programs the old binary attached; comparing the record with this
//! binary's tells it (and `attach`) so, and what swaps the new programs in
//! without a gap (`filter-ctl attach`: bpf_link update, maps kept or
//! upgraded).
//!
//! Killed after the programs were swapped and before the record, an attach
//! leaves the old record: the next check says the programs differ, and an
//! attach that swaps in the same programs again is harmless.

use std::{fs, io, os::unix::fs::symlink, path::Path};

use anyhow::Context as _;

use crate::pins::IfacePins;

/// The record's name in the pin directory.
pub const BUILD_PIN: &str = "BUILD";

/// This binary's build: `filter-ctl 0.1.0, eBPF object 5f0c...` (FNV-1a
/// of the embedded object: the same source and toolchain give the same).
pub fn this() -> String {
    let hash = crate::EBPF_OBJECT
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!(
        "filter-ctl {}, eBPF object {hash:016x}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The build recorded in the pin directory `dir`, if any.
pub fn recorded(dir: &Path) -> Option<String> {
    fs::read_link(dir.join(BUILD_PIN))
        .ok()
        .map(|target| target.to_string_lossy().into_owned())
}

/// Records this build as the one whose programs run, replacing any record
/// in one rename.
pub fn record(dir: &Path) -> anyhow::Result<()> {
    let fresh = dir.join(format!("{BUILD_PIN}:new"));
    match fs::remove_file(&fresh) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err.into()),
        _ => {}
    }
    symlink(this(), &fresh).with_context(|| format!("writing {}", fresh.display()))?;
    fs::rename(&fresh, dir.join(BUILD_PIN))
        .with_context(|| format!("writing {}", dir.join(BUILD_PIN).display()))
}

/// When the programs attached at `pins` are not this binary's: what runs,
/// what this is, and the command that swaps this binary's in.
pub fn other_programs(pins: &IfacePins) -> Option<String> {
    let running = recorded(pins.dir());
    let this = this();
    if running.as_deref() == Some(this.as_str()) {
        return None;
    }
    // No record: a build from before records, or an upgrade that a killed
    // attach left and a later command finished (the record comes last).
    let running = running.unwrap_or_else(|| "a build that left no record".into());
    Some(format!(
        "the programs running on {iface} are not this binary's ({running} attached them; this \
         is {this}): `filter-ctl attach --iface {iface}` swaps this binary's in without a gap \
         (counters, settings, lists and recorded queries carry over)",
        iface = pins.iface()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_names_this_build_until_replaced() {
        let dir = std::env::temp_dir().join(format!("wf-release-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(recorded(&dir), None);
        symlink(
            "filter-ctl 0.0.9, eBPF object 0000000000000000",
            dir.join(BUILD_PIN),
        )
        .unwrap();
        assert_ne!(recorded(&dir), Some(this()));
        record(&dir).unwrap();
        assert_eq!(recorded(&dir), Some(this()));
        assert!(this().starts_with(&format!(
            "filter-ctl {}, eBPF object ",
            env!("CARGO_PKG_VERSION")
        )));
        fs::remove_dir_all(&dir).unwrap();
    }
}
