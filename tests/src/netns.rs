//! Network namespaces for the end-to-end tests and the lab: create and delete
//! them, join them with veth pairs, run commands and background servers in
//! them, and open sockets inside them from this process.
//!
//! Everything is cleaned up by `Drop`, so a failing or panicking test leaves
//! nothing behind: a [`Netns`] deletes its namespace (which deletes its veths),
//! a [`Background`] process is stopped, a [`BpffsDir`] removes its pins.
//! Processes started here also get `PR_SET_PDEATHSIG`, so they die with us
//! even if we are killed; names embed our pid, and [`sweep_stale`] removes
//! what a killed run (one whose pid is gone) left behind.
//!
//! This file is also compiled into xtask (for `cargo xtask lab`) with
//! `#[path]`, so it only uses std, anyhow and libc, and refers to no other
//! module of the tests crate.

use std::{
    ffi::OsStr,
    fs,
    io::{self, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// Where the bpf filesystem is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Linux interface names are at most 15 bytes.
pub const IFNAME_MAX: usize = 15;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix>-<pid>-<n>`.
///
/// Parallel tests (threads of one process) differ in `n`, parallel runs in the
/// pid; [`sweep_stale`] recognises leftovers of dead runs by the pid.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The pid embedded by [`unique_name`] in `name`, if it has that shape.
pub fn pid_in_name(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces (under /run/netns) and bpffs directories (under
/// /sys/fs/bpf) named `<prefix>-<pid>-...` for one of `prefixes` whose process
/// is gone: leftovers of a run that was killed before its `Drop`s ran.
/// Names of live processes, including ours, are never touched.
pub fn sweep_stale(prefixes: &[&str]) {
    let stale = |dir: &str| -> Vec<String> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| {
                prefixes
                    .iter()
                    .any(|prefix| pid_in_name(name, prefix).is_some_and(|pid| !process_alive(pid)))
            })
            .collect()
    };
    for name in stale(NETNS_RUN_DIR) {
        eprintln!("removing network namespace {name} left by a dead run");
        let _ = quiet(Command::new("ip").args(["netns", "del", &name]));
    }
    for name in stale(BPFFS) {
        eprintln!("removing pins {BPFFS}/{name} left by a dead run");
        let _ = fs::remove_dir_all(Path::new(BPFFS).join(name));
    }
}

/// True if we run as root, which everything here needs.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes the child of `command` get SIGKILL when the thread that starts it
/// exits, or this process dies: nothing we start outlives us. (It survives
/// `exec`, e.g. through `ip netns exec`, except into set-uid programs.)
pub fn die_with_us(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Runs `command` to completion and returns its output, whatever its exit status.
pub fn output(command: &mut Command) -> anyhow::Result<Output> {
    die_with_us(command)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{}`", describe(command)))
}

/// Runs `command`; fails unless it exits 0, with its stderr in the error. Returns stdout.
pub fn run(command: &mut Command) -> anyhow::Result<String> {
    let out = output(command)?;
    if !out.status.success() {
        let (stderr, stdout) = (
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
        );
        bail!(
            "`{}` failed ({}): {}{}{}",
            describe(command),
            out.status,
            stderr.trim(),
            if stdout.trim().is_empty() { "" } else { "\n" },
            stdout.trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `command` with `input` on its stdin; fails unless it exits 0. Returns stdout.
pub fn run_with_input(command: &mut Command, input: &str) -> anyhow::Result<String> {
    let mut child = die_with_us(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running `{}`", describe(command)))?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(command),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.with_context(|| format!("writing to `{}`", describe(command)))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `command` ignoring its output; for cleanup, where errors do not matter.
/// The child gets a process group of its own, so that a second Ctrl-C at the
/// terminal cannot kill it halfway through the cleanup.
fn quiet(command: &mut Command) -> io::Result<()> {
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(drop)
}

fn check_ifname(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > IFNAME_MAX || name.contains(['/', ' ', ':']) {
        bail!("'{name}' is not a valid interface name (1 to {IFNAME_MAX} bytes)");
    }
    Ok(())
}

/// A network namespace made by us (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// If set, drop leaves the namespace in place (for inspection).
    keep: AtomicBool,
}

impl Netns {
    /// Creates the namespace `name` with `lo` up and IPv6 background traffic
    /// (DAD, router solicitations, accepting router advertisements,
    /// autoconfiguration) switched off for every interface created in it later,
    /// and multicast reports sent without delay, so that counters on its links
    /// see only the traffic a test sends once the first reports are out.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        if Path::new(NETNS_RUN_DIR).join(name).exists() {
            bail!("network namespace {name} exists already");
        }
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Self {
            name: name.to_owned(),
            keep: AtomicBool::new(false),
        };
        let mut settings = Vec::new();
        for scope in ["all", "default"] {
            for (key, value) in [
                ("accept_dad", "0"),
                ("dad_transmits", "0"),
                ("accept_ra", "0"),
                ("router_solicitations", "0"),
                ("autoconf", "0"),
                // Multicast listener reports repeat at random times up to this
                // interval (default 1 s) after an address appears: make them
                // all go out at once, so the links are quiet right after setup.
                ("mldv1_unsolicited_report_interval", "1"),
                ("mldv2_unsolicited_report_interval", "1"),
            ] {
                settings.push((format!("net.ipv6.conf.{scope}.{key}"), value));
            }
            for key in [
                "igmpv2_unsolicited_report_interval",
                "igmpv3_unsolicited_report_interval",
            ] {
                settings.push((format!("net.ipv4.conf.{scope}.{key}"), "1"));
            }
        }
        ns.sysctls(settings.iter().map(|(key, value)| (key.as_str(), *value)))?;
        ns.ip(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a namespace with a fresh [`unique_name`].
    pub fn unique(prefix: &str) -> anyhow::Result<Self> {
        Self::create(&unique_name(prefix))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace handle, e.g. for `nsenter --net=PATH`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Leave the namespace in place when this handle is dropped.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    /// `ip netns exec NAME program`: runs `program` in the namespace, with a
    /// private /sys of the namespace (so /sys/class/net shows its interfaces)
    /// and /etc/netns/NAME/* bind-mounted over /etc.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// `nsenter --net=PATH program`: only the network namespace changes; the
    /// mounts (e.g. /sys/fs/bpf) stay those of this process.
    pub fn nsenter(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        command
    }

    /// Runs `args` (program first) in the namespace; fails unless it exits 0. Returns stdout.
    pub fn run<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args = args.into_iter();
        let program = args.next().ok_or_else(|| anyhow!("no program to run"))?;
        run(self.command(program).args(args))
    }

    /// `ip -n NAME ARGS...`; fails unless it exits 0. Returns stdout.
    pub fn ip<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Sets a sysctl of this namespace, e.g. `net.ipv4.ip_forward`.
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.sysctls([(key, value)])
    }

    /// Sets several sysctls of this namespace with one command.
    pub fn sysctls<'a>(
        &self,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<()> {
        let mut command = self.command("sysctl");
        command.args(["-q", "-w"]);
        for (key, value) in settings {
            command.arg(format!("{key}={value}"));
        }
        run(&mut command).map(drop)
    }

    /// Adds an address (with prefix length) to an interface: `ip addr add ADDR dev IFACE`.
    pub fn add_addr(&self, iface: &str, cidr: &str) -> anyhow::Result<()> {
        self.ip(["addr", "add", cidr, "dev", iface]).map(drop)
    }

    /// Sets an interface up.
    pub fn up(&self, iface: &str) -> anyhow::Result<()> {
        self.ip(["link", "set", "dev", iface, "up"]).map(drop)
    }

    /// Adds a route: `ip route add DEST via GATEWAY` (IPv4 or IPv6 after the gateway's family).
    pub fn add_route(&self, dest: &str, via: IpAddr) -> anyhow::Result<()> {
        let family = if via.is_ipv4() { "-4" } else { "-6" };
        self.ip([family, "route", "add", dest, "via", &via.to_string()])
            .map(drop)
    }

    /// Adds a permanent neighbour entry, so no ARP / neighbour discovery runs for `addr`.
    pub fn add_neighbour(&self, iface: &str, addr: IpAddr, mac: &str) -> anyhow::Result<()> {
        self.ip([
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            mac,
            "nud",
            "permanent",
            "dev",
            iface,
        ])
        .map(drop)
    }

    /// The MAC address of an interface in this namespace.
    pub fn mac(&self, iface: &str) -> anyhow::Result<String> {
        check_ifname(iface)?;
        Ok(self
            .run(["cat", &format!("/sys/class/net/{iface}/address")])?
            .trim()
            .to_owned())
    }

    /// The operational state of an interface: "up", "down", "unknown" (lo), ...
    pub fn operstate(&self, iface: &str) -> anyhow::Result<String> {
        check_ifname(iface)?;
        Ok(self
            .run(["cat", &format!("/sys/class/net/{iface}/operstate")])?
            .trim()
            .to_owned())
    }

    /// Packets an interface has sent and received so far (from its kernel statistics).
    pub fn link_packets(&self, iface: &str) -> anyhow::Result<(u64, u64)> {
        check_ifname(iface)?;
        let read = |what: &str| -> anyhow::Result<u64> {
            let path = format!("/sys/class/net/{iface}/statistics/{what}");
            let text = self.run(["cat", &path])?;
            text.trim()
                .parse()
                .with_context(|| format!("parsing {path}: {text:?}"))
        };
        Ok((read("tx_packets")?, read("rx_packets")?))
    }

    /// Starts `args` (program first) in the background in this namespace; it
    /// is stopped when the returned handle is dropped. Output goes to a log file.
    pub fn spawn<I, S>(&self, label: &str, args: I) -> anyhow::Result<Background>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args = args.into_iter();
        let program = args.next().ok_or_else(|| anyhow!("no program to run"))?;
        let mut command = self.command(program);
        command.args(args);
        Background::spawn(label, command)
    }

    /// Runs `f` on a thread that has joined this network namespace, and returns
    /// its result. Sockets created in `f` stay in this namespace for good, so this
    /// is how tests open sockets "inside" a namespace from this process.
    pub fn enter<T: Send>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send,
    ) -> anyhow::Result<T> {
        let path = self.path();
        let handle = fs::File::open(&path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on a namespace fd only changes this (fresh,
                    // short-lived) thread's network namespace.
                    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error())
                            .with_context(|| format!("entering {}", path.display()));
                    }
                    f()
                })
                .join()
                .map_err(|_| anyhow!("the thread inside {} panicked", self.name))?
        })
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn udp_bind(&self, addr: SocketAddr) -> anyhow::Result<UdpSocket> {
        self.enter(|| UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}")))
            .with_context(|| format!("in namespace {}", self.name))
    }

    /// A TCP listener bound to `addr` inside this namespace.
    pub fn tcp_listen(&self, addr: SocketAddr) -> anyhow::Result<TcpListener> {
        self.enter(|| TcpListener::bind(addr).with_context(|| format!("listening on TCP {addr}")))
            .with_context(|| format!("in namespace {}", self.name))
    }

    /// A TCP connection to `addr` from inside this namespace.
    pub fn tcp_connect(&self, addr: SocketAddr, timeout: Duration) -> anyhow::Result<TcpStream> {
        self.enter(|| {
            let stream = TcpStream::connect_timeout(&addr, timeout)
                .with_context(|| format!("connecting to TCP {addr}"))?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            Ok(stream)
        })
        .with_context(|| format!("in namespace {}", self.name))
    }

    /// Sends `count` UDP datagrams of `len` bytes from this namespace to `to`,
    /// from one socket on an ephemeral port, and returns that socket's address. Pauses briefly every 32 datagrams
    /// so that no queue on the way overflows: every datagram must arrive.
    pub fn send_udp(&self, to: SocketAddr, count: u32, len: usize) -> anyhow::Result<SocketAddr> {
        let socket = self.udp_bind(unspecified(to))?;
        // Connected, so that local_addr() tells the source address the route chose.
        socket
            .connect(to)
            .with_context(|| format!("no route to {to}"))?;
        let payload = vec![0x5a_u8; len];
        for i in 0..count {
            socket
                .send(&payload)
                .with_context(|| format!("sending UDP to {to}"))?;
            if i % 32 == 31 {
                thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(socket.local_addr()?)
    }

    /// Sends `count` UDP requests to `to` one at a time, each waiting up to
    /// `timeout` for its answer (e.g. from a [`UdpServer`] with echo). Returns
    /// how many were answered.
    pub fn udp_exchange(
        &self,
        to: SocketAddr,
        count: u32,
        timeout: Duration,
    ) -> anyhow::Result<u32> {
        let socket = self.udp_bind(unspecified(to))?;
        socket.set_read_timeout(Some(timeout))?;
        let mut answered = 0;
        let mut buf = [0u8; 2048];
        for i in 0..count {
            let request = format!("request {i}");
            socket.send_to(request.as_bytes(), to)?;
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) if from == to && buf[..n] == *request.as_bytes() => {
                        answered += 1;
                        break;
                    }
                    Ok(_) => continue,
                    Err(err) if is_timeout(&err) => break,
                    Err(err) => return Err(err).context("receiving a UDP answer"),
                }
            }
        }
        Ok(answered)
    }

    /// Pings `dst` `count` times from this namespace (iputils `ping`, 0.1 s
    /// apart). A ping without answers is not an error: look at the result.
    pub fn ping(&self, dst: IpAddr, count: u32) -> anyhow::Result<Ping> {
        let out = output(self.command("ping").args([
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.1",
            "-W",
            "2",
            &dst.to_string(),
        ]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ping::parse(&text).ok_or_else(|| {
            anyhow!(
                "unexpected output from ping {dst} in {}: {text}{}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Waits until something listens on `port` (TCP or UDP) in this namespace,
    /// e.g. a server started with [`Netns::spawn`].
    pub fn wait_listening(&self, proto: Proto, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let flag = match proto {
            Proto::Tcp => "-Hltn",
            Proto::Udp => "-Hlun",
        };
        let filter = format!("sport = :{port}");
        wait_until(timeout, Duration::from_millis(50), || {
            Ok(!self.run(["ss", flag, &filter])?.trim().is_empty())
        })
        .with_context(|| format!("nothing listens on {proto:?} port {port} in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.keep.load(Ordering::Relaxed) {
            eprintln!("keeping network namespace {}", self.name);
            return;
        }
        // Deleting the namespace deletes its interfaces, and with a veth its peer.
        let _ = quiet(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// Creates a veth pair with one end, `a_name`, in `a` and the other, `b_name`,
/// in `b`. Both ends are created directly in their namespaces (never in ours),
/// so their names cannot collide with anything outside them; they go away
/// with the namespaces.
pub fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> anyhow::Result<()> {
    check_ifname(a_name)?;
    check_ifname(b_name)?;
    a.ip([
        "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", &b.name,
    ])
    .map(drop)
}

/// The unspecified address of `to`'s family, port 0: bind there to reach `to`.
pub fn unspecified(to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Polls `check` every `every` until it returns true; fails after `timeout`.
pub fn wait_until(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?}");
        }
        thread::sleep(every);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// The summary line of a `ping` run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    pub transmitted: u32,
    pub received: u32,
}

impl Ping {
    /// Parses "N packets transmitted, M received, ..." out of ping's output.
    pub fn parse(text: &str) -> Option<Self> {
        let line = text
            .lines()
            .find(|line| line.contains("packets transmitted"))?;
        let mut numbers = line
            .split(',')
            .map(|part| part.split_whitespace().next()?.parse::<u32>().ok());
        Some(Self {
            transmitted: numbers.next()??,
            received: numbers.next()??,
        })
    }
}

/// A process started by us in the background; stopped (SIGTERM, then SIGKILL)
/// when dropped. Its stdout and stderr go to a log file that is removed on
/// drop, unless the thread is panicking, when its tail is printed instead.
pub struct Background {
    label: String,
    child: Child,
    /// Where its output goes, unless it was started with `spawn_attached`.
    log: Option<PathBuf>,
}

impl Background {
    /// Starts `command` with output to a log file. See [`die_with_us`]: the
    /// child dies if the thread that started it exits (or this process is
    /// killed), so keep the handle on that thread.
    pub fn spawn(label: &str, mut command: Command) -> anyhow::Result<Self> {
        let log = std::env::temp_dir().join(format!("{}.log", unique_name("wft-bg")));
        let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        command.stdout(file.try_clone()?).stderr(file);
        Self::start(label, command, Some(log))
    }

    /// Like [`Background::spawn`], but the output goes wherever `command` sends
    /// it (by default our own stdout and stderr), e.g. for the lab's user to see.
    pub fn spawn_attached(label: &str, command: Command) -> anyhow::Result<Self> {
        Self::start(label, command, None)
    }

    fn start(label: &str, mut command: Command, log: Option<PathBuf>) -> anyhow::Result<Self> {
        let child = die_with_us(&mut command)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {label}: `{}`", describe(&command)));
        let child = match child {
            Ok(child) => child,
            Err(err) => {
                if let Some(log) = &log {
                    let _ = fs::remove_file(log);
                }
                return Err(err);
            }
        };
        Ok(Self {
            label: label.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed so far (nothing if started with `spawn_attached`).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// Whether it still runs; if it exited, the error says how, with its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited ({status}): {}", self.label, self.log()),
        }
    }

    /// Stops it now and returns its exit status.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.terminate();
        let Some(path) = &self.log else {
            return;
        };
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("--- last lines of {} ({}) ---", self.label, path.display());
            tail.iter().rev().for_each(|line| eprintln!("{line}"));
        } else {
            let _ = fs::remove_file(path);
        }
    }
}

/// A directory on the bpf filesystem, e.g. a filter-ctl `--pin-root`, removed
/// with everything in it on drop (unpinning links detaches their programs).
#[derive(Debug)]
pub struct BpffsDir {
    path: PathBuf,
}

impl BpffsDir {
    /// A fresh path `/sys/fs/bpf/<unique_name(prefix)>`; not created here:
    /// filter-ctl creates its pin root itself.
    pub fn unique(prefix: &str) -> Self {
        Self {
            path: Path::new(BPFFS).join(unique_name(prefix)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BpffsDir {
    fn drop(&mut self) {
        if self.path.exists() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A UDP server in a namespace, on a thread of this process: counts the
/// datagrams it receives, remembers their senders and, with `echo`, sends each
/// one back. Stops when dropped.
pub struct UdpServer {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    senders: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpServer {
    pub fn start(ns: &Netns, addr: SocketAddr, echo: bool) -> anyhow::Result<Self> {
        let socket = ns.udp_bind(addr)?;
        let addr = socket.local_addr()?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let received = Arc::new(AtomicU64::new(0));
        let senders = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let (received, senders, stop) = (received.clone(), senders.clone(), stop.clone());
            move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    received.fetch_add(1, Ordering::Relaxed);
                    let mut senders = senders.lock().unwrap();
                    if !senders.contains(&from) {
                        senders.push(from);
                    }
                    drop(senders);
                    if echo {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            }
        });
        Ok(Self {
            addr,
            received,
            senders,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `n` datagrams have arrived or `timeout` passed; returns the count.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> u64 {
        let _ = wait_until(timeout, Duration::from_millis(10), || {
            Ok(self.received() >= n)
        });
        self.received()
    }

    /// The distinct source addresses seen, in order of arrival.
    pub fn senders(&self) -> Vec<SocketAddr> {
        self.senders.lock().unwrap().clone()
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A TCP echo server in a namespace, on a thread of this process: echoes each
/// connection until the peer closes it, one connection at a time. Stops when dropped.
pub struct TcpEchoServer {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpEchoServer {
    pub fn start(ns: &Netns, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = ns.tcp_listen(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let (connections, stop) = (connections.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let _ = echo(stream, &stop);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        Ok(Self {
            addr,
            connections,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

fn echo(mut stream: TcpStream, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => stream.write_all(&buf[..n])?,
            Err(err) if is_timeout(&err) => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

impl Drop for TcpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_carry_the_pid() {
        let a = unique_name("wft");
        let b = unique_name("wft");
        assert_ne!(a, b);
        assert_eq!(pid_in_name(&a, "wft"), Some(std::process::id()));
        assert_eq!(pid_in_name(&b, "wft"), Some(std::process::id()));
    }

    #[test]
    fn pid_in_name_wants_the_exact_prefix() {
        assert_eq!(pid_in_name("wft-123-4-gw", "wft"), Some(123));
        assert_eq!(pid_in_name("wft-123-4", "wft"), Some(123));
        assert_eq!(pid_in_name("wftx-123-4", "wft"), None);
        assert_eq!(pid_in_name("wft-abc-4", "wft"), None);
        assert_eq!(pid_in_name("wft-123", "wft"), None);
        assert_eq!(pid_in_name("other-123-4", "wft"), None);
        assert_eq!(
            pid_in_name("wan-filter-test-77-0", "wan-filter-test"),
            Some(77)
        );
    }

    #[test]
    fn ping_summary_is_parsed() {
        let text = "PING 203.0.113.2 (203.0.113.2) 56(84) bytes of data.\n\n\
                    --- 203.0.113.2 ping statistics ---\n\
                    5 packets transmitted, 4 received, 20% packet loss, time 404ms\n\
                    rtt min/avg/max/mdev = 0.030/0.041/0.057/0.010 ms\n";
        assert_eq!(
            Ping::parse(text),
            Some(Ping {
                transmitted: 5,
                received: 4
            })
        );
        let errors = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2ms\n";
        assert_eq!(
            Ping::parse(errors),
            Some(Ping {
                transmitted: 3,
                received: 0
            })
        );
        assert_eq!(Ping::parse("ping: connect: Network is unreachable\n"), None);
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(check_ifname("wan0").is_ok());
        assert!(check_ifname("abcdefghijklmno").is_ok());
        assert!(check_ifname("abcdefghijklmnop").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
    }

    #[test]
    fn unspecified_keeps_the_family() {
        assert_eq!(
            unspecified("203.0.113.2:53".parse().unwrap()),
            "0.0.0.0:0".parse().unwrap()
        );
        assert_eq!(
            unspecified("[2001:db8::1]:53".parse().unwrap()),
            "[::]:0".parse().unwrap()
        );
    }
}
