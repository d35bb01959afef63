//! The tunnel layer in one process, in the manner of the protocol's back-to-back tests: a
//! real engine, loopback sockets, an echo target on the engine's own runtime, plain
//! clients on the test thread; no child processes. Resolvers that never answer or always
//! fail stand in for DNS; restarts are checked on paused time.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::address::Address;
use crate::definition::TunnelSettings;
use crate::definition::{Mode, TunnelDefinition};
use crate::events::EventKind;
use crate::fault::StartFault;
use crate::plan::{Desired, DesiredTunnel, Ending, Restart};
use crate::protocol::key::PresharedKey;
use crate::tunnel::TunnelState;

const SLOW: Duration = Duration::from_secs(10);

/// Waits until `done`, failing after [`SLOW`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + SLOW;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {SLOW:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An echo server on the engine's runtime, counting the connections it took.
struct Echo {
    addr: SocketAddr,
    connections: Arc<Mutex<usize>>,
}

impl Echo {
    fn start(engine: &Engine) -> Echo {
        let listener = engine
            .runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(0));
        let counted = Arc::clone(&connections);
        engine.runtime().spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *counted.lock().unwrap() += 1;
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Echo { addr, connections }
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

fn settings(name: &str, mode: Mode, listen: Address, target: Address) -> TunnelSettings {
    TunnelSettings::new(
        TunnelDefinition::new(name, mode, listen, target),
        PresharedKey::from_keyfile_bytes(b"the harness key, 32 bytes or more"),
    )
}

fn any_port() -> Address {
    Address::Ip("127.0.0.1:0".parse().unwrap())
}

fn running(settings: TunnelSettings) -> DesiredTunnel {
    DesiredTunnel {
        settings,
        run: true,
        restart: Restart::Never,
    }
}

fn apply(engine: &Engine, tunnels: Vec<DesiredTunnel>, ending: Ending) -> Plan {
    engine.apply(Desired { tunnels, ending }).unwrap()
}

/// Where the named tunnel listens, once it does.
fn listening(engine: &Engine, name: &str) -> SocketAddr {
    let mut found = None;
    wait_for(&format!("{name} listens"), || {
        found = match engine.status(name).map(|s| s.state) {
            Some(TunnelState::Listening {
                address: Address::Ip(addr),
            }) => Some(addr),
            Some(TunnelState::Failed(fault)) => panic!("{name} failed: {fault}"),
            _ => None,
        };
        found.is_some()
    });
    found.unwrap()
}

/// A plain client: sends `data`, reads it back.
fn round_trip(stream: &mut TcpStream, data: &[u8]) {
    stream.set_read_timeout(Some(SLOW)).unwrap();
    stream.write_all(data).unwrap();
    let mut back = vec![0; data.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

/// Whether a client gets the echo of one byte within `within` (false: closed, refused or
/// silent).
fn served_within(addr: SocketAddr, within: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, SLOW) else {
        return false;
    };
    stream.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8];
    stream.write_all(b"x").is_ok() && stream.read_exact(&mut byte).is_ok() && byte == *b"x"
}

/// A decrypting tunnel "NAME-d" in front of `target` and an encrypting one "NAME-e" into
/// it, both running; returns the pair and the encrypting end's address.
fn pair(engine: &Engine, name: &str, target: SocketAddr) -> (Vec<DesiredTunnel>, SocketAddr) {
    let decrypt = running(settings(
        &format!("{name}-d"),
        Mode::Decrypt,
        any_port(),
        Address::Ip(target),
    ));
    apply(engine, vec![decrypt.clone()], Ending::Close);
    let d_addr = listening(engine, &format!("{name}-d"));
    let encrypt = running(settings(
        &format!("{name}-e"),
        Mode::Encrypt,
        any_port(),
        Address::Ip(d_addr),
    ));
    let both = vec![decrypt, encrypt];
    apply(engine, both.clone(), Ending::Close);
    let e_addr = listening(engine, &format!("{name}-e"));
    (both, e_addr)
}

#[test]
fn data_flows_through_a_pair_and_is_counted() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let (_, client) = pair(&engine, "p", echo.addr);
    let mut stream = TcpStream::connect(client).unwrap();
    round_trip(&mut stream, &[7u8; 5000]);
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "half-close passed on, nothing extra");
    wait_for("the counters", || {
        engine.status("p-d").is_some_and(|s| {
            s.counters.bytes_up == 5000
                && s.counters.bytes_down == 5000
                && s.counters.active_connections == 0
        })
    });
}

