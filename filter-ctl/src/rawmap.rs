//! Map elements as bytes, whatever their type: what an upgrade needs to copy
//! a map whose layout this build only knows from the kernel (sizes read
//! from the pinned map), not from a Rust type. aya's typed maps need the
//! sizes at compile time.

use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd};

use anyhow::Context as _;
use aya::maps::MapData;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// `union bpf_attr` as the element commands read it.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

/// One map, its element sizes and (per-CPU maps) how many copies a value has.
#[derive(Debug)]
pub struct RawMap<'a> {
    fd: BorrowedFd<'a>,
    pub key_size: usize,
    pub value_size: usize,
    /// Values per element: the number of possible CPUs for a per-CPU map, else 1.
    pub copies: usize,
}

impl<'a> RawMap<'a> {
    pub fn new(data: &'a MapData, per_cpu: bool) -> anyhow::Result<Self> {
        let info = data.info()?;
        let copies = if per_cpu {
            aya::util::nr_cpus()
                .map_err(|(path, err)| anyhow::anyhow!("{path}: {err}"))?
                .get() as usize
        } else {
            1
        };
        Ok(Self {
            fd: data.fd().as_fd(),
            key_size: info.key_size() as usize,
            value_size: info.value_size() as usize,
            copies,
        })
    }

    /// Bytes of one value for every copy: per-CPU values are 8-byte aligned each.
    pub fn stride(&self) -> usize {
        if self.copies > 1 {
            self.value_size.div_ceil(8) * 8
        } else {
            self.value_size
        }
    }

    fn call(&self, cmd: libc::c_long, key: *const u8, other: *const u8, flags: u64) -> i64 {
        let attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: key as u64,
            value_or_next_key: other as u64,
            flags,
        };
        // SAFETY: the element commands read `attr` and the key buffer, and
        // write at most the value (or next key) buffer, whose sizes the
        // callers below match to the map's key and value sizes.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                &attr as *const ElemAttr,
                size_of::<ElemAttr>() as u32,
            )
        }
    }

    /// The value of `key` (every copy of it), or `None` if there is none.
    pub fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        assert_eq!(key.len(), self.key_size);
        let mut value = vec![0u8; self.stride() * self.copies];
        if self.call(BPF_MAP_LOOKUP_ELEM, key.as_ptr(), value.as_mut_ptr(), 0) < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOENT) {
                return Ok(None);
            }
            return Err(err).context("bpf_map_lookup_elem");
        }
        Ok(Some(value))
    }

    /// Writes `value` (every copy of it) at `key`.
    pub fn set(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        assert_eq!(key.len(), self.key_size);
        assert_eq!(value.len(), self.stride() * self.copies);
        if self.call(BPF_MAP_UPDATE_ELEM, key.as_ptr(), value.as_ptr(), 0) < 0 {
            return Err(std::io::Error::last_os_error()).context("bpf_map_update_elem");
        }
        Ok(())
    }

    /// Deletes `key`; whether it was there.
    pub fn delete(&self, key: &[u8]) -> anyhow::Result<bool> {
        assert_eq!(key.len(), self.key_size);
        if self.call(BPF_MAP_DELETE_ELEM, key.as_ptr(), std::ptr::null(), 0) < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOENT) {
                return Ok(false);
            }
            return Err(err).context("bpf_map_delete_elem");
        }
        Ok(true)
    }

    /// Every key, in the map's order.
    pub fn keys(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = vec![0u8; self.key_size];
            let previous = keys.last().map_or(std::ptr::null(), |key| key.as_ptr());
            if self.call(BPF_MAP_GET_NEXT_KEY, previous, next.as_mut_ptr(), 0) < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ENOENT) {
                    return Ok(keys);
                }
                return Err(err).context("bpf_map_get_next_key");
            }
            keys.push(next);
        }
    }
}
