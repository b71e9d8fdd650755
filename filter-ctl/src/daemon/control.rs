//! Who reads the drop event ring, and how `filter-ctl top` asks the daemon.
//!
//! A ring buffer has one reader. Whoever reads it (the daemon, or `top`
//! when no daemon runs) first binds an abstract unix socket named after the
//! filter's pin directory: binding is exclusive, so a second reader is
//! refused instead of silently splitting the events. Abstract sockets belong
//! to the network namespace, like interface names, need no file (the
//! daemon's file system is read-only under systemd) and vanish with their
//! process, also after a `kill -9`. The daemon answers `top` on it: one JSON
//! request line (`{"seconds":N}`, or `{"upstream":true}` for `filter-ctl
//! upstream status`), one JSON reply line, and only to root.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::{
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixListener, UnixStream},
    },
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{top::TopReport, upstream::status::UpstreamStatus};
use crate::pins::IfacePins;

/// The socket's name: the pin directory as the operator names it (the
/// network namespace and interface are in it).
fn name(pins: &IfacePins) -> Vec<u8> {
    let mut name = b"wan-filter:".to_vec();
    name.extend_from_slice(pins.shown_dir().as_os_str().as_encoded_bytes());
    // Abstract names are at most 107 bytes; keep the distinctive end.
    let excess = name.len().saturating_sub(107);
    name.drain(..excess);
    name
}

fn address(pins: &IfacePins) -> anyhow::Result<SocketAddr> {
    SocketAddr::from_abstract_name(name(pins)).context("naming the control socket")
}

/// The claim on the ring: held while the socket is bound.
pub fn claim(pins: &IfacePins) -> anyhow::Result<UnixListener> {
    UnixListener::bind_addr(&address(pins)?).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AddrInUse {
            anyhow!(
                "another process reads the drop events of {} (a filter-ctl daemon or top)",
                pins.iface()
            )
        } else {
            anyhow!(err).context("binding the control socket")
        }
    })
}

#[derive(Serialize, Deserialize)]
struct Request {
    #[serde(default)]
    seconds: u64,
    /// The upstream mode's status instead of `top`.
    #[serde(default)]
    upstream: bool,
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Top(TopReport),
    /// `None`: the daemon's config has no `[upstream]` section.
    Upstream(Option<UpstreamStatus>),
    Error(String),
}

/// While a `top` without a daemon reads the ring: turns away whoever asks
/// (another `top`), so that it is told at once instead of waiting.
pub fn turn_away(listener: UnixListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
}

/// Asks the daemon reading the ring for `top` over `seconds`; `None` when no
/// daemon listens (nobody reads the ring, or a `top` does).
pub fn ask_top(pins: &IfacePins, seconds: u64) -> anyhow::Result<Option<TopReport>> {
    let request = Request {
        seconds,
        upstream: false,
    };
    match ask(pins, &request)? {
        None => Ok(None),
        Some(Reply::Top(report)) => Ok(Some(report)),
        Some(_) => bail!("the daemon answered something else"),
    }
}

/// Asks the daemon for its upstream mode's status; `None` when no daemon
/// listens, `Some(None)` when its config has no `[upstream]` section.
pub fn ask_upstream(pins: &IfacePins) -> anyhow::Result<Option<Option<UpstreamStatus>>> {
    let request = Request {
        seconds: 0,
        upstream: true,
    };
    match ask(pins, &request)? {
        None => Ok(None),
        Some(Reply::Upstream(status)) => Ok(Some(status)),
        Some(_) => bail!("the daemon answered something else (an older filter-ctl daemon?)"),
    }
}

/// One request to the daemon; its reply (`None` when no daemon listens).
fn ask(pins: &IfacePins, request: &Request) -> anyhow::Result<Option<Reply>> {
    let stream = match UnixStream::connect_addr(&address(pins)?) {
        Ok(stream) => stream,
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
        Err(err) => return Err(err).context("connecting to the daemon"),
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = serde_json::to_string(request)?;
    request.push('\n');
    (&stream).write_all(request.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .context("reading the daemon's answer")?;
    if line.is_empty() {
        // Another `top` holds the socket: it answers nobody.
        bail!(
            "another filter-ctl top reads the drop events of {}; try again when it is done",
            pins.iface()
        );
    }
    match serde_json::from_str(&line).context("reading the daemon's answer")? {
        Reply::Error(why) => bail!("the daemon: {why}"),
        reply => Ok(Some(reply)),
    }
}

/// Answers requests on the claimed socket: `top(seconds)`, and
/// `upstream()` for `filter-ctl upstream status`.
pub async fn serve(
    listener: UnixListener,
    top: impl Fn(u64) -> anyhow::Result<TopReport> + Clone + Send + 'static,
    upstream: impl Fn() -> Option<UpstreamStatus> + Clone + Send + 'static,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let top = top.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(err) = answer(stream, top, upstream).await {
                log::debug!("a top request failed: {err:#}");
            }
        });
    }
}

async fn answer(
    stream: tokio::net::UnixStream,
    top: impl Fn(u64) -> anyhow::Result<TopReport>,
    upstream: impl Fn() -> Option<UpstreamStatus>,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let root_only = stream.peer_cred()?.uid() == 0;
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::BufReader::new(read).read_line(&mut line),
    )
    .await??;
    let reply = if !root_only {
        Reply::Error("only root may ask".into())
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(request) if request.upstream => Reply::Upstream(upstream()),
            Ok(request) => match top(request.seconds) {
                Ok(report) => Reply::Top(report),
                Err(err) => Reply::Error(format!("{err:#}")),
            },
            Err(err) => Reply::Error(format!("bad request: {err}")),
        }
    };
    let mut text = serde_json::to_string(&reply)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    Ok(())
}
