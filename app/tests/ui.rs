//! The real app driven like a person would: clicks and typing through egui_kittest, the
//! real engine moving real bytes on loopback, keyring-core's mock store for the keychain
//! and scripted file dialogs.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use sluice::error::KeychainUnavailable;
use sluice::file_dialogs::DialogAnswer;
use sluice::services::Keychain;
use sluice_engine::{Config, EventKind, KeyRef, Mode, TunnelSpec, TunnelState};
use support::*;

fn generate_key_through_the_ui(
    harness: &mut egui_kittest::Harness<'_, sluice::SluiceApp>,
    name: &str,
) {
    click(harness, "🔑 Keys");
    click(harness, "Generate…");
    set_text(harness, "Key name", name);
    click(harness, "Generate");
    wait_until(harness, "the key to be generated", |app| {
        app.model.files.keys.get(name).is_some()
    });
}

fn create_tunnel_through_the_ui(
    harness: &mut egui_kittest::Harness<'_, sluice::SluiceApp>,
    name: &str,
    mode: Mode,
    listen: &str,
    target: &str,
) {
    click(harness, "+ New tunnel");
    set_text(harness, "Name", name);
    if mode == Mode::Decrypt {
        click(
            harness,
            "Decrypt (spiped -d) — encrypted connections arrive here and go on to a local service",
        );
    }
    set_text(harness, "Listen on", listen);
    set_text(harness, "Target", target);
    click(harness, "Save");
    wait_until(harness, "the tunnel to be in the list", |app| {
        app.view.editor.is_none() && app.model.tunnel(name).is_some()
    });
}

#[test]
fn create_key_and_two_tunnels_then_push_bytes_through_them() {
    let dir = tempfile::tempdir().unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut harness = app_harness(services(dir.path(), mock_keychain(), dialogs));
    harness.run_ok();
    assert!(shows(&harness, "No tunnels yet"));

    generate_key_through_the_ui(&mut harness, "demo");
    assert_eq!(
        harness.state().model.files.keys.keys[0].location,
        KeyRef::Keychain("demo".into())
    );
    click(&mut harness, "✖"); // dismiss the "generated" notice; the keys window stays
    harness.get_by_label("Close window").click();
    harness.run_ok();

    let echo = echo_server();
    let server_port = free_port();
    let client_port = free_port();
    create_tunnel_through_the_ui(
        &mut harness,
        "server",
        Mode::Decrypt,
        &format!("[127.0.0.1]:{server_port}"),
        &format!("[127.0.0.1]:{}", echo.port()),
    );
    create_tunnel_through_the_ui(
        &mut harness,
        "client",
        Mode::Encrypt,
        &format!("[127.0.0.1]:{client_port}"),
        &format!("[127.0.0.1]:{server_port}"),
    );
    // Both tunnels use the generated key by default, and the config file has them.
    let config_path = dir.path().join("config.ron");
    wait_until(&mut harness, "the config file with both tunnels", |_| {
        Config::load(&config_path).is_ok_and(|c| c.tunnels.len() == 2)
    });
    let saved = Config::load(&config_path).unwrap();
    assert!(
        saved
            .tunnels
            .iter()
            .all(|t| t.key == KeyRef::Keychain("demo".into()))
    );

    click(&mut harness, "▶ Start all");
    wait_until(&mut harness, "both tunnels to listen", |app| {
        ["server", "client"].iter().all(|name| {
            matches!(
                app.model.status(name).map(|s| &s.state),
                Some(TunnelState::Listening { .. })
            )
        })
    });
    assert!(shows(&harness, "listening"));

    let data: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i * 7 + i / 1024) as u8)
        .collect();
    let back = round_trip(format!("127.0.0.1:{client_port}").parse().unwrap(), &data);
    assert!(
        back == data,
        "echo through both tunnels returned {} of {} bytes",
        back.len(),
        data.len()
    );

    let client = "client";
    wait_until(
        &mut harness,
        "the counters and the chart to show the traffic",
        |app| {
            let Some(status) = app.model.status(client) else {
                return false;
            };
            status.counters.bytes_up == data.len() as u64
                && status.counters.bytes_down == data.len() as u64
                && status.counters.total_connections == 1
                && app.rate_history(client).iter().any(|s| s.up > 0.0)
        },
    );
    wait_until(
        &mut harness,
        "the log to show the closed connection",
        |app| {
            app.model.mirror.logs.get(client).is_some_and(|log| {
            log.iter().any(|e| matches!(e.kind, EventKind::ConnectionClosed { bytes_up, fault: None, .. } if bytes_up == data.len() as u64))
        })
        },
    );

    // The detail panel shows the same: select the client tunnel.
    harness
        .get_by_role_and_label(Role::Button, "client")
        .click();
    harness.run_ok();
    assert!(shows(&harness, "⬆ 256.0 KiB"), "totals in the detail panel");
    assert!(shows(&harness, "closed after"), "the event log");
    assert!(shows(&harness, "0 active of 100, 1 since start"));

    click(&mut harness, "■ Stop all");
    wait_until(&mut harness, "both tunnels to stop", |app| {
        app.model
            .files
            .tunnels
            .iter()
            .all(|t| !app.model.is_running(&t.name))
    });
}

