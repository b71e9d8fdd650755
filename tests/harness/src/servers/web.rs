//! A real web server and real browsers' connections:
//!
//! - [`Nginx`]: nginx on one address and port, answering every request with
//!   a short text and logging it (the access log a web server's owner reads),
//!   its config, pid, logs and temp files in a temp dir of its own. One
//!   process (`master_process off`), so that the parent-death signal that
//!   ends our children ends all of it.
//! - [`browse`]: a browser loading a page: `curl` fetching it over that many
//!   parallel connections at once, each a complete handshake and request.

use std::{fs, net::SocketAddr, time::Duration};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use crate::{
    netns::{Netns, sockets::Proto},
    process::{Background, output},
    servers::real::temp_dir,
};

/// What the server answers.
pub const BODY: &str = "hello from the gateway's web server\n";
/// Its listening socket's queue (nginx's default on Linux): with that many
/// handshakes half-open, the kernel answers further SYNs with SYN cookies
/// instead of keeping them (net.ipv4.tcp_syncookies=1, the default).
pub const BACKLOG: u64 = 511;

pub struct Nginx {
    process: Background,
    addr: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    pub fn start(ns: &Netns, addr: SocketAddr) -> anyhow::Result<Self> {
        let dir = temp_dir("nginx")?;
        let root = dir.path().display().to_string();
        let listen = match addr {
            SocketAddr::V4(v4) => v4.to_string(),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        };
        let conf = dir.path().join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "# The lab's web server: one process, everything in {root}.\n\
                 daemon off;\n\
                 master_process off;\n\
                 pid {root}/nginx.pid;\n\
                 error_log {root}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                 \x20   access_log {root}/access.log;\n\
                 \x20   client_body_temp_path {root}/body;\n\
                 \x20   proxy_temp_path {root}/proxy;\n\
                 \x20   fastcgi_temp_path {root}/fastcgi;\n\
                 \x20   uwsgi_temp_path {root}/uwsgi;\n\
                 \x20   scgi_temp_path {root}/scgi;\n\
                 \x20   server {{\n\
                 \x20       listen {listen} backlog={BACKLOG};\n\
                 \x20       location / {{ default_type text/plain; return 200 \"{body}\"; }}\n\
                 \x20   }}\n\
                 }}\n",
                body = BODY.escape_default(),
            ),
        )?;
        let conf = conf.to_string_lossy().into_owned();
        let mut process = ns.spawn("nginx", ["nginx", "-c", &conf, "-e", "stderr"])?;
        ns.wait_listening(Proto::Tcp, addr.port(), Duration::from_secs(5))
            .context("nginx did not start")
            .and_then(|()| process.check_running())?;
        Ok(Self { process, addr, dir })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests in the access log so far.
    pub fn requests(&self) -> usize {
        fs::read_to_string(self.dir.path().join("access.log")).map_or(0, |log| log.lines().count())
    }

    /// Fails, with its log, if it exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.process.check_running()
    }
}

/// What one page load got.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PageLoad {
    /// Requests answered with our 200, and those that failed.
    pub ok: u64,
    pub failed: u64,
    /// The slowest connection's handshake, in seconds (a dropped SYN is sent
    /// again after 1 s).
    pub slowest_connect: f64,
}

/// `curl` from `ns` fetching `http://ADDR/` `connections` times at once,
/// over that many parallel connections, each given `timeout`.
pub fn browse(
    ns: &Netns,
    addr: SocketAddr,
    connections: usize,
    timeout: Duration,
) -> anyhow::Result<PageLoad> {
    let host = match addr {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    };
    let mut command = ns.command("curl");
    command.args([
        "--silent",
        "--no-progress-meter",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        &connections.to_string(),
        "--max-time",
        &timeout.as_secs().max(1).to_string(),
        "--write-out",
        "%{http_code} %{time_connect}\\n",
    ]);
    for n in 0..connections {
        // A query string of its own: a distinct transfer, never a reused connection.
        command.args(["--output", "/dev/null", &format!("http://{host}/?n={n}")]);
    }
    let out = output(&mut command)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut load = PageLoad::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(code), Some(connect)) = (fields.next(), fields.next()) else {
            bail!("unexpected curl output: {text}");
        };
        if code == "200" {
            load.ok += 1;
        } else {
            load.failed += 1;
        }
        load.slowest_connect = load.slowest_connect.max(connect.parse().unwrap_or(0.0));
    }
    // A transfer curl could not even start writes no line.
    load.failed += (connections as u64).saturating_sub(load.ok + load.failed);
    Ok(load)
}
