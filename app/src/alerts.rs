//! When to tell someone who is not looking at the window: a running tunnel that starts
//! failing (handshake rejected, target unreachable, listener lost) and one that recovers,
//! read from the engine's status snapshots. Pure (the clock is passed in); the app sends
//! what [`Alerts::take_due`] returns as a desktop notification through `platform`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use sluice_engine::{HandshakeFailure, StartFault, TunnelState, TunnelStatus};

/// At most one notification in this long (by default): what happens meanwhile is
/// coalesced into the next one, so a storm of failures is one notification, not hundreds.
pub const MIN_GAP: Duration = Duration::from_secs(30);

/// Why a tunnel is failing, in the words a notification uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Trouble {
    /// The far end's handshake failed: wrong key, forward-secrecy mismatch, and so on.
    HandshakeRejected(HandshakeFailure),
    TargetUnreachable,
    /// The listener could not be kept (or opened): the tunnel accepts nothing.
    ListenerLost(StartFault),
}

impl fmt::Display for Trouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trouble::HandshakeRejected(HandshakeFailure::WrongKey) => write!(
                f,
                "the handshake was rejected: the other end most likely has a different key"
            ),
            Trouble::HandshakeRejected(HandshakeFailure::ForwardSecrecyMismatch) => write!(
                f,
                "the handshake was rejected: one end requires forward secrecy and the other skips it"
            ),
            Trouble::HandshakeRejected(cause) => write!(f, "handshakes fail ({})", cause.label()),
            Trouble::TargetUnreachable => write!(f, "the target cannot be reached"),
            Trouble::ListenerLost(fault) => write!(f, "it accepts no connections: {fault}"),
        }
    }
}

/// A change worth telling.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Failing { name: String, trouble: Trouble },
    Recovered { name: String },
}

/// One desktop notification, already in words.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub summary: String,
    pub body: String,
    /// Whether it reports a failure (an urgent notification) rather than a recovery.
    pub failure: bool,
}

/// What was last seen of one tunnel.
struct Seen {
    handshake_failures: [u64; 5],
    target_failures: u64,
    bytes_down: u64,
    failed_state: bool,
    failing: bool,
}

/// Watches the statuses and holds back changes until the next notification may go out.
pub struct Alerts {
    seen: HashMap<String, Seen>,
    /// Per tunnel, the latest change not yet told (a newer one replaces an older one).
    pending: BTreeMap<String, Change>,
    last_sent: Option<Instant>,
    gap: Duration,
}

impl Default for Alerts {
    fn default() -> Alerts {
        Alerts::with_gap(MIN_GAP)
    }
}

impl Alerts {
    /// Alerts with at most one notification per `gap`.
    pub fn with_gap(gap: Duration) -> Alerts {
        Alerts {
            seen: HashMap::new(),
            pending: BTreeMap::new(),
            last_sent: None,
            gap,
        }
    }

    /// Compares the engine's statuses with the last ones seen. Tunnels not in `statuses`
    /// (removed) are forgotten; a stopped tunnel is not failing.
    pub fn observe(&mut self, statuses: &[TunnelStatus]) {
        self.seen
            .retain(|name, _| statuses.iter().any(|s| s.name == *name));
        for status in statuses {
            let c = &status.counters;
            let failed_state = matches!(status.state, TunnelState::Failed(_));
            let running = matches!(
                status.state,
                TunnelState::Listening { .. } | TunnelState::Draining { .. }
            );
            let Some(seen) = self.seen.get_mut(&status.name) else {
                self.seen.insert(
                    status.name.clone(),
                    Seen {
                        handshake_failures: c.handshake_failures,
                        target_failures: c.target_failures,
                        bytes_down: c.bytes_down,
                        failed_state,
                        failing: failed_state,
                    },
                );
                if let TunnelState::Failed(fault) = &status.state {
                    self.change(status, Trouble::ListenerLost(fault.clone()));
                }
                continue;
            };
            let new_handshake = HandshakeFailure::ALL
                .iter()
                .zip(c.handshake_failures.iter().zip(seen.handshake_failures))
                .find(|(_, (now, before))| **now > *before)
                .map(|(cause, _)| *cause);
            let trouble = match &status.state {
                TunnelState::Failed(fault) if !seen.failed_state => {
                    Some(Trouble::ListenerLost(fault.clone()))
                }
                _ if !running => None,
                _ => new_handshake
                    .map(Trouble::HandshakeRejected)
                    .or((c.target_failures > seen.target_failures)
                        .then_some(Trouble::TargetUnreachable)),
            };
            // Data came back from the far side with no new failure: the path works again.
            let recovered = seen.failing
                && trouble.is_none()
                && running
                && (c.bytes_down > seen.bytes_down || seen.failed_state);
            let stopped = matches!(status.state, TunnelState::Stopped);
            let was_failing = seen.failing;
            seen.handshake_failures = c.handshake_failures;
            seen.target_failures = c.target_failures;
            seen.bytes_down = c.bytes_down;
            seen.failed_state = failed_state;
            if let Some(trouble) = trouble {
                seen.failing = true;
                if !was_failing {
                    self.change(status, trouble);
                }
            } else if recovered {
                seen.failing = false;
                self.pending.insert(
                    status.name.clone(),
                    Change::Recovered {
                        name: status.name.clone(),
                    },
                );
            } else if stopped {
                // Stopped by the user: nothing to tell, and nothing failing any more.
                seen.failing = false;
                self.pending.remove(&status.name);
            }
        }
    }

