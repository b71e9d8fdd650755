//! The host's mount namespace, for a filter-ctl run under `ip netns exec`.
//!
//! `ip netns exec` unshares the mount namespace to mount a fresh /sys,
//! which hides /sys/fs/bpf: pins made there would vanish with the command
//! (and a bpffs mounted there would be a private, empty one). The host's
//! mounts are reached through `/proc/PID/root` of a process that lives in
//! the host's mount namespace. That process may exit at any time (the
//! shell that ran `ip netns exec` for a daemon that outlives it, `nohup`,
//! `setsid -f`), so it is used only to find the namespace: its root
//! directory and its mount namespace are opened once and held by this
//! process until it exits, and paths go through `/proc/self/fd/N`.
//!
//! Which process: the nearest ancestor in another mount namespace (the
//! shell that ran `ip netns exec`); when there is none (the parent is gone
//! and we were handed to an init that is hidden or in our own namespace),
//! the mount namespace that most processes with our root directory share,
//! unless that is ours (then we are in the host's namespace ourselves).

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    os::{
        fd::AsRawFd as _,
        unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// The host's root directory and mount namespace, held open.
#[derive(Debug)]
pub struct Host {
    root: File,
    mount_ns: File,
}

impl Host {
    /// `path` (absolute) as seen from the host's mount namespace.
    pub fn path(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        fd_path(&self.root).join(relative)
    }

    /// The host's mount namespace as a path another process (nsenter) can open.
    pub fn mount_ns(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.mount_ns.as_raw_fd()
        ))
    }
}

fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// The host's mount namespace, when this process is in another one; found
/// at the first call and kept (see the module documentation).
pub fn host() -> Option<&'static Host> {
    static HOST: OnceLock<Option<Host>> = OnceLock::new();
    HOST.get_or_init(find).as_ref()
}

fn find() -> Option<Host> {
    let ours = fs::read_link("/proc/self/ns/mnt").ok()?;
    let pid = ancestor_elsewhere(&ours).or_else(|| most_shared(&ours))?;
    let root = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(format!("/proc/{pid}/root"))
        .ok()?;
    let mount_ns = File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
    // The process may have exited and its pid been reused between the
    // choice and the opening: the namespace held must still be another one
    // than ours, with our root directory.
    let held = fs::read_link(fd_path(&mount_ns)).ok()?;
    let same_root = fs::metadata(fd_path(&root))
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
        == root_id("/");
    (held != ours && same_root).then_some(Host { root, mount_ns })
}

/// The nearest ancestor in another mount namespace than ours: under `ip
/// netns exec`, the shell that ran it. PID 1 is not used: sandboxes often
/// hide it, and a process handed to it lost its shell.
fn ancestor_elsewhere(ours: &Path) -> Option<u32> {
    let mut pid = parent_pid("self")?;
    while pid > 1 {
        if fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()? != ours {
            return Some(pid);
        }
        pid = parent_pid(&pid.to_string())?;
    }
    None
}

/// A process of the mount namespace that most visible processes with our
/// root directory share, if that is not ours.
fn most_shared(ours: &Path) -> Option<u32> {
    let root = root_id("/")?;
    let mut namespaces: HashMap<PathBuf, (usize, u32)> = HashMap::new();
    for entry in fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(ns) = fs::read_link(format!("/proc/{pid}/ns/mnt")) else {
            continue;
        };
        if root_id(&format!("/proc/{pid}/root")) != Some(root) {
            continue;
        }
        namespaces.entry(ns).or_insert((0, pid)).0 += 1;
    }
    let (ns, (_, pid)) = namespaces
        .into_iter()
        .max_by_key(|(ns, (count, _))| (*count, ns.clone()))?;
    (ns != ours).then_some(pid)
}

/// The device and inode of a directory (a root, through /proc/PID/root).
fn root_id(path: &str) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
}

fn parent_pid(pid: &str) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse().ok())
}
