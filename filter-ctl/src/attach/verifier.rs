//! The verifier's refusal, explained: its log runs to hundreds of lines
//! (the path it refused) and states the reason only at the end, before its
//! statistics, so the error leads with that reason.

use anyhow::anyhow;
use aya::programs::ProgramError;

/// Why the kernel refused to load `program`. A verifier refusal leads with
/// the verifier's reason: its log runs to hundreds of lines (the path it
/// refused) and states the reason only at the end, before its statistics.
pub(super) fn rejected(program: &str, err: ProgramError) -> anyhow::Error {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            anyhow!(
                "the kernel's verifier rejected the {program} ({io_error}): {}\n\
                 The verifier's log follows: the path it refused, its reason at the end.\n{}",
                verifier_reason(&log),
                log.trim_end()
            )
        }
        other => anyhow!(other).context(format!("the kernel rejected the {program}")),
    }
}

/// The verifier's reason in its log: the last instruction it checked and
/// what it said about it, without the statistics that end the log.
fn verifier_reason(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_verifier_statistic(line))
        .collect();
    if lines.is_empty() {
        return "the verifier gave no log".to_owned();
    }
    let last_instruction = lines.iter().rposition(|line| is_instruction(line));
    let start = match last_instruction {
        // The complaint, when one follows the instruction.
        Some(at) if at + 1 < lines.len() => at,
        _ => lines.len() - 1,
    };
    lines[start..]
        .iter()
        // Instruction lines carry the register state after a ';'.
        .map(|line| line.split(" ;").next().unwrap_or(line).trim_end())
        .collect::<Vec<_>>()
        .join(": ")
}

/// A line such as `1086: (67) r3 <<= 8`.
fn is_instruction(line: &str) -> bool {
    line.split_once(": (")
        .is_some_and(|(index, _)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
}

fn is_verifier_statistic(line: &str) -> bool {
    ["verification time ", "stack depth ", "processed "]
        .iter()
        .any(|prefix| line.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::verifier_reason;

    /// The end of the log of Linux 6.1's refusal of a wan_egress build
    /// (R3 read on a path that never wrote it).
    const REFUSAL: &str = "\
0: R1=ctx(off=0,imm=0) R10=fp0
; #[classifier]
0: (bf) r6 = r1                       ; R1=ctx(off=0,imm=0) R6_w=ctx(off=0,imm=0)
1081: (2d) if r5 > r9 goto pc+4 1086: R0=scalar(id=10) R1=scalar() R2=0
; }
1086: (67) r3 <<= 8
R3 !read_ok
verification time 81787 usec
stack depth 160
processed 2360 insns (limit 1000000) max_states_per_insn 7 total_states 123 peak_states 108 mark_read 23
";

    #[test]
    fn the_reason_is_the_last_instruction_and_the_complaint() {
        assert_eq!(verifier_reason(REFUSAL), "1086: (67) r3 <<= 8: R3 !read_ok");
    }

    #[test]
    fn an_instruction_line_loses_its_register_state() {
        let log = "5: (61) r7 = *(u32 *)(r6 +76)   ; R6_w=ctx(off=0,imm=0)\n\
                   invalid bpf_context access off=76 size=4\nprocessed 6 insns\n";
        assert_eq!(
            verifier_reason(log),
            "5: (61) r7 = *(u32 *)(r6 +76): invalid bpf_context access off=76 size=4"
        );
    }

    #[test]
    fn a_complaint_without_an_instruction_is_the_reason() {
        assert_eq!(
            verifier_reason(
                "BPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns\n"
            ),
            "BPF program is too large. Processed 1000001 insn"
        );
        assert_eq!(verifier_reason(""), "the verifier gave no log");
    }
}
