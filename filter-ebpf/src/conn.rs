//! Per-source connection limits per local port. syn.rs asks [`check_syn`]
//! whether a SYN's source is at its limit for the port; ingress/tcp.rs opens
//! a connection when its handshake completes and follows it ([`follow`]);
//! egress/tcp.rs ends it on our FIN or RST ([`close`]). The maps and the
//! arithmetic (idle windows, counts, owners) are described in
//! filter_common::conn; only ports with a limit are tracked.
//!
//! CONNECTIONS is set-associative: a key hashes (with the secret seed) to a
//! bucket of a few slots. Opening takes the connection's own slot, a free
//! one, or one whose connection no longer counts (idle for a whole window);
//! when all of them hold counting connections, the least recently active is
//! evicted and stops counting (`pass_conn_evicted`).

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    macros::map,
    maps::{Array, LruHashMap},
};
use filter_common::{
    Config, WatchedPorts,
    conn::{
        self, Age, CONN_BUCKETS, CONN_OWNERS, CONN_WAYS, ConnCount, ConnLimits, ConnOwner,
        ConnSlot, PENDING_NS, PENDING_SLOTS,
    },
    halfopen,
    handshake::FlowKey,
};

use crate::{
    config, handshake,
    kernel::{Cell, IndexedCells as _, KeyedCells as _},
};

/// Two elements, like WATCHED_PORTS: the live one (Config::ports_slot) and
/// the one filter-ctl writes a change into before it switches.
#[map]
static CONN_LIMITS: Array<ConnLimits> = Array::with_max_entries(WatchedPorts::SLOTS, 0);

// Memory-mappable, so that `filter-ctl status` counts what is in use.
#[map]
static CONNECTIONS: Array<ConnSlot> =
    Array::with_max_entries(CONN_BUCKETS * CONN_WAYS, BPF_F_MMAPABLE);

#[map]
static CONN_COUNTS: LruHashMap<ConnOwner, ConnCount> = LruHashMap::with_max_entries(CONN_OWNERS, 0);

#[map]
static CONN_PENDING: Array<u64> = Array::with_max_entries(PENDING_SLOTS, BPF_F_MMAPABLE);

/// The connection limit of our TCP `port`; 0 = none.
#[inline(always)]
pub fn limit(port: u16) -> u16 {
    let port = config::bounded_port(port);
    let slot = config::get().map_or(0, Config::ports_slot);
    CONN_LIMITS.get(slot).map_or(0, |limits| limits.limit(port))
}

/// A SYN's handshake in flight, to be counted if the SYN passes.
pub struct Pending(Option<(Cell<u64>, u64)>);

/// Whether a SYN from `owner` finds room under `limit` (nonzero):
/// connections that count plus handshakes in flight stay below it. Nothing
/// is written yet: [`Pending::count`] does that once the SYN passes.
#[inline(always)]
pub fn check_syn(owner: &ConnOwner, limit: u16, config: &Config, now: u64) -> Option<Pending> {
    let window = conn::window(now, config.conn_idle_timeout_ns);
    let live = CONN_COUNTS
        .cell_of(owner)
        .map_or(0, |count| count.get().live(window));
    let room = u32::from(limit).saturating_sub(live);
    if room == 0 {
        return None;
    }
    let Some(counter) = CONN_PENDING.cell(owner.pending_slot(config.syn_hash_seed)) else {
        return Some(Pending(None));
    };
    halfopen::take(counter.get(), now, PENDING_NS, room).map(|next| Pending(Some((counter, next))))
}

impl Pending {
    /// The SYN passed: its handshake is in flight.
    #[inline(always)]
    pub fn count(self) {
        if let Some((counter, next)) = self.0 {
            counter.set(next);
        }
    }
}

/// What an inbound segment of a tracked connection did.
pub enum Followed {
    /// Not a tracked connection.
    Untracked,
    /// Its packet keeps it counting.
    Active,
    /// Its FIN or RST ended it.
    Closed,
}

/// Follows an inbound segment of `key` on a limited port; `closing`: it
/// carries FIN or RST.
#[inline(always)]
pub fn follow(key: &FlowKey, closing: bool, config: &Config, now: u64) -> Followed {
    let Some(slot) = find(key, config.syn_hash_seed) else {
        return Followed::Untracked;
    };
    let window = conn::window(now, config.conn_idle_timeout_ns);
    let last = slot.window();
    if closing {
        slot.clear();
        update(&ConnOwner::of(key), |count| count.end(last, window));
        return Followed::Closed;
    }
    if conn::age(last, window) != Age::Current {
        slot.set_window(window);
        update(&ConnOwner::of(key), |count| count.renew(last, window));
    }
    Followed::Active
}

