//! The single definition of everything both sides of the filter agree on:
//! program and map names, map keys and values, and verdict reasons.
//! Every type is `#[repr(C)]` so the eBPF program and filter-ctl see the same bytes.
#![no_std]

pub mod reason;
pub use reason::{Action, Direction, Reason};

/// Names of the eBPF programs inside the object file.
pub mod program {
    /// XDP program on WAN ingress: every verdict is taken here.
    pub const INGRESS: &str = "wan_ingress";
    /// TC program on WAN egress: observes outgoing traffic, never drops.
    pub const EGRESS: &str = "wan_egress";
}

/// Names of the maps, as pinned under the interface's pin directory.
pub mod map {
    /// Per-CPU array of [`crate::Counter`], indexed by [`crate::Reason`].
    pub const STATS: &str = "STATS";
    /// Every map the object defines, in the order `status` shows them.
    pub const ALL: [&str; 1] = [STATS];
}

/// Packets and bytes seen for one reason, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
// SAFETY: plain #[repr(C)] integers, no padding, every bit pattern valid.
unsafe impl aya::Pod for Counter {}
