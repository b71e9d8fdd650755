//! The boundary to the kernel's memory and helpers: map elements, the ring
//! buffer, the tail call, the clock and random numbers. With packet.rs (the
//! packet's memory) this is the only module with `unsafe`.
//!
//! A map element is shared: the programs on other CPUs read and write it at
//! the same time, and so does filter-ctl. It is never referenced (a Rust
//! reference would promise that nobody else writes it), only read and
//! written by value through a [`Cell`]: the element's pointer, as the map
//! lookup returned it. `field!(cell, name)` is the cell of one of its
//! fields, so that a rule reads the 8 bytes it needs, not a whole slot.
//! Every value type of the maps is integers (and arrays of them), valid
//! for any bit pattern, so a value read is always a valid one, whatever
//! another CPU or filter-ctl wrote.

use core::{marker::PhantomData, ptr::NonNull};

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{bpf_get_prandom_u32, bpf_ktime_get_coarse_ns, bpf_xdp_load_bytes},
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray, ring_buf::RingBufEntry},
    programs::XdpContext,
};

/// A map element (or a field of one), read and written by value.
pub struct Cell<T> {
    element: NonNull<T>,
    _shared: PhantomData<*mut T>,
}

impl<T> Clone for Cell<T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Cell<T> {}

impl<T: Copy> Cell<T> {
    /// # Safety
    /// `element` is a valid, aligned `T` that stays valid while the program
    /// runs (a map element, or a ring buffer record reserved by it).
    #[inline(always)]
    unsafe fn new(element: *mut T) -> Option<Cell<T>> {
        NonNull::new(element).map(|element| Cell {
            element,
            _shared: PhantomData,
        })
    }

    #[inline(always)]
    pub fn get(self) -> T {
        // SAFETY: valid and aligned (Cell::new); any bits are a valid T.
        unsafe { self.element.read() }
    }

    #[inline(always)]
    pub fn set(self, value: T) {
        // SAFETY: valid and aligned (Cell::new), and writable: map values
        // and ring buffer records are.
        unsafe { self.element.write(value) }
    }

    /// Writes `change(value)` back, where it changes the value read.
    #[inline(always)]
    pub fn update(self, change: impl FnOnce(T) -> T) {
        self.set(change(self.get()));
    }

    /// [`Cell::get`] that LLVM must do as a load from the map, even where
    /// it knows what the same program stored there: the verifier then
    /// learns nothing from the store's path (see reply.rs).
    #[inline(always)]
    pub fn get_volatile(self) -> T {
        // SAFETY: as for `get`.
        unsafe { self.element.read_volatile() }
    }

    /// The cell of the part of this element `part` points to: only through
    /// [`field!`], which gives the pointer to a field.
    ///
    /// # Safety
    /// `part` returns a pointer into the element it is given.
    #[doc(hidden)]
    #[inline(always)]
    pub unsafe fn project<F: Copy>(self, part: impl FnOnce(*mut T) -> *mut F) -> Cell<F> {
        Cell {
            // SAFETY: a field of a valid element is valid, aligned and not null.
            element: unsafe { NonNull::new_unchecked(part(self.element.as_ptr())) },
            _shared: PhantomData,
        }
    }
}

impl<T: Copy, const N: usize> Cell<[T; N]> {
    /// The cell of the array's element `index`, if it has one.
    #[inline(always)]
    pub fn at(self, index: usize) -> Option<Cell<T>> {
        if index >= N {
            return None;
        }
        // SAFETY: the element `index` of a valid array is valid and aligned.
        unsafe { Cell::new(self.element.as_ptr().cast::<T>().add(index)) }
    }
}

/// A write held back until a packet has passed every rule (a SYN's
/// half-open units, its handshake in flight), or none. The value is always
/// set, also when there is nothing to write: LLVM would otherwise carry a
/// register never written along the path without a write, which the
/// verifier refuses to read.
#[derive(Clone, Copy)]
pub struct Deferred<T> {
    cell: Option<Cell<T>>,
    value: T,
}

impl<T: Copy + Default> Deferred<T> {
    /// Nothing to write.
    pub fn none() -> Self {
        Deferred {
            cell: None,
            value: T::default(),
        }
    }

    /// `value`, to write into `cell`.
    #[inline(always)]
    pub fn new(cell: Cell<T>, value: T) -> Self {
        Deferred {
            cell: Some(cell),
            value,
        }
    }

