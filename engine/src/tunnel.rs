//! A running tunnel: its listener and accept loop, the connection limit, target
//! re-resolution, one task per connection, and the counters and events they report.
//! New settings apply to new connections without dropping the open ones.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::Address;
use crate::config::{ConfigError, TunnelSpec};
use crate::definition::{Mode, TunnelDefinition};
use crate::events::{
    Event, EventKind, FailureVerdict, HandshakeFailureThrottle, ProblemThrottle, RepeatedProblem,
    SummaryDue, TunnelId,
};
use crate::net::conn::{
    HandshakeFault, HandshakeParams, PumpFault, TargetFault, authenticate, pump_connection,
};
use crate::net::dhpool::KeyPairPool;
use crate::net::dial::{DialFault, Dialer};
use crate::net::listener::{ListenError, Listener, is_resource_exhaustion};
use crate::net::resolve::Resolve;
use crate::net::stream::NetStream;
use crate::protocol::key::PresharedKey;
use crate::stats::{HandshakeFailure, TunnelStats};

/// Everything a tunnel needs to run: its checked definition and its key, loaded.
#[derive(Clone)]
pub struct TunnelSettings {
    pub definition: TunnelDefinition,
    pub key: PresharedKey,
}

impl TunnelSettings {
    /// A definition that [`TunnelDefinition::problems`] found nothing wrong with, and
    /// its key.
    pub fn new(definition: TunnelDefinition, key: PresharedKey) -> Self {
        TunnelSettings { definition, key }
    }

    /// Settings for a tunnel defined in a config file, with its key loaded by the caller.
    pub fn from_spec(spec: &TunnelSpec, key: PresharedKey) -> Result<Self, Vec<ConfigError>> {
        Ok(TunnelSettings::new(spec.validate()?, key))
    }
}

impl fmt::Debug for TunnelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelSettings")
            .field("definition", &self.definition)
            .field("key", &self.key.fingerprint())
            .finish()
    }
}

/// Where a tunnel is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum TunnelState {
    Stopped,
    /// Resolving and binding.
    Starting,
    Listening {
        address: String,
    },
    /// Not accepting; `remaining` connections are still finishing.
    Draining {
        remaining: u64,
    },
    /// Could not start or had to stop; the reason in words.
    Failed {
        reason: String,
    },
}

/// State shared between a tunnel's tasks and readers of its status.
pub(crate) struct TunnelShared {
    pub id: TunnelId,
    pub name: Mutex<String>,
    pub stats: TunnelStats,
    pub state: Mutex<TunnelState>,
    pub max_connections: AtomicU64,
    events: broadcast::Sender<Event>,
    notify: Arc<dyn Fn() + Send + Sync>,
    /// Publish ConnectionOpened and clean ConnectionClosed events (shared engine-wide).
    connection_events: Arc<AtomicBool>,
    next_conn: AtomicU64,
    /// How many times the tunnel was started.
    runs: AtomicU64,
    /// Which handshake failures are published one by one (see [`HandshakeFailureThrottle`]).
    handshake_failures: Mutex<HandshakeFailureThrottle>,
    /// The same for the other problems strangers can repeat at will.
    repeated_problems: Mutex<ProblemThrottle>,
}

impl TunnelShared {
    pub fn new(
        id: TunnelId,
        name: &str,
        events: broadcast::Sender<Event>,
        notify: Arc<dyn Fn() + Send + Sync>,
        connection_events: Arc<AtomicBool>,
    ) -> Self {
        TunnelShared {
            id,
            name: Mutex::new(name.to_owned()),
            stats: TunnelStats::default(),
            state: Mutex::new(TunnelState::Stopped),
            max_connections: AtomicU64::new(0),
            events,
            notify,
            connection_events,
            next_conn: AtomicU64::new(1),
            runs: AtomicU64::new(0),
            handshake_failures: Mutex::new(HandshakeFailureThrottle::default()),
            repeated_problems: Mutex::new(ProblemThrottle::default()),
        }
    }

    pub fn name(&self) -> String {
        self.name.lock().map(|n| n.clone()).unwrap_or_default()
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
        (self.notify)();
    }

