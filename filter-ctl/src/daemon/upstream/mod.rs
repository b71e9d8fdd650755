//! Handing an attack upstream: when the uplink itself is full, dropping
//! at wan0 comes too late, so the daemon asks the provider to drop the
//! attack before it crosses the uplink, through a BGP speaker the operator
//! runs (no BGP of our own): a FlowSpec rule that discards the attack's
//! packets to the attacked address, or an RTBH route for it.
//!
//! - [`config`]: the `[upstream]` section of the config file;
//! - [`route`]: the routes, built from the attack's sampled drops;
//! - [`gobgp`]: gobgpd as the speaker, through its `gobgp` tool;
//! - [`exabgp`]: ExaBGP as the speaker, through its process API (the
//!   bridge `filter-ctl upstream exabgp`);
//! - [`worker`]: the thread that makes the speaker hold what is wanted;
//! - [`status`]: `filter-ctl upstream status` and the metrics.
//!
//! This module decides what is wanted, once a second with the attack lines
//! ([`Upstream::tick`]): a drop reason under attack whose rate (or wan0's
//! receive rate against the uplink's capacity) stays over the threshold
//! for `sustain` gets its routes, within `max_rules`; when its attack ends,
//! they stay for `hold` more. A route an earlier daemon announced (found at
//! the speaker by its mark when this one starts) is kept for `hold` unless
//! an attack claims it sooner, and withdrawn at once if the config no
//! longer announces its kind: a restart neither withdraws and announces
//! again what is still wanted, nor announces twice.

pub mod config;
pub mod exabgp;
pub mod gobgp;
pub mod route;
pub mod status;
pub mod worker;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use filter_common::Reason;
use filter_ctl_api::report::Stats;

use self::{
    config::{Config, SpeakerConfig, Trigger},
    exabgp::Exabgp,
    gobgp::Gobgp,
    route::Route,
    status::{RouteState, RouteStatus, UpstreamStatus},
    worker::Shared,
};
use super::top::{self, History};
use crate::pins::IfacePins;

/// A BGP speaker the daemon drives: it holds the routes, and sends them to
/// its peers.
pub trait Speaker: Send {
    /// How the log names it: `gobgpd 127.0.0.1:50051`.
    fn name(&self) -> String;
    /// The daemon's routes it holds (those with the mark).
    fn list(&mut self) -> anyhow::Result<Vec<Route>>;
    fn announce(&mut self, route: &Route) -> anyhow::Result<()>;
    fn withdraw(&mut self, route: &Route) -> anyhow::Result<()>;
}

/// The speaker `config` names, for `iface`.
fn speaker(iface: &str, config: &Config) -> anyhow::Result<Box<dyn Speaker>> {
    Ok(match &config.speaker {
        SpeakerConfig::Gobgp { api } => {
            Box::new(Gobgp::new(*api, config.mark, &config.communities))
        }
        SpeakerConfig::Exabgp { user } => Box::new(Exabgp::bind(iface, user, &config.communities)?),
    })
}

/// A route the daemon wants announced.
#[derive(Debug)]
struct Held {
    /// The attacks under way that want it.
    reasons: BTreeSet<u32>,
    since: Instant,
    /// When it is withdrawn (once no attack wants it).
    until: Option<Instant>,
    /// Found at the speaker at start.
    adopted: bool,
}

/// The upstream mode of one interface.
pub struct Upstream {
    iface: String,
    config: Config,
    wanted: BTreeMap<Route, Held>,
    /// Per drop reason: since when its condition holds.
    over_since: HashMap<u32, Instant>,
    /// Per drop reason under attack: the addresses it has routes for.
    claimed: HashMap<u32, BTreeSet<std::net::IpAddr>>,
    /// Per drop reason under attack: what was logged as not announced.
    told: HashSet<(u32, String)>,
    /// Whether the routes found at start were decided on (always, in a dry run).
    adopted: bool,
    shared: Arc<Shared>,
    skipped_max_rules: u64,
    skipped_dry_run: u64,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

impl Upstream {
    /// Starts the mode: the worker lists the speaker's routes at once (not
    /// in a dry run, which never calls the speaker).
    pub fn start(iface: &str, config: Config) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        if !config.dry_run {
            worker::spawn(iface, speaker(iface, &config)?, shared.clone())?;
        }
        log::info!("upstream: {}", config.describe());
        Ok(Self {
            iface: iface.to_owned(),
            adopted: config.dry_run,
            config,
            wanted: BTreeMap::new(),
            over_since: HashMap::new(),
            claimed: HashMap::new(),
            told: HashSet::new(),
            shared,
            skipped_max_rules: 0,
            skipped_dry_run: 0,
        })
    }

