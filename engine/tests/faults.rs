//! Faults around a running sluiced: a target that refuses and comes back, a target that
//! vanishes mid-stream, peers that reset or die, file-descriptor exhaustion under a low
//! RLIMIT_NOFILE (spiped 1.6 dies there, #463), a connection flood beyond -n, SIGTERM with
//! many open connections, and SIGKILL in the middle of config saves. After each, the
//! daemon must still serve and nothing may be lost. Linux only (reads /proc).

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]

mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sluice_engine::{Config, KeyRef, Mode, TunnelSpec};
use support::*;

const SLOW: Duration = Duration::from_secs(30);
const FEW_SECONDS: Duration = Duration::from_secs(5);

fn check_works(what: &str, client: &Addr, len: usize, seed: u64) {
    let data = test_data(len, seed);
    let got = exchange_with(client, &data, SLOW);
    assert_echoed(what, &data, &got);
}

/// A connection kept open and checked with round trips.
fn open_round_trip(addr: &Addr, tag: u8) -> Stream {
    let mut s = addr.connect().expect("connect");
    s.set_read_timeout(Some(SLOW)).unwrap();
    round_trip(&mut s, tag);
    s
}

fn round_trip(s: &mut Stream, tag: u8) {
    let data = [tag; 2000];
    s.write_all(&data).expect("send");
    let mut back = [0u8; 2000];
    s.read_exact(&mut back).expect("echo");
    assert_eq!(back, data);
}

// ---------------------------------------------------------------------------------------
// The target refuses, then comes back

#[test]
fn target_refuses_then_comes_back_both_modes() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    // Targets on UNIX sockets whose owners are gone (connecting is refused), so they can
    // come back at the same address for sure: a TCP port given up meanwhile could be taken
    // by any other connection on the machine.
    let stale = |name: &str| {
        let path = dir.path().join(name);
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        Addr::Unix(path)
    };
    // -d: the target is a plain service that is down at first.
    let down = stale("target.sock");
    let (sluiced_d, server) = sluiced("-d", LOCALHOST_V4, &down, &key, &[], dir.path());
    let (_spiped_e, via_d) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    // -e: the target is the far end (spiped -d), also down at first.
    let far_down = stale("far.sock");
    let (sluiced_e, via_e) = sluiced("-e", LOCALHOST_V4, &far_down, &key, &[], dir.path());

    for (what, client, proc) in [("-d", &via_d, &sluiced_d), ("-e", &via_e, &sluiced_e)] {
        for round in 0..3 {
            let got = exchange_with(client, b"anyone there?", SLOW);
            assert!(
                got.bytes.is_empty() && got.end.closed() && got.elapsed < FEW_SECONDS,
                "sluiced {what}, target down, round {round}: {} bytes, {:?} after {:?}",
                got.bytes.len(),
                got.end,
                got.elapsed
            );
        }
        assert!(
            proc.wait_for_log("connection refused: nothing is listening", FEW_SECONDS),
            "sluiced {what} does not say why:\n{}",
            proc.stderr()
        );
    }

    // Both targets come up on the same addresses: served at once, no restart needed.
    let (Addr::Unix(down_path), Addr::Unix(far_path)) = (&down, &far_down) else {
        unreachable!()
    };
    std::fs::remove_file(down_path).unwrap();
    std::fs::remove_file(far_path).unwrap();
    let echo = Echo::unix(down_path);
    let echo2 = Echo::tcp(LOCALHOST_V4);
    let (_spiped_d, _) = spiped_on(
        "-d",
        || far_down.clone(),
        &echo2.addr,
        &key,
        &[],
        dir.path(),
    );
    check_works(
        "sluiced -d after its target came back",
        &via_d,
        256 * 1024,
        1,
    );
    check_works(
        "sluiced -e after the far end came back",
        &via_e,
        256 * 1024,
        2,
    );
    assert_eq!(echo.connections(), 1);
}

