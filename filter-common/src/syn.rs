//! TCP SYN defence: token buckets per source, per source prefix and global.
//!
//! Every level keeps its state in a plain array of [`SynBucket`] slots; a
//! source (or prefix) is hashed with a secret per-attach seed
//! ([`crate::Config::syn_hash_seed`]) onto one slot. There are no keys and no
//! eviction, on purpose: attackers write these maps (every SYN they send
//! charges a slot), and with an LRU hash a flood from a million spoofed
//! sources would push a real offender's bucket out and hand it a fresh, full
//! one on its next SYN, over and over. Here a flood can only *share* a slot
//! with an offender, which makes that bucket emptier, never fuller. The price
//! is collateral: a source hashed onto the slot of a flooder is limited with
//! it. With `SYN_SOURCE_SLOTS` slots that needs a collision (1 in 262144 per
//! pair, and the seed keeps attackers from aiming), or a spoofed flood so
//! large that every slot runs dry (slots x source rate: over 500,000 SYN/s
//! with the defaults), where the global level is shedding load anyway.
//!
//! The buckets are shared by all CPUs, not per-CPU: per-CPU buckets would
//! multiply every rate by the number of CPUs that RSS spreads a flood over.
//! A bucket is one timestamp (GCRA, the "virtual scheduling" form of a token
//! bucket): the time at which it is full again. A SYN over the limit only
//! reads it, so a flood against an empty bucket costs a read of a shared
//! cache line and never bounces it between CPUs. An admitted SYN writes it
//! with a plain store (the BPF target of our Rust toolchain has no
//! compare-and-swap): two CPUs that take the same token within the same few
//! nanoseconds both pass. That race only exists while the bucket has tokens
//! and costs at most one extra SYN per colliding CPU, which is the usual,
//! benign trade for a rate limit.

/// Slots of the per-source level (IPv4 /32, IPv6 /64): 4 MiB.
pub const SYN_SOURCE_SLOTS: u32 = 1 << 18;
/// Slots of the per-prefix level (IPv4 /24, IPv6 /48 by default): 1 MiB.
pub const SYN_PREFIX_SLOTS: u32 = 1 << 16;

/// One token bucket, in the GCRA form.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynBucket {
    /// Time on the programs' clock (bpf_ktime_get_coarse_ns) at which the bucket is full again
    /// ("theoretical arrival time"): each admitted SYN pushes it one interval
    /// (1 s / rate) further; a SYN is over the limit when it lies more than
    /// `(burst - 1)` intervals ahead of now. 0: never used, full.
    pub tat_ns: u64,
    /// Per-source level: SYNs over the limit since the last one admitted,
    /// for the penalty. Unused elsewhere.
    pub strikes: u32,
    pub _padding: u32,
}

/// Highest rate and burst a level accepts (filter-ctl refuses more; the
/// program clamps the rate, which bounds its arithmetic).
pub const MAX_RATE: u32 = 1_000_000;
pub const MAX_BURST: u32 = 1_000_000;

/// Defaults, chosen for a home or small-office gateway (docs/syn-and-lists.md
/// explains them): a browser opening a dozen connections at once and a busy
/// mail relay pass; one host opening 15 connections at once, or bursting SYNs
/// with ever-changing source ports, is cut to 12 and then 2 per second.
pub const DEFAULT_SOURCE_RATE: u32 = 2;
pub const DEFAULT_SOURCE_BURST: u32 = 12;
pub const DEFAULT_PREFIX_RATE: u32 = 20;
pub const DEFAULT_PREFIX_BURST: u32 = 60;
pub const DEFAULT_GLOBAL_RATE: u32 = 2000;
pub const DEFAULT_GLOBAL_BURST: u32 = 4000;
pub const DEFAULT_PREFIX_V4: u8 = 24;
pub const DEFAULT_PREFIX_V6: u8 = 48;
/// Off: SYN sources can be spoofed, so an automatic deny can be turned against
/// the gateway's own peers (see docs/syn-and-lists.md).
pub const DEFAULT_PENALTY_NS: u64 = 0;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::SynBucket {}
}
