//! End-to-end proof of the query limits (docs/query-limits.md): an
//! authoritative DNS server on the gateway (dnsmasq on `wan0`'s address,
//! serving a 3 KB TXT record) is used as a reflector. Three spoofed victims
//! send it TXT queries with EDNS 4096 at 200 per second each for 10 s, while
//! eight real resolvers with their own addresses (`dig` in the internet
//! namespace, four of them in the /24 of two victims) look names up at a few
//! per second each and the gateway keeps resolving names upstream. The same
//! run without the filter is the baseline. The DNS attack runs over IPv4
//! and over IPv6.
//!
//! Counted independently of the filter: the bytes sent to the victims on the
//! wire (nftables in the internet namespace, on the WAN link's far end, so
//! that the filter's truncated answers, sent with XDP_TX past the gateway's
//! stack, count too), the victims' queries that reached the gateway's stack
//! and the answers it sent them (nftables input and output hooks), what
//! every resolver and upstream lookup got (dig's output), and the gateway's
//! conntrack table (nf_conntrack_count, sampled every 100 ms).
//!
//! The same for NTP: chronyd serving on the gateway, the victims sending
//! client (mode 3) requests and now and then a monlist (mode 7) request,
//! and eight real clients (`chronyd -Q`, which measures and exits) from the
//! same addresses as the resolvers.
//!
//! Needs root. Each run builds its own lab with unique names; everything is
//! removed when it ends, also when it fails.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use filter_common::Reason;
use harness::{
    ctl::Stats,
    fixture::FilterLab,
    lab::{INET_IF, LAN_IF, StackCounters, WAN_IF, addr},
    netns::{Netns, sockets::Proto},
    packet::PacketBuilder,
    process::{Background, output},
    servers::real,
    traffic::sender::{Pacer, RawSender},
};
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};
use tempfile::TempDir;

/// The spoofed victims, in one /24 with four of the resolvers: what passes
/// their own limits (10/s each by default) is more than the /24's (20/s),
/// so the resolvers there are limited too, and get truncated answers.
const VICTIMS4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 66),
    Ipv4Addr::new(192, 0, 2, 77),
    Ipv4Addr::new(192, 0, 2, 88),
];
/// The real resolvers, on the internet namespace's loopback: four in the
/// victims' 192.0.2.0/24, four in a /24 of their own.
const RESOLVERS4: [Ipv4Addr; 8] = [
    Ipv4Addr::new(192, 0, 2, 11),
    Ipv4Addr::new(192, 0, 2, 12),
    Ipv4Addr::new(192, 0, 2, 13),
    Ipv4Addr::new(192, 0, 2, 14),
    Ipv4Addr::new(198, 51, 100, 21),
    Ipv4Addr::new(198, 51, 100, 22),
    Ipv4Addr::new(198, 51, 100, 23),
    Ipv4Addr::new(198, 51, 100, 24),
];
/// The same over IPv6, where a /64 is one source: victims and resolvers
/// each in a /64 of their own, the victims in 2001:db8:bad::/56 (the
/// default prefix of the prefix limits) with four resolvers, four more
/// resolvers in a /56 of their own.
const VICTIMS6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 1, 0, 0, 0, 0x66),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 2, 0, 0, 0, 0x77),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 3, 0, 0, 0, 0x88),
];
const RESOLVERS6: [Ipv6Addr; 8] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x11, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x12, 0, 0, 0, 0x12),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x13, 0, 0, 0, 0x13),
    Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0x14, 0, 0, 0, 0x14),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 1, 0, 0, 0, 0x21),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 2, 0, 0, 0, 0x22),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 3, 0, 0, 0, 0x23),
    Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 4, 0, 0, 0, 0x24),
];

/// Resolvers whose prefix (/24, /56) no victim shares: never limited.
fn own_prefix(resolver: IpAddr) -> bool {
    match resolver {
        IpAddr::V4(a) => a.octets()[..3] != [192, 0, 2],
        IpAddr::V6(a) => a.octets()[..7] != [0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0],
    }
}

