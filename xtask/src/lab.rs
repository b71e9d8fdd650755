//! `cargo xtask lab`: the filter at work on a gateway in network namespaces.
//!
//! Builds the standard lab of the end-to-end tests (an "internet" with real
//! DNS and NTP servers, a gateway with `wan0` and NAT, a LAN client, and an
//! attacker on the WAN segment; see harness::lab), attaches the filter to
//! the gateway's `wan0` with the real filter-ctl binary, and shows the mission:
//! the gateway's and the LAN client's own DNS lookups and NTP exchanges get
//! their answers while a spoofed DNS/NTP reflection flood is dropped. The
//! counters are shown before and after and explained, next to what nftables
//! saw reach the gateway's stack. `filter-ctl daemon` runs alongside: its
//! attack start and end lines, `filter-ctl top` naming the flooding sources
//! and a `/metrics` excerpt are shown after the flood. Then monitor mode,
//! switched on and off at run time. Then it detaches and removes everything:
//! on success, on error and on Ctrl-C.
//!
//! Everything but the story told here comes from the `harness` crate
//! (tests/harness): the topology, the servers, the attacker's floods and the
//! filter-ctl driver are the end-to-end tests' own. The harness builds no
//! eBPF, so xtask builds before `xtask setup` installed the eBPF toolchain.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use filter_common::Reason;
use harness::{
    ctl::{FilterCtl, Stats, daemon::Daemon},
    lab::{INET_BRIDGE, LAN_IF, StackCounters, Topology, WAN_IF, addr},
    names::{LAB_PIN_PREFIX, LAB_PREFIX},
    netns::Netns,
    process::{Background, die_with_us},
    servers::real::{self, DNS_NAME, Servers},
    signals::{INTERRUPTED, catch_signals, check_interrupted, pause},
    traffic::{
        reflection::{self, Attack, Fate, Kind, Pace, Report, Target},
        sender::RawSender,
        sources::{Prefix, Sources},
    },
};

/// Options of `cargo xtask lab`.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// The filter-ctl binary to use [default: target/release/filter-ctl, which xtask builds].
    #[arg(long, value_name = "PATH", env = "FILTER_CTL")]
    filter_ctl: Option<PathBuf>,
    /// Seconds the reflection flood lasts, while `filter-ctl stats --watch 1`
    /// shows the counters move and the clients keep looking up (0: no flood).
    #[arg(long, value_name = "SECS", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(0..=600))]
    watch: u64,
    /// Frames per second the attacker sends.
    #[arg(long, value_name = "PPS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    pps: u32,
    /// Stay up after the demo, until Ctrl-C, to explore the lab by hand; then clean up.
    #[arg(long)]
    keep: bool,
}

pub fn run(opts: LabArgs) -> anyhow::Result<()> {
    catch_signals()?;
    let binary = match &opts.filter_ctl {
        Some(path) => path.clone(),
        None => crate::repo_root().join("target/release/filter-ctl"),
    };
    if !binary.is_file() {
        bail!(
            "{} not found: build it with `cargo xtask build`",
            binary.display()
        );
    }
    let binary = binary.canonicalize()?;
    let result = demo(&binary, &opts);
    match &result {
        Ok(()) => println!("\nThe lab is gone: servers stopped, namespaces deleted, pins removed."),
        Err(_) if INTERRUPTED.load(Ordering::Relaxed) => {
            println!(
                "\nInterrupted: the lab is gone (servers stopped, namespaces deleted, pins removed)."
            );
            return Ok(());
        }
        Err(_) => eprintln!("\nThe lab failed; it was removed all the same."),
    }
    result
}

