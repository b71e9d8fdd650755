//! Scenes: the pieces a case is made of, each expanding into a few steps.
//! An exchange is a query out and answers in (matching, or one field off);
//! a stray is one packet in (or out) of any kind; a SYN burst, frames that
//! are not IP, raw bytes, a solicited bucket filled past its ways, requests
//! to our DNS or NTP server, a pause, a live settings change.

use std::net::IpAddr;

use harness::packet::{PacketBuilder, proto, tcp_flags};
use proptest::{collection::vec, prelude::*, sample::select};

use super::{
    app::{self, App, Dns, DnsQuery, Ntp, QUERY_FLAGS, RESPONSE_FLAGS, first_byte},
    fragment::{FragPlan, frag_plan, fragments},
    net::{Ends, IpLayer, Link, Look, Mangle, NotIp, Peers, ends, link, look, not_ip, tunnel},
    settings,
};
use crate::{
    parse::Family,
    sequence::Step,
    settings::{DEFAULT_AMPLIFIER_PORTS, Settings},
    solicited::{Key, Token},
};

#[derive(Clone, Debug)]
pub enum Scene {
    Exchange(Exchange),
    /// One packet in.
    Stray(Stray),
    /// One packet out.
    Outgoing(Stray),
    Syns(Syns),
    NotIp {
        what: NotIp,
        link: Link,
        egress: bool,
    },
    /// Bytes behind an Ethernet header: mostly garbage as IP.
    Raw {
        egress: bool,
        ethertype: u16,
        body: Vec<u8>,
    },
    FullBucket(FullBucket),
    /// Inbound connections to one of our services: handshakes and what follows.
    Connections(Connections),
    /// SYN-ACKs whose connections share a bucket of the handshake table
    /// (and of the connection table), more than it has ways, then ACKs.
    FullHandshakes(FullHandshakes),
    /// Requests to our DNS or NTP server from a few sources, enough to
    /// reach the query limits.
    Requests(Requests),
    Wait(u8),
    /// A pause past the TCP defence's shortest timeouts (1 s): only where
    /// the case says so (`case(idle_gaps)`), as it costs real time.
    Idle(u16),
    Reconfigure(Settings),
}

/// Scenes; with `idle_gaps`, now and then a pause of 1 to 2.2 s.
pub fn scene(idle_gaps: bool) -> BoxedStrategy<Scene> {
    let raw_ethertype = prop_oneof![
        Just(0x0800u16),
        Just(0x86dd),
        Just(0x8100),
        Just(0x88a8),
        Just(0x8864),
        any::<u16>(),
    ];
    let scenes = prop_oneof![
        30 => exchange().prop_map(Scene::Exchange),
        15 => stray().prop_map(Scene::Stray),
        8 => stray().prop_map(Scene::Outgoing),
        10 => syns().prop_map(Scene::Syns),
        3 => (not_ip(), link(), any::<bool>())
            .prop_map(|(what, link, egress)| Scene::NotIp { what, link, egress }),
        4 => (any::<bool>(), raw_ethertype, vec(any::<u8>(), 0..90))
            .prop_map(|(egress, ethertype, body)| Scene::Raw { egress, ethertype, body }),
        2 => full_bucket().prop_map(Scene::FullBucket),
        20 => connections().prop_map(Scene::Connections),
        2 => full_handshakes().prop_map(Scene::FullHandshakes),
        15 => requests().prop_map(Scene::Requests),
        2 => (1..25u8).prop_map(Scene::Wait),
        2 => settings().prop_map(Scene::Reconfigure),
    ];
    if !idle_gaps {
        return scenes.boxed();
    }
    // One scene in 500: a long run of 300 s spends about a tenth of its
    // time in them.
    prop_oneof![
        499 => scenes,
        1 => (1000..2200u16).prop_map(Scene::Idle),
    ]
    .boxed()
}

/// Our TCP services: mail, web, or any port.
fn service_port() -> impl Strategy<Value = u16> {
    prop_oneof![3 => Just(25u16), 3 => Just(80), 1 => Just(443), 1 => any::<u16>()]
}

/// Inbound connections from one source to one of our ports, from
/// consecutive client ports: a SYN in, our SYN-ACK out (maybe twice), the
/// completing ACK (right, or one field off, or none), then what follows
/// (data, a FIN or RST either way). In turn, or phase by phase (all SYNs,
/// all SYN-ACKs, all ACKs: handshakes in flight at once).
#[derive(Clone, Debug)]
pub struct Connections {
    pub ends: Ends,
    pub port: u16,
    pub client_port: u16,
    pub isn: u32,
    pub look: Look,
    pub by_phase: bool,
    pub plans: Vec<Plan>,
    /// Milliseconds between phases (0: none).
    pub gap_ms: u8,
}