    /// A new `[upstream]` section from a reload. The speaker, its address,
    /// the mark and dry_run take effect at the next start (changing them
    /// under live routes would strand them); the rest at once: routes of a
    /// kind no longer announced are withdrawn, and the newest beyond
    /// `max_rules`.
    pub fn reconfigure(&mut self, config: Config) {
        if config == self.config {
            return;
        }
        let kept = |c: &Config| (c.speaker.clone(), c.mark, c.dry_run, c.communities.clone());
        if kept(&config) != kept(&self.config) {
            log::warn!(
                "upstream: speaker, gobgp_api, exabgp_user, mark, communities and dry_run changes take effect \
                 when the daemon restarts; the rest applies now"
            );
        }
        let config = Config {
            speaker: self.config.speaker.clone(),
            mark: self.config.mark,
            dry_run: self.config.dry_run,
            communities: self.config.communities.clone(),
            ..config
        };
        log::info!("upstream: {}", config.describe());
        self.config = config;
        self.over_since.clear();
        self.prune(Instant::now());
        self.publish();
    }

    /// The section was removed: everything announced is withdrawn, then the
    /// mode ends ([`Upstream::is_done`]).
    pub fn retire(&mut self) {
        log::warn!("upstream: the [upstream] section is gone: withdrawing every route");
        self.config.reasons.clear();
        self.wanted.clear();
        self.shared.lock().retiring = true;
        self.publish();
    }

    pub fn is_retiring(&self) -> bool {
        self.shared.lock().retiring
    }

    /// Retired and nothing left at the speaker.
    pub fn is_done(&self) -> bool {
        let state = self.shared.lock();
        state.retiring && (state.stop || self.config.dry_run)
    }

    /// One second more: `delta` is what the counters moved in `secs`,
    /// `under_attack` the reasons the attack lines have under way.
    pub fn tick(
        &mut self,
        now: Instant,
        delta: &Stats,
        secs: f64,
        under_attack: &[Reason],
        history: &History,
    ) {
        if secs <= 0.0 {
            return;
        }
        self.adopt(now);
        let received = received_bytes(delta) as f64 / secs;
        let uplink_full = self
            .config
            .uplink
            .map(|uplink| received >= uplink.full_bytes_per_second());
        let reasons = self.config.reasons.clone();
        for (reason, shape) in &reasons {
            let key = reason.index();
            if !under_attack.contains(reason) {
                self.over_since.remove(&key);
                if self.claimed.remove(&key).is_some() {
                    self.release(*reason, now);
                }
                continue;
            }
            let pps = top::dropped(delta, *reason).0 as f64 / secs;
            let fast = self.config.attack_pps.map(|n| pps >= n as f64);
            let over = match self.config.trigger {
                Trigger::Any => fast == Some(true) || uplink_full == Some(true),
                Trigger::All => fast != Some(false) && uplink_full != Some(false),
            };
            if !over {
                // What is announced stays while the attack is under way.
                self.over_since.remove(&key);
                continue;
            }
            // The rate just read is that of the second before.
            let measured_from = now
                .checked_sub(Duration::from_secs_f64(secs))
                .unwrap_or(now);
            let since = *self.over_since.entry(key).or_insert(measured_from);
            if now.duration_since(since) < self.config.sustain {
                continue;
            }
            let window_start = since.min(now.checked_sub(Duration::from_secs(2)).unwrap_or(now));
            let samples: Vec<_> = history
                .samples_since(window_start)
                .filter(|sample| sample.reason == *reason && sample.at <= now)
                .collect();
            let (routes, unbuildable) = route::build(shape, &samples);
            for skipped in unbuildable {
                if self.told.insert((key, skipped.destination.to_string())) {
                    log::warn!(
                        target: "attack",
                        "attack on {}: {}: no upstream rule for {}: {}",
                        self.iface,
                        reason.name(),
                        skipped.destination,
                        skipped.why
                    );
                }
            }
            if routes.is_empty() && samples.is_empty() {
                let what = "no sampled drops".to_owned();
                if self.told.insert((key, what)) {
                    log::warn!(
                        target: "attack",
                        "attack on {}: {}: nothing to announce upstream without sampled drops \
                         (is sample_rate off?)",
                        self.iface,
                        reason.name()
                    );
                }
            }
            for route in routes {
                self.want(route, *reason, now);
            }
        }
        self.expire(now);
        self.publish();
    }

