//! Network namespaces made by the tests, the lab and the benchmark: create
//! and delete them, join them with veth pairs, configure their links, and run
//! commands and background processes in them. [`sockets`] opens sockets inside
//! a namespace from this process, and sends test traffic from there.
//!
//! Everything is cleaned up by `Drop`, so a failing or panicking test leaves
//! nothing behind: a [`Netns`] deletes its namespace (which deletes its veths).
//! Names embed our pid ([`crate::names`]), and processes started here die with
//! us ([`crate::process`]).

pub mod pppoe;
pub mod sockets;
pub mod tun;

use std::{
    ffi::OsStr,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, anyhow, bail};
use nix::{
    sys::signal::{self, Signal},
    unistd::Pid,
};

use crate::{
    names::{NETNS_ETC_DIR, NETNS_RUN_DIR, unique_name},
    process::{self, Background, note, run, run_with_input},
};

/// Linux interface names are at most 15 bytes.
pub const IFNAME_MAX: usize = 15;

/// An Ethernet MAC address; shown and parsed as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let bytes: Vec<u8> = text
            .trim()
            .split(':')
            .map(|part| u8::from_str_radix(part, 16))
            .collect::<Result<_, _>>()
            .with_context(|| format!("'{text}' is not a MAC address"))?;
        let bytes = bytes
            .try_into()
            .map_err(|_| anyhow!("'{text}' is not a MAC address"))?;
        Ok(Self(bytes))
    }
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

    /// Loads an nftables ruleset into this namespace: `nft -f -`.
    pub fn nft(&self, ruleset: &str) -> anyhow::Result<()> {
        run_with_input(self.command("nft").args(["-f", "-"]), ruleset).map(drop)
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
    pub fn add_neighbour(&self, iface: &str, addr: IpAddr, mac: Mac) -> anyhow::Result<()> {
        self.ip([
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            &mac.to_string(),
            "nud",
            "permanent",
            "dev",
            iface,
        ])
        .map(drop)
    }

    /// An attribute of an interface in this namespace, from
    /// `/sys/class/net/IFACE/ATTR` (read inside it: our /sys shows ours), trimmed.
    pub fn sysfs(&self, iface: &str, attr: &str) -> anyhow::Result<String> {
        check_ifname(iface)?;
        Ok(self
            .run(["cat", &format!("/sys/class/net/{iface}/{attr}")])?
            .trim()
            .to_owned())
    }

    /// The MAC address of an interface in this namespace.
    pub fn mac(&self, iface: &str) -> anyhow::Result<Mac> {
        self.sysfs(iface, "address")?.parse()
    }

    /// The operational state of an interface: "up", "down", "unknown" (lo), ...
    pub fn operstate(&self, iface: &str) -> anyhow::Result<String> {
        self.sysfs(iface, "operstate")
    }

    /// A counter of an interface's kernel statistics, e.g. `tx_packets`, `rx_dropped`.
    pub fn link_stat(&self, iface: &str, name: &str) -> anyhow::Result<u64> {
        let text = self.sysfs(iface, &format!("statistics/{name}"))?;
        text.parse()
            .with_context(|| format!("parsing {iface}'s {name}: {text:?}"))
    }

    /// Packets an interface has sent and received so far.
    pub fn link_packets(&self, iface: &str) -> anyhow::Result<(u64, u64)> {
        Ok((
            self.link_stat(iface, "tx_packets")?,
            self.link_stat(iface, "rx_packets")?,
        ))
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
}

impl Netns {
    /// Writes `text` to `relative` (e.g. `ppp/options`) in this namespace's
    /// own /etc: `ip netns exec` (every [`Netns::command`]) mounts
    /// /etc/netns/NAME/X over /etc/X, so programs run in the namespace read
    /// it instead of the machine's file, and the machine's own stays out of
    /// reach (pppd's /etc/ppp/ip-up scripts, for one). Removed on drop.
    pub fn etc_file(&self, relative: &str, text: &str) -> anyhow::Result<PathBuf> {
        if relative
            .split('/')
            .any(|part| part.is_empty() || part == "..")
        {
            bail!("'{relative}' is not a relative path under /etc");
        }
        let path = Path::new(NETNS_ETC_DIR).join(&self.name).join(relative);
        let dir = path.parent().expect("a path under the namespace's /etc");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(Path::new("/etc").join(relative))
    }

    /// Kills every process in this namespace but ours: see [`kill_processes`].
    pub fn kill_processes(&self) {
        kill_processes(&self.name);
    }

    /// Adds the bond `name` (mode `mode`, e.g. `balance-rr`) over `slaves`,
    /// interfaces of this namespace, and sets it and them up.
    pub fn add_bond(&self, name: &str, mode: &str, slaves: &[&str]) -> anyhow::Result<()> {
        check_ifname(name)?;
        self.ip([
            "link", "add", name, "type", "bond", "mode", mode, "miimon", "100",
        ])?;
        for slave in slaves {
            self.ip(["link", "set", "dev", slave, "down"])?;
            self.ip(["link", "set", "dev", slave, "master", name])?;
            self.up(slave)?;
        }
        self.up(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.keep.load(Ordering::Relaxed) {
            note(format_args!("keeping network namespace {}", self.name));
            return;
        }
        // Deleting the namespace deletes its interfaces, and with a veth its peer.
        process::quiet(Command::new("ip").args(["netns", "del", &self.name]));
        let _ = std::fs::remove_dir_all(Path::new(NETNS_ETC_DIR).join(&self.name));
    }
}

/// Kills every process in the namespace `name` (one of ours) but this
/// one: what the processes we started there started in turn (pppoe-server's
/// pppd sessions), which would otherwise outlive it.
pub fn kill_processes(name: &str) {
    let Ok(pids) = run(Command::new("ip").args(["netns", "pids", name])) else {
        return;
    };
    let ours = std::process::id() as i32;
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if pid != ours {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(check_ifname("wan0").is_ok());
        assert!(check_ifname("abcdefghijklmno").is_ok());
        assert!(check_ifname("abcdefghijklmnop").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
    }

    #[test]
    fn macs_are_parsed_and_shown() {
        let mac: Mac = "02:00:0a:ff:10:01\n".parse().unwrap();
        assert_eq!(mac, Mac([2, 0, 0x0a, 0xff, 0x10, 1]));
        assert_eq!(mac.to_string(), "02:00:0a:ff:10:01");
        assert!("02:00".parse::<Mac>().is_err());
        assert!("zz:00:00:00:00:00".parse::<Mac>().is_err());
    }
}
