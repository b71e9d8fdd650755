//! What aya does not wrap: opening a pinned object as a plain fd, what the
//! kernel says about a link in its fdinfo (the interface it is attached to;
//! 0 once that interface is gone), and the maps a program uses.

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
    let fd = bpf(BPF_OBJ_GET, &attr)
        .with_context(|| format!("opening pinned object {}", path.display()))?;
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

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr` as BPF_PROG_GET_FD_BY_ID reads it.
#[repr(C)]
struct GetFdByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `union bpf_attr` as BPF_OBJ_GET_INFO_BY_FD reads it.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The start of `struct bpf_prog_info`, up to the map ids (the kernel fills
/// as much as we give it room for).
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<i64> {
    // SAFETY: `attr` is the repr(C) prefix of `union bpf_attr` this command
    // reads, and any pointer in it points to a buffer alive for the call and
    // as large as the attr says.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>() as u32) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The ids of the maps the program with id `prog_id` uses.
pub fn prog_map_ids(prog_id: u32) -> anyhow::Result<Vec<u32>> {
    let fd = bpf(
        BPF_PROG_GET_FD_BY_ID,
        &GetFdByIdAttr {
            id: prog_id,
            next_id: 0,
            open_flags: 0,
        },
    )
    .with_context(|| format!("opening program {prog_id}"))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let info_of = |head: &mut ProgInfoHead| {
        bpf(
            BPF_OBJ_GET_INFO_BY_FD,
            &InfoAttr {
                bpf_fd: fd.as_raw_fd() as u32,
                info_len: size_of::<ProgInfoHead>() as u32,
                info: head as *mut ProgInfoHead as u64,
            },
        )
        .with_context(|| format!("reading the info of program {prog_id}"))
    };
    let mut head = ProgInfoHead::default();
    info_of(&mut head)?;
    let mut ids = vec![0u32; head.nr_map_ids as usize];
    let mut head = ProgInfoHead {
        nr_map_ids: ids.len() as u32,
        map_ids: ids.as_mut_ptr() as u64,
        ..ProgInfoHead::default()
    };
    info_of(&mut head)?;
    ids.truncate(head.nr_map_ids as usize);
    Ok(ids)
}
