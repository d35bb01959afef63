//! Interoperability of `sluiced` with Debian's spiped and spipe 1.6.2, end to end over
//! loopback: Sluice as client of `spiped -d`, `spiped -e` and `spipe` as clients of
//! Sluice, bulk data with half-close, the -f/-g matrix, wrong keys, UNIX and
//! IPv6 addresses, timeouts, graceful stop, config files, the connection limit and key
//! generation. See /work/shared/docs/PROTOCOL.md (sections 3-7, 9) for the reference.
//!
//! Every spiped is run with -F (foreground) and every child is killed and reaped when its
//! guard drops. Listen ports are picked by binding port 0 and releasing it; starting a
//! daemon retries with a new port if the port was taken meanwhile. Linux only: whether a
//! child listens yet is read from /proc rather than probed with a connection.

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const MIB: usize = 1024 * 1024;
/// Longest pause without data that a working exchange may have.
const SLOW: Duration = Duration::from_secs(30);
/// How long a failing connection may take to be closed ("within a few seconds").
const FEW_SECONDS: Duration = Duration::from_secs(5);

/// A small exchange through a tunnel that must work.
fn check_works(what: &str, client_addr: &Addr, len: usize, seed: u64) {
    let data = test_data(len, seed);
    let got = exchange_with(client_addr, &data, SLOW);
    assert_echoed(what, &data, &got);
}

/// A tunnel that must refuse: see [`assert_refused`], within a few seconds.
fn check_refused(what: &str, client_addr: &Addr, echo: &Echo) {
    assert_refused(what, client_addr, echo, FEW_SECONDS);
}

// ---------------------------------------------------------------------------------------
// 1-2. Bulk data with half-close, both pairings

#[test]
fn sluiced_e_to_spiped_d_16_mib_with_half_close() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = spiped("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (_client, client) = sluiced("-e", LOCALHOST_V4, &server, &key, &[], dir.path());

    let data = test_data(16 * MIB, 1);
    let got = exchange_with(&client, &data, SLOW);
    assert_echoed("sluiced -e -> spiped -d, 16 MiB", &data, &got);
    assert_eq!(echo.bytes(), data.len() as u64);
    eprintln!(
        "16 MiB round trip sluiced -e -> spiped -d: {:?}",
        got.elapsed
    );
}

#[test]
fn spiped_e_to_sluiced_d_16_mib_with_half_close() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (_client, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());

    let data = test_data(16 * MIB, 2);
    let got = exchange_with(&client, &data, SLOW);
    assert_echoed("spiped -e -> sluiced -d, 16 MiB", &data, &got);
    assert_eq!(echo.bytes(), data.len() as u64);
    eprintln!(
        "16 MiB round trip spiped -e -> sluiced -d: {:?}",
        got.elapsed
    );
}

// ---------------------------------------------------------------------------------------
// Beyond the list: a server that speaks first, a server that half-closes first, and a
// packet altered on the wire. spiped -d connects to its target at once, so a banner can
// be queued before the handshake ends and arrive right behind the server's DH value.

/// Starts the two mixed tunnels in front of `target`: sluiced -e -> spiped -d and
/// spiped -e -> sluiced -d. Returns their client-side addresses and the guards.
fn both_pairings(target: &Addr, key: &Path, dir: &Path) -> (Vec<(String, Addr)>, Vec<Proc>) {
    let (spiped_d, spiped_d_addr) = spiped("-d", LOCALHOST_V4, target, key, &[], dir);
    let (sluiced_e, sluiced_e_addr) = sluiced("-e", LOCALHOST_V4, &spiped_d_addr, key, &[], dir);
    let (sluiced_d, sluiced_d_addr) = sluiced("-d", LOCALHOST_V4, target, key, &[], dir);
    let (spiped_e, spiped_e_addr) = spiped("-e", LOCALHOST_V4, &sluiced_d_addr, key, &[], dir);
    (
        vec![
            ("sluiced -e -> spiped -d".to_owned(), sluiced_e_addr),
            ("spiped -e -> sluiced -d".to_owned(), spiped_e_addr),
        ],
        vec![spiped_d, sluiced_e, sluiced_d, spiped_e],
    )
}

#[test]
fn server_speaks_first_both_pairings() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let banner = b"220 banner from the target, sent before the client says anything\r\n".to_vec();
    let server = Echo::tcp_with(LOCALHOST_V4, Behaviour::BannerThenEcho(banner.clone()));
    let (pairings, _procs) = both_pairings(&server.addr, &key, dir.path());
    for (i, (what, client)) in pairings.iter().enumerate() {
        // A client that half-closes at once, during the handshake, still gets the banner.
        let got = exchange_with(client, &[], SLOW);
        assert_echoed(&format!("{what}, silent client"), &banner, &got);

        let mut stream = client.connect().expect("connect");
        stream.set_read_timeout(Some(SLOW)).unwrap();
        let mut got = vec![0u8; banner.len()];
        stream
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("{what}: banner: {e}"));
        assert_eq!(got, banner, "{what}: banner");
        let data = test_data(256 * 1024, 20 + i as u64);
        let got = exchange(stream, &data, SLOW);
        assert_echoed(what, &data, &got);
    }
}

