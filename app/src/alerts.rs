//! When to tell someone who is not looking at the window: a running tunnel that starts
//! failing (handshake rejected, target unreachable, listener lost) and one that recovers,
//! and a far end its health checks find down (once per spell of being down, whatever
//! happens during it) and back up, read from the engine's status snapshots. Pure (the
//! clock is passed in); the app sends what [`Alerts::take_due`] returns as a desktop
//! notification through `platform`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use sluice_engine::{DownCause, HandshakeFailure, Health, StartFault, TunnelState, TunnelStatus};

use crate::format;

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
    Failing {
        name: String,
        trouble: Trouble,
    },
    Recovered {
        name: String,
    },
    /// The health checks found the far end down: a new spell of being down.
    FarEndDown {
        name: String,
        cause: DownCause,
        /// The cause with where ("nothing listening at db:8025").
        cause_at: String,
        /// The failed check in a sentence (`HealthFault`'s words).
        detail: String,
    },
    /// A far end whose being down was told answers again.
    FarEndUp {
        name: String,
        round_trip: Duration,
    },
}

impl Change {
    fn is_failure(&self) -> bool {
        matches!(self, Change::Failing { .. } | Change::FarEndDown { .. })
    }
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
    /// The spell of being down (its start, as the engine keeps it) that was told or is
    /// waiting to be: the same spell is never told twice, however its cause changes.
    down_since: Option<SystemTime>,
    /// A far end down was told, and its coming back not yet.
    told_down: bool,
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
    /// (removed) are forgotten; a stopped tunnel is not failing. `target_of` gives a
    /// tunnel's target (its far end's address, for "nothing listening at …").
    pub fn observe(&mut self, statuses: &[TunnelStatus], target_of: impl Fn(&str) -> String) {
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
                        down_since: None,
                        told_down: false,
                    },
                );
                if let TunnelState::Failed(fault) = &status.state {
                    self.change(status, Trouble::ListenerLost(fault.clone()));
                }
                self.health(status, &target_of);
                continue;
            };
            let new_handshake = HandshakeFailure::ALL
                .iter()
                .zip(c.handshake_failures.iter().zip(seen.handshake_failures))
                .find(|(_, (now, before))| **now > *before)
                .map(|(cause, _)| *cause);
            // Once the health checks have an answer they speak for the far end: a failed
            // connection makes the engine check at once, and a far end found down is told
            // once for its whole spell, not again by every client that fails meanwhile.
            let checked = status.health != Health::Unknown;
            let trouble = match &status.state {
                TunnelState::Failed(fault) if !seen.failed_state => {
                    Some(Trouble::ListenerLost(fault.clone()))
                }
                _ if !running || checked => None,
                _ => new_handshake
                    .map(Trouble::HandshakeRejected)
                    .or((c.target_failures > seen.target_failures)
                        .then_some(Trouble::TargetUnreachable)),
            };
            if checked && !matches!(status.state, TunnelState::Failed(_)) {
                // Failures seen before the first check answered are the checks' to judge.
                seen.failing = false;
            }
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
            self.health(status, &target_of);
        }
    }

    /// A far end found down starts a spell, told once; its end (a check that answers) is
    /// told only if the spell was. A tunnel whose checks know nothing (stopped, its checks
    /// off) ends its spell quietly.
    fn health(&mut self, status: &TunnelStatus, target_of: &impl Fn(&str) -> String) {
        let Some(seen) = self.seen.get_mut(&status.name) else {
            return;
        };
        let name = status.name.clone();
        match &status.health {
            Health::Down { since, fault, .. } => {
                if seen.down_since != Some(*since) {
                    seen.down_since = Some(*since);
                    let cause = fault.cause();
                    self.pending.insert(
                        name.clone(),
                        Change::FarEndDown {
                            cause,
                            cause_at: format::down_cause_at(cause, &target_of(&name)),
                            detail: fault.to_string(),
                            name,
                        },
                    );
                }
            }
            Health::Up { round_trip, .. } => {
                if seen.down_since.take().is_some() {
                    // Down and back before the notification went out: that spell is not
                    // told at all; the end of one that was told is.
                    if matches!(self.pending.get(&name), Some(Change::FarEndDown { .. })) {
                        self.pending.remove(&name);
                    }
                    if seen.told_down {
                        self.pending.insert(
                            name.clone(),
                            Change::FarEndUp {
                                name,
                                round_trip: *round_trip,
                            },
                        );
                    }
                }
            }
            Health::Unknown => {
                // Stopped (or its checks turned off): nothing more to say of its far end.
                seen.down_since = None;
                seen.told_down = false;
                if matches!(self.pending.get(&name), Some(Change::FarEndDown { .. })) {
                    self.pending.remove(&name);
                }
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
        for change in &changes {
            let (name, told_down) = match change {
                Change::FarEndDown { name, .. } => (name, true),
                Change::FarEndUp { name, .. } => (name, false),
                _ => continue,
            };
            if let Some(seen) = self.seen.get_mut(name) {
                seen.told_down = told_down;
            }
        }
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
    let failing: Vec<&Change> = changes.iter().filter(|c| c.is_failure()).collect();
    let failure = !failing.is_empty();
    let far_ends_only = failing
        .iter()
        .all(|c| matches!(c, Change::FarEndDown { .. }));
    let line = |change: &Change| match change {
        Change::Failing { name, trouble } => {
            format!("{}: {}", one_line(name), one_line(&trouble.to_string()))
        }
        Change::Recovered { name } => format!("{} works again", one_line(name)),
        Change::FarEndDown { name, cause_at, .. } => {
            format!("{}: far end down — {}", one_line(name), one_line(cause_at))
        }
        Change::FarEndUp { name, .. } => format!("{}: far end back up", one_line(name)),
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
        [down @ Change::FarEndDown { cause, detail, .. }] => Alert {
            summary: line(down),
            body: format!(
                "{} {}",
                capitalized(&one_line(detail)),
                format::down_advice(*cause)
            ),
            failure,
        },
        [up @ Change::FarEndUp { round_trip, .. }] => Alert {
            summary: line(up),
            body: format!(
                "Its far end answers again (a check's handshake took {}); connections go through.",
                format::duration(*round_trip)
            ),
            failure,
        },
        _ => Alert {
            summary: if far_ends_only && failing.len() == 1 {
                "A far end is down".to_owned()
            } else if far_ends_only && failure {
                format!("{} far ends are down", failing.len())
            } else if failing.len() == 1 {
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

    fn target(_: &str) -> String {
        "db:8025".into()
    }

    fn health(id: u64, health: Health) -> TunnelStatus {
        let mut s = status(id, listening(), CounterSnapshot::default());
        s.health = health;
        s
    }

    fn down(since: u64, fault: sluice_engine::HealthFault) -> Health {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(since);
        Health::Down {
            since: at,
            checked: at,
            fault,
        }
    }

    fn refused() -> sluice_engine::HealthFault {
        sluice_engine::HealthFault::Unreached(sluice_engine::TargetFault::Refused("db:8025".into()))
    }

    fn far_target_down() -> sluice_engine::HealthFault {
        sluice_engine::HealthFault::FarTarget {
            cause: sluice_engine::TargetDownCause::Refused,
            age_secs: 1,
        }
    }

    fn up() -> Health {
        Health::Up {
            round_trip: Duration::from_millis(12),
            checked: SystemTime::now(),
            far_target: None,
        }
    }

    #[test]
    fn a_far_end_down_is_told_once_per_spell_and_again_after_it_came_back() {
        let gap = Duration::from_secs(1);
        let mut alerts = Alerts::with_gap(gap);
        let t0 = Instant::now();
        alerts.observe(&[health(1, Health::Unknown)], target);
        alerts.observe(&[health(1, down(100, refused()))], target);
        let alert = alerts.take_due(t0).unwrap().unwrap();
        assert_eq!(
            alert.summary,
            "t1: far end down — nothing listening at db:8025"
        );
        assert!(
            alert.body.starts_with("Connection refused"),
            "{}",
            alert.body
        );
        assert!(alert.body.contains("Repair"), "{}", alert.body);
        assert!(alert.failure);
        // The same spell: failing checks, another cause, clients failing meanwhile.
        for n in 0..50 {
            let fault = if n % 2 == 0 {
                far_target_down()
            } else {
                refused()
            };
            let mut s = health(1, down(100, fault));
            s.counters = wrong_key(n);
            s.counters.target_failures = n;
            alerts.observe(&[s], target);
        }
        assert_eq!(alerts.take_due(t0 + gap * 10), Ok(None), "no repeat");
        assert_eq!(alerts.failing().count(), 0, "the checks speak for it");
        // Back up: told; down again: a new spell, told again.
        alerts.observe(&[health(1, up())], target);
        let alert = alerts.take_due(t0 + gap * 20).unwrap().unwrap();
        assert_eq!(alert.summary, "t1: far end back up");
        assert!(alert.body.contains("12 ms"), "{}", alert.body);
        assert!(!alert.failure);
        alerts.observe(&[health(1, down(300, far_target_down()))], target);
        let alert = alerts.take_due(t0 + gap * 30).unwrap().unwrap();
        assert_eq!(alert.summary, "t1: far end down — its target is down");
    }

    #[test]
    fn a_far_end_down_and_back_before_it_was_told_is_not_told() {
        let mut alerts = Alerts::default();
        let t0 = Instant::now();
        // Something else was told just now: the next notification waits for the gap.
        alerts.observe(&[health(2, Health::Unknown)], target);
        alerts.observe(&[health(2, down(50, refused()))], target);
        assert!(alerts.take_due(t0).unwrap().is_some());
        alerts.observe(&[health(2, up())], target);
        alerts.observe(&[health(2, down(100, refused()))], target);
        alerts.observe(&[health(2, up())], target);
        // Only the first spell's end is left to tell.
        let alert = alerts.take_due(t0 + MIN_GAP).unwrap().unwrap();
        assert_eq!(alert.summary, "t2: far end back up");
        // Stopped while down: nothing to tell, and no "back up" later.
        alerts.observe(&[health(2, down(200, refused()))], target);
        alerts.observe(&[health(2, Health::Unknown)], target);
        alerts.observe(&[health(2, up())], target);
        assert_eq!(alerts.take_due(t0 + MIN_GAP * 3), Ok(None));
        // Several far ends in one gap: one notification naming each.
        alerts.observe(&[health(1, Health::Unknown), health(2, up())], target);
        alerts.observe(
            &[
                health(1, down(400, refused())),
                health(2, down(400, refused())),
            ],
            target,
        );
        let alert = alerts.take_due(t0 + MIN_GAP * 4).unwrap().unwrap();
        assert_eq!(alert.summary, "2 far ends are down");
        assert_eq!(
            alert.body,
            "t1: far end down — nothing listening at db:8025\nt2: far end down — nothing listening at db:8025"
        );
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
        alerts.observe(&[status(1, listening(), wrong_key(0))], target);
        assert_eq!(alerts.take_due(t0), Ok(None));
        for n in 1..200 {
            alerts.observe(&[status(1, listening(), wrong_key(n))], target);
        }
        let alert = alerts.take_due(t0).unwrap().unwrap();
        assert_eq!(alert.summary, "Tunnel \"t1\" is failing");
        assert!(alert.body.contains("different key"), "{}", alert.body);
        assert!(alert.failure);
        for n in 200..400 {
            alerts.observe(&[status(1, listening(), wrong_key(n))], target);
        }
        assert_eq!(
            alerts.take_due(t0 + MIN_GAP),
            Ok(None),
            "still failing: no news"
        );

        let mut ok = wrong_key(399);
        ok.bytes_down = 10;
        alerts.observe(&[status(1, listening(), ok)], target);
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
        alerts.observe(&quiet, target);
        alerts.observe(
            &[
                status(1, listening(), wrong_key(1)),
                quiet[1].clone(),
                quiet[2].clone(),
            ],
            target,
        );
        assert!(alerts.take_due(t0).unwrap().is_some());
        unreachable.target_failures = 3;
        let gone = TunnelState::Failed(in_use("gone"));
        alerts.observe(
            &[
                status(1, listening(), wrong_key(1)),
                status(2, listening(), unreachable),
                status(3, gone, wrong_key(0)),
            ],
            target,
        );
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
        alerts.observe(
            &[status(1, listening(), CounterSnapshot::default())],
            target,
        );
        alerts.observe(
            &[status(
                1,
                TunnelState::Failed(in_use("[127.0.0.1]:1")),
                CounterSnapshot::default(),
            )],
            target,
        );
        let alert = alerts.take_due(t0).unwrap().unwrap();
        assert!(alert.body.contains(IN_USE), "{}", alert.body);
        alerts.observe(
            &[status(1, TunnelState::Stopped, CounterSnapshot::default())],
            target,
        );
        assert_eq!(alerts.take_due(t0 + MIN_GAP * 2), Ok(None));
    }
}
