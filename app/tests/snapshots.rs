//! Pictures of the main screens, rendered through wgpu on lavapipe (software Vulkan) and
//! compared with the committed PNGs in tests/snapshots. `UPDATE_SNAPSHOTS=true cargo test`
//! rewrites them after an intended change.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use sluice_engine::{Config, KeyRef, Mode, TunnelSpec};
use support::*;

const KEYS: &str = r#"(
    version: 1,
    keys: [
        (name: "redis prod", fingerprint: "3f2a:9c41:07be:d5e0:1184:62af:c3d9:5b70", location: Keychain("redis prod"), created_unix: 0),
        (name: "metrics", fingerprint: "a81d:44c2:9e03:7f16:b2d8:0c95:e6a4:1377", location: File("/home/me/.config/sluice/keys/metrics.key"), created_unix: 0),
    ],
)"#;

/// A config dir with three tunnels and two keys, none running.
fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    let mut redis = TunnelSpec::new(
        "redis",
        Mode::Encrypt,
        "[127.0.0.1]:16379",
        "db.example.org:8025",
        KeyRef::Keychain("redis prod".into()),
    );
    redis.forward_secrecy = sluice_engine::ForwardSecrecy::Required;
    config.tunnels.push(redis);
    config.tunnels.push(TunnelSpec::new(
        "metrics",
        Mode::Decrypt,
        "[0.0.0.0]:18025",
        "[127.0.0.1]:9100",
        KeyRef::File(PathBuf::from("/home/me/.config/sluice/keys/metrics.key")),
    ));
    config.tunnels.push(TunnelSpec::new(
        "ipmi bmc",
        Mode::Encrypt,
        "/run/user/1000/ipmi.sock",
        "[2001:db8::10]:8623",
        KeyRef::Keychain("redis prod".into()),
    ));
    config.save_atomic(&dir.path().join("config.ron")).unwrap();
    std::fs::write(dir.path().join("keys.ron"), KEYS).unwrap();
    dir
}

#[test]
fn main_screens() {
    let dir = populated();
    let mut harness = snapshot_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    harness.snapshot("tunnel_list");

    harness.get_by_role_and_label(Role::Button, "redis").click();
    harness.run_ok();
    harness.get_by_label("Far end").click();
    harness.run_ok();
    harness.snapshot("far_end");

    harness.get_by_label("🔑 Keys").click();
    harness.run_ok();
    harness.snapshot("keys");
}

/// The main window at the default size and at the smallest, with a tunnel selected and
/// several notices (each tunnel's key is missing here, so Start all fails three times):
/// the list needs no horizontal scroll and the notices take one line. (The event log of a
/// running tunnel at 900×600 is checked in tests/ui.rs: its times would differ per run.)
#[test]
fn main_window_at_1280x800_and_900x600() {
    let mut results = egui_kittest::SnapshotResults::new();
    for (size, name) in [
        ([1280.0, 800.0], "main_1280x800"),
        ([900.0, 600.0], "main_900x600"),
    ] {
        let dir = populated();
        let mut harness = sized_snapshot_harness(
            services(
                dir.path(),
                mock_keychain(),
                Arc::new(ScriptedDialogs::default()),
            ),
            size,
        );
        harness.run_ok();
        harness.get_by_role_and_label(Role::Button, "redis").click();
        harness.run_ok();
        // One at a time, so the notices come in the same order every run.
        for started in 1..=3 {
            harness
                .get_all_by_label("▶")
                .nth(started - 1)
                .unwrap()
                .click();
            wait_until(&mut harness, "the tunnel's notice", |app| {
                app.model.notices.len() == started && app.model.mirror.loading.is_empty()
            });
        }
        assert!(
            shows(&harness, "Show all 3"),
            "the notices collapse into one line"
        );
        harness.snapshot(name);
        results.extend_harness(&mut harness);
    }
    results.unwrap();
}

#[test]
fn editor_with_problems() {
    let dir = populated();
    let mut harness = snapshot_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    harness.get_by_label("+ New tunnel").click();
    harness.run_ok();
    set_text(&mut harness, "Name", "redis");
    set_text(&mut harness, "Listen on", "[127.0.0.1]:99999");
    set_text(&mut harness, "Target", "db.example.org");
    harness.snapshot("editor_problems");
}

#[test]
fn first_start_and_broken_config() {
    let empty = tempfile::tempdir().unwrap();
    let keychain = sluice::services::Keychain::Unavailable(
        sluice::error::KeychainUnavailable::LeftOut("no Secret Service on the session bus".into()),
    );
    let mut harness = snapshot_harness(services(
        empty.path(),
        keychain,
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    harness.snapshot("first_start_no_keychain");

    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("config.ron"),
        "(version: 1, tunnels: [(name: ",
    )
    .unwrap();
    let mut harness = snapshot_harness(services(
        broken.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    // The banner shows the file's path, which differs per run: mask nothing, but render
    // from a stable parent directory name by checking only that the banner exists here.
    assert!(shows(&harness, "could not be read"));
}

/// The confirmation an import of tunnels shows before it adds anything: a tunnel on every
/// interface forwarding to an ssh agent's socket, one reaching another machine, one on
/// loopback only. (Built from a fixed path, so the picture is the same every run.)
#[test]
fn import_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys.ron"), KEYS).unwrap();
    let mut harness = snapshot_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    let key =
        r#"key: (name: "redis", fingerprint: Some("3f2a:9c41:07be:d5e0:1184:62af:c3d9:5b70"))"#;
    let text = format!(
        r#"(version: 1, tunnels: [
            ({key}, tunnel: (name: "agent", mode: Decrypt, listen: "[0.0.0.0]:16022",
                target: "/run/user/1000/ssh-agent.socket", key: Keychain("x"), autostart: true,
                far_end: Some((ssh: "admin@evil.example", far_address: "[127.0.0.1]:22")))),
            ({key}, tunnel: (name: "redis", mode: Encrypt, listen: "[127.0.0.1]:16379",
                target: "db.example.org:8025", key: Keychain("x"))),
            ({key}, tunnel: (name: "metrics", mode: Decrypt, listen: "[127.0.0.1]:18025",
                target: "[127.0.0.1]:9100", key: Keychain("x"))),
        ])"#
    );
    let incoming = sluice::tunnel_file::import(
        std::path::Path::new("/home/me/Downloads/tunnels.ron"),
        &text,
        &harness.state().model.files.keys,
        &[],
    )
    .unwrap();
    harness.state_mut().view.import_review = Some(incoming);
    harness.run_ok();
    assert!(shows(&harness, "Import 3 tunnel(s) from tunnels.ron?"));
    harness.snapshot("import_confirmation");
}
