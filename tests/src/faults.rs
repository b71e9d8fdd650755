//! What the fault and upgrade tests share (tests/faults.rs,
//! tests/upgrade.rs): the lab with a prober on the WAN segment and the real
//! DNS server, probes whose arrival nftables counts after XDP, and rounds
//! that kill filter-ctl at each of its fault points or after a random delay.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::ExitStatus,
    thread,
    time::{Duration, Instant},
};

use harness::{
    ctl::{FilterCtl, fault::Running},
    fixture::FilterLab,
    lab::{LAN_IF, WAN_IF, addr},
    netns::{Mac, Netns},
    packet::PacketBuilder,
    servers::real::{self, Servers},
    traffic::sender::RawSender,
};
use rand::RngExt as _;

/// The lab with an attacker's raw socket (the probes) and, for the tests of
/// attach, the real DNS server (lookups prove egress records queries).
pub struct Lab {
    /// Dropped after the filter is detached, before the namespaces go.
    pub servers: Option<Servers>,
    pub probe: RawSender,
    pub gw_mac: Mac,
    pub lab: FilterLab,
}

impl std::ops::Deref for Lab {
    type Target = FilterLab;

    fn deref(&self) -> &FilterLab {
        &self.lab
    }
}

pub fn lab(with_servers: bool) -> Lab {
    let mut lab = FilterLab::build();
    lab.topo.add_wan_host().expect("adding the prober");
    let probe = RawSender::open(&lab.topo.wan_hosts[0], LAN_IF).expect("raw socket");
    let gw_mac = lab.gw().mac(WAN_IF).unwrap();
    let servers = with_servers.then(|| Servers::start(&lab.topo.internet).expect("servers"));
    Lab {
        servers,
        probe,
        gw_mac,
        lab,
    }
}

/// A spoofed source in the lab's 198.19.0.0/16 (counted as `spoofed4`).
pub fn spoofed4(n: u16) -> Ipv4Addr {
    let [a, b] = n.to_be_bytes();
    Ipv4Addr::new(198, 19, a, b)
}

/// A spoofed source in the lab's 2001:db8:bad::/48 (counted as `spoofed6`).
pub fn spoofed6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, n)
}

/// The payload of a DNS response (QR set) with id 0x4242.
pub const DNS_RESPONSE: [u8; 12] = [0x42, 0x42, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];

impl Lab {
    /// Sends one UDP datagram from each source (port `sport`, a DNS
    /// response's payload) to the gateway; how many reached its stack,
    /// counted behind the lab's marker.
    pub fn probe(&self, sources: &[IpAddr], sport: u16) -> u64 {
        let before = self.topo.stack_counters().unwrap();
        for src in sources {
            let builder = match src {
                IpAddr::V4(v4) => PacketBuilder::ipv4(*v4, addr::GW_WAN4),
                IpAddr::V6(v6) => PacketBuilder::ipv6(*v6, addr::GW_WAN6),
            };
            let frame = builder
                .macs(self.probe.mac().0, self.gw_mac.0)
                .udp(sport, 40_000)
                .payload(&DNS_RESPONSE)
                .build();
            self.probe.send(&frame.bytes).expect("sending a probe");
        }
        // Every probe has been judged once the marker is at the stack.
        self.lab.pass_marker();
        let delta = self.topo.stack_counters().unwrap().since(&before);
        delta.packets("spoofed4") + delta.packets("spoofed6")
    }

    /// One real lookup from the gateway: proves egress records queries (an
    /// XDP program without egress drops the answer as unsolicited).
    pub fn lookup_works(&self) -> bool {
        real::dig(self.gw(), addr::SERVER4.into(), false).is_ok()
    }
}

/// How a round ended: the command was killed at a fault point, or
/// (random delays) had already ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Killed,
    Finished,
}

/// Runs `args` and kills it at fault point `k` (`Some`), or after `delay`.
pub fn kill_at(
    ctl: &FilterCtl,
    ns: &Netns,
    args: &[&str],
    k: Option<usize>,
    delay: Duration,
) -> Ending {
    let stop = k.map(|k| k.to_string());
    let mut running = ctl
        .start(ns, args, stop.as_deref())
        .expect("starting filter-ctl");
    if k.is_some() {
        assert!(
            running.wait_stopped().expect("waiting for the stop"),
            "{args:?} ended before fault point {k:?}"
        );
        assert_eq!(running.kill().unwrap().code(), None);
        return Ending::Killed;
    }
    thread::sleep(delay);
    ended_or_killed(running)
}

pub fn ended_or_killed(running: Running) -> Ending {
    let status: ExitStatus = running.kill().unwrap();
    if status.code().is_some() {
        assert!(status.success(), "the command failed on its own: {status}");
        Ending::Finished
    } else {
        Ending::Killed
    }
}

