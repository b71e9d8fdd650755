//! The allow and deny lists of a running filter: `filter-ctl allow|deny
//! add|del|list`. Each list is two LPM tries (IPv4, IPv6) of [`ListEntry`]
//! values (see `filter_common::lists`), in two copies.
//!
//! A change takes effect whole or not at all: it is written into the copy
//! of the list's tries that the programs do not read, with everything the
//! live copy holds, and then one write of the config switches the programs
//! to it ([`ListMaps::change`]). A change of 50,000 prefixes killed halfway
//! (SIGTERM, SIGKILL) leaves the old list live and a half-written spare,
//! which the next change clears first. The in-use flags of the new copy
//! are set before the switch, so every entry matches from the moment it is
//! live. Changes run under the interface's lock
//! ([`crate::pins::IfacePins::lock`]), one at a time.
//!
//! The cost: a change rewrites the whole list (about a second per 100,000
//! entries), and a SYN penalty entry the programs add to the live copy
//! while a change is being written is lost with it (the source is only
//! rate-limited again until its next penalty).
//!
//! Expiry: an entry added `--for` a duration holds a deadline on the
//! programs' clock ([`crate::clock`]); the kernel stops matching it the
//! moment it passes. The entry itself stays in the trie until the next
//! change of its list leaves it out of the new copy. Reading commands
//! (`list`, `status`) only leave expired entries out.

use std::{
    borrow::{Borrow, BorrowMut},
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    str::FromStr,
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, Pod,
    maps::{
        Array, MapData, MapError,
        lpm_trie::{Key, LpmTrie},
    },
};
use filter_common::{
    Config, ListEntry, ListSource, lists, map,
    report::ListedEntry,
    settings::{Kind as _, Span, duration},
};
use ipnet::IpNet;

use crate::{clock::now_ns, fault, pins::IfacePins};

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

    /// The names of the IPv4 and IPv6 tries of each copy.
    pub fn maps(self) -> [(&'static str, &'static str); 2] {
        match self {
            List::Allow => [
                (map::ALLOW_V4, map::ALLOW_V6),
                (map::ALLOW_V4_B, map::ALLOW_V6_B),
            ],
            List::Deny => [
                (map::DENY_V4, map::DENY_V6),
                (map::DENY_V4_B, map::DENY_V6_B),
            ],
        }
    }

    /// The LISTS_IN_USE slots of its IPv4 and IPv6 tries in `copy`.
    fn in_use_slots(self, copy: u32) -> (u32, u32) {
        let (v4, v6) = match self {
            List::Allow => (lists::IN_USE_ALLOW_V4, lists::IN_USE_ALLOW_V6),
            List::Deny => (lists::IN_USE_DENY_V4, lists::IN_USE_DENY_V6),
        };
        (lists::in_use_slot(v4, copy), lists::in_use_slot(v6, copy))
    }

    /// The copy the programs read, per `config`.
    pub fn live_copy(self, config: &Config) -> u32 {
        config.list_copy(self == List::Deny)
    }

    fn switch(self, config: &mut Config, copy: u32) {
        match self {
            List::Allow => config.allow_copy = copy as u8,
            List::Deny => config.deny_copy = copy as u8,
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
    /// whole network. An IPv4-mapped IPv6 prefix (`::ffff:198.18.0.0/112`)
    /// is the IPv4 prefix it maps (`198.18.0.0/16`).
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
        // The programs see an IPv4 source as IPv4: an IPv4-mapped IPv6
        // prefix (::ffff:198.18.0.1) would never match, so it is stored as
        // the IPv4 prefix it maps.
        let (addr, len) = match addr {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), len - 96),
                None => (addr, len),
            },
            _ => (addr, len),
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

    /// A prefix as a list holds it (host bits clear).
    pub fn from_net(net: IpNet) -> Self {
        Cidr(net.trunc())
    }

    /// Wider than /8 (IPv4) or /16 (IPv6): a large part of the Internet,
    /// `0.0.0.0/0` and `::/0` all of it. On the deny list it drops that
    /// much, on the allow list it exempts that much from every drop rule:
    /// `add` wants `--force` for it.
    pub fn is_wide(&self) -> bool {
        let widest = if self.0.addr().is_ipv4() { 8 } else { 16 };
        self.0.prefix_len() < widest
    }

    /// What a wide prefix does on `list`, for the error or the warning.
    pub fn wide_effect(&self, list: List) -> String {
        let (family, bits) = match self.0 {
            IpNet::V4(_) => ("IPv4", 32),
            IpNet::V6(_) => ("IPv6", 128),
        };
        let share = match self.0.prefix_len() {
            0 => format!("every {family} source"),
            len => format!(
                "1/{} of all {family} addresses (2^{} of them)",
                1u64 << len,
                bits - len
            ),
        };
        let effect = match list {
            List::Deny => format!("drops everything from {share}"),
            List::Allow => format!("exempts {share} from every drop rule"),
        };
        let mapped = if self.0.addr().is_ipv4() {
            " (an IPv4-mapped IPv6 prefix, such as ::ffff:0:0/96, is stored as its IPv4 prefix)"
        } else {
            ""
        };
        format!("{self} on the {} list {effect}{mapped}", list.name())
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
    // Rounded up, so that an entry added `--for 1.5s` or `--for 10m` shows
    // that right away: to the tenth of a second below a minute, to the
    // second above (the last tick of a clock is noise there).
    let expiry = match entry.expires_in_ms {
        None => "never expires".to_owned(),
        Some(ms) => {
            let shown = match ms {
                0..1000 => ms,
                1000..60_000 => ms.div_ceil(100) * 100,
                _ => ms.div_ceil(1000) * 1000,
            };
            format!(
                "expires in {}",
                duration::format(Duration::from_millis(shown))
            )
        }
    };
    format!(
        "{:<44} {:<22} {}",
        entry.cidr.to_string(),
        expiry,
        entry.reason.name()
    )
}

