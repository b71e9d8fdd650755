//! Which tests a VM leg runs. `./xtask/run test` boots Linux 6.1 for what
//! can differ between kernels ([`KERNEL_LEG`]): the verifier, BPF_PROG_TEST_RUN,
//! XDP and TC attach, links, pins, ring buffers, real packets through veth.
//! What only exercises the controller's own logic (its fault points,
//! settings, lists, the model, the crates' unit tests) gives the same result
//! on every kernel and runs on the host only. `./xtask/run vm-test` runs
//! the whole suite ([`Selection::All`]): the full matrix, before resolving
//! kernel-side work.
//!
//! Named tests are checked against the executables' own lists before a
//! guest boots: a renamed or deleted test is an error here, never a test
//! that silently stopped running in the leg.

use std::process::Command;

use anyhow::{Context as _, bail};

use super::plan::TestBinary;
use crate::{
    describe,
    suite::{self, Job},
};

/// Which tests of the suite a leg runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Selection {
    /// What can differ between kernels ([`KERNEL_LEG`]): `test`'s default.
    Kernel,
    /// Every test executable: `vm-test`'s default.
    All,
}

impl Selection {
    pub fn name(self) -> &'static str {
        match self {
            Selection::Kernel => "kernel",
            Selection::All => "all",
        }
    }
}

/// The tests of one executable that a leg runs.
#[derive(Clone, Copy, Debug)]
pub enum Tests {
    All,
    Only(&'static [&'static str]),
}

/// The 6.1 leg of `./xtask/run test`: executable (its source), the tests
/// it runs there, and why they depend on the kernel. docs/testing.md lists the
/// same, by purpose.
pub const KERNEL_LEG: &[(&str, Tests, &str)] = &[
    // Every verdict through BPF_PROG_TEST_RUN: what the verifier accepted
    // and what the program does on this kernel's helpers and maps.
    (
        "tests/tests/verdict.rs",
        Tests::All,
        "verdicts and counters",
    ),
    (
        "tests/tests/reflection.rs",
        Tests::All,
        "reflection verdicts",
    ),
    ("tests/tests/syn.rs", Tests::All, "SYN bucket verdicts"),
    (
        "tests/tests/tcp.rs",
        Tests::All,
        "handshake and connection verdicts",
    ),
    (
        "tests/tests/query.rs",
        Tests::All,
        "query limits and the slip (XDP_TX)",
    ),
    ("tests/tests/lists.rs", Tests::All, "LPM lists"),
    (
        "tests/tests/sampling.rs",
        Tests::All,
        "the drop ring buffer",
    ),
    ("tests/tests/edges.rs", Tests::All, "parser edges"),
    (
        "tests/tests/ip_link.rs",
        Tests::All,
        "the programs loaded for devices without Ethernet",
    ),
    ("tests/tests/budget.rs", Tests::All, "the verifier budget"),
    (
        "tests/tests/e2e.rs",
        Tests::Only(&[
            "attach_status_detach_leaves_nothing_behind",
            "attaching_again_replaces_the_program_and_keeps_the_counters",
            "skb_mode_attaches_generic_xdp",
            "ipv4_from_the_internet_is_counted_exactly",
            "ipv6_from_the_internet_is_counted_exactly",
            "foreign_xdp_program_attached_by_ip_link_is_left_alone",
            "foreign_xdp_link_is_left_alone",
        ]),
        "attach, replace and detach in native and skb mode, the egress hook, real packets counted",
    ),
    (
        "tests/tests/faults.rs",
        Tests::Only(&[
            "attach_killed_once_in_each_phase_leaves_nothing_or_a_working_filter",
            "a_deleted_interface_is_severed_and_attach_brings_the_filter_back",
        ]),
        "one kill per attach phase (maps, programs, links); links of a deleted interface",
    ),
    (
        "tests/tests/upgrade.rs",
        Tests::Only(&[
            "an_upgrade_and_a_downgrade_carry_settings_lists_counters_and_recorded_queries",
        ]),
        "an upgrade across a layout change (bpf_link update, map copies)",
    ),
    (
        "tests/tests/daemon_e2e.rs",
        Tests::Only(&[
            "the_daemon_exports_metrics_names_the_flooder_and_logs_the_attack",
            "a_killed_daemon_leaves_the_filter_filtering_and_the_next_one_adopts_it",
            "the_programs_rare_events_reach_the_daemons_log",
        ]),
        "the ring buffers, metrics, pins and adoption",
    ),
    (
        "tests/tests/reflection_e2e.rs",
        Tests::Only(&["real_lookups_succeed_while_a_reflection_flood_is_dropped"]),
        "the reflection defence end to end",
    ),
    (
        "tests/tests/syn_e2e.rs",
        Tests::Only(&[
            "legitimate_clients_get_through_a_syn_flood_from_one_and_from_many_addresses",
        ]),
        "the SYN defence end to end",
    ),
    (
        "tests/tests/tcp_e2e.rs",
        Tests::All,
        "half-open budgets and connection limits end to end",
    ),
    (
        "tests/tests/query_e2e.rs",
        Tests::Only(&["a_dns_server_on_the_gateway_is_no_amplifier"]),
        "query limits with the slip end to end",
    ),
    (
        "tests/tests/wan_links_e2e.rs",
        Tests::All,
        "WAN devices without Ethernet: generic XDP and TC egress on a tun device",
    ),
    (
        "tests/tests/pppoe_e2e.rs",
        Tests::Only(&["a_pppoe_session_is_filtered_on_ppp0_in_skb_mode_from_the_ip_header"]),
        "a real PPPoE session, the filter on ppp0",
    ),
    (
        "tests/tests/bond_e2e.rs",
        Tests::All,
        "a bond of two veth pairs, the filter on the master",
    ),
    (
        "tests/tests/ip6tnl_e2e.rs",
        Tests::Only(&[
            "ip6tnl_floods_are_unwrapped_and_dropped_on_the_ethernet_device_under_the_tunnel",
        ]),
        "a real ip6tnl (IPv4 inside IPv6) unwrapped on the Ethernet device (module ip6_tunnel)",
    ),
    (
        "tests/tests/wireguard_e2e.rs",
        Tests::All,
        "a real WireGuard WAN, generic XDP on wg0 (module wireguard)",
    ),
];

