//! Verdict tests of the connection-aware TCP defence (docs/tcp-connections.md):
//! handshakes recorded by the egress program (TC) from SYN-ACKs and completed
//! through the ingress program (XDP), half-open budgets that completions
//! refund and time drains, per-source connection limits per port with their
//! FIN, RST and idle endings, and what is never limited. Real object,
//! crafted frames, BPF_PROG_TEST_RUN; every packet's verdict and the one
//! counter it moved are checked.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    thread,
    time::{Duration, Instant},
};

use filter_common::{
    Action, Reason,
    conn::{CONN_BUCKETS, CONN_WAYS},
    handshake::{FlowKey, HANDSHAKE_BUCKETS, HANDSHAKE_WAYS},
};
use harness::packet::{Frame, Link, PacketBuilder, addr, tcp_flags::*};
use tests::bpf::{Filter, TC_ACT_OK, XDP_DROP, XDP_PASS, XDP_TX};

const HTTP: u16 = 80;
const SMTP: u16 = 25;
/// The clients' initial sequence number; the server's depends on the port.
const CLIENT_ISN: u32 = 0x0c11_e000;

/// A remote host, talking to us over one kind of link.
#[derive(Clone, Copy, Debug)]
struct Peer {
    remote: IpAddr,
    link: Link,
}

impl Peer {
    fn v4(a: u8, b: u8, c: u8, d: u8) -> Peer {
        Peer {
            remote: Ipv4Addr::new(a, b, c, d).into(),
            link: Link::Plain,
        }
    }

    fn v6(segments: [u16; 8]) -> Peer {
        Peer {
            remote: Ipv6Addr::from(segments).into(),
            link: Link::Plain,
        }
    }

    fn over(self, link: Link) -> Peer {
        Peer { link, ..self }
    }

    /// Our address on the WAN (after NAT) in the peer's family.
    fn local(self) -> IpAddr {
        match self.remote {
            IpAddr::V4(_) => addr::CLIENT_V4.into(),
            IpAddr::V6(_) => addr::CLIENT_V6.into(),
        }
    }

    fn builder(self, inbound: bool) -> PacketBuilder {
        let (src, dst) = if inbound {
            (self.remote, self.local())
        } else {
            (self.local(), self.remote)
        };
        let builder = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s, d),
            _ => unreachable!("one family"),
        };
        self.link.carry(builder)
    }

    /// What no rule matched, in the peer's family.
    fn plain_pass(self) -> Reason {
        match self.remote {
            IpAddr::V4(_) => Reason::PassIpv4,
            IpAddr::V6(_) => Reason::PassIpv6,
        }
    }

    fn to(self, local_port: u16, remote_port: u16) -> Conn {
        Conn {
            peer: self,
            remote_port,
            local_port,
        }
    }
}

