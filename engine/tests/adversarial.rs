//! Hostile peers: a man in the middle on loopback between a real encrypting end and a real
//! decrypting end, one of them stock spiped 1.6.2, the other sluiced (the end under test).
//! Bit flips in the handshake and in data, replayed, dropped, reordered and truncated
//! packets, garbage before the handshake, a peer that stalls mid-handshake, and a peer that
//! floods. Each case must end with that connection closed, nothing after the tampered point
//! delivered, a long-lived connection through the same daemons unaffected, and the daemon
//! still serving. Linux only (reads /proc).

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::*;

const SLOW: Duration = Duration::from_secs(30);
/// How long a tampered connection may take to be closed.
const FEW_SECONDS: Duration = Duration::from_secs(5);
/// What each client sends: 16 KiB, at least 16 data packets.
const DATA_LEN: usize = 16 * 1024;

/// One hostile case: the attack, and what the end under test should say about it.
struct Case {
    name: &'static str,
    attack: Attack,
    /// Data packets that may get through before the attack bites (bytes ≤ 1024 each).
    packets_before: usize,
    /// A phrase the victim's log must gain (None: an orderly end, nothing to report).
    log: Option<&'static str>,
    /// The case is in the handshake: the target must never be reached through it.
    handshake: bool,
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    test_data(n, seed)
}

/// The cases, for a victim that decrypts the tampered direction. `wrong_key` is what the
/// victim's log says when a handshake message was altered (the server sees a bad
/// signature; a client may instead see the server hang up).
fn cases(wrong_key: &'static str, truncated: &'static str) -> Vec<Case> {
    let hs = |name, attack, log| Case {
        name,
        attack,
        packets_before: 0,
        log: Some(log),
        handshake: true,
    };
    let data = |name, attack, packets_before, log| Case {
        name,
        attack,
        packets_before,
        log,
        handshake: false,
    };
    const REJECTED: &str = "nothing after that packet was forwarded";
    vec![
        hs(
            "flip in nonce",
            Attack::Flip { unit: 0, byte: 5 },
            wrong_key,
        ),
        hs(
            "flip in DH value",
            Attack::Flip { unit: 1, byte: 100 },
            wrong_key,
        ),
        hs(
            "flip in DH MAC",
            Attack::Flip { unit: 1, byte: 270 },
            wrong_key,
        ),
        hs(
            "garbage before the handshake",
            Attack::Prefix(random_bytes(100, 7)),
            wrong_key,
        ),
        hs("replayed nonce", Attack::Replay(0), wrong_key),
        hs("flood after the nonce", Attack::Flood(0), wrong_key),
        hs(
            "truncated mid-handshake",
            Attack::Truncate { unit: 1, keep: 100 },
            truncated,
        ),
        hs(
            "stall mid-handshake",
            Attack::Stall { unit: 1, keep: 100 },
            "timed out",
        ),
        data(
            "flip in packet data",
            Attack::Flip {
                unit: packet_unit(2),
                byte: 10,
            },
            2,
            Some(REJECTED),
        ),
        data(
            "flip in length field",
            Attack::Flip {
                unit: packet_unit(1),
                byte: 1026,
            },
            1,
            Some(REJECTED),
        ),
        data(
            "flip in packet MAC",
            Attack::Flip {
                unit: packet_unit(1),
                byte: 1050,
            },
            1,
            Some(REJECTED),
        ),
        data(
            "replayed packet",
            Attack::Replay(packet_unit(1)),
            2,
            Some(REJECTED),
        ),
        data(
            "dropped packet",
            Attack::Drop(packet_unit(1)),
            1,
            Some(REJECTED),
        ),
        data(
            "reordered packets",
            Attack::Swap(packet_unit(1)),
            1,
            Some(REJECTED),
        ),
        data(
            "flood of garbage packets",
            Attack::Flood(packet_unit(1)),
            2,
            Some(REJECTED),
        ),
        // spiped's rule: a partial packet at end of stream is a clean end, not an error.
        data(
            "truncated mid-packet",
            Attack::Truncate {
                unit: packet_unit(2),
                keep: 500,
            },
            2,
            None,
        ),
    ]
}

/// A connection that stays open through every case and must keep working.
struct Bystander {
    stream: Stream,
    round: u64,
}

impl Bystander {
    fn open(addr: &Addr) -> Bystander {
        let mut b = Bystander {
            stream: addr.connect().expect("connect bystander"),
            round: 0,
        };
        b.stream.set_read_timeout(Some(SLOW)).unwrap();
        b.check("opening");
        b
    }

    /// A round trip of a few KiB; panics if the connection was disturbed.
    fn check(&mut self, after: &str) {
        self.round += 1;
        let data = test_data(3000, 1000 + self.round);
        self.stream.write_all(&data).expect("bystander send");
        let mut back = vec![0u8; data.len()];
        self.stream
            .read_exact(&mut back)
            .unwrap_or_else(|e| panic!("bystander connection broke after {after}: {e}"));
        assert!(back == data, "bystander got altered data after {after}");
    }
}

