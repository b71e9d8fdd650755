//! What `ntp-amplifier` and `dns-server` share: a server on the gateway used
//! as an amplifier by spoofed victims (harness::attacks::amplifier), once
//! without the filter and once with it, and the same measures both times.

use harness::{
    attacks::amplifier::{Amplifier, Family, Plan, Run, own_prefix},
    traffic::queries::Service,
};

use super::{
    Ctx, Outcome, bytes, reduction,
    stage::{Counters, Stage, counters_moved, settle, step},
};

/// What differs between the two incidents.
pub struct Setup {
    pub service: Service,
    /// The XDP mode to attach in (the DNS slip needs skb on veth, see below).
    pub mode: Option<&'static str>,
    /// What the mode is about, shown before attaching.
    pub mode_note: &'static str,
    /// The settings in play, shown with `filter-ctl config`.
    pub settings: &'static [&'static str],
    /// Counters that move, and why.
    pub why: &'static [(&'static str, &'static str)],
    /// The daemon's attack threshold (drops per second).
    pub attack_pps: u32,
}

pub fn run(ctx: &Ctx, setup: &Setup) -> anyhow::Result<Outcome> {
    let mut plan = Plan::new(setup.service, Family::V4);
    plan.duration = ctx.attack();
    // Fewer tries than the tests: a lab run must not stall on one lookup.
    plan.max_tries = 10;
    let what = match setup.service {
        Service::Dns => "queries",
        Service::Ntp => "requests",
    };

    step(&format!(
        "Without the filter: {} victims' addresses spoofed, {} {what}/s each for {} s, while 8 real {} \
         and the gateway's own lookups go on",
        plan.family.victims().len(),
        plan.victim_pps,
        plan.duration.as_secs(),
        clients(setup.service)
    ))?;
    let (without_stage, without) = phase(ctx, setup, plan, false)?;
    drop(without_stage);
    show_measures(setup.service, &without.0);

    step("With the filter (the same attack, on a fresh lab)")?;
    let (stage, with) = phase(ctx, setup, plan, true)?;
    show_measures(setup.service, &with.0);
    if let Some((before, after)) = &with.1 {
        counters_moved(before, after, setup.why);
    }
    let mut stage = stage;
    stage.who_attacked(plan.duration.as_secs() + 5, 12)?;

    let (without, with) = (without.0, with.0);
    let lookups = with.lookups(|_| true);
    let baseline_damage = without.wire_bytes > without.queries_bytes / 2;
    let cut = with.wire_bytes * 10 <= without.wire_bytes;
    let served = lookups.lost() == 0 && with.upstream_ok == with.upstream_total;
    let held = baseline_damage && cut && served;
    let verdict = if held {
        format!(
            "the defence held: the victims got {} instead of {} ({} less), and every real {} was answered \
             ({}/{}, the gateway's own {}/{})",
            bytes(with.wire_bytes),
            bytes(without.wire_bytes),
            reduction(without.wire_bytes, with.wire_bytes),
            lookup(setup.service),
            lookups.answered,
            lookups.total,
            with.upstream_ok,
            with.upstream_total
        )
    } else {
        format!(
            "the defence did NOT hold: {}",
            [
                (!baseline_damage).then(|| format!(
                    "without the filter the victims got only {} for {} sent, no reflection to stop",
                    bytes(without.wire_bytes),
                    bytes(without.queries_bytes)
                )),
                (!cut).then(|| format!(
                    "the victims still got {} of {} ({} less, not 90 %)",
                    bytes(with.wire_bytes),
                    bytes(without.wire_bytes),
                    reduction(without.wire_bytes, with.wire_bytes)
                )),
                (!served).then(|| format!(
                    "{} of {} real {}s lost, {} of the gateway's own {} failed",
                    lookups.lost(),
                    lookups.total,
                    lookup(setup.service),
                    with.upstream_total - with.upstream_ok,
                    with.upstream_total
                )),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")
        )
    };
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
) -> anyhow::Result<(Stage, (Run, Counters))> {
    let mut stage = Stage::build(ctx.binary, 1)?;
    let mut amplifier = Amplifier::prepare(&stage.topo, plan)?;
    let mut before = None;
    if with_filter {
        println!("  {}", setup.mode_note);
        stage.attach(setup.mode)?;
        stage.show_config(setup.settings)?;
        stage.start_daemon(setup.attack_pps)?;
        before = Some(stage.stats()?);
    }
    let run = amplifier.attack(&stage.topo)?;
    settle()?;
    let stats = match before {
        Some(before) => Some((before, stage.stats()?)),
        None => None,
    };
    stage.adopt(amplifier);
    Ok((stage, (run, stats)))
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
