//! One loaded instance of the filter's programs and maps, driven through
//! BPF_PROG_TEST_RUN: the harness of the verdict tests.
//!
//! Every instance is loaded without pins, so its maps start empty (plus the
//! default settings an attach writes) and tests can run in parallel. Loading
//! needs root (CAP_BPF); without it the tests fail, they never skip.
//!
//! A test gives its instance back when it ends, and the next test of the
//! same executable gets it with every map reset to a fresh load's state
//! ([`reset`]): each load has the kernel verify the programs again, which
//! under the VM legs' emulation takes seconds, a hundred times a leg.
//!
//! It lives here, not in the harness crate, because it embeds filter-ctl's
//! eBPF object; the benchmark's part 1 (tests/bench/src/testrun.rs) uses it too.

use std::sync::Mutex;

use aya::{
    Ebpf,
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use filter_common::{Counter, Encap, Reason, map, program};
use filter_ctl::{rawmap::RawMap, settings::SettingsMaps};
use filter_ctl_api::{
    report::{LinkLayer, Tunnelled},
    settings::Assignment,
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const TC_ACT_OK: u32 = 0;

/// Counters of every slot: `Reason::index()`, then the would-drop slots at
/// `Reason::COUNT + index()`.
pub type Counts = Vec<Counter>;

pub struct Filter {
    /// Taken only when the test gives the instance back.
    loaded: Option<Ebpf>,
    /// What the frames start with, as the object was loaded for.
    layer: LinkLayer,
}

/// Instances that finished tests gave back, for the next [`Filter::load`]
/// (or [`Filter::load_ip`]: each reuses only its own link layer's).
static SPARE: Mutex<Vec<(LinkLayer, Ebpf)>> = Mutex::new(Vec::new());

impl Filter {
    /// An instance as a fresh load has it, with the default settings
    /// written as `attach` does: a spare one reset, or a new load. Its
    /// frames are Ethernet frames.
    pub fn load() -> Self {
        Self::load_for(LinkLayer::Ethernet)
    }

    /// The same, loaded as `attach` loads it for a device without an
    /// Ethernet header (ppp, WireGuard, tun): its frames start at the IP
    /// header. BPF_PROG_TEST_RUN refuses frames under 14 bytes.
    pub fn load_ip() -> Self {
        Self::load_for(LinkLayer::Ip)
    }

    fn load_for(layer: LinkLayer) -> Self {
        assert!(
            harness::process::is_root(),
            "the verdict tests load BPF programs and need root: run `./xtask/run test` as root"
        );
        let spare = {
            let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
            let found = spare.iter().rposition(|(kind, _)| *kind == layer);
            found.map(|at| spare.swap_remove(at).1)
        };
        let mut ebpf = match spare {
            Some(mut ebpf) => {
                reset(&mut ebpf);
                ebpf
            }
            None => load_programs(layer),
        };
        SettingsMaps::of(&mut ebpf)
            .and_then(|mut maps| maps.write_defaults())
            .expect("writing the default settings");
        Self {
            loaded: Some(ebpf),
            layer,
        }
    }

    /// A new load, never a reused instance: what [`Filter::reused`] is
    /// compared with.
    pub fn load_fresh() -> Self {
        let mut ebpf = load_programs(LinkLayer::Ethernet);
        SettingsMaps::of(&mut ebpf)
            .and_then(|mut maps| maps.write_defaults())
            .expect("writing the default settings");
        Self {
            loaded: Some(ebpf),
            layer: LinkLayer::Ethernet,
        }
    }

    /// This instance as the next test gets it: reset, the defaults written.
    pub fn reused(mut self) -> Self {
        let mut ebpf = self.loaded.take().expect("loaded until dropped");
        reset(&mut ebpf);
        SettingsMaps::of(&mut ebpf)
            .and_then(|mut maps| maps.write_defaults())
            .expect("writing the default settings");
        Self {
            loaded: Some(ebpf),
            layer: self.layer,
        }
    }

    /// Writes something other than a fresh load's contents into every
    /// writable map: every array element's bytes set, an entry added to
    /// every hash map and trie (a /8 in the tries).
    pub fn scribble(&mut self) {
        for (name, map) in self.ebpf_mut().maps_mut() {
            if name.starts_with('.') {
                continue;
            }
            let (data, per_cpu, kind) = match map {
                Map::Array(data) => (data, false, Kind::Array),
                Map::PerCpuArray(data) => (data, true, Kind::Array),
                Map::HashMap(data) | Map::LruHashMap(data) => (data, false, Kind::Hash),
                Map::LpmTrie(data) => (data, false, Kind::Trie),
                _ => continue,
            };
            let raw = RawMap::new(data, per_cpu).expect("a map's sizes");
            let value = vec![0xa5; raw.stride() * raw.copies];
            let keys: Vec<Vec<u8>> = match kind {
                Kind::Array => {
                    let info = data.info().expect("a map's information");
                    (0..info.max_entries())
                        .map(|i| i.to_ne_bytes().to_vec())
                        .collect()
                }
                Kind::Trie => {
                    let mut key = vec![0xa5; raw.key_size];
                    key[..4].copy_from_slice(&8u32.to_ne_bytes());
                    vec![key]
                }
                Kind::Hash => vec![vec![0xa5; raw.key_size]],
            };
            for key in keys {
                raw.set(&key, &value)
                    .unwrap_or_else(|err| panic!("scribbling over {name}: {err:#}"));
            }
        }
    }

    /// Every map's contents but CONFIG's (whose hash seed is new at every
    /// load: see [`Filter::config`]), by map: array elements in order, hash
    /// and trie entries as key then value, for a ring buffer the records
    /// waiting in it (read, so taken).
    pub fn contents(&mut self) -> std::collections::BTreeMap<String, Vec<Vec<u8>>> {
        let mut contents = std::collections::BTreeMap::new();
        for (name, map) in self.ebpf_mut().maps_mut() {
            if name.starts_with('.') || name == map::CONFIG {
                continue;
            }
            let mut elements = Vec::new();
            if matches!(map, Map::RingBuf(_)) {
                let mut ring = aya::maps::RingBuf::try_from(map).expect("a ring buffer");
                while let Some(record) = ring.next() {
                    elements.push(record.to_vec());
                }
            } else {
                let per_cpu = matches!(map, Map::PerCpuArray(_));
                match map {
                    Map::Array(data) | Map::PerCpuArray(data) => {
                        let raw = RawMap::new(data, per_cpu).expect("a map's sizes");
                        let info = data.info().expect("a map's information");
                        for index in 0..info.max_entries() {
                            elements.extend(raw.get(&index.to_ne_bytes()).expect("reading"));
                        }
                    }
                    Map::HashMap(data) | Map::LruHashMap(data) | Map::LpmTrie(data) => {
                        let raw = RawMap::new(data, false).expect("a map's sizes");
                        for key in raw.keys().expect("listing keys") {
                            let value = raw.get(&key).expect("reading").unwrap_or_default();
                            elements.push(key);
                            elements.push(value);
                        }
                    }
                    _ => continue,
                }
            }
            contents.insert(name.to_owned(), elements);
        }
        contents
    }

    fn ebpf(&self) -> &Ebpf {
        self.loaded.as_ref().expect("loaded until dropped")
    }

    fn ebpf_mut(&mut self) -> &mut Ebpf {
        self.loaded.as_mut().expect("loaded until dropped")
    }

    /// Changes settings as `filter-ctl set` does; panics if one is rejected.
    pub fn set(&mut self, assignments: &[(&str, &str)]) {
        self.try_set(assignments).expect("valid settings");
    }

    /// Changes settings as `filter-ctl set` does; an error if one is rejected
    /// (e.g. a key this version of the filter does not have).
    pub fn try_set(&mut self, assignments: &[(&str, &str)]) -> anyhow::Result<()> {
        let assignments = assignments
            .iter()
            .map(|(key, value)| Assignment::text(key, value))
            .collect::<Result<Vec<_>, _>>()?;
        SettingsMaps::of(self.ebpf_mut())?.apply(&assignments)?;
        Ok(())
    }

    /// Runs the XDP program `repeat` times on `frame`: the verdict and the
    /// kernel-reported time per run.
    pub fn ingress_timed(
        &self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), ProgramError> {
        let result = self.xdp().test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })?;
        Ok((result.return_value, result.duration))
    }

    /// The loaded XDP program's kernel information (verified instructions, sizes).
    pub fn ingress_info(&self) -> Result<aya::programs::ProgramInfo, ProgramError> {
        self.xdp().info()
    }

    /// Each program's verified instructions (the kernel's `verified_insns`),
    /// by program name: wan_ingress, wan_egress, wan_slip.
    pub fn verified_insns(&self) -> Vec<(&'static str, u32)> {
        [program::INGRESS, program::EGRESS, program::SLIP]
            .into_iter()
            .map(|name| {
                let program = self
                    .ebpf()
                    .program(name)
                    .unwrap_or_else(|| panic!("the object has no program {name}"));
                let count = program
                    .info()
                    .unwrap_or_else(|err| panic!("the kernel's information on {name}: {err}"))
                    .verified_instruction_count()
                    .unwrap_or_else(|| panic!("this kernel reports no verified_insns for {name}"));
                (name, count)
            })
            .collect()
    }

    fn xdp(&self) -> &Xdp {
        self.ebpf()
            .program(program::INGRESS)
            .unwrap()
            .try_into()
            .unwrap()
    }

    fn tc(&self) -> &SchedClassifier {
        self.ebpf()
            .program(program::EGRESS)
            .unwrap()
            .try_into()
            .unwrap()
    }

    pub fn try_ingress(&self, frame: &[u8], repeat: u32) -> Result<u32, ProgramError> {
        let result = self.xdp().test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })?;
        Ok(result.return_value)
    }

    /// The XDP verdict on `frame` and the frame as the program left it
    /// (for XDP_TX, the reply it sends back).
    pub fn ingress_output(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0; frame.len() + 256];
        let result = self
            .xdp()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .unwrap_or_else(|err| panic!("XDP test run on {} bytes: {err}", frame.len()));
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// The XDP verdict on `frame`.
    pub fn ingress(&self, frame: &[u8]) -> u32 {
        self.try_ingress(frame, 1)
            .unwrap_or_else(|err| panic!("XDP test run on {} bytes: {err}", frame.len()))
    }

    pub fn try_egress(&self, frame: &[u8]) -> Result<u32, ProgramError> {
        let result = self.tc().test_run(TestRunOptions {
            data_in: Some(frame),
            ..Default::default()
        })?;
        Ok(result.return_value)
    }

    /// The TC egress verdict on `frame` (the kernel builds an skb from it).
    pub fn egress(&self, frame: &[u8]) -> u32 {
        self.try_egress(frame)
            .unwrap_or_else(|err| panic!("TC test run on {} bytes: {err:?}", frame.len()))
    }

    /// Every slot's counters, summed over CPUs.
    pub fn counts(&self) -> Counts {
        let stats = PerCpuArray::<_, Counter>::try_from(
            self.ebpf().map(map::STATS).expect("the STATS map"),
        )
        .expect("STATS is a per-CPU array of Counter");
        (0..2 * Reason::COUNT)
            .map(|slot| {
                stats.get(&slot, 0).expect("reading STATS").iter().fold(
                    Counter::default(),
                    |sum, c| Counter {
                        packets: sum.packets + c.packets,
                        bytes: sum.bytes + c.bytes,
                    },
                )
            })
            .collect()
    }

    /// The tunnelled packets' counters: filter-ctl's rows (those that
    /// counted any).
    pub fn tunnelled(&self) -> Tunnelled {
        let counters = PerCpuArray::<_, Counter>::try_from(
            self.ebpf().map(map::TUNNELLED).expect("the TUNNELLED map"),
        )
        .expect("TUNNELLED is a per-CPU array of Counter");
        filter_ctl::stats::sum_tunnelled(&counters).expect("reading TUNNELLED")
    }

    /// Asserts that since `before` (of [`Filter::tunnelled`]) exactly the
    /// tunnelled rows in `expected` moved, each by (packets, bytes).
    #[track_caller]
    pub fn assert_tunnelled(
        &self,
        before: &Tunnelled,
        expected: &[(Encap, Reason, u64, u64)],
        context: &str,
    ) {
        let after = self.tunnelled();
        let moved: Vec<(Encap, Reason, u64, u64)> = after
            .0
            .iter()
            .filter_map(|row| {
                let earlier = before.counted(row.encap, row.reason);
                let packets = row.packets - earlier.map_or(0, |b| b.packets);
                let bytes = row.bytes - earlier.map_or(0, |b| b.bytes);
                (packets > 0).then_some((row.encap, row.reason, packets, bytes))
            })
            .collect();
        assert_eq!(
            moved, expected,
            "{context}: tunnelled counters moved (encapsulation, reason, packets, bytes)"
        );
    }

    /// Asserts that since `before` exactly the reasons in `expected` moved,
    /// each by (packets, bytes), and nothing else, would-drop slots included.
    #[track_caller]
    pub fn assert_moved(&self, before: &Counts, expected: &[(Reason, u64, u64)], context: &str) {
        self.assert_slots(before, expected, &[], context);
    }

    /// Asserts that since `before` only the would-drop slots of `expected`
    /// moved (monitor mode), each by (packets, bytes).
    #[track_caller]
    pub fn assert_would_drop(
        &self,
        before: &Counts,
        expected: &[(Reason, u64, u64)],
        context: &str,
    ) {
        self.assert_slots(before, &[], expected, context);
    }

    #[track_caller]
    fn assert_slots(
        &self,
        before: &Counts,
        counted: &[(Reason, u64, u64)],
        would_drop: &[(Reason, u64, u64)],
        context: &str,
    ) {
        let after = self.counts();
        let wanted = |list: &[(Reason, u64, u64)], reason: Reason| {
            list.iter()
                .filter(|(r, _, _)| *r == reason)
                .fold((0, 0), |(p, b), (_, dp, db)| (p + dp, b + db))
        };
        for reason in Reason::ALL {
            for (slot, list, kind) in [
                (reason.index(), counted, ""),
                (Reason::COUNT + reason.index(), would_drop, "would-drop "),
            ] {
                let i = slot as usize;
                let moved = (
                    after[i].packets - before[i].packets,
                    after[i].bytes - before[i].bytes,
                );
                let expected = wanted(list, reason);
                assert_eq!(
                    moved,
                    expected,
                    "{context}: {kind}counter {} moved by (packets, bytes) {moved:?}, expected {expected:?}",
                    reason.name()
                );
            }
        }
    }
}

