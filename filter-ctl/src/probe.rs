//! What `attach` needs from the running kernel, probed before anything is
//! loaded: the program types of both programs, every map type the eBPF object
//! declares and every helper each program calls (tests below check these lists
//! against the object built into filter-ctl). A kernel that lacks any of them
//! is refused with one sentence naming what is missing, instead of a verifier
//! log. Probes, not the version string: distributions backport BPF features.
//!
//! Not probed, because every kernel that passes these probes has them: the map
//! flags BPF_F_NO_PREALLOC (Linux 4.6) and BPF_F_MMAPABLE (5.5), and bpf_link
//! attachment of XDP (5.9; attach refuses a kernel that falls back to netlink)
//! are older than bpf_ktime_get_coarse_ns (5.11). The object needs no kernel
//! BTF: its maps use the legacy `maps` section.
//!
//! The egress hook is probed too: TCX links (Linux 6.6) where the kernel has
//! them, a netlink clsact filter otherwise.

use aya::{
    maps::MapType,
    programs::{ProgramError, ProgramType, SchedClassifier, TcAttachType},
    sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported},
    util::KernelVersion,
};

use anyhow::Context as _;
use filter_ctl_api::report::EgressHook;

/// The program types of `wan_ingress` and `wan_egress`.
const PROGRAM_TYPES: &[(ProgramType, &str)] = &[
    (ProgramType::Xdp, "XDP programs"),
    (ProgramType::SchedClassifier, "TC classifier programs"),
];

/// Every map type the eBPF object declares.
const MAP_TYPES: &[(MapType, &str)] = &[
    (MapType::Array, "array maps"),
    (MapType::PerCpuArray, "per-CPU array maps"),
    (MapType::ProgramArray, "program array maps"),
    (MapType::LruHash, "LRU hash maps"),
    (MapType::LpmTrie, "LPM trie maps"),
    (MapType::RingBuf, "ring buffer maps (Linux 5.8)"),
];

/// Every helper each program calls, named as the refusal names it.
const HELPERS: &[(ProgramType, BpfHelper, &str)] = &[
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_map_lookup_elem,
        "bpf_map_lookup_elem",
    ),
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_map_update_elem,
        "bpf_map_update_elem",
    ),
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_ktime_get_coarse_ns,
        "bpf_ktime_get_coarse_ns (Linux 5.11)",
    ),
    // Drop sampling and aya-log's records (ring buffers).
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_ringbuf_reserve,
        "bpf_ringbuf_reserve (Linux 5.8)",
    ),
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_ringbuf_submit,
        "bpf_ringbuf_submit (Linux 5.8)",
    ),
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_ringbuf_discard,
        "bpf_ringbuf_discard (Linux 5.8)",
    ),
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_xdp_load_bytes,
        "bpf_xdp_load_bytes (Linux 5.18)",
    ),
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_get_prandom_u32,
        "bpf_get_prandom_u32",
    ),
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_tail_call,
        "bpf_tail_call",
    ),
    (
        ProgramType::Xdp,
        BpfHelper::BPF_FUNC_xdp_adjust_tail,
        "bpf_xdp_adjust_tail",
    ),
    (
        ProgramType::SchedClassifier,
        BpfHelper::BPF_FUNC_map_lookup_elem,
        "bpf_map_lookup_elem",
    ),
    (
        ProgramType::SchedClassifier,
        BpfHelper::BPF_FUNC_skb_pull_data,
        "bpf_skb_pull_data",
    ),
    (
        ProgramType::SchedClassifier,
        BpfHelper::BPF_FUNC_ktime_get_coarse_ns,
        "bpf_ktime_get_coarse_ns (Linux 5.11)",
    ),
];

/// Probes everything attach needs; fails with one sentence naming what this
/// kernel lacks. Returns the egress hook to use on interface `if_index`.
pub fn check(if_index: u32) -> anyhow::Result<EgressHook> {
    let missing = missing_features().context("probing the kernel's BPF features")?;
    if !missing.is_empty() {
        anyhow::bail!("{}", refusal(&kernel_release(), &missing));
    }
    egress_hook(if_index)
}

