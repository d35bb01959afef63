//! What a tunnel's tasks and its readers share: its state, counters, health, throttles
//! and the engine-wide context (events, the DH pool, the resolver), with the one way each
//! kind of news is published.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::sync::{broadcast, watch};

use crate::address::Address;
use crate::audit::AuditRecord;
use crate::events::{
    Event, EventKind, FailureVerdict, HandshakeFailureThrottle, ProblemThrottle, RepeatedProblem,
    SummaryDue,
};
use crate::fault::{HandshakeFault, StartFault, TunnelFault};
use crate::health::{Health, HealthWatch, TargetRecord};
use crate::net::dhpool::KeyPairPool;
use crate::net::resolve::Resolver;
use crate::net::stream::Peer;
use crate::stats::TunnelStats;

/// Where a tunnel is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum TunnelState {
    Stopped,
    /// Resolving and binding.
    Starting,
    Listening {
        address: Address,
    },
    /// A reverse-out end at work: it keeps connections to the reverse-in end at `far`
    /// ready (how many: the counters' `reverse_ready`; whether it reaches it: health).
    Dialing {
        far: Address,
    },
    /// Not accepting; `remaining` connections are still finishing.
    Draining {
        remaining: u64,
    },
    /// Could not start (and, with a restart policy, is tried again).
    Failed(StartFault),
}

/// What every tunnel of one engine shares.
pub(crate) struct EngineContext {
    pub events: broadcast::Sender<Event>,
    pub notify: Arc<dyn Fn() + Send + Sync>,
    /// Publish ConnectionOpened and clean ConnectionClosed events.
    pub connection_events: AtomicBool,
    /// Whether tunnels may accept connections (see [`crate::Engine::hold_connections`]).
    pub accepting: watch::Sender<bool>,
    pub resolver: Arc<dyn Resolver>,
    pub pool: Arc<KeyPairPool>,
    /// Where each connection's audit record goes, once someone asked for the trail.
    pub audit: std::sync::OnceLock<tokio::sync::mpsc::Sender<AuditRecord>>,
    /// Records the trail's reader was too slow to take.
    pub audit_dropped: AtomicU64,
}

/// State shared between a tunnel's tasks and readers of its status.
pub(crate) struct TunnelShared {
    pub name: String,
    pub stats: TunnelStats,
    state: Mutex<TunnelState>,
    pub max_connections: AtomicU64,
    pub context: Arc<EngineContext>,
    pub next_conn: AtomicU64,
    /// How many times the tunnel was started.
    pub runs: AtomicU64,
    /// Which handshake failures are published one by one (see [`HandshakeFailureThrottle`]).
    handshake_failures: Mutex<HandshakeFailureThrottle>,
    /// The same for the other problems strangers can repeat at will.
    repeated_problems: Mutex<ProblemThrottle>,
    /// The far end's health (an encrypting tunnel's).
    pub health: Arc<HealthWatch>,
    /// What this tunnel's connections saw of its target (a decrypting tunnel's, told to
    /// health probes).
    pub target_record: TargetRecord,
    /// Counts the machine's network changes (and wake-ups): a tunnel's tasks that
    /// re-resolve or redial watch it.
    pub network_epoch: watch::Sender<u64>,
}

impl TunnelShared {
    pub fn new(name: &str, context: Arc<EngineContext>) -> Self {
        TunnelShared {
            name: name.to_owned(),
            stats: TunnelStats::default(),
            state: Mutex::new(TunnelState::Stopped),
            max_connections: AtomicU64::new(0),
            context,
            next_conn: AtomicU64::new(1),
            runs: AtomicU64::new(0),
            handshake_failures: Mutex::new(HandshakeFailureThrottle::default()),
            repeated_problems: Mutex::new(ProblemThrottle::default()),
            health: Arc::new(HealthWatch::default()),
            target_record: TargetRecord::default(),
            network_epoch: watch::Sender::new(0),
        }
    }

