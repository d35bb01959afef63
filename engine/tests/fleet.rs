//! `sluiced` on a server fleet: a real Prometheus scrapes `--metrics` and reads back the
//! bytes sent through a tunnel; SIGHUP reloads the config while a connection keeps
//! carrying data; a broken config changes nothing; systemd readiness (`NOTIFY_SOCKET`)
//! comes only after every listener is bound.

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// One config tunnel, in the config file's own syntax.
fn tunnel(name: &str, mode: &str, listen: &Addr, target: &Addr, key: &Path) -> String {
    format!(
        "(name: {name:?}, mode: {mode}, listen: {:?}, target: {:?}, key: File({:?})),",
        listen.spiped(),
        target.spiped(),
        key.display().to_string()
    )
}

fn config(tunnels: &[String], metrics: Option<&Addr>) -> String {
    let metrics = metrics.map_or_else(String::new, |m| {
        format!("metrics: Some({:?}),\n", m.tcp().to_string())
    });
    format!(
        "(\n    version: 1,\n    {metrics}    tunnels: [\n        {}\n    ],\n)\n",
        tunnels.join("\n        ")
    )
}

/// Percent-encodes a PromQL query for a URL.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the one sample in a Prometheus instant-query answer
/// (`..."value":[<time>,"<value>"]...`), if there is one.
fn sample_value(answer: &str) -> Option<String> {
    let after = answer.split_once("\"value\":[")?.1;
    let value = after.split_once(',')?.1;
    Some(value.trim_start_matches('"').split('"').next()?.to_owned())
}

/// A sluiced running the tunnels of `config_path`, written by `write` from addresses it
/// picks; retried with fresh addresses if one is taken meanwhile.
fn sluiced_with_config(
    dir: &Path,
    count: usize,
    config_path: &Path,
    mut write: impl FnMut(&[Addr]) -> String,
) -> (Proc, Vec<Addr>) {
    start_daemon_multi(
        "sluiced-config",
        dir,
        || (0..count).map(|_| free_addr(LOCALHOST_V4)).collect(),
        |addrs| {
            fs::write(config_path, write(addrs)).unwrap();
            let mut c = Command::new(SLUICED);
            c.args(["-F", "--config"]).arg(config_path);
            c
        },
    )
}

