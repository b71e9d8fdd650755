//! The kernel's view of pinned objects: what aya does not wrap (opening a
//! pinned link as a plain fd, and what its fdinfo says: the interface it is
//! attached to, 0 once that interface is gone), and the maps a program
//! uses, through aya's program info.

use std::{
    collections::BTreeSet,
    ffi::CString,
    fs,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use anyhow::{Context as _, bail};

/// BPF_OBJ_GET: the command that opens a pinned object.
const BPF_OBJ_GET: libc::c_long = 7;

/// `union bpf_attr` as BPF_OBJ_GET reads it (pathname, bpf_fd, file_flags).
#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// Opens the object pinned at `path` (a map, program or link).
pub fn open_pinned(path: &Path) -> anyhow::Result<OwnedFd> {
    let name = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} is not a valid path", path.display()))?;
    let attr = ObjGetAttr {
        pathname: name.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    let fd = bpf(BPF_OBJ_GET, &attr)
        .with_context(|| format!("opening pinned object {}", path.display()))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<i64> {
    // SAFETY: `attr` is the repr(C) prefix of `union bpf_attr` this command
    // reads, and any pointer in it points to a buffer alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>() as u32) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The interface index of the link pinned at `path`, from its fdinfo: the
/// interface it is attached to, or 0 when that interface was deleted (the
/// link is "severed": it holds its program, which runs nowhere).
pub fn link_ifindex(path: &Path) -> anyhow::Result<u32> {
    let fd = open_pinned(path)?;
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .context("reading the link's fdinfo")?;
    let Some(value) = info.lines().find_map(|line| line.strip_prefix("ifindex:")) else {
        bail!(
            "{} is not a link attached to an interface (no ifindex in its fdinfo)",
            path.display()
        );
    };
    value
        .trim()
        .parse()
        .with_context(|| format!("unexpected ifindex '{}' in a link's fdinfo", value.trim()))
}

/// The ids of the maps the programs with ids `programs` use, from aya's
/// program info (which finds a program by id only by walking the loaded
/// ones). An error if one of them is not loaded.
pub fn program_map_ids(programs: &[u32]) -> anyhow::Result<BTreeSet<u32>> {
    let mut ids = BTreeSet::new();
    let mut found = BTreeSet::new();
    // A program unloaded between the kernel's listing and its opening is
    // an error of that item only: not ours, skipped.
    for info in aya::programs::loaded_programs().filter_map(Result::ok) {
        if programs.contains(&info.id()) && found.insert(info.id()) {
            ids.extend(info.map_ids()?.unwrap_or_default());
        }
    }
    if let Some(missing) = programs.iter().find(|id| !found.contains(id)) {
        bail!("program {missing} is not loaded (anymore)");
    }
    Ok(ids)
}
