//! What the rules read from a UDP datagram: the DNS header's id and QR bit,
//! the NTP mode and timestamps. Every field must lie inside the datagram.

pub mod dns;
pub mod ntp;
