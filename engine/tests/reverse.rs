//! Reverse tunnels between real `sluiced` processes: a service behind a `--reverse-out`
//! end reached from the `--reverse-in` end's clients, thousands of short connections with
//! nothing leaked, strangers flooding the reverse-in port, the far end restarted, the ends
//! that must refuse each other (another key, another forward-secrecy policy, stock spiped
//! on either side), and a real peer-to-peer system (Dask) whose scheduler reaches its
//! worker only through the reverse tunnel.

// Unix only: these tests drive real processes and sockets through the test kit.
#![cfg(unix)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const SLOW: Duration = Duration::from_secs(30);
const POOL: u64 = 4;

/// `sluiced --reverse-in -s ENC -l PLAIN --metrics M`, on free addresses.
fn reverse_in(dir: &Path, key: &Path, extra: &[&str]) -> (Proc, Addr, Addr, Addr) {
    let (proc, addrs) = start_daemon_multi(
        "reverse-in",
        dir,
        || (0..3).map(|_| free_addr(LOCALHOST_V4)).collect::<Vec<_>>(),
        |addrs| reverse_in_command(key, &addrs[0], &addrs[1], &addrs[2], extra),
    );
    let [enc, plain, metrics] = <[Addr; 3]>::try_from(addrs).expect("three addresses");
    (proc, enc, plain, metrics)
}

fn reverse_in_command(
    key: &Path,
    enc: &Addr,
    plain: &Addr,
    metrics: &Addr,
    extra: &[&str],
) -> Command {
    let mut c = Command::new(SLUICED);
    c.args([
        "--reverse-in",
        "-F",
        "-s",
        &enc.spiped(),
        "-l",
        &plain.spiped(),
    ])
    .arg("-k")
    .arg(key)
    .args(["--metrics", &metrics.tcp().to_string()])
    .args(extra);
    c
}

/// The same reverse-in end again, on the addresses it had.
fn restart_reverse_in(dir: &Path, key: &Path, enc: &Addr, plain: &Addr, metrics: &Addr) -> Proc {
    start_daemon_multi(
        "reverse-in-again",
        dir,
        || vec![enc.clone(), plain.clone(), metrics.clone()],
        |addrs| reverse_in_command(key, &addrs[0], &addrs[1], &addrs[2], &[]),
    )
    .0
}

/// `sluiced --reverse-out -t FAR -s SERVICE`; it listens on nothing, so it is started
/// when it says it dials.
fn reverse_out(dir: &Path, key: &Path, far: &Addr, service: &Addr, extra: &[&str]) -> Proc {
    let mut c = Command::new(SLUICED);
    c.args([
        "--reverse-out",
        "-F",
        "-t",
        &far.spiped(),
        "-s",
        &service.spiped(),
    ])
    .arg("-k")
    .arg(key)
    .args(extra);
    let proc = Proc::spawn("reverse-out", c, dir);
    assert!(
        proc.wait_for_log("keeping connections to the reverse-in end", SLOW),
        "{}",
        proc.stderr()
    );
    proc
}