#[test]
fn server_half_closes_first_both_pairings() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let banner = b"read-only greeting; this side sends nothing more".to_vec();
    let server = Echo::tcp_with(LOCALHOST_V4, Behaviour::BannerThenHalfClose(banner.clone()));
    let (pairings, _procs) = both_pairings(&server.addr, &key, dir.path());
    for (i, (what, client)) in pairings.iter().enumerate() {
        // The server's FIN arrives while the client's direction stays open...
        let mut stream = client.connect().expect("connect");
        let (got, end) = read_to_end(&mut stream, SLOW);
        assert_eq!(got, banner, "{what}: banner");
        assert_eq!(end, End::Eof, "{what}: server's half-close");
        // ...and the client can still send everything after it.
        let before = server.bytes() as usize;
        let data = test_data(MIB, 30 + i as u64);
        stream
            .write_all(&data)
            .expect("send after the server's FIN");
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(
            server.wait_finished(i + 1, SLOW),
            "{what}: the server never saw the client's end of stream"
        );
        let received = server.received();
        assert!(
            received[before..] == data[..],
            "{what}: server received {} bytes after its FIN, expected {}",
            received.len() - before,
            data.len()
        );
    }
}

#[test]
fn many_concurrent_connections_both_pairings() {
    const CLIENTS: usize = 32;
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (pairings, procs) = both_pairings(&echo.addr, &key, dir.path());
    // Stock spiped listens with a backlog of 10: a burst of 32 connects at once overflows
    // it on a loaded machine and the kernel resets some (ListenOverflows in nstat). So the
    // connections open one after another, each through to the echo server, and only then
    // do all 2 × 32 carry data at once.
    let mut streams = Vec::new();
    for (p, (what, client)) in pairings.iter().enumerate() {
        for i in 0..CLIENTS {
            let stream = client
                .connect()
                .unwrap_or_else(|e| panic!("{what}, client {i}: connect: {e}"));
            assert!(
                echo.wait_connections(p * CLIENTS + i + 1, SLOW),
                "{what}, client {i}: never reached the echo server"
            );
            streams.push((p, what, i, stream));
        }
    }
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (p, what, i, stream) in streams {
            let failures = &failures;
            s.spawn(move || {
                let data = test_data(128 * 1024 + i, (100 + p * CLIENTS + i) as u64);
                let got = exchange(stream, &data, SLOW);
                let check = std::panic::catch_unwind(|| {
                    assert_echoed(&format!("{what}, client {i}"), &data, &got);
                });
                if let Err(panic) = check {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "(no message)".into());
                    failures.lock().unwrap().push(message);
                }
            });
        }
    });
    // On failure, the daemons' own account of it.
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} clients failed:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        procs
            .iter()
            .map(|p| format!("--- {} log:\n{}", p.name, p.stderr()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(echo.connections(), 2 * CLIENTS);
}

/// Byte offset, in one direction of an encrypted stream, inside the third data packet
/// (after the 32-byte nonce, the 288-byte signed DH value and two 1060-byte packets).
const THIRD_PACKET: u64 = 32 + 288 + 2 * 1060 + 10;

/// Checks that an altered packet ended the connection with only data from before it
/// delivered, on both the target (`reached`) and the client (`got`) side.
fn check_cut_off(what: &str, data: &[u8], got: &Received, reached: &[u8]) {
    assert!(
        got.end.closed() && got.elapsed < FEW_SECONDS,
        "{what}: expected the connection to be dropped, got {:?} after {:?}",
        got.end,
        got.elapsed
    );
    for (side, bytes) in [("client", &got.bytes[..]), ("target", reached)] {
        assert!(
            bytes.len() <= 2 * 1024,
            "{what}: {side} got {} bytes, more than the two packets before the altered one",
            bytes.len()
        );
        assert!(
            data.starts_with(bytes),
            "{what}: {side} got bytes that were never sent"
        );
    }
}

#[test]
fn altered_packet_from_spiped_e_is_rejected_by_sluiced_d() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (server_proc, server) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let relay = Tamper::start(server, Direction::ClientToServer, THIRD_PACKET);
    let (_client, client) = spiped("-e", LOCALHOST_V4, &relay.addr, &key, &[], dir.path());

    let data = test_data(16 * 1024, 40);
    let got = exchange_with(&client, &data, SLOW);
    check_cut_off(
        "spiped -e -> altered -> sluiced -d",
        &data,
        &got,
        &echo.received(),
    );
    assert!(
        server_proc.wait_for_log(
            "nothing after that packet was forwarded",
            Duration::from_secs(3)
        ),
        "sluiced did not log the rejected packet:\n{}",
        server_proc.stderr()
    );
}

