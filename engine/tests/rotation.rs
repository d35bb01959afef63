//! Key rotation without downtime, against Debian's stock spiped as clients: a `sluiced -d`
//! with a new key and the previous one lets both old and new clients through, counts
//! handshakes per key, and after the rotation finishes (a reload without the previous
//! key) refuses the old ones.

// Unix only: these tests drive real processes and sockets through the test kit.
#![cfg(unix)]

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const SLOW: Duration = Duration::from_secs(20);

fn config(
    listen: &Addr,
    target: &Addr,
    key: &Path,
    previous: Option<&Path>,
    metrics: &Addr,
) -> String {
    let previous = previous.map_or_else(String::new, |p| {
        format!("previous_key: Some(File({:?})), ", p.display().to_string())
    });
    format!(
        "(version: 1, metrics: Some({:?}), tunnels: [(name: \"svc\", mode: Decrypt, listen: {:?}, target: {:?}, key: File({:?}), {previous})])\n",
        metrics.tcp().to_string(),
        listen.spiped(),
        target.spiped(),
        key.display().to_string(),
    )
}

fn handshakes(metrics: &Addr, key: &str) -> Option<u64> {
    let text = http_get(metrics.tcp(), "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    metric_value(
        &text,
        &format!("sluice_handshakes_total{{tunnel=\"svc\",key=\"{key}\"}}"),
    )
}

#[test]
fn old_and_new_stock_clients_get_through_during_a_rotation_and_the_old_ones_not_after() {
    if !require(
        Path::new(&spiped_bin()).exists(),
        "spiped",
        "apt-get install spiped",
    ) {
        return;
    }
    let dir = temp_dir();
    let old = random_key(dir.path(), "old.key");
    let new = random_key(dir.path(), "new.key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let config_path = dir.path().join("tunnels.ron");
    let (mut sluiced, addrs) = start_daemon_multi(
        "sluiced-rotating",
        dir.path(),
        || vec![free_addr(LOCALHOST_V4), free_addr(LOCALHOST_V4)],
        |a| {
            fs::write(
                &config_path,
                config(&a[0], &echo.addr, &new, Some(&old), &a[1]),
            )
            .unwrap();
            let mut c = Command::new(SLUICED);
            c.args(["-F", "--config"]).arg(&config_path);
            c
        },
    );
    let (listen, metrics) = (&addrs[0], &addrs[1]);
    let (_old_client, via_old) = spiped("-e", LOCALHOST_V4, listen, &old, &[], dir.path());
    let (_new_client, via_new) = spiped("-e", LOCALHOST_V4, listen, &new, &[], dir.path());

    for (via, what) in [(&via_old, "old key"), (&via_new, "new key")] {
        let got = exchange_with(via, what.as_bytes(), SLOW);
        assert_echoed(
            &format!("a stock client with the {what}"),
            what.as_bytes(),
            &got,
        );
    }
    assert!(wait_until(SLOW, || handshakes(metrics, "current")
        == Some(1)
        && handshakes(metrics, "previous") == Some(1)));

    // Finish the rotation: the previous key goes.
    fs::write(
        &config_path,
        config(listen, &echo.addr, &new, None, metrics),
    )
    .unwrap();
    sluiced.signal(libc::SIGHUP);
    assert!(
        sluiced.wait_for_log("reload: new settings for svc", SLOW),
        "{}",
        sluiced.stderr()
    );
    let got = exchange_with(&via_old, b"refused", SLOW);
    assert!(
        got.bytes.is_empty(),
        "the old key is refused after the rotation"
    );
    let got = exchange_with(&via_new, b"still in", SLOW);
    assert_echoed("the new key after the rotation", b"still in", &got);
    assert!(
        sluiced.wait_for_log("different key", SLOW),
        "{}",
        sluiced.stderr()
    );
    assert_eq!(handshakes(metrics, "previous"), Some(1));
}

#[test]
fn previous_key_on_the_command_line() {
    let dir = temp_dir();
    let old = random_key(dir.path(), "old.key");
    let new = random_key(dir.path(), "new.key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let old_flag = old.display().to_string();
    let (_far, far) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &new,
        &["--previous-key", &old_flag],
        dir.path(),
    );
    let (_old_client, via_old) = sluiced("-e", LOCALHOST_V4, &far, &old, &[], dir.path());
    let got = exchange_with(&via_old, b"old", SLOW);
    assert_echoed("a Sluice client with the old key", b"old", &got);

    // The dialling end has one key: --previous-key is refused there, with why.
    let out = Command::new(SLUICED)
        .args(["-e", "-s", "[127.0.0.1]:1", "-t", "[127.0.0.1]:2", "-k"])
        .arg(&new)
        .args(["--previous-key", &old_flag])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--previous-key goes with -d or --reverse-in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
