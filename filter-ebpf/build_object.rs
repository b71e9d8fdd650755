//! Builds a BPF object for the build scripts that embed one (filter-ctl: the
//! filter; tests: the benchmark's programs), with the pinned nightly of
//! filter-ebpf/rust-toolchain.toml and the bpf-linker `cargo xtask setup`
//! installs under `.tools/`. Included with `#[path]`, not a crate; it needs
//! only std and anyhow.
//!
//! Quiet: cargo shows a build script's output only as `warning:` lines, so
//! the nested cargo's output is kept back. A build prints one line; the
//! compiler's warnings, if any, follow it; a failure shows the whole output.
//!
//! Every object is built in one target directory (`target/bpf`), so `core`
//! and aya-ebpf are compiled once for all of them and for every profile of
//! the host build, not once per build script and profile. Two build scripts
//! running at once take turns on its lock.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// Builds the BPF binary of `package` (sources in `root_dir`, one binary
/// named after the package) into OUT_DIR/`package`.
#[allow(dead_code)] // one of the two including build scripts needs features
pub fn build(workspace: &Path, package: &str, root_dir: &Path) -> anyhow::Result<()> {
    build_with_features(workspace, package, root_dir, &[])
}

/// [`build`] with cargo features of `package` turned on. A build with
/// features has its own target directory (`target/bpf-FEATURES`): both
/// write a binary of the same name, which the other must not overwrite
/// before it is copied.
pub fn build_with_features(
    workspace: &Path,
    package: &str,
    root_dir: &Path,
    features: &[&str],
) -> anyhow::Result<()> {
    let tools_bin = workspace.join(".tools/bin");
    let toolchain_file = workspace.join("filter-ebpf/rust-toolchain.toml");
    for input in [
        tools_bin.join("bpf-linker"),
        toolchain_file.clone(),
        root_dir.to_owned(),
        // Every object depends on the shared types too.
        workspace.join("filter-common"),
    ] {
        println!("cargo::rerun-if-changed={}", input.display());
    }
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_DIR");
    if !tools_bin.join("bpf-linker").exists() {
        bail!(
            "bpf-linker is not installed in {}: run `./xtask/run setup` (or any xtask command) first",
            tools_bin.display()
        );
    }
    let path = env::var_os("PATH").unwrap_or_default();
    let path = env::join_paths(std::iter::once(tools_bin).chain(env::split_paths(&path)))?;

    let nightly = pinned_nightly(&toolchain_file)?;
    let target = bpf_target()?;
    let mut target_dir = shared_target_dir(workspace);
    if !features.is_empty() {
        target_dir.set_file_name(format!("bpf-{}", features.join("-")));
    }
    let mut cargo = Command::new("rustup");
    cargo
        .args(["run", &nightly, "cargo", "build", "--release", "--bins"])
        .args(["--package", package, "--target", &target]);
    if !features.is_empty() {
        cargo.args(["--features", &features.join(",")]);
    }
    cargo
        .args(["-Z", "build-std=core", "--color", "never"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(root_dir)
        .env("PATH", path)
        // aya-ebpf's bindings follow the host's architecture; BTF for the loader.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                format!(
                    "--cfg=bpf_target_arch=\"{}\"",
                    env::var("CARGO_CFG_TARGET_ARCH")?
                ),
                "-Cdebuginfo=2".to_owned(),
                "-Clink-arg=--btf".to_owned(),
            ]
            .join("\x1f"),
        )
        // The host build's compiler must not leak into the nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let output = cargo
        .output()
        .with_context(|| format!("starting `rustup run {nightly} cargo` for {package}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // Cargo shows a failed build script's stderr in full.
        eprintln!("{log}");
        bail!(
            "building the BPF object {package} failed ({}); its cargo output is above",
            output.status
        );
    }

    let object = target_dir.join(&target).join("release").join(package);
    let out = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR is not set")?).join(package);
    fs::copy(&object, &out).with_context(|| {
        format!(
            "copying the BPF object {} to {} (the package needs one binary named after it)",
            object.display(),
            out.display()
        )
    })?;

    // Cargo shows this line again on every build until the script runs
    // again: it says what was built, not when.
    println!(
        "cargo::warning=BPF object {package}{} built with {nightly} in {}",
        if features.is_empty() {
            String::new()
        } else {
            format!(" (features {})", features.join(","))
        },
        target_dir
            .strip_prefix(workspace)
            .unwrap_or(&target_dir)
            .display()
    );
    if log.lines().any(|line| line.starts_with("warning")) {
        for line in log.lines().filter(|line| !is_progress(line)) {
            println!("cargo::warning={line}");
        }
    }
    Ok(())
}

/// The `channel = "..."` of filter-ebpf's rust-toolchain.toml: one place pins the nightly.
fn pinned_nightly(toolchain_file: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(toolchain_file)
        .with_context(|| format!("reading {}", toolchain_file.display()))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no channel in {}", toolchain_file.display()))
}

/// The BPF target of the host's byte order (the loader runs on the host).
fn bpf_target() -> anyhow::Result<String> {
    match env::var("CARGO_CFG_TARGET_ENDIAN")?.as_str() {
        "little" => Ok("bpfel-unknown-none".to_owned()),
        "big" => Ok("bpfeb-unknown-none".to_owned()),
        other => bail!("no BPF target for byte order {other}"),
    }
}

/// `bpf` in the workspace's target directory (CARGO_TARGET_DIR if set).
fn shared_target_dir(workspace: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"))
        .join("bpf")
}

/// Cargo's own status lines (`Compiling x`, `Finished ...`, `Blocking ...`):
/// right-aligned verbs, not diagnostics.
fn is_progress(line: &str) -> bool {
    line.starts_with(' ')
        && line
            .trim_start()
            .split(' ')
            .next()
            .is_some_and(|verb| verb.len() > 1 && verb.chars().all(|c| c.is_ascii_alphabetic()))
}