#[test]
fn altered_packet_from_spiped_d_is_rejected_by_sluiced_e() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = spiped("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let relay = Tamper::start(server, Direction::ServerToClient, THIRD_PACKET);
    let (client_proc, client) = sluiced("-e", LOCALHOST_V4, &relay.addr, &key, &[], dir.path());

    let data = test_data(16 * 1024, 41);
    let got = exchange_with(&client, &data, SLOW);
    // Only what comes back is altered; it must be cut at the altered packet.
    check_cut_off("spiped -d -> altered -> sluiced -e", &data, &got, &[]);
    assert!(
        client_proc.wait_for_log(
            "nothing after that packet was forwarded",
            Duration::from_secs(3)
        ),
        "sluiced did not log the rejected packet:\n{}",
        client_proc.stderr()
    );
}

// ---------------------------------------------------------------------------------------
// 3-4. spipe and sluiced --spipe

/// Runs a one-shot client (`spipe` or `sluiced --spipe`) with `input` on standard input;
/// returns it after it exited (panics if it does not within 60 s).
fn run_client(name: &str, command: Command, input: &[u8], dir: &Path) -> Proc {
    let input_path = dir.join(format!("{name}.stdin"));
    fs::write(&input_path, input).expect("write client input");
    let stdin = fs::File::open(&input_path).expect("open client input");
    let mut proc = Proc::spawn_with_stdin(name, command, dir, Stdio::from(stdin));
    assert!(
        proc.wait_timeout(Duration::from_secs(60)).is_some(),
        "{name} did not exit within 60 s; stderr:\n{}",
        proc.stderr()
    );
    proc
}

fn spipe_command(program: &str, spipe_flag: bool, target: &Addr, key: &Path) -> Command {
    let mut c = Command::new(program);
    if spipe_flag {
        c.arg("--spipe");
    }
    c.args(["-t", &target.spiped(), "-k"]).arg(key);
    c
}

#[test]
fn spipe_to_sluiced_d() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());

    let data = test_data(MIB, 3);
    let mut spipe = run_client(
        "spipe",
        spipe_command(&spipe_bin(), false, &server, &key),
        &data,
        dir.path(),
    );
    let status = spipe.try_wait().expect("exited");
    assert!(
        status.success(),
        "spipe: {status}; stderr:\n{}",
        spipe.stderr()
    );
    let out = spipe.stdout();
    assert_eq!(out.len(), data.len(), "spipe output length");
    assert!(out == data, "spipe output differs from its input");
}

#[test]
fn sluiced_spipe_to_spiped_d() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = spiped("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());

    let data = test_data(MIB, 4);
    let mut client = run_client(
        "sluiced-spipe",
        spipe_command(SLUICED, true, &server, &key),
        &data,
        dir.path(),
    );
    let status = client.try_wait().expect("exited");
    assert!(
        status.success(),
        "sluiced --spipe: {status}; stderr:\n{}",
        client.stderr()
    );
    let out = client.stdout();
    assert_eq!(out.len(), data.len(), "sluiced --spipe output length");
    assert!(out == data, "sluiced --spipe output differs from its input");
}

#[test]
fn sluiced_spipe_reports_unreachable_target() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    // A port nobody listens on.
    let nowhere = refusing_addr(LOCALHOST_V4);
    let mut client = run_client(
        "sluiced-spipe-unreachable",
        spipe_command(SLUICED, true, &nowhere.addr, &key),
        b"hello",
        dir.path(),
    );
    let status = client.try_wait().expect("exited");
    let stderr = client.stderr();
    assert_eq!(status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert!(
        stderr.to_lowercase().contains("could not connect"),
        "stderr should say it could not connect:\n{stderr}"
    );
    assert!(client.stdout().is_empty());
}

