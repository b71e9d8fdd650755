//! WAN egress, after NAT: records UDP queries to watched ports as solicited,
//! so their answers pass ingress (udp.rs), and TCP handshakes and connection
//! ends (tcp.rs). Never drops.

mod tcp;
mod udp;

use filter_common::{Config, Reason};

use crate::packet::{Fragment, IPPROTO_TCP, IPPROTO_UDP, Network, Packet};

#[inline(always)]
pub fn observe(packet: &Packet, config: &Config) -> Reason {
    match packet.network() {
        Network::Ip(ip)
            if ip.protocol == IPPROTO_UDP && !matches!(ip.fragment, Fragment::Later { .. }) =>
        {
            udp::record(packet, &ip, config)
        }
        Network::Ip(ip)
            if ip.protocol == IPPROTO_TCP && !matches!(ip.fragment, Fragment::Later { .. }) =>
        {
            tcp::observe(packet, &ip, config)
        }
        _ => Reason::EgressOther,
    }
}
