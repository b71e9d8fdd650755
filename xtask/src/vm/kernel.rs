//! Debian's own kernel packages for the VM legs, and busybox for the guest's
//! first stage: resolved through apt when the command runs (the newest package
//! of each series apt offers), downloaded once with `apt-get download` into
//! `.cache/vm/` (gitignored) and unpacked there with `dpkg-deb -x`. A kernel
//! gets a modules.dep (`depmod -b`), which the Debian package leaves to its
//! postinst, so that modprobe inside the guest finds its modules.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};

use harness::process::run;

use crate::{repo_root, setup, shown};

/// A kernel series the VM legs boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// Debian 12's own kernel: the oldest the filter supports.
    V6_1,
    /// The newer kernel Debian 12 offers in its updates.
    V6_12,
}

impl Series {
    pub const ALL: [Series; 2] = [Series::V6_1, Series::V6_12];

    pub fn name(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// `apt-cache search --names-only` pattern of the series' flavour-less amd64 images.
    fn search_pattern(self) -> &'static str {
        match self {
            Series::V6_1 => r"^linux-image-6\.1\.0-[0-9]+-amd64$",
            Series::V6_12 => r"^linux-image-6\.12\.[0-9]+\+deb12-amd64$",
        }
    }

    /// What the series' package names start and end with; between them is
    /// the number that orders them (the ABI number of `linux-image-6.1.0-57-amd64`,
    /// the patch level of `linux-image-6.12.117+deb12-amd64`).
    fn package_affixes(self) -> (&'static str, &'static str) {
        match self {
            Series::V6_1 => ("linux-image-6.1.0-", "-amd64"),
            Series::V6_12 => ("linux-image-6.12.", "+deb12-amd64"),
        }
    }

    /// The ordering number of one of the series' packages, None for another package.
    fn rank(self, package: &str) -> Option<u32> {
        let (prefix, suffix) = self.package_affixes();
        let number = package.strip_prefix(prefix)?.strip_suffix(suffix)?;
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        number.parse().ok()
    }

    /// The newest package of the series among `apt-cache search` output lines.
    fn newest(self, search_output: &str) -> Option<String> {
        search_output
            .lines()
            .filter_map(|line| line.split(" - ").next())
            .map(str::trim)
            .filter_map(|package| Some((self.rank(package)?, package)))
            .max()
            .map(|(_, package)| package.to_owned())
    }
}

