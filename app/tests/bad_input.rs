//! Bad input the app reads or is given: key files that are missing, a directory or a
//! dangling link, and a damaged key list. Each is reported naming the file, nothing is
//! added on a failed import, and a damaged key list is never overwritten.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::sync::Arc;

use sluice::file_dialogs::DialogAnswer;
use support::*;

fn import(
    harness: &mut egui_kittest::Harness<'_, sluice::SluiceApp>,
    dialogs: &ScriptedDialogs,
    path: &std::path::Path,
    name: &str,
) {
    click(harness, "Import…");
    dialogs.answer(DialogAnswer::Picked(path.to_owned()));
    click(harness, "Choose…");
    set_text(harness, "Key name", name);
    click(harness, "Import");
}

#[test]
fn bad_key_files_are_named_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config");
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut harness = app_harness(services(&config_dir, mock_keychain(), dialogs.clone()));
    harness.run_ok();
    click(&mut harness, "🔑 Keys");

    let link = dir.path().join("link.key");
    std::os::unix::fs::symlink(dir.path().join("gone.key"), &link).unwrap();
    for (path, words) in [
        (dir.path().join("missing.key"), "does not exist"),
        (dir.path().to_owned(), "is a directory"),
        (link, "symbolic link"),
    ] {
        let shown = path.display().to_string();
        import(&mut harness, &dialogs, &path, "bad");
        wait_until(&mut harness, "the import error naming the file", |app| {
            app.model
                .notices
                .iter()
                .any(|n| n.error && n.text.contains(&shown) && n.text.contains(words))
        });
        assert!(
            harness.state().model.files.keys.get("bad").is_none(),
            "{shown} was imported"
        );
        // Start the next attempt from a closed form.
        harness.state_mut().view.key_form = None;
        harness.run_ok();
    }
    assert!(
        !config_dir.join("keys.ron").exists(),
        "a key list was written for nothing"
    );
}

#[test]
fn a_damaged_key_list_is_shown_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let keys = dir.path().join("keys.ron");
    let damaged = "(keys: [(name: \"half";
    std::fs::write(&keys, damaged).unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut harness = app_harness(services(dir.path(), mock_keychain(), dialogs));
    harness.run_ok();
    assert!(
        harness
            .state()
            .model
            .files
            .keys_broken
            .as_ref()
            .is_some_and(|m| {
                let m = m.to_string();
                m.contains(&keys.display().to_string()) && m.contains("damaged")
            }),
        "{:?}",
        harness.state().model.files.keys_broken
    );
    // Generating a key works in memory, but the damaged list on disk stays as it was.
    click(&mut harness, "🔑 Keys");
    click(&mut harness, "Generate…");
    set_text(&mut harness, "Key name", "new");
    click(&mut harness, "Generate");
    wait_until(&mut harness, "the refusal to save the key list", |app| {
        app.model
            .notices
            .iter()
            .any(|n| n.error && n.text.contains("key list not saved"))
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), damaged);
}

#[test]
fn a_tunnel_file_or_key_list_beyond_1_mib_is_refused_naming_the_file_and_the_limit() {
    use sluice::bounded_read::{MAX_KEY_INDEX_LEN, MAX_TUNNEL_FILE_LEN};
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    // Valid files padded with spaces: only their size is wrong.
    let padded = |text: &str, len: u64| format!("{text}{}", " ".repeat(len as usize - text.len()));
    let keys = config_dir.join("keys.ron");
    let key_list = padded("(version: 1, keys: [])", MAX_KEY_INDEX_LEN + 1);
    std::fs::write(&keys, &key_list).unwrap();
    let mut harness = app_harness(services(
        &config_dir,
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    let shown = keys.display().to_string();
    assert!(
        harness
            .state()
            .model
            .files
            .keys_broken
            .as_ref()
            .is_some_and(|m| {
                let m = m.to_string();
                m.contains(&shown) && m.contains("larger than 1 MiB")
            }),
        "{:?}",
        harness.state().model.files.keys_broken
    );
    assert!(shows(&harness, "larger than 1 MiB"), "the banner says so");

    let file = dir.path().join("tunnels.ron");
    std::fs::write(
        &file,
        padded("(version: 1, tunnels: [])", MAX_TUNNEL_FILE_LEN + 1),
    )
    .unwrap();
    let shown = file.display().to_string();
    harness
        .state_mut()
        .execute(sluice::command::TunnelCommand::ImportFrom(file.clone()).into());
    wait_until(&mut harness, "the import error naming the file", |app| {
        app.model.notices.iter().any(|n| {
            n.error
                && n.text.contains(&shown)
                && n.text.contains("larger than 1 MiB")
                && n.text.contains("tunnel file")
        })
    });
    assert!(harness.state().model.files.tunnels.is_empty());
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), key_list);
}
