//! filter-ctl as a library: everything the command line does, as functions
//! that tests and the xtask lab call directly. `main.rs` only parses
//! arguments and prints.
//!
//! - [`attach`]: load, attach, replace, upgrade and detach the programs,
//!   all or nothing (the transaction; loading, filling the maps, crash
//!   recovery and the verifier's log are its submodules);
//!   [`attach::reattach`] attaches a severed filter again, keeping its
//!   state; [`attach::lock_for_change`] is where every change of settings
//!   or lists starts.
//! - [`hook`]: one module per hook, [`hook::xdp`] and [`hook::tc`] (TCX or
//!   a clsact filter), and the pinned links both use.
//! - [`health`]: what the kernel really has attached for pinned links
//!   ([`health::is_severed`]: the interface was deleted).
//! - [`pins`]: where maps and links are pinned, the interface's lock, and
//!   pins of other network namespaces; [`hostns`]: the host's mount
//!   namespace under `ip netns exec`, found once and held.
//! - [`layout`], [`migrate`]: the maps' layout pinned with them, and
//!   carrying state over to maps of another layout on an upgrade.
//! - [`rawmap`]: maps below aya's typed wrappers (elements as bytes, batch
//!   reads, memory-mapped arrays), for upgrades, `status` and the tests.
//! - [`fault`]: the points where the fault tests stop filter-ctl.
//! - [`settings`]: the `CONFIG`, `WATCHED_PORTS` and `CONN_LIMITS` maps, in and out of
//!   `filter_common::settings::Settings` (whose table defines every key).
//! - [`lists`]: the allow and deny lists (LPM tries).
//! - [`stats`], [`status`]: what `stats` and `status` report, as the
//!   `filter_common::report` types their `--json` prints.
//! - [`iface`], [`clock`], [`kernel`]: interfaces, the programs' clock,
//!   and the kernel's view of pinned links and programs; [`textfile`]:
//!   settings files read bounded, regular files only.
//! - [`daemon`]: `filter-ctl daemon` (metrics, drop events, attack lines,
//!   config reload, attaching again when the interface is back) and
//!   `filter-ctl top`.

pub mod attach;
pub mod clock;
pub mod daemon;
pub mod fault;
pub mod health;
pub mod hook;
pub mod hostns;
pub mod iface;
pub mod kernel;
pub mod layout;
pub mod listfile;
pub mod lists;
pub mod migrate;
pub mod pins;
pub mod probe;
pub mod rawmap;
pub mod release;
pub mod settings;
pub mod stats;
pub mod status;
pub mod textfile;

/// The eBPF object built by `build.rs` (XDP ingress + TC egress programs).
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter-ebpf"));

/// Fails with a clear message unless we run as root: loading programs,
/// attaching them and reading pinned maps all need CAP_BPF and CAP_NET_ADMIN.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("{what} needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo");
    }
    Ok(())
}
