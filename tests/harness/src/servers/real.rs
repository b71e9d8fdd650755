//! Real servers and clients from Debian packages, on the lab's internet
//! server addresses ([`addr::SERVER4`], [`addr::SERVER6`]):
//!
//! - [`Servers`]: dnsmasq, answering [`DNS_NAME`] and every name under it
//!   itself (no upstream, no /etc/hosts), and chronyd, an NTP server on its
//!   local clock (stratum 8) that never touches the clock (`-x`) and has no
//!   command port; started in the foreground as our children, stopped on drop;
//! - [`dig`] and [`ntp_exchange`]: one real lookup or NTP exchange from any
//!   namespace (the gateway, the LAN client), each checked.
//!
//! The servers listen only on those two addresses, inside the internet
//! namespace; their config, pid and log files live in a temp dir of their own.

use std::{net::IpAddr, path::Path, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use tempfile::TempDir;

use crate::{
    lab::addr,
    netns::{Netns, sockets::Proto},
    process::{Background, output},
};

/// The name the lab's DNS server answers (with [`addr::DNS_ANSWER4`] and
/// [`addr::DNS_ANSWER6`]), and every name under it.
pub const DNS_NAME: &str = "lab.test";

/// A temp dir of our own for config, pid and log files, removed on drop.
pub(crate) fn temp_dir(what: &str) -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("wft-{what}-"))
        .tempdir()
        .with_context(|| format!("creating a temp dir for {what}"))
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_string_lossy().into_owned())
}

/// dnsmasq on the internet's server addresses, answering [`DNS_NAME`]; with
/// `log_queries`, its log has a line per query.
pub fn dns_server(internet: &Netns, log_queries: bool) -> anyhow::Result<Background> {
    let mut args = vec![
        "dnsmasq".to_owned(),
        "--keep-in-foreground".to_owned(),
        // No config file, no upstream servers, no /etc/hosts: it only
        // knows the name it is given here.
        "--conf-file=/dev/null".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        format!("--address=/{DNS_NAME}/{}", addr::DNS_ANSWER4),
        format!("--address=/{DNS_NAME}/{}", addr::DNS_ANSWER6),
        format!("--listen-address={}", addr::SERVER4),
        format!("--listen-address={}", addr::SERVER6),
        "--bind-interfaces".to_owned(),
        "--port=53".to_owned(),
        // No pid file: we have its pid.
        "--pid-file".to_owned(),
        "--log-facility=-".to_owned(),
        // Stay root: changing user would clear the parent-death signal
        // (process::die_with_us) that ends it if we are killed.
        "--user=root".to_owned(),
    ];
    if log_queries {
        args.push("--log-queries".to_owned());
    }
    let dns = internet.spawn("dnsmasq", args)?;
    internet
        .wait_listening(Proto::Udp, 53, Duration::from_secs(5))
        .context("dnsmasq did not start")?;
    Ok(dns)
}

/// chronyd as an NTP server on `listen` in `ns`: its own clock at stratum
/// 8, for anyone, never touching the clock (`-x`), no command port, no rate
/// limit of its own. Its config and pid file live in the returned temp dir.
pub fn ntp_server(ns: &Netns, listen: &[IpAddr]) -> anyhow::Result<(Background, TempDir)> {
    let dir = temp_dir("ntp-server")?;
    let binds: String = listen
        .iter()
        .map(|ip| format!("bindaddress {ip}\n"))
        .collect();
    let conf = write(
        dir.path(),
        "chronyd.conf",
        &format!(
            "# An NTP server: its own clock at stratum 8, for anyone.\n\
             local stratum 8\n\
             allow all\n\
             {binds}\
             cmdport 0\n\
             pidfile {}\n",
            dir.path().join("chronyd.pid").display()
        ),
    )?;
    // -x: never touch the clock; -d: foreground, log to stderr; -u root:
    // as dnsmasq's --user=root.
    let mut ntp = ns.spawn(
        "chronyd",
        ["chronyd", "-x", "-d", "-u", "root", "-f", &conf],
    )?;
    ns.wait_listening(Proto::Udp, 123, Duration::from_secs(5))
        .context("chronyd did not start")
        .and_then(|()| ntp.check_running())?;
    Ok((ntp, dir))
}

/// The lab's DNS and NTP servers. See the module documentation.
pub struct Servers {
    dns: Background,
    ntp: Background,
    /// chronyd's config and pid file.
    _dir: TempDir,
}