/// One connection's course.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub syn: bool,
    pub synacks: u8,
    pub completion: Completion,
    pub then: Then,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    Right,
    /// The acknowledgement number off by this.
    AckOff(u32),
    /// From another client port.
    PortOff(u16),
    /// From another remote address.
    SourceOff(u8),
    /// Right, with these flags added (FIN, RST, PSH, URG, ECE/CWR, SYN).
    Flags(u8),
    /// None.
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    Nothing,
    Data,
    FinIn,
    RstIn,
    FinOut,
    RstOut,
    /// Data, a pause, data.
    DataAfter(u8),
}

fn plan() -> impl Strategy<Value = Plan> {
    let completion = prop_oneof![
        10 => Just(Completion::Right),
        2 => prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>()].prop_map(Completion::AckOff),
        1 => (1..=u16::MAX).prop_map(Completion::PortOff),
        1 => (1..4u8).prop_map(Completion::SourceOff),
        2 => select(&[
            tcp_flags::FIN,
            tcp_flags::RST,
            tcp_flags::PSH,
            tcp_flags::URG | tcp_flags::PSH,
            0xc0,
            tcp_flags::SYN,
        ][..])
        .prop_map(Completion::Flags),
        2 => Just(Completion::Never),
    ];
    let then = prop_oneof![
        3 => Just(Then::Nothing),
        3 => Just(Then::Data),
        2 => Just(Then::FinIn),
        1 => Just(Then::RstIn),
        2 => Just(Then::FinOut),
        1 => Just(Then::RstOut),
        1 => (1..25u8).prop_map(Then::DataAfter),
    ];
    (
        prop::bool::weighted(0.9),
        prop_oneof![6 => Just(1u8), 1 => Just(0), 1 => Just(2)],
        completion,
        then,
    )
        .prop_map(|(syn, synacks, completion, then)| Plan {
            syn,
            synacks,
            completion,
            then,
        })
}

fn connections() -> BoxedStrategy<Connections> {
    let look = look().prop_map(|look| Look {
        mangle: Mangle::None,
        tunnel: look.tunnel.whole(),
        ..look
    });
    (
        ends(),
        service_port(),
        1024..=u16::MAX,
        any::<u32>(),
        look,
        any::<bool>(),
        vec(plan(), 1..8),
        prop_oneof![3 => Just(0u8), 1 => 1..20u8],
    )
        .prop_map(
            |(ends, port, client_port, isn, look, by_phase, plans, gap_ms)| Connections {
                ends,
                port,
                client_port,
                isn,
                look,
                by_phase,
                plans,
                gap_ms,
            },
        )
        .boxed()
}

/// Connections from one source to one port whose handshakes hash into one
/// bucket (found with the filter's seed), more than it has ways.
#[derive(Clone, Debug)]
pub struct FullHandshakes {
    pub ends: Ends,
    pub port: u16,
    pub first_client_port: u16,
    pub count: u8,
    pub completed: u8,
    pub isn: u32,
    pub look: Look,
    pub in_turn: bool,
}

fn full_handshakes() -> impl Strategy<Value = FullHandshakes> {
    (
        ends(),
        service_port(),
        1024..=u16::MAX,
        5..8u8,
        // Mostly all completed: five counting connections in one bucket of
        // the connection table (on a port with a limit of 5 or more) make
        // the sixth evict one.
        prop_oneof![2 => Just(u8::MAX), 1 => any::<u8>()],
        any::<u32>(),
        look().prop_map(|look| Look {
            mangle: Mangle::None,
            tunnel: look.tunnel.whole(),
            ..look
        }),
        any::<bool>(),
    )
        .prop_map(
            |(ends, port, first_client_port, count, completed, isn, look, in_turn)| {
                FullHandshakes {
                    ends,
                    port,
                    first_client_port,
                    count,
                    completed,
                    isn,
                    look,
                    in_turn,
                }
            },
        )
}

