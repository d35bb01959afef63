//! Keys never leave the keychain or their key file: after generating a key and importing a
//! key file through the UI and saving a tunnel that uses them, neither the key bytes nor K
//! (their SHA-256) appear in any file the app wrote (config, key index) or in any text the
//! UI shows, in raw, hex or base64 form.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::path::Path;
use std::sync::Arc;

use egui_kittest::kittest::Queryable;
use sha2::{Digest, Sha256};
use sluice::file_dialogs::DialogAnswer;
use sluice::services::Keychain;
use sluice_engine::{Config, KeyRef};
use sluice_engine::{KeyStore, KeychainStore};
use support::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Text forms of a secret: hex (both cases), base64, and 16-character windows of each.
fn text_forms(secret: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    let h = hex(secret);
    for text in [h.clone(), h.to_uppercase(), base64(secret)] {
        forms.extend(
            text.as_bytes()
                .windows(16)
                .step_by(4)
                .map(|w| String::from_utf8_lossy(w).into_owned()),
        );
        forms.push(text);
    }
    forms
}

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn key_bytes_stay_out_of_files_and_the_ui() {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config");
    let store: Arc<dyn KeyStore> = Arc::new(KeychainStore::new(
        keyring_core::mock::Store::new().unwrap(),
    ));
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut harness = app_harness(services(
        &config_dir,
        Keychain::Available(Arc::clone(&store)),
        dialogs.clone(),
    ));
    harness.run_ok();

    // A generated key, and an imported key file (text, so any leak is plain to see).
    click(&mut harness, "🔑 Keys");
    click(&mut harness, "Generate…");
    set_text(&mut harness, "Key name", "generated");
    click(&mut harness, "Generate");
    wait_until(&mut harness, "the generated key", |app| {
        app.model.files.keys.get("generated").is_some()
    });
    let imported_file = dir.path().join("imported.key");
    std::fs::write(
        &imported_file,
        b"imported key file: correct horse battery staple 0123456789",
    )
    .unwrap();
    click(&mut harness, "Import…");
    dialogs.answer(DialogAnswer::Picked(imported_file.clone()));
    click(&mut harness, "Choose…");
    set_text(&mut harness, "Key name", "imported");
    click(&mut harness, "Import");
    wait_until(&mut harness, "the imported key", |app| {
        app.model.files.keys.get("imported").is_some()
    });
    assert_eq!(
        harness
            .state()
            .model
            .files
            .keys
            .get("imported")
            .unwrap()
            .location,
        KeyRef::Keychain("imported".into())
    );

    // A tunnel using a key, saved to the config file.
    harness.get_by_label("Close window").click();
    harness.run_ok();
    click(&mut harness, "+ New tunnel");
    set_text(&mut harness, "Name", "uses-a-key");
    set_text(&mut harness, "Listen on", "[127.0.0.1]:40111");
    set_text(&mut harness, "Target", "[127.0.0.1]:40112");
    click(&mut harness, "Save");
    let config_path = config_dir.join("config.ron");
    wait_until(&mut harness, "the saved config", |_| {
        Config::load(&config_path).is_ok_and(|c| c.tunnels.len() == 1)
    });
    click(&mut harness, "🔑 Keys");

    let secrets: Vec<(String, Vec<u8>)> = ["generated", "imported"]
        .iter()
        .flat_map(|name| {
            let bytes = store.load(name).unwrap().to_vec();
            let k = Sha256::digest(&bytes).to_vec();
            [
                (format!("{name} key bytes"), bytes),
                (format!("{name} K"), k),
            ]
        })
        .collect();

    // Files the app wrote: the config, the key index, anything else in its directory.
    let mut files = Vec::new();
    all_files(&config_dir, &mut files);
    assert!(files.iter().any(|f| f.ends_with("config.ron")));
    assert!(files.iter().any(|f| f.ends_with("keys.ron")));
    for file in &files {
        let content = std::fs::read(file).unwrap();
        for (what, secret) in &secrets {
            assert!(
                !content.windows(secret.len()).any(|w| w == &secret[..]),
                "{} holds the raw {what}",
                file.display()
            );
            for form in text_forms(secret) {
                assert!(
                    !content.windows(form.len()).any(|w| w == form.as_bytes()),
                    "{} holds the {what} as {form:?}",
                    file.display()
                );
            }
        }
    }
    // Text the UI shows (the keys window with fingerprints is open).
    for (what, secret) in &secrets {
        for form in text_forms(secret) {
            assert!(
                harness.query_all_by_label_contains(&form).next().is_none(),
                "the UI shows the {what} as {form:?}"
            );
        }
    }
    assert!(shows(&harness, "generated") && shows(&harness, "imported"));
}
