//! sluiced's process hardening, through the real binary: privileges dropped after the
//! listeners are bound and before anything is accepted (also with -D), the pid file written before the drop and never
//! through a symbolic link, a key file read with a bound, and handshake failures that
//! cannot flood the log (with the engine's counters still counting every one). The
//! privilege tests need root (as CI runs them); elsewhere they say so and skip, and under
//! CI a missing root fails them.

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]

mod support;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const SLOW: Duration = Duration::from_secs(30);

/// The uid and gid of `nobody`, from the system's own tools.
fn nobody_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
        assert!(out.status.success(), "id {flag} nobody");
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// The real, effective, saved and filesystem ids of a process ("Uid:" or "Gid:" line).
fn proc_ids(pid: u32, field: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// A directory only root may enter (mode 0700), inside a fresh temporary directory.
fn root_only_dir(dir: &Path) -> PathBuf {
    let private = dir.join("root-only");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    private
}

/// Kills the daemonized child (by the pid it wrote) when the test ends, whatever happens.
struct PidFileGuard(PathBuf);

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

fn assert_runs_as_nobody(pid: u32, what: &str) {
    let (uid, gid) = nobody_ids();
    assert_eq!(proc_ids(pid, "Uid:"), vec![uid; 4], "{what}: uids");
    assert_eq!(proc_ids(pid, "Gid:"), vec![gid; 4], "{what}: gids");
}

fn check_serves(what: &str, through: &Addr, key: &Path, dir: &Path) {
    let (_client, client) = spiped("-e", LOCALHOST_V4, through, key, &[], dir);
    let data = test_data(64 * 1024, 11);
    assert_echoed(what, &data, &exchange_with(&client, &data, SLOW));
}

// ---------------------------------------------------------------------------------------
// 11.2: privileges dropped after every bind

/// `-u nobody` in the foreground, with and without -D, listening on a UNIX socket in a
/// directory only root may enter: the bind happens as root, then the daemon serves as
/// nobody. Before the fix, -D dropped privileges while the tunnel was still binding, so
/// the bind failed (EACCES) and was retried forever.
#[test]
fn u_drops_privileges_only_after_the_listener_is_bound() {
    if !require(
        is_root(),
        "root (to drop privileges)",
        "run the tests as root, as CI does",
    ) {
        return;
    }
    for flags in [&["-D"][..], &[]] {
        let dir = temp_dir();
        let key = random_key(dir.path(), "key");
        let echo = Echo::tcp(LOCALHOST_V4);
        let listen = Addr::Unix(root_only_dir(dir.path()).join("sluiced.sock"));
        let what = format!("sluiced -d -F {flags:?} -u nobody");
        let mut command = Command::new(SLUICED);
        command
            .args(["-d", "-F", "-u", "nobody", "-s", &listen.spiped()])
            .args(["-t", &echo.addr.spiped()])
            .arg("-k")
            .arg(&key)
            .args(flags);
        let mut proc = Proc::spawn("sluiced-u", command, dir.path());
        assert!(
            proc.wait_listening(&listen),
            "{what} exited: {:?}\n{}",
            proc.try_wait(),
            proc.stderr()
        );
        // Listening is not enough: the drop comes right after the bind. Wait for it.
        let (uid, _) = nobody_ids();
        assert!(
            wait_until(Duration::from_secs(5), || proc_ids(proc.pid(), "Uid:")[0]
                == uid),
            "{what} still runs as uid {:?}:\n{}",
            proc_ids(proc.pid(), "Uid:"),
            proc.stderr()
        );
        assert_runs_as_nobody(proc.pid(), &what);
        check_serves(&what, &listen, &key, dir.path());
        assert!(
            proc.try_wait().is_none(),
            "{what} exited:\n{}",
            proc.stderr()
        );
        assert!(
            !proc.stderr().contains("could not start"),
            "{what}: a bind failed:\n{}",
            proc.stderr()
        );
    }
}

/// Daemonizing with -D -u nobody and the pid file in a root-only directory: the pid
/// file is written before privileges are dropped (as spiped does), the socket bound
/// before, and the daemon then serves as nobody.
/// -D -u with one tunnel whose port is taken: before the fix the other tunnel served
/// connections as root for as long as the port stayed taken (the drop waited for every
/// bind). Now tunnels accept nothing until privileges are dropped, the drop comes once
/// every tunnel has tried once, and the one that failed is retried as nobody, with a
/// warning saying why that may not work.
#[test]
fn nothing_is_served_as_root_while_another_tunnel_cannot_bind() {
    if !require(
        is_root(),
        "root (to drop privileges)",
        "run the tests as root, as CI does",
    ) {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let taken = std::net::TcpListener::bind((LOCALHOST_V4, 0)).unwrap();
    let busy = Addr::Tcp(taken.local_addr().unwrap());
    let config = dir.path().join("tunnels.ron");
    let tunnel = |name: &str, listen: &Addr| {
        format!(
            "(name: {name:?}, mode: Decrypt, listen: {:?}, target: {:?}, key: File({:?}))",
            listen.spiped(),
            echo.addr.spiped(),
            key.display().to_string()
        )
    };
    let (mut proc, addrs) = start_daemon_multi(
        "sluiced-D-u",
        dir.path(),
        || vec![free_addr(LOCALHOST_V4)],
        |addrs| {
            let text = format!(
                "(version: 1, tunnels: [{}, {}])",
                tunnel("open", &addrs[0]),
                tunnel("busy", &busy)
            );
            fs::write(&config, text).unwrap();
            let mut command = Command::new(SLUICED);
            command
                .args(["-F", "-D", "-u", "nobody", "--config"])
                .arg(&config);
            command
        },
    );
    // A client of the tunnel that listens is served, and by then sluiced is nobody.
    let what = "sluiced -F -D -u nobody, one port taken";
    check_serves(what, &addrs[0], &key, dir.path());
    assert_runs_as_nobody(proc.pid(), what);
    let warning = proc
        .wait_for_log_line(
            |l| l.contains("busy: not listening yet") && l.contains("as user nobody"),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no warning about the retry:\n{}", proc.stderr()));
    assert!(warning.contains("permission denied"), "{warning}");

    // The port frees up: the retry, as nobody, binds it (a port above 1024).
    drop(taken);
    assert!(
        proc.wait_listening(&busy),
        "the retried tunnel did not bind as nobody:\n{}",
        proc.stderr()
    );
    check_serves("the retried tunnel", &busy, &key, dir.path());
    assert_runs_as_nobody(proc.pid(), what);
}

#[test]
fn daemonized_d_u_writes_the_pid_file_first_and_serves_as_nobody() {
    if !require(
        is_root(),
        "root (to drop privileges)",
        "run the tests as root, as CI does",
    ) {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let private = root_only_dir(dir.path());
    let listen = Addr::Unix(private.join("sluiced.sock"));
    let pidfile = private.join("sluiced.pid");
    let _guard = PidFileGuard(pidfile.clone());
    // The daemon keeps the standard error it inherited: a file, so that nothing waits
    // for it to close.
    let stderr_path = dir.path().join("daemon.err");
    let status = Command::new(SLUICED)
        .args(["-d", "-D", "-u", "nobody", "-s", &listen.spiped()])
        .args(["-t", &echo.addr.spiped()])
        .arg("-k")
        .arg(&key)
        .arg("-p")
        .arg(&pidfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .status()
        .expect("run sluiced");
    assert!(
        status.success(),
        "{}",
        fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    let pid: u32 = fs::read_to_string(&pidfile)
        .expect("the pid file, written as root")
        .trim()
        .parse()
        .unwrap();
    let mode = fs::metadata(&pidfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o133, 0, "pid file mode {mode:o}: at most 0644");
    assert!(
        wait_until(Duration::from_secs(15), || pid_listens_on(pid, &listen)),
        "the daemon {pid} never listened"
    );
    let (uid, _) = nobody_ids();
    assert!(wait_until(Duration::from_secs(5), || proc_ids(pid, "Uid:")
        [0]
        == uid));
    assert_runs_as_nobody(pid, "daemonized sluiced -D -u nobody");
    check_serves("daemonized sluiced -D -u nobody", &listen, &key, dir.path());
}

#[test]
fn u_with_an_unknown_user_stops_with_a_clear_error() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    for flags in [&["-D"][..], &[]] {
        let listen = Addr::Unix(dir.path().join(format!("s{}.sock", flags.len())));
        let mut command = Command::new(SLUICED);
        command
            .args([
                "-d",
                "-F",
                "-u",
                "no-such-user-sluice",
                "-s",
                &listen.spiped(),
            ])
            .args(["-t", &echo.addr.spiped()])
            .arg("-k")
            .arg(&key)
            .args(flags);
        let mut proc = Proc::spawn("sluiced-u-unknown", command, dir.path());
        let status = proc
            .wait_timeout(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{flags:?}: sluiced kept running:\n{}", proc.stderr()));
        assert_eq!(status.code(), Some(1), "{flags:?}: {}", proc.stderr());
        assert!(
            proc.stderr()
                .contains("cannot switch to user no-such-user-sluice: no user named"),
            "{flags:?}: {}",
            proc.stderr()
        );
    }
}

// ---------------------------------------------------------------------------------------
// 11.3: the pid file never follows a symbolic link

/// A symbolic link at the pid file's path (to a file the attacker wants overwritten, or
/// to nowhere) is refused with a clear error, start-up fails, and the link's target is
/// untouched (or not created), with and without -D.
#[test]
fn a_symlink_at_the_pid_file_path_is_refused_and_its_target_untouched() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let precious = dir.path().join("precious");
    fs::write(&precious, "do not overwrite\n").unwrap();
    for (i, flags) in [&["-D"][..], &[]].iter().enumerate() {
        for (name, target) in [
            ("existing", precious.clone()),
            ("dangling", dir.path().join("nowhere")),
        ] {
            let link = dir.path().join(format!("{name}-{i}.pid"));
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let listen = free_addr(LOCALHOST_V4);
            let out = Command::new(SLUICED)
                .args(["-d", "-s", &listen.spiped(), "-t", &echo.addr.spiped()])
                .arg("-k")
                .arg(&key)
                .arg("-p")
                .arg(&link)
                .args(*flags)
                .stdin(Stdio::null())
                .output()
                .expect("run sluiced");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{flags:?} {name}: {stderr}");
            assert!(
                stderr.contains(&format!(
                    "pid file {}: it is a symbolic link",
                    link.display()
                )),
                "{flags:?} {name}: {stderr}"
            );
            assert_eq!(fs::read_to_string(&precious).unwrap(), "do not overwrite\n");
            assert!(
                !dir.path().join("nowhere").exists(),
                "the dangling link's target was created"
            );
            assert!(
                fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 11.7: a key file is read with a bound

#[test]
fn key_files_beyond_1_mib_are_refused_clearly() {
    let dir = temp_dir();
    let big = dir.path().join("big.key");
    fs::write(&big, vec![7u8; (1 << 20) + 1]).unwrap();
    let exact = write_key(dir.path(), "exact.key", &vec![7u8; 1 << 20]);

    for key in [Path::new("/dev/zero"), &big] {
        let started = Instant::now();
        let out = Command::new(SLUICED)
            .arg("--fingerprint")
            .arg(key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", key.display());
        assert!(
            stderr.contains(&format!("key file {} is larger than 1 MiB", key.display())),
            "{stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    let out = Command::new(SLUICED)
        .arg("--fingerprint")
        .arg(&exact)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The daemon, with the key on standard input (-k -) and as a device.
    let echo = Echo::tcp(LOCALHOST_V4);
    for (key, stdin) in [("-", Some(&big)), ("/dev/zero", None)] {
        let listen = free_addr(LOCALHOST_V4);
        let mut command = Command::new(SLUICED);
        command.args([
            "-d",
            "-F",
            "-s",
            &listen.spiped(),
            "-t",
            &echo.addr.spiped(),
            "-k",
            key,
        ]);
        let stdin = stdin.map_or(Stdio::null(), |path| {
            Stdio::from(fs::File::open(path).unwrap())
        });
        let mut proc = Proc::spawn_with_stdin("sluiced-big-key", command, dir.path(), stdin);
        let status = proc
            .wait_timeout(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("-k {key}: still running:\n{}", proc.stderr()));
        assert_eq!(status.code(), Some(1), "-k {key}: {}", proc.stderr());
        let expected = if key == "-" {
            "the key from standard input is larger than 1 MiB".to_owned()
        } else {
            format!("key file {key} is larger than 1 MiB")
        };
        assert!(
            proc.stderr().contains(&expected),
            "-k {key}: {}",
            proc.stderr()
        );
    }
}

// ---------------------------------------------------------------------------------------
// 11.6: strangers cannot flood the log

/// Sends `count` forged handshakes (320 random bytes each), one connection after the
/// other, each until the server hangs up.
fn forged_handshakes(server: &Addr, count: usize) {
    for i in 0..count {
        let got = exchange_with(server, &test_data(320, 1000 + i as u64), SLOW);
        assert!(
            got.bytes.len() <= 32 && got.end.closed(),
            "forged handshake {i}: {:?}",
            got.end
        );
    }
}

/// 200 bad handshakes against sluiced -d: one line in full, the rest in one summary
/// (logged as it stops here; once a minute while a flood lasts), not 200 lines.
#[test]
fn a_flood_of_bad_handshakes_is_one_line_and_a_summary() {
    const FLOOD: usize = 200;
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (mut victim, server) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    forged_handshakes(&server, FLOOD);
    assert!(
        victim.wait_for_log("signed with a different key", Duration::from_secs(5)),
        "{}",
        victim.stderr()
    );
    // A good client is served meanwhile.
    check_serves("a good client after the flood", &server, &key, dir.path());

    victim.signal(libc::SIGTERM);
    let status = victim.wait_timeout(SLOW).expect("sluiced stops on SIGTERM");
    assert!(status.success(), "{}", victim.stderr());
    let log = victim.stderr();
    let failures = HandshakeFailureLog::parse(&log);
    assert_eq!(failures.in_full.len(), 1, "{failures:#?}");
    assert_eq!(failures.summaries.len(), 1, "{failures:#?}");
    assert_eq!(failures.total(), FLOOD as u64, "{failures:#?}");
    assert_eq!(
        failures.summarized.get("wrong key").copied(),
        Some(FLOOD as u64 - 1),
        "{failures:#?}"
    );
    assert!(
        failures.summaries[0].contains(&format!(
            "{} more handshake failures in the last",
            FLOOD - 1
        )),
        "{}",
        failures.summaries[0]
    );
    assert_eq!(
        log_count(&victim, "signed with a different key"),
        1,
        "one line in full:\n{log}"
    );
}

/// The one "N more problems …" summary line of a log, and the count it gives `kind`.
fn summarized(log: &str, kind: &str) -> (usize, u64) {
    let summaries: Vec<&str> = complete_lines(log)
        .filter(|l| l.contains("more problem"))
        .collect();
    let count = summaries
        .iter()
        .filter_map(|l| {
            let before = l.split(&format!(" {kind}")).next()?;
            before.rsplit(['(', ' ']).next()?.parse::<u64>().ok()
        })
        .sum();
    (summaries.len(), count)
}

/// Strangers who can connect trip the connection limit and (on an encrypting end) an
/// unreachable target as often as they like. Before, each time was a log line (about
/// 2,000 lines in 10 s against -n 2); now the first is in full and the rest in one
/// summary a minute, while the counters count every one.
#[test]
fn limit_and_unreachable_target_floods_are_one_line_and_a_summary() {
    const FLOOD: usize = 300;
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");

    // An encrypting end whose far end is down.
    let nowhere = refusing_addr(LOCALHOST_V4);
    let (mut encrypting, client) =
        sluiced("-e", LOCALHOST_V4, &nowhere.addr, &key, &[], dir.path());
    for i in 0..FLOOD {
        let got = exchange_with(&client, b"x", SLOW);
        assert!(
            got.bytes.is_empty() && got.end.closed(),
            "client {i}: {:?}",
            got.end
        );
    }
    encrypting.signal(libc::SIGTERM);
    assert!(encrypting.wait_timeout(SLOW).is_some_and(|s| s.success()));
    let log = encrypting.stderr();
    assert_eq!(
        log_count(&encrypting, "unreachable: connection refused"),
        1,
        "one line in full:\n{log}"
    );
    assert_eq!(
        summarized(&log, "target unreachable"),
        (1, FLOOD as u64 - 1),
        "the rest in one summary:\n{log}"
    );

    // A decrypting end with two slots, both held by silent clients, and a flood of
    // clients that connect and go.
    let echo = Echo::tcp(LOCALHOST_V4);
    let metrics = free_addr(LOCALHOST_V4);
    let metrics_flag = metrics.tcp().to_string();
    let (mut limited, server) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["-n", "2", "-o", "2", "--metrics", &metrics_flag],
        dir.path(),
    );
    let _held: Vec<_> = (0..2).map(|_| server.connect().unwrap()).collect();
    assert!(
        limited.wait_for_log("maximum number of connections (2) reached", SLOW),
        "{}",
        limited.stderr()
    );
    for _ in 0..FLOOD {
        drop(server.connect().unwrap());
    }
    let scrape = || {
        http_get(metrics.tcp(), "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    };
    let accepted = format!(
        "sluice_tunnel_connections_total{{tunnel=\"{}\"}}",
        server.spiped()
    );
    assert!(
        wait_until(SLOW, || metric_value(&scrape(), &accepted)
            == Some(FLOOD as u64 + 2)),
        "not every client was accepted: {}",
        scrape()
    );
    let reached_series = format!(
        "sluice_tunnel_connection_limit_reached_total{{tunnel=\"{}\"}}",
        server.spiped()
    );
    let reached = metric_value(&scrape(), &reached_series).unwrap_or(0);
    assert!(
        reached > 10,
        "the limit was hit {reached} times: {}",
        scrape()
    );
    limited.signal(libc::SIGTERM);
    assert!(limited.wait_timeout(SLOW).is_some_and(|s| s.success()));
    let log = limited.stderr();
    assert_eq!(
        log_count(&limited, "maximum number of connections"),
        1,
        "one line in full:\n{log}"
    );
    assert_eq!(
        summarized(&log, "connection limit reached"),
        (1, reached - 1),
        "the rest in one summary, every one counted:\n{log}"
    );
}

/// The same flood through the engine's API: one HandshakeFailed event, the counters
/// count all of them, and the summary of the rest is published when the tunnel stops.
#[test]
fn engine_counts_every_failure_and_publishes_one_event_and_a_summary() {
    use sluice_engine::{
        Address, Engine, EventKind, HandshakeFailure, Mode, PresharedKey, TunnelDefinition,
        TunnelSettings,
    };
    const FLOOD: usize = 100;
    let echo = Echo::tcp(LOCALHOST_V4);
    let engine = Engine::start(|| {}).expect("start engine");
    let mut events = engine.subscribe();
    run_tunnels(
        &engine,
        vec![TunnelSettings::new(
            TunnelDefinition::new(
                "flooded",
                Mode::Decrypt,
                Address::Ip(SocketAddr::new(LOCALHOST_V4, 0)),
                Address::Ip(echo.addr.tcp()),
            ),
            PresharedKey::from_keyfile_bytes(b"the engine's key"),
        )],
    );
    let server = listening_address(&engine, &mut events);
    forged_handshakes(&server, FLOOD);
    assert!(
        wait_until(SLOW, || engine
            .status("flooded")
            .is_some_and(
                |s| s.counters.total_handshake_failures() == FLOOD as u64
            )),
        "counters: {:?}",
        engine.status("flooded").map(|s| s.counters)
    );
    assert_eq!(
        engine
            .status("flooded")
            .unwrap()
            .counters
            .handshake_failures_for(HandshakeFailure::WrongKey),
        FLOOD as u64
    );
    engine.shutdown(true);

    let mut in_full = 0;
    let mut summaries = Vec::new();
    while let Some(event) = events.try_next() {
        match event {
            Ok(event) => match event.kind.clone() {
                EventKind::HandshakeFailed { fault, .. } => {
                    assert_eq!(fault.cause(), HandshakeFailure::WrongKey);
                    in_full += 1;
                }
                EventKind::HandshakeFailuresSummarized {
                    count, by_cause, ..
                } => {
                    assert!(event.kind.is_problem());
                    summaries.push((count, by_cause));
                }
                _ => {}
            },
            Err(missed) => panic!("missed {missed:?}"),
        }
    }
    assert_eq!(in_full, 1);
    assert_eq!(
        summaries,
        vec![(
            FLOOD as u64 - 1,
            vec![(HandshakeFailure::WrongKey, FLOOD as u64 - 1)]
        )]
    );
}