/// Gives the instance back for the next test, unless this one failed (a
/// panic may have left it half-changed: the next test loads anew).
impl Drop for Filter {
    fn drop(&mut self) {
        if let Some(ebpf) = self.loaded.take()
            && !std::thread::panicking()
        {
            SPARE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.layer, ebpf));
        }
    }
}

/// The object loaded for frames that start with `layer`, as `attach` loads
/// it: the XDP, TC and slip programs verified by the kernel.
fn load_programs(layer: LinkLayer) -> Ebpf {
    let mut ebpf = filter_ctl::attach::loader(layer)
        .load(filter_ctl::EBPF_OBJECT)
        .expect("loading the eBPF object");
    let xdp: &mut Xdp = ebpf
        .program_mut(program::INGRESS)
        .expect("the object has the ingress program")
        .try_into()
        .expect("the ingress program is XDP");
    xdp.load().expect("the kernel accepts the XDP program");
    let tc: &mut SchedClassifier = ebpf
        .program_mut(program::EGRESS)
        .expect("the object has the egress program")
        .try_into()
        .expect("the egress program is a TC classifier");
    tc.load().expect("the kernel accepts the TC program");
    filter_ctl::attach::install_slip(&mut ebpf).expect("the kernel accepts the slip program");
    ebpf
}

