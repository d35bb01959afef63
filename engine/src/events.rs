//! What happened in a tunnel, as discrete events for logs and the app's event list.
//! Events go out on a bounded broadcast channel: a slow reader loses the oldest events
//! (and is told how many) rather than slowing the tunnels down.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::address::Address;
use crate::fault::{
    ConnectionFault, HandshakeFailure, HandshakeFault, IoFault, ResolveError, ReverseFault,
    StartFault, TargetFault,
};
use crate::health::Health;
use crate::net::stream::Peer;
use crate::protocol::health::TargetReport;

/// One thing that happened, stamped with its tunnel and time.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The tunnel's name when the event happened.
    pub tunnel: String,
    pub at: SystemTime,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// The listener is bound and accepting, at this address.
    Listening {
        address: Address,
    },
    /// A reverse-out end started keeping connections to its reverse-in end at `far`.
    Dialing {
        far: Address,
    },
    /// The tunnel could not start (bind failed, target did not resolve, …).
    StartFailed(StartFault),
    /// The tunnel stopped accepting; `draining` connections are still finishing.
    Stopped {
        draining: u64,
    },
    /// New settings were applied; open connections keep the settings they started with.
    Updated,
    ConnectionOpened {
        conn: u64,
        peer: Peer,
    },
    ConnectionClosed {
        conn: u64,
        peer: Peer,
        duration: Duration,
        bytes_up: u64,
        bytes_down: u64,
        /// `None` for an orderly close (both directions reached end of stream).
        fault: Option<ConnectionFault>,
    },
    /// A handshake failed. Only the first failure of a quiet spell is published in full;
    /// the rest are summed up in [`EventKind::HandshakeFailuresSummarized`].
    HandshakeFailed {
        conn: u64,
        peer: Peer,
        fault: HandshakeFault,
    },
    /// `count` more handshakes failed in the last `window` than were published one by
    /// one (at most one summary a minute per tunnel, so strangers cannot flood the log);
    /// `by_cause` splits the count, in the order of [`HandshakeFailure::ALL`].
    HandshakeFailuresSummarized {
        count: u64,
        window: Duration,
        by_cause: Vec<(HandshakeFailure, u64)>,
    },
    /// `count` more problems of the kinds a stranger can cause at will (see
    /// [`RepeatedProblem`]) happened in the last `window` than were published one by one;
    /// like handshake failures, at most one summary a minute per tunnel.
    ProblemsSummarized {
        count: u64,
        window: Duration,
        by_kind: Vec<(RepeatedProblem, u64)>,
    },
    TargetUnreachable {
        conn: u64,
        target: Address,
        fault: TargetFault,
    },
    /// All `limit` connection slots are busy; new clients wait until one frees up.
    ConnectionLimitReached {
        limit: u32,
    },
    /// accept() failed, typically because file descriptors ran out; retrying shortly.
    AcceptFailed {
        error: IoFault,
        retry_in: Duration,
    },
    /// Re-resolving the target failed; the previous addresses stay in use.
    ResolveFailed(ResolveError),
    /// A reverse-in end's client waited `waited` and no pooled connection from the
    /// reverse-out end was ready: it was closed.
    NoReverseConnection {
        conn: u64,
        peer: Peer,
        waited: Duration,
    },
    /// A connection to a reverse tunnel's port was refused, or a pooled connection
    /// ended in a way worth telling (not a stranger's failed handshake: those are
    /// [`EventKind::HandshakeFailed`]).
    ReverseRefused {
        peer: Peer,
        fault: ReverseFault,
    },
    /// The far end's health changed (up, down, a different cause, unknown again). At most
    /// one every few seconds per tunnel, with the health as it is when published.
    HealthChanged(Health),
}