#[test]
fn editor_shows_problems_as_you_type_and_refuses_to_save() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    harness.run_ok();
    click(&mut harness, "+ New tunnel");
    set_text(&mut harness, "Listen on", "[127.0.0.1]:99999");
    set_text(&mut harness, "Target", "server.example");
    assert!(shows(&harness, "give the tunnel a name") || shows(&harness, "name"));
    assert!(shows(&harness, "99999"), "bad port is reported");
    assert!(
        shows(&harness, "has no port"),
        "missing target port is reported"
    );
    assert!(shows(&harness, "fix the fields marked in red to save"));

    // A listen port another program holds.
    set_text(&mut harness, "Name", "web");
    set_text(
        &mut harness,
        "Listen on",
        &format!("[127.0.0.1]:{}", taken.local_addr().unwrap().port()),
    );
    set_text(&mut harness, "Target", "server.example:8025");
    // The port is checked off the UI thread; its answer shows a few frames later.
    assert!(shows_soon(&mut harness, "already used by another program"));

    click(&mut harness, "Save");
    assert!(
        harness.state().view.editor.is_some(),
        "Save is disabled while there are problems"
    );
    assert!(harness.state().model.files.tunnels.is_empty());
}

#[test]
fn each_opening_of_the_editor_starts_at_the_top_of_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    // A short window, so that the fields scroll.
    harness.set_size(egui::vec2(1280.0, 560.0));
    harness.run_ok();
    let name_top = |harness: &egui_kittest::Harness<'_, sluice::SluiceApp>| {
        harness
            .get_by_role_and_label(Role::TextInput, "Name")
            .rect()
            .top()
    };
    click(&mut harness, "+ New tunnel");
    let at_the_top = name_top(&harness);
    harness
        .get_by_role_and_label(Role::CheckBox, "Autostart")
        .scroll_to_me();
    harness.run_ok();
    assert!(name_top(&harness) < at_the_top, "the fields scrolled down");
    click(&mut harness, "Cancel");

    click(&mut harness, "+ New tunnel");
    assert_eq!(
        name_top(&harness),
        at_the_top,
        "the next opening starts at the top"
    );
}