/// Puts every map of a loaded object back as a fresh load has it: arrays
/// zeroed, hash maps and tries emptied, ring buffers read to their end.
/// The slip's program array keeps its program; the read-only data the
/// object was loaded with (`.rodata`) stays.
fn reset(ebpf: &mut Ebpf) {
    for (name, map) in ebpf.maps_mut() {
        if name.starts_with('.') || matches!(map, Map::ProgramArray(_)) {
            continue;
        }
        if matches!(map, Map::RingBuf(_)) {
            let mut ring = aya::maps::RingBuf::try_from(map).expect("a ring buffer");
            while ring.next().is_some() {}
            continue;
        }
        match map {
            Map::Array(data) => zero_array(name, data, false),
            Map::PerCpuArray(data) => zero_array(name, data, true),
            Map::HashMap(data) | Map::LruHashMap(data) | Map::LpmTrie(data) => {
                let raw = RawMap::new(data, false).expect("a map's sizes");
                for key in raw.keys().expect("listing a map's keys") {
                    raw.delete(&key).expect("deleting a map's key");
                }
            }
            other => panic!("Filter::load cannot reset map {name}: {other:?}"),
        }
    }
}

/// include/uapi/linux/bpf.h: the map's values can be mapped into memory.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Every element of an array map zeroed: through a memory map for the big
/// (mmapable) tables, an update per element for the small ones.
fn zero_array(name: &str, data: &MapData, per_cpu: bool) {
    let info = data.info().expect("a map's information");
    if info.map_flags() & BPF_F_MMAPABLE != 0 {
        filter_ctl::rawmap::zero(data).unwrap_or_else(|err| panic!("zeroing {name}: {err:#}"));
        return;
    }
    let raw = RawMap::new(data, per_cpu).expect("a map's sizes");
    let zeros = vec![0u8; raw.stride() * raw.copies];
    for index in 0..info.max_entries() {
        raw.set(&index.to_ne_bytes(), &zeros)
            .unwrap_or_else(|err| panic!("zeroing {name}[{index}]: {err:#}"));
    }
}

