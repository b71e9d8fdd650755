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
    fs::{self, File},
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use filter_common::report::XdpMode;
use nix::{
    errno::Errno,
    fcntl::{AT_FDCWD, Flock, FlockArg, RenameFlags, renameat2},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

use crate::{fault, hostns};

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
    /// bpffs here, the host's mount namespace is used ([`hostns`]: found once
    /// and held, so that a daemon outlives the shell that started it). When
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
        Ok(format!("net{}", this_netns()?))
    }

    /// Every interface's pins under the root, in every network namespace:
    /// (the namespace's inode, the pins). Pins of another namespace can only
    /// be removed from here ([`IfacePins::remove_all`]), not attached or
    /// changed: their interface names mean nothing in this one.
    pub fn everywhere(&self) -> anyhow::Result<Vec<(u64, IfacePins)>> {
        let mut all = Vec::new();
        let Ok(entries) = fs::read_dir(&self.path) else {
            return Ok(all);
        };
        for entry in entries.filter_map(Result::ok) {
            let Some(netns) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_prefix("net"))
                .and_then(|ino| ino.parse::<u64>().ok())
            else {
                continue;
            };
            let Ok(ifaces) = fs::read_dir(entry.path()) else {
                continue;
            };
            for iface in ifaces.filter_map(Result::ok) {
                let Ok(name) = iface.file_name().into_string() else {
                    continue;
                };
                if name.contains(STAGING_MARK) || !iface.path().is_dir() {
                    continue;
                }
                let subdir = Path::new(&format!("net{netns}")).join(&name);
                all.push((
                    netns,
                    IfacePins {
                        iface: name,
                        dir: self.path.join(&subdir),
                        shown: self.shown.join(subdir),
                    },
                ));
            }
        }
        all.sort_by(|(a, x), (b, y)| (a, &x.iface).cmp(&(b, &y.iface)));
        Ok(all)
    }

    fn netns_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(self.path.join(Self::netns_subdir()?))
    }

    /// The pin directory of one interface in this network namespace: a
    /// directory of its own under the namespace's, whatever the name (one
    /// that is not an interface name is refused).
    pub fn iface(&self, iface: &str) -> anyhow::Result<IfacePins> {
        crate::iface::check_name(iface).map_err(anyhow::Error::msg)?;
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
            // Not an interface: an upgrade's staging directory (see IfacePins::staging).
            .filter(|name| !name.contains(STAGING_MARK))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// What separates an interface's name from the suffix of its staging
/// directory: a colon, which no interface name can contain.
const STAGING_MARK: char = ':';

/// An exclusive lock on the filter of one interface, held until dropped:
/// the commands that change the filter (attach, detach, set, apply, list
/// changes) take it, so they run one at a time. It is a `flock` on the pin
/// directory, which the kernel releases when its holder dies, even by
/// SIGKILL.
#[derive(Debug)]
pub struct IfaceLock {
    _held: Flock<File>,
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

    /// Takes the interface's lock ([`IfaceLock`]), waiting while another
    /// command holds it. With `create`, the pin directory is made first
    /// (attach); without, `None` when there is no pin directory (the filter
    /// is not attached, or a detach removed it while we waited).
    pub fn lock(&self, create: bool) -> anyhow::Result<Option<IfaceLock>> {
        loop {
            if create {
                fs::create_dir_all(&self.dir)
                    .with_context(|| format!("creating pin directory {}", self.dir.display()))?;
            }
            let dir = match File::open(&self.dir) {
                Ok(dir) => dir,
                // Removed since (a detach); attach makes it again.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    if create {
                        continue;
                    }
                    return Ok(None);
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("opening {}", self.dir.display()));
                }
            };
            let locked = Flock::lock(dir, FlockArg::LockExclusive)
                .map_err(|(_, errno)| errno)
                .with_context(|| format!("locking {}", self.dir.display()))?;
            // The holder we waited for may have removed the directory (a
            // detach) or a new one may stand there now: lock that one instead.
            let held = locked.metadata()?;
            match fs::metadata(&self.dir) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    fault::point("lock: taken");
                    return Ok(Some(IfaceLock { _held: locked }));
                }
                _ => continue,
            }
        }
    }

    /// Where an upgrade builds the complete set of new pins before it swaps
    /// them in (`<iface>:upgrade`, which no interface can be called).
    pub fn staging(&self) -> IfacePins {
        let name = format!("{}{STAGING_MARK}upgrade", self.iface);
        IfacePins {
            iface: self.iface.clone(),
            dir: self.dir.with_file_name(&name),
            shown: self.shown.with_file_name(&name),
        }
    }

    /// Swaps this directory and `other`'s in one rename (RENAME_EXCHANGE):
    /// how an upgrade's staging directory becomes the live one. Where the
    /// filesystem lacks it, in two renames through a third name.
    pub fn exchange(&self, other: &IfacePins) -> anyhow::Result<()> {
        let (a, b) = (&self.dir, &other.dir);
        match renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE) {
            Ok(()) => Ok(()),
            Err(Errno::EINVAL | Errno::ENOSYS) => {
                let aside = b.with_file_name(format!(
                    "{}:old",
                    b.file_name().unwrap_or_default().to_string_lossy()
                ));
                fs::rename(b, &aside)?;
                fs::rename(a, b)?;
                fs::rename(&aside, a)?;
                Ok(())
            }
            Err(err) => {
                Err(err).with_context(|| format!("exchanging {} and {}", a.display(), b.display()))
            }
        }
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

/// The inode of this process's network namespace.
pub fn this_netns() -> anyhow::Result<u64> {
    Ok(fs::metadata("/proc/self/ns/net")
        .context("reading /proc/self/ns/net")?
        .ino())
}

/// Whether a network namespace with this inode exists: a process lives in
/// it, or `ip netns` keeps it (a bind mount under /run/netns). A namespace
/// only an open file descriptor keeps alive is not seen.
pub fn netns_exists(inode: u64) -> bool {
    let in_use = |path: PathBuf| fs::metadata(path).is_ok_and(|meta| meta.ino() == inode);
    let processes = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
        })
        .any(|entry| in_use(entry.path().join("ns/net")));
    let named = ["/run/netns", "/var/run/netns"].iter().any(|dir| {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|entry| in_use(entry.path()))
    });
    processes || named
}

/// `path` itself if its nearest existing ancestor is on a bpffs, else the same
/// path seen from the host's mount namespace ([`hostns`]), if it is on a
/// bpffs there.
fn locate_on_bpffs(path: &Path) -> Option<PathBuf> {
    if is_on_bpffs(path) {
        return Some(path.to_owned());
    }
    let via_host = hostns::host()?.path(path);
    is_on_bpffs(&via_host).then_some(via_host)
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
    if let Some(host) = hostns::host() {
        command.arg(format!("--mount={}", host.mount_ns().display()));
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
