//! The allow and deny lists of a settings file: what an operator means to
//! keep. `filter-ctl allow|deny add` writes the maps only, and the maps
//! live in the bpf filesystem, which a reboot empties; a list in the file
//! is put back by every attach with the file, every `apply` of it and every
//! start and reload of the daemon (which attaches again after a reboot).
//!
//! ```toml
//! allow = ["192.0.2.53", "2001:db8:53::/48"]
//! deny = [
//!     "203.0.113.0/24",
//!     { prefix = "198.51.100.0/24", for = "7d" },
//!     { prefix = "198.18.0.0/15", until = 2027-01-31T00:00:00Z },
//!     { prefix = "10.0.0.0/7", force = true },
//! ]
//! ```
//!
//! An entry is checked as `add` checks it (a prefix with no host bits set,
//! `force = true` for one wider than /8 or /16) and can expire: `for` a
//! duration (1s..365d, as `--for`) counted from the file's last change, or
//! `until` a date and time (a TOML date-time with its offset, or a date:
//! midnight UTC). An entry that expired is not put back.
//!
//! The entries of the file carry their own source (`config_file`): applying
//! the file makes them exactly what it says (an entry taken out of the file
//! goes from the list), and leaves the entries added by `add` and the SYN
//! penalty alone, except where the file names the same prefix.

use std::{
    collections::BTreeMap,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use filter_common::{ListEntry, ListSource};
use serde::{Deserialize, Deserializer, de};

use crate::{
    clock::now_ns,
    lists::{self, Cidr, List, ListMaps},
    pins::IfacePins,
};

/// When an entry of the file ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ends {
    /// This long after the file's last change.
    For(Duration),
    /// At this time.
    Until(SystemTime),
}

/// One entry of a list in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub cidr: Cidr,
    pub ends: Option<Ends>,
    /// `force = true`: a prefix wider than /8 or /16 is meant.
    pub force: bool,
}

/// The allow and deny lists of a settings file (empty when it has none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct FileLists {
    #[serde(default)]
    pub allow: Vec<FileEntry>,
    #[serde(default)]
    pub deny: Vec<FileEntry>,
}

impl FileLists {
    /// The lists of a settings file's text (its settings are read
    /// elsewhere); an error says where and what is wrong.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let lists: FileLists = toml::from_str(text).map_err(|err| located(text, &err))?;
        for (list, entries) in [(List::Allow, &lists.allow), (List::Deny, &lists.deny)] {
            if let Some(wide) = entries
                .iter()
                .find(|entry| entry.cidr.is_wide() && !entry.force)
            {
                bail!(
                    "{}: {}: give it as {{ prefix = \"{}\", force = true }} if that is meant",
                    list.name(),
                    wide.cidr.wide_effect(list),
                    wide.cidr
                );
            }
        }
        Ok(lists)
    }

    pub fn entries(&self, list: List) -> &[FileEntry] {
        match list {
            List::Allow => &self.allow,
            List::Deny => &self.deny,
        }
    }
}

/// A TOML error as one line: where, and what is wrong.
pub fn located(text: &str, err: &toml::de::Error) -> anyhow::Error {
    let at = err.span().map_or(String::new(), |span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
        format!("line {line}, column {column}: ")
    });
    anyhow::anyhow!("{at}{}", err.message())
}

