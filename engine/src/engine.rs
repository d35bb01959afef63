//! The supervisor the desktop app and `sluiced` drive: it owns a tokio runtime on its
//! own threads, takes a declared set of tunnels ([`Engine::apply`]) and carries out the
//! plan that gets there without ever blocking the caller, and publishes cheap status
//! snapshots, per-second rate history and a bounded stream of events.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};

use crate::audit::AuditRecord;
use crate::events::{Event, SummaryDue};
use crate::health::{CheckSample, Health};
use crate::net::dhpool::{DEFAULT_POOL_SIZE, KeyPairPool};
use crate::net::probe::{ProbeOutcome, ProbeRequest, probe};
use crate::net::resolve::{Resolver, SystemResolver};
use crate::plan::{Action, ApplyError, Desired, DesiredTunnel, Ending, Known, Plan, Restart};
use crate::stats::{CounterSnapshot, RateSample};
use crate::tunnel::{EngineContext, RunningTunnel, TunnelShared, TunnelState, Wanted};

/// Events kept for a slow subscriber before the oldest are dropped.
pub const EVENT_CAPACITY: usize = 4096;

/// A tunnel's status at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct TunnelStatus {
    pub name: String,
    pub state: TunnelState,
    pub counters: CounterSnapshot,
    /// The connection limit in force (0 = unlimited).
    pub max_connections: u32,
    /// What the checks know of the far end (an encrypting tunnel's).
    pub health: Health,
    /// The handshake time of the last check (or real connection) that reached the far
    /// end; kept while it is down.
    pub last_round_trip: Option<Duration>,
}

/// Which incarnation of a tunnel: a tunnel removed while its connections drain and a
/// new one of the same name are two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TunnelId(u64);

/// Reads the engine's status snapshots; cheap to clone, never blocks on the engine.
#[derive(Clone)]
pub struct StatusReader {
    shared: Arc<EngineShared>,
}

impl StatusReader {
    /// Every tunnel the engine has started and not yet forgotten (including tunnels taken
    /// out of the declared set whose connections are still finishing), oldest first.
    pub fn statuses(&self) -> Vec<TunnelStatus> {
        self.shared.tunnels().iter().map(|t| status_of(t)).collect()
    }
}

/// Audit records kept for a slow reader.
pub const AUDIT_CAPACITY: usize = 16_384;

/// The engine's audit records ([`Engine::audit_trail`]).
pub struct AuditTrail {
    receiver: mpsc::Receiver<AuditRecord>,
    shared: Arc<EngineShared>,
}

impl AuditTrail {
    /// The next record; `None` once the engine is gone.
    pub async fn next(&mut self) -> Option<AuditRecord> {
        self.receiver.recv().await
    }

    /// A record if one is waiting.
    pub fn try_next(&mut self) -> Option<AuditRecord> {
        self.receiver.try_recv().ok()
    }

    /// How many records were dropped so far because this reader fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared.context.audit_dropped.load(Ordering::Relaxed)
    }
}

/// Events the reader missed because it fell more than [`EVENT_CAPACITY`] behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missed(pub u64);

/// The engine's events from the moment of subscribing. Bounded: a reader that falls
/// behind loses the oldest and is told how many ([`Missed`]).
pub struct EventStream {
    receiver: broadcast::Receiver<Event>,
}

