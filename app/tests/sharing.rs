//! Sharing a key with a teammate through the app's Keys window, as a person would: Share
//! with a teammate… writes a sealed bundle and shows its passphrase once; Open shared
//! bundle… in another app (its own config and keychain) refuses a wrong passphrase and a
//! file that is not a bundle, then opens it into the same key. A bundle `age -p` made
//! opens too (age reads passphrases from a terminal: it runs on one through `script`).

// Unix only: these tests use the test kit's processes. The app is built for Windows and
// macOS, not run there.
#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sluice::SluiceApp;
use sluice::file_dialogs::{DialogAnswer, DialogKind};
use sluice::services::Keychain;
use sluice_engine::KeyRef;
use support::*;

fn keychain_of(keychain: &Keychain) -> Arc<dyn sluice_engine::KeyStore> {
    keychain.store().unwrap().clone()
}

fn open_bundle_form(
    harness: &mut Harness<'_, SluiceApp>,
    dialogs: &ScriptedDialogs,
    bundle: &Path,
    name: &str,
    passphrase: &str,
) {
    click(harness, "Open shared bundle…");
    dialogs.answer(DialogAnswer::Picked(bundle.to_owned()));
    click(harness, "Choose…");
    set_text(harness, "Key name", name);
    type_passphrase(harness, passphrase);
}

fn type_passphrase(harness: &mut Harness<'_, SluiceApp>, passphrase: &str) {
    let field = harness.get_by_role_and_label(Role::PasswordInput, "Passphrase");
    field.focus();
    field.set_text_value_accesskit(passphrase);
    harness.run_ok();
}

/// Clicks the share button `button`, saves the bundle at `bundle` (the dialog having
/// suggested `suggested`) and returns the passphrase the window shows.
fn share(
    harness: &mut Harness<'_, SluiceApp>,
    dialogs: &ScriptedDialogs,
    button: &str,
    bundle: &Path,
    suggested: &str,
) -> String {
    dialogs.answer(DialogAnswer::Picked(bundle.to_owned()));
    click(harness, button);
    assert_eq!(
        dialogs.asked.lock().unwrap().last(),
        Some(&DialogKind::SaveBundle {
            suggested_name: suggested.into()
        })
    );
    wait_until(harness, "the passphrase window", |app| {
        app.view.shared.is_some()
    });
    let shared = harness.state().view.shared.as_ref().unwrap();
    shared.passphrase.reveal().to_owned()
}

/// Generates key `name` in the Keys window, and waits for it.
fn generate_key(harness: &mut Harness<'_, SluiceApp>, name: &str) {
    click(harness, "Generate…");
    set_text(harness, "Key name", name);
    click(harness, "Generate");
    wait_until(harness, "the key", |app| {
        app.model.files.keys.get(name).is_some()
    });
}

/// An app of its own (config directory and keychain), its Keys window open.
fn app_with_keys(dir: &Path) -> (Harness<'static, SluiceApp>, Arc<ScriptedDialogs>, Keychain) {
    let dialogs = Arc::new(ScriptedDialogs::default());
    let keychain = mock_keychain();
    let mut harness = app_harness(services(dir, keychain.clone(), dialogs.clone()));
    harness.run_ok();
    click(&mut harness, "🔑 Keys");
    (harness, dialogs, keychain)
}