/// Requests to our DNS or NTP server (docs/query-limits.md): one to 60
/// from a few sources taken in turn (remote addresses, other hosts of
/// their /24 or /64, other /24s of their /16 or /64s of their /56), to a
/// service port (the defaults' 53 and 123, the generator's other service
/// ports 5353 and 1123, or any), mostly well-formed, with pauses.
#[derive(Clone, Debug)]
pub struct Requests {
    pub v6: bool,
    pub local: u8,
    pub sources: Vec<Source>,
    pub dns: bool,
    pub port: u16,
    pub client_port: u16,
    pub count: u8,
    /// The DNS queries (or NTP packets), taken in turn.
    pub queries: Vec<DnsQuery>,
    pub ntp: Vec<Ntp>,
    pub look: Look,
    pub fragments: Option<FragPlan>,
    /// A pause of `.1` ms after every `.0` requests.
    pub pause: Option<(u8, u8)>,
}

/// One source of requests: a remote address of the case, maybe another
/// host in its /24 (IPv6: its /64, the same source) or another /24 of its
/// /16 (IPv6: another /64 of its /56).
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub remote: u8,
    pub host: Option<u16>,
    pub net: Option<u8>,
}

fn requests() -> BoxedStrategy<Requests> {
    let source = (
        0..4u8,
        prop_oneof![2 => Just(None), 1 => any::<u16>().prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => any::<u8>().prop_map(Some)],
    )
        .prop_map(|(remote, host, net)| Source { remote, host, net });
    let dns_port = prop_oneof![8 => Just(53u16), 2 => Just(5353), 1 => any::<u16>()];
    let ntp_port = prop_oneof![8 => Just(123u16), 2 => Just(1123), 1 => any::<u16>()];
    let ntp = (app::ntp(), prop::bool::weighted(0.85)).prop_map(|(ntp, client)| Ntp {
        first: if client { first_byte(4, 3) } else { ntp.first },
        len: if client { 48 } else { ntp.len },
        ..ntp
    });
    let look = prop_oneof![
        3 => (link(), any::<u8>(), tunnel()).prop_map(|(link, ttl, tunnel)| Look {
            link,
            tunnel,
            ip: IpLayer {
                v4_options: vec![],
                v6_exts: vec![],
                ttl,
            },
            mangle: Mangle::None,
        }),
        1 => look(),
    ];
    (
        (prop::bool::weighted(0.4), 0..2u8, vec(source, 1..4)),
        (any::<bool>(), dns_port, ntp_port),
        prop_oneof![
            6 => 1024..=u16::MAX,
            1 => Just(53u16),
            1 => Just(123u16),
            1 => any::<u16>()
        ],
        prop_oneof![1 => 1..6u8, 3 => 6..61u8],
        vec(app::dns_query(), 1..4),
        vec(ntp, 1..3),
        look,
        prop_oneof![12 => Just(None), 1 => frag_plan().prop_map(Some)],
        prop_oneof![2 => Just(None), 1 => (1..20u8, 1..25u8).prop_map(Some)],
    )
        .prop_map(
            |(
                (v6, local, sources),
                (dns, dns_port, ntp_port),
                client_port,
                count,
                queries,
                ntp,
                look,
                fragments,
                pause,
            )| Requests {
                v6,
                local,
                sources,
                dns,
                port: if dns { dns_port } else { ntp_port },
                client_port,
                count,
                queries,
                ntp,
                look,
                fragments,
                pause,
            },
        )
        .boxed()
}

impl Requests {
    fn expand(&self, peers: &Peers, steps: &mut Vec<Step>) {
        let ends = |remote| Ends {
            v6: self.v6,
            local: self.local,
            remote,
        };
        for i in 0..usize::from(self.count) {
            if let Some((every, ms)) = self.pause
                && i > 0
                && i % usize::from(every) == 0
            {
                steps.push(Step::Wait { ms: u64::from(ms) });
            }
            let source = self.sources[i % self.sources.len()];
            let src = source.address(peers.remote(ends(source.remote)));
            let dst = peers.local(ends(0));
            let payload = if self.dns {
                self.queries[i % self.queries.len()].bytes()
            } else {
                self.ntp[i % self.ntp.len()].bytes()
            };
            let udp = |b: PacketBuilder| b.udp(self.client_port, self.port).payload(&payload);
            match &self.fragments {
                None => {
                    for frame in self.look.frames(src, dst, udp) {
                        steps.push(Step::Ingress(frame));
                    }
                }
                Some(plan) => fragments(plan, &self.look, src, dst, proto::UDP, udp)
                    .into_iter()
                    .for_each(|f| steps.push(Step::Ingress(f))),
            }
        }
    }
}

