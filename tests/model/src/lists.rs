//! Allow and deny lists (docs/syn-and-lists.md, *Allow and deny lists*):
//! CIDR prefixes per list and family, each with an expiry (0: never).
//!
//! A lookup finds the longest prefix covering the source; an expired entry
//! stops matching at once, and the lookup then looks again with a prefix one
//! bit shorter than the expired entry's, "up to 4 times": the documented
//! approximation (a pile of more nested expired entries than that counts as
//! no match until filter-ctl cleans up), which the model mirrors.

use std::collections::BTreeMap;

use crate::parse::{Addr, Family};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum List {
    Allow,
    Deny,
}

/// A prefix: family, address with the host bits cleared, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub family: Family,
    pub addr: Addr,
    pub len: u8,
}

impl Prefix {
    /// `addr` cut to its first `len` bits.
    pub fn new(family: Family, addr: Addr, len: u8) -> Prefix {
        let bits = usize::from(len);
        let addr = std::array::from_fn(|i| {
            let keep = bits.saturating_sub(8 * i).min(8);
            if keep == 0 {
                0
            } else {
                addr[i] & (0xffu8 << (8 - keep))
            }
        });
        Prefix { family, addr, len }
    }

    pub fn covers(&self, family: Family, addr: &Addr) -> bool {
        self.family == family && Prefix::new(family, *addr, self.len) == *self
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr: std::net::IpAddr = match self.family {
            Family::V4 => {
                std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&self.addr[..4]).expect("4 bytes"))
                    .into()
            }
            Family::V6 => std::net::Ipv6Addr::from(self.addr).into(),
        };
        write!(f, "{addr}/{}", self.len)
    }
}

/// Lookups per match: the longest entry, then past up to 3 expired ones.
const MAX_LOOKUPS: usize = 4;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lists {
    /// Expiry of each entry on the programs' clock, 0: never.
    entries: BTreeMap<(List, Prefix), u64>,
}

impl Lists {
    /// Adds or replaces an entry.
    pub fn add(&mut self, list: List, prefix: Prefix, expires_ns: u64) {
        self.entries.insert((list, prefix), expires_ns);
    }

    pub fn matches(&self, list: List, family: Family, addr: &Addr, now: u64) -> bool {
        let width = match family {
            Family::V4 => 32,
            Family::V6 => 128,
        };
        let mut longest = width;
        for _ in 0..MAX_LOOKUPS {
            let found = self
                .entries
                .iter()
                .filter(|((l, prefix), _)| {
                    *l == list && prefix.len <= longest && prefix.covers(family, addr)
                })
                .max_by_key(|((_, prefix), _)| prefix.len);
            let Some(((_, prefix), &expires_ns)) = found else {
                return false;
            };
            if expires_ns == 0 || expires_ns > now {
                return true;
            }
            if prefix.len == 0 {
                return false;
            }
            longest = prefix.len - 1;
        }
        false
    }

    /// Every entry, for resetting the real lists.
    pub fn entries(&self) -> impl Iterator<Item = (List, Prefix)> + '_ {
        self.entries.keys().copied()
    }
}