/// Shows the command line of `filter-ctl ARGS...` in `ns`, then runs it
/// with its output on the terminal.
fn show(ctl: &FilterCtl, ns: &Netns, args: &[&str]) -> anyhow::Result<()> {
    check_interrupted()?;
    println!(
        "\n$ ip netns exec {} filter-ctl {}",
        ns.name(),
        args.join(" ")
    );
    let status = die_with_us(&mut ctl.command(ns, args))
        .stdin(Stdio::null())
        .status()
        .context("running filter-ctl")?;
    check_interrupted()?;
    if !status.success() {
        bail!("filter-ctl {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The packets each counter gained between two `stats`, for those that moved;
/// monitor mode's rows are keyed `would_drop:<reason>`.
fn gained(before: &Stats, after: &Stats) -> Vec<(String, u64)> {
    after
        .since(before)
        .nonzero()
        .into_iter()
        .map(|(key, packets, _)| (key, packets))
        .collect()
}

/// `stats --json` of the gateway's wan0.
fn packets(ctl: &FilterCtl, gw: &Netns) -> anyhow::Result<Stats> {
    check_interrupted()?;
    ctl.stats(gw, WAN_IF)
}

/// What `reason` counted between two `stats`.
fn moved(before: &Stats, after: &Stats, reason: Reason) -> u64 {
    after.since(before).packets(reason)
}

fn heading(text: &str) -> anyhow::Result<()> {
    check_interrupted()?;
    println!("\n=== {text}");
    Ok(())
}

/// What reached the gateway's stack since `before`, per nftables counter.
fn stack_gained(topo: &Topology, before: &StackCounters) -> anyhow::Result<StackCounters> {
    Ok(topo.stack_counters()?.since(before))
}

fn demo(binary: &Path, opts: &LabArgs) -> anyhow::Result<()> {
    heading("Building the lab: network namespaces joined by veth pairs")?;
    let mut topo = Topology::build(LAB_PREFIX)?;
    topo.add_wan_host()?;
    // Declared after the topology, so dropped before it: its pin root goes,
    // which detaches the filter, before the namespaces.
    let ctl = FilterCtl::with_binary(binary.to_owned(), LAB_PIN_PREFIX);
    let ctl = &ctl;
    let gw = &topo.gateway;
    print!("{}", topo.describe());
    println!(
        "  {:<24} attacker on the WAN segment (bridged to the internet's {}): raw frames\n  \
         {:<24} with spoofed sources from {} and {}",
        topo.wan_hosts[0].name(),
        INET_BRIDGE,
        "",
        addr::cidrs(&addr::SPOOFED4),
        addr::cidrs(&addr::SPOOFED6),
    );
    println!(
        "No namespace is connected to this machine's network: nothing leaves the lab.\n\
         The lab's filter-ctl calls use their own pin root: --pin-root {}",
        ctl.pin_root().display()
    );

    heading("Starting real servers on the internet")?;
    let mut servers = Servers::start(&topo.internet)?;
    println!(
        "dnsmasq: answers {name} with {a4} and {a6}, on {s4} and {s6} port 53\n\
         chronyd: NTP server at stratum 8 on its own clock (-x: it never sets it), on {s4} and {s6} port 123",
        name = DNS_NAME,
        a4 = addr::DNS_ANSWER4,
        a6 = addr::DNS_ANSWER6,
        s4 = addr::SERVER4,
        s6 = addr::SERVER6,
    );

    heading("Attaching the filter to the gateway's wan0")?;
    show(ctl, gw, &["attach", "--iface", WAN_IF])?;
    show(ctl, gw, &["status"])?;
    let mut daemon = start_daemon(ctl, gw)?;
    println!(
        "\nLater fragments that arrive before their first fragment cannot be judged: by default\n\
         they are dropped (orphan_fragments=drop, counted as drop_orphan_fragment). The\n\
         attacker below sends some of those."
    );

    heading("Real lookups, no attack yet: dig and chronyd -Q from the gateway and the LAN client")?;
    let before = packets(ctl, gw)?;
    let stack_before = topo.stack_counters()?;
    for (who, ns) in [("gateway", &topo.gateway), ("LAN client", &topo.lan)] {
        for (server, aaaa) in [
            (IpAddr::from(addr::SERVER4), false),
            (addr::SERVER6.into(), true),
        ] {
            check_interrupted()?;
            let answer = real::dig(ns, server, aaaa)?;
            println!(
                "{who:<10}  dig @{server} {} {}: {answer}",
                DNS_NAME,
                if aaaa { "AAAA" } else { "A" }
            );
            check_interrupted()?;
            let sample = real::ntp_exchange(ns, server)?;
            println!(
                "{who:<10}  chronyd -Q, server {server}: clock off by {:+.6} s",
                sample.offset
            );
        }
    }
    let after = packets(ctl, gw)?;
    let stack = stack_gained(&topo, &stack_before)?;
    let answers = stack.packets("real_dns") + stack.packets("real_ntp");
    println!(
        "\nCounters: egress_query_recorded +{}, pass_solicited +{}: each query was recorded on its\n\
         way out of wan0 (after NAT for the LAN client's IPv4), and its answer ({} reached the\n\
         stack: {} DNS, {} NTP) passed because it matched one.",
        moved(&before, &after, Reason::EgressQueryRecorded),
        moved(&before, &after, Reason::PassSolicited),
        answers,
        stack.packets("real_dns"),
        stack.packets("real_ntp"),
    );

    if opts.watch > 0 {
        attack(&topo, ctl, opts)?;
        who_attacked(ctl, gw, &mut daemon)?;
        servers.check_running()?;
        monitor_mode(&topo, ctl, opts.pps)?;
    }

    if opts.keep {
        heading("The lab stays up until Ctrl-C; try, in another shell:")?;
        let pin_root = ctl.pin_root().display();
        println!(
            "  ip netns exec {gw} env FILTER_PIN_ROOT={pin_root} {bin} stats --iface wan0 --watch 1\n  \
             ip netns exec {lan} dig @{server4} {name}\n  \
             ip netns exec {gw} dig @{server6} {name} AAAA\n  \
             ip netns exec {gw} nft list counters table netdev lab_count",
            gw = gw.name(),
            lan = topo.lan.name(),
            bin = binary.display(),
            server4 = addr::SERVER4,
            server6 = addr::SERVER6,
            name = DNS_NAME,
        );
        while !INTERRUPTED.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(100));
        }
        // Ctrl-C is how --keep ends: clean up as after a normal run.
        INTERRUPTED.store(false, Ordering::Relaxed);
        println!();
    }

    heading("Detaching: programs, links, maps and pins go away")?;
    drop(servers);
    // Stopping the daemon leaves the filter attached; `detach` removes it.
    daemon.stop()?;
    show(ctl, gw, &["detach", "--iface", WAN_IF])?;
    show(ctl, gw, &["status"])?;
    let link = gw.ip(["-d", "link", "show", "dev", WAN_IF])?;
    println!(
        "wan0 has {} XDP program; its pin root {} {}.",
        if link.contains("xdp") {
            "still an"
        } else {
            "no"
        },
        ctl.pin_root().display(),
        if ctl.pin_root().exists() {
            "still exists"
        } else {
            "is gone"
        }
    );
    Ok(())
}

/// The address most of the IPv4 flood comes from, for `top` to find.
const HEAVY_HITTER: &str = "192.0.2.66";

/// `filter-ctl daemon` on the gateway's wan0: it adopts the filter just
/// attached. Attack lines from 1,000 drops per second on, ended after 2 s
/// below half that.
fn start_daemon(ctl: &FilterCtl, gw: &Netns) -> anyhow::Result<Daemon> {
    let args = ["--attack-pps", "1000", "--attack-quiet", "2s"];
    println!(
        "\n$ ip netns exec {} filter-ctl daemon --iface wan0 --listen {} {}   (in the background)",
        gw.name(),
        harness::ctl::daemon::LISTEN,
        args.join(" ")
    );
    let mut daemon = Daemon::start(ctl, gw, WAN_IF, &args)?;
    let adopted = daemon.wait_for_line(&["adopted the filter"], Duration::from_secs(30))?;
    println!("{adopted}");
    daemon.wait_for_metrics(gw, Duration::from_secs(10))?;
    Ok(daemon)
}

/// After the flood: the daemon's attack lines, `top`, and some of `/metrics`.
fn who_attacked(ctl: &FilterCtl, gw: &Netns, daemon: &mut Daemon) -> anyhow::Result<()> {
    heading("Who attacked: the daemon's attack lines (its log), then `filter-ctl top`")?;
    // The attack lines end 2 s after the flood (--attack-quiet).
    daemon.wait_for_line(&["attack ended on wan0"], Duration::from_secs(10))?;
    pause(Duration::from_millis(1500))?;
    for line in daemon
        .log()
        .lines()
        .filter(|line| line.contains(" attack "))
    {
        println!("{line}");
    }
    show(ctl, gw, &["top", "--iface", WAN_IF, "--seconds", "60"])?;
    println!(
        "\n{HEAVY_HITTER} sent a quarter of the IPv4 flood; the rest came from random addresses\n\
         of the spoofed ranges, which `top` groups by /24 (IPv4) and /48 (IPv6)."
    );
    heading("Some of /metrics (Prometheus), as a scraper sees it")?;
    let (_, metrics) = daemon.get(gw, "/metrics")?;
    println!(
        "$ ip netns exec {} curl -s http://{}/metrics",
        gw.name(),
        harness::ctl::daemon::LISTEN
    );
    for line in metrics.lines().filter(|line| {
        line.contains("drop_unsolicited_dns\",direction=\"ingress\",action=\"drop\"")
            || line.starts_with("wan_filter_drop_events")
            || line.starts_with("wan_filter_program_info")
            || line.contains("key=\"sample_rate\"")
            || line.contains("map=\"SOLICITED\"")
            || line.starts_with("wan_filter_build_info")
    }) {
        println!("{line}");
    }
    Ok(())
}

/// The attacker's socket and an attack on the gateway's wan0.
fn attacker(topo: &Topology) -> anyhow::Result<(RawSender, Attack)> {
    let sender = RawSender::open(&topo.wan_hosts[0], LAN_IF)?;
    let target = Target {
        mac: topo.gateway.mac(WAN_IF)?,
        v4: addr::GW_WAN4,
        // IPv6 is routed: the LAN client is attacked on wan0 too.
        v6: vec![addr::GW_WAN6, addr::LAN_CLIENT6],
    };
    // One heavy hitter among the spoofed ranges, for `top` to name.
    let mut v4 = Prefix::all(&addr::SPOOFED4)?;
    v4.push(Prefix::host(HEAVY_HITTER.parse::<IpAddr>()?)?);
    let sources = Sources::new(v4, Prefix::all(&addr::SPOOFED6)?)?;
    let attack = Attack::new(target, sources, sender.mac(), &Kind::MIX);
    Ok((sender, attack))
}

/// Lookups by one client during the flood.
#[derive(Default)]
struct Lookups {
    dig_ok: u64,
    dig_failed: u64,
    ntp_ok: u64,
    ntp_failed: u64,
    first_error: Option<String>,
}

/// dig (IPv4 and IPv6 in turn) and every 5th round an NTP exchange, until `stop`.
fn keep_looking_up(ns: &Netns, stop: &AtomicBool) -> Lookups {
    let mut done = Lookups::default();
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) && !INTERRUPTED.load(Ordering::Relaxed) {
        let (server, aaaa) = if round.is_multiple_of(2) {
            (IpAddr::from(addr::SERVER4), false)
        } else {
            (addr::SERVER6.into(), true)
        };
        match real::dig(ns, server, aaaa) {
            Ok(_) => done.dig_ok += 1,
            Err(err) => {
                done.dig_failed += 1;
                done.first_error.get_or_insert(format!("{err:#}"));
            }
        }
        if round % 5 == 4 {
            match real::ntp_exchange(ns, server) {
                Ok(_) => done.ntp_ok += 1,
                Err(err) => {
                    done.ntp_failed += 1;
                    done.first_error.get_or_insert(format!("{err:#}"));
                }
            }
        }
        round += 1;
    }
    done
}

