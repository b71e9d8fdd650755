//! Where the filter's maps and links are pinned, so that it keeps running after
//! filter-ctl exits and later calls find the live state again.
//!
//! Layout, one directory per network namespace and interface:
//! ```text
//! <root>/net<netns inode>/<iface>/
//!     STATS, ...                   maps, by the names in filter_common::map
//!     link_xdp_native|link_xdp_skb the XDP bpf_link; the name records the mode
//!     link_tc_egress               the TCX bpf_link (kernels >= 6.6)
//!     prog_tc_egress               the egress program, when TC was attached by netlink
//! ```

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use filter_common::report::XdpMode;
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};

/// Default pin root; `--pin-root` or this environment variable change it.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/wan-filter";
pub const ROOT_ENV: &str = "FILTER_PIN_ROOT";

/// Where a distribution mounts the bpf filesystem.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// The pin root, resolved to a path on a mounted bpf filesystem.
#[derive(Clone, Debug)]
pub struct PinRoot {
    /// Where the pins are reached from this process.
    path: PathBuf,
    /// The root as the user named it, for messages.
    shown: PathBuf,
}

impl PinRoot {
    /// Resolves `requested` to a directory on a bpf filesystem.
    ///
    /// `ip netns exec` mounts a fresh /sys, which hides /sys/fs/bpf; pins made
    /// there would vanish with the command. So when `requested` is not on a
    /// bpffs here, the host's mount namespace is used through /proc/PID/root of
    /// the nearest ancestor process that lives there. When
    /// no bpffs is mounted at all and `mount` is set, one is mounted at
    /// /sys/fs/bpf in the host's mount namespace, as systemd would have done.
    pub fn open(requested: &Path, mount: bool) -> anyhow::Result<Self> {
        if !requested.is_absolute() {
            bail!(
                "pin root '{}' must be an absolute path",
                requested.display()
            );
        }
        let found = |path| Self {
            path,
            shown: requested.to_owned(),
        };
        if let Some(path) = locate_on_bpffs(requested) {
            return Ok(found(path));
        }
        if mount && requested.starts_with(BPFFS_MOUNT) {
            mount_bpffs_in_host()?;
            if let Some(path) = locate_on_bpffs(requested) {
                return Ok(found(path));
            }
        }
        bail!(
            "'{}' is not on a bpf filesystem: mount one (`mount -t bpf bpffs DIR`) \
             or choose another --pin-root (env {ROOT_ENV})",
            requested.display()
        )
    }

    /// This network namespace's directory name: interface names are only unique per namespace.
    fn netns_subdir() -> anyhow::Result<String> {
        let netns = fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
        Ok(format!("net{}", netns.ino()))
    }

