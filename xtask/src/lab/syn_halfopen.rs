//! `syn-halfopen`: one host's SYN bursts leave half-open connections at a
//! web server while a browser loads pages from it.

use std::{net::IpAddr, sync::atomic::AtomicBool, thread, time::Duration};

use harness::{
    lab::{LAN_IF, StackCounters, Topology, WAN_IF, addr, measure},
    servers::web::{self, Nginx, PageLoad},
    signals::pause,
    traffic::{StopOnDrop, sources::Prefix, syn},
};

use super::{
    Ctx, Incident, Outcome, judge,
    stage::{Counters, Defence, Stage, settle, without_and_with},
};

pub const INCIDENT: Incident = Incident {
    name: "syn-halfopen",
    summary: "one host's SYN bursts leave half-open connections at a web server",
    story: "A home web server got bursts of SYNs to port 80 from one address with ever-changing source\n\
            ports: the handshakes were never completed, half-open connections piled up at the server, and\n\
            no line reached the HTTP log. Here nginx serves on the gateway; a browser loads pages meanwhile.",
    run,
};

const HTTP: u16 = 80;
/// The flood: SYNs per second from the flooder's own address.
const FLOOD_PPS: u32 = 100;
/// A page load: a browser's parallel connections.
const CONNECTIONS: usize = 12;

/// What one phase measured.
struct Measures {
    syns_sent: u64,
    secs: f64,
    flood_at_stack: u64,
    half_open_peak: u64,
    browser: PageLoad,
    logged: usize,
}

fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let attack = format!(
        "{FLOOD_PPS} SYNs/s from {} for {} s (it never answers the SYN-ACKs); after 1 s a browser on {} \
         loads a page 3 times, {CONNECTIONS} connections each (curl)",
        addr::wan_host4(0),
        ctx.attack().as_secs(),
        addr::wan_host4(1),
    );
    let budget = u64::from(filter_common::halfopen::DEFAULT_BUDGET);
    let why = |_: &Measures| {
        vec![
            (
                "pass_syn",
                "SYNs within every limit: the flooder's first ones and the browser's".to_owned(),
            ),
            (
                "drop_syn_source",
                "the flooder's SYNs over its rate bucket (20/s, burst 40)".to_owned(),
            ),
            (
                "drop_syn_halfopen",
                format!(
                    "the flooder's SYNs past its {budget} unanswered handshakes (the half-open budget)"
                ),
            ),
            (
                "pass_handshake",
                "the browser's ACKs completing a handshake: units given back".to_owned(),
            ),
            ("pass_conn_closed", "their FINs".to_owned()),
            (
                "pass_ipv4",
                "the browser's requests and other segments".to_owned(),
            ),
            (
                "egress_handshake_recorded",
                "the web server's SYN-ACKs, recorded on the way out".to_owned(),
            ),
            ("egress_conn_closed", "the server's FINs".to_owned()),
            (
                "egress_other",
                "everything else the gateway sent".to_owned(),
            ),
        ]
    };
    let (without, with, mut stage) = without_and_with(ctx, &attack, phase, show, why)?;

    // The budget, then one more unit every timeout / budget (60 s / 16).
    let most = budget + (with.secs / 3.75).floor() as u64 + 1;
    let requests = 3 * CONNECTIONS as u64;
    let (held, verdict) = judge(
        format!(
            "half-open connections at the server peaked at {} instead of {} (its budget is {budget}), \
             and the browser got all {} requests answered",
            with.half_open_peak, without.half_open_peak, with.browser.ok
        ),
        vec![
            (without.half_open_peak <= most).then(|| {
                format!(
                    "without the filter only {} half-open connections, no damage to stop",
                    without.half_open_peak
                )
            }),
            (with.half_open_peak > most).then(|| {
                format!(
                    "{} half-open connections with the filter, more than {most}",
                    with.half_open_peak
                )
            }),
            (with.browser.failed > 0 || with.browser.ok < requests).then(|| {
                format!(
                    "the browser got {} of {requests} requests answered",
                    with.browser.ok
                )
            }),
        ],
    );
    stage.hints.push(format!(
        "ip netns exec {} curl -s http://{}/",
        stage.topo.wan_hosts[1].name(),
        addr::GW_WAN4
    ));
    Ok(Outcome {
        without: format!("{} half-open (ss)", without.half_open_peak),
        with: format!("{} half-open (budget {budget})", with.half_open_peak),
        legit: format!(
            "{}/{} browser requests answered",
            with.browser.ok,
            with.browser.ok + with.browser.failed
        ),
        held,
        verdict,
        stage,
    })
}

