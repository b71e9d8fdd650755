//! Rule 5 of ingress, inbound UDP: the reflection defence. NTP control
//! packets (mode 6/7) to port 123 (or an NTP service port) are dropped. A
//! packet from a watched source port is a response and passes only if our
//! egress recorded the query it answers (solicited.rs); proto/ reads the DNS
//! id and NTP origin timestamp. A request to one of our service ports (a
//! DNS query, an NTP client request) that is no response meets the query
//! limits (request.rs).

use filter_common::{Config, PortClass, Reason, ServiceClass, SolicitedKey};

use super::request;
use crate::{
    config,
    packet::{Ip, Packet},
    proto::{dns, ntp},
    solicited,
};

const NTP_PORT: u16 = 123;

#[inline(always)]
pub fn verdict(packet: &Packet, ip: &Ip, config: &Config) -> Reason {
    let Some(udp) = packet.udp(ip.l4_offset) else {
        return Reason::PassMalformed;
    };
    let (class, service) = config::udp_roles(udp.src_port, udp.dst_port);
    // The NTP mode of a packet to an NTP port, read once for both rules.
    let ntp_mode = if udp.dst_port == NTP_PORT || service == ServiceClass::Ntp {
        ntp::mode(packet, &udp)
    } else {
        None
    };
    // NTP control queries to us: the gateway must never answer monlist.
    if ntp::is_control_mode(ntp_mode) {
        return Reason::DropNtpControl;
    }
    let request = |packet, udp| request::verdict(packet, ip, udp, service, ntp_mode, config);
    let token = match class {
        PortClass::Unwatched => return request(packet, &udp),
        PortClass::Dns => match dns::response_token(packet, &udp) {
            dns::Response::Token(token) => token,
            dns::Response::Query => {
                return request(packet, &udp);
            }
            dns::Response::Malformed => return Reason::PassMalformed,
        },
        PortClass::Ntp => match ntp::response_token(packet, &udp) {
            ntp::Response::Token(token) => token,
            ntp::Response::ClientOrPeer => {
                return request(packet, &udp);
            }
            ntp::Response::Control => return Reason::DropNtpControl,
            ntp::Response::Malformed => return Reason::PassMalformed,
        },
        PortClass::Other => 0,
    };
    let key = SolicitedKey {
        local_addr: ip.dst,
        remote_addr: ip.src,
        local_port: udp.dst_port,
        remote_port: udp.src_port,
        family: ip.family.number(),
        token,
    };
    if solicited::consume(&key) {
        return Reason::PassSolicited;
    }
    match class {
        PortClass::Dns => Reason::DropUnsolicitedDns,
        PortClass::Ntp => Reason::DropUnsolicitedNtp,
        _ => Reason::DropUnsolicitedOther,
    }
}
