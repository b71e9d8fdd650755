//! The end-to-end tests' starting point: the lab ([`Topology`]) and a
//! filter-ctl driver with a pin root of its own, with the calls every test
//! makes on the gateway's `wan0`. Its methods panic with the command's error
//! (they are test steps); dropping it removes the pins first, which detaches
//! the filter, then the namespaces.

use crate::{
    ctl::{FilterCtl, ListedEntry, Settings, Stats, Status},
    lab::{Topology, WAN_IF},
    names::TEST_PREFIX,
    netns::Netns,
    process::is_root,
};

pub struct FilterLab {
    /// Declared first, so dropped first: the pins go before the namespaces.
    pub ctl: FilterCtl,
    pub topo: Topology,
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
        Self { ctl, topo }
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

    #[track_caller]
    pub fn stats(&self) -> Stats {
        self.ctl
            .stats(self.gw(), WAN_IF)
            .unwrap_or_else(|err| panic!("stats: {err:#}"))
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
