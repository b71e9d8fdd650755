//! A real mail server with a fixed number of SMTP slots, and a real sender:
//!
//! - [`Postfix`]: an instance of Postfix of its own (config, queue and log in
//!   a temp dir) listening on one address, its `smtpd` limited to a number of
//!   processes in `master.cf` (the "maxproc" column): one process per SMTP
//!   session, so that many slots. With every slot taken, a new client's
//!   connection waits in the listening socket's queue without a greeting, and
//!   the master logs that the service "has reached its process limit". Mail
//!   to `gw.example` is accepted and discarded (the `discard` transport);
//!   nothing is delivered anywhere.
//! - [`send_mail`]: one message with `swaks`, as a sending server would
//!   deliver it, giving up after a timeout.
//!
//! Postfix runs as our child in the foreground (`master -s`), stopped on
//! drop (SIGTERM, which ends its daemons too).

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use crate::{
    netns::{Netns, sockets::Proto},
    process::{Background, output, run},
    servers::real::temp_dir,
};

/// Where Debian's postfix package puts its daemons.
const DAEMON_DIR: &str = "/usr/lib/postfix/sbin";
/// The mail domain the server accepts mail for.
pub const MAIL_DOMAIN: &str = "gw.example";

/// A Postfix instance of our own. See the module documentation.
pub struct Postfix {
    master: Background,
    listen: SocketAddr,
    slots: usize,
    ns_name: String,
    dir: TempDir,
}

impl Postfix {
    /// Starts Postfix in `ns` on `listen` (port 25 in practice) with `slots`
    /// smtpd processes at most.
    pub fn start(ns: &Netns, listen: SocketAddr, slots: usize) -> anyhow::Result<Self> {
        let dir = temp_dir("postfix")?;
        let root = dir.path();
        let (conf, queue, data) = (root.join("conf"), root.join("queue"), root.join("data"));
        for path in [&conf, &queue, &data] {
            fs::create_dir(path).with_context(|| format!("creating {}", path.display()))?;
        }
        // The mail owner writes its lock files there.
        run(std::process::Command::new("chown").args(["postfix", &data.to_string_lossy()]))
            .context("is postfix installed? (`cargo xtask setup` installs it for the lab)")?;
        let log = root.join("maillog");
        let inet_protocols = if listen.is_ipv4() { "ipv4" } else { "ipv6" };
        fs::write(
            conf.join("main.cf"),
            format!(
                "# A Postfix of the lab: accepts mail for {MAIL_DOMAIN} and discards it.\n\
                 compatibility_level = 3.6\n\
                 queue_directory = {queue}\n\
                 data_directory = {data}\n\
                 mail_owner = postfix\n\
                 setgid_group = postdrop\n\
                 myhostname = mail.{MAIL_DOMAIN}\n\
                 mydomain = {MAIL_DOMAIN}\n\
                 myorigin = {MAIL_DOMAIN}\n\
                 mydestination = {MAIL_DOMAIN}\n\
                 inet_interfaces = {ip}\n\
                 inet_protocols = {inet_protocols}\n\
                 mynetworks = 127.0.0.0/8\n\
                 # No DNS in the lab: no reverse lookups of clients.\n\
                 smtpd_peername_lookup = no\n\
                 alias_maps =\n\
                 alias_database =\n\
                 local_recipient_maps =\n\
                 local_transport = discard:\n\
                 default_transport = discard:\n\
                 maillog_file = {log}\n\
                 maillog_file_prefixes = {root}\n\
                 biff = no\n",
                queue = queue.display(),
                data = data.display(),
                ip = listen.ip(),
                log = log.display(),
                root = root.display(),
            ),
        )?;
        // The "maxproc" column of smtp is the number of slots.
        fs::write(
            conf.join("master.cf"),
            format!(
                "smtp      inet  n       -       n       -       {slots}      smtpd\n\
                 cleanup   unix  n       -       n       -       0       cleanup\n\
                 qmgr      unix  n       -       n       300     1       qmgr\n\
                 rewrite   unix  -       -       n       -       -       trivial-rewrite\n\
                 bounce    unix  -       -       n       -       0       bounce\n\
                 defer     unix  -       -       n       -       0       bounce\n\
                 trace     unix  -       -       n       -       0       bounce\n\
                 discard   unix  -       -       n       -       -       discard\n\
                 anvil     unix  -       -       n       -       1       anvil\n\
                 postlog   unix-dgram n  -       n       -       1       postlogd\n"
            ),
        )?;
        let conf_arg = conf.to_string_lossy().into_owned();
        // `postfix check` creates the queue's directories with their owners.
        let check = output(ns.command("postfix").args(["-c", &conf_arg, "check"]))?;
        if !check.status.success() {
            bail!(
                "postfix check failed ({}): {}{}",
                check.status,
                String::from_utf8_lossy(&check.stderr).trim(),
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let master = ns.spawn(
            "postfix master",
            [&format!("{DAEMON_DIR}/master"), "-c", &conf_arg, "-s"],
        )?;
        let mut postfix = Self {
            master,
            listen,
            slots,
            ns_name: ns.name().to_owned(),
            dir,
        };
        ns.wait_listening(Proto::Tcp, listen.port(), Duration::from_secs(10))
            .with_context(|| format!("postfix did not start: {}", postfix.log()))
            .and_then(|()| postfix.master.check_running())?;
        Ok(postfix)
    }

    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Its log (`maillog_file`).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// The log's lines containing `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| line.contains(text))
            .map(str::to_owned)
            .collect()
    }

    /// Messages accepted and handed on (the discard transport's `status=sent`).
    pub fn delivered(&self) -> usize {
        self.log_lines("status=sent").len()
    }

    /// Slots in use per client address now: see [`slots_held`].
    pub fn slots_held(&self) -> anyhow::Result<BTreeMap<IpAddr, usize>> {
        slots_held(&self.ns_name, self.listen.port())
    }

    /// Fails, with its log, if the master exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.master
            .check_running()
            .with_context(|| format!("postfix's log:\n{}", self.log()))
    }

