//! Booting a guest under qemu: KVM when it can boot Debian's kernels, TCG
//! otherwise; the serial console streamed live and kept in a log; a guest
//! that goes silent or overruns its time is killed, never waited on forever.

use std::{
    fs::{self, File},
    io::{BufRead as _, BufReader, Read, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::describe;

/// How the guest's CPU is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM if this machine's KVM can boot a standard kernel, else TCG.
    Auto,
    Kvm,
    /// qemu's emulator: works anywhere, several times slower.
    Tcg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        }
    }

    /// The guest's CPUs: this machine's count under KVM, one under TCG. With
    /// a host thread per guest CPU, qemu 7.2 once ran a stale translation of
    /// kernel code another CPU had just patched (a static key's int3: "Oops:
    /// int3" in netif_rx_internal, a guest panic); and on a 2-core machine a
    /// second emulated CPU buys little but contention: the timing-sensitive
    /// end-to-end tests (floods at a set rate, lifetimes of seconds) lost
    /// frames and deadlines when the guest's tests ran in parallel.
    fn cpus(self) -> usize {
        match self {
            Accel::Kvm => thread::available_parallelism().map_or(2, |n| n.get()),
            Accel::Tcg => 1,
        }
    }
}

/// On the kernel command line of a guest under TCG: the guest's worker then
/// sets harness::kernel::EMULATED_ENV for the tests. (A parameter with a dot
/// is a module's, which the kernel keeps without complaint.)
pub const EMULATED_PARAM: &str = "vm_test.emulated=1";

/// The accelerator to use, with the reason when it is not KVM.
pub fn choose(choice: AccelChoice) -> (Accel, Option<String>) {
    match choice {
        AccelChoice::Kvm => (Accel::Kvm, None),
        AccelChoice::Tcg => (Accel::Tcg, Some("TCG asked for".to_owned())),
        AccelChoice::Auto => match kvm_unusable() {
            None => (Accel::Kvm, None),
            Some(why) => (Accel::Tcg, Some(why)),
        },
    }
}

/// Why KVM cannot run Debian's kernels here, or None if it looks usable.
fn kvm_unusable() -> Option<String> {
    if let Err(err) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Some(format!("/dev/kvm is not usable ({err})"));
    }
    let module = |name: &str| Path::new("/sys/module").join(name).exists();
    // PVM (kvm_pvm) runs nested guests without hardware virtualization, but only
    // kernels built as PVM guests: a Debian kernel hangs in its decompressor.
    if module("kvm_pvm") && !module("kvm_intel") && !module("kvm_amd") {
        return Some(
            "this machine's KVM is PVM (kvm_pvm), which boots only PVM guest kernels, not Debian's"
                .to_owned(),
        );
    }
    None
}

/// One guest boot.
pub struct Boot<'a> {
    pub accel: Accel,
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    /// 9p shares: (host directory, mount tag, read-only).
    pub shares: Vec<(&'a Path, &'a str, bool)>,
    pub memory_mib: u32,
    /// The whole run, boot to power-off.
    pub timeout: Duration,
    /// The longest the console may stay silent.
    pub silence: Duration,
    /// The longest the guest may take to print the ready marker.
    pub ready_within: Duration,
    /// Where the console is kept.
    pub log: PathBuf,
    /// A console line starting with this marks the guest as booted.
    pub ready_marker: &'a str,
    /// Put before each console line on stdout (not in the log), to tell
    /// guests that run at once apart.
    pub label: &'a str,
    /// Added to qemu's nice value (`nice -n`), 0 for none.
    pub niceness: u8,
}

/// How a boot ended.
pub struct Ended {
    /// qemu's exit status, None if it was killed for a timeout.
    pub status: Option<ExitStatus>,
    /// Why it was killed.
    pub killed_because: Option<String>,
    /// From qemu's start to the ready marker, if it appeared.
    pub ready_after: Option<Duration>,
    /// qemu's whole run.
    pub elapsed: Duration,
}

