//! What the benchmark reads from and does to the system: CPU time of the
//! machine, of this process and of kernel threads; NAPI threads (find, pin,
//! make real-time); interface statistics and features (`ethtool`).

use std::{collections::BTreeSet, fs, thread, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use harness::{
    netns::Netns,
    process::{run, wait_until},
};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    time::{ClockId, clock_gettime},
    unistd::{Pid, SysconfVar, sysconf},
};

/// Busy and total time of all CPUs from the first line of /proc/stat, in ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub busy: u64,
    pub total: u64,
}

impl CpuTicks {
    pub fn read() -> anyhow::Result<Self> {
        let text = fs::read_to_string("/proc/stat")?;
        Self::parse(&text).ok_or_else(|| anyhow!("unexpected /proc/stat"))
    }

    /// `cpu user nice system idle iowait irq softirq steal guest guest_nice`:
    /// busy is everything but idle and iowait (guest time is inside user).
    pub fn parse(text: &str) -> Option<Self> {
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let get = |i: usize| fields.get(i).copied().unwrap_or(0);
        let total: u64 = (0..8).map(get).sum();
        Some(Self {
            busy: total - get(3) - get(4),
            total,
        })
    }
}

/// Nanoseconds per clock tick of /proc/stat (USER_HZ).
pub fn tick_ns() -> u64 {
    let hz = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    1_000_000_000 / u64::try_from(hz).unwrap_or(100).max(1)
}

pub fn cpu_count() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// CPU time this process used so far (all threads, user and kernel), in ns.
pub fn process_cpu_ns() -> u64 {
    clock_ns(ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

pub fn monotonic_ns() -> u64 {
    clock_ns(ClockId::CLOCK_MONOTONIC)
}

fn clock_ns(clock: ClockId) -> u64 {
    // These clocks exist on every Linux.
    let ts = clock_gettime(clock).expect("clock_gettime");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Time a task has run on a CPU, in ns: the first field of /proc/PID/schedstat.
/// Exact (not sampled by ticks), which matters for bursty NAPI work.
pub fn schedstat_ns(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/schedstat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_schedstat(&text).ok_or_else(|| anyhow!("unexpected {path}: {text:?}"))
}

pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The command name of a task.
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// Kernel threads whose name starts with `napi/` (threaded NAPI), by pid.
pub fn napi_threads() -> BTreeSet<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| comm(*pid).is_some_and(|c| c.starts_with("napi/")))
        .collect()
}

/// Switches `iface` in `ns` to threaded NAPI and returns the pid of the NAPI
/// thread it gets (veth: one per receive queue; we use one queue). The thread
/// is named `napi/IFACE-ID`; other namespaces may have an interface of the
/// same name, so the thread is recognised as the one that appears now.
pub fn threaded_napi(ns: &Netns, iface: &str) -> anyhow::Result<u32> {
    let before = napi_threads();
    let path = format!("/sys/class/net/{iface}/threaded");
    ns.run(["sh", "-c", &format!("echo 1 > {path}")])
        .with_context(|| format!("enabling threaded NAPI on {iface} (is NAPI on: GRO or XDP?)"))?;
    let prefix = format!("napi/{iface}-");
    let mut found = None;
    wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
        found = napi_threads()
            .difference(&before)
            .copied()
            .find(|pid| comm(*pid).is_some_and(|c| c.starts_with(&prefix)));
        Ok(found.is_some())
    })
    .with_context(|| format!("no NAPI thread appeared for {iface} in {}", ns.name()))?;
    found.ok_or_else(|| anyhow!("unreachable"))
}

/// Lets task `pid` (0: the calling thread) run on `cpus` only.
fn set_affinity(pid: u32, cpus: impl IntoIterator<Item = usize>) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    for cpu in cpus {
        set.set(cpu)?;
    }
    sched_setaffinity(Pid::from_raw(i32::try_from(pid)?), &set)?;
    Ok(())
}

