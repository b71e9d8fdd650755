//! `smtp-slots`: one host holds every SMTP slot of a mail server, and mail
//! from everyone else is refused.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use harness::{
    lab::{Topology, addr, measure::Peak},
    servers::{
        mail::{self, MAIL_DOMAIN, Postfix},
        smtp::hold_slots,
    },
    signals::pause,
    traffic::StopOnDrop,
};

use super::{
    Ctx, Incident, Outcome, judge,
    stage::{Counters, Defence, Stage, settle, without_and_with},
};

pub const INCIDENT: Incident = Incident {
    name: "smtp-slots",
    summary: "one host holds every SMTP slot of a mail server; mail is refused",
    story: "A mail server had 15 SMTP slots, and one host filled them all: it opened connections, said\n\
            HELO and nothing more, and mail from everyone else could not get in. Here Postfix on the gateway\n\
            has 15 smtpd processes (master.cf), and three servers send it mail with swaks.",
    run,
};

const SMTP: u16 = 25;
const SLOTS: usize = 15;
/// The limit an operator sets: 3 connections per source to port 25.
const LIMIT: &str = "conn_limit=25:3";
const LIMIT_PER_SOURCE: usize = 3;
/// How long a sender waits for the greeting (and then for its QUIT): a
/// real one waits minutes, and retries later; long enough here that a busy
/// machine's slow greeting is not taken for a refusal.
const SENDER_TIMEOUT: Duration = Duration::from_secs(4);

struct Measures {
    holder_peak: usize,
    delivered: u64,
    refused: u64,
    first_refusal: Option<String>,
    /// Postfix's log lines saying every slot is taken.
    limit_warnings: usize,
}

fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let attack = format!(
        "{} opens sessions to port 25 until it holds {SLOTS}; meanwhile three servers ({}, {}, {}) \
         each send a message a second for {} s",
        addr::wan_host4(0),
        addr::wan_host4(1),
        addr::wan_host4(2),
        addr::wan_host4(3),
        ctx.attack().as_secs()
    );
    let why = |_: &Measures| {
        [
            ("pass_syn", "connection attempts within the limit"),
            (
                "drop_conn_limit",
                "the holder's attempts past its 3 connections to port 25",
            ),
            (
                "pass_handshake",
                "handshakes completed: each now counts towards its source's limit",
            ),
            (
                "pass_conn_closed",
                "the senders' connections ending (FIN): no longer counted",
            ),
            ("pass_ipv4", "the sessions' other segments"),
            (
                "egress_handshake_recorded",
                "Postfix's SYN-ACKs, recorded on the way out",
            ),
            ("egress_conn_closed", "Postfix closing connections"),
            ("egress_other", "everything else the gateway sent"),
        ]
        .map(|(reason, why)| (reason, why.to_owned()))
        .to_vec()
    };
    let (without, with, mut stage) = without_and_with(ctx, &attack, phase, show, why)?;
    let (held, verdict) = judge(
        format!(
            "the holder kept {} slots instead of {}, and every message was accepted ({} of {}, none \
             refused)",
            with.holder_peak, without.holder_peak, with.delivered, with.delivered
        ),
        vec![
            (without.holder_peak < SLOTS || without.refused == 0).then(|| {
                format!(
                    "without the filter the holder kept {} slots and {} messages were refused: no \
                     incident",
                    without.holder_peak, without.refused
                )
            }),
            (with.holder_peak > LIMIT_PER_SOURCE).then(|| {
                format!(
                    "with the filter the holder kept {} slots, more than {LIMIT_PER_SOURCE}",
                    with.holder_peak
                )
            }),
            (with.refused > 0 || with.delivered == 0).then(|| {
                format!(
                    "{} messages accepted, {} refused{}",
                    with.delivered,
                    with.refused,
                    with.first_refusal
                        .as_ref()
                        .map_or(String::new(), |e| format!(" (first: {e})"))
                )
            }),
        ],
    );
    stage.hints.push(format!(
        "ip netns exec {} swaks --server {} --to owner@{MAIL_DOMAIN}",
        stage.topo.wan_hosts[1].name(),
        addr::GW_WAN4
    ));
    Ok(Outcome {
        without: format!(
            "{} of {SLOTS} slots held, {} mails refused",
            without.holder_peak, without.refused
        ),
        with: format!("{} slots held, {} refused", with.holder_peak, with.refused),
        legit: format!(
            "{}/{} mails accepted",
            with.delivered,
            with.delivered + with.refused
        ),
        held,
        verdict,
        stage,
    })
}

