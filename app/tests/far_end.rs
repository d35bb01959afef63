//! The far-end tab against a real OpenSSH server (the engine's test sshd on loopback):
//! pick the host alias from the ssh config, Set up, use the tunnel end to end, Check;
//! the far end's daemon dies, the tunnel's row says so, Check offers Repair, and one click
//! puts it back (touching nothing else in the far end's directory); Remove, all through
//! the buttons, and the config remembers where the far end is.
//!
//! Needs root (sshd, useradd) and `openssh-server` (scripts/install-test-deps).

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use sluice_testkit::sshd;

use std::sync::Arc;
use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sluice::SluiceApp;
use sluice::command::TunnelCommand;
use sluice::services::SshSetup;
use sluice_engine::{Config, FarEndRecord, KeyRef, Mode, TunnelSpec, TunnelState};
use sshd::{ALIAS, Sshd, Trust};
use support::*;

fn far_end_on_disk(config: &std::path::Path) -> Option<FarEndRecord> {
    let config = Config::load(config).unwrap();
    config.tunnels[0].far_end.clone()
}

/// The app with one tunnel, `spec`, in `dir/config.ron`, its far end reached through
/// `sshd`, showing that tunnel's far-end tab.
fn far_end_tab(
    sshd: &Sshd,
    dir: &std::path::Path,
    spec: TunnelSpec,
) -> Harness<'static, SluiceApp> {
    far_end_tab_with(sshd, dir, spec, None)
}

/// [`far_end_tab`], with `sluiced` the app copies to a far end that needs one.
fn far_end_tab_with(
    sshd: &Sshd,
    dir: &std::path::Path,
    spec: TunnelSpec,
    sluiced: Option<std::path::PathBuf>,
) -> Harness<'static, SluiceApp> {
    let name = spec.name.clone();
    Config {
        tunnels: vec![spec],
        ..Config::default()
    }
    .save_atomic(&dir.join("config.ron"))
    .unwrap();
    let mut services = services(dir, mock_keychain(), Arc::new(ScriptedDialogs::default()));
    services.ssh = SshSetup {
        command: Some(sshd.ssh_words()),
        config_file: Some(sshd.ssh_config()),
        sluiced,
    };
    let mut harness = app_harness(services);
    harness.run_ok();
    harness.get_by_role_and_label(Role::Button, &name).click();
    harness.run_ok();
    click(&mut harness, "Far end");
    harness
}

