//! Far-end health in one process: an encrypting tunnel with a short check interval and
//! its far end (a decrypting tunnel on the same engine) killed, brought back, re-keyed,
//! cut off from its own target; a network change, simulated and (as root, in a network
//! namespace of the test's own) real. No client traffic unless a test says so.

use std::net::TcpListener;

use super::*;
use crate::health::{DownCause, Health, HealthFault};
use crate::protocol::health::{TargetDownCause, TargetReport};

const SECOND: Duration = Duration::from_secs(1);

/// The encrypting end's health once `ok` holds for it.
fn health_when(engine: &Engine, name: &str, what: &str, ok: impl Fn(&Health) -> bool) -> Health {
    let mut seen = Health::Unknown;
    wait_for(what, || {
        seen = engine.status(name).map(|s| s.health).unwrap_or_default();
        ok(&seen)
    });
    seen
}

fn cause(health: &Health) -> Option<DownCause> {
    health.down_cause()
}

fn is_up(health: &Health) -> bool {
    matches!(health, Health::Up { .. })
}

/// A far end "NAME-d" on a fixed port (so it can come back at the same address) in front
/// of `target`, and "NAME-e" into it, checking every `interval`.
fn checked_pair(
    engine: &Engine,
    name: &str,
    target: SocketAddr,
    interval: Duration,
) -> Vec<DesiredTunnel> {
    let far = free_port();
    let decrypt = running(settings(
        &format!("{name}-d"),
        Mode::Decrypt,
        Address::Ip(far),
        Address::Ip(target),
    ));
    let mut encrypt = running(settings(
        &format!("{name}-e"),
        Mode::Encrypt,
        any_port(),
        Address::Ip(far),
    ));
    encrypt.settings.definition.health_check = Some(interval);
    let both = vec![decrypt, encrypt];
    apply(engine, both.clone(), Ending::Close);
    listening(engine, &format!("{name}-d"));
    listening(engine, &format!("{name}-e"));
    both
}

fn checks(engine: &Engine, name: &str) -> usize {
    engine.check_history(name).len()
}

#[test]
fn a_dead_far_end_shows_down_with_its_cause_and_up_again_without_client_traffic() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let mut events = engine.subscribe();
    let mut both = checked_pair(&engine, "k", echo.addr, SECOND);
    let up = health_when(&engine, "k-e", "the first check", is_up);
    let Health::Up { far_target, .. } = up else {
        unreachable!()
    };
    assert_eq!(
        far_target,
        Some(TargetReport::Unknown),
        "a Sluice far end says it has not tried its target yet"
    );
    assert_eq!(echo.connections(), 0, "a check never touched the target");

    // The far end dies.
    both[0].run = false;
    apply(&engine, both.clone(), Ending::Close);
    let killed = Instant::now();
    let down = health_when(&engine, "k-e", "down", |h| cause(h).is_some());
    assert_eq!(cause(&down), Some(DownCause::NothingListening), "{down:?}");
    assert!(
        killed.elapsed() < SECOND + SLOW / 2,
        "found within about one interval"
    );
    let status = engine.status("k-e").unwrap();
    assert_eq!(status.counters.total_connections, 0, "no client traffic");
    assert!(
        status.last_round_trip.is_some(),
        "the last good check is kept"
    );

    // It comes back at the same address.
    both[0].run = true;
    apply(&engine, both, Ending::Close);
    health_when(&engine, "k-e", "up again", is_up);

    // Each change went out as an event: up, down, up.
    let mut changes = Vec::new();
    while let Some(Ok(event)) = events.try_next() {
        if let EventKind::HealthChanged(health) = event.kind {
            assert_eq!(event.tunnel, "k-e");
            changes.push(cause(&health).map_or("up", DownCause::metric_label));
        }
    }
    assert_eq!(changes, ["up", "nothing_listening", "up"]);
    let history = engine.check_history("k-e");
    assert!(
        history.iter().any(|s| s.round_trip.is_none()),
        "{history:?}"
    );
    assert!(history.last().unwrap().round_trip.is_some());
}

