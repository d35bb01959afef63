//! What happened in a tunnel, as discrete events for logs and the app's event list.
//! Events go out on a bounded broadcast channel: a slow reader loses the oldest events
//! (and is told how many) rather than slowing the tunnels down.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::stats::HandshakeFailure;

/// Identifies a tunnel inside one [`crate::engine::Engine`]; chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelId(pub u64);

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One thing that happened, stamped with its tunnel and time.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub tunnel: TunnelId,
    /// The tunnel's name when the event happened.
    pub tunnel_name: String,
    pub at: SystemTime,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// The listener is bound and accepting.
    Listening {
        address: String,
    },
    /// The tunnel could not start (bind failed, target did not resolve, …).
    StartFailed {
        reason: String,
    },
    /// The tunnel stopped accepting; `draining` connections are still finishing.
    Stopped {
        draining: u64,
    },
    /// New settings were applied; open connections keep the settings they started with.
    Updated,
    ConnectionOpened {
        conn: u64,
        peer: String,
    },
    ConnectionClosed {
        conn: u64,
        peer: String,
        duration: Duration,
        bytes_up: u64,
        bytes_down: u64,
        /// `None` for an orderly close (both directions reached end of stream).
        error: Option<String>,
    },
    /// A handshake failed. Only the first failure of a quiet spell is published in full;
    /// the rest are summed up in [`EventKind::HandshakeFailuresSummarized`].
    HandshakeFailed {
        conn: u64,
        peer: String,
        cause: HandshakeFailure,
        message: String,
    },
    /// `count` more handshakes failed in the last `window` than were published one by
    /// one (at most one summary a minute per tunnel, so strangers cannot flood the log);
    /// `by_cause` splits the count, in the order of [`HandshakeFailure::ALL`].
    HandshakeFailuresSummarized {
        count: u64,
        window: Duration,
        by_cause: Vec<(HandshakeFailure, u64)>,
    },
    TargetUnreachable {
        conn: u64,
        target: String,
        message: String,
    },
    /// All `limit` connection slots are busy; new clients wait until one frees up.
    ConnectionLimitReached {
        limit: u32,
    },
    /// accept() failed, typically because file descriptors ran out; retrying shortly.
    AcceptFailed {
        message: String,
        retry_in: Duration,
    },
    /// Re-resolving the target failed; the previous addresses stay in use.
    ResolveFailed {
        message: String,
    },
}

impl EventKind {
    /// Whether this event reports something going wrong.
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            EventKind::StartFailed { .. }
                | EventKind::HandshakeFailed { .. }
                | EventKind::HandshakeFailuresSummarized { .. }
                | EventKind::TargetUnreachable { .. }
                | EventKind::ConnectionLimitReached { .. }
                | EventKind::AcceptFailed { .. }
                | EventKind::ResolveFailed { .. }
                | EventKind::ConnectionClosed { error: Some(_), .. }
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Listening { address } => write!(f, "listening on {address}"),
            EventKind::StartFailed { reason } => write!(f, "could not start: {reason}"),
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
                error,
            } => {
                write!(
                    f,
                    "connection {conn} from {peer} closed after {:.1} s ({bytes_up} B up, {bytes_down} B down)",
                    duration.as_secs_f64()
                )?;
                if let Some(error) = error {
                    write!(f, ": {error}")?;
                }
                Ok(())
            }
            EventKind::HandshakeFailed {
                conn,
                peer,
                message,
                ..
            } => write!(f, "connection {conn} from {peer}: {message}"),
            EventKind::HandshakeFailuresSummarized {
                count,
                window,
                by_cause,
            } => {
                let failures = if *count == 1 { "failure" } else { "failures" };
                write!(f, "{count} more handshake {failures} ")?;
                match window.as_secs() {
                    60.. => write!(f, "in the last minute")?,
                    secs => write!(f, "in the last {} s", secs.max(1))?,
                }
                let causes: Vec<String> = by_cause
                    .iter()
                    .map(|(cause, n)| format!("{n} {}", cause.label()))
                    .collect();
                write!(
                    f,
                    " ({}); not logged one by one, at most one summary a minute",
                    causes.join(", ")
                )
            }
            EventKind::TargetUnreachable {
                conn,
                target,
                message,
            } => write!(
                f,
                "connection {conn}: target {target} unreachable: {message}"
            ),
            EventKind::ConnectionLimitReached { limit } => write!(
                f,
                "maximum number of connections ({limit}) reached; new clients wait for a free slot"
            ),
            EventKind::AcceptFailed { message, retry_in } => write!(
                f,
                "cannot accept connections: {message}; retrying in {} ms",
                retry_in.as_millis()
            ),
            EventKind::ResolveFailed { message } => {
                write!(
                    f,
                    "re-resolving the target failed ({message}); keeping the previous addresses"
                )
            }
        }
    }
}

