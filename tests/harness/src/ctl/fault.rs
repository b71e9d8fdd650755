//! Stopping filter-ctl inside a command, at its fault points (filter-ctl's
//! `fault` module: `FILTER_CTL_FAULT_LOG`, `FILTER_CTL_FAULT_STOP`), to kill
//! it there or to run something else before it goes on; and killing it
//! after a delay, between the points.

use std::{
    ffi::OsStr,
    fs,
    process::{Child, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::FilterCtl;
use crate::{netns::Netns, process::describe};

/// filter-ctl's environment variables for its fault points.
pub const LOG_ENV: &str = "FILTER_CTL_FAULT_LOG";
pub const STOP_ENV: &str = "FILTER_CTL_FAULT_STOP";

/// A filter-ctl running a command, started by [`FilterCtl::start`].
pub struct Running {
    child: Child,
    what: String,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until it is stopped at its fault point (`Ok(true)`) or has
    /// ended (`Ok(false)`: it never reached the point).
    pub fn wait_stopped(&mut self) -> anyhow::Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(false);
            }
            let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
            // The state follows the command name in parentheses.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            if state == Some("T") {
                return Ok(true);
            }
            if Instant::now() > deadline {
                bail!("{} neither stopped nor ended within 60 s", self.what);
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// True if it has ended (without waiting).
    pub fn has_ended(&mut self) -> bool {
        self.child.try_wait().is_ok_and(|status| status.is_some())
    }

    /// SIGKILL, wherever it is, and waits for it.
    pub fn kill(mut self) -> anyhow::Result<ExitStatus> {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        Ok(self.child.wait()?)
    }

    /// Sends `signal` (SIGTERM, ...) and waits for it to end.
    pub fn signal(mut self, signal: Signal) -> anyhow::Result<ExitStatus> {
        let _ = kill(Pid::from_raw(self.pid() as i32), signal);
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGCONT);
        Ok(self.child.wait()?)
    }

    /// Lets it go on (SIGCONT) and waits for its output.
    pub fn resume(self) -> anyhow::Result<Output> {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGCONT);
        self.finish()
    }

    /// Waits for it to end; its output.
    pub fn finish(self) -> anyhow::Result<Output> {
        self.child
            .wait_with_output()
            .with_context(|| format!("waiting for {}", self.what))
    }
}

impl FilterCtl {
    /// Starts `filter-ctl ARGS` in `ns`, to stop at `stop`: the N-th fault
    /// point (`"3"`) or the first of a name; `None`: no stop.
    pub fn start<I, S>(&self, ns: &Netns, args: I, stop: Option<&str>) -> anyhow::Result<Running>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(ns, args);
        if let Some(stop) = stop {
            command.env(STOP_ENV, stop);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = describe(&command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Running { child, what })
    }

    /// The fault points `filter-ctl ARGS` passes in `ns`, in order, and its
    /// output (the command runs to its end).
    pub fn fault_points<I, S>(&self, ns: &Netns, args: I) -> anyhow::Result<(Output, Vec<String>)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = tempfile::NamedTempFile::new()?;
        let mut command = self.command(ns, args);
        command.env(LOG_ENV, log.path());
        let out = crate::process::output(&mut command)?;
        let points = fs::read_to_string(log.path())?
            .lines()
            .map(str::to_owned)
            .collect();
        Ok((out, points))
    }
}
