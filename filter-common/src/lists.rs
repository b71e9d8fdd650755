//! Allow and deny lists: CIDR prefixes in LPM tries, one trie per list and
//! address family (keys: prefix length + address bytes in network order).
//!
//! Allowed sources skip every drop rule; denied sources are dropped before
//! any other rule looks at them. Allow is checked first, so an address on
//! both lists passes whatever the prefix lengths: the allow list is a promise
//! that nothing (no rule, no penalty) cuts off a monitoring host or an
//! upstream resolver.

use crate::expiry;

/// Entries per trie (each list has one trie per family).
pub const LIST_ENTRIES: u32 = 65536;

/// Slots of the LISTS_IN_USE array, one per trie: nonzero when the trie may
/// hold entries. The programs look a source up only in tries in use, which
/// saves two LPM lookups per packet on a box with empty lists. filter-ctl
/// sets a slot before a change makes its trie live and clears it once the
/// trie is emptied; the SYN penalty sets the deny slot of its family when it
/// adds an entry.
///
/// Each list has two copies of its tries (see [`crate::Config::allow_copy`]):
/// a change is written into the copy not in use, which then becomes the
/// live one in one write, so that it takes effect whole or not at all. The
/// slots below are those of copy 0; copy 1's are [`COPY_SLOTS`] further.
pub const IN_USE_ALLOW_V4: u32 = 0;
pub const IN_USE_ALLOW_V6: u32 = 1;
pub const IN_USE_DENY_V4: u32 = 2;
pub const IN_USE_DENY_V6: u32 = 3;
/// Slots per copy.
pub const COPY_SLOTS: u32 = 4;
pub const IN_USE_SLOTS: u32 = 2 * COPY_SLOTS;

/// The LISTS_IN_USE slot of the trie whose copy-0 slot is `slot`, in `copy`.
#[inline(always)]
pub const fn in_use_slot(slot: u32, copy: u32) -> u32 {
    slot + COPY_SLOTS * (copy & 1)
}

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
    /// Only in the test build that changes the maps' layout (feature
    /// `layout-next`).
    #[cfg(feature = "layout-next")]
    pub layout_next: u64,
}

impl ListEntry {
    #[inline(always)]
    pub const fn new(expires_ns: u64, prefix_len: u8, source: ListSource) -> ListEntry {
        ListEntry {
            expires_ns,
            prefix_len,
            source: source as u8,
            _padding: [0; 6],
            #[cfg(feature = "layout-next")]
            layout_next: 0,
        }
    }

    /// True while the entry matches: it never expires, or its deadline is ahead.
    #[inline(always)]
    pub const fn is_live(&self, now_ns: u64) -> bool {
        expiry::is_live_or_permanent(self.expires_ns, now_ns)
    }

    /// The prefix length to look up instead of an expired entry: one bit
    /// shorter than its own, where an LPM lookup finds the next entry that
    /// covers the address; `None` for a /0, which nothing covers.
    #[inline(always)]
    pub const fn shorter_lookup(&self) -> Option<u32> {
        match self.prefix_len {
            0 => None,
            len => Some(len as u32 - 1),
        }
    }
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
    /// The `allow` or `deny` list of a settings file (the daemon's config
    /// file, `apply`, `attach --config`), which puts it back after a reboot.
    ConfigFile = 3,
}

impl ListSource {
    pub const fn from_u8(value: u8) -> ListSource {
        match value {
            1 => ListSource::Operator,
            2 => ListSource::SynPenalty,
            3 => ListSource::ConfigFile,
            _ => ListSource::Unknown,
        }
    }

    /// Stable name shown by `filter-ctl allow|deny list`.
    pub const fn name(self) -> &'static str {
        match self {
            ListSource::Unknown => "unknown",
            ListSource::Operator => "operator",
            ListSource::SynPenalty => "syn_penalty",
            ListSource::ConfigFile => "config_file",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::ListEntry {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires_ns: u64, prefix_len: u8) -> ListEntry {
        ListEntry::new(expires_ns, prefix_len, ListSource::Operator)
    }

    #[test]
    fn permanent_entries_never_expire() {
        assert!(entry(0, 24).is_live(u64::MAX));
        assert!(entry(100, 24).is_live(99));
        assert!(!entry(100, 24).is_live(100));
    }

    /// Looking past expired entries always gets shorter, so the walk from
    /// a /128 ends after at most 129 lookups even without a bound.
    #[test]
    fn the_next_lookup_is_shorter() {
        for len in 0..=128u8 {
            match entry(1, len).shorter_lookup() {
                Some(next) => assert_eq!(next + 1, u32::from(len)),
                None => assert_eq!(len, 0),
            }
        }
    }
}