#[test]
fn a_corrupt_config_is_shown_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.ron");
    let broken = "(\n    version: 1,\n    tunnels: [\n        (name: \"half written\"";
    std::fs::write(&path, broken).unwrap();
    let mut harness = app_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    assert!(shows(&harness, "The tunnel list could not be read"));
    assert!(
        shows(&harness, &path.display().to_string()),
        "the banner names the file"
    );

    // The app keeps working; a new tunnel lives in memory and is not written over the file.
    click(&mut harness, "+ New tunnel");
    set_text(&mut harness, "Name", "still works");
    set_text(
        &mut harness,
        "Listen on",
        &format!("[127.0.0.1]:{}", free_port()),
    );
    set_text(&mut harness, "Target", "server.example:8025");
    set_text(&mut harness, "Key", "/tmp/some.key");
    click(&mut harness, "Save");
    wait_until(&mut harness, "the refusal to save", |app| {
        app.model
            .notices
            .iter()
            .any(|n| n.error && n.text.contains("left untouched"))
    });
    assert!(harness.state().model.tunnel("still works").is_some());
    // The refusal comes before any write is queued: there is nothing to wait for.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);

    // Fixed on disk, then reloaded: the file's tunnels are back.
    let mut fixed = Config::default();
    fixed.tunnels.push(TunnelSpec::new(
        "from disk",
        Mode::Encrypt,
        "[127.0.0.1]:7000",
        "server.example:8025",
        KeyRef::File(PathBuf::from("/tmp/k")),
    ));
    fixed.save_atomic(&path).unwrap();
    click(&mut harness, "⟳ Reload");
    wait_until(&mut harness, "the reloaded tunnels", |app| {
        app.model.tunnel("from disk").is_some()
    });
    assert!(!shows(&harness, "The tunnel list could not be read"));
}

#[test]
fn far_end_command_matches_the_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    let mut spec = TunnelSpec::new(
        "redis",
        Mode::Encrypt,
        "[127.0.0.1]:6379",
        "db.example.org:8025",
        KeyRef::File(PathBuf::from("/home/me/redis.key")),
    );
    spec.forward_secrecy = sluice_engine::ForwardSecrecy::Required;
    config.tunnels.push(spec);
    config.save_atomic(&dir.path().join("config.ron")).unwrap();
    let mut harness = app_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    harness.get_by_role_and_label(Role::Button, "redis").click();
    harness.run_ok();
    click(&mut harness, "Far end");
    let expected = "spiped -d -s '[0.0.0.0]:8025' -t '[127.0.0.1]:6379' -k redis.key -g";
    assert!(shows(&harness, expected), "far-end command shown");
    assert!(shows(&harness, "sluiced -d -s '[0.0.0.0]:8025'"));

    // Correcting the far end's service address changes the command.
    set_text(
        &mut harness,
        "Service on the far end (its spiped -t)",
        "[127.0.0.1]:6380",
    );
    assert!(shows(&harness, "-t '[127.0.0.1]:6380'"));
    click(&mut harness, "📋 Copy spiped command");
    assert!(
        harness
            .state()
            .model
            .notices
            .iter()
            .any(|n| n.text.contains("copied"))
    );
}

