//! Outbound UDP to a watched port: record the query, keyed as its answer will
//! arrive (our post-NAT address and port, the server's, and the DNS id or NTP
//! transmit timestamp the answer echoes).

use filter_common::{Config, PortClass, Reason, SolicitedKey};

use crate::{
    config,
    packet::{Ip, Packet},
    proto::{dns, ntp},
    solicited::{self, Recorded},
};

#[inline(always)]
pub fn record(packet: &Packet, ip: &Ip, config: &Config) -> Reason {
    let Some(udp) = packet.udp(ip.l4_offset) else {
        return Reason::EgressOther;
    };
    let token = match config::port_class(udp.dst_port) {
        PortClass::Unwatched => return Reason::EgressOther,
        PortClass::Dns => dns::query_token(packet, &udp),
        PortClass::Ntp => ntp::query_token(packet, &udp),
        PortClass::Other => Some(0),
    };
    let Some(token) = token else {
        return Reason::EgressOther;
    };
    let key = SolicitedKey {
        local_addr: ip.src,
        remote_addr: ip.dst,
        local_port: udp.src_port,
        remote_port: udp.dst_port,
        family: ip.family.number(),
        token,
    };
    match solicited::record(&key, config::now_ns(), config.solicited_lifetime_ns()) {
        Recorded::Stored => Reason::EgressQueryRecorded,
        Recorded::Evicted => Reason::EgressQueryEvicted,
    }
}