/// The address family of an attack, its victims and its real clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn victims(self) -> Vec<IpAddr> {
        match self {
            Family::V4 => VICTIMS4.map(IpAddr::V4).to_vec(),
            Family::V6 => VICTIMS6.map(IpAddr::V6).to_vec(),
        }
    }

    fn resolvers(self) -> Vec<IpAddr> {
        match self {
            Family::V4 => RESOLVERS4.map(IpAddr::V4).to_vec(),
            Family::V6 => RESOLVERS6.map(IpAddr::V6).to_vec(),
        }
    }

    /// The gateway's public address, where its servers listen.
    fn gateway(self) -> IpAddr {
        match self {
            Family::V4 => addr::GW_WAN4.into(),
            Family::V6 => addr::GW_WAN6.into(),
        }
    }

    /// The nftables protocol of its addresses.
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

    fn packet(self, src: IpAddr, dst: IpAddr) -> PacketBuilder {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => PacketBuilder::ipv4(src, dst),
            (IpAddr::V6(src), IpAddr::V6(dst)) => PacketBuilder::ipv6(src, dst),
            _ => panic!("{self:?}: {src} to {dst}"),
        }
    }
}

/// The server on the gateway under attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Dns,
    Ntp,
}

impl Service {
    fn port(self) -> u16 {
        match self {
            Service::Dns => 53,
            Service::Ntp => 123,
        }
    }

    fn start(self, gateway: &Netns, listen: IpAddr) -> (Background, Option<TempDir>) {
        match self {
            Service::Dns => (authoritative_dns(gateway, listen), None),
            Service::Ntp => {
                let (ntp, dir) = ntp_server(gateway, listen);
                (ntp, Some(dir))
            }
        }
    }

    /// The attack's `n`th payload.
    fn spoofed(self, n: u64) -> Vec<u8> {
        match self {
            Service::Dns => spoofed_query(n as u16),
            Service::Ntp if n.is_multiple_of(MONLIST_EVERY) => monlist_request(),
            Service::Ntp => ntp_request(n),
        }
    }

    /// One lookup (DNS) or exchange (NTP) by a real client at `client`.
    fn lookup(self, internet: &Netns, client: IpAddr, server: IpAddr, lookups: &mut Lookups) {
        match self {
            Service::Dns => resolve(internet, client, server, lookups),
            Service::Ntp => ntp_exchange(internet, client, server, lookups),
        }
    }
}

/// The gateway's zone: a 3 KB TXT record (the amplifier) and an address.
const BIG_TXT: &str = "big.zone.test";
const HOST: &str = "www.zone.test";
const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 90);
/// Strings of the TXT record: 12 of 250 bytes.
const TXT_STRINGS: usize = 12;

const VICTIM_PPS: u32 = 200;
const ATTACK: Duration = Duration::from_secs(10);
/// Pause between a resolver's lookups: about 3 per second.
const RESOLVER_PAUSE: Duration = Duration::from_millis(300);
/// A lookup is retried as a resolver does after a timeout (1 s each): with
/// slip 2, a resolver in a limited prefix gets a truncated answer, and goes
/// over TCP, with a chance of 1 in 2 per try.
const MAX_TRIES: u32 = 30;
/// Every this many spoofed NTP requests, one is a monlist request.
const MONLIST_EVERY: u64 = 50;

