//! A running tunnel: its listener and accept loop, the connection limit, target
//! re-resolution, one task per connection, and the counters and events they report.
//! New settings apply to new connections without dropping the open ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::Address;
use crate::definition::{Mode, TunnelSettings};
use crate::events::{
    Event, EventKind, FailureVerdict, HandshakeFailureThrottle, ProblemThrottle, RepeatedProblem,
    SummaryDue,
};
use crate::fault::{
    ConnectionFault, HandshakeFault, PumpFault, StartFault, TargetFault, TunnelFault,
};
use crate::health::{Checker, Health, HealthWatch, TargetRecord};
use crate::net::conn::{HandshakeParams, authenticate, pump_connection};
use crate::net::dhpool::KeyPairPool;
use crate::net::dial::{DialFault, Dialer};
use crate::net::listener::{Listener, is_resource_exhaustion};
use crate::net::probe::answer_probe;
use crate::net::resolve::{Resolve, ResolvedTarget, Resolver};
use crate::net::stream::{NetStream, Peer};
use crate::plan::Restart;
use crate::protocol::health::TargetReport;
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
}

/// State shared between a tunnel's tasks and readers of its status.
pub(crate) struct TunnelShared {
    pub name: String,
    pub stats: TunnelStats,
    state: Mutex<TunnelState>,
    pub max_connections: AtomicU64,
    context: Arc<EngineContext>,
    next_conn: AtomicU64,
    /// How many times the tunnel was started.
    runs: AtomicU64,
    /// Which handshake failures are published one by one (see [`HandshakeFailureThrottle`]).
    handshake_failures: Mutex<HandshakeFailureThrottle>,
    /// The same for the other problems strangers can repeat at will.
    repeated_problems: Mutex<ProblemThrottle>,
    /// The far end's health (an encrypting tunnel's).
    pub health: Arc<HealthWatch>,
    /// What this tunnel's connections saw of its target (a decrypting tunnel's, told to
    /// health probes).
    target_record: TargetRecord,
    /// Wakes the re-resolving of the target when the machine's network changed.
    network_changed: Notify,
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
            network_changed: Notify::new(),
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
    fn set_state_if_run(&self, run: u64, state: TunnelState) {
        if self.runs.load(Ordering::Relaxed) == run {
            self.set_state(state);
        }
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
    fn emit_connection(&self, kind: impl FnOnce() -> EventKind) {
        if self.context.connection_events.load(Ordering::Relaxed) {
            self.emit(kind());
        }
    }

    /// Counts a failed handshake and records it as the last error; publishes it only if
    /// it is the first of a spell, so strangers cannot flood the log (the rest come as
    /// one summary a minute, from [`TunnelShared::publish_summaries`]).
    fn handshake_failed(&self, conn: u64, peer: Peer, fault: HandshakeFault) {
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
    fn repeated(&self, problem: RepeatedProblem, last_error: Option<TunnelFault>, kind: EventKind) {
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
        self.network_changed.notify_one();
        self.health.network_changed();
    }

    /// A health change from the connections' own evidence, published if it may be now.
    fn health_changed(&self, change: Option<Health>) {
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

/// What the supervisor asks a running tunnel to run: its settings, and whether (and how
/// often) to try again when it cannot start.
#[derive(Clone)]
pub(crate) struct Wanted {
    pub settings: Arc<TunnelSettings>,
    pub restart: Restart,
}

/// The supervisor's handle on one running tunnel.
pub(crate) struct RunningTunnel {
    wanted: watch::Sender<Wanted>,
    stop_accepting: CancellationToken,
    close_connections: CancellationToken,
    connections: TaskTracker,
    accept_loop: tokio::task::JoinHandle<()>,
    /// Which start of the tunnel this is, so a late stop never overwrites a restart's state.
    run: u64,
}

impl RunningTunnel {
    /// Starts resolving, binding and accepting in the background.
    pub fn start(shared: Arc<TunnelShared>, wanted: Wanted) -> RunningTunnel {
        let (wanted_tx, wanted_rx) = watch::channel(wanted);
        let stop_accepting = CancellationToken::new();
        let close_connections = CancellationToken::new();
        let connections = TaskTracker::new();
        let run = shared.runs.fetch_add(1, Ordering::Relaxed) + 1;
        shared.set_state(TunnelState::Starting);
        let accept_loop = tokio::spawn(accept_loop(
            shared,
            wanted_rx,
            stop_accepting.clone(),
            close_connections.clone(),
            connections.clone(),
        ));
        RunningTunnel {
            wanted: wanted_tx,
            stop_accepting,
            close_connections,
            connections,
            accept_loop,
            run,
        }
    }

    /// New connections use `wanted`'s settings; open ones carry on with what they started
    /// with. A tunnel that could not start tries again at once.
    pub fn update(&self, wanted: Wanted) {
        self.wanted.send_replace(wanted);
    }

    /// Stops accepting at once: the listening socket is closed when this returns (a
    /// start still resolving or binding is abandoned, not waited for).
    pub async fn close_listener(&mut self) {
        self.stop_accepting.cancel();
        let _ = (&mut self.accept_loop).await;
    }

    /// After [`RunningTunnel::close_listener`]: lets open connections finish on their own
    /// (`drain`) or closes them now, and waits until they are gone.
    pub async fn finish(self, shared: &TunnelShared, drain: bool) {
        if !drain {
            self.close_connections.cancel();
        }
        self.connections.close();
        let remaining = self.connections.len() as u64;
        if remaining > 0 && drain {
            shared.set_state_if_run(self.run, TunnelState::Draining { remaining });
        }
        // A stopped tunnel checks nothing and so knows nothing of its far end.
        shared.health.forget();
        shared.emit(EventKind::Stopped {
            draining: if drain { remaining } else { 0 },
        });
        self.connections.wait().await;
        shared.set_state_if_run(self.run, TunnelState::Stopped);
    }
}

/// What the accept loop derives from one version of the settings.
struct Generation {
    settings: Arc<TunnelSettings>,
    target: Arc<ResolvedTarget>,
    bind: Arc<[SocketAddr]>,
    limit: Option<Arc<Semaphore>>,
    /// Stops the generation's background tasks (re-resolving, health checks).
    background: CancellationToken,
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.background.cancel();
    }
}

impl Generation {
    /// Whether this generation checks its far end's health.
    fn checks_health(&self) -> bool {
        self.settings.definition.checks_health()
    }

    /// Starts checking the far end's health, if this generation does; else forgets what
    /// an earlier one found.
    fn watch_far_end(&self, shared: &Arc<TunnelShared>) {
        let interval = match self.settings.definition.health_check {
            Some(interval) if self.checks_health() => interval,
            _ => {
                shared.health.forget();
                return;
            }
        };
        let checker = Checker {
            settings: Arc::clone(&self.settings),
            target: Arc::clone(&self.target),
            bind: Arc::clone(&self.bind),
            pool: Arc::clone(&shared.context.pool),
            resolver: Arc::clone(&shared.context.resolver),
            interval,
        };
        let publisher = Arc::clone(shared);
        tokio::spawn(checker.run(
            Arc::clone(&shared.health),
            self.background.clone(),
            move |health| publisher.emit(EventKind::HealthChanged(health)),
        ));
    }
}

async fn prepare(
    shared: &Arc<TunnelShared>,
    settings: Arc<TunnelSettings>,
) -> Result<Generation, StartFault> {
    if settings.key.is_empty_key() {
        return Err(StartFault::EmptyKey);
    }
    let resolver = &*shared.context.resolver;
    let tunnel = &settings.definition;
    let target_addrs = match &tunnel.target {
        Address::Unix(_) => Vec::new(),
        target => target
            .resolve_with(resolver)
            .await
            .map_err(|error| StartFault::Target {
                target: target.clone(),
                error,
            })?,
    };
    let bind = match &tunnel.bind {
        None => Vec::new(),
        Some(bind) => bind
            .resolve_with(resolver)
            .await
            .map_err(|error| StartFault::Bind {
                bind: bind.clone(),
                error,
            })?,
    };
    let target = Arc::new(ResolvedTarget::new(target_addrs));
    let background = CancellationToken::new();
    if let (Address::Host { .. }, Some(period)) = (&tunnel.target, tunnel.reresolve) {
        tokio::spawn(reresolve_loop(
            Arc::clone(shared),
            tunnel.target.clone(),
            Arc::clone(&target),
            period,
            background.clone(),
        ));
    }
    shared
        .max_connections
        .store(u64::from(tunnel.max_connections), Ordering::Relaxed);
    let limit = (tunnel.max_connections > 0)
        .then(|| Arc::new(Semaphore::new(tunnel.max_connections as usize)));
    Ok(Generation {
        limit,
        settings,
        target,
        bind: Arc::from(bind),
        background,
    })
}

async fn reresolve_loop(
    shared: Arc<TunnelShared>,
    target: Address,
    resolved: Arc<ResolvedTarget>,
    period: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
            () = shared.network_changed.notified() => {}
        }
        let lookup = tokio::select! {
            () = stop.cancelled() => return,
            lookup = target.resolve_with(&*shared.context.resolver) => lookup,
        };
        match lookup {
            Ok(addrs) => resolved.replace(addrs),
            Err(error) => shared.emit(EventKind::ResolveFailed(error)),
        }
    }
}

/// Backoff after accept() fails for lack of resources: the listening socket stays
/// readable, so retrying at once would spin; open connections keep being served.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(25);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the clients queued behind a reached connection limit are counted.
const WAITING_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What woke the accept loop.
enum Step {
    Stop,
    Update,
    Retry,
    Slot(Option<OwnedSemaphorePermit>),
    Accepted(std::io::Result<NetStream>),
}

impl Step {
    fn update_or_stop(changed: Result<(), watch::error::RecvError>) -> Step {
        match changed {
            Ok(()) => Step::Update,
            // The supervisor dropped this tunnel's channel: it is gone.
            Err(_) => Step::Stop,
        }
    }
}

/// The accept loop's own state: what it runs now and what it has built for that.
struct Accepting {
    shared: Arc<TunnelShared>,
    wanted: Wanted,
    listener: Option<Listener>,
    generation: Option<Generation>,
    /// The fault of the last failed start, so a retry that fails the same way is not
    /// published again (with -D that would be a line a second).
    last_failure: Option<StartFault>,
}

impl Accepting {
    /// Builds whatever the current settings need and is missing: resolves, binds.
    async fn start(&mut self) -> Result<(), StartFault> {
        let generation = prepare(&self.shared, Arc::clone(&self.wanted.settings)).await?;
        if self.listener.is_none() {
            let listen = &self.wanted.settings.definition.listen;
            let bound = Listener::bind_with(listen, &*self.shared.context.resolver)
                .await
                .map_err(StartFault::Listen)?;
            let address = bound.local_address().unwrap_or_else(|| listen.clone());
            self.listener = Some(bound);
            self.shared.set_state(TunnelState::Listening {
                address: address.clone(),
            });
            self.shared.emit(EventKind::Listening { address });
        }
        generation.watch_far_end(&self.shared);
        self.generation = Some(generation);
        self.last_failure = None;
        Ok(())
    }

