//! BGP in the lab, for the daemon's upstream mode: real peers from Debian
//! packages over the WAN link, and a provider that enforces what it gets.
//!
//! ```text
//!  internet ns (the provider's router)            gateway ns (the operator's)
//!  BIRD 2, AS 64500, on br0 ═══ isp0 ══ wan0 ═══  gobgpd, AS 64512, API on its lo
//!  tables flowtab4/flowtab6, master4/master6      (filter-ctl daemon drives it)
//!  nftables egress chain on isp0 = the FlowSpec and RTBH routes BIRD holds
//!  tc tbf on isp0 = the uplink's capacity
//! ```
//!
//! - [`Gobgpd`]: gobgpd in the gateway, peering with the internet's router
//!   over IPv4 (unicast and FlowSpec) and IPv6 (the same), its API on the
//!   namespace's loopback ([`GOBGP_API`]); or [`Exabgp`], the same
//!   sessions, with the daemon's bridge as its process.
//! - [`Bird`]: BIRD in the internet namespace, importing everything into
//!   its tables (both sides connect, retrying every second); `birdc` reads
//!   them ([`Bird::routes`]).
//! - [`Enforcer`]: turns BIRD's flow routes and blackhole routes into
//!   nftables rules on the internet's egress to the gateway (`isp0`), as a
//!   provider's router applies FlowSpec and RTBH, kept in step every 200 ms.
//! - [`shape_uplink`]: a token bucket on the same egress, after the rules
//!   (netfilter's egress hook runs before the qdisc): the uplink's capacity.
//!
//! BIRD 2.0's `flow4` and `flow6` are keywords, so its flow tables are
//! named `flowtab4` and `flowtab6`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use crate::{
    ctl::daemon::Daemon,
    fixture::FilterLab,
    kernel,
    lab::{INET_IF, LAN_IF, Topology, WAN_IF, addr},
    netns::Netns,
    process::{self, Background, run, run_with_input},
    traffic::{
        reflection::{self, Attack, Kind, Pace, Target},
        sender::RawSender,
        sources::{Prefix, Sources},
    },
};

/// The gateway's AS (the operator's).
pub const GATEWAY_AS: u32 = 64512;
/// The provider's AS.
pub const PROVIDER_AS: u32 = 64500;
/// gobgpd's gRPC API, on the gateway namespace's loopback.
pub const GOBGP_API: &str = "127.0.0.1:50051";
/// BIRD's protocols (sessions), one per family.
pub const BIRD_SESSION4: &str = "gw4";
pub const BIRD_SESSION6: &str = "gw6";
/// BIRD's tables of flow routes.
pub const FLOW_TABLE4: &str = "flowtab4";
pub const FLOW_TABLE6: &str = "flowtab6";

fn temp_dir(what: &str) -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("wft-{what}-"))
        .tempdir()
        .with_context(|| format!("creating a temp dir for {what}"))
}

/// gobgpd on the gateway. Stopped on drop.
pub struct Gobgpd {
    process: Background,
    gateway: String,
    _dir: TempDir,
}

