//! `cargo xtask lab`: the filter at work on a gateway in network namespaces.
//!
//! Builds the standard lab of the end-to-end tests (an "internet", a gateway
//! with `wan0` and NAT, a LAN client; see tests/src/lab.rs), attaches the
//! filter to the gateway's `wan0` with the real filter-ctl binary, sends
//! traffic both ways, shows the counters before and after, watches them move
//! for a few seconds, detaches, and removes everything: on success, on error
//! and on Ctrl-C.
//!
//! The harness is compiled in from the tests crate by path rather than as a
//! dependency: the tests crate depends on filter-ctl, whose build needs the
//! toolchain that `xtask setup` installs, and xtask must build without it.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../tests/src/netns.rs"]
mod netns;
#[allow(dead_code)]
#[path = "../../tests/src/lab.rs"]
mod topology;

use netns::{Background, BpffsDir, Netns, UdpServer};
use topology::{LAB_PIN_PREFIX, LAB_PREFIX, Topology, WAN_IF, addr};

/// Options of `cargo xtask lab`.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// The filter-ctl binary to use [default: target/release/filter-ctl, which xtask builds].
    #[arg(long, value_name = "PATH", env = "FILTER_CTL")]
    filter_ctl: Option<PathBuf>,
    /// Seconds to run `filter-ctl stats --watch 1` while pings flow (0: skip).
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=600))]
    watch: u64,
    /// Stay up after the demo, until Ctrl-C, to explore the lab by hand; then clean up.
    #[arg(long)]
    keep: bool,
}

/// Set by SIGINT, SIGTERM or SIGHUP; every step checks it, and the guards clean up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn catch_signals() -> anyhow::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let previous = unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
        if previous == libc::SIG_ERR {
            bail!("installing a signal handler failed");
        }
    }
    Ok(())
}

/// Fails once Ctrl-C was pressed, so that `?` unwinds to the cleanup.
fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `duration`, waking early (with an error) on Ctrl-C.
fn pause(duration: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        check_interrupted()?;
        thread::sleep(Duration::from_millis(50).min(deadline - Instant::now()));
    }
    check_interrupted()
}

pub fn run(opts: LabArgs) -> anyhow::Result<()> {
    catch_signals()?;
    let binary = match opts.filter_ctl {
        Some(path) => path,
        None => crate::repo_root().join("target/release/filter-ctl"),
    };
    if !binary.is_file() {
        bail!(
            "{} not found: build it with `cargo xtask build`",
            binary.display()
        );
    }
    let binary = binary.canonicalize()?;
    let result = demo(&binary, opts.watch, opts.keep);
    match &result {
        Ok(()) => println!("\nThe lab is gone: namespaces deleted, pins removed."),
        Err(_) if INTERRUPTED.load(Ordering::Relaxed) => {
            println!("\nInterrupted: the lab is gone (namespaces deleted, pins removed).");
            return Ok(());
        }
        Err(_) => eprintln!("\nThe lab failed; it was removed all the same."),
    }
    result
}

/// filter-ctl, run inside a namespace with the lab's own pin root.
struct Ctl<'a> {
    binary: &'a Path,
    pin_root: &'a Path,
}

impl Ctl<'_> {
    fn command(&self, ns: &Netns, args: &[&str]) -> Command {
        let mut command = ns.command(self.binary);
        command
            .args(args)
            .env("FILTER_PIN_ROOT", self.pin_root)
            .env("RUST_LOG", "info");
        netns::die_with_us(&mut command);
        command
    }

    /// Shows the command line, runs it with its output on the terminal.
    fn show(&self, ns: &Netns, args: &[&str]) -> anyhow::Result<()> {
        check_interrupted()?;
        println!(
            "\n$ ip netns exec {} filter-ctl {}",
            ns.name(),
            args.join(" ")
        );
        let status = self
            .command(ns, args)
            .stdin(Stdio::null())
            .status()
            .context("running filter-ctl")?;
        check_interrupted()?;
        if !status.success() {
            bail!("filter-ctl {} failed ({status})", args.join(" "));
        }
        Ok(())
    }

    /// `stats --json` as reason → packets.
    fn packets(&self, ns: &Netns) -> anyhow::Result<Vec<(String, u64)>> {
        let text = netns::run(&mut self.command(ns, &["stats", "--iface", WAN_IF, "--json"]))?;
        let rows: Vec<Value> = serde_json::from_str(&text).context("parsing stats --json")?;
        Ok(rows
            .iter()
            .filter_map(|row| Some((row["reason"].as_str()?.to_owned(), row["packets"].as_u64()?)))
            .collect())
    }
}

