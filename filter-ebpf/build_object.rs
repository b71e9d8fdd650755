//! Shared by the build scripts that build BPF objects (filter-ctl: the
//! filter; tests: the benchmark's programs): the pinned nightly of
//! filter-ebpf/rust-toolchain.toml and the bpf-linker `cargo xtask setup`
//! installs under `.tools/`. Included with `#[path]`, not a crate.
use std::{env, fs, path::Path};

/// Builds the BPF binaries of `package` (sources in `root_dir`) into OUT_DIR.
pub fn build(workspace: &Path, package: &str, root_dir: &Path) -> anyhow::Result<()> {
    let tools_bin = workspace.join(".tools/bin");
    println!(
        "cargo::rerun-if-changed={}",
        tools_bin.join("bpf-linker").display()
    );
    // Every object depends on the shared types too.
    println!(
        "cargo::rerun-if-changed={}",
        workspace.join("filter-common").display()
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
            name: package,
            root_dir: root_dir.to_str().expect("workspace path is UTF-8"),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&nightly),
    )
}

/// The `channel = "..."` of filter-ebpf's rust-toolchain.toml: one place pins the nightly.
fn pinned_nightly(toolchain_file: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(toolchain_file)?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no channel in {}", toolchain_file.display()))
}
