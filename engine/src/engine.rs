//! The supervisor the desktop app and `sluiced` drive: it owns a tokio runtime on its
//! own threads, takes commands without ever blocking the caller, and publishes cheap
//! status snapshots, per-second rate history and a bounded stream of events.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};

use crate::events::{Event, SummaryDue, TunnelId};
use crate::net::dhpool::{DEFAULT_POOL_SIZE, KeyPairPool};
use crate::net::probe::{ProbeOutcome, ProbeRequest, probe};
use crate::stats::{CounterSnapshot, RateSample};
use crate::tunnel::{RunningTunnel, TunnelSettings, TunnelShared, TunnelState};

/// Events kept for a slow subscriber before the oldest are dropped.
pub const EVENT_CAPACITY: usize = 4096;

/// A tunnel's status at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct TunnelStatus {
    pub id: TunnelId,
    pub name: String,
    pub state: TunnelState,
    pub counters: CounterSnapshot,
    /// The connection limit in force (0 = unlimited).
    pub max_connections: u32,
}

/// Reads the engine's status snapshots; cheap to clone, never blocks on the engine.
#[derive(Clone)]
pub struct StatusReader {
    shared: Arc<EngineShared>,
}

impl StatusReader {
    /// Every tunnel the engine knows, in id order.
    pub fn statuses(&self) -> Vec<TunnelStatus> {
        let tunnels: Vec<_> = self
            .shared
            .tunnels
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default();
        tunnels.iter().map(|t| status_of(t)).collect()
    }
}

enum Command {
    Start(TunnelId, Box<TunnelSettings>),
    Stop {
        id: TunnelId,
        drain: bool,
    },
    /// Stop the tunnel and forget it; with `drain`, only once its connections ended.
    Remove {
        id: TunnelId,
        drain: bool,
    },
    Shutdown {
        drain: bool,
        done: std::sync::mpsc::Sender<()>,
    },
}

