//! Rule 6 of ingress, inbound TCP (docs/tcp-connections.md):
//! - a connection attempt (SYN set, ACK clear) goes through the SYN rules
//!   (syn.rs: rate buckets, half-open budgets, connection limits);
//! - a SYN-ACK passes: it answers a connection the gateway or the LAN opened;
//! - any other segment to a port that egress never saw answer a SYN passes
//!   after that one read (handshake.rs): the gateway's own connections and
//!   those of the LAN behind NAT live on such ports;
//! - to a service port: a segment of a connection with a limit keeps it
//!   counting, or ends it (FIN, RST); the ACK that completes a recorded
//!   handshake gives the SYN's half-open units back and, where the port has
//!   a limit, starts counting the connection (conn.rs).
//!
//! Only connection attempts are ever dropped here.

use filter_common::{Config, Reason, handshake::FlowKey};

use super::pass;
use crate::{
    conn::{self, Followed, Opened},
    halfopen, handshake,
    packet::{Ip, Packet, Tcp, tcp_flags::*},
    syn,
};

/// Whether any rule here looks at `tcp`: a connection attempt, or any other
/// segment to a port egress saw answer a SYN. The dispatcher passes the
/// rest without entering `wan_tcp`: SYN-ACKs, and the gateway's own
/// connections and the LAN's behind NAT, whose ports answer no SYN.
#[inline(always)]
pub fn has_rules(tcp: &Tcp) -> bool {
    is_attempt(tcp) || tcp.flags & SYN == 0 && handshake::is_service(tcp.dst_port)
}

/// Whether `tcp` is a connection attempt: SYN set, ACK clear.
#[inline(always)]
pub fn is_attempt(tcp: &Tcp) -> bool {
    tcp.flags & (SYN | ACK) == SYN
}

/// The body of `wan_tcp`, at `now`; `source` is what the SYN's source
/// bucket made of a connection attempt (the dispatcher took its token).
#[inline(always)]
pub fn verdict(
    packet: &Packet,
    ip: &Ip,
    config: &Config,
    now: u64,
    source: syn::SourceLevel,
) -> Reason {
    let Some(tcp) = packet.tcp(ip.l4_offset) else {
        return Reason::PassMalformed;
    };
    if tcp.flags & SYN != 0 {
        if tcp.flags & ACK == 0 {
            return syn::verdict(ip, tcp.dst_port, config, now, source);
        }
        return pass(ip);
    }
    if !handshake::is_service(tcp.dst_port) {
        return pass(ip);
    }
    to_service(ip, &tcp, config, now)
}

/// A segment (not a SYN) to a port that answers SYNs.
#[inline(always)]
fn to_service(ip: &Ip, tcp: &Tcp, config: &Config, now: u64) -> Reason {
    let key = FlowKey {
        local_addr: ip.dst,
        remote_addr: ip.src,
        local_port: tcp.dst_port,
        remote_port: tcp.src_port,
        family: ip.family.number(),
    };
    let limited = conn::limit(tcp.dst_port) != 0;
    let closing = tcp.flags & (FIN | RST) != 0;
    if limited {
        match conn::follow(&key, closing, config, now) {
            Followed::Untracked => {}
            Followed::Active => return pass(ip),
            Followed::Closed => return Reason::PassConnClosed,
        }
    }
    if tcp.flags & (ACK | RST) != ACK
        || !handshake::complete(&key, tcp.ack, now, config.syn_hash_seed)
    {
        return pass(ip);
    }
    halfopen::give_back(ip, config, now);
    if !limited {
        return Reason::PassHandshake;
    }
    conn::handshake_done(&key, config, now);
    // A FIN on the completing ACK ends the connection as it starts.
    if closing {
        return Reason::PassHandshake;
    }
    match conn::open(&key, config, now) {
        Opened::Stored => Reason::PassHandshake,
        Opened::Evicted => Reason::PassConnEvicted,
    }
}
