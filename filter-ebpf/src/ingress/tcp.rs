//! Rule 6 of ingress, inbound TCP: connection attempts (SYN set, ACK clear)
//! go through the SYN token buckets (syn.rs). Everything else, SYN-ACKs included, is left
//! alone: the answers to the gateway's own outgoing connections (and those of
//! the LAN behind NAT) carry ACK and are never limited.

use filter_common::{Config, Reason};

use super::pass;
use crate::{
    packet::{Ip, MAX_L4_OFFSET, Packet},
    syn,
};

pub const IPPROTO_TCP: u8 = 6;
/// The fixed TCP header; options are not needed.
const TCP_HDR_LEN: usize = 20;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

#[inline(always)]
pub fn verdict(packet: &Packet, ip: &Ip, config: &Config, now: u64) -> Reason {
    if ip.l4_offset > MAX_L4_OFFSET {
        return Reason::PassMalformed;
    }
    // The fixed header must be there, not only the flags.
    let Some(header) = packet.header::<TCP_HDR_LEN>(ip.l4_offset) else {
        return Reason::PassMalformed;
    };
    let flags = header.get::<u8, 13>();
    if flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return pass(ip);
    }
    syn::verdict(ip, config, now)
}