#[test]
fn sluiced_spipe_reports_wrong_key() {
    let dir = temp_dir();
    let server_key = random_key(dir.path(), "server.key");
    let client_key = random_key(dir.path(), "client.key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = spiped("-d", LOCALHOST_V4, &echo.addr, &server_key, &[], dir.path());

    let mut client = run_client(
        "sluiced-spipe-wrong-key",
        spipe_command(SLUICED, true, &server, &client_key),
        b"hello",
        dir.path(),
    );
    let status = client.try_wait().expect("exited");
    let stderr = client.stderr();
    assert_eq!(status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert!(
        stderr.to_lowercase().contains("handshake failed"),
        "stderr should say the handshake failed:\n{stderr}"
    );
    assert!(client.stdout().is_empty());
    assert_eq!(echo.bytes(), 0);
}

/// spiped -d connects to its target before the handshake ends, so when the target is
/// down its clients see the handshake fail (spipe: "Handshake failed", exit 1).
/// sluiced -d authenticates first and connects afterwards; its clients must still learn
/// that the session failed rather than see an orderly, empty session.
#[test]
fn unreachable_target_behind_d_fails_the_client() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    // Nothing will ever listen here.
    let dead = Addr::Unix(dir.path().join("nothing.sock"));
    let (_spiped_d, spiped_d) = spiped("-d", LOCALHOST_V4, &dead, &key, &[], dir.path());
    let (_sluiced_d, sluiced_d) = sluiced("-d", LOCALHOST_V4, &dead, &key, &[], dir.path());
    for (server_name, server) in [("spiped -d", &spiped_d), ("sluiced -d", &sluiced_d)] {
        for (client_name, program, flag) in [
            ("spipe", spipe_bin(), false),
            ("sluiced --spipe", SLUICED.to_owned(), true),
        ] {
            for (round, input) in [&b""[..], b"hello\n"].iter().cycle().take(6).enumerate() {
                let mut client = run_client(
                    "dead-target-client",
                    spipe_command(&program, flag, server, &key),
                    input,
                    dir.path(),
                );
                let status = client.try_wait().expect("exited");
                assert!(
                    !status.success(),
                    "{client_name} -> {server_name} -> unreachable target, round {round}: exited {status} as if the session worked; stderr:\n{}",
                    client.stderr()
                );
                assert!(client.stdout().is_empty());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5. The -f/-g matrix (PROTOCOL.md section 7), both mixed pairings

/// Client flags, server flags, whether the pair works.
const MATRIX: [(&str, &str, bool); 9] = [
    ("", "", true),
    ("", "-f", true),
    ("", "-g", true),
    ("-f", "", true),
    ("-f", "-f", true),
    ("-f", "-g", false),
    ("-g", "", true),
    ("-g", "-f", false),
    ("-g", "-g", true),
];

fn flags(flag: &str) -> Vec<&str> {
    if flag.is_empty() { vec![] } else { vec![flag] }
}

/// Runs every combination at once, each with its own echo server, client and server.
fn run_matrix(sluiced_is_client: bool) {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    std::thread::scope(|s| {
        for (i, (client_flag, server_flag, works)) in MATRIX.into_iter().enumerate() {
            let (dir, key) = (dir.path(), &key);
            s.spawn(move || {
                let echo = Echo::tcp(LOCALHOST_V4);
                let (client_flags, server_flags) = (flags(client_flag), flags(server_flag));
                let (server, server_addr, client, client_addr);
                let (sluiced_proc, what) = if sluiced_is_client {
                    (server, server_addr) =
                        spiped("-d", LOCALHOST_V4, &echo.addr, key, &server_flags, dir);
                    (client, client_addr) =
                        sluiced("-e", LOCALHOST_V4, &server_addr, key, &client_flags, dir);
                    (
                        &client,
                        format!("sluiced -e {client_flag} -> spiped -d {server_flag}"),
                    )
                } else {
                    (server, server_addr) =
                        sluiced("-d", LOCALHOST_V4, &echo.addr, key, &server_flags, dir);
                    (client, client_addr) =
                        spiped("-e", LOCALHOST_V4, &server_addr, key, &client_flags, dir);
                    (
                        &server,
                        format!("spiped -e {client_flag} -> sluiced -d {server_flag}"),
                    )
                };
                if works {
                    check_works(&what, &client_addr, 256 * 1024, 50 + i as u64);
                } else {
                    check_refused(&what, &client_addr, &echo);
                    // sluiced says why when it is the end that refuses, or the -f client
                    // the server hung up on. A -f server cannot tell: it finished its half
                    // of the handshake and the -g client simply went away (spiped -d is
                    // no wiser).
                    let sluiced_can_tell = sluiced_is_client || server_flag == "-g";
                    assert!(
                        !sluiced_can_tell
                            || sluiced_proc.wait_for_log("forward secrecy", Duration::from_secs(3)),
                        "{what}: sluiced did not log the forward-secrecy mismatch:\n{}",
                        sluiced_proc.stderr()
                    );
                }
                drop((client, server));
            });
        }
    });
}

#[test]
fn forward_secrecy_matrix_sluiced_client_spiped_server() {
    run_matrix(true);
}

#[test]
fn forward_secrecy_matrix_spiped_client_sluiced_server() {
    run_matrix(false);
}

// ---------------------------------------------------------------------------------------
// 6. Wrong key, both ways

#[test]
fn wrong_key_sluiced_client_spiped_server() {
    let dir = temp_dir();
    let client_key = random_key(dir.path(), "client.key");
    let server_key = random_key(dir.path(), "server.key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = spiped("-d", LOCALHOST_V4, &echo.addr, &server_key, &[], dir.path());
    let (client_proc, client) = sluiced("-e", LOCALHOST_V4, &server, &client_key, &[], dir.path());

    check_refused("sluiced -e (key A) -> spiped -d (key B)", &client, &echo);
    let line = client_proc
        .wait_for_log_line(|l| l.contains("handshake rejected"), Duration::from_secs(3))
        .unwrap_or_else(|| {
            panic!(
                "sluiced did not log the failed handshake:\n{}",
                client_proc.stderr()
            )
        });
    assert!(
        line.contains("different key"),
        "log should blame the key: {line}"
    );
}

#[test]
fn wrong_key_spiped_client_sluiced_server() {
    let dir = temp_dir();
    let client_key = random_key(dir.path(), "client.key");
    let server_key = random_key(dir.path(), "server.key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (server_proc, server) =
        sluiced("-d", LOCALHOST_V4, &echo.addr, &server_key, &[], dir.path());
    let (_client, client) = spiped("-e", LOCALHOST_V4, &server, &client_key, &[], dir.path());

    check_refused("spiped -e (key A) -> sluiced -d (key B)", &client, &echo);
    let line = server_proc
        .wait_for_log_line(|l| l.contains("handshake rejected"), Duration::from_secs(3))
        .unwrap_or_else(|| {
            panic!(
                "sluiced did not log the failed handshake:\n{}",
                server_proc.stderr()
            )
        });
    assert!(
        line.contains("signed with a different key"),
        "log should blame the key: {line}"
    );
    // Unlike spiped -d, sluiced -d reaches the target only after a good handshake.
    assert_eq!(
        echo.connections(),
        0,
        "an unauthenticated client reached the target"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Empty key files: spiped accepts them, Sluice refuses them (tests/bad_input.rs,
//    `an_empty_key_is_never_used_in_any_mode`), so there is no interop to test.

// ---------------------------------------------------------------------------------------
// 8. UNIX-socket addresses

#[test]
fn unix_socket_sluiced_d_listens_spiped_e_connects() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    // The target is a UNIX socket too.
    let echo = Echo::unix(&dir.path().join("echo.sock"));
    let socket = Addr::Unix(dir.path().join("sluiced.sock"));
    let (_server, server) = sluiced_on("-d", || socket.clone(), &echo.addr, &key, &[], dir.path());
    let (_client, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    check_works("spiped -e -> sluiced -d on a UNIX socket", &client, MIB, 81);
}

#[test]
fn unix_socket_sluiced_e_targets_spiped_d() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let socket = Addr::Unix(dir.path().join("spiped.sock"));
    let (_server, server) = spiped_on("-d", || socket.clone(), &echo.addr, &key, &[], dir.path());
    let (_client, client) = sluiced("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    check_works("sluiced -e -> spiped -d on a UNIX socket", &client, MIB, 82);
}

#[test]
fn unix_socket_stale_file_does_not_block_sluiced() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let path = dir.path().join("stale.sock");
    // A socket file whose listener is gone (as a crashed daemon leaves it).
    drop(UnixListener::bind(&path).expect("bind stale socket"));
    assert!(path.exists(), "the stale socket file should be left behind");

    let socket = Addr::Unix(path.clone());
    let (mut server_proc, server) =
        sluiced_on("-d", || socket.clone(), &echo.addr, &key, &[], dir.path());
    let (_client, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    check_works(
        "spiped -e -> sluiced -d on a once-stale socket",
        &client,
        64 * 1024,
        83,
    );

    // A live socket, though, is not taken over.
    let mut second = Command::new(SLUICED);
    second
        .args([
            "-d",
            "-F",
            "-s",
            &socket.spiped(),
            "-t",
            &echo.addr.spiped(),
            "-k",
        ])
        .arg(&key);
    let mut second = Proc::spawn("sluiced-second", second, dir.path());
    let status = second
        .wait_timeout(Duration::from_secs(10))
        .expect("a second sluiced on a live socket should exit");
    assert_eq!(status.code(), Some(1), "stderr:\n{}", second.stderr());
    assert!(
        second.stderr().contains("still listening"),
        "{}",
        second.stderr()
    );
    check_works(
        "the first sluiced after the second gave up",
        &client,
        1024,
        84,
    );

    // On a graceful stop sluiced removes its socket file (spiped leaves it behind).
    server_proc.signal(libc::SIGTERM);
    let status = server_proc
        .wait_timeout(Duration::from_secs(10))
        .expect("sluiced exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(!path.exists(), "sluiced left its socket file behind");
}

// ---------------------------------------------------------------------------------------
// 9. IPv6

#[test]
fn ipv6_loopback_both_pairings() {
    if !require(
        ipv6_available(),
        "an IPv6 loopback ([::1])",
        "enable IPv6 on the loopback interface (sysctl net.ipv6.conf.lo.disable_ipv6=0)",
    ) {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V6);

    let (_spiped_d, spiped_d) = spiped("-d", LOCALHOST_V6, &echo.addr, &key, &[], dir.path());
    let (_sluiced_e, sluiced_e) = sluiced("-e", LOCALHOST_V6, &spiped_d, &key, &[], dir.path());
    assert!(sluiced_e.spiped().starts_with("[::1]:"));
    check_works("sluiced -e [::1] -> spiped -d [::1]", &sluiced_e, MIB, 91);

    let (_sluiced_d, sluiced_d) = sluiced("-d", LOCALHOST_V6, &echo.addr, &key, &[], dir.path());
    let (_spiped_e, spiped_e) = spiped("-e", LOCALHOST_V6, &sluiced_d, &key, &[], dir.path());
    check_works("spiped -e [::1] -> sluiced -d [::1]", &spiped_e, MIB, 92);
}

// ---------------------------------------------------------------------------------------
// 10. Handshake timeout (-o)

#[test]
fn handshake_timeout_drops_silent_client() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (server_proc, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["-o", "1"],
        dir.path(),
    );

    // A client that connects and never says anything.
    let started = Instant::now();
    let mut silent = server.connect().expect("connect");
    let (bytes, end) = read_to_end(&mut silent, Duration::from_secs(10));
    let elapsed = started.elapsed();
    eprintln!(
        "silent client: {} bytes, then {end:?} after {elapsed:?}",
        bytes.len()
    );
    assert!(end.closed(), "silent client: expected a close, got {end:?}");
    // All the server may have sent is its nonce.
    assert!(bytes.len() <= 32, "silent client got {} bytes", bytes.len());
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed <= Duration::from_secs(3),
        "silent client was dropped after {elapsed:?}, expected about 1 s"
    );
    assert!(
        server_proc.wait_for_log("timed out", Duration::from_secs(3)),
        "no timeout in the log:\n{}",
        server_proc.stderr()
    );

    // The daemon still serves a good client, and -o does not limit idle time after the
    // handshake (PROTOCOL.md section 6).
    let (_client, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    check_works(
        "spiped -e -> sluiced -d -o 1 after a timeout",
        &client,
        64 * 1024,
        10,
    );
    let mut idle = client.connect().expect("connect");
    idle.set_read_timeout(Some(SLOW)).unwrap();
    let mut back = [0u8; 5];
    idle.write_all(b"hello").unwrap();
    idle.read_exact(&mut back).expect("echo before idling");
    std::thread::sleep(Duration::from_millis(1600));
    let got = exchange(idle, b"still there", SLOW);
    assert_echoed("after 1.6 s idle with -o 1", b"still there", &got);
}

// ---------------------------------------------------------------------------------------
// 11. SIGTERM with an open connection

#[test]
fn sigterm_stops_accepting_and_drains_open_connection() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (mut server_proc, server) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (_client, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());

    // An open connection with data already echoed through the whole chain.
    let data = test_data(512 * 1024, 11);
    let (first, second) = data.split_at(data.len() / 2);
    let mut open = client.connect().expect("connect");
    open.write_all(first).expect("send first half");
    open.set_read_timeout(Some(SLOW)).unwrap();
    let mut echoed = vec![0u8; first.len()];
    open.read_exact(&mut echoed).expect("first half echoed");
    assert!(echoed == first, "first half came back altered");

    server_proc.signal(libc::SIGTERM);

    // Stops accepting at once: the listener goes away...
    let deadline = Instant::now() + Duration::from_secs(2);
    while server_proc.listens_on(&server) {
        assert!(
            Instant::now() < deadline,
            "sluiced still listens 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...so a new client is refused, or at least never served.
    let late = TcpStream::connect_timeout(&server.tcp(), Duration::from_secs(2));
    eprintln!("connect after SIGTERM: {late:?}");
    match late {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "unexpected connect error after SIGTERM: {e}"
        ),
        Ok(late) => {
            let mut late = Stream::Tcp(late);
            let (bytes, end) = read_to_end(&mut late, Duration::from_secs(1));
            assert!(
                bytes.is_empty(),
                "a connection made after SIGTERM was served ({} bytes, {end:?})",
                bytes.len()
            );
        }
    }

    // The open connection is still being served, and the daemon says it waits for it.
    assert!(
        server_proc.wait_for_log("waiting for 1 open connection", Duration::from_secs(5)),
        "sluiced did not say it waits for the open connection; stderr:\n{}",
        server_proc.stderr()
    );
    assert!(
        server_proc.try_wait().is_none(),
        "sluiced exited with a connection still open; stderr:\n{}",
        server_proc.stderr()
    );
    let got = exchange(open, second, SLOW);
    assert_echoed("open connection after SIGTERM", second, &got);

    let status = server_proc
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("sluiced did not exit after its last connection closed"));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}

// ---------------------------------------------------------------------------------------
// 12. --config

fn tunnel_ron(name: &str, mode: &str, listen: &Addr, target: &Addr, key: &Path) -> String {
    format!(
        "        (\n            name: {name:?},\n            mode: {mode},\n            listen: {:?},\n            target: {:?},\n            key: File({:?}),\n        ),\n",
        listen.spiped(),
        target.spiped(),
        key.display().to_string()
    )
}

#[test]
fn config_file_with_two_tunnels() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_spiped_d, spiped_d) = spiped("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());

    let config_path = dir.path().join("sluice.ron");
    let (_sluiced, listens) = start_daemon_multi(
        "sluiced-config",
        dir.path(),
        || vec![free_addr(LOCALHOST_V4), free_addr(LOCALHOST_V4)],
        |listen| {
            let text = format!(
                "(\n    version: 1,\n    tunnels: [\n{}{}    ],\n)\n",
                tunnel_ron("to-spiped", "Encrypt", &listen[0], &spiped_d, &key),
                tunnel_ron("from-spiped", "Decrypt", &listen[1], &echo.addr, &key),
            );
            fs::write(&config_path, text).expect("write config");
            let mut c = Command::new(SLUICED);
            c.args(["-F", "--verbose", "--config"]).arg(&config_path);
            c
        },
    );
    let (encrypt, decrypt) = (&listens[0], &listens[1]);
    let (_spiped_e, spiped_e) = spiped("-e", LOCALHOST_V4, decrypt, &key, &[], dir.path());

    check_works("config Encrypt tunnel -> spiped -d", encrypt, MIB, 121);
    check_works("spiped -e -> config Decrypt tunnel", &spiped_e, MIB, 122);
}

#[test]
fn config_file_with_an_error_is_refused() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let good = tunnel_ron(
        "fine",
        "Encrypt",
        &free_addr(LOCALHOST_V4),
        &free_addr(LOCALHOST_V4),
        &key,
    );
    let broken = format!(
        "        (\n            name: \"broken\",\n            mode: Decrypt,\n            listen: {:?},\n            target: {:?},\n            key: File({:?}),\n            timeout_secs: 0.0,\n        ),\n",
        free_addr(LOCALHOST_V4).spiped(),
        free_addr(LOCALHOST_V4).spiped(),
        key.display().to_string()
    );
    let config_path = dir.path().join("broken.ron");
    fs::write(
        &config_path,
        format!("(\n    version: 1,\n    tunnels: [\n{good}{broken}    ],\n)\n"),
    )
    .unwrap();

    let mut c = Command::new(SLUICED);
    c.args(["-F", "--config"]).arg(&config_path);
    let mut proc = Proc::spawn("sluiced-bad-config", c, dir.path());
    let status = proc
        .wait_timeout(Duration::from_secs(10))
        .expect("sluiced should exit on a bad config");
    let stderr = proc.stderr();
    assert_eq!(status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert!(
        stderr.contains("tunnel \"broken\"") && stderr.contains("timeout_secs"),
        "the message should name the tunnel and the field:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// 13. Connection limit (-n)

#[test]
fn connection_limit_makes_extra_client_wait() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (server_proc, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["-n", "2"],
        dir.path(),
    );
    // spiped -e in front, with a handshake timeout well beyond the waiting below.
    let (_client, client) = spiped("-e", LOCALHOST_V4, &server, &key, &["-o", "30"], dir.path());

    // Two clients, each proven to be through to the echo server, kept open.
    let open_through = |tag: u8| {
        let mut s = client.connect().expect("connect");
        s.write_all(&[tag; 100]).expect("send");
        s.set_read_timeout(Some(SLOW)).unwrap();
        let mut back = [0u8; 100];
        s.read_exact(&mut back).expect("echo");
        assert_eq!(back, [tag; 100]);
        s
    };
    let first = open_through(1);
    let _second = open_through(2);

    // The third gets nothing back while the two are open: sluiced does not accept it,
    // so spiped -e gets no handshake reply.
    let mut third = client.connect().expect("connect third");
    third.write_all(&[3; 100]).expect("send third");
    let (bytes, end) = read_to_end(&mut third, Duration::from_millis(1500));
    assert!(
        bytes.is_empty() && end == End::TimedOut,
        "third client was served while the limit was reached ({} bytes, {end:?})",
        bytes.len()
    );
    assert!(
        server_proc.wait_for_log(
            "maximum number of connections (2) reached",
            Duration::from_secs(2)
        ),
        "no limit warning:\n{}",
        server_proc.stderr()
    );

    // Closing one lets the third through.
    let got = exchange(first, &[], SLOW);
    assert_echoed("first client closing", &[], &got);
    let mut back = [0u8; 100];
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    third
        .read_exact(&mut back)
        .expect("third client served after a slot freed");
    assert_eq!(back, [3; 100]);
    let got = exchange(third, &[], SLOW);
    assert_echoed("third client closing", &[], &got);
}

// ---------------------------------------------------------------------------------------
// 14. --generate-key

#[test]
fn generated_key_works_with_spiped_and_is_never_overwritten() {
    let dir = temp_dir();
    let key = dir.path().join("generated.key");
    let output = Command::new(SLUICED)
        .arg("--generate-key")
        .arg(&key)
        .output()
        .expect("run sluiced --generate-key");
    assert!(
        output.status.success(),
        "--generate-key: {}; stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let meta = fs::metadata(&key).expect("key file written");
    assert_eq!(meta.len(), 32, "key length");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "key file mode");
    let bytes = fs::read(&key).unwrap();

    // spiped takes it (and agrees with sluiced on it).
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server, server) = spiped("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (_client, client) = sluiced("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    check_works(
        "generated key, sluiced -e -> spiped -d",
        &client,
        64 * 1024,
        14,
    );

    // A second run must not replace it.
    let again = Command::new(SLUICED)
        .arg("--generate-key")
        .arg(&key)
        .output()
        .expect("run sluiced --generate-key again");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        again.status.code(),
        Some(1),
        "second run; stderr:\n{stderr}"
    );
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(fs::read(&key).unwrap(), bytes, "the key file was changed");
}

// ---------------------------------------------------------------------------------------
// Beyond the list: the Engine library API (what the desktop app drives) against spiped

#[test]
fn engine_api_decrypt_tunnel_serves_spiped_and_counts() {
    use sluice_engine::{
        Address, Engine, EventKind, HandshakeFailure, Mode, PresharedKey, TunnelDefinition,
        TunnelSettings,
    };

    let dir = temp_dir();
    let key_bytes = b"a key shared by spiped and the engine, 256 bits or more";
    let key = write_key(dir.path(), "key", key_bytes);
    let other_key = random_key(dir.path(), "other.key");
    let echo = Echo::tcp(LOCALHOST_V4);

    let engine = Engine::start(|| {}).expect("start engine");
    let mut events = engine.subscribe();
    let settings = TunnelSettings::new(
        TunnelDefinition::new(
            "api",
            Mode::Decrypt,
            Address::Ip(SocketAddr::new(LOCALHOST_V4, 0)),
            Address::Ip(echo.addr.tcp()),
        ),
        PresharedKey::from_keyfile_bytes(key_bytes),
    );
    run_tunnels(&engine, vec![settings]);
    let server = listening_address(&engine, &mut events);

    // A good client, through spiped -e.
    let (_client, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    let data = test_data(3 * MIB + 17, 150);
    let got = exchange_with(&client, &data, SLOW);
    assert_echoed("spiped -e -> Engine Decrypt tunnel", &data, &got);
    let (up, down, fault) = next_event(&engine, &mut events, |kind| match kind {
        EventKind::ConnectionClosed {
            bytes_up,
            bytes_down,
            fault,
            ..
        } => Some((*bytes_up, *bytes_down, fault.clone())),
        _ => None,
    });
    assert_eq!(
        (up, down, fault),
        (data.len() as u64, data.len() as u64, None)
    );

    // A client with another key.
    let (_bad, bad) = spiped("-e", LOCALHOST_V4, &server, &other_key, &[], dir.path());
    check_refused(
        "spiped -e (other key) -> Engine Decrypt tunnel",
        &bad,
        &echo,
    );
    let cause = next_event(&engine, &mut events, |kind| match kind {
        EventKind::HandshakeFailed { fault, .. } => Some(fault.cause()),
        _ => None,
    });
    assert_eq!(cause, HandshakeFailure::WrongKey);

    let status = engine.status("api").expect("tunnel status");
    let counters = &status.counters;
    assert_eq!(counters.total_connections, 2);
    assert_eq!(counters.active_connections, 0);
    assert_eq!(counters.bytes_up, data.len() as u64);
    assert_eq!(counters.bytes_down, data.len() as u64);
    assert_eq!(
        counters.handshake_failures_for(HandshakeFailure::WrongKey),
        1
    );
    assert_eq!(counters.total_handshake_failures(), 1);
    engine.shutdown(true);
}

// ---------------------------------------------------------------------------------------
// Without -F: daemonizing as spiped does

/// Kills the daemonized child (by the pid it wrote) when the test ends, whatever happens.
struct PidFileGuard(std::path::PathBuf);

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        if let Some(pid) = fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) on the pid our own daemon wrote; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn without_f_sluiced_returns_after_binding_writes_its_pid_and_serves() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let listen = free_addr(LOCALHOST_V4);
    let pidfile = dir.path().join("sluiced.pid");
    let _guard = PidFileGuard(pidfile.clone());
    let status = Command::new(SLUICED)
        .args([
            "-d",
            "-s",
            &listen.spiped(),
            "-t",
            &echo.addr.spiped(),
            "-k",
        ])
        .arg(&key)
        .arg("-p")
        .arg(&pidfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run sluiced");
    assert!(
        status.success(),
        "the parent reports a successful start: {status}"
    );
    // The parent returned only once the listener was up: connecting works at once.
    let pid: u32 = fs::read_to_string(&pidfile)
        .expect("the daemon wrote its pid file")
        .trim()
        .parse()
        .expect("a pid");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon runs"
    );
    let (_client, client) = spiped("-e", LOCALHOST_V4, &listen, &key, &[], dir.path());
    check_works("spiped -e -> daemonized sluiced -d", &client, 64 * 1024, 77);
}

#[test]
fn without_f_a_failed_start_is_reported_by_the_parent() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let output = Command::new(SLUICED)
        .args([
            "-d",
            "-s",
            &format!("[127.0.0.1]:{port}"),
            "-t",
            "[127.0.0.1]:9",
            "-k",
        ])
        .arg(&key)
        .arg("-p")
        .arg(dir.path().join("never.pid"))
        .stdin(Stdio::null())
        .output()
        .expect("run sluiced");
    assert_eq!(output.status.code(), Some(1), "the parent exits 1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already in use"),
        "the parent says why: {stderr}"
    );
    assert!(
        !dir.path().join("never.pid").exists(),
        "no pid file for a daemon that failed"
    );
}
