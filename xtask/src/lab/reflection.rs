//! `reflection`: a DNS reflection flood on the gateway's link, while the
//! gateway and a LAN client keep looking names up.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::Duration,
};

use harness::{
    lab::{LAN_IF, StackCounters, WAN_IF, addr, measure},
    netns::Netns,
    servers::real::{self, Servers},
    signals::{INTERRUPTED, pause},
    traffic::{
        reflection::{self, Attack, Fate, Kind, Pace, Report, Target},
        sender::RawSender,
        sources::{Prefix, Sources},
    },
};

use super::{
    Ctx, Incident, Outcome, bytes, judge,
    stage::{Counters, Defence, Stage, settle, without_and_with},
};

pub const INCIDENT: Incident = Incident {
    name: "reflection",
    summary: "DNS reflection flood on the gateway's link; its own lookups go on",
    story: "A home link got tens of GiB of DNS responses nobody had asked for (649,917 responses against 799\n\
            queries in one capture), from over 10,000 open resolvers, many as IP fragments; the link and the\n\
            server fell over for days. Here the flood also carries NTP monlist responses and queries.",
    run,
};

/// The address most of the IPv4 flood comes from, for `top` to find.
const HEAVY_HITTER: &str = "192.0.2.66";

/// Lookups by the gateway and the LAN client during the flood.
#[derive(Default)]
struct Lookups {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
}

struct Measures {
    report: Report,
    flood_at_stack: (u64, u64),
    conntrack_added: u64,
    lookups: Lookups,
}

fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let attack = format!(
        "{} s of spoofed DNS responses (whole and fragmented, IPv4 and IPv6) and NTP mode 7 packets at \
         {} frames/s, while the gateway and the LAN client look up names (dig) and ask the time \
         (chronyd -Q)",
        ctx.attack().as_secs(),
        ctx.pps
    );
    let (without, with, mut stage) = without_and_with(ctx, &attack, phase, show, why)?;
    let (held, verdict) = judge(
        format!(
            "none of the {} flood frames reached the gateway's stack (without the filter {} of {} \
             did), and all {} lookups were answered",
            with.report.total.frames,
            without.flood_at_stack.0,
            without.report.total.frames,
            with.lookups.ok
        ),
        vec![
            (without.flood_at_stack.0 == 0).then(|| {
                "without the filter nothing of the flood reached the stack: no incident".to_owned()
            }),
            (with.flood_at_stack.0 > 0).then(|| {
                format!(
                    "{} flood frames reached the gateway's stack with the filter",
                    with.flood_at_stack.0
                )
            }),
            (with.lookups.failed > 0 || with.lookups.ok == 0).then(|| {
                format!(
                    "{} lookups answered, {} failed{}",
                    with.lookups.ok,
                    with.lookups.failed,
                    with.lookups
                        .first_error
                        .as_ref()
                        .map_or(String::new(), |e| format!(" (first: {e})"))
                )
            }),
        ],
    );
    stage.hints.push(format!(
        "ip netns exec {} dig @{} {}",
        stage.topo.lan.name(),
        addr::SERVER4,
        real::DNS_NAME
    ));
    Ok(Outcome {
        without: format!(
            "{} of flood in the stack, {} conntrack",
            bytes(without.flood_at_stack.1),
            without.conntrack_added
        ),
        with: format!(
            "{} in the stack, {} conntrack",
            bytes(with.flood_at_stack.1),
            with.conntrack_added
        ),
        legit: format!(
            "{}/{} lookups answered",
            with.lookups.ok,
            with.lookups.ok + with.lookups.failed
        ),
        held,
        verdict,
        stage,
    })
}

/// Why each counter moved, against what the attacker sent.
fn why(with: &Measures) -> Vec<(&'static str, String)> {
    let sent = |fate: Fate| with.report.fate(fate).frames;
    vec![
        (
            "drop_unsolicited_dns",
            format!(
                "spoofed DNS responses and first fragments: no query of ours asked for them (sent: {})",
                sent(Fate::UnsolicitedDns)
            ),
        ),
        (
            "drop_fragment",
            format!(
                "later fragments, following their first fragment's verdict (sent: {})",
                sent(Fate::FragmentOfDropped)
            ),
        ),
        (
            "drop_orphan_fragment",
            format!(
                "later fragments sent before their first one (sent: {})",
                sent(Fate::Orphan)
            ),
        ),
        (
            "drop_ntp_control",
            format!(
                "NTP mode 7 monlist responses and queries (sent: {})",
                sent(Fate::NtpControl)
            ),
        ),
        (
            "pass_solicited",
            "answers to the clients' own lookups, matched to a recorded query".to_owned(),
        ),
        (
            "egress_query_recorded",
            "the clients' queries, recorded on the way out (after NAT)".to_owned(),
        ),
        (
            "egress_other",
            "everything else the gateway sent".to_owned(),
        ),
    ]
}

fn show(m: &Measures) {
    println!(
        "  the attacker sent {} frames ({}, {:.0} frames/s)",
        m.report.total.frames,
        bytes(m.report.total.bytes),
        m.report.rate()
    );
    println!(
        "  of them, reached the gateway's stack (nftables on wan0, after XDP): {} frames, {}; \
         conntrack entries added meanwhile: {}",
        m.flood_at_stack.0,
        bytes(m.flood_at_stack.1),
        m.conntrack_added
    );
    println!(
        "  the gateway's and the LAN client's own lookups (dig, chronyd -Q) during the flood: {} answered, \
         {} lost{}",
        m.lookups.ok,
        m.lookups.failed,
        m.lookups
            .first_error
            .as_ref()
            .map_or(String::new(), |e| format!(" (first: {e})"))
    );
}

