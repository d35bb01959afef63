//! `sluiced --audit-log`: one line per connection with its outcome, the file reopened on
//! SIGUSR1 and SIGHUP after logrotate moved it, and the .deb's fail2ban filter matching
//! the handshake failures of a real audit log by peer address (`fail2ban-regex`).

// Unix only: these tests drive real processes and sockets through the test kit.
#![cfg(unix)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const SLOW: Duration = Duration::from_secs(20);

fn lines(path: &Path) -> Vec<String> {
    complete_lines(&fs::read_to_string(path).unwrap_or_default())
        .map(str::to_owned)
        .collect()
}

fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let ok = wait_until(SLOW, || {
        seen = lines(path);
        seen.len() >= n
    });
    assert!(ok, "{n} lines in {}: {seen:#?}", path.display());
    seen
}

/// fail2ban-regex: the system's, or the copy scripts/install-test-deps unpacks (so that
/// installing fail2ban's service is not needed to test a filter).
fn fail2ban_regex() -> Option<Command> {
    let unpacked = Path::new("/opt/sluice-test-tools/fail2ban");
    if unpacked.join("usr/bin/fail2ban-regex").exists() {
        let mut c = Command::new("/usr/bin/python3");
        c.arg(unpacked.join("usr/bin/fail2ban-regex"))
            .env("PYTHONPATH", unpacked.join("usr/lib/python3/dist-packages"));
        return Some(c);
    }
    have_program("fail2ban-regex").then(|| Command::new("fail2ban-regex"))
}

fn filter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../installers/linux/fail2ban/sluiced.conf")
}

#[test]
fn every_connection_gets_a_line_the_log_rotates_and_fail2ban_matches_the_failures() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let wrong = random_key(dir.path(), "wrong");
    let log = dir.path().join("audit.log");
    let echo = Echo::tcp(LOCALHOST_V4);
    let log_flag = log.display().to_string();
    let (mut far, far_addr) = sluiced(
        "-d",
        LOCALHOST_V4,
        &echo.addr,
        &key,
        &["--audit-log", &log_flag],
        dir.path(),
    );
    let (_good, via_good) = sluiced("-e", LOCALHOST_V4, &far_addr, &key, &[], dir.path());
    // No health checks from the client with the wrong key: its failures would each bring
    // one, and this test counts the far end's lines.
    let (_bad, via_bad) = sluiced(
        "-e",
        LOCALHOST_V4,
        &far_addr,
        &wrong,
        &["--health-check", "0"],
        dir.path(),
    );

    let got = exchange_with(&via_good, b"hello", SLOW);
    assert_echoed("a good client", b"hello", &got);
    for _ in 0..3 {
        assert!(exchange_with(&via_bad, b"x", SLOW).bytes.is_empty());
    }
    let seen = wait_lines(&log, 4);
    let ok: Vec<_> = seen.iter().filter(|l| l.contains("outcome=ok")).collect();
    assert_eq!(ok.len(), 1, "{seen:#?}");
    assert!(
        ok[0].contains(&format!(
            "tunnel=\"{}\" peer=127.0.0.1 port=",
            far_addr.spiped()
        )) && ok[0].contains(" up=5 down=5 "),
        "{}",
        ok[0]
    );
    let failed = seen
        .iter()
        .filter(|l| l.contains("outcome=handshake_failed cause=wrong_key"))
        .count();
    assert_eq!(
        failed, 3,
        "every failure has its line, none throttled: {seen:#?}"
    );

    // logrotate moves the file away and signals: new lines go to a new file.
    let rotated = dir.path().join("audit.log.1");
    fs::rename(&log, &rotated).unwrap();
    far.signal(libc::SIGUSR1);
    assert!(
        far.wait_for_log("audit log reopened", SLOW),
        "{}",
        far.stderr()
    );
    assert!(exchange_with(&via_bad, b"x", SLOW).bytes.is_empty());
    let fresh = wait_lines(&log, 1);
    assert!(fresh[0].contains("outcome=handshake_failed"), "{fresh:#?}");
    assert_eq!(lines(&rotated).len(), 4, "the old file is left as it was");
    far.signal(libc::SIGHUP);
    assert!(wait_until(SLOW, || far
        .stderr()
        .matches("audit log reopened")
        .count()
        == 2));

    // The shipped filter finds the four failures, by peer.
    let Some(mut regex) = fail2ban_regex() else {
        assert!(!require(
            false,
            "fail2ban-regex",
            "scripts/install-test-deps"
        ));
        return;
    };
    let all = dir.path().join("all.log");
    fs::write(
        &all,
        [
            fs::read_to_string(&rotated).unwrap(),
            fs::read_to_string(&log).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let out = regex.arg(&all).arg(filter()).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("Lines: 5 lines, 0 ignored, 4 matched, 1 missed"),
        "{report}"
    );
}
