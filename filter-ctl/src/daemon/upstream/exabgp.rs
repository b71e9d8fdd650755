//! ExaBGP as the speaker, through its process API: ExaBGP runs a process
//! of its configuration and takes the API commands that process writes to
//! its stdout (`announce flow route { ... }`), answering each with `done`
//! or `error` on the process's stdin. That process is the bridge,
//! `filter-ctl upstream exabgp --iface IFACE`: it connects to the daemon
//! and turns the daemon's requests into ExaBGP's commands.
//!
//! ```text
//! filter-ctl daemon ──(unix socket)── bridge ──stdout──▶ exabgp ──BGP──▶ provider
//!                                               ◀──stdin── done/error
//! ```
//!
//! The bridge lives exactly as long as ExaBGP's process (ExaBGP starts it,
//! and starts it again if it exits; it exits when ExaBGP closes its stdin),
//! so it knows what ExaBGP holds of the daemon's: every route it announced
//! and did not withdraw. It keeps that set, and a daemon that connects (at
//! start, or again after a restart) asks it for the set: no mark on the
//! routes is needed, and ExaBGP's other routes (its configuration's, other
//! processes') are never touched. A restarted ExaBGP starts a new bridge
//! with an empty set, which is what it holds; the daemon's listing every 10
//! seconds then announces again what it wants.
//!
//! The socket is a file in [`SOCKET_DIR`], named after the interface and
//! the network namespace: a directory of root's that only root and
//! ExaBGP's group may enter (0750), made and checked by the daemon, so no
//! other local user can take the socket's name first (which an abstract
//! socket allowed: anyone could bind it before the daemon and keep the
//! mode from starting) or reach it. Both ends also check who is at the
//! other: the bridge talks only to a daemon running as root, the daemon
//! only to a bridge running as root or as ExaBGP's user (`exabgp_user`).

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader, ErrorKind, Write as _},
    os::unix::{
        fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use nix::{
    sys::socket::{getsockopt, sockopt::PeerCredentials},
    unistd::Gid,
};
use serde::{Deserialize, Serialize};

use super::{
    Speaker,
    route::{BLACKHOLE, Community, FlowRule, NO_EXPORT, Route, host_prefix},
};

/// How long the daemon waits for the bridge's answer, which waits for
/// ExaBGP's.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long the bridge waits for ExaBGP's `done` or `error`.
const ACK_WITHIN: Duration = Duration::from_secs(5);

/// Where the bridge's sockets are. Beside the daemon's own run directory,
/// not in it: that one stays root's alone (0700), and ExaBGP's processes
/// must reach this one (the systemd unit makes both as RuntimeDirectory).
pub const SOCKET_DIR: &str = "/run/wan-filter-exabgp";

/// The socket of `iface` in this network namespace (the interface's name
/// is the namespace's; /run is shared by all of them), in `dir`.
fn socket_path(dir: &Path, iface: &str) -> anyhow::Result<PathBuf> {
    let netns = fs::metadata("/proc/self/ns/net")
        .context("reading /proc/self/ns/net")?
        .ino();
    Ok(dir.join(format!("{iface}-{netns}.sock")))
}

/// Makes `dir` (mode 0750, owned by root and `group`, ExaBGP's) or checks
/// the one there: a directory, not a link, owned by root, that nobody else
/// may write (one that someone else made or may write would let them put
/// a socket in the daemon's place). Then it is given to `group`: only root
/// and ExaBGP's processes enter it.
fn socket_dir(dir: &Path, group: Gid) -> anyhow::Result<()> {
    let shown = dir.display();
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(err) if err.kind() != ErrorKind::AlreadyExists => {
            return Err(err).with_context(|| format!("creating {shown}"));
        }
        _ => {}
    }
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {shown}"))?;
    let remove = "remove it, the daemon makes it again";
    if !meta.is_dir() {
        bail!("{shown} must be a directory of root's, and it is not: {remove}");
    }
    if meta.uid() != 0 {
        bail!(
            "{shown} is owned by uid {}, not root: another user may hold the ExaBGP bridge's              socket there; {remove}",
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{shown} may be written by others than root (mode {:o}): another user may hold the              ExaBGP bridge's socket there; {remove} (root, ExaBGP's group, mode 0750)",
            meta.mode() & 0o7777
        );
    }
    // Root's, and nobody else could put anything in it (nor swap it: /run
    // is root's): ExaBGP's group may enter.
    std::os::unix::fs::chown(dir, Some(0), Some(group.as_raw()))
        .with_context(|| format!("giving {shown} to ExaBGP's group (gid {group})"))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o750))
        .with_context(|| format!("setting {shown}'s mode"))
}

