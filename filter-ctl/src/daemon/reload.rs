//! The daemon's config file: the settings TOML of `attach --config` and
//! `apply`, holding the filter's whole configuration (a key left out takes
//! its default). Read at start, on SIGHUP and when the file changes.
//!
//! Changes are found by polling the file's metadata once a second (inode,
//! size, modification time) and then comparing its text, rather than with
//! inotify (the notify crate): editors and config managers replace files by
//! renaming a new one over them, symlinks get swapped, directories get
//! remounted; a watch on the old inode misses all of those, a stat by path
//! each second sees them and costs nothing next to the daemon's other
//! once-a-second work.
//!
//! The file is read as `apply` reads one ([`crate::textfile`]): a regular
//! file of at most 1 MiB, opened without blocking, so a FIFO or a device put
//! in its place is refused and logged, never waited on.
//!
//! A file is checked whole before anything is written: a bad key or value
//! is logged with what is wrong and the running settings stay as they were.
//! A good one is written the way `filter-ctl apply` writes it: under the
//! interface's lock, into the spare ports and limits elements, then one
//! write of the config switches the programs to them along with every other
//! changed key ([`crate::settings`]), so they see the old settings or the
//! new ones, never a mix.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::Context as _;
use filter_common::settings::{Assignment, Input, SETTINGS, Settings};
use serde::{Deserialize, Deserializer, de};

use super::upstream;
use crate::{
    attach,
    pins::PinRoot,
    settings::{self, SettingsMaps},
    textfile,
};

/// What the file looked like when it was last read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    seen: Option<Seen>,
    /// What the last read found: the text, or why it could not be read.
    content: Result<String, String>,
}

