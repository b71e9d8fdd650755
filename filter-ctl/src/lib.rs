//! filter-ctl as a library: everything the command line does, as functions
//! that tests and the xtask lab call directly. `main.rs` only parses arguments.

pub mod attach;
pub mod clock;
pub mod duration;
pub mod iface;
pub mod lists;
pub mod mapped;
pub mod pins;
pub mod probe;
pub mod settings;
pub mod stats;
pub mod status;
pub mod syn;

/// The eBPF object built by `build.rs` (XDP ingress + TC egress programs).
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter-ebpf"));

/// Fails with a clear message unless we run as root: loading programs,
/// attaching them and reading pinned maps all need CAP_BPF and CAP_NET_ADMIN.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("{what} needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo");
    }
    Ok(())
}
