//! The model check: plays generated sequences through the real programs
//! (BPF_PROG_TEST_RUN on one loaded instance, [`crate::bpf::Filter`], per
//! link layer: loaded for Ethernet devices, and as `attach` loads it for
//! devices without an Ethernet header, whose frames start at the IP
//! header) and
//! through the reference model (the `model` crate), and compares, frame by
//! frame, the verdict (the XDP action) and the one counter the frame was
//! counted under. Where the filter draws a random number (the DNS slip, 1 in
//! `dns_slip` > 1), every verdict the model allows is accepted.
//!
//! Every sequence starts from an empty filter: afterwards the runner clears
//! what the model says was written (solicited buckets, SYN slots, fragment
//! entries, list entries, handshake buckets, service ports, half-open
//! slots, connections, their counts and pending slots, query limit slots)
//! through memory maps and map calls (`filter_ctl::rawmap`, the one module
//! that works below aya's typed maps), and after a mismatch everything. So a case found by the fuzzer replays the same from
//! a fresh load, and a shrunk case is minimal on its own.
//!
//! Time: the programs read the coarse monotonic clock. The runner reads it
//! before and after each test run. When a tick falls in between, the kernel
//! used one of the two instants: the model is asked at both, and every
//! answer that agrees with the kernel stays a candidate state (they differ
//! only in deadlines a tick apart, and later frames tell them apart or not).
//! A run that took longer than a tick (the runner was preempted) cannot be
//! placed in time: the rest of that sequence is skipped and counted.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    fmt::{self, Write as _},
    hash::{Hash as _, Hasher as _},
    time::{Duration, Instant},
};

use aya::maps::{Array, HashMap, Map, MapData};
use filter_common::{
    Counter, Encap, FragmentKey, FragmentVerdict, ListSource, Reason, SolicitedSlot, SynBucket,
    conn::{CONN_WAYS, ConnCount, ConnOwner, ConnSlot},
    handshake::{HANDSHAKE_WAYS, HandshakeSlot, ServicePorts},
    map,
};
use filter_ctl::{
    clock::now_ns,
    lists::{Cidr, List as CtlList},
    rawmap::{Mapping, RawMap, values_of},
};
use model::{
    Action, Model, Settings, Verdict, Written,
    lists::{List, Prefix},
    parse::Link,
    sequence::{Sequence, Step, hex},
};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use crate::bpf::{Filter, TC_ACT_OK, XDP_DROP, XDP_PASS, XDP_TX};

/// Frames longer than this are not run (BPF_PROG_TEST_RUN takes at most
/// about a page; a WAN link's frames are far shorter).
pub const MAX_FRAME: usize = 3000;
/// Frames shorter than this are not run: BPF_PROG_TEST_RUN refuses them
/// (ETH_HLEN), also for the programs loaded for frames that start at the
/// IP header.
pub const MIN_FRAME: usize = 14;
/// Candidate model states kept while clock ticks leave the instant open.
const MAX_CANDIDATES: usize = 16;

/// What the kernel did with a frame: the program's return value and every
/// counter slot that moved (index, packets, bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub returned: u32,
    pub moved: Vec<(usize, u64, u64)>,
}

/// A frame on which the kernel and the model disagree.
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// The variant of the programs: what the frames start with.
    pub link: Link,
    /// The step (0-based) of the sequence.
    pub step: usize,
    pub ingress: bool,
    pub frame: Vec<u8>,
    pub kernel: Observed,
    /// What the model expected, at the clock reads before and after the run.
    pub model: Vec<Observed>,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let returned = match self.returned {
            XDP_PASS => "XDP_PASS".to_string(),
            XDP_DROP => "XDP_DROP".to_string(),
            XDP_TX => "XDP_TX".to_string(),
            other => format!("returned {other}"),
        };
        let moved: Vec<String> = self
            .moved
            .iter()
            .map(|&(slot, packets, bytes)| format!("{} +{packets}/{bytes}B", slot_name(slot)))
            .collect();
        write!(f, "{returned}, counted {}", moved.join(" "))
    }
}

/// [`Mismatch::step`] of counters that moved where no frame's answer said.
pub const UNLOCATED: usize = usize::MAX;

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = match self.link {
            Link::Ethernet => "on the Ethernet link",
            Link::Ip => "on the IP link (frames start at the IP header)",
        };
        if self.step == UNLOCATED {
            return writeln!(
                f,
                "{link}: counters moved that no frame's answer named (not found again frame by frame): {}",
                self.kernel
            );
        }
        let hook = if self.ingress {
            "ingress (XDP)"
        } else {
            "egress (TC, TC_ACT_OK = 0)"
        };
        writeln!(
            f,
            "step {} {hook} {link}, {} bytes:",
            self.step,
            self.frame.len()
        )?;
        writeln!(f, "  frame  {}", hex(&self.frame))?;
        writeln!(f, "  kernel {}", self.kernel)?;
        for expected in &self.model {
            writeln!(f, "  model  {expected}")?;
        }
        Ok(())
    }
}

