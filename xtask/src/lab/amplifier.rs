//! What `ntp-amplifier` and `dns-server` share: a server on the gateway used
//! as an amplifier by spoofed victims (harness::attacks::amplifier), once
//! without the filter and once with it, and the same measures both times.

use harness::{
    attacks::amplifier::{Amplifier, Family, Plan, Run, own_prefix},
    traffic::queries::Service,
};

use super::{
    Ctx, Outcome, bytes, judge, reduction,
    stage::{Counters, Defence, Stage, settle, without_and_with},
};

/// What differs between the two incidents.
pub struct Setup {
    pub service: Service,
    pub defence: Defence<'static>,
    /// Counters that move, and why.
    pub why: &'static [(&'static str, &'static str)],
}

pub fn run(ctx: &Ctx, setup: &Setup) -> anyhow::Result<Outcome> {
    let mut plan = Plan::new(setup.service, Family::V4);
    plan.duration = ctx.attack();
    let what = match setup.service {
        Service::Dns => "queries",
        Service::Ntp => "requests",
    };

    let attack = format!(
        "{} victims' addresses spoofed, {} {what}/s each for {} s, while {} real {} and the \
         gateway's own lookups go on",
        plan.victims().len(),
        plan.victim_pps,
        plan.duration.as_secs(),
        plan.resolvers().len(),
        clients(setup.service)
    );
    let (without, with, stage) = without_and_with(
        ctx,
        &attack,
        |ctx, with_filter| phase(ctx, setup, plan, with_filter),
        |run| show_measures(setup.service, run),
        |_| {
            setup
                .why
                .iter()
                .map(|(reason, why)| (*reason, (*why).to_owned()))
                .collect()
        },
    )?;

    let lookups = with.lookups(|_| true);
    let (held, verdict) = judge(
        format!(
            "the victims got {} instead of {} ({} less), and every real {} was answered ({}/{}, the \
             gateway's own {}/{})",
            bytes(with.wire_bytes),
            bytes(without.wire_bytes),
            reduction(without.wire_bytes, with.wire_bytes),
            lookup(setup.service),
            lookups.answered,
            lookups.total,
            with.upstream_ok,
            with.upstream_total
        ),
        vec![
            (without.wire_bytes <= without.queries_bytes / 2).then(|| {
                format!(
                    "without the filter the victims got only {} for {} sent, no reflection to stop",
                    bytes(without.wire_bytes),
                    bytes(without.queries_bytes)
                )
            }),
            (with.wire_bytes * 10 > without.wire_bytes).then(|| {
                format!(
                    "the victims still got {} of {} ({} less, not 90 %)",
                    bytes(with.wire_bytes),
                    bytes(without.wire_bytes),
                    reduction(without.wire_bytes, with.wire_bytes)
                )
            }),
            (lookups.lost() > 0 || with.upstream_ok < with.upstream_total).then(|| {
                format!(
                    "{} of {} real {}s lost, {} of the gateway's own {} failed",
                    lookups.lost(),
                    lookups.total,
                    lookup(setup.service),
                    with.upstream_total - with.upstream_ok,
                    with.upstream_total
                )
            }),
        ],
    );
    let tcp = if lookups.over_tcp > 0 {
        format!(" ({} over TCP)", lookups.over_tcp)
    } else {
        String::new()
    };
    Ok(Outcome {
        without: format!(
            "{} to victims, {} conntrack",
            bytes(without.wire_bytes),
            without.conntrack_added()
        ),
        with: format!(
            "{} ({} less), {} conntrack",
            bytes(with.wire_bytes),
            reduction(without.wire_bytes, with.wire_bytes),
            with.conntrack_added()
        ),
        legit: format!(
            "{}/{} {}s answered{tcp}",
            lookups.answered,
            lookups.total,
            lookup(setup.service)
        ),
        held,
        verdict,
        stage,
    })
}

fn clients(service: Service) -> &'static str {
    match service {
        Service::Dns => "resolvers (dig)",
        Service::Ntp => "NTP clients (chronyd -Q)",
    }
}

fn lookup(service: Service) -> &'static str {
    match service {
        Service::Dns => "lookup",
        Service::Ntp => "NTP exchange",
    }
}

/// One phase on a lab of its own; with the filter, its counters before
/// and after the attack.
fn phase(
    ctx: &Ctx,
    setup: &Setup,
    plan: Plan,
    with_filter: bool,
) -> anyhow::Result<(Stage, Run, Counters)> {
    let mut stage = Stage::build(ctx.binary, 1)?;
    let mut amplifier = Amplifier::prepare(&stage.topo, plan)?;
    let before = stage.defend_if(with_filter.then_some(&setup.defence))?;
    let run = amplifier.attack(&stage.topo)?;
    settle()?;
    let counters = stage.counters(before)?;
    stage.adopt(amplifier);
    Ok((stage, run, counters))
}

fn show_measures(service: Service, run: &Run) {
    let all = run.lookups(|_| true);
    let shared = run.lookups(|resolver| !own_prefix(resolver));
    println!(
        "  the attacker sent {} spoofed {} ({})",
        run.queries_sent,
        match service {
            Service::Dns => "TXT queries with EDNS 4096",
            Service::Ntp => "NTP requests (1 in 50 a monlist request)",
        },
        bytes(run.queries_bytes)
    );
    println!(
        "  sent to the victims (nftables at the WAN link's far end): {} in {} packets, {:.1} times \
         what the attacker sent",
        bytes(run.wire_bytes),
        run.wire_packets,
        run.wire_bytes as f64 / run.queries_bytes.max(1) as f64
    );
    println!(
        "  the victims' {} that reached the gateway's server: {}; conntrack entries the attack added: {}",
        match service {
            Service::Dns => "queries",
            Service::Ntp => "requests",
        },
        run.stack_queries,
        run.conntrack_added()
    );
    let tcp = match service {
        Service::Dns => format!(
            "; {} over TCP after a truncated answer, {} retries",
            all.over_tcp, all.retries
        ),
        Service::Ntp => String::new(),
    };
    println!(
        "  real {}: {}/{} answered, {} lost{tcp} ({}/{} of those in the victims' /24); the gateway's own \
         lookups upstream: {}/{}",
        clients(service),
        all.answered,
        all.total,
        all.lost(),
        shared.answered,
        shared.total,
        run.upstream_ok,
        run.upstream_total
    );
}
