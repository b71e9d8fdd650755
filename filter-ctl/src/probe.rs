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

    #[test]
    fn the_probed_helpers_are_exactly_those_the_programs_call() {
        let object = object::File::parse(crate::EBPF_OBJECT).unwrap();
        // Helpers called in .text (BPF functions the programs call, not
        // inlined) belong to every program that calls BPF functions.
        let text_callers: Vec<ProgramType> = object
            .sections()
            .filter_map(|section| {
                let program = program_type(section.name().ok()?)?;
                let (insns, _) = section.data().ok()?.as_chunks::<8>();
                insns
                    .iter()
                    .any(|insn| insn[0] == 0x85 && insn[1] >> 4 == 1)
                    .then_some(program)
            })
            .collect();
        let mut called = BTreeSet::new();
        for section in object.sections() {
            let Ok(name) = section.name() else { continue };
            if section.kind() != object::SectionKind::Text {
                continue;
            }
            let (insns, _) = section.data().unwrap().as_chunks::<8>();
            for insn in insns {
                // BPF_JMP | BPF_CALL with source register 0: a helper call
                // (1 is a call to a BPF function, 2 a kfunc).
                let helper_call = insn[0] == 0x85 && insn[1] >> 4 == 0;
                if helper_call {
                    let [.., a, b, c, d] = *insn;
                    let id = i32::from_le_bytes([a, b, c, d]);
                    let programs = match program_type(name) {
                        Some(program) => vec![program],
                        None if name == ".text" => text_callers.clone(),
                        None => panic!("a helper call in section {name}: which program?"),
                    };
                    for program in programs {
                        called.insert((format!("{program:?}"), id));
                    }
                }
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
