//! The test suite as jobs, run by `test` on the host and by the VM legs'
//! guests: one job is a test executable run once, either whole (unit tests,
//! and the verdict files, whose tests share loaded programs: tests/src/bpf.rs)
//! or for one of its tests (`--exact NAME`: the end-to-end tests, tens of
//! seconds each). Jobs run longest first, by the times of the last run
//! (its outcome files), so that the machine's cores (on the host) or the
//! guests (in a leg) finish together; on the host two jobs run at once, and
//! a job that measures rates ([`ALONE`]) runs with no other.
//!
//! Output: a job's output is kept and printed whole when it fails (on the
//! host; a guest streams it), one line per job otherwise.

use std::{
    collections::{BTreeMap, VecDeque},
    ffi::OsString,
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    thread,
    time::Instant,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::vm::plan::{JobOutcome, Outcome, TestBinary};

/// Executables whose tests run in one process, each test reusing the
/// programs another loaded (tests/src/bpf.rs), besides the crates' unit tests.
const ONE_PROCESS: &[&str] = &[
    "tests/tests/verdict.rs",
    "tests/tests/reflection.rs",
    "tests/tests/syn.rs",
    "tests/tests/tcp.rs",
    "tests/tests/query.rs",
    "tests/tests/lists.rs",
    "tests/tests/sampling.rs",
    "tests/tests/edges.rs",
    "tests/tests/budget.rs",
];

/// Executables whose tests measure rates or what an attack at a given rate
/// did: on the host each runs with no other job at once.
pub const ALONE: &[&str] = &[
    "tests/tests/query_e2e.rs",
    "tests/tests/upstream_uplink_e2e.rs",
    "xtask/tests/lab.rs",
];

/// How long a job that did not run last time is expected to take, for the
/// order: an end-to-end test takes tens of seconds, a unit or verdict test
/// well under one.
const EXPECTED_ONE_TEST_SECS: f64 = 30.0;
const EXPECTED_SECS_PER_TEST: f64 = 0.5;

/// One run of a test executable.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// The executable's source (`tests/tests/e2e.rs`), with `::TEST` for a
    /// job of one test.
    pub name: String,
    pub path: PathBuf,
    /// Its package's directory, the working directory `cargo test` gives it.
    pub cwd: PathBuf,
    /// The test-name filter or `--exact` and the names, then the harness's options.
    pub args: Vec<String>,
    pub tests: usize,
    /// On the host: runs with no other job at once.
    pub alone: bool,
}

/// The jobs of `binary`, given the names of its tests to run (`names`, all
/// of them when `whole` and no filter narrowed them).
pub fn jobs_of(
    binary: &TestBinary,
    names: &[String],
    whole: Option<Option<&str>>,
    harness: &[String],
) -> Vec<Job> {
    let alone = ALONE.contains(&binary.name.as_str());
    let job = |name: String, args: Vec<String>, tests: usize| Job {
        name,
        path: binary.path.clone(),
        cwd: binary.cwd.clone(),
        args: args.into_iter().chain(harness.iter().cloned()).collect(),
        tests,
        alone,
    };
    let one_process =
        !binary.name.starts_with("tests/tests/") || ONE_PROCESS.contains(&binary.name.as_str());
    if names.len() > 1 && !one_process {
        return names
            .iter()
            .map(|test| {
                job(
                    format!("{}::{test}", binary.name),
                    vec!["--exact".to_owned(), test.clone()],
                    1,
                )
            })
            .collect();
    }
    let args = match whole {
        // Every test (matching the filter): as `cargo test` runs it.
        Some(filter) => filter.map(str::to_owned).into_iter().collect(),
        None => std::iter::once("--exact".to_owned())
            .chain(names.iter().cloned())
            .collect(),
    };
    vec![job(binary.name.clone(), args, names.len())]
}

/// Seconds each job took in the last run, from its outcome files.
pub fn measured(outcome_files: &[PathBuf]) -> BTreeMap<String, f64> {
    outcome_files
        .iter()
        .filter_map(|file| fs::read_to_string(file).ok())
        .filter_map(|text| serde_json::from_str::<Outcome>(&text).ok())
        .flat_map(|outcome| outcome.jobs)
        .map(|binary| (binary.name, binary.secs))
        .collect()
}