/// Sends `chunk` over `stream` and reads it back (through an echo server).
fn round_trip(stream: &mut Stream, chunk: &[u8]) {
    stream.write_all(chunk).unwrap();
    let mut back = vec![0u8; chunk.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, chunk);
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn prometheus_scrapes_sluiced_and_reads_back_the_bytes_sent_through_a_tunnel() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "k");
    let echo = Echo::tcp(LOCALHOST_V4);
    let config_path = dir.path().join("tunnels.ron");
    // One sluiced holds both ends: "client" (-e) into "server" (-d), then the echo server.
    // Two more tunnels have names that would forge labels or break the format unescaped.
    let forging = r#"a",cause="wrong_key"#;
    let quoted = r#"metrics "sink" ✔ \ end"#;
    let (sluiced, addrs) = sluiced_with_config(dir.path(), 5, &config_path, |a| {
        config(
            &[
                tunnel("client", "Encrypt", &a[0], &a[1], &key),
                tunnel("server", "Decrypt", &a[1], &echo.addr, &key),
                tunnel(forging, "Decrypt", &a[3], &echo.addr, &key),
                tunnel(quoted, "Decrypt", &a[4], &echo.addr, &key),
            ],
            Some(&a[2]),
        )
    });
    let metrics = addrs[2].tcp();
    assert!(sluiced.wait_for_log(
        &format!("metrics at http://{metrics}/metrics"),
        Duration::from_secs(10)
    ));

    let data = test_data(123_457, 7);
    let got = exchange_with(&addrs[0], &data, Duration::from_secs(20));
    assert_echoed("through the pair", &data, &got);

    // The endpoint itself: OpenMetrics text with the tunnel's counters.
    let (status, text) = http_get(metrics, "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in [
        format!(
            "sluice_tunnel_received_bytes_total{{tunnel=\"server\"}} {}",
            data.len()
        ),
        format!(
            "sluice_tunnel_sent_bytes_total{{tunnel=\"server\"}} {}",
            data.len()
        ),
        "sluice_tunnel_connections_total{tunnel=\"client\"} 1".to_owned(),
        "sluice_tunnel_connection_limit{tunnel=\"server\"} 100".to_owned(),
        "sluice_tunnel_handshake_failures_total{tunnel=\"server\",cause=\"wrong_key\"} 0"
            .to_owned(),
        r#"sluice_tunnel_connection_limit{tunnel="a\",cause=\"wrong_key"} 100"#.to_owned(),
        r#"sluice_tunnel_connection_limit{tunnel="metrics \"sink\" ✔ \\ end"} 100"#.to_owned(),
        format!(
            "sluice_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains(&key.display().to_string()),
        "no key path in metrics"
    );
    assert_eq!(http_get(metrics, "/").unwrap().0, 404);

    // A real Prometheus, scraping every second.
    let prom_config = dir.path().join("prometheus.yml");
    fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sluiced\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let storage = dir.path().join("tsdb");
    let (prometheus, web) = start_daemon(
        "prometheus",
        dir.path(),
        || free_addr(LOCALHOST_V4),
        |web| {
            let mut c = Command::new("prometheus");
            c.arg(format!("--config.file={}", prom_config.display()))
                .arg(format!("--storage.tsdb.path={}", storage.display()))
                .arg(format!("--web.listen-address={}", web.tcp()));
            c
        },
    );
    let query = url_encode("sluice_tunnel_received_bytes_total{tunnel=\"server\"}");
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, answer)) = http_get(web.tcp(), &format!("/api/v1/query?query={query}")) {
            if sample_value(&answer).as_deref() == Some(data.len().to_string().as_str()) {
                break;
            }
            last = answer;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not report {} bytes within 60 s; last answer: {last}\nprometheus log:\n{}",
            data.len(),
            prometheus.stderr()
        );
        thread::sleep(Duration::from_millis(200));
    }
    // Prometheus's own parser took the whole scrape, hostile names included: each series
    // is there under its exact name, and no label was forged.
    for (promql, expected) in [
        (r#"up{job="sluiced"}"#, "1"),
        (
            r#"sluice_tunnel_connection_limit{tunnel="a\",cause=\"wrong_key"}"#,
            "100",
        ),
        (
            r#"sluice_tunnel_connection_limit{tunnel="metrics \"sink\" ✔ \\ end"}"#,
            "100",
        ),
        (r#"count(sluice_tunnel_connection_limit)"#, "4"),
        (r#"count(sluice_tunnel_connection_limit{cause!=""})"#, ""),
    ] {
        let query = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, answer) = http_get(web.tcp(), &query).unwrap();
        assert_eq!(status, 200, "{promql}: {answer}");
        let value = sample_value(&answer).unwrap_or_default();
        assert_eq!(value, expected, "{promql}: {answer}");
    }
}

#[test]
fn sighup_adds_and_removes_tunnels_while_a_connection_keeps_carrying_data() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "k");
    let echo = Echo::tcp(LOCALHOST_V4);
    let config_path = dir.path().join("tunnels.ron");
    let (mut sluiced, addrs) = sluiced_with_config(dir.path(), 3, &config_path, |a| {
        config(
            &[
                tunnel("client", "Encrypt", &a[0], &a[1], &key),
                tunnel("server", "Decrypt", &a[1], &echo.addr, &key),
                tunnel("retired", "Decrypt", &a[2], &echo.addr, &key),
            ],
            None,
        )
    });
    let (client, server, retired) = (&addrs[0], &addrs[1], &addrs[2]);
    let mut long_lived = client.connect().unwrap();
    long_lived
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    round_trip(&mut long_lived, b"before the reload");

    let added = free_addr(LOCALHOST_V4);
    fs::write(
        &config_path,
        config(
            &[
                tunnel("client", "Encrypt", client, server, &key),
                tunnel("server", "Decrypt", server, &echo.addr, &key),
                tunnel("added", "Decrypt", &added, &echo.addr, &key),
            ],
            None,
        ),
    )
    .unwrap();
    sluiced.signal(libc::SIGHUP);
    assert!(
        sluiced.wait_for_log(
            "reload: starting added; stopping retired once their connections end; 2 unchanged",
            Duration::from_secs(10)
        ),
        "{}",
        sluiced.stderr()
    );
    assert!(sluiced.wait_listening(&added), "{}", sluiced.stderr());
    wait_until(
        "the retired tunnel stops listening",
        Duration::from_secs(10),
        || !sluiced.listens_on(retired),
    );
    assert!(sluiced.listens_on(client) && sluiced.listens_on(server));

    // The connection opened before the reload still carries data both ways.
    for i in 0..20u8 {
        round_trip(&mut long_lived, &[i; 3000]);
    }
    // And the added tunnel is a working -d end: a fresh pair through it.
    let (_front, front_addr) = support::sluiced("-e", LOCALHOST_V4, &added, &key, &[], dir.path());
    let data = test_data(10_000, 3);
    assert_echoed(
        "through the added tunnel",
        &data,
        &exchange_with(&front_addr, &data, Duration::from_secs(20)),
    );
    assert!(sluiced.try_wait().is_none(), "sluiced still runs");
}

