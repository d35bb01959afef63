//! Reverse tunnels in one process: a reverse-in end and a reverse-out end on one engine,
//! an echo service behind the reverse-out end, plain clients at the reverse-in end; the
//! pool filled and refilled, a client with no ready connection, a dead service, the far
//! end gone and back, and the ends that must refuse each other.

use super::*;
use crate::fault::TunnelFault;
use crate::health::{DownCause, Health};
use crate::net::reverse::ReverseFault;

const POOL: u64 = crate::tunnel::REVERSE_POOL_SIZE as u64;

/// A reverse-in end "NAME-in" (clients on any port, the reverse-out end's connections
/// on a fixed one) and a reverse-out end "NAME-out" dialling it, in front of `service`.
/// Returns the tunnels and where clients connect.
fn reverse_pair(
    engine: &Engine,
    name: &str,
    service: SocketAddr,
) -> (Vec<DesiredTunnel>, SocketAddr) {
    let slots = free_port();
    let reverse_in = running(settings(
        &format!("{name}-in"),
        Mode::ReverseIn,
        any_port(),
        Address::Ip(slots),
    ));
    let reverse_out = running(settings(
        &format!("{name}-out"),
        Mode::ReverseOut,
        Address::Ip(slots),
        Address::Ip(service),
    ));
    let both = vec![reverse_in, reverse_out];
    apply(engine, both.clone(), Ending::Close);
    let clients = listening(engine, &format!("{name}-in"));
    (both, clients)
}

fn ready(engine: &Engine, name: &str) -> u64 {
    engine.status(name).map_or(0, |s| s.counters.reverse_ready)
}

fn wait_ready(engine: &Engine, name: &str, n: u64) {
    wait_for(&format!("{n} ready at {name}"), || ready(engine, name) == n);
}

#[test]
fn a_client_of_the_reverse_in_end_reaches_the_service_and_the_pool_refills() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let (_, clients) = reverse_pair(&engine, "r", echo.addr);
    wait_ready(&engine, "r-out", POOL);
    wait_ready(&engine, "r-in", POOL);
    assert!(matches!(
        engine.status("r-out").unwrap().state,
        TunnelState::Dialing { .. }
    ));

    let mut stream = TcpStream::connect(clients).unwrap();
    round_trip(&mut stream, &[9u8; 5000]);
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "half-close passed on both ways");
    assert_eq!(echo.connections(), 1);
    wait_for("the counters", || {
        let (i, o) = (
            engine.status("r-in").unwrap(),
            engine.status("r-out").unwrap(),
        );
        i.counters.bytes_up == 5000
            && i.counters.bytes_down == 5000
            && o.counters.bytes_up == 5000
            && o.counters.total_connections == 1
            && i.counters.active_connections == 0
    });
    wait_ready(&engine, "r-out", POOL);
    assert!(matches!(
        engine.status("r-out").unwrap().health,
        Health::Up { .. }
    ));
    assert!(matches!(
        engine.status("r-in").unwrap().health,
        Health::Up { .. }
    ));

    // Many short connections in a row: every one served, nothing left over.
    for i in 0..300u32 {
        let mut stream = TcpStream::connect(clients).unwrap();
        round_trip(&mut stream, &i.to_be_bytes());
    }
    wait_for("all closed, the pool full again", || {
        let (i, o) = (
            engine.status("r-in").unwrap(),
            engine.status("r-out").unwrap(),
        );
        i.counters.active_connections == 0
            && o.counters.active_connections == 0
            && o.counters.reverse_ready == POOL
            && i.counters.reverse_ready == POOL
    });
    assert_eq!(echo.connections(), 301);
}

