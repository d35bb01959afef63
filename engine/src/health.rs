//! Whether an encrypting tunnel's far end answers, found out by looking: a probe on a
//! schedule and at once when something suggests a change (a failed connection, a network
//! change, a wake from sleep), backing off while the far end is down; the verdict with
//! its typed cause; and, on a decrypting tunnel, what it knows of its own target, which
//! it tells a probe instead of connecting to the target for it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::address::Address;
use crate::definition::TunnelSettings;
use crate::net::conn::{HandshakeFailure, HandshakeFault, HandshakeParams, TargetFault};
use crate::net::dhpool::KeyPairPool;
use crate::net::dial::{DialFault, Dialer};
use crate::net::probe::{Probed, probe_far_end};
use crate::net::resolve::{Resolve, ResolvedTarget, Resolver};
use crate::net::reverse::ReverseFault;
use crate::protocol::health::{TargetDownCause, TargetReport};
use crate::protocol::tag::NonceTag;

/// What is known of a tunnel's far end.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Health {
    /// Nothing: the tunnel does not dial a far end, its checks are off, it is stopped, or
    /// its first check has not answered yet.
    #[default]
    Unknown,
    /// The far end completed a handshake (a check's, or a real connection's).
    Up {
        /// The handshake's duration: about two network round trips plus the far end's
        /// key computation.
        round_trip: Duration,
        checked: SystemTime,
        /// What a Sluice far end said of its own target at the last check (`None`: the far
        /// end does not say, as stock spiped; never `Down`, which makes the tunnel down).
        far_target: Option<TargetReport>,
    },
    Down {
        /// When this spell of being down began (the cause may have changed since).
        since: SystemTime,
        checked: SystemTime,
        fault: HealthFault,
    },
}

impl Health {
    /// The cause while down.
    pub fn down_cause(&self) -> Option<DownCause> {
        match self {
            Health::Down { fault, .. } => Some(fault.cause()),
            _ => None,
        }
    }

    fn is_down(&self) -> bool {
        matches!(self, Health::Down { .. })
    }

    /// Up, down, unknown, and the cause: what a person would call a change.
    fn same_verdict(&self, other: &Health) -> bool {
        match (self, other) {
            (Health::Unknown, Health::Unknown) | (Health::Up { .. }, Health::Up { .. }) => true,
            (Health::Down { fault: a, .. }, Health::Down { fault: b, .. }) => {
                a.cause() == b.cause()
            }
            _ => false,
        }
    }
}

/// Why the far end counts as down: the typed failure of the last check.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HealthFault {
    /// The far end could not be reached (resolved, connected to).
    #[error(transparent)]
    Unreached(TargetFault),
    /// It was reached, but the handshake failed.
    #[error(transparent)]
    Handshake(HandshakeFault),
    /// The far end (a Sluice far end) answered, and said it cannot reach its own target.
    #[error("the far end answers, but cannot reach its own target ({}, {age_secs} s before the check)", .cause.label())]
    FarTarget {
        cause: TargetDownCause,
        age_secs: u32,
    },
    /// A reverse tunnel's pooled connection could not be made or kept.
    #[error(transparent)]
    Reverse(ReverseFault),
    /// A reverse-in end has had no connection from its reverse-out end for a while.
    #[error(
        "no connection from the reverse-out end for {} s: is it running (sluiced --reverse-out), with the same key, and does it reach this machine?",
        .0.as_secs()
    )]
    NotConnected(Duration),
}