impl Source {
    fn address(self, base: IpAddr) -> IpAddr {
        match base {
            IpAddr::V4(v4) => {
                let mut octets = v4.octets();
                if let Some(host) = self.host {
                    octets[3] = host as u8;
                }
                if let Some(net) = self.net {
                    octets[2] = octets[2].wrapping_add(net);
                }
                IpAddr::from(octets)
            }
            IpAddr::V6(v6) => {
                let mut segments = v6.segments();
                if let Some(host) = self.host {
                    segments[7] = host;
                }
                if let Some(net) = self.net {
                    segments[3] = (segments[3] & 0xff00) | u16::from(net);
                }
                IpAddr::from(segments)
            }
        }
    }
}

/// A service a query goes to: its protocol and port.
#[derive(Clone, Copy, Debug)]
pub enum Service {
    Dns(u16),
    Ntp(u16),
    Other(u16),
}

fn service() -> BoxedStrategy<Service> {
    prop_oneof![
        4 => prop_oneof![8 => Just(53u16), 1 => Just(5353), 1 => any::<u16>()].prop_map(Service::Dns),
        2 => prop_oneof![8 => Just(123u16), 1 => any::<u16>()].prop_map(Service::Ntp),
        2 => prop_oneof![8 => select(&DEFAULT_AMPLIFIER_PORTS[..]), 1 => any::<u16>()]
            .prop_map(Service::Other),
    ].boxed()
}

/// A query out, then answers in.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub ends: Ends,
    pub service: Service,
    pub client_port: u16,
    pub dns: Dns,
    pub ntp: Ntp,
    pub bytes: Vec<u8>,
    pub look: Look,
    pub answers: Vec<Answer>,
}

/// An answer: exact, or with one field off.
#[derive(Clone, Debug)]
pub struct Answer {
    pub off: Off,
    pub look: Look,
    /// DNS filler or other payload bytes; large ones are worth fragmenting.
    pub size: u16,
    pub fragments: Option<FragPlan>,
}

#[derive(Clone, Copy, Debug)]
pub enum Off {
    None,
    /// DNS id xor this.
    Id(u16),
    /// NTP origin timestamp: byte, xor.
    Origin(u8, u8),
    /// From another remote address.
    Source(u8),
    /// To our other address.
    Destination,
    SourcePort(u16),
    DestinationPort(u16),
    /// QR clear (DNS), client mode (NTP).
    NotAResponse,
    /// NTP mode.
    Mode(u8),
}

fn off() -> BoxedStrategy<Off> {
    prop_oneof![
        12 => Just(Off::None),
        1 => (1..=u16::MAX).prop_map(Off::Id),
        1 => (any::<u8>(), 1..=u8::MAX).prop_map(|(at, x)| Off::Origin(at, x)),
        1 => (1..4u8).prop_map(Off::Source),
        1 => Just(Off::Destination),
        1 => (1..=u16::MAX).prop_map(Off::SourcePort),
        1 => (1..=u16::MAX).prop_map(Off::DestinationPort),
        1 => Just(Off::NotAResponse),
        1 => (0..8u8).prop_map(Off::Mode),
    ]
    .boxed()
}

fn answer() -> BoxedStrategy<Answer> {
    (
        off(),
        look(),
        prop_oneof![0..64u16, 0..1400u16],
        prop_oneof![4 => Just(None), 1 => frag_plan().prop_map(Some)],
    )
        .prop_map(|(off, look, size, fragments)| Answer {
            off,
            look,
            size,
            fragments,
        })
        .boxed()
}

fn query_dns() -> BoxedStrategy<Dns> {
    (
        any::<u16>(),
        prop_oneof![9 => Just(None), 1 => (0..14u8).prop_map(Some)],
        app::dns(),
    )
        .prop_map(|(id, cut, other)| Dns {
            id,
            // Mostly a query; now and then whatever flags.
            flags: if other.id % 8 == 0 {
                other.flags
            } else {
                QUERY_FLAGS
            },
            filler: other.filler % 64,
            cut,
        })
        .boxed()
}

fn query_ntp() -> BoxedStrategy<Ntp> {
    (app::ntp(), prop::bool::weighted(0.85))
        .prop_map(|(ntp, client)| Ntp {
            first: if client { first_byte(4, 3) } else { ntp.first },
            len: if client { 48 } else { ntp.len },
            ..ntp
        })
        .boxed()
}

fn exchange() -> BoxedStrategy<Exchange> {
    (
        ends(),
        service(),
        prop_oneof![1024..=u16::MAX, any::<u16>()],
        query_dns(),
        query_ntp(),
        vec(any::<u8>(), 0..32),
        look(),
        vec(answer(), 0..4),
    )
        .prop_map(
            |(ends, service, client_port, dns, ntp, bytes, look, answers)| Exchange {
                ends,
                service,
                client_port,
                dns,
                ntp,
                bytes,
                look,
                answers,
            },
        )
        .boxed()
}

