//! The allow and deny lists of a running filter: `filter-ctl allow|deny
//! add|del|list`. Each list is two LPM tries (IPv4, IPv6) of
//! [`ListEntry`] values (see `filter_common::lists`).
//!
//! Expiry: an entry added `--for` a duration holds a deadline on the
//! programs' clock ([`crate::clock`]); the kernel stops matching it the
//! moment it passes. The entry itself stays in the trie until a command
//! that writes the lists (`allow|deny add|del`) removes the expired entries
//! of both lists first ([`ListMaps::cleanup`]). Reading commands (`list`,
//! `status`) only leave expired entries out.
//!
//! Every change is validated as a whole before anything is written, and a
//! write that fails halfway (a full list) is undone: a rejected change
//! leaves the lists as they were.

use std::{
    borrow::{Borrow, BorrowMut},
    fmt,
    fs::File,
    net::IpAddr,
    str::FromStr,
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::{
    Pod,
    maps::{
        Array, MapData, MapError,
        lpm_trie::{Key, LpmTrie},
    },
};
use filter_common::{
    ListEntry, ListSource, lists, map,
    report::ListedEntry,
    settings::{Kind as _, Span, duration},
};
use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};

use crate::{clock::now_ns, pins::IfacePins};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum List {
    Allow,
    Deny,
}

impl List {
    pub fn name(self) -> &'static str {
        match self {
            List::Allow => "allow",
            List::Deny => "deny",
        }
    }

    /// The names of its IPv4 and IPv6 tries.
    pub fn maps(self) -> (&'static str, &'static str) {
        match self {
            List::Allow => (map::ALLOW_V4, map::ALLOW_V6),
            List::Deny => (map::DENY_V4, map::DENY_V6),
        }
    }

    /// The LISTS_IN_USE slots of its IPv4 and IPv6 tries.
    fn in_use_slots(self) -> (u32, u32) {
        match self {
            List::Allow => (lists::IN_USE_ALLOW_V4, lists::IN_USE_ALLOW_V6),
            List::Deny => (lists::IN_USE_DENY_V4, lists::IN_USE_DENY_V6),
        }
    }
}

/// An address prefix with no bits set beyond its length: `203.0.113.0/24`,
/// `2001:db8::/48`, or a host (`/32`, `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Parses `ADDR/LEN` or a bare address (a /32 or /128). Host bits beyond
    /// the prefix are an error: `203.0.113.5/24` is probably a typo for
    /// either `203.0.113.5` or `203.0.113.0/24`, and guessing could deny a
    /// whole network.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = |why: String| format!("'{text}' is not a CIDR prefix: {why}");
        let (addr, len) = text.split_once('/').unwrap_or((text, ""));
        let addr: IpAddr = addr.parse().map_err(|_| {
            bad("expected an IPv4 or IPv6 address, like 203.0.113.0/24 or 2001:db8::/48".into())
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            "" if !text.contains('/') => max,
            len => len
                .parse()
                .ok()
                .filter(|len| *len <= max)
                .ok_or_else(|| bad(format!("the prefix length must be 0..{max}")))?,
        };
        let net = IpNet::new(addr, len).map_err(|err| bad(err.to_string()))?;
        if net.trunc() != net {
            return Err(bad(format!(
                "host bits set beyond /{len} (did you mean {}?)",
                net.trunc()
            )));
        }
        Ok(Cidr(net))
    }

    pub fn net(&self) -> IpNet {
        self.0
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Cidr::parse(text)
    }
}

/// The host prefix of an address: a /32 or /128.
impl From<IpAddr> for Cidr {
    fn from(addr: IpAddr) -> Self {
        Cidr(IpNet::from(addr))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How long `--for` may be: a second to a year.
const FOR: Span = Span {
    min: Duration::from_secs(1),
    max: Duration::from_secs(365 * 86400),
    off: false,
};

/// Parses `--for`, saying what is allowed if it is not.
pub fn parse_for(text: &str) -> Result<Duration, String> {
    FOR.parse(text)
        .map_err(|why| format!("{why} (allowed: {})", FOR.allowed()))
}

/// `203.0.113.66/32  expires in 9m58s  syn_penalty`.
pub fn describe(entry: &ListedEntry) -> String {
    let expiry = match entry.expires_in_ms {
        None => "never expires".to_owned(),
        // Whole seconds: the last tick of a clock is noise here.
        Some(ms @ 1000..) => format!(
            "expires in {}",
            duration::format(Duration::from_secs(ms / 1000))
        ),
        Some(ms) => format!("expires in {}", duration::format(Duration::from_millis(ms))),
    };
    format!(
        "{:<44} {:<22} {}",
        entry.cidr.to_string(),
        expiry,
        entry.reason.name()
    )
}

/// The two tries of one list, and the flags that tell the programs whether
/// to search them (LISTS_IN_USE, shared by both lists).
pub struct ListMaps<T> {
    pub list: List,
    pub v4: LpmTrie<T, [u8; 4], ListEntry>,
    pub v6: LpmTrie<T, [u8; 16], ListEntry>,
    pub in_use: Array<T, u32>,
}

impl<T> fmt::Debug for ListMaps<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListMaps({})", self.list.name())
    }
}

