//! Per-source connection limits per local port (`conn_limit=25:3,80:64`).
//!
//! A connection to a port with a limit counts against its source (IPv4
//! /32, IPv6 /64) from the ACK that completes its handshake (see
//! [`crate::handshake`]) until a FIN or RST is seen in either direction, or
//! until it has been idle (no inbound packet) for long enough. A SYN from a
//! source whose live connections plus handshakes in flight to that port
//! reach the limit is dropped (`drop_conn_limit`). Ports without a limit
//! are not tracked at all: their packets cost nothing here.
//!
//! Three maps, none of which a spoofed source can fill:
//! - CONNECTIONS, per connection ([`ConnSlot`]): set-associative like the
//!   handshake table, written when a handshake completes, refreshed by the
//!   connection's inbound packets, cleared by FIN or RST;
//! - CONN_COUNTS, per source and port ([`ConnOwner`] -> [`ConnCount`]): an
//!   LRU hash, written only for completed handshakes;
//! - CONN_PENDING, handshakes in flight per source and port: hashed slots
//!   without keys (a SYN writes them, so they are kept apart, like the SYN
//!   buckets), the counter of [`crate::halfopen`] with a unit of
//!   [`PENDING_NS`]. Without it a burst of SYNs would all pass while none
//!   has completed yet.
//!
//! # Idle expiry without a sweeper
//!
//! Nothing runs in the background (the filter must work with no controller
//! running), so idle connections are aged in windows of the idle timeout
//! ([`window`]). Each connection remembers the window of its last inbound
//! packet; each count keeps two numbers, connections last active in the
//! current window and in the one before ([`ConnCount`]). A connection's
//! first packet in a new window moves it from the older number to the newer
//! one (one write per connection per window; every other packet only reads).
//! When the clock enters a new window, the older number is dropped: what was
//! not active for a whole window stops counting. So a connection idle for
//! less than the timeout always counts, and one idle for twice the timeout
//! never does (in between it depends on where the windows fall). An idle
//! connection that becomes active again counts again.
//!
//! Updates are plain stores (no compare-and-swap on the BPF target): two
//! CPUs changing one count at the same instant can lose one change. The
//! current number is rebuilt from the connections' own activity in every
//! window, so such an error is gone after two windows.

use crate::{handshake::FlowKey, hash, prefix};

/// Set-associative table of tracked connections: 32768 slots, 1.5 MiB.
pub const CONN_BUCKETS: u32 = 8192;
pub const CONN_WAYS: u32 = 4;
/// Sources with connections to limited ports (LRU hash entries).
pub const CONN_OWNERS: u32 = 16384;
/// Slots of handshakes-in-flight counters (u64 each: 512 KiB).
pub const PENDING_SLOTS: u32 = 1 << 16;
/// How long a SYN to a limited port stays "in flight" at most, one unit of
/// the pending counter: far above any handshake's round trip; a completed
/// handshake gives its unit back at once.
pub const PENDING_NS: u64 = 1_000_000_000;

/// Default idle timeout: longer than servers' own idle timeouts (SMTP
/// servers close a silent session after 5 minutes, RFC 5321 4.5.3.2.7), so
/// that a slot-holder's sessions count for as long as the server keeps them.
pub const DEFAULT_IDLE_NS: u64 = 300_000_000_000;

/// The per-source connection limit of every TCP port, 0 = none, as one map
/// value (128 KiB) written by filter-ctl.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits(pub [u16; ConnLimits::PORTS]);

impl ConnLimits {
    pub const PORTS: usize = 65536;
    pub const NONE: ConnLimits = ConnLimits([0; Self::PORTS]);

    #[inline(always)]
    pub fn limit(&self, port: u16) -> u16 {
        self.0[usize::from(port)]
    }

    pub fn set(&mut self, port: u16, limit: u16) {
        self.0[usize::from(port)] = limit;
    }
}

/// The window of the clock at `now_ns`, for an idle timeout of `idle_ns`
/// (0: the default). Windows start at 1; 0 marks a free [`ConnSlot`].
#[inline(always)]
pub const fn window(now_ns: u64, idle_ns: u64) -> u64 {
    let idle = if idle_ns == 0 {
        DEFAULT_IDLE_NS
    } else {
        idle_ns
    };
    now_ns / idle + 1
}

/// Where a stored window stands against the window of now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Age {
    /// Now's window (or the next one: a CPU whose clock read is a moment
    /// older than another's may see a window that was just entered).
    Current,
    /// The window before now's: still counts.
    Previous,
    /// Older (or a free slot, or a window of another idle timeout): counts no more.
    Expired,
}

#[inline(always)]
pub const fn age(stored: u64, window: u64) -> Age {
    if stored == 0 {
        Age::Expired
    } else if stored == window || stored == window.wrapping_add(1) {
        Age::Current
    } else if stored.wrapping_add(1) == window {
        Age::Previous
    } else {
        Age::Expired
    }
}