/// What one run counted.
#[derive(Debug, Default)]
struct Run {
    /// Spoofed queries sent, and their bytes (whole frames); of them, NTP
    /// monlist requests.
    queries_sent: u64,
    monlist_sent: u64,
    queries_bytes: u64,
    /// Bytes and packets to the victims on the wire (IP fragments each).
    wire_bytes: u64,
    wire_packets: u64,
    /// The victims' queries that reached the gateway's stack, and the
    /// answers (datagrams, before fragmentation) its stack sent them.
    stack_queries: u64,
    stack_answer_bytes: u64,
    /// The resolvers' lookups, per resolver: (lookups, answered, over TCP,
    /// tries beyond the first).
    resolvers: Vec<(IpAddr, Lookups)>,
    /// Frames dropped on the way to wan0 (queues of the attacker's link,
    /// the bridge and the WAN link): they never reached XDP.
    path_drops: u64,
    upstream_ok: u64,
    upstream_total: u64,
    conntrack_peak: u64,
    conntrack_before: u64,
    /// The filter's counters gained (with the filter).
    filter: Option<Stats>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Lookups {
    total: u64,
    answered: u64,
    over_tcp: u64,
    retries: u64,
}

impl Run {
    fn lookups(&self, which: impl Fn(IpAddr) -> bool) -> Lookups {
        self.resolvers
            .iter()
            .filter(|(resolver, _)| which(*resolver))
            .fold(Lookups::default(), |sum, (_, l)| Lookups {
                total: sum.total + l.total,
                answered: sum.answered + l.answered,
                over_tcp: sum.over_tcp + l.over_tcp,
                retries: sum.retries + l.retries,
            })
    }

    fn print(&self, title: &str) {
        let all = self.lookups(|_| true);
        let own = self.lookups(own_prefix);
        println!(
            "{title}: {} spoofed queries sent ({} bytes); to the victims on the wire {} bytes in {} packets; \
             victims' queries reaching the stack {}, the stack's answers to them {} bytes; \
             resolver lookups answered {}/{} ({} over TCP, {} retries; in a prefix of their own: {}/{}, \
             {} over TCP, {} retries); upstream lookups {}/{}; conntrack entries {} before, \
             peak {}",
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
            self.conntrack_before,
            self.conntrack_peak,
        );
        if let Some(stats) = &self.filter {
            println!("{title}: filter counters gained:");
            for (reason, packets, bytes) in stats.nonzero() {
                println!("  {reason:<34} {packets:>8} packets {bytes:>11} bytes");
            }
        }
    }
}

fn cidr_set(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The authoritative server on the gateway: dnsmasq on `wan0`'s address
/// `listen` only, with no upstream, answering its zone from the command line.
fn authoritative_dns(gateway: &Netns, listen: IpAddr) -> Background {
    let strings: Vec<String> = (0..TXT_STRINGS)
        .map(|i| format!("\"{}\"", char::from(b'a' + i as u8).to_string().repeat(250)))
        .collect();
    let args = vec![
        "dnsmasq".to_owned(),
        "--keep-in-foreground".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        format!("--listen-address={listen}"),
        "--bind-interfaces".to_owned(),
        "--port=53".to_owned(),
        // Answers as large as the query's EDNS size allows (the default is
        // 1232 since dnsmasq 2.87).
        "--edns-packet-max=4096".to_owned(),
        format!("--txt-record={BIG_TXT},{}", strings.join(",")),
        format!("--address=/{HOST}/{HOST_ADDR}"),
        "--pid-file".to_owned(),
        "--log-facility=-".to_owned(),
        // As harness::servers::real: root keeps the parent-death signal.
        "--user=root".to_owned(),
    ];
    let dns = gateway.spawn("dnsmasq", args).expect("starting dnsmasq");
    gateway
        .wait_listening(Proto::Udp, 53, Duration::from_secs(5))
        .expect("dnsmasq listening on the gateway");
    dns
}

/// A spoofed query for the TXT record with EDNS 4096, as a reflection
/// attack sends it.
fn spoofed_query(id: u16) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_ascii(BIG_TXT).unwrap(),
            RecordType::TXT,
        ));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    message.set_edns(edns);
    message.to_vec().unwrap()
}

fn counters(ns: &Netns, family: &str, table: &str) -> StackCounters {
    let text = ns
        .run(["nft", "list", "counters", "table", family, table])
        .expect("nft list counters");
    StackCounters::parse(&text).expect("nft counters")
}

fn counted(counters: &StackCounters, name: &str) -> (u64, u64) {
    counters
        .counters
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, packets, bytes)| (*packets, *bytes))
        .unwrap_or_else(|| panic!("no nftables counter {name}"))
}

