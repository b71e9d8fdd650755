//! Connection limits per source and local port (docs/tcp-connections.md,
//! *Connection limits per source and port*): on a port with a limit, a
//! connection counts against its source (IPv4 /32, IPv6 /64) from the ACK
//! that completes its handshake until a FIN or RST in either direction, or
//! until it has been idle (no inbound packet) long enough; a handshake in
//! flight (a SYN that passed, not completed yet) counts too, for at most a
//! second. A SYN from a source whose connections plus handshakes in flight
//! to that port reach the limit is dropped (`drop_conn_limit`).
//!
//! The documented approximations, mirrored:
//! - **idle expiry in windows**: time is cut into windows of
//!   `conn_idle_timeout` on the programs' clock; a connection counts while
//!   its last inbound packet (or its completion) fell in now's window or
//!   the one before. The filter keeps two numbers per source and port for
//!   this; the model counts its connections' windows instead, which is what
//!   the two numbers stand for.
//! - **CONNECTIONS is set-associative**: a connection hashes (keyed with the
//!   seed, `filter_common::handshake::FlowKey::bucket` over 8,192 buckets)
//!   to 4 slots; a completed handshake takes a free slot or one whose
//!   connection no longer counts, else evicts the least recently active
//!   (`pass_conn_evicted`), which stops counting. An idle connection keeps
//!   its slot until it is taken, and its next packet counts it again (or
//!   its FIN ends it: `pass_conn_closed`). Ties (first free slot, first of
//!   equally old) go in slot order, which the docs do not state.
//! - **handshakes in flight are hashed slots without keys**
//!   (`filter_common::conn::ConnOwner::pending_slot`), each the half-open
//!   counter with a one-second unit and the room left under the limit as
//!   its budget.
//!
//! CONN_COUNTS is an LRU of 16,384 sources: the generator never comes near
//! it, and the model keeps every count.

use std::collections::{BTreeMap, BTreeSet};

use filter_common::conn::{CONN_BUCKETS, CONN_WAYS, ConnOwner};

use crate::{
    handshakes::{Flow, words},
    parse::{Addr, Family, Ip},
};

/// How long a handshake in flight counts at most.
const PENDING_NS: u64 = 1_000_000_000;

/// Whose connections count together: the source (IPv4 /32, IPv6 /64) and our port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    family: Family,
    source: [u8; 8],
    port: u16,
}

impl Owner {
    pub fn new(family: Family, source: &Addr, port: u16) -> Owner {
        let mut bytes = [0; 8];
        match family {
            Family::V4 => bytes[..4].copy_from_slice(&source[..4]),
            Family::V6 => bytes.copy_from_slice(&source[..8]),
        }
        Owner {
            family,
            source: bytes,
            port,
        }
    }

    fn of(flow: &Flow) -> Owner {
        Owner::new(flow.family, &flow.remote, flow.local_port)
    }
}

fn stored_owner(flow: &Flow) -> ConnOwner {
    let stored = flow.stored();
    ConnOwner::new(&words(&flow.remote), stored.family, flow.local_port)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    flow: Flow,
    /// Window of the last inbound packet (or of the completion).
    window: u64,
}

pub enum Followed {
    Untracked,
    Active,
    Closed,
}

pub enum Opened {
    Stored,
    Evicted,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conn {
    buckets: BTreeMap<u32, [Option<Slot>; CONN_WAYS as usize]>,
    pending: BTreeMap<u32, u64>,
    /// Sources that got a count (what the runner clears in CONN_COUNTS).
    owners: BTreeSet<ConnOwner>,
}

pub fn window(now: u64, idle_ns: u64) -> u64 {
    now / idle_ns.max(1)
}

/// Whether a connection last active in `last` counts in `window`.
fn counts(last: u64, window: u64) -> bool {
    last == window || last + 1 == window
}

fn pending_slot(owner: &Owner, flow_family: Family, source: &Addr, seed: u64) -> u32 {
    let family = match flow_family {
        Family::V4 => 4,
        Family::V6 => 6,
    };
    ConnOwner::new(&words(source), family, owner.port).pending_slot(seed)
}

impl Conn {
    fn bucket(flow: &Flow, seed: u64) -> u32 {
        flow.stored().bucket(seed, CONN_BUCKETS)
    }