fn scrape(metrics: &Addr) -> String {
    http_get(metrics.tcp(), "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

fn gauge(metrics: &Addr, name: &str, tunnel: &Addr) -> Option<u64> {
    metric_value(
        &scrape(metrics),
        &format!("{name}{{tunnel=\"{}\"}}", tunnel.spiped()),
    )
}

fn wait_pool(metrics: &Addr, plain: &Addr, n: u64) {
    let ok = wait_until(SLOW, || {
        gauge(metrics, "sluice_tunnel_reverse_ready", plain) == Some(n)
    });
    assert!(ok, "{n} ready: {}", scrape(metrics));
}

/// The reverse-in end's connections all closed again.
fn wait_idle(metrics: &Addr, plain: &Addr) {
    let ok = wait_until(SLOW, || {
        gauge(metrics, "sluice_tunnel_active_connections", plain) == Some(0)
    });
    assert!(ok, "{}", scrape(metrics));
}

#[test]
fn a_service_behind_the_reverse_out_end_is_reached_from_the_reverse_in_end() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (r_in, enc, plain, metrics) = reverse_in(dir.path(), &key, &[]);
    let r_out = reverse_out(dir.path(), &key, &enc, &echo.addr, &[]);
    wait_pool(&metrics, &plain, POOL);

    let data = test_data(200_000, 7);
    let got = exchange_with(&plain, &data, SLOW);
    assert_echoed("through the reverse tunnel", &data, &got);
    wait_idle(&metrics, &plain);
    wait_pool(&metrics, &plain, POOL);

    // Thousands of short connections: each served, and nothing left behind in either
    // process once the pool is full again.
    let fds = |pid| fd_count(pid);
    let before = (fds(r_in.pid()), fds(r_out.pid()));
    for i in 0..2000u32 {
        let got = exchange_with(&plain, &i.to_be_bytes(), SLOW);
        assert_echoed(&format!("connection {i}"), &i.to_be_bytes(), &got);
    }
    wait_idle(&metrics, &plain);
    wait_pool(&metrics, &plain, POOL);
    // At most as many as before (a metrics scrape may have been open then).
    let settled = wait_until(SLOW, || {
        fds(r_in.pid()) <= before.0 && fds(r_out.pid()) <= before.1
    });
    assert!(
        settled,
        "descriptors before {before:?}, after {:?}",
        (fds(r_in.pid()), fds(r_out.pid()))
    );
    let text = scrape(&metrics);
    let served = format!(
        "sluice_tunnel_connections_total{{tunnel=\"{}\"}}",
        plain.spiped()
    );
    assert_eq!(metric_value(&text, &served), Some(2001));
    assert_eq!(echo.connections(), 2001);
}

#[test]
fn strangers_flooding_the_reverse_in_port_take_no_connection_and_hold_little() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (r_in, enc, plain, metrics) = reverse_in(dir.path(), &key, &[]);
    let _r_out = reverse_out(dir.path(), &key, &enc, &echo.addr, &[]);
    wait_pool(&metrics, &plain, POOL);
    let baseline = fd_count(r_in.pid());

    // Strangers: some say nothing, some send a nonce and garbage; all hang on.
    let strangers: Vec<TcpStream> = (0..200)
        .filter_map(|i| {
            let mut s = TcpStream::connect(enc.tcp()).ok()?;
            if i % 2 == 0 {
                let _ = s.write_all(&[0x5a; 32 + 288]);
            }
            Some(s)
        })
        .collect();
    assert!(strangers.len() > 100);
    // While they hang on, a client is served, and the pool is the reverse-out end's.
    let got = exchange_with(&plain, b"still here", SLOW);
    assert_echoed("during the flood", b"still here", &got);
    let held = fd_count(r_in.pid());
    assert!(
        held <= baseline + 40,
        "the reverse-in end holds {held} descriptors (from {baseline}) for 200 strangers"
    );
    wait_pool(&metrics, &plain, POOL);
    drop(strangers);
    // At most as many as before (a metrics scrape may have been open then).
    assert!(
        wait_until(SLOW, || fd_count(r_in.pid()) <= baseline),
        "descriptors back to {baseline}: {}",
        fd_count(r_in.pid())
    );
}

#[test]
fn the_reverse_out_end_reconnects_by_itself_after_the_far_end_restarts() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (r_in, enc, plain, metrics) = reverse_in(dir.path(), &key, &[]);
    let r_out = reverse_out(dir.path(), &key, &enc, &echo.addr, &[]);
    wait_pool(&metrics, &plain, POOL);
    drop(r_in);
    assert!(
        r_out.wait_for_log("far end down", SLOW),
        "{}",
        r_out.stderr()
    );
    let _r_in = restart_reverse_in(dir.path(), &key, &enc, &plain, &metrics);
    wait_pool(&metrics, &plain, POOL);
    let got = exchange_with(&plain, b"after the restart", SLOW);
    assert_echoed("after the restart", b"after the restart", &got);
    assert!(r_out.wait_for_log("far end up", SLOW));
}

#[test]
fn ends_that_do_not_match_are_refused_with_words_a_user_can_act_on() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let other = random_key(dir.path(), "other");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (r_in, enc, plain, metrics) = reverse_in(dir.path(), &key, &["-f"]);

    // Another key.
    let wrong = reverse_out(dir.path(), &other, &enc, &echo.addr, &[]);
    assert!(
        wrong.wait_for_log("far end down (wrong key)", SLOW),
        "{}",
        wrong.stderr()
    );
    drop(wrong);

    // Forward secrecy required here, refused there.
    let strict = reverse_out(dir.path(), &key, &enc, &echo.addr, &["-g"]);
    assert!(
        strict.wait_for_log("forward secrecy", SLOW),
        "{}",
        strict.stderr()
    );
    drop(strict);
    assert_eq!(
        gauge(&metrics, "sluice_tunnel_reverse_ready", &plain),
        Some(0),
        "nothing pooled"
    );

    if !require(
        Path::new(&spiped_bin()).exists(),
        "spiped",
        "apt-get install spiped",
    ) {
        return;
    }
    // Stock spiped -e pointed at the reverse-in port: its client is closed, and the
    // reverse-in end says why.
    let (_spiped_e, client) = spiped("-e", LOCALHOST_V4, &enc, &key, &["-f"], dir.path());
    let got = exchange_with(&client, b"hello?", SLOW);
    assert!(got.bytes.is_empty());
    assert!(
        r_in.wait_for_log("not a reverse-out end", SLOW),
        "{}",
        r_in.stderr()
    );

    // A reverse-out end pointed at stock spiped -d: it says the far end is not a
    // reverse-in end, and sends its target nothing.
    let (_spiped_d, far) = spiped("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let lost = reverse_out(dir.path(), &key, &far, &echo.addr, &["-o", "1"]);
    assert!(
        lost.wait_for_log("not a Sluice reverse-in end", SLOW),
        "{}",
        lost.stderr()
    );
    assert!(echo.received().is_empty(), "no signal reached the service");
}