impl Servers {
    pub fn start(internet: &Netns) -> anyhow::Result<Self> {
        let mut dns = dns_server(internet, true)?;
        dns.check_running()?;
        let (ntp, dir) = ntp_server(internet, &[addr::SERVER4.into(), addr::SERVER6.into()])?;
        let mut servers = Self {
            dns,
            ntp,
            _dir: dir,
        };
        servers.check_running()?;
        Ok(servers)
    }

    /// Fails, with its log, if a server has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.dns.check_running()?;
        self.ntp.check_running()
    }
}

/// One `dig @server DNS_NAME A|AAAA +tries=1 +time=2` from `ns`: one query,
/// no retry. Returns the address answered; an error if there was no answer,
/// or not the one [`Servers`] gives.
pub fn dig(ns: &Netns, server: IpAddr, aaaa: bool) -> anyhow::Result<IpAddr> {
    let (rtype, want): (&str, IpAddr) = if aaaa {
        ("AAAA", addr::DNS_ANSWER6.into())
    } else {
        ("A", addr::DNS_ANSWER4.into())
    };
    let out = output(ns.command("dig").args([
        &format!("@{server}"),
        DNS_NAME,
        rtype,
        "+tries=1",
        "+time=2",
        "+short",
    ]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let answer: Option<IpAddr> = text.lines().next().and_then(|l| l.trim().parse().ok());
    match answer {
        Some(answer) if out.status.success() && answer == want => Ok(answer),
        _ => bail!(
            "dig @{server} {DNS_NAME} {rtype} in {} ({}): {}{}",
            ns.name(),
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// `count` lookups of [`DNS_NAME`] (A) from `ns` at `server`, started
/// `spacing` apart and running side by side, each `dig` with one query and
/// a second to answer: how many got the right answer.
pub fn lookups(
    ns: &Netns,
    server: IpAddr,
    count: usize,
    spacing: Duration,
) -> anyhow::Result<usize> {
    let mut running = Vec::new();
    for _ in 0..count {
        let mut command = ns.command("dig");
        command
            .args([
                &format!("@{server}"),
                DNS_NAME,
                "A",
                "+tries=1",
                "+time=1",
                "+short",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        running.push(
            crate::process::die_with_us(&mut command)
                .spawn()
                .context("starting dig")?,
        );
        std::thread::sleep(spacing);
    }
    let mut answered = 0;
    for child in running {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let answer: Option<IpAddr> = text.lines().next().and_then(|l| l.trim().parse().ok());
        if answer == Some(addr::DNS_ANSWER4.into()) {
            answered += 1;
        }
    }
    Ok(answered)
}

/// The result of an NTP exchange by [`ntp_exchange`].
#[derive(Clone, Debug)]
pub struct NtpSample {
    /// How far our clock is from the server's, in seconds (chronyd's "System
    /// clock wrong by ..."; the lab's namespaces share one clock, so about 0).
    pub offset: f64,
    /// chronyd's output.
    pub output: String,
}

/// Measures the clock against the NTP server at `server` from `ns`, with
/// `chronyd -Q` (measure only, never set the clock): it sends requests until
/// it has a sample, prints the offset and exits 0. An error if it got no
/// sample within 10 s.
pub fn ntp_exchange(ns: &Netns, server: IpAddr) -> anyhow::Result<NtpSample> {
    ntp_exchange_at(ns, None, server, 10)
}

/// [`ntp_exchange`] from the address `client` of `ns` (any, if `None`),
/// giving up after `timeout_secs` (chronyd retries by itself meanwhile).
pub fn ntp_exchange_at(
    ns: &Netns,
    client: Option<IpAddr>,
    server: IpAddr,
    timeout_secs: u32,
) -> anyhow::Result<NtpSample> {
    let dir = temp_dir("ntp")?;
    let bind = client.map_or(String::new(), |ip| format!("bindacqaddress {ip}\n"));
    let conf = write(
        dir.path(),
        "chrony.conf",
        &format!(
            "server {server} iburst maxsamples 1\n\
             {bind}\
             cmdport 0\n\
             pidfile {}\n",
            dir.path().join("chronyd.pid").display()
        ),
    )?;
    let out = output(ns.command("chronyd").args([
        "-Q",
        "-t",
        &timeout_secs.to_string(),
        "-u",
        "root",
        "-f",
        &conf,
    ]))?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let offset = output.lines().find_map(|line| {
        let rest = line.split("System clock wrong by ").nth(1)?;
        rest.split_whitespace().next()?.parse::<f64>().ok()
    });
    match offset {
        Some(offset) if out.status.success() => Ok(NtpSample { offset, output }),
        _ => Err(anyhow!(
            "chronyd -Q against {server} in {} ({}): no sample:\n{}",
            ns.name(),
            out.status,
            output.trim()
        )),
    }
}