impl ListMaps<MapData> {
    /// The list of the filter pinned at `pins`.
    pub fn open(pins: &IfacePins, list: List) -> anyhow::Result<Self> {
        let (v4, v6) = list.maps();
        Ok(Self {
            list,
            v4: LpmTrie::try_from(pins.open_map(v4)?)?,
            v6: LpmTrie::try_from(pins.open_map(v6)?)?,
            in_use: Array::try_from(pins.open_map(map::LISTS_IN_USE)?)?,
        })
    }
}

/// What is stored for one prefix.
enum Stored {
    V4(Key<[u8; 4]>),
    V6(Key<[u8; 16]>),
}

fn key(cidr: &Cidr) -> Stored {
    let len = u32::from(cidr.0.prefix_len());
    match cidr.0.network() {
        IpAddr::V4(v4) => Stored::V4(Key::new(len, v4.octets())),
        IpAddr::V6(v6) => Stored::V6(Key::new(len, v6.octets())),
    }
}

fn not_found(result: Result<ListEntry, MapError>) -> anyhow::Result<Option<ListEntry>> {
    match result {
        Ok(entry) => Ok(Some(entry)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(err) => Err(err).context("reading a list entry"),
    }
}

fn expired(entry: &ListEntry, now_ns: u64) -> bool {
    entry.expires_ns != 0 && entry.expires_ns <= now_ns
}

/// Entries of one trie that have not expired at `now_ns`.
pub fn live_entries<T: Borrow<MapData>, K: Pod>(
    trie: &LpmTrie<T, K, ListEntry>,
    now_ns: u64,
) -> usize {
    trie.iter()
        .filter(|item| matches!(item, Ok((_, entry)) if !expired(entry, now_ns)))
        .count()
}

impl<T: Borrow<MapData>> ListMaps<T> {
    /// The entry stored for exactly this prefix. (A lookup in an LPM trie
    /// returns the longest prefix covering the key: it is this one only if
    /// the entry's own prefix length says so.)
    pub fn get(&self, cidr: &Cidr) -> anyhow::Result<Option<ListEntry>> {
        let found = match key(cidr) {
            Stored::V4(key) => not_found(self.v4.get(&key, 0))?,
            Stored::V6(key) => not_found(self.v6.get(&key, 0))?,
        };
        Ok(found.filter(|entry| entry.prefix_len == cidr.0.prefix_len()))
    }

    /// Every entry with its prefix, IPv4 first, in trie order.
    pub fn raw_entries(&self) -> anyhow::Result<Vec<(Cidr, ListEntry)>> {
        let cidr = |addr: IpAddr, len: u32| -> anyhow::Result<Cidr> {
            let len = u8::try_from(len)?;
            Ok(Cidr(IpNet::new(addr, len)?.trunc()))
        };
        let mut all = Vec::new();
        for item in self.v4.iter() {
            let (key, entry) = item.context("reading the IPv4 list")?;
            all.push((cidr(IpAddr::from(key.data()), key.prefix_len())?, entry));
        }
        for item in self.v6.iter() {
            let (key, entry) = item.context("reading the IPv6 list")?;
            all.push((cidr(IpAddr::from(key.data()), key.prefix_len())?, entry));
        }
        Ok(all)
    }

    /// Live entries as `list` shows them, sorted by prefix.
    pub fn entries(&self, now_ns: u64) -> anyhow::Result<Vec<ListedEntry>> {
        let mut live: Vec<(Cidr, ListEntry)> = self
            .raw_entries()?
            .into_iter()
            .filter(|(_, entry)| !expired(entry, now_ns))
            .collect();
        live.sort_by_key(|(cidr, _)| *cidr);
        Ok(live
            .into_iter()
            .map(|(cidr, entry)| ListedEntry {
                cidr: cidr.0,
                expires_in_ms: (entry.expires_ns != 0)
                    .then(|| (entry.expires_ns - now_ns) / 1_000_000),
                reason: ListSource::from_u8(entry.source),
            })
            .collect())
    }
}

impl<T: BorrowMut<MapData>> ListMaps<T> {
    fn put(&mut self, cidr: &Cidr, entry: &ListEntry) -> Result<(), MapError> {
        match key(cidr) {
            Stored::V4(key) => self.v4.insert(&key, entry, 0),
            Stored::V6(key) => self.v6.insert(&key, entry, 0),
        }
    }

    fn delete(&mut self, cidr: &Cidr) -> Result<(), MapError> {
        match key(cidr) {
            Stored::V4(key) => self.v4.remove(&key),
            Stored::V6(key) => self.v6.remove(&key),
        }
    }

    /// Adds (or replaces) `cidrs`, expiring `lasting` after `now_ns`
    /// (`None`: never). All or nothing: if one write fails, the ones before
    /// it are undone.
    pub fn add(
        &mut self,
        cidrs: &[Cidr],
        lasting: Option<Duration>,
        source: ListSource,
        now_ns: u64,
    ) -> anyhow::Result<()> {
        let expires_ns = lasting.map_or(0, |d| {
            now_ns.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        });
        let mut done: Vec<(Cidr, Option<ListEntry>)> = Vec::new();
        for cidr in cidrs {
            let entry = ListEntry {
                expires_ns,
                prefix_len: cidr.0.prefix_len(),
                source: source as u8,
                _padding: [0; 6],
            };
            let before = self.get(cidr)?;
            if let Err(err) = self.put(cidr, &entry) {
                self.undo(done);
                self.sync_in_use()?;
                return Err(err).with_context(|| {
                    format!(
                        "adding {cidr} (the list holds at most {} prefixes per address family; nothing was changed)",
                        lists::LIST_ENTRIES
                    )
                });
            }
            done.push((*cidr, before));
        }
        self.sync_in_use()
    }

    fn undo(&mut self, done: Vec<(Cidr, Option<ListEntry>)>) {
        for (cidr, before) in done.into_iter().rev() {
            let _ = match before {
                Some(entry) => self.put(&cidr, &entry),
                None => self.delete(&cidr),
            };
        }
    }

    /// Removes `cidrs`; fails, removing nothing, unless every one is on the list.
    pub fn remove(&mut self, cidrs: &[Cidr], now_ns: u64) -> anyhow::Result<()> {
        for cidr in cidrs {
            match self.get(cidr)? {
                Some(entry) if !expired(&entry, now_ns) => {}
                _ => bail!("{cidr} is not on the list; nothing was removed"),
            }
        }
        for cidr in cidrs {
            self.delete(cidr)
                .with_context(|| format!("removing {cidr}"))?;
        }
        self.sync_in_use()
    }

    /// Removes every expired entry; returns how many.
    pub fn cleanup(&mut self, now_ns: u64) -> anyhow::Result<usize> {
        let stale: Vec<Cidr> = self
            .raw_entries()?
            .into_iter()
            .filter(|(_, entry)| expired(entry, now_ns))
            .map(|(cidr, _)| cidr)
            .collect();
        for cidr in &stale {
            // A concurrent refresh may have replaced it: delete only if still expired.
            if self.get(cidr)?.is_some_and(|entry| expired(&entry, now_ns)) {
                let _ = self.delete(cidr);
            }
        }
        self.sync_in_use()?;
        Ok(stale.len())
    }

    /// Tells the programs which of the two tries hold entries: set after
    /// entries are added, cleared once a trie is found empty. (A read error
    /// counts as "holds entries": searching an empty trie is only slower.)
    fn sync_in_use(&mut self) -> anyhow::Result<()> {
        let (v4_slot, v6_slot) = self.list.in_use_slots();
        let v4 = u32::from(self.v4.keys().next().is_some());
        let v6 = u32::from(self.v6.keys().next().is_some());
        self.in_use
            .set(v4_slot, &v4, 0)
            .and_then(|()| self.in_use.set(v6_slot, &v6, 0))
            .with_context(|| format!("marking the {} list in use", self.list.name()))
    }
}

/// Holds an exclusive lock on the interface's pin directory until dropped,
/// so that list changes run one at a time: two at once could otherwise
/// clear a trie's in-use flag after the other added to it.
fn lock(pins: &IfacePins) -> anyhow::Result<Flock<File>> {
    let dir = File::open(pins.dir())
        .with_context(|| format!("opening {} (is the filter attached?)", pins.dir().display()))?;
    Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("locking {}", pins.dir().display()))
}