/// Floods wan0 for `opts.watch` seconds while both clients keep looking up and
/// `stats --watch 1` runs; then shows and explains what every counter gained.
fn attack(topo: &Topology, ctl: &FilterCtl, opts: &LabArgs) -> anyhow::Result<()> {
    let gw = &topo.gateway;
    heading(&format!(
        "The attack: {} s of spoofed DNS responses (whole and fragmented, IPv4 and IPv6) and NTP\n    \
         mode 7 monlist responses and queries at {} frames/s, while the gateway and the LAN client\n    \
         keep looking up (dig, and chronyd -Q every 5th round)",
        opts.watch, opts.pps
    ))?;
    let (sender, mut attack) = attacker(topo)?;
    let before = packets(ctl, gw)?;
    let stack_before = topo.stack_counters()?;
    println!(
        "\n$ ip netns exec {} filter-ctl stats --iface wan0 --watch 1   (rows that are not 0)",
        gw.name()
    );
    let (watcher, shown) = watch_nonzero(ctl, gw)?;
    let stop = AtomicBool::new(false);
    let pace = Pace {
        pps: opts.pps,
        min_frames: 0,
        max_frames: u64::from(opts.pps) * (opts.watch + 5),
    };
    let (report, gw_lookups, lan_lookups) = thread::scope(|s| {
        let flooder = s.spawn(|| reflection::flood(&sender, &mut attack, pace, &stop, None));
        let gw_lookups = s.spawn(|| keep_looking_up(&topo.gateway, &stop));
        let lan_lookups = s.spawn(|| keep_looking_up(&topo.lan, &stop));
        // Past the last full second, so the watch prints its last line.
        let paused = pause(Duration::from_millis(opts.watch * 1000 + 300));
        stop.store(true, Ordering::Relaxed);
        let report = flooder.join().expect("the flood thread panicked");
        let lookups = (
            gw_lookups.join().expect("a lookup thread panicked"),
            lan_lookups.join().expect("a lookup thread panicked"),
        );
        paused.map(|()| (report, lookups.0, lookups.1))
    })?;
    // Stopping it (SIGTERM) ends the watch: it only reads the counters.
    drop(watcher);
    let _ = shown.join();
    let report = report?;
    // Let the last frames and answers arrive before counting.
    pause(Duration::from_millis(300))?;
    let after = packets(ctl, gw)?;
    let stack = stack_gained(topo, &stack_before)?;

    heading("What the attacker sent")?;
    print!("{}", report.describe());
    println!();
    for (who, done) in [("gateway", &gw_lookups), ("LAN client", &lan_lookups)] {
        println!(
            "{who:<10}  during the flood: {} dig lookups answered, {} failed; {} NTP exchanges done, {} failed{}",
            done.dig_ok,
            done.dig_failed,
            done.ntp_ok,
            done.ntp_failed,
            done.first_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (first failure: {e})"))
        );
    }

    heading("Counters after the attack")?;
    show(ctl, gw, &["stats", "--iface", WAN_IF])?;
    explain(&before, &after, &report, &stack);
    Ok(())
}

