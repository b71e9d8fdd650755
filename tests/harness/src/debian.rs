//! A clean Debian root for the package test: the one `cargo xtask`
//! prepares once (debootstrap, in `.cache/`), used through a throwaway
//! overlay ([`Scratch`]) whose writes go to a tmpfs, so that every run
//! starts from the same clean system and leaves nothing behind.

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

use crate::process;

/// Where `cargo xtask test` says the package is (`wan-filter_*_amd64.deb`).
pub const DEB_ENV: &str = "WAN_FILTER_DEB";
/// Where `cargo xtask test` says the clean Debian root is.
pub const ROOT_ENV: &str = "WAN_FILTER_DEBIAN_ROOT";
/// What the root has besides debootstrap's minimal base: what the package
/// test runs (man, systemd-analyze) and what the package depends on, so
/// that installing it needs no network.
pub const ROOT_PACKAGES: &[&str] = &["man-db", "systemd", "iproute2", "procps"];

/// The package and the clean Debian root `cargo xtask test` names, or
/// `None` when they are not given (a plain `cargo test`, the VM legs),
/// after a line saying that `test` (e.g. "package test") is skipped.
pub fn given(test: &str) -> Option<(PathBuf, PathBuf)> {
    match (std::env::var_os(DEB_ENV), std::env::var_os(ROOT_ENV)) {
        (Some(deb), Some(root)) => Some((deb.into(), root.into())),
        _ => {
            process::note(format_args!(
                "{test} skipped: {DEB_ENV} and {ROOT_ENV} are unset (`cargo xtask test` \
                 builds the package and a Debian root and sets them)"
            ));
            None
        }
    }
}

/// A writable overlay over a Debian root, with /proc and /dev, unmounted
/// (and its writes gone) when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
    root: PathBuf,
    /// Mounted, innermost last.
    mounts: Vec<PathBuf>,
}

impl Scratch {
    /// The overlay over `lower`, which is never written.
    pub fn over(lower: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("wft-debian-").tempdir()?;
        let mut scratch = Self {
            root: dir.path().join("root"),
            dir,
            mounts: Vec::new(),
        };
        let base = scratch.dir.path().to_owned();
        scratch.mount(["-t", "tmpfs", "tmpfs"], &base)?;
        for sub in ["upper", "work", "root"] {
            fs::create_dir(base.join(sub))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            base.join("upper").display(),
            base.join("work").display()
        );
        let root = scratch.root.clone();
        scratch.mount(["-t", "overlay", "overlay", "-o", &options], &root)?;
        scratch.mount(["-t", "proc", "proc"], &root.join("proc"))?;
        scratch.mount(["--bind", "/dev"], &root.join("dev"))?;
        Ok(scratch)
    }

    fn mount<const N: usize>(&mut self, args: [&str; N], at: &Path) -> anyhow::Result<()> {
        process::run(Command::new("mount").args(args).arg(at))?;
        self.mounts.push(at.to_owned());
        Ok(())
    }

    /// The root as seen from here.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Installs the package `deb` as an operator would (`apt-get install
    /// ./wan-filter_*.deb`, from the root's /tmp); its file name.
    pub fn install(&self, deb: &Path) -> anyhow::Result<String> {
        let name = deb
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("{} names no package file", deb.display()))?
            .to_owned();
        fs::copy(deb, self.root.join("tmp").join(&name))
            .with_context(|| format!("copying {} into the root", deb.display()))?;
        self.run([
            "apt-get",
            "install",
            "--yes",
            "--no-install-recommends",
            &format!("/tmp/{name}"),
        ])?;
        Ok(name)
    }

    /// Runs `args` in the root (chroot), with a plain environment; its
    /// output, whatever its exit status.
    pub fn output<I, S>(&self, args: I) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        process::output(
            Command::new("chroot")
                .arg(&self.root)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("LANG", "C.UTF-8")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    }

    /// Like [`Self::output`], failing unless it exits 0; its stdout.
    pub fn run<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let shown: Vec<String> = args
            .iter()
            .map(|arg| arg.as_ref().to_string_lossy().into_owned())
            .collect();
        let out = self.output(args)?;
        if !out.status.success() {
            bail!(
                "`{}` in the Debian root failed ({}): {}{}",
                shown.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every file, directory and link of the root, as paths relative to it,
    /// except where package tools keep their state and logs (dpkg's and
    /// apt's databases, caches, logs) and the mounted /proc and /dev.
    pub fn files(&self) -> anyhow::Result<Vec<PathBuf>> {
        const STATE: &[&str] = &[
            "proc",
            "dev",
            "tmp",
            "run",
            "var/lib/dpkg",
            "var/lib/apt",
            "var/cache",
            "var/log",
        ];
        let mut all = Vec::new();
        let mut pending = vec![self.root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                let path = entry?.path();
                let relative = path.strip_prefix(&self.root)?.to_owned();
                if STATE.iter().any(|state| relative == Path::new(state)) {
                    continue;
                }
                if fs::symlink_metadata(&path)?.is_dir() {
                    pending.push(path);
                }
                all.push(relative);
            }
        }
        all.sort();
        Ok(all)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for mount in self.mounts.iter().rev() {
            process::quiet(Command::new("umount").arg("--lazy").arg(mount));
        }
    }
}