    /// Routes found at the speaker when the worker first listed it: kept
    /// for `hold` (an attack may claim them sooner), or withdrawn at once
    /// when nothing in the config announces their kind any more.
    fn adopt(&mut self, now: Instant) {
        if self.adopted {
            return;
        }
        let Some(found) = self.shared.lock().live.clone() else {
            return;
        };
        self.adopted = true;
        for route in found {
            let kind_wanted = self.config.announces(matches!(route, Route::Rtbh { .. }));
            if let Some(held) = self.wanted.get_mut(&route) {
                // An attack wanted it before the speaker could be listed
                // (ExaBGP's bridge not connected yet): it is not announced
                // again.
                log::info!(
                    "upstream: {route} was announced before this daemon started: kept for the \
                     attack under way"
                );
                held.adopted = true;
            } else if kind_wanted && self.wanted.len() < self.config.max_rules {
                log::info!(
                    "upstream: {route} was announced before this daemon started: kept for {} \
                     (hold) unless an attack wants it longer",
                    units_duration(self.config.hold)
                );
                self.wanted.insert(
                    route,
                    Held {
                        reasons: BTreeSet::new(),
                        since: now,
                        until: Some(now + self.config.hold),
                        adopted: true,
                    },
                );
            } else {
                log::info!(
                    "upstream: {route} was announced before this daemon started; the config no \
                     longer wants it ({}): withdrawing it",
                    if kind_wanted {
                        "over max_rules"
                    } else {
                        "no reason announces this kind"
                    }
                );
            }
        }
    }

    /// `reason`'s attack calls for `route`.
    fn want(&mut self, route: Route, reason: Reason, now: Instant) {
        let key = reason.index();
        let address = route.address();
        let claimed = self.claimed.entry(key).or_default();
        if claimed.contains(&address) {
            // One route per attacked address and attack: a later window
            // of the same attack builds no second one.
            return;
        }
        // A route already held that matches at least what this one would
        // (the same one, or an earlier daemon's) is this attack's too.
        let covering = self
            .wanted
            .keys()
            .find(|held| covers(held, &route))
            .cloned();
        if let Some(held_route) = covering {
            claimed.insert(address);
            let held = self.wanted.get_mut(&held_route).expect("found above");
            held.reasons.insert(key);
            held.until = None;
            return;
        }
        if self.wanted.len() >= self.config.max_rules {
            if self.told.insert((key, route.to_string())) {
                self.skipped_max_rules += 1;
                log::warn!(
                    target: "attack",
                    event = "upstream_skipped", iface = self.iface.as_str(), reason = reason.name(),
                    route = route.to_string().as_str();
                    "attack on {}: {}: not announcing {route}: {} routes are announced, the most \
                     max_rules allows",
                    self.iface,
                    reason.name(),
                    self.wanted.len()
                );
            }
            return;
        }
        claimed.insert(address);
        if self.config.dry_run {
            self.skipped_dry_run += 1;
            log::warn!(
                target: "attack",
                event = "upstream_dry_run", iface = self.iface.as_str(), reason = reason.name(),
                route = route.to_string().as_str();
                "attack on {}: {}: dry run: would announce {route} at {}",
                self.iface,
                reason.name(),
                self.config.speaker
            );
        }
        self.wanted.insert(
            route,
            Held {
                reasons: BTreeSet::from([key]),
                since: now,
                until: None,
                adopted: false,
            },
        );
    }