/// Ends `key`'s connection on our FIN or RST: true if it was counted.
#[inline(always)]
pub fn close(key: &FlowKey, config: &Config, now: u64) -> bool {
    let Some(slot) = find(key, config.syn_hash_seed) else {
        return false;
    };
    let last = slot.window();
    slot.clear();
    let window = conn::window(now, config.conn_idle_timeout_ns);
    update(&ConnOwner::of(key), |count| count.end(last, window));
    true
}

/// Whether opening found room or evicted a counting connection.
pub enum Opened {
    Stored,
    Evicted,
}

/// A handshake to a limited port completed: it is no longer in flight
/// (also when its ACK carries a FIN and no connection opens).
#[inline(always)]
pub fn handshake_done(key: &FlowKey, config: &Config, now: u64) {
    let owner = ConnOwner::of(key);
    if let Some(counter) = CONN_PENDING.cell(owner.pending_slot(config.syn_hash_seed))
        && let Some(back) = halfopen::give_back(counter.get(), now, PENDING_NS)
    {
        counter.set(back);
    }
}

/// A handshake to a limited port completed (after [`handshake_done`]): the
/// connection counts from now.
#[inline(always)]
pub fn open(key: &FlowKey, config: &Config, now: u64) -> Opened {
    let seed = config.syn_hash_seed;
    let owner = ConnOwner::of(key);
    let window = conn::window(now, config.conn_idle_timeout_ns);
    let first = key.bucket(seed, CONN_BUCKETS) * CONN_WAYS;
    let mut free = None;
    let mut victim = first;
    let mut oldest = u64::MAX;
    for way in 0..CONN_WAYS {
        let index = first + way;
        let Some(slot) = Slot::at(index) else {
            continue;
        };
        let slot_window = slot.window();
        if slot_window != 0 && slot.holds(key) {
            // Already counted (a completing ACK seen twice).
            return Opened::Stored;
        }
        if conn::age(slot_window, window) == Age::Expired {
            free.get_or_insert(index);
        } else if slot_window < oldest {
            oldest = slot_window;
            victim = index;
        }
    }
    let opened = match free {
        Some(index) => {
            if let Some(slot) = Slot::at(index) {
                slot.fill(key, window);
            }
            Opened::Stored
        }
        None => {
            let Some(slot) = Slot::at(victim) else {
                return Opened::Stored;
            };
            let (evicted, last) = (slot.key(), slot.window());
            slot.fill(key, window);
            update(&ConnOwner::of(&evicted), |count| count.end(last, window));
            Opened::Evicted
        }
    };
    if !update(&owner, |count| count.open(window)) {
        let first_count = ConnCount {
            window,
            current: 1,
            previous: 0,
        };
        // Another CPU may have inserted it in the meantime: then count there.
        if CONN_COUNTS
            .insert(&owner, &first_count, u64::from(BPF_NOEXIST))
            .is_err()
        {
            update(&owner, |count| count.open(window));
        }
    }
    opened
}

/// Applies `change` to `owner`'s count, if it has one (the LRU may have
/// dropped it): copied out, changed, written back.
#[inline(always)]
fn update(owner: &ConnOwner, change: impl FnOnce(&mut ConnCount)) -> bool {
    let Some(count) = CONN_COUNTS.cell_of(owner) else {
        return false;
    };
    count.update(|mut copy| {
        change(&mut copy);
        copy
    });
    true
}

/// The slot tracking `key`, if any (an ended connection's slot is free).
#[inline(always)]
fn find(key: &FlowKey, seed: u64) -> Option<Slot> {
    let first = key.bucket(seed, CONN_BUCKETS) * CONN_WAYS;
    for way in 0..CONN_WAYS {
        let Some(slot) = Slot::at(first + way) else {
            continue;
        };
        if slot.window() != 0 && slot.holds(key) {
            return Some(slot);
        }
    }
    None
}

/// A slot of CONNECTIONS, by its map pointer.
#[derive(Clone, Copy)]
struct Slot(*mut ConnSlot);

// SAFETY (every access below): the pointer is a valid, aligned element of
// the array map, which outlives the program; fields are copied in and out,
// no reference to the shared slot is made.
impl Slot {
    #[inline(always)]
    fn at(index: u32) -> Option<Slot> {
        CONNECTIONS.get_ptr_mut(index).map(Slot)
    }

    #[inline(always)]
    fn window(self) -> u64 {
        unsafe { (*self.0).window }
    }

    #[inline(always)]
    fn set_window(self, window: u64) {
        unsafe { (*self.0).window = window };
    }

    #[inline(always)]
    fn key(self) -> FlowKey {
        unsafe { (*self.0).key }
    }

    #[inline(always)]
    fn holds(self, key: &FlowKey) -> bool {
        unsafe { handshake::stored_key_is(&raw const (*self.0).key, key) }
    }

    #[inline(always)]
    fn fill(self, key: &FlowKey, window: u64) {
        unsafe {
            (*self.0).key = *key;
            (*self.0).window = window;
        }
    }

    #[inline(always)]
    fn clear(self) {
        unsafe { (*self.0).window = 0 };
    }
}