/// The kinds of map [`Filter::scribble`] writes into.
enum Kind {
    Array,
    Hash,
    Trie,
}

/// The programs' clock (the coarse monotonic clock they read), read before
/// and after some test runs: the instants the kernel used lie in between.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Span {
    /// Runs `f`, bracketed by two readings of the programs' clock.
    pub fn around<T>(f: impl FnOnce() -> T) -> (T, Span) {
        let from_ns = now_ns();
        let out = f();
        let to_ns = now_ns();
        (out, Span { from_ns, to_ns })
    }

    /// The most tokens a bucket refilled at `rate` per second can gain
    /// within the span: what the runs can get past their burst (0 when the
    /// span is shorter than one interval, as on a machine that did not
    /// preempt the test).
    pub fn refill(&self, rate: u64) -> u64 {
        (self.to_ns - self.from_ns) * rate / 1_000_000_000
    }
}

/// Counters of a fresh instance.
pub fn zero() -> Counts {
    vec![Counter::default(); 2 * Reason::COUNT as usize]
}

// The SYN defence's and the lists' side of the harness (issue 4).
use filter_ctl::{
    clock::now_ns,
    lists::{Cidr, List, ListMaps},
};
use filter_ctl_api::report::ListedEntry;

impl Filter {
    /// Asserts that since `before` exactly these counters moved: `counted`
    /// in their own slots and `would_drop` in monitor mode's.
    #[track_caller]
    pub fn assert_moved_and_would_drop(
        &self,
        before: &Counts,
        counted: &[(Reason, u64, u64)],
        would_drop: &[(Reason, u64, u64)],
        context: &str,
    ) {
        self.assert_slots(before, counted, would_drop, context);
    }