    /// Sets the state unless the tunnel was started again since run `run`.
    fn set_state_if_run(&self, run: u64, state: TunnelState) {
        if self.runs.load(Ordering::Relaxed) == run {
            self.set_state(state);
        }
    }

    /// Publishes an event (dropped if nobody listens) and wakes the viewer.
    pub fn emit(&self, kind: EventKind) {
        let _ = self.events.send(Event {
            tunnel: self.id,
            tunnel_name: self.name(),
            at: SystemTime::now(),
            kind,
        });
        (self.notify)();
    }

    /// Publishes a routine per-connection event, if those are wanted.
    fn emit_connection(&self, kind: EventKind) {
        if self.connection_events.load(Ordering::Relaxed) {
            self.emit(kind);
        }
    }

    /// Records a failure as the tunnel's last error and publishes it.
    fn fail(&self, message: String, kind: EventKind) {
        self.stats.set_last_error(message);
        self.emit(kind);
    }

    /// Counts a failed handshake and records it as the last error; publishes it only if
    /// it is the first of a spell, so strangers cannot flood the log (the rest come as
    /// one summary a minute, from [`TunnelShared::publish_handshake_summary`]).
    fn handshake_failed(&self, conn: u64, peer: String, cause: HandshakeFailure, message: String) {
        self.stats.handshake_failed(cause);
        // A poisoned lock (a panic elsewhere while holding it) errs on the side of logging.
        let verdict = self
            .handshake_failures
            .lock()
            .map_or(FailureVerdict::Publish, |mut t| {
                t.failed(cause, Instant::now())
            });
        match verdict {
            FailureVerdict::Publish => self.fail(
                message.clone(),
                EventKind::HandshakeFailed {
                    conn,
                    peer,
                    cause,
                    message,
                },
            ),
            FailureVerdict::Count => {
                self.stats.set_last_error(message);
                (self.notify)();
            }
        }
    }

    /// Publishes a problem a stranger can repeat at will (`last_error`, if given, becomes
    /// the tunnel's last error either way) if it is the first of a spell; the rest come as
    /// one summary a minute, from [`TunnelShared::publish_summaries`].
    fn repeated(&self, problem: RepeatedProblem, last_error: Option<String>, kind: EventKind) {
        if let Some(message) = last_error {
            self.stats.set_last_error(message);
        }
        let verdict = self
            .repeated_problems
            .lock()
            .map_or(FailureVerdict::Publish, |mut t| {
                t.failed(problem, Instant::now())
            });
        match verdict {
            FailureVerdict::Publish => self.emit(kind),
            FailureVerdict::Count => (self.notify)(),
        }
    }

    /// Publishes the summaries of the problems counted but not published, if they are
    /// `due` at `now`.
    pub fn publish_summaries(&self, now: Instant, due: SummaryDue) {
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

/// The supervisor's handle on one running tunnel.
pub(crate) struct RunningTunnel {
    settings: watch::Sender<Arc<TunnelSettings>>,
    stop_accepting: CancellationToken,
    close_connections: CancellationToken,
    connections: TaskTracker,
    accept_loop: tokio::task::JoinHandle<()>,
    /// Which start of the tunnel this is, so a late stop never overwrites a restart's state.
    run: u64,
}

impl RunningTunnel {
    /// Starts resolving, binding and accepting in the background.
    /// `accepting` says when connections may be accepted (see
    /// [`crate::Engine::hold_connections`]).
    pub fn start(
        shared: Arc<TunnelShared>,
        settings: TunnelSettings,
        pool: Arc<KeyPairPool>,
        accepting: watch::Receiver<bool>,
    ) -> RunningTunnel {
        let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
        let stop_accepting = CancellationToken::new();
        let close_connections = CancellationToken::new();
        let connections = TaskTracker::new();
        let run = shared.runs.fetch_add(1, Ordering::Relaxed) + 1;
        let accept_loop = tokio::spawn(accept_loop(
            shared,
            settings_rx,
            pool,
            accepting,
            stop_accepting.clone(),
            close_connections.clone(),
            connections.clone(),
        ));
        RunningTunnel {
            settings: settings_tx,
            stop_accepting,
            close_connections,
            connections,
            accept_loop,
            run,
        }
    }

    /// New connections use `settings`; open ones carry on with what they started with.
    pub fn update(&self, settings: TunnelSettings) {
        self.settings.send_replace(Arc::new(settings));
    }

    /// Stops accepting at once: the listening socket is closed when this returns.
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
        shared.emit(EventKind::Stopped {
            draining: if drain { remaining } else { 0 },
        });
        self.connections.wait().await;
        shared.set_state_if_run(self.run, TunnelState::Stopped);
    }
}

/// Target addresses, refreshed in the background for host names.
struct ResolvedTarget {
    addrs: RwLock<Arc<[SocketAddr]>>,
}

impl ResolvedTarget {
    fn current(&self) -> Arc<[SocketAddr]> {
        self.addrs
            .read()
            .map(|a| Arc::clone(&a))
            .unwrap_or_else(|_| Arc::from(Vec::new()))
    }