/// The counter slots compared: STATS (each reason, then its "would" slot),
/// then TUNNELLED (by encapsulation, each reason).
const STATS_SLOTS: usize = 2 * Reason::COUNT as usize;
const TUNNELLED_SLOTS: usize = (Encap::COUNT * Reason::COUNT) as usize;

fn slot_name(slot: usize) -> String {
    let count = Reason::COUNT as usize;
    if let Some(tunnelled) = slot.checked_sub(STATS_SLOTS) {
        let encap = Encap::ALL.get(tunnelled / count);
        return match (encap, Reason::ALL.get(tunnelled % count)) {
            (Some(encap), Some(reason)) => format!("{}:{}", encap.name(), reason.name()),
            _ => format!("slot {slot}"),
        };
    }
    match Reason::ALL.get(slot % count) {
        Some(reason) if slot < count => reason.name().to_string(),
        Some(reason) if reason.action() == filter_common::Action::Tx => {
            format!("would_tx:{}", reason.name())
        }
        Some(reason) => format!("would_drop:{}", reason.name()),
        None => format!("slot {slot}"),
    }
}

/// How one sequence went.
#[derive(Clone, Debug, Default)]
pub struct Played {
    /// Frames run through the kernel and compared.
    pub frames: u64,
    /// Frames not run: longer than [`MAX_FRAME`] or shorter than
    /// [`MIN_FRAME`], or after a run that could not be placed in time.
    pub skipped: u64,
    /// Frames the kernel's test run refused (EINVAL).
    pub refused: u64,
    /// Whether the sequence was abandoned after a run that could not be
    /// placed in time (the runner was preempted): its last frames were not
    /// compared.
    pub preempted: bool,
    /// Frames compared, by the counter slot they were counted under.
    pub by_slot: Vec<u64>,
    /// Frames compared that were counted under a tunnel too (TUNNELLED).
    pub tunnelled: u64,
}

/// A writable memory map of one of the filter's mmapable arrays.
fn mapping<T: Copy>(map: &Map) -> Mapping<T> {
    Mapping::writable(data(map)).expect("mapping a map")
}

/// Sets every element of `mapping` to `empty`.
fn clear_all<T: Copy>(mapping: &mut Mapping<T>, empty: T) {
    for index in 0..mapping.len() {
        mapping.set(index, empty);
    }
}

fn data(map: &Map) -> &MapData {
    match map {
        Map::Array(data) | Map::PerCpuArray(data) | Map::LruHashMap(data) => data,
        _ => panic!("not a map the model check clears"),
    }
}

/// The runner: one loaded filter, and what it needs to read and clear it.
pub struct Checker {
    /// What the frames start with, as the filter was loaded for.
    link: Link,
    filter: Filter,
    seed: u64,
    /// The settings the kernel has now.
    live: Settings,
    solicited: Mapping<SolicitedSlot>,
    latest: Mapping<u64>,
    syn_sources: Mapping<SynBucket>,
    syn_prefixes: Mapping<SynBucket>,
    syn_global: Mapping<SynBucket>,
    handshakes: Mapping<HandshakeSlot>,
    handshakes_latest: Mapping<u64>,
    halfopen_sources: Mapping<u64>,
    halfopen_prefixes: Mapping<u64>,
    connections: Mapping<ConnSlot>,
    conn_pending: Mapping<u64>,
    query_sources: Mapping<u64>,
    query_prefixes: Mapping<u64>,
    query_global: Mapping<u64>,
    /// Every slot's counters over all CPUs after the last run.
    counts: Vec<Counter>,
    /// Resolution of the coarse clock.
    tick_ns: u64,
    /// Read every counter after each frame (to find which frame of a
    /// sequence was counted where no answer expected it).
    exact: bool,
}

impl Checker {
    /// The runner of the filter loaded for an Ethernet device.
    pub fn new() -> Checker {
        Checker::on(Link::Ethernet)
    }