/// Drops on the attack's way to wan0 (as reflection_e2e reads them).
fn path_drops(lab: &FilterLab) -> u64 {
    [
        (&lab.topo.wan_hosts[0], LAN_IF),
        (&lab.topo.internet, "h0"),
        (&lab.topo.internet, INET_IF),
        (&lab.topo.gateway, WAN_IF),
    ]
    .into_iter()
    .flat_map(|(ns, iface)| {
        ["tx_dropped", "rx_dropped"]
            .map(|what| ns.link_stat(iface, what).expect("a link statistic"))
    })
    .sum()
}

fn conntrack_count(gateway: &Netns) -> u64 {
    gateway
        .run(["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])
        .expect("reading nf_conntrack_count")
        .trim()
        .parse()
        .expect("a count")
}

/// One lookup of [`HOST`] by `resolver`, retried after each timeout as a
/// resolver does; dig itself goes over TCP after a truncated answer.
fn resolve(internet: &Netns, resolver: IpAddr, server: IpAddr, lookups: &mut Lookups) {
    lookups.total += 1;
    for attempt in 0..MAX_TRIES {
        let out = output(internet.command("dig").args([
            "-b",
            &resolver.to_string(),
            &format!("@{server}"),
            HOST,
            "A",
            "+tries=1",
            "+time=1",
        ]))
        .expect("running dig");
        let text = String::from_utf8_lossy(&out.stdout);
        let answered = text.lines().any(|line| {
            line.starts_with(HOST) && line.split_whitespace().last() == Some(&HOST_ADDR.to_string())
        });
        if answered {
            lookups.answered += 1;
            lookups.retries += u64::from(attempt);
            if text.contains("Truncated, retrying in TCP mode") {
                lookups.over_tcp += 1;
            }
            return;
        }
    }
    lookups.retries += u64::from(MAX_TRIES - 1);
}

/// chronyd as the gateway's NTP server on `wan0`'s address: its own clock
/// at stratum 8, for anyone, never touching the clock (`-x`), no command
/// port, no rate limit of its own.
fn ntp_server(gateway: &Netns, listen: IpAddr) -> (Background, TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("wft-ntp-server-")
        .tempdir()
        .expect("a temp dir");
    let conf = dir.path().join("chronyd.conf");
    std::fs::write(
        &conf,
        format!(
            "local stratum 8\nallow all\nbindaddress {listen}\ncmdport 0\npidfile {}\n",
            dir.path().join("chronyd.pid").display()
        ),
    )
    .expect("writing chronyd.conf");
    let ntp = gateway
        .spawn(
            "chronyd",
            [
                "chronyd",
                "-x",
                "-d",
                "-u",
                "root",
                "-f",
                &conf.to_string_lossy(),
            ],
        )
        .expect("starting chronyd");
    gateway
        .wait_listening(Proto::Udp, 123, Duration::from_secs(5))
        .expect("chronyd listening on the gateway");
    (ntp, dir)
}

/// An NTP client (mode 3, version 4) request, as a reflection attack sends
/// it: 48 bytes, a transmit timestamp that differs per request.
fn ntp_request(n: u64) -> Vec<u8> {
    let mut request = vec![0u8; 48];
    request[0] = 4 << 3 | 3;
    request[40..48].copy_from_slice(&(0x1234_5678_0000_0000 | n).to_be_bytes());
    request
}

/// An NTP mode 7 monlist request (implementation 3, request 42), as ntpdc
/// sends it: the amplifier's favourite.
fn monlist_request() -> Vec<u8> {
    let mut request = vec![0u8; 48];
    request[..4].copy_from_slice(&[0x17, 0x00, 0x03, 0x2a]);
    request
}

/// One NTP exchange by a real client at `client` (`chronyd -Q`: measure,
/// never set the clock), which retries by itself; answered if it got a
/// sample within 5 s.
fn ntp_exchange(internet: &Netns, client: IpAddr, server: IpAddr, lookups: &mut Lookups) {
    lookups.total += 1;
    let dir = tempfile::Builder::new()
        .prefix("wft-ntp-client-")
        .tempdir()
        .expect("a temp dir");
    let conf = dir.path().join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "server {server} iburst maxsamples 1\nbindacqaddress {client}\ncmdport 0\npidfile {}\n",
            dir.path().join("chronyd.pid").display()
        ),
    )
    .expect("writing chrony.conf");
    let out = output(internet.command("chronyd").args([
        "-Q",
        "-t",
        "5",
        "-u",
        "root",
        "-f",
        &conf.to_string_lossy(),
    ]))
    .expect("running chronyd -Q");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains("System clock wrong by") {
        lookups.answered += 1;
    } else {
        println!("NTP exchange of {client} failed: {}", text.trim());
    }
}

