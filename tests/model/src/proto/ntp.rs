//! NTP (docs/rules.md: modes 6 and 7 are always dropped; server and broadcast
//! responses, modes 4 and 5, pass only if their origin timestamp matches a
//! recorded request's transmit timestamp; client and peer modes pass).
//!
//! The mode is the low 3 bits of the first byte; the origin timestamp is at
//! bytes 24..32, the transmit timestamp at 40..48. A response too short to
//! hold its origin timestamp cannot be judged (malformed); one of 32 to 47
//! bytes, shorter than an NTP header, is judged like a whole one (docs/rules.md,
//! *Edges*). Timestamps are compared as bytes, never interpreted.

pub const MODE_CLIENT: u8 = 3;
pub const MODE_SERVER: u8 = 4;
pub const MODE_BROADCAST: u8 = 5;
pub const MODE_CONTROL: u8 = 6;
pub const MODE_PRIVATE: u8 = 7;

pub type Timestamp = [u8; 8];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    Response {
        origin: Timestamp,
    },
    ClientOrPeer,
    Control,
    /// Empty, or a response without its origin timestamp.
    Short,
}

pub fn mode(datagram: &[u8]) -> Option<u8> {
    datagram.first().map(|first| first & 0x07)
}

pub fn is_control(datagram: &[u8]) -> bool {
    matches!(mode(datagram), Some(MODE_CONTROL | MODE_PRIVATE))
}

pub fn inbound(datagram: &[u8]) -> Inbound {
    match mode(datagram) {
        None => Inbound::Short,
        Some(MODE_CONTROL | MODE_PRIVATE) => Inbound::Control,
        Some(MODE_SERVER | MODE_BROADCAST) => match timestamp(datagram, 24) {
            Some(origin) => Inbound::Response { origin },
            None => Inbound::Short,
        },
        Some(_) => Inbound::ClientOrPeer,
    }
}

/// The transmit timestamp egress records for a client request (mode 3).
pub fn request_transmit(datagram: &[u8]) -> Option<Timestamp> {
    match mode(datagram) {
        Some(MODE_CLIENT) => timestamp(datagram, 40),
        _ => None,
    }
}

fn timestamp(datagram: &[u8], at: usize) -> Option<Timestamp> {
    datagram.get(at..at + 8)?.try_into().ok()
}
