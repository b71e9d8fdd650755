//! What an inbound DNS packet is: a response (matched by transaction id) or
//! a query that merely comes from port 53 (some resolvers query from 53).

use crate::packet::Packet;

#[allow(clippy::enum_variant_names)] // "not a response" reads best
pub enum Response {
    /// A response; the token is its transaction id.
    Token(u64),
    /// A query (QR bit clear): not subject to the reflection rule.
    NotAResponse,
    /// Too short to hold a DNS header's id and flags.
    Malformed,
}

/// The QR bit of the flags: set in responses.
const FLAG_RESPONSE: u16 = 0x8000;

/// The DNS header starts the UDP payload: id (2 bytes), flags (2 bytes).
#[inline(always)]
pub fn response_token(packet: &Packet, payload: usize) -> Response {
    match id_flags(packet, payload) {
        Some((id, flags)) if flags & FLAG_RESPONSE != 0 => Response::Token(u64::from(id)),
        Some(_) => Response::NotAResponse,
        None => Response::Malformed,
    }
}

/// The token egress records for a query: its transaction id, if it is a query.
#[inline(always)]
pub fn query_token(packet: &Packet, payload: usize) -> Option<u64> {
    match id_flags(packet, payload) {
        Some((id, flags)) if flags & FLAG_RESPONSE == 0 => Some(u64::from(id)),
        _ => None,
    }
}

#[inline(always)]
fn id_flags(packet: &Packet, payload: usize) -> Option<(u16, u16)> {
    let id_flags = packet.be32_at(payload)?;
    Some(((id_flags >> 16) as u16, id_flags as u16))
}