impl EventKind {
    /// Whether this event reports something going wrong.
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            EventKind::StartFailed { .. }
                | EventKind::HandshakeFailed { .. }
                | EventKind::HandshakeFailuresSummarized { .. }
                | EventKind::ProblemsSummarized { .. }
                | EventKind::TargetUnreachable { .. }
                | EventKind::ConnectionLimitReached { .. }
                | EventKind::AcceptFailed { .. }
                | EventKind::ResolveFailed { .. }
                | EventKind::HealthChanged(Health::Down { .. })
                | EventKind::NoReverseConnection { .. }
                | EventKind::ReverseRefused { .. }
                | EventKind::ConnectionClosed { fault: Some(_), .. }
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Listening { address } => write!(f, "listening on {address}"),
            EventKind::Dialing { far } => {
                write!(
                    f,
                    "keeping connections to the reverse-in end at {far} ready"
                )
            }
            EventKind::StartFailed(fault) => write!(f, "could not start: {fault}"),
            EventKind::Stopped { draining: 0 } => write!(f, "stopped"),
            EventKind::Stopped { draining } => {
                write!(f, "stopped accepting; {draining} connection(s) finishing")
            }
            EventKind::Updated => write!(f, "settings updated"),
            EventKind::ConnectionOpened { conn, peer } => {
                write!(f, "connection {conn} from {peer} opened")
            }
            EventKind::ConnectionClosed {
                conn,
                peer,
                duration,
                bytes_up,
                bytes_down,
                fault,
            } => {
                write!(
                    f,
                    "connection {conn} from {peer} closed after {:.1} s ({bytes_up} B up, {bytes_down} B down)",
                    duration.as_secs_f64()
                )?;
                if let Some(fault) = fault {
                    write!(f, ": {fault}")?;
                }
                Ok(())
            }
            EventKind::HandshakeFailed { conn, peer, fault } => {
                write!(f, "connection {conn} from {peer}: {fault}")
            }
            EventKind::HandshakeFailuresSummarized {
                count,
                window,
                by_cause,
            } => {
                let failures = if *count == 1 { "failure" } else { "failures" };
                let causes = by_cause.iter().map(|(cause, n)| (cause.label(), *n));
                write_summary(
                    f,
                    &format!("{count} more handshake {failures}"),
                    *window,
                    causes,
                )
            }
            EventKind::ProblemsSummarized {
                count,
                window,
                by_kind,
            } => {
                let problems = if *count == 1 { "problem" } else { "problems" };
                let kinds = by_kind.iter().map(|(kind, n)| (kind.label(), *n));
                write_summary(f, &format!("{count} more {problems}"), *window, kinds)
            }
            EventKind::TargetUnreachable {
                conn,
                target,
                fault,
            } => write!(f, "connection {conn}: target {target} unreachable: {fault}"),
            EventKind::ConnectionLimitReached { limit } => write!(
                f,
                "maximum number of connections ({limit}) reached; new clients wait for a free slot"
            ),
            EventKind::AcceptFailed { error, retry_in } => write!(
                f,
                "cannot accept connections: {error}; retrying in {} ms",
                retry_in.as_millis()
            ),
            EventKind::ResolveFailed(error) => {
                write!(
                    f,
                    "re-resolving the target failed ({error}); keeping the previous addresses"
                )
            }
            EventKind::HealthChanged(health) => write_health(f, health),
            EventKind::NoReverseConnection { conn, peer, waited } => write!(
                f,
                "connection {conn} from {peer} closed after {:.1} s: no connection from the reverse-out end was ready; is it running, and does it reach this machine?",
                waited.as_secs_f64()
            ),
            EventKind::ReverseRefused { peer, fault } => {
                write!(f, "reverse connection from {peer}: {fault}")
            }
        }
    }
}

fn write_health(f: &mut fmt::Formatter<'_>, health: &Health) -> fmt::Result {
    match health {
        Health::Unknown => f.write_str("far end: not checked"),
        Health::Up {
            round_trip,
            far_target,
            ..
        } => {
            write!(
                f,
                "far end up: handshake in {:.1} ms",
                round_trip.as_secs_f64() * 1000.0
            )?;
            match far_target {
                Some(TargetReport::Up { .. }) => f.write_str("; it reaches its target"),
                Some(TargetReport::Unknown) => f.write_str("; it has not tried its target yet"),
                _ => Ok(()),
            }
        }
        Health::Down { fault, .. } => {
            write!(f, "far end down ({}): {fault}", fault.cause().label())
        }
    }
}

