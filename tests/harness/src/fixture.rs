//! The end-to-end tests' starting point: the lab ([`Topology`]) and a
//! filter-ctl driver with a pin root of its own, with the calls every test
//! makes on the gateway's `wan0`. Its methods panic with the command's error
//! (they are test steps); dropping it removes the pins first, which detaches
//! the filter, then the namespaces.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::Duration,
};

use filter_common::{Direction, Reason};

use crate::{
    ctl::{FilterCtl, ListedEntry, Settings, Stats, Status},
    lab::{StackCounters, Topology, WAN_IF},
    names::TEST_PREFIX,
    netns::Netns,
    process::is_root,
    traffic::marker::Marker,
};

pub struct FilterLab {
    /// Declared first, so dropped first: the pins go before the namespaces.
    pub ctl: FilterCtl,
    pub topo: Topology,
    /// The lab's marker, and how many of them [`FilterLab::flush`] sent.
    pub marker: Marker,
    flushed: AtomicU64,
}

impl FilterLab {
    /// A fresh lab (names unique to this test) and driver; nothing attached yet.
    #[track_caller]
    pub fn build() -> Self {
        assert!(
            is_root(),
            "the end-to-end tests need root (network namespaces, XDP): run them as root"
        );
        let ctl = FilterCtl::new().expect("locating filter-ctl");
        let topo = Topology::build(TEST_PREFIX).expect("building the lab");
        let marker = topo.marker().expect("the lab's marker");
        Self {
            ctl,
            topo,
            marker,
            flushed: AtomicU64::new(0),
        }
    }

    /// Sends the lab's marker towards `wan0` on every way there (the
    /// internet's bridge, each WAN host's link) and waits until the
    /// gateway's stack counted them: every frame sent to `wan0` before has been
    /// judged by XDP (what did not reach the stack was dropped), and the
    /// filter counted it. The filter counts the marker as `pass_not_ip`:
    /// [`FilterLab::stats`] leaves those out, so call this only while the
    /// filter is attached.
    #[track_caller]
    pub fn flush(&self) {
        let passed = self.pass_marker();
        self.flushed.fetch_add(passed, Ordering::Relaxed);
    }

    /// [`FilterLab::flush`] for probes of a filter that may not be attached:
    /// the filter's counters keep these markers (as `pass_not_ip`, when it
    /// is). How many markers it sent.
    #[track_caller]
    pub fn pass_marker(&self) -> u64 {
        let before = self.marker.sent();
        let senders = self
            .topo
            .paths_to_wan0()
            .unwrap_or_else(|err| panic!("the marker's senders: {err:#}"));
        let senders: Vec<&_> = senders.iter().collect();
        self.marker
            .pass(&senders, self.gw())
            .unwrap_or_else(|err| panic!("the marker: {err:#}"));
        self.marker.sent() - before
    }

    /// The filter's counters and what `read` reads (the stack's counters,
    /// nftables elsewhere), together: after a [`FilterLab::flush`], read
    /// until the filter's ingress counters stood still around `read` (late
    /// segments of connections that just ended, an answer still on its way,
    /// can follow the marker).
    #[track_caller]
    pub fn snapshot<T>(&self, read: impl Fn() -> T) -> (Stats, T) {
        let ingress = |stats: &Stats| -> Vec<(Reason, u64)> {
            stats
                .rows()
                .filter(|row| row.direction == Direction::Ingress)
                .map(|row| (row.reason, row.packets))
                .collect()
        };
        self.flush();
        for _ in 0..50 {
            let stats = self.stats();
            let other = read();
            if ingress(&self.stats()) == ingress(&stats) {
                return (stats, other);
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("wan0 never became quiet enough to read the counters together");
    }

    /// [`FilterLab::snapshot`] with the lab's stack counters.
    #[track_caller]
    pub fn settled(&self) -> (Stats, StackCounters) {
        self.snapshot(|| {
            self.topo
                .stack_counters()
                .unwrap_or_else(|err| panic!("the lab's stack counters: {err:#}"))
        })
    }

    pub fn gw(&self) -> &Netns {
        &self.topo.gateway
    }

    /// `filter-ctl ARGS...` in the gateway; its stdout.
    #[track_caller]
    pub fn ctl(&self, args: &[&str]) -> String {
        self.ctl
            .run(self.gw(), args)
            .unwrap_or_else(|err| panic!("filter-ctl {args:?}: {err:#}"))
    }

    /// `filter-ctl ARGS...` in the gateway, which must fail; its stderr.
    #[track_caller]
    pub fn failure(&self, args: &[&str]) -> String {
        self.ctl.failure(self.gw(), args)
    }

    /// `attach --iface wan0 [--mode MODE]`; its stdout.
    #[track_caller]
    pub fn attach(&self, mode: Option<&str>) -> String {
        self.ctl
            .attach(self.gw(), WAN_IF, mode)
            .unwrap_or_else(|err| panic!("attach: {err:#}"))
    }

    /// `set --iface wan0 KEY=VALUE...`; its stdout.
    #[track_caller]
    pub fn set(&self, assignments: &[&str]) -> String {
        let mut args = vec!["set", "--iface", WAN_IF];
        args.extend(assignments);
        self.ctl(&args)
    }

    /// `stats --iface wan0`, less the markers [`FilterLab::flush`] sent.
    #[track_caller]
    pub fn stats(&self) -> Stats {
        let markers = self.flushed.load(Ordering::Relaxed);
        self.ctl
            .stats(self.gw(), WAN_IF)
            .unwrap_or_else(|err| panic!("stats: {err:#}"))
            .less(
                Reason::PassNotIp,
                markers,
                markers * self.marker.frame_len(),
            )
    }

    /// The one entry of `status --iface wan0`.
    #[track_caller]
    pub fn status(&self) -> Status {
        let mut all = self
            .ctl
            .status(self.gw(), Some(WAN_IF))
            .unwrap_or_else(|err| panic!("status: {err:#}"));
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    /// The live settings (`config --iface wan0`).
    #[track_caller]
    pub fn config(&self) -> Settings {
        self.ctl
            .config(self.gw(), WAN_IF)
            .unwrap_or_else(|err| panic!("config: {err:#}"))
    }

    /// The live value of one setting, as `set` takes it.
    #[track_caller]
    pub fn setting(&self, key: &str) -> String {
        self.config()
            .values()
            .find_map(|(k, value)| (k == key).then_some(value))
            .unwrap_or_else(|| panic!("no setting {key}"))
    }

    /// `allow|deny list --iface wan0`.
    #[track_caller]
    pub fn list(&self, list: &str) -> Vec<ListedEntry> {
        self.ctl
            .list(self.gw(), list, WAN_IF)
            .unwrap_or_else(|err| panic!("{list} list: {err:#}"))
    }
}