#[test]
fn the_limit_holds_clients_in_the_queue_until_a_slot_frees() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let (mut tunnels, _) = pair(&engine, "l", echo.addr);
    // A second encrypting end into the same decrypting end, with one slot.
    let mut limited = settings(
        "limited",
        Mode::Encrypt,
        any_port(),
        tunnels[1].settings.definition.target.clone(),
    );
    limited.definition.max_connections = 1;
    tunnels.push(running(limited));
    apply(&engine, tunnels, Ending::Close);
    let addr = listening(&engine, "limited");

    let mut first = TcpStream::connect(addr).unwrap();
    round_trip(&mut first, b"one");
    // The second client is queued, not served, and counted as waiting.
    let mut second = TcpStream::connect(addr).unwrap();
    second.write_all(b"two").unwrap();
    // Only Linux tells how many clients wait in the accept queue.
    let queue_known = cfg!(target_os = "linux");
    wait_for("the waiting client is counted", || {
        engine.status("limited").is_some_and(|s| {
            (s.counters.waiting_clients == 1 || !queue_known) && s.counters.limit_reached == 1
        })
    });
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut back = [0u8; 3];
    assert!(
        second.read_exact(&mut back).is_err(),
        "served past the limit"
    );
    // The first goes: the second is served.
    drop(first);
    second.set_read_timeout(Some(SLOW)).unwrap();
    second.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"two");
    wait_for("nobody waits any more", || {
        engine
            .status("limited")
            .is_some_and(|s| s.counters.waiting_clients == 0)
    });
}

/// A port that was free a moment ago.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

#[test]
fn new_settings_reach_new_connections_and_open_ones_keep_theirs() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let old_target = Echo::start(&engine);
    let new_target = Echo::start(&engine);
    let (mut both, client) = pair(&engine, "u", old_target.addr);
    let mut open = TcpStream::connect(client).unwrap();
    round_trip(&mut open, b"before");

    // A new target for the decrypting end, a new limit for the encrypting one.
    both[0].settings.definition.target = Address::Ip(new_target.addr);
    both[1].settings.definition.max_connections = 7;
    let plan = apply(&engine, both.clone(), Ending::Close);
    assert_eq!(plan.updated, ["u-d", "u-e"]);
    wait_for("the new limit", || {
        engine.status("u-e").is_some_and(|s| s.max_connections == 7)
    });
    round_trip(&mut open, b"the open connection carries on");
    assert!(served_within(client, SLOW));
    assert_eq!(old_target.connections(), 1);
    assert_eq!(
        new_target.connections(),
        1,
        "a new connection reaches the new target"
    );

    // The same set again: nothing happens, the open connection is untouched.
    let plan = apply(&engine, both.clone(), Ending::Close);
    assert_eq!(plan.unchanged, ["u-d", "u-e"]);
    round_trip(&mut open, b"after a reload that changed nothing");

    // A new listen address: the tunnel rebinds there; the open connection stays.
    let moved = free_port();
    both[1].settings.definition.listen = Address::Ip(moved);
    assert_eq!(apply(&engine, both, Ending::Close).updated, ["u-e"]);
    wait_for("listening at the new address", || {
        served_within(moved, SLOW)
    });
    assert!(
        TcpStream::connect(client).is_err(),
        "the old address is closed"
    );
    round_trip(&mut open, b"after the move");
}

#[test]
fn a_retired_tunnel_stops_listening_at_once_and_goes_once_its_connections_end() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let (both, client) = pair(&engine, "r", echo.addr);
    let mut open = TcpStream::connect(client).unwrap();
    round_trip(&mut open, b"before");

    // The encrypting end leaves the set; its connection drains.
    let plan = apply(&engine, vec![both[0].clone()], Ending::Drain);
    assert_eq!(plan.retired, ["r-e"]);
    wait_for("the listener is closed", || {
        TcpStream::connect(client).is_err()
    });
    assert_eq!(engine.status("r-e"), None, "no longer declared");
    wait_for("draining is shown", || {
        engine
            .statuses()
            .iter()
            .any(|s| s.name == "r-e" && matches!(s.state, TunnelState::Draining { .. }))
    });
    round_trip(&mut open, b"still carried");
    drop(open);
    wait_for("forgotten once its connection ended", || {
        engine.statuses().iter().all(|s| s.name != "r-e")
    });
}

