//! `./xtask/run fuzz [--packets N] [--seconds S] [--seed N] [--link L]`:
//! the model check for as long as asked (default 60 s). Generated sequences
//! go through the real programs and the reference model, on the programs
//! loaded for Ethernet devices and for devices without an Ethernet header
//! (frames that start at the IP header), taking turns (`--link both`, the
//! default) or on one; each mismatch is shrunk, printed with both answers
//! and the link layer, and saved under tests/regressions/, which the test
//! suite replays. Needs root (it loads the programs).

use std::{
    hash::{Hash as _, Hasher as _},
    process::ExitCode,
    time::{Duration, Instant},
};

use model::parse::Link;
use tests::check::{Budget, Checker, fuzz};

const USAGE: &str = "usage: fuzz [--packets N] [--seconds S] [--seed N] [--link L]
  --packets N   stop after N packets (frames run and compared)
  --seconds S   stop after S seconds (default 60 when neither is given)
  --seed N      the generator's seed (default: random, printed)
  --link L      the programs as loaded for: ethernet (Ethernet devices),
                ip (devices without an Ethernet header: ppp, WireGuard,
                ip6tnl, tun; frames start at the IP header) or both, taking
                turns case by case (default)";

struct Options {
    budget: Budget,
    seed: u64,
    links: Vec<Link>,
}

fn options() -> Result<Options, String> {
    let mut budget = Budget {
        frames: None,
        time: None,
        idle_gaps: true,
    };
    let mut seed = None;
    let mut links = Link::ALL.to_vec();
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
            "--link" => {
                let value = args.next().ok_or("--link needs a value")?;
                links = match value.as_str() {
                    "both" => Link::ALL.to_vec(),
                    name => vec![
                        Link::from_name(name)
                            .ok_or(format!("--link: '{name}' is not ethernet, ip or both"))?,
                    ],
                };
            }
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
        links,
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
    let links: Vec<&str> = options.links.iter().map(|link| link.name()).collect();
    println!(
        "model check: seed {}, link layers {}, until {}",
        options.seed,
        links.join(" and "),
        match (options.budget.frames, options.budget.time) {
            (Some(n), Some(t)) => format!("{n} packets or {} s", t.as_secs()),
            (Some(n), None) => format!("{n} packets"),
            (None, Some(t)) => format!("{} s", t.as_secs()),
            (None, None) => unreachable!("a default budget"),
        }
    );
    let mut checkers: Vec<Checker> = options
        .links
        .iter()
        .map(|&link| Checker::on(link))
        .collect();
    let started = Instant::now();
    let mut shown = Duration::ZERO;
    let totals = fuzz(
        &mut checkers,
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
                    "{:>4.0} s: {} packets ({}), {:.0}/s, mismatches {}",
                    elapsed.as_secs_f64(),
                    totals.frames,
                    totals
                        .by_link
                        .iter()
                        .map(|(link, share)| format!("{link} {}", share.frames))
                        .collect::<Vec<_>>()
                        .join(", "),
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
    println!("by link layer: {}", totals.links());
    for (link, share) in &totals.by_link {
        println!("by counter ({link}): {}", share.coverage());
    }
    if totals.found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
