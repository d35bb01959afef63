//! A tunnel's far end as the list shows it, in the real app on the real engine: a Sluice
//! far end (a Decrypt tunnel on a second engine) that stops shows "far end down since …:
//! nothing listening at …" in the tunnel's row within one check interval, with no client
//! traffic at all, and "ok" again once it is back; the detail panel has the whole cause
//! and what the far end says of its target; a far end with another key shows "wrong
//! key"; the editor keeps a tunnel's health-check setting.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sluice::SluiceApp;
use sluice::command::TunnelCommand;
use sluice_engine::{
    Config, Desired, DesiredTunnel, Ending, Engine, KeyRef, Mode, PresharedKey, Restart,
    TunnelSettings, TunnelSpec, TunnelState,
};
use support::*;

/// The health-check interval of the tests' tunnels, shortened from the default minute.
const INTERVAL_SECS: u64 = 1;

/// A Sluice far end: a Decrypt tunnel on an engine of its own, in front of `target`.
struct FarEnd {
    engine: Engine,
    settings: TunnelSettings,
    port: u16,
}

impl FarEnd {
    fn start(port: u16, target: u16, key: &[u8]) -> FarEnd {
        let spec = TunnelSpec::new(
            "far end",
            Mode::Decrypt,
            format!("[127.0.0.1]:{port}"),
            format!("[127.0.0.1]:{target}"),
            KeyRef::File(PathBuf::from("unused")),
        );
        let definition = spec.validate().expect("a valid far end");
        let settings = TunnelSettings::new(definition, PresharedKey::from_keyfile_bytes(key));
        let far = FarEnd {
            engine: Engine::start(|| {}).expect("the far end's engine starts"),
            settings,
            port,
        };
        far.run(true);
        far
    }