impl Boot<'_> {
    fn command(&self) -> Command {
        let mut qemu = if self.niceness > 0 {
            let mut nice = Command::new("nice");
            nice.arg("-n")
                .arg(self.niceness.to_string())
                .arg("qemu-system-x86_64");
            nice
        } else {
            Command::new("qemu-system-x86_64")
        };
        match self.accel {
            Accel::Kvm => qemu.args(["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => qemu.args(["-accel", "tcg", "-cpu", "max"]),
        };
        // No default devices, and qboot: a firmware that boots the kernel at
        // once and prints nothing (SeaBIOS clears the terminal).
        qemu.args(["-nodefaults", "-no-user-config", "-bios", "qboot.rom"])
            .args(["-machine", "pc", "-display", "none", "-serial", "stdio"])
            .arg("-m")
            .arg(self.memory_mib.to_string())
            .arg("-smp")
            .arg(self.accel.cpus().to_string())
            // A kernel panic reboots (panic=-1), and a reboot ends qemu.
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initramfs)
            .arg("-append")
            .arg(self.cmdline());
        for (dir, tag, read_only) in &self.shares {
            let mut spec = format!(
                "local,path={},mount_tag={tag},security_model=none,multidevs=remap",
                dir.display()
            );
            if *read_only {
                spec.push_str(",readonly=on");
            }
            qemu.arg("-virtfs").arg(spec);
        }
        qemu
    }

    /// The kernel's command line; under TCG it tells the guest it is
    /// emulated ([`EMULATED_PARAM`]).
    fn cmdline(&self) -> String {
        let mut cmdline = "console=ttyS0 panic=-1 oops=panic loglevel=4 mitigations=off \
                           rdinit=/init 8250.nr_uarts=1"
            .to_owned();
        if self.accel == Accel::Tcg {
            cmdline.push(' ');
            cmdline.push_str(EMULATED_PARAM);
        }
        cmdline
    }

    /// Boots, streams the console to stdout and the log, returns when qemu
    /// exits or is killed.
    pub fn run(&self) -> anyhow::Result<Ended> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut log =
            File::create(&self.log).with_context(|| format!("creating {}", self.log.display()))?;
        writeln!(log, "$ {}", describe(&cmd))?;
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", describe(&cmd)))?;
        let lines = console_lines(&mut child);

        let mut ready_after = None;
        let mut killed_because = None;
        let deadline = start + self.timeout;
        let ready_deadline = start + self.ready_within;
        loop {
            let now = Instant::now();
            let mut wait = self.silence.min(deadline.saturating_duration_since(now));
            if ready_after.is_none() {
                wait = wait.min(ready_deadline.saturating_duration_since(now));
            }
            match lines.recv_timeout(wait) {
                Ok(line) => {
                    if ready_after.is_none() && line.starts_with(self.ready_marker) {
                        ready_after = Some(start.elapsed());
                    }
                    println!("{}{line}", self.label);
                    writeln!(log, "{line}")?;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    killed_because = Some(if now >= deadline {
                        format!("the guest ran longer than {} s", self.timeout.as_secs())
                    } else if ready_after.is_none() && now >= ready_deadline {
                        format!(
                            "the guest did not come up within {} s",
                            self.ready_within.as_secs()
                        )
                    } else {
                        format!("the guest printed nothing for {} s", self.silence.as_secs())
                    });
                    // Our own child: killing it ends the console readers too.
                    let _ = child.kill();
                    break;
                }
            }
        }
        let status = child.wait().context("waiting for qemu")?;
        // Whatever the readers still hold after a kill.
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
            println!("{}{line}", self.label);
            writeln!(log, "{line}")?;
        }
        Ok(Ended {
            status: killed_because.is_none().then_some(status),
            killed_because,
            ready_after,
            elapsed: start.elapsed(),
        })
    }
}

/// The console (qemu's stdout) and qemu's own messages (stderr), line by line,
/// cleaned of carriage returns and terminal escape sequences.
fn console_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let send = send.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut raw = Vec::new();
            while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
                if send.send(printable(&raw)).is_err() {
                    break;
                }
                raw.clear();
            }
        });
    }
    receive
}

/// A console line without its line ending, control characters or ANSI escape sequences.
fn printable(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters final-byte; other escapes are two characters.
                if chars.next_if_eq(&'[').is_some() {
                    while chars.next().is_some_and(|c| !('@'..='~').contains(&c)) {}
                } else {
                    chars.next();
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `count` lines of the console log, to show with a failure.
pub fn log_tail(log: &Path, count: usize) -> anyhow::Result<String> {
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(count);
    Ok(lines[start..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_lose_escapes_and_carriage_returns() {
        assert_eq!(printable(b"\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\n"), "SeaBIOS");
        assert_eq!(printable(b"test a ... ok\r\n"), "test a ... ok");
        assert_eq!(printable(b"\x1b[0m\x1b[1;32mgreen\x1b[0m\n"), "green");
        assert_eq!(printable(b"a\tb\n"), "a\tb");
    }
}
