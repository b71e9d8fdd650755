//! Outbound TCP, after NAT (docs/tcp-connections.md, *Where it sits*):
//! - a SYN-ACK records the handshake it answers and marks its source port
//!   as a service port (`egress_handshake_recorded`, or
//!   `egress_handshake_evicted` when it pushed a live handshake out);
//! - a FIN or RST from a port with a connection limit ends the tracked
//!   connection it belongs to (`egress_conn_closed`);
//! - anything else, a fixed header cut short included: `egress_other`.
//!
//! A SYN-ACK with RST set is not one (the docs say "a SYN-ACK"; the
//! filter's code reads it as the RST it also is, which no kernel sends with
//! SYN and ACK).

use filter_common::Reason;

use crate::{
    State,
    handshakes::{Flow, Recorded},
    parse::Ip,
    settings::Settings,
};

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

pub fn observe(state: &mut State, settings: &Settings, ip: &Ip<'_>, seed: u64, now: u64) -> Reason {
    let Some(tcp) = ip.tcp() else {
        return Reason::EgressOther;
    };
    let flow = Flow {
        family: ip.family,
        local: ip.src,
        remote: ip.dst,
        local_port: tcp.src_port,
        remote_port: tcp.dst_port,
    };
    if tcp.flags & (SYN | ACK | RST) == SYN | ACK {
        return match state.handshakes.record(
            flow,
            tcp.seq,
            now,
            settings.halfopen_timeout_ns(),
            seed,
        ) {
            Recorded::Stored => Reason::EgressHandshakeRecorded,
            Recorded::Evicted => Reason::EgressHandshakeEvicted,
        };
    }
    if tcp.flags & (FIN | RST) != 0
        && settings.conn_limit(tcp.src_port).is_some()
        && state.conn.close(&flow, seed)
    {
        return Reason::EgressConnClosed;
    }
    Reason::EgressOther
}
