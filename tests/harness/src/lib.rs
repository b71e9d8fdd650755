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
//!   client, attackers), its addresses, nftables counters and measures;
//! - [`servers`]: in-process UDP/TCP/HTTP/SMTP servers, and real servers
//!   and clients (dnsmasq, chronyd, dig; Postfix and swaks; nginx and curl);
//! - [`attacks`]: attacks staged end to end with their measures, which the
//!   end-to-end tests assert on and the lab shows;
//! - [`packet`]: crafted frames, also for the verdict tests;
//! - [`traffic`]: the AF_PACKET sender, the spoofed-source generator, the
//!   reflection and SYN floods, and spoofed requests to the gateway's servers;
//! - [`ctl`]: the one driver of the real `filter-ctl` binary and the types of
//!   its JSON output; [`kernel`]: what the kernel says is attached;
//! - [`fixture`]: the lab with a driver, where every end-to-end test starts;
//! - [`bgp`]: BGP peers in the lab (gobgpd or ExaBGP on the gateway, BIRD as
//!   the provider's router), the provider enforcing FlowSpec and RTBH, and the
//!   uplink's capacity;
//! - [`debian`]: a clean Debian root, overlaid, for the package test;
//!   [`systemd`]: systemd booted in it, in namespaces of its own.
//!
//! It depends on filter-common but not on filter-ctl, and builds no eBPF:
//! xtask uses it, and xtask must build with the stable host toolchain alone,
//! before `xtask setup` installed the nightly and bpf-linker. The verdict
//! tests' harness (loading the filter's object) stays in the `tests` crate.

pub mod attacks;
pub mod bgp;
pub mod bpffs;
pub mod ctl;
pub mod debian;
pub mod fixture;
pub mod kernel;
pub mod lab;
pub mod names;
pub mod netns;
pub mod packet;
pub mod process;
pub mod servers;
pub mod signals;
pub mod systemd;
pub mod traffic;
