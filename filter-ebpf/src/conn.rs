//! Per-source connection limits per local port. syn.rs asks [`check_syn`]
//! whether a SYN's source is at its limit for the port; ingress/tcp.rs opens
//! a connection when its handshake completes and follows it ([`follow`]);
//! egress/tcp.rs ends it on our FIN or RST ([`close`]). The maps and the
//! arithmetic (idle windows, counts, owners) are described in
//! filter_common::conn; only ports with a limit are tracked.
//!
//! CONNECTIONS is set-associative (sets.rs): a key hashes (with the secret
//! seed) to a set of a few slots, stamped with the window of the
//! connection's last inbound packet. Opening takes the connection's own slot
//! (already counted: nothing changes), else a free one or one whose
//! connection no longer counts (idle for a whole window); when all of them
//! hold counting connections, the least recently active is evicted and
//! stops counting (`pass_conn_evicted`).

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
    sets::Place,
};

use crate::{
    config, handshake,
    kernel::{Cell, Deferred, IndexedCells as _, KeyedCells as _, field},
    sets::{Slot, Table},
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

static TABLE: Table<ConnSlot, CONN_WAYS> = Table::new(&CONNECTIONS);

/// The connection limit of our TCP `port`; 0 = none.
#[inline(always)]
pub fn limit(port: u16) -> u16 {
    let port = config::bounded_port(port);
    let slot = config::get().map_or(0, Config::ports_slot);
    CONN_LIMITS.get(slot).map_or(0, |limits| limits.limit(port))
}

/// A SYN's handshake in flight, to be counted if the SYN passes.
pub struct Pending(Deferred<u64>);

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
        return Some(Pending(Deferred::none()));
    };
    halfopen::take(counter.get(), now, PENDING_NS, room)
        .map(|next| Pending(Deferred::new(counter, next)))
}

impl Pending {
    /// The SYN passed: its handshake is in flight.
    #[inline(always)]
    pub fn count(self) {
        self.0.write();
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
    let stamp = field!(slot, window);
    let last = stamp.get();
    if closing {
        stamp.set(0);
        update(&ConnOwner::of(key), |count| count.end(last, window));
        return Followed::Closed;
    }
    if conn::age(last, window) != Age::Current {
        stamp.set(window);
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
    let stamp = field!(slot, window);
    let last = stamp.get();
    stamp.set(0);
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
    let owner = ConnOwner::of(key);
    let window = conn::window(now, config.conn_idle_timeout_ns);
    let set = key.bucket(config.syn_hash_seed, CONN_BUCKETS);
    let Some((place, slot)) =
        TABLE.place(set, key, |stamp| conn::age(stamp, window) != Age::Expired)
    else {
        return Opened::Stored;
    };
    let opened = match place {
        // Already counted (a completing ACK seen twice): the duplicate rule.
        Place::Own(_) => return Opened::Stored,
        Place::Free(_) => Opened::Stored,
        Place::Evict(_) => {
            let evicted = field!(slot, key).get();
            let last = field!(slot, window).get();
            update(&ConnOwner::of(&evicted), |count| count.end(last, window));
            Opened::Evicted
        }
    };
    field!(slot, key).set(*key);
    field!(slot, window).set(window);
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
fn find(key: &FlowKey, seed: u64) -> Option<Cell<ConnSlot>> {
    TABLE.find(key.bucket(seed, CONN_BUCKETS), key, |window| window != 0)
}

impl Slot for ConnSlot {
    type Key = FlowKey;

    #[inline(always)]
    fn stamp(slot: Cell<Self>) -> Cell<u64> {
        field!(slot, window)
    }

    #[inline(always)]
    fn holds(slot: Cell<Self>, key: &FlowKey) -> bool {
        handshake::stored_key_is(field!(slot, key), key)
    }
}
