//! Part 5: kernel memory of the filter's maps and programs at their default
//! sizes (memlock from fdinfo, via bpftool), the programs' sizes and verifier
//! instruction counts, and filter-ctl's resident memory during `stats --watch`.

use std::{process::Command, thread, time::Duration};

use anyhow::{Context as _, bail};
use harness::{
    lab::WAN_IF,
    process::{Background, run as run_command},
};
use serde_json::Value;

use crate::lab_bench::LabBench;

/// Part 5: kernel memory of the filter's maps and programs at their default
/// sizes (memlock from fdinfo, as bpftool shows it), and filter-ctl's RSS.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MemoryResults {
    /// (map, type, max entries, bytes)
    pub maps: Vec<(String, String, u64, u64)>,
    pub maps_total_bytes: u64,
    /// (program, verified instructions, xlated bytes, jited bytes, memlock bytes)
    pub programs: Vec<(String, u64, u64, u64, u64)>,
    /// filter-ctl `stats --watch 1`: resident and peak resident KiB.
    pub ctl_rss_kib: u64,
    pub ctl_hwm_kib: u64,
}

fn bpftool_json(args: &[&str]) -> anyhow::Result<Value> {
    let out = run_command(Command::new("bpftool").arg("-j").args(args))?;
    serde_json::from_str(&out).with_context(|| format!("parsing bpftool {args:?}: {out}"))
}

pub fn run(lab: &LabBench) -> anyhow::Result<MemoryResults> {
    lab.attach()?;
    let gw = lab.gateway();
    let mut status = lab.ctl.status(gw, Some(WAN_IF))?;
    if status.len() != 1 {
        bail!("status --iface {WAN_IF} shows {} interfaces", status.len());
    }
    let status = status.remove(0);
    let mut result = MemoryResults::default();
    for m in &status.maps {
        let info = bpftool_json(&["map", "show", "id", &m.id.to_string()])?;
        let bytes = info
            .get("bytes_memlock")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        result.maps.push((
            m.name.clone(),
            info.get("type")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            u64::from(m.max_entries),
            bytes,
        ));
        result.maps_total_bytes += bytes;
    }
    for id in [status.xdp_program_id, status.egress_program_id]
        .into_iter()
        .flatten()
    {
        let info = bpftool_json(&["prog", "show", "id", &id.to_string()])?;
        let field = |name: &str| info.get(name).and_then(Value::as_u64).unwrap_or(0);
        // bpftool 7.1 does not show the verifier's count; the kernel's info has it.
        let verified = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == id)
            .and_then(|p| p.verified_instruction_count())
            .unwrap_or(0);
        result.programs.push((
            info.get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            u64::from(verified),
            field("bytes_xlated"),
            field("bytes_jited"),
            field("bytes_memlock"),
        ));
    }
    // filter-ctl while it watches the counters (`ip netns exec` execs it in place).
    let watch = Background::spawn(
        "filter-ctl stats --watch",
        lab.ctl
            .command(gw, ["stats", "--iface", WAN_IF, "--watch", "1"]),
    )?;
    thread::sleep(Duration::from_millis(2500));
    let status_text = std::fs::read_to_string(format!("/proc/{}/status", watch.pid()))?;
    let kib = |key: &str| {
        status_text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    result.ctl_rss_kib = kib("VmRSS:");
    result.ctl_hwm_kib = kib("VmHWM:");
    drop(watch);
    lab.detach()?;
    Ok(result)
}