    pub fn state(&self) -> TunnelState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(TunnelState::Stopped)
    }

    pub fn set_state(&self, state: TunnelState) {
        if let Ok(mut slot) = self.state.lock() {
            *slot = state;
        }
        (self.context.notify)();
    }

    /// Sets the state unless the tunnel was started again since run `run`.
    pub(crate) fn set_state_if_run(&self, run: u64, state: TunnelState) {
        if self.runs.load(Ordering::Relaxed) == run {
            self.set_state(state);
        }
    }

    /// Sends a connection's audit record, if the trail is on, and wakes the viewer (whose
    /// connection history shows it); never waits (a record the reader has no room for is
    /// counted as dropped).
    pub(crate) fn audit(&self, record: impl FnOnce() -> AuditRecord) {
        let Some(trail) = self.context.audit.get() else {
            return;
        };
        if trail.try_send(record()).is_ok() {
            (self.context.notify)();
        } else {
            self.context.audit_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A number for the next connection, for events and logs.
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes an event (dropped if nobody listens) and wakes the viewer.
    pub fn emit(&self, kind: EventKind) {
        let _ = self.context.events.send(Event {
            tunnel: self.name.clone(),
            at: SystemTime::now(),
            kind,
        });
        (self.context.notify)();
    }

    /// Publishes a routine per-connection event, if those are wanted.
    pub(crate) fn emit_connection(&self, kind: impl FnOnce() -> EventKind) {
        if self.context.connection_events.load(Ordering::Relaxed) {
            self.emit(kind());
        }
    }

    /// Counts a failed handshake and records it as the last error; publishes it only if
    /// it is the first of a spell, so strangers cannot flood the log (the rest come as
    /// one summary a minute, from [`TunnelShared::publish_summaries`]).
    pub(crate) fn handshake_failed(&self, conn: u64, peer: Peer, fault: HandshakeFault) {
        let cause = fault.cause();
        self.stats.handshake_failed(cause);
        self.stats
            .set_last_error(TunnelFault::Handshake(fault.clone()));
        // A poisoned lock (a panic elsewhere while holding it) errs on the side of logging.
        let verdict = self
            .handshake_failures
            .lock()
            .map_or(FailureVerdict::Publish, |mut t| {
                t.failed(cause, Instant::now())
            });
        match verdict {
            FailureVerdict::Publish => self.emit(EventKind::HandshakeFailed { conn, peer, fault }),
            FailureVerdict::Count => (self.context.notify)(),
        }
    }

    /// Publishes a problem a stranger can repeat at will (`last_error`, if given, becomes
    /// the tunnel's last error either way) if it is the first of a spell; the rest come as
    /// one summary a minute, from [`TunnelShared::publish_summaries`].
    pub(crate) fn repeated(
        &self,
        problem: RepeatedProblem,
        last_error: Option<TunnelFault>,
        kind: EventKind,
    ) {
        if let Some(fault) = last_error {
            self.stats.set_last_error(fault);
        }
        let verdict = self
            .repeated_problems
            .lock()
            .map_or(FailureVerdict::Publish, |mut t| {
                t.failed(problem, Instant::now())
            });
        match verdict {
            FailureVerdict::Publish => self.emit(kind),
            FailureVerdict::Count => (self.context.notify)(),
        }
    }

    /// The machine's network changed or it woke up: resolve the target again, check the
    /// far end at once.
    pub fn network_changed(&self) {
        self.network_epoch.send_modify(|epoch| *epoch += 1);
        self.health.network_changed();
    }

    /// A health change from the connections' own evidence, published if it may be now.
    pub(crate) fn health_changed(&self, change: Option<Health>) {
        match change {
            Some(health) => self.emit(EventKind::HealthChanged(health)),
            None => (self.context.notify)(),
        }
    }

    /// Publishes the summaries of the problems counted but not published, if they are
    /// `due` at `now`, and a health change held back.
    pub fn publish_summaries(&self, now: Instant, due: SummaryDue) {
        if let Some(health) = self.health.held_back(now) {
            self.emit(EventKind::HealthChanged(health));
        }
        let handshakes = self
            .handshake_failures
            .lock()
            .ok()
            .and_then(|mut t| t.summary(now, due));
        if let Some(summary) = handshakes {
            self.emit(summary.into());
        }
        let others = self
            .repeated_problems
            .lock()
            .ok()
            .and_then(|mut t| t.summary(now, due));
        if let Some(summary) = others {
            self.emit(summary.into());
        }
    }
}
