//! Part 4: legitimate traffic under attack: TCP request/response (64 bytes
//! each way on one connection) from the internet to a server in the
//! gateway, with and without the DNS flood, with no XDP program, an XDP_PASS
//! program and the filter on `wan0`.

use std::{thread, time::Duration};

use aya::programs::XdpMode;
use harness::{
    kernel,
    lab::{INET_IF, WAN_IF, addr},
    netns::Netns,
    servers::local::TcpEchoServer,
    signals::check_interrupted,
};

use crate::{
    generator::Generator,
    lab_bench::{LabBench, lab_placement},
    object::names,
    options::Options,
    pair,
    stats::Summary,
    traffic::FloodKind,
};

/// What sits on `wan0` in part 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WanConfig {
    None,
    /// `return XDP_PASS`: what any native XDP program costs on this path.
    XdpPass,
    Filter,
}

impl WanConfig {
    pub fn name(self) -> &'static str {
        match self {
            WanConfig::None => "no XDP program",
            WanConfig::XdpPass => "XDP_PASS floor",
            WanConfig::Filter => "this filter",
        }
    }
}

/// Part 4: TCP request/response over `wan0` to a server in the gateway, with
/// and without the flood, with and without the filter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LegitRow {
    pub config: WanConfig,
    pub flood: bool,
    /// Transactions per second.
    pub rate: Summary,
    pub errors: usize,
}

const RR_PORT: u16 = 8080;
const RR_SIZE: usize = 64;

/// Request/response transactions on one connection for `duration`.
fn tcp_rr(client: &Netns, duration: Duration) -> anyhow::Result<f64> {
    use std::io::{Read as _, Write as _};
    let server: std::net::SocketAddr = (addr::GW_WAN4, RR_PORT).into();
    let mut stream = client.tcp_connect(server, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    let request = [0x42u8; RR_SIZE];
    let mut reply = [0u8; RR_SIZE];
    let start = std::time::Instant::now();
    let mut done = 0u64;
    while start.elapsed() < duration {
        stream.write_all(&request)?;
        stream.read_exact(&mut reply)?;
        done += 1;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

pub fn run(
    lab: &LabBench,
    generator: &mut Generator,
    opts: &Options,
) -> anyhow::Result<Vec<LegitRow>> {
    let _server = TcpEchoServer::start(lab.gateway(), (addr::GW_WAN4, RR_PORT).into())?;
    let mut combos = Vec::new();
    for config in [WanConfig::None, WanConfig::XdpPass, WanConfig::Filter] {
        for flood in [false, true] {
            combos.push((config, flood));
        }
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); combos.len()];
    let mut errors = vec![0usize; combos.len()];
    let flood = lab.flood(FloodKind::Dns, 65536, opts.scale_rate_pps, opts.burst);
    let internet = &lab.topology.internet;
    // Three rounds are enough to see the pattern; the time goes to part 2.
    for _round in 0..opts.repeats.min(3) {
        for (i, &(config, with_flood)) in combos.iter().enumerate() {
            check_interrupted()?;
            let floor_prog = match config {
                WanConfig::None => None,
                WanConfig::XdpPass => Some(pair::attach_bench_program(
                    lab.gateway(),
                    WAN_IF,
                    names::PASS,
                    XdpMode::Driver,
                )?),
                WanConfig::Filter => {
                    lab.attach()?;
                    None
                }
            };
            let result = if with_flood {
                // The client runs while the generator floods.
                generator.configure(flood.config)?;
                lab.pin_napi()?;
                let placement = lab_placement(lab.cpus);
                let rr_time = opts.duration.min(Duration::from_secs(2));
                let (_, rate) = generator.run(
                    internet,
                    INET_IF,
                    &flood.frame,
                    rr_time + Duration::from_millis(300),
                    placement,
                    || {
                        thread::sleep(Duration::from_millis(150));
                        tcp_rr(internet, rr_time)
                    },
                )?;
                rate
            } else {
                tcp_rr(internet, opts.duration.min(Duration::from_secs(2)))
            };
            match result {
                Ok(rate) => rates[i].push(rate),
                Err(err) => {
                    errors[i] += 1;
                    rates[i].push(0.0);
                    eprintln!("bench: legit traffic failed: {err:#}");
                }
            }
            eprintln!(
                "bench: legit {:<16} flood {:<3} {:>9.0} transactions/s",
                config.name(),
                if with_flood { "on" } else { "off" },
                rates[i].last().copied().unwrap_or(0.0)
            );
            if config == WanConfig::Filter {
                lab.detach()?;
            }
            drop(floor_prog);
            kernel::wait_no_xdp(lab.gateway(), WAN_IF)?;
        }
    }
    Ok(combos
        .iter()
        .enumerate()
        .map(|(i, &(config, flood))| LegitRow {
            config,
            flood,
            rate: Summary::of(rates[i].iter().copied()),
            errors: errors[i],
        })
        .collect())
}