    fn replace(&self, addrs: Vec<SocketAddr>) {
        if let Ok(mut slot) = self.addrs.write() {
            *slot = Arc::from(addrs);
        }
    }
}

/// What the accept loop derives from one version of the settings.
struct Generation {
    settings: Arc<TunnelSettings>,
    target: Arc<ResolvedTarget>,
    bind: Arc<[SocketAddr]>,
    limit: Option<Arc<Semaphore>>,
    resolver: CancellationToken,
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.resolver.cancel();
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot resolve target {target}: {message}")]
    Target { target: String, message: String },
    #[error("cannot resolve bind address {bind}: {message}")]
    Bind { bind: String, message: String },
    /// Key loaders refuse empty keys; this keeps any other way in from running one.
    #[error(
        "its key is empty, which anyone could use to connect: generate a key (sluiced --generate-key) and use it at both ends"
    )]
    EmptyKey,
}

async fn prepare(
    shared: &Arc<TunnelShared>,
    settings: Arc<TunnelSettings>,
) -> Result<Generation, StartError> {
    if settings.key.is_empty_key() {
        return Err(StartError::EmptyKey);
    }
    let tunnel = &settings.definition;
    let target_addrs = match &tunnel.target {
        Address::Unix(_) => Vec::new(),
        target => target.resolve().await.map_err(|e| StartError::Target {
            target: target.to_string(),
            message: e.to_string(),
        })?,
    };
    let bind = match &tunnel.bind {
        None => Vec::new(),
        Some(bind) => bind.resolve().await.map_err(|e| StartError::Bind {
            bind: bind.to_string(),
            message: e.to_string(),
        })?,
    };
    let target = Arc::new(ResolvedTarget {
        addrs: RwLock::new(Arc::from(target_addrs)),
    });
    let resolver = CancellationToken::new();
    if let (Address::Host { .. }, Some(period)) = (&tunnel.target, tunnel.reresolve) {
        tokio::spawn(reresolve_loop(
            Arc::clone(shared),
            tunnel.target.clone(),
            Arc::clone(&target),
            period,
            resolver.clone(),
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
        resolver,
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
        }
        match target.resolve().await {
            Ok(addrs) if !addrs.is_empty() => resolved.replace(addrs),
            Ok(_) => shared.emit(EventKind::ResolveFailed {
                message: "no addresses".into(),
            }),
            Err(e) => shared.emit(EventKind::ResolveFailed {
                message: e.to_string(),
            }),
        }
    }
}

/// Backoff after accept() fails for lack of resources: the listening socket stays
/// readable, so retrying at once would spin; open connections keep being served.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(25);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the clients queued behind a reached connection limit are counted.
const WAITING_SAMPLE_EVERY: Duration = Duration::from_secs(1);

async fn accept_loop(
    shared: Arc<TunnelShared>,
    mut settings_rx: watch::Receiver<Arc<TunnelSettings>>,
    pool: Arc<KeyPairPool>,
    mut accepting: watch::Receiver<bool>,
    stop: CancellationToken,
    close_connections: CancellationToken,
    connections: TaskTracker,
) {
    shared.set_state(TunnelState::Starting);
    let mut current = settings_rx.borrow_and_update().clone();
    let mut listener: Option<Listener> = None;
    let mut generation: Option<Generation> = None;
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut limit_reported = false;
    loop {
        // (Re)build whatever the current settings need and is missing.
        if generation.is_none() || listener.is_none() {
            match start_generation(&shared, &current, &mut listener).await {
                Ok(g) => generation = Some(g),
                Err(e) => {
                    let reason = e.to_string();
                    shared.set_state(TunnelState::Failed {
                        reason: reason.clone(),
                    });
                    shared.fail(reason.clone(), EventKind::StartFailed { reason });
                    // Wait for new settings or a stop; open connections keep running.
                    tokio::select! {
                        () = stop.cancelled() => return,
                        changed = settings_rx.changed() => {
                            if changed.is_err() { return; }
                            current = settings_rx.borrow_and_update().clone();
                            continue;
                        }
                    }
                }
            }
        }
        let (Some(gen_now), Some(bound)) = (&generation, &listener) else {
            continue;
        };
        if !*accepting.borrow_and_update() {
            // Listening, not accepting yet: clients wait in the listen queue.
            let step = tokio::select! {
                () = stop.cancelled() => Step::Stop,
                changed = settings_rx.changed() => Step::update_or_stop(changed),
                changed = accepting.changed() => match changed {
                    Ok(()) => continue,
                    // The engine is gone.
                    Err(_) => Step::Stop,
                },
            };
            match step {
                Step::Update => {
                    apply_update(
                        &shared,
                        &mut current,
                        &settings_rx,
                        &mut generation,
                        &mut listener,
                    );
                    continue;
                }
                _ => return,
            }
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
                        changed = settings_rx.changed() => Step::update_or_stop(changed),
                        permit = wait_for_slot => Step::Slot(permit),
                    };
                    shared.stats.set_waiting_clients(0);
                    match step {
                        Step::Slot(permit) => permit,
                        Step::Update => {
                            apply_update(
                                &shared,
                                &mut current,
                                &settings_rx,
                                &mut generation,
                                &mut listener,
                            );
                            continue;
                        }
                        _ => return,
                    }
                }
            },
        };

        let step = tokio::select! {
            () = stop.cancelled() => Step::Stop,
            changed = settings_rx.changed() => Step::update_or_stop(changed),
            accepted = bound.accept() => Step::Accepted(accepted),
        };
        match step {
            Step::Accepted(Ok(stream)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let conn = Connection {
                    shared: Arc::clone(&shared),
                    settings: Arc::clone(&gen_now.settings),
                    target: Arc::clone(&gen_now.target),
                    bind: Arc::clone(&gen_now.bind),
                    pool: Arc::clone(&pool),
                    _permit: permit,
                };
                let close = close_connections.clone();
                // Boxed: the connection's future is several KB, which tokio would
                // otherwise copy through spawn and again when the task finishes.
                connections.spawn(Box::pin(conn.run(stream, close)));
            }
            Step::Accepted(Err(e)) if is_resource_exhaustion(&e) => {
                shared.repeated(
                    RepeatedProblem::AcceptFailed,
                    Some(format!("cannot accept connections: {e}")),
                    EventKind::AcceptFailed {
                        message: e.to_string(),
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
            Step::Accepted(Err(_)) | Step::Slot(_) => {}
            Step::Update => {
                apply_update(
                    &shared,
                    &mut current,
                    &settings_rx,
                    &mut generation,
                    &mut listener,
                );
            }
            Step::Stop => return,
        }
    }
}

/// What woke the accept loop.
enum Step {
    Stop,
    Update,
    Slot(Option<OwnedSemaphorePermit>),
    Accepted(std::io::Result<NetStream>),
}

impl Step {
    fn update_or_stop(changed: Result<(), watch::error::RecvError>) -> Step {
        match changed {
            Ok(()) => Step::Update,
            // The supervisor dropped this tunnel's settings channel: it is gone.
            Err(_) => Step::Stop,
        }
    }
}

async fn start_generation(
    shared: &Arc<TunnelShared>,
    settings: &Arc<TunnelSettings>,
    listener: &mut Option<Listener>,
) -> Result<Generation, StartError> {
    let generation = prepare(shared, Arc::clone(settings)).await?;
    if listener.is_none() {
        let bound = Listener::bind(&settings.definition.listen).await?;
        let address = bound.local_label();
        *listener = Some(bound);
        shared.set_state(TunnelState::Listening {
            address: address.clone(),
        });
        shared.emit(EventKind::Listening { address });
    }
    Ok(generation)
}

/// Takes new settings: a changed listen address rebinds; anything else applies to new
/// connections only. The next loop turn rebuilds what was dropped here.
fn apply_update(
    shared: &TunnelShared,
    current: &mut Arc<TunnelSettings>,
    settings_rx: &watch::Receiver<Arc<TunnelSettings>>,
    generation: &mut Option<Generation>,
    listener: &mut Option<Listener>,
) {
    let new = settings_rx.borrow().clone();
    if new.definition.listen != current.definition.listen {
        *listener = None;
    }
    if let Ok(mut name) = shared.name.lock() {
        name.clone_from(&new.definition.name);
    }
    *current = new;
    *generation = None;
    shared.emit(EventKind::Updated);
}

/// One accepted client and what it needs, for the life of the connection.
struct Connection {
    shared: Arc<TunnelShared>,
    settings: Arc<TunnelSettings>,
    target: Arc<ResolvedTarget>,
    bind: Arc<[SocketAddr]>,
    pool: Arc<KeyPairPool>,
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
        let peer = inbound.peer_label();
        let started = Instant::now();
        shared.stats.connection_opened();
        shared.emit_connection(EventKind::ConnectionOpened {
            conn,
            peer: peer.clone(),
        });
        let up = AtomicU64::new(0);
        let down = AtomicU64::new(0);
        let outcome = tokio::select! {
            outcome = self.serve(inbound, &up, &down) => outcome,
            () = close.cancelled() => Err(ConnFault::Closed),
        };
        shared.stats.connection_closed();
        let closed = |error: Option<String>| EventKind::ConnectionClosed {
            conn,
            peer: peer.clone(),
            duration: started.elapsed(),
            bytes_up: up.load(Ordering::Relaxed),
            bytes_down: down.load(Ordering::Relaxed),
            error,
        };
        match outcome {
            Ok(()) => shared.emit_connection(closed(None)),
            Err(ConnFault::Handshake(fault)) => {
                shared.handshake_failed(conn, peer.clone(), fault.cause(), fault.to_string());
            }
            Err(ConnFault::Target(fault)) => {
                shared.stats.target_failed();
                let message = fault.to_string();
                shared.repeated(
                    RepeatedProblem::TargetUnreachable,
                    Some(message.clone()),
                    EventKind::TargetUnreachable {
                        conn,
                        target: self.settings.definition.target.to_string(),
                        message,
                    },
                );
            }
            // A rejected packet needs the key or a place on a real client's path, so each
            // is told; a socket error (a reset) anyone who can connect can repeat.
            Err(ConnFault::Pump(fault @ PumpFault::Rejected(_))) => {
                shared.stats.data_rejected();
                shared.stats.set_last_error(fault.to_string());
                shared.emit(closed(Some(fault.to_string())));
            }
            Err(ConnFault::Pump(fault)) => shared.repeated(
                RepeatedProblem::ConnectionError,
                None,
                closed(Some(fault.to_string())),
            ),
            Err(ConnFault::Closed) => {
                shared.emit(closed(Some("closed because the tunnel stopped".into())));
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
            pool: &self.pool,
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
                (dialed.stream, dialed.codecs)
            }
            Mode::Decrypt => {
                let authenticated = authenticate(&mut inbound, &params, s.timeout)
                    .await
                    .map_err(ConnFault::Handshake)?;
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

    async fn connect(&self) -> Result<NetStream, ConnFault> {
        let def = &self.settings.definition;
        let addrs = self.target.current();
        Dialer::new(&def.target, def.bind.as_ref(), def.timeout)
            .with_resolved(&addrs, &self.bind)
            .connect()
            .await
            .map(|connected| connected.stream)
            .map_err(ConnFault::Target)
    }
}