fn show(m: &Measures) {
    println!(
        "  the flooder sent {} SYNs in {:.1} s; {} reached the gateway's stack (nftables, after XDP)",
        m.syns_sent, m.secs, m.flood_at_stack
    );
    println!(
        "  half-open connections at the web server (ss state syn-recv, peak): {}{}",
        m.half_open_peak,
        if m.half_open_peak > web::BACKLOG {
            format!(
                " (its listen queue of {} was full: from then on the kernel answered further SYNs \
                 with SYN cookies instead of keeping them)",
                web::BACKLOG
            )
        } else {
            String::new()
        }
    );
    println!(
        "  the browser: {} requests answered, {} failed (slowest handshake {:.0} ms); nginx logged {} \
         requests",
        m.browser.ok,
        m.browser.failed,
        m.browser.slowest_connect * 1000.0,
        m.logged
    );
}

type Phase = (Stage, Measures, Counters);

fn phase(ctx: &Ctx, with_filter: bool) -> anyhow::Result<Phase> {
    let mut stage = Stage::build(ctx.binary, 2)?;
    let to = Topology::gateway_wan(false, HTTP);
    let nginx = Nginx::start(stage.gw(), to)?;
    let (flooder_ip, browser_ip): (IpAddr, IpAddr) =
        (addr::wan_host4(0).into(), addr::wan_host4(1).into());
    syn::never_answer_synacks(&stage.topo.wan_hosts[0])?;
    measure::count_syns_at_gateway(
        &stage.topo,
        "syn_halfopen",
        &[("flooder", flooder_ip), ("browser", browser_ip)],
    )?;
    let before = stage.defend_if(with_filter.then_some(&Defence {
        note: "The filter's defaults: a half-open budget per source, and SYN rate buckets:",
        mode: None,
        set: &[],
        settings: &[
            "syn_halfopen_budget",
            "syn_halfopen_timeout",
            "syn_source_rate",
            "syn_source_burst",
        ],
        attack_pps: 20,
    }))?;
    let mut flood = syn::SynFlood::new(&stage.topo.wan_hosts[0], LAN_IF, stage.gw().mac(WAN_IF)?)?;
    let half_open = measure::Peak::sample(Duration::from_millis(100), {
        let gateway = stage.gw().name().to_owned();
        move || measure::half_open(&gateway, HTTP)
    });
    let stop = AtomicBool::new(false);
    let browser = &stage.topo.wan_hosts[1];
    let (sent, loads) = thread::scope(|scope| -> anyhow::Result<_> {
        let flooding =
            scope.spawn(|| flood.send_for(Prefix::host(flooder_ip)?, to, ctx.attack(), FLOOD_PPS));
        let _stop = StopOnDrop(&stop);
        pause(Duration::from_secs(1))?;
        let mut loads = Vec::new();
        for _ in 0..3 {
            loads.push(web::browse(
                browser,
                to,
                CONNECTIONS,
                Duration::from_secs(5),
            )?);
            pause(Duration::from_millis(500))?;
        }
        Ok((flooding.join().expect("the flood thread panicked")?, loads))
    })?;
    settle()?;
    let half_open_peak = half_open.stop();
    let stack = StackCounters::parse(&stage.gw().run([
        "nft",
        "list",
        "counters",
        "table",
        "netdev",
        "syn_halfopen",
    ])?)?;
    let mut browser = PageLoad::default();
    for load in loads {
        browser.ok += load.ok;
        browser.failed += load.failed;
        browser.slowest_connect = browser.slowest_connect.max(load.slowest_connect);
    }
    let measures = Measures {
        syns_sent: sent.frames,
        secs: sent.duration().as_secs_f64(),
        flood_at_stack: stack.packets("flooder"),
        half_open_peak,
        browser,
        logged: nginx.requests(),
    };
    let counters = stage.counters(before)?;
    stage.adopt(nginx);
    Ok((stage, measures, counters))
}
