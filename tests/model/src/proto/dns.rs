//! DNS (README: "a response (QR bit set) passes only if it consumes a live
//! entry with the same addresses, ports and id"; "a query that merely comes
//! from port 53 (QR clear) is not a response and passes").
//!
//! The id and the flags are the first 4 bytes. A datagram of 4 to 11 bytes
//! is shorter than a DNS header and no resolver accepts it as an answer; it
//! is judged by its QR bit all the same (README, *Edges*).

/// What an inbound datagram from a DNS port is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    Response {
        id: u16,
    },
    Query,
    /// Shorter than the id and the flags.
    Short,
}

const QR: u8 = 0x80;

pub fn inbound(datagram: &[u8]) -> Inbound {
    match datagram {
        [a, b, flags, _, ..] if flags & QR != 0 => Inbound::Response {
            id: u16::from_be_bytes([*a, *b]),
        },
        [_, _, _, _, ..] => Inbound::Query,
        _ => Inbound::Short,
    }
}

/// The id egress records for an outgoing query (QR clear).
pub fn query_id(datagram: &[u8]) -> Option<u16> {
    match inbound(datagram) {
        Inbound::Query => Some(u16::from_be_bytes([datagram[0], datagram[1]])),
        _ => None,
    }
}