/// A TCP relay to `to` that closes the next `refuse` connections unanswered, as a
/// reverse-in end whose handshakes are all taken by strangers does.
struct Relay {
    addr: SocketAddr,
    refuse: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    fn start(to: SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let refuse = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refusing = Arc::clone(&refuse);
        std::thread::spawn(move || {
            for inbound in listener.incoming().flatten() {
                let take = |n: usize| n.checked_sub(1);
                use std::sync::atomic::Ordering::SeqCst;
                if refusing.fetch_update(SeqCst, SeqCst, take).is_ok() {
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(to) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Relay { addr, refuse }
    }
}

/// A refill that fails while the other pooled connections live is tried again: the pool
/// does not stay one short (it did, for good, after a flood of strangers on the far end).
#[test]
fn a_refill_refused_while_the_rest_is_pooled_is_tried_again() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let slots = free_port();
    let relay = Relay::start(slots);
    let reverse_in = running(settings(
        "f-in",
        Mode::ReverseIn,
        any_port(),
        Address::Ip(slots),
    ));
    let reverse_out = running(settings(
        "f-out",
        Mode::ReverseOut,
        Address::Ip(relay.addr),
        Address::Ip(echo.addr),
    ));
    apply(&engine, vec![reverse_in, reverse_out], Ending::Close);
    let clients = listening(&engine, "f-in");
    wait_ready(&engine, "f-out", POOL);
    relay.refuse.store(1, std::sync::atomic::Ordering::SeqCst);
    let mut stream = TcpStream::connect(clients).unwrap();
    round_trip(&mut stream, b"takes a pooled connection");
    drop(stream);
    wait_for("the refused refill", || {
        relay.refuse.load(std::sync::atomic::Ordering::SeqCst) == 0
    });
    wait_ready(&engine, "f-out", POOL);
    wait_ready(&engine, "f-in", POOL);
}

#[test]
fn with_no_ready_connection_a_client_waits_the_timeout_then_is_closed_and_counted() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let mut alone = settings(
        "lonely",
        Mode::ReverseIn,
        any_port(),
        Address::Ip(free_port()),
    );
    alone.definition.timeout = Duration::from_millis(300);
    let mut events = engine.subscribe();
    apply(&engine, vec![running(alone)], Ending::Close);
    let clients = listening(&engine, "lonely");
    let started = Instant::now();
    assert!(!served_within(clients, SLOW));
    assert!(started.elapsed() >= Duration::from_millis(300));
    wait_for("counted", || {
        engine
            .status("lonely")
            .is_some_and(|s| s.counters.reverse_unserved == 1)
    });
    let mut told = false;
    while let Some(Ok(event)) = events.try_next() {
        told |= matches!(event.kind, EventKind::NoReverseConnection { .. });
    }
    assert!(told, "an event says why");
}

#[test]
fn a_dead_service_behind_the_reverse_out_end_is_told_to_the_reverse_in_end() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let (_, clients) = reverse_pair(&engine, "s", free_port());
    wait_ready(&engine, "s-in", POOL);
    assert!(!served_within(clients, SLOW));
    wait_for("counted as the target unreachable", || {
        engine.status("s-in").is_some_and(|s| {
            s.counters.target_failures == 1
                && matches!(
                    s.counters.last_error.as_ref().map(|e| &e.fault),
                    Some(TunnelFault::Reverse(ReverseFault::ServiceDown(_)))
                )
        })
    });
}

#[test]
fn the_reverse_out_end_reconnects_by_itself_when_the_far_end_comes_back() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let (mut both, _) = reverse_pair(&engine, "b", echo.addr);
    wait_ready(&engine, "b-out", POOL);
    both[0].run = false;
    apply(&engine, both.clone(), Ending::Close);
    wait_for("down", || {
        engine
            .status("b-out")
            .is_some_and(|s| s.health.down_cause() == Some(DownCause::NothingListening))
    });
    assert_eq!(ready(&engine, "b-out"), 0);
    both[0].run = true;
    apply(&engine, both, Ending::Close);
    wait_ready(&engine, "b-out", POOL);
    // Its clients' port is a new one (any port): where it listens now.
    let clients = listening(&engine, "b-in");
    let mut stream = TcpStream::connect(clients).unwrap();
    round_trip(&mut stream, b"back");
}

#[test]
fn forward_and_reverse_ends_refuse_each_other_with_words() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let mut events = engine.subscribe();

    // An Encrypt tunnel pointed at a reverse-in end's port.
    let slots = free_port();
    let reverse_in = running(settings(
        "ri",
        Mode::ReverseIn,
        any_port(),
        Address::Ip(slots),
    ));
    let encrypt = running(settings(
        "fe",
        Mode::Encrypt,
        any_port(),
        Address::Ip(slots),
    ));
    apply(&engine, vec![reverse_in, encrypt], Ending::Close);
    let client = listening(&engine, "fe");
    assert!(!served_within(client, SLOW));
    let mut refused = None;
    wait_for("the reverse-in end says what is wrong", || {
        while let Some(Ok(event)) = events.try_next() {
            if let EventKind::ReverseRefused { fault, .. } = event.kind {
                refused = Some(fault);
            }
        }
        refused.is_some()
    });
    assert_eq!(refused, Some(ReverseFault::NotReverseOut));

    // A reverse-out end pointed at a Decrypt tunnel.
    let decrypt = running(settings(
        "fd",
        Mode::Decrypt,
        Address::Ip(free_port()),
        Address::Ip(echo.addr),
    ));
    apply(&engine, vec![decrypt.clone()], Ending::Close);
    listening(&engine, "fd");
    let mut out = settings(
        "ro",
        Mode::ReverseOut,
        decrypt.settings.definition.listen.clone(),
        Address::Ip(echo.addr),
    );
    out.definition.timeout = Duration::from_millis(500);
    apply(&engine, vec![decrypt, running(out)], Ending::Close);
    wait_for("the reverse-out end says what is wrong", || {
        engine
            .status("ro")
            .is_some_and(|s| s.health.down_cause() == Some(DownCause::ModeMismatch))
    });
    let Health::Down { fault, .. } = engine.status("ro").unwrap().health else {
        unreachable!()
    };
    assert!(
        fault.to_string().contains("not a Sluice reverse-in end"),
        "{fault}"
    );
    assert_eq!(echo.connections(), 0, "no service touched");
}
