//! An outgoing UDP query to a watched port, recorded as its answer will
//! arrive: our (post-NAT) address and port, the server's, and the token:
//! the DNS id of a query (QR clear), the transmit timestamp of an NTP client
//! request (mode 3), nothing for the other amplification ports. A DNS or NTP
//! packet that is no such query records nothing (`egress_other`).

use filter_common::Reason;

use crate::{
    State,
    parse::Ip,
    proto::{dns, ntp},
    settings::{PortClass, Settings},
    solicited::{Key, Recorded, Token},
};

pub fn record(state: &mut State, settings: &Settings, ip: &Ip<'_>, now: u64) -> Reason {
    let Some(udp) = ip.udp() else {
        return Reason::EgressOther;
    };
    let token = match settings.port_class(udp.dst_port) {
        PortClass::Unwatched => None,
        PortClass::Dns => dns::query_id(udp.datagram).map(Token::Dns),
        PortClass::Ntp => ntp::request_transmit(udp.datagram).map(Token::Ntp),
        PortClass::Other => Some(Token::None),
    };
    let Some(token) = token else {
        return Reason::EgressOther;
    };
    let key = Key {
        family: ip.family,
        local: ip.src,
        remote: ip.dst,
        local_port: udp.src_port,
        remote_port: udp.dst_port,
        token,
    };
    match state
        .solicited
        .record(key, now, settings.solicited_lifetime_ns())
    {
        Recorded::Stored => Reason::EgressQueryRecorded,
        Recorded::Evicted => Reason::EgressQueryEvicted,
    }
}
