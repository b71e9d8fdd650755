//! Builds the eBPF object with the pinned nightly and bpf-linker that
//! `cargo xtask setup` installs under `.tools/`, and embeds it in filter-ctl.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .expect("filter-ctl lives in the workspace");
    let ebpf_dir = workspace.join("filter-ebpf");
    let tools_bin = workspace.join(".tools/bin");

    // The eBPF object depends on the shared types too.
    println!(
        "cargo::rerun-if-changed={}",
        workspace.join("filter-common").display()
    );
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

    let nightly = pinned_nightly(&ebpf_dir.join("rust-toolchain.toml"))?;
    let ebpf_dir = ebpf_dir.to_str().expect("workspace path is UTF-8");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "filter-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&nightly),
    )
}

/// The `channel = "..."` of filter-ebpf's rust-toolchain.toml: one place pins the nightly.
fn pinned_nightly(toolchain_file: &std::path::Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(toolchain_file)?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no channel in {}", toolchain_file.display()))
}