    /// Connections of `owner` that count at `window`.
    fn live(&self, owner: &Owner, window: u64) -> u32 {
        self.buckets
            .values()
            .flatten()
            .flatten()
            .filter(|slot| Owner::of(&slot.flow) == *owner && counts(slot.window, window))
            .count() as u32
    }

    /// Whether a SYN from `source` to our `port` (limit `limit`) finds room:
    /// nothing is taken yet.
    pub fn check_syn(
        &self,
        ip: &Ip<'_>,
        port: u16,
        limit: u16,
        now: u64,
        idle_ns: u64,
        seed: u64,
    ) -> bool {
        let (family, source) = (ip.family, &ip.src);
        let owner = Owner::new(family, source, port);
        let room =
            u64::from(limit).saturating_sub(u64::from(self.live(&owner, window(now, idle_ns))));
        let tat = self
            .pending
            .get(&pending_slot(&owner, family, source, seed))
            .copied()
            .unwrap_or(0);
        tat.saturating_sub(now).div_ceil(PENDING_NS) < room
    }

    /// The SYN passed: its handshake is in flight.
    pub fn count_pending(&mut self, family: Family, source: &Addr, port: u16, now: u64, seed: u64) {
        let owner = Owner::new(family, source, port);
        let tat = self
            .pending
            .entry(pending_slot(&owner, family, source, seed))
            .or_default();
        *tat = (*tat).max(now) + PENDING_NS;
    }

    /// A handshake to a limited port completed: no longer in flight.
    pub fn end_pending(&mut self, flow: &Flow, now: u64, seed: u64) {
        let owner = Owner::of(flow);
        if let Some(tat) =
            self.pending
                .get_mut(&pending_slot(&owner, flow.family, &flow.remote, seed))
            && *tat > now
        {
            *tat = tat.saturating_sub(PENDING_NS).max(now);
        }
    }

    fn find(&mut self, flow: &Flow, seed: u64) -> Option<&mut Option<Slot>> {
        self.buckets
            .get_mut(&Conn::bucket(flow, seed))?
            .iter_mut()
            .find(|slot| slot.is_some_and(|s| s.flow == *flow))
    }

    /// An inbound segment on a limited port; `closing`: FIN or RST.
    pub fn follow(
        &mut self,
        flow: &Flow,
        closing: bool,
        now: u64,
        idle_ns: u64,
        seed: u64,
    ) -> Followed {
        let Some(slot) = self.find(flow, seed) else {
            return Followed::Untracked;
        };
        if closing {
            *slot = None;
            return Followed::Closed;
        }
        if let Some(slot) = slot {
            slot.window = window(now, idle_ns);
        }
        Followed::Active
    }

    /// Our FIN or RST: true if it ended a tracked connection.
    pub fn close(&mut self, flow: &Flow, seed: u64) -> bool {
        match self.find(flow, seed) {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    /// A completed handshake on a limited port: the connection counts from now.
    pub fn open(&mut self, flow: Flow, now: u64, idle_ns: u64, seed: u64) -> Opened {
        let now_window = window(now, idle_ns);
        self.owners.insert(stored_owner(&flow));
        let ways = self.buckets.entry(Conn::bucket(&flow, seed)).or_default();
        if ways.iter().any(|slot| slot.is_some_and(|s| s.flow == flow)) {
            return Opened::Stored;
        }
        let fresh = Some(Slot {
            flow,
            window: now_window,
        });
        let counting = |slot: &Option<Slot>| slot.is_some_and(|s| counts(s.window, now_window));
        if let Some(free) = ways.iter().position(|slot| !counting(slot)) {
            ways[free] = fresh;
            return Opened::Stored;
        }
        let mut victim = 0;
        for way in 1..ways.len() {
            if ways[way].map(|s| s.window) < ways[victim].map(|s| s.window) {
                victim = way;
            }
        }
        ways[victim] = fresh;
        Opened::Evicted
    }

    pub fn buckets(&self) -> BTreeSet<u32> {
        self.buckets.keys().copied().collect()
    }

    pub fn pending_slots(&self) -> BTreeSet<u32> {
        self.pending.keys().copied().collect()
    }

    pub fn owners(&self) -> &BTreeSet<ConnOwner> {
        &self.owners
    }
}
