//! WAN ingress: decides the verdict of every inbound packet.

use filter_common::Reason;

use crate::packet::{Network, Packet};

#[inline(always)]
pub fn verdict(packet: &Packet) -> Reason {
    match packet.network() {
        Network::Ipv4 => Reason::PassIpv4,
        Network::Ipv6 => Reason::PassIpv6,
        Network::NotIp => Reason::PassNotIp,
        Network::Malformed => Reason::PassMalformed,
    }
}
