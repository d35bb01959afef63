//! A running tunnel: its listener and accept loop, the connection limit, target
//! re-resolution, one task per connection, and the counters and events they report.
//! New settings apply to new connections without dropping the open ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::Address;
use crate::audit::{AuditOutcome, AuditRecord};
use crate::definition::{Mode, TunnelSettings};
use crate::events::{EventKind, RepeatedProblem};
use crate::fault::{
    ConnectionFault, HandshakeFault, PumpFault, StartFault, TargetFault, TunnelFault,
};
use crate::health::Checker;
use crate::net::conn::{
    CLIENT_DOWN, CLIENT_UP, HandshakeParams, SERVER_DOWN, SERVER_UP, authenticate, open_pump,
    pump_connection, seal_pump,
};
use crate::net::dial::{DialFault, Dialer};
use crate::net::listener::{Listener, is_resource_exhaustion};
use crate::net::probe::answer_probe;
use crate::net::proxy::{ProxyFault, endpoints_of, read_header, strip_header};
use crate::net::resolve::{Resolve, ResolvedTarget};
use crate::net::reverse::{ReverseFault, Slot};
use crate::net::stream::{NetStream, Peer};
use crate::plan::Restart;
use crate::protocol::Role;
use crate::protocol::health::TargetReport;
use crate::protocol::tag::NonceTag;
use crate::proxy_header;
use tokio::io::AsyncWriteExt;

mod reverse;
mod shared;

#[cfg(test)]
pub(crate) use reverse::POOL_SIZE as REVERSE_POOL_SIZE;
use reverse::SlotPool;

pub use shared::TunnelState;
pub(crate) use shared::{EngineContext, TunnelShared};

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
    /// A reverse tunnel's pool.
    reverse: Option<ReverseEnd>,
    /// Stops the generation's background tasks (re-resolving, health checks, a reverse
    /// tunnel's pool).
    background: CancellationToken,
}

