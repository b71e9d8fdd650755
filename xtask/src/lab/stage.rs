//! One lab for one phase of an incident: the topology (harness::lab) with its
//! WAN hosts, the filter-ctl driver on a pin root of its own, the daemon once
//! started, and the incident's servers. Dropped in that reverse order: the
//! servers stop, the daemon stops, the pins go (which detaches the filter),
//! the namespaces go. Also the lab's way of showing what an operator types.

use std::{any::Any, path::Path, process::Stdio, time::Duration};

use super::Ctx;

use anyhow::{Context as _, bail};
use harness::{
    ctl::{FilterCtl, Stats, daemon::Daemon},
    lab::{Topology, WAN_IF},
    names::{LAB_PIN_PREFIX, LAB_PREFIX},
    netns::Netns,
    process::die_with_us,
    signals::{check_interrupted, pause},
};

/// How an incident defends the gateway in its phase with the filter.
pub struct Defence<'a> {
    /// Said before anything is typed: what the defaults do, or why a setting.
    pub note: &'a str,
    /// The XDP mode, when not the default.
    pub mode: Option<&'a str>,
    /// The `filter-ctl set` assignments the operator types after attaching.
    pub set: &'a [&'a str],
    /// The settings in play, shown with `filter-ctl config`.
    pub settings: &'a [&'a str],
    /// The daemon's attack threshold (drops per second of a reason).
    pub attack_pps: u32,
}

/// A lab of its own for one phase. See the module documentation.
pub struct Stage {
    /// Servers and other guards of the incident, dropped first.
    extras: Vec<Box<dyn Any>>,
    pub daemon: Option<Daemon>,
    /// Declared before the topology, so dropped before it: its pin root
    /// goes, which detaches the filter, before the namespaces.
    pub ctl: FilterCtl,
    pub topo: Topology,
    /// What `--keep` suggests trying in this lab.
    pub hints: Vec<String>,
}

impl Stage {
    /// A fresh lab with `wan_hosts` hosts on the WAN segment.
    pub fn build(binary: &Path, wan_hosts: usize) -> anyhow::Result<Self> {
        check_interrupted()?;
        let ctl = FilterCtl::with_binary(binary.to_owned(), LAB_PIN_PREFIX);
        let mut topo = Topology::build(LAB_PREFIX)?;
        for _ in 0..wan_hosts {
            topo.add_wan_host()?;
        }
        Ok(Self {
            extras: Vec::new(),
            daemon: None,
            ctl,
            topo,
            hints: Vec::new(),
        })
    }

    pub fn gw(&self) -> &Netns {
        &self.topo.gateway
    }

    /// Keeps `guard` (a server) alive as long as the stage.
    pub fn adopt(&mut self, guard: impl Any) {
        self.extras.push(Box::new(guard));
    }

    /// Shows `filter-ctl ARGS...` as an operator types it on the gateway,
    /// then runs it with its output on the terminal.
    fn show(&self, args: &[&str]) -> anyhow::Result<()> {
        self.show_lines(args, "", |_| true)
    }

    /// [`Stage::show`] for a command that prints settings (`set`,
    /// `config`): only the lines of `keys` are shown.
    fn show_settings(&self, args: &[&str], keys: &[&str]) -> anyhow::Result<()> {
        self.show_lines(args, "   (the settings in play)", |line| {
            keys.contains(&line.split(['=', ' ']).next().unwrap_or(""))
        })
    }