/// "N more … in the last minute (a wrong key, b timed out); not logged one by one, …".
fn write_summary<'a>(
    f: &mut fmt::Formatter<'_>,
    head: &str,
    window: Duration,
    parts: impl Iterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    write!(f, "{head} ")?;
    match window.as_secs() {
        60.. => write!(f, "in the last minute")?,
        secs => write!(f, "in the last {} s", secs.max(1))?,
    }
    let parts: Vec<String> = parts.map(|(label, n)| format!("{n} {label}")).collect();
    write!(
        f,
        " ({}); not logged one by one, at most one summary a minute",
        parts.join(", ")
    )
}

/// Problems other than failed handshakes that anyone who can connect can cause as often
/// as they like, so each is published the first time of a spell and then summed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RepeatedProblem {
    /// The target could not be reached for a connection.
    TargetUnreachable,
    /// Every connection slot was taken when a client arrived.
    ConnectionLimit,
    /// accept() failed (descriptors ran out).
    AcceptFailed,
    /// A connection ended with an error on one of its sockets.
    ConnectionError,
    /// A reverse-in end's client found no pooled connection ready.
    NoReverseConnection,
}

impl RepeatedProblem {
    pub const ALL: [RepeatedProblem; 5] = [
        RepeatedProblem::TargetUnreachable,
        RepeatedProblem::ConnectionLimit,
        RepeatedProblem::AcceptFailed,
        RepeatedProblem::ConnectionError,
        RepeatedProblem::NoReverseConnection,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RepeatedProblem::TargetUnreachable => "target unreachable",
            RepeatedProblem::ConnectionLimit => "connection limit reached",
            RepeatedProblem::AcceptFailed => "accept failed",
            RepeatedProblem::ConnectionError => "connection error",
            RepeatedProblem::NoReverseConnection => "no reverse connection ready",
        }
    }
}

/// How long a tunnel's repeated problems are summed up before a summary is published.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(60);

/// Keeps one family of repeated problems from flooding the log: the first after a quiet
/// spell is published in full, the ones after it are counted (by kind, `K` of them), and
/// the count is published at most once per [`SUMMARY_WINDOW`], for as long as
/// they keep coming. A window without further problems ends the spell. Deterministic:
/// the caller passes the time in.
#[derive(Debug)]
pub struct Throttle<K: Copy + Eq + 'static, const N: usize> {
    kinds: &'static [K; N],
    spell: Option<Spell<N>>,
}

/// Failed handshakes, by cause.
pub type HandshakeFailureThrottle = Throttle<HandshakeFailure, 5>;
/// The other problems a stranger can repeat, by kind.
pub type ProblemThrottle = Throttle<RepeatedProblem, 5>;

impl Default for HandshakeFailureThrottle {
    fn default() -> Self {
        Throttle::new(&HandshakeFailure::ALL)
    }
}

impl Default for ProblemThrottle {
    fn default() -> Self {
        Throttle::new(&RepeatedProblem::ALL)
    }
}

#[derive(Debug)]
struct Spell<const N: usize> {
    /// When the current window began.
    since: Instant,
    /// Problems counted, not published, in it; indexed like the throttle's kinds.
    suppressed: [u64; N],
}

impl<const N: usize> Spell<N> {
    fn starting(since: Instant) -> Spell<N> {
        Spell {
            since,
            suppressed: [0; N],
        }
    }

    fn total(&self) -> u64 {
        self.suppressed.iter().sum()
    }
}

/// Whether a problem is published in full or only counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureVerdict {
    Publish,
    Count,
}

/// Whether [`Throttle::summary`] waits for the window to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryDue {
    /// Once a window: the engine's once-a-second tick.
    WhenTheWindowEnds,
    /// Now: the tunnel stops, so nothing counted is lost.
    Now,
}

/// A window's count, to be published: the total, how long the window was, and the
/// count of each kind that occurred (in the throttle's order).
#[derive(Clone, Debug, PartialEq)]
pub struct Summary<K> {
    pub count: u64,
    pub window: Duration,
    pub by_kind: Vec<(K, u64)>,
}

