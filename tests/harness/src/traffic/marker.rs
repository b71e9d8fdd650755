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
//! A marker is no IP packet ([`frame`]: EtherType [`MARKER_ETHERTYPE`]), so
//! that no setting or list can drop it (a test may deny all of IPv4): the
//! filter passes it as `pass_not_ip` ([`Marker::frame_len`] bytes). The
//! receiving stack counts it in a rule of its own that drops it ([`rule`],
//! first in its ingress chain: no other counter sees it).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{sched, unistd::Pid};

use super::sender::RawSender;
use crate::{
    kernel,
    lab::StackCounters,
    netns::{Mac, Netns},
};

/// The EtherType of markers: IEEE 802's local experimental one, which no
/// stack handles.
pub const MARKER_ETHERTYPE: u16 = 0x88b5;

/// A marker to `to`: an Ethernet frame of the minimum size (its source
/// address is each sender's, filled in when sent).
pub fn frame(to: Mac) -> Vec<u8> {
    let mut frame = vec![0; 60];
    frame[..6].copy_from_slice(&to.0);
    frame[12..14].copy_from_slice(&MARKER_ETHERTYPE.to_be_bytes());
    frame[14..20].copy_from_slice(b"marker");
    frame
}

/// The nftables rule, first in a netdev ingress chain, that counts markers
/// under the named counter `counter` and drops them.
pub fn rule(counter: &str) -> String {
    format!("ether type {MARKER_ETHERTYPE:#06x} counter name \"{counter}\" drop")
}

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
    /// Markers `frame` ([`frame`]), counted at `counter` ([`rule`]).
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
pub(crate) fn usable_cpus() -> anyhow::Result<Vec<usize>> {
    let set = sched::sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
    let cpus: Vec<usize> = (0..sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect();
    if cpus.is_empty() {
        bail!("no CPU to send a marker from");
    }
    Ok(cpus)
}
