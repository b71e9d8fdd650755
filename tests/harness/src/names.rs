//! Names unique to this process and call (`<prefix>-<pid>-<n>`) for
//! namespaces, pin roots and temporary files, the prefixes of the tests, the
//! lab and the benchmark, and [`sweep_stale`], which removes what a killed run
//! (one whose pid is gone) left behind.

use std::{
    fs,
    path::Path,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::process::{self, note};

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// Where `ip netns exec` finds a namespace's own /etc files.
pub const NETNS_ETC_DIR: &str = "/etc/netns";
/// Where the bpf filesystem is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Name prefix of the end-to-end tests' namespaces.
pub const TEST_PREFIX: &str = "wft";
/// Name prefix of the lab's namespaces.
pub const LAB_PREFIX: &str = "wflab";
/// Name prefix of the benchmark's namespaces.
pub const BENCH_PREFIX: &str = "wfb";
/// Prefixes of pin roots under /sys/fs/bpf made by tests (and the benchmark) and by the lab.
pub const TEST_PIN_PREFIX: &str = "wan-filter-test";
pub const LAB_PIN_PREFIX: &str = "wan-filter-lab";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix>-<pid>-<n>`.
///
/// Parallel tests (threads of one process) differ in `n`, parallel runs in the
/// pid; [`sweep_stale`] recognises leftovers of dead runs by the pid.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The pid embedded by [`unique_name`] in `name`, if it has that shape.
pub fn pid_in_name(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Whether `name` was made by [`unique_name`] with `prefix` in a process that is gone.
pub fn is_stale(name: &str, prefix: &str) -> bool {
    pid_in_name(name, prefix).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes namespaces (under /run/netns, with their /etc/netns files) and
/// bpffs directories (under /sys/fs/bpf) named `<prefix>-<pid>-...` for one of `prefixes` whose process
/// is gone: leftovers of a run that was killed before its `Drop`s ran.
/// Names of live processes, including ours, are never touched.
pub fn sweep_stale(prefixes: &[&str]) {
    let stale = |dir: &str| -> Vec<String> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| prefixes.iter().any(|prefix| is_stale(name, prefix)))
            .collect()
    };
    for name in stale(NETNS_RUN_DIR) {
        note(format_args!(
            "removing network namespace {name} left by a dead run"
        ));
        process::quiet(Command::new("ip").args(["netns", "del", &name]));
    }
    for name in stale(NETNS_ETC_DIR) {
        let _ = fs::remove_dir_all(Path::new(NETNS_ETC_DIR).join(name));
    }
    for name in stale(BPFFS) {
        note(format_args!(
            "removing pins {BPFFS}/{name} left by a dead run"
        ));
        let _ = fs::remove_dir_all(Path::new(BPFFS).join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_carry_the_pid() {
        let a = unique_name("wft");
        let b = unique_name("wft");
        assert_ne!(a, b);
        assert_eq!(pid_in_name(&a, "wft"), Some(std::process::id()));
        assert_eq!(pid_in_name(&b, "wft"), Some(std::process::id()));
        assert!(!is_stale(&a, "wft"), "we are alive");
    }

    #[test]
    fn pid_in_name_wants_the_exact_prefix() {
        assert_eq!(pid_in_name("wft-123-4-gw", "wft"), Some(123));
        assert_eq!(pid_in_name("wft-123-4", "wft"), Some(123));
        assert_eq!(pid_in_name("wftx-123-4", "wft"), None);
        assert_eq!(pid_in_name("wft-abc-4", "wft"), None);
        assert_eq!(pid_in_name("wft-123", "wft"), None);
        assert_eq!(pid_in_name("other-123-4", "wft"), None);
        assert_eq!(
            pid_in_name("wan-filter-test-77-0", "wan-filter-test"),
            Some(77)
        );
    }
}
