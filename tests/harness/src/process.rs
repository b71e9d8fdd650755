//! Running commands: to completion (with their output in the error when they
//! fail), with input on stdin, or in the background ([`Background`], stopped
//! when dropped). Every child gets `PR_SET_PDEATHSIG`, so nothing we start
//! outlives us, even if we are killed.
//!
//! Nothing here panics or aborts when our own stderr is closed (e.g. the
//! reader of a pipe went away): messages go through [`note`], which ignores
//! write errors, so cleanup in `Drop` always runs to the end.

use std::{
    ffi::OsStr,
    fmt::Display,
    fs,
    io::{self, Write as _},
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::{
        prctl,
        signal::{self, Signal},
    },
    unistd::{Pid, geteuid},
};

use crate::names::unique_name;

/// True if we run as root, which namespaces, nftables and BPF need.
pub fn is_root() -> bool {
    geteuid().is_root()
}

/// Writes a line to stderr, ignoring errors: for messages on the way out
/// (cleanup, `Drop`), where `eprintln!` would panic on a closed stderr.
pub fn note(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes the child of `command` get SIGKILL when the thread that starts it
/// exits, or this process dies: nothing we start outlives us. (It survives
/// `exec`, e.g. through `ip netns exec`, except into set-uid programs.)
pub fn die_with_us(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and allocates nothing; nothing else
    // runs between fork and exec.
    unsafe { command.pre_exec(|| Ok(prctl::set_pdeathsig(Signal::SIGKILL)?)) }
}

/// Runs `command` to completion and returns its output, whatever its exit status.
pub fn output(command: &mut Command) -> anyhow::Result<Output> {
    die_with_us(command)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{}`", describe(command)))
}

/// Runs `command`; fails unless it exits 0, with its stderr in the error. Returns stdout.
pub fn run(command: &mut Command) -> anyhow::Result<String> {
    let out = output(command)?;
    if !out.status.success() {
        let (stderr, stdout) = (
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
        );
        bail!(
            "`{}` failed ({}): {}{}{}",
            describe(command),
            out.status,
            stderr.trim(),
            if stdout.trim().is_empty() { "" } else { "\n" },
            stdout.trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `command` with `input` on its stdin; fails unless it exits 0. Returns stdout.
pub fn run_with_input(command: &mut Command, input: &str) -> anyhow::Result<String> {
    let mut child = die_with_us(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running `{}`", describe(command)))?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(command),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.with_context(|| format!("writing to `{}`", describe(command)))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `command` ignoring its output; for cleanup, where errors do not matter.
/// The child gets a process group of its own, so that a second Ctrl-C at the
/// terminal cannot kill it halfway through the cleanup.
pub(crate) fn quiet(command: &mut Command) {
    let _ = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether a program is installed (in PATH).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `check` every `every` until it returns true; fails after `timeout`.
pub fn wait_until(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?}");
        }
        thread::sleep(every);
    }
}

/// A process started by us in the background; stopped (SIGTERM, then SIGKILL)
/// when dropped. Its stdout and stderr go to a log file that is removed on
/// drop, unless the thread is panicking, when its tail is printed instead.
pub struct Background {
    label: String,
    child: Child,
    /// Where its output goes, unless it was started with `spawn_attached`.
    log: Option<PathBuf>,
}

impl Background {
    /// Starts `command` with output to a log file. See [`die_with_us`]: the
    /// child dies if the thread that started it exits (or this process is
    /// killed), so keep the handle on that thread.
    pub fn spawn(label: &str, mut command: Command) -> anyhow::Result<Self> {
        let log = std::env::temp_dir().join(format!("{}.log", unique_name("wft-bg")));
        let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        command.stdout(file.try_clone()?).stderr(file);
        Self::start(label, command, Some(log))
    }

    /// Like [`Background::spawn`], but the output goes wherever `command` sends
    /// it (by default our own stdout and stderr), e.g. for the lab's user to see.
    pub fn spawn_attached(label: &str, command: Command) -> anyhow::Result<Self> {
        Self::start(label, command, None)
    }

    fn start(label: &str, mut command: Command, log: Option<PathBuf>) -> anyhow::Result<Self> {
        let child = die_with_us(&mut command)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {label}: `{}`", describe(&command)));
        let child = match child {
            Ok(child) => child,
            Err(err) => {
                if let Some(log) = &log {
                    let _ = fs::remove_file(log);
                }
                return Err(err);
            }
        };
        Ok(Self {
            label: label.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed so far (nothing if started with `spawn_attached`).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// Whether it still runs; if it exited, the error says how, with its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited ({status}): {}", self.label, self.log()),
        }
    }

    /// Waits for it to exit by itself; its exit status, or an error after
    /// `timeout` (it is left running).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} still runs after {timeout:?}: {}",
                    self.label,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it now and returns its exit status.
    pub fn stop(mut self) -> anyhow::Result<ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // Our own child, not reaped yet: the pid is still ours.
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        let _ = signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.terminate();
        let Some(path) = &self.log else {
            return;
        };
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            note(format_args!(
                "--- last lines of {} ({}) ---",
                self.label,
                path.display()
            ));
            tail.iter().rev().for_each(note);
        } else {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_names_itself_and_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("`sh -c echo oops >&2; exit 3` failed"),
            "{text}"
        );
        assert!(text.contains("oops"), "{text}");
        assert_eq!(
            run_with_input(&mut Command::new("cat"), "piped").unwrap(),
            "piped"
        );
    }

    #[test]
    fn background_processes_are_stopped_on_drop() {
        let mut sleeper = Background::spawn("sleep", {
            let mut command = Command::new("sleep");
            command.arg("30");
            command
        })
        .unwrap();
        sleeper.check_running().unwrap();
        let pid = sleeper.pid();
        drop(sleeper);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
