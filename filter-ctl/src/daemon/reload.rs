//! The daemon's config file: the settings TOML of `attach --config` and
//! `apply`, holding the filter's whole configuration (a key left out takes
//! its default), the allow and deny lists to keep ([`crate::listfile`])
//! and the daemon's `[upstream]` section ([`super::upstream`]). Read at
//! start, on SIGHUP and when the file changes.
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
use filter_ctl_api::settings::{Assignment, Assignments, Settings};
use serde::Deserialize;

use super::upstream;
use crate::{
    attach,
    listfile::{self, FileLists},
    pins::{IfacePins, PinRoot},
    settings::{self, SettingsMaps},
    textfile,
};

/// What a config file says: every setting, the lists to keep, and the
/// upstream mode.
#[derive(Clone, Debug)]
pub struct FileConfig {
    pub settings: Vec<Assignment>,
    pub lists: FileLists,
    pub upstream: Option<upstream::config::Config>,
    /// The file's last change, from which its entries' `for` counts.
    pub modified: SystemTime,
}

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
    pub fn open(path: &Path) -> anyhow::Result<(ConfigFile, Option<FileConfig>)> {
        let mut file = ConfigFile {
            path: path.to_owned(),
            seen: None,
            content: Err(String::new()),
        };
        if fs::symlink_metadata(path).is_err_and(|err| err.kind() == std::io::ErrorKind::NotFound) {
            return Ok((file, None));
        }
        let assignments = file.read()?;
        Ok((file, Some(assignments)))
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
    pub fn read(&mut self) -> anyhow::Result<FileConfig> {
        self.seen = seen(&self.path);
        let text = textfile::read(&self.path);
        self.content = text
            .as_ref()
            .map(Clone::clone)
            .map_err(|err| format!("{err:#}"));
        let text = text?;
        let in_file = || format!("in {}", self.path.display());
        Ok(FileConfig {
            settings: settings_of(&text).with_context(in_file)?,
            lists: FileLists::parse(&text).with_context(in_file)?,
            upstream: upstream_of(&text).with_context(in_file)?,
            modified: self
                .seen
                .as_ref()
                .and_then(|seen| seen.modified)
                .unwrap_or_else(SystemTime::now),
        })
    }

    /// Reads the file again if its text (or why it cannot be read) changed;
    /// `None` if it did not.
    pub fn reread_if_changed(&mut self) -> Option<anyhow::Result<FileConfig>> {
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
    // One line for the log: where, and what is wrong (toml's own display
    // adds the source line and a marker underneath).
    let Assignments(assignments) =
        toml::from_str(text).map_err(|err| listfile::located(text, &err))?;
    let settings = Settings::default().with(&assignments)?;
    Ok(settings
        .values()
        .map(|(key, value)| Assignment::text(key, &value).expect("a shown value parses back"))
        .collect())
}

/// The `[upstream]` section of a config file's text, if it has one (its
/// settings and lists are read elsewhere); an error says where and what is
/// wrong.
pub fn upstream_of(text: &str) -> anyhow::Result<Option<upstream::config::Config>> {
    #[derive(Deserialize)]
    struct Section {
        upstream: Option<upstream::config::Config>,
    }
    toml::from_str::<Section>(text)
        .map(|section| section.upstream)
        .map_err(|err| listfile::located(text, &err))
}

/// Writes the file's settings and lists to the filter on `iface`, under
/// its lock (waiting for a command changing it meanwhile); returns what
/// changed: each setting as `key old -> new`, then the lists.
pub fn apply(root: &PinRoot, iface: &str, file: &FileConfig) -> anyhow::Result<Vec<String>> {
    let (_lock, pins) = attach::lock_for_change(root, iface)?;
    let mut maps = SettingsMaps::open(&pins)?;
    let before = maps.read()?;
    let after = maps.apply(&file.settings)?;
    let mut changed = settings::changes(&before, &after);
    changed.extend(apply_lists(&pins, file)?);
    Ok(changed)
}

/// The file's lists alone (after an attach, which wrote its settings);
/// the caller holds the interface's lock.
pub fn apply_lists(pins: &IfacePins, file: &FileConfig) -> anyhow::Result<Option<String>> {
    listfile::apply_both(pins, &file.lists, file.modified)
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

    /// One file holds the settings, the lists and the `[upstream]` section;
    /// each reader takes its part and leaves the others' keys alone.
    #[test]
    fn settings_lists_and_the_upstream_section_share_a_file() {
        let text = "monitor = true\nallow = [\"192.0.2.53\"]\n\n[upstream]\nspeaker = \"gobgp\"\n\
                    attack_pps = 20000\n";
        assert!(
            settings_of(text)
                .unwrap()
                .iter()
                .any(|a| a.key() == "monitor")
        );
        assert_eq!(FileLists::parse(text).unwrap().allow.len(), 1);
        assert!(upstream_of(text).unwrap().is_some());
        assert!(upstream_of("monitor = true\n").unwrap().is_none());
        let err = format!(
            "{:#}",
            upstream_of("monitor = true\n[upstream]\nspeaker = \"bird\"\n").unwrap_err()
        );
        assert!(
            err.starts_with("line 3, column 11: ") && err.contains("bird"),
            "{err}"
        );
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
