//! Reverse tunnels, supervised (docs/REVERSE.md): the reverse-in end's pool of the
//! connections its reverse-out end dialled in, each idle in its own task until a client
//! takes it; and the reverse-out end's upkeep of that pool: dialling, keep-alives, a
//! capped backoff while the far end cannot be reached. `net/reverse.rs` speaks on each
//! connection; once joined to a client, a connection runs as any other (`super`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::TunnelShared;
use crate::audit::{AuditOutcome, AuditRecord};
use crate::definition::TunnelSettings;
use crate::events::{EventKind, RepeatedProblem};
use crate::fault::TunnelFault;
use crate::health::HealthFault;
use crate::net::conn::{HandshakeParams, authenticate};
use crate::net::dial::{DialFault, Dialer};
use crate::net::listener::{Listener, is_resource_exhaustion};
use crate::net::reverse::{ReverseFault, Slot};
use crate::net::stream::NetStream;
use crate::protocol::Role;
use crate::protocol::reverse::Control;
use crate::protocol::tag::NonceTag;
use crate::stats::TunnelStats;

/// Ready connections a reverse-out end keeps at its far end.
pub(crate) const POOL_SIZE: usize = 4;
/// A keep-alive on each idle pooled connection this often: well under the few minutes
/// after which NATs and firewalls forget an idle TCP connection.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(30);
/// A reverse-in end drops a pooled connection it has not heard from for this long (three
/// keep-alives missed).
const SILENT_LIMIT: Duration = Duration::from_secs(100);
/// Connections on a reverse-in end's port still in their handshake, at most: strangers
/// cannot make it hold more.
const MAX_PENDING: usize = 32;
/// Pooled connections a reverse-in end holds, at most, whoever dialled them.
const MAX_READY: usize = 32;
/// A reverse-in end with no pooled connection for this long reports its far end down.
const NOT_CONNECTED_AFTER: Duration = Duration::from_secs(10);
/// The reverse-out end's pause after a failed dial: doubling from the first, capped.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Counts a connection as ready in the tunnel's counters while it lives.
struct ReadyGauge<'a>(&'a TunnelStats);

impl<'a> ReadyGauge<'a> {
    fn new(stats: &'a TunnelStats) -> Self {
        stats.reverse_ready_changed(true);
        ReadyGauge(stats)
    }
}

impl Drop for ReadyGauge<'_> {
    fn drop(&mut self) {
        self.0.reverse_ready_changed(false);
    }
}

// ---------------------------------------------------------------------------------------
// The reverse-in end

/// How a client asks an idle connection's task for it: the task answers with the
/// connection once it has told the far end a client is here.
type Handover = oneshot::Sender<oneshot::Sender<Slot>>;

/// The reverse-in end's idle pooled connections, oldest first.
#[derive(Default)]
pub(crate) struct SlotPool {
    idle: Mutex<VecDeque<Handover>>,
    arrived: Notify,
}

impl SlotPool {
    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Handover>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Connections whose task ended (the far end went away) are not ready.
        idle.retain(|handover| !handover.is_closed());
        idle
    }

    /// How many connections are ready now.
    pub fn ready(&self) -> usize {
        self.idle().len()
    }

    /// Pools a connection; false when the pool is full.
    fn add(&self, handover: Handover) -> bool {
        let mut idle = self.idle();
        if idle.len() >= MAX_READY {
            return false;
        }
        idle.push_back(handover);
        drop(idle);
        self.arrived.notify_one();
        true
    }

    /// A ready connection, on which the far end has been told a client is here, waiting
    /// up to `wait` for one; `None` if none came in time.
    pub async fn take(&self, wait: Duration) -> Option<Slot> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so an arrival in between is not missed.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            loop {
                let Some(handover) = self.idle().pop_front() else {
                    break;
                };
                let (reply, answer) = oneshot::channel();
                if handover.send(reply).is_err() {
                    continue;
                }
                match tokio::time::timeout_at(deadline, answer).await {
                    Ok(Ok(slot)) => return Some(slot),
                    // That connection died as it was taken: the next one.
                    Ok(Err(_)) => {}
                    Err(_) => return None,
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}

/// Accepts the reverse-out end's connections on `listener` and pools them, until `stop`;
/// meanwhile tells the tunnel's health whether the far end is connected.
pub(crate) async fn accept_slots(
    listener: Listener,
    shared: Arc<TunnelShared>,
    settings: Arc<TunnelSettings>,
    pool: Arc<SlotPool>,
    stop: CancellationToken,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    let slots = TaskTracker::new();
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    let mut empty_since = Some(Instant::now());
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every_second.tick() => {
                let connected = pool.ready() > 0 || shared.stats.snapshot().active_connections > 0;
                match (connected, empty_since) {
                    (true, _) => empty_since = None,
                    (false, None) => empty_since = Some(Instant::now()),
                    (false, Some(since)) if since.elapsed() >= NOT_CONNECTED_AFTER => {
                        let fault = HealthFault::NotConnected(since.elapsed());
                        let change = shared.health.unreached(fault, std::time::Instant::now());
                        shared.health_changed(change);
                    }
                    (false, Some(_)) => {}
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Too many handshakes at once: this one is dropped unanswered.
                    let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
                        continue;
                    };
                    slots.spawn(pool_slot(
                        Arc::clone(&shared),
                        Arc::clone(&settings),
                        Arc::clone(&pool),
                        stream,
                        peer,
                        permit,
                        stop.clone(),
                    ));
                }
                Err(e) if is_resource_exhaustion(&e) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {}
            },
        }
    }
    slots.close();
    slots.wait().await;
}

