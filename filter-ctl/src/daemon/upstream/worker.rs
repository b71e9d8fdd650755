//! The thread that talks to the speaker: it makes the speaker hold exactly
//! the routes the daemon wants, no more, no less, and says what it did.
//! Calls to the speaker can be slow or hang (a process per call, gobgpd
//! busy or gone), so they happen here, never on the daemon's event loop.
//!
//! First it lists the daemon's routes at the speaker (those with its mark,
//! [`super::gobgp`]): the daemon decides which of them it keeps
//! ([`super::Upstream`]) before anything is changed. Then, each time the
//! wanted routes change and every [`VERIFY_EVERY`], it withdraws what the
//! speaker has and nobody wants, announces what is wanted and missing, and
//! lists again (a gobgpd restarted meanwhile has lost its routes: they are
//! announced again). A failed call is counted and tried again.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use super::{Speaker, route::Route};

/// How often the speaker's routes are listed again, to find what it lost.
const VERIFY_EVERY: Duration = Duration::from_secs(10);
/// How long to wait after a failed call before the next.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What the daemon and the worker share.
#[derive(Debug, Default)]
pub struct Shared {
    pub state: Mutex<State>,
    wake: Condvar,
}

/// The routes wanted, what the speaker has, and the counts the metrics show.
#[derive(Debug, Default)]
pub struct State {
    /// The routes the speaker should have, each with why (for the log); `None`
    /// until the daemon has decided about the routes found at start.
    pub wanted: Option<BTreeMap<Route, String>>,
    /// The daemon's routes the speaker has; `None` until first listed.
    pub live: Option<BTreeSet<Route>>,
    pub announced_total: u64,
    pub withdrawn_total: u64,
    pub errors_total: u64,
    /// The last call's error, until a call succeeds.
    pub last_error: Option<String>,
    /// Withdraw everything, then end.
    pub retiring: bool,
    pub stop: bool,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("never poisoned")
    }

    /// Wakes the worker: the wanted routes changed.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Ends the worker at its next wake.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.notify();
    }
}

/// Starts the worker for `speaker` on `iface`.
pub fn spawn(iface: &str, speaker: Box<dyn Speaker>, shared: Arc<Shared>) -> std::io::Result<()> {
    let iface = iface.to_owned();
    thread::Builder::new()
        .name("upstream".into())
        .spawn(move || {
            Worker {
                iface,
                speaker,
                shared,
                listed_at: None,
                failing: false,
            }
            .run()
        })
        .map(drop)
}

struct Worker {
    iface: String,
    speaker: Box<dyn Speaker>,
    shared: Arc<Shared>,
    listed_at: Option<Instant>,
    /// The last call failed (a failure is logged once, and its end).
    failing: bool,
}

impl Worker {
    fn run(mut self) {
        let mut wait = Duration::ZERO;
        loop {
            let (wanted, stop) = {
                let state = self.shared.lock();
                let (state, _) = self
                    .shared
                    .wake
                    .wait_timeout(state, wait)
                    .expect("never poisoned");
                (state.wanted.clone(), state.stop)
            };
            if stop {
                return;
            }
            wait = match self.reconcile(wanted) {
                Ok(()) => Duration::from_secs(1),
                Err(()) => RETRY_AFTER,
            };
        }
    }

    /// Lists if due, then withdraws and announces; `Err` after a failed call.
    fn reconcile(&mut self, wanted: Option<BTreeMap<Route, String>>) -> Result<(), ()> {
        if self.listed_at.is_none_or(|at| at.elapsed() >= VERIFY_EVERY) {
            let listed = self.speaker.list();
            let routes: BTreeSet<Route> = self.outcome(listed)?.into_iter().collect();
            self.listed_at = Some(Instant::now());
            let mut state = self.shared.lock();
            if let (Some(known), Some(wanted)) = (&state.live, &wanted) {
                for lost in known
                    .difference(&routes)
                    .filter(|r| wanted.contains_key(*r))
                {
                    log::warn!(
                        "upstream: {} no longer has {lost}: announcing it again",
                        self.speaker_name()
                    );
                }
            }
            state.live = Some(routes);
        }
        let Some(wanted) = wanted else {
            return Ok(());
        };
        let live = self.shared.lock().live.clone().unwrap_or_default();
        let retiring = self.shared.lock().retiring;
        let unwanted: Vec<&Route> = live.iter().filter(|r| !wanted.contains_key(*r)).collect();
        for route in unwanted {
            let done = self.speaker.withdraw(route);
            self.outcome(done)?;
            let mut state = self.shared.lock();
            state.withdrawn_total += 1;
            state.live.get_or_insert_default().remove(route);
            drop(state);
            log::warn!(
                target: "attack",
                event = "upstream_withdrawn", iface = self.iface.as_str(),
                route = route.to_string().as_str(), speaker = self.speaker_name().as_str();
                "upstream: withdrew {route} at {} (wan0 {})",
                self.speaker_name(),
                self.iface
            );
        }
        if retiring {
            self.shared.lock().stop = true;
            return Ok(());
        }
        for (route, why) in wanted.iter().filter(|(r, _)| !live.contains(*r)) {
            let done = self.speaker.announce(route);
            self.outcome(done)?;
            let mut state = self.shared.lock();
            state.announced_total += 1;
            state.live.get_or_insert_default().insert(route.clone());
            drop(state);
            log::warn!(
                target: "attack",
                event = "upstream_announced", iface = self.iface.as_str(),
                route = route.to_string().as_str(), speaker = self.speaker_name().as_str(),
                why = why.as_str();
                "upstream: announced {route} at {} ({why})",
                self.speaker_name()
            );
        }
        Ok(())
    }

    fn speaker_name(&self) -> String {
        self.speaker.name()
    }

    /// Counts and logs a failed call (once until one succeeds again).
    fn outcome<T>(&mut self, result: anyhow::Result<T>) -> Result<T, ()> {
        let mut state = self.shared.lock();
        match result {
            Ok(value) => {
                if std::mem::replace(&mut self.failing, false) {
                    log::info!("upstream: {} answers again", self.speaker_name());
                }
                state.last_error = None;
                Ok(value)
            }
            Err(err) => {
                state.errors_total += 1;
                state.last_error = Some(format!("{err:#}"));
                if !std::mem::replace(&mut self.failing, true) {
                    log::error!(
                        "upstream: {err:#}; trying again every {} s",
                        RETRY_AFTER.as_secs()
                    );
                }
                Err(())
            }
        }
    }
}
