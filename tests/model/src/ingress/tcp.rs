//! Inbound TCP (docs/tcp-connections.md, *Where it sits*; docs/syn-and-lists.md):
//! 1. a connection attempt (SYN set, ACK clear), from the narrowest rule
//!    out, the first that refuses naming the drop: the source's and the
//!    prefix's rate buckets (syn.rs), the source's and then the prefix's
//!    half-open budget (halfopen.rs), on a port with a connection limit the
//!    source's connections there plus its handshakes in flight (conn.rs),
//!    the global rate bucket; passed (`pass_syn`): only then are its
//!    half-open units and its handshake-in-flight unit taken;
//! 2. a SYN-ACK (SYN and ACK set): passes;
//! 3. any other segment to a port that never sent a SYN-ACK: passes;
//! 4. to a service port: on a port with a limit, a segment of a tracked
//!    connection keeps it counting, or its FIN or RST ends it
//!    (`pass_conn_closed`); otherwise the ACK (SYN and RST clear) that
//!    completes a recorded handshake gives its source's half-open units
//!    back and, on a limited port, its handshake-in-flight unit, and the
//!    connection counts from there (`pass_handshake`, or
//!    `pass_conn_evicted` when it took a counting connection's slot); a FIN
//!    on the completing ACK ends the connection as it starts.
//!
//! Everything else passes (`pass_ipv4`, `pass_ipv6`); a fixed TCP header cut
//! short: `pass_malformed`.

use filter_common::Reason;

use super::pass;
use crate::{
    Judgement, State,
    conn::{Followed, Opened},
    halfopen::{Budgets, Exhausted},
    handshakes::Flow,
    parse::{Ip, Tcp},
    settings::Settings,
    syn,
};

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

pub fn verdict(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    ip: &Ip<'_>,
    now: u64,
) -> Judgement {
    let Some(tcp) = ip.tcp() else {
        return Judgement::Pass(Reason::PassMalformed);
    };
    if tcp.flags & SYN != 0 {
        if tcp.flags & ACK == 0 {
            return attempt(state, settings, seed, ip, &tcp, now);
        }
        return pass(ip);
    }
    if !state.handshakes.is_service(tcp.dst_port) {
        return pass(ip);
    }
    let flow = Flow {
        family: ip.family,
        local: ip.dst,
        remote: ip.src,
        local_port: tcp.dst_port,
        remote_port: tcp.src_port,
    };
    let limited = settings.conn_limit(tcp.dst_port).is_some();
    let closing = tcp.flags & (FIN | RST) != 0;
    let idle_ns = settings.conn_idle_timeout_ns();
    if limited {
        match state.conn.follow(&flow, closing, now, idle_ns, seed) {
            Followed::Untracked => {}
            Followed::Active => return pass(ip),
            Followed::Closed => return Judgement::Pass(Reason::PassConnClosed),
        }
    }
    if tcp.flags & (ACK | RST) != ACK || !state.handshakes.complete(&flow, tcp.ack, now, seed) {
        return pass(ip);
    }
    let slots = syn::slots(ip.family, &ip.src, &settings.syn, seed);
    state.halfopen.give_back(slots, &budgets(settings), now);
    if !limited {
        return Judgement::Pass(Reason::PassHandshake);
    }
    state.conn.end_pending(&flow, now, seed);
    if closing {
        return Judgement::Pass(Reason::PassHandshake);
    }
    match state.conn.open(flow, now, idle_ns, seed) {
        Opened::Stored => Judgement::Pass(Reason::PassHandshake),
        Opened::Evicted => Judgement::Pass(Reason::PassConnEvicted),
    }
}

fn budgets(settings: &Settings) -> Budgets {
    Budgets {
        source: settings.tcp.halfopen_budget,
        prefix: settings.tcp.halfopen_prefix_budget,
        timeout_ns: settings.halfopen_timeout_ns(),
    }
}

/// A connection attempt.
fn attempt(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    ip: &Ip<'_>,
    tcp: &Tcp,
    now: u64,
) -> Judgement {
    let slots = syn::slots(ip.family, &ip.src, &settings.syn, seed);
    if let Some(drop) = state
        .syn
        .narrow(ip, slots, &settings.syn, &mut state.lists, now)
    {
        return drop;
    }
    let budgets = budgets(settings);
    match state.halfopen.check(slots, &budgets, now) {
        Ok(()) => {}
        Err(Exhausted::Source) => return Judgement::Drop(Reason::DropSynHalfopen),
        Err(Exhausted::Prefix) => return Judgement::Drop(Reason::DropSynHalfopenPrefix),
    }
    let limit = settings.conn_limit(tcp.dst_port);
    if let Some(limit) = limit
        && !state.conn.check_syn(
            ip,
            tcp.dst_port,
            limit,
            now,
            settings.conn_idle_timeout_ns(),
            seed,
        )
    {
        return Judgement::Drop(Reason::DropConnLimit);
    }
    if !state.syn.global(&settings.syn, now) {
        return Judgement::Drop(Reason::DropSynGlobal);
    }
    state.halfopen.take(slots, &budgets, now);
    if limit.is_some() {
        state
            .conn
            .count_pending(ip.family, &ip.src, tcp.dst_port, now, seed);
    }
    Judgement::Pass(Reason::PassSyn)
}
