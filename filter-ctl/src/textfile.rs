//! Reading a file an operator names (a settings file for `apply`,
//! `attach --config` and the daemon): whole, but only a regular file, at
//! most [`MAX_LEN`] bytes, and never blocking in `open` (a FIFO or a device
//! in its place is refused at once, not waited on or read forever).

use std::{
    fs::OpenOptions,
    io::Read as _,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::Path,
};

use anyhow::{Context as _, bail};

/// The largest file read: far more than every setting with a comment, far
/// less than a device that never ends.
pub const MAX_LEN: u64 = 1 << 20;

/// The text of the regular file at `path`, of at most [`MAX_LEN`] bytes.
pub fn read(path: &Path) -> anyhow::Result<String> {
    let too_large = || {
        anyhow::anyhow!(
            "{} is larger than {} KiB: not a settings file",
            path.display(),
            MAX_LEN / 1024
        )
    };
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else {
            "a socket"
        };
        bail!(
            "{} is {what}, not a regular file: a settings file is a regular file of at most {} KiB",
            path.display(),
            MAX_LEN / 1024
        );
    }
    if meta.len() > MAX_LEN {
        return Err(too_large());
    }
    let mut text = Vec::new();
    file.take(MAX_LEN + 1)
        .read_to_end(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    if text.len() as u64 > MAX_LEN {
        return Err(too_large());
    }
    String::from_utf8(text)
        .with_context(|| format!("{} is not a text file (UTF-8)", path.display()))
}

#[cfg(test)]
mod tests {
    use std::{fs, sync::mpsc, time::Duration};

    use super::*;

    #[test]
    fn only_regular_files_of_at_most_a_mebibyte_are_read() {
        let dir = std::env::temp_dir().join(format!("wf-textfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        fs::write(&good, "monitor = true\n").unwrap();
        assert_eq!(read(&good).unwrap(), "monitor = true\n");
        let large = dir.join("large.toml");
        fs::write(&large, "# a comment\n".repeat(300_000)).unwrap();
        let err = format!("{:#}", read(&large).unwrap_err());
        assert!(err.contains("larger than 1024 KiB"), "{err}");
        for (path, what) in [("/dev/zero", "a character device"), ("/tmp", "a directory")] {
            let err = format!("{:#}", read(Path::new(path)).unwrap_err());
            assert!(err.contains(what) && err.contains("1024 KiB"), "{err}");
        }
        // A FIFO nobody writes to: refused at once, not waited on.
        let fifo = dir.join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (done, result) = mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || done.send(format!("{:#}", read(&path).unwrap_err())));
        let err = result
            .recv_timeout(Duration::from_secs(5))
            .expect("reading a FIFO returns at once");
        assert!(err.contains("a FIFO"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
