//! Handshake tracking (docs/tcp-connections.md, *Handshake tracking*): the
//! SYN-ACKs our egress sent, each waiting for the ACK that completes it
//! (same addresses and ports, acknowledgement number = the SYN-ACK's
//! sequence number + 1) until `syn_halfopen_timeout` after it was sent; and
//! the service ports, the TCP ports that ever sent a SYN-ACK.
//!
//! The filter keeps handshakes in a set-associative table and documents the
//! approximation: a connection hashes (keyed with the per-attach seed) to
//! one bucket of 4 slots; a retransmitted SYN-ACK refreshes its own slot
//! (expired or not, until an ACK completes it), a new one takes a free (or
//! expired) slot, and when the bucket is full of
//! live handshakes the one closest to expiry is evicted
//! (`egress_handshake_evicted`). The model mirrors it, with the documented
//! bucket hash (`filter_common::handshake::FlowKey::bucket`), because the
//! runner reuses one filter for many connections and a generated flood of
//! SYN-ACKs from one port fills buckets. Which of equally close slots goes
//! and which free slot is taken are not documented: the model takes the
//! first in slot order for both (the only tie it can meet is two SYN-ACKs
//! recorded in one clock tick).

use std::collections::{BTreeMap, BTreeSet};

use filter_common::handshake::{FlowKey, HANDSHAKE_BUCKETS, HANDSHAKE_WAYS};

use crate::parse::{Addr, Family};

/// A TCP connection as the WAN sees it, from our side: our address and
/// port (after NAT), the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flow {
    pub family: Family,
    pub local: Addr,
    pub remote: Addr,
    pub local_port: u16,
    pub remote_port: u16,
}

impl Flow {
    /// The flow as the filter stores it (filter_common's layout), for its buckets.
    pub fn stored(&self) -> FlowKey {
        FlowKey {
            local_addr: words(&self.local),
            remote_addr: words(&self.remote),
            local_port: self.local_port,
            remote_port: self.remote_port,
            family: match self.family {
                Family::V4 => 4,
                Family::V6 => 6,
            },
        }
    }
}

pub fn words(addr: &Addr) -> [u32; 4] {
    std::array::from_fn(|i| u32::from_ne_bytes(addr[4 * i..4 * i + 4].try_into().expect("4 bytes")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    flow: Flow,
    ack: u32,
    expires_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    Evicted,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handshakes {
    buckets: BTreeMap<u32, [Option<Slot>; HANDSHAKE_WAYS as usize]>,
    service_ports: BTreeSet<u16>,
}

impl Handshakes {
    /// Our SYN-ACK with sequence number `seq` on `flow`.
    pub fn record(
        &mut self,
        flow: Flow,
        seq: u32,
        now: u64,
        lifetime_ns: u64,
        seed: u64,
    ) -> Recorded {
        self.service_ports.insert(flow.local_port);
        let ways = self
            .buckets
            .entry(flow.stored().bucket(seed, HANDSHAKE_BUCKETS))
            .or_default();
        let fresh = Some(Slot {
            flow,
            ack: seq.wrapping_add(1),
            expires_ns: now.saturating_add(lifetime_ns),
        });
        let live = |slot: &Option<Slot>| slot.is_some_and(|s| s.expires_ns > now);
        // Its own slot, expired or not, as long as no ACK completed it.
        if let Some(own) = ways
            .iter()
            .position(|slot| slot.is_some_and(|s| s.flow == flow))
        {
            ways[own] = fresh;
            return Recorded::Stored;
        }
        if let Some(free) = ways.iter().position(|slot| !live(slot)) {
            ways[free] = fresh;
            return Recorded::Stored;
        }
        let mut victim = 0;
        for way in 1..ways.len() {
            if ways[way].map(|s| s.expires_ns) < ways[victim].map(|s| s.expires_ns) {
                victim = way;
            }
        }
        ways[victim] = fresh;
        Recorded::Evicted
    }

    /// True, and the handshake is done, if `flow` has a live handshake an
    /// ACK of `ack` completes.
    pub fn complete(&mut self, flow: &Flow, ack: u32, now: u64, seed: u64) -> bool {
        let Some(ways) = self
            .buckets
            .get_mut(&flow.stored().bucket(seed, HANDSHAKE_BUCKETS))
        else {
            return false;
        };
        for slot in ways.iter_mut() {
            if slot.is_some_and(|s| s.expires_ns > now && s.flow == *flow && s.ack == ack) {
                *slot = None;
                return true;
            }
        }
        false
    }

    /// Whether `port` ever sent a SYN-ACK.
    pub fn is_service(&self, port: u16) -> bool {
        self.service_ports.contains(&port)
    }

    /// The buckets written, for resetting the real table.
    pub fn buckets(&self) -> BTreeSet<u32> {
        self.buckets.keys().copied().collect()
    }

    pub fn service_ports(&self) -> &BTreeSet<u16> {
        &self.service_ports
    }
}