/// One packet of any kind.
#[derive(Clone, Debug)]
pub struct Stray {
    pub ends: Ends,
    pub source_port: u16,
    pub destination_port: u16,
    pub transport: Transport,
    pub look: Look,
    pub fragments: Option<FragPlan>,
}

#[derive(Clone, Debug)]
pub enum Transport {
    Udp(App),
    Tcp { flags: u8, options: Vec<u8> },
    Other { protocol: u8, bytes: Vec<u8> },
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(53u16),
        Just(123),
        select(&DEFAULT_AMPLIFIER_PORTS[..]),
        Just(80),
        any::<u16>(),
    ]
}

fn stray() -> BoxedStrategy<Stray> {
    let transport = prop_oneof![
        4 => app::app().prop_map(Transport::Udp),
        2 => (any::<u8>(), vec(any::<u8>(), 0..12))
            .prop_map(|(flags, options)| Transport::Tcp { flags, options }),
        1 => (
            prop_oneof![Just(1u8), Just(58), Just(47), Just(50), Just(132), any::<u8>()],
            vec(any::<u8>(), 0..40),
        )
            .prop_map(|(protocol, bytes)| Transport::Other { protocol, bytes }),
    ];
    (
        ends(),
        port(),
        port(),
        transport,
        look(),
        prop_oneof![5 => Just(None), 1 => frag_plan().prop_map(Some)],
    )
        .prop_map(
            |(ends, source_port, destination_port, transport, look, fragments)| Stray {
                ends,
                source_port,
                destination_port,
                transport,
                look,
                fragments,
            },
        )
        .boxed()
}

/// TCP segments from one source, by default connection attempts.
#[derive(Clone, Debug)]
pub struct Syns {
    pub ends: Ends,
    pub count: u8,
    pub flags: u8,
    pub source_port: u16,
    pub destination_port: u16,
    pub look: Look,
}

fn syns() -> BoxedStrategy<Syns> {
    let flags = prop_oneof![
        6 => Just(tcp_flags::SYN),
        1 => Just(tcp_flags::SYN | tcp_flags::ACK),
        1 => any::<u8>(),
    ];
    let look = look().prop_map(|look| Look {
        mangle: Mangle::None,
        tunnel: look.tunnel.whole(),
        ..look
    });
    (ends(), 1..40u8, flags, any::<u16>(), port(), look)
        .prop_map(
            |(ends, count, flags, source_port, destination_port, look)| Syns {
                ends,
                count,
                flags,
                source_port,
                destination_port,
                look,
            },
        )
        .boxed()
}

/// DNS queries that all hash into one bucket of the solicited table, more of
/// them than it has ways, then answers to some.
#[derive(Clone, Debug)]
pub struct FullBucket {
    pub ends: Ends,
    pub client_port: u16,
    pub first_id: u16,
    pub queries: u8,
    pub answered: u8,
}

fn full_bucket() -> impl Strategy<Value = FullBucket> {
    (ends(), 1024..=u16::MAX, any::<u16>(), 4..8u8, any::<u8>()).prop_map(
        |(ends, client_port, first_id, queries, answered)| FullBucket {
            ends,
            client_port,
            first_id,
            queries,
            answered,
        },
    )
}