impl<'de> Deserialize<'de> for FileEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = FileEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a prefix (\"203.0.113.0/24\") or { prefix = \"...\", for = \"7d\" } \
                     (or until = 2027-01-31, force = true)",
                )
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<FileEntry, E> {
                Ok(FileEntry {
                    cidr: Cidr::parse(text).map_err(E::custom)?,
                    ends: None,
                    force: false,
                })
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<FileEntry, A::Error> {
                let (mut cidr, mut ends, mut force) = (None, None, false);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "prefix" => {
                            let text = map.next_value::<String>()?;
                            cidr = Some(Cidr::parse(&text).map_err(de::Error::custom)?);
                        }
                        "for" => {
                            let text = map.next_value::<String>()?;
                            let lasting = lists::parse_for(&text)
                                .map_err(|why| de::Error::custom(format!("for: {why}")))?;
                            ends = Some(Ends::For(lasting));
                        }
                        "until" => {
                            let when = map.next_value::<toml::value::Datetime>()?;
                            ends =
                                Some(Ends::Until(system_time(&when).map_err(de::Error::custom)?));
                        }
                        "force" => force = map.next_value()?,
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key '{other}' in a list entry (prefix, for, until, force)"
                            )));
                        }
                    }
                }
                Ok(FileEntry {
                    cidr: cidr.ok_or_else(|| de::Error::missing_field("prefix"))?,
                    ends,
                    force,
                })
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// A TOML date-time as a time: a date alone is midnight UTC; a date and
/// time needs its offset (`Z`, `+01:00`): a local time means nothing to a
/// daemon that may run in another zone.
fn system_time(when: &toml::value::Datetime) -> Result<SystemTime, String> {
    let Some(date) = when.date else {
        return Err(format!("until: {when} has no date"));
    };
    let (time, offset_minutes) = match (when.time, when.offset) {
        (None, _) => (None, 0),
        (Some(_), None) => {
            return Err(format!(
                "until: {when} has no offset: write it in UTC with a Z (2027-01-31T12:00:00Z) \
                 or with its offset (+01:00)"
            ));
        }
        (Some(time), Some(toml::value::Offset::Z)) => (Some(time), 0),
        (Some(time), Some(toml::value::Offset::Custom { minutes })) => {
            (Some(time), i64::from(minutes))
        }
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = time.map_or(0, |t| {
        i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second)
    });
    let unix = days * 86400 + seconds - offset_minutes * 60;
    u64::try_from(unix)
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
        .map_err(|_| format!("until: {when} is before 1970"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// What applying a file's list did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries of the file now on the list.
    pub listed: usize,
    /// Entries of the file that had expired, not put back.
    pub expired: usize,
    /// Whether the list changed.
    pub changed: bool,
}

/// The file's entries of `list` as the maps hold them (deadlines on the
/// programs' clock), those that expired left out; `modified` is the file's
/// last change, `now` the wall clock and `now_ns` the programs' clock.
fn resolve(
    entries: &[FileEntry],
    modified: SystemTime,
    now: SystemTime,
    now_ns: u64,
) -> (BTreeMap<Cidr, ListEntry>, usize) {
    let mut live = BTreeMap::new();
    let mut expired = 0;
    for entry in entries {
        let deadline = match entry.ends {
            None => None,
            Some(Ends::For(lasting)) => Some(modified + lasting),
            Some(Ends::Until(when)) => Some(when),
        };
        let expires_ns = match deadline.map(|at| at.duration_since(now)) {
            None => 0,
            Some(Ok(left)) if !left.is_zero() => {
                now_ns.saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX))
            }
            Some(_) => {
                expired += 1;
                continue;
            }
        };
        let prefix_len = entry.cidr.net().prefix_len();
        live.insert(
            entry.cidr,
            ListEntry::new(expires_ns, prefix_len, ListSource::ConfigFile),
        );
    }
    (live, expired)
}

/// Whether the live entries already are `wanted` where the file's entries
/// are concerned (deadlines equal to the second).
fn already(live: &BTreeMap<Cidr, ListEntry>, wanted: &BTreeMap<Cidr, ListEntry>) -> bool {
    let second = |ns: u64| ns / 1_000_000_000;
    let from_file = live
        .iter()
        .filter(|(_, entry)| entry.source == ListSource::ConfigFile as u8)
        .count();
    from_file == wanted.len()
        && wanted.iter().all(|(cidr, want)| {
            live.get(cidr).is_some_and(|have| {
                have.source == want.source
                    && have.prefix_len == want.prefix_len
                    && second(have.expires_ns) == second(want.expires_ns)
            })
        })
}

/// Makes `list` hold the file's entries (and keep the others); `modified`
/// is the file's last change. The caller holds the interface's lock.
pub fn apply(
    pins: &IfacePins,
    list: List,
    entries: &[FileEntry],
    modified: SystemTime,
) -> anyhow::Result<Applied> {
    let mut maps = ListMaps::open(pins, list)?;
    let now_ns = now_ns();
    let (wanted, expired) = resolve(entries, modified, SystemTime::now(), now_ns);
    let live: BTreeMap<Cidr, ListEntry> = maps
        .raw_entries()?
        .into_iter()
        .filter(|(_, entry)| entry.is_live(now_ns))
        .collect();
    let listed = wanted.len();
    if already(&live, &wanted) {
        return Ok(Applied {
            listed,
            expired,
            changed: false,
        });
    }
    maps.change(now_ns, |entries| {
        entries.retain(|_, entry| entry.source != ListSource::ConfigFile as u8);
        entries.extend(wanted);
        Ok(())
    })
    .with_context(|| format!("putting the file's {} list in place", list.name()))?;
    Ok(Applied {
        listed,
        expired,
        changed: true,
    })
}