impl Gobgpd {
    /// Starts gobgpd in `gateway`, peering with the internet's router.
    pub fn start(gateway: &Netns) -> anyhow::Result<Self> {
        let dir = temp_dir("gobgpd")?;
        let neighbor = |address: &str, families: [&str; 2]| {
            let mut text = format!(
                "[[neighbors]]\n\
                 [neighbors.config]\n\
                 neighbor-address = \"{address}\"\n\
                 peer-as = {PROVIDER_AS}\n\
                 [neighbors.timers.config]\n\
                 connect-retry = 1\n\
                 hold-time = 9\n\
                 keepalive-interval = 3\n"
            );
            for family in families {
                text += &format!(
                    "[[neighbors.afi-safis]]\n\
                     [neighbors.afi-safis.config]\n\
                     afi-safi-name = \"{family}\"\n"
                );
            }
            text
        };
        let config = format!(
            "[global.config]\n\
             as = {GATEWAY_AS}\n\
             router-id = \"{}\"\n\
             {}{}",
            addr::GW_WAN4,
            neighbor(
                &addr::INET_WAN4.to_string(),
                ["ipv4-unicast", "ipv4-flowspec"]
            ),
            neighbor(
                &addr::INET_WAN6.to_string(),
                ["ipv6-unicast", "ipv6-flowspec"]
            ),
        );
        let path = dir.path().join("gobgpd.toml");
        std::fs::write(&path, config)?;
        let process = gateway.spawn(
            "gobgpd",
            [
                "gobgpd",
                "-f",
                &path.to_string_lossy(),
                "--log-plain",
                "--pprof-disable",
                "--api-hosts",
                GOBGP_API,
            ],
        )?;
        let gobgpd = Self {
            process,
            gateway: gateway.name().to_owned(),
            _dir: dir,
        };
        process::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            Ok(gobgpd.gobgp(&["global"]).is_ok())
        })
        .with_context(|| format!("gobgpd did not answer: {}", gobgpd.process.log()))?;
        Ok(gobgpd)
    }

    /// `gobgp -u HOST -p PORT ARGS...` in the gateway; its stdout.
    pub fn gobgp(&self, args: &[&str]) -> anyhow::Result<String> {
        let (host, port) = GOBGP_API.split_once(':').expect("host:port");
        run(Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.gateway,
                "gobgp",
                "-u",
                host,
                "-p",
                port,
            ])
            .args(args))
    }

    /// Fails, with its log, if it has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.process.check_running()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// ExaBGP on the gateway, its one process the daemon's bridge
/// (`filter-ctl upstream exabgp --iface wan0`), run as ExaBGP's own user
/// (`exabgp`), as Debian's package runs it. Stopped on drop, and the
/// bridge's socket that the daemon made for the gateway's namespace is
/// removed (a daemon killed by a test leaves it).
pub struct Exabgp {
    process: Background,
    socket: PathBuf,
    _dir: TempDir,
}

impl Drop for Exabgp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Exabgp {
    /// Starts ExaBGP in `gateway` with `filter_ctl` as its process.
    pub fn start(gateway: &Netns, filter_ctl: &Path) -> anyhow::Result<Self> {
        let dir = temp_dir("exabgp")?;
        let neighbor = |peer: &str, local: &str, families: &str| {
            format!(
                "neighbor {peer} {{\n\
                 \trouter-id {};\n\
                 \tlocal-address {local};\n\
                 \tlocal-as {GATEWAY_AS};\n\
                 \tpeer-as {PROVIDER_AS};\n\
                 \thold-time 9;\n\
                 \tfamily {{ {families} }}\n\
                 \tapi {{ processes [ wan-filter ]; }}\n\
                 }}\n",
                addr::GW_WAN4
            )
        };
        let config = format!(
            "process wan-filter {{\n\
             \trun {} upstream exabgp --iface {WAN_IF};\n\
             \tencoder text;\n\
             }}\n{}{}",
            filter_ctl.display(),
            neighbor(
                &addr::INET_WAN4.to_string(),
                &addr::GW_WAN4.to_string(),
                "ipv4 unicast; ipv4 flow;"
            ),
            neighbor(
                &addr::INET_WAN6.to_string(),
                &addr::GW_WAN6.to_string(),
                "ipv6 unicast; ipv6 flow;"
            ),
        );
        let path = dir.path().join("exabgp.conf");
        std::fs::write(&path, config)?;
        // ExaBGP drops to its user, which must read its configuration.
        run(Command::new("chmod").arg("a+rx").arg(dir.path()))?;
        run(Command::new("chmod").arg("a+r").arg(&path))?;
        let mut command = gateway.command("env");
        command
            .args([
                "exabgp.daemon.daemonize=false",
                "exabgp.daemon.user=exabgp",
                "exabgp.log.destination=stdout",
                "exabgp.api.cli=false",
                "exabgp.api.ack=true",
                "exabgp",
            ])
            .arg(&path);
        let process = Background::spawn("exabgp", command)?;
        // filter-ctl's name for it (daemon/upstream/exabgp.rs): the
        // interface and the namespace's inode.
        let netns = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(gateway.path())?);
        let socket = PathBuf::from(format!("/run/wan-filter-exabgp/{WAN_IF}-{netns}.sock"));
        Ok(Self {
            process,
            socket,
            _dir: dir,
        })
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// The BGP speaker on the gateway.
pub enum Speaker {
    Gobgpd(Gobgpd),
    Exabgp(Exabgp),
}

impl Speaker {
    pub fn log(&self) -> String {
        match self {
            Speaker::Gobgpd(gobgpd) => gobgpd.log(),
            Speaker::Exabgp(exabgp) => exabgp.log(),
        }
    }
}

/// BIRD in the internet namespace: the provider's router. Stopped on drop.
pub struct Bird {
    process: Background,
    control: PathBuf,
    _dir: TempDir,
}

/// A route as `birdc show route ... all` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdRoute {
    /// The network: `203.0.113.2/32`, or a flow, `flow4 { dst 203.0.113.2/32; proto 17; }`.
    pub net: String,
    /// When BIRD took it (`10:41:39.288`): a route announced again has a new one.
    pub since: String,
    /// The whole first line.
    pub line: String,
    /// The attribute lines (`BGP.community: (65535,666) (65535,65281)`).
    pub attributes: Vec<String>,
}