/// Opens `list` for a change, after removing the expired entries of both
/// lists; the lock is held until the returned guard is dropped.
fn open_for_change(
    pins: &IfacePins,
    list: List,
) -> anyhow::Result<(Flock<File>, ListMaps<MapData>)> {
    let lock = lock(pins)?;
    let now = now_ns();
    for each in [List::Allow, List::Deny] {
        ListMaps::open(pins, each)?.cleanup(now)?;
    }
    Ok((lock, ListMaps::open(pins, list)?))
}

/// `filter-ctl allow|deny add`.
pub fn add(
    pins: &IfacePins,
    list: List,
    cidrs: &[Cidr],
    lasting: Option<Duration>,
) -> anyhow::Result<Vec<ListedEntry>> {
    let (_lock, mut maps) = open_for_change(pins, list)?;
    maps.add(cidrs, lasting, ListSource::Operator, now_ns())?;
    maps.entries(now_ns())
}

/// `filter-ctl allow|deny del`.
pub fn del(pins: &IfacePins, list: List, cidrs: &[Cidr]) -> anyhow::Result<Vec<ListedEntry>> {
    let (_lock, mut maps) = open_for_change(pins, list)?;
    maps.remove(cidrs, now_ns())
        .with_context(|| format!("on the {} list", list.name()))?;
    maps.entries(now_ns())
}

