//! The SOLICITED table: queries our egress sent, waiting for their answers.
//! A set-associative array: a key hashes to one bucket of `SOLICITED_WAYS`
//! slots; SOLICITED_LATEST holds each bucket's latest deadline.

use crate::{expiry, hash};

pub const SOLICITED_BUCKETS: u32 = 16384;
pub const SOLICITED_WAYS: u32 = 4;

/// A query our side sent, as the answer will show it (addresses as on the wire).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SolicitedKey {
    /// Our address after NAT; IPv4 uses word 0.
    pub local_addr: [u32; 4],
    pub remote_addr: [u32; 4],
    pub local_port: u16,
    pub remote_port: u16,
    /// 4 or 6.
    pub family: u32,
    /// DNS: transaction id; NTP: the client's transmit timestamp, echoed as
    /// the origin timestamp; other ports: 0.
    pub token: u64,
}

impl SolicitedKey {
    /// The key's bucket in the solicited table (here, not in the program, so
    /// that tests can pick keys that share one).
    #[inline(always)]
    pub fn bucket(&self) -> u32 {
        let pair = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
        let ports = u32::from(self.local_port) << 16 | u32::from(self.remote_port);
        let hash = hash::lanes([
            pair(self.local_addr[0], self.local_addr[1]),
            pair(self.local_addr[2], self.local_addr[3]),
            pair(self.remote_addr[0], self.remote_addr[1]),
            pair(self.remote_addr[2], self.remote_addr[3]),
            pair(ports, self.family),
            self.token,
        ]);
        (hash >> 32) as u32 % SOLICITED_BUCKETS
    }
}

/// One slot of the solicited table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SolicitedSlot {
    pub key: SolicitedKey,
    /// Deadline on the programs' clock (see [`crate::expiry`]); 0 = free or consumed.
    pub expires_ns: u64,
}

impl SolicitedSlot {
    /// True while the slot holds a query waiting for its answer.
    pub const fn is_live(&self, now_ns: u64) -> bool {
        expiry::is_live(self.expires_ns, now_ns)
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::SolicitedKey {}
    // SAFETY: the same.
    unsafe impl aya::Pod for super::SolicitedSlot {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::{vec, vec::Vec};

    use proptest::prelude::*;

    use super::*;

    /// Queries that differ only in what a resolver varies (the transaction id,
    /// or the source port) must spread over the buckets: a bucket holds 4.
    #[test]
    fn solicited_keys_spread_over_the_buckets() {
        let key = |port: u16, id: u16| SolicitedKey {
            local_addr: [u32::from_ne_bytes([192, 0, 2, 10]), 0, 0, 0],
            remote_addr: [u32::from_ne_bytes([198, 51, 100, 53]), 0, 0, 0],
            local_port: port,
            remote_port: 53,
            family: 4,
            token: u64::from(id),
        };
        let spreads = [
            (0..=u16::MAX).map(|id| key(40000, id)).collect::<Vec<_>>(),
            (0..=u16::MAX).map(|port| key(port, 7)).collect(),
        ];
        for keys in spreads {
            let mut load = vec![0u32; SOLICITED_BUCKETS as usize];
            for key in &keys {
                load[key.bucket() as usize] += 1;
            }
            let used = load.iter().filter(|&&n| n > 0).count();
            let fullest = *load.iter().max().unwrap();
            // 65536 keys in 16384 buckets: random placement uses ~98% of them,
            // with at most ~15 in one.
            assert!(used > 15_500, "{used} buckets used");
            assert!(fullest <= 20, "{fullest} keys in one bucket");
        }
    }

    fn any_key() -> impl Strategy<Value = SolicitedKey> {
        (
            any::<[u32; 4]>(),
            any::<[u32; 4]>(),
            any::<(u16, u16)>(),
            prop_oneof![Just(4u32), Just(6)],
            any::<u64>(),
        )
            .prop_map(
                |(local_addr, remote_addr, (local_port, remote_port), family, token)| {
                    SolicitedKey {
                        local_addr,
                        remote_addr,
                        local_port,
                        remote_port,
                        family,
                        token,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn every_key_has_a_bucket_in_the_table(key in any_key()) {
            prop_assert!(key.bucket() < SOLICITED_BUCKETS);
        }

        /// Answers that differ from a query in one field (another id, port
        /// or server) rarely share its bucket: about one in 16384 does.
        #[test]
        fn one_changed_field_moves_the_bucket(key in any_key(), tokens in proptest::collection::vec(any::<u64>(), 256)) {
            let shared = tokens
                .iter()
                .filter(|&&token| token != key.token)
                .filter(|&&token| SolicitedKey { token, ..key }.bucket() == key.bucket())
                .count();
            // Expected 256 / 16384 = 0.016; four would be a broken hash.
            prop_assert!(shared < 4, "{} of 256 tokens share the bucket", shared);
        }
    }
}
