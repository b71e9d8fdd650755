//! `./xtask/run fuzz [--packets N] [--seconds S] [--seed N]`: the model
//! check for as long as asked (default 60 s). Generated sequences go through
//! the real programs and the reference model; each mismatch is shrunk,
//! printed with both answers and saved under tests/regressions/, which the
//! test suite replays. Needs root (it loads the programs).

use std::{
    hash::{Hash as _, Hasher as _},
    process::ExitCode,
    time::{Duration, Instant},
};

use tests::check::{Budget, Checker, fuzz};

const USAGE: &str = "usage: fuzz [--packets N] [--seconds S] [--seed N]
  --packets N   stop after N packets (frames run and compared)
  --seconds S   stop after S seconds (default 60 when neither is given)
  --seed N      the generator's seed (default: random, printed)";

struct Options {
    budget: Budget,
    seed: u64,
}

fn options() -> Result<Options, String> {
    let mut budget = Budget {
        frames: None,
        time: None,
        idle_gaps: true,
    };
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or(format!("{name} needs a value"))?;
            value
                .parse()
                .map_err(|_| format!("{name}: '{value}' is not a whole number"))
        };
        match arg.as_str() {
            "--packets" => budget.frames = Some(number("--packets")?),
            "--seconds" => budget.time = Some(Duration::from_secs(number("--seconds")?)),
            "--seed" => seed = Some(number("--seed")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if budget.frames.is_none() && budget.time.is_none() {
        budget.time = Some(Duration::from_secs(60));
    }
    Ok(Options {
        budget,
        seed: seed.unwrap_or_else(random_seed),
    })
}

fn random_seed() -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    std::time::SystemTime::now().hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    hasher.finish()
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(err) => {
            if !err.is_empty() {
                eprintln!("fuzz: {err}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!(
        "model check: seed {}, until {}",
        options.seed,
        match (options.budget.frames, options.budget.time) {
            (Some(n), Some(t)) => format!("{n} packets or {} s", t.as_secs()),
            (Some(n), None) => format!("{n} packets"),
            (None, Some(t)) => format!("{} s", t.as_secs()),
            (None, None) => unreachable!("a default budget"),
        }
    );
    let mut checker = Checker::new();
    let started = Instant::now();
    let mut shown = Duration::ZERO;
    let totals = fuzz(
        &mut checker,
        options.budget,
        options.seed,
        |found| {
            let how = if found.reproduced {
                ""
            } else {
                " (not reproduced from a fresh filter)"
            };
            println!("MISMATCH{how}:");
            print!("{}", found.report);
            match found.save() {
                Ok(path) => println!("  saved as {}", path.display()),
                Err(err) => println!("  could not save it: {err}"),
            }
        },
        |totals, elapsed| {
            if elapsed >= shown + Duration::from_secs(10) {
                shown = elapsed;
                println!(
                    "{:>4.0} s: {} packets, {:.0}/s, mismatches {}",
                    elapsed.as_secs_f64(),
                    totals.frames,
                    totals.frames as f64 / elapsed.as_secs_f64(),
                    totals.found.len()
                );
            }
        },
    );
    println!(
        "checked {} packets in {} sequences in {:.1} s: {:.0} packets/s ({} skipped); mismatches: {}",
        totals.frames,
        totals.cases,
        started.elapsed().as_secs_f64(),
        totals.frames_per_second(),
        totals.skipped,
        totals.found.len()
    );
    println!("by counter: {}", totals.coverage());
    if totals.found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