    fn failed(&mut self, fault: StartFault) {
        self.shared.set_state(TunnelState::Failed(fault.clone()));
        if self.last_failure.as_ref() != Some(&fault) {
            self.shared
                .stats
                .set_last_error(TunnelFault::Start(fault.clone()));
            self.shared.emit(EventKind::StartFailed(fault.clone()));
        }
        self.last_failure = Some(fault);
    }

    /// Takes new settings: a changed listen address rebinds; anything else applies to new
    /// connections only. The next loop turn rebuilds what was dropped here.
    fn update(&mut self, wanted: Wanted) {
        let retry = self.generation.is_none();
        if wanted.settings.definition.listen != self.wanted.settings.definition.listen {
            self.listener = None;
        }
        self.wanted = wanted;
        self.generation = None;
        if retry {
            self.shared.set_state(TunnelState::Starting);
        } else {
            self.shared.emit(EventKind::Updated);
        }
    }
}

async fn accept_loop(
    shared: Arc<TunnelShared>,
    mut wanted_rx: watch::Receiver<Wanted>,
    stop: CancellationToken,
    close_connections: CancellationToken,
    connections: TaskTracker,
) {
    let mut accepting_rx = shared.context.accepting.subscribe();
    let mut tunnel = Accepting {
        wanted: wanted_rx.borrow_and_update().clone(),
        shared,
        listener: None,
        generation: None,
        last_failure: None,
    };
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut limit_reported = false;
    loop {
        if tunnel.generation.is_none() || tunnel.listener.is_none() {
            // Resolving and binding race the stop and new settings: a name that never
            // resolves must not hold up a stop (nor the supervisor waiting for it).
            let started = tokio::select! {
                () = stop.cancelled() => return,
                changed = wanted_rx.changed() => Err(Step::update_or_stop(changed)),
                started = tunnel.start() => Ok(started),
            };
            let step = match started {
                Ok(Ok(())) => continue,
                Ok(Err(fault)) => {
                    tunnel.failed(fault);
                    // Wait for new settings, a stop or the next try; open connections
                    // keep running meanwhile.
                    let restart = tunnel.wanted.restart;
                    let retry = async move {
                        match restart {
                            Restart::Never => std::future::pending().await,
                            Restart::Every(period) => tokio::time::sleep(period).await,
                        }
                    };
                    tokio::select! {
                        () = stop.cancelled() => Step::Stop,
                        changed = wanted_rx.changed() => Step::update_or_stop(changed),
                        () = retry => Step::Retry,
                    }
                }
                Err(step) => step,
            };
            match step {
                Step::Update => tunnel.update(wanted_rx.borrow_and_update().clone()),
                Step::Retry => tunnel.shared.set_state(TunnelState::Starting),
                _ => return,
            }
            continue;
        }
        let (Some(gen_now), Some(bound)) = (&tunnel.generation, &tunnel.listener) else {
            continue;
        };
        let shared = &tunnel.shared;
        if !*accepting_rx.borrow_and_update() {
            // Listening, not accepting yet: clients wait in the listen queue.
            let step = tokio::select! {
                () = stop.cancelled() => Step::Stop,
                changed = wanted_rx.changed() => Step::update_or_stop(changed),
                changed = accepting_rx.changed() => match changed {
                    Ok(()) => continue,
                    // The engine is gone.
                    Err(_) => Step::Stop,
                },
            };
            match step {
                Step::Update => tunnel.update(wanted_rx.borrow_and_update().clone()),
                _ => return,
            }
            continue;
        }

        let permit = match &gen_now.limit {
            None => None,
            Some(limit) => match Arc::clone(limit).try_acquire_owned() {
                Ok(permit) => {
                    limit_reported = false;
                    Some(permit)
                }
                Err(_) => {
                    if !limit_reported {
                        limit_reported = true;
                        shared.stats.limit_was_reached();
                        shared.repeated(
                            RepeatedProblem::ConnectionLimit,
                            None,
                            EventKind::ConnectionLimitReached {
                                limit: gen_now.settings.definition.max_connections,
                            },
                        );
                    }
                    // Like spiped: stop accepting until a slot frees up. Meanwhile, say
                    // each second how many clients queue for one.
                    let wait_for_slot = async {
                        let mut every_second = tokio::time::interval(WAITING_SAMPLE_EVERY);
                        let slot = Arc::clone(limit).acquire_owned();
                        tokio::pin!(slot);
                        loop {
                            tokio::select! {
                                permit = &mut slot => break permit.ok(),
                                _ = every_second.tick() => {
                                    let queued = bound.queued_connections().unwrap_or(0);
                                    shared.stats.set_waiting_clients(queued);
                                }
                            }
                        }
                    };
                    let step = tokio::select! {
                        () = stop.cancelled() => Step::Stop,
                        changed = wanted_rx.changed() => Step::update_or_stop(changed),
                        permit = wait_for_slot => Step::Slot(permit),
                    };
                    shared.stats.set_waiting_clients(0);
                    match step {
                        Step::Slot(permit) => permit,
                        Step::Update => {
                            tunnel.update(wanted_rx.borrow_and_update().clone());
                            continue;
                        }
                        _ => return,
                    }
                }
            },
        };

        let step = tokio::select! {
            () = stop.cancelled() => Step::Stop,
            changed = wanted_rx.changed() => Step::update_or_stop(changed),
            accepted = bound.accept() => Step::Accepted(accepted),
        };
        match step {
            Step::Accepted(Ok(stream)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let conn = Connection {
                    shared: Arc::clone(shared),
                    settings: Arc::clone(&gen_now.settings),
                    target: Arc::clone(&gen_now.target),
                    bind: Arc::clone(&gen_now.bind),
                    _permit: permit,
                };
                let close = close_connections.clone();
                // Boxed: the connection's future is several KB, which tokio would
                // otherwise copy through spawn and again when the task finishes.
                connections.spawn(Box::pin(conn.run(stream, close)));
            }
            Step::Accepted(Err(e)) if is_resource_exhaustion(&e) => {
                let error = crate::fault::IoFault::from(e);
                shared.repeated(
                    RepeatedProblem::AcceptFailed,
                    Some(TunnelFault::Accept(error.clone())),
                    EventKind::AcceptFailed {
                        error,
                        retry_in: backoff,
                    },
                );
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
            // One client gave up between SYN and accept (ECONNABORTED and the like).
            Step::Accepted(Err(_)) | Step::Slot(_) | Step::Retry => {}
            Step::Update => tunnel.update(wanted_rx.borrow_and_update().clone()),
            Step::Stop => return,
        }
    }
}

/// One accepted client and what it needs, for the life of the connection.
struct Connection {
    shared: Arc<TunnelShared>,
    settings: Arc<TunnelSettings>,
    target: Arc<ResolvedTarget>,
    bind: Arc<[SocketAddr]>,
    /// Holds a connection slot until the connection ends.
    _permit: Option<OwnedSemaphorePermit>,
}

enum ConnFault {
    Handshake(HandshakeFault),
    Target(TargetFault),
    Pump(PumpFault),
    Closed,
}

impl Connection {
    async fn run(self, inbound: NetStream, close: CancellationToken) {
        let shared = &self.shared;
        let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let peer = inbound.peer();
        let started = Instant::now();
        shared.stats.connection_opened();
        shared.emit_connection(|| EventKind::ConnectionOpened { conn, peer });
        let up = AtomicU64::new(0);
        let down = AtomicU64::new(0);
        let outcome = tokio::select! {
            outcome = self.serve(inbound, &up, &down) => outcome,
            () = close.cancelled() => Err(ConnFault::Closed),
        };
        shared.stats.connection_closed();
        let closed = |fault: Option<ConnectionFault>| EventKind::ConnectionClosed {
            conn,
            peer,
            duration: started.elapsed(),
            bytes_up: up.load(Ordering::Relaxed),
            bytes_down: down.load(Ordering::Relaxed),
            fault,
        };
        let far_end_suspect = matches!(
            outcome,
            Err(ConnFault::Handshake(_) | ConnFault::Target(_) | ConnFault::Pump(_))
        );
        if far_end_suspect && self.settings.definition.checks_health() {
            shared.health.connection_failed();
        }
        match outcome {
            Ok(()) => shared.emit_connection(|| closed(None)),
            Err(ConnFault::Handshake(fault)) => shared.handshake_failed(conn, peer, fault),
            Err(ConnFault::Target(fault)) => {
                shared.stats.target_failed();
                shared.repeated(
                    RepeatedProblem::TargetUnreachable,
                    Some(TunnelFault::Target(fault.clone())),
                    EventKind::TargetUnreachable {
                        conn,
                        target: self.settings.definition.target.clone(),
                        fault,
                    },
                );
            }
            // A rejected packet needs the key or a place on a real client's path, so each
            // is told; a socket error (a reset) anyone who can connect can repeat.
            Err(ConnFault::Pump(fault @ PumpFault::Rejected(_))) => {
                shared.stats.data_rejected();
                shared
                    .stats
                    .set_last_error(TunnelFault::Pump(fault.clone()));
                shared.emit(closed(Some(ConnectionFault::Pump(fault))));
            }
            Err(ConnFault::Pump(fault)) => shared.repeated(
                RepeatedProblem::ConnectionError,
                None,
                closed(Some(ConnectionFault::Pump(fault))),
            ),
            Err(ConnFault::Closed) => {
                shared.emit(closed(Some(ConnectionFault::TunnelStopped)));
            }
        }
    }

    /// Encrypt: target first, then the handshake with it (as spiped -e).
    /// Decrypt: the handshake first, and only an authenticated client gets a target
    /// connection (spiped -d connects at once; this keeps unauthenticated peers from
    /// reaching the service behind the tunnel at all). The target connect starts as soon
    /// as the client's signed DH value checks out, and runs while the shared secret is
    /// computed.
    async fn serve(
        &self,
        mut inbound: NetStream,
        up: &AtomicU64,
        down: &AtomicU64,
    ) -> Result<(), ConnFault> {
        let s = &self.settings.definition;
        let params = HandshakeParams {
            role: s.role(),
            key: &self.settings.key,
            forward_secrecy: s.forward_secrecy,
            key_agreement: s.key_agreement,
            pool: &self.shared.context.pool,
            health_probe: false,
        };
        let (outbound, codecs) = match s.mode {
            Mode::Encrypt => {
                let addrs = self.target.current();
                let dialed = Dialer::new(&s.target, s.bind.as_ref(), s.timeout)
                    .with_resolved(&addrs, &self.bind)
                    .dial(&params)
                    .await
                    .map_err(|fault| match fault {
                        DialFault::Target(fault) => ConnFault::Target(fault),
                        DialFault::Handshake(fault) => ConnFault::Handshake(fault),
                    })?;
                if s.checks_health() {
                    let health = &self.shared.health;
                    let change = health.handshake_succeeded(dialed.handshake, Instant::now());
                    self.shared.health_changed(change);
                }
                (dialed.stream, dialed.codecs)
            }
            Mode::Decrypt => {
                let authenticated = authenticate(&mut inbound, &params, s.timeout)
                    .await
                    .map_err(ConnFault::Handshake)?;
                if authenticated.is_health_probe(&self.settings.key) {
                    let (sealer, _) = authenticated
                        .session_codecs()
                        .await
                        .map_err(ConnFault::Handshake)?;
                    let report = self.target_report().await;
                    answer_probe(&mut inbound, sealer, report, s.timeout).await;
                    return Ok(());
                }
                // The session keys (on the blocking pool) and the target connect at once.
                // The keys first: `join!` polls in order, so the exponentiation is handed
                // off before the connect's system calls run, not after them.
                let (codecs, outbound) =
                    tokio::join!(authenticated.session_codecs(), self.connect());
                let codecs = codecs.map_err(ConnFault::Handshake)?;
                match outbound {
                    Ok(outbound) => (outbound, codecs),
                    Err(fault) => {
                        // The client has finished its handshake: an orderly close would
                        // look like a session the service ended without a word (spipe
                        // exits 0). spiped -d's clients see the handshake fail instead;
                        // a reset tells ours that this session failed.
                        inbound.reset_on_close();
                        return Err(fault);
                    }
                }
            }
        };
        inbound.tune(s.keepalive);
        outbound.tune(s.keepalive);
        let stats = &self.shared.stats;
        pump_connection(
            s.role(),
            inbound,
            outbound,
            codecs,
            |n| {
                up.fetch_add(n, Ordering::Relaxed);
                stats.add_up(n);
            },
            |n| {
                down.fetch_add(n, Ordering::Relaxed);
                stats.add_down(n);
            },
        )
        .await
        .map_err(ConnFault::Pump)
    }

    /// Connects to the target, and records whether that worked for health probes.
    async fn connect(&self) -> Result<NetStream, ConnFault> {
        let def = &self.settings.definition;
        let addrs = self.target.current();
        let connected = Dialer::new(&def.target, def.bind.as_ref(), def.timeout)
            .with_resolved(&addrs, &self.bind)
            .connect()
            .await;
        let outcome = connected.as_ref().map(|_| ());
        self.shared.target_record.record(outcome, Instant::now());
        connected
            .map(|connected| connected.stream)
            .map_err(ConnFault::Target)
    }

    /// What to tell a health probe of the target: what its connections saw, after one
    /// bare connection (opened, closed) if they saw it down.
    async fn target_report(&self) -> TargetReport {
        if self.shared.target_record.says_down() {
            drop(self.connect().await);
        }
        self.shared.target_record.report(Instant::now())
    }
}
