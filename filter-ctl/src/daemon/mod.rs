//! `filter-ctl daemon`: the long-running controller, and `filter-ctl top`.
//!
//! The daemon attaches the filter (or adopts the one attached, with its
//! state) and then only watches and tunes it: it never detaches, on exit,
//! signal or crash, so the filter keeps filtering without it and a restarted
//! daemon picks up where the last one was. Once a second it reads the
//! counters (for the attack lines, [`attack`]), checks the interface (and
//! attaches again when it came back, [`link`]) and the config file
//! ([`reload`]); every few seconds it removes expired list entries. It reads
//! the sampled drop events as they come ([`drops`], kept for `top` in
//! [`top::History`]) and the programs' rare events (aya-log), serves
//! `/metrics` ([`metrics`]) and answers `top` ([`control`]). With an
//! `[upstream]` section in its config file it hands attacks that fill the
//! uplink to the provider through a BGP speaker ([`upstream`]).

pub mod attack;
pub mod control;
pub mod drops;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod reload;
pub mod top;
pub mod units;
pub mod upstream;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya_log::EbpfLogger;
use filter_ctl_api::report::Stats;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
};

use self::{
    attack::{Detector, Thresholds},
    drops::DropEvents,
    link::Presence,
    metrics::DaemonState,
    reload::{ConfigFile, FileConfig},
    top::{History, TopReport},
    upstream::Upstream,
};
use crate::{
    attach::{self, ModeChoice},
    hook::links::link_info,
    iface::Interface,
    lists,
    pins::{IfacePins, PinRoot},
    release, stats,
};

/// The default `--listen`: localhost only, on a port no well-known exporter
/// uses. The Prometheus wiki's "Default port allocations" gave exporters
/// 9100-9999, and that range is full (every port there belongs to some
/// exporter), so the port is outside it, and outside /etc/services.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10213";

/// Every how many seconds expired list entries are removed.
const CLEANUP_EVERY: u64 = 5;

/// `filter-ctl daemon`'s options.
#[derive(Clone, Debug)]
pub struct Options {
    pub iface: String,
    pub config: Option<PathBuf>,
    pub listen: SocketAddr,
    pub mode: ModeChoice,
    pub thresholds: Thresholds,
}

/// Runs the daemon until SIGTERM or SIGINT; the filter stays attached.
pub fn run(pin_root: &Path, options: Options) -> anyhow::Result<()> {
    let root = PinRoot::open(pin_root, true)?;
    // A bad config file stops the start, before anything is touched.
    let config = options
        .config
        .as_deref()
        .map(ConfigFile::open)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let mut signals = Signals::new()?;
        let (file, read) = config.map_or((None, None), |(file, read)| (Some(file), read));
        if let Some(file) = file.as_ref().filter(|_| read.is_none()) {
            log::warn!(
                "{} does not exist: the filter keeps its settings (the defaults when attached \
                 afresh) until the file is made; it is applied when it appears",
                file.path().display()
            );
        }
        let Some(pins) = start(&root, &options, read.as_ref(), &mut signals).await? else {
            return Ok(());
        };
        let upstream = read
            .and_then(|read| read.upstream)
            .map(|config| Upstream::start(&options.iface, config))
            .transpose()?;
        Daemon {
            upstream,
            detector: Detector::new(&options.iface, options.thresholds),
            options,
            root,
            pins,
            config: file,
            history: Arc::default(),
            state: Arc::default(),
            last: None,
            logged_program: None,
            link: None,
            up: None,
            pending: None,
            ticks: 0,
            told_ring_held: false,
        }
        .run(signals)
        .await
    })
}

struct Signals {
    term: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits `delay`; false if asked to stop meanwhile.
    async fn sleep(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.term.recv() => false,
            _ = self.interrupt.recv() => false,
        }
    }
}

