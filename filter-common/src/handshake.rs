//! Handshake tracking for inbound connections to local services.
//!
//! Egress (after NAT) sees every SYN-ACK the gateway sends, for its own
//! services and for port-forwarded LAN servers alike, and records the
//! handshake it answers in the HANDSHAKES table: the connection's addresses
//! and ports as the WAN sees them ([`FlowKey`]) and the acknowledgement
//! number the completing ACK must carry (the SYN-ACK's sequence number + 1).
//! Ingress recognises that ACK: same addresses and ports, SYN and RST clear,
//! that exact acknowledgement number. A spoofed source never sees the
//! SYN-ACK, so it cannot complete a handshake.
//!
//! The table is set-associative like the solicited table
//! ([`crate::solicited`]): a key hashes (with the secret per-attach seed) to
//! one bucket of [`HANDSHAKE_WAYS`] slots, and HANDSHAKES_LATEST holds each
//! bucket's latest deadline. Only egress records; ingress consumes what it
//! completes. When a bucket is full of live handshakes, the one closest to
//! expiry is evicted and counted (`egress_handshake_evicted`).
//!
//! The ports egress has seen answering a SYN are marked in [`ServicePorts`]:
//! inbound TCP to any other port (the gateway's own outgoing connections and
//! those of the LAN behind NAT, on ephemeral ports) is judged after reading
//! one byte.

use crate::hash;

pub const HANDSHAKE_BUCKETS: u32 = 16384;
pub const HANDSHAKE_WAYS: u32 = 4;

/// A TCP connection as the WAN sees it, from the gateway's side: our
/// address and port after NAT, the peer's. Addresses as on the wire; IPv4
/// uses word 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub local_addr: [u32; 4],
    pub remote_addr: [u32; 4],
    pub local_port: u16,
    pub remote_port: u16,
    /// 4 or 6.
    pub family: u32,
}

impl FlowKey {
    /// The key's bucket in a table of `buckets` buckets (a power of two),
    /// keyed with the per-attach seed: nobody can aim connections at the
    /// bucket of someone else's.
    #[inline(always)]
    pub fn bucket(&self, seed: u64, buckets: u32) -> u32 {
        let pair = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
        let ports = u32::from(self.local_port) << 16 | u32::from(self.remote_port);
        let hash = hash::lanes([
            pair(self.local_addr[0], self.local_addr[1]),
            pair(self.local_addr[2], self.local_addr[3]),
            pair(self.remote_addr[0], self.remote_addr[1]),
            pair(self.remote_addr[2], self.remote_addr[3]),
            pair(ports, self.family),
            0,
        ]);
        (hash::keyed_mix(hash, seed) >> 32) as u32 & (buckets - 1)
    }
}

/// One slot of the HANDSHAKES table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeSlot {
    pub key: FlowKey,
    /// The acknowledgement number of the completing ACK: our SYN-ACK's
    /// sequence number + 1.
    pub expected_ack: u32,
    pub _padding: u32,
    /// Deadline on the programs' clock; 0 = free or completed.
    pub expires_ns: u64,
}

/// Which TCP ports egress has seen send a SYN-ACK (1) or not (0), as one
/// map value: 64 KiB, read by ingress for every inbound TCP segment that is
/// not a connection attempt. Only egress writes it; a port stays marked
/// until the filter is detached (a marked port costs lookups, never a
/// verdict).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServicePorts(pub [u8; ServicePorts::PORTS]);

impl ServicePorts {
    pub const PORTS: usize = 65536;

    #[inline(always)]
    pub fn is_service(&self, port: u16) -> bool {
        self.0[usize::from(port)] != 0
    }

    /// Ports marked, in order.
    pub fn marked(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|port| self.is_service(*port))
    }
}

/// The acknowledgement number that completes the handshake a SYN-ACK with
/// sequence number `seq` answers.
#[inline(always)]
pub const fn expected_ack(synack_seq: u32) -> u32 {
    synack_seq.wrapping_add(1)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: the same.
    unsafe impl aya::Pod for super::HandshakeSlot {}
    // SAFETY: bytes.
    unsafe impl aya::Pod for super::ServicePorts {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::{vec, vec::Vec};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_completing_ack_is_the_synack_sequence_plus_one() {
        assert_eq!(expected_ack(41), 42);
        assert_eq!(expected_ack(u32::MAX), 0);
    }

    /// Connections from one client differ in their source port only: they
    /// must spread over the buckets (a bucket holds 4).
    #[test]
    fn one_clients_connections_spread_over_the_buckets() {
        let key = |port: u16| FlowKey {
            local_addr: [u32::from_ne_bytes([203, 0, 113, 2]), 0, 0, 0],
            remote_addr: [u32::from_ne_bytes([198, 51, 100, 7]), 0, 0, 0],
            local_port: 443,
            remote_port: port,
            family: 4,
        };
        let mut load = vec![0u32; HANDSHAKE_BUCKETS as usize];
        for port in 0..=u16::MAX {
            load[key(port).bucket(0x1234, HANDSHAKE_BUCKETS) as usize] += 1;
        }
        let used = load.iter().filter(|&&n| n > 0).count();
        let fullest = *load.iter().max().unwrap();
        assert!(used > 15_500, "{used} buckets used");
        assert!(fullest <= 20, "{fullest} keys in one bucket");
    }

    fn any_key() -> impl Strategy<Value = FlowKey> {
        (
            any::<[u32; 4]>(),
            any::<[u32; 4]>(),
            any::<(u16, u16)>(),
            prop_oneof![Just(4u32), Just(6)],
        )
            .prop_map(
                |(local_addr, remote_addr, (local_port, remote_port), family)| FlowKey {
                    local_addr,
                    remote_addr,
                    local_port,
                    remote_port,
                    family,
                },
            )
    }

    proptest! {
        #[test]
        fn buckets_are_in_range(key in any_key(), seed in any::<u64>(), shift in 0..20u32) {
            let buckets = 1u32 << shift;
            prop_assert!(key.bucket(seed, buckets) < buckets);
        }

        /// Another seed places a key elsewhere: without the seed, nobody
        /// knows which connections share a bucket.
        #[test]
        fn the_seed_moves_the_buckets(key in any_key(), seeds in proptest::collection::vec(any::<u64>(), 64)) {
            let buckets: Vec<u32> = seeds.iter().map(|s| key.bucket(*s, HANDSHAKE_BUCKETS)).collect();
            let same = buckets.iter().filter(|b| **b == buckets[0]).count();
            prop_assert!(same < 4, "{} of 64 seeds give one bucket", same);
        }
    }
}