impl<K: Copy + Eq + 'static, const N: usize> Throttle<K, N> {
    pub fn new(kinds: &'static [K; N]) -> Self {
        Throttle { kinds, spell: None }
    }

    /// Takes one problem of `kind` at `now`.
    pub fn failed(&mut self, kind: K, now: Instant) -> FailureVerdict {
        match &mut self.spell {
            // A window that ended with problems pending is still counted into: its
            // summary is at most a tick away.
            Some(spell) if now < spell.since + SUMMARY_WINDOW || spell.total() > 0 => {
                let at = self.kinds.iter().position(|k| *k == kind).unwrap_or(0);
                spell.suppressed[at] += 1;
                FailureVerdict::Count
            }
            _ => {
                self.spell = Some(Spell::starting(now));
                FailureVerdict::Publish
            }
        }
    }

    /// The summary to publish at `now`, if one is due: problems were counted and the
    /// window is over (or `due` is [`SummaryDue::Now`]). A new window starts with it; a
    /// window that counted nothing ends the spell.
    pub fn summary(&mut self, now: Instant, due: SummaryDue) -> Option<Summary<K>> {
        let spell = self.spell.as_mut()?;
        let window_over = now >= spell.since + SUMMARY_WINDOW;
        if !window_over && due == SummaryDue::WhenTheWindowEnds {
            return None;
        }
        if spell.total() == 0 {
            if window_over {
                self.spell = None;
            }
            return None;
        }
        let summary = Summary {
            count: spell.total(),
            window: now.saturating_duration_since(spell.since),
            by_kind: self
                .kinds
                .iter()
                .zip(spell.suppressed)
                .filter(|(_, n)| *n > 0)
                .map(|(kind, n)| (*kind, n))
                .collect(),
        };
        *spell = Spell::starting(now);
        Some(summary)
    }
}

impl From<Summary<HandshakeFailure>> for EventKind {
    fn from(s: Summary<HandshakeFailure>) -> EventKind {
        EventKind::HandshakeFailuresSummarized {
            count: s.count,
            window: s.window,
            by_cause: s.by_kind,
        }
    }
}