/// Attaches the filter, adopts the one attached, or attaches it again if its
/// interface was recreated, with the config file's settings; waits for a
/// missing interface (at boot, a USB or PPPoE device may come later).
/// `None` when stopped while waiting.
async fn start(
    root: &PinRoot,
    options: &Options,
    settings: Option<&FileConfig>,
    signals: &mut Signals,
) -> anyhow::Result<Option<IfacePins>> {
    let pins = root.iface(&options.iface)?;
    let config = options.config.as_deref().zip(settings);
    let mut waiting = false;
    loop {
        match attach_or_adopt(root, &pins, options.mode, config)? {
            Some(done) => {
                log::info!("{done}");
                return Ok(Some(pins));
            }
            None if !waiting => {
                log::warn!(
                    "{} does not exist (yet): the filter will be attached when it appears",
                    options.iface
                );
                // Ready all the same: holding the boot back until a device
                // that may never come would only time the unit out.
                notify::send(&format!(
                    "READY=1\nSTATUS=waiting for {} to appear; the filter is not attached",
                    options.iface
                ));
                waiting = true;
            }
            None => {}
        }
        if !signals.sleep(Duration::from_secs(1)).await {
            return Ok(None);
        }
    }
}

/// What was done, or `None` if the interface is missing. The config file's
/// settings go in with an attach (checked first, nothing is attached if one
/// is refused) or, for a filter adopted, are applied under its lock like
/// `filter-ctl apply`.
fn attach_or_adopt(
    root: &PinRoot,
    pins: &IfacePins,
    mode: ModeChoice,
    config: Option<(&Path, &FileConfig)>,
) -> anyhow::Result<Option<String>> {
    let name = pins.iface();
    let settings = config.map_or(&[][..], |(_, file)| &file.settings[..]);
    let from_file = config.map_or(String::new(), |(path, _)| {
        format!("; settings from {}", path.display())
    });
    if let Some((xdp_mode, link)) = pins.find_xdp_link() {
        return Ok(match link::presence(pins)? {
            Presence::Attached { ifindex } => {
                let adopted = format!(
                    "adopted the filter attached to {name} (ifindex {ifindex}, XDP {} mode, \
                     program {}): counters, settings, lists and recorded queries carry on",
                    xdp_mode.name(),
                    link_info(&link)?.program_id()
                );
                // After a package upgrade: the old binary's programs run.
                if let Some(other) = release::other_programs(pins) {
                    log::warn!("{other}");
                    notify::send(&format!("STATUS={other}"));
                }
                Some(match config {
                    Some((path, settings)) => {
                        let changed = reload::apply(root, name, settings)?;
                        format!(
                            "{adopted}; settings from {}: {}",
                            path.display(),
                            describe_changes(&changed)
                        )
                    }
                    None => adopted,
                })
            }
            Presence::Gone => None,
            Presence::Back { ifindex } => {
                let report = attach::reattach(root, &Interface::lookup(name)?, settings)?;
                Some(format!(
                    "attached the filter again to {name} (ifindex {ifindex}, XDP {} mode, program {}), \
                     keeping counters, {}lists and recorded queries{from_file}{}",
                    report.mode.name(),
                    report.xdp_program_id,
                    if config.is_some() { "" } else { "settings, " },
                    file_lists(root, name, config)?
                ))
            }
            Presence::Elsewhere { link } => anyhow::bail!(
                "the filter pinned for {name} is {}: see `filter-ctl status`",
                link.describe()
            ),
        });
    }
    let Ok(iface) = Interface::lookup(name) else {
        return Ok(None);
    };
    let report = attach::attach(root, &iface, mode, settings)?;
    if let Some(note) = report.mode_note() {
        log::warn!("{note}");
    }
    Ok(Some(format!(
        "attached the filter to {name} in {} mode, {} link layer (XDP program {}, egress program \
         {}){from_file}{}",
        report.mode.name(),
        report.link.layer.name(),
        report.xdp_program_id,
        report.tc_program_id,
        file_lists(root, name, config)?
    )))
}