/// The points a command passes (a dry run), and how long it took.
pub fn points_of(ctl: &FilterCtl, ns: &Netns, args: &[&str]) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let (out, points) = ctl.fault_points(ns, args).unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!points.is_empty(), "{args:?} passes no fault point");
    (points, started.elapsed())
}

/// Kills at random moments in each test, after the kills at every point.
pub const RANDOM_ROUNDS: usize = 12;

/// The kills at random moments a test makes, `native` of them, but at most
/// 3 under the VM harness's emulation: there every round of an attach or an
/// upgrade loads the programs again, for seconds, and the kills at every
/// fault point (the same everywhere) already cover each step.
pub fn random_rounds(native: usize) -> usize {
    if harness::kernel::emulated() {
        native.min(3)
    } else {
        native
    }
}

/// Learns the fault points of `args` (a dry run), calls `reset`, then kills
/// `args` at each point in turn and [`random_rounds`] times at a random moment,
/// calling `check` after each round with how it ended and whether it was
/// killed at a point (`check` records the outcome and resets a new state).
/// Prints the tally as `what`; both outcomes must have been seen.
pub fn kill_rounds(
    lab: &Lab,
    args: &[&str],
    reset: impl FnOnce(),
    what: &str,
    mut check: impl FnMut(&mut Tally, Ending, bool),
) {
    let mut tally = Tally::default();
    let (points, took) = points_of(&lab.ctl, lab.gw(), args);
    reset();
    for k in 1..=points.len() {
        let ending = kill_at(&lab.ctl, lab.gw(), args, Some(k), Duration::ZERO);
        check(&mut tally, ending, true);
    }
    for _ in 0..random_rounds(RANDOM_ROUNDS) {
        let ending = kill_at(&lab.ctl, lab.gw(), args, None, random_delay(took));
        check(&mut tally, ending, false);
    }
    tally.finish(points, what);
    assert!(tally.old > 0 && tally.new > 0, "both outcomes were seen");
}

/// A random delay up to a little more than the command's run.
pub fn random_delay(took: Duration) -> Duration {
    took.mul_f64(rand::rng().random_range(0.0..1.2))
}

/// The rounds of one test: the points it stopped at (in order) and how
/// each round ended, printed at the end.
#[derive(Default)]
pub struct Tally {
    pub points: Vec<String>,
    pub killed_at_points: usize,
    pub killed_between: usize,
    pub finished: usize,
    pub old: usize,
    pub new: usize,
    /// The outcome of each kill at a fault point, in the points' order:
    /// whether it left the new state.
    pub new_at_points: Vec<bool>,
}

impl Tally {
    pub fn record(&mut self, ending: Ending, at_point: bool, was_new: bool) {
        if at_point {
            self.new_at_points.push(was_new);
        }
        match (ending, at_point) {
            (Ending::Killed, true) => self.killed_at_points += 1,
            (Ending::Killed, false) => self.killed_between += 1,
            (Ending::Finished, _) => self.finished += 1,
        }
        if was_new {
            self.new += 1;
        } else {
            self.old += 1;
        }
    }

    /// Prints the tally of `what`, whose fault points are `points`, and
    /// checks it: one round killed at each point, and the command commits at
    /// one point ([`Tally::assert_commits_once`]).
    #[track_caller]
    pub fn finish(&mut self, points: Vec<String>, what: &str) {
        self.points = points;
        self.print(what);
        assert_eq!(
            self.new_at_points.len(),
            self.points.len(),
            "{what}: one kill at each fault point"
        );
        self.assert_commits_once(what);
    }

    /// The kills at fault points (in order) left the old state, then from
    /// one on the new state: the command commits at one point.
    #[track_caller]
    pub fn assert_commits_once(&self, what: &str) {
        let committed = self
            .new_at_points
            .iter()
            .position(|new| *new)
            .unwrap_or(self.new_at_points.len());
        assert!(
            self.new_at_points[committed..].iter().all(|new| *new),
            "{what}: the new state after a kill at a fault point, then the old one after a \
             kill at a later one (new, in the points' order: {:?}; points {:?})",
            self.new_at_points,
            self.points
        );
    }

    pub fn print(&self, what: &str) {
        println!(
            "{what}: {} fault points ({}); killed at {} points and {} times between them, {} \
             rounds ended before the kill; outcome: old state {} times, new state {} times, \
             never a mix",
            self.points.len(),
            self.points.join(", "),
            self.killed_at_points,
            self.killed_between,
            self.finished,
            self.old,
            self.new
        );
    }
}
