//! The handshake table: SYN-ACKs our egress sent, waiting for the ACK that
//! completes them, and the TCP ports that sent them. egress/tcp.rs records,
//! ingress/tcp.rs completes; the key, its bucket hash and the slot layout
//! are in filter_common::handshake.
//!
//! Like the solicited table (solicited.rs), HANDSHAKES is set-associative and
//! written only by egress: recording takes a free, expired or identical slot
//! of the key's bucket and, when the bucket is full of live handshakes,
//! evicts the one closest to expiry (`egress_handshake_evicted`). A SYN flood
//! that passes the SYN rules makes the kernel answer, so egress records its
//! handshakes at the rate the flood passes: they can only push out each
//! other and legitimate handshakes older than themselves, and ingress reads
//! HANDSHAKES_LATEST first, so a bucket with nothing live costs 8 bytes of a
//! 128 KiB array. An evicted handshake still completes as far as TCP is
//! concerned: only its half-open units come back late (by expiry) and its
//! connection is not counted.
//!
//! Every CPU uses the same slots at the same time, so a slot is only ever
//! read and written field by field through its map pointer ([`Slot`]).

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{
    expiry,
    handshake::{FlowKey, HANDSHAKE_BUCKETS, HANDSHAKE_WAYS, HandshakeSlot, ServicePorts},
};

use crate::{
    config,
    kernel::{IndexedCells as _, field},
};

// Memory-mappable, so that `filter-ctl status` counts what is in use
// without one syscall per slot.
#[map]
static HANDSHAKES: Array<HandshakeSlot> =
    Array::with_max_entries(HANDSHAKE_BUCKETS * HANDSHAKE_WAYS, BPF_F_MMAPABLE);

#[map]
static HANDSHAKES_LATEST: Array<u64> = Array::with_max_entries(HANDSHAKE_BUCKETS, BPF_F_MMAPABLE);

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
    let bucket = key.bucket(seed, HANDSHAKE_BUCKETS);
    let expires_ns = expiry::deadline(now, lifetime);
    raise_latest(bucket, expires_ns);
    let first = bucket * HANDSHAKE_WAYS;
    // A retransmitted SYN-ACK refreshes its own slot; a new handshake takes
    // a free or expired one, or evicts.
    let mut free = None;
    let mut victim = first;
    let mut soonest = u64::MAX;
    for way in 0..HANDSHAKE_WAYS {
        let index = first + way;
        let Some(slot) = Slot::at(index) else {
            continue;
        };
        let slot_expires = slot.expires_ns();
        if !expiry::is_live(slot_expires, now) {
            free.get_or_insert(index);
        } else if slot.holds(key) {
            slot.fill(key, expected_ack, expires_ns);
            return Recorded::Stored;
        } else if slot_expires < soonest {
            soonest = slot_expires;
            victim = index;
        }
    }
    let (index, recorded) = match free {
        Some(index) => (index, Recorded::Stored),
        None => (victim, Recorded::Evicted),
    };
    if let Some(slot) = Slot::at(index) {
        slot.fill(key, expected_ack, expires_ns);
    }
    recorded
}

/// True, and the handshake is done, if `key` has a live recorded handshake
/// that an ACK of `ack` completes. Another acknowledgement number leaves it
/// waiting. The acknowledgement number is compared first: it differs in
/// nearly every other slot.
#[inline(always)]
pub fn complete(key: &FlowKey, ack: u32, now: u64, seed: u64) -> bool {
    let bucket = key.bucket(seed, HANDSHAKE_BUCKETS);
    match HANDSHAKES_LATEST.get_ptr(bucket) {
        // SAFETY: a valid, aligned element of the array map; read by value.
        Some(latest) if expiry::is_live(unsafe { *latest }, now) => {}
        _ => return false,
    }
    let first = bucket * HANDSHAKE_WAYS;
    for way in 0..HANDSHAKE_WAYS {
        let Some(slot) = Slot::at(first + way) else {
            continue;
        };
        if expiry::is_live(slot.expires_ns(), now) && slot.expected_ack() == ack && slot.holds(key)
        {
            slot.clear();
            return true;
        }
    }
    false
}

/// Moves the bucket's latest deadline up to `expires_ns` (a plain store:
/// two CPUs at one instant may leave the earlier of two deadlines a clock
/// tick apart, as in solicited.rs).
#[inline(always)]
fn raise_latest(bucket: u32, expires_ns: u64) {
    if let Some(latest) = HANDSHAKES_LATEST.get_ptr_mut(bucket) {
        // SAFETY: a valid, aligned element of the array map, read and
        // written by value.
        unsafe {
            if *latest < expires_ns {
                *latest = expires_ns;
            }
        }
    }
}

/// Whether the flow key in a shared map slot at `stored` is `key` (here and
/// in conn.rs): field by field, the remote port first, since flows sharing
/// a bucket nearly always differ there; no reference to the slot is made.
///
/// # Safety
/// `stored` points to a valid, aligned FlowKey in an element of an array map.
#[inline(always)]
pub unsafe fn stored_key_is(stored: *const FlowKey, key: &FlowKey) -> bool {
    // SAFETY: the caller's promise; `{ .. }` copies an address out before
    // comparing it.
    unsafe {
        (*stored).remote_port == key.remote_port
            && (*stored).local_port == key.local_port
            && (*stored).family == key.family
            && { (*stored).remote_addr } == key.remote_addr
            && { (*stored).local_addr } == key.local_addr
    }
}

/// A slot of HANDSHAKES, by its map pointer.
#[derive(Clone, Copy)]
struct Slot(*mut HandshakeSlot);

// SAFETY (every access below): the pointer is a valid, aligned element of
// the array map, which outlives the program; fields are copied in and out,
// no reference to the shared slot is made.
impl Slot {
    #[inline(always)]
    fn at(index: u32) -> Option<Slot> {
        HANDSHAKES.get_ptr_mut(index).map(Slot)
    }

    #[inline(always)]
    fn expires_ns(self) -> u64 {
        unsafe { (*self.0).expires_ns }
    }

    #[inline(always)]
    fn expected_ack(self) -> u32 {
        unsafe { (*self.0).expected_ack }
    }

    #[inline(always)]
    fn holds(self, key: &FlowKey) -> bool {
        unsafe { stored_key_is(&raw const (*self.0).key, key) }
    }

    #[inline(always)]
    fn fill(self, key: &FlowKey, expected_ack: u32, expires_ns: u64) {
        unsafe {
            (*self.0).key = *key;
            (*self.0).expected_ack = expected_ack;
            (*self.0).expires_ns = expires_ns;
        }
    }

    /// Completed: free for the next handshake of the bucket.
    #[inline(always)]
    fn clear(self) {
        unsafe { (*self.0).expires_ns = 0 };
    }
}
