//! Who reads the drop event ring, and how other commands ask the daemon.
//!
//! A ring buffer has one reader. Whoever reads it (the daemon, or `top`
//! when no daemon runs) first claims it: an exclusive `flock` on a lock
//! file, which the kernel releases when its holder dies (even by `kill -9`),
//! so a second reader is refused instead of silently splitting the events.
//! The holder then listens on a unix socket next to the lock. Both live in
//! [`RUN_DIR`], a directory only root may enter (mode 0700, owned by root,
//! checked before use), so no other user can take the claim, listen in the
//! daemon's place or connect; each side also checks the other's
//! credentials (SO_PEERCRED): the daemon answers only root, a client
//! believes only root. Their names come from the filter's pin directory
//! (network namespace, interface, pin root).
//!
//! The daemon answers on it: `top` (the sampled history of a window), what
//! the daemon is (its pid and config file, for `set` and `apply`) and its
//! upstream mode's routes (`filter-ctl upstream status`), one JSON line each
//! way. A client that sends nothing, or reads nothing, is
//! given up after a few seconds; it never holds up the daemon's other work.

use std::{
    fs::{self, File, OpenOptions},
    hash::Hasher as _,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{
        fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use nix::{
    fcntl::{Flock, FlockArg},
    sys::socket::{getsockopt, sockopt::PeerCredentials},
};
use serde::{Deserialize, Serialize};

use super::{top::TopReport, upstream::status::UpstreamStatus};
use crate::pins::IfacePins;

/// Where the claims and sockets are: root's only (the systemd unit makes
/// it as its RuntimeDirectory).
pub const RUN_DIR: &str = "/run/wan-filter";

/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request line read.
const MAX_REQUEST: u64 = 4096;

/// The run directory, made if missing; refused unless it is a directory of
/// root's that nobody else may enter (a directory someone else made or may
/// write would let them take the claim or answer in the daemon's place).
fn run_dir() -> anyhow::Result<&'static Path> {
    let dir = Path::new(RUN_DIR);
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(err).with_context(|| format!("creating {RUN_DIR}"));
        }
        _ => {}
    }
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {RUN_DIR}"))?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        bail!(
            "{RUN_DIR} must be a directory owned by root that only root may enter \
             (mode 0700), and it is not: remove it, filter-ctl makes it again"
        );
    }
    Ok(dir)
}

/// The claim's lock and socket for the filter pinned at `pins`: named
/// after its interface and a hash of its pin directory (which holds the
/// network namespace and the pin root), to stay within a socket's 107 bytes.
fn names(pins: &IfacePins) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut hash = std::hash::DefaultHasher::new();
    hash.write(pins.shown_dir().as_os_str().as_encoded_bytes());
    let base = format!("{}-{:016x}", pins.iface(), hash.finish());
    let dir = run_dir()?;
    Ok((
        dir.join(format!("{base}.lock")),
        dir.join(format!("{base}.sock")),
    ))
}

/// The claim on the ring of one filter: held while this lives.
#[derive(Debug)]
pub struct Claim {
    pub listener: UnixListener,
    socket: PathBuf,
    _lock: Flock<File>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Still holding the lock: nobody else has bound it since.
        let _ = fs::remove_file(&self.socket);
    }
}

impl Claim {
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Claims the drop event ring of the filter pinned at `pins`, or says who
/// holds it.
pub fn claim(pins: &IfacePins) -> anyhow::Result<Claim> {
    let (lock, socket) = names(pins)?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock)
        .with_context(|| format!("opening {}", lock.display()))?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            anyhow!(
                "another process reads the drop events of {} (a filter-ctl daemon or top)",
                pins.iface()
            )
        } else {
            anyhow!(errno).context(format!("locking {}", lock.display()))
        }
    })?;
    // A socket left by a holder that died: nobody listens on it.
    match fs::remove_file(&socket) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("removing {}", socket.display()));
        }
        _ => {}
    }
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("binding the control socket {}", socket.display()))?;
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))?;
    Ok(Claim {
        listener,
        socket,
        _lock: lock,
    })
}

#[derive(Serialize, Deserialize)]
enum Request {
    /// `top` over the last `seconds`.
    Top { seconds: u64 },
    /// What the daemon is.
    About,
    /// The upstream mode's routes.
    Upstream,
}

/// The daemon reading a filter's events, as it describes itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct About {
    pub pid: u32,
    /// Its config file, which it applies whole at each reload.
    pub config: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Top(TopReport),
    About(About),
    /// `None`: the daemon's config has no `[upstream]` section.
    Upstream(Option<UpstreamStatus>),
    Error(String),
}

/// While a `top` without a daemon reads the ring: turns away whoever asks
/// (another `top`), so that it is told at once instead of waiting.
pub fn turn_away(claim: Claim) {
    std::thread::spawn(move || {
        for stream in claim.listener.incoming() {
            drop(stream);
        }
    });
}