/// `jobs` longest first: by their time in the last run, else by an
/// estimate ([`EXPECTED_ONE_TEST_SECS`], [`EXPECTED_SECS_PER_TEST`]).
/// Jobs that run alone come first on the host (`alone_first`), so that the
/// rest share the cores afterwards.
pub fn order(jobs: &mut [Job], measured: &BTreeMap<String, f64>, alone_first: bool) {
    let expected = |job: &Job| {
        measured
            .get(&job.name)
            .copied()
            .unwrap_or(if job.name.contains("::") {
                EXPECTED_ONE_TEST_SECS
            } else {
                job.tests as f64 * EXPECTED_SECS_PER_TEST
            })
    };
    jobs.sort_by(|a, b| {
        (alone_first && b.alone)
            .cmp(&(alone_first && a.alone))
            .then(expected(b).total_cmp(&expected(a)))
    });
}

/// How a job ended and its output.
pub struct Ended {
    pub outcome: JobOutcome,
    pub output: Vec<u8>,
}

/// Runs `job` with `env`, its output kept (stdout and stderr together, in
/// order: both are one pipe).
pub fn run_kept(job: &Job, env: &[(&str, OsString)]) -> anyhow::Result<Ended> {
    let start = Instant::now();
    let (mut reader, writer) = std::io::pipe().context("a pipe for a test's output")?;
    let mut command = Command::new(&job.path);
    command
        .args(&job.args)
        .current_dir(&job.cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", job.path.display()))?;
    // The command holds the pipe's write ends until dropped.
    drop(command);
    let mut output = Vec::new();
    reader.read_to_end(&mut output)?;
    let status = child.wait()?;
    let mut outcome = outcome_of(job, &String::from_utf8_lossy(&output));
    outcome.exit_code = status.code();
    outcome.secs = start.elapsed().as_secs_f64();
    Ok(Ended { outcome, output })
}

/// The counts of `test result:` lines in `output`.
pub fn outcome_of(job: &Job, output: &str) -> JobOutcome {
    let mut outcome = JobOutcome {
        name: job.name.clone(),
        exit_code: None,
        passed: 0,
        failed: 0,
        ignored: 0,
        secs: 0.0,
    };
    for (passed, failed, ignored) in output.lines().filter_map(parse_test_result) {
        outcome.passed += passed;
        outcome.failed += failed;
        outcome.ignored += ignored;
    }
    outcome
}

/// `test result: ok. 14 passed; 0 failed; 1 ignored; 0 measured; ...` → (14, 0, 1).
pub fn parse_test_result(line: &str) -> Option<(u32, u32, u32)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |what: &str| -> Option<u32> {
        rest.split(';')
            .find_map(|part| part.trim().rsplit_once(" ").filter(|(_, w)| *w == what))
            .and_then(|(n, _)| n.rsplit(' ').next()?.parse().ok())
    };
    Some((count("passed")?, count("failed")?, count("ignored")?))
}