impl From<Summary<RepeatedProblem>> for EventKind {
    fn from(s: Summary<RepeatedProblem>) -> EventKind {
        EventKind::ProblemsSummarized {
            count: s.count,
            window: s.window,
            by_kind: s.by_kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRONG_KEY: HandshakeFailure = HandshakeFailure::WrongKey;
    const TIMEOUT: HandshakeFailure = HandshakeFailure::Timeout;

    fn secs(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    fn count_of<K>(summary: Option<Summary<K>>) -> Option<u64> {
        summary.map(|s| s.count)
    }

    #[test]
    fn first_failure_in_full_then_one_summary_a_minute() {
        let t0 = Instant::now();
        let mut throttle = HandshakeFailureThrottle::default();
        assert_eq!(throttle.failed(WRONG_KEY, t0), FailureVerdict::Publish);
        for i in 0..500 {
            let at = t0 + Duration::from_millis(i * 100);
            assert_eq!(throttle.failed(WRONG_KEY, at), FailureVerdict::Count);
            assert_eq!(throttle.summary(at, SummaryDue::WhenTheWindowEnds), None);
        }
        assert_eq!(
            throttle.failed(TIMEOUT, secs(t0, 59)),
            FailureVerdict::Count
        );
        // The window ends: one summary with every counted failure, split by cause.
        let summary = throttle.summary(secs(t0, 60), SummaryDue::WhenTheWindowEnds);
        assert_eq!(
            summary,
            Some(Summary {
                count: 501,
                window: Duration::from_secs(60),
                by_kind: vec![(WRONG_KEY, 500), (TIMEOUT, 1)],
            })
        );
        assert_eq!(
            EventKind::from(summary.unwrap()).to_string(),
            "501 more handshake failures in the last minute (500 wrong key, 1 timed out); not logged one by one, at most one summary a minute"
        );
        // The flood goes on: still counted, next summary a minute later, not before.
        assert_eq!(
            throttle.failed(WRONG_KEY, secs(t0, 61)),
            FailureVerdict::Count
        );
        assert_eq!(
            throttle.summary(secs(t0, 119), SummaryDue::WhenTheWindowEnds),
            None
        );
        assert_eq!(
            count_of(throttle.summary(secs(t0, 120), SummaryDue::WhenTheWindowEnds)),
            Some(1)
        );
        // A quiet minute ends the spell; the next failure is shown in full again.
        assert_eq!(
            throttle.summary(secs(t0, 180), SummaryDue::WhenTheWindowEnds),
            None
        );
        assert_eq!(
            throttle.failed(WRONG_KEY, secs(t0, 200)),
            FailureVerdict::Publish
        );
    }

    #[test]
    fn a_lone_failure_gives_no_summary() {
        let t0 = Instant::now();
        let mut throttle = HandshakeFailureThrottle::default();
        assert_eq!(throttle.failed(TIMEOUT, t0), FailureVerdict::Publish);
        for s in 1..=120 {
            assert_eq!(
                throttle.summary(secs(t0, s), SummaryDue::WhenTheWindowEnds),
                None
            );
        }
        assert_eq!(throttle.summary(secs(t0, 121), SummaryDue::Now), None);
        assert_eq!(
            throttle.failed(TIMEOUT, secs(t0, 122)),
            FailureVerdict::Publish
        );
    }

    #[test]
    fn failures_after_an_unflushed_window_wait_for_its_summary() {
        let t0 = Instant::now();
        let mut throttle = HandshakeFailureThrottle::default();
        throttle.failed(WRONG_KEY, t0);
        throttle.failed(WRONG_KEY, secs(t0, 10));
        // Past the window, before the tick flushed it: counted into the pending summary.
        assert_eq!(
            throttle.failed(WRONG_KEY, secs(t0, 61)),
            FailureVerdict::Count
        );
        assert_eq!(
            count_of(throttle.summary(secs(t0, 61), SummaryDue::WhenTheWindowEnds)),
            Some(2)
        );
    }

    #[test]
    fn stopping_flushes_what_was_counted() {
        let t0 = Instant::now();
        let mut throttle = HandshakeFailureThrottle::default();
        throttle.failed(WRONG_KEY, t0);
        for _ in 0..3 {
            throttle.failed(TIMEOUT, secs(t0, 2));
        }
        let summary = EventKind::from(throttle.summary(secs(t0, 5), SummaryDue::Now).unwrap());
        assert_eq!(
            summary.to_string(),
            "3 more handshake failures in the last 5 s (3 timed out); not logged one by one, at most one summary a minute"
        );
        assert!(summary.is_problem());
        assert_eq!(throttle.summary(secs(t0, 6), SummaryDue::Now), None);
    }

    #[test]
    fn other_repeated_problems_are_summed_up_the_same_way() {
        let t0 = Instant::now();
        let mut throttle = ProblemThrottle::default();
        let limit = RepeatedProblem::ConnectionLimit;
        assert_eq!(throttle.failed(limit, t0), FailureVerdict::Publish);
        for i in 0..1999 {
            let at = t0 + Duration::from_millis(i * 5);
            assert_eq!(throttle.failed(limit, at), FailureVerdict::Count);
        }
        throttle.failed(RepeatedProblem::TargetUnreachable, secs(t0, 30));
        let summary = EventKind::from(
            throttle
                .summary(secs(t0, 60), SummaryDue::WhenTheWindowEnds)
                .unwrap(),
        );
        assert!(summary.is_problem());
        assert_eq!(
            summary.to_string(),
            "2000 more problems in the last minute (1 target unreachable, 1999 connection limit reached); not logged one by one, at most one summary a minute"
        );
    }

    #[test]
    fn one_more_failure_is_singular() {
        let kind = EventKind::HandshakeFailuresSummarized {
            count: 1,
            window: Duration::from_millis(300),
            by_cause: vec![(HandshakeFailure::Network, 1)],
        };
        assert_eq!(
            kind.to_string(),
            "1 more handshake failure in the last 1 s (1 network error); not logged one by one, at most one summary a minute"
        );
    }
}