/// Binds the bridge's socket at `path` (in a directory [`socket_dir`]
/// checked), for `group`. A socket left by a daemon that died is replaced;
/// one that a process listens on is refused.
fn listen(path: &Path, iface: &str, group: Gid) -> anyhow::Result<UnixListener> {
    let shown = path.display();
    match fs::symlink_metadata(path) {
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {shown}")),
        Ok(meta) if !meta.file_type().is_socket() => {
            bail!("{shown} is not a socket: remove it, the daemon binds the bridge's socket there")
        }
        Ok(_) if UnixStream::connect(path).is_ok() => bail!(
            "another process listens on {shown}, the ExaBGP bridge's socket for {iface} (another              filter-ctl daemon?)"
        ),
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing the stale {shown}"))?,
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding {shown}"))?;
    std::os::unix::fs::chown(path, Some(0), Some(group.as_raw()))
        .with_context(|| format!("giving {shown} to ExaBGP's group"))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting {shown}'s mode"))?;
    Ok(listener)
}

/// The uid of the process at the other end of `stream`.
fn peer_uid(stream: &UnixStream) -> anyhow::Result<u32> {
    Ok(getsockopt(stream, PeerCredentials)
        .context("reading the peer's credentials")?
        .uid())
}

/// What the daemon asks the bridge, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// The routes ExaBGP holds of the daemon's.
    List,
    Announce {
        route: Route,
        communities: Vec<Community>,
    },
    Withdraw {
        route: Route,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Routes(Vec<Route>),
    Done,
    Error(String),
}

/// The daemon's end: the listening socket and the bridge connected to it.
pub struct Exabgp {
    iface: String,
    listener: UnixListener,
    /// The socket's file, removed when this goes.
    path: PathBuf,
    bridge: Option<BufReader<UnixStream>>,
    /// Who may be the bridge: root and ExaBGP's user.
    allowed: [u32; 2],
    communities: Vec<Community>,
}

impl Exabgp {
    /// Binds the bridge's socket for `iface`; `user` is the one ExaBGP runs
    /// its processes as.
    pub fn bind(iface: &str, user: &str, communities: &[Community]) -> anyhow::Result<Self> {
        let user = nix::unistd::User::from_name(user)
            .context("looking the user up")?
            .ok_or_else(|| {
                anyhow!("upstream.exabgp_user: there is no user '{user}' (the one ExaBGP runs as)")
            })?;
        let dir = Path::new(SOCKET_DIR);
        socket_dir(dir, user.gid)?;
        let path = socket_path(dir, iface)?;
        let listener = listen(&path, iface, user.gid)?;
        listener.set_nonblocking(true)?;
        let user_id = user.uid.as_raw();
        Ok(Self {
            iface: iface.to_owned(),
            listener,
            path,
            bridge: None,
            allowed: [0, user_id],
            communities: communities.to_vec(),
        })
    }

    /// The bridge, taking the newest that connected (a bridge started
    /// again by ExaBGP replaces the last).
    fn bridge(&mut self) -> anyhow::Result<&mut BufReader<UnixStream>> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let uid = peer_uid(&stream)?;
                    if !self.allowed.contains(&uid) {
                        log::error!(
                            "upstream: refused a bridge connection from uid {uid} (only root and \
                             exabgp_user may be ExaBGP's bridge)"
                        );
                        continue;
                    }
                    stream.set_nonblocking(false)?;
                    stream.set_read_timeout(Some(ANSWER_WITHIN))?;
                    self.bridge = Some(BufReader::new(stream));
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) => return Err(err).context("accepting ExaBGP's bridge"),
            }
        }
        let iface = &self.iface;
        self.bridge.as_mut().ok_or_else(|| {
            anyhow!(
                "no ExaBGP bridge is connected: is `filter-ctl upstream exabgp --iface {iface}` a \
                 process of ExaBGP's configuration, with the neighbors' api using it?"
            )
        })
    }

    fn ask(&mut self, request: &Request) -> anyhow::Result<Reply> {
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        let bridge = self.bridge()?;
        let asked = bridge.get_mut().write_all(line.as_bytes()).and_then(|()| {
            let mut answer = String::new();
            match bridge.read_line(&mut answer)? {
                0 => Err(ErrorKind::UnexpectedEof.into()),
                _ => Ok(answer),
            }
        });
        let answer = match asked {
            Ok(answer) => answer,
            Err(err) => {
                // Gone or stuck: the next call waits for a bridge anew.
                self.bridge = None;
                return Err(err).context("talking to ExaBGP's bridge");
            }
        };
        match serde_json::from_str(&answer).context("reading the bridge's answer")? {
            Reply::Error(why) => bail!("ExaBGP: {why}"),
            reply => Ok(reply),
        }
    }
}

