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
use crate::protocol::health::{TargetDownCause, TargetReport};

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
}

impl DownCause {
    pub const ALL: [DownCause; 7] = [
        DownCause::NotResolved,
        DownCause::NothingListening,
        DownCause::Unreachable,
        DownCause::TimedOut,
        DownCause::WrongKey,
        DownCause::ModeMismatch,
        DownCause::FarTargetDown,
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
/// Health changes are published (logged) at most this often per tunnel; a change in
/// between is published when the gap is over, with the health as it is then. A far end
/// that flaps cannot flood the log.
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
    last_published: Option<Instant>,
    /// A change happened that is not published yet.
    unpublished: bool,
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
        state.unpublished = false;
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
        let sampled_recently = state.history.back().is_some_and(|last| {
            at.duration_since(last.at)
                .is_ok_and(|since| since < REAL_SAMPLE_EVERY)
        });
        if !sampled_recently {
            state.sample(at, Some(round_trip));
        }
        state.set(
            Health::Up {
                round_trip,
                checked: at,
                far_target,
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
        if state.unpublished && state.may_publish(now) {
            state.unpublished = false;
            state.last_published = Some(now);
            return Some(state.health.clone());
        }
        None
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
        if self.may_publish(now) {
            self.unpublished = false;
            self.last_published = Some(now);
            Some(self.health.clone())
        } else {
            self.unpublished = true;
            None
        }
    }

    fn may_publish(&self, now: Instant) -> bool {
        self.last_published
            .is_none_or(|last| now.saturating_duration_since(last) >= PUBLISH_GAP)
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

impl Checker {
    /// Checks until `stop`: at once, then every `interval` after the last proof that the
    /// far end works, or after a backoff while it is down; and as soon as the watch is
    /// woken. `publish` gets each change that may be published.
    pub async fn run(
        self,
        watch: Arc<HealthWatch>,
        stop: CancellationToken,
        publish: impl Fn(Health),
    ) {
        let mut last_check: Option<Instant> = None;
        let mut backoff: Option<Duration> = None;
        let mut urgent = true;
        loop {
            let now = Instant::now();
            let network_changed = {
                let mut state = watch.state();
                urgent |= std::mem::take(&mut state.urgent);
                std::mem::take(&mut state.network_changed)
            };
            if network_changed {
                backoff = None;
            }
            let due = match last_check {
                None => now,
                Some(last) if urgent => last + MIN_CHECK_GAP,
                Some(last) => match backoff {
                    Some(pause) => last + pause,
                    None => watch.state().last_good.unwrap_or(last).max(last) + self.interval,
                },
            };
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
            urgent = false;
            let now = Instant::now();
            last_check = Some(now);
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
                backoff = match (&health, backoff) {
                    (Health::Down { .. }, None) => Some(BACKOFF_FIRST.min(self.interval)),
                    (Health::Down { .. }, Some(pause)) => {
                        Some((pause * 2).min(BACKOFF_CAP.max(self.interval)))
                    }
                    _ => None,
                };
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
            health_probe: true,
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

fn down_cause_of(fault: &TargetFault) -> TargetDownCause {
    match fault {
        TargetFault::Refused(_) => TargetDownCause::Refused,
        TargetFault::TimedOut { .. } => TargetDownCause::TimedOut,
        TargetFault::Unresolved(_) | TargetFault::BindUnresolved(_) => TargetDownCause::Unresolved,
        TargetFault::NoAddress { .. } | TargetFault::Io { .. } => TargetDownCause::Other,
    }
}