/// One copy of a list: its IPv4 and IPv6 tries.
pub struct Tries<T> {
    pub v4: LpmTrie<T, [u8; 4], ListEntry>,
    pub v6: LpmTrie<T, [u8; 16], ListEntry>,
}

/// Both copies of one list's tries, the flags that tell the programs
/// whether to search a trie (LISTS_IN_USE, shared by both lists), and the
/// config, whose `allow_copy`/`deny_copy` says which copy is live.
pub struct ListMaps<T> {
    pub list: List,
    pub copies: [Tries<T>; 2],
    pub in_use: Array<T, u32>,
    pub config: Array<T, Config>,
}

impl<T> fmt::Debug for ListMaps<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListMaps({})", self.list.name())
    }
}

impl ListMaps<MapData> {
    /// The list of the filter pinned at `pins`.
    pub fn open(pins: &IfacePins, list: List) -> anyhow::Result<Self> {
        let copy = |(v4, v6): (&str, &str)| -> anyhow::Result<Tries<MapData>> {
            Ok(Tries {
                v4: LpmTrie::try_from(pins.open_map(v4)?)?,
                v6: LpmTrie::try_from(pins.open_map(v6)?)?,
            })
        };
        let [a, b] = list.maps();
        Ok(Self {
            list,
            copies: [copy(a)?, copy(b)?],
            in_use: Array::try_from(pins.open_map(map::LISTS_IN_USE)?)?,
            config: Array::try_from(pins.open_map(map::CONFIG)?)?,
        })
    }
}