struct EngineShared {
    tunnels: RwLock<BTreeMap<TunnelId, Arc<TunnelShared>>>,
    events: broadcast::Sender<Event>,
    notify: Arc<dyn Fn() + Send + Sync>,
    /// Whether routine per-connection events are published (see
    /// [`Engine::set_connection_events`]).
    connection_events: Arc<AtomicBool>,
    /// Whether tunnels may accept connections (see [`Engine::hold_connections`]).
    accepting: watch::Sender<bool>,
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
    pool: Arc<KeyPairPool>,
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
        let mut builder = match threads {
            RuntimeThreads::PerCore => {
                let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(workers);
                builder
            }
            // Driven by the supervisor thread's `block_on` below.
            RuntimeThreads::One => tokio::runtime::Builder::new_current_thread(),
        };
        let runtime = builder.thread_name("sluice-engine").enable_all().build()?;
        let handle = runtime.handle().clone();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(EngineShared {
            tunnels: RwLock::new(BTreeMap::new()),
            events,
            notify: Arc::new(on_change),
            connection_events: Arc::new(AtomicBool::new(true)),
            accepting: watch::Sender::new(true),
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        let supervisor_shared = Arc::clone(&shared);
        let pool = Arc::new(KeyPairPool::new(DEFAULT_POOL_SIZE));
        let supervisor_pool = Arc::clone(&pool);
        let supervisor = std::thread::Builder::new()
            .name("sluice-supervisor".into())
            .spawn(move || {
                runtime.block_on(supervise(supervisor_shared, receiver, supervisor_pool));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Engine {
            commands,
            shared,
            runtime: handle,
            supervisor: Some(supervisor),
            pool,
        })
    }

    /// Starts a tunnel, or applies new settings to it if it is already running (open
    /// connections keep going with the settings they started with).
    pub fn start_tunnel(&self, id: TunnelId, settings: TunnelSettings) {
        self.send(Command::Start(id, Box::new(settings)));
    }

    /// Same as [`Engine::start_tunnel`]; named for the caller's intent.
    pub fn update_tunnel(&self, id: TunnelId, settings: TunnelSettings) {
        self.start_tunnel(id, settings);
    }

    /// Stops accepting and closes the tunnel's open connections.
    pub fn stop_tunnel(&self, id: TunnelId) {
        self.send(Command::Stop { id, drain: false });
    }

    /// Stops accepting; open connections finish on their own.
    pub fn drain_tunnel(&self, id: TunnelId) {
        self.send(Command::Stop { id, drain: true });
    }

    /// Stops the tunnel and forgets it (its counters and history go too).
    pub fn remove_tunnel(&self, id: TunnelId) {
        self.send(Command::Remove { id, drain: false });
    }

    /// Stops accepting, lets open connections finish on their own, then forgets the
    /// tunnel (a tunnel taken out of a reloaded config).
    pub fn retire_tunnel(&self, id: TunnelId) {
        self.send(Command::Remove { id, drain: true });
    }

    pub fn stop_all(&self) {
        for id in self.tunnel_ids() {
            self.stop_tunnel(id);
        }
    }

    fn send(&self, command: Command) {
        // Fails only after shutdown, when there is nothing left to command.
        let _ = self.commands.send(command);
    }

    pub fn tunnel_ids(&self) -> Vec<TunnelId> {
        self.shared
            .tunnels
            .read()
            .map(|t| t.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The status of one tunnel the engine knows (started at least once, not removed).
    pub fn status(&self, id: TunnelId) -> Option<TunnelStatus> {
        let tunnel = self.shared.tunnels.read().ok()?.get(&id).cloned()?;
        Some(status_of(&tunnel))
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
    pub fn rate_history(&self, id: TunnelId) -> Vec<RateSample> {
        self.shared
            .tunnels
            .read()
            .ok()
            .and_then(|t| t.get(&id).map(|t| t.stats.rate_history()))
            .unwrap_or_default()
    }

    /// Whether every connection's opening and clean closing is published as an event (on
    /// by default). Each event wakes every subscriber; a viewer that does not show them
    /// (sluiced without `--verbose`) turns them off to keep those wake-ups out of every
    /// connection's set-up. Problems are always published, and counters always kept.
    pub fn set_connection_events(&self, on: bool) {
        self.shared.connection_events.store(on, Ordering::Relaxed);
    }

    /// Tunnels bind and listen, but accept no connection until
    /// [`Engine::release_connections`]: clients wait in the listen queue. A daemon that
    /// drops privileges after binding calls this before starting any tunnel, so nothing is
    /// ever served with the privileges it had for binding (spiped drops them before it
    /// accepts anything).
    pub fn hold_connections(&self) {
        self.shared.accepting.send_replace(false);
    }

    /// Lets every tunnel accept connections (the default).
    pub fn release_connections(&self) {
        self.shared.accepting.send_replace(true);
    }

    /// A new subscription to events from now on. Bounded: a reader that falls more than
    /// [`EVENT_CAPACITY`] behind is told how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Tests a connection to an spiped server in the background; `done` gets the verdict
    /// (on an engine thread) within about twice the request's timeout.
    pub fn test_connection(
        &self,
        request: ProbeRequest,
        done: impl FnOnce(ProbeOutcome) + Send + 'static,
    ) {
        let pool = Arc::clone(&self.pool);
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
        id: tunnel.id,
        name: tunnel.name(),
        state: tunnel.state(),
        counters: tunnel.stats.snapshot(),
        max_connections: u32::try_from(
            tunnel
                .max_connections
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .unwrap_or(u32::MAX),
    }
}

async fn supervise(
    shared: Arc<EngineShared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    pool: Arc<KeyPairPool>,
) {
    let mut running: HashMap<TunnelId, RunningTunnel> = HashMap::new();
    let mut stopping = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                match command {
                    Command::Start(id, settings) => {
                        if let Some(tunnel) = running.get(&id) {
                            tunnel.update(*settings);
                            continue;
                        }
                        let tunnel = tunnel_shared(&shared, id, &settings.definition.name);
                        running.insert(id, RunningTunnel::start(tunnel, *settings, Arc::clone(&pool), shared.accepting.subscribe()));
                    }
                    Command::Stop { id, drain } => {
                        if let Some(tunnel) = running.remove(&id) {
                            stop(&shared, &mut stopping, id, tunnel, drain, Afterwards::Keep).await;
                        }
                    }
                    Command::Remove { id, drain } => {
                        match running.remove(&id) {
                            Some(tunnel) => stop(&shared, &mut stopping, id, tunnel, drain, Afterwards::Forget).await,
                            None => forget(&shared, id),
                        }
                    }
                    Command::Shutdown { drain, done } => {
                        for (id, tunnel) in running.drain() {
                            stop(&shared, &mut stopping, id, tunnel, drain, Afterwards::Keep).await;
                        }
                        while stopping.join_next().await.is_some() {}
                        let _ = done.send(());
                        return;
                    }
                }
            }
            _ = tick.tick() => {
                let now = SystemTime::now();
                let monotonic_now = Instant::now();
                let tunnels: Vec<_> = shared.tunnels.read().map(|t| t.values().cloned().collect()).unwrap_or_default();
                let mut changed = false;
                for tunnel in tunnels {
                    changed |= tunnel.stats.sample_rates(now);
                    // Problems counted in the last minute, even if none follow.
                    tunnel.publish_summaries(monotonic_now, SummaryDue::WhenTheWindowEnds);
                }
                if changed {
                    (shared.notify)();
                }
            }
            Some(_) = stopping.join_next(), if !stopping.is_empty() => {}
        }
    }
}

fn tunnel_shared(shared: &EngineShared, id: TunnelId, name: &str) -> Arc<TunnelShared> {
    let Ok(mut tunnels) = shared.tunnels.write() else {
        return Arc::new(TunnelShared::new(
            id,
            name,
            shared.events.clone(),
            Arc::clone(&shared.notify),
            Arc::clone(&shared.connection_events),
        ));
    };
    let tunnel = tunnels.entry(id).or_insert_with(|| {
        Arc::new(TunnelShared::new(
            id,
            name,
            shared.events.clone(),
            Arc::clone(&shared.notify),
            Arc::clone(&shared.connection_events),
        ))
    });
    if let Ok(mut current) = tunnel.name.lock() {
        name.clone_into(&mut current);
    }
    Arc::clone(tunnel)
}

fn forget(shared: &EngineShared, id: TunnelId) {
    if let Ok(mut tunnels) = shared.tunnels.write() {
        tunnels.remove(&id);
    }
    (shared.notify)();
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
/// the connections finish (`drain`) or closes them, in the background.
async fn stop(
    shared: &Arc<EngineShared>,
    stopping: &mut tokio::task::JoinSet<()>,
    id: TunnelId,
    mut tunnel: RunningTunnel,
    drain: bool,
    afterwards: Afterwards,
) {
    tunnel.close_listener().await;
    let Some(tunnel_shared) = shared.tunnels.read().ok().and_then(|t| t.get(&id).cloned()) else {
        return;
    };
    let shared = Arc::clone(shared);
    stopping.spawn(async move {
        tunnel.finish(&tunnel_shared, drain).await;
        // Its connections are over: whatever failures were counted and not yet summed up
        // go out now rather than a minute later (or never, when the engine shuts down).
        tunnel_shared.publish_summaries(Instant::now(), SummaryDue::Now);
        if afterwards == Afterwards::Forget {
            forget(&shared, id);
        }
    });
}
