//! Soak: connections churning with data through sluiced -e -> sluiced -d -> echo for a
//! bounded time (one in ten reset mid-stream by its client), with the open descriptors and
//! resident memory of both daemons measured after a warm-up and at the end, both at rest.
//! Neither may grow. The short run (about 20 s) is part of the normal suite; the long one:
//!   SLUICE_SOAK_SECS=120 cargo test -p sluice-engine --test soak -- --ignored --nocapture

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]

mod support;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const WORKERS: usize = 8;
const SLOW: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Totals {
    connections: AtomicU64,
    resets: AtomicU64,
    bytes: AtomicU64,
}

/// Churns connections through `client` from `WORKERS` threads for `duration`.
fn churn(client: &Addr, duration: Duration, totals: &Arc<Totals>, seed: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (client, totals, stop) = (client.clone(), Arc::clone(totals), Arc::clone(&stop));
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = seed + (w as u64) * 1_000_000 + n;
                    // Sizes from 1 byte to 256 KiB, spread out.
                    let len = 1 + (id.wrapping_mul(2_654_435_761) % (256 * 1024)) as usize;
                    let data = test_data(len, id);
                    if n.is_multiple_of(10) {
                        // A client that gives up mid-stream with a reset.
                        let mut s = client.connect().expect("connect");
                        let _ = s.write_all(&data[..len / 2]);
                        if let Stream::Tcp(tcp) = &s {
                            let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
                        }
                        drop(s);
                        totals.resets.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let got = exchange_with(&client, &data, SLOW);
                        assert_echoed(&format!("soak connection {id}"), &data, &got);
                        totals.bytes.fetch_add(len as u64, Ordering::Relaxed);
                    }
                    totals.connections.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("soak worker");
    }
}

/// (descriptors, resident KiB) of each daemon once its connections have all closed: its
/// descriptors are back to `expect_fds` (or 10 s have passed; the caller compares).
fn at_rest(pids: &[u32], expect_fds: &[usize]) -> Vec<(usize, u64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now: Vec<(usize, u64)> = pids.iter().map(|&p| (fd_count(p), rss_kib(p))).collect();
        let settled = now.iter().zip(expect_fds).all(|((f, _), e)| f <= e);
        if settled || Instant::now() >= deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn soak(main_phase: Duration) {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (mut server, server_addr) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (mut client, client_addr) =
        sluiced("-e", LOCALHOST_V4, &server_addr, &key, &[], dir.path());
    let pids = [client.pid(), server.pid()];
    let idle_fds: Vec<usize> = pids.iter().map(|&p| fd_count(p)).collect();
    let totals = Arc::new(Totals::default());

    // Warm-up: let allocator pools, the DH key-pair pool and runtime threads reach their
    // working size. Connections only go through on a settled system.
    let warmup = (main_phase / 4).clamp(Duration::from_secs(4), Duration::from_secs(15));
    churn(&client_addr, warmup, &totals, 1);
    // Measured once the warm-up's last connections are gone (back to the idle descriptors).
    let start = at_rest(&pids, &idle_fds);
    let warm_conns = totals.connections.load(Ordering::Relaxed);

    // Sample peaks while churning.
    let peak = Arc::new(std::sync::Mutex::new(vec![(0usize, 0u64); 2]));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (Arc::clone(&peak), Arc::clone(&sampling));
        thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let mut p = peak.lock().unwrap();
                for (slot, &pid) in p.iter_mut().zip(&pids) {
                    slot.0 = slot.0.max(fd_count(pid));
                    slot.1 = slot.1.max(rss_kib(pid));
                }
                drop(p);
                thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let started = Instant::now();
    churn(&client_addr, main_phase, &totals, 1 << 40);
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let start_fds: Vec<usize> = start.iter().map(|s| s.0).collect();
    let end = at_rest(&pids, &start_fds);

    let conns = totals.connections.load(Ordering::Relaxed) - warm_conns;
    let peak = peak.lock().unwrap().clone();
    eprintln!(
        "soak: {conns} connections in {elapsed:.1?} after a {warmup:?} warm-up ({warm_conns} connections); {} resets in all; {:.1} MiB echoed in all",
        totals.resets.load(Ordering::Relaxed),
        totals.bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    );
    for (i, name) in ["sluiced -e", "sluiced -d"].iter().enumerate() {
        eprintln!(
            "soak: {name}: descriptors {} -> {} (peak {}), resident {} KiB -> {} KiB (peak {} KiB)",
            start[i].0, end[i].0, peak[i].0, start[i].1, end[i].1, peak[i].1
        );
    }
    for (i, name) in ["sluiced -e", "sluiced -d"].iter().enumerate() {
        assert!(
            end[i].0 <= start[i].0,
            "{name}: descriptors grew from {} to {}",
            start[i].0,
            end[i].0
        );
        // Allocator slack, not growth: a leak of even 100 bytes per connection over
        // thousands of connections shows up well beyond this.
        assert!(
            end[i].1 <= start[i].1 + 2048,
            "{name}: resident memory grew from {} KiB to {} KiB",
            start[i].1,
            end[i].1
        );
    }
    assert!(conns >= 100, "only {conns} connections churned");
    assert!(
        client.try_wait().is_none() && server.try_wait().is_none(),
        "a daemon exited"
    );
    assert!(echo.wait_finished(echo.connections(), Duration::from_secs(10)));
}

#[test]
fn soak_short() {
    soak(Duration::from_secs(15));
}

#[test]
#[ignore = "minutes long: SLUICE_SOAK_SECS=120 cargo test -p sluice-engine --test soak -- --ignored"]
fn soak_long() {
    let secs = std::env::var("SLUICE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    soak(Duration::from_secs(secs));
}