impl HealthFault {
    /// The one classification of a failed check: what the list, the tray, the log and
    /// the metrics call it.
    pub fn cause(&self) -> DownCause {
        match self {
            HealthFault::Unreached(fault) => match fault {
                TargetFault::Unresolved(_) | TargetFault::BindUnresolved(_) => {
                    DownCause::NotResolved
                }
                TargetFault::Refused(_) => DownCause::NothingListening,
                TargetFault::TimedOut { .. } => DownCause::TimedOut,
                TargetFault::NoAddress { .. } | TargetFault::Io { .. } => DownCause::Unreachable,
            },
            HealthFault::Handshake(fault) => match fault.cause() {
                HandshakeFailure::WrongKey => DownCause::WrongKey,
                HandshakeFailure::ForwardSecrecyMismatch | HandshakeFailure::Protocol => {
                    DownCause::ModeMismatch
                }
                HandshakeFailure::Timeout => DownCause::TimedOut,
                HandshakeFailure::Network => DownCause::Unreachable,
            },
            HealthFault::FarTarget { .. } => DownCause::FarTargetDown,
            HealthFault::Reverse(fault) => match fault {
                ReverseFault::NoPong(_) | ReverseFault::NoneReady(_) => DownCause::TimedOut,
                ReverseFault::Closed
                | ReverseFault::Io(_)
                | ReverseFault::Full
                | ReverseFault::Rejected(_) => DownCause::Unreachable,
                ReverseFault::ServiceDown(_) => DownCause::FarTargetDown,
                ReverseFault::NotReverseOut
                | ReverseFault::NotForward
                | ReverseFault::NoGreeting(_)
                | ReverseFault::OutOfTurn(_)
                | ReverseFault::Control(_) => DownCause::ModeMismatch,
            },
            HealthFault::NotConnected(_) => DownCause::NotConnected,
        }
    }
}

/// Why a far end is down, in one word each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DownCause {
    /// The far end's host name does not resolve.
    NotResolved,
    /// Connection refused: nothing listening at the far end's address.
    NothingListening,
    /// No route, reset, or closed before the handshake.
    Unreachable,
    /// No answer within the tunnel's timeout.
    TimedOut,
    /// The handshake was rejected: a different key (or, for stock spiped, which cannot
    /// say, possibly its target being down).
    WrongKey,
    /// The far end refuses this end's handshake mode (forward secrecy, X25519).
    ModeMismatch,
    /// A Sluice far end answers but cannot reach its own target.
    FarTargetDown,
    /// A reverse-in end has no connection from its reverse-out end.
    NotConnected,
}

impl DownCause {
    pub const ALL: [DownCause; 8] = [
        DownCause::NotResolved,
        DownCause::NothingListening,
        DownCause::Unreachable,
        DownCause::TimedOut,
        DownCause::WrongKey,
        DownCause::ModeMismatch,
        DownCause::FarTargetDown,
        DownCause::NotConnected,
    ];

    /// In a few words, for a list row or a tooltip.
    pub fn label(self) -> &'static str {
        match self {
            DownCause::NotResolved => "name does not resolve",
            DownCause::NothingListening => "nothing listening",
            DownCause::Unreachable => "unreachable",
            DownCause::TimedOut => "timed out",
            DownCause::WrongKey => "wrong key",
            DownCause::ModeMismatch => "handshake mode refused",
            DownCause::FarTargetDown => "its target is down",
            DownCause::NotConnected => "far end not connected",
        }
    }

    /// A stable machine name (a Prometheus label value, a log field).
    pub fn metric_label(self) -> &'static str {
        match self {
            DownCause::NotResolved => "not_resolved",
            DownCause::NothingListening => "nothing_listening",
            DownCause::Unreachable => "unreachable",
            DownCause::TimedOut => "timed_out",
            DownCause::WrongKey => "wrong_key",
            DownCause::ModeMismatch => "mode_mismatch",
            DownCause::FarTargetDown => "far_target_down",
            DownCause::NotConnected => "not_connected",
        }
    }
}

/// One check's outcome over time: its handshake's duration, or `None` when it failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CheckSample {
    pub at: SystemTime,
    pub round_trip: Option<Duration>,
}

/// Samples kept per tunnel: four hours at the default interval.
const HISTORY_LEN: usize = 240;
/// A real connection's handshake becomes a sample at most this often.
const REAL_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Checks asked for at once (after a failure, a network change) still come at most this
/// often: a burst of failing clients costs one check.
const MIN_CHECK_GAP: Duration = Duration::from_secs(1);
/// The longest pause between checks while the far end is down, unless the interval
/// itself is longer.
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The first pause after a check found the far end down, unless the interval is shorter.
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// Health changes a tunnel publishes (logs) in a burst; after that, one more per
/// [`PUBLISH_GAP`], and a change in between is published when it may be, with the health
/// as it is then. A far end that flaps cannot flood the log.
const PUBLISH_BURST: u32 = 3;
const PUBLISH_GAP: Duration = Duration::from_secs(10);

/// A tunnel's health and what wakes its checker: shared by the checker, the tunnel's
/// connections (whose handshakes are evidence too) and status readers.
#[derive(Default)]
pub(crate) struct HealthWatch {
    state: Mutex<WatchState>,
    wake: Notify,
}