/// One connection on the reverse-in end's port: the handshake (a server's), the
/// reverse-slot tag, then pooled and idle until a client takes it.
async fn pool_slot(
    shared: Arc<TunnelShared>,
    settings: Arc<TunnelSettings>,
    pool: Arc<SlotPool>,
    mut stream: NetStream,
    peer: crate::net::stream::Peer,
    pending: OwnedSemaphorePermit,
    stop: CancellationToken,
) {
    let definition = &settings.definition;
    let params = HandshakeParams {
        role: Role::Server,
        key: &settings.key,
        forward_secrecy: definition.forward_secrecy,
        key_agreement: definition.key_agreement,
        pool: &shared.context.pool,
        tag: None,
        previous_key: settings.previous_key.as_ref(),
    };
    let started = Instant::now();
    let authenticated = tokio::select! {
        () = stop.cancelled() => return,
        authenticated = authenticate(&mut stream, &params, definition.timeout) => authenticated,
    };
    let conn = shared.next_conn();
    let authenticated = match authenticated {
        Ok(authenticated) => authenticated,
        Err(fault) => {
            shared.audit(|| AuditRecord {
                ended: std::time::SystemTime::now(),
                tunnel: shared.name.clone(),
                peer,
                client: None,
                duration: started.elapsed(),
                bytes_up: 0,
                bytes_down: 0,
                outcome: AuditOutcome::HandshakeFailed(fault.cause()),
            });
            return shared.handshake_failed(conn, peer, fault);
        }
    };
    shared
        .stats
        .handshake_completed(authenticated.used_previous_key());
    if authenticated.nonce_tag() != Some(NonceTag::ReverseSlot) {
        stream.reset_on_close();
        return shared.reverse_refused(peer, ReverseFault::NotReverseOut);
    }
    let codecs = match authenticated.session_codecs().await {
        Ok(codecs) => codecs,
        Err(fault) => return shared.handshake_failed(conn, peer, fault),
    };
    drop(pending);
    stream.tune(definition.keepalive);
    let mut slot = Slot::new(stream, codecs);
    let (handover, taken) = oneshot::channel();
    if !pool.add(handover) {
        let _ = slot.send(Control::Full).await;
        return;
    }
    if slot.send(Control::Hello).await.is_err() {
        return;
    }
    let _ready = ReadyGauge::new(&shared.stats);
    let change = shared
        .health
        .handshake_succeeded(started.elapsed(), std::time::Instant::now());
    shared.health_changed(change);
    idle_in(slot, taken, &stop).await;
}

/// What woke an idle pooled connection's task.
enum IdleIn {
    Stop,
    Taken(Result<oneshot::Sender<Slot>, oneshot::error::RecvError>),
    Heard(Result<Control, ReverseFault>),
    Silent,
}

