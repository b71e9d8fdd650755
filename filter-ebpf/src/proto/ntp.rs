//! What an inbound NTP packet is. Responses (server mode 4, broadcast mode 5)
//! echo the client's transmit timestamp as their origin timestamp, which is
//! the token. Modes 6 and 7 (control, private: monlist) are always dropped.
//! Every field read must lie inside the datagram (not in padding after it).

use crate::packet::{Packet, Udp};

const MODE_SERVER: u8 = 4;
const MODE_BROADCAST: u8 = 5;
const MODE_CONTROL: u8 = 6;
const MODE_PRIVATE: u8 = 7;
const MODE_CLIENT: u8 = 3;
/// Offsets in the NTP header of the origin and transmit timestamps.
const ORIGIN_TIMESTAMP: usize = 24;
const TRANSMIT_TIMESTAMP: usize = 40;
/// A client request's length up to the end of its transmit timestamp.
const QUERY_LEN: usize = TRANSMIT_TIMESTAMP + 8;

pub enum Response {
    Token(u64),
    /// Client or peer modes from port 123 (ntpd queries from 123).
    ClientOrPeer,
    Control,
    Malformed,
}

/// What [`mode`] gives for a datagram without a first byte: no mode.
pub const NO_MODE: u8 = 0xff;

/// The mode of the NTP packet in `udp`, or [`NO_MODE`] if the datagram has
/// no first byte. A number on every path, not an `Option`: LLVM left the
/// payload of a `None` unwritten (a map pointer in its register), and the
/// verifier refused the mask it then applied to it.
#[inline(always)]
pub fn mode(packet: &Packet, udp: &Udp) -> u8 {
    if udp.readable == 0 {
        return NO_MODE;
    }
    // The first byte is leap indicator, version and mode (low 3 bits). Bytes
    // are read in pairs: this one ends at it (the other is the UDP checksum's).
    packet
        .be16_at(udp.payload - 1)
        .map_or(NO_MODE, |pair| pair as u8 & 0x07)
}

/// Eight bytes of the datagram at `offset` of its payload, as on the wire.
#[inline(always)]
fn timestamp(packet: &Packet, udp: &Udp, offset: usize) -> Option<u64> {
    if udp.readable < offset + 8 {
        return None;
    }
    packet.raw64_at(udp.payload + offset)
}

/// True for a client request (mode 3): what an NTP server answers, and
/// what the query limits count. Takes the mode read once by ingress/udp.rs
/// (a second read of the same byte can lose its bounds check to LLVM, which
/// merges it with the first, and the verifier then refuses it).
#[inline(always)]
pub fn is_client_mode(mode: u8) -> bool {
    mode == MODE_CLIENT
}

/// True for mode 6 or 7 (control, private: monlist).
#[inline(always)]
pub fn is_control_mode(mode: u8) -> bool {
    matches!(mode, MODE_CONTROL | MODE_PRIVATE)
}

#[inline(always)]
pub fn response_token(packet: &Packet, udp: &Udp) -> Response {
    match mode(packet, udp) {
        MODE_CONTROL | MODE_PRIVATE => Response::Control,
        MODE_SERVER | MODE_BROADCAST => match timestamp(packet, udp, ORIGIN_TIMESTAMP) {
            Some(origin) => Response::Token(origin),
            None => Response::Malformed,
        },
        NO_MODE => Response::Malformed,
        _ => Response::ClientOrPeer,
    }
}

/// The token egress records for a client request: its transmit timestamp.
#[inline(always)]
pub fn query_token(packet: &Packet, udp: &Udp) -> Option<u64> {
    // One bounds check for the mode and the timestamp: with a check each, LLVM
    // computed the token on the path where the first check failed, from a
    // register never written there, which the verifier refuses.
    if udp.readable < QUERY_LEN {
        return None;
    }
    let query = packet.header::<QUERY_LEN>(udp.payload)?;
    (query.get::<u8, 0>() & 0x07 == MODE_CLIENT).then(|| query.get::<u64, TRANSMIT_TIMESTAMP>())
}
