//! Builds the eBPF object with the pinned nightly and the project's
//! bpf-linker, and leaves it in OUT_DIR for filter-ctl to embed.
use std::{env, path::PathBuf};

#[path = "../filter-ebpf/build_object.rs"]
mod build_object;

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .expect("filter-ctl lives in the workspace");
    build_object::build(workspace, "filter-ebpf", &workspace.join("filter-ebpf"))
}