/// Whose connection it is for the limit: the remote source (IPv4 address,
/// IPv6 /64, as a number) and our port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnOwner {
    pub source: u64,
    pub local_port: u16,
    /// 4 or 6.
    pub family: u16,
    pub _padding: u32,
}

/// Distinguish the two families in the pending slots' hash.
const TAG_PENDING_V4: u64 = 0x636f_6e34;
const TAG_PENDING_V6: u64 = 0x636f_6e36;

impl ConnOwner {
    /// The owner of a connection (the remote end is the source).
    #[inline(always)]
    pub fn of(key: &FlowKey) -> ConnOwner {
        ConnOwner::new(&key.remote_addr, key.family, key.local_port)
    }

    /// The owner of connections from `source` (wire words, family 4 or 6)
    /// to our `local_port`.
    #[inline(always)]
    pub fn new(source: &[u32; 4], family: u32, local_port: u16) -> ConnOwner {
        let (source, family) = if family == 6 {
            (prefix::v6_top64(source), 6)
        } else {
            (u64::from(prefix::v4_number(source[0])), 4)
        };
        ConnOwner {
            source,
            local_port,
            family,
            _padding: 0,
        }
    }

    /// The owner's slot in CONN_PENDING, keyed with the per-attach seed.
    #[inline(always)]
    pub fn pending_slot(&self, seed: u64) -> u32 {
        let tag = if self.family == 6 {
            TAG_PENDING_V6
        } else {
            TAG_PENDING_V4
        };
        let source = hash::keyed_mix(self.source ^ tag, seed);
        hash::keyed_mix(source ^ u64::from(self.local_port), seed) as u32 & (PENDING_SLOTS - 1)
    }
}

/// Connections of one [`ConnOwner`] that count, by the window of their last
/// inbound packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCount {
    /// The window `current` belongs to.
    pub window: u64,
    /// Connections last active in `window`.
    pub current: u32,
    /// Connections last active in the window before it.
    pub previous: u32,
}

impl ConnCount {
    /// Connections that count at `window`: active in it or the one before.
    #[inline(always)]
    pub const fn live(&self, window: u64) -> u32 {
        match age(self.window, window) {
            Age::Current => self.current.saturating_add(self.previous),
            Age::Previous => self.current,
            Age::Expired => 0,
        }
    }

    /// Moves the count to `window`: the older number is dropped.
    #[inline(always)]
    fn roll(&mut self, window: u64) {
        match age(self.window, window) {
            Age::Current => {}
            Age::Previous => {
                self.previous = self.current;
                self.current = 0;
                self.window = window;
            }
            Age::Expired => {
                self.previous = 0;
                self.current = 0;
                self.window = window;
            }
        }
    }

    /// A connection opened (its handshake completed) at `window`.
    #[inline(always)]
    pub fn open(&mut self, window: u64) {
        self.roll(window);
        self.current = self.current.saturating_add(1);
    }

    /// A connection last active at window `last` has an inbound packet at
    /// `window`. Callers skip it when `age(last, window)` is `Current`:
    /// nothing changes then.
    #[inline(always)]
    pub fn renew(&mut self, last: u64, window: u64) {
        self.roll(window);
        match age(last, self.window) {
            Age::Current => return,
            Age::Previous => self.previous = self.previous.saturating_sub(1),
            Age::Expired => {}
        }
        self.current = self.current.saturating_add(1);
    }

    /// A connection last active at window `last` ended (FIN, RST, or its
    /// slot was taken) at `window`.
    #[inline(always)]
    pub fn end(&mut self, last: u64, window: u64) {
        self.roll(window);
        match age(last, self.window) {
            Age::Current => self.current = self.current.saturating_sub(1),
            Age::Previous => self.previous = self.previous.saturating_sub(1),
            Age::Expired => {}
        }
    }
}

