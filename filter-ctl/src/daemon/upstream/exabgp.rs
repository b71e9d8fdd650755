//! ExaBGP as the speaker, through its process API: ExaBGP runs a process
//! of its configuration and takes the API commands that process writes to
//! its stdout (`announce flow route { ... }`), answering each with `done`
//! or `error` on the process's stdin. That process is the bridge,
//! `filter-ctl upstream exabgp --iface IFACE`: it connects to the daemon
//! and turns the daemon's requests into ExaBGP's commands.
//!
//! ```text
//! filter-ctl daemon ──(abstract unix socket)── bridge ──stdout──▶ exabgp ──BGP──▶ provider
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
//! Both ends check who is at the other: the bridge talks only to a daemon
//! running as root, the daemon only to a bridge running as root or as
//! ExaBGP's user (`exabgp_user`). The socket is abstract (no file; it
//! belongs to the network namespace, like the interface's name) and named
//! after the namespace and the interface.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, ErrorKind, Write as _},
    os::{
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixListener, UnixStream},
    },
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
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

/// The socket's name: the network namespace and the interface.
fn address(iface: &str) -> anyhow::Result<SocketAddr> {
    let netns = std::fs::read_link("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
    let name = format!("wan-filter-exabgp:{}:{iface}", netns.display());
    SocketAddr::from_abstract_name(name.as_bytes()).context("naming the bridge's socket")
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
    bridge: Option<BufReader<UnixStream>>,
    /// Who may be the bridge: root and ExaBGP's user.
    allowed: [u32; 2],
    communities: Vec<Community>,
}

impl Exabgp {
    /// Binds the bridge's socket for `iface`; `user` is the one ExaBGP runs
    /// its processes as.
    pub fn bind(iface: &str, user: &str, communities: &[Community]) -> anyhow::Result<Self> {
        let user_id = nix::unistd::User::from_name(user)
            .context("looking the user up")?
            .ok_or_else(|| {
                anyhow!("upstream.exabgp_user: there is no user '{user}' (the one ExaBGP runs as)")
            })?
            .uid
            .as_raw();
        let listener = UnixListener::bind_addr(&address(iface)?).map_err(|err| {
            if err.kind() == ErrorKind::AddrInUse {
                anyhow!(
                    "another process holds the ExaBGP bridge's socket for {iface} (another \
                     filter-ctl daemon?)"
                )
            } else {
                anyhow!(err).context("binding the ExaBGP bridge's socket")
            }
        })?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            iface: iface.to_owned(),
            listener,
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
    let address = address(iface)?;
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
        match UnixStream::connect_addr(&address) {
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
                    "filter-ctl upstream exabgp: no daemon for {iface} yet ({err}); trying every second"
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
