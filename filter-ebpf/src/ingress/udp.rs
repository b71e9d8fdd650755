//! Rule 5 of ingress, inbound UDP: the reflection defence. NTP control
//! packets (mode 6/7) to port 123 (or an NTP service port) are dropped. A
//! packet from a watched source port is a response and passes only if our
//! egress recorded the query it answers (solicited.rs); proto/ reads the DNS
//! id and NTP origin timestamp. A request to one of our service ports (a
//! DNS query, an NTP client request) that is no response meets the query
//! limits (request.rs, `wan_request`).
//!
//! The dispatcher runs [`verdict`] itself, up to the solicited table: it
//! drops a response whose set holds nothing live and calls `wan_request`
//! for a request; only a response that may be solicited enters `wan_udp`,
//! which runs it again and consumes the query.

use filter_common::{PortClass, Reason, ServiceClass, SolicitedKey, query::Service};

use super::pass;
use crate::{
    config, kernel,
    packet::{Ip, Packet, Udp},
    proto::{dns, ntp},
};

const NTP_PORT: u16 = 123;

/// The roles of an inbound datagram's ports (config::udp_roles): how its
/// source port is watched (is it a response?) and what its destination
/// port serves (is it a request?). Looked up in the dispatcher, and again
/// inside `wan_udp`: passed in as an argument, the roles made LLVM spill
/// the transport offset and reload it without its bound, which Linux 6.1's
/// verifier refused.
#[derive(Clone, Copy)]
pub struct Roles {
    pub class: PortClass,
    pub service: ServiceClass,
}

impl Roles {
    #[inline(always)]
    pub fn of(src_port: u16, dst_port: u16) -> Roles {
        let (class, service) = config::udp_roles(src_port, dst_port);
        Roles { class, service }
    }

    /// Whether any rule here looks at a datagram with these roles to
    /// `dst_port`: from a watched port, to a service port, or to port 123
    /// (NTP control modes). The dispatcher passes the rest at once.
    #[inline(always)]
    pub fn have_rules(self, dst_port: u16) -> bool {
        self.class != PortClass::Unwatched
            || self.service != ServiceClass::None
            || dst_port == NTP_PORT
    }
}

/// Where an inbound UDP datagram's verdict comes from.
pub enum Verdict {
    /// This module's rules decided.
    Reason(Reason),
    /// Not a response: a request to this service of ours, for the limits on
    /// requests (request.rs).
    Request(Service),
    /// A response from a port watched as `PortClass`: it passes only if it
    /// consumes the query recorded under its key ([`answered`]).
    Response(SolicitedKey, PortClass),
}

impl From<Reason> for Verdict {
    #[inline(always)]
    fn from(reason: Reason) -> Verdict {
        Verdict::Reason(reason)
    }
}

/// The rules of this module for `udp`, whose ports have `roles`, up to the
/// solicited table, which the caller reads: the dispatcher drops a response
/// whose set holds nothing live itself (what a flood of spoofed responses
/// is, almost all of it), `wan_udp` consumes the rest.
#[inline(always)]
pub fn verdict(packet: &Packet, ip: &Ip, udp: &Udp, roles: Roles) -> Verdict {
    let Roles { class, service } = roles;
    // The NTP mode of a packet to an NTP port, read once for both rules.
    // Stored and loaded again: a number LLVM cannot fold into the
    // comparisons below on the paths that never read it.
    let ntp_mode = kernel::through_memory(
        if udp.dst_port == NTP_PORT || service == ServiceClass::Ntp {
            ntp::mode(packet, udp)
        } else {
            ntp::NO_MODE
        },
    );
    // NTP control queries to us: the gateway must never answer monlist.
    if ntp::is_control_mode(ntp_mode) {
        return Reason::DropNtpControl.into();
    }
    // What a datagram that is no response is: a DNS message or an NTP client
    // request (mode 3) to one of our services, or nothing to limit.
    let request = match service {
        ServiceClass::Dns => Verdict::Request(Service::Dns),
        ServiceClass::Ntp if ntp::is_client_mode(ntp_mode) => Verdict::Request(Service::Ntp),
        _ => pass(ip).into(),
    };
    let token = match class {
        PortClass::Unwatched => return request,
        PortClass::Dns => match dns::response_token(packet, udp) {
            dns::Response::Token(token) => token,
            dns::Response::Query => return request,
            dns::Response::Malformed => return Reason::PassMalformed.into(),
        },
        PortClass::Ntp => match ntp::response_token(packet, udp) {
            ntp::Response::Token(token) => token,
            ntp::Response::ClientOrPeer => return request,
            ntp::Response::Control => return Reason::DropNtpControl.into(),
            ntp::Response::Malformed => return Reason::PassMalformed.into(),
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
    Verdict::Response(key, class)
}

/// The verdict on a response from a port watched as `class`: it passes if
/// it `consumed` a recorded query.
#[inline(always)]
pub fn answered(class: PortClass, consumed: bool) -> Reason {
    if consumed {
        return Reason::PassSolicited;
    }
    match class {
        PortClass::Dns => Reason::DropUnsolicitedDns,
        PortClass::Ntp => Reason::DropUnsolicitedNtp,
        _ => Reason::DropUnsolicitedOther,
    }
}
