//! The flood generator: `bench_gen` run through BPF_PROG_RUN in XDP
//! live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) on the generator's veth.
//!
//! The kernel builds frames from one template, runs the program on each, and
//! transmits those it returns XDP_TX for out of the interface named in the
//! context (`ingress_ifindex`), i.e. into the peer's receive ring, like a NIC
//! would. ONE long call per measurement (each call costs two
//! synchronize_rcu): `repeat` is huge, and a timer thread interrupts the call
//! with a signal (the kernel loop checks `signal_pending` and returns EINTR).
//! The program paces itself (see bench-ebpf), so the offered rate is fixed.

use std::{
    fs,
    sync::{
        Mutex, Once,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::Array,
    programs::{ProgramError, TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
};
use harness::{netns::Netns, signals::interrupted};
use nix::{
    net::if_::if_nametoindex,
    sched::{CloneFlags, setns},
    sys::{
        pthread::{Pthread, pthread_kill, pthread_self},
        signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal},
    },
};

use crate::{
    object::{self, GenConfig, GenState, names},
    sys, traffic,
};

/// Frames per batch of the live-frames loop (the kernel's default is 64, max 256).
pub const BATCH: u32 = 64;

/// Where the generator runs and how.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    pub cpu: usize,
    /// SCHED_FIFO priority of the generating thread; 0: normal scheduling.
    pub rt_priority: i32,
}

/// What one generator call did.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenRun {
    /// Frames sent (XDP_TX).
    pub sent: u64,
    /// Schedule restarts after a stall (the generator was preempted).
    pub restarts: u64,
    /// Wall time of the call.
    pub seconds: f64,
}

impl GenRun {
    pub fn rate_pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        }
    }
}

pub struct Generator {
    ebpf: Ebpf,
}

static HANDLER: Once = Once::new();

extern "C" fn on_stop_signal(_: libc::c_int) {}

