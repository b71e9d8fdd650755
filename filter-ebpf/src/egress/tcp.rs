//! Outbound TCP, after NAT (docs/tcp-connections.md): a SYN-ACK records the
//! handshake it answers (handshake.rs), so that ingress knows the ACK that
//! completes it; a FIN or RST from a port with a connection limit ends the
//! connection it belongs to (conn.rs). Port-forwarded LAN servers answer
//! from the gateway's address here, so they count like its own services.

use filter_common::{
    Config, Reason,
    handshake::{self as keys, FlowKey},
};

use crate::{
    config, conn,
    handshake::{self, Recorded},
    packet::{Ip, Packet, tcp_flags::*},
};

#[inline(always)]
pub fn observe(packet: &Packet, ip: &Ip, config: &Config) -> Reason {
    let Some(tcp) = packet.tcp(ip.l4_offset) else {
        return Reason::EgressOther;
    };
    let key = FlowKey {
        local_addr: ip.src,
        remote_addr: ip.dst,
        local_port: tcp.src_port,
        remote_port: tcp.dst_port,
        family: ip.family.number(),
    };
    if tcp.flags & (SYN | ACK | RST) == SYN | ACK {
        let expected_ack = keys::expected_ack(tcp.seq);
        let lifetime = config.halfopen_timeout_ns();
        return match handshake::record(
            &key,
            expected_ack,
            config::now_ns(),
            lifetime,
            config.syn_hash_seed,
        ) {
            Recorded::Stored => Reason::EgressHandshakeRecorded,
            Recorded::Evicted => Reason::EgressHandshakeEvicted,
        };
    }
    if tcp.flags & (FIN | RST) != 0
        && conn::limit(tcp.src_port) != 0
        && conn::close(&key, config, config::now_ns())
    {
        return Reason::EgressConnClosed;
    }
    Reason::EgressOther
}
