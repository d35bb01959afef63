//! The main window as a new user meets it: at 900×600 the list fits and a running
//! tunnel's event log is in view; notices count repeats and successes fade; the "no
//! keychain" note can be dismissed; tunnels go out to a file without keys and come back
//! in only when every key is there; start at login writes a valid autostart entry.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::path::Path;
use std::sync::Arc;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sluice::SluiceApp;
use sluice::command::{TunnelCommand, ViewCommand};
use sluice::error::KeychainUnavailable;
use sluice::file_dialogs::DialogAnswer;
use sluice::services::{Keychain, LoginEntries, Services};
use sluice_engine::{Config, KeyRef};
use support::*;

fn sized(services: Services, size: [f32; 2]) -> Harness<'static, SluiceApp> {
    Harness::builder()
        .with_size(size)
        .with_max_steps(400)
        .build_eframe(move |cc| SluiceApp::new(cc, services).expect("the app starts"))
}

fn generate_key(harness: &mut Harness<'_, SluiceApp>, name: &str) {
    click(harness, "🔑 Keys");
    click(harness, "Generate…");
    set_text(harness, "Key name", name);
    click(harness, "Generate");
    wait_until(harness, "the key", |app| {
        app.model.files.keys.get(name).is_some()
    });
    harness.get_by_label("Close window").click();
    harness.run_ok();
}

fn add_tunnel(harness: &mut Harness<'_, SluiceApp>, name: &str, listen: u16, target: u16) {
    click(harness, "+ New tunnel");
    set_text(harness, "Name", name);
    click(
        harness,
        "Decrypt (spiped -d) — encrypted connections arrive here and go on to a local service",
    );
    set_text(harness, "Listen on", &format!("[127.0.0.1]:{listen}"));
    set_text(harness, "Target", &format!("[127.0.0.1]:{target}"));
    click(harness, "Save");
    wait_until(harness, "the tunnel in the list", |app| {
        app.view.editor.is_none() && app.model.tunnel(name).is_some()
    });
}

#[test]
fn at_900x600_the_list_fits_and_the_event_log_is_in_view() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = sized(
        services(
            dir.path(),
            mock_keychain(),
            Arc::new(ScriptedDialogs::default()),
        ),
        [900.0, 600.0],
    );
    harness.run_ok();
    generate_key(&mut harness, "k");
    let echo = echo_server();
    add_tunnel(
        &mut harness,
        "a tunnel with a rather long name",
        free_port(),
        echo.port(),
    );
    add_tunnel(&mut harness, "second", free_port(), echo.port());
    harness
        .get_by_role_and_label(Role::Button, "a tunnel with a rather long name")
        .click();
    harness.run_ok();
    click(&mut harness, "▶ Start");
    assert!(
        shows_soon(&mut harness, "listening on"),
        "the event log line"
    );

    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(900.0, 600.0));
    let log_line = harness.get_by_label_contains("listening on").rect();
    assert!(
        window.contains_rect(log_line),
        "the event log is in view: {log_line:?}"
    );
    let detail_left = harness.get_by_label("Traffic").rect().left();
    let routes: Vec<_> = harness
        .query_all_by_label_contains("  ➡  [127.0.0.1]")
        .filter(|route| route.rect().left() < detail_left)
        .collect();
    assert_eq!(routes.len(), 2, "both rows show their addresses");
    for route in routes {
        assert!(
            route.rect().right() <= detail_left,
            "a list row reaches under the detail panel: {:?}",
            route.rect()
        );
    }
}

#[test]
fn notices_count_repeats_and_successes_fade() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    // An error stays until dismissed.
    harness
        .state_mut()
        .execute(TunnelCommand::ImportFrom(dir.path().join("no such file.ron")).into());
    wait_until(&mut harness, "the import's error", |app| {
        app.model.notices.len() == 1
    });
    // The same success twice is one line with a count.
    harness
        .state_mut()
        .execute(ViewCommand::Copy("a".into()).into());
    harness
        .state_mut()
        .execute(ViewCommand::Copy("b".into()).into());
    harness.run_ok();
    assert_eq!(harness.state().model.notices.len(), 2);
    assert!(shows(&harness, "Show all 2"), "two notices, one line");
    assert!(shows(&harness, "copied to the clipboard (×2)"));
    // A success goes by itself.
    wait_until(&mut harness, "the success to fade", |app| {
        app.model.notices.len() == 1 && app.model.notices[0].error
    });
    assert!(shows(&harness, "nothing imported: cannot read"));
}

