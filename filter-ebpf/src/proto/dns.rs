//! What an inbound DNS packet is: a response (matched by transaction id) or
//! a query that merely comes from port 53 (some resolvers query from 53).

use crate::packet::{Packet, Udp};

pub enum Response {
    /// A response; the token is its transaction id.
    Token(u64),
    /// A query (QR bit clear): not subject to the reflection rule.
    Query,
    /// Too short to hold a DNS header's id and flags.
    Malformed,
}

/// The QR bit of the flags: set in responses.
const FLAG_RESPONSE: u16 = 0x8000;

/// The DNS header starts the UDP payload: id (2 bytes), flags (2 bytes).
#[inline(always)]
pub fn response_token(packet: &Packet, udp: &Udp) -> Response {
    match id_flags(packet, udp) {
        Some((id, flags)) if flags & FLAG_RESPONSE != 0 => Response::Token(u64::from(id)),
        Some(_) => Response::Query,
        None => Response::Malformed,
    }
}

/// The token egress records for a query: its transaction id, if it is a query.
#[inline(always)]
pub fn query_token(packet: &Packet, udp: &Udp) -> Option<u64> {
    match id_flags(packet, udp) {
        Some((id, flags)) if flags & FLAG_RESPONSE == 0 => Some(u64::from(id)),
        _ => None,
    }
}

/// The id and flags, if the datagram holds them (bytes past its end, such
/// as Ethernet padding, are not its content).
#[inline(always)]
fn id_flags(packet: &Packet, udp: &Udp) -> Option<(u16, u16)> {
    if udp.readable < 4 {
        return None;
    }
    let id_flags = packet.be32_at(udp.payload)?;
    Some(((id_flags >> 16) as u16, id_flags as u16))
}
