//! Inbound UDP: the reflection defence (docs/rules.md, *The reflection defence*),
//! then the query limits (docs/query-limits.md, *What is limited*).
//! - to port 123 or an NTP service port in NTP mode 6 or 7: drop
//!   (`drop_ntp_control`), so the gateway can never be the amplifier;
//! - from a DNS port: a response (QR set) must consume a recorded query with
//!   the same addresses, ports and id (`pass_solicited`), otherwise
//!   `drop_unsolicited_dns`; a query (QR clear) is a request (below);
//! - from an NTP port: modes 6 and 7 drop; modes 4 and 5 must consume a
//!   recorded request whose transmit timestamp they echo as their origin
//!   timestamp, otherwise `drop_unsolicited_ntp`; other modes are requests;
//! - from another amplification port: any packet must consume a recorded
//!   request, otherwise `drop_unsolicited_other`;
//! - from any other port: a request.
//!
//! A request (a packet that is no response) to a DNS service port: shorter
//! than a DNS header, `pass_malformed`; QR clear, the DNS query limits
//! (query.rs); QR set, passes. To an NTP service port: mode 3, the NTP query
//! limits; other modes pass. To any other port: passes.
//!
//! A UDP header cut short, or a DNS/NTP field outside the datagram: pass
//! (`pass_malformed`).

use filter_common::Reason;

use super::pass;
use filter_common::query::Service;

use crate::{
    Chance, Judgement, State,
    parse::{Ip, Udp},
    proto::{dns, ntp},
    query,
    settings::{PortClass, Settings},
    solicited::{Key, Token},
};

const NTP_PORT: u16 = 123;

pub fn verdict(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    chance: &mut Chance,
    ip: &Ip<'_>,
    now: u64,
) -> Judgement {
    let Some(udp) = ip.udp() else {
        return Judgement::Pass(Reason::PassMalformed);
    };
    let service = settings.query.service(udp.dst_port);
    if (udp.dst_port == NTP_PORT || service == Some(Service::Ntp)) && ntp::is_control(udp.datagram)
    {
        return Judgement::Drop(Reason::DropNtpControl);
    }
    let mut as_request = || request(state, settings, seed, chance, ip, &udp, service, now);
    let class = settings.port_class(udp.src_port);
    let token = match class {
        PortClass::Unwatched => return as_request(),
        PortClass::Dns => match dns::inbound(udp.datagram) {
            dns::Inbound::Response { id } => Token::Dns(id),
            dns::Inbound::Query => return as_request(),
            dns::Inbound::Short => return Judgement::Pass(Reason::PassMalformed),
        },
        PortClass::Ntp => match ntp::inbound(udp.datagram) {
            ntp::Inbound::Response { origin } => Token::Ntp(origin),
            ntp::Inbound::ClientOrPeer => return as_request(),
            ntp::Inbound::Control => return Judgement::Drop(Reason::DropNtpControl),
            ntp::Inbound::Short => return Judgement::Pass(Reason::PassMalformed),
        },
        PortClass::Other => Token::None,
    };
    let key = Key {
        family: ip.family,
        local: ip.dst,
        remote: ip.src,
        local_port: udp.dst_port,
        remote_port: udp.src_port,
        token,
    };
    if state.solicited.consume(&key, now) {
        return Judgement::Pass(Reason::PassSolicited);
    }
    Judgement::Drop(match class {
        PortClass::Dns => Reason::DropUnsolicitedDns,
        PortClass::Ntp => Reason::DropUnsolicitedNtp,
        _ => Reason::DropUnsolicitedOther,
    })
}

/// A packet that is no response, to our `service` (if its port is one).
#[allow(clippy::too_many_arguments)]
fn request(
    state: &mut State,
    settings: &Settings,
    seed: u64,
    chance: &mut Chance,
    ip: &Ip<'_>,
    udp: &Udp<'_>,
    service: Option<Service>,
    now: u64,
) -> Judgement {
    let queries = &mut state.queries;
    match service {
        None => pass(ip),
        Some(Service::Dns) => match dns::request(udp.datagram) {
            dns::Request::Short => Judgement::Pass(Reason::PassMalformed),
            dns::Request::Response => pass(ip),
            dns::Request::Query(fit) => {
                query::dns_query(queries, chance, ip, udp, fit, settings, seed, now)
            }
        },
        Some(Service::Ntp) if ntp::mode(udp.datagram) == Some(ntp::MODE_CLIENT) => {
            query::ntp_request(queries, ip, &settings.query, seed, now)
        }
        Some(Service::Ntp) => pass(ip),
    }
}