/// Runs every case through `mitm` (in the `direction` the victim decrypts), checking the
/// effects on the client at `client`, the target `echo` and the `victim`'s log.
fn run_cases(
    chain: &str,
    client: &Addr,
    mitm: &Mitm,
    direction: Direction,
    echo: &Echo,
    victim: &mut Proc,
    cases: &[Case],
) -> usize {
    let mut bystander = Bystander::open(client);
    let mut survived = 0;
    let started = Instant::now();
    let mut handshake_failures = 0u64;
    for (i, case) in cases.iter().enumerate() {
        let what = format!("{chain}: {}", case.name);
        let log_before = case.log.map_or(0, |needle| log_count(victim, needle));
        let target_conns = echo.connections();
        let target_bytes = echo.bytes();
        mitm.arm(Plan::on(direction, case.attack.clone()));

        let data = test_data(DATA_LEN, 500 + i as u64);
        let got = exchange_with(client, &data, SLOW);
        let reached = &echo.received()[target_bytes as usize..];

        // The tampered connection was closed, promptly...
        assert!(
            got.end.closed() && got.elapsed < FEW_SECONDS,
            "{what}: expected the connection to be closed, got {:?} after {:?}",
            got.end,
            got.elapsed
        );
        // ...with nothing after the tampered point delivered, either way.
        // (When the server's replies are tampered with, the target legitimately has all
        // the client sent; what the client gets back is what must stop.)
        let limit = case.packets_before * 1024;
        let target_limit = match direction {
            Direction::ClientToServer => limit,
            Direction::ServerToClient => DATA_LEN,
        };
        for (side, bytes, limit) in [
            ("client", &got.bytes[..], limit),
            ("target", reached, target_limit),
        ] {
            assert!(
                bytes.len() <= limit,
                "{what}: {side} got {} bytes, more than the {} packet(s) before the tampered point",
                bytes.len(),
                case.packets_before
            );
            assert!(
                data.starts_with(bytes),
                "{what}: {side} got bytes never sent"
            );
        }
        if case.handshake && direction == Direction::ClientToServer {
            // sluiced -d connects to its target only for an authenticated client.
            assert_eq!(
                echo.connections(),
                target_conns,
                "{what}: an unauthenticated peer reached the target"
            );
        }
        if case.handshake {
            assert!(
                got.bytes.is_empty(),
                "{what}: data flowed without a handshake"
            );
        }
        if let Attack::Flood(_) = case.attack {
            let flood = mitm.last_flood();
            let deadline = Instant::now() + FEW_SECONDS;
            while !flood.stopped.load(Ordering::SeqCst) {
                assert!(
                    Instant::now() < deadline,
                    "{what}: the victim kept taking the flood ({} bytes)",
                    flood.bytes.load(Ordering::SeqCst)
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            eprintln!(
                "{what}: flood cut off after {} bytes",
                flood.bytes.load(Ordering::SeqCst)
            );
        }
        if case.handshake {
            handshake_failures += 1;
        }
        // sluiced logs the first failed handshake of a spell in full and counts the
        // others into a summary (at most one a minute, and when it stops): those are
        // checked at the end, once the victim has stopped.
        let logged_in_full = !case.handshake || handshake_failures == 1;
        if let Some(needle) = case.log.filter(|_| logged_in_full) {
            assert!(
                victim.wait_for_log_count(needle, log_before + 1, Duration::from_secs(3)),
                "{what}: the victim's log does not say {needle:?}:\n{}",
                victim.stderr()
            );
        }
        // Other connections unaffected, the daemon still up.
        bystander.check(case.name);
        assert!(
            victim.try_wait().is_none(),
            "{what}: the victim exited; stderr:\n{}",
            victim.stderr()
        );
        eprintln!(
            "{what}: ok ({} bytes to client, {:?})",
            got.bytes.len(),
            got.elapsed
        );
        survived += 1;
    }
    // Still serving new connections, and the bystander closes cleanly.
    let fresh = test_data(64 * 1024, 77);
    let got = exchange_with(client, &fresh, SLOW);
    assert_echoed(
        &format!("{chain}: a new connection after every attack"),
        &fresh,
        &got,
    );
    let got = exchange(bystander.stream, b"bye", SLOW);
    assert_echoed(&format!("{chain}: the bystander at the end"), b"bye", &got);

    // Every failed handshake is in the log, but not one line each: the first in full,
    // the rest in the summary the victim logs as it stops (or once a minute before that).
    let failures = stop_and_read_handshake_failures(victim, chain);
    assert_eq!(
        failures.total(),
        handshake_failures,
        "{chain}: the log does not account for every failed handshake: {failures:#?}"
    );
    let windows = started.elapsed().as_secs() / 60 + 1;
    assert!(
        !failures.summaries.is_empty() && failures.in_full.len() as u64 <= windows,
        "{chain}: {} handshake failures logged one by one in {windows} minute(s): {failures:#?}",
        failures.in_full.len()
    );
    survived
}

/// SIGTERM, then what the victim's log says about failed handshakes once it has exited
/// (it logs the summary of the ones it counted as it stops).
fn stop_and_read_handshake_failures(victim: &mut Proc, what: &str) -> HandshakeFailureLog {
    victim.signal(libc::SIGTERM);
    let status = victim
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{what}: the victim did not stop on SIGTERM"));
    assert!(
        status.success(),
        "{what}: the victim exited {status}:\n{}",
        victim.stderr()
    );
    HandshakeFailureLog::parse(&victim.stderr())
}

/// Client -> spiped -e -> MITM -> sluiced -d -> echo; the MITM alters what the client sends.
#[test]
fn hostile_client_side_against_sluiced_d() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (mut victim, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["-o", "1"],
        dir.path(),
    );
    let mitm = Mitm::start(server);
    let (_client_proc, client) = spiped("-e", LOCALHOST_V4, &mitm.addr, &key, &[], dir.path());
    let cases = cases(
        "signed with a different key",
        "client closed the connection before finishing the handshake",
    );
    let survived = run_cases(
        "spiped -e -> MITM -> sluiced -d",
        &client,
        &mitm,
        Direction::ClientToServer,
        &echo,
        &mut victim,
        &cases,
    );
    assert_eq!(survived, cases.len());
}

/// Client -> sluiced -e -> MITM -> spiped -d -> echo; the MITM alters what spiped sends back.
#[test]
fn hostile_server_side_against_sluiced_e() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_server_proc, server) = spiped("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let mitm = Mitm::start(server);
    let (mut victim, client) = sluiced(
        "-e",
        LOCALHOST_V4,
        &mitm.addr,
        &key,
        &["-o", "1"],
        dir.path(),
    );
    // A client that sees an altered server nonce signs with the wrong MAC keys, so
    // spiped -d hangs up on it: the client's log says the handshake was rejected.
    let cases = cases("handshake rejected", "handshake rejected");
    let survived = run_cases(
        "sluiced -e -> MITM -> spiped -d",
        &client,
        &mitm,
        Direction::ServerToClient,
        &echo,
        &mut victim,
        &cases,
    );
    assert_eq!(survived, cases.len());
}