#[test]
fn the_far_end_tab_sets_up_checks_and_removes_the_far_end_over_ssh() {
    let name = "far-end-ui";
    let slug = sluice_engine::far_end_slug(name);
    sshd::clear_leftovers(&slug);
    let sshd = Sshd::start("/usr/bin:/bin", Trust::ServerKey);
    let service = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tunnel.key");
    std::fs::write(&key, b"a key for the far end, 32 bytes!").unwrap();
    let local = free_port();
    let far_port = free_port();
    let config_path = dir.path().join("config.ron");
    let mut spec = TunnelSpec::new(
        name,
        Mode::Encrypt,
        format!("[127.0.0.1]:{local}"),
        format!("[127.0.0.1]:{far_port}"),
        KeyRef::File(key),
    );
    // Checked every second, so the row soon says what happens to the far end.
    spec.health_check_secs = Some(1);
    let mut harness = far_end_tab(&sshd, dir.path(), spec);
    set_text(
        &mut harness,
        "Service on the far end (its spiped -t)",
        &format!("[127.0.0.1]:{}", service.port()),
    );
    // The alias comes from the ssh config, through the Hosts menu.
    wait_until(&mut harness, "the ssh config's aliases", |app| {
        app.model.environment.ssh_hosts.iter().any(|h| h == ALIAS)
    });
    click(&mut harness, "Known hosts");
    click(&mut harness, ALIAS);
    assert_eq!(
        harness.state().model.ssh_destination(
            &harness.state().ui,
            harness.state().model.tunnel(name).unwrap()
        ),
        ALIAS
    );

    click(&mut harness, "Set up");
    wait_for_far_ends(&mut harness, &[name]);
    let run = harness.state().model.mirror.far_end_runs[name].clone();
    assert!(
        matches!(run.finished, Some(Ok(()))),
        "set-up failed: {run:?}\nsshd log:\n{}",
        sshd.log()
    );
    assert_eq!(
        run.steps.len(),
        5,
        "probe, send key, install sluiced (nothing: spiped is there), start, verify: {run:?}"
    );
    assert!(shows(&harness, "The far end is set up on farend."));
    wait_until(&mut harness, "the config to remember the far end", |_| {
        far_end_on_disk(&config_path).is_some()
    });
    let record = far_end_on_disk(&config_path).unwrap();
    assert_eq!(record.ssh, ALIAS);
    assert_eq!(
        record.far_address,
        format!("[127.0.0.1]:{}", service.port())
    );
    assert!(shows(&harness, "Set up on farend"));
    // Editing the tunnel keeps where its far end is.
    harness
        .state_mut()
        .execute(TunnelCommand::Edit(name.into()).into());
    harness
        .state_mut()
        .execute(TunnelCommand::SaveEditor.into());
    harness.run_ok();
    assert_eq!(
        harness.state().model.tunnel(name).unwrap().far_end.as_ref(),
        Some(&record)
    );

    // The tunnel now works end to end through the far end it set up.
    harness
        .state_mut()
        .execute(TunnelCommand::Start(name.into()).into());
    wait_until(&mut harness, "the tunnel to listen", |app| {
        matches!(
            app.model.status(name).map(|s| &s.state),
            Some(TunnelState::Listening { .. })
        )
    });
    let data = b"through the far end that Set up started".repeat(100);
    assert_eq!(round_trip(([127, 0, 0, 1], local).into(), &data), data);

    click(&mut harness, "Check");
    wait_for_far_ends(&mut harness, &[name]);
    assert!(shows(&harness, "The far end on farend works."));
    assert!(!shows(&harness, "Repair"), "nothing to repair");
    wait_until(&mut harness, "the row to say the far end is ok", |app| {
        matches!(
            app.model.far_end_health(name),
            sluice::model::FarEndHealth::Up { .. }
        )
    });

    // The far end's daemon dies (as a reboot stops a daemon with a pid file). A file of
    // someone else's sits in the far end's Sluice directory.
    let stranger = sshd::far_file("not-sluices", "txt");
    std::fs::write(&stranger, "not Sluice's").unwrap();
    let pid = std::fs::read_to_string(sshd::far_file(&slug, "pid"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        std::process::Command::new("kill")
            .arg(&pid)
            .status()
            .unwrap()
            .success()
    );
    assert!(sshd::wait_gone(&pid, Duration::from_secs(10)));
    assert!(shows_soon(&mut harness, "far end down since"));
    assert!(shows(&harness, "nothing listening at"));

    // Check finds it stopped and offers Repair; one click puts it back.
    click(&mut harness, "Check");
    wait_for_far_ends(&mut harness, &[name]);
    let run = harness.state().model.mirror.far_end_runs[name].clone();
    assert!(
        run.finished
            .as_ref()
            .is_some_and(|r| r.as_ref().is_err_and(|e| e.repairable())),
        "{run:?}"
    );
    assert!(shows(&harness, "is stopped or changed"));
    click(&mut harness, "Repair");
    wait_for_far_ends(&mut harness, &[name]);
    let run = harness.state().model.mirror.far_end_runs[name].clone();
    assert!(
        matches!(run.finished, Some(Ok(()))),
        "repair failed: {run:?}\nsshd log:\n{}",
        sshd.log()
    );
    assert_eq!(
        run.steps
            .iter()
            .map(|s| s.step.to_string())
            .collect::<Vec<_>>(),
        [
            "probe",
            "remove",
            "send key",
            "install sluiced",
            "start",
            "verify"
        ]
    );
    assert!(shows(&harness, "The far end on farend is repaired"));
    assert!(!shows(&harness, "is stopped or changed"));
    let new_pid = std::fs::read_to_string(sshd::far_file(&slug, "pid")).unwrap();
    assert_ne!(new_pid.trim(), pid, "a new daemon runs");
    assert!(
        stranger.exists(),
        "repair touched nothing set-up did not make"
    );
    std::fs::remove_file(&stranger).unwrap();
    assert_eq!(
        far_end_on_disk(&config_path),
        Some(record.clone()),
        "the config still knows where the far end is"
    );
    // The row is green again at once (the app asks for a check after a repair), and
    // data goes through.
    assert!(shows_soon(&mut harness, "listening  ·  ok, "));
    assert_eq!(round_trip(([127, 0, 0, 1], local).into(), &data), data);

    click(&mut harness, "Remove");
    wait_for_far_ends(&mut harness, &[name]);
    let run = harness.state().model.mirror.far_end_runs[name].clone();
    assert!(
        matches!(run.finished, Some(Ok(()))),
        "remove failed: {run:?}"
    );
    wait_until(&mut harness, "the config to forget the far end", |_| {
        far_end_on_disk(&config_path).is_none()
    });
    assert!(
        !sshd::far_file(&slug, "key").exists(),
        "the far end's key file is gone"
    );
}

/// "Start on first connection" reaches the far end's set-up: on the test sshd's host
/// (spiped only, and no sluiced here to copy) set-up refuses at the probe, says why in
/// the tab, and the config records nothing; the box stays ticked to try elsewhere.
#[test]
fn start_on_first_connection_is_refused_where_the_far_end_has_no_systemd() {
    let name = "far-end-on-demand-ui";
    let slug = sluice_engine::far_end_slug(name);
    sshd::clear_leftovers(&slug);
    let sshd = Sshd::start("/usr/bin:/bin", Trust::ServerKey);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tunnel.key");
    std::fs::write(&key, b"a key for the far end, 32 bytes!").unwrap();
    let config_path = dir.path().join("config.ron");
    let spec = TunnelSpec::new(
        name,
        Mode::Encrypt,
        format!("[127.0.0.1]:{}", free_port()),
        format!("[127.0.0.1]:{}", free_port()),
        KeyRef::File(key),
    );
    let mut harness = far_end_tab(&sshd, dir.path(), spec);
    set_text(&mut harness, "SSH destination:", ALIAS);
    click(&mut harness, "Start on first connection");
    let app = harness.state();
    assert!(
        app.model
            .on_first_connection(&app.ui, app.model.tunnel(name).unwrap())
    );

    click(&mut harness, "Set up");
    wait_for_far_ends(&mut harness, &[name]);
    let run = harness.state().model.mirror.far_end_runs[name].clone();
    assert!(run.finished.as_ref().is_some_and(Result::is_err), "{run:?}");
    assert_eq!(run.steps.len(), 1, "stopped at the probe: {run:?}");
    assert!(shows(
        &harness,
        "only sluiced takes its listening socket from systemd (start on first connection), and sluiced is not installed on farend"
    ));
    assert!(!sshd::far_file(&slug, "manifest").exists());
    assert_eq!(far_end_on_disk(&config_path), None);
    let app = harness.state();
    assert!(
        app.model
            .on_first_connection(&app.ui, app.model.tunnel(name).unwrap()),
        "still ticked"
    );
}

/// A stock `spiped -e` on loopback with `key`, into `far`; killed when dropped.
fn stock_client(
    key: &std::path::Path,
    far: u16,
    log_dir: &std::path::Path,
) -> (sluice_testkit::Proc, u16) {
    let port = free_port();
    let mut command = std::process::Command::new("spiped");
    command
        .args(["-e", "-F", "-s"])
        .arg(format!("[127.0.0.1]:{port}"))
        .arg("-t")
        .arg(format!("[127.0.0.1]:{far}"))
        .arg("-k")
        .arg(key);
    let proc = sluice_testkit::Proc::spawn("spiped -e", command, log_dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "spiped -e did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (proc, port)
}

/// Rotate key on a tunnel whose far end is stock spiped: a new key in the keychain, the far
/// end repaired as sluiced (copied there: spiped takes one key) with the new key and the
/// old one beside it, this end switched; a teammate's stock spiped client with the old key
/// still gets through until Finish rotation, and is refused after it.
#[test]
fn rotate_key_keeps_old_clients_until_finish_rotation() {
    let Some(sluiced) = built_sluiced() else {
        return;
    };
    let name = "far-end-rotation";
    let slug = sluice_engine::far_end_slug(name);
    sshd::clear_leftovers(&slug);
    let sshd = Sshd::start("/usr/bin:/bin", Trust::ServerKey);
    let service = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let old_key = dir.path().join("tunnel.key");
    std::fs::write(&old_key, b"the old key of this tunnel, 32 B").unwrap();
    let (local, far_port) = (free_port(), free_port());
    let spec = TunnelSpec::new(
        name,
        Mode::Encrypt,
        format!("[127.0.0.1]:{local}"),
        format!("[127.0.0.1]:{far_port}"),
        KeyRef::File(old_key.clone()),
    );
    let mut harness = far_end_tab_with(&sshd, dir.path(), spec, Some(sluiced));
    set_text(
        &mut harness,
        "Service on the far end (its spiped -t)",
        &format!("[127.0.0.1]:{}", service.port()),
    );
    set_text(&mut harness, "SSH destination:", ALIAS);
    click(&mut harness, "Set up");
    wait_for_far_ends(&mut harness, &[name]);
    harness
        .state_mut()
        .execute(TunnelCommand::Start(name.into()).into());
    let listening = |app: &SluiceApp| {
        matches!(
            app.model.status(name).map(|s| &s.state),
            Some(TunnelState::Listening { .. })
        )
    };
    wait_until(&mut harness, "the tunnel to listen", listening);
    let data = b"through the tunnel".repeat(50);
    assert_eq!(round_trip(([127, 0, 0, 1], local).into(), &data), data);
    let (old_client, old_port) = stock_client(&old_key, far_port, dir.path());

    click(&mut harness, "Rotate key…");
    wait_for_far_ends(&mut harness, &[name]);
    let run = harness.state().model.mirror.far_end_runs[name].clone();
    assert!(
        matches!(run.finished, Some(Ok(()))),
        "{run:?}\nsshd log:\n{}",
        sshd.log()
    );
    let said: Vec<String> = run.steps.iter().map(ToString::to_string).collect();
    let said = said.join("\n");
    assert!(
        said.contains("install sluiced: ok: copied this machine's sluiced"),
        "{said}"
    );
    assert!(said.contains("the key being replaced beside it"), "{said}");
    assert!(shows(&harness, "has the new key, and this end uses it"));
    let spec = harness.state().model.tunnel(name).unwrap().clone();
    let KeyRef::Keychain(new_name) = &spec.key else {
        panic!("the new key is in the keychain: {:?}", spec.key);
    };
    assert!(new_name.starts_with(&format!("{name} ")), "{new_name}");
    assert_eq!(
        spec.far_end.as_ref().and_then(|r| r.previous_key.clone()),
        Some(KeyRef::File(old_key.clone())),
        "the config says the far end still lets the old key in"
    );
    assert!(shows(
        &harness,
        "Rotation under way: the far end still lets the old key in"
    ));

    // This end (now taking its new key) and the old client both get through.
    wait_until(&mut harness, "the tunnel to listen", listening);
    assert_eq!(round_trip(([127, 0, 0, 1], local).into(), &data), data);
    assert_eq!(round_trip(([127, 0, 0, 1], old_port).into(), &data), data);

    click(&mut harness, "Finish rotation");
    wait_for_far_ends(&mut harness, &[name]);
    let run = harness.state().model.mirror.far_end_runs[name].clone();
    assert!(matches!(run.finished, Some(Ok(()))), "{run:?}");
    assert!(shows(&harness, "no longer lets the old key in"));
    let spec = harness.state().model.tunnel(name).unwrap().clone();
    assert_eq!(
        spec.far_end.as_ref().and_then(|r| r.previous_key.clone()),
        None
    );
    assert!(shows(&harness, "Rotate key…"), "a next rotation can start");
    // Only the new key gets in now: this end uses it.
    wait_until(&mut harness, "the tunnel to listen", listening);
    assert_eq!(round_trip(([127, 0, 0, 1], local).into(), &data), data);
    let refused = round_trip(([127, 0, 0, 1], old_port).into(), &data);
    assert!(
        refused.is_empty(),
        "the old key is refused after Finish rotation"
    );
    drop(old_client);

    click(&mut harness, "Remove");
    wait_for_far_ends(&mut harness, &[name]);
}