/// The config file's lists put in place after an attach (which wrote its
/// settings): `; deny list: 3 entries from the file`, or nothing.
fn file_lists(
    root: &PinRoot,
    iface: &str,
    config: Option<(&Path, &FileConfig)>,
) -> anyhow::Result<String> {
    let Some((_, file)) = config else {
        return Ok(String::new());
    };
    let (_lock, pins) = attach::lock_for_change(root, iface)?;
    Ok(reload::apply_lists(&pins, file)?.map_or(String::new(), |said| format!("; {said}")))
}

fn describe_changes(changed: &[String]) -> String {
    if changed.is_empty() {
        "no change".into()
    } else {
        changed.join(", ")
    }
}

struct Daemon {
    options: Options,
    root: PinRoot,
    pins: IfacePins,
    config: Option<ConfigFile>,
    history: Arc<Mutex<History>>,
    state: Arc<Mutex<DaemonState>>,
    detector: Detector,
    /// The last counters read, and when.
    last: Option<(Instant, Stats)>,
    /// The XDP program whose aya-log records are read.
    logged_program: Option<u32>,
    /// The interface at the last check, to log changes only.
    link: Option<Presence>,
    up: Option<bool>,
    /// The config file as read while the interface was gone: it goes in
    /// with the attach when the interface is back.
    pending: Option<FileConfig>,
    ticks: u64,
    /// Whether it said that another process reads the drop events.
    told_ring_held: bool,
    /// The upstream mode, when the config file has an `[upstream]` section.
    upstream: Option<Upstream>,
}

type KernelLog = Option<AsyncFd<EbpfLogger<&'static dyn log::Log>>>;
/// The drop events, once the daemon holds the claim on them.
type Drops = Option<AsyncFd<DropEvents>>;