/// What the kernel lacks, in the order of the lists above.
fn missing_features() -> Result<Vec<String>, ProgramError> {
    let mut missing = Vec::new();
    for (program_type, what) in PROGRAM_TYPES {
        if !is_program_supported(*program_type)? {
            missing.push((*what).to_owned());
        }
    }
    for (map_type, what) in MAP_TYPES {
        if !is_map_supported(*map_type)? {
            missing.push((*what).to_owned());
        }
    }
    for (program_type, helper, name) in HELPERS {
        // A missing program type is named already; its helpers cannot be probed.
        let type_present = !PROGRAM_TYPES
            .iter()
            .any(|(t, what)| t == program_type && missing.iter().any(|m| m == what));
        if type_present && !is_helper_supported(*program_type, *helper)? {
            let (_, program) = PROGRAM_TYPES
                .iter()
                .find(|(t, _)| t == program_type)
                .expect("every helper's program type is listed");
            missing.push(format!("the helper {name} in {program}"));
        }
    }
    Ok(missing)
}

/// TCX if the kernel answers a TCX query on the interface, clsact if it does
/// not know the TCX attach type (EINVAL).
pub fn egress_hook(if_index: u32) -> anyhow::Result<EgressHook> {
    match SchedClassifier::query_tcx(if_index, TcAttachType::Egress) {
        Ok(_) => Ok(EgressHook::Tcx),
        Err(ProgramError::SyscallError(err))
            if err.io_error.raw_os_error() == Some(libc::EINVAL) =>
        {
            Ok(EgressHook::Clsact)
        }
        Err(err) => Err(anyhow::Error::new(err).context("probing for TCX")),
    }
}

