//! Ctrl-C for long runs (the lab, the benchmark): SIGINT, SIGTERM and SIGHUP
//! set a flag that every step checks ([`check_interrupted`], [`pause`]), so
//! that `?` unwinds through the guards (namespaces, pins, servers) and they
//! clean up on the way out.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Set by SIGINT, SIGTERM or SIGHUP once [`catch_signals`] ran.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Installs the handler. Without SA_RESTART, so that a long system call in
/// progress (the benchmark's BPF_PROG_RUN) ends with EINTR.
pub fn catch_signals() -> anyhow::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { signal::sigaction(sig, &action) }
            .with_context(|| format!("installing a handler for {sig}"))?;
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Fails once Ctrl-C was pressed, so that `?` unwinds to the cleanup.
pub fn check_interrupted() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `duration`, waking early (with an error) on Ctrl-C.
pub fn pause(duration: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        check_interrupted()?;
        thread::sleep(Duration::from_millis(50).min(deadline - Instant::now()));
    }
    check_interrupted()
}
