//! Key age and rotation reminders in the Keys window: a key listed long ago shows its age,
//! a reminder set through its menu is saved in the key list, and a key older than its
//! reminder is flagged "rotation due".

// Unix only, like the other UI tests. The app is built for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::sync::Arc;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use sluice::keys::{KeyIndex, KeyInfo, now_unix};
use sluice_engine::KeyRef;
use support::*;

#[test]
fn an_old_key_with_a_reminder_is_flagged_for_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = KeyIndex::new();
    index.keys.push(KeyInfo {
        name: "legacy".into(),
        fingerprint: "aa:bb:cc".into(),
        location: KeyRef::Keychain("legacy".into()),
        created_unix: now_unix() - 100 * 86_400,
        rotate_after_days: None,
    });
    let keys_file = dir.path().join("keys.ron");
    std::fs::write(&keys_file, index.to_ron()).unwrap();
    let mut harness = app_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    click(&mut harness, "🔑 Keys");
    assert!(shows(&harness, "100 days"), "the key's age");
    assert!(!shows(&harness, "rotation due"), "no reminder yet");

    harness
        .get_by_role_and_label(Role::ComboBox, "Rotation reminder for legacy")
        .click();
    harness.run_ok();
    harness
        .get_by_role_and_label(Role::Button, "90 days")
        .click();
    harness.run_ok();
    assert!(shows(&harness, "100 days: rotation due"), "flagged");
    wait_until(&mut harness, "the reminder saved in the key list", |_| {
        KeyIndex::load(&keys_file).is_ok_and(|i| {
            i.get("legacy")
                .is_some_and(|k| k.rotate_after_days == Some(90))
        })
    });
    let text = std::fs::read_to_string(&keys_file).unwrap();
    assert!(text.contains("rotate_after_days: Some(90)"), "{text}");
}
