//! Named points inside the commands that change the filter, where the fault
//! tests stop filter-ctl to kill it (SIGKILL) or to let another command run
//! before it goes on. Without the environment variables below a point does
//! nothing but compare a cached `None`.
//!
//! - `FILTER_CTL_FAULT_LOG=FILE`: append each point's name to FILE, so a
//!   test learns which points a command passes.
//! - `FILTER_CTL_FAULT_STOP=N` (the N-th point reached, from 1) or
//!   `=NAME` (the first point of that name): stop there with SIGSTOP. The
//!   test then sends SIGKILL (a kill at exactly that step) or SIGCONT.
//!
//! Points are placed between the steps whose order matters: after each
//! write that another process or the programs could see.

use std::{
    fs::OpenOptions,
    io::Write as _,
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use nix::sys::signal::{Signal, raise};

pub const LOG_ENV: &str = "FILTER_CTL_FAULT_LOG";
pub const STOP_ENV: &str = "FILTER_CTL_FAULT_STOP";

enum Stop {
    Nth(u32),
    Named(String),
}

struct Hooks {
    log: Option<String>,
    stop: Option<Stop>,
}

static HOOKS: OnceLock<Option<Hooks>> = OnceLock::new();
static REACHED: AtomicU32 = AtomicU32::new(0);

fn hooks() -> Option<&'static Hooks> {
    HOOKS
        .get_or_init(|| {
            let log = std::env::var(LOG_ENV).ok();
            let stop = std::env::var(STOP_ENV).ok().map(|stop| match stop.parse() {
                Ok(n) => Stop::Nth(n),
                Err(_) => Stop::Named(stop),
            });
            (log.is_some() || stop.is_some()).then_some(Hooks { log, stop })
        })
        .as_ref()
}

/// A point named `name` (`attach: maps pinned`): logs it and stops here if
/// asked to (see the module documentation).
pub fn point(name: &str) {
    let Some(hooks) = hooks() else {
        return;
    };
    let n = REACHED.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(path) = &hooks.log
        && let Ok(mut log) = OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(log, "{name}");
    }
    let stop = match &hooks.stop {
        Some(Stop::Nth(at)) => *at == n,
        Some(Stop::Named(at)) => at == name,
        None => false,
    };
    if stop {
        let _ = raise(Signal::SIGSTOP);
    }
}
