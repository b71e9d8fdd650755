//! The guards of what the suite shows (tests/src/coverage.rs reads the test
//! files): every reason of the Reason table is counted by a verdict test or
//! shown end to end next to a count the filter has no part in, and every key
//! of the settings table is changed in a test whose traffic then shows a
//! result. Each prints its table (`-- --nocapture`); a row without a test
//! fails it.

use std::path::Path;

use filter_common::{Reason, settings::SETTINGS};
use tests::coverage::{self, Proof, Shown};

fn suite() -> Vec<Shown> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let shown = coverage::scan_dir(&dir).expect("reading tests/tests");
    assert!(
        shown.len() > 100,
        "only {} tests found in {}",
        shown.len(),
        dir.display()
    );
    shown
}

/// `names`, at most `max` of them, and how many more.
fn some(mut names: Vec<&str>, max: usize) -> String {
    if names.is_empty() {
        return "-".to_owned();
    }
    names.sort_unstable();
    let more = names.len().saturating_sub(max);
    names.truncate(max);
    let mut text = names.join(", ");
    if more > 0 {
        text.push_str(&format!(" (+{more})"));
    }
    text
}

#[test]
fn every_reason_is_shown_by_a_verdict_test_or_end_to_end() {
    let suite = suite();
    let by = |reason: Reason, proof: Proof| -> Vec<&str> {
        suite
            .iter()
            .filter(|test| test.reasons.contains(&(reason, proof)))
            .map(|test| test.test.as_str())
            .collect()
    };
    println!("| reason | verdict tests | end-to-end tests |");
    println!("|---|---|---|");
    let mut missing = Vec::new();
    for reason in Reason::ALL {
        let (verdict, e2e) = (by(reason, Proof::Verdict), by(reason, Proof::EndToEnd));
        if verdict.is_empty() && e2e.is_empty() {
            missing.push(reason.name());
        }
        println!(
            "| `{}` | {} | {} |",
            reason.name(),
            some(verdict, 2),
            some(e2e, 2)
        );
    }
    assert!(
        missing.is_empty(),
        "no verdict test counts these reasons and no end-to-end test shows them \
         (tests/src/coverage.rs says what counts): {missing:?}"
    );
}

#[test]
fn every_setting_is_changed_where_traffic_shows_it() {
    let suite = suite();
    println!("| setting | tests that change it, then show traffic |");
    println!("|---|---|");
    let mut missing = Vec::new();
    for setting in SETTINGS {
        let key = setting.key();
        let tests: Vec<&str> = suite
            .iter()
            .filter(|test| test.settings.contains(key))
            .map(|test| test.test.as_str())
            .collect();
        if tests.is_empty() {
            missing.push(key);
        }
        println!("| `{key}` | {} |", some(tests, 3));
    }
    assert!(
        missing.is_empty(),
        "no test changes these settings and then shows traffic \
         (tests/src/coverage.rs says what counts): {missing:?}"
    );
}
