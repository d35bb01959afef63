//! A flood of unauthenticated handshakes costs `sluiced -d` no Diffie-Hellman work: the
//! server takes its key pair only after the client's signed value verified (as spiped).
//! Measured as the daemon's CPU time (/proc/PID/stat) per forged connection against its
//! CPU time per full handshake; a real client still gets through during the flood.

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use sluice_engine::protocol::key::PresharedKey;
use sluice_engine::protocol::{
    EphemeralKeyPair, ForwardSecrecy, HandshakeDriver, NONCE_LEN, Next, PACKET_LEN, Role,
    SIGNED_DH_LEN,
};
use support::*;

const FORGED: usize = 300;
const FLOOD_THREADS: usize = 4;

/// utime + stime of `pid`, in clock ticks, all threads included.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Waits until the daemon's CPU time stops growing (its key-pair pool is full).
fn wait_idle(pid: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = cpu_ticks(pid);
    let mut still = 0;
    while still < 3 {
        assert!(Instant::now() < deadline, "sluiced never became idle");
        thread::sleep(Duration::from_millis(250));
        let now = cpu_ticks(pid);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    last
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

/// A client without the key: a nonce and 288 random bytes, then wait for the hang-up.
fn forged_connection(addr: &Addr) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr.tcp(), Duration::from_secs(10)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut hello = random::<NONCE_LEN>().to_vec();
    hello.extend_from_slice(&random::<SIGNED_DH_LEN>());
    let _ = stream.write_all(&hello);
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    assert!(
        sink.len() <= NONCE_LEN,
        "a forged client got more than a nonce"
    );
}

/// A real client (the protocol driver over a blocking socket): handshake, one packet
/// through the echo server and back.
fn legitimate_session(addr: &Addr, key: &PresharedKey) {
    let mut stream = TcpStream::connect_timeout(&addr.tcp(), Duration::from_secs(10)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut driver = HandshakeDriver::classic(
        Role::Client,
        key,
        ForwardSecrecy::Enabled,
        random(),
        Some(EphemeralKeyPair::boxed_from_random(random())),
    )
    .unwrap();
    let mut buf = [0u8; SIGNED_DH_LEN];
    loop {
        let out = driver.pending_output().to_vec();
        stream.write_all(&out).unwrap();
        driver.output_sent(out.len());
        match driver.next() {
            Next::Done => break,
            Next::Receive(n) => {
                let got = stream.read(&mut buf[..n]).unwrap();
                assert!(got > 0, "the daemon hung up on a real client");
                driver.receive(&buf[..got]).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (mut sealer, mut opener) = driver.finish().unwrap().session_codecs();
    let mut packet = [0u8; PACKET_LEN];
    sealer.seal(b"through the flood", &mut packet).unwrap();
    stream.write_all(&packet).unwrap();
    stream.read_exact(&mut packet).unwrap();
    let n = opener.open(&mut packet).unwrap();
    assert_eq!(&packet[..n], b"through the flood");
}

#[test]
fn forged_handshakes_cost_no_diffie_hellman_work() {
    let dir = temp_dir();
    let key_bytes = random::<32>();
    let key_path = write_key(dir.path(), "key", &key_bytes);
    let key = PresharedKey::from_keyfile_bytes(&key_bytes);
    let echo = Echo::tcp(LOCALHOST_V4);
    let (daemon, addr) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key_path, &[], dir.path());
    let pid = daemon.pid();

    // Full handshakes: the daemon's cost per connection (a pool pair replaced and a shared
    // secret: two exponentiations), measured until the CPU time is well above tick size.
    let start = wait_idle(pid);
    let mut full = 0u64;
    let mut full_ticks;
    loop {
        legitimate_session(&addr, &key);
        full += 1;
        full_ticks = wait_idle(pid) - start;
        if (full >= 8 && full_ticks >= 50) || full >= 200 {
            break;
        }
    }

    // The flood, with a real client in the middle of it.
    let before = wait_idle(pid);
    thread::scope(|scope| {
        for _ in 0..FLOOD_THREADS {
            scope.spawn(|| {
                for _ in 0..FORGED / FLOOD_THREADS {
                    forged_connection(&addr);
                }
            });
        }
        scope.spawn(|| legitimate_session(&addr, &key));
    });
    let flood_ticks = wait_idle(pid) - before;

    let per_full = full_ticks as f64 / full as f64;
    // The legitimate session during the flood costs about one full handshake.
    let per_forged = (flood_ticks as f64 - per_full).max(0.0) / FORGED as f64;
    eprintln!(
        "daemon CPU: {per_full:.2} ticks per full handshake ({full} runs), {per_forged:.3} per forged one ({FORGED})"
    );
    assert!(
        per_forged < 0.3 * per_full,
        "a forged handshake costs {per_forged:.3} ticks, a full one {per_full:.2}: the daemon does Diffie-Hellman work for unauthenticated clients"
    );
    assert!(daemon.wait_for_log("different key", Duration::from_secs(5)));
}