/// One run of the attack on `service` over `family`, with or without the
/// filter on `wan0`.
fn run(service: Service, family: Family, with_filter: bool) -> Run {
    let mut lab = FilterLab::build();
    lab.topo.add_wan_host().expect("adding the attacker");
    let (internet, gateway) = (&lab.topo.internet, &lab.topo.gateway);
    for resolver in family.resolvers() {
        internet
            .add_addr("lo", &format!("{resolver}/{}", family.host_len()))
            .expect("a resolver's address");
    }
    let victims = family.victims();
    let victim_set = cidr_set(&victims);
    let (ip, server) = (family.nft(), family.gateway());
    let port = service.port();
    // Everything to the victims crosses the WAN link's far end: the stack's
    // answers (routed to the internet) and XDP_TX's (to the attacker's MAC).
    internet
        .nft(&format!(
            r#"
table netdev victims_wire {{
    counter to_victims {{ }}
    chain wan_link {{
        type filter hook ingress device "{INET_IF}" priority 0; policy accept;
        {ip} daddr {{ {victim_set} }} counter name "to_victims"
    }}
}}
"#
        ))
        .expect("the wire counter");
    gateway
        .nft(&format!(
            r#"
table inet victims_stack {{
    counter queries {{ }}
    counter answers {{ }}
    chain input {{
        type filter hook input priority 0; policy accept;
        {ip} saddr {{ {victim_set} }} udp dport {port} counter name "queries"
        # As a stateful firewall does: conntrack follows IPv6 as well (for
        # IPv4, the gateway's NAT has it follow everything anyway).
        ct state new counter
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        {ip} daddr {{ {victim_set} }} counter name "answers"
    }}
}}
"#
        ))
        .expect("the stack counters");
    let _upstream = real::dns_server(internet, false).expect("the upstream DNS server");
    let (mut server_process, _server_dir) = service.start(gateway, server);
    if with_filter {
        // Generic (skb) mode: a veth in native mode hands XDP_TX frames to
        // its peer only when the peer runs an XDP program too (a real NIC
        // sends them itself); in skb mode they leave through wan0's queue.
        // (GRO on the peer is not enough: tried, wan0's ethtool -S counted
        // 256 xdp_tx, the peer's ring, and 2,664 xdp_tx_errors.)
        let out = lab.attach(Some("skb"));
        assert!(out.contains("skb mode"), "{out}");
    }

    let sender = RawSender::open(&lab.topo.wan_hosts[0], LAN_IF).expect("raw socket");
    let gw_mac = gateway.mac(WAN_IF).unwrap();
    let stats_before = with_filter.then(|| lab.stats());
    let wire_before = counters(internet, "netdev", "victims_wire");
    let stack_before = counters(gateway, "inet", "victims_stack");
    let path_drops_before = path_drops(&lab);
    let mut result = Run {
        conntrack_before: conntrack_count(gateway),
        ..Run::default()
    };

    let done = AtomicBool::new(false);
    let peak = AtomicU64::new(0);
    let (upstream_ok, upstream_total) = (AtomicU64::new(0), AtomicU64::new(0));
    thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(conntrack_count(gateway), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(100));
            }
        });
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                upstream_total.fetch_add(1, Ordering::Relaxed);
                match real::dig(gateway, addr::SERVER4.into(), false) {
                    Ok(_) => upstream_ok.fetch_add(1, Ordering::Relaxed),
                    Err(err) => {
                        println!("upstream lookup failed: {err:#}");
                        0
                    }
                };
                thread::sleep(Duration::from_millis(500));
            }
        });
        let resolvers: Vec<_> = family
            .resolvers()
            .into_iter()
            .map(|resolver| {
                let done = &done;
                scope.spawn(move || {
                    let mut lookups = Lookups::default();
                    while !done.load(Ordering::Relaxed) {
                        service.lookup(internet, resolver, server, &mut lookups);
                        thread::sleep(RESOLVER_PAUSE);
                    }
                    (resolver, lookups)
                })
            })
            .collect();

        // The attack: the victims in turn, each at VICTIM_PPS.
        let pacer = Pacer::new(VICTIM_PPS * victims.len() as u32);
        let mut sent = 0u64;
        while pacer.elapsed() < ATTACK {
            let victim = victims[sent as usize % victims.len()];
            let frame = family
                .packet(victim, server)
                .macs(sender.mac().0, gw_mac.0)
                .udp(10_000 + (sent % 50_000) as u16, port)
                .payload(&service.spoofed(sent))
                .build();
            if service == Service::Ntp && sent.is_multiple_of(MONLIST_EVERY) {
                result.monlist_sent += 1;
            }
            sender.send(&frame.bytes).expect("sending a spoofed query");
            result.queries_bytes += frame.bytes.len() as u64;
            sent += 1;
            pacer.wait(sent);
        }
        result.queries_sent = sent;
        // The last answers leave; the last lookups end.
        thread::sleep(Duration::from_millis(500));
        done.store(true, Ordering::Relaxed);
        result.resolvers = resolvers
            .into_iter()
            .map(|resolver| resolver.join().expect("a resolver thread"))
            .collect();
    });
    server_process
        .check_running()
        .expect("the server kept running");
    let wire = counters(internet, "netdev", "victims_wire").since(&wire_before);
    (result.wire_packets, result.wire_bytes) = counted(&wire, "to_victims");
    let stack = counters(gateway, "inet", "victims_stack").since(&stack_before);
    result.stack_queries = counted(&stack, "queries").0;
    result.stack_answer_bytes = counted(&stack, "answers").1;
    result.path_drops = path_drops(&lab) - path_drops_before;
    result.upstream_ok = upstream_ok.into_inner();
    result.upstream_total = upstream_total.into_inner();
    result.conntrack_peak = peak.into_inner();
    result.filter = stats_before.map(|before| lab.stats().since(&before));
    result
}

