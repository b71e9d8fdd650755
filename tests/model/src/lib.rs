//! A reference model of the filter's rules, in plain host Rust, written from
//! the README's rule list and docs/syn-and-lists.md rather than from
//! filter-ebpf, and a generator of packet sequences to check the real
//! programs against it (`tests::check` runs both and compares).
//!
//! The model takes frames (bytes), the settings and the list entries, and
//! answers what the filter must do with each frame: the verdict and the one
//! reason it is counted under. It holds the same kinds of state as the
//! filter (recorded queries, first fragments' verdicts, SYN buckets, list
//! entries, recorded handshakes, half-open budgets, connections) for the
//! short sequences the generator makes. One module per rule, as in
//! filter-ebpf: [`parse`] (what a frame is), [`ingress`] (the rule order,
//! with `udp` and `tcp`), [`egress`], [`proto`] (DNS and NTP fields),
//! [`solicited`], [`fragments`], [`syn`] (its GCRA buckets in [`rate`]),
//! [`lists`], [`handshakes`], [`halfopen`], [`conn`].
//!
//! Time: every call takes `now` on the programs' clock (the coarse monotonic
//! clock). The runner reads it before and after each test run; when a clock
//! tick falls in between, it asks the model for both instants (the model is
//! cheap to clone) and keeps whichever the kernel's answer agrees with.

pub mod conn;
pub mod egress;
pub mod fragments;
pub mod generate;
pub mod halfopen;
pub mod handshakes;
pub mod ingress;
pub mod lists;
pub mod parse;
pub mod proto;
pub mod rate;
pub mod sequence;
pub mod settings;
pub mod solicited;
pub mod syn;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use filter_common::Reason;

pub use crate::settings::Settings;
use crate::{
    conn::Conn,
    fragments::Fragments,
    halfopen::HalfOpen,
    handshakes::Handshakes,
    lists::{List, Lists, Prefix},
    solicited::Solicited,
    syn::Syn,
};

/// What a rule decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    Pass(Reason),
    Drop(Reason),
}

/// What the XDP program must do with a frame and where it is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub reason: Reason,
    /// XDP_DROP (else XDP_PASS).
    pub dropped: bool,
    /// Counted in the reason's "would drop" slot (monitor mode).
    pub would_drop: bool,
}

/// Everything the rules remember between packets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub solicited: Solicited,
    pub fragments: Fragments,
    pub syn: Syn,
    pub lists: Lists,
    pub handshakes: Handshakes,
    pub halfopen: HalfOpen,
    pub conn: Conn,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    settings: Settings,
    /// The secret seed of the SYN slot hash (random per attach).
    seed: u64,
    state: State,
}

/// Where the model wrote: what a runner must clear in the real maps to
/// start the next sequence from an empty filter.
#[derive(Clone, Debug, Default)]
pub struct Written {
    pub solicited_buckets: BTreeSet<u32>,
    pub syn_source_slots: BTreeSet<u32>,
    pub syn_prefix_slots: BTreeSet<u32>,
    pub fragments: Vec<fragments::Key>,
    pub list_entries: Vec<(List, Prefix)>,
    pub handshake_buckets: BTreeSet<u32>,
    pub service_ports: BTreeSet<u16>,
    pub halfopen_source_slots: BTreeSet<u32>,
    pub halfopen_prefix_slots: BTreeSet<u32>,
    pub conn_buckets: BTreeSet<u32>,
    pub conn_pending_slots: BTreeSet<u32>,
    pub conn_owners: BTreeSet<filter_common::conn::ConnOwner>,
}

impl Model {
    pub fn new(settings: Settings, seed: u64) -> Model {
        Model {
            settings,
            seed,
            state: State::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A live settings change: the state stays, as with `filter-ctl set`.
    pub fn set(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The ingress verdict on `frame` at `now`.
    pub fn ingress(&mut self, frame: &[u8], now: u64) -> Verdict {
        let judgement = ingress::verdict(&mut self.state, &self.settings, self.seed, frame, now);
        match judgement {
            Judgement::Pass(reason) => Verdict {
                reason,
                dropped: false,
                would_drop: false,
            },
            Judgement::Drop(reason) => Verdict {
                reason,
                dropped: !self.settings.monitor,
                would_drop: self.settings.monitor,
            },
        }
    }

    /// What egress counts `frame` as at `now` (it never drops).
    pub fn egress(&mut self, frame: &[u8], now: u64) -> Reason {
        egress::observe(&mut self.state, &self.settings, self.seed, frame, now)
    }

    /// An operator's list entry (`filter-ctl allow|deny add`), expiring at
    /// `expires_ns` on the programs' clock (0: never).
    pub fn list_add(&mut self, list: List, prefix: Prefix, expires_ns: u64) {
        self.state.lists.add(list, prefix, expires_ns);
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn written(&self) -> Written {
        let (syn_source_slots, syn_prefix_slots) = self.state.syn.slots_used();
        let (halfopen_source_slots, halfopen_prefix_slots) = self.state.halfopen.slots_used();
        Written {
            handshake_buckets: self.state.handshakes.buckets(),
            service_ports: self.state.handshakes.service_ports().clone(),
            halfopen_source_slots,
            halfopen_prefix_slots,
            conn_buckets: self.state.conn.buckets(),
            conn_pending_slots: self.state.conn.pending_slots(),
            conn_owners: self.state.conn.owners().clone(),
            solicited_buckets: self.state.solicited.buckets(),
            syn_source_slots,
            syn_prefix_slots,
            fragments: self.state.fragments.keys().copied().collect(),
            list_entries: self.state.lists.entries().collect(),
        }
    }
}