    /// Starts (`true`) or stops the far end, and waits until it listens or no longer does.
    fn run(&self, run: bool) {
        self.engine
            .apply(Desired {
                tunnels: vec![DesiredTunnel {
                    settings: self.settings.clone(),
                    run,
                    restart: Restart::Never,
                }],
                ending: Ending::Close,
            })
            .expect("the far end applies");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() != run {
            assert!(
                Instant::now() < deadline,
                "the far end did not {} within 10 s",
                if run { "listen" } else { "stop listening" }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A config dir with one Encrypt tunnel "redis" to `far_port`, started with the app, its
/// far end checked every [`INTERVAL_SECS`].
fn config_with_tunnel(dir: &Path, local: u16, far_port: u16, key: &[u8]) {
    let key_path = sluice_testkit::write_key(dir, "redis.key", key);
    let mut spec = TunnelSpec::new(
        "redis",
        Mode::Encrypt,
        format!("[127.0.0.1]:{local}"),
        format!("[127.0.0.1]:{far_port}"),
        KeyRef::File(key_path),
    );
    spec.autostart = true;
    spec.health_check_secs = Some(INTERVAL_SECS);
    Config {
        tunnels: vec![spec],
        ..Config::default()
    }
    .save_atomic(&dir.join("config.ron"))
    .unwrap();
}

fn harness_in(dir: &Path) -> Harness<'static, SluiceApp> {
    app_harness(services(
        dir,
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ))
}

/// Steps frames until some widget's text contains `needle`; fails after `within`, saying
/// what showed instead. Returns how long it took.
fn wait_to_show(harness: &mut Harness<'_, SluiceApp>, needle: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        harness.run_ok();
        if shows(harness, needle) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{needle:?} did not show within {within:?}; the row says {:?}",
            row_text(harness)
        );
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
}

/// The list row's state-and-health label of the one tunnel, as drawn.
fn row_text(harness: &Harness<'_, SluiceApp>) -> Vec<String> {
    harness
        .query_all_by_label_contains("  ·  ")
        .filter_map(|node| node.value())
        .collect()
}

fn select(harness: &mut Harness<'_, SluiceApp>, name: &str) {
    harness.get_by_role_and_label(Role::Button, name).click();
    harness.run_ok();
}

#[test]
fn start_checks_the_far_end_at_once_however_long_the_interval() {
    let key = [5u8; 32];
    let echo = echo_server();
    let far_port = free_port();
    let _far = FarEnd::start(far_port, echo.port(), &key);
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    config_with_tunnel(dir.path(), local, far_port, &key);
    // Checked hourly and not started with the app: only Start can make it check now.
    let config_path = dir.path().join("config.ron");
    let mut config = Config::load(&config_path).unwrap();
    config.tunnels[0].autostart = false;
    config.tunnels[0].health_check_secs = Some(3600);
    config.save_atomic(&config_path).unwrap();
    let mut harness = harness_in(dir.path());
    harness.run_ok();

    select(&mut harness, "redis");
    click(&mut harness, "▶ Start");
    let took = wait_to_show(&mut harness, "listening  ·  ok, ", Duration::from_secs(10));
    assert!(took < Duration::from_secs(10), "{took:?}");
    let status = harness.state().model.status("redis").unwrap().clone();
    assert_eq!(
        status.counters.total_connections, 0,
        "no client traffic: the check Start asked for found it"
    );
    assert!(
        !harness.state().check_history("redis").is_empty(),
        "the engine ran a check"
    );
}

#[test]
fn a_far_end_that_stops_shows_down_with_its_cause_then_ok_when_back() {
    let key = [7u8; 32];
    let echo = echo_server();
    let far_port = free_port();
    let far = FarEnd::start(far_port, echo.port(), &key);
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    config_with_tunnel(dir.path(), local, far_port, &key);
    let mut harness = harness_in(dir.path());

    // Started with the app: the first check answers at once.
    wait_until(&mut harness, "the tunnel to listen", |app| {
        matches!(
            app.model.status("redis").map(|s| &s.state),
            Some(TunnelState::Listening { .. })
        )
    });
    wait_to_show(&mut harness, "listening  ·  ok, ", Duration::from_secs(10));
    select(&mut harness, "redis");
    assert!(
        shows(&harness, "the far end has not tried its target yet"),
        "a Sluice far end says what it knows of its target"
    );

    // The far end stops; nobody uses the tunnel. The next check finds it.
    far.run(false);
    let stopped = Instant::now();
    wait_to_show(&mut harness, "far end down since", Duration::from_secs(20));
    let took = stopped.elapsed();
    let cause = format!("nothing listening at [127.0.0.1]:{far_port}");
    assert!(
        row_text(&harness).iter().any(|t| t.contains(&cause)),
        "{:?}",
        row_text(&harness)
    );
    // One interval, plus the probe and a few frames on a busy machine.
    assert!(
        took < Duration::from_secs(INTERVAL_SECS + 3),
        "down showed {took:?} after the far end stopped, more than one {INTERVAL_SECS} s interval"
    );
    // The detail panel has the whole sentence and what to do.
    assert!(shows(&harness, "nothing is listening at"));
    assert!(shows(&harness, "Start spiped or sluiced on the far end"));
    let status = harness.state().model.status("redis").unwrap().clone();
    assert_eq!(
        status.counters.total_connections, 0,
        "no client traffic: the checks found it"
    );

    // Back: ok again, without a client.
    far.run(true);
    wait_to_show(&mut harness, "listening  ·  ok, ", Duration::from_secs(20));
    assert!(!shows(&harness, "far end down since"));

    // A real connection through it: the far end now says it reaches its target.
    assert_eq!(
        round_trip(([127, 0, 0, 1], local).into(), b"through a healthy far end"),
        b"through a healthy far end"
    );
    wait_to_show(
        &mut harness,
        "the far end reaches its target",
        Duration::from_secs(20),
    );
    // The latency chart's history: good checks, and the failed ones as gaps.
    let checks = harness.state().check_history("redis");
    assert!(checks.iter().any(|s| s.round_trip.is_none()), "{checks:?}");
    assert!(checks.iter().any(|s| s.round_trip.is_some()), "{checks:?}");
}

#[test]
fn a_far_end_with_another_key_shows_wrong_key() {
    let echo = echo_server();
    let far_port = free_port();
    let _far = FarEnd::start(far_port, echo.port(), &[9u8; 32]);
    let dir = tempfile::tempdir().unwrap();
    config_with_tunnel(dir.path(), free_port(), far_port, &[7u8; 32]);
    let mut harness = harness_in(dir.path());
    wait_to_show(&mut harness, "wrong key", Duration::from_secs(20));
    assert!(
        row_text(&harness)
            .iter()
            .any(|t| t.contains("far end down since") && t.ends_with(": wrong key")),
        "{:?}",
        row_text(&harness)
    );
    select(&mut harness, "redis");
    assert!(shows(&harness, "compare the fingerprints"));
    assert_eq!(
        echo.connections(),
        0,
        "a Sluice far end is never asked to reach its target for a check"
    );
}

#[test]
fn a_stopped_or_unchecked_tunnel_says_nothing_of_its_far_end() {
    let dir = tempfile::tempdir().unwrap();
    let far_port = free_port();
    config_with_tunnel(dir.path(), free_port(), far_port, &[7u8; 32]);
    let mut config = Config::load(&dir.path().join("config.ron")).unwrap();
    config.tunnels[0].autostart = false;
    config.save_atomic(&dir.path().join("config.ron")).unwrap();
    let mut harness = harness_in(dir.path());
    harness.run_ok();
    assert!(row_text(&harness).is_empty(), "{:?}", row_text(&harness));
    assert!(!shows(&harness, "checking…") && !shows(&harness, "far end down"));
}

#[test]
fn the_editor_keeps_the_health_check_setting() {
    let dir = tempfile::tempdir().unwrap();
    config_with_tunnel(dir.path(), free_port(), free_port(), &[7u8; 32]);
    let config_path = dir.path().join("config.ron");
    let mut config = Config::load(&config_path).unwrap();
    config.tunnels[0].autostart = false;
    config.save_atomic(&config_path).unwrap();
    let on_disk = || Config::load(&config_path).unwrap().tunnels[0].health_check_secs;
    let mut harness = harness_in(dir.path());
    harness.run_ok();

    // A Decrypt tunnel dials no far end: the setting is not offered.
    click(&mut harness, "+ New tunnel");
    set_text(&mut harness, "Name", "metrics");
    assert!(
        harness
            .query_by_role_and_label(Role::SpinButton, "Far-end check")
            .is_some()
    );
    click(
        &mut harness,
        "Decrypt (spiped -d) — encrypted connections arrive here and go on to a local service",
    );
    assert!(
        harness
            .query_by_role_and_label(Role::SpinButton, "Far-end check")
            .is_none()
    );
    click(&mut harness, "Cancel");

    harness
        .state_mut()
        .execute(TunnelCommand::Edit("redis".into()).into());
    harness.run_ok();
    let interval = harness.get_by_role_and_label(Role::SpinButton, "Far-end check");
    assert_eq!(
        interval.value().as_deref(),
        Some("1 s"),
        "as the file has it"
    );
    interval.set_value_accesskit(45.0);
    harness.run_ok();
    // Enter ends the field's editing, as a person's typing would.
    harness.key_press(egui::Key::Enter);
    harness.run_ok();
    click(&mut harness, "Save");
    wait_until(&mut harness, "the interval to be saved", |_| {
        on_disk() == Some(45)
    });

    // Off: saved as None; the interval comes back when turned on again.
    harness
        .state_mut()
        .execute(TunnelCommand::Edit("redis".into()).into());
    harness.run_ok();
    click_in_view(&mut harness, Role::CheckBox, "on, every");
    click(&mut harness, "Save");
    wait_until(&mut harness, "checks off to be saved", |_| {
        on_disk().is_none()
    });
    harness
        .state_mut()
        .execute(TunnelCommand::Edit("redis".into()).into());
    harness.run_ok();
    assert_eq!(
        harness
            .get_by_role_and_label(Role::SpinButton, "Far-end check")
            .value()
            .as_deref(),
        Some("60 s"),
        "the engine's default interval, to turn on again"
    );
    click_in_view(&mut harness, Role::CheckBox, "on, every");
    click(&mut harness, "Save");
    wait_until(&mut harness, "the default to be saved", |_| {
        on_disk() == Some(sluice_engine::DEFAULT_HEALTH_CHECK.as_secs())
    });
}
