//! WAN ingress: the verdict of every inbound packet, in rule order.
//! 1. not IP, or headers we cannot parse: pass (counted; the parser is packet.rs);
//! 2. source on the allow list: pass, no drop rule looks at it (lists.rs);
//! 3. source on the deny list: drop;
//! 4. a later IP fragment: the verdict of its first fragment (fragments.rs);
//! 5. UDP: the reflection rules (udp.rs; protocol headers in proto/), then
//!    the limits on requests to our DNS and NTP services (request.rs);
//! 6. TCP SYN without ACK: the SYN token buckets (tcp.rs, syn.rs);
//! 7. anything else: pass.
//!
//! A first fragment's verdict is remembered for the rest of its datagram,
//! also when its headers after the fragment header could not be walked
//! (it then passes as malformed, and so do the rest).

mod request;
mod tcp;
mod udp;

use filter_common::{Action, Config, Reason};

use crate::{
    fragments, lists,
    packet::{Family, Fragment, IPPROTO_UDP, Ip, Network, Packet},
};

#[inline(always)]
pub fn verdict(packet: &Packet, config: &Config) -> Reason {
    let (ip, walked) = match packet.network() {
        Network::Ip(ip) => (ip, true),
        Network::UnwalkedFirstFragment(ip) => (ip, false),
        Network::NotIp => return Reason::PassNotIp,
        Network::Malformed => return Reason::PassMalformed,
    };
    if lists::allowed(&ip, config) {
        return Reason::PassAllowList;
    }
    if lists::denied(&ip, config) {
        return Reason::DropDenyList;
    }
    if let Fragment::Later { id } = ip.fragment {
        return fragments::follow(&ip, id, config);
    }
    let reason = match ip.protocol {
        _ if !walked => Reason::PassMalformed,
        IPPROTO_UDP => udp::verdict(packet, &ip, config),
        tcp::IPPROTO_TCP => tcp::verdict(packet, &ip, config),
        _ => pass(&ip),
    };
    if let Fragment::First { id } = ip.fragment {
        fragments::remember(&ip, id, reason.action() == Action::Drop, config);
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
