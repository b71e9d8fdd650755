//! A server on the gateway used as an amplifier: an authoritative DNS server
//! (dnsmasq on `wan0`'s address, serving a 3 KB TXT record) or an NTP server
//! (chronyd), sent spoofed requests "from" victims at a planned rate (three
//! addresses, or every address of one prefix, [`Victims`]) while real
//! resolvers or NTP clients with their own addresses (in the internet
//! namespace, some in the victims' prefix) use it and the gateway keeps
//! resolving names upstream. The DNS resolvers are a farm: ten, eight of
//! them in one /24 (/56) of their own, each asking a name of its own per
//! lookup, as caching resolvers do (a cache asks a name once per TTL).
//!
//! Counted independently of the filter ([`Run`]): the bytes sent to the
//! victims on the wire (nftables at the WAN link's far end, so that the
//! filter's truncated answers sent with XDP_TX count too), the victims'
//! requests that reached the gateway's stack and the answers it sent them
//! (nftables input and output hooks), what every resolver and upstream
//! lookup got (and the upstream lookups' queries and answers at those
//! hooks), and the gateway's conntrack table (sampled every 100 ms).
//!
//! The lab's topology needs one WAN host, the attacker. [`Amplifier::prepare`]
//! starts the servers and counters; the caller attaches the filter or not;
//! [`Amplifier::attack`] runs the attack and returns the measures.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    thread,
    time::Duration,
};

use anyhow::Context as _;
use tempfile::TempDir;

use crate::{
    lab::{
        LAN_IF, StackCounters, Topology, WAN_IF, addr,
        measure::{self, Peak},
    },
    process::Background,
    servers::{
        real,
        reflector::{self, Lookups},
    },
    signals,
    traffic::{
        queries::{self, Service},
        sender::RawSender,
    },
};

/// The spoofed victims, in one /24 with some of the resolvers.
pub const VICTIMS4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 66),
    Ipv4Addr::new(192, 0, 2, 77),
    Ipv4Addr::new(192, 0, 2, 88),
];
/// The real NTP clients, on the internet namespace's loopback: four in the
/// victims' 192.0.2.0/24, four in a /24 of their own.
pub const RESOLVERS4: [Ipv4Addr; 8] = [
    Ipv4Addr::new(192, 0, 2, 11),
    Ipv4Addr::new(192, 0, 2, 12),
    Ipv4Addr::new(192, 0, 2, 13),
    Ipv4Addr::new(192, 0, 2, 14),
    Ipv4Addr::new(198, 51, 100, 21),
    Ipv4Addr::new(198, 51, 100, 22),
    Ipv4Addr::new(198, 51, 100, 23),
    Ipv4Addr::new(198, 51, 100, 24),
];
/// The real DNS resolvers (issue 27): two in the victims' /24, and a dense
/// farm of eight in a /24 of their own (198.51.100.30-37: the WAN link's
/// 203.0.113.0/24 holds the attacking WAN hosts, from .10).
pub const DNS_RESOLVERS4: [Ipv4Addr; 10] = [
    Ipv4Addr::new(192, 0, 2, 11),
    Ipv4Addr::new(192, 0, 2, 12),
    Ipv4Addr::new(198, 51, 100, 30),
    Ipv4Addr::new(198, 51, 100, 31),
    Ipv4Addr::new(198, 51, 100, 32),
    Ipv4Addr::new(198, 51, 100, 33),
    Ipv4Addr::new(198, 51, 100, 34),
    Ipv4Addr::new(198, 51, 100, 35),
    Ipv4Addr::new(198, 51, 100, 36),
    Ipv4Addr::new(198, 51, 100, 37),
];
/// The same over IPv6, where a /64 is one source: victims and clients
/// each in a /64 of their own, the victims in 2001:db8:bad::/56 (the
/// default prefix of the prefix limits) with four clients, four more
/// in a /56 of their own.
pub const VICTIMS6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 1, 0, 0, 0, 0x66),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 2, 0, 0, 0, 0x77),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 3, 0, 0, 0, 0x88),
];
pub const RESOLVERS6: [Ipv6Addr; 8] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x11, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x12, 0, 0, 0, 0x12),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x13, 0, 0, 0, 0x13),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x14, 0, 0, 0, 0x14),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 1, 0, 0, 0, 0x21),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 2, 0, 0, 0, 0x22),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 3, 0, 0, 0, 0x23),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 4, 0, 0, 0, 0x24),
];
/// Two DNS resolvers in the victims' /56, eight in 2001:db8:cafe::/56.
pub const DNS_RESOLVERS6: [Ipv6Addr; 10] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x11, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x12, 0, 0, 0, 0x12),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 1, 0, 0, 0, 0x21),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 2, 0, 0, 0, 0x22),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 3, 0, 0, 0, 0x23),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 4, 0, 0, 0, 0x24),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 5, 0, 0, 0, 0x25),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 6, 0, 0, 0, 0x26),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 7, 0, 0, 0, 0x27),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 8, 0, 0, 0, 0x28),
];

