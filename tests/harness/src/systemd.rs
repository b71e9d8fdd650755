//! systemd booted as PID 1 of namespaces of its own (PID, mount, network,
//! UTS, IPC) over a clean Debian root ([`Scratch`]): a small system where a
//! test starts the installed unit with `systemctl` and sees what systemd
//! sees (readiness, the sandbox, the journal), as on a gateway. The manager
//! starts only its target (`wft.target`, which wants nothing); its network
//! namespace has a loopback and whatever the test makes; its bpf
//! filesystem is a fresh one. Killed with everything in it when dropped.
//!
//! It needs a writable cgroup file system (systemd gets a cgroup of its
//! own under this machine's): [`Booted::unavailable`] says why not.

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context as _, bail};
use nix::{sys::signal, unistd::Pid};

use crate::{
    debian::Scratch,
    names::unique_name,
    process::{self, Background},
};

/// The target systemd is told to start: nothing else comes up.
const TARGET: &str = "wft.target";

/// Mounts what a container's systemd needs, inside the new namespaces, and
/// becomes systemd in the root `$1`.
const STAGE: &str = r#"set -e
R=$1
mount --make-rprivate /
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /sys/fs/cgroup "$R/sys/fs/cgroup"
mount -t bpf bpf "$R/sys/fs/bpf"
mount -t tmpfs tmpfs "$R/run"
exec chroot "$R" /usr/bin/env -i container=wft PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=wft.target
"#;

pub struct Booted {
    /// `unshare`, whose child is systemd.
    unshare: Option<Background>,
    /// systemd's pid here.
    init: u32,
    /// Its cgroups here, made for it, removed after it.
    cgroups: Vec<PathBuf>,
}

impl Booted {
    /// Why systemd cannot be booted here, if it cannot: no cgroup file
    /// system this process can make a cgroup in.
    pub fn unavailable() -> Option<String> {
        let probe = cgroup_parents()
            .first()
            .map(|parent| parent.join(unique_name("wft-probe")));
        match probe {
            None => Some("no cgroup file system is mounted at /sys/fs/cgroup".into()),
            Some(dir) => match fs::create_dir(&dir) {
                Ok(()) => {
                    let _ = fs::remove_dir(&dir);
                    None
                }
                Err(err) => Some(format!("cannot make a cgroup ({}: {err})", dir.display())),
            },
        }
    }

    /// Boots systemd in `scratch`'s root (which it changes: the target's
    /// unit) and waits until it says the system is running.
    pub fn boot(scratch: &Scratch) -> anyhow::Result<Self> {
        let units = scratch.root().join("etc/systemd/system");
        fs::create_dir_all(&units)?;
        fs::write(
            units.join(TARGET),
            "[Unit]\nDescription=The test's system: nothing else starts\n",
        )?;
        let name = unique_name("wft-systemd");
        let mut cgroups = Vec::new();
        for parent in cgroup_parents() {
            let dir = parent.join(&name);
            fs::create_dir(&dir).with_context(|| format!("making {}", dir.display()))?;
            cgroups.push(dir);
        }
        let mut booted = Self {
            unshare: None,
            init: 0,
            cgroups,
        };
        // The shell moves itself into the new cgroups, then becomes unshare.
        let enter: String = booted
            .cgroups
            .iter()
            .map(|dir| format!("echo $$ > {}/cgroup.procs; ", dir.display()))
            .collect();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "{enter}exec unshare --pid --fork --kill-child --mount --uts --ipc --net \
                 sh -c \"$1\" stage \"$2\""
            ))
            .args([
                OsStr::new("enter"),
                OsStr::new(STAGE),
                scratch.root().as_os_str(),
            ]);
        booted.unshare = Some(Background::spawn("systemd in its namespaces", command)?);
        let unshare = booted.unshare.as_ref().expect("just started").pid();
        process::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            Ok(children(unshare).is_some())
        })
        .context("unshare started no systemd")?;
        booted.init = children(unshare).expect("waited for");
        let running =
            process::wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
                let state = booted.output(["systemctl", "is-system-running"])?;
                let state = String::from_utf8_lossy(&state.stdout);
                Ok(matches!(state.trim(), "running" | "degraded"))
            });
        if let Err(err) = running {
            let log = booted.unshare.as_ref().map(Background::log);
            bail!("systemd did not come up: {err:#}; its output: {log:?}");
        }
        Ok(booted)
    }

    /// `args` run inside: its namespaces and root, a plain environment.
    pub fn output<I, S>(&self, args: I) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        process::output(
            Command::new("nsenter")
                .arg("--target")
                .arg(self.init.to_string())
                .args([
                    "--mount", "--pid", "--net", "--uts", "--ipc", "--root", "--wd",
                ])
                .args(["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
                .args(args),
        )
    }

    /// Like [`Self::output`], failing unless it exits 0; its stdout.
    pub fn run<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<String> = args
            .into_iter()
            .map(|arg| arg.as_ref().to_string_lossy().into_owned())
            .collect();
        let out = self.output(&args)?;
        if !out.status.success() {
            bail!(
                "`{}` under the test's systemd failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // PID 1 killed: the kernel kills everything in its namespace.
        if self.init != 0 {
            let _ = signal::kill(Pid::from_raw(self.init as i32), signal::Signal::SIGKILL);
        }
        if let Some(unshare) = self.unshare.take() {
            let _ = unshare.stop();
        }
        // Child cgroups first; each is empty once its processes are reaped.
        for dir in &self.cgroups {
            let _ = process::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
                remove_tree(dir);
                Ok(!dir.exists())
            });
        }
    }
}

/// Where this machine's cgroup hierarchies that systemd uses are: the
/// unified one alone, or (hybrid) the named `systemd` one and the unified one.
fn cgroup_parents() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.procs").exists() {
        return vec![base.to_owned()];
    }
    ["systemd", "unified"]
        .iter()
        .map(|name| base.join(name))
        .filter(|dir| dir.join("cgroup.procs").exists())
        .collect()
}

/// The first child of `pid`, if it has one.
fn children(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Removes a cgroup and those under it, deepest first (only directories:
/// cgroup files go with theirs).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}