impl Daemon {
    async fn run(mut self, mut signals: Signals) -> anyhow::Result<()> {
        let (listening, server) = metrics::serve(
            self.options.listen,
            self.root.clone(),
            self.pins.clone(),
            self.state.clone(),
        )
        .await?;
        tokio::spawn(server);
        log::info!("serving metrics on http://{listening}/metrics");
        // The filter is attached (or adopted) and the metrics are served:
        // what systemd waits for before it reaches network-pre.target.
        notify::send(&format!(
            "READY=1\nSTATUS=filtering on {}; metrics on http://{listening}/metrics",
            self.options.iface
        ));
        if !listening.ip().is_loopback() {
            log::warn!(
                "metrics on {listening} can be reached from other hosts: every setting, counter \
                 and dropped source address, without authentication. Listen on 127.0.0.1 (the \
                 default) or a LAN address, or allow only the scraper to the port in the \
                 firewall (see `filter-ctl daemon --help`)"
            );
        }
        let mut drops: Drops = None;
        self.claim_ring(&mut drops);
        let mut kernel_log: KernelLog = None;
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ready = drops_readable(&mut drops) => {
                    let mut guard = ready?;
                    let mut history = self.history.lock().expect("never poisoned");
                    let read = guard.get_inner_mut().drain(|sample| history.add(sample));
                    drop(history);
                    self.state.lock().expect("never poisoned").events_read += read as u64;
                    guard.clear_ready();
                }
                ready = log_readable(&mut kernel_log) => {
                    let mut guard = ready?;
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                _ = ticks.tick() => {
                    if !self.pins.exists() {
                        log::warn!(
                            "the filter was detached from {0} (its pins are gone: `filter-ctl \
                             detach`): nothing is left to watch, the daemon stops. Starting it \
                             again (`systemctl restart wan-filter@{0}`) attaches the filter again",
                            self.options.iface
                        );
                        return Ok(());
                    }
                    if drops.is_none() {
                        self.claim_ring(&mut drops);
                    }
                    self.tick(&mut kernel_log);
                }
                _ = signals.hangup.recv() => self.reload(true),
                _ = signals.term.recv() => break,
                _ = signals.interrupt.recv() => break,
            }
        }
        notify::send("STOPPING=1");
        // Attacks under way are summed up with what the counters say now.
        if let Ok(counts) = stats::read(&self.pins) {
            self.detector.stop(Instant::now(), &counts);
        }
        log::info!(
            "stopping; the filter stays attached to {} and keeps filtering",
            self.options.iface
        );
        Ok(())
    }

    /// Claims the drop event ring, reads it from now on and answers `top`.
    /// While a `top` reads it instead, everything else goes on (metrics,
    /// attack lines from the counters, reloads) and the claim is tried
    /// again each second.
    fn claim_ring(&mut self, drops: &mut Drops) {
        let claimed = control::claim(&self.pins).and_then(|claim| {
            let mut events = DropEvents::open(&self.pins)?;
            // Events from before: not of any window we will report.
            events.drain(|_| {});
            // SAFETY: the ring owns its fd and keeps it open while registered.
            Ok((claim, unsafe { AsyncFd::register(events) }?))
        });
        match claimed {
            Ok((claim, events)) => {
                log::info!(
                    "reading the drop events; `filter-ctl top --iface {}` asks this daemon ({})",
                    self.options.iface,
                    claim.socket().display()
                );
                let history = self.history.clone();
                let state = self.state.clone();
                let about = control::About {
                    pid: std::process::id(),
                    config: self.options.config.clone(),
                };
                tokio::spawn(control::serve(
                    claim,
                    about,
                    move |seconds| {
                        let history = history.lock().expect("never poisoned");
                        Ok(history.top(seconds.clamp(1, top::MAX_SECONDS), top::LIMIT))
                    },
                    move || state.lock().expect("never poisoned").upstream.clone(),
                ));
                *drops = Some(events);
            }
            Err(err) if !self.told_ring_held => {
                log::warn!(
                    "{err:#}: the daemon reads them once it is done (sources for `top` and the \
                     attack lines until then are missing; everything else goes on)"
                );
                self.told_ring_held = true;
            }
            Err(_) => {}
        }
    }

    fn tick(&mut self, kernel_log: &mut KernelLog) {
        self.ticks += 1;
        self.watch_link();
        self.follow_kernel_log(kernel_log);
        let now = Instant::now();
        match stats::read(&self.pins) {
            Ok(counts) => {
                let mut history = self.history.lock().expect("never poisoned");
                if let Some((then, before)) = &self.last {
                    let secs = now.duration_since(*then).as_secs_f64();
                    let delta = counts.since(before);
                    log_evictions(&self.options.iface, &delta);
                    self.detector.update(now, &delta, secs, &counts, &history);
                    if let Some(upstream) = &mut self.upstream {
                        let active: Vec<_> = self.detector.active().collect();
                        upstream.tick(now, &delta, secs, &active, &history);
                    }
                }
                history.tick(now, counts.clone());
                let mut state = self.state.lock().expect("never poisoned");
                state.attacks = self.detector.active().collect();
                if self.upstream.as_ref().is_some_and(Upstream::is_done) {
                    self.upstream = None;
                    log::info!("upstream: every route is withdrawn; the upstream mode is off");
                }
                state.upstream = self.upstream.as_ref().map(Upstream::status);
                drop(state);
                self.last = Some((now, counts));
            }
            Err(err) => log::debug!("reading the counters: {err:#}"),
        }
        if self.ticks.is_multiple_of(CLEANUP_EVERY) && !self.is_severed() {
            match attach::lock_for_change(&self.root, &self.options.iface)
                .and_then(|(_lock, pins)| lists::remove_expired(&pins))
            {
                Ok(0) => {}
                Ok(removed) => log::info!("removed {removed} expired allow/deny list entries"),
                Err(err) => log::warn!("removing expired list entries: {err:#}"),
            }
        }
        if self.config.as_ref().is_some_and(ConfigFile::touched) {
            self.reload(false);
        }
    }

    /// Reads the config file again (on SIGHUP, `forced`, even if its text did
    /// not change) and applies it if it is good.
    fn reload(&mut self, forced: bool) {
        let Some(file) = &mut self.config else {
            if forced {
                log::info!("SIGHUP: no config file to reload (start with --config FILE)");
            }
            return;
        };
        let read = if forced {
            Some(file.read())
        } else {
            file.reread_if_changed()
        };
        let Some(read) = read else {
            return;
        };
        // The section of a good file; a bad one leaves the mode as it is.
        let upstream = read.as_ref().ok().map(|file| file.upstream.clone());
        let path = file.path().display().to_string();
        let iface = &self.options.iface;
        if self.is_severed()
            && let Ok(file) = &read
        {
            // Nothing reads the settings of a severed filter, and its maps
            // are not changed meanwhile: they go in with the next attach.
            log::info!(
                "read {path}; its settings and lists go in when the filter is attached to {iface} \
                 again"
            );
            self.pending = Some(file.clone());
            self.reconfigure_upstream(upstream.flatten());
            return;
        }
        let applied = read.and_then(|file| reload::apply(&self.root, iface, &file));
        let mut state = self.state.lock().expect("never poisoned");
        match applied {
            Ok(changed) => {
                state.reloads_ok += 1;
                self.pending = None;
                log::info!("reloaded {path}: {}", describe_changes(&changed));
                drop(state);
                self.reconfigure_upstream(upstream.flatten());
            }
            Err(err) => {
                state.reloads_failed += 1;
                log::error!(
                    "not reloading {path}, the running settings stay as they were: {err:#}"
                );
            }
        }
    }

    /// The `[upstream]` section of a reloaded file: started, changed, or
    /// gone (then every route is withdrawn).
    fn reconfigure_upstream(&mut self, config: Option<upstream::config::Config>) {
        if let Some(current) = &mut self.upstream
            && !current.is_retiring()
        {
            match config {
                Some(config) => current.reconfigure(config),
                None => current.retire(),
            }
            return;
        }
        if let Some(config) = config {
            match Upstream::start(&self.options.iface, config) {
                Ok(started) => self.upstream = Some(started),
                Err(err) => log::error!("upstream: not started: {err:#}"),
            }
        }
    }

    /// Whether the interface was gone (or back, not yet attached again) at
    /// the last check: the filter's links are severed.
    fn is_severed(&self) -> bool {
        matches!(self.link, Some(Presence::Gone | Presence::Back { .. }))
    }

    /// Logs the interface going and coming back, down and up, and attaches
    /// the filter again to a recreated device.
    fn watch_link(&mut self) {
        let name = self.options.iface.clone();
        let presence = match link::presence(&self.pins) {
            Ok(presence) => presence,
            Err(err) => {
                log::debug!("checking {name}: {err:#}");
                return;
            }
        };
        let before = self.link.replace(presence.clone());
        let changed = before.as_ref() != Some(&presence);
        match presence {
            Presence::Gone if changed => log::warn!(
                "{name} is gone (deleted or moved away); the filter keeps its state and will be \
                 attached again when {name} is back"
            ),
            Presence::Elsewhere { link } if changed => log::warn!(
                "the filter pinned for {name} is {}, not on the device named {name} now; \
                 left as it is (see `filter-ctl status`)",
                link.describe()
            ),
            Presence::Back { ifindex } => {
                let settings = self
                    .pending
                    .as_ref()
                    .map_or(&[][..], |file| &file.settings[..]);
                match Interface::lookup(&name)
                    .and_then(|iface| attach::reattach(&self.root, &iface, settings))
                {
                    Ok(report) => {
                        let pending = self.pending.take();
                        let reloaded = pending.is_some();
                        if let Some(file) = &pending
                            && let Err(err) = attach::lock_for_change(&self.root, &name)
                                .and_then(|(_lock, pins)| reload::apply_lists(&pins, file))
                        {
                            log::error!("putting the config file's lists in place: {err:#}");
                        }
                        let kept = match &self.config {
                            Some(file) if reloaded => format!(
                                "keeping counters, lists and recorded queries; settings from {}, \
                                 read while {name} was gone",
                                file.path().display()
                            ),
                            _ => "keeping counters, settings, lists and recorded queries".into(),
                        };
                        log::info!(
                            "{name} is back (ifindex {ifindex}): attached the filter again in {} \
                             mode (XDP program {}), {kept}",
                            report.mode.name(),
                            report.xdp_program_id
                        );
                        let mut state = self.state.lock().expect("never poisoned");
                        state.reattached += 1;
                        if reloaded {
                            state.reloads_ok += 1;
                        }
                        drop(state);
                        self.link = Some(Presence::Attached { ifindex });
                    }
                    Err(err) if changed => log::warn!(
                        "{name} is back (ifindex {ifindex}) but attaching the filter again \
                         failed, retrying every second: {err:#}"
                    ),
                    Err(_) => {}
                }
            }
            _ => {}
        }
        let up = Interface::lookup(&name)
            .and_then(|iface| iface.is_up())
            .ok();
        if let Some(up) = up
            && self.up.is_some_and(|was| was != up)
        {
            log::info!("{name} is {}", if up { "up" } else { "down" });
        }
        self.up = up;
    }

    /// Reads the aya-log records of the attached programs, again after they
    /// were replaced or attached anew (each load has its own log ring).
    fn follow_kernel_log(&mut self, kernel_log: &mut KernelLog) {
        let Some((_, link)) = self.pins.find_xdp_link() else {
            return;
        };
        let Ok(program) = link_info(&link).map(|info| info.program_id()) else {
            return;
        };
        if self.logged_program == Some(program) {
            return;
        }
        self.logged_program = Some(program);
        *kernel_log = match EbpfLogger::init_from_id(program)
            .map_err(anyhow::Error::from)
            // SAFETY: the logger owns its fd; flushing neither closes nor replaces it.
            .and_then(|logger| Ok(unsafe { AsyncFd::register(logger) }?))
        {
            Ok(logger) => Some(logger),
            Err(err) => {
                log::warn!("the programs' own log lines will not be shown: {err:#}");
                None
            }
        };
    }
}