    /// The runner of the filter loaded for frames that start with `link`,
    /// as `attach` loads it for such a device ([`Filter::load_ip`]).
    pub fn on(link: Link) -> Checker {
        let filter = match link {
            Link::Ethernet => Filter::load(),
            Link::Ip => Filter::load_ip(),
        };
        let live = Settings::default();
        let mut checker = Checker {
            link,
            seed: filter.config().syn_hash_seed,
            solicited: mapping(filter.map(map::SOLICITED)),
            latest: mapping(filter.map(map::SOLICITED_LATEST)),
            syn_sources: mapping(filter.map(map::SYN_SOURCES)),
            syn_prefixes: mapping(filter.map(map::SYN_PREFIXES)),
            syn_global: mapping(filter.map(map::SYN_GLOBAL)),
            handshakes: mapping(filter.map(map::HANDSHAKES)),
            handshakes_latest: mapping(filter.map(map::HANDSHAKES_LATEST)),
            halfopen_sources: mapping(filter.map(map::HALFOPEN_SOURCES)),
            halfopen_prefixes: mapping(filter.map(map::HALFOPEN_PREFIXES)),
            connections: mapping(filter.map(map::CONNECTIONS)),
            conn_pending: mapping(filter.map(map::CONN_PENDING)),
            query_sources: mapping(filter.map(map::QUERY_SOURCES)),
            query_prefixes: mapping(filter.map(map::QUERY_PREFIXES)),
            query_global: mapping(filter.map(map::QUERY_GLOBAL)),
            counts: Vec::new(),
            tick_ns: coarse_tick_ns(),
            exact: false,
            filter,
            live,
        };
        checker.counts = checker.read_counts();
        // The loaded defaults must be the documented ones: otherwise every verdict
        // would differ for a reason that is no rule's.
        let defaults = Settings::default().assignments();
        let pairs: Vec<(&str, &str)> = defaults.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let before = checker.filter.config();
        checker.filter.set(&pairs);
        assert_eq!(
            before,
            checker.filter.config(),
            "the filter's default settings are not the documented ones"
        );
        checker
    }

    /// What the frames start with, as the filter was loaded for.
    pub fn link(&self) -> Link {
        self.link
    }

    /// The loaded filter's hash seed, which generated cases aim at.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Plays `sequence` from an empty filter; afterwards the filter is empty
    /// again. Its frames must start with what this filter was loaded for.
    pub fn play(&mut self, sequence: &Sequence) -> Result<Played, Box<Mismatch>> {
        assert_eq!(
            sequence.link, self.link,
            "a sequence for the {} link played on the filter loaded for the {} link",
            sequence.link, self.link
        );
        self.apply(&sequence.settings);
        let mut candidates = vec![Model::on(self.link, sequence.settings.clone(), self.seed)];
        for item in &sequence.lists {
            let now = now_ns();
            let lasting = item.lasting_ms.map(Duration::from_millis);
            self.filter
                .list(ctl_list(item.list))
                .add(&[cidr(&item.prefix)], lasting, ListSource::Operator, now)
                .expect("adding a list entry");
            let expires = item.lasting_ms.map_or(0, |ms| now + ms * 1_000_000);
            candidates[0].list_add(item.list, item.prefix, expires);
        }
        let result = self.steps(sequence, &mut candidates);
        if let Err(mismatch) = &result
            && mismatch.step == UNLOCATED
        {
            // A counter moved that no answer named: replay, reading every
            // counter after every frame, to find the frame.
            self.clear_everything();
            self.exact = true;
            let replayed = self.play(sequence);
            self.exact = false;
            replayed?;
        }
        match &result {
            Ok(_) => {
                let written: Vec<Written> = candidates.iter().map(Model::written).collect();
                self.clear(&written);
            }
            Err(_) => self.clear_everything(),
        }
        result
    }