    fn change(&mut self, status: &TunnelStatus, trouble: Trouble) {
        self.pending.insert(
            status.name.clone(),
            Change::Failing {
                name: status.name.clone(),
                trouble,
            },
        );
    }

    /// The changes waiting to be told.
    pub fn pending(&self) -> impl Iterator<Item = &Change> {
        self.pending.values()
    }

    /// The tunnels failing now (since their last failure, nothing went through).
    pub fn failing(&self) -> impl Iterator<Item = &str> {
        self.seen
            .iter()
            .filter(|(_, seen)| seen.failing)
            .map(|(name, _)| name.as_str())
    }

    /// The notification to send now, if one is due: every change since the last one, in
    /// one. `Err(wait)` when changes wait for the gap to pass.
    pub fn take_due(&mut self, now: Instant) -> Result<Option<Alert>, Duration> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        if let Some(last) = self.last_sent {
            let since = now.saturating_duration_since(last);
            if since < self.gap {
                return Err(self.gap - since);
            }
        }
        let changes: Vec<Change> = std::mem::take(&mut self.pending).into_values().collect();
        self.last_sent = Some(now);
        Ok(Some(compose(&changes)))
    }
}

/// Text from users and peers (a tunnel's name, why it fails) on one line: a control
/// character, a newline say, becomes a space, so it cannot start a line of its own (and
/// pass for another tunnel's) in a notification. Markup is the platform's to escape.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One notification for several changes.
fn compose(changes: &[Change]) -> Alert {
    let failing: Vec<&Change> = changes
        .iter()
        .filter(|c| matches!(c, Change::Failing { .. }))
        .collect();
    let failure = !failing.is_empty();
    let line = |change: &Change| match change {
        Change::Failing { name, trouble } => {
            format!("{}: {}", one_line(name), one_line(&trouble.to_string()))
        }
        Change::Recovered { name } => format!("{} works again", one_line(name)),
    };
    match changes {
        [Change::Failing { name, trouble }] => Alert {
            summary: format!("Tunnel \"{}\" is failing", one_line(name)),
            body: capitalized(&one_line(&trouble.to_string())),
            failure,
        },
        [Change::Recovered { name }] => Alert {
            summary: format!("Tunnel \"{}\" works again", one_line(name)),
            body: "Connections go through again.".into(),
            failure,
        },
        _ => Alert {
            summary: if failing.len() == 1 {
                "A tunnel is failing".to_owned()
            } else if failure {
                format!("{} tunnels are failing", failing.len())
            } else {
                format!("{} tunnels work again", changes.len())
            },
            body: changes.iter().map(line).collect::<Vec<_>>().join("\n"),
            failure,
        },
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::{CounterSnapshot, ListenError};

    fn status(id: u64, state: TunnelState, counters: CounterSnapshot) -> TunnelStatus {
        TunnelStatus {
            name: format!("t{id}"),
            state,
            counters,
            max_connections: 100,
            health: sluice_engine::Health::Unknown,
            last_round_trip: None,
        }
    }

    fn listening() -> TunnelState {
        TunnelState::Listening {
            address: "[127.0.0.1]:1".parse().unwrap(),
        }
    }

    fn wrong_key(n: u64) -> CounterSnapshot {
        let mut c = CounterSnapshot::default();
        c.handshake_failures[0] = n;
        c
    }

    #[test]
    fn a_storm_of_failures_is_one_notification_and_recovery_is_told() {
        let mut alerts = Alerts::default();
        let t0 = Instant::now();
        alerts.observe(&[status(1, listening(), wrong_key(0))]);
        assert_eq!(alerts.take_due(t0), Ok(None));
        for n in 1..200 {
            alerts.observe(&[status(1, listening(), wrong_key(n))]);
        }
        let alert = alerts.take_due(t0).unwrap().unwrap();
        assert_eq!(alert.summary, "Tunnel \"t1\" is failing");
        assert!(alert.body.contains("different key"), "{}", alert.body);
        assert!(alert.failure);
        for n in 200..400 {
            alerts.observe(&[status(1, listening(), wrong_key(n))]);
        }
        assert_eq!(
            alerts.take_due(t0 + MIN_GAP),
            Ok(None),
            "still failing: no news"
        );

        let mut ok = wrong_key(399);
        ok.bytes_down = 10;
        alerts.observe(&[status(1, listening(), ok)]);
        let early = alerts.take_due(t0 + Duration::from_secs(1));
        assert_eq!(early, Err(MIN_GAP - Duration::from_secs(1)), "rate-limited");
        let alert = alerts.take_due(t0 + MIN_GAP).unwrap().unwrap();
        assert_eq!(alert.summary, "Tunnel \"t1\" works again");
        assert!(!alert.failure);
    }

    #[test]
    fn changes_in_one_gap_are_coalesced() {
        let mut alerts = Alerts::default();
        let t0 = Instant::now();
        let mut unreachable = CounterSnapshot::default();
        let quiet = [1, 2, 3].map(|id| status(id, listening(), wrong_key(0)));
        alerts.observe(&quiet);
        alerts.observe(&[
            status(1, listening(), wrong_key(1)),
            quiet[1].clone(),
            quiet[2].clone(),
        ]);
        assert!(alerts.take_due(t0).unwrap().is_some());
        unreachable.target_failures = 3;
        let gone = TunnelState::Failed(in_use("gone"));
        alerts.observe(&[
            status(1, listening(), wrong_key(1)),
            status(2, listening(), unreachable),
            status(3, gone, wrong_key(0)),
        ]);
        assert!(alerts.take_due(t0 + Duration::from_secs(2)).is_err());
        let alert = alerts.take_due(t0 + MIN_GAP).unwrap().unwrap();
        assert_eq!(alert.summary, "2 tunnels are failing");
        assert!(alert.body.contains("t2: the target cannot be reached"));
        assert!(
            alert
                .body
                .contains("t3: it accepts no connections: gone is already in use")
        );
    }

    /// A listen address another program holds, as the engine reports it.
    fn in_use(address: &str) -> StartFault {
        StartFault::Listen(ListenError::InUse {
            address: address.into(),
        })
    }

    const IN_USE: &str = "is already in use by another program (or another tunnel): pick another port, or stop the program using it";

    #[test]
    fn names_and_causes_stay_on_their_line() {
        let hostile = "<b>x</b> & 100% \"q\" \\ a\nt9: works again";
        let failing = |name: &str, address: &str| Change::Failing {
            name: name.into(),
            trouble: Trouble::ListenerLost(in_use(address)),
        };
        let alert = compose(&[failing(hostile, "gone\r\nfor good")]);
        assert_eq!(
            alert.summary,
            "Tunnel \"<b>x</b> & 100% \"q\" \\ a t9: works again\" is failing"
        );
        assert_eq!(
            alert.body,
            format!("It accepts no connections: gone  for good {IN_USE}.")
        );
        let alert = compose(&[failing(hostile, "gone"), failing("t2", "gone\ntoo")]);
        assert_eq!(
            alert.body,
            format!(
                "<b>x</b> & 100% \"q\" \\ a t9: works again: it accepts no connections: gone {IN_USE}\n\
                 t2: it accepts no connections: gone too {IN_USE}"
            ),
            "one line per tunnel"
        );
    }

    #[test]
    fn a_lost_listener_is_told_and_a_stop_is_not() {
        let mut alerts = Alerts::default();
        let t0 = Instant::now();
        alerts.observe(&[status(1, listening(), CounterSnapshot::default())]);
        alerts.observe(&[status(
            1,
            TunnelState::Failed(in_use("[127.0.0.1]:1")),
            CounterSnapshot::default(),
        )]);
        let alert = alerts.take_due(t0).unwrap().unwrap();
        assert!(alert.body.contains(IN_USE), "{}", alert.body);
        alerts.observe(&[status(1, TunnelState::Stopped, CounterSnapshot::default())]);
        assert_eq!(alerts.take_due(t0 + MIN_GAP * 2), Ok(None));
    }
}