/// Pins task `pid` (0: the calling thread) to `cpu`.
pub fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    set_affinity(pid, [cpu]).with_context(|| format!("pinning task {pid} to CPU {cpu}"))
}

/// Lets task `pid` (0: the calling thread) run on every CPU again.
pub fn unpin(pid: u32) -> anyhow::Result<()> {
    set_affinity(pid, 0..cpu_count()).with_context(|| format!("unpinning task {pid}"))
}

/// Makes task `pid` (0: the calling thread) SCHED_FIFO at `priority`, or
/// SCHED_OTHER when `priority` is 0.
pub fn set_fifo(pid: u32, priority: i32) -> anyhow::Result<()> {
    let policy = if priority > 0 {
        libc::SCHED_FIFO
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // nix has no sched_setscheduler.
    // SAFETY: param is a valid sched_param, alive for the call.
    let rc = unsafe { libc::sched_setscheduler(pid as libc::pid_t, policy, &param) };
    if rc != 0 {
        bail!(
            "setting the scheduling policy of task {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// `ethtool -S IFACE` in `ns`, as (name, value) pairs.
pub fn ethtool_stats(ns: &Netns, iface: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let out = run(ns.command("ethtool").args(["-S", iface]))?;
    Ok(parse_ethtool_stats(&out))
}

/// `ethtool -K IFACE FEATURE on|off ...` in `ns`.
pub fn ethtool_features(ns: &Netns, iface: &str, features: &[&str]) -> anyhow::Result<()> {
    run(ns.command("ethtool").args(["-K", iface]).args(features)).map(drop)
}

/// What an interface's NAPI thread spent between [`NapiMeter::start`] and
/// [`NapiMeter::finish`], and how many frames it took off its ring
/// (`rx_queue_0_xdp_packets`): the cost per packet of whatever is attached.
pub struct NapiMeter<'a> {
    ns: &'a Netns,
    iface: &'a str,
    napi: u32,
    packets: u64,
    cpu_ns: u64,
}

const RX_PACKETS: &str = "rx_queue_0_xdp_packets";

impl<'a> NapiMeter<'a> {
    pub fn start(ns: &'a Netns, iface: &'a str, napi: u32) -> anyhow::Result<Self> {
        Ok(Self {
            packets: stat(&ethtool_stats(ns, iface)?, RX_PACKETS),
            cpu_ns: schedstat_ns(napi)?,
            ns,
            iface,
            napi,
        })
    }

    /// (frames, CPU ns) since the start.
    pub fn finish(self) -> anyhow::Result<(u64, u64)> {
        let cpu_ns = schedstat_ns(self.napi)? - self.cpu_ns;
        let packets = stat(&ethtool_stats(self.ns, self.iface)?, RX_PACKETS) - self.packets;
        Ok((packets, cpu_ns))
    }
}

pub fn parse_ethtool_stats(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// One statistic of `ethtool -S` output, 0 if absent.
pub fn stat(stats: &[(String, u64)], name: &str) -> u64 {
    stats.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_excludes_idle_and_iowait() {
        let text = "cpu  100 5 50 1000 20 3 7 2 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(
            CpuTicks::parse(text),
            Some(CpuTicks {
                busy: 100 + 5 + 50 + 3 + 7 + 2,
                total: 1187
            })
        );
        assert_eq!(CpuTicks::parse("intr 1 2\n"), None);
    }

    #[test]
    fn schedstat_first_field_is_run_time() {
        assert_eq!(parse_schedstat("123456789 4567 89\n"), Some(123_456_789));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn ethtool_stats_are_parsed() {
        let text = "NIC statistics:\n     peer_ifindex: 5\n     rx_queue_0_xdp_packets: 1234\n     rx_queue_0_xdp_drops: 12\n";
        let stats = parse_ethtool_stats(text);
        assert_eq!(stat(&stats, "rx_queue_0_xdp_packets"), 1234);
        assert_eq!(stat(&stats, "rx_queue_0_xdp_drops"), 12);
        assert_eq!(stat(&stats, "missing"), 0);
    }
}
