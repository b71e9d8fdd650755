//! The model check in the test suite: a bounded run of generated sequences
//! through the real programs and the reference model, on the programs
//! loaded for Ethernet devices and for devices without an Ethernet header
//! taking turns, and every saved regression case replayed on the programs
//! its `link` line names. `./xtask/run fuzz` runs the same for longer.

use std::{
    hash::{Hash as _, Hasher as _},
    time::Duration,
};

use filter_common::Reason;
use harness::kernel;
use model::{parse::Link, sequence::Sequence};
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
    let mut checkers = Link::ALL.map(Checker::on);
    let budget = Budget {
        frames: Some(PACKETS),
        time: Some(TIME_CAP),
        idle_gaps: false,
    };
    let totals = fuzz(
        &mut checkers,
        budget,
        seed,
        |found| match found.save() {
            Ok(path) => eprintln!("saved {}", path.display()),
            Err(err) => eprintln!("could not save a regression case: {err}"),
        },
        |_, _| {},
    );
    eprintln!(
        "model check (seed {seed}, MODEL_CHECK_SEED={seed} repeats it): {} packets in {} sequences, {:.0} packets/s, {} skipped, {} sequences cut short by a preemption\nby link layer: {}\nby counter: {}",
        totals.frames,
        totals.cases,
        totals.frames_per_second(),
        totals.skipped,
        totals.preempted,
        totals.links(),
        totals.coverage()
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
    // The run checked what it set out to: the packets (or, on a loaded or
    // emulated machine, what the time cap allowed, at least a quarter),
    // few sequences cut short by a preemption, and every reason the
    // generator can reach.
    assert!(
        totals.frames >= PACKETS / 4 || kernel::emulated(),
        "{} packets checked of {PACKETS} within {TIME_CAP:?}",
        totals.frames
    );
    // An emulated CPU shared with another guest and the host suite loses
    // the CPU for more than a clock tick more often (7 % of the sequences
    // in one Linux 6.1 leg under TCG): there a fifth may be cut short.
    let preempted_max = if kernel::emulated() { 20 } else { 5 };
    assert!(
        totals.preempted * 100 <= totals.cases * preempted_max,
        "{} of {} sequences cut short by a preemption (more than {preempted_max} %)",
        totals.preempted,
        totals.cases
    );
    // Both link layers had their turns (the cases alternate), and the
    // programs loaded for IP devices met tunnelled packets too.
    for link in Link::ALL {
        let share = totals.by_link.get(&link);
        assert!(
            share.is_some_and(|share| share.frames * 3 >= totals.frames),
            "the {link} link's share of the packets: {}",
            totals.links()
        );
    }
    assert!(
        totals.by_link[&Link::Ip].tunnelled > 0 || kernel::emulated(),
        "no tunnelled packet on the IP link: {}",
        totals.links()
    );
    let unchecked: Vec<&str> = Reason::ALL
        .into_iter()
        .filter(|reason| !UNREACHED.contains(reason))
        .filter(|reason| {
            totals
                .by_slot
                .get(reason.index() as usize)
                .is_none_or(|n| *n == 0)
        })
        .map(Reason::name)
        .collect();
    assert!(
        unchecked.is_empty() || kernel::emulated(),
        "no frame was compared under these reasons: {unchecked:?}"
    );
}

/// Reasons no generated case reaches: a penalty that finds the deny list
/// full needs the list's whole capacity of entries first, far more than a
/// case adds (syn.rs's verdict test fills it).
const UNREACHED: &[Reason] = &[Reason::DropSynPenaltyFull];

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
    // A checker per link layer, loaded when a case first needs it.
    let mut checkers: Vec<Checker> = Vec::new();
    let mut failed = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("reading a regression case");
        let sequence =
            Sequence::from_text(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let at = match checkers.iter().position(|c| c.link() == sequence.link) {
            Some(at) => at,
            None => {
                checkers.push(Checker::on(sequence.link));
                checkers.len() - 1
            }
        };
        let checker = &mut checkers[at];
        // A replay cut short by a preemption did not reach the frame that
        // once mismatched: play it again.
        let mut tries = 0;
        let played = loop {
            tries += 1;
            match checker.play(&sequence) {
                Ok(played) if played.preempted && tries < 10 => continue,
                other => break other,
            }
        };
        match played {
            Err(mismatch) => failed.push(format!("{}:\n{mismatch}", path.display())),
            Ok(played) if played.preempted => failed.push(format!(
                "{}: preempted in each of {tries} replays, never reached its last frame",
                path.display()
            )),
            Ok(_) => {}
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