    /// `reason`'s attack ended: its routes stay for `hold`, unless another
    /// attack under way wants them.
    fn release(&mut self, reason: Reason, now: Instant) {
        let key = reason.index();
        self.told.retain(|(told, _)| *told != key);
        let until = now + self.config.hold;
        for (route, held) in &mut self.wanted {
            if held.reasons.remove(&key) && held.reasons.is_empty() {
                held.until = Some(until);
                log::warn!(
                    target: "attack",
                    event = "upstream_held", iface = self.iface.as_str(), reason = reason.name(),
                    route = route.to_string().as_str(), hold_seconds = self.config.hold.as_secs();
                    "attack on {} ended: {}: {route} stays announced for {} (hold), then is withdrawn",
                    self.iface,
                    reason.name(),
                    units_duration(self.config.hold)
                );
            }
        }
    }

    /// Drops the routes whose hold is over.
    fn expire(&mut self, now: Instant) {
        let dry_run = self.config.dry_run;
        let iface = self.iface.clone();
        self.wanted.retain(|route, held| {
            let keep = held.until.is_none_or(|until| until > now);
            if !keep && dry_run {
                log::warn!(
                    target: "attack",
                    "upstream on {iface}: dry run: would withdraw {route}"
                );
            }
            keep
        });
    }

    /// After a reload: routes of a kind no longer announced go, and the
    /// newest beyond max_rules.
    fn prune(&mut self, now: Instant) {
        let config = &self.config;
        self.wanted
            .retain(|route, _| config.announces(matches!(route, Route::Rtbh { .. })));
        while self.wanted.len() > self.config.max_rules {
            let newest = self
                .wanted
                .iter()
                .max_by_key(|(_, held)| held.since)
                .map(|(route, _)| route.clone())
                .expect("not empty");
            self.wanted.remove(&newest);
        }
        self.expire(now);
        let kept: BTreeSet<std::net::IpAddr> = self.wanted.keys().map(Route::address).collect();
        for addresses in self.claimed.values_mut() {
            addresses.retain(|address| kept.contains(address));
        }
    }

    /// Hands the wanted routes to the worker.
    fn publish(&self) {
        if self.config.dry_run || !self.adopted {
            return;
        }
        let wanted = self
            .wanted
            .iter()
            .map(|(route, held)| (route.clone(), self.why(held)))
            .collect();
        self.shared.lock().wanted = Some(wanted);
        self.shared.notify();
    }

    fn why(&self, held: &Held) -> String {
        let reasons: Vec<&str> = held
            .reasons
            .iter()
            .filter_map(|key| Reason::ALL.get(*key as usize))
            .map(|reason| reason.name())
            .collect();
        match (reasons.is_empty(), held.adopted) {
            (false, _) => format!("attack on {}: {}", self.iface, reasons.join(", ")),
            (true, true) => format!("{}: announced again after a restart", self.iface),
            (true, false) => format!("{}: held after its attack", self.iface),
        }
    }

