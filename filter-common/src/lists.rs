//! Allow and deny lists: CIDR prefixes in LPM tries, one trie per list and
//! address family (keys: prefix length + address bytes in network order).
//!
//! Allowed sources skip every drop rule; denied sources are dropped before
//! any other rule looks at them. Allow is checked first, so an address on
//! both lists passes whatever the prefix lengths: the allow list is a promise
//! that nothing (no rule, no penalty) cuts off a monitoring host or an
//! upstream resolver.

/// Entries per trie (each list has one trie per family).
pub const LIST_ENTRIES: u32 = 65536;

/// Slots of the LISTS_IN_USE array, one per trie: nonzero when the trie may
/// hold entries. The programs look a source up only in tries in use, which
/// saves two LPM lookups per packet on a box with empty lists. filter-ctl
/// sets a slot after adding and clears it when the trie is found empty; the
/// SYN penalty sets the deny slot of its family when it adds an entry.
pub const IN_USE_ALLOW_V4: u32 = 0;
pub const IN_USE_ALLOW_V6: u32 = 1;
pub const IN_USE_DENY_V4: u32 = 2;
pub const IN_USE_DENY_V6: u32 = 3;
pub const IN_USE_SLOTS: u32 = 4;

/// The value of an allow or deny entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListEntry {
    /// Deadline on the programs' clock (bpf_ktime_get_coarse_ns); 0 = never expires. An expired
    /// entry stops matching at once; filter-ctl removes it later.
    pub expires_ns: u64,
    /// The entry's own prefix length, so that an expired entry can be looked
    /// past to a shorter live one that it would otherwise shadow.
    pub prefix_len: u8,
    /// Who made the entry: a [`ListSource`].
    pub source: u8,
    pub _padding: [u8; 6],
}

/// Who put an entry on a list.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListSource {
    Unknown = 0,
    /// `filter-ctl allow|deny add`.
    Operator = 1,
    /// The SYN penalty: the source kept exceeding its bucket.
    SynPenalty = 2,
}

impl ListSource {
    pub const fn from_u8(value: u8) -> ListSource {
        match value {
            1 => ListSource::Operator,
            2 => ListSource::SynPenalty,
            _ => ListSource::Unknown,
        }
    }

    /// Stable name shown by `filter-ctl allow|deny list`.
    pub const fn name(self) -> &'static str {
        match self {
            ListSource::Unknown => "unknown",
            ListSource::Operator => "operator",
            ListSource::SynPenalty => "syn_penalty",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::ListEntry {}
}