/// `filter-ctl stats --watch 1` in the background, its output on ours without
/// the rows that are 0 (the table has a row per reason and per would-drop).
fn watch_nonzero(
    ctl: &FilterCtl,
    gw: &Netns,
) -> anyhow::Result<(Background, thread::JoinHandle<()>)> {
    let (reader, writer) = std::io::pipe()?;
    let mut command = ctl.command(gw, ["stats", "--iface", WAN_IF, "--watch", "1"]);
    command.stdout(writer);
    let watcher = Background::spawn_attached("filter-ctl stats --watch", command)?;
    let shown = thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            let packets = line.split_whitespace().nth(3);
            if line.starts_with("reason") || line.is_empty() || packets.is_some_and(|p| p != "0") {
                println!("{line}");
            }
        }
    });
    Ok((watcher, shown))
}

/// Prints what each counter gained, next to what the attack and the lookups explain.
fn explain(before: &Stats, after: &Stats, report: &Report, stack: &StackCounters) {
    let answers = stack.packets("real_dns") + stack.packets("real_ntp");
    let sent = |fate: Fate| report.fate(fate).frames;
    let expected: [(&str, u64, &str); 6] = [
        (
            "drop_unsolicited_dns",
            sent(Fate::UnsolicitedDns),
            "spoofed DNS responses, and the first fragments of fragmented ones",
        ),
        (
            "drop_fragment",
            sent(Fate::FragmentOfDropped),
            "later fragments, following their first fragment's verdict",
        ),
        (
            "drop_orphan_fragment",
            sent(Fate::Orphan),
            "later fragments sent before their first one (the default orphan_fragments=drop)",
        ),
        (
            "drop_ntp_control",
            sent(Fate::NtpControl),
            "NTP mode 7 monlist responses, and monlist queries to the gateway",
        ),
        (
            "pass_solicited",
            answers,
            "answers to the clients' own lookups (what nftables saw arrive from the servers)",
        ),
        (
            "egress_query_recorded",
            answers,
            "the clients' queries, recorded on the way out: one per answer",
        ),
    ];
    println!("\nWhat moved during the attack, and why:");
    for (reason, gained) in gained(before, after) {
        match expected.iter().find(|(r, _, _)| *r == reason) {
            Some((_, want, why)) => println!(
                "  {reason:<22} +{gained:<8} {} {want:<8} {why}",
                if gained == *want { "=" } else { "!=" }
            ),
            None => println!("  {reason:<22} +{gained}"),
        }
    }
    let leaked = stack.packets("spoofed4") + stack.packets("spoofed6");
    println!(
        "\nnftables on wan0, after XDP: {leaked} of the attacker's {} frames reached the gateway's stack;\n\
         {} DNS and {} NTP answers did. The flood cost the clients nothing.",
        report.total.frames,
        stack.packets("real_dns"),
        stack.packets("real_ntp"),
    );
}