#[derive(Default)]
struct WatchState {
    health: Health,
    /// The last proof the far end works: a check that passed, a real handshake.
    last_good: Option<Instant>,
    /// That proof's handshake time.
    last_round_trip: Option<Duration>,
    history: VecDeque<CheckSample>,
    /// A check is wanted as soon as the gap allows.
    urgent: bool,
    /// The network changed since the last check: resolve the far end again first.
    network_changed: bool,
    publication: Publication,
}

/// Which health changes go out as events: a token bucket of [`PUBLISH_BURST`] refilled
/// one per [`PUBLISH_GAP`]. Deterministic: the caller passes the time in.
#[derive(Default)]
struct Publication {
    /// Changes published that have not refilled yet.
    spent: u32,
    /// Since when the oldest of them refills.
    refill_from: Option<Instant>,
    /// The last health published: a held-back change that ended where it began is none.
    last: Option<Health>,
    /// A change is waiting to be published.
    held_back: bool,
}

impl Publication {
    fn refill(&mut self, now: Instant) {
        let Some(from) = self.refill_from else {
            return;
        };
        let elapsed = now.saturating_duration_since(from);
        let gained = u32::try_from(elapsed.as_nanos() / PUBLISH_GAP.as_nanos()).unwrap_or(u32::MAX);
        self.spent = self.spent.saturating_sub(gained);
        self.refill_from = (self.spent > 0).then(|| from + PUBLISH_GAP * gained);
    }

    /// `health` is the tunnel's health after a change: returns it if it goes out now.
    fn offer(&mut self, health: &Health, now: Instant) -> Option<Health> {
        if self
            .last
            .as_ref()
            .is_some_and(|last| last.same_verdict(health))
        {
            self.held_back = false;
            return None;
        }
        self.refill(now);
        if self.spent >= PUBLISH_BURST {
            self.held_back = true;
            return None;
        }
        self.spent += 1;
        self.refill_from.get_or_insert(now);
        self.held_back = false;
        self.last = Some(health.clone());
        Some(health.clone())
    }
}