    /// The kernel's average run time of the XDP program on `frame` over
    /// `repeat` runs (BPF_PROG_TEST_RUN's own measurement).
    pub fn ingress_cost(&self, frame: &[u8], repeat: u32) -> std::time::Duration {
        self.xdp()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..Default::default()
            })
            .expect("XDP test run")
            .duration
    }

    /// Takes every drop event waiting in the DROP_EVENTS ring (sampled drops).
    pub fn drop_events(&mut self) -> Vec<filter_common::DropEvent> {
        let mut ring = aya::maps::RingBuf::try_from(
            self.ebpf_mut()
                .map_mut(map::DROP_EVENTS)
                .expect("DROP_EVENTS"),
        )
        .expect("DROP_EVENTS is a ring buffer");
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            assert_eq!(item.len(), size_of::<filter_common::DropEvent>());
            // SAFETY: a DropEvent the program wrote (length checked above).
            events.push(unsafe {
                std::ptr::read_unaligned(item.as_ptr().cast::<filter_common::DropEvent>())
            });
        }
        events
    }

    /// Drop events sampled and lost (ring full), summed over CPUs.
    pub fn drop_event_counts(&self) -> (u64, u64) {
        let counts = PerCpuArray::<_, u64>::try_from(
            self.ebpf()
                .map(map::DROP_EVENT_COUNTS)
                .expect("DROP_EVENT_COUNTS"),
        )
        .expect("DROP_EVENT_COUNTS is a per-CPU array");
        let sum = |slot| -> u64 {
            counts
                .get(&slot, 0)
                .expect("reading DROP_EVENT_COUNTS")
                .iter()
                .sum()
        };
        (
            sum(filter_common::sample::COUNT_SAMPLED),
            sum(filter_common::sample::COUNT_LOST),
        )
    }

    /// The live config, as the programs read it.
    pub fn config(&self) -> filter_common::Config {
        Array::<_, filter_common::Config>::try_from(self.ebpf().map(map::CONFIG).expect("CONFIG"))
            .expect("CONFIG is an array of Config")
            .get(&0, 0)
            .expect("reading CONFIG")
    }

    /// Every slot of the solicited table, as the programs left them.
    pub fn solicited_slots(&self) -> Vec<filter_common::SolicitedSlot> {
        match self.ebpf().map(map::SOLICITED).expect("SOLICITED") {
            Map::Array(data) => filter_ctl::rawmap::snapshot(data).expect("reading SOLICITED"),
            _ => panic!("SOLICITED is an array"),
        }
    }

    /// The LISTS_IN_USE flags of the live copies: allow v4, allow v6, deny
    /// v4, deny v6.
    pub fn lists_in_use(&self) -> Vec<u32> {
        let flags: Array<_, u32> =
            Array::try_from(self.ebpf().map(map::LISTS_IN_USE).expect("LISTS_IN_USE"))
                .expect("LISTS_IN_USE is an array of u32");
        let config = self.config();
        (0..filter_common::lists::COPY_SLOTS)
            .map(|slot| {
                let list = if slot < 2 { List::Allow } else { List::Deny };
                let copy = list.live_copy(&config);
                flags
                    .get(&filter_common::lists::in_use_slot(slot, copy), 0)
                    .expect("reading LISTS_IN_USE")
            })
            .collect()
    }

    /// Both copies of an allow or deny list's tries, for the library
    /// functions `filter-ctl allow|deny` uses.
    pub fn list(&mut self, list: List) -> ListMaps<&mut MapData> {
        ListMaps::of(self.ebpf_mut(), list).expect("the list maps")
    }

    /// Adds prefixes to a list as `filter-ctl allow|deny add` does, lasting
    /// `lasting` (any duration, unlike `--for`) or for ever.
    pub fn list_add(&mut self, list: List, cidrs: &[&str], lasting: Option<std::time::Duration>) {
        let cidrs: Vec<Cidr> = cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect();
        self.list(list)
            .add(
                &cidrs,
                lasting,
                filter_common::ListSource::Operator,
                now_ns(),
            )
            .expect("adding to the list");
    }

    /// The live entries of a list, as `filter-ctl allow|deny list` shows them.
    pub fn list_entries(&mut self, list: List) -> Vec<ListedEntry> {
        self.list(list).entries(now_ns()).expect("reading the list")
    }
}

// The model check's side of the harness (issue 14): it clears what each
// generated sequence wrote, through the maps themselves.
impl Filter {
    /// A map of the loaded object.
    pub fn map(&self, name: &str) -> &Map {
        self.ebpf()
            .map(name)
            .unwrap_or_else(|| panic!("the object has no map {name}"))
    }

    pub fn map_mut(&mut self, name: &str) -> &mut Map {
        self.ebpf_mut()
            .map_mut(name)
            .unwrap_or_else(|| panic!("the object has no map {name}"))
    }
}