    fn netns_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(self.path.join(Self::netns_subdir()?))
    }

    /// The pin directory of one interface in this network namespace.
    pub fn iface(&self, iface: &str) -> anyhow::Result<IfacePins> {
        let subdir = Path::new(&Self::netns_subdir()?).join(iface);
        Ok(IfacePins {
            iface: iface.to_owned(),
            dir: self.path.join(&subdir),
            shown: self.shown.join(subdir),
        })
    }

    /// The pins of the filter attached to `iface`, or the error every
    /// command that needs it gives when it is not.
    pub fn attached(&self, iface: &str) -> anyhow::Result<IfacePins> {
        let pins = self.iface(iface)?;
        if !pins.exists() {
            bail!("the filter is not attached to {iface} in this network namespace");
        }
        Ok(pins)
    }

    /// Interfaces of this network namespace that have pins.
    pub fn ifaces(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.netns_dir()?;
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// The pins of the filter on one interface.
#[derive(Clone, Debug)]
pub struct IfacePins {
    iface: String,
    dir: PathBuf,
    shown: PathBuf,
}

impl IfacePins {
    /// The interface's name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory as the user would name it (without a /proc/PID/root detour).
    pub fn shown_dir(&self) -> &Path {
        &self.shown
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The pinned map called `name` (see `filter_common::map`).
    pub fn open_map(&self, name: &str) -> anyhow::Result<aya::maps::Map> {
        let path = self.map(name);
        let data = aya::maps::MapData::from_pin(&path)
            .with_context(|| format!("opening {} (is the filter attached?)", path.display()))?;
        Ok(aya::maps::Map::from_map_data(data)?)
    }

    pub fn xdp_link(&self, mode: XdpMode) -> PathBuf {
        self.dir.join(format!("link_xdp_{}", mode.name()))
    }

    /// The pinned XDP link and the mode it was attached in, if any.
    pub fn find_xdp_link(&self) -> Option<(XdpMode, PathBuf)> {
        [XdpMode::Native, XdpMode::Skb]
            .into_iter()
            .map(|mode| (mode, self.xdp_link(mode)))
            .find(|(_, path)| path.exists())
    }

    pub fn tc_link(&self) -> PathBuf {
        self.dir.join("link_tc_egress")
    }

    pub fn tc_prog(&self) -> PathBuf {
        self.dir.join("prog_tc_egress")
    }

    /// Removes every pin and the directory; the kernel frees what nothing else holds.
    pub fn remove_all(&self) -> anyhow::Result<()> {
        if self.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing pins in {}", self.dir.display()))?;
        }
        // Drop the namespace directory and the root once they are empty
        // (remove_dir fails, as wanted, while anything else is pinned there).
        for dir in self.dir.ancestors().skip(1).take(2) {
            let _ = fs::remove_dir(dir);
        }
        Ok(())
    }
}

/// `path` itself if its nearest existing ancestor is on a bpffs, else the same
/// path seen from the host's mount namespace, if it is on a bpffs there.
fn locate_on_bpffs(path: &Path) -> Option<PathBuf> {
    if is_on_bpffs(path) {
        return Some(path.to_owned());
    }
    let pid = host_mount_ns_pid()?;
    let via_host = Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").ok()?);
    is_on_bpffs(&via_host).then_some(via_host)
}

/// The nearest ancestor process in another mount namespace than ours: under
/// `ip netns exec` (which unshares the mount namespace to mount a fresh /sys),
/// the shell that ran it, whose /proc/PID/root shows the host's mounts.
/// PID 1 is not used: sandboxes often hide it.
fn host_mount_ns_pid() -> Option<u32> {
    let ours = fs::read_link("/proc/self/ns/mnt").ok()?;
    let mut pid = parent_pid("self")?;
    while pid > 1 {
        if fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()? != ours {
            return Some(pid);
        }
        pid = parent_pid(&pid.to_string())?;
    }
    None
}

fn parent_pid(pid: &str) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse().ok())
}

fn is_on_bpffs(path: &Path) -> bool {
    let Some(existing) = path.ancestors().find(|p| p.exists()) else {
        return false;
    };
    statfs(existing).is_ok_and(|stat| stat.filesystem_type() == BPF_FS_MAGIC)
}

/// Mounts bpffs at /sys/fs/bpf in the host's mount namespace, so that the pins
/// outlive the private mount namespace `ip netns exec` gave us.
fn mount_bpffs_in_host() -> anyhow::Result<()> {
    log::info!("no bpf filesystem mounted: mounting one at {BPFFS_MOUNT}");
    let mut command = Command::new("nsenter");
    if let Some(pid) = host_mount_ns_pid() {
        command.arg(format!("--mount=/proc/{pid}/ns/mnt"));
    }
    let status = command
        .args(["--", "mount", "-t", "bpf", "bpffs", BPFFS_MOUNT])
        .status()
        .context("running nsenter to mount the bpf filesystem")?;
    if !status.success() {
        bail!(
            "could not mount a bpf filesystem at {BPFFS_MOUNT} (nsenter/mount exited with {status})"
        );
    }
    Ok(())
}