    fn steps(
        &mut self,
        sequence: &Sequence,
        candidates: &mut Vec<Model>,
    ) -> Result<Played, Box<Mismatch>> {
        let mut played = Played::default();
        for (index, step) in sequence.steps.iter().enumerate() {
            let (frame, ingress) = match step {
                Step::Wait { ms } => {
                    std::thread::sleep(Duration::from_millis(*ms));
                    continue;
                }
                Step::Set(settings) => {
                    self.apply(settings);
                    candidates
                        .iter_mut()
                        .for_each(|model| model.set(Settings::clone(settings)));
                    continue;
                }
                Step::Ingress(frame) => (frame, true),
                Step::Egress(frame) => (frame, false),
            };
            // The test runs refuse frames under an Ethernet header's 14
            // bytes, on either link layer.
            if frame.len() > MAX_FRAME || frame.len() < MIN_FRAME {
                played.skipped += 1;
                continue;
            }
            let before = now_ns();
            let returned = if ingress {
                self.filter.try_ingress(frame, 1)
            } else {
                self.filter.try_egress(frame)
            };
            let after = now_ns();
            let Ok(returned) = returned else {
                // The test run refuses some frames the program would never
                // see (TC: an IP EtherType without a whole IP header).
                played.refused += 1;
                continue;
            };
            if after - before > self.tick_ns {
                // Preempted for more than a tick: the kernel's instant is
                // unknown, so is its answer. Stop here. The frame wrote
                // where the model writes at one end of the run or the
                // other (an instant in between writes nothing new): keep
                // both, so that clearing covers it.
                let mut ran = Vec::new();
                for model in candidates.iter() {
                    for now in [before, after] {
                        let mut model = model.clone();
                        if ingress {
                            model.ingress(frame, now);
                        } else {
                            model.egress(frame, now);
                        }
                        ran.push(model);
                    }
                }
                *candidates = ran;
                self.counts = self.read_counts();
                played.skipped += (sequence.frames() as u64).saturating_sub(played.frames);
                played.preempted = true;
                return Ok(played);
            }
            let instants: &[u64] = if before == after {
                &[before]
            } else {
                &[before, after]
            };
            let mut answers = Vec::new();
            for model in candidates.iter() {
                for &now in instants {
                    if ingress {
                        for (model, verdict) in model.ingress_outcomes(frame, now) {
                            answers.push((model, expect_ingress(verdict, frame.len())));
                        }
                    } else {
                        let mut model = model.clone();
                        let answer = expect_egress(model.egress(frame, now), frame.len());
                        answers.push((model, answer));
                    }
                }
            }
            // Reading every counter costs more than the test run: read the
            // ones the answers name, and all of them once the sequence is over.
            let kernel = Observed {
                returned,
                moved: if self.exact {
                    self.moved()
                } else {
                    let slots: BTreeSet<usize> = answers
                        .iter()
                        .flat_map(|(_, answer)| answer.moved.iter().map(|&(slot, _, _)| slot))
                        .collect();
                    self.moved_in(&slots)
                },
            };
            let mut next = Vec::new();
            let mut expected = Vec::new();
            for (model, answer) in answers {
                if answer == kernel {
                    if !next.contains(&model) {
                        next.push(model);
                    }
                } else if !expected.contains(&answer) {
                    expected.push(answer);
                }
            }
            if next.is_empty() {
                // Show every counter that moved, not only those the answers named.
                let mut kernel = kernel;
                for (slot, packets, bytes) in self.moved() {
                    match kernel.moved.iter_mut().find(|(s, _, _)| *s == slot) {
                        Some(moved) => *moved = (slot, moved.1 + packets, moved.2 + bytes),
                        None => kernel.moved.push((slot, packets, bytes)),
                    }
                }
                kernel.moved.sort_unstable();
                return Err(Box::new(Mismatch {
                    link: self.link,
                    step: index,
                    ingress,
                    frame: frame.clone(),
                    kernel,
                    model: expected,
                }));
            }
            next.truncate(MAX_CANDIDATES);
            *candidates = next;
            played.frames += 1;
            played.tunnelled +=
                u64::from(kernel.moved.iter().any(|&(slot, _, _)| slot >= STATS_SLOTS));
            for &(slot, _, _) in &kernel.moved {
                if played.by_slot.len() <= slot {
                    played.by_slot.resize(slot + 1, 0);
                }
                played.by_slot[slot] += 1;
            }
        }
        let unexpected = self.moved();
        if !unexpected.is_empty() {
            return Err(Box::new(Mismatch {
                link: self.link,
                step: UNLOCATED,
                ingress: true,
                frame: Vec::new(),
                kernel: Observed {
                    returned: 0,
                    moved: unexpected,
                },
                model: Vec::new(),
            }));
        }
        Ok(played)
    }

    /// Gives the kernel `settings` (only the keys that change).
    fn apply(&mut self, settings: &Settings) {
        let changes = self.live.changes_to(settings);
        if changes.is_empty() {
            return;
        }
        // Ports move between lists in one call (a port has one meaning).
        let pairs: Vec<(&str, &str)> = changes.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.filter.set(&pairs);
        self.live = settings.clone();
    }

    /// The counter slots among `slots` that moved since they were last read.
    fn moved_in(&mut self, slots: &BTreeSet<usize>) -> Vec<(usize, u64, u64)> {
        let mut moved = Vec::new();
        for &slot in slots {
            let now = self.read_count(slot);
            let then = std::mem::replace(&mut self.counts[slot], now);
            if now != then {
                moved.push((slot, now.packets - then.packets, now.bytes - then.bytes));
            }
        }
        moved
    }

    /// One counter slot ([`slot_name`]: STATS, then TUNNELLED) summed
    /// over CPUs.
    fn read_count(&self, slot: usize) -> Counter {
        let (name, index) = match slot.checked_sub(STATS_SLOTS) {
            None => (map::STATS, slot),
            Some(tunnelled) => (map::TUNNELLED, tunnelled),
        };
        let counters = RawMap::new(data(self.filter.map(name)), true).expect(name);
        let value = counters
            .get(&(index as u32).to_ne_bytes())
            .expect("reading a counter")
            .expect("a counter slot");
        sum(&values_of(&value, counters.stride()))
    }

