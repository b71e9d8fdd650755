//! The FRAGMENTS table: first fragments' verdicts, followed by the later
//! fragments of the same datagram.

/// A datagram's fragments share source, destination, IP id and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub id: u32,
    pub protocol: u32,
}

/// The verdict of a first fragment, applied to the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentVerdict {
    /// Deadline on the programs' clock (see [`crate::expiry`]).
    pub expires_ns: u64,
    /// 1 if the first fragment was dropped.
    pub dropped: u32,
    pub _padding: u32,
}

pub const FRAGMENT_ENTRIES: u32 = 8192;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::FragmentKey {}
    // SAFETY: the same.
    unsafe impl aya::Pod for super::FragmentVerdict {}
}