/// Both lists of a file; one line on what was done, or `None` when the
/// lists already were so. The caller holds the interface's lock.
pub fn apply_both(
    pins: &IfacePins,
    lists: &FileLists,
    modified: SystemTime,
) -> anyhow::Result<Option<String>> {
    let mut said = Vec::new();
    for list in [List::Allow, List::Deny] {
        let applied = apply(pins, list, lists.entries(list), modified)?;
        if applied.changed {
            let expired = match applied.expired {
                0 => String::new(),
                n => format!(" ({n} expired, left out)"),
            };
            said.push(format!(
                "{} list: {} entr{} from the file{expired}",
                list.name(),
                applied.listed,
                if applied.listed == 1 { "y" } else { "ies" }
            ));
        }
    }
    Ok((!said.is_empty()).then(|| said.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        format!("{:#}", FileLists::parse(text).unwrap_err())
    }

    #[test]
    fn lists_are_prefixes_or_tables_with_an_end() {
        let lists = FileLists::parse(
            "monitor = true\nallow = [\"192.0.2.53\"]\ndeny = [\"203.0.113.0/24\", \
             { prefix = \"198.51.100.0/24\", for = \"7d\" }, \
             { prefix = \"198.18.0.0/15\", until = 2027-01-31T00:00:00Z }, \
             { prefix = \"2001:db8::/32\", until = 2027-01-31 }, \
             { prefix = \"10.0.0.0/7\", force = true }]\n",
        )
        .unwrap();
        assert_eq!(lists.allow.len(), 1);
        assert_eq!(lists.allow[0].cidr.to_string(), "192.0.2.53/32");
        assert_eq!(lists.deny.len(), 5);
        assert_eq!(lists.deny[0].ends, None);
        assert_eq!(
            lists.deny[1].ends,
            Some(Ends::For(Duration::from_secs(7 * 86400)))
        );
        // 2027-01-31 is 20,849 days after 1970-01-01.
        let midnight = UNIX_EPOCH + Duration::from_secs(20_849 * 86400);
        assert_eq!(lists.deny[2].ends, Some(Ends::Until(midnight)));
        assert_eq!(lists.deny[3].ends, Some(Ends::Until(midnight)));
        assert!(lists.deny[4].force);
        assert_eq!(
            FileLists::parse("monitor = true\n").unwrap(),
            FileLists::default()
        );
    }

    #[test]
    fn a_bad_entry_is_refused_as_add_refuses_it() {
        for (text, why) in [
            (
                "deny = [\"203.0.113.5/24\"]",
                "line 1, column 9: '203.0.113.5/24'",
            ),
            ("deny = [\"203.0.113.5/24\"]", "did you mean 203.0.113.0/24"),
            (
                "allow = [{ prefix = \"192.0.2.0/24\", for = \"2y\" }]",
                "for: ",
            ),
            ("deny = [\"0.0.0.0/0\"]", "force = true"),
            ("deny = [{ prefix = \"::/0\" }]", "every IPv6 source"),
            ("deny = [{ for = \"1h\" }]", "prefix"),
            (
                "deny = [{ prefix = \"192.0.2.0/24\", colour = \"red\" }]",
                "unknown key 'colour'",
            ),
            (
                "deny = [{ prefix = \"192.0.2.0/24\", until = 2027-01-31T00:00:00 }]",
                "no offset",
            ),
            ("deny = \"192.0.2.0/24\"", "line 1"),
        ] {
            let err = parse_err(text);
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn ends_are_counted_from_the_file_and_expired_entries_stay_out() {
        let lists = FileLists::parse(
            "deny = [\"203.0.113.0/24\", { prefix = \"198.51.100.0/24\", for = \"1h\" }, \
             { prefix = \"198.18.0.0/24\", for = \"10m\" }, \
             { prefix = \"198.18.1.0/24\", until = 2001-01-01 }]",
        )
        .unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        // Written 30 minutes ago: the 10-minute entry and the one of 2001 are over.
        let modified = now - Duration::from_secs(1800);
        let now_ns = 5_000_000_000;
        let (live, expired) = resolve(&lists.deny, modified, now, now_ns);
        assert_eq!(expired, 2);
        let keys: Vec<String> = live.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["198.51.100.0/24", "203.0.113.0/24"]);
        let hour = &live[&Cidr::parse("198.51.100.0/24").unwrap()];
        assert_eq!(hour.expires_ns, now_ns + 1800 * 1_000_000_000);
        assert_eq!(hour.source, ListSource::ConfigFile as u8);
        assert_eq!(live[&Cidr::parse("203.0.113.0/24").unwrap()].expires_ns, 0);
        // Read again a moment later: nothing to change.
        let (again, _) = resolve(&lists.deny, modified, now, now_ns + 1000);
        assert!(already(&live, &again));
        // An operator's entry is not the file's: still to be written.
        let mut by_hand = live.clone();
        by_hand.insert(
            Cidr::parse("203.0.113.0/24").unwrap(),
            ListEntry::new(0, 24, ListSource::Operator),
        );
        assert!(!already(&by_hand, &again));
    }
}
