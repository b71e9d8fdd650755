//! Egress (docs/rules.md, *The reflection defence*, 1; docs/tcp-connections.md):
//! every outgoing UDP packet to a watched port is recorded as a solicited
//! query; TCP SYN-ACKs record handshakes, FINs and RSTs end counted
//! connections (tcp.rs); everything else is `egress_other`. Egress never
//! drops. A later fragment is `egress_other`. IP inside IP (docs/rules.md,
//! *Tunnels*) is recorded from the packet inside, the keys its answers will
//! carry; an inner header that cannot be parsed is `egress_other`.

mod tcp;
mod udp;

use filter_common::Reason;

use crate::{
    State,
    parse::{self, Fragment, IPPROTO_TCP, IPPROTO_UDP, Link, Parsed, Upper},
    settings::Settings,
};

pub fn observe(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    link: Link,
    frame: &[u8],
    now: u64,
) -> Reason {
    let Parsed::Ip(mut ip) = parse::parse(link, frame) else {
        return Reason::EgressOther;
    };
    if ip.carries_tunnel() && !matches!(ip.fragment, Fragment::Later(_)) {
        let Parsed::Ip(inner) = ip.inner() else {
            return Reason::EgressOther;
        };
        ip = inner;
    }
    if matches!(ip.fragment, Fragment::Later(_)) {
        return Reason::EgressOther;
    }
    match ip.upper {
        Upper::At {
            protocol: IPPROTO_UDP,
            ..
        } => udp::record(state, settings, &ip, now),
        Upper::At {
            protocol: IPPROTO_TCP,
            ..
        } => tcp::observe(state, settings, &ip, seed, now),
        _ => Reason::EgressOther,
    }
}