/// The reflection attack on a DNS server on the gateway, without and with
/// the filter (default settings).
#[test]
fn a_dns_server_on_the_gateway_is_no_amplifier() {
    dns_attack(Family::V4);
}

/// The same over IPv6 (sources grouped by /64 and /56), where the
/// truncated answers are built for IPv6.
#[test]
fn a_dns_server_on_the_gateway_is_no_amplifier_over_ipv6() {
    dns_attack(Family::V6);
}

fn dns_attack(family: Family) {
    let started = Instant::now();
    let without = run(Service::Dns, family, false);
    without.print(&format!("{family:?} without the filter"));
    let with = run(Service::Dns, family, true);
    with.print(&format!("{family:?} with the filter"));
    println!("both runs took {:?}", started.elapsed());

    // The baseline is an amplifier: every spoofed query reached the server,
    // and the victims got several times the bytes of the queries (a full
    // answer is 3 KB, 38 times its query; dnsmasq on an emulated CPU falls
    // behind and answered a third of them on Linux 6.12 under TCG, 9 times).
    assert!(
        without.stack_queries <= without.queries_sent
            && without.stack_queries + without.path_drops >= without.queries_sent,
        "{without:?}"
    );
    assert!(
        without.wire_bytes > without.queries_bytes * 5,
        "the baseline's answers to the victims: {without:?}"
    );
    // The bytes sent to the victims per spoofed query (the runs may send
    // a few less than planned) fall by at least 90 %: the issue's figure,
    // for a server that answers the planned 200 queries per second per
    // victim. The limits let a prefix's budget through whatever the rate, so
    // a machine too slow to send at that rate (Linux 6.1 under emulation
    // sends about half) or to answer it (the baseline's answers under 20
    // times the queries' bytes) cannot show it: there the victims' queries
    // reaching the stack must stay within the prefix's budget for the
    // attack's length.
    let planned = u64::from(VICTIM_PPS) * VICTIMS4.len() as u64 * ATTACK.as_secs();
    let full_scale =
        with.queries_sent * 10 >= planned * 9 && without.wire_bytes >= without.queries_bytes * 20;
    if full_scale {
        assert!(
            with.wire_bytes * without.queries_sent * 10 <= without.wire_bytes * with.queries_sent,
            "to the victims: {} bytes for {} queries with the filter, {} for {} without",
            with.wire_bytes,
            with.queries_sent,
            without.wire_bytes,
            without.queries_sent
        );
        assert!(with.stack_queries < with.queries_sent / 10, "{with:?}");
    } else {
        println!(
            "the attack ran at {} of the planned {planned} queries, the baseline's \
             answers at {} times the queries' bytes: the 90 % figure needs the planned \
             rate answered in full; checking the prefix's budget instead",
            with.queries_sent,
            without.wire_bytes / without.queries_bytes.max(1)
        );
    }
    let limits = filter_common::query::DEFAULT_DNS;
    // The attack's 10 s, and 2 s for the last queries and answers.
    let budget =
        u64::from(limits.prefix_burst) + u64::from(limits.prefix_rate) * (ATTACK.as_secs() + 2);
    assert!(
        with.stack_queries <= budget,
        "{} of the victims' queries reached the stack, over the prefix's budget of {budget}: {with:?}",
        with.stack_queries
    );
    let stats = with.filter.as_ref().unwrap();
    let limited = [
        Reason::DropDnsQuerySource,
        Reason::DropDnsQueryPrefix,
        Reason::DropDnsQueryGlobal,
    ]
    .iter()
    .map(|reason| stats.packets(*reason))
    .sum::<u64>();
    let truncated = stats.packets(Reason::TxDnsTruncated);
    assert!(limited > 0 && truncated > 0, "{stats:?}");
    // Every spoofed query that reached XDP was passed (and seen by the
    // stack), limited or truncated; the others were lost on the way (a VM
    // with one emulated CPU loses a few in the links' queues). (Not equal:
    // the resolvers in the victims' /24 are limited and truncated too.)
    assert!(
        with.stack_queries + limited + truncated + as_responses(stats) + with.path_drops
            >= with.queries_sent,
        "{with:?}"
    );

    // Every real lookup was answered, with and without the filter.
    for run in [&without, &with] {
        let all = run.lookups(|_| true);
        // Every resolver looked up (a VM with one CPU manages a few each,
        // the host about 25).
        assert!(
            run.resolvers.iter().all(|(_, lookups)| lookups.total > 0),
            "a resolver made no lookup: {run:?}"
        );
        assert_eq!(all.answered, all.total, "unanswered lookups: {run:?}");
        assert_eq!(run.upstream_ok, run.upstream_total, "{run:?}");
        // At least one (the host makes several; Linux 6.1 under emulation,
        // with a second guest on the other core, managed one in 10 s).
        assert!(run.upstream_total >= 1, "{run:?}");
    }
    // Resolvers in a /24 of their own were never limited: never sent to TCP
    // by a slip, and at full scale answered at the first try. (A slow
    // machine's dnsmasq makes them retry now and then, with or without the
    // filter: Linux 6.1 under emulation, 2 retries of 6 lookups without.)
    let own = with.lookups(own_prefix);
    assert_eq!(own.over_tcp, 0, "{with:?}");
    if full_scale {
        assert_eq!(own.retries, 0, "{with:?}");
    }
    // At full scale, those in the victims' /24 were limited with them:
    // truncated answers sent them over TCP, or a dropped query made them
    // retry. A slower attack leaves the prefix tokens for their few lookups
    // (an emulated CPU manages one or two each), and whether one of a
    // handful meets an empty bucket is chance. All of them were answered
    // either way (above).
    let shared = with.lookups(|resolver| !own_prefix(resolver));
    if full_scale && shared.total >= 20 {
        assert!(shared.over_tcp + shared.retries > 0, "{with:?}");
    } else {
        println!("the victims' /24 resolvers: {shared:?}");
    }

    // Dropped queries never reached conntrack.
    assert!(
        without.conntrack_peak >= without.conntrack_before + without.queries_sent / 2,
        "the baseline's conntrack table: {without:?}"
    );
    assert!(
        with.conntrack_peak - with.conntrack_before
            <= (without.conntrack_peak - without.conntrack_before) / 5,
        "conntrack with the filter: {with:?}; without: {without:?}"
    );
}