#[test]
fn stop_closes_connections_and_start_again_keeps_the_counters() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let (mut both, client) = pair(&engine, "s", echo.addr);
    let mut open = TcpStream::connect(client).unwrap();
    round_trip(&mut open, b"x");
    both[1].run = false;
    let plan = apply(&engine, both.clone(), Ending::Close);
    assert_eq!(plan.stopped, ["s-e"]);
    let mut rest = Vec::new();
    open.set_read_timeout(Some(SLOW)).unwrap();
    let _ = open.read_to_end(&mut rest);
    wait_for("stopped", || {
        engine.status("s-e").map(|s| s.state) == Some(TunnelState::Stopped)
    });
    both[1].run = true;
    assert_eq!(apply(&engine, both, Ending::Close).started, ["s-e"]);
    listening(&engine, "s-e");
    assert_eq!(engine.status("s-e").unwrap().counters.total_connections, 1);
}

/// A resolver that never answers.
struct NeverAnswers;

impl Resolver for NeverAnswers {
    fn lookup<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(std::future::pending())
    }
}

#[test]
fn stopping_a_tunnel_whose_name_never_resolves_returns_at_once() {
    let engine =
        Engine::start_with_resolver(RuntimeThreads::One, Arc::new(NeverAnswers), || {}).unwrap();
    let echo = Echo::start(&engine);
    let stuck = running(settings(
        "stuck",
        Mode::Decrypt,
        any_port(),
        Address::Host {
            name: "never.example".into(),
            port: 80,
        },
    ));
    let fine = running(settings(
        "fine",
        Mode::Decrypt,
        any_port(),
        Address::Ip(echo.addr),
    ));
    apply(&engine, vec![stuck.clone(), fine.clone()], Ending::Close);
    listening(&engine, "fine");
    assert_eq!(
        engine.status("stuck").map(|s| s.state),
        Some(TunnelState::Starting)
    );

    // Stop the stuck one: the supervisor must not wait for its lookup.
    let mut stuck_stopped = stuck.clone();
    stuck_stopped.run = false;
    let started = Instant::now();
    apply(&engine, vec![stuck_stopped, fine.clone()], Ending::Close);
    wait_for("the stuck tunnel stops", || {
        engine.status("stuck").map(|s| s.state) == Some(TunnelState::Stopped)
    });
    // The other tunnel takes commands meanwhile: a new limit arrives.
    let mut fine_again = fine;
    fine_again.settings.definition.max_connections = 3;
    apply(&engine, vec![fine_again], Ending::Close);
    wait_for("the other tunnel's update", || {
        engine
            .status("fine")
            .is_some_and(|s| s.max_connections == 3)
    });
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(engine.status("stuck"), None, "retired");
}

/// A resolver that always fails, noting when it was asked (on the engine's clock).
#[derive(Default)]
struct AlwaysFails {
    asked: Mutex<Vec<tokio::time::Instant>>,
}

impl Resolver for AlwaysFails {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(tokio::time::Instant::now());
        }
        let error = io::Error::other(format!("{host}: no such host"));
        Box::pin(async move { Err(error) })
    }
}

#[test]
fn a_restart_policy_retries_on_its_period_and_reports_a_repeated_failure_once() {
    let resolver = Arc::new(AlwaysFails::default());
    let engine = Engine::start_paused(Arc::clone(&resolver) as Arc<dyn Resolver>).unwrap();
    let mut events = engine.subscribe();
    let period = Duration::from_secs(30);
    let mut retrying = running(settings(
        "retrying",
        Mode::Decrypt,
        any_port(),
        Address::Host {
            name: "not-yet.example".into(),
            port: 80,
        },
    ));
    retrying.restart = Restart::Every(period);
    apply(&engine, vec![retrying], Ending::Close);
    // Paused time runs ahead whenever the engine idles: retries come quickly in real time.
    wait_for("five tries", || resolver.asked.lock().unwrap().len() >= 5);
    let asked = resolver.asked.lock().unwrap().clone();
    for gap in asked.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap >= period && gap < period * 2, "gap {gap:?}");
    }
    assert!(matches!(
        engine.status("retrying").map(|s| s.state),
        Some(TunnelState::Failed(StartFault::Target { .. }) | TunnelState::Starting)
    ));
    let mut failures = 0;
    while let Some(Ok(event)) = events.try_next() {
        if let EventKind::StartFailed(fault) = event.kind {
            assert!(matches!(fault, StartFault::Target { .. }), "{fault}");
            failures += 1;
        }
    }
    assert_eq!(failures, 1, "the same failure, told once");
}

mod health;
mod reverse;
