//! `filter-ctl daemon` run by the end-to-end tests and the lab: started in a
//! namespace with the driver's pin root, its log in a file, its `/metrics`
//! fetched from inside the namespace (it listens on the namespace's
//! loopback), and stopped when dropped (SIGTERM; the filter stays attached
//! until the driver's pin root goes).

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{self, Signal},
    unistd::Pid,
};

use super::FilterCtl;
use crate::{netns::Netns, process::Background};

/// The samples of a `/metrics` scrape (Prometheus text format):
/// `name{labels}` -> value.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// Where the tests' daemons listen: each namespace has its own loopback.
pub const LISTEN: &str = "127.0.0.1:10213";

pub struct Daemon {
    process: Background,
    listen: SocketAddr,
}

impl Daemon {
    /// Starts `filter-ctl daemon --iface IFACE ARGS...` in `ns`.
    pub fn start(ctl: &FilterCtl, ns: &Netns, iface: &str, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(ctl, ns, iface, LISTEN, args)
    }

    /// Starts `filter-ctl daemon --iface IFACE --listen LISTEN ARGS...` in
    /// `ns`; with port 0, [`Self::wait_until_listening`] learns the port.
    pub fn start_on(
        ctl: &FilterCtl,
        ns: &Netns,
        iface: &str,
        listen: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut command: Command =
            ctl.command(ns, ["daemon", "--iface", iface, "--listen", listen]);
        command.args(args);
        let process = Background::spawn("filter-ctl daemon", command)?;
        Ok(Self {
            process,
            listen: listen.parse()?,
        })
    }

    /// Waits for the line that says where it serves metrics; that address
    /// (with the port the kernel chose for port 0), which later requests use.
    pub fn wait_until_listening(&mut self, timeout: Duration) -> anyhow::Result<SocketAddr> {
        let line = self.wait_for_line(&["serving metrics on http://"], timeout)?;
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .with_context(|| format!("no address in {line}"))?;
        let mut listening: SocketAddr = address.parse()?;
        if listening.ip().is_unspecified() {
            listening.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        self.listen = listening;
        Ok(listening)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits until its log has a line containing every one of `parts`; that line.
    pub fn wait_for_line(&mut self, parts: &[&str], timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .log()
                .lines()
                .find(|line| parts.iter().all(|part| line.contains(part)))
            {
                return Ok(line.to_owned());
            }
            self.process.check_running()?;
            if Instant::now() > deadline {
                bail!(
                    "no line with {parts:?} in the daemon's log within {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET `path` from its HTTP listener, inside `ns`: (content type, body).
    pub fn get(&self, ns: &Netns, path: &str) -> anyhow::Result<(String, String)> {
        let mut stream = ns.tcp_connect(self.listen, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .context("reading the HTTP response")?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .with_context(|| format!("not an HTTP response: {response}"))?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("GET {path}: {head}");
        }
        let content_type = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        Ok((content_type, body.to_owned()))
    }

    /// Waits until `/metrics` answers; its body.
    pub fn wait_for_metrics(&mut self, ns: &Netns, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.get(ns, "/metrics") {
                Ok((_, body)) => return Ok(body),
                Err(err) if Instant::now() > deadline => {
                    return Err(err.context(format!("the daemon's log:\n{}", self.log())));
                }
                Err(_) => {
                    self.process.check_running()?;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Sends it `signal` (SIGHUP: reload; SIGKILL: a crash).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.process.pid())?);
        signal::kill(pid, signal).with_context(|| format!("sending {signal} to the daemon"))
    }

    /// Waits for it to exit by itself; its exit status.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        self.process.wait_for_exit(timeout)
    }

    /// Stops it (SIGTERM); its exit status.
    pub fn stop(self) -> anyhow::Result<std::process::ExitStatus> {
        self.process.stop()
    }
}