/// The jobs (suite.rs) that run `selection`'s tests of `binaries`: every
/// test matching `filter` (a substring, as libtest matches it), in the
/// kernel leg only those [`KERNEL_LEG`] names; `harness` goes to each job.
pub fn jobs(
    selection: Selection,
    binaries: &[TestBinary],
    filter: Option<&str>,
    harness: &[String],
) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for binary in binaries {
        let tests = match selection {
            Selection::All => Tests::All,
            Selection::Kernel => match KERNEL_LEG.iter().find(|(name, ..)| *name == binary.name) {
                Some((_, tests, _)) => *tests,
                None => continue,
            },
        };
        let listed = list_tests(binary)?;
        let matching = |name: &&String| filter.is_none_or(|f| name.contains(f));
        let (names, whole): (Vec<String>, _) = match tests {
            Tests::All => (
                listed.iter().filter(matching).cloned().collect(),
                Some(filter),
            ),
            Tests::Only(wanted) => (
                only(binary, &listed, wanted)?
                    .into_iter()
                    .filter(matching)
                    .cloned()
                    .collect(),
                None,
            ),
        };
        if !names.is_empty() {
            jobs.extend(suite::jobs_of(binary, &names, whole, harness));
        }
    }
    if selection == Selection::Kernel && filter.is_none() && builds_everything(binaries) {
        for (name, ..) in KERNEL_LEG {
            if !binaries.iter().any(|b| b.name == *name) {
                bail!(
                    "xtask/src/vm/selection.rs names {name} for the kernel leg, but the workspace has no such test executable"
                );
            }
        }
    }
    Ok(jobs)
}

/// Whether `binaries` is the whole workspace's (no `-p`/`--test` narrowed
/// the build): only then is a missing executable a stale selection.
fn builds_everything(binaries: &[TestBinary]) -> bool {
    binaries.iter().any(|b| b.name == "tests/tests/verdict.rs")
        && binaries.iter().any(|b| b.name == "xtask/src/main.rs")
}

/// The selected names, each checked against the executable's list.
fn only<'a>(
    binary: &TestBinary,
    listed: &'a [String],
    wanted: &[&str],
) -> anyhow::Result<Vec<&'a String>> {
    wanted
        .iter()
        .map(|name| {
            listed.iter().find(|l| l == name).with_context(|| {
                format!(
                    "xtask/src/vm/selection.rs names the test {name} of {} for the kernel leg, but it has no such test (renamed?)",
                    binary.name
                )
            })
        })
        .collect()
}

/// The executable's test names (`--list --format terse`, run on the host).
fn list_tests(binary: &TestBinary) -> anyhow::Result<Vec<String>> {
    let mut cmd = Command::new(&binary.path);
    cmd.args(["--list", "--format", "terse"])
        .current_dir(&binary.cwd);
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", describe(&cmd)))?;
    if !out.status.success() {
        bail!("{} failed ({})", describe(&cmd), out.status);
    }
    Ok(parse_list(&String::from_utf8_lossy(&out.stdout)))
}

/// `name: test` lines of libtest's terse list; benches and the summary are not tests.
fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terse_list_gives_the_test_names() {
        let text = "a_fresh_instance_counts_nothing: test\nmod::b: test\nbig: bench\n";
        assert_eq!(
            parse_list(text),
            ["a_fresh_instance_counts_nothing", "mod::b"]
        );
    }

    #[test]
    fn the_kernel_leg_names_each_executable_once() {
        let mut names: Vec<&str> = KERNEL_LEG.iter().map(|(name, ..)| *name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