// ---------------------------------------------------------------------------------------
// The target disappears mid-stream

/// A target that echoes the first `cut` bytes of its first connection, then resets it
/// (SO_LINGER 0); later connections are plain echoes.
fn resetting_target(cut: usize) -> (Addr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Addr::Tcp(listener.local_addr().unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let flag = Arc::clone(&flag);
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = 0;
                loop {
                    let Ok(k) = conn.read(&mut buf) else { return };
                    if k == 0 {
                        let _ = conn.shutdown(Shutdown::Write);
                        return;
                    }
                    let k = if n == 0 { k.min(cut - seen) } else { k };
                    if conn.write_all(&buf[..k]).is_err() {
                        return;
                    }
                    seen += k;
                    if n == 0 && seen >= cut {
                        let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
                        flag.store(true, Ordering::SeqCst);
                        return; // dropped: a reset
                    }
                }
            });
        }
    });
    (addr, done)
}

#[test]
fn target_vanishing_mid_stream_ends_only_that_connection() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    // sluiced -d in front of a target that resets its first connection after 100 KiB.
    let (target, reset) = resetting_target(100 * 1024);
    let (sluiced_d, server) = sluiced("-d", LOCALHOST_V4, &target, &key, &[], dir.path());
    let (_spiped_e, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    let data = test_data(1024 * 1024, 3);
    let got = exchange_with(&client, &data, SLOW);
    assert!(reset.load(Ordering::SeqCst), "the target never reset");
    assert!(got.end.closed(), "client end: {:?}", got.end);
    assert!(got.bytes.len() <= 100 * 1024 && data.starts_with(&got.bytes));
    check_works(
        "sluiced -d after its target reset a connection",
        &client,
        64 * 1024,
        4,
    );
    assert!(
        sluiced_d.wait_for_log("target side", FEW_SECONDS),
        "{}",
        sluiced_d.stderr()
    );

    // sluiced -e whose far end (spiped -d) is killed mid-stream, then started again.
    let echo = Echo::tcp(LOCALHOST_V4);
    // The far end listens on a UNIX socket, so it can restart at the same address for sure.
    let far_addr = Addr::Unix(dir.path().join("far.sock"));
    let (mut far, _) = spiped_on("-d", || far_addr.clone(), &echo.addr, &key, &[], dir.path());
    let (sluiced_e, via_e) = sluiced("-e", LOCALHOST_V4, &far_addr, &key, &[], dir.path());
    let mut open = open_round_trip(&via_e, 1);
    far.signal(libc::SIGKILL);
    far.wait_timeout(FEW_SECONDS).expect("spiped -d killed");
    let (_, end) = read_to_end(&mut open, FEW_SECONDS);
    assert!(end.closed(), "the client of a dead far end: {end:?}");
    // spiped leaves its socket file behind; a restart needs it gone.
    let Addr::Unix(far_path) = &far_addr else {
        unreachable!()
    };
    std::fs::remove_file(far_path).unwrap();
    let (_far2, _) = spiped_on("-d", || far_addr.clone(), &echo.addr, &key, &[], dir.path());
    check_works(
        "sluiced -e after its far end restarted",
        &via_e,
        64 * 1024,
        5,
    );
    assert!(sluiced_e.try_wait_alive(), "{}", sluiced_e.stderr());
}

trait Alive {
    fn try_wait_alive(&self) -> bool;
}

impl Alive for Proc {
    /// The process has not exited (checked through /proc, without reaping).
    fn try_wait_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .map(|s| !s.contains(") Z ") && !s.contains(") X "))
            .unwrap_or(false)
    }
}

// ---------------------------------------------------------------------------------------
// Peers that reset or die

