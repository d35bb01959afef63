//! The traffic log under a flood of bad handshakes (issue 11, item 6): the app shows the
//! first failure in full and the rest as one summary in words, while the detail panel's
//! counters still count every one.

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
use sluice_engine::{Config, EventKind, HandshakeFailure, KeyRef, Mode, TunnelSpec, TunnelState};
use support::*;

/// One connection that sends 320 bytes no holder of the key would send (a nonce and a
/// forged signed value), then reads until the tunnel hangs up.
fn forged_handshake(port: u16, seed: u8) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let garbage: Vec<u8> = (0..320u32)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    stream.write_all(&garbage).unwrap();
    let _ = stream.shutdown(Shutdown::Write);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

#[test]
fn a_flood_of_bad_handshakes_is_one_line_and_a_summary_in_the_traffic_log() {
    const FLOOD: u64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("far.key");
    std::fs::write(&key, b"the key no stranger has").unwrap();
    let echo = echo_server();
    let port = free_port();
    Config {
        tunnels: vec![TunnelSpec::new(
            "flooded",
            Mode::Decrypt,
            format!("[127.0.0.1]:{port}"),
            format!("[127.0.0.1]:{}", echo.port()),
            KeyRef::File(key),
        )],
        ..Config::default()
    }
    .save_atomic(&dir.path().join("config.ron"))
    .unwrap();
    let mut harness = app_harness(services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    harness
        .state_mut()
        .execute(TunnelCommand::Start("flooded".into()).into());
    wait_until(&mut harness, "the tunnel to listen", |app| {
        matches!(
            app.model.status("flooded").map(|s| &s.state),
            Some(TunnelState::Listening { .. })
        )
    });

    for i in 0..FLOOD {
        forged_handshake(port, i as u8);
    }
    wait_until(&mut harness, "every failure to be counted", |app| {
        app.model
            .status("flooded")
            .is_some_and(|s| s.counters.total_handshake_failures() == FLOOD)
    });
    // The rest of the spell is summed up at most once a minute, and when the tunnel stops.
    harness
        .state_mut()
        .execute(TunnelCommand::Stop("flooded".into()).into());
    wait_until(&mut harness, "the summary in the log", |app| {
        app.model.mirror.logs.get("flooded").is_some_and(|log| {
            log.iter()
                .any(|e| matches!(e.kind, EventKind::HandshakeFailuresSummarized { .. }))
        })
    });

    let log = &harness.state().model.mirror.logs["flooded"];
    let in_full = log
        .iter()
        .filter(|e| matches!(e.kind, EventKind::HandshakeFailed { .. }))
        .count();
    assert_eq!(in_full, 1, "one failure in full: {log:?}");
    let summaries: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HandshakeFailuresSummarized {
                count, by_cause, ..
            } => Some((*count, by_cause.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        summaries,
        vec![(FLOOD - 1, vec![(HandshakeFailure::WrongKey, FLOOD - 1)])]
    );

    // What a person sees in the detail panel: the summary in words, in the error colour
    // with the other problems, and the counters with every failure.
    harness
        .get_by_role_and_label(Role::Button, "flooded")
        .click();
    harness.run_ok();
    assert!(
        shows(
            &harness,
            &format!("{} more handshake failures in the last", FLOOD - 1)
        ),
        "the summary line in the traffic log"
    );
    assert!(shows(&harness, &format!("({} wrong key)", FLOOD - 1)));
    assert!(
        shows(&harness, "signed with a different key"),
        "the first in full"
    );
    assert!(
        shows(&harness, &format!("{FLOOD} wrong key")),
        "the counters count every failure"
    );
}