impl EventStream {
    /// The next event, waiting for it; `None` once the engine is gone.
    pub async fn next(&mut self) -> Option<Result<Event, Missed>> {
        match self.receiver.recv().await {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(Missed(n))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is waiting; `None` when there is none (or the engine is gone).
    pub fn try_next(&mut self) -> Option<Result<Event, Missed>> {
        match self.receiver.try_recv() {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(Missed(n))),
            Err(_) => None,
        }
    }
}

enum Command {
    Start {
        id: TunnelId,
        tunnel: Arc<TunnelShared>,
        wanted: Wanted,
    },
    Update {
        id: TunnelId,
        wanted: Wanted,
    },
    Stop {
        id: TunnelId,
        ending: Ending,
    },
    /// Stop the tunnel and forget it once its connections are over.
    Retire {
        id: TunnelId,
        ending: Ending,
    },
    Shutdown {
        drain: bool,
        done: std::sync::mpsc::Sender<()>,
    },
}

struct EngineShared {
    tunnels: RwLock<BTreeMap<TunnelId, Arc<TunnelShared>>>,
    context: Arc<EngineContext>,
}

impl EngineShared {
    fn tunnels(&self) -> Vec<Arc<TunnelShared>> {
        self.tunnels
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    fn network_changed(&self) {
        for tunnel in self.tunnels() {
            tunnel.network_changed();
        }
    }
}

/// More suspended time than this between two ticks means the machine slept and woke.
const WOKE_AFTER: Duration = Duration::from_secs(2);

/// A tunnel of the declared set, as the handle last arranged it.
struct Declared {
    id: TunnelId,
    desired: DesiredTunnel,
    /// Started (and not stopped since) by this handle.
    running: bool,
}

/// How the engine's runtime spreads its tasks over threads. Either way the modular
/// exponentiations run off the runtime's threads (the DH pool's thread and tokio's
/// blocking pool), so a connection's handshake never stalls the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeThreads {
    /// One worker per core (the app's choice: its probes and tunnels never queue behind
    /// one busy thread).
    PerCore,
    /// Every connection on the engine's one thread: no cross-thread hand-off or wake-up
    /// per message (a daemon's choice; docs/PERFORMANCE.md, "Second wave", change 2).
    One,
}

/// Handle on the engine. Every method returns at once; work happens on the engine's
/// threads. Dropping the handle closes all tunnels.
pub struct Engine {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<EngineShared>,
    runtime: tokio::runtime::Handle,
    supervisor: Option<std::thread::JoinHandle<()>>,
    declared: Mutex<BTreeMap<String, Declared>>,
    next_id: AtomicU64,
}

impl Engine {
    /// Starts the engine's runtime. `on_change` is called (from engine threads) whenever
    /// something a viewer shows has changed: an event, a state change, a rate sample
    /// with traffic in it. It must be cheap and must not block.
    pub fn start(on_change: impl Fn() + Send + Sync + 'static) -> io::Result<Engine> {
        Engine::start_with(RuntimeThreads::PerCore, on_change)
    }