/// Monitor mode: a short flood passes and is counted as would_drop; then back.
fn monitor_mode(topo: &Topology, ctl: &FilterCtl, pps: u32) -> anyhow::Result<()> {
    let gw = &topo.gateway;
    heading("Monitor mode: count what would be dropped, drop nothing (switched at run time)")?;
    show(ctl, gw, &["set", "--iface", WAN_IF, "monitor=on"])?;
    let (sender, mut attack) = attacker(topo)?;
    let before = packets(ctl, gw)?;
    let stack_before = topo.stack_counters()?;
    let frames = u64::from(pps).min(20_000);
    let report = reflection::flood(
        &sender,
        &mut attack,
        Pace {
            pps,
            min_frames: 0,
            max_frames: frames,
        },
        // Ctrl-C ends the flood early.
        &INTERRUPTED,
        None,
    )?;
    check_interrupted()?;
    pause(Duration::from_millis(300))?;
    let after = packets(ctl, gw)?;
    let stack = stack_gained(topo, &stack_before)?;
    println!(
        "\nThe attacker sent {} frames in {:.1} s. Counters:",
        report.total.frames,
        report.elapsed.as_secs_f64()
    );
    let moved = gained(&before, &after);
    for (reason, gained) in &moved {
        println!("  {reason:<34} +{gained}");
    }
    let would_drop: u64 = moved
        .iter()
        .filter(|(key, _)| key.starts_with("would_drop:"))
        .map(|(_, gained)| gained)
        .sum();
    println!(
        "would_drop rows: {would_drop} (the flood: {}); nftables: {} of them reached the gateway's stack.\n\
         (egress_other: the gateway's ICMP errors about the spoofed packets it was handed.)",
        report.total.frames,
        stack.packets("spoofed4") + stack.packets("spoofed6"),
    );
    show(ctl, gw, &["set", "--iface", WAN_IF, "monitor=off"])?;
    println!("Same program, same maps and counters: only the CONFIG map changed.");
    Ok(())
}