/// A reverse tunnel's end of the pool, built with each generation.
enum ReverseEnd {
    /// The reverse-in end's pooled connections, which its clients take.
    In(Arc<SlotPool>),
    /// The connections the reverse-out end's far end joined to a client; the accept loop
    /// takes them (once) as its source of connections.
    Out(Mutex<Option<mpsc::Receiver<Slot>>>),
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
    // A reverse-in end's target is where it listens, not an address it dials.
    let dials_target = tunnel.mode != Mode::ReverseIn;
    let target_addrs = match &tunnel.target {
        Address::Unix(_) => Vec::new(),
        _ if !dials_target => Vec::new(),
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
    let reverse = match tunnel.mode {
        Mode::Encrypt | Mode::Decrypt => None,
        Mode::ReverseIn => {
            let listener = Listener::bind_with(&tunnel.target, resolver)
                .await
                .map_err(StartFault::Listen)?;
            let pool = Arc::new(SlotPool::default());
            tokio::spawn(reverse::accept_slots(
                listener,
                Arc::clone(shared),
                Arc::clone(&settings),
                Arc::clone(&pool),
                background.clone(),
            ));
            Some(ReverseEnd::In(pool))
        }
        Mode::ReverseOut => {
            let (joined, sessions) = mpsc::channel(reverse::POOL_SIZE);
            tokio::spawn(reverse::keep_pool(
                Arc::clone(shared),
                Arc::clone(&settings),
                joined,
                background.clone(),
            ));
            Some(ReverseEnd::Out(Mutex::new(Some(sessions))))
        }
    };
    if let (Address::Host { .. }, Some(period), true) =
        (&tunnel.target, tunnel.reresolve, dials_target)
    {
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
        reverse,
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
    let mut network = shared.network_epoch.subscribe();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
            _ = network.changed() => {}
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

/// Serves one connection accepted elsewhere (by inetd, or a socket unit with
/// `Accept=yes`) as a tunnel with `settings` serves one it accepted.
pub(crate) async fn serve_accepted(
    shared: Arc<TunnelShared>,
    settings: Arc<TunnelSettings>,
    stream: NetStream,
) -> Result<(), StartFault> {
    let generation = prepare(&shared, Arc::clone(&settings)).await?;
    let connection = Connection {
        shared: Arc::clone(&shared),
        settings,
        target: Arc::clone(&generation.target),
        bind: Arc::clone(&generation.bind),
        reverse_in: None,
        _permit: None,
    };
    let peer = stream.peer();
    connection
        .run(Incoming::Stream(stream, peer), CancellationToken::new())
        .await;
    Ok(())
}

/// Backoff after accept() fails for lack of resources: the listening socket stays
/// readable, so retrying at once would spin; open connections keep being served.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(25);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the clients queued behind a reached connection limit are counted.
const WAITING_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Where a tunnel's connections come from: a listening socket, or (a reverse-out end)
/// the pooled connections its far end joined to a client.
enum Source {
    Listener(Listener),
    Joined(tokio::sync::Mutex<mpsc::Receiver<Slot>>),
}

/// A connection to serve.
enum Incoming {
    Stream(NetStream, Peer),
    /// Boxed: a joined connection carries its codecs and reader, over a kilobyte.
    Joined(Box<Slot>),
}

impl Incoming {
    fn peer(&self) -> Peer {
        match self {
            Incoming::Stream(_, peer) => *peer,
            Incoming::Joined(slot) => slot.stream.peer(),
        }
    }
}

impl Source {
    async fn accept(&self) -> std::io::Result<Incoming> {
        match self {
            Source::Listener(listener) => listener
                .accept()
                .await
                .map(|(stream, peer)| Incoming::Stream(stream, peer)),
            Source::Joined(joined) => match joined.lock().await.recv().await {
                Some(slot) => Ok(Incoming::Joined(Box::new(slot))),
                // The pool ends only with its generation, which the loop replaces.
                None => std::future::pending().await,
            },
        }
    }

    fn queued_connections(&self) -> Option<u64> {
        match self {
            Source::Listener(listener) => listener.queued_connections(),
            Source::Joined(_) => None,
        }
    }
}

/// What woke the accept loop.
enum Step {
    Stop,
    Update,
    Retry,
    Slot(Option<OwnedSemaphorePermit>),
    Accepted(std::io::Result<Incoming>),
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
    listener: Option<Source>,
    generation: Option<Generation>,
    /// The fault of the last failed start, so a retry that fails the same way is not
    /// published again (with -D that would be a line a second).
    last_failure: Option<StartFault>,
}

impl Accepting {
    /// Builds whatever the current settings need and is missing: resolves, binds.
    async fn start(&mut self) -> Result<(), StartFault> {
        let generation = prepare(&self.shared, Arc::clone(&self.wanted.settings)).await?;
        let listen = &self.wanted.settings.definition.listen;
        if let Some(ReverseEnd::Out(joined)) = &generation.reverse {
            let joined = joined.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(joined) = joined {
                self.listener = Some(Source::Joined(tokio::sync::Mutex::new(joined)));
            }
            self.shared.set_state(TunnelState::Dialing {
                far: listen.clone(),
            });
            self.shared.emit(EventKind::Dialing {
                far: listen.clone(),
            });
        } else if self.listener.is_none() {
            let bound = Listener::bind_with(listen, &*self.shared.context.resolver)
                .await
                .map_err(StartFault::Listen)?;
            let address = bound.local_address().unwrap_or_else(|| listen.clone());
            self.listener = Some(Source::Listener(bound));
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
        let (new, old) = (
            &wanted.settings.definition,
            &self.wanted.settings.definition,
        );
        // A reverse-out end's source belongs to the generation's pool.
        if new.listen != old.listen || new.mode != old.mode || new.mode == Mode::ReverseOut {
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
                    reverse_in: match &gen_now.reverse {
                        Some(ReverseEnd::In(pool)) => Some(Arc::clone(pool)),
                        _ => None,
                    },
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
    /// A reverse-in end's pooled connections, one of which each client takes.
    reverse_in: Option<Arc<SlotPool>>,
    /// Holds a connection slot until the connection ends.
    _permit: Option<OwnedSemaphorePermit>,
}

/// The plaintext that goes ahead of a client's data, and how much of it is the client's:
/// the PROXY header this tunnel sends, if it sends one, naming the client a load balancer's
/// header named when the tunnel accepts one (kept for the audit trail) or else the socket's
/// own addresses; then what the client sent after the load balancer's header.
async fn first_bytes(
    client: &mut NetStream,
    s: &crate::definition::TunnelDefinition,
    traffic: &Traffic,
) -> Result<(Vec<u8>, u64), ConnFault> {
    let (named, surplus) = if s.accept_proxy_protocol {
        let (endpoints, surplus) = read_header(client, s.timeout)
            .await
            .map_err(ConnFault::Proxy)?;
        if let Some((address, _)) = endpoints {
            let _ = traffic.client.set(address);
        }
        (Some(endpoints), surplus)
    } else {
        (None, Vec::new())
    };
    let surplus_len = surplus.len() as u64;
    let first = match s.proxy_protocol {
        Some(version) => {
            let endpoints = named.unwrap_or_else(|| endpoints_of(client));
            [proxy_header::encode(version, endpoints), surplus].concat()
        }
        None => surplus,
    };
    Ok((first, surplus_len))
}

/// What one connection moved, and the client address a PROXY header named, if any.
#[derive(Default)]
struct Traffic {
    up: AtomicU64,
    down: AtomicU64,
    client: std::sync::OnceLock<SocketAddr>,
}

impl Traffic {
    fn add_up(&self, stats: &crate::stats::TunnelStats, n: u64) {
        self.up.fetch_add(n, Ordering::Relaxed);
        stats.add_up(n);
    }
}

enum ConnFault {
    Proxy(ProxyFault),
    Handshake(HandshakeFault),
    Target(TargetFault),
    Pump(PumpFault),
    Reverse(ReverseFault),
    Closed,
}

impl Connection {
    async fn run(self, inbound: Incoming, close: CancellationToken) {
        let shared = &self.shared;
        let conn = shared.next_conn();
        let peer = inbound.peer();
        let started = Instant::now();
        shared.stats.connection_opened();
        shared.emit_connection(|| EventKind::ConnectionOpened { conn, peer });
        let traffic = Traffic::default();
        let outcome = tokio::select! {
            outcome = self.serve(inbound, &traffic) => outcome,
            () = close.cancelled() => Err(ConnFault::Closed),
        };
        shared.stats.connection_closed();
        let closed = |fault: Option<ConnectionFault>| EventKind::ConnectionClosed {
            conn,
            peer,
            duration: started.elapsed(),
            bytes_up: traffic.up.load(Ordering::Relaxed),
            bytes_down: traffic.down.load(Ordering::Relaxed),
            fault,
        };
        let outcome_word = match &outcome {
            Ok(()) => AuditOutcome::Ok,
            Err(ConnFault::Handshake(fault)) => AuditOutcome::HandshakeFailed(fault.cause()),
            Err(ConnFault::Target(_)) | Err(ConnFault::Reverse(ReverseFault::ServiceDown(_))) => {
                AuditOutcome::TargetUnreachable
            }
            Err(ConnFault::Reverse(ReverseFault::NoneReady(_))) => {
                AuditOutcome::NoReverseConnection
            }
            Err(ConnFault::Pump(PumpFault::Rejected(_))) => AuditOutcome::DataRejected,
            Err(ConnFault::Pump(_) | ConnFault::Reverse(_)) => AuditOutcome::Error,
            Err(ConnFault::Proxy(_)) => AuditOutcome::ProxyRefused,
            Err(ConnFault::Closed) => AuditOutcome::Stopped,
        };
        shared.audit(|| AuditRecord {
            ended: SystemTime::now(),
            tunnel: shared.name.clone(),
            peer,
            client: traffic.client.get().copied(),
            duration: started.elapsed(),
            bytes_up: traffic.up.load(Ordering::Relaxed),
            bytes_down: traffic.down.load(Ordering::Relaxed),
            outcome: outcome_word,
        });
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
            Err(ConnFault::Reverse(fault)) => self.reverse_failed(conn, peer, fault),
            Err(ConnFault::Proxy(fault)) => shared.repeated(
                RepeatedProblem::ConnectionError,
                Some(TunnelFault::Proxy(fault.clone())),
                closed(Some(ConnectionFault::Proxy(fault))),
            ),
            Err(ConnFault::Closed) => {
                shared.emit(closed(Some(ConnectionFault::TunnelStopped)));
            }
        }
    }

    fn reverse_failed(&self, conn: u64, peer: Peer, fault: ReverseFault) {
        let shared = &self.shared;
        let (problem, kind) = match fault {
            ReverseFault::NoneReady(waited) => {
                shared.stats.reverse_unserved();
                (
                    RepeatedProblem::NoReverseConnection,
                    EventKind::NoReverseConnection { conn, peer, waited },
                )
            }
            ReverseFault::ServiceDown(_) => {
                shared.stats.target_failed();
                (
                    RepeatedProblem::TargetUnreachable,
                    EventKind::ReverseRefused {
                        peer,
                        fault: fault.clone(),
                    },
                )
            }
            _ => (
                RepeatedProblem::ConnectionError,
                EventKind::ReverseRefused {
                    peer,
                    fault: fault.clone(),
                },
            ),
        };
        shared.repeated(problem, Some(TunnelFault::Reverse(fault)), kind);
    }

    /// Encrypt: target first, then the handshake with it (as spiped -e).
    /// Decrypt: the handshake first, and only an authenticated client gets a target
    /// connection (spiped -d connects at once; this keeps unauthenticated peers from
    /// reaching the service behind the tunnel at all). The target connect starts as soon
    /// as the client's signed DH value checks out, and runs while the shared secret is
    /// computed.
    async fn serve(&self, inbound: Incoming, traffic: &Traffic) -> Result<(), ConnFault> {
        match inbound {
            Incoming::Stream(client, _) if self.settings.definition.mode == Mode::ReverseIn => {
                self.serve_reverse_in(client, traffic).await
            }
            Incoming::Stream(inbound, _) => self.serve_forward(inbound, traffic).await,
            Incoming::Joined(slot) => self.serve_reverse_out(*slot, traffic).await,
        }
    }

    async fn serve_forward(
        &self,
        mut inbound: NetStream,
        traffic: &Traffic,
    ) -> Result<(), ConnFault> {
        let s = &self.settings.definition;
        let params = HandshakeParams {
            role: s.role(),
            key: &self.settings.key,
            forward_secrecy: s.forward_secrecy,
            key_agreement: s.key_agreement,
            pool: &self.shared.context.pool,
            tag: None,
            previous_key: self.settings.previous_key.as_ref(),
        };
        // What goes before the data, in plaintext: a PROXY header, and what a load
        // balancer's client sent after the one it wrote (`first_data` bytes of it).
        let mut first = Vec::new();
        let mut first_data = 0;
        let (outbound, codecs) = match s.mode {
            // Reverse ends take their connections in `serve`; a forward connection never
            // reaches here for them.
            Mode::ReverseIn | Mode::ReverseOut => return Err(ConnFault::Closed),
            Mode::Encrypt => {
                (first, first_data) = first_bytes(&mut inbound, s, traffic).await?;
                let addrs = self.target.current();
                let dialed = Dialer::new(&s.target, s.bind.as_ref(), s.timeout)
                    .with_resolved(&addrs, &self.bind)
                    .dial(&params)
                    .await
                    .map_err(|fault| match fault {
                        DialFault::Target(fault) => ConnFault::Target(fault),
                        DialFault::Handshake(fault) => ConnFault::Handshake(fault),
                    })?;
                self.shared.stats.handshake_completed(false);
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
                self.shared
                    .stats
                    .handshake_completed(authenticated.used_previous_key());
                match authenticated.nonce_tag() {
                    Some(NonceTag::HealthProbe) => {
                        let (sealer, _) = authenticated
                            .session_codecs()
                            .await
                            .map_err(ConnFault::Handshake)?;
                        let report = self.target_report().await;
                        answer_probe(&mut inbound, sealer, report, s.timeout).await;
                        return Ok(());
                    }
                    Some(NonceTag::ReverseSlot) => {
                        inbound.reset_on_close();
                        return Err(ConnFault::Reverse(ReverseFault::NotForward));
                    }
                    None => {}
                }
                // The session keys (on the blocking pool) and the target connect at once.
                // The keys first: `join!` polls in order, so the exponentiation is handed
                // off before the connect's system calls run, not after them.
                let (codecs, outbound) = tokio::join!(authenticated.session_codecs(), async {
                    self.connect().await.map_err(ConnFault::Target)
                });
                let codecs = codecs.map_err(ConnFault::Handshake)?;
                if let Some(version) = s.proxy_protocol {
                    first = proxy_header::encode(version, endpoints_of(&inbound));
                }
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
        let count_up = |n| traffic.add_up(stats, n);
        let count_down = |n| {
            traffic.down.fetch_add(n, Ordering::Relaxed);
            stats.add_down(n);
        };
        match s.mode {
            Mode::Decrypt if s.proxy_protocol.is_some() => {
                let (mut in_r, mut in_w) = inbound.into_split();
                let (mut out_r, mut out_w) = outbound.into_split();
                let (sealer, mut opener) = codecs;
                let to_target = async {
                    out_w.write_all(&first).await.map_err(|e| PumpFault::Io {
                        side: "target",
                        source: e.into(),
                    })?;
                    // The encrypting end's own header, if it sent one, goes no further.
                    let client = strip_header(&mut in_r, &mut opener, &mut out_w, count_up).await?;
                    if let Some(client) = client {
                        let _ = traffic.client.set(client);
                    }
                    open_pump(&mut in_r, &mut out_w, opener, SERVER_UP, count_up).await
                };
                let to_client = seal_pump(&mut out_r, &mut in_w, sealer, SERVER_DOWN, count_down);
                let result = tokio::try_join!(to_target, to_client);
                if result.is_err() {
                    in_w.reset_on_close();
                    out_w.reset_on_close();
                }
                result.map(|_| ()).map_err(ConnFault::Pump)
            }
            _ => {
                let (mut sealer, opener) = codecs;
                if !first.is_empty() {
                    let mut sealed = Vec::new();
                    sealer.seal_all(&first, &mut sealed);
                    let mut outbound = outbound;
                    outbound.write_all(&sealed).await.map_err(|e| {
                        ConnFault::Pump(PumpFault::Io {
                            side: "far end",
                            source: e.into(),
                        })
                    })?;
                    count_up(first_data);
                    return pump_connection(
                        s.role(),
                        inbound,
                        outbound,
                        (sealer, opener),
                        count_up,
                        count_down,
                    )
                    .await
                    .map_err(ConnFault::Pump);
                }
                pump_connection(
                    s.role(),
                    inbound,
                    outbound,
                    (sealer, opener),
                    count_up,
                    count_down,
                )
                .await
                .map_err(ConnFault::Pump)
            }
        }
    }

    /// A reverse-in end's client: a pooled connection from the reverse-out end (waiting
    /// up to the timeout for one), on which the far end has been told to connect its
    /// service; the client's data goes at once, the service's once the far end says it
    /// is connected.
    async fn serve_reverse_in(
        &self,
        client: NetStream,
        traffic: &Traffic,
    ) -> Result<(), ConnFault> {
        let s = &self.settings.definition;
        let Some(pool) = &self.reverse_in else {
            return Err(ConnFault::Closed);
        };
        let mut client = client;
        let (first, first_data) = first_bytes(&mut client, s, traffic).await?;
        let waiting = Instant::now();
        let Some(slot) = pool.take(s.timeout).await else {
            return Err(ConnFault::Reverse(ReverseFault::NoneReady(
                waiting.elapsed(),
            )));
        };
        client.tune(s.keepalive);
        let Slot {
            stream,
            sealer,
            mut opener,
            mut reader,
        } = slot;
        let (mut client_r, mut client_w) = client.into_split();
        let (mut far_r, mut far_w) = stream.into_split();
        let stats = &self.shared.stats;
        let mut sealer = sealer;
        if !first.is_empty() {
            let mut sealed = Vec::new();
            sealer.seal_all(&first, &mut sealed);
            far_w.write_all(&sealed).await.map_err(|e| {
                ConnFault::Pump(PumpFault::Io {
                    side: "far end",
                    source: e.into(),
                })
            })?;
            traffic.add_up(stats, first_data);
        }
        let sending = async {
            seal_pump(&mut client_r, &mut far_w, sealer, CLIENT_UP, |n| {
                traffic.up.fetch_add(n, Ordering::Relaxed);
                stats.add_up(n);
            })
            .await
            .map_err(ConnFault::Pump)
        };
        let receiving = async {
            reverse::await_ready(&mut far_r, &mut reader, &mut opener)
                .await
                .map_err(ConnFault::Reverse)?;
            open_pump(&mut far_r, &mut client_w, opener, CLIENT_DOWN, |n| {
                traffic.down.fetch_add(n, Ordering::Relaxed);
                stats.add_down(n);
            })
            .await
            .map_err(ConnFault::Pump)
        };
        let result = tokio::try_join!(sending, receiving);
        if result.is_err() {
            client_w.reset_on_close();
            far_w.reset_on_close();
        }
        result.map(|_| ())
    }

    /// A reverse-out end's connection the far end joined to a client: connect the
    /// service, say whether that worked, then pipe as a decrypting end does.
    async fn serve_reverse_out(&self, mut slot: Slot, traffic: &Traffic) -> Result<(), ConnFault> {
        let s = &self.settings.definition;
        let connected = self.connect().await;
        slot.send(reverse::service_answer(&connected))
            .await
            .map_err(ConnFault::Reverse)?;
        let service = connected.map_err(ConnFault::Target)?;
        service.tune(s.keepalive);
        let stats = &self.shared.stats;
        pump_connection(
            Role::Server,
            slot.stream,
            service,
            (slot.sealer, slot.opener),
            |n| {
                traffic.up.fetch_add(n, Ordering::Relaxed);
                stats.add_up(n);
            },
            |n| {
                traffic.down.fetch_add(n, Ordering::Relaxed);
                stats.add_down(n);
            },
        )
        .await
        .map_err(ConnFault::Pump)
    }

    /// Connects to the target, and records whether that worked for health probes.
    async fn connect(&self) -> Result<NetStream, TargetFault> {
        let def = &self.settings.definition;
        let addrs = self.target.current();
        let connected = Dialer::new(&def.target, def.bind.as_ref(), def.timeout)
            .with_resolved(&addrs, &self.bind)
            .connect()
            .await;
        let outcome = connected.as_ref().map(|_| ());
        self.shared.target_record.record(outcome, Instant::now());
        connected.map(|connected| connected.stream)
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