    /// The counter slots that moved since the last call.
    fn moved(&mut self) -> Vec<(usize, u64, u64)> {
        let counts = self.read_counts();
        let moved = counts
            .iter()
            .zip(&self.counts)
            .enumerate()
            .filter(|(_, (now, then))| now != then)
            .map(|(slot, (now, then))| (slot, now.packets - then.packets, now.bytes - then.bytes))
            .collect();
        self.counts = counts;
        moved
    }

    /// Every counter slot (STATS, then TUNNELLED) summed over CPUs, in one
    /// batch call per map (one lookup per slot would cost more than the
    /// test run).
    fn read_counts(&self) -> Vec<Counter> {
        let mut counts = Vec::new();
        for (name, slots) in [(map::STATS, STATS_SLOTS), (map::TUNNELLED, TUNNELLED_SLOTS)] {
            let counters = RawMap::new(data(self.filter.map(name)), true).expect(name);
            let values = counters.values(slots).expect("reading counters");
            counts.extend(
                values
                    .chunks(counters.stride() * counters.copies)
                    .map(|per_cpu| sum(&values_of(per_cpu, counters.stride()))),
            );
        }
        counts
    }

    /// Clears what the sequence wrote: the filter is empty again.
    fn clear(&mut self, written: &[Written]) {
        let mut buckets: BTreeSet<u32> = BTreeSet::new();
        let mut sources: BTreeSet<u32> = BTreeSet::new();
        let mut prefixes: BTreeSet<u32> = BTreeSet::new();
        let mut fragments = Vec::new();
        let mut lists = false;
        let mut handshake_buckets: BTreeSet<u32> = BTreeSet::new();
        let mut service_ports = false;
        let mut halfopen_sources: BTreeSet<u32> = BTreeSet::new();
        let mut halfopen_prefixes: BTreeSet<u32> = BTreeSet::new();
        let mut conn_buckets: BTreeSet<u32> = BTreeSet::new();
        let mut conn_pending: BTreeSet<u32> = BTreeSet::new();
        let mut conn_owners = BTreeSet::new();
        let mut query_sources: BTreeSet<u32> = BTreeSet::new();
        let mut query_prefixes: BTreeSet<u32> = BTreeSet::new();
        for w in written {
            buckets.extend(&w.solicited_buckets);
            sources.extend(&w.syn_source_slots);
            prefixes.extend(&w.syn_prefix_slots);
            fragments.extend(w.fragments.iter().map(fragment_key));
            lists |= !w.list_entries.is_empty();
            handshake_buckets.extend(&w.handshake_buckets);
            service_ports |= !w.service_ports.is_empty();
            halfopen_sources.extend(&w.halfopen_source_slots);
            halfopen_prefixes.extend(&w.halfopen_prefix_slots);
            conn_buckets.extend(&w.conn_buckets);
            conn_pending.extend(&w.conn_pending_slots);
            conn_owners.extend(&w.conn_owners);
            query_sources.extend(&w.query_source_slots);
            query_prefixes.extend(&w.query_prefix_slots);
        }
        let ways = HANDSHAKE_WAYS as usize;
        for bucket in handshake_buckets {
            let bucket = bucket as usize;
            self.handshakes_latest.set(bucket, 0);
            for way in 0..ways {
                self.handshakes
                    .set(bucket * ways + way, HandshakeSlot::default());
            }
        }
        if service_ports {
            self.clear_service_ports();
        }
        for slot in halfopen_sources {
            self.halfopen_sources.set(slot as usize, 0);
        }
        for slot in halfopen_prefixes {
            self.halfopen_prefixes.set(slot as usize, 0);
        }
        let ways = CONN_WAYS as usize;
        for bucket in conn_buckets {
            for way in 0..ways {
                self.connections
                    .set(bucket as usize * ways + way, ConnSlot::default());
            }
        }
        for slot in conn_pending {
            self.conn_pending.set(slot as usize, 0);
        }
        if !conn_owners.is_empty() {
            let mut counts = self.conn_counts();
            for owner in conn_owners {
                let _ = counts.remove(&owner);
            }
        }
        let ways = filter_common::SOLICITED_WAYS as usize;
        for bucket in buckets {
            let bucket = bucket as usize;
            self.latest.set(bucket, 0);
            for way in 0..ways {
                self.solicited
                    .set(bucket * ways + way, SolicitedSlot::default());
            }
        }
        for slot in sources {
            self.syn_sources.set(slot as usize, SynBucket::default());
        }
        for slot in prefixes {
            self.syn_prefixes.set(slot as usize, SynBucket::default());
        }
        self.syn_global.set(0, SynBucket::default());
        for slot in query_sources {
            self.query_sources.set(slot as usize, 0);
        }
        for slot in query_prefixes {
            self.query_prefixes.set(slot as usize, 0);
        }
        clear_all(&mut self.query_global, 0);
        if !fragments.is_empty() {
            let mut table = self.fragments();
            for key in fragments {
                let _ = table.remove(&key);
            }
        }
        if lists {
            self.clear_lists();
        }
    }