#[test]
fn peers_that_reset_or_die_leave_nothing_behind() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (sluiced_d, server) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (sluiced_e, client) = sluiced("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    let pids = (sluiced_d.pid(), sluiced_e.pid());
    let fds = (fd_count(pids.0), fd_count(pids.1));
    // Both daemons' descriptors back to `fds` within a few seconds, or the test fails.
    let assert_fds_back = |after: &str| {
        let back = wait_until(FEW_SECONDS, || {
            fd_count(pids.0) <= fds.0 && fd_count(pids.1) <= fds.1
        });
        let now = (fd_count(pids.0), fd_count(pids.1));
        assert!(
            back,
            "after {after}, descriptors (sluiced -d, sluiced -e) were {fds:?} before, now {now:?}"
        );
    };
    check_works("warm-up", &client, 4096, 6);
    // The warm-up connection may still be closing inside the daemons: wait until it is gone.
    assert_fds_back("one connection");

    // Plaintext clients that reset mid-stream (SO_LINGER 0), ten times.
    for i in 0..10 {
        let s = open_round_trip(&client, i);
        if let Stream::Tcp(tcp) = &s {
            socket2::SockRef::from(tcp)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            // Leave data in flight, then reset.
            let _ = (&*tcp).write_all(&[i; 50_000]);
        }
        drop(s);
    }
    // Encrypted peers that die: spiped -e killed with connections open, twice.
    for round in 0..2 {
        let (mut spiped_e, via) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
        let _open: Vec<Stream> = (0..3).map(|t| open_round_trip(&via, 100 + t)).collect();
        spiped_e.signal(libc::SIGKILL);
        spiped_e.wait_timeout(FEW_SECONDS).expect("killed");
        eprintln!("round {round}: spiped -e killed with 3 open connections");
    }
    // Every one of those connections is gone on both daemons: descriptors back to before.
    assert_fds_back("resets and dead peers");
    assert!(wait_until(FEW_SECONDS, || echo.finished() == echo.connections()));
    check_works("after resets and dead peers", &client, 256 * 1024, 7);
}

// ---------------------------------------------------------------------------------------
// File-descriptor exhaustion

/// sluiced -d (no connection limit, long handshake timeout) with RLIMIT_NOFILE = `nofile`.
fn sluiced_d_with_fd_limit(nofile: u64, target: &Addr, key: &Path, dir: &Path) -> (Proc, Addr) {
    start_daemon(
        "sluiced-d-nofile",
        dir,
        || free_addr(LOCALHOST_V4),
        |listen| {
            let mut c = Command::new(SLUICED);
            c.args(["-d", "-F", "-n", "0", "-o", "30", "-s", &listen.spiped()])
                .args(["-t", &target.spiped()])
                .arg("-k")
                .arg(key);
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                c.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: nofile,
                        rlim_max: nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
            c
        },
    )
}

#[test]
fn fd_exhaustion_pauses_accepting_then_recovers() {
    const NOFILE: u64 = 64;
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (victim, server) = sluiced_d_with_fd_limit(NOFILE, &echo.addr, &key, dir.path());
    let (_spiped_e, client) = spiped("-e", LOCALHOST_V4, &server, &key, &["-o", "30"], dir.path());
    let mut bystander = open_round_trip(&client, 1);
    let baseline = fd_count(victim.pid());
    eprintln!("sluiced -d with RLIMIT_NOFILE {NOFILE}: {baseline} descriptors with one connection");

    // Flood: silent clients, each holding a descriptor while its handshake waits.
    let flood: Vec<TcpStream> = (0..2 * NOFILE)
        .filter_map(|_| TcpStream::connect_timeout(&server.tcp(), Duration::from_secs(2)).ok())
        .collect();
    assert!(
        victim.wait_for_log("cannot accept connections", FEW_SECONDS),
        "no exhaustion reported with {} clients:\n{}",
        flood.len(),
        victim.stderr()
    );
    // (Descriptors the test harness leaks into children, such as a jobserver pipe, come on
    // top of the limit; what matters is that accept() failed and the daemon carried on.)
    let at_limit = fd_count(victim.pid());
    eprintln!(
        "{} flood clients; sluiced -d at {at_limit} descriptors and still alive",
        flood.len()
    );

    // Open connections keep working, and the daemon stays up.
    for tag in 2..6 {
        round_trip(&mut bystander, tag);
    }
    assert!(
        victim.try_wait_alive(),
        "sluiced died:\n{}",
        victim.stderr()
    );

    // A new client now waits (no descriptor to accept it with)...
    let mut waiting = client.connect().expect("connect while exhausted");
    waiting.write_all(b"patience").unwrap();
    let (bytes, end) = read_to_end(&mut waiting, Duration::from_millis(800));
    assert!(
        bytes.is_empty() && end == End::TimedOut,
        "served while exhausted? {end:?}"
    );
    // ...and is served once the flood goes away.
    drop(flood);
    waiting.set_read_timeout(Some(SLOW)).unwrap();
    let mut back = [0u8; 8];
    waiting
        .read_exact(&mut back)
        .expect("served after descriptors freed up");
    assert_eq!(&back, b"patience");
    check_works("a new client after the flood", &client, 256 * 1024, 8);
    round_trip(&mut bystander, 9);
    let got = exchange(bystander, b"bye", SLOW);
    assert_echoed("bystander at the end", b"bye", &got);
    assert!(victim.try_wait_alive());
}