/// Keeps a pooled connection until a client takes it (then tells the far end, and hands
/// it over), answering keep-alives; drops it when the far end goes silent or says
/// something out of turn.
async fn idle_in(
    mut slot: Slot,
    mut taken: oneshot::Receiver<oneshot::Sender<Slot>>,
    stop: &CancellationToken,
) {
    let mut heard = Instant::now();
    loop {
        let woke = tokio::select! {
            () = stop.cancelled() => IdleIn::Stop,
            request = &mut taken => IdleIn::Taken(request),
            got = slot.receive() => IdleIn::Heard(got),
            () = tokio::time::sleep_until(heard + SILENT_LIMIT) => IdleIn::Silent,
        };
        match woke {
            IdleIn::Taken(Ok(reply)) => {
                if slot.send(Control::Go).await.is_ok() {
                    let _ = reply.send(slot);
                }
                return;
            }
            IdleIn::Heard(Ok(Control::Ping)) => {
                heard = Instant::now();
                if slot.send(Control::Pong).await.is_err() {
                    return;
                }
            }
            IdleIn::Stop | IdleIn::Taken(Err(_)) | IdleIn::Heard(_) | IdleIn::Silent => return,
        }
    }
}

/// The reverse-in end's side of a joined connection, before data: the reverse-out end's
/// keep-alives sent before it saw `Go` are skipped, until it says the service is
/// connected (`Ready`) or could not be (`Refused`).
pub(crate) async fn await_ready(
    input: &mut crate::net::stream::NetReadHalf,
    reader: &mut crate::net::reverse::PacketReader,
    opener: &mut crate::protocol::PacketOpener,
) -> Result<(), ReverseFault> {
    loop {
        match reader.control(input, opener).await? {
            Control::Ping => {}
            Control::Ready => return Ok(()),
            Control::Refused(cause) => return Err(ReverseFault::ServiceDown(cause)),
            other => return Err(ReverseFault::OutOfTurn(other)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The reverse-out end

/// How one of the reverse-out end's connections ended.
enum SlotEnd {
    /// A client was joined to it: it went to the tunnel as a connection.
    Joined,
    /// It was pooled, then lost (the far end went away or went silent).
    Lost,
}

/// Keeps up to [`POOL_SIZE`] connections to the far end ready (fewer if the connection
/// limit leaves less room), handing each one the far end joins to a client to `joined`,
/// until `stop`. While the far end cannot be reached, one dial at a time beside the
/// connections still pooled (so a refill that failed is tried again, not left to a pool
/// one short for good), after a capped exponential backoff; at once again when the
/// network changes.
pub(crate) async fn keep_pool(
    shared: Arc<TunnelShared>,
    settings: Arc<TunnelSettings>,
    joined: mpsc::Sender<Slot>,
    stop: CancellationToken,
) {
    let mut slots = tokio::task::JoinSet::new();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let mut network = shared.network_epoch.subscribe();
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    let mut failing = false;
    // Slots dialled and not yet pooled (nor failed): while failing, one at a time, beside
    // however many are still pooled.
    let mut dialing = 0usize;
    let mut backoff = BACKOFF_FIRST;
    let mut retry_at: Option<Instant> = None;
    let limit = settings.definition.max_connections as usize;
    loop {
        let active = shared.stats.snapshot().active_connections as usize;
        let room = if limit == 0 {
            POOL_SIZE
        } else {
            POOL_SIZE.min(limit.saturating_sub(active))
        };
        if retry_at.is_none() {
            while slots.len() < room && !(failing && dialing > 0) {
                slots.spawn(slot_out(
                    Arc::clone(&shared),
                    Arc::clone(&settings),
                    joined.clone(),
                    ready_tx.clone(),
                ));
                dialing += 1;
            }
        }
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            Some(ended) = slots.join_next(), if !slots.is_empty() => {
                if let Ok(Err(fault)) = ended {
                    dialing = dialing.saturating_sub(1);
                    failing = true;
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                    let change = shared.health.unreached(fault, std::time::Instant::now());
                    shared.health_changed(change);
                }
            }
            Some(()) = ready.recv() => {
                dialing = dialing.saturating_sub(1);
                failing = false;
                backoff = BACKOFF_FIRST;
                retry_at = None;
            }
            () = retry => retry_at = None,
            changed = network.changed() => {
                if changed.is_err() {
                    return;
                }
                backoff = BACKOFF_FIRST;
                retry_at = None;
            }
            // Room may have freed up under the connection limit.
            _ = every_second.tick() => {}
        }
    }
}

/// What woke a pooled connection on the reverse-out end.
enum IdleOut {
    Timer,
    Heard(Result<Control, ReverseFault>),
}

/// One connection of the reverse-out end: dial, handshake (tagged as a reverse slot),
/// the far end's greeting; then idle with keep-alives until the far end joins a client
/// to it. `Err` when it never got pooled: the far end is not reached.
async fn slot_out(
    shared: Arc<TunnelShared>,
    settings: Arc<TunnelSettings>,
    joined: mpsc::Sender<Slot>,
    ready: mpsc::UnboundedSender<()>,
) -> Result<SlotEnd, HealthFault> {
    let definition = &settings.definition;
    let params = HandshakeParams {
        role: Role::Client,
        key: &settings.key,
        forward_secrecy: definition.forward_secrecy,
        key_agreement: definition.key_agreement,
        pool: &shared.context.pool,
        tag: Some(NonceTag::ReverseSlot),
        previous_key: None,
    };
    let dialed = Dialer::new(
        &definition.listen,
        definition.bind.as_ref(),
        definition.timeout,
    )
    .dial(&params)
    .await
    .map_err(|fault| match fault {
        DialFault::Target(fault) => HealthFault::Unreached(fault),
        DialFault::Handshake(fault) => HealthFault::Handshake(fault),
    })?;
    shared.stats.handshake_completed(false);
    dialed.stream.tune(definition.keepalive);
    let mut slot = Slot::new(dialed.stream, dialed.codecs);
    let greeting = tokio::time::timeout(definition.timeout, slot.receive()).await;
    let refusal = match greeting {
        Ok(Ok(Control::Hello)) => None,
        Ok(Ok(Control::Full)) => Some(ReverseFault::Full),
        Ok(Ok(other)) => Some(ReverseFault::OutOfTurn(other)),
        // Stock spiped -d, or a Sluice forward Decrypt tunnel: silence, or the close
        // with which a Decrypt tunnel refuses a reverse slot.
        Ok(Err(ReverseFault::Closed | ReverseFault::Io(_))) | Err(_) => {
            Some(ReverseFault::NoGreeting(definition.timeout))
        }
        Ok(Err(fault)) => Some(fault),
    };
    if let Some(fault) = refusal {
        return Err(HealthFault::Reverse(fault));
    }
    let _ = ready.send(());
    let change = shared
        .health
        .handshake_succeeded(dialed.handshake, std::time::Instant::now());
    shared.health_changed(change);
    let gauge = ReadyGauge::new(&shared.stats);
    let mut next_ping = Instant::now() + PING_EVERY;
    let mut awaiting: Option<Instant> = None;
    loop {
        let wake = awaiting.map_or(next_ping, |sent| sent + definition.timeout);
        let woke = tokio::select! {
            () = tokio::time::sleep_until(wake) => IdleOut::Timer,
            got = slot.receive() => IdleOut::Heard(got),
        };
        match woke {
            IdleOut::Timer if awaiting.is_some() => return Ok(SlotEnd::Lost),
            IdleOut::Timer => {
                if slot.send(Control::Ping).await.is_err() {
                    return Ok(SlotEnd::Lost);
                }
                awaiting = Some(Instant::now());
            }
            IdleOut::Heard(Ok(Control::Pong)) => {
                if let Some(sent) = awaiting.take() {
                    let change = shared
                        .health
                        .handshake_succeeded(sent.elapsed(), std::time::Instant::now());
                    shared.health_changed(change);
                }
                next_ping = Instant::now() + PING_EVERY;
            }
            IdleOut::Heard(Ok(Control::Go)) => {
                drop(gauge);
                return Ok(match joined.send(slot).await {
                    Ok(()) => SlotEnd::Joined,
                    Err(_) => SlotEnd::Lost,
                });
            }
            IdleOut::Heard(Ok(_) | Err(_)) => return Ok(SlotEnd::Lost),
        }
    }
}

/// The reverse-out end's answer to the far end once the service is (or is not)
/// connected for a joined connection.
pub(crate) fn service_answer(connected: &Result<NetStream, crate::fault::TargetFault>) -> Control {
    match connected {
        Ok(_) => Control::Ready,
        Err(fault) => Control::Refused(crate::health::down_cause_of(fault)),
    }
}

impl TunnelShared {
    /// Publishes a refused reverse connection, throttled like every problem a stranger
    /// (here: anyone with the key) can repeat.
    pub(crate) fn reverse_refused(&self, peer: crate::net::stream::Peer, fault: ReverseFault) {
        self.repeated(
            RepeatedProblem::ConnectionError,
            Some(TunnelFault::Reverse(fault.clone())),
            EventKind::ReverseRefused { peer, fault },
        );
    }
}