/// The same attack on an NTP server on the gateway: mode 3 requests are
/// limited (no slip: an NTP answer is as large as its request), monlist
/// requests stay dropped by the reflection defence.
#[test]
fn an_ntp_server_on_the_gateway_is_no_amplifier() {
    let without = run(Service::Ntp, Family::V4, false);
    without.print("without the filter");
    let with = run(Service::Ntp, Family::V4, true);
    with.print("with the filter");

    // chronyd answers client requests (most of them: it falls behind on a
    // loaded machine), never a monlist request.
    assert!(
        without.stack_queries <= without.queries_sent
            && without.stack_queries + without.path_drops >= without.queries_sent,
        "{without:?}"
    );
    let answered = without.queries_sent - without.monlist_sent;
    assert!(
        without.wire_packets >= answered / 2,
        "the baseline's answers to the victims: {without:?}"
    );
    assert!(
        with.wire_bytes * 10 <= without.wire_bytes,
        "to the victims: {} bytes with the filter, {} without",
        with.wire_bytes,
        without.wire_bytes
    );
    let stats = with.filter.as_ref().unwrap();
    let limited = [
        Reason::DropNtpQuerySource,
        Reason::DropNtpQueryPrefix,
        Reason::DropNtpQueryGlobal,
    ]
    .iter()
    .map(|reason| stats.packets(*reason))
    .sum::<u64>();
    // Every monlist request that reached XDP dropped.
    let control = stats.packets(Reason::DropNtpControl);
    assert!(
        control <= with.monlist_sent && control + with.path_drops >= with.monlist_sent,
        "monlist requests: {with:?}"
    );
    assert_eq!(stats.packets(Reason::TxDnsTruncated), 0, "{stats:?}");
    assert!(
        with.stack_queries + limited + control + as_responses(stats) + with.path_drops
            >= with.queries_sent,
        "{with:?}"
    );
    assert!(with.stack_queries < with.queries_sent / 10, "{with:?}");
    for run in [&without, &with] {
        let all = run.lookups(|_| true);
        assert!(
            run.resolvers
                .iter()
                .all(|(_, exchanges)| exchanges.total > 0),
            "a client made no exchange: {run:?}"
        );
        assert_eq!(all.answered, all.total, "failed exchanges: {run:?}");
        assert_eq!(run.upstream_ok, run.upstream_total, "{run:?}");
    }
    assert!(
        with.conntrack_peak - with.conntrack_before
            <= (without.conntrack_peak - without.conntrack_before) / 5,
        "conntrack with the filter: {with:?}; without: {without:?}"
    );
}

/// Spoofed queries whose random source port is a watched amplification port
/// (chargen, SSDP, memcached, ...): the filter takes them for unsolicited
/// responses from an amplifier and drops them before any query limit (2 of
/// 6,000 in a run, typically).
fn as_responses(stats: &Stats) -> u64 {
    stats.packets(Reason::DropUnsolicitedOther)
}
