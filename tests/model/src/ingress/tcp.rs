//! Inbound TCP (docs/syn-and-lists.md): a connection attempt (SYN set, ACK
//! clear) goes through the SYN buckets; every other segment, SYN-ACKs
//! included, passes. A fixed TCP header cut short: pass (`pass_malformed`).

use filter_common::Reason;

use super::pass;
use crate::{Judgement, State, parse::Ip, settings::Settings};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

pub fn verdict(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    ip: &Ip<'_>,
    now: u64,
) -> Judgement {
    let Some(flags) = ip.tcp_flags() else {
        return Judgement::Pass(Reason::PassMalformed);
    };
    if flags & (SYN | ACK) != SYN {
        return pass(ip);
    }
    state
        .syn
        .verdict(ip, &settings.syn, seed, &mut state.lists, now)
}