#[test]
fn a_shared_key_shows_its_passphrase_once_and_opens_in_another_app_into_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("db.age");

    // Alice shares a key she generated.
    let (mut alice, alice_dialogs, alice_keychain) = app_with_keys(&dir.path().join("alice"));
    generate_key(&mut alice, "db");
    let passphrase = share(
        &mut alice,
        &alice_dialogs,
        "Share with a teammate…",
        &bundle,
        "db.age",
    );
    assert_eq!(passphrase.split('-').count(), 6, "six words");
    assert!(shows(&alice, &passphrase), "the passphrase is shown");
    assert!(shows(&alice, "by another channel"), "with the advice");
    click(&mut alice, "Copy");
    click(&mut alice, "Done");
    assert!(alice.state().view.shared.is_none());
    assert!(!shows(&alice, &passphrase), "shown once only");
    let key = keychain_of(&alice_keychain).load("db").unwrap();
    let opened = sluice_engine::unseal_key(&std::fs::read(&bundle).unwrap(), &passphrase).unwrap();
    assert_eq!(opened, key, "the bundle holds the key file, byte for byte");
    let fingerprint = alice
        .state()
        .model
        .files
        .keys
        .get("db")
        .unwrap()
        .fingerprint
        .clone();
    let alice_config = std::fs::read_to_string(dir.path().join("alice/keys.ron")).unwrap();
    assert!(
        !alice_config.contains(&passphrase),
        "the passphrase is kept nowhere"
    );

    // Bob opens it: a wrong passphrase changes nothing, and the form stays.
    let (mut bob, bob_dialogs, bob_keychain) = app_with_keys(&dir.path().join("bob"));
    open_bundle_form(
        &mut bob,
        &bob_dialogs,
        &bundle,
        "from alice",
        "not-the-right-words",
    );
    click(&mut bob, "Open");
    assert!(
        shows_soon(&mut bob, "the passphrase does not open this bundle"),
        "a wrong passphrase says so"
    );
    assert!(bob.state().model.files.keys.get("from alice").is_none());
    assert!(keychain_of(&bob_keychain).load("from alice").is_err());
    assert!(
        bob.state().view.key_form.is_some(),
        "the form stays to try again"
    );

    // Pasted with a line break, as passphrases often are.
    type_passphrase(&mut bob, &format!("{passphrase}\n"));
    click(&mut bob, "Open");
    wait_until(&mut bob, "the opened key", |app| {
        app.model.files.keys.get("from alice").is_some()
    });
    let info = bob
        .state()
        .model
        .files
        .keys
        .get("from alice")
        .unwrap()
        .clone();
    assert_eq!(info.fingerprint, fingerprint, "the same key");
    assert_eq!(info.location, KeyRef::Keychain("from alice".into()));
    assert_eq!(keychain_of(&bob_keychain).load("from alice").unwrap(), key);
    assert!(bob.state().view.key_form.is_none());
    assert!(shows(&bob, &fingerprint), "the fingerprint, to compare");
}

#[test]
fn a_file_that_is_not_a_bundle_is_refused_before_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = sluice_testkit::random_key(dir.path(), "plain.key");
    let (mut harness, dialogs, keychain) = app_with_keys(&dir.path().join("app"));
    click(&mut harness, "Open shared bundle…");
    dialogs.answer(DialogAnswer::Picked(key_file.clone()));
    click(&mut harness, "Choose…");
    assert!(
        shows_soon(&mut harness, "this is not an age file"),
        "the key file itself is refused, naming why"
    );
    set_text(&mut harness, "Key name", "plain");
    type_passphrase(&mut harness, "any-words");
    click(&mut harness, "Open");
    assert!(shows_soon(&mut harness, "could not open the shared bundle"));
    assert!(harness.state().model.files.keys.keys.is_empty());
    assert!(keychain_of(&keychain).load("plain").is_err());
}

/// `age -p` on a pseudo-terminal (util-linux's `script`): encrypts `input` to `output`,
/// typing `passphrase` at both prompts, each waited for with a deadline.
fn age_p(input: &Path, output: &Path, passphrase: &str) {
    let line = format!("age -p -o '{}' '{}'", output.display(), input.display());
    let mut child = Command::new("script")
        .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let screen = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        })
    };
    let mut input = child.stdin.take().unwrap();
    let slow = Duration::from_secs(60);
    for prompt in ["Enter passphrase", "Confirm passphrase"] {
        let shown = sluice_testkit::wait_until(slow, || {
            String::from_utf8_lossy(&screen.lock().unwrap()).contains(prompt)
        });
        assert!(
            shown,
            "age -p never asked {prompt:?}: {}",
            String::from_utf8_lossy(&screen.lock().unwrap())
        );
        input
            .write_all(format!("{passphrase}\n").as_bytes())
            .unwrap();
        input.flush().unwrap();
    }
    let mut status = None;
    assert!(
        sluice_testkit::wait_until(slow, || {
            status = child.try_wait().unwrap();
            status.is_some()
        }),
        "age -p did not end"
    );
    drop(input);
    let _ = reader.join();
    assert!(status.unwrap().success(), "age -p failed");
}