    /// Clears every table (after a mismatch, when the kernel may have
    /// written what the model did not).
    pub fn clear_everything(&mut self) {
        clear_all(&mut self.latest, 0);
        clear_all(&mut self.solicited, SolicitedSlot::default());
        clear_all(&mut self.syn_sources, SynBucket::default());
        clear_all(&mut self.syn_prefixes, SynBucket::default());
        clear_all(&mut self.syn_global, SynBucket::default());
        clear_all(&mut self.handshakes, HandshakeSlot::default());
        clear_all(&mut self.handshakes_latest, 0);
        clear_all(&mut self.halfopen_sources, 0);
        clear_all(&mut self.halfopen_prefixes, 0);
        clear_all(&mut self.connections, ConnSlot::default());
        clear_all(&mut self.conn_pending, 0);
        clear_all(&mut self.query_sources, 0);
        clear_all(&mut self.query_prefixes, 0);
        clear_all(&mut self.query_global, 0);
        self.clear_service_ports();
        let mut counts = self.conn_counts();
        let owners: Vec<ConnOwner> = counts.keys().filter_map(Result::ok).collect();
        for owner in owners {
            let _ = counts.remove(&owner);
        }
        let mut table = self.fragments();
        let keys: Vec<FragmentKey> = table.keys().filter_map(Result::ok).collect();
        for key in keys {
            let _ = table.remove(&key);
        }
        self.clear_lists();
        self.counts = self.read_counts();
    }

    fn fragments(&mut self) -> HashMap<&mut MapData, FragmentKey, FragmentVerdict> {
        HashMap::try_from(self.filter.map_mut(map::FRAGMENTS)).expect("FRAGMENTS is a hash map")
    }

    fn conn_counts(&mut self) -> HashMap<&mut MapData, ConnOwner, ConnCount> {
        HashMap::try_from(self.filter.map_mut(map::CONN_COUNTS)).expect("CONN_COUNTS is a hash map")
    }

    /// SERVICE_PORTS is one 64 KiB value, not mmapable: written whole.
    fn clear_service_ports(&mut self) {
        let mut ports: Array<&mut MapData, ServicePorts> =
            Array::try_from(self.filter.map_mut(map::SERVICE_PORTS))
                .expect("SERVICE_PORTS is an array");
        let empty = Box::new(ServicePorts([0; ServicePorts::PORTS]));
        ports.set(0, &*empty, 0).expect("clearing SERVICE_PORTS");
    }

    fn clear_lists(&mut self) {
        for list in [CtlList::Allow, CtlList::Deny] {
            let mut maps = self.filter.list(list);
            // Both copies of the double-buffered tries.
            for tries in &mut maps.copies {
                let v4: Vec<_> = tries.v4.keys().filter_map(Result::ok).collect();
                for key in v4 {
                    tries.v4.remove(&key).expect("removing a list entry");
                }
                let v6: Vec<_> = tries.v6.keys().filter_map(Result::ok).collect();
                for key in v6 {
                    tries.v6.remove(&key).expect("removing a list entry");
                }
            }
            for slot in 0..filter_common::lists::IN_USE_SLOTS {
                maps.in_use.set(slot, &0, 0).expect("clearing LISTS_IN_USE");
            }
        }
    }
}

impl Default for Checker {
    fn default() -> Self {
        Checker::new()
    }
}

/// Per-CPU counters summed.
fn sum(per_cpu: &[Counter]) -> Counter {
    Counter {
        packets: per_cpu.iter().map(|c| c.packets).sum(),
        bytes: per_cpu.iter().map(|c| c.bytes).sum(),
    }
}

fn coarse_tick_ns() -> u64 {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres only writes the timespec we pass.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) };
    res.tv_sec as u64 * 1_000_000_000 + res.tv_nsec as u64
}

fn expect_ingress(verdict: Verdict, len: usize) -> Observed {
    let slot = verdict.reason.index() as usize
        + if verdict.would {
            Reason::COUNT as usize
        } else {
            0
        };
    let mut moved = vec![(slot, 1, len as u64)];
    if let Some(encap) = verdict.tunnel {
        let tunnelled = STATS_SLOTS + encap.slot(verdict.reason.index()) as usize;
        moved.push((tunnelled, 1, len as u64));
    }
    Observed {
        returned: match verdict.action {
            Action::Pass => XDP_PASS,
            Action::Drop => XDP_DROP,
            Action::Tx => XDP_TX,
        },
        moved,
    }
}