impl ConfigFile {
    /// Reads and checks the file: the daemon refuses to start on a bad one.
    /// A file that does not exist (yet) gives no settings: the filter keeps
    /// its own (the defaults, when attached afresh), and the file is
    /// applied once it appears (the package installs only an example).
    pub fn open(path: &Path) -> anyhow::Result<(ConfigFile, Option<DaemonFile>)> {
        let mut file = ConfigFile {
            path: path.to_owned(),
            seen: None,
            content: Err(String::new()),
        };
        if fs::symlink_metadata(path).is_err_and(|err| err.kind() == std::io::ErrorKind::NotFound) {
            return Ok((file, None));
        }
        let read = file.read()?;
        Ok((file, Some(read)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the file's metadata changed since it was last read.
    pub fn touched(&self) -> bool {
        seen(&self.path) != self.seen
    }

    /// Reads the file and checks it; its text (or why it could not be read)
    /// is remembered either way, so a bad file is reported once, not every
    /// second.
    pub fn read(&mut self) -> anyhow::Result<DaemonFile> {
        self.seen = seen(&self.path);
        let text = textfile::read(&self.path);
        self.content = text
            .as_ref()
            .map(Clone::clone)
            .map_err(|err| format!("{err:#}"));
        parse(&text?).with_context(|| format!("in {}", self.path.display()))
    }

    /// Reads the file again if its text (or why it cannot be read) changed;
    /// `None` if it did not.
    pub fn reread_if_changed(&mut self) -> Option<anyhow::Result<DaemonFile>> {
        let before = self.content.clone();
        let read = self.read();
        (self.content != before).then_some(read)
    }
}

fn seen(path: &Path) -> Option<Seen> {
    let meta = fs::metadata(path).ok()?;
    Some(Seen {
        inode: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// Every setting as the file states it: the keys it has, the defaults for
/// the rest. An error names the bad key, its value and what is allowed.
pub fn settings_of(text: &str) -> anyhow::Result<Vec<Assignment>> {
    parse(text).map(|file| file.settings)
}

/// The daemon's config file: the settings (the keys of `set`, at the top)
/// and the `[upstream]` section.
#[derive(Clone, Debug)]
pub struct DaemonFile {
    /// Every setting: the file's, the defaults for the rest.
    pub settings: Vec<Assignment>,
    pub upstream: Option<upstream::config::Config>,
}

/// Reads a whole config file. An error names the bad key, its value and
/// what is allowed, with its line and column.
pub fn parse(text: &str) -> anyhow::Result<DaemonFile> {
    // One line for the log: where, and what is wrong (toml's own display
    // adds the source line and a marker underneath).
    let (assignments, upstream) = stated(text).map_err(|err| {
        let at = err.span().map_or(String::new(), |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        anyhow::anyhow!("{at}{}", err.message())
    })?;
    let settings = Settings::default().with(&assignments)?;
    Ok(DaemonFile {
        settings: settings
            .values()
            .map(|(key, value)| Assignment::text(key, &value).expect("a shown value parses back"))
            .collect(),
        upstream,
    })
}

/// The settings a file states (without defaults for the rest), each
/// checked alone, and its `[upstream]` section: what `filter-ctl apply`
/// and `attach --config` take from the daemon's file.
pub fn stated(
    text: &str,
) -> Result<(Vec<Assignment>, Option<upstream::config::Config>), toml::de::Error> {
    toml::from_str(text).map(
        |Stated {
             assignments,
             upstream,
         }| (assignments, upstream),
    )
}

/// What a file states: settings, each checked where it stands (as
/// `filter_common::settings::Assignments` reads them), and the section.
struct Stated {
    assignments: Vec<Assignment>,
    upstream: Option<upstream::config::Config>,
}

impl<'de> Deserialize<'de> for Stated {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FileVisitor;

        impl<'de> de::Visitor<'de> for FileVisitor {
            type Value = Stated;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("settings (KEY = VALUE), then an optional [upstream] section")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Stated, A::Error> {
                let mut stated = Stated {
                    assignments: Vec::new(),
                    upstream: None,
                };
                while let Some(key) = map.next_key_seed(FileKey)? {
                    match key {
                        None => stated.upstream = Some(map.next_value()?),
                        Some(key) => stated
                            .assignments
                            .push(map.next_value_seed(SettingValue(key))?),
                    }
                }
                Ok(stated)
            }
        }

        deserializer.deserialize_map(FileVisitor)
    }
}

/// A key at the top of the file: a setting's (`Some`), or `upstream`.
struct FileKey;

impl<'de> de::DeserializeSeed<'de> for FileKey {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(deserializer)?;
        if key == "upstream" {
            return Ok(None);
        }
        SETTINGS
            .iter()
            .map(|setting| setting.key())
            .find(|known| *known == key)
            .map(Some)
            .ok_or_else(|| {
                let known: Vec<&str> = SETTINGS.iter().map(|setting| setting.key()).collect();
                de::Error::custom(format!(
                    "unknown setting '{key}' (known: {}; and the [upstream] section)",
                    known.join(", ")
                ))
            })
    }
}

/// A setting's value, checked where it stands.
struct SettingValue(&'static str);

impl<'de> de::DeserializeSeed<'de> for SettingValue {
    type Value = Assignment;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Assignment, D::Error> {
        let key = self.0;
        let input = Input::deserialize(deserializer)
            .map_err(|err| de::Error::custom(format!("{key}: {err}")))?;
        Assignment::new(key, input).map_err(de::Error::custom)
    }
}

/// Writes `assignments` to the filter on `iface`, under its lock (waiting
/// for a command changing it meanwhile); returns the settings that changed,
/// as `key old -> new`.
pub fn apply(
    root: &PinRoot,
    iface: &str,
    assignments: &[Assignment],
) -> anyhow::Result<Vec<String>> {
    let (_lock, pins) = attach::lock_for_change(root, iface)?;
    let mut maps = SettingsMaps::open(&pins)?;
    let before = maps.read()?;
    let after = maps.apply(assignments)?;
    Ok(settings::changes(&before, &after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_states_every_setting() {
        let all = settings_of("monitor = true\nsample_rate = \"50/s\"\n").unwrap();
        let settings = Settings::default().with(&all).unwrap();
        assert_eq!(settings.config.monitor, 1);
        assert_eq!(settings.config.sample_rate, 50);
        // Left out: the default.
        assert_eq!(
            settings.config.solicited_ttl_ns,
            Settings::default().config.solicited_ttl_ns
        );
        assert_eq!(all.len(), Settings::default().values().count());
    }

    #[test]
    fn a_bad_file_names_the_key() {
        let err = format!(
            "{:#}",
            settings_of("monitor = true\nsample_rate = \"fast\"\n").unwrap_err()
        );
        assert!(
            err.starts_with("line 2, column 15: invalid value 'fast' for sample_rate")
                && !err.contains('\n'),
            "{err}"
        );
        let err = format!("{:#}", settings_of("ntp_ports = [53]\n").unwrap_err());
        assert!(err.contains("port 53 is in both"), "{err}");
    }

    /// The daemon reads its file as `apply` does: a file of comments over
    /// 1 MiB (which parsed as "every key at its default") and a FIFO put in
    /// its place (which blocked the daemon in open) are refused at once.
    #[test]
    fn a_huge_file_or_a_fifo_is_refused_not_read_or_waited_on() {
        let dir = std::env::temp_dir().join(format!("wf-reload-big-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("filter.toml");
        fs::write(&path, "# a comment\n".repeat(300_000)).unwrap();
        let err = ConfigFile::open(&path).err().map(|err| format!("{err:#}"));
        assert!(
            err.as_deref()
                .is_some_and(|err| err.contains("larger than")),
            "{err:?}"
        );
        fs::write(&path, "monitor = true\n").unwrap();
        let (mut file, _) = ConfigFile::open(&path).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        fs::rename(&fifo, &path).unwrap();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(file.reread_if_changed().map(|read| read.is_err())));
        let refused = result
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the FIFO is refused at once");
        assert_eq!(refused, Some(true));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A file that is not there yet: no settings, and it is read once it
    /// appears.
    #[test]
    fn a_missing_file_is_read_when_it_appears() {
        let dir = std::env::temp_dir().join(format!("wf-reload-missing-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wan0.toml");
        let (mut file, settings) = ConfigFile::open(&path).unwrap();
        assert!(settings.is_none());
        assert!(!file.touched());
        fs::write(&path, "monitor = true\n").unwrap();
        assert!(file.touched());
        let read = file.reread_if_changed().expect("read once it appears");
        assert!(read.unwrap().settings.iter().any(|a| a.key() == "monitor"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_a_changed_text_is_read_again() {
        let dir = std::env::temp_dir().join(format!("wf-reload-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("filter.toml");
        fs::write(&path, "monitor = false\n").unwrap();
        let (mut file, _) = ConfigFile::open(&path).unwrap();
        assert!(!file.touched());
        assert!(file.reread_if_changed().is_none());
        // Replaced by a rename, as editors do.
        let new = dir.join("filter.toml.new");
        fs::write(&new, "monitor = true\n").unwrap();
        fs::rename(&new, &path).unwrap();
        assert!(file.touched());
        assert!(file.reread_if_changed().unwrap().is_ok());
        fs::write(&path, "monitor = maybe\n").unwrap();
        assert!(file.reread_if_changed().unwrap().is_err());
        // Reported once.
        assert!(file.reread_if_changed().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