#[test]
fn a_broken_config_on_reload_changes_nothing_and_check_config_says_why() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "k");
    let echo = Echo::tcp(LOCALHOST_V4);
    let config_path = dir.path().join("tunnels.ron");
    let (mut sluiced, addrs) = sluiced_with_config(dir.path(), 2, &config_path, |a| {
        config(
            &[
                tunnel("client", "Encrypt", &a[0], &a[1], &key),
                tunnel("server", "Decrypt", &a[1], &echo.addr, &key),
            ],
            None,
        )
    });
    let check = |path: &Path| {
        let out = Command::new(SLUICED)
            .arg("--check-config")
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, _) = check(&config_path);
    assert!(ok && stdout.contains("2 tunnels, all fine"), "{stdout}");

    let mut long_lived = addrs[0].connect().unwrap();
    long_lived
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    round_trip(&mut long_lived, b"before");

    let good = fs::read_to_string(&config_path).unwrap();
    let missing_key = dir.path().join("no-such.key");
    let empty_key = write_key(dir.path(), "empty.key", b"");
    for (broken, says) in [
        (
            good.replace("tunnels: [", "tunnels: [[").clone(),
            "fix the file at that spot".to_owned(),
        ),
        (
            good.replacen(
                &key.display().to_string(),
                &missing_key.display().to_string(),
                1,
            ),
            format!(
                "tunnel \"client\": key: key file {} does not exist",
                missing_key.display()
            ),
        ),
        (
            good.replace("Decrypt", "Sideways"),
            "tunnels.ron:".to_owned(),
        ),
        // A reload never switches a tunnel to a key that was not read from a real source.
        (
            good.replacen(
                &key.display().to_string(),
                &empty_key.display().to_string(),
                1,
            ),
            format!(
                "tunnel \"client\": key: key file {} is empty",
                empty_key.display()
            ),
        ),
        (
            good.replace(
                &format!("File({:?})", key.display().to_string()),
                "File(\"-\")",
            ),
            "tunnel \"server\": key: File(\"-\") (standard input) cannot be used".to_owned(),
        ),
    ] {
        fs::write(&config_path, &broken).unwrap();
        let before = sluiced.stderr().matches("reload: nothing changed").count();
        sluiced.signal(libc::SIGHUP);
        wait_until("the reload is refused", Duration::from_secs(10), || {
            sluiced.stderr().matches("reload: nothing changed").count() > before
        });
        let log = sluiced.stderr();
        assert!(
            log.contains(&says),
            "the log names the problem ({says}):\n{log}"
        );
        let (ok, _, stderr) = check(&config_path);
        assert!(
            !ok && stderr.contains(&says),
            "--check-config says the same ({says}): {stderr}"
        );
        assert!(sluiced.listens_on(&addrs[0]) && sluiced.listens_on(&addrs[1]));
        round_trip(&mut long_lived, says.as_bytes());
    }
    assert!(
        !sluiced.stderr().contains("reload: starting"),
        "nothing was applied"
    );
    // The server still holds its real key: a client with the empty key gets nowhere.
    let (_spiped_e, spiped_e_addr) =
        spiped("-e", LOCALHOST_V4, &addrs[1], &empty_key, &[], dir.path());
    assert_refused(
        "an empty-key client after the refused reloads",
        &spiped_e_addr,
        &echo,
        Duration::from_secs(5),
    );
}

