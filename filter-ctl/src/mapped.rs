//! Whole-array reads of the memory-mappable (BPF_F_MMAPABLE) array maps:
//! one mmap instead of one syscall per element, which for the big tables
//! (`status` counting their slots in use) is the difference between a
//! microsecond and a noticeable pause.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::maps::MapData;

/// A copy of every element of `data`, an mmapable array map of `T`. The
/// programs keep writing while we copy, so an element may be torn between
/// two writes: fine for counting, not for anything exact.
pub fn snapshot<T: Copy>(data: &MapData) -> anyhow::Result<Vec<T>> {
    let info = data.info()?;
    let elements = info.max_entries() as usize;
    if info.value_size() as usize != size_of::<T>() {
        anyhow::bail!(
            "map {} holds {}-byte values, expected {}",
            info.name_as_str().unwrap_or("?"),
            info.value_size(),
            size_of::<T>()
        );
    }
    let len = elements * size_of::<T>();
    // SAFETY: a read-only shared mapping of the map's `len` bytes, unmapped
    // below; the kernel refuses it unless the map is BPF_F_MMAPABLE.
    let mapping = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            data.fd().as_fd().as_raw_fd(),
            0,
        )
    };
    if mapping == libc::MAP_FAILED {
        anyhow::bail!(
            "mapping map {}: {}",
            info.name_as_str().unwrap_or("?"),
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: `elements` values of T, page-aligned; read volatile because the
    // programs write them concurrently.
    let values = (0..elements)
        .map(|i| unsafe { std::ptr::read_volatile(mapping.cast::<T>().add(i)) })
        .collect();
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(mapping, len) };
    Ok(values)
}
