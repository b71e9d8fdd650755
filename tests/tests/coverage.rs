//! The guards of what the suite shows (tests/src/coverage.rs reads the test
//! files): every reason of the Reason table is counted by a verdict test or
//! shown end to end next to a count the filter has no part in, every reason
//! real traffic can reach is shown end to end ([`NOT_END_TO_END`] lists the
//! others and why), and every key
//! of the settings table is changed in a test whose traffic then shows a
//! result. Each prints its table (`-- --nocapture`); a row without a test
//! fails it.

use std::path::Path;

use filter_common::Reason;
use filter_ctl_api::settings::SETTINGS;
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

/// The reasons no end-to-end test shows, and why real traffic in a test of
/// a few seconds cannot reach them (their verdict tests can: they load the
/// programs themselves and read the secret seed). Every other reason needs
/// an `assert_shown` in an end-to-end test (issue 26, point 3).
const NOT_END_TO_END: &[(Reason, &str)] = &[
    (
        Reason::EgressQueryEvicted,
        "needs one bucket of the solicited table full (4 ways): which queries share \
         a bucket is decided by a keyed hash with the filter's secret seed, so real \
         traffic gets there only by filling most of its 16,384 x 4 entries",
    ),
    (
        Reason::EgressHandshakeEvicted,
        "needs one bucket of the handshake table full (4 ways), chosen by the secret \
         seed's hash: real traffic only by filling most of its 16,384 x 4 entries",
    ),
    (
        Reason::PassConnEvicted,
        "needs one bucket of the connection table full (4 ways), chosen by the secret \
         seed's hash: real traffic only by filling most of its 8,192 x 4 connections",
    ),
    (
        Reason::DropSynPenaltyFull,
        "needs the deny list full: 65,536 entries before the penalty",
    ),
];

#[test]
fn every_reason_real_traffic_reaches_is_shown_end_to_end() {
    let suite = suite();
    let shown = |reason: Reason| {
        suite
            .iter()
            .any(|test| test.reasons.contains(&(reason, Proof::EndToEnd)))
    };
    let exempt = |reason: Reason| NOT_END_TO_END.iter().any(|(r, _)| *r == reason);
    let missing: Vec<&str> = Reason::ALL
        .into_iter()
        .filter(|reason| !exempt(*reason) && !shown(*reason))
        .map(Reason::name)
        .collect();
    assert!(
        missing.is_empty(),
        "no end-to-end test shows these reasons (an `assert_shown` next to a count the \
         filter has no part in; tests/src/coverage.rs says what counts): {missing:?}"
    );
    let now_shown: Vec<&str> = NOT_END_TO_END
        .iter()
        .filter(|(reason, _)| shown(*reason))
        .map(|(reason, _)| reason.name())
        .collect();
    assert!(
        now_shown.is_empty(),
        "shown end to end now: take them off NOT_END_TO_END: {now_shown:?}"
    );
    for (reason, why) in NOT_END_TO_END {
        println!("not end to end: `{}`: {why}", reason.name());
    }
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