/// One slot of the CONNECTIONS table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnSlot {
    pub key: FlowKey,
    /// Window of the connection's last inbound packet; 0 = free or ended.
    pub window: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::ConnOwner {}
    // SAFETY: the same.
    unsafe impl aya::Pod for super::ConnCount {}
    // SAFETY: the same.
    unsafe impl aya::Pod for super::ConnSlot {}
    // SAFETY: u16s; every bit pattern is a limit.
    unsafe impl aya::Pod for super::ConnLimits {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::{collections::BTreeMap, vec::Vec};

    use proptest::prelude::*;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn windows_are_whole_idle_timeouts_from_one() {
        assert_eq!(window(0, 10 * SEC), 1);
        assert_eq!(window(10 * SEC - 1, 10 * SEC), 1);
        assert_eq!(window(10 * SEC, 10 * SEC), 2);
        assert_eq!(window(299 * SEC, 0), 1, "0 means the default, 5 minutes");
        assert_eq!(age(0, 1), Age::Expired, "a free slot never counts");
        assert_eq!(age(7, 7), Age::Current);
        assert_eq!(age(8, 7), Age::Current, "a CPU a moment behind");
        assert_eq!(age(6, 7), Age::Previous);
        assert_eq!(age(5, 7), Age::Expired);
        assert_eq!(age(100, 7), Age::Expired, "another timeout's windows");
    }

    #[test]
    fn an_idle_connection_stops_counting_between_one_and_two_timeouts() {
        let idle = 10 * SEC;
        let opened = 25 * SEC;
        let mut count = ConnCount::default();
        count.open(window(opened, idle));
        assert_eq!(count.live(window(opened + idle - 1, idle)), 1);
        // 10 s idle: the window changed once, it still counts; at 20 s the
        // window before now is no longer its window.
        assert_eq!(count.live(window(opened + idle, idle)), 1);
        assert_eq!(count.live(window(opened + 2 * idle, idle)), 0);
        // The earliest it stops: opened at the very end of a window, it
        // still counts after an idle timeout, and no more a moment later.
        let mut late = ConnCount::default();
        late.open(window(30 * SEC - 1, idle));
        assert_eq!(late.live(window(40 * SEC - 1, idle)), 1);
        assert_eq!(late.live(window(40 * SEC, idle)), 0);
    }

    #[test]
    fn owners_are_the_remote_source_and_our_port() {
        let key = |remote: [u32; 4], family, port| FlowKey {
            local_addr: [1, 2, 3, 4],
            remote_addr: remote,
            local_port: port,
            remote_port: 40000,
            family,
        };
        let v4 = u32::from_ne_bytes([198, 51, 100, 7]);
        let owner = ConnOwner::of(&key([v4, 9, 9, 9], 4, 25));
        assert_eq!(
            (owner.source, owner.local_port, owner.family),
            (0xc633_6407, 25, 4)
        );
        // IPv6: the /64 only.
        let a = ConnOwner::of(&key([0x20010db8, 7, 1, 2], 6, 25));
        let b = ConnOwner::of(&key([0x20010db8, 7, 3, 4], 6, 25));
        assert_eq!(a, b);
        assert_ne!(
            a.pending_slot(5),
            ConnOwner {
                local_port: 80,
                ..a
            }
            .pending_slot(5)
        );
        assert!(a.pending_slot(5) < PENDING_SLOTS);
    }

    /// What happens to one connection.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Open(u8),
        Packet(u8),
        End(u8),
        /// The clock moves on by this many windows.
        Wait(u8),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                (0..8u8).prop_map(Op::Open),
                (0..8u8).prop_map(Op::Packet),
                (0..8u8).prop_map(Op::End),
                (0..3u8).prop_map(Op::Wait),
            ],
            1..120,
        )
    }

    proptest! {
        /// The count equals the number of open connections whose last
        /// inbound packet was in the current or the previous window, after
        /// any sequence of opens, packets, ends and waits, with the program's
        /// own rule for when to call renew.
        #[test]
        fn the_count_is_the_connections_active_in_two_windows(ops in ops(), start in 1..1000u64) {
            let mut now = start;
            let mut count = ConnCount::default();
            // connection -> window of its last packet (the slot's window)
            let mut slots: BTreeMap<u8, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Open(c) => {
                        if let std::collections::btree_map::Entry::Vacant(slot) = slots.entry(c) {
                            slot.insert(now);
                            count.open(now);
                        }
                    }
                    Op::Packet(c) => {
                        if let Some(last) = slots.get_mut(&c)
                            && age(*last, now) != Age::Current
                        {
                            count.renew(*last, now);
                            *last = now;
                        }
                    }
                    Op::End(c) => {
                        if let Some(last) = slots.remove(&c) {
                            count.end(last, now);
                        }
                    }
                    Op::Wait(n) => now += u64::from(n),
                }
                let expected = slots.values().filter(|&&last| last + 1 >= now).count() as u32;
                prop_assert_eq!(count.live(now), expected);
            }
        }

        /// A CPU whose clock read lags by one window neither loses nor adds
        /// connections: its updates land in the newer window.
        #[test]
        fn a_lagging_window_is_taken_as_the_current_one(opens in 1..20u32, window in 2..1000u64) {
            let mut count = ConnCount::default();
            for _ in 0..opens {
                count.open(window);
            }
            count.open(window - 1);
            prop_assert_eq!(count.live(window), opens + 1);
            prop_assert_eq!(count.live(window - 1), opens + 1);
            count.end(window, window - 1);
            prop_assert_eq!(count.live(window), opens);
        }
    }
}