#[test]
fn a_bundle_made_by_age_p_opens_into_the_same_key() {
    if !sluice_testkit::require(
        sluice_testkit::have_program("age") && sluice_testkit::have_program("script"),
        "the age tool and script (util-linux)",
        "apt-get install age bsdutils",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key_file = sluice_testkit::random_key(dir.path(), "team.key");
    let bundle = dir.path().join("team.age");
    age_p(
        &key_file,
        &bundle,
        "correct-horse-battery-staple-sluice-test",
    );
    let (mut harness, dialogs, keychain) = app_with_keys(&dir.path().join("app"));
    open_bundle_form(
        &mut harness,
        &dialogs,
        &bundle,
        "team",
        "correct-horse-battery-staple-sluice-test",
    );
    click(&mut harness, "Open");
    wait_until(&mut harness, "the opened key", |app| {
        app.model.files.keys.get("team").is_some()
    });
    let bytes = std::fs::read(&key_file).unwrap();
    assert_eq!(
        &keychain_of(&keychain).load("team").unwrap()[..],
        &bytes[..]
    );
    let expected = sluice_engine::PresharedKey::from_keyfile_bytes(&bytes)
        .fingerprint()
        .to_string();
    assert_eq!(
        harness
            .state()
            .model
            .files
            .keys
            .get("team")
            .unwrap()
            .fingerprint,
        expected
    );
}

/// Share… on a tunnel seals its definition with its key (nothing of this machine's: no
/// far-end record, no key file path); the teammate's Open shared bundle… keeps the key and
/// puts the tunnel through the import's review, bound to that key.
#[test]
fn a_shared_tunnel_arrives_with_its_key_through_the_import_review() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("redis.age");
    let alice_dir = dir.path().join("alice");
    std::fs::create_dir_all(&alice_dir).unwrap();
    let mut spec = sluice_engine::TunnelSpec::new(
        "redis",
        sluice_engine::Mode::Encrypt,
        "[127.0.0.1]:16379",
        "db.example.org:8025",
        KeyRef::Keychain("db".into()),
    );
    spec.far_end = Some(sluice_engine::FarEndRecord {
        ssh: "alice@db.example.org".into(),
        far_address: "[127.0.0.1]:6379".into(),
        on_first_connection: false,
        previous_key: None,
    });
    sluice_engine::Config {
        tunnels: vec![spec],
        ..sluice_engine::Config::default()
    }
    .save_atomic(&alice_dir.join("config.ron"))
    .unwrap();

    let (mut alice, alice_dialogs, _) = app_with_keys(&alice_dir);
    generate_key(&mut alice, "db");
    click(&mut alice, "Close window");
    alice.get_by_role_and_label(Role::Button, "redis").click();
    alice.run_ok();
    let passphrase = share(&mut alice, &alice_dialogs, "Share…", &bundle, "redis.age");
    assert!(shows(&alice, "Sealed: tunnel \"redis\" and its key \"db\""));
    let opened =
        sluice_engine::unseal_bundle(&std::fs::read(&bundle).unwrap(), &passphrase).unwrap();
    let definition = opened.tunnels.unwrap();
    assert!(definition.contains("\"redis\""), "{definition}");
    for local in ["alice@db.example.org", "far_end"] {
        assert!(!definition.contains(local), "{local} in:\n{definition}");
    }
    click(&mut alice, "Done");

    // Bob opens it: the key, then the tunnel to review and import.
    let (mut bob, bob_dialogs, _) = app_with_keys(&dir.path().join("bob"));
    open_bundle_form(&mut bob, &bob_dialogs, &bundle, "from alice", &passphrase);
    click(&mut bob, "Open");
    wait_until(&mut bob, "the tunnel's review", |app| {
        app.view.import_review.is_some()
    });
    assert!(bob.state().model.files.keys.get("from alice").is_some());
    assert!(
        bob.state().model.tunnel("redis").is_none(),
        "not before confirming"
    );
    click(&mut bob, "Import");
    let tunnel = bob.state().model.tunnel("redis").unwrap().clone();
    assert_eq!(tunnel.key, KeyRef::Keychain("from alice".into()));
    assert_eq!(tunnel.target, "db.example.org:8025");
    assert!(tunnel.far_end.is_none() && !tunnel.autostart);
}
