//! WAN ingress: the verdict of every inbound packet, in rule order.
//! 1. not IP, or headers we cannot parse: pass (counted);
//! 2. a later IP fragment: the verdict of its first fragment (fragments.rs);
//! 3. UDP: the reflection rules (udp.rs; protocol headers in proto/);
//! 4. anything else: pass.
//!
//! A first fragment's verdict is remembered for the rest of its datagram.

mod udp;

use filter_common::{Action, Config, Reason};

use crate::{
    fragments,
    packet::{Family, Fragment, IPPROTO_UDP, Ip, Network, Packet},
};

#[inline(always)]
pub fn verdict(packet: &Packet, config: &Config, now: u64) -> Reason {
    let ip = match packet.network() {
        Network::Ip(ip) => ip,
        Network::NotIp => return Reason::PassNotIp,
        Network::Malformed => return Reason::PassMalformed,
    };
    if let Fragment::Later { id } = ip.fragment {
        return fragments::follow(&ip, id, now, config);
    }
    let reason = match ip.protocol {
        IPPROTO_UDP => udp::verdict(packet, &ip, now),
        _ => pass(&ip),
    };
    if let Fragment::First { id } = ip.fragment {
        fragments::remember(&ip, id, reason.action() == Action::Drop, now, config);
    }
    reason
}

/// The plain pass reason of an IP packet no rule matched.
#[inline(always)]
pub fn pass(ip: &Ip) -> Reason {
    match ip.family {
        Family::Ipv4 => Reason::PassIpv4,
        Family::Ipv6 => Reason::PassIpv6,
    }
}