/// The one sentence that refuses a kernel.
fn refusal(release: &str, missing: &[String]) -> String {
    let list = match missing {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    format!(
        "this kernel (Linux {release}) lacks {list}, which the filter needs: it needs Linux 6.1 or later"
    )
}

fn kernel_release() -> String {
    KernelVersion::current().map_or_else(|_| "?".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

    use super::*;

    #[test]
    fn a_refusal_is_one_sentence_naming_what_is_missing() {
        assert_eq!(
            refusal(
                "5.4.0",
                &["the helper bpf_ktime_get_coarse_ns (Linux 5.11) in XDP programs".into()]
            ),
            "this kernel (Linux 5.4.0) lacks the helper bpf_ktime_get_coarse_ns (Linux 5.11) \
             in XDP programs, which the filter needs: it needs Linux 6.1 or later"
        );
        assert_eq!(
            refusal(
                "4.4.0",
                &[
                    "XDP programs".into(),
                    "LRU hash maps".into(),
                    "LPM trie maps".into()
                ]
            ),
            "this kernel (Linux 4.4.0) lacks XDP programs, LRU hash maps and LPM trie maps, \
             which the filter needs: it needs Linux 6.1 or later"
        );
    }

    /// Which program type the code of an object section runs as.
    fn program_type(section: &str) -> Option<ProgramType> {
        match section {
            "xdp" => Some(ProgramType::Xdp),
            "classifier" => Some(ProgramType::SchedClassifier),
            _ => None,
        }
    }

    /// The helper ids called by the code a program section reaches: its own
    /// instructions and, through BPF-to-BPF calls, the functions in `.text`
    /// (global functions each program calls, e.g. only the egress program
    /// calls `wan_egress_udp`). A call's target is its symbol's instruction
    /// plus `imm + 1`, as libbpf resolves it; without a relocation, the
    /// calling instruction's.
    fn helpers_reached(object: &object::File, program: &object::Section) -> BTreeSet<i32> {
        use object::{RelocationTarget, SectionIndex};
        // A function: its section and instruction range.
        let function_at = |section: SectionIndex, insn: u64| -> (SectionIndex, u64, u64) {
            object
                .symbols()
                .filter(|symbol| symbol.section_index() == Some(section) && symbol.size() > 0)
                .map(|symbol| (symbol.address() / 8, (symbol.address() + symbol.size()) / 8))
                .find(|&(start, end)| (start..end).contains(&insn))
                .map(|(start, end)| (section, start, end))
                .unwrap_or_else(|| panic!("no function holds instruction {insn} of a call"))
        };
        let whole = program.data().unwrap().len() as u64 / 8;
        let mut pending = vec![(program.index(), 0, whole)];
        let mut seen = BTreeSet::new();
        let mut helpers = BTreeSet::new();
        while let Some((index, start, end)) = pending.pop() {
            if !seen.insert((index.0, start)) {
                continue;
            }
            let section = object.section_by_index(index).unwrap();
            let relocations: std::collections::BTreeMap<u64, _> = section.relocations().collect();
            let (insns, _) = section.data().unwrap().as_chunks::<8>();
            for at in start..end {
                let insn = insns[at as usize];
                let imm = i64::from(i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]));
                // BPF_JMP | BPF_CALL; source register 0: a helper, 1: a BPF
                // function (2 would be a kfunc).
                if insn[0] != 0x85 {
                    continue;
                }
                match insn[1] >> 4 {
                    0 => {
                        helpers.insert(imm as i32);
                    }
                    1 => {
                        let (target_section, base) = match relocations.get(&(at * 8)) {
                            Some(relocation) => {
                                let RelocationTarget::Symbol(symbol) = relocation.target() else {
                                    panic!("a call relocated against no symbol");
                                };
                                let symbol = object.symbol_by_index(symbol).unwrap();
                                (symbol.section_index().unwrap(), symbol.address() / 8)
                            }
                            None => (index, at),
                        };
                        let target = (base as i64 + imm + 1) as u64;
                        pending.push(function_at(target_section, target));
                    }
                    source => panic!("a call with source register {source}"),
                }
            }
        }
        helpers
    }

    #[test]
    fn the_probed_helpers_are_exactly_those_the_programs_call() {
        let object = object::File::parse(crate::EBPF_OBJECT).unwrap();
        let mut called = BTreeSet::new();
        for section in object.sections() {
            let Some(program) = section.name().ok().and_then(program_type) else {
                continue;
            };
            for id in helpers_reached(&object, &section) {
                called.insert((format!("{program:?}"), id));
            }
        }
        let probed: BTreeSet<_> = HELPERS
            .iter()
            .map(|(program, helper, _)| (format!("{program:?}"), *helper as i32))
            .collect();
        assert_eq!(
            probed, called,
            "probe::HELPERS must list every helper the programs call (by bpf_func_id)"
        );
    }

    #[test]
    fn the_probed_map_types_are_exactly_those_the_object_declares() {
        let object = object::File::parse(crate::EBPF_OBJECT).unwrap();
        let maps = object
            .section_by_name("maps")
            .expect("a legacy maps section");
        let data = maps.data().unwrap();
        let mut declared = BTreeSet::new();
        let mut flags = 0;
        for symbol in object.symbols() {
            if symbol.section_index() != Some(maps.index()) {
                continue;
            }
            // struct bpf_map_def: type, key_size, value_size, max_entries, map_flags.
            let at = usize::try_from(symbol.address() - maps.address()).unwrap();
            let word =
                |i: usize| u32::from_le_bytes(data[at + 4 * i..at + 4 * i + 4].try_into().unwrap());
            declared.insert(word(0));
            flags |= word(4);
        }
        let probed: BTreeSet<u32> = MAP_TYPES.iter().map(|(t, _)| *t as u32).collect();
        assert_eq!(
            probed, declared,
            "probe::MAP_TYPES must list every map type the object declares"
        );
        // The flags the module comment says need no probe.
        const BPF_F_NO_PREALLOC: u32 = 1;
        const BPF_F_MMAPABLE: u32 = 1 << 10;
        assert_eq!(
            flags & !(BPF_F_NO_PREALLOC | BPF_F_MMAPABLE),
            0,
            "a new map flag: probe it"
        );
    }

    #[test]
    fn this_kernel_has_what_attach_needs() {
        crate::require_root("probing BPF features").unwrap();
        assert_eq!(missing_features().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_egress_hook_is_tcx_from_linux_6_6() {
        crate::require_root("probing for TCX").unwrap();
        let expected = if KernelVersion::current().unwrap() >= KernelVersion::new(6, 6, 0) {
            EgressHook::Tcx
        } else {
            EgressHook::Clsact
        };
        // Interface 1 is the loopback device of every network namespace.
        assert_eq!(egress_hook(1).unwrap(), expected);
    }
}