/// The host suite: `jobs` (in order) on `slots` cores, a job that runs
/// alone with no other. Prints a line per job, the whole output of each
/// that failed (of every job when a job's arguments ask libtest to show
/// output: `--nocapture`, `--show-output`), and writes the outcome to
/// `outcome_file` for the next run's order. Returns the outcome.
pub fn run_on_host(
    jobs: Vec<Job>,
    slots: usize,
    env: &[(&str, OsString)],
    outcome_file: &Path,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let show_output = |job: &Job| {
        job.args
            .iter()
            .any(|arg| arg == "--nocapture" || arg == "--show-output")
    };
    let (alone, shared): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|job| job.alone);
    let ended = Mutex::new(Vec::new());
    let report = |result: anyhow::Result<Ended>, job: &Job| {
        let ended_job = result.unwrap_or_else(|err| Ended {
            outcome: JobOutcome {
                name: job.name.clone(),
                exit_code: None,
                passed: 0,
                failed: 1,
                ignored: 0,
                secs: 0.0,
            },
            output: format!("{err:#}\n").into_bytes(),
        });
        let outcome = &ended_job.outcome;
        let ok = outcome.exit_code == Some(0);
        println!(
            "  {} {:>6.1} s  {}",
            if ok { "ok    " } else { "FAILED" },
            outcome.secs,
            outcome.name
        );
        if !ok || show_output(job) {
            println!(
                "---- output of {} ----\n{}---- end of {} ----",
                outcome.name,
                String::from_utf8_lossy(&ended_job.output),
                outcome.name
            );
        }
        ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ended_job.outcome);
    };
    for job in &alone {
        report(run_kept(job, env), job);
    }
    let queue = Mutex::new(VecDeque::from(shared));
    thread::scope(|scope| {
        for _ in 0..slots.max(1) {
            scope.spawn(|| {
                loop {
                    let Some(job) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        return;
                    };
                    report(run_kept(&job, env), &job);
                }
            });
        }
    });
    let outcome = Outcome {
        jobs: ended.into_inner().unwrap_or_else(|e| e.into_inner()),
        suite_secs: start.elapsed().as_secs_f64(),
        ..Outcome::default()
    };
    if let Some(dir) = outcome_file.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(outcome_file, serde_json::to_string_pretty(&outcome)?)
        .with_context(|| format!("writing {}", outcome_file.display()))?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(name: &str) -> TestBinary {
        TestBinary {
            name: name.to_owned(),
            path: PathBuf::from("/x"),
            cwd: PathBuf::from("."),
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn end_to_end_tests_are_jobs_of_their_own_verdict_files_one_job() {
        let harness = names(&["--nocapture"]);
        let e2e = jobs_of(
            &binary("tests/tests/e2e.rs"),
            &names(&["a", "b"]),
            Some(None),
            &harness,
        );
        assert_eq!(e2e.len(), 2);
        assert_eq!(e2e[0].name, "tests/tests/e2e.rs::a");
        assert_eq!(e2e[0].args, ["--exact", "a", "--nocapture"]);
        let verdict = jobs_of(
            &binary("tests/tests/verdict.rs"),
            &names(&["a", "b"]),
            Some(None),
            &[],
        );
        assert_eq!(verdict.len(), 1);
        assert!(verdict[0].args.is_empty());
        assert_eq!(verdict[0].tests, 2);
        let unit = jobs_of(
            &binary("filter-common/src/lib.rs"),
            &names(&["a", "b"]),
            Some(Some("rate")),
            &[],
        );
        assert_eq!(unit[0].args, ["rate"]);
        let chosen = jobs_of(
            &binary("tests/tests/upgrade.rs"),
            &names(&["one"]),
            None,
            &[],
        );
        assert_eq!(chosen[0].args, ["--exact", "one"]);
        assert!(
            jobs_of(
                &binary("tests/tests/query_e2e.rs"),
                &names(&["a"]),
                None,
                &[]
            )[0]
            .alone
        );
    }

    #[test]
    fn jobs_run_longest_first_alone_ones_first_on_the_host() {
        let job = |name: &str, tests, alone| Job {
            name: name.to_owned(),
            path: PathBuf::from("/x"),
            cwd: PathBuf::from("."),
            args: Vec::new(),
            tests,
            alone,
        };
        let mut jobs = vec![
            job("unit", 40, false),
            job("e2e::a", 1, false),
            job("e2e::b", 1, false),
            job("rates::c", 1, true),
        ];
        let measured = [("e2e::a".to_owned(), 5.0), ("unit".to_owned(), 2.0)].into();
        order(&mut jobs, &measured, true);
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        // rates::c alone first; e2e::b not measured: 30 s; then a (5 s), unit (2 s).
        assert_eq!(names, ["rates::c", "e2e::b", "e2e::a", "unit"]);
        order(&mut jobs, &BTreeMap::new(), false);
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        // Nothing measured: 30 s per end-to-end test, 0.5 s per other test
        // (the sort keeps the order of equals).
        assert_eq!(names, ["rates::c", "e2e::b", "e2e::a", "unit"]);
    }

    #[test]
    fn test_result_lines_are_counted() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 14 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 30.55s"
            ),
            Some((14, 0, 1))
        );
        assert_eq!(
            parse_test_result(
                "test result: FAILED. 12 passed; 2 failed; 0 ignored; 0 measured; 3 filtered out; finished in 1.00s"
            ),
            Some((12, 2, 0))
        );
        assert_eq!(parse_test_result("test attach ... ok"), None);
    }
}