impl BirdRoute {
    /// The value of attribute `name` (`BGP.community`), if it has it.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim)
        })
    }

    /// Whether it carries the BLACKHOLE community (RFC 7999).
    pub fn is_blackhole(&self) -> bool {
        self.attribute("BGP.community")
            .is_some_and(|communities| communities.contains("(65535,666)"))
    }
}

impl Bird {
    /// Starts BIRD in `internet`, peering with the gateway's gobgpd.
    pub fn start(internet: &Netns) -> anyhow::Result<Self> {
        let dir = temp_dir("bird")?;
        let session =
            |name: &str, local: &str, neighbor: &str, unicast: &str, flow: &str, table: &str| {
                format!(
                    "protocol bgp {name} {{\n\
                 \tlocal {local} as {PROVIDER_AS};\n\
                 \tneighbor {neighbor} as {GATEWAY_AS};\n\
                 \thold time 9;\n\
                 \tkeepalive time 3;\n\
                 \tconnect delay time 1;\n\
                 \tconnect retry time 1;\n\
                 \terror wait time 1, 2;\n\
                 \t{unicast} {{ import all; export none; }};\n\
                 \t{flow} {{ table {table}; import all; export none; }};\n\
                 }}\n"
                )
            };
        let config = format!(
            "router id {};\n\
             log stderr all;\n\
             flow4 table {FLOW_TABLE4};\n\
             flow6 table {FLOW_TABLE6};\n\
             protocol device {{}}\n\
             {}{}",
            addr::INET_WAN4,
            session(
                BIRD_SESSION4,
                &addr::INET_WAN4.to_string(),
                &addr::GW_WAN4.to_string(),
                "ipv4",
                "flow4",
                FLOW_TABLE4
            ),
            session(
                BIRD_SESSION6,
                &addr::INET_WAN6.to_string(),
                &addr::GW_WAN6.to_string(),
                "ipv6",
                "flow6",
                FLOW_TABLE6
            ),
        );
        let path = dir.path().join("bird.conf");
        std::fs::write(&path, config)?;
        let control = dir.path().join("bird.ctl");
        let process = internet.spawn(
            "bird",
            [
                "bird",
                "-f",
                "-c",
                &path.to_string_lossy(),
                "-s",
                &control.to_string_lossy(),
            ],
        )?;
        let bird = Self {
            process,
            control,
            _dir: dir,
        };
        process::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            Ok(bird.birdc(&["show", "status"]).is_ok())
        })
        .with_context(|| format!("BIRD did not answer: {}", bird.process.log()))?;
        Ok(bird)
    }

    /// `birdc -s SOCKET ARGS...`; its output.
    pub fn birdc(&self, args: &[&str]) -> anyhow::Result<String> {
        birdc(&self.control, args)
    }

    /// Waits until both sessions with the gateway are established.
    pub fn wait_established(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for session in [BIRD_SESSION4, BIRD_SESSION6] {
            while !self.is_established(session)? {
                self.process.check_running()?;
                if Instant::now() > deadline {
                    bail!(
                        "BIRD's session {session} did not come up within {timeout:?}:\n{}",
                        self.birdc(&["show", "protocols", "all", session])?
                    );
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    pub fn is_established(&self, session: &str) -> anyhow::Result<bool> {
        Ok(self
            .birdc(&["show", "protocols", session])?
            .contains("Established"))
    }

    /// Takes a session down (`disable`) or up again (`enable`).
    pub fn set_session(&self, session: &str, up: bool) -> anyhow::Result<()> {
        self.birdc(&[if up { "enable" } else { "disable" }, session])
            .map(drop)
    }

    /// The routes of `table` (`flowtab4`, `flowtab6`, `master4`, `master6`).
    pub fn routes(&self, table: &str) -> anyhow::Result<Vec<BirdRoute>> {
        Ok(parse_routes(
            &self.birdc(&["show", "route", "table", table, "all"])?,
        ))
    }

    /// The flow routes of both families.
    pub fn flows(&self) -> anyhow::Result<Vec<BirdRoute>> {
        let mut flows = self.routes(FLOW_TABLE4)?;
        flows.extend(self.routes(FLOW_TABLE6)?);
        Ok(flows)
    }

    /// The host routes with the BLACKHOLE community, both families.
    pub fn blackholes(&self) -> anyhow::Result<Vec<BirdRoute>> {
        let mut routes = self.routes("master4")?;
        routes.extend(self.routes("master6")?);
        routes.retain(BirdRoute::is_blackhole);
        Ok(routes)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

fn birdc(control: &Path, args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("birdc").arg("-s").arg(control).args(args))
}

/// The routes in `birdc show route ... all`'s output: a line per route
/// (`NET  [PROTO TIME ...] ...`, or a line of its own per further path)
/// and its attributes on tab-indented lines.
fn parse_routes(text: &str) -> Vec<BirdRoute> {
    let mut routes: Vec<BirdRoute> = Vec::new();
    for line in text.lines() {
        if line.starts_with('\t') || line.starts_with("  ") {
            if let Some(route) = routes.last_mut() {
                route.attributes.push(line.trim().to_owned());
            }
            continue;
        }
        let Some(open) = line.find(" [") else {
            continue;
        };
        // A flow is `flowN { ... }`; a prefix is followed by its kind (`unicast`).
        let net = match line.find('}') {
            Some(close) if line.starts_with("flow") => &line[..=close],
            _ => line.split_whitespace().next().unwrap_or_default(),
        };
        let since = line[open..]
            .trim_start_matches(" [")
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches(']')
            .to_owned();
        routes.push(BirdRoute {
            net: net.trim().to_owned(),
            since,
            line: line.to_owned(),
            attributes: Vec::new(),
        });
    }
    routes
}

/// The lab for the upstream mode: the standard lab with an attacker on the
/// WAN segment, a BGP speaker on the gateway (gobgpd, or ExaBGP) and BIRD
/// on the internet side, their sessions established; nothing attached (the
/// daemon attaches). Dropped in order: the peers, then the lab.
pub struct BgpLab {
    pub bird: Bird,
    pub speaker: Speaker,
    pub lab: FilterLab,
}

impl BgpLab {
    /// With gobgpd; `None` in a VM leg's guest (see [`BgpLab::build_with`]).
    #[track_caller]
    pub fn build() -> Option<Self> {
        Self::build_with(|lab| Speaker::Gobgpd(Gobgpd::start(lab.gw()).expect("starting gobgpd")))
    }

    /// With ExaBGP, the daemon's bridge as its process; `None` in a VM
    /// leg's guest.
    #[track_caller]
    pub fn build_with_exabgp() -> Option<Self> {
        Self::build_with(|lab| {
            Speaker::Exabgp(Exabgp::start(lab.gw(), lab.ctl.binary()).expect("starting ExaBGP"))
        })
    }

    /// The upstream tests check the daemon's own logic and real BGP peers,
    /// which do the same on every kernel: in a VM leg's guest (`vm-test
    /// --tests all`) they say so and are skipped.
    #[track_caller]
    fn build_with(speaker: impl FnOnce(&FilterLab) -> Speaker) -> Option<Self> {
        if kernel::in_vm_guest() {
            process::note(
                "upstream: skipped in the VM leg, the upstream tests run on the host only",
            );
            return None;
        }
        let mut lab = FilterLab::build();
        lab.topo.add_wan_host().expect("adding the attacker");
        let speaker = speaker(&lab);
        let mut bird = Bird::start(&lab.topo.internet).expect("starting BIRD");
        bird.wait_established(Duration::from_secs(20))
            .unwrap_or_else(|err| panic!("{err:#}\nthe speaker's log: {}", speaker.log()));
        Some(Self { bird, speaker, lab })
    }

    /// gobgpd's routes of `family`, as `gobgp global rib -a FAMILY` lists
    /// them; nothing with another speaker.
    #[track_caller]
    pub fn gobgp_rib(&self, family: &str) -> String {
        match &self.speaker {
            Speaker::Gobgpd(gobgpd) => gobgpd
                .gobgp(&["global", "rib", "-a", family])
                .unwrap_or_else(|err| panic!("gobgp: {err:#}")),
            Speaker::Exabgp(_) => String::new(),
        }
    }

    /// `filter-ctl daemon` on the gateway with `config`, attack lines from
    /// 300 pkt/s, an attack ended after 1 s below half of that; once it
    /// serves its metrics.
    #[track_caller]
    pub fn start_daemon(&self, config: &Path) -> Daemon {
        let mut daemon = Daemon::start(
            &self.lab.ctl,
            self.lab.gw(),
            WAN_IF,
            &[
                "--config",
                &config.to_string_lossy(),
                "--attack-pps",
                "300",
                "--attack-quiet",
                "1s",
            ],
        )
        .expect("starting the daemon");
        daemon
            .wait_for_line(&["serving metrics"], Duration::from_secs(30))
            .unwrap();
        daemon
    }

    /// A flood of spoofed DNS responses (`kinds`) from the attacker at the
    /// gateway's addresses, at `pps`, until `stop` (two minutes at most), in
    /// the background of `scope`.
    #[track_caller]
    pub fn flood<'s>(
        &'s self,
        scope: &'s thread::Scope<'s, '_>,
        kinds: &'s [Kind],
        pps: u32,
        stop: &'s AtomicBool,
    ) -> thread::ScopedJoinHandle<'s, reflection::Report> {
        let host = &self.lab.topo.wan_hosts[0];
        let sender = RawSender::open(host, LAN_IF).expect("raw socket");
        let target = Target {
            mac: self.lab.gw().mac(WAN_IF).unwrap(),
            v4: addr::GW_WAN4,
            v6: vec![addr::GW_WAN6],
        };
        let sources = Sources::new(
            Prefix::all(&addr::SPOOFED4).unwrap(),
            Prefix::all(&addr::SPOOFED6).unwrap(),
        )
        .unwrap();
        let mut attack = Attack::new(target, sources, sender.mac(), kinds);
        scope.spawn(move || {
            let pace = Pace {
                pps,
                min_frames: 0,
                max_frames: u64::from(pps) * 120,
            };
            reflection::flood(&sender, &mut attack, pace, stop, None).expect("flood")
        })
    }

    /// Waits until BIRD's flow routes (both families) satisfy `done`; them.
    #[track_caller]
    pub fn wait_for_flows(
        &self,
        timeout: Duration,
        done: impl Fn(&[BirdRoute]) -> bool,
    ) -> Vec<BirdRoute> {
        self.wait_for(timeout, || self.bird.flows(), done)
    }

    /// Waits until BIRD's blackhole routes satisfy `done`; them.
    #[track_caller]
    pub fn wait_for_blackholes(
        &self,
        timeout: Duration,
        done: impl Fn(&[BirdRoute]) -> bool,
    ) -> Vec<BirdRoute> {
        self.wait_for(timeout, || self.bird.blackholes(), done)
    }

    #[track_caller]
    fn wait_for(
        &self,
        timeout: Duration,
        read: impl Fn() -> anyhow::Result<Vec<BirdRoute>>,
        done: impl Fn(&[BirdRoute]) -> bool,
    ) -> Vec<BirdRoute> {
        let deadline = Instant::now() + timeout;
        loop {
            let routes = read().unwrap_or_else(|err| panic!("birdc: {err:#}"));
            if done(&routes) {
                return routes;
            }
            if Instant::now() > deadline {
                panic!(
                    "BIRD's routes did not get there within {timeout:?}: {routes:#?}\n\
                     gobgpd's flowspec RIB:\n{}{}\nthe speaker's log:\n{}",
                    self.gobgp_rib("ipv4-flowspec"),
                    self.gobgp_rib("ipv6-flowspec"),
                    self.speaker.log()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// BIRD's flow of the rule the daemon builds for the lab's flood of DNS
/// responses at the gateway's IPv4 address (1,200-byte answers: IP length
/// 1,228), and at its IPv6 address (payload length 1,208).
pub const FLOOD_FLOW4: &str = "flow4 { dst 203.0.113.2/32; proto 17; sport 53; length >= 1228; }";
pub const FLOOD_FLOW6: &str =
    "flow6 { dst 2001:db8:0:1::2/128; next header 17; sport 53; length >= 1208; }";

/// BIRD's flow of the rule for the later fragments of the lab's fragmented
/// DNS responses at the gateway's IPv4 address.
pub const FRAGMENTS_FLOW4: &str = "flow4 { dst 203.0.113.2/32; proto 17; fragment !!is_fragment; }";

/// The networks of `routes`, sorted.
pub fn nets(routes: &[BirdRoute]) -> Vec<&str> {
    let mut nets: Vec<&str> = routes.iter().map(|route| route.net.as_str()).collect();
    nets.sort_unstable();
    nets
}

/// The nftables match of a flow route as BIRD prints it
/// (`flow4 { dst 203.0.113.2/32; proto 17; sport 53; length >= 1228; }`),
/// for the components the daemon's rules use; anything else is an error.
pub fn nft_match(flow: &str) -> anyhow::Result<String> {
    let (family, body) = flow
        .split_once('{')
        .with_context(|| format!("not a flow: {flow}"))?;
    let v6 = family.trim() == "flow6";
    let ip = if v6 { "ip6" } else { "ip" };
    let mut words = Vec::new();
    for component in body.trim_end_matches(['}', ' ']).split(';') {
        let component = component.trim();
        if component.is_empty() {
            continue;
        }
        if let Some(prefix) = component.strip_prefix("dst ") {
            words.push(format!("{ip} daddr {}", prefix.trim()));
        } else if let Some(protocol) = component
            .strip_prefix("proto ")
            .or_else(|| component.strip_prefix("next header "))
        {
            words.push(format!("meta l4proto {}", protocol.trim()));
        } else if let Some(ports) = component.strip_prefix("sport ") {
            words.push(format!("th sport {{ {} }}", ports.trim()));
        } else if let Some(length) = component.strip_prefix("length ") {
            // IPv4's total length; IPv6's payload length (the daemon's rules
            // are written so that either matches).
            let length = length.trim().replace(' ', "");
            let field = if v6 { "ip6 length" } else { "ip length" };
            match length.strip_prefix(">=") {
                Some(min) => words.push(format!("{field} >= {min}")),
                None => bail!("a length other than >= N: {component}"),
            }
        } else if component.starts_with("fragment") && component.contains("is_fragment") {
            words.push(if v6 {
                "exthdr frag exists".to_owned()
            } else {
                "ip frag-off & 0x3fff != 0".to_owned()
            });
        } else {
            bail!("a flow component the lab's provider does not enforce: {component}");
        }
    }
    Ok(words.join(" "))
}

/// The nftables match of a blackhole route (`203.0.113.2/32`).
fn blackhole_match(net: &str) -> String {
    let ip = if net.contains(':') { "ip6" } else { "ip" };
    format!("{ip} daddr {net}")
}

/// The provider enforcing BIRD's routes on its egress to the gateway.
/// Stops (and removes its rules) on drop.
pub struct Enforcer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    internet: String,
    /// The rules in force now.
    pub rules: Arc<Mutex<Vec<String>>>,
    /// The last error of a step, if the last step failed.
    pub error: Arc<Mutex<Option<String>>>,
}

const ENFORCE_TABLE: &str = "wft_provider";
const ENFORCE_CHAIN: &str = "to_customer";

impl Enforcer {
    /// Starts enforcing `bird`'s routes in `internet` on `isp0`'s egress.
    pub fn start(internet: &Netns, bird: &Bird) -> anyhow::Result<Self> {
        internet.nft(&format!(
            "table netdev {ENFORCE_TABLE} {{\n\
             \tchain {ENFORCE_CHAIN} {{\n\
             \t\ttype filter hook egress device \"{INET_IF}\" priority 0; policy accept;\n\
             \t}}\n\
             }}\n"
        ))?;
        let stop = Arc::new(AtomicBool::new(false));
        let rules = Arc::new(Mutex::new(Vec::new()));
        let error = Arc::new(Mutex::new(None));
        let thread = {
            let (stop, rules, error) = (stop.clone(), rules.clone(), error.clone());
            let control = bird.control.clone();
            let internet = internet.name().to_owned();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let step = enforce_step(&control, &internet, &rules);
                    *error.lock().expect("never poisoned") = step.err().map(|e| format!("{e:#}"));
                    thread::sleep(Duration::from_millis(200));
                }
            })
        };
        Ok(Self {
            stop,
            thread: Some(thread),
            internet: internet.name().to_owned(),
            rules,
            error,
        })
    }

    /// Packets each rule in force dropped so far: (rule, packets).
    pub fn counters(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let text = run(Command::new("ip").args([
            "netns",
            "exec",
            &self.internet,
            "nft",
            "list",
            "chain",
            "netdev",
            ENFORCE_TABLE,
            ENFORCE_CHAIN,
        ]))?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let (rule, rest) = line.trim().split_once(" counter packets ")?;
                let packets = rest.split_whitespace().next()?.parse().ok()?;
                Some((rule.to_owned(), packets))
            })
            .collect())
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One step: the rules BIRD's routes call for, loaded if they changed.
fn enforce_step(control: &Path, internet: &str, rules: &Mutex<Vec<String>>) -> anyhow::Result<()> {
    let mut wanted = BTreeSet::new();
    for table in [FLOW_TABLE4, FLOW_TABLE6] {
        for route in parse_routes(&birdc(control, &["show", "route", "table", table, "all"])?) {
            wanted.insert(nft_match(&route.net)?);
        }
    }
    for table in ["master4", "master6"] {
        for route in parse_routes(&birdc(control, &["show", "route", "table", table, "all"])?) {
            if route.is_blackhole() {
                wanted.insert(blackhole_match(&route.net));
            }
        }
    }
    let wanted: Vec<String> = wanted.into_iter().collect();
    let mut current = rules.lock().expect("never poisoned");
    if *current == wanted {
        return Ok(());
    }
    let mut script = format!("flush chain netdev {ENFORCE_TABLE} {ENFORCE_CHAIN}\n");
    for rule in &wanted {
        script += &format!("add rule netdev {ENFORCE_TABLE} {ENFORCE_CHAIN} {rule} counter drop\n");
    }
    run_with_input(
        Command::new("ip").args(["netns", "exec", internet, "nft", "-f", "-"]),
        &script,
    )?;
    *current = wanted;
    Ok(())
}

/// Limits what the internet sends the gateway to `mbit` Mbit/s: a token
/// bucket on `isp0` feeding a queue of 32 packets, as a router's interface
/// queue. A full queue drops whatever arrives, small or large (tbf's own
/// queue counts bytes, and would keep taking small answers while it refuses
/// the flood's large packets).
pub fn shape_uplink(topo: &Topology, mbit: u32) -> anyhow::Result<()> {
    shape(&topo.internet, INET_IF, mbit, 32)
}

/// Sends what leaves `iface` in `ns` at `mbit` Mbit/s, evenly, through a
/// queue of `packets`. On an attacker's link it spreads a flood out as
/// thousands of reflectors do (the sender paces in small bursts; a burst
/// leaves gaps in which a full queue downstream takes anything).
pub fn shape(ns: &Netns, iface: &str, mbit: u32, packets: u32) -> anyhow::Result<()> {
    let tc = |args: &[&str]| ns.run(["tc", "qdisc"].iter().chain(args)).map(drop);
    tc(&[
        "replace",
        "dev",
        iface,
        "root",
        "handle",
        "1:",
        "tbf",
        "rate",
        &format!("{mbit}mbit"),
        "burst",
        "4kb",
        "latency",
        "50ms",
    ])?;
    tc(&[
        "add",
        "dev",
        iface,
        "parent",
        "1:1",
        "handle",
        "10:",
        "pfifo",
        "limit",
        &packets.to_string(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOWS: &str = "BIRD 2.0.12 ready.
Table flowtab4:
flow4 { dst 192.0.2.1/32; proto 17; fragment !!is_fragment; }  [gw4 10:41:39.288 from 192.0.2.1] * (100) [AS64512?]
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.ext_community: (generic, 0x80060000, 0x0)
flow4 { dst 192.0.2.1/32; proto 17; sport 53; length >= 1200; }  [gw4 10:41:39.274 from 192.0.2.1] * (100) [AS64512?]
\tType: BGP univ
\tBGP.community: (65535,666) (65535,65281)
Table master4:
192.0.2.1/32         unicast [gw4 10:41:49.677] * (100) [AS64512?]
\tvia 192.0.2.1 on upx-b
";

    #[test]
    fn birds_routes_become_nftables_rules() {
        let routes = parse_routes(FLOWS);
        assert_eq!(routes.len(), 3);
        assert_eq!(
            (routes[2].net.as_str(), routes[2].since.as_str()),
            ("192.0.2.1/32", "10:41:49.677")
        );
        assert_eq!(
            routes[1].net,
            "flow4 { dst 192.0.2.1/32; proto 17; sport 53; length >= 1200; }"
        );
        assert_eq!(routes[1].since, "10:41:39.274");
        assert!(routes[1].is_blackhole() && !routes[0].is_blackhole());
        assert_eq!(
            nft_match(&routes[1].net).unwrap(),
            "ip daddr 192.0.2.1/32 meta l4proto 17 th sport { 53 } ip length >= 1200"
        );
        assert_eq!(
            nft_match(&routes[0].net).unwrap(),
            "ip daddr 192.0.2.1/32 meta l4proto 17 ip frag-off & 0x3fff != 0"
        );
        assert_eq!(
            nft_match(
                "flow6 { dst 2001:db8::1/128; next header 17; sport 53,5353; length >= 1200; }"
            )
            .unwrap(),
            "ip6 daddr 2001:db8::1/128 meta l4proto 17 th sport { 53,5353 } ip6 length >= 1200"
        );
        assert!(nft_match("flow4 { dst 192.0.2.1/32; dport 80; }").is_err());
    }
}
