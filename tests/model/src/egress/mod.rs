//! Egress (docs/rules.md, *The reflection defence*, 1; docs/tcp-connections.md):
//! every outgoing UDP packet to a watched port is recorded as a solicited
//! query; TCP SYN-ACKs record handshakes, FINs and RSTs end counted
//! connections (tcp.rs); everything else is `egress_other`. Egress never
//! drops. A later fragment is `egress_other`.

mod tcp;
mod udp;

use filter_common::Reason;

use crate::{
    State,
    parse::{self, Fragment, IPPROTO_TCP, IPPROTO_UDP, Parsed, Upper},
    settings::Settings,
};

pub fn observe(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    frame: &[u8],
    now: u64,
) -> Reason {
    match parse::parse(frame) {
        Parsed::Ip(ip)
            if matches!(
                ip.upper,
                Upper::At {
                    protocol: IPPROTO_UDP,
                    ..
                }
            ) && !matches!(ip.fragment, Fragment::Later(_)) =>
        {
            udp::record(state, settings, &ip, now)
        }
        Parsed::Ip(ip)
            if matches!(
                ip.upper,
                Upper::At {
                    protocol: IPPROTO_TCP,
                    ..
                }
            ) && !matches!(ip.fragment, Fragment::Later(_)) =>
        {
            tcp::observe(state, settings, &ip, seed, now)
        }
        _ => Reason::EgressOther,
    }
}