fn heading(text: &str) -> anyhow::Result<()> {
    check_interrupted()?;
    println!("\n=== {text}");
    Ok(())
}

fn demo(binary: &Path, watch: u64, keep: bool) -> anyhow::Result<()> {
    heading("Building the lab: three network namespaces joined by veth pairs")?;
    let topo = Topology::build(LAB_PREFIX)?;
    // Declared after the topology, so dropped before it: unpinning detaches the filter.
    let pins = BpffsDir::unique(LAB_PIN_PREFIX);
    let ctl = Ctl {
        binary,
        pin_root: pins.path(),
    };
    let gw = &topo.gateway;
    print!("{}", topo.describe());
    println!(
        "No namespace is connected to this machine's network: nothing leaves the lab.\n\
         The lab's filter-ctl calls use their own pin root: FILTER_PIN_ROOT={}",
        pins.path().display()
    );

    heading("Attaching the filter to the gateway's wan0")?;
    ctl.show(gw, &["attach", "--iface", WAN_IF])?;
    ctl.show(gw, &["status"])?;
    ctl.show(gw, &["stats", "--iface", WAN_IF])?;
    let before = ctl.packets(gw)?;

    heading("Sending traffic")?;
    let sent = traffic(&topo)?;

    heading("Counters after the traffic")?;
    ctl.show(gw, &["stats", "--iface", WAN_IF])?;
    let after = ctl.packets(gw)?;
    explain(&before, &after, &sent);

    if watch > 0 {
        heading(&format!(
            "Watching the counters for {watch} s while the internet pings wan0 every 10 ms"
        ))?;
        watch_counters(&topo, &ctl, watch)?;
    }

    if keep {
        heading("The lab stays up until Ctrl-C; try, in another shell:")?;
        let pin_root = pins.path().display();
        println!(
            "  ip netns exec {gw} env FILTER_PIN_ROOT={pin_root} {bin} stats --iface wan0 --watch 1\n  \
             ip netns exec {inet} ping {wan4}\n  \
             ip netns exec {lan} ping {server4}\n  \
             ip netns exec {gw} nft list ruleset",
            gw = gw.name(),
            inet = topo.internet.name(),
            lan = topo.lan.name(),
            bin = binary.display(),
            wan4 = addr::GW_WAN4,
            server4 = addr::SERVER4,
        );
        while !INTERRUPTED.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(100));
        }
        // Ctrl-C is how --keep ends: clean up as after a normal run.
        INTERRUPTED.store(false, Ordering::Relaxed);
        println!();
    }

    heading("Detaching: programs, links, maps and pins go away")?;
    ctl.show(gw, &["detach", "--iface", WAN_IF])?;
    ctl.show(gw, &["status"])?;
    let link = gw.ip(["-d", "link", "show", "dev", WAN_IF])?;
    println!(
        "wan0 has {} XDP program; its pin root {} {}.",
        if link.contains("xdp") {
            "still an"
        } else {
            "no"
        },
        pins.path().display(),
        if pins.path().exists() {
            "still exists"
        } else {
            "is gone"
        }
    );
    let ping = topo.internet.ping(addr::GW_WAN4.into(), 2)?;
    println!(
        "wan0 works as before: {}/{} pings answered.",
        ping.received, ping.transmitted
    );
    Ok(())
}

/// How many packets of each kind the demo sent.
#[derive(Default)]
struct Sent {
    pings_in4: u64,
    pings_in6: u64,
    udp_in4: u64,
    lan_out4: u64,
    lan_out6: u64,
}

