//! A tunnel's connection history in the app (issue 27, item 4): connections through a real
//! pair of tunnels and a stranger's forged handshake show in the History tab, newest
//! first with how they ended; the search narrows them; Export CSV writes what is shown.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use sluice::command::TunnelCommand;
use sluice::file_dialogs::{DialogAnswer, DialogKind};
use sluice_engine::{AuditOutcome, Config, KeyRef, Mode, TunnelSpec, TunnelState};
use support::*;

/// A connection that sends what no holder of the key would (a forged handshake), then
/// reads until the tunnel hangs up.
fn forged_handshake(port: u16) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(&[0x5a; 320]).unwrap();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.read_to_end(&mut Vec::new());
}

#[test]
fn connections_show_in_the_history_the_search_narrows_them_and_csv_has_what_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pair.key");
    std::fs::write(&key, b"the key both ends hold").unwrap();
    let echo = echo_server();
    let (near_port, far_port) = (free_port(), free_port());
    let tunnel = |name: &str, mode, listen: u16, target: u16| {
        let mut spec = TunnelSpec::new(
            name,
            mode,
            format!("[127.0.0.1]:{listen}"),
            format!("[127.0.0.1]:{target}"),
            KeyRef::File(key.clone()),
        );
        // No health checks: only this test's connections reach the far end.
        spec.health_check_secs = None;
        spec
    };
    Config {
        tunnels: vec![
            tunnel("near", Mode::Encrypt, near_port, far_port),
            tunnel("far", Mode::Decrypt, far_port, echo.port()),
        ],
        ..Config::default()
    }
    .save_atomic(&dir.path().join("config.ron"))
    .unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut harness = app_harness(services(dir.path(), mock_keychain(), dialogs.clone()));
    harness.run_ok();
    for name in ["near", "far"] {
        harness
            .state_mut()
            .execute(TunnelCommand::Start(name.into()).into());
    }
    wait_until(&mut harness, "both tunnels to listen", |app| {
        ["near", "far"].iter().all(|name| {
            matches!(
                app.model.status(name).map(|s| &s.state),
                Some(TunnelState::Listening { .. })
            )
        })
    });

    let near = format!("127.0.0.1:{near_port}").parse().unwrap();
    for size in [100usize, 2000, 30_000] {
        let data = vec![7u8; size];
        assert_eq!(round_trip(near, &data), data);
    }
    forged_handshake(far_port);
    wait_until(&mut harness, "four connections at the far end", |app| {
        app.model.mirror.connections.len("far") == 4
    });
    let far: Vec<_> = harness
        .state()
        .model
        .mirror
        .connections
        .newest_first("far")
        .cloned()
        .collect();
    assert!(matches!(far[0].outcome, AuditOutcome::HandshakeFailed(_)));
    assert!(far[1..].iter().all(|r| r.outcome == AuditOutcome::Ok));
    // Newest first; each way's bytes as the far end's target saw them.
    assert_eq!(
        far[1..].iter().map(|r| r.bytes_up).collect::<Vec<_>>(),
        [30_000, 2000, 100]
    );

    // What a person does: select the far end's tunnel, open History, search.
    harness.get_by_role_and_label(Role::Button, "far").click();
    harness.run_ok();
    click(&mut harness, "History");
    assert!(shows(&harness, "4 of 4 connections"));
    assert!(shows(&harness, "handshake_failed (wrong_key)"));
    assert!(
        shows(&harness, "↑29.3 KiB"),
        "the biggest connection's bytes"
    );
    set_text(&mut harness, "Search connections", "WRONG_KEY");
    assert!(shows(&harness, "1 of 4 connections"));
    assert!(!shows(&harness, "↑29.3 KiB"));
    set_text(&mut harness, "Search connections", "outcome=ok");
    assert!(shows(&harness, "3 of 4 connections"));
    set_text(&mut harness, "Search connections", "no such peer");
    assert!(shows(&harness, "No connection matches the search."));

    // Export what the search shows.
    set_text(&mut harness, "Search connections", "wrong_key");
    let csv_path = dir.path().join("far.csv");
    dialogs.answer(DialogAnswer::Picked(csv_path.clone()));
    click(&mut harness, "Export CSV…");
    assert!(
        shows_soon(&mut harness, "1 connection(s) exported to"),
        "the export is confirmed"
    );
    assert_eq!(
        dialogs.asked.lock().unwrap().last(),
        Some(&DialogKind::SaveCsvFile {
            suggested_name: "far-connections.csv".into()
        })
    );
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("ended_utc,tunnel,peer,peer_port,"));
    assert!(
        lines[1].contains(",far,127.0.0.1,") && lines[1].ends_with(",handshake_failed,wrong_key"),
        "{}",
        lines[1]
    );
}
