//! A reference model of the filter's rules, in plain host Rust, written from
//! the rule list of docs/rules.md and docs/syn-and-lists.md rather than from
//! filter-ebpf, and a generator of packet sequences to check the real
//! programs against it (`tests::check` runs both and compares).
//!
//! The model takes frames (bytes), the settings and the list entries, and
//! answers what the filter must do with each frame: the verdict and the one
//! reason it is counted under. It holds the same kinds of state as the
//! filter (recorded queries, first fragments' verdicts, SYN buckets, list
//! entries, recorded handshakes, half-open budgets, connections, query
//! limits) for the
//! short sequences the generator makes. One module per rule, as in
//! filter-ebpf: [`parse`] (what a frame is), [`ingress`] (the rule order,
//! with `udp` and `tcp`), [`egress`], [`proto`] (DNS and NTP fields),
//! [`solicited`], [`fragments`], [`syn`] (its GCRA buckets in [`rate`]),
//! [`lists`], [`handshakes`], [`halfopen`], [`conn`], [`query`].
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
pub mod query;
pub mod rate;
pub mod sequence;
pub mod settings;
pub mod solicited;
pub mod syn;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use filter_common::{Encap, Reason};

pub use crate::settings::Settings;
use crate::{
    conn::Conn,
    fragments::Fragments,
    halfopen::HalfOpen,
    handshakes::Handshakes,
    lists::{List, Lists, Prefix},
    parse::Link,
    query::Queries,
    solicited::Solicited,
    syn::Syn,
};

/// What a rule decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    Pass(Reason),
    Drop(Reason),
    /// A reply sent back out of the link: the DNS slip.
    Tx(Reason),
}

/// The filter's random draws for one frame: the DNS slip's 1 in
/// `dns_slip` (docs/query-limits.md, *The slip reply*). The model cannot
/// know how a draw comes out: it is asked once with each outcome
/// ([`Model::ingress_outcomes`]), and notes here whether a draw was made.
#[derive(Clone, Copy, Debug)]
pub struct Chance {
    /// How a draw comes out: the query is chosen for the slip.
    pub slip: bool,
    /// A draw was made.
    pub drawn: bool,
}

impl Chance {
    /// Whether a DNS query over a limit is chosen for the slip, 1 in `n`
    /// (0: never, 1: always, otherwise drawn).
    pub fn slip(&mut self, n: u8) -> bool {
        match n {
            0 => false,
            1 => true,
            _ => {
                self.drawn = true;
                self.slip
            }
        }
    }
}

/// The XDP action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
    Tx,
}

/// What the XDP program must do with a frame and where it is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub reason: Reason,
    pub action: Action,
    /// Counted in the reason's "would" slot (monitor mode: would drop,
    /// would send the slip reply).
    pub would: bool,
    /// Came inside a tunnel the filter unwraps (docs/rules.md, *Tunnels*):
    /// counted under its encapsulation and the reason too (the reason's
    /// own slot, in monitor mode as well).
    pub tunnel: Option<Encap>,
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
    pub queries: Queries,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// What the frames start with: fixed at load, like the seed.
    link: Link,
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
    pub query_source_slots: BTreeSet<u32>,
    pub query_prefix_slots: BTreeSet<u32>,
}

impl Model {
    /// The filter loaded for an Ethernet device.
    pub fn new(settings: Settings, seed: u64) -> Model {
        Model::on(Link::Ethernet, settings, seed)
    }

    /// The filter loaded for a device whose frames start with `link`.
    pub fn on(link: Link, settings: Settings, seed: u64) -> Model {
        Model {
            link,
            settings,
            seed,
            state: State::default(),
        }
    }

    pub fn link(&self) -> Link {
        self.link
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A live settings change: the state stays, as with `filter-ctl set`.
    pub fn set(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The ingress verdict on `frame` at `now`, where every random draw
    /// comes out "no slip" (see [`Model::ingress_outcomes`] for all).
    pub fn ingress(&mut self, frame: &[u8], now: u64) -> Verdict {
        self.judge(frame, now, false).0
    }

    /// Every verdict the filter may give on `frame` at `now`, each with the
    /// state it leaves: one, or where the filter draws a random number (the
    /// DNS slip, 1 in `dns_slip` > 1), one for each outcome of the draw.
    pub fn ingress_outcomes(&self, frame: &[u8], now: u64) -> Vec<(Model, Verdict)> {
        let mut slipped = self.clone();
        let (verdict, drawn) = slipped.judge(frame, now, true);
        let mut outcomes = vec![(slipped, verdict)];
        if drawn {
            let mut not = self.clone();
            let (verdict, _) = not.judge(frame, now, false);
            if !outcomes.contains(&(not.clone(), verdict)) {
                outcomes.push((not, verdict));
            }
        }
        outcomes
    }

    /// The verdict with draws coming out as `slip`, and whether one was
    /// made. Monitor mode passes what it would drop or answer, counted in
    /// the reason's "would" slot.
    fn judge(&mut self, frame: &[u8], now: u64, slip: bool) -> (Verdict, bool) {
        let mut chance = Chance { slip, drawn: false };
        let judgement = ingress::verdict(
            &mut self.state,
            &self.settings,
            self.seed,
            &mut chance,
            self.link,
            frame,
            now,
        );
        let monitor = self.settings.monitor;
        let unless_monitor = |action| if monitor { Action::Pass } else { action };
        let (reason, action, would) = match judgement {
            Judgement::Pass(reason) => (reason, Action::Pass, false),
            Judgement::Drop(reason) => (reason, unless_monitor(Action::Drop), monitor),
            Judgement::Tx(reason) => (reason, unless_monitor(Action::Tx), monitor),
        };
        let verdict = Verdict {
            reason,
            action,
            would,
            tunnel: ingress::encap(self.link, frame),
        };
        (verdict, chance.drawn)
    }

    /// What egress counts `frame` as at `now` (it never drops).
    pub fn egress(&mut self, frame: &[u8], now: u64) -> Reason {
        egress::observe(
            &mut self.state,
            &self.settings,
            self.seed,
            self.link,
            frame,
            now,
        )
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
        let (query_source_slots, query_prefix_slots) = self.state.queries.slots_used();
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
            query_source_slots,
            query_prefix_slots,
        }
    }
}