fn expect_egress(reason: Reason, len: usize) -> Observed {
    Observed {
        returned: TC_ACT_OK,
        moved: vec![(reason.index() as usize, 1, len as u64)],
    }
}

fn ctl_list(list: List) -> CtlList {
    match list {
        List::Allow => CtlList::Allow,
        List::Deny => CtlList::Deny,
    }
}

fn cidr(prefix: &Prefix) -> Cidr {
    Cidr::parse(&prefix.to_string()).expect("a prefix without host bits")
}

/// The FRAGMENTS key of a datagram, as the programs store it: addresses as
/// wire bytes in native-endian words, the id and protocol as numbers.
fn fragment_key(key: &model::fragments::Key) -> FragmentKey {
    let words = |addr: &[u8; 16]| {
        std::array::from_fn(|i| u32::from_ne_bytes(addr[4 * i..4 * i + 4].try_into().unwrap()))
    };
    FragmentKey {
        src: words(&key.src),
        dst: words(&key.dst),
        id: key.id.id,
        protocol: u32::from(key.id.protocol),
    }
}

/// A mismatch the fuzzer found and shrank.
#[derive(Debug)]
pub struct Found {
    pub sequence: Sequence,
    /// The mismatch (frame, both answers), or the panic the case caused.
    pub report: String,
    /// Whether the shrunk sequence fails again from a fresh filter.
    pub reproduced: bool,
}

impl Found {
    /// The regression file's text: the mismatch as comments, then the sequence.
    pub fn regression(&self) -> String {
        let mut text = String::from(
            "# A mismatch between the kernel and the model, found by the model check.\n",
        );
        for line in self.report.lines() {
            writeln!(text, "# {line}").unwrap();
        }
        text + &self.sequence.to_text()
    }

    /// Saves the regression case under `tests/regressions/`, named by its
    /// content; returns its path.
    pub fn save(&self) -> std::io::Result<std::path::PathBuf> {
        let text = self.regression();
        let mut hasher = std::hash::DefaultHasher::new();
        text.hash(&mut hasher);
        let dir = regressions_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("mismatch-{:016x}.txt", hasher.finish()));
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// Where regression cases live (`tests/regressions/`); the test suite
/// replays every `*.txt` there.
pub fn regressions_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions")
}

/// How much to run.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub frames: Option<u64>,
    pub time: Option<Duration>,
    /// Generate pauses past the TCP defence's 1 s timeouts now and then
    /// (real time: for long runs).
    pub idle_gaps: bool,
}

/// The totals of a run.
#[derive(Debug, Default)]
pub struct Totals {
    pub cases: u64,
    pub frames: u64,
    pub skipped: u64,
    /// Sequences abandoned after a preemption ([`Played::preempted`]).
    pub preempted: u64,
    pub refused: u64,
    /// Frames compared, by counter slot: what the run exercised.
    pub by_slot: Vec<u64>,
    /// The same, by the link layer of the programs that played them.
    pub by_link: BTreeMap<Link, Share>,
    pub elapsed: Duration,
    pub found: Vec<Found>,
}

/// One link layer's share of a run's totals.
#[derive(Clone, Debug, Default)]
pub struct Share {
    pub cases: u64,
    pub frames: u64,
    pub skipped: u64,
    /// Frames compared that came through a tunnel the filter unwraps
    /// (counted in TUNNELLED too).
    pub tunnelled: u64,
    /// Frames compared, by counter slot.
    pub by_slot: Vec<u64>,
}

impl Totals {
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// How many frames each counter saw, one `name count` pair per slot used.
    pub fn coverage(&self) -> String {
        coverage(&self.by_slot)
    }