type Phase = (Stage, Measures, Counters);

fn phase(ctx: &Ctx, with_filter: bool) -> anyhow::Result<Phase> {
    let mut stage = Stage::build(ctx.binary, 1)?;
    let servers = Servers::start(&stage.topo.internet)?;
    let before = stage.defend_if(with_filter.then_some(&Defence {
        note: "The filter's defaults: responses from DNS, NTP and amplifier ports must answer a query \
               recorded on the way out; fragments follow their first one:",
        mode: None,
        set: &[],
        settings: &[
            "dns_ports",
            "ntp_ports",
            "solicited_lifetime",
            "orphan_fragments",
        ],
        attack_pps: 1000,
    }))?;
    let (sender, mut attack) = attacker(&stage)?;
    let stack_before = stage.topo.stack_counters()?;
    let conntrack_before = measure::conntrack_count(stage.gw().name())?;
    let conntrack = measure::Peak::sample(Duration::from_millis(100), {
        let gateway = stage.gw().name().to_owned();
        move || measure::conntrack_count(&gateway)
    });
    let stop = AtomicBool::new(false);
    let pace = Pace {
        pps: ctx.pps,
        min_frames: 0,
        max_frames: u64::from(ctx.pps) * (ctx.attack().as_secs() + 5),
    };
    let topo = &stage.topo;
    let (report, gw_lookups, lan_lookups) = thread::scope(|s| -> anyhow::Result<_> {
        let flooder = s.spawn(|| reflection::flood(&sender, &mut attack, pace, &stop, None));
        let gw_lookups = s.spawn(|| keep_looking_up(&topo.gateway, &stop));
        let lan_lookups = s.spawn(|| keep_looking_up(&topo.lan, &stop));
        let paused = pause(ctx.attack());
        stop.store(true, Ordering::Relaxed);
        let report = flooder.join().expect("the flood thread panicked");
        let lookups = (
            gw_lookups.join().expect("a lookup thread panicked"),
            lan_lookups.join().expect("a lookup thread panicked"),
        );
        paused?;
        Ok((report?, lookups.0, lookups.1))
    })?;
    settle()?;
    let stack = stage.topo.stack_counters()?.since(&stack_before);
    let flood = |stack: &StackCounters, name: &str| {
        stack
            .counters
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or((0, 0), |(_, packets, bytes)| (*packets, *bytes))
    };
    let (v4, v6) = (flood(&stack, "spoofed4"), flood(&stack, "spoofed6"));
    let mut lookups = gw_lookups;
    lookups.ok += lan_lookups.ok;
    lookups.failed += lan_lookups.failed;
    lookups.first_error = lookups.first_error.or(lan_lookups.first_error);
    let measures = Measures {
        report,
        flood_at_stack: (v4.0 + v6.0, v4.1 + v6.1),
        conntrack_added: conntrack.stop().saturating_sub(conntrack_before),
        lookups,
    };
    let counters = stage.counters(before)?;
    stage.adopt(servers);
    Ok((stage, measures, counters))
}

/// The attacker's socket and an attack on the gateway's wan0.
fn attacker(stage: &Stage) -> anyhow::Result<(RawSender, Attack)> {
    let topo = &stage.topo;
    let sender = RawSender::open(&topo.wan_hosts[0], LAN_IF)?;
    let target = Target {
        mac: topo.gateway.mac(WAN_IF)?,
        v4: addr::GW_WAN4,
        // IPv6 is routed: the LAN client is attacked on wan0 too.
        v6: vec![addr::GW_WAN6, addr::LAN_CLIENT6],
    };
    // One heavy hitter among the spoofed ranges, for `top` to name.
    let mut v4 = Prefix::all(&addr::SPOOFED4)?;
    v4.push(Prefix::host(HEAVY_HITTER.parse::<IpAddr>()?)?);
    let sources = Sources::new(v4, Prefix::all(&addr::SPOOFED6)?)?;
    let attack = Attack::new(target, sources, sender.mac(), &Kind::MIX);
    Ok((sender, attack))
}

/// dig (IPv4 and IPv6 in turn) and every 5th round an NTP exchange, until `stop`.
fn keep_looking_up(ns: &Netns, stop: &AtomicBool) -> Lookups {
    let mut done = Lookups::default();
    let mut round = 0u32;
    let count = |result: anyhow::Result<()>, done: &mut Lookups| match result {
        Ok(()) => done.ok += 1,
        Err(err) => {
            done.failed += 1;
            done.first_error.get_or_insert(format!("{err:#}"));
        }
    };
    while !stop.load(Ordering::Relaxed) && !INTERRUPTED.load(Ordering::Relaxed) {
        let (server, aaaa) = if round.is_multiple_of(2) {
            (IpAddr::from(addr::SERVER4), false)
        } else {
            (addr::SERVER6.into(), true)
        };
        count(real::dig(ns, server, aaaa).map(drop), &mut done);
        if round % 5 == 4 {
            count(real::ntp_exchange(ns, server).map(drop), &mut done);
        }
        round += 1;
    }
    done
}
