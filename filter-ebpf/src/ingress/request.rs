//! Rule 5 of ingress, second part: inbound requests to a service on our side
//! (a DNS or NTP server on the gateway, or behind a port forward: XDP sees
//! the public address and port before NAT). Only requests are limited: a
//! DNS message with QR clear (a query, whatever its opcode) and an NTP client
//! request (mode 3). Everything else to a service port (DNS responses, NTP
//! symmetric and broadcast modes) is left to the rest of the rules; NTP
//! control modes never get here (udp.rs drops them first).
//!
//! The dispatcher hands requests to `wan_request`, a global function of its
//! own: it reaches them from three places (requests from an unwatched port,
//! and DNS and NTP queries from a watched one), which the verifier would
//! otherwise walk this module's rules from, three times.
//!
//! A request within its limits (query.rs) passes; over a limit it is
//! dropped, or for DNS, 1 in `dns_slip`, answered from here with a truncated
//! reply (reply.rs), so a real resolver that shares a limit with a victim
//! asks again over TCP; at most `dns_slip_rate` replies per second, the
//! rest dropped. A DNS query's question is walked once, by a global
//! function of its own (`wan_dns_question`, so the verifier walks its label
//! loop once, not once per header shape): its name and type are the key of
//! the name level, and where it ends is noted for the slip reply.
//!
//! A datagram to a DNS service port too short to be a DNS message (under
//! 12 bytes) passes, counted as malformed: a server answers nothing to it,
//! so it can amplify nothing, and the stack would accept it. (An NTP
//! datagram without a mode is no client request: it passes as plain UDP.)

use aya_ebpf::bindings::xdp_md;
use filter_common::{
    Config, Reason,
    query::{self, Level, Service},
};

use super::pass;
use crate::{
    kernel,
    packet::{Ip, Packet, Udp},
    proto::dns,
    query::{over_limit, slip_allowed},
    reply,
};

/// The body of `wan_request`: a request to our `service` (udp.rs checked
/// that it is one: a DNS message, an NTP client request).
#[inline(always)]
pub fn verdict(
    ctx: *mut xdp_md,
    packet: &Packet,
    ip: &Ip,
    service: Service,
    config: &Config,
) -> Reason {
    let Some(udp) = packet.udp(ip.l4_offset) else {
        return Reason::PassMalformed;
    };
    // The clock only for a request to a service port (as main.rs: read where
    // a rule needs it).
    let now = crate::config::now_ns();
    match service {
        Service::Dns => dns_query(ctx, packet, ip, &udp, config, now),
        Service::Ntp => ntp_request(ip, config, now),
    }
}

#[inline(always)]
fn dns_query(
    ctx: *mut xdp_md,
    packet: &Packet,
    ip: &Ip,
    udp: &Udp,
    config: &Config,
    now: u64,
) -> Reason {
    let header = match dns::request(packet, udp) {
        dns::Request::Query(header) => header,
        dns::Request::Response => return pass(ip),
        dns::Request::Short => return Reason::PassMalformed,
    };
    // The message ends where the UDP length says (the frame may be padded),
    // and what the frame lacks of it is not there to read.
    let end = (ip.l4_offset + usize::from(udp.length)).min(packet.len());
    let question = if header.questions == 0 {
        None
    } else {
        dns::Question::unpacked(crate::wan_dns_question(ctx, udp.payload as u64, end as u64))
    };
    let key = question.as_ref().map(|question| question.key);
    let Some(level) = over_limit(Service::Dns, ip, key, config, now) else {
        return Reason::PassDnsQuery;
    };
    // Only drawn when the share needs it.
    let random = if config.dns_slip > 1 {
        kernel::random()
    } else {
        0
    };
    if reply::possible()
        && query::slips(config.dns_slip, random)
        && slip_allowed(config, now)
        && let Some(question) = question
        && reply::plan(packet, ip, udp, &header, question.end, level)
    {
        return Reason::TxDnsTruncated;
    }
    reply::dropped(level)
}

#[inline(always)]
fn ntp_request(ip: &Ip, config: &Config, now: u64) -> Reason {
    match over_limit(Service::Ntp, ip, None, config, now) {
        None => Reason::PassNtpQuery,
        Some(Level::Source) => Reason::DropNtpQuerySource,
        Some(Level::Prefix) => Reason::DropNtpQueryPrefix,
        // NTP has no name level.
        Some(Level::Global | Level::Name) => Reason::DropNtpQueryGlobal,
    }
}