fn traffic(topo: &Topology) -> anyhow::Result<Sent> {
    let (inet, gw, lan) = (&topo.internet, &topo.gateway, &topo.lan);
    let mut sent = Sent::default();

    let ping = |from: &Netns, to: IpAddr, who: &str| -> anyhow::Result<u64> {
        check_interrupted()?;
        let result = from.ping(to, 5)?;
        // ping ends early on Ctrl-C too.
        check_interrupted()?;
        println!(
            "{who}: ping {to}: {}/{} answered",
            result.received, result.transmitted
        );
        Ok(result.transmitted.into())
    };
    sent.pings_in4 = ping(inet, addr::GW_WAN4.into(), "internet -> gateway")?;
    sent.pings_in6 = ping(inet, addr::GW_WAN6.into(), "internet -> gateway")?;

    check_interrupted()?;
    let server = UdpServer::start(gw, Topology::gateway_wan(false, 5300), false)?;
    let datagrams = 200;
    inet.send_udp(server.addr(), datagrams, 100)?;
    let received = server.wait_for(datagrams.into(), Duration::from_secs(3));
    println!(
        "internet -> gateway: {datagrams} UDP datagrams to {}: {received} received",
        server.addr()
    );
    sent.udp_in4 = datagrams.into();

    for v6 in [false, true] {
        check_interrupted()?;
        let echo = UdpServer::start(inet, Topology::server(v6, 7000), true)?;
        let server_ip: IpAddr = if v6 {
            addr::SERVER6.into()
        } else {
            addr::SERVER4.into()
        };
        let pings = ping(lan, server_ip, "LAN client -> internet server")?;
        let requests = 20;
        check_interrupted()?;
        let answered = lan.udp_exchange(echo.addr(), requests, Duration::from_secs(2))?;
        let senders: Vec<String> = echo.senders().iter().map(|s| s.ip().to_string()).collect();
        println!(
            "LAN client -> internet server: {requests} UDP requests to {}: {answered} answered; \
             the server saw them from {} ({})",
            echo.addr(),
            senders.join(", "),
            if v6 {
                "the client itself: IPv6 is routed"
            } else {
                "the gateway's wan0: NAT"
            }
        );
        let total = pings + u64::from(requests);
        if v6 {
            sent.lan_out6 = total;
        } else {
            sent.lan_out4 = total;
        }
    }
    // Let the last answers arrive before counting.
    pause(Duration::from_millis(200))?;
    Ok(sent)
}

/// Prints what each counter gained, next to what the traffic above explains.
fn explain(before: &[(String, u64)], after: &[(String, u64)], sent: &Sent) {
    let expected = [
        (
            "pass_ipv4",
            sent.pings_in4 + sent.udp_in4 + sent.lan_out4,
            "echo requests and UDP datagrams from the internet, answers to the LAN client",
        ),
        (
            "pass_ipv6",
            sent.pings_in6 + sent.lan_out6,
            "echo requests from the internet, answers to the LAN client",
        ),
        (
            "egress_ipv4",
            sent.pings_in4 + sent.lan_out4,
            "the gateway's echo replies, the LAN client's requests after NAT",
        ),
        (
            "egress_ipv6",
            sent.pings_in6 + sent.lan_out6,
            "the gateway's echo replies, the LAN client's requests",
        ),
    ];
    println!(
        "\nWhat moved, and why (XDP counts every packet coming in on wan0, TC every one going out):"
    );
    for (reason, now) in after {
        let was = before
            .iter()
            .find(|(r, _)| r == reason)
            .map_or(0, |(_, p)| *p);
        let gained = now.saturating_sub(was);
        match expected.iter().find(|(r, _, _)| r == reason) {
            Some((_, want, why)) => println!(
                "  {reason:<16} +{gained:<6} {} {want}: {why}",
                if gained == *want { "=" } else { "!=" }
            ),
            None if gained > 0 => println!("  {reason:<16} +{gained}"),
            None => {}
        }
    }
    println!(
        "Every packet is passed for now: the drop rules (unsolicited DNS/NTP answers,\n\
         SYN floods, deny lists) count under their own reasons once they exist."
    );
}

/// `stats --watch 1` for `secs` seconds while the internet pings wan0.
fn watch_counters(topo: &Topology, ctl: &Ctl, secs: u64) -> anyhow::Result<()> {
    let gw = &topo.gateway;
    let pinger = topo.internet.spawn(
        "ping",
        ["ping", "-n", "-q", "-i", "0.01", &addr::GW_WAN4.to_string()],
    )?;
    println!(
        "\n$ ip netns exec {} filter-ctl stats --iface wan0 --watch 1",
        gw.name()
    );
    let watcher = Background::spawn_attached(
        "filter-ctl stats --watch",
        ctl.command(gw, &["stats", "--iface", WAN_IF, "--watch", "1"]),
    )?;
    let result = pause(Duration::from_millis(secs * 1000 + 300));
    // Stopping it (SIGTERM) ends the watch: it only reads the counters.
    drop(watcher);
    drop(pinger);
    result
}