impl Drop for Exabgp {
    fn drop(&mut self) {
        // Still listening on it: no other daemon bound it since.
        let _ = fs::remove_file(&self.path);
    }
}

impl Speaker for Exabgp {
    fn name(&self) -> String {
        "exabgp".into()
    }

    fn list(&mut self) -> anyhow::Result<Vec<Route>> {
        match self.ask(&Request::List)? {
            Reply::Routes(routes) => Ok(routes),
            other => bail!("the bridge answered {other:?} to a listing"),
        }
    }

    fn announce(&mut self, route: &Route) -> anyhow::Result<()> {
        let communities = self.communities.clone();
        self.ask(&Request::Announce {
            route: route.clone(),
            communities,
        })
        .map(drop)
    }

    fn withdraw(&mut self, route: &Route) -> anyhow::Result<()> {
        self.ask(&Request::Withdraw {
            route: route.clone(),
        })
        .map(drop)
    }
}

/// ExaBGP's command for `route`: `announce ...` with `communities`, or
/// `withdraw ...`.
fn command(route: &Route, announce: Option<&[Community]>) -> String {
    let verb = if announce.is_some() {
        "announce"
    } else {
        "withdraw"
    };
    let mut communities: Vec<Community> = announce.unwrap_or_default().to_vec();
    match route {
        Route::Rtbh { address } => {
            communities.extend([BLACKHOLE, NO_EXPORT]);
            let mut text = format!("{verb} route {} next-hop self", host_prefix(*address));
            if announce.is_some() {
                text += &format!(" community [ {} ]", community_list(&communities));
            }
            text
        }
        Route::Flowspec(rule) => {
            let mut text = format!("{verb} flow route {{ match {{ {} }}", flow_match(rule));
            if announce.is_some() {
                text += " then { discard;";
                if !communities.is_empty() {
                    text += &format!(" community [ {} ];", community_list(&communities));
                }
                text += " }";
            }
            text + " }"
        }
    }
}

