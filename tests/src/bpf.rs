//! One loaded instance of the filter's programs and maps, driven through
//! BPF_PROG_TEST_RUN: the harness of the verdict tests.
//!
//! Every instance is loaded without pins, so its maps start empty (plus the
//! default settings an attach writes) and tests can run in parallel. Loading
//! needs root (CAP_BPF); without it the tests fail, they never skip.
//!
//! It lives here, not in the harness crate, because it embeds filter-ctl's
//! eBPF object; the benchmark's part 1 (tests/bench/src/testrun.rs) uses it too.

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use filter_common::settings::Assignment;
use filter_common::{Counter, Reason, map, program};
use filter_ctl::settings::SettingsMaps;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const TC_ACT_OK: u32 = 0;

/// Counters of every slot: `Reason::index()`, then the would-drop slots at
/// `Reason::COUNT + index()`.
pub type Counts = Vec<Counter>;

pub struct Filter {
    ebpf: Ebpf,
}

impl Filter {
    /// Loads the object and writes the default settings, as `attach` does.
    pub fn load() -> Self {
        assert!(
            harness::process::is_root(),
            "the verdict tests load BPF programs and need root: run `./xtask/run test` as root"
        );
        let mut ebpf = Ebpf::load(filter_ctl::EBPF_OBJECT).expect("loading the eBPF object");
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
        SettingsMaps::of(&mut ebpf)
            .and_then(|mut maps| maps.write_defaults())
            .expect("writing the default settings");
        Self { ebpf }
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
        SettingsMaps::of(&mut self.ebpf)?.apply(&assignments)?;
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

    fn xdp(&self) -> &Xdp {
        self.ebpf
            .program(program::INGRESS)
            .unwrap()
            .try_into()
            .unwrap()
    }

    fn tc(&self) -> &SchedClassifier {
        self.ebpf
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
        let stats =
            PerCpuArray::<_, Counter>::try_from(self.ebpf.map(map::STATS).expect("the STATS map"))
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

/// Counters of a fresh instance.
pub fn zero() -> Counts {
    vec![Counter::default(); 2 * Reason::COUNT as usize]
}

// The SYN defence's and the lists' side of the harness (issue 4).
use filter_common::report::ListedEntry;
use filter_ctl::{
    clock::now_ns,
    lists::{Cidr, List, ListMaps},
};

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
        let mut ring =
            aya::maps::RingBuf::try_from(self.ebpf.map_mut(map::DROP_EVENTS).expect("DROP_EVENTS"))
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
            self.ebpf
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
        Array::<_, filter_common::Config>::try_from(self.ebpf.map(map::CONFIG).expect("CONFIG"))
            .expect("CONFIG is an array of Config")
            .get(&0, 0)
            .expect("reading CONFIG")
    }

    /// Every slot of the solicited table, as the programs left them.
    pub fn solicited_slots(&self) -> Vec<filter_common::SolicitedSlot> {
        match self.ebpf.map(map::SOLICITED).expect("SOLICITED") {
            aya::maps::Map::Array(data) => {
                filter_ctl::rawmap::snapshot(data).expect("reading SOLICITED")
            }
            _ => panic!("SOLICITED is an array"),
        }
    }

    /// The LISTS_IN_USE flags of the live copies: allow v4, allow v6, deny
    /// v4, deny v6.
    pub fn lists_in_use(&self) -> Vec<u32> {
        let flags: Array<_, u32> =
            Array::try_from(self.ebpf.map(map::LISTS_IN_USE).expect("LISTS_IN_USE"))
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
    pub fn list(&mut self, list: List) -> ListMaps<&mut aya::maps::MapData> {
        ListMaps::of(&mut self.ebpf, list).expect("the list maps")
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
    pub fn map(&self, name: &str) -> &aya::maps::Map {
        self.ebpf
            .map(name)
            .unwrap_or_else(|| panic!("the object has no map {name}"))
    }

    pub fn map_mut(&mut self, name: &str) -> &mut aya::maps::Map {
        self.ebpf
            .map_mut(name)
            .unwrap_or_else(|| panic!("the object has no map {name}"))
    }
}