#[test]
fn a_far_end_with_another_key_is_a_wrong_key() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let mut both = checked_pair(&engine, "w", echo.addr, SECOND);
    health_when(&engine, "w-e", "up", is_up);
    both[0].settings.key = PresharedKey::from_keyfile_bytes(b"another key entirely, re-keyed");
    apply(&engine, both, Ending::Close);
    let down = health_when(&engine, "w-e", "wrong key", |h| cause(h).is_some());
    assert_eq!(cause(&down), Some(DownCause::WrongKey), "{down:?}");
    assert_eq!(echo.connections(), 0);
}

#[test]
fn a_far_end_says_when_its_own_target_is_down_and_when_it_is_back() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let target = free_port();
    checked_pair(&engine, "t", target, SECOND);
    health_when(
        &engine,
        "t-e",
        "up: the far end has not tried its target",
        is_up,
    );

    // A real client fails (nothing at the far end's target): a check follows at once,
    // and the far end tells why.
    let client = listening(&engine, "t-e");
    assert!(!served_within(client, SLOW), "nothing to serve it");
    let down = health_when(&engine, "t-e", "far target down", |h| cause(h).is_some());
    match &down {
        Health::Down {
            fault: HealthFault::FarTarget { cause, .. },
            ..
        } => assert_eq!(*cause, TargetDownCause::Refused),
        other => panic!("expected the far end's report, got {other:?}"),
    }
    assert_eq!(cause(&down), Some(DownCause::FarTargetDown));

    // The target comes up: the far end tries it again for the next check.
    let listener = TcpListener::bind(target).unwrap();
    let back = health_when(&engine, "t-e", "up", is_up);
    let Health::Up { far_target, .. } = back else {
        unreachable!()
    };
    assert!(
        matches!(far_target, Some(TargetReport::Up { .. })),
        "{far_target:?}"
    );
    drop(listener);
}

#[test]
fn a_network_change_checks_at_once_and_a_stopped_tunnel_checks_nothing() {
    let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
    let echo = Echo::start(&engine);
    let hour = Duration::from_secs(3600);
    let mut both = checked_pair(&engine, "n", echo.addr, hour);
    assert_eq!(
        checks(&engine, "n-e"),
        0,
        "the first check waits an interval"
    );
    engine.check_now("n-e");
    wait_for("the check asked for", || checks(&engine, "n-e") == 1);
    engine.network_changed();
    wait_for("a check at once", || checks(&engine, "n-e") == 2);

    both[1].run = false;
    apply(&engine, both, Ending::Close);
    wait_for("stopped", || {
        engine
            .status("n-e")
            .is_some_and(|s| s.state == TunnelState::Stopped)
    });
    assert_eq!(engine.status("n-e").unwrap().health, Health::Unknown);
    engine.network_changed();
    // Nothing is due to happen; give a wrong check the time it would need to show.
    std::thread::sleep(SECOND);
    assert_eq!(checks(&engine, "n-e"), 2, "no check for a stopped tunnel");
}

/// As root: in a network namespace of this test's own (its loopback only), adding an
/// address is seen through netlink and the far end is checked at once.
#[cfg(target_os = "linux")]
#[test]
fn an_address_added_to_the_machine_triggers_a_check() {
    if !sluice_testkit::require(
        sluice_testkit::is_root() && sluice_testkit::have_program("ip"),
        "root and the ip command, for a network namespace",
        "run the tests as root; apt-get install iproute2",
    ) {
        return;
    }
    let ip = |args: &[&str]| {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip {args:?}");
    };
    // The namespace belongs to this thread and everything it starts, the engine too.
    std::thread::spawn(move || {
        // SAFETY: a plain system call; it moves only the calling thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        ip(&["link", "set", "lo", "up"]);
        let engine = Engine::start_with(RuntimeThreads::One, || {}).unwrap();
        let echo = Echo::start(&engine);
        checked_pair(&engine, "a", echo.addr, Duration::from_secs(3600));
        engine.check_now("a-e");
        wait_for("the check asked for", || checks(&engine, "a-e") == 1);
        ip(&["addr", "add", "127.0.0.77/8", "dev", "lo"]);
        wait_for("a check after the change", || checks(&engine, "a-e") == 2);
    })
    .join()
    .unwrap();
}