impl<'a> ListMaps<&'a mut MapData> {
    /// The list of a loaded object (a test's own instance).
    pub fn of(ebpf: &'a mut Ebpf, list: List) -> anyhow::Result<Self> {
        let [(a4, a6), (b4, b6)] = list.maps();
        let [a4, a6, b4, b6, in_use, config] =
            ebpf.maps_disjoint_mut([a4, a6, b4, b6, map::LISTS_IN_USE, map::CONFIG]);
        let missing = || anyhow::anyhow!("list maps missing from the eBPF object");
        Ok(Self {
            list,
            copies: [
                Tries {
                    v4: LpmTrie::try_from(a4.ok_or_else(missing)?)?,
                    v6: LpmTrie::try_from(a6.ok_or_else(missing)?)?,
                },
                Tries {
                    v4: LpmTrie::try_from(b4.ok_or_else(missing)?)?,
                    v6: LpmTrie::try_from(b6.ok_or_else(missing)?)?,
                },
            ],
            in_use: Array::try_from(in_use.ok_or_else(missing)?)?,
            config: Array::try_from(config.ok_or_else(missing)?)?,
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

/// An entry as `list` shows it.
fn listed(cidr: Cidr, entry: &ListEntry, now_ns: u64) -> ListedEntry {
    ListedEntry {
        cidr: cidr.0,
        expires_in_ms: (entry.expires_ns != 0)
            .then(|| entry.expires_ns.saturating_sub(now_ns) / 1_000_000),
        reason: ListSource::from_u8(entry.source),
    }
}

/// Every entry of one copy, IPv4 first, in trie order.
fn copy_entries<T: Borrow<MapData>>(tries: &Tries<T>) -> anyhow::Result<Vec<(Cidr, ListEntry)>> {
    let cidr = |addr: IpAddr, len: u32| -> anyhow::Result<Cidr> {
        let len = u8::try_from(len)?;
        Ok(Cidr(IpNet::new(addr, len)?.trunc()))
    };
    let mut all = Vec::new();
    for item in tries.v4.iter() {
        let (key, entry) = item.context("reading the IPv4 list")?;
        all.push((cidr(IpAddr::from(key.data()), key.prefix_len())?, entry));
    }
    for item in tries.v6.iter() {
        let (key, entry) = item.context("reading the IPv6 list")?;
        all.push((cidr(IpAddr::from(key.data()), key.prefix_len())?, entry));
    }
    Ok(all)
}

impl<T: Borrow<MapData>> ListMaps<T> {
    /// The copy the programs read now.
    pub fn live_copy(&self) -> anyhow::Result<u32> {
        let config = self.config.get(&0, 0).context("reading the config map")?;
        Ok(self.list.live_copy(&config))
    }

    /// The entry stored for exactly this prefix in the live copy. (A lookup
    /// in an LPM trie returns the longest prefix covering the key: it is
    /// this one only if the entry's own prefix length says so.)
    pub fn get(&self, cidr: &Cidr) -> anyhow::Result<Option<ListEntry>> {
        let tries = &self.copies[self.live_copy()? as usize];
        let found = match key(cidr) {
            Stored::V4(key) => not_found(tries.v4.get(&key, 0))?,
            Stored::V6(key) => not_found(tries.v6.get(&key, 0))?,
        };
        Ok(found.filter(|entry| entry.prefix_len == cidr.0.prefix_len()))
    }

    /// Every entry of the live copy with its prefix (expired ones too),
    /// IPv4 first, in trie order. A change switching copies meanwhile makes
    /// it read again.
    pub fn raw_entries(&self) -> anyhow::Result<Vec<(Cidr, ListEntry)>> {
        loop {
            let copy = self.live_copy()?;
            let entries = copy_entries(&self.copies[copy as usize])?;
            if self.live_copy()? == copy {
                return Ok(entries);
            }
        }
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
            .map(|(cidr, entry)| listed(cidr, &entry, now_ns))
            .collect())
    }
}

impl<T: BorrowMut<MapData>> ListMaps<T> {
    /// Changes the list all at once: `edit` gets the live entries (those
    /// that expired by `now_ns` left out) and changes them; the result is
    /// written into the spare copy, which then becomes the live one. If
    /// `edit` fails or the result does not fit, nothing changes. Returns
    /// the entries now live.
    pub fn change(
        &mut self,
        now_ns: u64,
        edit: impl FnOnce(&mut BTreeMap<Cidr, ListEntry>) -> anyhow::Result<()>,
    ) -> anyhow::Result<BTreeMap<Cidr, ListEntry>> {
        let mut config = self.config.get(&0, 0).context("reading the config map")?;
        let live = self.list.live_copy(&config);
        let spare = 1 - live;
        let mut entries: BTreeMap<Cidr, ListEntry> = copy_entries(&self.copies[live as usize])?
            .into_iter()
            .filter(|(_, entry)| !expired(entry, now_ns))
            .collect();
        edit(&mut entries)?;
        let v4 = entries
            .keys()
            .filter(|cidr| cidr.0.addr().is_ipv4())
            .count();
        let v6 = entries.len() - v4;
        if v4.max(v6) > lists::LIST_ENTRIES as usize {
            bail!(
                "the {} list would hold {v4} IPv4 and {v6} IPv6 prefixes: it holds at most {} \
                 prefixes per address family; nothing was changed",
                self.list.name(),
                lists::LIST_ENTRIES
            );
        }

        // What an interrupted change left in the spare copy goes first.
        self.clear(spare)?;
        for (cidr, entry) in &entries {
            let written = match key(cidr) {
                Stored::V4(key) => self.copies[spare as usize].v4.insert(&key, entry, 0),
                Stored::V6(key) => self.copies[spare as usize].v6.insert(&key, entry, 0),
            };
            if let Err(err) = written {
                let _ = self.clear(spare);
                return Err(err).with_context(|| {
                    format!(
                        "writing {cidr} to the {} list; nothing was changed",
                        self.list.name()
                    )
                });
            }
        }
        self.set_in_use(spare, v4 > 0, v6 > 0)?;
        fault::point("lists: spare copy written");

        // The switch: one write of the config.
        self.list.switch(&mut config, spare);
        self.config
            .set(0, &config, 0)
            .context("switching the list to its new copy")?;
        fault::point("lists: switched");

        self.clear(live)?;
        Ok(entries)
    }

    /// Empties one copy and clears its in-use flags.
    fn clear(&mut self, copy: u32) -> anyhow::Result<()> {
        self.set_in_use(copy, false, false)?;
        let tries = &mut self.copies[copy as usize];
        let v4: Vec<_> = tries.v4.keys().filter_map(Result::ok).collect();
        for key in v4 {
            let _ = tries.v4.remove(&key);
        }
        let v6: Vec<_> = tries.v6.keys().filter_map(Result::ok).collect();
        for key in v6 {
            let _ = tries.v6.remove(&key);
        }
        Ok(())
    }

    fn set_in_use(&mut self, copy: u32, v4: bool, v6: bool) -> anyhow::Result<()> {
        let (v4_slot, v6_slot) = self.list.in_use_slots(copy);
        self.in_use
            .set(v4_slot, &u32::from(v4), 0)
            .and_then(|()| self.in_use.set(v6_slot, &u32::from(v6), 0))
            .with_context(|| format!("marking the {} list in use", self.list.name()))
    }

    /// Adds (or replaces) `cidrs`, expiring `lasting` after `now_ns`
    /// (`None`: never). All or nothing.
    pub fn add(
        &mut self,
        cidrs: &[Cidr],
        lasting: Option<Duration>,
        source: ListSource,
        now_ns: u64,
    ) -> anyhow::Result<BTreeMap<Cidr, ListEntry>> {
        let expires_ns = lasting.map_or(0, |d| {
            now_ns.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        });
        self.change(now_ns, |entries| {
            for cidr in cidrs {
                entries.insert(
                    *cidr,
                    ListEntry::new(expires_ns, cidr.0.prefix_len(), source),
                );
            }
            Ok(())
        })
    }

    /// Removes `cidrs`; fails, removing nothing, unless every one is on the
    /// list (naming one twice is naming it once).
    pub fn remove(
        &mut self,
        cidrs: &[Cidr],
        now_ns: u64,
    ) -> anyhow::Result<BTreeMap<Cidr, ListEntry>> {
        self.change(now_ns, |entries| {
            if let Some(missing) = cidrs.iter().find(|cidr| !entries.contains_key(cidr)) {
                bail!("{missing} is not on the list; nothing was removed");
            }
            for cidr in cidrs {
                entries.remove(cidr);
            }
            Ok(())
        })
    }

    /// Removes every expired entry; returns how many (no change when none).
    pub fn cleanup(&mut self, now_ns: u64) -> anyhow::Result<usize> {
        let stale = self
            .raw_entries()?
            .iter()
            .filter(|(_, entry)| expired(entry, now_ns))
            .count();
        if stale > 0 {
            self.change(now_ns, |_| Ok(()))?;
        }
        Ok(stale)
    }
}

/// Opens `list` for a change, after removing the expired entries of the
/// other list (the change itself leaves out those of `list`). The caller
/// holds the interface's lock.
fn open_for_change(pins: &IfacePins, list: List) -> anyhow::Result<ListMaps<MapData>> {
    let other = match list {
        List::Allow => List::Deny,
        List::Deny => List::Allow,
    };
    ListMaps::open(pins, other)?.cleanup(now_ns())?;
    ListMaps::open(pins, list)
}

/// What a list change did: the named prefixes as the list now holds them
/// (none after a `del`), and how many entries the list holds.
#[derive(Debug)]
pub struct Changed {
    pub entries: Vec<ListedEntry>,
    /// Prefixes named (each once).
    pub named: usize,
    pub total: usize,
}

impl Changed {
    fn of(cidrs: &[Cidr], now: &BTreeMap<Cidr, ListEntry>, now_ns: u64) -> Self {
        let named: std::collections::BTreeSet<&Cidr> = cidrs.iter().collect();
        let entries = named
            .iter()
            .filter_map(|cidr| now.get(cidr).map(|entry| listed(**cidr, entry, now_ns)))
            .collect();
        Self {
            entries,
            named: named.len(),
            total: now.len(),
        }
    }
}

/// `filter-ctl allow|deny add`; the caller holds the interface's lock.
pub fn add(
    pins: &IfacePins,
    list: List,
    cidrs: &[Cidr],
    lasting: Option<Duration>,
) -> anyhow::Result<Changed> {
    let mut maps = open_for_change(pins, list)?;
    let now = now_ns();
    let entries = maps.add(cidrs, lasting, ListSource::Operator, now)?;
    Ok(Changed::of(cidrs, &entries, now))
}

/// `filter-ctl allow|deny del`; the caller holds the interface's lock.
pub fn del(pins: &IfacePins, list: List, cidrs: &[Cidr]) -> anyhow::Result<Changed> {
    let mut maps = open_for_change(pins, list)?;
    let now = now_ns();
    let entries = maps
        .remove(cidrs, now)
        .with_context(|| format!("on the {} list", list.name()))?;
    Ok(Changed::of(cidrs, &entries, now))
}

/// Removes the expired entries of both lists (the daemon does, every few
/// seconds); returns how many. The caller holds the interface's lock.
pub fn remove_expired(pins: &IfacePins) -> anyhow::Result<usize> {
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
    fn prefixes_wider_than_8_or_16_bits_are_wide() {
        for wide in [
            "0.0.0.0/0",
            "::/0",
            "::ffff:0:0/96",
            "10.0.0.0/7",
            "2000::/15",
        ] {
            assert!(Cidr::parse(wide).unwrap().is_wide(), "{wide}");
        }
        for narrow in ["10.0.0.0/8", "2001::/16", "192.0.2.0/24", "2001:db8::/32"] {
            assert!(!Cidr::parse(narrow).unwrap().is_wide(), "{narrow}");
        }
        let all = Cidr::parse("::ffff:0:0/96")
            .unwrap()
            .wide_effect(List::Deny);
        assert!(
            all.starts_with("0.0.0.0/0 on the deny list drops everything from every IPv4 source")
                && all.contains("::ffff:0:0/96"),
            "{all}"
        );
        let part = Cidr::parse("2000::/15").unwrap().wide_effect(List::Allow);
        assert!(
            part.contains("exempts 1/32768 of all IPv6 addresses"),
            "{part}"
        );
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
                && text.contains("expires in 9m59s ")
                && text.ends_with("syn_penalty"),
            "{text}"
        );
        let soon = ListedEntry {
            expires_in_ms: Some(250),
            ..entry.clone()
        };
        assert!(describe(&soon).contains("expires in 250ms"));
        // Just added `--for 1.5s` (it said "expires in 1s").
        let fresh = ListedEntry {
            expires_in_ms: Some(1_499),
            ..soon.clone()
        };
        assert!(
            describe(&fresh).contains("expires in 1.5s "),
            "{}",
            describe(&fresh)
        );
        let never = ListedEntry {
            expires_in_ms: None,
            ..entry
        };
        assert!(describe(&never).contains("never expires"));
    }
}