/// Raw peers with no spiped in front: garbage instead of a handshake, a peer that sends a
/// nonce and stalls, and one that floods megabytes of garbage. None reaches the target.
#[test]
fn raw_garbage_stall_and_flood_against_sluiced_d() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (mut victim, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["-o", "1"],
        dir.path(),
    );
    let (_client_proc, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    let mut bystander = Bystander::open(&client);

    // Text where a handshake should be (an HTTP client on the wrong port).
    let got = exchange_with(&server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", SLOW);
    assert!(
        got.end.closed() && got.elapsed < FEW_SECONDS,
        "HTTP request: {:?}",
        got.end
    );
    assert!(got.bytes.len() <= 32, "only the nonce may come back");
    // 320 random bytes: a complete but forged handshake.
    let got = exchange_with(&server, &test_data(320, 3), SLOW);
    assert!(
        got.end.closed() && got.elapsed < FEW_SECONDS,
        "forged: {:?}",
        got.end
    );
    // A nonce, then silence: dropped at the -o timeout.
    let mut stall = server.connect().unwrap();
    stall.write_all(&test_data(32, 4)).unwrap();
    let started = Instant::now();
    let (_, end) = read_to_end(&mut stall, Duration::from_secs(10));
    assert!(
        end.closed() && started.elapsed() < Duration::from_secs(3),
        "stall: {end:?}"
    );
    // A flood: 64 MiB of garbage offered as fast as possible; cut off after the handshake.
    let mut flood = server.connect().unwrap();
    let chunk = test_data(64 * 1024, 5);
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < 64 * 1024 * 1024 {
        match flood.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(
        sent < 64 * 1024 * 1024 && started.elapsed() < FEW_SECONDS,
        "the flood was taken in full ({sent} bytes in {:?})",
        started.elapsed()
    );
    eprintln!(
        "raw flood cut off after {sent} bytes in {:?}",
        started.elapsed()
    );

    assert_eq!(
        echo.connections(),
        1,
        "only the bystander reached the target"
    );
    bystander.check("raw garbage, stall and flood");
    let got = exchange(bystander.stream, b"bye", SLOW);
    assert_echoed("bystander at the end", b"bye", &got);
    // Four failed handshakes: one line in full, the other three in one summary, logged
    // as the victim stops (the log is read only after it has exited, so no line of it is
    // still being written).
    let failures = stop_and_read_handshake_failures(&mut victim, "raw peers");
    assert_eq!(failures.total(), 4, "{failures:#?}");
    assert_eq!(failures.in_full.len(), 1, "{failures:#?}");
    assert_eq!(failures.summaries.len(), 1, "{failures:#?}");
    assert!(
        failures.of_cause("signed with a different key", "wrong key") >= 2,
        "{failures:#?}"
    );
    assert!(
        failures.of_cause("timed out", "timed out") >= 1,
        "{failures:#?}"
    );
}