/// The solicited table evicted live queries in the last second: their
/// answers will be dropped. One line a second at most, from the counter.
fn log_evictions(iface: &str, delta: &Stats) {
    let evicted = delta
        .counted(filter_common::Reason::EgressQueryEvicted)
        .map_or(0, |count| count.packets);
    if evicted > 0 {
        log::warn!(
            "solicited table full on {iface}: {evicted} live queries evicted in the last second \
             (their answers will be dropped; egress_query_evicted counts them)"
        );
    }
}

/// Resolves when drop events are waiting; never before the ring is claimed.
async fn drops_readable(
    drops: &mut Drops,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, DropEvents>> {
    match drops {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the kernel log has records; never when there is none.
async fn log_readable(
    kernel_log: &mut KernelLog,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, EbpfLogger<&'static dyn log::Log>>> {
    match kernel_log {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// `filter-ctl top`: asks the daemon if one runs; otherwise reads the drop
/// events itself for `seconds` (telling so on stderr).
pub fn top(pins: &IfacePins, seconds: u64) -> anyhow::Result<TopReport> {
    if let Some(report) = control::ask_top(pins, seconds)? {
        return Ok(report);
    }
    let claim = control::claim(pins)?;
    control::turn_away(claim);
    let mut events = DropEvents::open(pins)?;
    events.drain(|_| {});
    eprintln!(
        "no daemon runs for {}: reading the drop events for {seconds} s",
        pins.iface()
    );
    let started = Instant::now();
    let before = stats::read(pins)?;
    let mut samples = Vec::new();
    let window = Duration::from_secs(seconds);
    while started.elapsed() < window {
        std::thread::sleep(Duration::from_millis(100).min(window - started.elapsed().min(window)));
        events.drain(|sample| samples.push(sample));
    }
    let after = stats::read(pins)?;
    events.drain(|sample| samples.push(sample));
    Ok(top::estimate(
        &samples,
        &after.since(&before),
        started.elapsed().as_secs_f64(),
        top::LIMIT,
    ))
}