    /// [`Engine::start`], with the runtime's threads chosen by the caller.
    pub fn start_with(
        threads: RuntimeThreads,
        on_change: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<Engine> {
        Engine::start_with_resolver(threads, Arc::new(SystemResolver), on_change)
    }

    /// [`Engine::start_with`], with host names looked up by `resolver` (tests give one
    /// that never answers).
    pub(crate) fn start_with_resolver(
        threads: RuntimeThreads,
        resolver: Arc<dyn Resolver>,
        on_change: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<Engine> {
        let builder = match threads {
            RuntimeThreads::PerCore => {
                let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(workers);
                builder
            }
            // Driven by the supervisor thread's `block_on` below.
            RuntimeThreads::One => tokio::runtime::Builder::new_current_thread(),
        };
        Engine::start_on(builder, resolver, on_change)
    }

    fn start_on(
        mut builder: tokio::runtime::Builder,
        resolver: Arc<dyn Resolver>,
        on_change: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<Engine> {
        let runtime = builder.thread_name("sluice-engine").enable_all().build()?;
        let handle = runtime.handle().clone();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(EngineShared {
            tunnels: RwLock::new(BTreeMap::new()),
            context: Arc::new(EngineContext {
                events,
                notify: Arc::new(on_change),
                connection_events: AtomicBool::new(true),
                accepting: watch::Sender::new(true),
                resolver,
                pool: Arc::new(KeyPairPool::new(DEFAULT_POOL_SIZE)),
                audit: std::sync::OnceLock::new(),
                audit_dropped: AtomicU64::new(0),
            }),
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        let supervisor_shared = Arc::clone(&shared);
        let supervisor = std::thread::Builder::new()
            .name("sluice-supervisor".into())
            .spawn(move || {
                runtime.block_on(supervise(supervisor_shared, receiver));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Engine {
            commands,
            shared,
            runtime: handle,
            supervisor: Some(supervisor),
            declared: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// An engine on paused time (tokio's test clock, which runs ahead whenever the engine
    /// idles), for tests of what takes minutes in real time.
    #[cfg(test)]
    fn start_paused(resolver: Arc<dyn Resolver>) -> io::Result<Engine> {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.start_paused(true);
        Engine::start_on(builder, resolver, || {})
    }

    /// Makes the engine run `desired`: tunnels it did not know start (or are kept,
    /// stopped), tunnels whose settings changed take them live (open connections keep
    /// the old ones), tunnels no longer wanted running stop, tunnels not in the set stop
    /// and are forgotten, and the rest, with their connections, are not touched. Stopping
    /// tunnels' connections end as `desired.ending` says. Returns what it does; the work
    /// itself happens on the engine's threads.
    pub fn apply(&self, desired: Desired) -> Result<Plan, ApplyError> {
        let mut declared = self.declared.lock().unwrap_or_else(PoisonError::into_inner);
        let known: Vec<Known<'_>> = declared
            .iter()
            .map(|(name, d)| Known {
                name,
                settings: &d.desired.settings,
                restart: d.desired.restart,
                active: d.running && self.still_trying(d),
            })
            .collect();
        let plan = crate::plan::plan(&known, &desired.tunnels)?;
        drop(known);
        let ending = desired.ending;
        for name in &plan.retired {
            if let Some(gone) = declared.remove(name) {
                self.send(Command::Retire {
                    id: gone.id,
                    ending,
                });
            }
        }
        for (tunnel, action) in desired.tunnels.into_iter().zip(&plan.actions) {
            let name = tunnel.settings.definition.name.clone();
            let before = declared.get(&name);
            let id = before.map_or_else(
                || TunnelId(self.next_id.fetch_add(1, Ordering::Relaxed)),
                |d| d.id,
            );
            let wanted = Wanted {
                settings: Arc::new(tunnel.settings.clone()),
                restart: tunnel.restart,
            };
            let running = match action {
                Action::Start => {
                    let shared = self.tunnel_shared(id, &name);
                    // At once, so the caller's next look sees it starting.
                    shared.set_state(TunnelState::Starting);
                    self.send(Command::Start {
                        id,
                        tunnel: shared,
                        wanted,
                    });
                    true
                }
                Action::Update => {
                    self.send(Command::Update { id, wanted });
                    true
                }
                Action::Stop => {
                    self.send(Command::Stop { id, ending });
                    false
                }
                Action::Keep => before.is_some_and(|d| d.running) && tunnel.run,
            };
            declared.insert(
                name,
                Declared {
                    id,
                    desired: tunnel,
                    running,
                },
            );
        }
        Ok(plan)
    }

    /// Whether a tunnel this handle started still runs or retries: one that failed to
    /// start and does not retry counts as stopped, so applying it again starts it.
    fn still_trying(&self, declared: &Declared) -> bool {
        let failed = self
            .shared
            .tunnels
            .read()
            .ok()
            .and_then(|t| t.get(&declared.id).map(|t| t.state()))
            .is_some_and(|state| matches!(state, TunnelState::Failed(_)));
        !failed || declared.desired.restart != Restart::Never
    }

    /// The tunnel's shared state, made on its first start.
    fn tunnel_shared(&self, id: TunnelId, name: &str) -> Arc<TunnelShared> {
        let make = || Arc::new(TunnelShared::new(name, Arc::clone(&self.shared.context)));
        let Ok(mut tunnels) = self.shared.tunnels.write() else {
            return make();
        };
        Arc::clone(tunnels.entry(id).or_insert_with(make))
    }

    fn send(&self, command: Command) {
        // Fails only after shutdown, when there is nothing left to command.
        let _ = self.commands.send(command);
    }

    /// The status of a tunnel of the declared set, if it has been started.
    pub fn status(&self, name: &str) -> Option<TunnelStatus> {
        self.declared_tunnel(name).map(|t| status_of(&t))
    }

    fn declared_tunnel(&self, name: &str) -> Option<Arc<TunnelShared>> {
        let id = self
            .declared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)?
            .id;
        self.shared.tunnels.read().ok()?.get(&id).cloned()
    }

    pub fn statuses(&self) -> Vec<TunnelStatus> {
        self.status_reader().statuses()
    }

    /// A handle that reads status snapshots from any thread, for as long as it is kept
    /// (a metrics endpoint serving while the owner of the engine waits for signals).
    pub fn status_reader(&self) -> StatusReader {
        StatusReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Bytes per second each way, one sample per second, oldest first.
    pub fn rate_history(&self, name: &str) -> Vec<RateSample> {
        self.declared_tunnel(name)
            .map(|t| t.stats.rate_history())
            .unwrap_or_default()
    }

    /// The far end's health checks, oldest first: when, and each one's handshake time
    /// (`None`: it failed). Real connections' handshakes count too, one per few seconds.
    pub fn check_history(&self, name: &str) -> Vec<CheckSample> {
        self.declared_tunnel(name)
            .map(|t| t.health.history())
            .unwrap_or_default()
    }

    /// Checks a tunnel's far end at once (an encrypting tunnel with checks on; otherwise
    /// nothing happens). Checks otherwise begin an interval after the tunnel starts.
    pub fn check_now(&self, name: &str) {
        if let Some(tunnel) = self.declared_tunnel(name) {
            tunnel.health.check_now();
        }
    }

    /// Tells the engine the machine's network changed (an address or a route came or
    /// went) or it woke from sleep: every running tunnel resolves its target again and
    /// checks its far end at once. The engine watches for both itself where the platform
    /// allows ([`crate::platform::watch_network`]); this is for what it cannot see.
    pub fn network_changed(&self) {
        self.shared.network_changed();
    }

    /// Whether every connection's opening and clean closing is published as an event (on
    /// by default). Each event wakes every subscriber; a viewer that does not show them
    /// (sluiced without `--verbose`) turns them off to keep those wake-ups out of every
    /// connection's set-up. Problems are always published, and counters always kept.
    pub fn set_connection_events(&self, on: bool) {
        self.shared
            .context
            .connection_events
            .store(on, Ordering::Relaxed);
    }

    /// Tunnels bind and listen, but accept no connection until
    /// [`Engine::release_connections`]: clients wait in the listen queue. A daemon that
    /// drops privileges after binding calls this before starting any tunnel, so nothing is
    /// ever served with the privileges it had for binding (spiped drops them before it
    /// accepts anything).
    pub fn hold_connections(&self) {
        self.shared.context.accepting.send_replace(false);
    }

    /// Lets every tunnel accept connections (the default).
    pub fn release_connections(&self) {
        self.shared.context.accepting.send_replace(true);
    }

    /// The audit trail: one record per connection when it ends, unthrottled, from now on.
    /// Only the first call gets it (`None` after). A reader that falls more than
    /// [`AUDIT_CAPACITY`] records behind loses the newest, counted in
    /// [`AuditTrail::dropped`].
    pub fn audit_trail(&self) -> Option<AuditTrail> {
        let (sender, receiver) = mpsc::channel(AUDIT_CAPACITY);
        self.shared.context.audit.set(sender).ok()?;
        Some(AuditTrail {
            receiver,
            shared: Arc::clone(&self.shared),
        })
    }

    /// A new subscription to events from now on.
    pub fn subscribe(&self) -> EventStream {
        EventStream {
            receiver: self.shared.context.events.subscribe(),
        }
    }

    /// Tests a connection to an spiped server in the background; `done` gets the verdict
    /// (on an engine thread) within about twice the request's timeout.
    pub fn test_connection(
        &self,
        request: ProbeRequest,
        done: impl FnOnce(ProbeOutcome) + Send + 'static,
    ) {
        let pool = Arc::clone(&self.shared.context.pool);
        self.runtime.spawn(async move {
            done(probe(&request, &pool).await);
        });
    }

    /// The engine's runtime, for callers that want to await alongside it.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Stops every listener at once, then waits for open connections: until they end by
    /// themselves if `drain`, else after closing them. Blocks the calling thread.
    pub fn shutdown(mut self, drain: bool) {
        self.shutdown_inner(drain);
    }

    fn shutdown_inner(&mut self, drain: bool) {
        let Some(supervisor) = self.supervisor.take() else {
            return;
        };
        let (done, finished) = std::sync::mpsc::channel();
        if self
            .commands
            .send(Command::Shutdown { drain, done })
            .is_ok()
        {
            let _ = finished.recv();
        }
        let _ = supervisor.join();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown_inner(false);
    }
}

fn status_of(tunnel: &TunnelShared) -> TunnelStatus {
    TunnelStatus {
        name: tunnel.name.clone(),
        state: tunnel.state(),
        counters: tunnel.stats.snapshot(),
        max_connections: u32::try_from(tunnel.max_connections.load(Ordering::Relaxed))
            .unwrap_or(u32::MAX),
        health: tunnel.health.health(),
        last_round_trip: tunnel.health.last_round_trip(),
    }
}

async fn supervise(shared: Arc<EngineShared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut running: HashMap<TunnelId, RunningTunnel> = HashMap::new();
    let mut stopping = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut suspended = crate::platform::suspended_time();
    // Where the platform cannot watch the network, Engine::network_changed still works.
    let watcher_shared = Arc::clone(&shared);
    let network_watch = tokio::spawn(async move {
        let _ = crate::platform::watch_network(|| watcher_shared.network_changed()).await;
    });
    let _stop_watching = AbortOnDrop(network_watch);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                match command {
                    Command::Start { id, tunnel, wanted } => match running.get(&id) {
                        // Failed for good, or a start already on its way: try again.
                        Some(current) => current.update(wanted),
                        None => {
                            running.insert(id, RunningTunnel::start(tunnel, wanted));
                        }
                    },
                    Command::Update { id, wanted } => {
                        if let Some(tunnel) = running.get(&id) {
                            tunnel.update(wanted);
                        }
                    }
                    Command::Stop { id, ending } => {
                        if let Some(tunnel) = running.remove(&id) {
                            stop(&shared, &mut stopping, id, tunnel, ending, Afterwards::Keep).await;
                        }
                    }
                    Command::Retire { id, ending } => match running.remove(&id) {
                        Some(tunnel) => stop(&shared, &mut stopping, id, tunnel, ending, Afterwards::Forget).await,
                        None => forget(&shared, id),
                    },
                    Command::Shutdown { drain, done } => {
                        let ending = if drain { Ending::Drain } else { Ending::Close };
                        for (id, tunnel) in running.drain() {
                            stop(&shared, &mut stopping, id, tunnel, ending, Afterwards::Keep).await;
                        }
                        while stopping.join_next().await.is_some() {}
                        let _ = done.send(());
                        return;
                    }
                }
            }
            _ = tick.tick() => {
                let suspended_now = crate::platform::suspended_time();
                if let (Some(before), Some(now)) = (suspended, suspended_now)
                    && now.saturating_sub(before) > WOKE_AFTER
                {
                    shared.network_changed();
                }
                suspended = suspended_now;
                let now = SystemTime::now();
                let monotonic_now = Instant::now();
                let tunnels = shared.tunnels();
                let mut changed = false;
                for tunnel in tunnels {
                    changed |= tunnel.stats.sample_rates(now);
                    // Problems counted in the last minute, even if none follow.
                    tunnel.publish_summaries(monotonic_now, SummaryDue::WhenTheWindowEnds);
                }
                if changed {
                    (shared.context.notify)();
                }
            }
            Some(_) = stopping.join_next(), if !stopping.is_empty() => {}
        }
    }
}

/// Ends a background task when the supervisor ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn forget(shared: &EngineShared, id: TunnelId) {
    if let Ok(mut tunnels) = shared.tunnels.write() {
        tunnels.remove(&id);
    }
    (shared.context.notify)();
}

/// What becomes of a stopped tunnel's status once its connections are over.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Afterwards {
    /// Kept (stopped, with its counters), to be started again.
    Keep,
    /// Forgotten, counters and history too.
    Forget,
}

/// Closes the listener now (so a restart can bind the same address at once), then lets
/// the connections finish (`Ending::Drain`) or closes them, in the background.
async fn stop(
    shared: &Arc<EngineShared>,
    stopping: &mut tokio::task::JoinSet<()>,
    id: TunnelId,
    mut tunnel: RunningTunnel,
    ending: Ending,
    afterwards: Afterwards,
) {
    tunnel.close_listener().await;
    let Some(tunnel_shared) = shared.tunnels.read().ok().and_then(|t| t.get(&id).cloned()) else {
        return;
    };
    let shared = Arc::clone(shared);
    stopping.spawn(async move {
        tunnel.finish(&tunnel_shared, ending == Ending::Drain).await;
        // Its connections are over: whatever problems were counted and not yet summed up
        // go out now rather than a minute later (or never, when the engine shuts down).
        tunnel_shared.publish_summaries(Instant::now(), SummaryDue::Now);
        if afterwards == Afterwards::Forget {
            forget(&shared, id);
        }
    });
}

#[cfg(test)]
mod tests;