/// Asks the process holding the claim; `None` when nobody holds it.
fn ask(pins: &IfacePins, request: &Request) -> anyhow::Result<Option<Reply>> {
    let (_, socket) = names(pins)?;
    let stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(err) => return Err(err).with_context(|| format!("connecting to {}", socket.display())),
    };
    let peer = getsockopt(&stream, PeerCredentials).context("reading the daemon's credentials")?;
    if peer.uid() != 0 {
        bail!(
            "{} is answered by a process of uid {} (pid {}), not root: not asking it",
            socket.display(),
            peer.uid(),
            peer.pid()
        );
    }
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    if answer.is_empty() {
        // Another `top` holds the claim: it answers nobody.
        bail!(
            "another filter-ctl top reads the drop events of {}; try again when it is done",
            pins.iface()
        );
    }
    Ok(Some(
        serde_json::from_str(&answer).context("reading the daemon's answer")?,
    ))
}

/// Asks the daemon reading the ring for `top` over `seconds`; `None` when no
/// daemon listens (nobody reads the ring, or a `top` does).
pub fn ask_top(pins: &IfacePins, seconds: u64) -> anyhow::Result<Option<TopReport>> {
    match ask(pins, &Request::Top { seconds })? {
        None => Ok(None),
        Some(Reply::Top(report)) => Ok(Some(report)),
        Some(Reply::Error(why)) => bail!("the daemon: {why}"),
        Some(_) => bail!("the daemon answered another question"),
    }
}

/// Asks the daemon for its upstream mode's status; `None` when no daemon
/// listens, `Some(None)` when its config has no `[upstream]` section.
pub fn ask_upstream(pins: &IfacePins) -> anyhow::Result<Option<Option<UpstreamStatus>>> {
    match ask(pins, &Request::Upstream)? {
        None => Ok(None),
        Some(Reply::Upstream(status)) => Ok(Some(status)),
        Some(Reply::Error(why)) => bail!("the daemon: {why}"),
        Some(_) => bail!("the daemon answered another question (an older filter-ctl daemon?)"),
    }
}

/// The daemon of the filter pinned at `pins`, if one runs (a `top`
/// reading the events instead, or an older daemon: `None`).
pub fn ask_about(pins: &IfacePins) -> Option<About> {
    match ask(pins, &Request::About) {
        Ok(Some(Reply::About(about))) => Some(about),
        _ => None,
    }
}

/// Answers requests on the claimed socket: `top(seconds)`, `about` and
/// `upstream()`.
/// Each client is served on its own task, with time limits.
pub async fn serve(
    claim: Claim,
    about: About,
    top: impl Fn(u64) -> anyhow::Result<TopReport> + Clone + Send + 'static,
    upstream: impl Fn() -> Option<UpstreamStatus> + Clone + Send + 'static,
) -> anyhow::Result<()> {
    let Claim {
        listener,
        socket,
        _lock,
    } = &claim;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener.try_clone()?)
        .with_context(|| format!("listening on {}", socket.display()))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let top = top.clone();
        let upstream = upstream.clone();
        let about = about.clone();
        tokio::spawn(async move {
            if let Err(err) = answer(stream, about, top, upstream).await {
                log::debug!("a control request failed: {err:#}");
            }
        });
    }
}

async fn answer(
    stream: tokio::net::UnixStream,
    about: About,
    top: impl Fn(u64) -> anyhow::Result<TopReport>,
    upstream: impl Fn() -> Option<UpstreamStatus>,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let root = stream.peer_cred()?.uid() == 0;
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::time::timeout(
        CLIENT_TIMEOUT,
        tokio::io::BufReader::new(read.take(MAX_REQUEST)).read_line(&mut line),
    )
    .await??;
    let reply = if !root {
        Reply::Error("only root may ask".into())
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(Request::Top { seconds }) => match top(seconds) {
                Ok(report) => Reply::Top(report),
                Err(err) => Reply::Error(format!("{err:#}")),
            },
            Ok(Request::About) => Reply::About(about),
            Ok(Request::Upstream) => Reply::Upstream(upstream()),
            Err(err) => Reply::Error(format!("bad request: {err}")),
        }
    };
    let mut text = serde_json::to_string(&reply)?;
    text.push('\n');
    tokio::time::timeout(CLIENT_TIMEOUT, write.write_all(text.as_bytes())).await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_are_one_json_line_each() {
        let line = serde_json::to_string(&Request::Top { seconds: 10 }).unwrap();
        assert_eq!(line, r#"{"Top":{"seconds":10}}"#);
        let about = Reply::About(About {
            pid: 7,
            config: Some("/etc/wan-filter/wan0.toml".into()),
        });
        let text = serde_json::to_string(&about).unwrap();
        assert!(!text.contains('\n'), "{text}");
    }
}
