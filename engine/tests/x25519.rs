//! Sluice's opt-in X25519 handshake end to end over loopback: two `sluiced --x25519`, the
//! engine library (as the app runs it) against `sluiced`, a mismatch with the classic
//! handshake (on either side, and with stock spiped) failing within the handshake timeout
//! with a message that names the cause, and the same tampering cases as the classic one.

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]
#![cfg(target_os = "linux")]

mod support;

use std::time::Duration;

use sluice_engine::{Engine, KeyAgreement, Mode, TunnelDefinition, TunnelSettings, TunnelState};
use support::*;

const SLOW: Duration = Duration::from_secs(30);
/// Nonce (32) + signed X25519 key (64), each way.
const HANDSHAKE_BYTES: u64 = 96;

#[test]
fn two_sluiced_with_x25519_move_data_with_half_close() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["--x25519"],
        dir.path(),
    );
    let (_client, client) = sluiced(
        "-e",
        LOCALHOST_V4,
        &server,
        &key,
        &["--x25519", "-g"],
        dir.path(),
    );
    let data = test_data(2 * 1024 * 1024, 3);
    let got = exchange_with(&client, &data, SLOW);
    assert_echoed("sluiced --x25519 pair, 2 MiB", &data, &got);
}

#[test]
fn engine_library_tunnel_talks_x25519_to_sluiced() {
    let dir = temp_dir();
    let key_path = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key_path,
        &["--x25519"],
        dir.path(),
    );

    let engine = Engine::start(|| {}).unwrap();
    let listen = free_addr(LOCALHOST_V4);
    let key = sluice_engine::read_keyfile(&key_path).unwrap().key;
    let mut tunnel = TunnelDefinition::new(
        "app tunnel",
        Mode::Encrypt,
        listen.spiped().parse().unwrap(),
        server.spiped().parse().unwrap(),
    );
    tunnel.key_agreement = KeyAgreement::X25519;
    let settings = TunnelSettings::new(tunnel, key);
    run_tunnels(&engine, vec![settings]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(
        engine.status("app tunnel").map(|s| s.state),
        Some(TunnelState::Listening { .. })
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine's tunnel did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let data = test_data(256 * 1024, 4);
    let got = exchange_with(&listen, &data, SLOW);
    assert_echoed("engine --x25519 -> sluiced -d --x25519", &data, &got);
    let counters = engine.status("app tunnel").unwrap().counters;
    assert_eq!(counters.bytes_up, data.len() as u64);
    assert_eq!(counters.total_handshake_failures(), 0);
}

#[test]
fn x25519_client_against_classic_server_fails_within_the_timeout_and_says_why() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    // Classic sluiced -d: it waits for 288 bytes and gets 64; its -o 1 ends the wait.
    let (server_proc, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["-o", "1"],
        dir.path(),
    );
    let (client_proc, client) = sluiced(
        "-e",
        LOCALHOST_V4,
        &server,
        &key,
        &["--x25519", "-o", "1"],
        dir.path(),
    );
    assert_refused(
        "x25519 -> classic sluiced",
        &client,
        &echo,
        Duration::from_secs(4),
    );
    assert!(
        client_proc.wait_for_log("X25519", Duration::from_secs(3)),
        "the client's log does not name X25519:\n{}",
        client_proc.stderr()
    );
    assert!(
        server_proc.wait_for_log("X25519", Duration::from_secs(3)),
        "the server's log does not name X25519:\n{}",
        server_proc.stderr()
    );

    // Stock spiped -d: same outcome.
    let (_spiped, spiped_server) = spiped(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["-o", "1"],
        dir.path(),
    );
    let (_client2, client2) = sluiced(
        "-e",
        LOCALHOST_V4,
        &spiped_server,
        &key,
        &["--x25519", "-o", "1"],
        dir.path(),
    );
    assert_refused(
        "x25519 -> stock spiped -d",
        &client2,
        &echo,
        Duration::from_secs(4),
    );
}

#[test]
fn classic_client_against_x25519_server_is_rejected_and_says_why() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (server_proc, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["--x25519", "-o", "1"],
        dir.path(),
    );
    let (_client, client) = spiped("-e", LOCALHOST_V4, &server, &key, &["-o", "1"], dir.path());
    assert_refused(
        "spiped -e -> sluiced -d --x25519",
        &client,
        &echo,
        Duration::from_secs(4),
    );
    assert!(
        server_proc.wait_for_log("does not use the X25519 handshake", Duration::from_secs(3)),
        "the server's log does not explain the mismatch:\n{}",
        server_proc.stderr()
    );
}

#[test]
fn wrong_key_is_rejected() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let other = random_key(dir.path(), "other");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["--x25519"],
        dir.path(),
    );
    let (_client, client) = sluiced(
        "-e",
        LOCALHOST_V4,
        &server,
        &other,
        &["--x25519"],
        dir.path(),
    );
    assert_refused(
        "x25519 with the wrong key",
        &client,
        &echo,
        Duration::from_secs(5),
    );
    assert_eq!(
        echo.connections(),
        0,
        "an unauthenticated client reached the target"
    );
}

#[test]
fn tampered_handshake_is_rejected_both_ways() {
    for (direction, offset) in [
        (Direction::ClientToServer, 5),  // nonce
        (Direction::ClientToServer, 40), // public key
        (Direction::ClientToServer, 90), // its MAC
        (Direction::ServerToClient, 70), // the server's MAC
    ] {
        let dir = temp_dir();
        let key = random_key(dir.path(), "key");
        let echo = Echo::tcp(LOCALHOST_V4);
        let (_server, server) = sluiced(
            "-d",
            LOCALHOST_V4,
            &echo.addr,
            &key,
            &["--x25519"],
            dir.path(),
        );
        let relay = Tamper::start(server, direction, offset);
        let (_client, client) = sluiced(
            "-e",
            LOCALHOST_V4,
            &relay.addr,
            &key,
            &["--x25519"],
            dir.path(),
        );
        let what = format!("handshake byte {offset} altered {direction:?}");
        let before = echo.bytes();
        let got = exchange_with(&client, &test_data(4096, 8), SLOW);
        assert!(got.bytes.is_empty(), "{what}: data came back");
        assert!(got.end.closed(), "{what}: not closed");
        assert_eq!(echo.bytes(), before, "{what}: data reached the target");
    }
}

#[test]
fn tampered_data_cuts_the_connection_at_the_altered_packet() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (server_proc, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["--x25519"],
        dir.path(),
    );
    // The third packet from the client, well inside its ciphertext.
    let relay = Tamper::start(
        server,
        Direction::ClientToServer,
        HANDSHAKE_BYTES + 2 * 1060 + 100,
    );
    let (_client, client) = sluiced(
        "-e",
        LOCALHOST_V4,
        &relay.addr,
        &key,
        &["--x25519"],
        dir.path(),
    );
    let data = test_data(16 * 1024, 9);
    let got = exchange_with(&client, &data, SLOW);
    let delivered = echo.received();
    assert!(
        delivered.len() <= 2 * 1024,
        "delivered {} bytes past the altered packet",
        delivered.len()
    );
    assert_eq!(
        &data[..delivered.len()],
        &delivered[..],
        "what was delivered is exact"
    );
    assert!(got.end.closed());
    assert!(
        server_proc.wait_for_log(
            "nothing after that packet was forwarded",
            Duration::from_secs(3)
        ),
        "{}",
        server_proc.stderr()
    );
}