fn community_list(communities: &[Community]) -> String {
    communities
        .iter()
        .map(Community::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A rule's match in ExaBGP's flow syntax.
fn flow_match(rule: &FlowRule) -> String {
    let mut parts = vec![format!("destination {}", host_prefix(rule.destination))];
    if let Some(protocol) = rule.protocol {
        let keyword = if rule.destination.is_ipv6() {
            "next-header"
        } else {
            "protocol"
        };
        parts.push(format!("{keyword} ={protocol}"));
    }
    if !rule.source_ports.is_empty() {
        let ports: Vec<String> = rule.source_ports.iter().map(|p| format!("={p}")).collect();
        // In brackets: ExaBGP reads only the first of a bare list.
        parts.push(format!("source-port [ {} ]", ports.join(" ")));
    }
    if rule.fragments {
        parts.push("fragment [ is-fragment ]".into());
    }
    if let Some(length) = rule.min_length {
        parts.push(format!("packet-length >={length}"));
    }
    parts.join("; ") + ";"
}

/// `filter-ctl upstream exabgp --iface IFACE`: the bridge, run by ExaBGP as
/// a process. Returns when ExaBGP closes its stdin.
pub fn bridge(iface: &str) -> anyhow::Result<()> {
    let path = socket_path(Path::new(SOCKET_DIR), iface)?;
    // ExaBGP's answers, line by line; closed when ExaBGP is gone.
    let (lines, answers) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut held: BTreeSet<Route> = BTreeSet::new();
    let mut told = false;
    loop {
        match UnixStream::connect(&path) {
            Ok(stream) => {
                told = false;
                match peer_uid(&stream) {
                    Ok(0) => {
                        eprintln!("filter-ctl upstream exabgp: connected to the daemon of {iface}");
                        if let Err(err) = serve(stream, &answers, &mut held) {
                            if matches!(err.downcast_ref(), Some(Gone)) {
                                return Ok(());
                            }
                            eprintln!("filter-ctl upstream exabgp: {err:#}");
                        }
                    }
                    Ok(uid) => eprintln!(
                        "filter-ctl upstream exabgp: the socket for {iface} is held by uid {uid}, \
                         not by root: not a filter-ctl daemon, ignored"
                    ),
                    Err(err) => eprintln!("filter-ctl upstream exabgp: {err:#}"),
                }
            }
            Err(err) if !told => {
                eprintln!(
                    "filter-ctl upstream exabgp: no daemon for {iface} yet at {} ({err}); trying \
                     every second",
                    path.display()
                );
                told = true;
            }
            Err(_) => {}
        }
        // ExaBGP gone meanwhile: nothing more to do.
        if matches!(
            answers.recv_timeout(Duration::from_secs(1)),
            Err(RecvTimeoutError::Disconnected)
        ) {
            return Ok(());
        }
    }
}

/// ExaBGP closed the bridge's stdin.
#[derive(Debug)]
struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExaBGP closed the bridge's stdin")
    }
}

impl std::error::Error for Gone {}

/// Answers one daemon's requests until it goes away.
fn serve(
    stream: UnixStream,
    answers: &Receiver<String>,
    held: &mut BTreeSet<Route>,
) -> anyhow::Result<()> {
    let mut writer = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(err) => Reply::Error(format!("bad request: {err}")),
            Ok(Request::List) => Reply::Routes(held.iter().cloned().collect()),
            Ok(Request::Announce { route, communities }) => {
                match tell(&command(&route, Some(&communities)), answers)? {
                    None => {
                        held.insert(route);
                        Reply::Done
                    }
                    Some(why) => Reply::Error(why),
                }
            }
            Ok(Request::Withdraw { route }) => match tell(&command(&route, None), answers)? {
                None => {
                    held.remove(&route);
                    Reply::Done
                }
                Some(why) => Reply::Error(why),
            },
        };
        let mut text = serde_json::to_string(&reply)?;
        text.push('\n');
        writer.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// Gives ExaBGP `command` and waits for its answer: `None` for `done`,
