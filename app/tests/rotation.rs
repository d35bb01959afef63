//! A key rotation in the app, driven through the editor: a Decrypt tunnel given the key
//! being replaced as its previous key lets clients of both keys through, counts them per
//! key in the detail panel, and refuses the old key once the previous key is set to none.
//! The clients are encrypting tunnels of a second, in-process engine, each with one key.

// Unix only: these tests use the test kit's sockets. The app is built for Windows and
// macOS, not run there.
#![cfg(unix)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sluice::SluiceApp;
use sluice::file_dialogs::DialogAnswer;
use sluice::tunnel_form::mode_choice_label;
use sluice_engine::{
    Address, Config, Desired, DesiredTunnel, Ending, Engine, KeyRef, Mode, PresharedKey, Restart,
    TunnelDefinition, TunnelSettings, TunnelState,
};
use support::*;

const SLOW: Duration = Duration::from_secs(20);

fn import_key(
    harness: &mut Harness<'_, SluiceApp>,
    dialogs: &ScriptedDialogs,
    path: &Path,
    name: &str,
) {
    click(harness, "Import…");
    dialogs.answer(DialogAnswer::Picked(path.to_owned()));
    click(harness, "Choose…");
    set_text(harness, "Key name", name);
    click(harness, "Import");
    wait_until(harness, "the imported key", |app| {
        app.model.files.keys.get(name).is_some()
    });
}

/// The key list's entry for `name` as the editor's pickers show it.
fn key_choice_label(harness: &Harness<'_, SluiceApp>, name: &str) -> String {
    let info = harness.state().model.files.keys.get(name).unwrap();
    let short: Vec<&str> = info.fingerprint.split(':').take(2).collect();
    format!("{name}  ({})", short.join(":"))
}

/// Steps frames until a widget shows, for at most `within`; whether it did.
fn appears(
    harness: &mut Harness<'_, SluiceApp>,
    role: Role,
    label: &str,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        harness.run_ok();
        if harness.query_by_role_and_label(role, label).is_some() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
}

fn pick_previous_key(harness: &mut Harness<'_, SluiceApp>, choice: &str) {
    const MENU: &str = "Previous key (accepted during a rotation)";
    assert!(
        appears(harness, Role::ComboBox, MENU, SLOW),
        "the editor shows {MENU:?}"
    );
    // A click toggles the list; one that found it still marked open from the last pick
    // closes it, and the next opens it.
    for _ in 0..2 {
        harness.get_by_role_and_label(Role::ComboBox, MENU).click();
        if appears(harness, Role::Button, choice, Duration::from_secs(2)) {
            break;
        }
    }
    harness.get_by_role_and_label(Role::Button, choice).click();
    harness.run_ok();
}

/// An encrypting tunnel of its own engine, holding the key in `key_file`, to `target`;
/// returns the engine (the tunnel runs as long as it lives) and where clients connect.
fn client(name: &str, key_file: &Path, target: SocketAddr) -> (Engine, SocketAddr) {
    let engine = Engine::start(|| {}).unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let definition = TunnelDefinition::new(
        name,
        Mode::Encrypt,
        Address::Ip(listen),
        Address::Ip(target),
    );
    let key = PresharedKey::from_keyfile_bytes(&std::fs::read(key_file).unwrap());
    engine
        .apply(Desired {
            tunnels: vec![DesiredTunnel {
                settings: TunnelSettings::new(definition, key),
                run: true,
                restart: Restart::Never,
            }],
            ending: Ending::Close,
        })
        .unwrap();
    assert!(
        sluice_testkit::wait_until(SLOW, || engine
            .status(name)
            .is_some_and(|s| matches!(s.state, TunnelState::Listening { .. }))),
        "the {name} client tunnel listens"
    );
    (engine, listen)
}

#[test]
fn clients_of_the_previous_and_the_current_key_get_through_until_the_rotation_ends() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let old_file = sluice_testkit::random_key(&keys, "old.key");
    let new_file = sluice_testkit::random_key(&keys, "new.key");
    let stranger_file = sluice_testkit::random_key(&keys, "stranger.key");
    let dialogs = Arc::new(ScriptedDialogs::default());
    let config_dir = dir.path().join("config");
    let mut harness = app_harness(services(&config_dir, mock_keychain(), dialogs.clone()));
    harness.run_ok();

    // The new key first: a new tunnel starts with the first key of the list.
    click(&mut harness, "🔑 Keys");
    import_key(&mut harness, &dialogs, &new_file, "new");
    import_key(&mut harness, &dialogs, &old_file, "old");
    harness.get_by_label("Close window").click();
    harness.run_ok();

    let echo = echo_server();
    let port = free_port();
    click(&mut harness, "+ New tunnel");
    set_text(&mut harness, "Name", "server");
    click(&mut harness, mode_choice_label(Mode::Decrypt));
    set_text(&mut harness, "Listen on", &format!("[127.0.0.1]:{port}"));
    set_text(
        &mut harness,
        "Target",
        &format!("[127.0.0.1]:{}", echo.port()),
    );
    let old_choice = key_choice_label(&harness, "old");
    pick_previous_key(&mut harness, &old_choice);
    click(&mut harness, "Save");
    wait_until(&mut harness, "the tunnel in the list", |app| {
        app.view.editor.is_none() && app.model.tunnel("server").is_some()
    });
    let config_path = config_dir.join("config.ron");
    wait_until(&mut harness, "the config with the previous key", |_| {
        Config::load(&config_path).is_ok_and(|c| {
            c.tunnels.len() == 1
                && c.tunnels[0].key == KeyRef::Keychain("new".into())
                && c.tunnels[0].previous_key == Some(KeyRef::Keychain("old".into()))
        })
    });

    click(&mut harness, "▶ Start all");
    wait_until(&mut harness, "the tunnel to listen", |app| {
        matches!(
            app.model.status("server").map(|s| &s.state),
            Some(TunnelState::Listening { .. })
        )
    });
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (_old_engine, via_old) = client("old", &old_file, server);
    let (_new_engine, via_new) = client("new", &new_file, server);
    let (_stranger_engine, via_stranger) = client("stranger", &stranger_file, server);

    assert_eq!(
        round_trip(via_old, b"old key"),
        b"old key",
        "the previous key gets through"
    );
    assert_eq!(
        round_trip(via_new, b"new key"),
        b"new key",
        "the current key gets through"
    );
    assert!(
        round_trip(via_stranger, b"no key").is_empty(),
        "any other key is refused"
    );
    wait_until(&mut harness, "one handshake per key", |app| {
        app.model
            .status("server")
            .is_some_and(|s| s.counters.handshakes == [1, 1])
    });
    harness
        .get_by_role_and_label(Role::Button, "server")
        .click();
    harness.run_ok();
    assert!(
        shows(&harness, "1 with the current key, 1 with the previous key"),
        "the detail panel counts handshakes per key"
    );

    // Finish the rotation: the previous key goes, and the running tunnel takes it.
    click(&mut harness, "Edit");
    pick_previous_key(&mut harness, "none");
    click(&mut harness, "Save");
    wait_until(&mut harness, "the config without the previous key", |_| {
        Config::load(&config_path).is_ok_and(|c| c.tunnels[0].previous_key.is_none())
    });
    wait_until(&mut harness, "the old key refused", |_| {
        round_trip(via_old, b"old key").is_empty()
    });
    assert_eq!(
        round_trip(via_new, b"still in"),
        b"still in",
        "the current key still gets through"
    );
}
