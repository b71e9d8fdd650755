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
    // The test build with another map layout (feature layout-next) embeds
    // an object built with the same feature.
    println!("cargo::rerun-if-env-changed=CARGO_FEATURE_LAYOUT_NEXT");
    let features: &[&str] = if env::var_os("CARGO_FEATURE_LAYOUT_NEXT").is_some() {
        &["layout-next"]
    } else {
        &[]
    };
    build_object::build_with_features(
        workspace,
        "filter-ebpf",
        &workspace.join("filter-ebpf"),
        features,
    )
}
