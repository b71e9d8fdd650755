//! The benchmark's own XDP programs (tests/bench-ebpf, built by build.rs):
//! the object, embedded, and the types it shares with them.

use aya::Ebpf;

#[path = "../../bench-ebpf/src/shared.rs"]
mod shared;
pub use shared::*;

/// The bench-ebpf object: generator, floors, sink.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-ebpf"));

// SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
unsafe impl aya::Pod for GenConfig {}
// SAFETY: the same.
unsafe impl aya::Pod for GenState {}

/// Loads the bench object (nothing attached, nothing loaded into the kernel yet).
pub fn load() -> anyhow::Result<Ebpf> {
    Ok(Ebpf::load(BENCH_OBJECT)?)
}
