//! The verifier's budget (filter-ebpf/verifier-budget.toml): each program's
//! verified instructions on the running kernel are within the budget of its
//! series, as loaded for Ethernet devices and (names ending in `_ip`) for
//! devices without an Ethernet header. Runs on the host and in every VM leg.

use std::collections::BTreeMap;

use tests::bpf::Filter;

const BUDGET_FILE: &str = "filter-ebpf/verifier-budget.toml";

/// `6.1.0-57-amd64` → `6.1`, `6.18.3+deb13-amd64` → `6.18`.
fn series(release: &str) -> String {
    release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

fn budgets() -> BTreeMap<String, BTreeMap<String, u32>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(BUDGET_FILE);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    toml::from_str(&text).unwrap_or_else(|err| panic!("{BUDGET_FILE}: {err}"))
}

#[test]
fn every_program_is_within_its_verifier_budget_on_this_kernel() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("reading /proc/sys/kernel/osrelease")
        .trim()
        .to_owned();
    let series = series(&release);
    let ip_link = Filter::load_ip()
        .verified_insns()
        .into_iter()
        .map(|(name, count)| (format!("{name}_ip"), count));
    let counts: Vec<(String, u32)> = Filter::load()
        .verified_insns()
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .chain(ip_link)
        .collect();
    let shown: Vec<String> = counts
        .iter()
        .map(|(name, count)| format!("{name} = {count}"))
        .collect();
    let budgets = budgets();
    let Some(budget) = budgets.get(&series) else {
        panic!(
            "{BUDGET_FILE} has no row for Linux {series} ({release}); its counts here: {}. \
             Add [\"{series}\"] with these plus 10% if this kernel is to be checked.",
            shown.join(", ")
        );
    };
    let over: Vec<String> = counts
        .iter()
        .filter_map(|(name, count)| match budget.get(name) {
            Some(limit) if count <= limit => None,
            Some(limit) => Some(format!(
                "{name} verified {count} instructions on Linux {series}, over its budget of {limit} ({BUDGET_FILE})"
            )),
            None => Some(format!(
                "{name} has no budget for Linux {series} in {BUDGET_FILE} (it verified {count})"
            )),
        })
        .collect();
    assert!(
        over.is_empty(),
        "verifier budget exceeded:\n{}\n(counts on Linux {series}: {})",
        over.join("\n"),
        shown.join(", ")
    );
    // Visible with --nocapture, and in the VM legs' console logs.
    println!(
        "verifier on Linux {series}: {} (within {BUDGET_FILE})",
        shown.join(", ")
    );
}

#[test]
fn kernel_releases_give_their_series() {
    assert_eq!(series("6.1.0-57-amd64"), "6.1");
    assert_eq!(series("6.12.48+deb12-amd64"), "6.12");
    assert_eq!(series("6.18.0"), "6.18");
}