fn ip_bytes(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Scene {
    /// The scene's steps; `seed` is the filter's hash seed (for scenes that
    /// aim at one bucket of a keyed table).
    pub fn expand(&self, peers: &Peers, seed: u64, steps: &mut Vec<Step>) {
        match self {
            Scene::Exchange(exchange) => exchange.expand(peers, steps),
            Scene::Stray(stray) => stray
                .frames(peers, true)
                .into_iter()
                .for_each(|f| steps.push(Step::Ingress(f))),
            Scene::Outgoing(stray) => stray
                .frames(peers, false)
                .into_iter()
                .for_each(|f| steps.push(Step::Egress(f))),
            Scene::Syns(syns) => syns.expand(peers, steps),
            Scene::NotIp { what, link, egress } => {
                let frame = what.frame(*link);
                steps.push(if *egress {
                    Step::Egress(frame)
                } else {
                    Step::Ingress(frame)
                });
            }
            Scene::Raw {
                egress,
                ethertype,
                body,
            } => {
                let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
                frame.extend(ethertype.to_be_bytes());
                frame.extend(body);
                steps.push(if *egress {
                    Step::Egress(frame)
                } else {
                    Step::Ingress(frame)
                });
            }
            Scene::FullBucket(full) => full.expand(peers, steps),
            Scene::Connections(connections) => connections.expand(peers, steps),
            Scene::FullHandshakes(full) => full.expand(peers, seed, steps),
            Scene::Requests(requests) => requests.expand(peers, steps),
            Scene::Wait(ms) => steps.push(Step::Wait { ms: u64::from(*ms) }),
            Scene::Idle(ms) => steps.push(Step::Wait { ms: u64::from(*ms) }),
            Scene::Reconfigure(settings) => steps.push(Step::Set(Box::new(settings.clone()))),
        }
    }
}

impl Exchange {
    fn expand(&self, peers: &Peers, steps: &mut Vec<Step>) {
        let local = peers.local(self.ends);
        let remote = peers.remote(self.ends);
        let (server_port, query) = match self.service {
            Service::Dns(port) => (port, self.dns.bytes()),
            Service::Ntp(port) => (port, self.ntp.bytes()),
            Service::Other(port) => (port, self.bytes.clone()),
        };
        let query = self.look.frames(local, remote, |b| {
            b.udp(self.client_port, server_port).payload(&query)
        });
        steps.extend(query.into_iter().map(Step::Egress));
        for answer in &self.answers {
            let mut src = remote;
            let mut dst = local;
            let mut sport = server_port;
            let mut dport = self.client_port;
            match answer.off {
                Off::Source(other) => {
                    src = peers.remote(Ends {
                        remote: self.ends.remote.wrapping_add(other),
                        ..self.ends
                    })
                }
                Off::Destination => {
                    dst = peers.local(Ends {
                        local: self.ends.local + 1,
                        ..self.ends
                    })
                }
                Off::SourcePort(d) => sport = sport.wrapping_add(d),
                Off::DestinationPort(d) => dport = dport.wrapping_add(d),
                _ => {}
            }
            let payload = self.answer_payload(answer);
            let udp = |b: PacketBuilder| b.udp(sport, dport).payload(&payload);
            match &answer.fragments {
                None => {
                    for frame in answer.look.frames(src, dst, udp) {
                        steps.push(Step::Ingress(frame));
                    }
                }
                Some(plan) => fragments(plan, &answer.look, src, dst, proto::UDP, udp)
                    .into_iter()
                    .for_each(|f| steps.push(Step::Ingress(f))),
            }
        }
    }

    fn answer_payload(&self, answer: &Answer) -> Vec<u8> {
        match self.service {
            Service::Dns(_) => Dns {
                id: match answer.off {
                    Off::Id(x) => self.dns.id ^ x,
                    _ => self.dns.id,
                },
                flags: match answer.off {
                    Off::NotAResponse => QUERY_FLAGS,
                    _ => RESPONSE_FLAGS,
                },
                filler: answer.size,
                cut: None,
            }
            .bytes(),
            Service::Ntp(_) => {
                let mut origin = self.ntp.transmit;
                if let Off::Origin(at, x) = answer.off {
                    origin[usize::from(at) % 8] ^= x;
                }
                let mode = match answer.off {
                    Off::NotAResponse => 3,
                    Off::Mode(mode) => mode,
                    _ => 4,
                };
                Ntp {
                    first: first_byte(4, mode),
                    origin,
                    transmit: self.ntp.origin,
                    len: 48,
                }
                .bytes()
            }
            Service::Other(_) => vec![0x42; usize::from(answer.size)],
        }
    }
}

impl Stray {
    /// The packet's frames (several if fragmented), inbound (remote to
    /// local) or outbound.
    fn frames(&self, peers: &Peers, inbound: bool) -> Vec<Vec<u8>> {
        let (src, dst) = if inbound {
            (peers.remote(self.ends), peers.local(self.ends))
        } else {
            (peers.local(self.ends), peers.remote(self.ends))
        };
        let (sport, dport) = (self.source_port, self.destination_port);
        let (upper, transport): (u8, Box<dyn Fn(PacketBuilder) -> PacketBuilder>) =
            match &self.transport {
                Transport::Udp(app) => {
                    let payload = app.bytes();
                    (
                        proto::UDP,
                        Box::new(move |b: PacketBuilder| b.udp(sport, dport).payload(&payload)),
                    )
                }
                Transport::Tcp { flags, options } => {
                    let (flags, options) = (*flags, options.clone());
                    (
                        proto::TCP,
                        Box::new(move |b: PacketBuilder| {
                            b.tcp(sport, dport, flags).tcp_options(&options)
                        }),
                    )
                }
                Transport::Other { protocol, bytes } => {
                    let (protocol, bytes) = (*protocol, bytes.clone());
                    (
                        protocol,
                        Box::new(move |b: PacketBuilder| b.protocol(protocol).payload(&bytes)),
                    )
                }
            };
        match &self.fragments {
            None => self.look.frames(src, dst, transport),
            Some(plan) => fragments(plan, &self.look, src, dst, upper, transport),
        }
    }
}

impl Syns {
    fn expand(&self, peers: &Peers, steps: &mut Vec<Step>) {
        let src = peers.remote(self.ends);
        let dst = peers.local(self.ends);
        for i in 0..self.count {
            let frames = self.look.frames(src, dst, |b| {
                b.tcp(
                    self.source_port.wrapping_add(u16::from(i)),
                    self.destination_port,
                    self.flags,
                )
            });
            steps.extend(frames.into_iter().map(Step::Ingress));
        }
    }
}

impl FullBucket {
    fn expand(&self, peers: &Peers, steps: &mut Vec<Step>) {
        let local = peers.local(self.ends);
        let remote = peers.remote(self.ends);
        let key = |id: u16| Key {
            family: if self.ends.v6 { Family::V6 } else { Family::V4 },
            local: ip_bytes(local),
            remote: ip_bytes(remote),
            local_port: self.client_port,
            remote_port: 53,
            token: Token::Dns(id),
        };
        let bucket = key(self.first_id).bucket();
        let ids: Vec<u16> =
            std::iter::successors(Some(self.first_id), |id| Some(id.wrapping_add(1)))
                .take(1 << 16)
                .filter(|&id| key(id).bucket() == bucket)
                .take(usize::from(self.queries))
                .collect();
        let frame = |src, dst, sport, dport, payload: Vec<u8>| {
            let builder = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s, d),
                (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s, d),
                _ => unreachable!("one family"),
            };
            builder.udp(sport, dport).payload(&payload).build().bytes
        };
        let dns = |id, flags| {
            Dns {
                id,
                flags,
                filler: 0,
                cut: None,
            }
            .bytes()
        };
        for &id in &ids {
            steps.push(Step::Egress(frame(
                local,
                remote,
                self.client_port,
                53,
                dns(id, QUERY_FLAGS),
            )));
        }
        for (i, &id) in ids.iter().enumerate() {
            if self.answered & (1 << i) != 0 {
                steps.push(Step::Ingress(frame(
                    remote,
                    local,
                    53,
                    self.client_port,
                    dns(id, RESPONSE_FLAGS),
                )));
            }
        }
    }
}