// ---------------------------------------------------------------------------------------
// A connection flood beyond -n

#[test]
fn connection_flood_beyond_limit_is_absorbed() {
    const LIMIT: usize = 8;
    const FLOOD: usize = 60;
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (victim, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["-n", &LIMIT.to_string(), "-o", "0.5"],
        dir.path(),
    );
    let (_spiped_e, client) = spiped("-e", LOCALHOST_V4, &server, &key, &["-o", "60"], dir.path());
    let mut bystander = open_round_trip(&client, 1);
    let baseline = fd_count(victim.pid());

    // Silent clients (slowloris): each holds a slot until its handshake times out.
    let flood: Vec<TcpStream> = (0..FLOOD)
        .filter_map(|_| TcpStream::connect_timeout(&server.tcp(), Duration::from_secs(2)).ok())
        .collect();
    assert!(victim.wait_for_log(
        &format!("maximum number of connections ({LIMIT}) reached"),
        FEW_SECONDS
    ));
    // A good client arrives behind the flood.
    let started = Instant::now();
    let good = thread::spawn({
        let client = client.clone();
        move || {
            let data = test_data(64 * 1024, 9);
            let got = exchange_with(&client, &data, Duration::from_secs(60));
            assert_echoed("the good client behind the flood", &data, &got);
        }
    });
    // Descriptors stay bounded by the limit while the flood drains.
    let mut peak = 0;
    while !good.is_finished() {
        peak = peak.max(fd_count(victim.pid()));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the good client was never served"
        );
        thread::sleep(Duration::from_millis(50));
    }
    good.join().expect("good client");
    eprintln!(
        "{} silent clients beyond -n {LIMIT}: good client served after {:?}; descriptors {baseline} -> peak {peak}",
        flood.len(),
        started.elapsed()
    );
    assert!(
        peak <= baseline + LIMIT + 2,
        "descriptors grew to {peak} (baseline {baseline})"
    );
    round_trip(&mut bystander, 2);
    assert_eq!(
        echo.connections(),
        2,
        "only the bystander and the good client reached the target"
    );
    assert!(victim.try_wait_alive());
}

// ---------------------------------------------------------------------------------------
// SIGTERM with many open connections; a second SIGTERM

