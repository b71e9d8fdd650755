//! Maps below aya's typed wrappers, the one place that does it:
//! - [`RawMap`]: elements as bytes, whatever their type, with sizes read
//!   from the kernel, not known at compile time (what an upgrade needs to
//!   copy a map of another layout), and a whole map read in one batch
//!   call (the model check reads every counter after each frame);
//! - [`Mapping`]: a BPF_F_MMAPABLE array map mapped into memory, read (and
//!   for the model check, cleared) element by element without a system
//!   call each, [`snapshot`], a copy of all of it (`status` counting the
//!   big tables' slots in use), and [`zero`] (the tests resetting a loaded
//!   instance).

use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd};

use anyhow::{Context as _, bail};
use aya::{Pod, maps::MapData};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` as the element commands read it.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Calls bpf(2) with `attr`.
///
/// # Safety
/// `attr` must be the part of `union bpf_attr` that `cmd` reads, and every
/// pointer in it must point to a buffer that lives through the call and is
/// as large as the command reads or writes there.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<()> {
    // SAFETY: the caller's promise.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>() as u32) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
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

    fn element(&self, cmd: libc::c_long, key: *const u8, other: *mut u8) -> std::io::Result<()> {
        let mut attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: key as u64,
            value_or_next_key: other as u64,
            flags: 0,
        };
        // SAFETY: the element commands read `attr` and the key buffer, and
        // write at most the value (or next key) buffer, whose sizes the
        // callers below match to the map's key and value sizes.
        unsafe { bpf(cmd, &mut attr) }
    }

    /// The value of `key` (every copy of it), or `None` if there is none.
    pub fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        assert_eq!(key.len(), self.key_size);
        let mut value = vec![0u8; self.stride() * self.copies];
        match self.element(BPF_MAP_LOOKUP_ELEM, key.as_ptr(), value.as_mut_ptr()) {
            Ok(()) => Ok(Some(value)),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(err) => Err(err).context("bpf_map_lookup_elem"),
        }
    }

    /// Writes `value` (every copy of it) at `key`.
    pub fn set(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        assert_eq!(key.len(), self.key_size);
        assert_eq!(value.len(), self.stride() * self.copies);
        self.element(BPF_MAP_UPDATE_ELEM, key.as_ptr(), value.as_ptr().cast_mut())
            .context("bpf_map_update_elem")
    }

    /// Deletes `key`; whether it was there.
    pub fn delete(&self, key: &[u8]) -> anyhow::Result<bool> {
        assert_eq!(key.len(), self.key_size);
        match self.element(BPF_MAP_DELETE_ELEM, key.as_ptr(), std::ptr::null_mut()) {
            Ok(()) => Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(err) => Err(err).context("bpf_map_delete_elem"),
        }
    }

    /// Every key, in the map's order.
    pub fn keys(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = vec![0u8; self.key_size];
            let previous = keys.last().map_or(std::ptr::null(), |key| key.as_ptr());
            match self.element(BPF_MAP_GET_NEXT_KEY, previous, next.as_mut_ptr()) {
                Ok(()) => keys.push(next),
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
                Err(err) => return Err(err).context("bpf_map_get_next_key"),
            }
        }
    }

    /// The values of the first `count` elements of an array map in one
    /// BPF_MAP_LOOKUP_BATCH call: `count` times every copy, as [`Self::get`]
    /// returns one element's.
    pub fn values(&self, count: usize) -> anyhow::Result<Vec<u8>> {
        let mut keys = vec![0u8; count * self.key_size];
        let mut values = vec![0u8; count * self.stride() * self.copies];
        let mut out_batch = 0u32;
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: (&raw mut out_batch) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(count)?,
            map_fd: self.fd.as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: BPF_MAP_LOOKUP_BATCH writes at most `count` keys and
        // values into buffers of that size, and the batch token.
        match unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) } {
            // ENOENT: the batch reached the end of the map.
            Err(err) if err.raw_os_error() != Some(libc::ENOENT) => {
                return Err(err).context("bpf_map_lookup_batch");
            }
            _ => {}
        }
        if attr.count as usize != count {
            bail!("the map holds {} elements, not {count}", attr.count);
        }
        Ok(values)
    }
}

/// The values of type `T` in `bytes`, one every `stride` bytes (a per-CPU
/// value's copies, or elements read whole).
pub fn values_of<T: Pod>(bytes: &[u8], stride: usize) -> Vec<T> {
    assert!(stride >= size_of::<T>());
    bytes
        .chunks(stride)
        .filter(|chunk| chunk.len() >= size_of::<T>())
        // SAFETY: T is plain data (Pod) and the chunk holds its bytes.
        .map(|chunk| unsafe { chunk.as_ptr().cast::<T>().read_unaligned() })
        .collect()
}

/// The values of an mmapable (BPF_F_MMAPABLE) array map, mapped into
/// memory; unmapped when dropped.
#[derive(Debug)]
struct Region {
    base: *mut u8,
    /// The map's values.
    len: usize,
    /// Mapped, whole pages.
    bytes: usize,
}

impl Region {
    fn new(data: &MapData, writable: bool) -> anyhow::Result<Self> {
        let info = data.info()?;
        let len = info.max_entries() as usize * info.value_size() as usize;
        let bytes = len.div_ceil(page_size()) * page_size();
        let protection = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a shared mapping of the map's values, unmapped on drop;
        // the kernel refuses it unless the map is BPF_F_MMAPABLE.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                protection,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            bail!(
                "mapping map {}: {}",
                info.name_as_str().unwrap_or("?"),
                std::io::Error::last_os_error()
            );
        }
        Ok(Self {
            base: base.cast(),
            len,
            bytes,
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, not used after this.
        unsafe { libc::munmap(self.base.cast(), self.bytes) };
    }
}

/// An mmapable (BPF_F_MMAPABLE) array map of `T`, mapped into memory: one
/// mmap instead of one system call per element. The programs keep writing
/// while it is read, so an element may be torn between two writes: fine
/// for counting, not for anything exact.
#[derive(Debug)]
pub struct Mapping<T> {
    region: Region,
    len: usize,
    writable: bool,
    _values: std::marker::PhantomData<T>,
}

impl<T: Copy> Mapping<T> {
    /// Maps `data` to read it.
    pub fn read_only(data: &MapData) -> anyhow::Result<Self> {
        Self::new(data, false)
    }

    /// Maps `data` to read and write it (the model check clears slots).
    pub fn writable(data: &MapData) -> anyhow::Result<Self> {
        Self::new(data, true)
    }

    fn new(data: &MapData, writable: bool) -> anyhow::Result<Self> {
        let info = data.info()?;
        if info.value_size() as usize != size_of::<T>() {
            bail!(
                "map {} holds {}-byte values, expected {}",
                info.name_as_str().unwrap_or("?"),
                info.value_size(),
                size_of::<T>()
            );
        }
        Ok(Self {
            region: Region::new(data, writable)?,
            len: info.max_entries() as usize,
            writable,
            _values: std::marker::PhantomData,
        })
    }

    /// Elements in the map.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `index` as it is now.
    pub fn get(&self, index: usize) -> T {
        assert!(index < self.len);
        // SAFETY: inside the mapping, page-aligned T values; volatile
        // because the programs write them concurrently.
        unsafe { std::ptr::read_volatile(self.region.base.cast::<T>().add(index)) }
    }

    /// Writes element `index` (a writable mapping only).
    pub fn set(&mut self, index: usize, value: T) {
        assert!(self.writable && index < self.len);
        // SAFETY: inside a writable mapping of T values.
        unsafe { std::ptr::write_volatile(self.region.base.cast::<T>().add(index), value) };
    }

    /// Every element as it is now.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len).map(|index| self.get(index)).collect()
    }
}

/// Zeroes every value of `data`, an mmapable array map, in one mapping
/// (the tests reset a loaded instance this way).
pub fn zero(data: &MapData) -> anyhow::Result<()> {
    let region = Region::new(data, true)?;
    // SAFETY: the writable mapping holds `len` bytes of values.
    unsafe { std::ptr::write_bytes(region.base, 0, region.len) };
    Ok(())
}

/// A copy of every element of `data`, an mmapable array map of `T`.
pub fn snapshot<T: Copy>(data: &MapData) -> anyhow::Result<Vec<T>> {
    Ok(Mapping::read_only(data)?.to_vec())
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}
