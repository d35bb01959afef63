//! Far-end health checks against real processes: `sluiced -e --health-check` reporting a
//! `sluiced -d` far end that is killed, comes back and is re-keyed, in its metrics and its
//! log, with no client traffic; and checks against Debian's stock spiped, which cost it
//! exactly one connection to its target each and cannot tell a dead target from a wrong
//! key.

// Unix only: these tests drive real processes and sockets through the test kit.
#![cfg(unix)]

mod support;

use std::path::Path;
use std::time::Duration;

use sluice_engine::{
    Address, DownCause, Engine, Health, HealthFault, Mode, PresharedKey, TunnelDefinition,
    TunnelSettings,
};
use support::*;

const SLOW: Duration = Duration::from_secs(20);

fn scrape(metrics: &Addr) -> String {
    http_get(metrics.tcp(), "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// A float sample `SERIES VALUE`, if the series is there.
fn float_metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the scrape satisfies `ok`; the last scrape either way.
fn metrics_when(metrics: &Addr, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let found = wait_until(SLOW, || {
        text = scrape(metrics);
        ok(&text)
    });
    assert!(found, "{what}: not within {SLOW:?}; last scrape:\n{text}");
    text
}

fn far_end(key: &Path, at: &Addr, target: &Addr, dir: &Path) -> Proc {
    sluiced_on("-d", || at.clone(), target, key, &[], dir).0
}

#[test]
fn sluiced_tells_a_far_end_dead_back_and_rekeyed_in_metrics_and_log() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let other_key = random_key(dir.path(), "other");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (far, far_addr) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let metrics = free_addr(LOCALHOST_V4);
    let metrics_flag = metrics.tcp().to_string();
    let (near, near_addr) = sluiced(
        "-e",
        LOCALHOST_V4,
        &far_addr,
        &key,
        &["--health-check", "1", "--metrics", &metrics_flag],
        dir.path(),
    );
    let tunnel = near_addr.spiped();
    let up = format!("sluice_far_end_up{{tunnel=\"{tunnel}\"}}");
    let round_trip = format!("sluice_far_end_check_seconds{{tunnel=\"{tunnel}\"}}");
    let cause = |c: &str| format!("sluice_far_end_down_cause{{tunnel=\"{tunnel}\",cause=\"{c}\"}}");

    let text = metrics_when(&metrics, "up", |t| metric_value(t, &up) == Some(1));
    let seconds = float_metric(&text, &round_trip).expect("the check's round trip");
    assert!(seconds > 0.0 && seconds < 5.0, "{seconds}");
    assert!(
        !text.contains("sluice_far_end_down_cause{"),
        "no cause while up:\n{text}"
    );

    // Killed: down, nothing listening, logged, the last good round trip kept.
    drop(far);
    let text = metrics_when(&metrics, "down", |t| metric_value(t, &up) == Some(0));
    assert_eq!(
        metric_value(&text, &cause("nothing_listening")),
        Some(1),
        "{text}"
    );
    assert!(float_metric(&text, &round_trip).is_some());
    assert!(
        near.wait_for_log("far end down (nothing listening)", SLOW),
        "{}",
        near.stderr()
    );

    // Back: up again, and said so.
    let far = far_end(&key, &far_addr, &echo.addr, dir.path());
    metrics_when(&metrics, "up again", |t| metric_value(t, &up) == Some(1));
    assert!(near.wait_for_log("far end up", SLOW));
    drop(far);

    // Re-keyed: a wrong key.
    let _far = far_end(&other_key, &far_addr, &echo.addr, dir.path());
    metrics_when(&metrics, "wrong key", |t| {
        metric_value(t, &cause("wrong_key")) == Some(1)
    });
    assert!(near.wait_for_log("far end down (wrong key)", SLOW));

    let text = scrape(&metrics);
    let connections = format!("sluice_tunnel_connections_total{{tunnel=\"{tunnel}\"}}");
    assert_eq!(
        metric_value(&text, &connections),
        Some(0),
        "no client traffic"
    );
    assert_eq!(
        echo.connections(),
        0,
        "no check reached the far end's target"
    );
}

/// An encrypting tunnel of an in-process engine, checking `far` every hour (so checks
/// come only when the test asks, through a network change).
fn checking_engine(far: &Addr, key: &Path) -> (Engine, String) {
    let engine = Engine::start(|| {}).expect("engine");
    let mut definition = TunnelDefinition::new(
        "to-spiped",
        Mode::Encrypt,
        Address::Ip("127.0.0.1:0".parse().expect("address")),
        Address::Ip(far.tcp()),
    );
    definition.health_check = Some(Duration::from_secs(3600));
    let bytes = std::fs::read(key).expect("key");
    let settings = TunnelSettings::new(definition, PresharedKey::from_keyfile_bytes(&bytes));
    run_tunnels(&engine, vec![settings]);
    (engine, "to-spiped".to_owned())
}

fn health_when(engine: &Engine, name: &str, ok: impl Fn(&Health) -> bool) -> Health {
    let mut health = Health::Unknown;
    let found = wait_until(SLOW, || {
        health = engine.status(name).map(|s| s.health).unwrap_or_default();
        ok(&health)
    });
    assert!(found, "health of {name}: {health:?}");
    health
}

#[test]
fn a_check_of_stock_spiped_costs_its_target_one_connection() {
    if !require(
        std::path::Path::new(&spiped_bin()).exists(),
        "spiped",
        "apt-get install spiped",
    ) {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (spiped, far_addr) = spiped("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (engine, name) = checking_engine(&far_addr, &key);
    let checks = || engine.check_history(&name).len();
    assert!(wait_until(SLOW, || engine.status(&name).is_some_and(
        |s| matches!(s.state, sluice_engine::TunnelState::Listening { .. })
    )));
    assert_eq!(
        echo.connections(),
        0,
        "starting costs the far end's target nothing"
    );
    engine.check_now(&name);

    let up = health_when(&engine, &name, |h| matches!(h, Health::Up { .. }));
    let Health::Up { far_target, .. } = up else {
        unreachable!()
    };
    assert_eq!(far_target, None, "stock spiped says nothing of its target");
    assert!(wait_until(SLOW, || checks() == 1));
    assert!(echo.wait_finished(1, SLOW), "its target saw the check end");
    assert_eq!(echo.connections(), 1, "one check, one target connection");
    for n in 2..=3 {
        engine.network_changed();
        assert!(wait_until(SLOW, || checks() == n), "check {n}");
        assert!(echo.wait_finished(n, SLOW));
        assert_eq!(echo.connections(), n, "one connection per check");
    }
    assert!(
        echo.received().is_empty(),
        "a check sends its target nothing"
    );

    // spiped with its target gone sends its nonce and hangs up as soon as its own connect
    // fails (PROTOCOL.md section 6), racing the check's signed value: whether the check
    // then reads an end of stream or a reset (its value unread), it is the hang-up with
    // which spiped also answers a wrong key, and the cause names both.
    drop(echo);
    engine.network_changed();
    let down = health_when(&engine, &name, |h| h.down_cause().is_some());
    let Health::Down { fault, .. } = &down else {
        unreachable!()
    };
    assert!(matches!(fault, HealthFault::Handshake(_)), "{fault}");
    assert_eq!(down.down_cause(), Some(DownCause::WrongKey), "{fault}");
    assert!(
        fault.to_string().contains("cannot reach its own target"),
        "{fault}"
    );

    drop(spiped);
    engine.network_changed();
    let down = health_when(&engine, &name, |h| {
        h.down_cause() == Some(DownCause::NothingListening)
    });
    assert!(down.down_cause().is_some());
}