#[test]
fn sigterm_drains_many_open_connections_and_a_second_one_kills() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (mut victim, server) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (_spiped_e, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());

    // Five connections, each mid-transfer (half its data echoed already).
    let data: Vec<Vec<u8>> = (0..5).map(|i| test_data(256 * 1024, 20 + i)).collect();
    let mut open = Vec::new();
    for d in &data {
        let mut s = client.connect().unwrap();
        s.set_read_timeout(Some(SLOW)).unwrap();
        let half = d.len() / 2;
        s.write_all(&d[..half]).unwrap();
        let mut back = vec![0u8; half];
        s.read_exact(&mut back).unwrap();
        assert!(back == d[..half]);
        open.push(s);
    }
    victim.signal(libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(2), || !victim.listens_on(&server)),
        "still listening after SIGTERM"
    );
    // New clients are not served.
    let got = exchange_with(&client, b"too late", Duration::from_secs(2));
    assert!(got.bytes.is_empty(), "served after SIGTERM");
    // Every open connection finishes its transfer.
    let finishing: Vec<_> = open
        .into_iter()
        .zip(&data)
        .map(|(s, d)| {
            let rest = d[d.len() / 2..].to_vec();
            thread::spawn(move || {
                let got = exchange(s, &rest, SLOW);
                assert_echoed("open connection after SIGTERM", &rest, &got);
            })
        })
        .collect();
    for f in finishing {
        f.join().expect("connection finished");
    }
    let status = victim
        .wait_timeout(Duration::from_secs(10))
        .expect("exits once drained");
    assert_eq!(status.code(), Some(0));

    // A second SIGTERM while draining: exits at once, by the signal.
    let (mut victim, server) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (_spiped_e2, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    let _held = open_round_trip(&client, 3);
    victim.signal(libc::SIGTERM);
    assert!(wait_until(Duration::from_secs(2), || !victim.listens_on(&server)));
    assert!(victim.try_wait().is_none(), "exited with a connection open");
    victim.signal(libc::SIGTERM);
    let status = victim
        .wait_timeout(FEW_SECONDS)
        .expect("second SIGTERM kills");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
}

// ---------------------------------------------------------------------------------------
// SIGKILL during config saves

const SAVER_ENV: &str = "SLUICE_TEST_SAVE_LOOP";

/// Two different, valid configs (A has many tunnels, so a save takes a while).
fn config_pair() -> (Config, Config) {
    let tunnel = |i: usize| {
        let mut t = TunnelSpec::new(
            format!("tunnel-{i:03}"),
            if i.is_multiple_of(2) {
                Mode::Encrypt
            } else {
                Mode::Decrypt
            },
            format!("[127.0.0.1]:{}", 20000 + i),
            format!("far-{i}.example.org:8025"),
            KeyRef::File(format!("/etc/sluice/key-{i}").into()),
        );
        t.fingerprint = Some("0123:4567:89ab:cdef:0123:4567:89ab:cdef".into());
        t
    };
    let a = Config {
        tunnels: (0..300).map(tunnel).collect(),
        ..Config::default()
    };
    let b = Config {
        tunnels: (0..3).map(|i| tunnel(i + 1000)).collect(),
        ..Config::default()
    };
    (a, b)
}

/// Not a test by itself: when re-run by the test below with SAVER_ENV set, saves the two
/// configs in turn, forever, until killed.
#[test]
fn config_saver_child() {
    let Ok(path) = std::env::var(SAVER_ENV) else {
        return;
    };
    let (a, b) = config_pair();
    eprintln!("saving");
    loop {
        a.save_atomic(Path::new(&path)).expect("save A");
        b.save_atomic(Path::new(&path)).expect("save B");
    }
}