impl HealthWatch {
    fn state(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn health(&self) -> Health {
        self.state().health.clone()
    }

    /// The handshake time of the last check (or real connection) that reached the far
    /// end, kept while it is down.
    pub fn last_round_trip(&self) -> Option<Duration> {
        self.state().last_round_trip
    }

    pub fn history(&self) -> Vec<CheckSample> {
        self.state().history.iter().copied().collect()
    }

    /// The tunnel stopped, or stopped checking: nothing is known any more. Not a change
    /// worth an event (the tunnel's own stop or update is one).
    pub fn forget(&self) {
        let mut state = self.state();
        state.health = Health::Unknown;
        state.last_good = None;
        state.last_round_trip = None;
        state.publication.held_back = false;
        state.publication.last = None;
    }

    /// A real connection completed its handshake in `round_trip`: as good as a check
    /// (the schedule's next check moves back), except that it says nothing of a far end's
    /// target, so a far end down for that reason stays down until a check says otherwise.
    pub fn handshake_succeeded(&self, round_trip: Duration, now: Instant) -> Option<Health> {
        let mut state = self.state();
        state.last_good = Some(now);
        state.last_round_trip = Some(round_trip);
        let far_target = match &state.health {
            Health::Down {
                fault: HealthFault::FarTarget { .. },
                ..
            } => return None,
            Health::Up { far_target, .. } => *far_target,
            _ => None,
        };
        let at = SystemTime::now();
        state.sample_now_and_then(at, Some(round_trip));
        state.set(
            Health::Up {
                round_trip,
                checked: at,
                far_target,
            },
            now,
        )
    }

    /// The far end could not be reached for `fault` (a reverse tunnel's pool says so,
    /// not a check). Returns the health to publish, as [`HealthWatch::handshake_succeeded`].
    pub fn unreached(&self, fault: HealthFault, now: Instant) -> Option<Health> {
        let at = SystemTime::now();
        let mut state = self.state();
        state.sample_now_and_then(at, None);
        state.set(
            Health::Down {
                since: at,
                checked: at,
                fault,
            },
            now,
        )
    }

    /// A real connection failed to reach the far end or to complete its handshake (or the
    /// far end cut it short): check at once, unless the far end is known to be down.
    pub fn connection_failed(&self) {
        let mut state = self.state();
        if !state.health.is_down() {
            state.urgent = true;
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Check at once, whatever the schedule (the app asks when a tunnel starts, to show
    /// its far end's health without waiting an interval).
    pub fn check_now(&self) {
        self.state().urgent = true;
        self.wake.notify_one();
    }

    /// The machine's network changed or it woke from sleep: resolve again and check at
    /// once, whatever the schedule.
    pub fn network_changed(&self) {
        let mut state = self.state();
        state.urgent = true;
        state.network_changed = true;
        drop(state);
        self.wake.notify_one();
    }

    /// The health to publish now, if a change was held back and its gap is over.
    pub fn held_back(&self, now: Instant) -> Option<Health> {
        let mut state = self.state();
        if !state.publication.held_back {
            return None;
        }
        let health = state.health.clone();
        state.publication.offer(&health, now)
    }
}

impl WatchState {
    /// Takes `health`; returns it if that is a change that may be published now (if not,
    /// it is held back for [`HealthWatch::held_back`]).
    fn set(&mut self, health: Health, now: Instant) -> Option<Health> {
        let changed = !self.health.same_verdict(&health);
        let health = match (&self.health, health) {
            // Still down: the spell began when it first went down.
            (Health::Down { since, .. }, Health::Down { checked, fault, .. }) => Health::Down {
                since: *since,
                checked,
                fault,
            },
            (_, health) => health,
        };
        self.health = health;
        if !changed {
            return None;
        }
        let health = self.health.clone();
        self.publication.offer(&health, now)
    }

    /// A sample from a real connection (or a reverse tunnel's pool), at most one per
    /// [`REAL_SAMPLE_EVERY`], so a busy tunnel does not flood the history.
    fn sample_now_and_then(&mut self, at: SystemTime, round_trip: Option<Duration>) {
        let sampled_recently = self.history.back().is_some_and(|last| {
            at.duration_since(last.at)
                .is_ok_and(|since| since < REAL_SAMPLE_EVERY)
        });
        if !sampled_recently {
            self.sample(at, round_trip);
        }
    }

    fn sample(&mut self, at: SystemTime, round_trip: Option<Duration>) {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(CheckSample { at, round_trip });
    }
}

/// What a checker needs: the far end's address as the tunnel resolved it, the key and
/// handshake settings, how often to look.
pub(crate) struct Checker {
    pub settings: Arc<TunnelSettings>,
    pub target: Arc<ResolvedTarget>,
    pub bind: Arc<[SocketAddr]>,
    pub pool: Arc<KeyPairPool>,
    pub resolver: Arc<dyn Resolver>,
    pub interval: Duration,
}

/// When the next check is due: the arithmetic of the checker's loop, apart from its I/O.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    interval: Duration,
    /// When checking began: the first check is due an interval later, so starting a
    /// tunnel costs a stock spiped far end no connection to its target.
    started: Instant,
    last_check: Option<Instant>,
    /// The pause before the next check while the far end is down.
    backoff: Option<Duration>,
    /// A check is wanted as soon as [`MIN_CHECK_GAP`] allows.
    urgent: bool,
}

impl Schedule {
    fn new(interval: Duration, started: Instant) -> Schedule {
        Schedule {
            interval,
            started,
            last_check: None,
            backoff: None,
            urgent: false,
        }
    }

    /// The interval after the last proof the far end works (a check, or a real
    /// connection: `last_good`; at first, the start), or a backoff after the last check
    /// while it is down; an urgent one at once, or a short gap after the last check.
    fn due(&self, last_good: Option<Instant>, now: Instant) -> Instant {
        let Some(last) = self.last_check else {
            if self.urgent {
                return now;
            }
            return last_good.map_or(self.started, |good| good.max(self.started)) + self.interval;
        };
        if self.urgent {
            return last + MIN_CHECK_GAP;
        }
        match self.backoff {
            Some(pause) => last + pause,
            None => last_good.map_or(last, |good| good.max(last)) + self.interval,
        }
    }

    /// The network changed: check soon, and forget the backoff (the far end may well be
    /// back where it was unreachable before).
    fn network_changed(&mut self) {
        self.urgent = true;
        self.backoff = None;
    }

    /// A check ran at `now` and found the far end down or not.
    fn checked(&mut self, now: Instant, down: bool) {
        self.last_check = Some(now);
        self.urgent = false;
        self.backoff = match (down, self.backoff) {
            (false, _) => None,
            (true, None) => Some(BACKOFF_FIRST.min(self.interval)),
            (true, Some(pause)) => Some((pause * 2).min(BACKOFF_CAP.max(self.interval))),
        };
    }
}

impl Checker {
    /// Checks until `stop`, as [`Schedule`] says, and as soon as the watch is woken.
    /// `publish` gets each change that may be published.
    pub async fn run(
        self,
        watch: Arc<HealthWatch>,
        stop: CancellationToken,
        publish: impl Fn(Health),
    ) {
        let mut schedule = Schedule::new(self.interval, Instant::now());
        loop {
            let now = Instant::now();
            let (network_changed, last_good) = {
                let mut state = watch.state();
                schedule.urgent |= std::mem::take(&mut state.urgent);
                (std::mem::take(&mut state.network_changed), state.last_good)
            };
            if network_changed {
                schedule.network_changed();
            }
            let due = schedule.due(last_good, now);
            if due > now {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until(due.into()) => {}
                    () = watch.wake.notified() => {}
                }
                continue;
            }
            let checked = tokio::select! {
                () = stop.cancelled() => return,
                checked = self.check(network_changed) => checked,
            };
            let now = Instant::now();
            let at = SystemTime::now();
            let health = match checked {
                Ok(probed) => match probed.report {
                    Some(TargetReport::Down { cause, age_secs }) => Health::Down {
                        since: at,
                        checked: at,
                        fault: HealthFault::FarTarget { cause, age_secs },
                    },
                    far_target => Health::Up {
                        round_trip: probed.handshake,
                        checked: at,
                        far_target,
                    },
                },
                Err(fault) => Health::Down {
                    since: at,
                    checked: at,
                    fault,
                },
            };
            schedule.checked(now, health.is_down());
            let changed = {
                let mut state = watch.state();
                let round_trip = match &health {
                    Health::Up { round_trip, .. } => {
                        state.last_good = Some(now);
                        state.last_round_trip = Some(*round_trip);
                        Some(*round_trip)
                    }
                    _ => None,
                };
                state.sample(at, round_trip);
                state.set(health, now)
            };
            if let Some(health) = changed {
                publish(health);
            }
        }
    }

    /// One probe of the far end, resolving its name again first if the network changed.
    async fn check(&self, resolve_again: bool) -> Result<Probed, HealthFault> {
        let definition = &self.settings.definition;
        if resolve_again && matches!(definition.target, Address::Host { .. }) {
            let addrs = definition
                .target
                .resolve_with(&*self.resolver)
                .await
                .map_err(|e| HealthFault::Unreached(TargetFault::Unresolved(e)))?;
            self.target.replace(addrs);
        }
        let params = HandshakeParams {
            role: definition.role(),
            key: &self.settings.key,
            forward_secrecy: definition.forward_secrecy,
            key_agreement: definition.key_agreement,
            pool: &self.pool,
            tag: Some(NonceTag::HealthProbe),
            previous_key: None,
        };
        let addrs = self.target.current();
        let dialer = Dialer::new(
            &definition.target,
            definition.bind.as_ref(),
            definition.timeout,
        )
        .with_resolved(&addrs, &self.bind);
        probe_far_end(&dialer, &params)
            .await
            .map_err(|fault| match fault {
                DialFault::Target(fault) => HealthFault::Unreached(fault),
                DialFault::Handshake(fault) => HealthFault::Handshake(fault),
            })
    }
}

/// What a decrypting tunnel last learnt of its target from its own connections, told to
/// a probe without connecting to the target: a healthy target is never touched for a
/// check. Only while the record says the target is down does a probe cost one bare
/// connection to it (opened, closed), so that its recovery shows without waiting for a
/// real client.
#[derive(Default)]
pub(crate) struct TargetRecord(Mutex<Option<(Instant, Option<TargetDownCause>)>>);

impl TargetRecord {
    pub fn record(&self, outcome: Result<(), &TargetFault>, now: Instant) {
        let down = outcome.err().map(down_cause_of);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((now, down));
    }

    /// Whether the last connection to the target failed.
    pub fn says_down(&self) -> bool {
        matches!(
            *self.0.lock().unwrap_or_else(PoisonError::into_inner),
            Some((_, Some(_)))
        )
    }

    /// What the record says at `now`.
    pub fn report(&self, now: Instant) -> TargetReport {
        match *self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            None => TargetReport::Unknown,
            Some((at, None)) => TargetReport::Up {
                age_secs: age_secs(at, now),
            },
            Some((at, Some(cause))) => TargetReport::Down {
                age_secs: age_secs(at, now),
                cause,
            },
        }
    }
}

fn age_secs(at: Instant, now: Instant) -> u32 {
    u32::try_from(now.saturating_duration_since(at).as_secs()).unwrap_or(u32::MAX)
}

pub(crate) fn down_cause_of(fault: &TargetFault) -> TargetDownCause {
    match fault {
        TargetFault::Refused(_) => TargetDownCause::Refused,
        TargetFault::TimedOut { .. } => TargetDownCause::TimedOut,
        TargetFault::Unresolved(_) | TargetFault::BindUnresolved(_) => TargetDownCause::Unresolved,
        TargetFault::NoAddress { .. } | TargetFault::Io { .. } => TargetDownCause::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_first_check_is_an_interval_after_the_start_then_after_the_last_proof() {
        let start = Instant::now();
        let mut schedule = Schedule::new(MINUTE, start);
        assert_eq!(schedule.due(None, start), start + MINUTE);
        schedule.urgent = true;
        assert_eq!(schedule.due(None, start), start, "asked for at once");
        schedule.checked(start, false);
        assert_eq!(schedule.due(Some(start), start), start + MINUTE);
        // A real connection 20 s later counts as a check: the next one moves back.
        let traffic = start + Duration::from_secs(20);
        assert_eq!(schedule.due(Some(traffic), traffic), traffic + MINUTE);
    }

    #[test]
    fn checks_back_off_while_down_up_to_a_cap_and_reset_when_up() {
        let mut now = Instant::now();
        let mut schedule = Schedule::new(MINUTE, now);
        let mut pauses = Vec::new();
        for _ in 0..9 {
            schedule.checked(now, true);
            let due = schedule.due(None, now);
            pauses.push((due - now).as_secs());
            now = due;
        }
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        schedule.checked(now, false);
        assert_eq!(schedule.due(Some(now), now), now + MINUTE, "up again");

        // An interval shorter than the first pause starts there; one longer than the cap
        // is the cap.
        let mut short = Schedule::new(Duration::from_secs(1), now);
        short.checked(now, true);
        assert_eq!(short.due(None, now), now + Duration::from_secs(1));
        let hour = Duration::from_secs(3600);
        let mut long = Schedule::new(hour, now);
        long.backoff = Some(Duration::from_secs(3000));
        long.checked(now, true);
        assert_eq!(long.due(None, now), now + hour);
    }

    #[test]
    fn urgent_checks_keep_a_gap_and_a_network_change_forgets_the_backoff() {
        let now = Instant::now();
        let mut schedule = Schedule::new(MINUTE, now);
        schedule.checked(now, true);
        schedule.checked(now, true);
        schedule.urgent = true;
        assert_eq!(schedule.due(None, now), now + MIN_CHECK_GAP);
        schedule.network_changed();
        schedule.checked(now, true);
        assert_eq!(
            schedule.due(None, now),
            now + BACKOFF_FIRST,
            "backoff restarted"
        );
    }

    fn down(cause: TargetFault) -> Health {
        Health::Down {
            since: SystemTime::UNIX_EPOCH,
            checked: SystemTime::UNIX_EPOCH,
            fault: HealthFault::Unreached(cause),
        }
    }

    #[test]
    fn a_burst_of_changes_is_published_then_one_per_gap_with_the_latest_health() {
        let watch = HealthWatch::default();
        let now = Instant::now();
        let refused = || down(TargetFault::Refused("far:1".into()));
        let up = |ms| watch.handshake_succeeded(Duration::from_millis(ms), now);
        assert_eq!(watch.state().set(refused(), now), Some(refused()));
        // The same verdict again is no change.
        assert_eq!(watch.state().set(refused(), now), None);
        assert!(up(1).is_some());
        assert!(
            watch.state().set(refused(), now).is_some(),
            "three in a burst"
        );
        // A fourth is held back, and so is what follows it within the gap.
        assert_eq!(up(2), None);
        assert_eq!(watch.state().set(refused(), now), None);
        assert_eq!(up(3), None);
        assert_eq!(watch.held_back(now + Duration::from_secs(1)), None);
        let later = now + PUBLISH_GAP;
        match watch.held_back(later) {
            Some(Health::Up { round_trip, .. }) => assert_eq!(round_trip, Duration::from_millis(3)),
            other => panic!("expected the latest health, Up, got {other:?}"),
        }
        assert_eq!(watch.held_back(later), None, "published once");
        assert_eq!(watch.last_round_trip(), Some(Duration::from_millis(3)));
        // A change held back that ends where the last published one was is not repeated.
        assert_eq!(watch.state().set(refused(), later), None);
        assert_eq!(up(4), None);
        assert_eq!(watch.held_back(later + PUBLISH_GAP * 3), None);
    }

    #[test]
    fn a_spell_down_keeps_its_start_and_real_traffic_cannot_hide_a_dead_far_target() {
        let watch = HealthWatch::default();
        let now = Instant::now();
        let first = Health::Down {
            since: SystemTime::UNIX_EPOCH,
            checked: SystemTime::UNIX_EPOCH,
            fault: HealthFault::FarTarget {
                cause: TargetDownCause::Refused,
                age_secs: 0,
            },
        };
        watch.state().set(first, now);
        let later = SystemTime::UNIX_EPOCH + MINUTE;
        let timed_out = Health::Down {
            since: later,
            checked: later,
            fault: HealthFault::Unreached(TargetFault::TimedOut {
                target: "far:1".into(),
                timeout: MINUTE,
            }),
        };
        watch.state().set(timed_out, now);
        match watch.health() {
            Health::Down {
                since,
                checked,
                fault,
            } => {
                assert_eq!(since, SystemTime::UNIX_EPOCH, "the spell's start");
                assert_eq!(checked, later);
                assert_eq!(fault.cause(), DownCause::TimedOut);
            }
            other => panic!("{other:?}"),
        }
        // Down because the far end's target is down: a handshake does not say otherwise.
        let far = HealthWatch::default();
        far.state().set(
            Health::Down {
                since: later,
                checked: later,
                fault: HealthFault::FarTarget {
                    cause: TargetDownCause::Refused,
                    age_secs: 1,
                },
            },
            now,
        );
        far.handshake_succeeded(Duration::from_millis(1), now);
        assert_eq!(far.health().down_cause(), Some(DownCause::FarTargetDown));
    }

    #[test]
    fn each_failure_has_one_cause_and_a_stable_metric_name() {
        use crate::net::resolve::ResolveError;
        use crate::protocol::{PeerFault, PeerRejection, Role};
        let cases = [
            (
                HealthFault::Unreached(TargetFault::Unresolved(ResolveError::NoAddresses(
                    "x".into(),
                ))),
                "not_resolved",
            ),
            (
                HealthFault::Unreached(TargetFault::Refused("x".into())),
                "nothing_listening",
            ),
            (
                HealthFault::Handshake(HandshakeFault::Peer(PeerFault::Closed {
                    role: Role::Client,
                    after_our_value: true,
                })),
                "wrong_key",
            ),
            (
                HealthFault::Handshake(HandshakeFault::Peer(PeerFault::Rejected(
                    PeerRejection::ForwardSecrecyRefused,
                ))),
                "mode_mismatch",
            ),
            (
                HealthFault::Handshake(HandshakeFault::TimedOut(MINUTE)),
                "timed_out",
            ),
            (
                HealthFault::FarTarget {
                    cause: TargetDownCause::TimedOut,
                    age_secs: 2,
                },
                "far_target_down",
            ),
        ];
        for (fault, label) in cases {
            assert_eq!(fault.cause().metric_label(), label, "{fault}");
        }
        let labels: std::collections::HashSet<_> =
            DownCause::ALL.iter().map(|c| c.metric_label()).collect();
        assert_eq!(labels.len(), DownCause::ALL.len());
    }

    #[test]
    fn a_far_end_reports_what_its_connections_saw() {
        let record = TargetRecord::default();
        let now = Instant::now();
        assert_eq!(record.report(now), TargetReport::Unknown);
        assert!(!record.says_down());
        record.record(Err(&TargetFault::Refused("t".into())), now);
        assert!(record.says_down());
        assert_eq!(
            record.report(now + Duration::from_secs(3)),
            TargetReport::Down {
                age_secs: 3,
                cause: TargetDownCause::Refused
            }
        );
        record.record(Ok(()), now);
        assert_eq!(
            record.report(now + Duration::from_secs(7)),
            TargetReport::Up { age_secs: 7 }
        );
    }
}
