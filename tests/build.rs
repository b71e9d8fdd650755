//! Builds the benchmark's XDP programs (tests/bench-ebpf: the live-frames
//! generator, the XDP_DROP / XDP_PASS floors, the reply sink) with the same
//! pinned nightly and bpf-linker as filter-ctl's build script builds the
//! filter, and leaves the object in OUT_DIR for `tests::bench` to embed.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir.parent().expect("tests lives in the workspace");
    let bench_dir = manifest_dir.join("bench-ebpf");
    let tools_bin = workspace.join(".tools/bin");
    println!(
        "cargo::rerun-if-changed={}",
        tools_bin.join("bpf-linker").display()
    );
    if !tools_bin.join("bpf-linker").exists() {
        anyhow::bail!(
            "bpf-linker is not installed in {}: run `./xtask/run setup` (or any xtask command) first",
            tools_bin.display()
        );
    }
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tools_bin];
    paths.extend(env::split_paths(&path));
    // SAFETY: build scripts are single-threaded; the child cargo inherits this PATH.
    unsafe { env::set_var("PATH", env::join_paths(paths)?) };

    let nightly = pinned_nightly(&workspace.join("filter-ebpf/rust-toolchain.toml"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "bench-ebpf",
            root_dir: bench_dir.to_str().expect("workspace path is UTF-8"),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&nightly),
    )
}

/// The `channel = "..."` of filter-ebpf's rust-toolchain.toml: one nightly for every BPF object.
fn pinned_nightly(toolchain_file: &std::path::Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(toolchain_file)?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no channel in {}", toolchain_file.display()))
}