/// Idle clients used to hold all 8 scrape slots for 10 s each; now a scrape gets through
/// at once however many idle clients there are, and a request for a foreign host name
/// (a web page that rebound its DNS name to 127.0.0.1) is refused.
#[test]
fn idle_clients_and_foreign_host_names_cannot_use_the_metrics_endpoint() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "k");
    let echo = Echo::tcp(LOCALHOST_V4);
    let config_path = dir.path().join("tunnels.ron");
    let (sluiced, addrs) = sluiced_with_config(dir.path(), 2, &config_path, |a| {
        config(
            &[tunnel("server", "Decrypt", &a[0], &echo.addr, &key)],
            Some(&a[1]),
        )
    });
    let metrics = addrs[1].tcp();
    assert!(sluiced.wait_for_log("metrics at http://", Duration::from_secs(10)));
    assert!(
        !sluiced.stderr().contains("can be read by anyone"),
        "no warning for loopback:\n{}",
        sluiced.stderr()
    );
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    let started = Instant::now();
    let (status, body) = http_get(metrics, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a scrape behind 100 idle clients took {:?}",
        started.elapsed()
    );
    drop(idle);

    let mut rebound = TcpStream::connect(metrics).unwrap();
    rebound
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        rebound,
        "GET /metrics HTTP/1.1\r\nHost: attacker.example:{}\r\n\r\n",
        metrics.port()
    )
    .unwrap();
    let mut answer = String::new();
    rebound.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        !answer.contains("server"),
        "no tunnel name for a foreign host: {answer}"
    );
}

/// A reload reads keys off the loop that takes signals: a key path that blocks (a FIFO
/// nobody writes) used to leave sluiced deaf to SIGTERM.
#[test]
fn a_reload_that_blocks_on_a_key_never_holds_up_sigterm() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "k");
    let echo = Echo::tcp(LOCALHOST_V4);
    let config_path = dir.path().join("tunnels.ron");
    let (mut sluiced, addrs) = sluiced_with_config(dir.path(), 1, &config_path, |a| {
        config(
            &[tunnel("server", "Decrypt", &a[0], &echo.addr, &key)],
            None,
        )
    });
    let fifo = dir.path().join("key.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    let blocking = fs::read_to_string(&config_path)
        .unwrap()
        .replace(&key.display().to_string(), &fifo.display().to_string());
    fs::write(&config_path, blocking).unwrap();
    sluiced.signal(libc::SIGHUP);
    assert!(
        sluiced.wait_for_log("SIGHUP: rereading", Duration::from_secs(10)),
        "{}",
        sluiced.stderr()
    );
    // The tunnel still serves while the reload is stuck.
    assert!(sluiced.listens_on(&addrs[0]));
    sluiced.signal(libc::SIGTERM);
    let status = sluiced.wait_timeout(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "sluiced did not stop on SIGTERM while a reload was blocked:\n{}",
        sluiced.stderr()
    );
}

