//! What the kernel says is attached, independently of filter-ctl: the XDP
//! program on an interface (`ip -d -j link`), and whether a BPF program or
//! link with a given id still exists (`bpftool`).

use std::{process::Command, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use crate::{
    netns::Netns,
    process::{output, wait_until},
};

/// Set to "1" by the VM harness (xtask's vm/guest.rs) for the tests it runs
/// in a guest under TCG, qemu's emulator, where a program load takes
/// seconds: tests that repeat loads for the same check may repeat less.
pub const EMULATED_ENV: &str = "FILTER_TESTS_EMULATED";

/// Whether these tests run under emulation (see [`EMULATED_ENV`]).
pub fn emulated() -> bool {
    std::env::var_os(EMULATED_ENV).is_some_and(|value| value == "1")
}

/// Set to 1 by the VM legs' guests (xtask's vm/guest.rs) for every test
/// executable they run.
pub const VM_GUEST_ENV: &str = "FILTER_TESTS_VM_GUEST";

/// Whether these tests run inside a VM leg's guest (see [`VM_GUEST_ENV`]),
/// for tests that run on the host only.
pub fn in_vm_guest() -> bool {
    std::env::var_os(VM_GUEST_ENV).is_some_and(|value| value == "1")
}

/// The XDP program attached to `iface` in `ns`, per `ip -d -j link show`:
/// (mode, program id), with mode "native", "skb", "hw" or "multi", or None.
pub fn xdp_on(ns: &Netns, iface: &str) -> anyhow::Result<Option<(String, u32)>> {
    let text = ns.ip(["-d", "-j", "link", "show", "dev", iface])?;
    let links: Vec<Value> = serde_json::from_str(&text)?;
    let Some(xdp) = links.first().and_then(|link| link.get("xdp")) else {
        return Ok(None);
    };
    // iproute2: XDP_ATTACHED_DRV = 1, SKB = 2, HW = 3, MULTI = 4.
    let mode = match xdp.get("mode").and_then(Value::as_u64) {
        Some(1) => "native",
        Some(2) => "skb",
        Some(3) => "hw",
        Some(4) => "multi",
        other => bail!("unexpected XDP mode {other:?} in {xdp}"),
    };
    let id = xdp
        .pointer("/prog/id")
        .or_else(|| xdp.pointer("/attached/0/prog/id"))
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("no program id in {xdp}"))?;
    Ok(Some((mode.to_owned(), u32::try_from(id)?)))
}

/// Whether the kernel still has a BPF program with this id (`bpftool prog show id N`).
pub fn program_exists(id: u32) -> anyhow::Result<bool> {
    let out = output(Command::new("bpftool").args(["prog", "show", "id", &id.to_string()]))?;
    Ok(out.status.success())
}

/// Whether the kernel still has a BPF link with this id (`bpftool link show id N`).
pub fn link_exists(id: u32) -> anyhow::Result<bool> {
    let out = output(Command::new("bpftool").args(["link", "show", "id", &id.to_string()]))?;
    Ok(out.status.success())
}

/// Waits until `iface` in `ns` has no XDP program: a link's last reference
/// may go a moment after its pin or fd, and the next program cannot attach before.
pub fn wait_no_xdp(ns: &Netns, iface: &str) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(3), Duration::from_millis(10), || {
        Ok(xdp_on(ns, iface)?.is_none())
    })
    .with_context(|| format!("{iface} kept an XDP program"))
}

/// How many entries the map pinned at `path` holds, per `bpftool map dump`
/// (expired list entries included: the kernel does not know they expired).
pub fn pinned_map_entries(path: &std::path::Path) -> anyhow::Result<usize> {
    let out = output(
        Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(path),
    )?;
    if !out.status.success() {
        bail!(
            "bpftool map dump pinned {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("bpftool's dump of {}", path.display()))?;
    Ok(entries.len())
}