/// A kernel package, unpacked in the cache.
#[derive(Debug)]
pub struct Kernel {
    pub package: String,
    /// The Debian package version, e.g. `6.1.192-3`.
    pub version: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-57-amd64`.
    pub release: String,
    /// The bzImage.
    pub image: PathBuf,
    /// `lib/modules` of the package (holding `<release>/`), shared into the guest.
    pub modules_root: PathBuf,
}

impl Kernel {
    /// `lib/modules/<release>`.
    pub fn modules_dir(&self) -> PathBuf {
        self.modules_root.join(&self.release)
    }
}

/// Where downloaded packages are unpacked: `<repo>/.cache/vm`.
pub fn cache_dir() -> PathBuf {
    repo_root().join(".cache/vm")
}

/// The newest kernel of `series` that apt offers, downloaded and unpacked
/// unless the cache has it already.
pub fn fetch(series: Series) -> anyhow::Result<Kernel> {
    let package = newest_package(series)?;
    let version = candidate_version(&package)?;
    let dir = unpacked(&package, &version, series.package_affixes().0)?;
    let modules_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|sub| dir.join(sub))
        .find(|path| path.is_dir())
        .ok_or_else(|| anyhow!("{package} {version} has no lib/modules"))?;
    let release = single_subdir(&modules_root)?;
    let image = dir.join("boot").join(format!("vmlinuz-{release}"));
    if !image.is_file() {
        bail!("{package} {version} has no boot/vmlinuz-{release}");
    }
    Ok(Kernel {
        package,
        version,
        release,
        image,
        modules_root,
    })
}

/// busybox from Debian's busybox-static package (downloaded, not installed:
/// it conflicts with the busybox package a machine may need).
pub fn busybox() -> anyhow::Result<PathBuf> {
    let package = "busybox-static";
    let version = candidate_version(package)?;
    let binary = unpacked(package, &version, "busybox-static_")?.join("bin/busybox");
    if !binary.is_file() {
        bail!("{package} {version} has no bin/busybox");
    }
    Ok(binary)
}

fn newest_package(series: Series) -> anyhow::Result<String> {
    let search = || -> anyhow::Result<Option<String>> {
        let out = run(Command::new("apt-cache").args([
            "search",
            "--names-only",
            series.search_pattern(),
        ]))?;
        Ok(series.newest(&out))
    };
    if let Some(package) = search()? {
        return Ok(package);
    }
    // A machine whose package lists were never fetched knows no kernels yet.
    setup::apt_update()?;
    search()?.ok_or_else(|| {
        anyhow!(
            "apt offers no package matching {} (Debian 12 with its updates \
             and security sources is expected)",
            series.search_pattern()
        )
    })
}

/// The version apt would install of `package` (`apt-cache policy`'s Candidate).
fn candidate_version(package: &str) -> anyhow::Result<String> {
    let out = run(Command::new("apt-cache").args(["policy", package]))?;
    parse_candidate(&out).ok_or_else(|| anyhow!("apt has no candidate version of {package}"))
}

fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|version| !version.is_empty() && *version != "(none)")
        .map(str::to_owned)
}

/// `<cache>/<package>_<version>`, downloaded and unpacked if it is not there.
/// Other versions of the same family (the directories starting with `family`)
/// are removed once the new one is in place.
fn unpacked(package: &str, version: &str, family: &str) -> anyhow::Result<PathBuf> {
    let cache = cache_dir();
    let dir = cache.join(format!("{package}_{}", version.replace(':', "%3a")));
    let complete = dir.join(".complete");
    if complete.is_file() {
        return Ok(dir);
    }
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    println!(
        "vm-test: downloading {package} {version} into {}",
        shown(&cache).display()
    );
    let download = cache.join(format!("download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download)?;
    let result = download_and_unpack(package, version, &download, &dir);
    let _ = fs::remove_dir_all(&download);
    result?;
    fs::write(&complete, format!("{package} {version}\n"))?;
    prune_older(&cache, family, &dir);
    Ok(dir)
}

fn download_and_unpack(
    package: &str,
    version: &str,
    download: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    let get = || {
        let mut cmd = Command::new("apt-get");
        // Root downloads into a directory the _apt sandbox user cannot write.
        cmd.args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .arg(format!("{package}={version}"))
            .current_dir(download)
            .stdin(Stdio::null());
        cmd
    };
    if setup::run_captured(&mut get()).is_err() {
        // The lists may name a version the mirror has replaced: refresh, retry.
        setup::apt_update()?;
        setup::run_captured(&mut get())?;
    }
    let deb = fs::read_dir(download)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or_else(|| anyhow!("apt-get download left no .deb of {package}"))?;
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(dir);
    setup::run_captured(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    // A kernel's modules need a modules.dep for modprobe (the package's postinst
    // would run depmod on an installed kernel).
    for modules in ["lib/modules", "usr/lib/modules"].map(|sub| partial.join(sub)) {
        if modules.is_dir() {
            let release = single_subdir(&modules)?;
            let base = modules.parent().and_then(Path::parent).expect("two levels");
            setup::run_captured(Command::new("depmod").arg("-b").arg(base).arg(&release))?;
        }
    }
    fs::rename(&partial, dir)
        .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))
}

/// Removes the other unpacked versions of a family (`linux-image-6.1.0-*`, ...).
fn prune_older(cache: &Path, family: &str, keep: &Path) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path != keep && name.starts_with(family) && path.is_dir() {
            println!("vm-test: removing the replaced {}", shown(&path).display());
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// The one directory inside `dir` (the kernel release under lib/modules).
fn single_subdir(dir: &Path) -> anyhow::Result<String> {
    let names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one kernel release in {}, found {names:?}",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_package_of_a_series_is_the_highest_number_not_the_last_line() {
        let search = "linux-image-6.1.0-9-amd64 - Linux 6.1 for 64-bit PCs (signed)\n\
                      linux-image-6.1.0-57-amd64 - Linux 6.1 for 64-bit PCs (signed)\n\
                      linux-image-6.1.0-57-amd64-unsigned - Linux 6.1 for 64-bit PCs\n\
                      linux-image-6.1.0-57-cloud-amd64 - Linux 6.1 for x86-64 cloud\n\
                      linux-image-6.1.0-28-amd64 - Linux 6.1 for 64-bit PCs (signed)\n";
        assert_eq!(
            Series::V6_1.newest(search).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(Series::V6_12.newest(search), None);
        let search = "linux-image-6.12.117+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)\n\
                      linux-image-6.12.117+deb12-rt-amd64 - Linux 6.12, PREEMPT_RT\n\
                      linux-image-6.12.9+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)\n";
        assert_eq!(
            Series::V6_12.newest(search).as_deref(),
            Some("linux-image-6.12.117+deb12-amd64")
        );
    }

    #[test]
    fn the_candidate_version_comes_from_apt_cache_policy() {
        let policy = "linux-image-6.1.0-57-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-3\n  Version table:\n     6.1.192-3 500\n";
        assert_eq!(parse_candidate(policy).as_deref(), Some("6.1.192-3"));
        assert_eq!(
            parse_candidate("x:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
    }
}