fn show(m: &Measures) {
    println!(
        "  slots the holder held at the server (ss: its connections served by an smtpd process, peak): {} of {SLOTS}",
        m.holder_peak
    );
    println!(
        "  the senders' messages: {} accepted, {} refused{}",
        m.delivered,
        m.refused,
        m.first_refusal
            .as_ref()
            .map_or(String::new(), |e| format!(" (e.g. {e})"))
    );
    println!(
        "  Postfix's log: {} warning(s) 'service \"smtp\" (25) has reached its process limit \"{SLOTS}\"'",
        m.limit_warnings
    );
}

type Phase = (Stage, Measures, Counters);

fn phase(ctx: &Ctx, with_filter: bool) -> anyhow::Result<Phase> {
    let mut stage = Stage::build(ctx.binary, 4)?;
    let to = Topology::gateway_wan(false, SMTP);
    let mut postfix = Postfix::start(stage.gw(), to, SLOTS)?;
    let before = stage.defend_if(with_filter.then_some(&Defence {
        note: "The connection limit is off by default; the operator sets it for port 25:",
        mode: None,
        set: &[LIMIT],
        settings: &[],
        attack_pps: 5,
    }))?;
    let holder_ip: IpAddr = addr::wan_host4(0).into();
    let held = Peak::sample(Duration::from_millis(100), {
        let gateway = stage.gw().name().to_owned();
        move || {
            let held = mail::slots_held(&gateway, SMTP)?;
            Ok(held.get(&holder_ip).copied().unwrap_or(0) as u64)
        }
    });
    let stop = AtomicBool::new(false);
    let hosts = &stage.topo.wan_hosts;
    let results = thread::scope(|scope| -> anyhow::Result<Vec<Result<(), String>>> {
        let holding = scope.spawn(|| hold_slots(&hosts[0], to, SLOTS, &stop));
        let _stop = StopOnDrop(&stop);
        // The holder takes its slots first, as in the incident.
        pause(Duration::from_secs(1))?;
        let started = Instant::now();
        let sends: Vec<_> = (1..=3)
            .flat_map(|n| (0..ctx.attack().as_secs()).map(move |i| (n, i)))
            .map(|(n, i)| {
                let sender = &hosts[n];
                scope.spawn(move || {
                    let due = started + Duration::from_secs(i);
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                    mail::send_mail(
                        sender,
                        to,
                        &format!("sender{n}@relay{n}.example"),
                        &format!("owner@{MAIL_DOMAIN}"),
                        SENDER_TIMEOUT,
                    )
                    .map_err(|err| format!("{err:#}"))
                })
            })
            .collect();
        let results = sends
            .into_iter()
            .map(|send| send.join().expect("a sender thread panicked"))
            .collect();
        stop.store(true, Ordering::Relaxed);
        holding.join().expect("the holder thread panicked");
        Ok(results)
    })?;
    settle()?;
    postfix.check_running()?;
    let measures = Measures {
        holder_peak: held.stop() as usize,
        delivered: results.iter().filter(|r| r.is_ok()).count() as u64,
        refused: results.iter().filter(|r| r.is_err()).count() as u64,
        first_refusal: results.iter().find_map(|r| r.clone().err()),
        limit_warnings: postfix.log_lines("has reached its process limit").len(),
    };
    let counters = stage.counters(before)?;
    stage.adopt(postfix);
    Ok((stage, measures, counters))
}