    #[inline(always)]
    pub fn write(self) {
        if let Some(cell) = self.cell {
            cell.set(self.value);
        }
    }
}

/// The cell of a field of the element in a cell, `field!(slot, expires_ns)`,
/// or of a nested field, `field!(slot, key.token)`.
macro_rules! field {
    ($cell:expr, $($field:tt).+) => {
        // SAFETY: the closure points to a field of the element it is given.
        unsafe { $crate::kernel::Cell::project($cell, |element| &raw mut (*element).$($field).+) }
    };
}
pub(crate) use field;

/// Maps whose elements are found by index.
pub trait IndexedCells<T> {
    /// The cell of element `index` (on this CPU for a per-CPU map), if the
    /// map has one.
    fn cell(&self, index: u32) -> Option<Cell<T>>;
}

impl<T: Copy> IndexedCells<T> for Array<T> {
    #[inline(always)]
    fn cell(&self, index: u32) -> Option<Cell<T>> {
        // SAFETY: a lookup's pointer is a valid, aligned element of the
        // map, which lives as long as the program.
        self.get_ptr_mut(index)
            .and_then(|element| unsafe { Cell::new(element) })
    }
}

impl<T: Copy> IndexedCells<T> for PerCpuArray<T> {
    #[inline(always)]
    fn cell(&self, index: u32) -> Option<Cell<T>> {
        // SAFETY: as for Array: this CPU's element, as the lookup returned it.
        self.get_ptr_mut(index)
            .and_then(|element| unsafe { Cell::new(element) })
    }
}

/// Maps whose elements are found by key.
pub trait KeyedCells<K, V> {
    /// The cell of the value stored under `key`, if there is one.
    fn cell_of(&self, key: &K) -> Option<Cell<V>>;
}

impl<K, V: Copy> KeyedCells<K, V> for LruHashMap<K, V> {
    #[inline(always)]
    fn cell_of(&self, key: &K) -> Option<Cell<V>> {
        // SAFETY: a lookup's pointer is a valid, aligned value of the map,
        // valid until the program ends (the kernel frees a deleted
        // element only after every program that may see it has run).
        self.get_ptr_mut(key)
            .and_then(|element| unsafe { Cell::new(element) })
    }
}

/// The record of a reserved ring buffer entry, to fill before it is submitted.
#[inline(always)]
pub fn ring_record<T: Copy>(entry: &mut RingBufEntry<T>) -> Cell<T> {
    // SAFETY: the reservation is ours until submitted, aligned for T (aya
    // checks), and every field is written before it is (sample.rs).
    unsafe { Cell::new(entry.as_mut_ptr()) }.expect("a reservation is never null")
}

/// Copies the first `len` bytes (1..=N) of the XDP frame into `to`; false
/// if the frame is shorter (then `to` is left as it was).
#[inline(always)]
pub fn xdp_load_bytes<const N: usize>(ctx: &XdpContext, to: Cell<[u8; N]>, len: u32) -> bool {
    if len == 0 || len as usize > N {
        return false;
    }
    // SAFETY: the helper writes at most `len` <= N bytes into the array, and
    // checks the frame's length itself.
    unsafe { bpf_xdp_load_bytes(ctx.ctx.cast(), 0, to.element.as_ptr().cast(), len) == 0 }
}

/// Jumps to the program at `index` of `programs`, with this program's
/// context; returns only if there is none (or the jump was refused).
#[inline(always)]
pub fn tail_call<C: EbpfContext>(programs: &ProgramArray, ctx: &C, index: u32) {
    // SAFETY: the context is this program's own; on success the call does
    // not return, and nothing of this program runs after it.
    unsafe { programs.tail_call(ctx, index) }
}

/// The coarse monotonic clock (see config.rs).
#[inline(always)]
pub fn coarse_ns() -> u64 {
    // SAFETY: a helper without arguments or side effects.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// A pseudo-random number.
#[inline(always)]
pub fn random() -> u32 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_prandom_u32() }
}

/// `value`, stored to the stack and loaded again: LLVM can neither fold it
/// into the arithmetic around it nor drop the load, and the verifier knows
/// of it what a load of its size tells (a u16 is 0..=65535 on every
/// kernel: config::bounded_port; reply.rs hides an offset from LLVM).
#[inline(always)]
pub fn through_memory<T: Copy>(value: T) -> T {
    // SAFETY: reads a local that lives for the whole call.
    unsafe { core::ptr::read_volatile(&value) }
}
