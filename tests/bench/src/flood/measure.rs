//! One measurement of part 2: a flood at the configured rate into the DUT
//! as it is, the DUT NAPI thread's CPU time and the frames it took, and how
//! busy the rest of the machine was meanwhile ([`Others`]).

use std::{thread, time::Duration};

use harness::signals::check_interrupted;

use super::sources;
use crate::{
    generator::{self, GenRun, Generator, Placement},
    options::Options,
    pair::{self, DUT_IF, GENERATOR_PRIORITY, Pair},
    sys::{self, NapiMeter},
    traffic::{self, FloodKind, Target},
};

/// CPU used by processes other than ours and the two NAPI threads, as a share
/// of the whole machine, between two readings.
pub struct Others {
    ticks: sys::CpuTicks,
    process_ns: u64,
    napi_ns: u64,
    wall_ns: u64,
}

impl Others {
    pub fn start(napi: &[u32]) -> anyhow::Result<Self> {
        Ok(Self {
            ticks: sys::CpuTicks::read()?,
            process_ns: sys::process_cpu_ns(),
            napi_ns: napi
                .iter()
                .map(|pid| sys::schedstat_ns(*pid).unwrap_or(0))
                .sum(),
            wall_ns: sys::monotonic_ns(),
        })
    }

    pub fn share(&self, napi: &[u32]) -> anyhow::Result<f64> {
        let now = Self::start(napi)?;
        let busy_ns = (now.ticks.busy - self.ticks.busy) * sys::tick_ns();
        let ours = (now.process_ns - self.process_ns) + (now.napi_ns - self.napi_ns);
        let capacity = (now.wall_ns - self.wall_ns) as f64 * sys::cpu_count() as f64;
        Ok((busy_ns.saturating_sub(ours) as f64 / capacity).max(0.0))
    }
}

/// Waits up to `patience` for the machine to be quiet (others below `limit`).
pub fn wait_quiet(napi: &[u32], limit: f64, patience: Duration) -> anyhow::Result<f64> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let start = Others::start(napi)?;
        thread::sleep(Duration::from_millis(300));
        let share = start.share(napi)?;
        if share <= limit || std::time::Instant::now() >= deadline {
            return Ok(share);
        }
        check_interrupted()?;
    }
}

/// One measurement: `kind` at the configured rate into the DUT as it is now.
pub fn measure(
    pair: &Pair,
    generator: &mut Generator,
    kind: FloodKind,
    opts: &Options,
    duration: Duration,
) -> anyhow::Result<(GenRun, u64, u64, f64)> {
    let v6 = false;
    let mut flood = traffic::flood(
        kind,
        Target {
            src_mac: pair.gen_mac,
            dst_mac: pair.dut_mac,
            dst: Pair::dut_addr(v6),
            sources: opts.sources.unwrap_or_else(|| sources(kind)),
        },
    );
    if opts.fixed_fields {
        flood.config.port_off = 0;
        flood.config.rand_off = 0;
    }
    generator::pace(&mut flood.config, opts.rate_pps, opts.burst);
    generator.self_test(&flood.frame, flood.config)?;
    pair.pin_napi()?;
    let napi = [pair.dut_napi, pair.gen_napi];
    let meter = NapiMeter::start(&pair.dut, DUT_IF, pair.dut_napi)?;
    let others = Others::start(&napi)?;
    let placement = Placement {
        cpu: pair.cpus.generator,
        rt_priority: if opts.rt_generator {
            GENERATOR_PRIORITY
        } else {
            0
        },
    };
    let run = generator.flood(
        &pair.sender,
        pair::GEN_IF,
        &flood.frame,
        duration,
        placement,
    )?;
    let others_share = others.share(&napi)?;
    let (packets, cpu_ns) = meter.finish()?;
    Ok((run, packets, cpu_ns, others_share))
}
