//! WAN egress: observes outbound packets after NAT. Never drops.

use filter_common::Reason;

use crate::packet::{Network, Packet};

#[inline(always)]
pub fn observe(packet: &Packet) -> Reason {
    match packet.network() {
        Network::Ipv4 => Reason::EgressIpv4,
        Network::Ipv6 => Reason::EgressIpv6,
        Network::NotIp | Network::Malformed => Reason::EgressOther,
    }
}