/// the reason for anything else.
fn tell(command: &str, answers: &Receiver<String>) -> anyhow::Result<Option<String>> {
    // A late answer to an earlier command is not this one's.
    while answers.try_recv().is_ok() {}
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{command}")?;
    stdout.flush()?;
    drop(stdout);
    match answers.recv_timeout(ACK_WITHIN) {
        Ok(answer) if answer.trim() == "done" => Ok(None),
        Ok(answer) => Ok(Some(format!("`{command}`: {answer}"))),
        Err(RecvTimeoutError::Timeout) => Ok(Some(format!(
            "no answer to `{command}` within {ACK_WITHIN:?} (is exabgp.api.ack on?)"
        ))),
        Err(RecvTimeoutError::Disconnected) => Err(Gone.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bridge's directory and socket are made for root and ExaBGP's
    /// group; a directory of another user's, one that others may write, a
    /// link in its place, something else at the socket's name and a socket
    /// that another process listens on are refused, each saying why.
    #[test]
    fn a_squatted_or_wrongly_owned_socket_is_refused() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the test gives directories to other users: run it as root"
        );
        let base = std::env::temp_dir().join(format!("wf-exabgp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir(&base).unwrap();
        let dir = base.join("sockets");
        let group = Gid::from_raw(65534);
        let refused = |dir: &Path| format!("{:#}", socket_dir(dir, group).unwrap_err());

        socket_dir(&dir, group).unwrap();
        let meta = fs::metadata(&dir).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 65534, 0o750)
        );
        let path = socket_path(&dir, "wan0").unwrap();
        let listener = listen(&path, "wan0", group).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.gid(), meta.mode() & 0o777), (65534, 0o660));
        // A second daemon while the first listens.
        let err = format!("{:#}", listen(&path, "wan0", group).unwrap_err());
        assert!(err.contains("another process listens on"), "{err}");
        // The first died: its socket is replaced.
        drop(listener);
        drop(listen(&path, "wan0", group).unwrap());
        fs::remove_file(&path).unwrap();
        fs::write(&path, "").unwrap();
        let err = format!("{:#}", listen(&path, "wan0", group).unwrap_err());
        assert!(err.contains("is not a socket"), "{err}");
        fs::remove_file(&path).unwrap();

        // Made by another user, who could bind the socket there first.
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let err = refused(&dir);
        assert!(err.contains("is owned by uid 65534, not root"), "{err}");
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
        // Root's, but others may write it.
        for mode in [0o777, 0o770, 0o1777] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let err = refused(&dir);
            assert!(
                err.contains("may be written by others than root"),
                "{mode:o}: {err}"
            );
        }
        // A link to a directory of root's.
        fs::remove_dir(&dir).unwrap();
        let elsewhere = base.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        let err = refused(&dir);
        assert!(err.contains("must be a directory of root's"), "{err}");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn routes_become_exabgp_commands() {
        let rule = Route::Flowspec(FlowRule {
            destination: "203.0.113.2".parse().unwrap(),
            protocol: Some(17),
            source_ports: vec![53, 5353],
            fragments: false,
            min_length: Some(1228),
        });
        assert_eq!(
            command(&rule, Some(&[])),
            "announce flow route { match { destination 203.0.113.2/32; protocol =17; \
             source-port [ =53 =5353 ]; packet-length >=1228; } then { discard; } }"
        );
        assert_eq!(
            command(&rule, None),
            "withdraw flow route { match { destination 203.0.113.2/32; protocol =17; \
             source-port [ =53 =5353 ]; packet-length >=1228; } }"
        );
        let fragments = Route::Flowspec(FlowRule {
            destination: "2001:db8::2".parse().unwrap(),
            protocol: Some(17),
            source_ports: vec![],
            fragments: true,
            min_length: None,
        });
        assert_eq!(
            command(&fragments, Some(&[Community(64500, 1)])),
            "announce flow route { match { destination 2001:db8::2/128; next-header =17; \
             fragment [ is-fragment ]; } then { discard; community [ 64500:1 ]; } }"
        );
        let rtbh = Route::Rtbh {
            address: "203.0.113.2".parse().unwrap(),
        };
        assert_eq!(
            command(&rtbh, Some(&[])),
            "announce route 203.0.113.2/32 next-hop self community [ 65535:666 65535:65281 ]"
        );
        assert_eq!(
            command(&rtbh, None),
            "withdraw route 203.0.113.2/32 next-hop self"
        );
    }
}