#[test]
fn sigkill_during_config_saves_leaves_old_or_new_file() {
    const KILLS: usize = 60;
    let dir = temp_dir();
    let path = dir.path().join("config.ron");
    let (a, b) = config_pair();
    a.save_atomic(&path).unwrap();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut seen = [0usize; 2];
    for kill in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                "config_saver_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SAVER_ENV, &path);
        let mut proc = Proc::spawn("saver", child, dir.path());
        // Kill at a pseudo-random moment 0-60 ms into the saving (a save of the large
        // config takes a few ms, so kills land before, during and after renames).
        assert!(
            proc.wait_for_log("saving", Duration::from_secs(20)),
            "saver did not start"
        );
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        thread::sleep(Duration::from_micros(seed % 60_000));
        proc.signal(libc::SIGKILL);
        proc.wait_timeout(FEW_SECONDS).expect("saver killed");
        let loaded = Config::load(&path)
            .unwrap_or_else(|e| panic!("after kill {kill}, the config does not load: {e}"));
        if loaded == a {
            seen[0] += 1;
        } else if loaded == b {
            seen[1] += 1;
        } else {
            panic!("after kill {kill}, the config is neither the old nor the new one");
        }
    }
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        })
        .count();
    eprintln!(
        "{KILLS} SIGKILLs during saves: config A {} times, B {} times, never anything else; {leftovers} temporary files left behind",
        seen[0], seen[1]
    );
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "kills never landed between saves: {seen:?}"
    );
    // Each save clears what killed savers left behind: at most the last one's remains.
    assert!(leftovers <= 1, "{leftovers} temporary files accumulated");
}

// ---------------------------------------------------------------------------------------
// A peer that floods valid data into a target that never reads

#[test]
fn flood_into_a_target_that_never_reads_stays_bounded() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    // A target that accepts and never reads a byte.
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_addr = Addr::Tcp(sink.local_addr().unwrap());
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let held2 = Arc::clone(&held);
    thread::spawn(move || {
        for conn in sink.incoming().flatten() {
            held2.lock().unwrap().push(conn);
        }
    });
    let echo = Echo::tcp(LOCALHOST_V4);
    let (victim, server) = sluiced("-d", LOCALHOST_V4, &sink_addr, &key, &[], dir.path());
    let (_spiped_e, client) = spiped("-e", LOCALHOST_V4, &server, &key, &[], dir.path());
    // The flooded daemon's target never answers, so the bystander uses a second pair;
    // what is checked on the flooded daemon is its memory and that it stays up.
    let (_d2, server2) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (_e2, client2) = spiped("-e", LOCALHOST_V4, &server2, &key, &[], dir.path());
    check_works("warm-up", &client2, 4096, 1);
    let rss_before = rss_kib(victim.pid());

    // Two clients push as fast as they can until everything in between is full.
    let chunk = test_data(64 * 1024, 2);
    let mut pushed = 0usize;
    let mut floods = Vec::new();
    for _ in 0..2 {
        let Stream::Tcp(tcp) = client.connect().unwrap() else {
            unreachable!()
        };
        tcp.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut tcp = tcp;
        while pushed < 1 << 30 {
            match tcp.write(&chunk) {
                Ok(n) => pushed += n,
                Err(_) => break,
            }
        }
        floods.push(tcp);
    }
    // The writers stalled for a second, so the pipe is full; the largest reading until the
    // daemon's resident memory holds still for ten readings in a row is what it buffered.
    let (mut rss_after, mut last, mut same) = (0, 0, 0);
    let steady = wait_until(Duration::from_secs(10), || {
        let now = rss_kib(victim.pid());
        rss_after = rss_after.max(now);
        same = if now == last { same + 1 } else { 0 };
        last = now;
        same >= 10
    });
    assert!(
        steady,
        "sluiced -d's resident memory kept changing for 10 s"
    );
    eprintln!(
        "2 clients pushed {:.1} MiB into a target that never reads; sluiced -d resident {rss_before} -> {rss_after} KiB",
        pushed as f64 / (1024.0 * 1024.0)
    );
    // Back-pressure, not buffering: the daemon holds at most its pump buffers.
    assert!(
        rss_after < rss_before + 8 * 1024,
        "sluiced -d buffered the flood: {rss_before} -> {rss_after} KiB"
    );
    assert!(
        pushed < 256 << 20,
        "{pushed} bytes were taken: where did they go?"
    );
    check_works("the other tunnel during the flood", &client2, 64 * 1024, 3);
    assert!(victim.try_wait_alive());
    drop(floods);
}