    /// Where its files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Slots in use per client address in the namespace named `ns` (by name,
/// for a sampler thread): established connections to local port `port` that
/// an smtpd process holds (`ss -p`), so not those still waiting in the
/// listening socket's queue for a free slot.
pub fn slots_held(ns: &str, port: u16) -> anyhow::Result<BTreeMap<IpAddr, usize>> {
    let filter = format!("sport = :{port}");
    let text = run(std::process::Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "ss",
        "-Htnp",
        "state",
        "established",
        &filter,
    ]))?;
    let mut held = BTreeMap::new();
    for line in text.lines().filter(|line| line.contains("\"smtpd\"")) {
        // Recv-Q Send-Q Local:Port Peer:Port users:(...)
        let Some(peer) = line.split_whitespace().nth(3) else {
            continue;
        };
        let Ok(peer) = peer.parse::<SocketAddr>() else {
            continue;
        };
        *held.entry(peer.ip().to_canonical()).or_default() += 1;
    }
    Ok(held)
}

/// Delivers one message from `ns` to `server` with swaks, as a sending
/// server would; an error (with swaks' last words) if it was not accepted,
/// e.g. because no greeting came within `timeout`.
pub fn send_mail(
    ns: &Netns,
    server: SocketAddr,
    from: &str,
    to: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let out = output(ns.command("swaks").args([
        "--server",
        &server.ip().to_string(),
        "--port",
        &server.port().to_string(),
        "--from",
        from,
        "--to",
        to,
        "--timeout",
        &format!("{}", timeout.as_secs().max(1)),
        "--silent",
        "1",
    ]))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text
            .lines()
            .find(|line| line.contains("<**") || line.contains("***"))
            .unwrap_or("")
            .trim();
        bail!("swaks from {} ({}): {last}", ns.name(), out.status);
    }
    Ok(())
}
