//! Ingress, in the rule order of docs/rules.md (docs/rules.md, *The reflection defence*;
//! docs/syn-and-lists.md, *Where they sit in the rule order*):
//! 1. not IP: pass (`pass_not_ip`); link or IP headers cut short or
//!    invalid: pass (`pass_malformed`);
//! 2. source on the allow list: pass (`pass_allow_list`);
//! 3. source on the deny list: drop (`drop_deny_list`);
//! 4. a later fragment: the verdict of its first fragment (fragments.rs);
//! 5. UDP: the reflection rules, then the query limits (udp.rs);
//! 6. TCP SYN without ACK: the SYN buckets (tcp.rs, syn.rs);
//! 7. anything else: pass (`pass_ipv4`, `pass_ipv6`).
//!
//! A first fragment's verdict (pass or drop) is remembered for its
//! datagram's later fragments, whatever rule gave it, and also when the
//! headers after its fragment header could not be walked (it then passes
//! as `pass_malformed`).

mod tcp;
mod udp;

use filter_common::Reason;

use crate::{
    Chance, Judgement, State,
    fragments::Key,
    lists::List,
    parse::{self, Family, Fragment, IPPROTO_TCP, IPPROTO_UDP, Ip, Parsed, Upper},
    settings::Settings,
};

pub fn verdict(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    chance: &mut Chance,
    frame: &[u8],
    now: u64,
) -> Judgement {
    let ip = match parse::parse(frame) {
        Parsed::NotIp => return Judgement::Pass(Reason::PassNotIp),
        Parsed::Malformed => return Judgement::Pass(Reason::PassMalformed),
        Parsed::Ip(ip) => ip,
    };
    if state.lists.matches(List::Allow, ip.family, &ip.src, now) {
        return Judgement::Pass(Reason::PassAllowList);
    }
    if state.lists.matches(List::Deny, ip.family, &ip.src, now) {
        return Judgement::Drop(Reason::DropDenyList);
    }
    if let Fragment::Later(id) = ip.fragment {
        let key = Key {
            family: ip.family,
            src: ip.src,
            dst: ip.dst,
            id,
        };
        return state.fragments.follow(&key, now, settings.orphans);
    }
    let judgement = match ip.upper {
        Upper::Unparsed => Judgement::Pass(Reason::PassMalformed),
        Upper::At {
            protocol: IPPROTO_UDP,
            ..
        } => udp::verdict(state, settings, seed, chance, &ip, now),
        Upper::At {
            protocol: IPPROTO_TCP,
            ..
        } => tcp::verdict(state, settings, seed, &ip, now),
        Upper::At { .. } => pass(&ip),
    };
    if let Fragment::First(id) = ip.fragment {
        let key = Key {
            family: ip.family,
            src: ip.src,
            dst: ip.dst,
            id,
        };
        let dropped = matches!(judgement, Judgement::Drop(_));
        state
            .fragments
            .remember(key, dropped, now, settings.fragment_lifetime_ns());
    }
    judgement
}

/// The plain pass of an IP packet no rule matched.
fn pass(ip: &Ip<'_>) -> Judgement {
    Judgement::Pass(match ip.family {
        Family::V4 => Reason::PassIpv4,
        Family::V6 => Reason::PassIpv6,
    })
}