/// A handler for SIGUSR1 without SA_RESTART, so that the signal ends the
/// BPF_PROG_RUN call with EINTR instead of restarting it.
fn install_stop_handler() {
    HANDLER.call_once(|| {
        let action = SigAction::new(
            SigHandler::Handler(on_stop_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing at all.
        let _ = unsafe { signal::sigaction(Signal::SIGUSR1, &action) };
    });
}

/// XDP_TX.
const fn aya_ebpf_xdp_tx() -> u32 {
    3
}

/// The kernel's `struct xdp_md` as BPF_PROG_RUN takes it in `ctx_in`.
fn xdp_md(frame_len: usize, ifindex: u32) -> [u8; 24] {
    let mut md = [0u8; 24];
    // data = 0, data_end = length, data_meta = 0, ingress_ifindex, rx_queue_index = 0.
    md[4..8].copy_from_slice(&(frame_len as u32).to_ne_bytes());
    md[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    md
}

impl Generator {
    pub fn load() -> anyhow::Result<Self> {
        install_stop_handler();
        let mut ebpf = object::load()?;
        let program: &mut Xdp = ebpf
            .program_mut(names::GENERATOR)
            .ok_or_else(|| anyhow!("no {} in the bench object", names::GENERATOR))?
            .try_into()?;
        program.load().context("loading the generator")?;
        Ok(Self { ebpf })
    }

    /// Sets what the next call rewrites and its pace, and zeroes the counters.
    pub fn configure(&mut self, config: GenConfig) -> anyhow::Result<()> {
        let mut map: Array<_, GenConfig> =
            Array::try_from(self.ebpf.map_mut(names::GEN_CONFIG).expect("GEN_CONFIG"))?;
        map.set(0, &config, 0)?;
        let mut state: Array<_, GenState> =
            Array::try_from(self.ebpf.map_mut(names::GEN_STATE).expect("GEN_STATE"))?;
        state.set(0, &GenState::default(), 0)?;
        Ok(())
    }

    pub fn state(&self) -> anyhow::Result<GenState> {
        let state: Array<_, GenState> =
            Array::try_from(self.ebpf.map(names::GEN_STATE).expect("GEN_STATE"))?;
        Ok(state.get(&0, 0)?)
    }

    /// Runs the generator (unpaced, not live) on `frame` a few times and checks
    /// that every frame it makes has valid IP and UDP/TCP checksums and
    /// changes source and port: a wrong rewrite would make the victim drop
    /// the flood early and cheaply, and the benchmark would measure nothing.
    pub fn self_test(&mut self, frame: &[u8], config: GenConfig) -> anyhow::Result<()> {
        let mut unpaced = config;
        unpaced.interval_fp16 = 0;
        unpaced.ahead_fp16 = 0;
        self.configure(unpaced)?;
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..16 {
            let mut out = vec![0u8; frame.len()];
            let result = self.program().test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })?;
            if result.return_value != aya_ebpf_xdp_tx() {
                bail!(
                    "the generator returned {} on its template",
                    result.return_value
                );
            }
            traffic::checksums_ok(&out).map_err(|err| anyhow!("generated frame {n}: {err}"))?;
            let at = usize::from(config.src_off);
            seen.insert(out[at..at + 4].to_vec());
        }
        if config.src_count > 1 && seen.len() < 2 {
            bail!("the generator does not vary the source address");
        }
        self.configure(config)
    }

    fn program(&self) -> &Xdp {
        self.ebpf
            .program(names::GENERATOR)
            .expect("loaded")
            .try_into()
            .expect("XDP")
    }

    /// [`Generator::run`] with nothing to do meanwhile, then a pause for the
    /// victim to drain its ring before it is measured.
    pub fn flood(
        &self,
        ns: &Netns,
        iface: &str,
        frame: &[u8],
        duration: Duration,
        placement: Placement,
    ) -> anyhow::Result<GenRun> {
        let (run, ()) = self.run(ns, iface, frame, duration, placement, || {})?;
        thread::sleep(Duration::from_millis(20));
        Ok(run)
    }

    /// Sends `frame`, rewritten per packet as configured, out of `iface` in
    /// `ns` for `duration`, from a thread pinned as `placement` says.
    /// `during` runs on the calling thread meanwhile (e.g. to sample the victim)
    /// and its result is returned with the generator's counts.
    pub fn run<T>(
        &self,
        ns: &Netns,
        iface: &str,
        frame: &[u8],
        duration: Duration,
        placement: Placement,
        during: impl FnOnce() -> T,
    ) -> anyhow::Result<(GenRun, T)> {
        let before = self.state()?;
        let netns_file = fs::File::open(ns.path())
            .with_context(|| format!("opening {}", ns.path().display()))?;
        let program = self.program();
        let done = AtomicBool::new(false);
        let thread_id: Mutex<Option<Pthread>> = Mutex::new(None);
        let (outcome, during_result, seconds) = thread::scope(|scope| {
            let worker = scope.spawn(|| -> anyhow::Result<()> {
                let result = (|| {
                    // Only this thread changes namespace.
                    setns(&netns_file, CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("entering {}", ns.name()))?;
                    let ifindex = if_nametoindex(iface)
                        .with_context(|| format!("no interface {iface} in {}", ns.name()))?;
                    sys::pin(0, placement.cpu)?;
                    if placement.rt_priority > 0 {
                        sys::set_fifo(0, placement.rt_priority)?;
                    }
                    *thread_id.lock().unwrap() = Some(pthread_self());
                    let ctx = xdp_md(frame.len(), ifindex);
                    let result = program.test_run(TestRunOptions {
                        data_in: Some(frame),
                        ctx_in: Some(&ctx),
                        repeat: u32::MAX,
                        attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                        ..Default::default()
                    });
                    match result {
                        Ok(_) => Ok(()),
                        Err(ProgramError::SyscallError(err))
                            if err.io_error.raw_os_error() == Some(libc::EINTR) =>
                        {
                            Ok(())
                        }
                        Err(err) => Err(anyhow!(err).context("BPF_PROG_RUN in live-frames mode")),
                    }
                })();
                done.store(true, Ordering::Release);
                result
            });
            let start = Instant::now();
            // Wait for the thread to be ready (or fail) before timing.
            while thread_id.lock().unwrap().is_none() && !done.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(1));
            }
            let during_result = during();
            let remaining = duration.saturating_sub(start.elapsed());
            let deadline = Instant::now() + remaining;
            while Instant::now() < deadline && !done.load(Ordering::Acquire) && !interrupted() {
                thread::sleep(Duration::from_millis(5).min(deadline - Instant::now()));
            }
            // Interrupt the call; repeat in case the signal came just before it started.
            while !done.load(Ordering::Acquire) {
                // The thread is alive until `done` is set, and scoped.
                if let Some(id) = *thread_id.lock().unwrap() {
                    let _ = pthread_kill(id, Signal::SIGUSR1);
                }
                thread::sleep(Duration::from_millis(20));
            }
            let seconds = start.elapsed().as_secs_f64();
            let outcome = worker
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the generator thread panicked")));
            (outcome, during_result, seconds)
        });
        outcome?;
        let after = self.state()?;
        Ok((
            GenRun {
                sent: after.sent - before.sent,
                restarts: after.restarts - before.restarts,
                seconds,
            },
            during_result,
        ))
    }
}

/// Paces `config` at `rate_pps` (0: as fast as possible) in bursts of `burst`.
pub fn pace(config: &mut GenConfig, rate_pps: f64, burst: u32) {
    config.interval_fp16 = interval_fp16(rate_pps);
    config.ahead_fp16 = config.interval_fp16 * u64::from(burst.max(1) - 1);
}

/// The pacing interval of [`GenConfig`] for `rate_pps` (0: unpaced).
pub fn interval_fp16(rate_pps: f64) -> u64 {
    if rate_pps <= 0.0 {
        0
    } else {
        (16.0e9 / rate_pps).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_interval_is_in_sixteenths_of_a_nanosecond() {
        assert_eq!(interval_fp16(1e6), 16_000);
        assert_eq!(interval_fp16(3e6), 5_333);
        assert_eq!(interval_fp16(0.0), 0);
        let mut config = GenConfig::default();
        pace(&mut config, 1e6, 4);
        assert_eq!((config.interval_fp16, config.ahead_fp16), (16_000, 48_000));
        pace(&mut config, 1e6, 1);
        assert_eq!(config.ahead_fp16, 0);
    }

    #[test]
    fn xdp_md_names_length_and_interface() {
        let md = xdp_md(60, 7);
        assert_eq!(u32::from_ne_bytes(md[4..8].try_into().unwrap()), 60);
        assert_eq!(u32::from_ne_bytes(md[12..16].try_into().unwrap()), 7);
        assert_eq!(md[..4], [0; 4]);
    }
}