    /// What `filter-ctl upstream status` and the metrics show.
    pub fn status(&self) -> UpstreamStatus {
        let now = Instant::now();
        let state = self.shared.lock();
        let live = state.live.clone().unwrap_or_default();
        let mut routes: Vec<RouteStatus> = self
            .wanted
            .iter()
            .map(|(route, held)| RouteStatus {
                route: route.clone(),
                text: route.to_string(),
                state: if self.config.dry_run {
                    RouteState::DryRun
                } else if live.contains(route) {
                    RouteState::Announced
                } else {
                    RouteState::Announcing
                },
                reasons: held
                    .reasons
                    .iter()
                    .filter_map(|key| Reason::ALL.get(*key as usize))
                    .map(|reason| reason.name().to_owned())
                    .collect(),
                age_seconds: Some(now.duration_since(held.since).as_secs()),
                withdraw_in_seconds: held
                    .until
                    .map(|until| until.saturating_duration_since(now).as_secs()),
                adopted: held.adopted,
            })
            .collect();
        routes.extend(
            live.iter()
                .filter(|route| !self.wanted.contains_key(*route))
                .map(|route| RouteStatus {
                    route: route.clone(),
                    text: route.to_string(),
                    state: if self.adopted {
                        RouteState::Withdrawing
                    } else {
                        RouteState::Announced
                    },
                    reasons: Vec::new(),
                    age_seconds: None,
                    withdraw_in_seconds: None,
                    adopted: true,
                }),
        );
        UpstreamStatus {
            iface: self.iface.clone(),
            speaker: self.config.speaker.to_string(),
            dry_run: self.config.dry_run,
            max_rules: self.config.max_rules,
            routes,
            announced_total: state.announced_total,
            withdrawn_total: state.withdrawn_total,
            speaker_errors_total: state.errors_total,
            skipped_max_rules_total: self.skipped_max_rules,
            skipped_dry_run_total: self.skipped_dry_run,
            last_error: state.last_error.clone(),
            from_daemon: true,
        }
    }
}

fn units_duration(duration: Duration) -> String {
    filter_ctl_api::settings::duration::format(duration)
}

/// Whether `held` matches everything `new` would: the same kind and
/// address, for FlowSpec the same protocol, ports and fragment bit, and a
/// length bound no higher.
fn covers(held: &Route, new: &Route) -> bool {
    match (held, new) {
        (Route::Rtbh { address: a }, Route::Rtbh { address: b }) => a == b,
        (Route::Flowspec(a), Route::Flowspec(b)) => {
            a.destination == b.destination
                && a.protocol == b.protocol
                && a.source_ports == b.source_ports
                && a.fragments == b.fragments
                && match (a.min_length, b.min_length) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(a), Some(b)) => a <= b,
                }
        }
        _ => false,
    }
}

/// Bytes wan0 received: everything the XDP program counted, passed or not.
fn received_bytes(delta: &Stats) -> u64 {
    delta
        .0
        .iter()
        .filter(|row| row.direction == filter_common::Direction::Ingress)
        .map(|row| row.bytes)
        .sum()
}

/// `filter-ctl upstream status`: the daemon's view, or without a daemon
/// the routes the speaker of `config_text` (a daemon config file) holds
/// with the daemon's mark.
pub fn status(pins: &IfacePins, config_text: Option<&str>) -> anyhow::Result<UpstreamStatus> {
    let iface = pins.iface();
    match super::control::ask_upstream(pins)? {
        Some(Some(status)) => return Ok(status),
        Some(None) => anyhow::bail!(
            "the daemon for {iface} runs without an [upstream] section in its config: \
             nothing is announced upstream"
        ),
        None => {}
    }
    let Some(text) = config_text else {
        anyhow::bail!(
            "no daemon runs for {iface}; with --config FILE (its config file) the routes are \
             read from the speaker"
        );
    };
    let config = super::reload::upstream_of(text)?;
    let config = config.ok_or_else(|| anyhow::anyhow!("the config has no [upstream] section"))?;
    if matches!(config.speaker, SpeakerConfig::Exabgp { .. }) {
        anyhow::bail!(
            "no daemon runs for {iface}: what ExaBGP holds of its routes is known to the daemon \
             (and to ExaBGP: `exabgpcli show adj-rib out`)"
        );
    }
    let routes = speaker(iface, &config)?.list()?;
    Ok(UpstreamStatus {
        iface: iface.to_owned(),
        speaker: config.speaker.to_string(),
        dry_run: config.dry_run,
        max_rules: config.max_rules,
        routes: routes
            .into_iter()
            .map(|route| RouteStatus {
                text: route.to_string(),
                route,
                state: RouteState::Announced,
                reasons: Vec::new(),
                age_seconds: None,
                withdraw_in_seconds: None,
                adopted: false,
            })
            .collect(),
        from_daemon: false,
        ..UpstreamStatus::default()
    })
}
