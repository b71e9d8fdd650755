//! Egress (README, *The reflection defence*, 1): every outgoing UDP packet
//! to a watched port is recorded as a solicited query; everything else is
//! `egress_other`. Egress never drops.

mod udp;

use filter_common::Reason;

use crate::{
    State,
    parse::{self, Fragment, IPPROTO_UDP, Parsed, Upper},
    settings::Settings,
};

pub fn observe(state: &mut State, settings: &Settings, frame: &[u8], now: u64) -> Reason {
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
        _ => Reason::EgressOther,
    }
}
