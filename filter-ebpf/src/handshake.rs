//! The handshake table: SYN-ACKs our egress sent, waiting for the ACK that
//! completes them, and the TCP ports that sent them. egress/tcp.rs records,
//! ingress/tcp.rs completes; the key, its bucket hash and the slot layout
//! are in filter_common::handshake.
//!
//! Like the solicited table (solicited.rs), HANDSHAKES is set-associative
//! (sets.rs) and written only by egress: recording takes the key's own slot
//! (a SYN-ACK sent again refreshes it), else a free or expired slot of the
//! key's set and, when the set is full of live handshakes, evicts the one
//! closest to expiry (`egress_handshake_evicted`). A SYN flood
//! that passes the SYN rules makes the kernel answer, so egress records its
//! handshakes at the rate the flood passes: they can only push out each
//! other and legitimate handshakes older than themselves, and ingress reads
//! HANDSHAKES_LATEST first, so a set with nothing live costs 8 bytes of a
//! 128 KiB array. An evicted handshake still completes as far as TCP is
//! concerned: only its half-open units come back late (by expiry) and its
//! connection is not counted.

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{
    expiry,
    handshake::{FlowKey, HANDSHAKE_BUCKETS, HANDSHAKE_WAYS, HandshakeSlot, ServicePorts},
    sets::Place,
};

use crate::{
    config,
    kernel::{Cell, IndexedCells as _, field},
    sets::{Latest, Slot, Table},
};

// Memory-mappable, so that `filter-ctl status` counts what is in use
// without one syscall per slot.
#[map]
static HANDSHAKES: Array<HandshakeSlot> =
    Array::with_max_entries(HANDSHAKE_BUCKETS * HANDSHAKE_WAYS, BPF_F_MMAPABLE);

#[map]
static HANDSHAKES_LATEST: Array<u64> = Array::with_max_entries(HANDSHAKE_BUCKETS, BPF_F_MMAPABLE);

static TABLE: Table<HandshakeSlot, HANDSHAKE_WAYS> = Table::new(&HANDSHAKES);
static LATEST: Latest = Latest::new(&HANDSHAKES_LATEST);

#[map]
static SERVICE_PORTS: Array<ServicePorts> = Array::with_max_entries(1, 0);

/// Whether inbound TCP to `port` may belong to a connection to a local
/// service: egress has seen the port send a SYN-ACK.
#[inline(always)]
pub fn is_service(port: u16) -> bool {
    // Bounded for Linux 6.1's verifier, as in mark_service.
    let port = config::bounded_port(port);
    SERVICE_PORTS
        .get(0)
        .is_some_and(|ports| ports.is_service(port))
}

/// Marks `port` as a service port. Read first: the port is nearly always
/// marked already, and a write would bounce the cache line between CPUs.
#[inline(always)]
fn mark_service(port: u16) {
    if let Some(ports) = SERVICE_PORTS.cell(0)
        && let Some(marked) = field!(ports, 0).at(usize::from(config::bounded_port(port)))
        && marked.get() == 0
    {
        marked.set(1);
    }
}

/// Whether recording found room or had to evict a live handshake.
pub enum Recorded {
    Stored,
    Evicted,
}

/// Records the handshake a SYN-ACK from our `key.local_port` answers,
/// completed by an ACK of `expected_ack` until `now + lifetime`.
#[inline(always)]
pub fn record(key: &FlowKey, expected_ack: u32, now: u64, lifetime: u64, seed: u64) -> Recorded {
    mark_service(key.local_port);
    let set = key.bucket(seed, HANDSHAKE_BUCKETS);
    let expires_ns = expiry::deadline(now, lifetime);
    LATEST.raise(set, expires_ns);
    let Some((place, slot)) = TABLE.place(set, key, |stamp| expiry::is_live(stamp, now)) else {
        return Recorded::Stored;
    };
    // A SYN-ACK sent again refreshes its own slot; a new handshake fills a
    // free or evicted one.
    field!(slot, key).set(*key);
    field!(slot, expected_ack).set(expected_ack);
    field!(slot, expires_ns).set(expires_ns);
    match place {
        Place::Evict(_) => Recorded::Evicted,
        Place::Own(_) | Place::Free(_) => Recorded::Stored,
    }
}

/// True, and the handshake is done, if `key` has a live recorded handshake
/// that an ACK of `ack` completes. Another acknowledgement number leaves it
/// waiting.
#[inline(always)]
pub fn complete(key: &FlowKey, ack: u32, now: u64, seed: u64) -> bool {
    let set = key.bucket(seed, HANDSHAKE_BUCKETS);
    if !expiry::is_live(LATEST.get(set), now) {
        return false;
    }
    match TABLE.find(set, key, |stamp| expiry::is_live(stamp, now)) {
        Some(slot) if field!(slot, expected_ack).get() == ack => {
            // Completed: free for the next handshake of the set.
            field!(slot, expires_ns).set(0);
            true
        }
        _ => false,
    }
}

/// Whether the flow key in `stored` is `key` (here and in conn.rs): field
/// by field, the remote port first, since flows sharing a set nearly
/// always differ there.
#[inline(always)]
pub fn stored_key_is(stored: Cell<FlowKey>, key: &FlowKey) -> bool {
    field!(stored, remote_port).get() == key.remote_port
        && field!(stored, local_port).get() == key.local_port
        && field!(stored, family).get() == key.family
        && field!(stored, remote_addr).get() == key.remote_addr
        && field!(stored, local_addr).get() == key.local_addr
}

impl Slot for HandshakeSlot {
    type Key = FlowKey;

    #[inline(always)]
    fn stamp(slot: Cell<Self>) -> Cell<u64> {
        field!(slot, expires_ns)
    }

    #[inline(always)]
    fn holds(slot: Cell<Self>, key: &FlowKey) -> bool {
        stored_key_is(field!(slot, key), key)
    }
}
