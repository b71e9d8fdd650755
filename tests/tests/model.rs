//! The model check in the test suite: a bounded run of generated sequences
//! through the real programs and the reference model, and every saved
//! regression case replayed. `./xtask/run fuzz` runs the same for longer.

use std::{
    hash::{Hash as _, Hasher as _},
    time::Duration,
};

use model::sequence::Sequence;
use tests::check::{Budget, Checker, fuzz, regressions_dir};

/// Packets of the bounded run: 20 to 40 s on the 2-core test machine,
/// depending on its load; the time cap keeps a loaded one within a minute.
const PACKETS: u64 = 200_000;
const TIME_CAP: Duration = Duration::from_secs(45);

#[test]
fn generated_sequences_agree_with_the_model() {
    let mut hasher = std::hash::DefaultHasher::new();
    std::time::SystemTime::now().hash(&mut hasher);
    let seed = std::env::var("MODEL_CHECK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| hasher.finish());
    let mut checker = Checker::new();
    let budget = Budget {
        frames: Some(PACKETS),
        time: Some(TIME_CAP),
        idle_gaps: false,
    };
    let totals = fuzz(
        &mut checker,
        budget,
        seed,
        |found| match found.save() {
            Ok(path) => eprintln!("saved {}", path.display()),
            Err(err) => eprintln!("could not save a regression case: {err}"),
        },
        |_, _| {},
    );
    eprintln!(
        "model check (seed {seed}, MODEL_CHECK_SEED={seed} repeats it): {} packets in {} sequences, {:.0} packets/s, {} skipped",
        totals.frames,
        totals.cases,
        totals.frames_per_second(),
        totals.skipped
    );
    let found: Vec<String> = totals
        .found
        .iter()
        .map(|found| found.report.clone())
        .collect();
    assert!(
        found.is_empty(),
        "the kernel and the model disagree (seed {seed}):\n{}",
        found.join("\n")
    );
    assert!(
        totals.frames > 1000,
        "too few packets checked: {}",
        totals.frames
    );
}

#[test]
fn regression_cases_replay_without_mismatch() {
    let dir = regressions_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/regressions")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression cases in {}",
        dir.display()
    );
    let mut checker = Checker::new();
    let mut failed = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("reading a regression case");
        let sequence =
            Sequence::from_text(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        if let Err(mismatch) = checker.play(&sequence) {
            failed.push(format!("{}:\n{mismatch}", path.display()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
