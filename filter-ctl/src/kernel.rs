//! What aya does not wrap: opening a pinned object as a plain fd, and what
//! the kernel says about a link in its fdinfo (the interface it is attached
//! to; 0 once that interface is gone).

use std::{
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
    // SAFETY: BPF_OBJ_GET reads `attr` (and the NUL-terminated path it points
    // to, alive for the call) and returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGetAttr,
            size_of::<ObjGetAttr>() as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("opening pinned object {}", path.display()));
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
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
