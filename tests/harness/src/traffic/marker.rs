//! A trailing marker: a frame that the filter passes, sent after a test's
//! frames along their path to an interface with XDP, and waited for at an
//! nftables counter of the receiving stack. Frames on one path reach the
//! interface's receive ring in order, and XDP takes them from it in order,
//! so once the marker is counted every frame sent before it has been judged:
//! what did not arrive by then was dropped, not late. A fixed sleep proves
//! neither.
//!
//! A frame that a thread sends on another CPU waits in that CPU's backlog,
//! and frames enter the path at different points (a raw socket on a WAN
//! host's link, the internet's bridge): so a marker goes out through every
//! sender given and from every CPU this process may use, each behind what
//! that CPU still holds there; the wait is for all of them.
//!
//! The receiving stack counts the marker in a rule of its own that drops it
//! (no answer, no conntrack entry, no other counter of that chain); the
//! filter counts it, as the IPv4 datagram it is ([`Marker::frame_len`]).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{sched, unistd::Pid};

use super::sender::RawSender;
use crate::{kernel, lab::StackCounters, netns::Netns};

/// The UDP port of markers (discard), on both ends.
pub const MARKER_PORT: u16 = 9;

/// Where the receiving stack counts markers: `nft list counter FAMILY TABLE NAME`.
#[derive(Clone, Debug)]
pub struct Counter {
    pub family: &'static str,
    pub table: &'static str,
    pub name: &'static str,
}

impl Counter {
    /// Packets counted so far in `ns`; an error if the counter cannot be
    /// read (never a silent 0).
    pub fn read(&self, ns: &Netns) -> anyhow::Result<u64> {
        let text = ns.run(["nft", "list", "counter", self.family, self.table, self.name])?;
        let counters = StackCounters::parse(&text)?;
        match counters.counters.as_slice() {
            [(name, packets, _)] if name == self.name => Ok(*packets),
            _ => bail!("nft list counter {} {}: {text}", self.table, self.name),
        }
    }
}

pub struct Marker {
    /// The frame, its source MAC address filled in per sender.
    frame: Vec<u8>,
    counter: Counter,
    sent: AtomicU64,
}

impl Marker {
    /// Markers `frame` (built to pass the filter and to match `counter`'s
    /// rule), counted at `counter`.
    pub fn new(frame: Vec<u8>, counter: Counter) -> Self {
        Self {
            frame,
            counter,
            sent: AtomicU64::new(0),
        }
    }

    /// Markers sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The bytes the filter counts for one marker.
    pub fn frame_len(&self) -> u64 {
        self.frame.len() as u64
    }

    /// Sends a marker through each of `senders` from every CPU this process
    /// may use, and waits until the stack of `receiver` counted all of them.
    pub fn pass(&self, senders: &[&RawSender], receiver: &Netns) -> anyhow::Result<()> {
        let before = self.counter.read(receiver)?;
        let cpus = usable_cpus()?;
        thread::scope(|scope| -> anyhow::Result<()> {
            let threads: Vec<_> = cpus
                .iter()
                .map(|&cpu| {
                    scope.spawn(move || -> anyhow::Result<()> {
                        let mut set = sched::CpuSet::new();
                        set.set(cpu)?;
                        sched::sched_setaffinity(Pid::from_raw(0), &set)
                            .with_context(|| format!("moving a marker's thread to CPU {cpu}"))?;
                        for sender in senders {
                            let mut frame = self.frame.clone();
                            frame[6..12].copy_from_slice(&sender.mac().0);
                            sender.send(&frame)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for thread in threads {
                thread.join().expect("a marker thread panicked")?;
            }
            Ok(())
        })?;
        let n = (cpus.len() * senders.len()) as u64;
        self.sent.fetch_add(n, Ordering::Relaxed);
        let timeout = if kernel::emulated() {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(10)
        };
        let deadline = Instant::now() + timeout;
        loop {
            let counted = self.counter.read(receiver)? - before;
            if counted >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{counted} of {n} markers reached the stack of {} within {timeout:?}: \
                     frames on this path were lost, or the filter dropped a marker",
                    receiver.name()
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The CPUs this process may run on.
fn usable_cpus() -> anyhow::Result<Vec<usize>> {
    let set = sched::sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
    let cpus: Vec<usize> = (0..sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect();
    if cpus.is_empty() {
        bail!("no CPU to send a marker from");
    }
    Ok(cpus)
}