    fn show_lines(
        &self,
        args: &[&str],
        note: &str,
        shown: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        check_interrupted()?;
        println!("  $ filter-ctl {}{note}", args.join(" "));
        let out = die_with_us(&mut self.ctl.command(self.gw(), args))
            .stdin(Stdio::null())
            .output()
            .context("running filter-ctl")?;
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| shown(line))
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            println!("    {}", line.trim_end());
        }
        check_interrupted()?;
        if !out.status.success() {
            bail!("filter-ctl {} failed ({})", args.join(" "), out.status);
        }
        Ok(())
    }

    /// With the filter: `defence`'s note, then, shown as an operator types
    /// them, `attach`, `set` and `config`; the daemon starts. The counters
    /// before the attack.
    pub fn defend(&mut self, defence: &Defence) -> anyhow::Result<Stats> {
        println!("  {}", defence.note);
        let mut attach = vec!["attach", "--iface", WAN_IF];
        if let Some(mode) = defence.mode {
            attach.extend(["--mode", mode]);
        }
        self.show(&attach)?;
        let keys: Vec<&str> = defence
            .set
            .iter()
            .filter_map(|assignment| assignment.split('=').next())
            .collect();
        if !defence.set.is_empty() {
            let mut set = vec!["set", "--iface", WAN_IF];
            set.extend(defence.set);
            self.show_settings(&set, &keys)?;
        }
        if !defence.settings.is_empty() {
            self.show_settings(&["config", "--iface", WAN_IF], defence.settings)?;
        }
        self.start_daemon(defence.attack_pps)?;
        self.stats()
    }

    /// With `defence` (the phase with the filter) or without: the counters
    /// before the attack, if any.
    pub fn defend_if(&mut self, defence: Option<&Defence>) -> anyhow::Result<Option<Stats>> {
        defence.map(|defence| self.defend(defence)).transpose()
    }

    /// The counters before the attack (if the filter is on) and now.
    pub fn counters(&self, before: Option<Stats>) -> anyhow::Result<Counters> {
        before.map(|before| Ok((before, self.stats()?))).transpose()
    }

    /// `filter-ctl daemon` on wan0 in the background, shown: it adopts the
    /// filter just attached. Attack lines from `attack_pps` drops per second
    /// of a reason on, ended after 1 s below half that.
    fn start_daemon(&mut self, attack_pps: u32) -> anyhow::Result<()> {
        let pps = attack_pps.to_string();
        let args = ["--attack-pps", &pps, "--attack-quiet", "1s"];
        println!(
            "  $ filter-ctl daemon --iface {WAN_IF} {}   (in the background, as systemd runs it)",
            args.join(" ")
        );
        let mut daemon = Daemon::start(&self.ctl, self.gw(), WAN_IF, &args)?;
        daemon.wait_for_line(&["adopted the filter"], Duration::from_secs(30))?;
        daemon.wait_for_metrics(self.gw(), Duration::from_secs(10))?;
        self.daemon = Some(daemon);
        Ok(())
    }

    /// `stats --json` of wan0.
    pub fn stats(&self) -> anyhow::Result<Stats> {
        check_interrupted()?;
        self.ctl.stats(self.gw(), WAN_IF)
    }

    /// After an attack: the daemon's attack lines (waiting a little for the
    /// "ended" one), then the first `rows` lines of `filter-ctl top`.
    pub fn who_attacked(&mut self, seconds: u64, rows: usize) -> anyhow::Result<()> {
        let Some(daemon) = self.daemon.as_mut() else {
            bail!("no daemon");
        };
        // --attack-quiet 1s: the end comes a second or two after the attack.
        let ended = daemon.wait_for_line(&["attack ended on"], Duration::from_secs(4));
        let lines: Vec<String> = daemon
            .log()
            .lines()
            .filter(|line| line.contains(" attack "))
            .map(str::to_owned)
            .collect();
        println!("  The daemon's log (journalctl -u wan-filter@wan0 on a real gateway):");
        if lines.is_empty() {
            println!("    (no attack line: no drop reason crossed --attack-pps)");
        }
        for line in &lines {
            println!("    {line}");
        }
        if ended.is_err() && !lines.is_empty() {
            println!("    (the attack had not ended yet)");
        }
        check_interrupted()?;
        let secs = seconds.to_string();
        let args = ["top", "--iface", WAN_IF, "--seconds", &secs];
        println!("  $ filter-ctl {}   (its first rows)", args.join(" "));
        let top = self.ctl.run(self.gw(), args)?;
        for line in top.lines().filter(|l| !l.trim().is_empty()).take(rows) {
            println!("    {line}");
        }
        Ok(())
    }
}

/// The filter's counters before and after an attack (in the phase with the filter).
pub type Counters = Option<(Stats, Stats)>;

/// An incident's two phases, each on a lab of its own: `phase(ctx, false)`
/// without the filter (its lab goes at once), then `phase(ctx, true)` with it.
/// `show` prints a phase's measures; `why` says why each counter moved,
/// given the measures with the filter. Ends with the daemon's attack lines
/// and `top`. Returns both phases' measures and the second lab.
pub fn without_and_with<M>(
    ctx: &Ctx,
    attack: &str,
    phase: impl Fn(&Ctx, bool) -> anyhow::Result<(Stage, M, Counters)>,
    show: impl Fn(&M),
    why: impl Fn(&M) -> Vec<(&'static str, String)>,
) -> anyhow::Result<(M, M, Stage)> {
    step(&format!("Without the filter: {attack}"))?;
    let (stage, without, _) = phase(ctx, false)?;
    drop(stage);
    show(&without);
    step("With the filter (the same attack, on a fresh lab)")?;
    let (mut stage, with, counters) = phase(ctx, true)?;
    show(&with);
    if let Some((before, after)) = &counters {
        counters_moved(before, after, &why(&with));
    }
    stage.who_attacked(ctx.attack().as_secs() + 5, 12)?;
    Ok((without, with, stage))
}

/// Prints the counters that moved between `before` and `after`, each with
/// why when `why` names its reason.
fn counters_moved(before: &Stats, after: &Stats, why: &[(&str, impl AsRef<str>)]) {
    println!("  Counters that moved (filter-ctl stats), and why:");
    let moved = after.since(before).nonzero();
    if moved.is_empty() {
        println!("    (none)");
    }
    for (reason, packets, bytes) in moved {
        let because = why
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or("", |(_, because)| because.as_ref());
        println!("    {reason:<26} {packets:>9} packets {bytes:>12} bytes  {because}");
    }
}

/// A heading for a step of an incident.
fn step(text: &str) -> anyhow::Result<()> {
    check_interrupted()?;
    println!("\n-- {text}");
    Ok(())
}

/// Lets the last frames, answers and log lines arrive before counting.
pub fn settle() -> anyhow::Result<()> {
    pause(Duration::from_millis(500))
}
