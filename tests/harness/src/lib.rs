//! The test harness of the workspace: everything the end-to-end tests
//! (`tests/tests/*_e2e.rs`, `e2e.rs`), the lab (`cargo xtask lab`) and the
//! benchmark (`tests/bench`) share, split by job:
//!
//! - [`names`]: unique names per run, and sweeping what killed runs left;
//! - [`process`]: running commands, background processes killed on drop;
//! - [`signals`]: Ctrl-C as a flag that long runs check;
//! - [`netns`]: network namespaces, veths, and sockets inside them;
//! - [`bpffs`]: pin roots on the bpf filesystem, removed on drop;
//! - [`lab`]: the lab topology (internet, gateway with `wan0` and NAT, LAN
//!   client, attackers), its addresses and nftables counters;
//! - [`servers`]: in-process UDP/TCP/HTTP servers, and the real DNS and NTP
//!   servers and clients (dnsmasq, chronyd, dig);
//! - [`packet`]: crafted frames, also for the verdict tests;
//! - [`traffic`]: the AF_PACKET sender, the spoofed-source generator, and
//!   the reflection and SYN floods;
//! - [`ctl`]: the one driver of the real `filter-ctl` binary and the types of
//!   its JSON output; [`kernel`]: what the kernel says is attached;
//! - [`fixture`]: the lab with a driver, where every end-to-end test starts;
//! - [`bgp`]: BGP peers in the lab (gobgpd on the gateway, BIRD as the
//!   provider's router), the provider enforcing FlowSpec and RTBH, and the
//!   uplink's capacity.
//!
//! It depends on filter-common but not on filter-ctl, and builds no eBPF:
//! xtask uses it, and xtask must build with the stable host toolchain alone,
//! before `xtask setup` installed the nightly and bpf-linker. The verdict
//! tests' harness (loading the filter's object) stays in the `tests` crate.

pub mod bgp;
pub mod bpffs;
pub mod ctl;
pub mod fixture;
pub mod kernel;
pub mod lab;
pub mod names;
pub mod netns;
pub mod packet;
pub mod process;
pub mod servers;
pub mod signals;
pub mod traffic;
