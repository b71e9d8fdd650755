//! Builds the benchmark's XDP programs (tests/bench-ebpf: the live-frames
//! generator, the XDP_DROP / XDP_PASS floors, the reply sink) the way
//! filter-ctl's build script builds the filter, and leaves the object in
//! OUT_DIR for `object.rs` to embed.
use std::{env, path::PathBuf};

#[path = "../../filter-ebpf/build_object.rs"]
mod build_object;

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let tests_dir = manifest_dir.parent().expect("tests/bench lives in tests/");
    let workspace = tests_dir.parent().expect("tests/ lives in the workspace");
    build_object::build(workspace, "bench-ebpf", &tests_dir.join("bench-ebpf"))
}
