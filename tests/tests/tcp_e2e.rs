//! End-to-end tests of the connection-aware TCP defence with the default
//! settings, as the issue describes its incidents: a browser's bursts of
//! parallel connections while a host floods SYNs it never completes, and a
//! host holding an SMTP server's slots while mail has to get in. The real
//! `filter-ctl` attaches the filter to the lab gateway's `wan0`; servers run
//! in the gateway (harness::servers), clients and the flooder on WAN hosts.
//!
//! What reached the gateway's stack is counted by nftables (a netdev ingress
//! chain on `wan0`, after XDP) and what the clients sent by nftables in their
//! own namespaces, independently of the filter's counters.
//!
//! Needs root; every test builds its own lab and removes it however it ends.

use std::{
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use filter_common::Reason;
use harness::{
    fixture::FilterLab,
    lab::{LAN_IF, StackCounters, Topology, WAN_IF, addr, measure},
    netns::Netns,
    servers::{
        http::{HttpClient, HttpServer},
        smtp::{SmtpClient, SmtpServer, hold_slots},
    },
    traffic::{
        StopOnDrop,
        sources::Prefix,
        syn::{self, SynFlood},
    },
};

const HTTP: u16 = 80;
const SMTP: u16 = 25;

/// The lab with `hosts` WAN hosts, the filter attached with its defaults.
fn lab(hosts: usize) -> FilterLab {
    let mut lab = FilterLab::build();
    for _ in 0..hosts {
        lab.topo.add_wan_host().expect("adding a WAN host");
    }
    lab.attach(None);
    lab
}

fn host_addr(n: u8) -> IpAddr {
    addr::wan_host4(n).into()
}

fn counters(ns: &Netns, family: &str, table: &str) -> StackCounters {
    StackCounters::parse(
        &ns.run(["nft", "list", "counters", "table", family, table])
            .unwrap(),
    )
    .unwrap()
}

/// `parallel` connections at once, each making one request; `bursts` times,
/// a burst starting every `every`. Per connection: Ok(connect time) or the error.
fn browse(
    host: &Netns,
    to: SocketAddr,
    bursts: usize,
    parallel: usize,
    every: Duration,
) -> Vec<Result<Duration, String>> {
    let mut results = Vec::new();
    let start = Instant::now();
    for burst in 0..bursts {
        let due = start + every * burst as u32;
        thread::sleep(due.saturating_duration_since(Instant::now()));
        thread::scope(|scope| {
            let connections: Vec<_> = (0..parallel)
                .map(|_| {
                    scope.spawn(|| {
                        let started = Instant::now();
                        let mut client = HttpClient::connect(host, to, Duration::from_secs(5))
                            .map_err(|err| format!("{err:#}"))?;
                        let connected = started.elapsed();
                        client.get().map_err(|err| format!("{err:#}"))?;
                        Ok(connected)
                    })
                })
                .collect();
            results.extend(connections.into_iter().map(|c| c.join().unwrap()));
        });
    }
    results
}

#[test]
fn a_browser_gets_every_connection_while_a_half_open_flooder_is_cut_to_its_budget() {
    let lab = lab(2);
    let (flooder, browser) = (&lab.topo.wan_hosts[0], &lab.topo.wan_hosts[1]);
    let (flooder_ip, browser_ip) = (host_addr(0), host_addr(1));
    let _server = HttpServer::start(lab.gw(), Topology::gateway_wan(false, HTTP)).unwrap();
    measure::count_syns_at_gateway(
        &lab.topo,
        "tcp_e2e",
        &[("flooder", flooder_ip), ("browser", browser_ip)],
    )
    .unwrap();
    // The flooder never answers the gateway's SYN-ACKs (no RST either): its
    // handshakes stay half-open, as in the incident. The browser counts the
    // SYNs it sends, retransmissions included.
    syn::never_answer_synacks(flooder).unwrap();
    browser
        .nft(&format!(
            "table inet browser {{\n    counter syns {{ }}\n    chain output {{\n        \
             type filter hook output priority 0; policy accept;\n        \
             ip daddr {} tcp dport {HTTP} tcp flags & (syn | ack) == syn counter name \"syns\"\n    \
             }}\n}}\n",
            addr::GW_WAN4
        ))
        .unwrap();
    let defaults = lab.config();
    for (key, value) in [
        ("syn_halfopen_budget", "16"),
        ("syn_halfopen_timeout", "1m"),
        ("syn_source_burst", "40"),
        ("conn_limit", "none"),
    ] {
        assert_eq!(lab.setting(key), value, "{defaults}");
    }

    let start = lab.stats();
    let mut flood = SynFlood::new(flooder, LAN_IF, lab.gw().mac(WAN_IF).unwrap()).unwrap();
    let to = Topology::gateway_wan(false, HTTP);
    let stop = AtomicBool::new(false);
    let (sent, results) = thread::scope(|scope| {
        let flooding = scope.spawn(|| {
            // One host, 3 SYNs a second with ever-changing source ports.
            flood
                .send_for(
                    Prefix::host(flooder_ip).unwrap(),
                    to,
                    Duration::from_secs(20),
                    3,
                )
                .unwrap()
        });
        let _stop = StopOnDrop(&stop);
        // The flooder's budget is spent after 16 SYNs (about 5 s); then a
        // browser reloads a page three times, 12 connections each, within a second.
        thread::sleep(Duration::from_secs(7));
        let results = browse(browser, to, 3, 12, Duration::from_millis(400));
        (flooding.join().unwrap(), results)
    });
    let (stats, stack) = lab.snapshot(|| counters(lab.gw(), "netdev", "tcp_e2e"));
    let delta = stats.since(&start);
    let browser_syns = counters(browser, "inet", "browser").packets("syns");
    let synacks = counters(flooder, "inet", "flooder").packets("synacks");

    let ok = results.iter().filter(|r| r.is_ok()).count();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let slowest = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .max()
        .copied()
        .unwrap_or_default();
    assert_eq!(ok, 36, "browser connections: {failures:?}");
    // Not one SYN of the browser was dropped: none had to be sent again.
    assert_eq!(
        browser_syns, 36,
        "the browser's SYNs, retransmissions included"
    );
    assert_eq!(stack.packets("browser"), 36);
    delta.assert_shown(
        Reason::PassHandshake,
        stack.packets("browser"),
        "the browser's SYNs at the stack (each completed its handshake)",
    );

    // The flooder: its half-open budget, then one more every 3.75 s.
    let passed = stack.packets("flooder");
    let secs = sent.duration().as_secs_f64();
    let most = 16 + (secs / 3.75).floor() as u64 + 1;
    assert!(
        (16..=most).contains(&passed),
        "half-open flooder: {passed} of {} SYNs reached the stack in {secs:.1} s, expected 16..={most}",
        sent.frames
    );
    assert_eq!(delta.packets(Reason::PassSyn), passed + 36);
    delta.assert_shown(
        Reason::DropSynHalfopen,
        sent.frames - passed,
        "the flooder's SYNs sent less those at the stack",
    );
    assert_eq!(
        delta.packets(Reason::DropSynSource),
        0,
        "3/s is within its bucket"
    );
    // The gateway answered each SYN that reached it (and repeated some answers).
    assert!(synacks >= passed, "{synacks} SYN-ACKs for {passed} SYNs");
    assert_eq!(delta.packets(Reason::EgressHandshakeEvicted), 0);

    let status = lab.status();
    let in_use = |name: &str| status.map(name).expect(name).entries.unwrap();
    assert_eq!(in_use("SERVICE_PORTS"), 1, "port 80");
    assert!(in_use("HALFOPEN_SOURCES") >= 1, "the flooder's units");
    assert!(
        in_use("HANDSHAKES") >= 1,
        "the flooder's half-open handshakes"
    );

    eprintln!(
        "browser: {ok}/36 connections (slowest connect {slowest:?}), {browser_syns} SYNs sent; \
         half-open flooder: {} SYNs sent in {secs:.1} s, {passed} reached the stack, \
         {} dropped as drop_syn_halfopen, {synacks} SYN-ACKs came back to it",
        sent.frames,
        delta.packets(Reason::DropSynHalfopen)
    );
}

#[test]
fn with_conn_limit_a_slot_holder_keeps_three_sessions_and_every_delivery_succeeds() {
    let lab = lab(4);
    let hosts = &lab.topo.wan_hosts;
    let (holder, senders) = (&hosts[0], &hosts[1..4]);
    let holder_ip = host_addr(0);
    let to = Topology::gateway_wan(false, SMTP);
    let server = SmtpServer::start(lab.gw(), to, 15).unwrap();
    measure::count_syns_at_gateway(
        &lab.topo,
        "smtp_e2e",
        &[
            ("holder", holder_ip),
            ("sender1", host_addr(1)),
            ("sender2", host_addr(2)),
            ("sender3", host_addr(3)),
        ],
    )
    .unwrap();

    // Without a limit (the default) the holder takes all 15 slots, and mail
    // is refused.
    assert_eq!(lab.setting("conn_limit"), "none");
    let held: Vec<SmtpClient> = (0..15)
        .map(|n| {
            let mut client = SmtpClient::connect(holder, to, Duration::from_secs(3))
                .unwrap_or_else(|err| panic!("holder session {n}: {err:#}"));
            client.helo("holder.example").unwrap();
            client
        })
        .collect();
    assert_eq!(server.stats().sessions[&holder_ip], 15);
    let refused = SmtpClient::connect(&senders[0], to, Duration::from_secs(3))
        .err()
        .expect("no slot for the sender");
    assert!(format!("{refused:#}").contains("421"), "{refused:#}");
    drop(held);
    harness::process::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        Ok(server.stats().in_use() == 0)
    })
    .unwrap();
    server.reset_peaks();

    // The limit, as an operator sets it.
    lab.set(&["conn_limit=25:3"]);
    assert_eq!(lab.setting("conn_limit"), "25:3");
    let start = lab.stats();
    let stack_start = counters(lab.gw(), "netdev", "smtp_e2e");
    let stop = AtomicBool::new(false);
    let (opened, deliveries, status) = thread::scope(|scope| {
        let holding = scope.spawn(|| hold_slots(holder, to, 15, &stop));
        let _stop = StopOnDrop(&stop);
        thread::sleep(Duration::from_millis(500));
        // Three senders, one message a second each, for ten seconds.
        let sending: Vec<_> = senders
            .iter()
            .enumerate()
            .map(|(n, sender)| {
                scope.spawn(move || {
                    let started = Instant::now();
                    (0..10)
                        .map(|i| {
                            let due = started + Duration::from_secs(i);
                            thread::sleep(due.saturating_duration_since(Instant::now()));
                            SmtpClient::connect(sender, to, Duration::from_secs(5))
                                .and_then(|client| {
                                    client.deliver(
                                        &format!("sender{n}@relay.example"),
                                        "owner@gw.example",
                                        &format!("message {i}"),
                                    )
                                })
                                .map_err(|err| format!("sender {n}, message {i}: {err:#}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let deliveries: Vec<Result<(), String>> = sending
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect();
        let status = lab.status();
        stop.store(true, Ordering::Relaxed);
        (holding.join().unwrap(), deliveries, status)
    });
    let (stats, stack) = lab.snapshot(|| counters(lab.gw(), "netdev", "smtp_e2e"));
    let (delta, stack) = (stats.since(&start), stack.since(&stack_start));
    let stats = server.stats();

    let ok = deliveries.iter().filter(|d| d.is_ok()).count();
    let failures: Vec<&String> = deliveries.iter().filter_map(|d| d.as_ref().err()).collect();
    assert_eq!(ok, 30, "deliveries: {failures:?}");
    let peak = stats.peak.get(&holder_ip).copied().unwrap_or(0);
    assert_eq!(peak, 3, "the holder's most sessions at the server at once");
    assert_eq!(opened, 3, "sessions the holder opened");
    // Independently of the filter: exactly its 3 SYNs reached the stack,
    // and every sender SYN did, one per delivery.
    assert_eq!(stack.packets("holder"), 3);
    for n in 1..=3 {
        let name = format!("sender{n}");
        assert_eq!(stack.packets(&name), 10, "{name}");
        assert_eq!(stats.delivered[&host_addr(n)], 10, "{name}");
    }
    let cut = delta.packets(Reason::DropConnLimit);
    assert!(cut > 0, "{:?}", delta.nonzero());
    assert_eq!(
        delta.packets(Reason::PassHandshake),
        33,
        "{:?}",
        delta.nonzero()
    );
    for reason in [
        Reason::DropSynHalfopen,
        Reason::DropSynSource,
        Reason::PassConnEvicted,
    ] {
        assert_eq!(
            delta.packets(reason),
            0,
            "{reason:?}: {:?}",
            delta.nonzero()
        );
    }
    let in_use = |name: &str| status.map(name).expect(name).entries.unwrap();
    assert_eq!(in_use("CONN_LIMITS"), 1);
    assert!(in_use("CONNECTIONS") >= 3, "the holder's 3 at least");
    assert!(in_use("CONN_COUNTS") >= 1);

    eprintln!(
        "SMTP: {ok}/30 deliveries, holder peak {peak} sessions ({opened} opened, \
         {cut} of its SYNs dropped as drop_conn_limit, 3 reached the stack)"
    );

    // Bad values are refused with the key named, and change nothing.
    let config = lab.config();
    for (value, expected) in [
        ("25:0", "the limit must be 1..65535"),
        ("25:3,25:4", "port 25 is given twice"),
        ("smtp:3", "not a port number"),
        ("25", "is not PORT:MAX"),
    ] {
        let err = lab.failure(&["set", "--iface", WAN_IF, &format!("conn_limit={value}")]);
        assert!(
            err.contains("conn_limit") && err.contains(expected),
            "{value}: {err}"
        );
    }
    let err = lab.failure(&["set", "--iface", WAN_IF, "conn_idle_timeout=0s"]);
    assert!(
        err.contains("conn_idle_timeout") && err.contains("1s..1d"),
        "{err}"
    );
    assert_eq!(lab.config(), config, "a refused value changed the settings");
    // A settings file takes the same keys.
    let dir = tempfile::Builder::new()
        .prefix("wft-tcp-")
        .tempdir()
        .unwrap();
    let file = dir.path().join("limits.toml");
    std::fs::write(
        &file,
        "conn_limit = \"25:5,80:64\"\nconn_idle_timeout = \"10m\"\nsyn_halfopen_budget = 24\n",
    )
    .unwrap();
    lab.ctl(&["apply", "--iface", WAN_IF, file.to_str().unwrap()]);
    assert_eq!(lab.setting("conn_limit"), "25:5,80:64");
    assert_eq!(lab.setting("conn_idle_timeout"), "10m");
    assert_eq!(lab.setting("syn_halfopen_budget"), "24");
    assert_eq!(lab.status().map("CONN_LIMITS").unwrap().entries, Some(2));
}
