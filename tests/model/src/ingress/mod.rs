//! Ingress, in the rule order of docs/rules.md (docs/rules.md, *The reflection defence*;
//! docs/syn-and-lists.md, *Where they sit in the rule order*):
//! 1. not IP: pass (`pass_not_ip`; on a device without an Ethernet header,
//!    a version nibble other than 4 or 6); link or IP headers cut short or
//!    invalid: pass (`pass_malformed`); IP inside IP (IPv4 inside IPv6,
//!    IPv6 inside IPv4): the rules below for the packet inside (tunnel.rs);
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
mod tunnel;
mod udp;

use filter_common::{Encap, Reason};

use crate::{
    Chance, Judgement, State,
    fragments::Key,
    lists::List,
    parse::{
        self, Family, Fragment, FragmentId, IPPROTO_TCP, IPPROTO_UDP, Ip, Link, Parsed, Upper,
    },
    settings::Settings,
};

pub fn verdict(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    chance: &mut Chance,
    link: Link,
    frame: &[u8],
    now: u64,
) -> Judgement {
    let ip = match parse::parse(link, frame) {
        Parsed::NotIp => return Judgement::Pass(Reason::PassNotIp),
        Parsed::Malformed => return Judgement::Pass(Reason::PassMalformed),
        Parsed::Ip(ip) => ip,
    };
    if ip.carries_tunnel() {
        return tunnel::verdict(state, settings, seed, chance, &ip, now);
    }
    if let Some(listed) = listed(state, &ip, now) {
        return listed;
    }
    let judgement = rules(state, settings, seed, chance, &ip, now);
    remember(state, settings, &ip, judgement, now);
    judgement
}

/// The tunnel `frame` (on `link`) came through, if the rules unwrap it.
pub fn encap(link: Link, frame: &[u8]) -> Option<Encap> {
    match parse::parse(link, frame) {
        Parsed::Ip(ip) if ip.carries_tunnel() => Some(Encap::of_outer(ip.family == Family::V6)),
        _ => None,
    }
}

/// Rules 2 and 3, the lists: the verdict on a listed source.
fn listed(state: &State, ip: &Ip<'_>, now: u64) -> Option<Judgement> {
    if state.lists.matches(List::Allow, ip.family, &ip.src, now) {
        Some(Judgement::Pass(Reason::PassAllowList))
    } else if state.lists.matches(List::Deny, ip.family, &ip.src, now) {
        Some(Judgement::Drop(Reason::DropDenyList))
    } else {
        None
    }
}

/// Rules 4 to 7: a later fragment follows its first; UDP, TCP, the rest.
fn rules(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    chance: &mut Chance,
    ip: &Ip<'_>,
    now: u64,
) -> Judgement {
    if let Fragment::Later(id) = ip.fragment {
        return state
            .fragments
            .follow(&fragment_key(ip, id), now, settings.orphans);
    }
    match ip.upper {
        Upper::Unparsed => Judgement::Pass(Reason::PassMalformed),
        Upper::At {
            protocol: IPPROTO_UDP,
            ..
        } => udp::verdict(state, settings, seed, chance, ip, now),
        Upper::At {
            protocol: IPPROTO_TCP,
            ..
        } => tcp::verdict(state, settings, seed, ip, now),
        Upper::At { .. } => pass(ip),
    }
}

fn fragment_key(ip: &Ip<'_>, id: FragmentId) -> Key {
    Key {
        family: ip.family,
        src: ip.src,
        dst: ip.dst,
        id,
    }
}

/// A first fragment's verdict, remembered for its datagram's later ones.
fn remember(state: &mut State, settings: &Settings, ip: &Ip<'_>, judgement: Judgement, now: u64) {
    if let Fragment::First(id) = ip.fragment {
        let dropped = matches!(judgement, Judgement::Drop(_));
        state.fragments.remember(
            fragment_key(ip, id),
            dropped,
            now,
            settings.fragment_lifetime_ns(),
        );
    }
}

/// The plain pass of an IP packet no rule matched.
fn pass(ip: &Ip<'_>) -> Judgement {
    Judgement::Pass(match ip.family {
        Family::V4 => Reason::PassIpv4,
        Family::V6 => Reason::PassIpv6,
    })
}