#[test]
fn without_a_keychain_keys_are_key_files_chosen_through_the_dialog() {
    let dir = tempfile::tempdir().unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    let key_path = dir.path().join("generated.key");
    dialogs.answer(DialogAnswer::Picked(key_path.clone()));
    let keychain = Keychain::Unavailable(KeychainUnavailable::LeftOut(
        "no Secret Service in this test".into(),
    ));
    let mut harness = app_harness(services(dir.path(), keychain, dialogs.clone()));
    harness.run_ok();
    assert!(shows(&harness, "No keychain available"));

    click(&mut harness, "🔑 Keys");
    click(&mut harness, "Generate…");
    set_text(&mut harness, "Key name", "filekey");
    click(&mut harness, "Save as…");
    wait_until(
        &mut harness,
        "the dialog's path in the form",
        |app| matches!(&app.view.key_form, Some(sluice::model::KeyForm::Generate { path, .. }) if !path.is_empty()),
    );
    click(&mut harness, "Generate");
    wait_until(&mut harness, "the key", |app| {
        app.model.files.keys.get("filekey").is_some()
    });
    let info = harness
        .state()
        .model
        .files
        .keys
        .get("filekey")
        .unwrap()
        .clone();
    assert_eq!(info.location, KeyRef::File(key_path.clone()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read(&key_path).unwrap().len(), 32);

    // A dialog that cannot be shown is reported, and the typed path still works.
    click(&mut harness, "Import…");
    dialogs.answer(DialogAnswer::Unavailable);
    click(&mut harness, "Choose…");
    wait_until(&mut harness, "the notice", |app| {
        app.view.dialogs_unavailable
    });
    assert!(shows(&harness, "type the path"));
    set_text(&mut harness, "Key file", &key_path.display().to_string());
    set_text(&mut harness, "Key name", "same file");
    click(&mut harness, "Import");
    wait_until(&mut harness, "the import", |app| {
        app.model.files.keys.get("same file").is_some()
    });
    assert!(shows(&harness, "is the same key as"));
}

#[test]
fn test_connection_reports_ok_and_wrong_key_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let keychain = mock_keychain();
    let mut harness = app_harness(services(
        dir.path(),
        keychain,
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    generate_key_through_the_ui(&mut harness, "right");
    generate_key_through_the_ui(&mut harness, "wrong");
    harness.get_by_label("Close window").click();
    let echo = echo_server();
    let server_port = free_port();
    create_tunnel_through_the_ui(
        &mut harness,
        "far end",
        Mode::Decrypt,
        &format!("[127.0.0.1]:{server_port}"),
        &format!("[127.0.0.1]:{}", echo.port()),
    );
    let far = "far end";
    harness
        .state_mut()
        .execute(sluice::command::TunnelCommand::Start(far.into()).into());
    wait_until(&mut harness, "the far end to listen", |app| {
        matches!(
            app.model.status(far).map(|s| &s.state),
            Some(TunnelState::Listening { .. })
        )
    });

    click(&mut harness, "+ New tunnel");
    set_text(&mut harness, "Name", "probe");
    set_text(
        &mut harness,
        "Listen on",
        &format!("[127.0.0.1]:{}", free_port()),
    );
    set_text(
        &mut harness,
        "Target",
        &format!("[127.0.0.1]:{server_port}"),
    );
    click(&mut harness, "Test connection");
    wait_until(&mut harness, "the verdict", |app| {
        matches!(
            app.model
                .mirror
                .probes
                .get(&sluice::model::ProbeKey::Editor),
            Some(Some(_))
        )
    });
    assert!(shows(&harness, "OK: handshake completed in"), "right key");

    // Same settings with the other key.
    harness.state_mut().view.editor.as_mut().unwrap().key =
        sluice::tunnel_form::KeyChoice::Known("wrong".into());
    click(&mut harness, "Test connection");
    wait_until(
        &mut harness,
        "the verdict",
        |app| matches!(app.model.mirror.probes.get(&sluice::model::ProbeKey::Editor), Some(Some(o)) if !o.is_ok()),
    );
    assert!(shows(&harness, "Rejected"), "wrong key is rejected");
    assert!(shows(&harness, "different key"));
}

/// A tunnel file as a hostile sender would write it: a tunnel that starts by itself,
/// listens on every interface and forwards to the user's ssh agent, with a far-end record
/// that pre-fills where "Set up" sends the key; and a harmless one on loopback.
fn planted_tunnel_file(fingerprint: Option<&str>, exposed: u16, local: u16) -> String {
    let fingerprint = fingerprint.map_or("None".to_owned(), |f| format!("Some({f:?})"));
    format!(
        r#"(
    version: 1,
    tunnels: [
        (
            key: (name: "mine", fingerprint: {fingerprint}),
            tunnel: (
                name: "agent",
                mode: Decrypt,
                listen: "[0.0.0.0]:{exposed}",
                target: "/run/user/1000/ssh-agent.socket",
                key: File("/home/attacker/agent.key"),
                autostart: true,
                far_end: Some((ssh: "attacker@evil.example", far_address: "[127.0.0.1]:22")),
            ),
        ),
        (
            key: (name: "mine", fingerprint: {fingerprint}),
            tunnel: (
                name: "web",
                mode: Encrypt,
                listen: "[127.0.0.1]:{local}",
                target: "[127.0.0.1]:8025",
                key: Keychain("mine"),
            ),
        ),
    ],
)"#
    )
}

fn import_through_the_menu(
    harness: &mut egui_kittest::Harness<'_, sluice::SluiceApp>,
    dialogs: &ScriptedDialogs,
    file: &std::path::Path,
) {
    dialogs.answer(DialogAnswer::Picked(file.to_owned()));
    click(harness, "Menu");
    click(harness, "Import tunnels…");
}

#[test]
fn an_import_is_confirmed_first_and_plants_nothing_that_starts_or_reaches_out() {
    let dir = tempfile::tempdir().unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut harness = app_harness(services(dir.path(), mock_keychain(), dialogs.clone()));
    harness.run_ok();
    generate_key_through_the_ui(&mut harness, "mine");
    click(&mut harness, "✖"); // the "generated" notice
    harness.get_by_label("Close window").click();
    harness.run_ok();
    let keys_file = dir.path().join("keys.ron");
    wait_until(&mut harness, "the key list on disk", |_| {
        std::fs::read_to_string(&keys_file).is_ok_and(|t| t.contains("mine"))
    });
    let fingerprint = harness
        .state()
        .model
        .files
        .keys
        .get("mine")
        .unwrap()
        .fingerprint
        .clone();
    let exposed = free_port();
    let local = free_port();
    let config = dir.path().join("config.ron");
    let keys_before = std::fs::read_to_string(&keys_file).unwrap();

    // Without fingerprints the key is not bound by its name: the key is named, nothing
    // is shown for confirmation, nothing is imported.
    let file = dir.path().join("tunnels.ron");
    std::fs::write(&file, planted_tunnel_file(None, exposed, local)).unwrap();
    import_through_the_menu(&mut harness, &dialogs, &file);
    wait_until(&mut harness, "the refusal naming the key", |app| {
        app.model
            .notices
            .iter()
            .any(|n| n.error && n.text.contains("\"mine\" (the file gives no fingerprint"))
    });
    assert!(harness.state().view.import_review.is_none());
    assert!(harness.state().model.files.tunnels.is_empty());
    click(&mut harness, "✖");

    // With them, the confirmation lists what would be added, marked where it reaches
    // beyond loopback.
    std::fs::write(
        &file,
        planted_tunnel_file(Some(&fingerprint), exposed, local),
    )
    .unwrap();
    import_through_the_menu(&mut harness, &dialogs, &file);
    wait_until(&mut harness, "the confirmation", |app| {
        app.view.import_review.is_some()
    });
    assert!(shows(&harness, "Import 2 tunnel(s) from tunnels.ron?"));
    for text in [
        "agent",
        "Decrypt (spiped -d)",
        &format!("[0.0.0.0]:{exposed}"),
        "/run/user/1000/ssh-agent.socket",
        "web",
        "Encrypt (spiped -e)",
        &format!("[127.0.0.1]:{local}"),
        "[127.0.0.1]:8025",
    ] {
        assert!(shows(&harness, text), "the confirmation shows {text}");
    }
    assert_eq!(
        harness
            .query_all_by_label("⚠ not loopback: other machines can connect")
            .count(),
        1,
        "the listen address on every interface is marked, the loopback ones are not"
    );
    assert_eq!(
        harness
            .query_all_by_label("⚠ UNIX socket: a local service, such as an ssh agent")
            .count(),
        1,
        "the UNIX-socket target is marked as such"
    );
    assert_eq!(harness.query_all_by_label_contains("⚠").count(), 2);
    assert!(shows(&harness, "1 marked to start with Sluice in the file"));
    assert!(shows(&harness, "1 named a far end set up over ssh"));

    // Cancel changes nothing.
    click(&mut harness, "Cancel");
    assert!(harness.state().view.import_review.is_none());
    assert!(!shows(&harness, "Import 2 tunnel(s)"), "the dialog is gone");
    assert!(harness.state().model.files.tunnels.is_empty());
    assert!(!config.exists(), "no config was written");
    assert_eq!(std::fs::read_to_string(&keys_file).unwrap(), keys_before);

    // Import adds both, bound to the key of that fingerprint, stopped, without the far end.
    import_through_the_menu(&mut harness, &dialogs, &file);
    wait_until(&mut harness, "the confirmation", |app| {
        app.view.import_review.is_some()
    });
    click(&mut harness, "Import");
    wait_until(&mut harness, "the imported tunnels, saved", |app| {
        app.model.files.tunnels.len() == 2
            && Config::load(&config).is_ok_and(|c| c.tunnels.len() == 2)
    });
    let saved = Config::load(&config).unwrap();
    for spec in &saved.tunnels {
        assert!(!spec.autostart, "{} starts by itself", spec.name);
        assert_eq!(spec.far_end, None, "{} keeps a far end", spec.name);
        assert_eq!(spec.key, KeyRef::Keychain("mine".into()));
        assert_eq!(spec.fingerprint.as_deref(), Some(fingerprint.as_str()));
    }
    assert!(!harness.state().model.any_running(), "nothing was started");
    std::net::TcpListener::bind(("0.0.0.0", exposed)).expect("nothing listens on the exposed port");
}

/// Reload reads the tunnel list again and keeps what did not change running, its open
/// connections included, as SIGHUP does for sluiced; a changed tunnel that runs takes its
/// new settings, and a new one is listed, stopped.
#[test]
fn reload_keeps_untouched_tunnels_and_their_connections() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("shared.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let echo = echo_server();
    let (server_port, client_port, other_port) = (free_port(), free_port(), free_port());
    let spec = |name: &str, mode: Mode, listen: u16, target: String| {
        TunnelSpec::new(
            name,
            mode,
            format!("[127.0.0.1]:{listen}"),
            target,
            KeyRef::File(key.clone()),
        )
    };
    let server = spec(
        "server",
        Mode::Decrypt,
        server_port,
        format!("[127.0.0.1]:{}", echo.port()),
    );
    let client = spec(
        "client",
        Mode::Encrypt,
        client_port,
        format!("[127.0.0.1]:{server_port}"),
    );
    let mut other = spec(
        "other",
        Mode::Decrypt,
        other_port,
        format!("[127.0.0.1]:{}", echo.port()),
    );
    let config_path = dir.path().join("config.ron");
    let write = |tunnels: Vec<TunnelSpec>| {
        Config {
            tunnels,
            ..Config::default()
        }
        .save_atomic(&config_path)
        .unwrap();
    };
    write(vec![server.clone(), client.clone(), other.clone()]);
    let mut harness = app_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    click(&mut harness, "▶ Start all");
    let listening_port =
        |app: &sluice::SluiceApp, name: &str| match app.model.status(name).map(|s| &s.state) {
            Some(TunnelState::Listening {
                address: sluice_engine::Address::Ip(addr),
            }) => Some(addr.port()),
            _ => None,
        };
    wait_until(&mut harness, "the three tunnels to listen", |app| {
        ["server", "client", "other"]
            .iter()
            .all(|name| listening_port(app, name).is_some())
    });
    let mut live = std::net::TcpStream::connect(("127.0.0.1", client_port)).unwrap();
    live.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut round = |text: &[u8]| {
        live.write_all(text).unwrap();
        let mut back = vec![0; text.len()];
        live.read_exact(&mut back).unwrap();
        assert_eq!(back, text);
    };
    round(b"before the reload");

    // On disk, by hand: "other" moves, "added" appears; the pair is as it was.
    let moved = free_port();
    other.listen = format!("[127.0.0.1]:{moved}");
    let added = spec(
        "added",
        Mode::Decrypt,
        free_port(),
        format!("[127.0.0.1]:{}", echo.port()),
    );
    write(vec![server, client, other, added]);
    click(&mut harness, "Menu");
    click(&mut harness, "Reload tunnel list");
    wait_until(&mut harness, "the reloaded list", |app| {
        app.model.tunnel("added").is_some() && listening_port(app, "other") == Some(moved)
    });
    round(b"after the reload: the same connection");
    let app = harness.state();
    assert!(
        !app.model.is_running("added"),
        "a new tunnel is not started"
    );
    let client = app.model.status("client").unwrap();
    assert_eq!(client.counters.total_connections, 1);
    assert_eq!(client.counters.active_connections, 1);
    assert_eq!(listening_port(app, "client"), Some(client_port));
    assert!(
        !app.model.mirror.logs["client"]
            .iter()
            .any(|e| matches!(e.kind, EventKind::Stopped { .. } | EventKind::Updated)),
        "the untouched tunnel was neither stopped nor updated"
    );
}