/// How long a tunnel's handshake failures are summed up before a summary is published.
pub const HANDSHAKE_SUMMARY_WINDOW: Duration = Duration::from_secs(60);

/// Keeps handshake failures from flooding the log: the first failure after a quiet spell
/// is published in full, the ones after it are counted, and the count is published at
/// most once per [`HANDSHAKE_SUMMARY_WINDOW`], for as long as failures keep coming. A
/// window without further failures ends the spell. Deterministic: the caller passes the
/// time in.
#[derive(Debug, Default)]
pub struct HandshakeFailureThrottle {
    spell: Option<Spell>,
}

#[derive(Debug)]
struct Spell {
    /// When the current window began.
    since: Instant,
    /// Failures counted, not published, in it; indexed like [`HandshakeFailure::ALL`].
    suppressed: [u64; HandshakeFailure::ALL.len()],
}

impl Spell {
    fn starting(since: Instant) -> Spell {
        Spell {
            since,
            suppressed: [0; HandshakeFailure::ALL.len()],
        }
    }

    fn total(&self) -> u64 {
        self.suppressed.iter().sum()
    }
}

/// Whether a handshake failure is published in full or only counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureVerdict {
    Publish,
    Count,
}

/// Whether [`HandshakeFailureThrottle::summary`] waits for the window to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryDue {
    /// Once a window: the engine's once-a-second tick.
    WhenTheWindowEnds,
    /// Now: the tunnel stops, so nothing counted is lost.
    Now,
}

impl HandshakeFailureThrottle {
    /// Takes one failure at `now`.
    pub fn failed(&mut self, cause: HandshakeFailure, now: Instant) -> FailureVerdict {
        match &mut self.spell {
            // A window that ended with failures pending is still counted into: its summary
            // is at most a tick away.
            Some(spell) if now < spell.since + HANDSHAKE_SUMMARY_WINDOW || spell.total() > 0 => {
                let at = HandshakeFailure::ALL
                    .iter()
                    .position(|c| *c == cause)
                    .unwrap_or(0);
                spell.suppressed[at] += 1;
                FailureVerdict::Count
            }
            _ => {
                self.spell = Some(Spell::starting(now));
                FailureVerdict::Publish
            }
        }
    }

    /// The summary to publish at `now`, if one is due: failures were counted and the
    /// window is over (or `due` is [`SummaryDue::Now`]). A new window starts with it; a
    /// window that counted nothing ends the spell.
    pub fn summary(&mut self, now: Instant, due: SummaryDue) -> Option<EventKind> {
        let spell = self.spell.as_mut()?;
        let window_over = now >= spell.since + HANDSHAKE_SUMMARY_WINDOW;
        if !window_over && due == SummaryDue::WhenTheWindowEnds {
            return None;
        }
        if spell.total() == 0 {
            if window_over {
                self.spell = None;
            }
            return None;
        }
        let summary = EventKind::HandshakeFailuresSummarized {
            count: spell.total(),
            window: now.saturating_duration_since(spell.since),
            by_cause: HandshakeFailure::ALL
                .iter()
                .zip(spell.suppressed)
                .filter(|(_, n)| *n > 0)
                .map(|(cause, n)| (*cause, n))
                .collect(),
        };
        *spell = Spell::starting(now);
        Some(summary)
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

    fn count_of(summary: Option<EventKind>) -> Option<u64> {
        match summary? {
            EventKind::HandshakeFailuresSummarized { count, .. } => Some(count),
            other => panic!("not a summary: {other:?}"),
        }
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
            Some(EventKind::HandshakeFailuresSummarized {
                count: 501,
                window: Duration::from_secs(60),
                by_cause: vec![(WRONG_KEY, 500), (TIMEOUT, 1)],
            })
        );
        assert_eq!(
            summary.unwrap().to_string(),
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
        let summary = throttle.summary(secs(t0, 5), SummaryDue::Now).unwrap();
        assert_eq!(
            summary.to_string(),
            "3 more handshake failures in the last 5 s (3 timed out); not logged one by one, at most one summary a minute"
        );
        assert!(summary.is_problem());
        assert_eq!(throttle.summary(secs(t0, 6), SummaryDue::Now), None);
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