/// A TCP segment's frame.
#[allow(clippy::too_many_arguments)]
fn segment(
    look: &Look,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut frames = look.frames(src, dst, |b| {
        b.tcp(sport, dport, flags)
            .tcp_seq_ack(seq, ack)
            .payload(payload)
    });
    assert_eq!(frames.len(), 1, "a segment's look sends it whole");
    frames.remove(0)
}

impl Connections {
    fn expand(&self, peers: &Peers, steps: &mut Vec<Step>) {
        let local = peers.local(self.ends);
        let remote = peers.remote(self.ends);
        let look = &self.look;
        let mut phases: [Vec<Step>; 4] = Default::default();
        let gap = |steps: &mut Vec<Step>| {
            if self.gap_ms > 0 {
                steps.push(Step::Wait {
                    ms: u64::from(self.gap_ms),
                });
            }
        };
        for (i, plan) in self.plans.iter().enumerate() {
            let i = i as u16;
            let cport = self.client_port.wrapping_add(i);
            let client_seq = (self.isn ^ 0x5a5a_5a5a).wrapping_add(u32::from(i) << 20);
            let server_seq = self.isn.wrapping_add(u32::from(i).wrapping_mul(1_000_003));
            let inbound = |flags, seq, ack, payload: &[u8]| {
                Step::Ingress(segment(
                    look, remote, local, cport, self.port, flags, seq, ack, payload,
                ))
            };
            let outbound = |flags, seq, ack| {
                Step::Egress(segment(
                    look,
                    local,
                    remote,
                    self.port,
                    cport,
                    flags,
                    seq,
                    ack,
                    &[],
                ))
            };
            if plan.syn {
                phases[0].push(inbound(tcp_flags::SYN, client_seq, 0, &[]));
            }
            for _ in 0..plan.synacks {
                phases[1].push(outbound(
                    tcp_flags::SYN | tcp_flags::ACK,
                    server_seq,
                    client_seq.wrapping_add(1),
                ));
            }
            let (seq, ack) = (client_seq.wrapping_add(1), server_seq.wrapping_add(1));
            let completion = match plan.completion {
                Completion::Right => Some(inbound(tcp_flags::ACK, seq, ack, &[])),
                Completion::AckOff(d) => {
                    Some(inbound(tcp_flags::ACK, seq, ack.wrapping_add(d), &[]))
                }
                Completion::PortOff(d) => Some(Step::Ingress(segment(
                    look,
                    remote,
                    local,
                    cport.wrapping_add(d),
                    self.port,
                    tcp_flags::ACK,
                    seq,
                    ack,
                    &[],
                ))),
                Completion::SourceOff(other) => Some(Step::Ingress(segment(
                    look,
                    peers.remote(Ends {
                        remote: self.ends.remote.wrapping_add(other),
                        ..self.ends
                    }),
                    local,
                    cport,
                    self.port,
                    tcp_flags::ACK,
                    seq,
                    ack,
                    &[],
                ))),
                Completion::Flags(flags) => Some(inbound(tcp_flags::ACK | flags, seq, ack, &[])),
                Completion::Never => None,
            };
            phases[2].extend(completion);
            let data = b"HELO example.net\r\n";
            let after = &mut phases[3];
            match plan.then {
                Then::Nothing => {}
                Then::Data => after.push(inbound(tcp_flags::ACK | tcp_flags::PSH, seq, ack, data)),
                Then::FinIn => after.push(inbound(tcp_flags::FIN | tcp_flags::ACK, seq, ack, &[])),
                Then::RstIn => after.push(inbound(tcp_flags::RST | tcp_flags::ACK, seq, ack, &[])),
                Then::FinOut => after.push(outbound(tcp_flags::FIN | tcp_flags::ACK, ack, seq)),
                Then::RstOut => after.push(outbound(tcp_flags::RST, ack, 0)),
                Then::DataAfter(ms) => {
                    after.push(inbound(tcp_flags::ACK | tcp_flags::PSH, seq, ack, data));
                    after.push(Step::Wait { ms: u64::from(ms) });
                    after.push(inbound(tcp_flags::ACK, seq, ack, &[]));
                }
            }
            if !self.by_phase {
                for phase in &mut phases {
                    steps.append(phase);
                }
                gap(steps);
            }
        }
        if self.by_phase {
            for mut phase in phases {
                steps.append(&mut phase);
                gap(steps);
            }
        }
    }
}