#[test]
fn readiness_is_sent_only_after_every_listener_is_bound_and_again_after_a_reload() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "k");
    let echo = Echo::tcp(LOCALHOST_V4);
    let config_path = dir.path().join("tunnels.ron");
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // The next notification, or None after 15 s.
    let message = |_what: &str| -> Option<String> {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };

    // Ports are picked free and released, so another process may take one meanwhile: then
    // sluiced exits without READY, and the test tries fresh ports.
    let (mut sluiced, addrs, ready) = (0..8)
        .find_map(|_| {
            let addrs: Vec<Addr> = (0..3).map(|_| free_addr(LOCALHOST_V4)).collect();
            fs::write(
                &config_path,
                config(
                    &[
                        tunnel("a", "Decrypt", &addrs[0], &echo.addr, &key),
                        tunnel("b", "Decrypt", &addrs[1], &echo.addr, &key),
                    ],
                    Some(&addrs[2]),
                ),
            )
            .unwrap();
            let mut command = Command::new(SLUICED);
            command
                .args(["-F", "--config"])
                .arg(&config_path)
                .env("NOTIFY_SOCKET", &notify_path);
            let mut sluiced = Proc::spawn("sluiced-notify", command, dir.path());
            match message("READY") {
                Some(ready) => Some((sluiced, addrs, ready)),
                None => {
                    let status = sluiced.wait_timeout(Duration::from_secs(15));
                    let log = sluiced.stderr();
                    assert!(
                        status.is_some() && log.contains("in use"),
                        "no READY within 15 s:\n{log}"
                    );
                    None
                }
            }
        })
        .expect("free ports within 8 attempts");
    assert_eq!(
        ready,
        "READY=1\nSTATUS=running 2 tunnels",
        "{}",
        sluiced.stderr()
    );
    // At the moment READY arrives, every listener (tunnels and metrics) is up.
    for addr in &addrs {
        assert!(
            sluiced.listens_on(addr),
            "READY before {} listened",
            addr.spiped()
        );
    }

    sluiced.signal(libc::SIGHUP);
    let reloading = message("RELOADING").expect("RELOADING=1 on SIGHUP");
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(
        message("READY after reload").as_deref(),
        Some("READY=1\nSTATUS=running 2 tunnels")
    );

    sluiced.signal(libc::SIGTERM);
    let stopping = message("STOPPING").expect("STOPPING=1 on SIGTERM");
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    assert!(
        sluiced
            .wait_timeout(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
}

#[test]
fn metrics_count_the_clients_waiting_behind_a_reached_connection_limit() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "k");
    let echo = Echo::tcp(LOCALHOST_V4);
    let (_sluiced, addrs) = start_daemon_multi(
        "sluiced-limit",
        dir.path(),
        || vec![free_addr(LOCALHOST_V4), free_addr(LOCALHOST_V4)],
        |a| {
            let mut c = Command::new(SLUICED);
            c.args([
                "-d",
                "-F",
                "-n",
                "1",
                "-o",
                "60",
                "-s",
                &a[0].spiped(),
                "-t",
                &echo.addr.spiped(),
            ])
            .arg("-k")
            .arg(&key)
            .args(["--metrics", &a[1].tcp().to_string()]);
            c
        },
    );
    let metrics = addrs[1].tcp();
    let gauge = |text: &str| -> Option<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with("sluice_tunnel_waiting_clients{"))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    // The one slot is held by a client that says nothing (its handshake may take 60 s).
    let _holder = addrs[0].connect().unwrap();
    wait_until("the holder is accepted", Duration::from_secs(10), || {
        http_get(metrics, "/metrics").is_ok_and(|(_, t)| {
            t.lines()
                .any(|l| l.starts_with("sluice_tunnel_active_connections{") && l.ends_with(" 1"))
        })
    });
    let _waiting: Vec<Stream> = (0..2).map(|_| addrs[0].connect().unwrap()).collect();
    wait_until(
        "two clients are counted as waiting",
        Duration::from_secs(10),
        || http_get(metrics, "/metrics").is_ok_and(|(_, t)| gauge(&t) == Some(2)),
    );
    let (_, text) = http_get(metrics, "/metrics").unwrap();
    assert!(
        text.lines().any(
            |l| l.starts_with("sluice_tunnel_connection_limit_reached_total{") && l.ends_with(" 1")
        ),
        "{text}"
    );
}