/// Resolvers whose prefix (/24, /56) no victim shares: never limited.
pub fn own_prefix(resolver: IpAddr) -> bool {
    match resolver {
        IpAddr::V4(a) => a.octets()[..3] != [192, 0, 2],
        IpAddr::V6(a) => a.octets()[..7] != [0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0],
    }
}

/// The address family of an attack, its victims and its real clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn victims(self) -> Vec<IpAddr> {
        match self {
            Family::V4 => VICTIMS4.map(IpAddr::V4).to_vec(),
            Family::V6 => VICTIMS6.map(IpAddr::V6).to_vec(),
        }
    }

    /// The real clients of `service`.
    pub fn resolvers(self, service: Service) -> Vec<IpAddr> {
        match (self, service) {
            (Family::V4, Service::Dns) => DNS_RESOLVERS4.map(IpAddr::V4).to_vec(),
            (Family::V6, Service::Dns) => DNS_RESOLVERS6.map(IpAddr::V6).to_vec(),
            (Family::V4, Service::Ntp) => RESOLVERS4.map(IpAddr::V4).to_vec(),
            (Family::V6, Service::Ntp) => RESOLVERS6.map(IpAddr::V6).to_vec(),
        }
    }

    /// Every address of the victims' /24 (IPv6: one in each /64 of their
    /// /56) but the clients' of `service`.
    fn whole_prefix(self, service: Service) -> Vec<IpAddr> {
        let clients = self.resolvers(service);
        (1..=254u16)
            .map(|n| match self {
                Family::V4 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, n as u8)),
                Family::V6 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xbad, n, 0, 0, 0, 0x66)),
            })
            .filter(|victim| {
                !clients.iter().any(|client| match (client, victim) {
                    (IpAddr::V6(c), IpAddr::V6(v)) => c.segments()[..4] == v.segments()[..4],
                    (c, v) => c == v,
                })
            })
            .collect()
    }

    /// The gateway's public address, where its servers listen.
    pub fn gateway(self) -> IpAddr {
        match self {
            Family::V4 => addr::GW_WAN4.into(),
            Family::V6 => addr::GW_WAN6.into(),
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn host_len(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// Whose addresses an attack spoofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victims {
    /// Three victims in one prefix ([`VICTIMS4`], [`VICTIMS6`]).
    Three,
    /// Every address of the victims' /24 (IPv6: a host in every /64 of
    /// their /56), the real clients' excepted, in turn: each far below
    /// its own limit, together one prefix.
    WholePrefix,
}

/// What to attack, how hard and how long.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub service: Service,
    pub family: Family,
    pub victims: Victims,
    /// Spoofed requests per second per victim of [`Victims::Three`] (the
    /// same in all for [`Victims::WholePrefix`]).
    pub victim_pps: u32,
    pub duration: Duration,
    /// Pause between a resolver's lookups.
    pub resolver_pause: Duration,
    /// A DNS lookup is tried this often (1 s each) before it counts as lost;
    /// with slip 2, a resolver in a limited prefix gets a truncated answer,
    /// and goes over TCP, with a chance of 1 in 2 per try.
    pub max_tries: u32,
}

impl Plan {
    /// The end-to-end tests' plan: 200 requests per second per victim for
    /// 10 s, three victims; about 4 lookups per second per DNS resolver
    /// (the farm of issue 27), 3 per NTP client; 30 tries.
    pub fn new(service: Service, family: Family) -> Self {
        Self {
            service,
            family,
            victims: Victims::Three,
            victim_pps: 200,
            duration: Duration::from_secs(10),
            resolver_pause: match service {
                Service::Dns => Duration::from_millis(200),
                Service::Ntp => Duration::from_millis(300),
            },
            max_tries: 30,
        }
    }

    /// The addresses the attack spoofs.
    pub fn victims(&self) -> Vec<IpAddr> {
        match self.victims {
            Victims::Three => self.family.victims(),
            Victims::WholePrefix => self.family.whole_prefix(self.service),
        }
    }

    /// The real clients.
    pub fn resolvers(&self) -> Vec<IpAddr> {
        self.family.resolvers(self.service)
    }

    /// Spoofed requests per second, all victims together.
    pub fn pps(&self) -> u32 {
        self.victim_pps * VICTIMS4.len() as u32
    }

    /// Spoofed requests the plan sends in all.
    pub fn planned(&self) -> u64 {
        u64::from(self.pps()) * self.duration.as_secs()
    }
}

/// What one attack counted.
#[derive(Debug, Default)]
pub struct Run {
    /// Spoofed requests sent, and their bytes (whole frames); of them, NTP
    /// monlist requests.
    pub queries_sent: u64,
    pub monlist_sent: u64,
    pub queries_bytes: u64,
    /// Bytes and packets to the victims on the wire (IP fragments each).
    pub wire_bytes: u64,
    pub wire_packets: u64,
    /// The victims' requests that reached the gateway's stack, and the
    /// answers (datagrams, before fragmentation) its stack sent them.
    pub stack_queries: u64,
    pub stack_answer_bytes: u64,
    /// The resolvers' lookups (or NTP clients' exchanges), per resolver.
    pub resolvers: Vec<(IpAddr, Lookups)>,
    /// Frames dropped on the way to wan0: they never reached XDP.
    pub path_drops: u64,
    /// The gateway's own lookups upstream (dig to the internet's server, one
    /// query each, no retry), and their queries and answers counted at the
    /// gateway's stack (nftables output and input hooks).
    pub upstream_ok: u64,
    pub upstream_total: u64,
    pub upstream_queries: u64,
    pub upstream_answers: u64,
    pub conntrack_peak: u64,
    pub conntrack_before: u64,
}

impl Run {
    /// The lookups of the resolvers `which` selects, summed.
    pub fn lookups(&self, which: impl Fn(IpAddr) -> bool) -> Lookups {
        let mut sum = Lookups::default();
        for (_, lookups) in self.resolvers.iter().filter(|(r, _)| which(*r)) {
            sum.add(lookups);
        }
        sum
    }

    /// Conntrack entries the attack added at its peak.
    pub fn conntrack_added(&self) -> u64 {
        self.conntrack_peak.saturating_sub(self.conntrack_before)
    }

    /// One paragraph with every measure.
    pub fn describe(&self, title: &str) -> String {
        let all = self.lookups(|_| true);
        let own = self.lookups(own_prefix);
        format!(
            "{title}: {} spoofed queries sent ({} bytes); to the victims on the wire {} bytes in {} packets; \
             victims' queries reaching the stack {}, the stack's answers to them {} bytes; \
             resolver lookups answered {}/{} ({} over TCP, {} retries; in a prefix of their own: {}/{}, \
             {} over TCP, {} retries); upstream lookups {}/{} ({} queries, {} answers at the \
             stack); conntrack entries {} before, peak {}",
            self.queries_sent,
            self.queries_bytes,
            self.wire_bytes,
            self.wire_packets,
            self.stack_queries,
            self.stack_answer_bytes,
            all.answered,
            all.total,
            all.over_tcp,
            all.retries,
            own.answered,
            own.total,
            own.over_tcp,
            own.retries,
            self.upstream_ok,
            self.upstream_total,
            self.upstream_queries,
            self.upstream_answers,
            self.conntrack_before,
            self.conntrack_peak,
        )
    }
}

/// The servers and counters of one attack. Dropping it stops the servers.
pub struct Amplifier {
    plan: Plan,
    server: Background,
    _server_dir: Option<TempDir>,
    _upstream: Background,
}

impl Amplifier {
    /// In `topo` (with its attacker, `wan_hosts[0]`): the resolvers'
    /// addresses, the counters, the internet's DNS server (the gateway's
    /// upstream) and the server under attack on the gateway's address.
    pub fn prepare(topo: &Topology, plan: Plan) -> anyhow::Result<Self> {
        let family = plan.family;
        for resolver in plan.resolvers() {
            topo.internet
                .add_addr("lo", &format!("{resolver}/{}", family.host_len()))?;
        }
        let victims = plan.victims();
        measure::count_to_victims(topo, &victims)?;
        let victim_set = victims
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let (ip, port) = (family.nft(), plan.service.port());
        topo.gateway.nft(&format!(
            r#"
table inet victims_stack {{
    counter queries {{ }}
    counter answers {{ }}
    counter upstream_queries {{ }}
    counter upstream_answers {{ }}
    chain input {{
        type filter hook input priority 0; policy accept;
        {ip} saddr {{ {victim_set} }} udp dport {port} counter name "queries"
        ip saddr {upstream} udp sport 53 counter name "upstream_answers"
        # As a stateful firewall does: conntrack follows IPv6 as well (for
        # IPv4, the gateway's NAT has it follow everything anyway).
        ct state new counter
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        {ip} daddr {{ {victim_set} }} counter name "answers"
        ip daddr {upstream} udp dport 53 counter name "upstream_queries"
    }}
}}
"#,
            upstream = addr::SERVER4
        ))?;
        let upstream = real::dns_server(&topo.internet, false)?;
        let listen = family.gateway();
        let (server, server_dir) = match plan.service {
            Service::Dns => (reflector::authoritative_dns(&topo.gateway, listen)?, None),
            Service::Ntp => {
                let (ntp, dir) = real::ntp_server(&topo.gateway, &[listen])?;
                (ntp, Some(dir))
            }
        };
        Ok(Self {
            plan,
            server,
            _server_dir: server_dir,
            _upstream: upstream,
        })
    }

    /// Runs the attack while the resolvers and the gateway look up; the
    /// measures. Fails if the server under attack stopped.
    pub fn attack(&mut self, topo: &Topology) -> anyhow::Result<Run> {
        let plan = self.plan;
        let (internet, gateway) = (&topo.internet, &topo.gateway);
        let sender = RawSender::open(&topo.wan_hosts[0], LAN_IF)?;
        let gw_mac = gateway.mac(WAN_IF)?;
        let server = plan.family.gateway();
        let victims = plan.victims();
        let wire_before = measure::to_victims(topo)?;
        let stack_before = stack_counters(topo)?;
        let path_drops_before = measure::path_drops(topo)?;
        let mut result = Run {
            conntrack_before: measure::conntrack_count(gateway.name())?,
            ..Run::default()
        };
        let conntrack = Peak::sample(Duration::from_millis(100), {
            let gateway = gateway.name().to_owned();
            move || measure::conntrack_count(&gateway)
        });

        let done = AtomicBool::new(false);
        let (upstream_ok, upstream_total) = (AtomicU64::new(0), AtomicU64::new(0));
        let sent = thread::scope(|scope| -> anyhow::Result<_> {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    upstream_total.fetch_add(1, Ordering::Relaxed);
                    if real::dig(gateway, addr::SERVER4.into(), false).is_ok() {
                        upstream_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(500));
                }
            });
            let resolvers: Vec<_> = plan
                .resolvers()
                .into_iter()
                .enumerate()
                .map(|(index, resolver)| {
                    let done = &done;
                    scope.spawn(move || -> anyhow::Result<_> {
                        let mut lookups = Lookups::default();
                        while !done.load(Ordering::Relaxed) {
                            match plan.service {
                                // A name of its own per lookup, as a
                                // caching resolver asks.
                                Service::Dns => reflector::resolve(
                                    internet,
                                    resolver,
                                    server,
                                    &reflector::host_name(index, lookups.total),
                                    plan.max_tries,
                                    &mut lookups,
                                )?,
                                Service::Ntp => reflector::ntp_exchange(
                                    internet,
                                    resolver,
                                    server,
                                    5,
                                    &mut lookups,
                                ),
                            }
                            thread::sleep(plan.resolver_pause);
                        }
                        Ok((resolver, lookups))
                    })
                })
                .collect();
            // Ctrl-C (where signals::catch_signals runs: the lab) ends it early.
            let sent = queries::send(
                &sender,
                gw_mac,
                &victims,
                server,
                plan.service,
                plan.pps(),
                plan.duration,
                &signals::INTERRUPTED,
            );
            // The last answers leave; the last lookups end.
            thread::sleep(Duration::from_millis(500));
            done.store(true, Ordering::Relaxed);
            for resolver in resolvers {
                result
                    .resolvers
                    .push(resolver.join().expect("a resolver thread panicked")?);
            }
            sent
        })?;
        self.server
            .check_running()
            .context("the server under attack stopped")?;
        result.queries_sent = sent.requests;
        result.queries_bytes = sent.bytes;
        result.monlist_sent = sent.monlist;
        let wire = measure::to_victims(topo)?;
        (result.wire_packets, result.wire_bytes) = (wire.0 - wire_before.0, wire.1 - wire_before.1);
        let stack = stack_counters(topo)?.since(&stack_before);
        result.stack_queries = stack.packets("queries");
        result.stack_answer_bytes = stack
            .counters
            .iter()
            .find(|(name, _, _)| name == "answers")
            .map_or(0, |(_, _, bytes)| *bytes);
        result.path_drops = measure::path_drops(topo)? - path_drops_before;
        result.upstream_ok = upstream_ok.into_inner();
        result.upstream_total = upstream_total.into_inner();
        result.upstream_queries = stack.packets("upstream_queries");
        result.upstream_answers = stack.packets("upstream_answers");
        result.conntrack_peak = conntrack.stop().max(result.conntrack_before);
        Ok(result)
    }
}

fn stack_counters(topo: &Topology) -> anyhow::Result<StackCounters> {
    StackCounters::parse(&topo.gateway.run([
        "nft",
        "list",
        "counters",
        "table",
        "inet",
        "victims_stack",
    ])?)
}