#[test]
fn the_keychain_note_can_be_dismissed_and_stays_in_the_keys_window() {
    let dir = tempfile::tempdir().unwrap();
    let keychain = Keychain::Unavailable(KeychainUnavailable::LeftOut(
        "no Secret Service in this test".into(),
    ));
    let mut harness = app_harness(services(
        dir.path(),
        keychain,
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    assert!(shows(&harness, "No keychain available"));
    click(&mut harness, "Got it");
    assert!(!shows(&harness, "No keychain available"));
    click(&mut harness, "🔑 Keys");
    assert!(
        shows(&harness, "No keychain available"),
        "the keys window keeps it"
    );
    assert!(
        harness.state().ui.settings.keychain_note_dismissed,
        "kept across runs"
    );
}

fn export_tunnels(harness: &mut Harness<'_, SluiceApp>, dialogs: &ScriptedDialogs, to: &Path) {
    dialogs.answer(DialogAnswer::Picked(to.to_owned()));
    click(harness, "Menu");
    click(harness, "Export tunnels…");
    wait_until(harness, "the exported file", |_| to.exists());
}

fn import_tunnels(harness: &mut Harness<'_, SluiceApp>, dialogs: &ScriptedDialogs, from: &Path) {
    dialogs.answer(DialogAnswer::Picked(from.to_owned()));
    click(harness, "Menu");
    click(harness, "Import tunnels…");
}

#[test]
fn tunnels_go_out_without_keys_and_come_in_only_with_every_key() {
    // Here: a key and a tunnel using it, exported (and the key exported on its own).
    let here = tempfile::tempdir().unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut harness = app_harness(services(here.path(), mock_keychain(), dialogs.clone()));
    harness.run_ok();
    generate_key(&mut harness, "shared");
    add_tunnel(&mut harness, "db", free_port(), free_port());
    let file = here.path().join("tunnels.ron");
    export_tunnels(&mut harness, &dialogs, &file);
    let text = std::fs::read_to_string(&file).unwrap();
    let fingerprint = harness
        .state()
        .model
        .files
        .keys
        .get("shared")
        .unwrap()
        .fingerprint
        .clone();
    assert!(
        text.contains(&fingerprint),
        "the key is named by its fingerprint"
    );
    let key_file = here.path().join("shared.key");
    dialogs.answer(DialogAnswer::Picked(key_file.clone()));
    click(&mut harness, "🔑 Keys");
    click(&mut harness, "Export…");
    wait_until(&mut harness, "the key file", |_| key_file.exists());
    let key_bytes = std::fs::read(&key_file).unwrap();
    let hex: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!text.contains(&hex), "no key material in the tunnel file");
    drop(harness);

    // There: without the key, the import says which key is missing and imports nothing.
    let there = tempfile::tempdir().unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut harness = app_harness(services(there.path(), mock_keychain(), dialogs.clone()));
    harness.run_ok();
    generate_key(&mut harness, "other");
    import_tunnels(&mut harness, &dialogs, &file);
    let missing = format!("\"shared\" (fingerprint {fingerprint})");
    assert!(
        shows_soon(&mut harness, &missing),
        "the missing key is named"
    );
    assert!(
        harness.state().model.files.tunnels.is_empty(),
        "nothing imported"
    );

    // With the key imported under another name, the tunnel comes in using it.
    click(&mut harness, "🔑 Keys");
    click(&mut harness, "Import…");
    dialogs.answer(DialogAnswer::Picked(key_file.clone()));
    click(&mut harness, "Choose…");
    set_text(&mut harness, "Key name", "from the other machine");
    click(&mut harness, "Import");
    wait_until(&mut harness, "the key", |app| {
        app.model.files.keys.get("from the other machine").is_some()
    });
    harness.get_by_label("Close window").click();
    harness.run_ok();
    import_tunnels(&mut harness, &dialogs, &file);
    wait_until(&mut harness, "the confirmation", |app| {
        app.view.import_review.is_some()
    });
    click(&mut harness, "Import");
    wait_until(&mut harness, "the imported tunnel", |app| {
        app.model.tunnel("db").is_some()
    });
    let spec = harness.state().model.tunnel("db").unwrap().clone();
    assert_eq!(spec.key, KeyRef::Keychain("from the other machine".into()));
    let config_path = there.path().join("config.ron");
    wait_until(&mut harness, "the saved config", |_| {
        Config::load(&config_path).is_ok_and(|c| c.tunnels.len() == 1)
    });
}

#[test]
fn start_at_login_writes_a_valid_autostart_entry_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let autostart = dir.path().join("autostart");
    let mut services = services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    );
    services.desktop.login_entries = LoginEntries::In(autostart.clone());
    let mut harness = app_harness(services);
    harness.run_ok();
    click(&mut harness, "Menu");
    click(&mut harness, "Settings…");
    click(&mut harness, "Start Sluice at login");
    let entry = autostart.join("org.sluice.Sluice.desktop");
    wait_until(&mut harness, "the autostart entry", |_| entry.exists());
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(
        text.contains("--hidden\n"),
        "starts hidden in the tray: {text}"
    );
    let validate = std::process::Command::new("desktop-file-validate")
        .arg(&entry)
        .output()
        .expect("desktop-file-validate runs (desktop-file-utils)");
    assert!(
        validate.status.success() && validate.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&validate.stdout)
    );
    click(&mut harness, "Start Sluice at login");
    wait_until(&mut harness, "the entry to go", |_| !entry.exists());
}