/// Removes the expired entries of both lists (the daemon does, every few
/// seconds); returns how many.
pub fn remove_expired(pins: &IfacePins) -> anyhow::Result<usize> {
    let _lock = lock(pins)?;
    let now = now_ns();
    let mut removed = 0;
    for list in [List::Allow, List::Deny] {
        removed += ListMaps::open(pins, list)?.cleanup(now)?;
    }
    Ok(removed)
}

/// `filter-ctl allow|deny list`: reads only.
pub fn list(pins: &IfacePins, list: List) -> anyhow::Result<Vec<ListedEntry>> {
    ListMaps::open(pins, list)?.entries(now_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_with_or_without_a_length() {
        let c = Cidr::parse("203.0.113.0/24").unwrap();
        assert_eq!(c.net(), "203.0.113.0/24".parse::<IpNet>().unwrap());
        assert_eq!(Cidr::parse("203.0.113.7").unwrap().net().prefix_len(), 32);
        assert_eq!(
            Cidr::parse("2001:db8::/48").unwrap().to_string(),
            "2001:db8::/48"
        );
        assert_eq!(
            Cidr::parse("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().net().prefix_len(), 0);
        let host = Cidr::from(IpAddr::from([192, 0, 2, 1]));
        assert_eq!(host.to_string(), "192.0.2.1/32");
    }

    #[test]
    fn bad_cidrs_say_why() {
        for (text, why) in [
            ("203.0.113.5/24", "did you mean 203.0.113.0/24"),
            ("203.0.113.0/33", "0..32"),
            ("2001:db8::/129", "0..128"),
            ("300.1.2.3", "expected an IPv4 or IPv6 address"),
            ("example.org", "expected an IPv4 or IPv6 address"),
            ("2001:db8::1/64", "did you mean 2001:db8::/64"),
            ("10.0.0.0/x", "0..32"),
            ("10.0.0.0/", "0..32"),
        ] {
            let err = Cidr::parse(text).unwrap_err();
            assert!(err.contains(text) && err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn for_takes_one_second_to_a_year() {
        assert_eq!(parse_for("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_for("2d").unwrap(), Duration::from_secs(2 * 86400));
        for bad in ["500ms", "366d", "soon", "0s", "2y"] {
            let err = parse_for(bad).unwrap_err();
            assert!(err.ends_with("(allowed: 1s..365d)"), "{bad}: {err}");
        }
    }

    #[test]
    fn entries_describe_their_expiry() {
        let entry = ListedEntry {
            cidr: "203.0.113.66/32".parse().unwrap(),
            expires_in_ms: Some(598_700),
            reason: ListSource::SynPenalty,
        };
        let text = describe(&entry);
        assert!(
            text.starts_with("203.0.113.66/32 ")
                && text.contains("expires in 9m58s ")
                && text.ends_with("syn_penalty"),
            "{text}"
        );
        let soon = ListedEntry {
            expires_in_ms: Some(250),
            ..entry.clone()
        };
        assert!(describe(&soon).contains("expires in 250ms"));
        let never = ListedEntry {
            expires_in_ms: None,
            ..entry
        };
        assert!(describe(&never).contains("never expires"));
    }
}