/// Address words as the programs read them (wire bytes; IPv4 in word 0).
fn words(ip: IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            core::array::from_fn(|i| {
                u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// One TCP connection from a peer's port to one of ours.
#[derive(Clone, Copy, Debug)]
struct Conn {
    peer: Peer,
    remote_port: u16,
    local_port: u16,
}

impl Conn {
    fn server_isn(self) -> u32 {
        0x5e4f_0000 ^ u32::from(self.remote_port)
    }

    fn key(self) -> FlowKey {
        FlowKey {
            local_addr: words(self.peer.local()),
            remote_addr: words(self.peer.remote),
            local_port: self.local_port,
            remote_port: self.remote_port,
            family: if self.peer.remote.is_ipv6() { 6 } else { 4 },
        }
    }

    fn syn(self) -> Frame {
        self.peer
            .builder(true)
            .tcp(self.remote_port, self.local_port, SYN)
            .tcp_seq_ack(CLIENT_ISN, 0)
            .build()
    }

    /// Our answer to the SYN (through egress).
    fn synack(self) -> Frame {
        self.peer
            .builder(false)
            .tcp(self.local_port, self.remote_port, SYN | ACK)
            .tcp_seq_ack(self.server_isn(), CLIENT_ISN + 1)
            .build()
    }

    /// An inbound segment with these flags acknowledging `ack`.
    fn inbound(self, flags: u8, ack: u32) -> Frame {
        self.peer
            .builder(true)
            .tcp(self.remote_port, self.local_port, flags)
            .tcp_seq_ack(CLIENT_ISN + 1, ack)
            .build()
    }

    /// The ACK that completes the handshake.
    fn ack(self) -> Frame {
        self.inbound(ACK, self.server_isn().wrapping_add(1))
    }

    /// Data on the established connection.
    fn data(self) -> Frame {
        self.peer
            .builder(true)
            .tcp(self.remote_port, self.local_port, PSH | ACK)
            .tcp_seq_ack(CLIENT_ISN + 1, self.server_isn().wrapping_add(1))
            .payload(b"HELO mail.example\r\n")
            .build()
    }

    /// An outbound segment from our port with these flags.
    fn outbound(self, flags: u8) -> Frame {
        self.peer
            .builder(false)
            .tcp(self.local_port, self.remote_port, flags)
            .tcp_seq_ack(self.server_isn().wrapping_add(1), CLIENT_ISN + 1)
            .build()
    }

    /// SYN admitted, SYN-ACK recorded, ACK completing with `completed`.
    #[track_caller]
    fn open(self, filter: &Filter, completed: Reason) {
        inbound(filter, &self.syn(), Reason::PassSyn);
        outbound(filter, &self.synack(), Reason::EgressHandshakeRecorded);
        inbound(filter, &self.ack(), completed);
    }
}

/// Runs `frame` through ingress: its verdict must be `reason`'s action and
/// exactly `reason` must have counted it.
#[track_caller]
fn inbound(filter: &Filter, frame: &Frame, reason: Reason) {
    let before = filter.counts();
    let verdict = filter.ingress(frame);
    let expected = match reason.action() {
        Action::Pass => XDP_PASS,
        Action::Drop => XDP_DROP,
        Action::Tx => XDP_TX,
    };
    assert_eq!(verdict, expected, "verdict, expected {}", reason.name());
    filter.assert_moved(&before, &[(reason, 1, frame.len() as u64)], reason.name());
}

/// Runs `frame` through egress, which never drops: exactly `reason` counts it.
#[track_caller]
fn outbound(filter: &Filter, frame: &Frame, reason: Reason) {
    let before = filter.counts();
    assert_eq!(filter.egress(frame), TC_ACT_OK);
    filter.assert_moved(&before, &[(reason, 1, frame.len() as u64)], reason.name());
}

/// A filter with the SYN rate buckets off and these settings.
fn without_rates(settings: &[(&str, &str)]) -> Filter {
    let mut filter = Filter::load();
    filter.set(&[
        ("syn_source_rate", "off"),
        ("syn_prefix_rate", "off"),
        ("syn_global_rate", "off"),
    ]);
    filter.set(settings);
    filter
}

const SOURCE_BUDGET_2: &[(&str, &str)] = &[
    ("syn_halfopen_budget", "2"),
    ("syn_halfopen_prefix_budget", "off"),
];

fn peers() -> Vec<Peer> {
    let v4 = Peer::v4(198, 51, 100, 7);
    let v6 = Peer::v6([0x2001, 0xdb8, 7, 1, 0, 0, 0, 7]);
    Link::ALL
        .iter()
        .flat_map(|&link| [v4.over(link), v6.over(link)])
        .collect()
}

#[test]
fn only_the_right_ack_completes_a_handshake_and_gives_the_unit_back() {
    for peer in peers() {
        let filter = without_rates(SOURCE_BUDGET_2);
        let (a, b, c) = (
            peer.to(HTTP, 40001),
            peer.to(HTTP, 40002),
            peer.to(HTTP, 40003),
        );
        inbound(&filter, &a.syn(), Reason::PassSyn);
        outbound(&filter, &a.synack(), Reason::EgressHandshakeRecorded);
        inbound(&filter, &b.syn(), Reason::PassSyn);
        inbound(&filter, &c.syn(), Reason::DropSynHalfopen);
        // One off either way, or a RST with the right number: no completion.
        let isn = a.server_isn();
        for wrong in [
            a.inbound(ACK, isn),
            a.inbound(ACK, isn.wrapping_add(2)),
            a.inbound(RST | ACK, isn.wrapping_add(1)),
            a.inbound(RST, isn.wrapping_add(1)),
        ] {
            inbound(&filter, &wrong, peer.plain_pass());
            inbound(&filter, &c.syn(), Reason::DropSynHalfopen);
        }
        // The right one, once.
        inbound(&filter, &a.ack(), Reason::PassHandshake);
        inbound(&filter, &a.ack(), peer.plain_pass());
        inbound(&filter, &c.syn(), Reason::PassSyn);
        inbound(
            &filter,
            &peer.to(HTTP, 40004).syn(),
            Reason::DropSynHalfopen,
        );
    }
}

#[test]
fn nobody_else_completes_a_handshake() {
    for v6 in [false, true] {
        let peer = if v6 {
            Peer::v6([0x2001, 0xdb8, 7, 1, 0, 0, 0, 7])
        } else {
            Peer::v4(198, 51, 100, 7)
        };
        let filter = without_rates(SOURCE_BUDGET_2);
        let a = peer.to(HTTP, 40001);
        inbound(&filter, &a.syn(), Reason::PassSyn);
        outbound(&filter, &a.synack(), Reason::EgressHandshakeRecorded);
        // The right number from another port, another host, to another port
        // of ours: a spoofer guessing would need the whole 4-tuple too.
        let elsewhere = if v6 {
            Peer::v6([0x2001, 0xdb8, 7, 1, 0, 0, 0, 8])
        } else {
            Peer::v4(198, 51, 100, 8)
        };
        let isn = a.server_isn().wrapping_add(1);
        for (conn, why) in [
            (peer.to(HTTP, 40002), "another remote port"),
            (elsewhere.to(HTTP, 40001), "another host"),
        ] {
            let before = filter.counts();
            assert_eq!(filter.ingress(&conn.inbound(ACK, isn)), XDP_PASS);
            let frame = conn.inbound(ACK, isn);
            filter.assert_moved(&before, &[(peer.plain_pass(), 1, frame.len() as u64)], why);
        }
        inbound(
            &filter,
            &peer.to(443, 40001).inbound(ACK, isn),
            peer.plain_pass(),
        );
        // The real client still completes.
        inbound(&filter, &a.ack(), Reason::PassHandshake);
    }
}

#[test]
fn a_retransmitted_synack_is_one_handshake() {
    let filter = without_rates(SOURCE_BUDGET_2);
    let a = Peer::v4(198, 51, 100, 7).to(HTTP, 40001);
    inbound(&filter, &a.syn(), Reason::PassSyn);
    for _ in 0..3 {
        outbound(&filter, &a.synack(), Reason::EgressHandshakeRecorded);
    }
    inbound(&filter, &a.ack(), Reason::PassHandshake);
    inbound(&filter, &a.ack(), Reason::PassIpv4);
}

/// Sleeps until the programs' coarse clock has surely moved `at_least` past
/// `since` (its tick may lag real time by 10 ms at HZ=100).
fn sleep_past(since: Instant, at_least: Duration) {
    let until = since + at_least + Duration::from_millis(30);
    thread::sleep(until.saturating_duration_since(Instant::now()));
}

#[test]
fn unanswered_units_and_handshakes_expire_after_the_timeout() {
    let filter = without_rates(&[
        ("syn_halfopen_budget", "2"),
        ("syn_halfopen_prefix_budget", "off"),
        ("syn_halfopen_timeout", "1s"),
    ]);
    let peer = Peer::v4(198, 51, 100, 7);
    let a = peer.to(HTTP, 40001);
    inbound(&filter, &a.syn(), Reason::PassSyn);
    outbound(&filter, &a.synack(), Reason::EgressHandshakeRecorded);
    inbound(&filter, &peer.to(HTTP, 40002).syn(), Reason::PassSyn);
    let spent = Instant::now();
    inbound(
        &filter,
        &peer.to(HTTP, 40003).syn(),
        Reason::DropSynHalfopen,
    );
    sleep_past(spent, Duration::from_secs(1));
    // Both units are back; the handshake expired with them.
    inbound(&filter, &a.ack(), Reason::PassIpv4);
    inbound(&filter, &peer.to(HTTP, 40004).syn(), Reason::PassSyn);
    inbound(&filter, &peer.to(HTTP, 40005).syn(), Reason::PassSyn);
    inbound(
        &filter,
        &peer.to(HTTP, 40006).syn(),
        Reason::DropSynHalfopen,
    );
}

#[test]
fn a_prefix_shares_one_budget() {
    let filter = without_rates(&[
        ("syn_halfopen_budget", "off"),
        ("syn_halfopen_prefix_budget", "3"),
    ]);
    let host = |n| Peer::v4(203, 0, 113, n);
    let first = host(1).to(SMTP, 40001);
    inbound(&filter, &first.syn(), Reason::PassSyn);
    outbound(&filter, &first.synack(), Reason::EgressHandshakeRecorded);
    inbound(&filter, &host(2).to(SMTP, 40001).syn(), Reason::PassSyn);
    inbound(&filter, &host(3).to(SMTP, 40001).syn(), Reason::PassSyn);
    inbound(
        &filter,
        &host(4).to(SMTP, 40001).syn(),
        Reason::DropSynHalfopenPrefix,
    );
    // Another /24 has its own; IPv6: the /48 by default.
    inbound(
        &filter,
        &Peer::v4(198, 51, 100, 4).to(SMTP, 1).syn(),
        Reason::PassSyn,
    );
    // A completion in the prefix frees a unit for any of its hosts.
    inbound(&filter, &first.ack(), Reason::PassHandshake);
    inbound(&filter, &host(4).to(SMTP, 40001).syn(), Reason::PassSyn);
    inbound(
        &filter,
        &host(5).to(SMTP, 40001).syn(),
        Reason::DropSynHalfopenPrefix,
    );
}

#[test]
fn ipv6_sources_share_their_64s_budget_and_prefixes_their_48s() {
    let filter = without_rates(&[
        ("syn_halfopen_budget", "2"),
        ("syn_halfopen_prefix_budget", "3"),
    ]);
    let in_64 = |host| Peer::v6([0x2001, 0xdb8, 9, 1, 0, 0, 0, host]);
    inbound(&filter, &in_64(1).to(HTTP, 1).syn(), Reason::PassSyn);
    inbound(&filter, &in_64(2).to(HTTP, 1).syn(), Reason::PassSyn);
    inbound(
        &filter,
        &in_64(3).to(HTTP, 1).syn(),
        Reason::DropSynHalfopen,
    );
    let other_64 = Peer::v6([0x2001, 0xdb8, 9, 2, 0, 0, 0, 1]);
    inbound(&filter, &other_64.to(HTTP, 1).syn(), Reason::PassSyn);
    let same_48 = Peer::v6([0x2001, 0xdb8, 9, 3, 0, 0, 0, 1]);
    inbound(
        &filter,
        &same_48.to(HTTP, 1).syn(),
        Reason::DropSynHalfopenPrefix,
    );
    let other_48 = Peer::v6([0x2001, 0xdb8, 0xa, 3, 0, 0, 0, 1]);
    inbound(&filter, &other_48.to(HTTP, 1).syn(), Reason::PassSyn);
}

#[test]
fn a_client_that_completes_its_handshakes_is_never_limited() {
    // The defaults: a browser reloading a page three times, 12 parallel
    // connections each time: every SYN of a burst arrives before any of its
    // handshakes completes.
    let filter = Filter::load();
    let browser = Peer::v4(198, 51, 100, 20);
    for burst in 0..3u16 {
        let conns: Vec<Conn> = (0..12)
            .map(|n| browser.to(443, 50000 + burst * 12 + n))
            .collect();
        for conn in &conns {
            inbound(&filter, &conn.syn(), Reason::PassSyn);
            outbound(&filter, &conn.synack(), Reason::EgressHandshakeRecorded);
        }
        for conn in &conns {
            inbound(&filter, &conn.ack(), Reason::PassHandshake);
        }
    }
    // And a client opening connection after connection, far past its
    // budget of 16 (the rate buckets off: this is about the budget).
    let filter = without_rates(&[]);
    assert_eq!(filter.config().syn_halfopen_budget, 16);
    for port in 0..500 {
        browser
            .to(443, 10000 + port)
            .open(&filter, Reason::PassHandshake);
    }
    // A flooder that never completes: 16, then nothing.
    let flooder = Peer::v4(203, 0, 113, 66);
    for port in 0..16 {
        inbound(&filter, &flooder.to(HTTP, port + 1).syn(), Reason::PassSyn);
    }
    inbound(
        &filter,
        &flooder.to(HTTP, 99).syn(),
        Reason::DropSynHalfopen,
    );
}

#[test]
fn connections_count_until_fin_or_rst_in_either_direction() {
    for v6 in [false, true] {
        let mut filter = without_rates(&[]);
        filter.set(&[("conn_limit", "25:2")]);
        let holder = if v6 {
            Peer::v6([0x2001, 0xdb8, 0x66, 1, 0, 0, 0, 1])
        } else {
            Peer::v4(203, 0, 113, 66)
        };
        let c = |port| holder.to(SMTP, port);
        c(1).open(&filter, Reason::PassHandshake);
        c(2).open(&filter, Reason::PassHandshake);
        inbound(&filter, &c(3).syn(), Reason::DropConnLimit);
        // Packets of a counted connection keep it counting.
        inbound(&filter, &c(1).data(), holder.plain_pass());
        inbound(&filter, &c(3).syn(), Reason::DropConnLimit);
        // Its FIN ends it; the FIN of the other direction finds nothing more.
        inbound(
            &filter,
            &c(1).inbound(FIN | ACK, c(1).server_isn() + 1),
            Reason::PassConnClosed,
        );
        outbound(&filter, &c(1).outbound(FIN | ACK), Reason::EgressOther);
        c(3).open(&filter, Reason::PassHandshake);
        inbound(&filter, &c(4).syn(), Reason::DropConnLimit);
        // Our FIN, our RST, their RST.
        outbound(&filter, &c(2).outbound(FIN | ACK), Reason::EgressConnClosed);
        c(4).open(&filter, Reason::PassHandshake);
        outbound(&filter, &c(3).outbound(RST), Reason::EgressConnClosed);
        inbound(&filter, &c(3).inbound(RST, 0), holder.plain_pass());
        c(5).open(&filter, Reason::PassHandshake);
        inbound(&filter, &c(6).syn(), Reason::DropConnLimit);
        inbound(&filter, &c(4).inbound(RST, 0), Reason::PassConnClosed);
        c(6).open(&filter, Reason::PassHandshake);
        inbound(&filter, &c(7).syn(), Reason::DropConnLimit);
    }
}

#[test]
fn the_limit_is_per_source_and_per_port() {
    let mut filter = without_rates(&[]);
    filter.set(&[("conn_limit", "25:1,80:2")]);
    let holder = Peer::v4(203, 0, 113, 66);
    holder.to(SMTP, 1).open(&filter, Reason::PassHandshake);
    inbound(&filter, &holder.to(SMTP, 2).syn(), Reason::DropConnLimit);
    // Port 80 has its own limit, 443 none.
    holder.to(HTTP, 3).open(&filter, Reason::PassHandshake);
    holder.to(HTTP, 4).open(&filter, Reason::PassHandshake);
    inbound(&filter, &holder.to(HTTP, 5).syn(), Reason::DropConnLimit);
    for port in 6..30 {
        holder.to(443, port).open(&filter, Reason::PassHandshake);
    }
    // Another source has its own, also in the same /24 and IPv6 /64s apart.
    Peer::v4(203, 0, 113, 67)
        .to(SMTP, 1)
        .open(&filter, Reason::PassHandshake);
    let v6 = |net: u16| Peer::v6([0x2001, 0xdb8, 0x66, net, 0, 0, 0, 1]);
    v6(1).to(SMTP, 1).open(&filter, Reason::PassHandshake);
    inbound(
        &filter,
        &Peer::v6([0x2001, 0xdb8, 0x66, 1, 0, 0, 0, 2])
            .to(SMTP, 2)
            .syn(),
        Reason::DropConnLimit,
    );
    v6(2).to(SMTP, 1).open(&filter, Reason::PassHandshake);
    // Changing the limit applies to the next SYN.
    filter.set(&[("conn_limit", "25:2")]);
    holder.to(SMTP, 2).open(&filter, Reason::PassHandshake);
    filter.set(&[("conn_limit", "none")]);
    inbound(&filter, &holder.to(HTTP, 5).syn(), Reason::PassSyn);
}

#[test]
fn a_burst_of_syns_gets_no_more_than_the_limit_in_flight() {
    let mut filter = without_rates(&[]);
    filter.set(&[("conn_limit", "25:3")]);
    let holder = Peer::v4(203, 0, 113, 66);
    // Fifteen at once, none completed yet: three are in flight, the rest wait.
    for port in 1..=15 {
        let reason = if port <= 3 {
            Reason::PassSyn
        } else {
            Reason::DropConnLimit
        };
        inbound(&filter, &holder.to(SMTP, port).syn(), reason);
    }
    // Completing turns them into connections; the limit holds.
    for port in 1..=3 {
        let conn = holder.to(SMTP, port);
        outbound(&filter, &conn.synack(), Reason::EgressHandshakeRecorded);
        inbound(&filter, &conn.ack(), Reason::PassHandshake);
    }
    inbound(&filter, &holder.to(SMTP, 16).syn(), Reason::DropConnLimit);
}

#[test]
fn handshakes_in_flight_to_a_limited_port_are_free_again_after_a_second() {
    let mut filter = without_rates(&[]);
    filter.set(&[("conn_limit", "25:2")]);
    let spoofed = Peer::v4(203, 0, 113, 99);
    inbound(&filter, &spoofed.to(SMTP, 1).syn(), Reason::PassSyn);
    inbound(&filter, &spoofed.to(SMTP, 2).syn(), Reason::PassSyn);
    let spent = Instant::now();
    inbound(&filter, &spoofed.to(SMTP, 3).syn(), Reason::DropConnLimit);
    sleep_past(spent, Duration::from_secs(2));
    inbound(&filter, &spoofed.to(SMTP, 4).syn(), Reason::PassSyn);
}

#[test]
fn idle_connections_stop_counting_and_active_ones_do_not() {
    let mut filter = without_rates(&[]);
    filter.set(&[("conn_limit", "25:2"), ("conn_idle_timeout", "1s")]);
    let holder = Peer::v4(203, 0, 113, 66);
    let (idle, active) = (holder.to(SMTP, 1), holder.to(SMTP, 2));
    idle.open(&filter, Reason::PassHandshake);
    active.open(&filter, Reason::PassHandshake);
    let opened = Instant::now();
    inbound(&filter, &holder.to(SMTP, 3).syn(), Reason::DropConnLimit);
    // Twice the idle timeout, with a packet on one connection every 400 ms.
    while opened.elapsed() < Duration::from_millis(2100) {
        thread::sleep(Duration::from_millis(400));
        inbound(&filter, &active.data(), Reason::PassIpv4);
    }
    sleep_past(opened, Duration::from_millis(2000));
    inbound(&filter, &active.data(), Reason::PassIpv4);
    // The idle one counts no more: one SYN gets through, the next does not.
    holder.to(SMTP, 3).open(&filter, Reason::PassHandshake);
    inbound(&filter, &holder.to(SMTP, 4).syn(), Reason::DropConnLimit);
    // The idle one's late FIN ends nothing that counts.
    inbound(
        &filter,
        &idle.inbound(FIN | ACK, idle.server_isn() + 1),
        Reason::PassConnClosed,
    );
    inbound(&filter, &holder.to(SMTP, 4).syn(), Reason::DropConnLimit);
}

#[test]
fn an_idle_connection_that_wakes_up_counts_again() {
    let mut filter = without_rates(&[]);
    filter.set(&[("conn_limit", "25:1"), ("conn_idle_timeout", "1s")]);
    let holder = Peer::v4(203, 0, 113, 66);
    let conn = holder.to(SMTP, 1);
    conn.open(&filter, Reason::PassHandshake);
    let opened = Instant::now();
    sleep_past(opened, Duration::from_secs(2));
    inbound(&filter, &conn.data(), Reason::PassIpv4);
    inbound(&filter, &holder.to(SMTP, 2).syn(), Reason::DropConnLimit);
}

#[test]
fn the_gateways_own_connections_are_never_limited_nor_counted() {
    let mut filter = Filter::load();
    filter.set(&[
        ("syn_source_burst", "1"),
        ("syn_halfopen_budget", "1"),
        ("conn_limit", "40000:1,443:1"),
    ]);
    let server = Peer::v4(198, 51, 100, 53);
    // Our SYN out, the server's SYN-ACK in, our ACK out, data both ways,
    // FINs: on our ephemeral port, which egress never saw answer a SYN.
    let ours = server.to(40000, 443);
    let syn_out = ours.outbound(SYN);
    let synack_in = ours.inbound(SYN | ACK, 1);
    for _ in 0..20 {
        outbound(&filter, &syn_out, Reason::EgressOther);
        inbound(&filter, &synack_in, Reason::PassIpv4);
        outbound(&filter, &ours.outbound(ACK), Reason::EgressOther);
        inbound(&filter, &ours.data(), Reason::PassIpv4);
        inbound(&filter, &ours.inbound(FIN | ACK, 1), Reason::PassIpv4);
        outbound(&filter, &ours.outbound(FIN | ACK), Reason::EgressOther);
    }
    // Inbound SYN-ACKs are never limited, even from a source whose budget
    // and bucket are spent.
    let flooder = Peer::v4(203, 0, 113, 66);
    inbound(&filter, &flooder.to(HTTP, 1).syn(), Reason::PassSyn);
    inbound(&filter, &flooder.to(HTTP, 2).syn(), Reason::DropSynSource);
    inbound(
        &filter,
        &flooder.to(HTTP, 3).inbound(SYN | ACK, 1),
        Reason::PassIpv4,
    );
}

#[test]
fn segments_to_ports_that_never_answered_a_syn_pay_one_check() {
    let filter = without_rates(SOURCE_BUDGET_2);
    let peer = Peer::v4(198, 51, 100, 7);
    let conn = peer.to(HTTP, 40001);
    inbound(&filter, &conn.syn(), Reason::PassSyn);
    // No SYN-ACK yet: port 80 is not a service, the right number is nothing.
    inbound(&filter, &conn.ack(), Reason::PassIpv4);
    outbound(&filter, &conn.synack(), Reason::EgressHandshakeRecorded);
    inbound(&filter, &conn.ack(), Reason::PassHandshake);
}

#[test]
fn in_monitor_mode_over_budget_syns_pass_uncharged() {
    let mut filter = without_rates(SOURCE_BUDGET_2);
    filter.set(&[("monitor", "on"), ("conn_limit", "25:1")]);
    let peer = Peer::v4(198, 51, 100, 7);
    let syn = peer.to(HTTP, 1).syn();
    let len = syn.len() as u64;
    let before = filter.counts();
    assert_eq!(filter.try_ingress(&syn, 5).unwrap(), XDP_PASS);
    filter.assert_moved_and_would_drop(
        &before,
        &[(Reason::PassSyn, 2, 2 * len)],
        &[(Reason::DropSynHalfopen, 3, 3 * len)],
        "monitor mode",
    );
    let holder = Peer::v4(203, 0, 113, 66);
    holder.to(SMTP, 1).open(&filter, Reason::PassHandshake);
    let second = holder.to(SMTP, 2).syn();
    let before = filter.counts();
    assert_eq!(filter.ingress(&second), XDP_PASS);
    filter.assert_moved_and_would_drop(
        &before,
        &[],
        &[(Reason::DropConnLimit, 1, second.len() as u64)],
        "monitor mode, connection limit",
    );
}

/// `n` connections from one peer whose keys share one bucket of a table: the
/// first bucket that `n` of the peer's remote ports fall into (about 4 ports
/// fall into each of 16,384 buckets, so a given bucket often has fewer).
fn sharing_a_bucket(filter: &Filter, peer: Peer, port: u16, buckets: u32, n: usize) -> Vec<Conn> {
    let seed = filter.config().syn_hash_seed;
    let mut by_bucket: HashMap<u32, Vec<Conn>> = HashMap::new();
    for remote_port in 1024..u16::MAX {
        let conn = peer.to(port, remote_port);
        let sharing = by_bucket
            .entry(conn.key().bucket(seed, buckets))
            .or_default();
        sharing.push(conn);
        if sharing.len() == n {
            return sharing.clone();
        }
    }
    panic!("no {n} of the peer's remote ports share one of {buckets} buckets");
}

#[test]
fn a_full_handshake_bucket_evicts_the_handshake_closest_to_expiry() {
    let filter = without_rates(&[
        ("syn_halfopen_budget", "off"),
        ("syn_halfopen_prefix_budget", "off"),
    ]);
    let peer = Peer::v4(198, 51, 100, 7);
    let ways = HANDSHAKE_WAYS as usize;
    let conns = sharing_a_bucket(&filter, peer, HTTP, HANDSHAKE_BUCKETS, ways + 1);
    for conn in &conns[..ways] {
        inbound(&filter, &conn.syn(), Reason::PassSyn);
        outbound(&filter, &conn.synack(), Reason::EgressHandshakeRecorded);
        // Deadlines a clock tick apart: the first is the closest to expiry.
        thread::sleep(Duration::from_millis(15));
    }
    let last = conns[ways];
    inbound(&filter, &last.syn(), Reason::PassSyn);
    outbound(&filter, &last.synack(), Reason::EgressHandshakeEvicted);
    inbound(&filter, &conns[0].ack(), Reason::PassIpv4);
    for conn in &conns[1..] {
        inbound(&filter, &conn.ack(), Reason::PassHandshake);
    }
}

#[test]
fn a_full_connection_bucket_evicts_the_least_recently_active() {
    let mut filter = without_rates(&[]);
    filter.set(&[("conn_limit", "25:10")]);
    let holder = Peer::v4(203, 0, 113, 66);
    let ways = CONN_WAYS as usize;
    let conns = sharing_a_bucket(&filter, holder, SMTP, CONN_BUCKETS, ways + 1);
    for conn in &conns[..ways] {
        conn.open(&filter, Reason::PassHandshake);
    }
    conns[ways].open(&filter, Reason::PassConnEvicted);
    // Five opened, one evicted: four count. With a limit of 5 one more fits.
    filter.set(&[("conn_limit", "25:5")]);
    holder.to(SMTP, 1).open(&filter, Reason::PassHandshake);
    inbound(&filter, &holder.to(SMTP, 2).syn(), Reason::DropConnLimit);
    // The evicted connection's FIN ends nothing.
    let evicted = conns[0];
    inbound(
        &filter,
        &evicted.inbound(FIN | ACK, evicted.server_isn() + 1),
        Reason::PassIpv4,
    );
}
