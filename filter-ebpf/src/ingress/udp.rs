//! Rule 5 of ingress, inbound UDP: the reflection defence. NTP control
//! packets (mode 6/7) to port 123 are dropped. A packet from a watched source
//! port is a response and passes only if our egress recorded the query it
//! answers (solicited.rs); proto/ reads the DNS id and NTP origin timestamp.

use filter_common::{PortClass, Reason, SolicitedKey};

use super::pass;
use crate::{
    config,
    packet::{Ip, Packet},
    proto::{dns, ntp},
    solicited,
};

const NTP_PORT: u16 = 123;

#[inline(always)]
pub fn verdict(packet: &Packet, ip: &Ip) -> Reason {
    let Some(udp) = packet.udp(ip.l4_offset) else {
        return Reason::PassMalformed;
    };
    // NTP control queries to us: the gateway must never answer monlist.
    if udp.dst_port == NTP_PORT && ntp::is_control(packet, &udp) {
        return Reason::DropNtpControl;
    }
    let class = config::port_class(udp.src_port);
    let token = match class {
        PortClass::Unwatched => return pass(ip),
        PortClass::Dns => match dns::response_token(packet, &udp) {
            dns::Response::Token(token) => token,
            dns::Response::Query => return pass(ip),
            dns::Response::Malformed => return Reason::PassMalformed,
        },
        PortClass::Ntp => match ntp::response_token(packet, &udp) {
            ntp::Response::Token(token) => token,
            ntp::Response::ClientOrPeer => return pass(ip),
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