impl FullHandshakes {
    fn expand(&self, peers: &Peers, seed: u64, steps: &mut Vec<Step>) {
        use filter_common::handshake::HANDSHAKE_BUCKETS;

        use crate::handshakes::Flow;

        let local = peers.local(self.ends);
        let remote = peers.remote(self.ends);
        let flow = |client_port: u16| Flow {
            family: if self.ends.v6 { Family::V6 } else { Family::V4 },
            local: ip_bytes(local),
            remote: ip_bytes(remote),
            local_port: self.port,
            remote_port: client_port,
        };
        let bucket = |port| flow(port).stored().bucket(seed, HANDSHAKE_BUCKETS);
        let first = bucket(self.first_client_port);
        let ports: Vec<u16> =
            std::iter::successors(Some(self.first_client_port), |p| Some(p.wrapping_add(1)))
                .take(1 << 16)
                .filter(|&p| bucket(p) == first)
                .take(usize::from(self.count))
                .collect();
        let look = &self.look;
        let server_seq = |i: usize| self.isn.wrapping_add(i as u32);
        let mut phases: [Vec<Step>; 3] = Default::default();
        for (i, &port) in ports.iter().enumerate() {
            let inbound = |flags, seq, ack| {
                Step::Ingress(segment(
                    look,
                    remote,
                    local,
                    port,
                    self.port,
                    flags,
                    seq,
                    ack,
                    &[],
                ))
            };
            phases[0].push(inbound(tcp_flags::SYN, 7, 0));
            phases[1].push(Step::Egress(segment(
                look,
                local,
                remote,
                self.port,
                port,
                tcp_flags::SYN | tcp_flags::ACK,
                server_seq(i),
                8,
                &[],
            )));
            if self.completed & (1 << i) != 0 {
                phases[2].push(inbound(tcp_flags::ACK, 8, server_seq(i).wrapping_add(1)));
            }
            // In turn, each handshake completes before the next SYN-ACK:
            // the connections, not the handshakes, overfill their bucket.
            if self.in_turn {
                for phase in &mut phases {
                    steps.append(phase);
                }
            }
        }
        for mut phase in phases {
            steps.append(&mut phase);
        }
    }
}