    /// Each link layer's packets, sequences and tunnelled packets, e.g.
    /// `ethernet 1200 packets in 30 sequences (41 tunnelled), ip ...`.
    pub fn links(&self) -> String {
        self.by_link
            .iter()
            .map(|(link, share)| {
                format!(
                    "{link} {} packets in {} sequences ({} tunnelled, {} skipped)",
                    share.frames, share.cases, share.tunnelled, share.skipped
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn add(&mut self, link: Link, played: &Played) {
        self.cases += 1;
        self.frames += played.frames;
        self.skipped += played.skipped;
        self.preempted += u64::from(played.preempted);
        self.refused += played.refused;
        add_slots(&mut self.by_slot, &played.by_slot);
        let share = self.by_link.entry(link).or_default();
        share.cases += 1;
        share.frames += played.frames;
        share.skipped += played.skipped;
        share.tunnelled += played.tunnelled;
        add_slots(&mut share.by_slot, &played.by_slot);
    }
}

impl Share {
    /// How many frames each counter saw, one `name count` pair per slot used.
    pub fn coverage(&self) -> String {
        coverage(&self.by_slot)
    }
}

fn add_slots(total: &mut Vec<u64>, more: &[u64]) {
    if total.len() < more.len() {
        total.resize(more.len(), 0);
    }
    for (total, n) in total.iter_mut().zip(more) {
        *total += n;
    }
}

fn coverage(by_slot: &[u64]) -> String {
    by_slot
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(slot, n)| format!("{} {n}", slot_name(slot)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a proptest run's closure changes.
struct Round<'a> {
    checkers: &'a mut [Checker],
    totals: &'a mut Totals,
    shrinking: bool,
    /// The checker of the next new case: they take turns.
    turn: usize,
    /// The checker of the case being played (while shrinking, the one it
    /// failed on).
    playing: usize,
    /// The mismatch of the last failing (so, after shrinking, the smallest) case.
    last: Option<Box<Mismatch>>,
}

/// Generated cases per proptest run: each run has its own seed, derived
/// from the run's, so a whole fuzz run is reproducible from one number.
const CASES_PER_ROUND: u32 = 256;

/// Runs generated cases until the budget is spent, the checkers (one per
/// link layer) taking turns case by case: each case is played on one of
/// them, its frames made for that link layer ([`model::generate::Case::sequence_on`]).
/// A mismatch is shrunk (proptest replays smaller cases on the same
/// checker, each from an empty filter), replayed from a fresh filter, and
/// handed to `found` before the run goes on. `progress` sees the totals
/// after every round of cases.
pub fn fuzz(
    checkers: &mut [Checker],
    budget: Budget,
    seed: u64,
    mut found: impl FnMut(&Found),
    mut progress: impl FnMut(&Totals, Duration),
) -> Totals {
    assert!(!checkers.is_empty(), "a checker to play the cases on");
    let start = Instant::now();
    let mut totals = Totals::default();
    let spent = |totals: &Totals| {
        budget.frames.is_some_and(|n| totals.frames >= n)
            || budget.time.is_some_and(|t| start.elapsed() >= t)
    };
    let mut round = 0u64;
    let mut turn = 0;
    while !spent(&totals) {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&round.to_le_bytes());
        round += 1;
        let config = Config {
            cases: CASES_PER_ROUND,
            failure_persistence: None,
            max_shrink_iters: 4096,
            max_shrink_time: 120_000,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
        // proptest's runner takes a shared closure: the mutable parts of
        // the round live in a cell.
        let round_state = RefCell::new(Round {
            checkers: &mut *checkers,
            totals: &mut totals,
            shrinking: false,
            turn,
            playing: turn,
            last: None,
        });
        // proptest catches panics and shrinks them like failures: keep the
        // default hook from printing every one of them.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = runner.run(&model::generate::case(budget.idle_gaps), |case| {
            let mut guard = round_state.borrow_mut();
            let round = &mut *guard;
            if !round.shrinking {
                if spent(round.totals) {
                    return Ok(());
                }
                round.playing = round.turn;
                round.turn = (round.turn + 1) % round.checkers.len();
            }
            let checker = &mut round.checkers[round.playing];
            let sequence = case.sequence_on(checker.link(), checker.seed());
            match checker.play(&sequence) {
                Ok(played) => {
                    if !round.shrinking {
                        round.totals.add(checker.link(), &played);
                    }
                    Ok(())
                }
                Err(mismatch) => {
                    round.shrinking = true;
                    let message = mismatch.to_string();
                    round.last = Some(mismatch);
                    Err(TestCaseError::fail(message))
                }
            }
        });
        let Round {
            last,
            playing,
            turn: next,
            ..
        } = round_state.into_inner();
        turn = next;
        std::panic::set_hook(hook);
        if let Err(TestError::Fail(reason, case)) = result {
            let checker = &mut checkers[playing];
            let sequence = case.sequence_on(checker.link(), checker.seed());
            checker.clear_everything();
            let (report, reproduced) = match (checker.play(&sequence), last) {
                (Err(mismatch), _) => (mismatch.to_string(), true),
                // It failed only after what earlier runs left behind.
                (Ok(_), Some(last)) => (last.to_string(), false),
                // A panic (the model's or the runner's), which proptest caught.
                (Ok(_), None) => (
                    format!("panicked on the {} link: {reason}", checker.link()),
                    false,
                ),
            };
            let entry = Found {
                sequence,
                report,
                reproduced,
            };
            found(&entry);
            totals.found.push(entry);
        }
        progress(&totals, start.elapsed());
    }
    totals.elapsed = start.elapsed();
    totals
}