/// A real peer-to-peer system: a Dask scheduler on the reachable machine and a worker on
/// the machine behind NAT. The worker dials the scheduler through a forward tunnel; the
/// scheduler dials the worker (for `Client.run` and to gather results) at the address it
/// advertises, which is the reverse-in end's, so it gets through only by the reverse
/// tunnel.
#[test]
fn a_dask_scheduler_reaches_its_worker_behind_nat_through_the_reverse_tunnel() {
    let python = "/usr/bin/python3";
    let have_dask = Command::new(python)
        .args(["-c", "import distributed"])
        .status()
        .is_ok_and(|s| s.success());
    if !require(
        have_dask,
        "Dask (python3-distributed)",
        "apt-get install python3-distributed",
    ) {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let scheduler_addr = free_addr(LOCALHOST_V4);
    let worker_addr = free_addr(LOCALHOST_V4);

    // The reachable machine: the scheduler, a decrypting end in front of it, and the
    // reverse-in end whose -l is the worker's advertised address.
    let mut scheduler = Command::new(python);
    scheduler
        .args([
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
        ])
        .args([
            "--port",
            &scheduler_addr.tcp().port().to_string(),
            "--no-dashboard",
            "--dashboard-address",
            "127.0.0.1:0",
        ]);
    let scheduler = Proc::spawn("dask-scheduler", scheduler, dir.path());
    assert!(
        wait_until(SLOW, || scheduler.listens_on(&scheduler_addr)),
        "{}",
        scheduler.stderr()
    );
    let (_far_d, far_d) = sluiced("-d", LOCALHOST_V4, &scheduler_addr, &key, &[], dir.path());
    let (r_in, enc, advertised, metrics) = reverse_in(dir.path(), &key, &[]);

    // The machine behind NAT: an encrypting end to the scheduler, the reverse-out end to
    // the worker, and the worker.
    let (_near_e, to_scheduler) = sluiced("-e", LOCALHOST_V4, &far_d, &key, &[], dir.path());
    let _r_out = reverse_out(dir.path(), &key, &enc, &worker_addr, &[]);
    wait_pool(&metrics, &advertised, POOL);
    let mut worker = Command::new(python);
    worker
        .args(["-m", "distributed.cli.dask_worker"])
        .arg(format!("tcp://{}", to_scheduler.tcp()))
        .arg("--listen-address")
        .arg(format!("tcp://{}", worker_addr.tcp()))
        .arg("--contact-address")
        .arg(format!("tcp://{}", advertised.tcp()))
        .args(["--no-nanny", "--nthreads", "1", "--no-dashboard"]);
    let worker = Proc::spawn("dask-worker", worker, dir.path());

    let script = format!(
        "from distributed import Client\n\
         c = Client('tcp://{scheduler}', timeout=60)\n\
         c.wait_for_workers(1, timeout=60)\n\
         ran = c.run(lambda: 6 * 7)\n\
         assert list(ran.values()) == [42], ran\n\
         assert list(ran) == ['tcp://{advertised}'], ran\n\
         assert c.submit(lambda x: x + 1, 41).result(timeout=60) == 42\n\
         print('dask ok')\n",
        scheduler = scheduler_addr.tcp(),
        advertised = advertised.tcp(),
    );
    let output = Command::new(python)
        .args(["-c", &script])
        .output()
        .expect("run the Dask client");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("dask ok"),
        "client: {}\n{}\nworker:\n{}\nscheduler:\n{}\nreverse-in:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        worker.stderr(),
        scheduler.stderr(),
        r_in.stderr()
    );
    let through = gauge(&metrics, "sluice_tunnel_connections_total", &advertised).unwrap_or(0);
    assert!(
        through >= 1,
        "the scheduler's connections came through the reverse tunnel"
    );
}
