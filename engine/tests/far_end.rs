//! The far end over a real OpenSSH server: `sluiced --far-end-setup/-check/-remove` against
//! Debian's sshd on a loopback port (throwaway host and user keys, a throwaway far-end
//! user), with spiped and with sluiced on the far end. Data flows end to end; the key
//! never shows in any process's argv or any log; a changed host key is refused.
//!
//! Needs root (sshd, useradd) and `openssh-server` (scripts/install-test-deps).

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]

mod support;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sluice_engine::{Config, KeyRef, Mode, TunnelSpec};
use sluice_engine::{
    FarEndAction, FarEndError, FarEndKey, FarEndRequest, SSH_COMMAND_VAR, SshClient, SshError,
    SshStage, far_end_slug, run_far_end,
};
use support::{Addr, Echo, LOCALHOST_V4, SLUICED, free_port, temp_dir};

use sluice_testkit::sshd::*;

/// A client of the test sshd, reaching it as [`ALIAS`].
fn client(sshd: &Sshd) -> SshClient {
    SshClient::new(sshd.ssh_words(), ALIAS, 10)
}

/// A Sluice config with one Encrypt tunnel to `[127.0.0.1]:far_port`, and its key.
struct LocalSide {
    dir: tempfile::TempDir,
    config: PathBuf,
    key_bytes: Vec<u8>,
    spec: TunnelSpec,
}

fn local_side(name: &str, far_port: u16) -> LocalSide {
    let dir = temp_dir();
    let key_path = support::random_key(dir.path(), "tunnel.key");
    let key_bytes = fs::read(&key_path).unwrap();
    let spec = TunnelSpec::new(
        name,
        Mode::Encrypt,
        format!("[127.0.0.1]:{}", free_port(LOCALHOST_V4)),
        format!("[127.0.0.1]:{far_port}"),
        KeyRef::File(key_path),
    );
    let config = dir.path().join("tunnels.ron");
    Config {
        tunnels: vec![spec.clone()],
        ..Config::default()
    }
    .save_atomic(&config)
    .unwrap();
    LocalSide {
        dir,
        config,
        key_bytes,
        spec,
    }
}

fn far_end_cli(sshd: &Sshd, local: &LocalSide, action: &str, extra: &[&str]) -> Output {
    Command::new(SLUICED)
        .arg(action)
        .arg(ALIAS)
        .arg("--config")
        .arg(&local.config)
        .args(["--tunnel", &local.spec.name])
        .args(extra)
        .env(SSH_COMMAND_VAR, sshd.ssh_command())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Watches every process's argv until stopped, noting any that holds the key (raw or in
/// hex).
struct ArgvScanner {
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<String>>>,
    scans: Arc<Mutex<usize>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ArgvScanner {
    fn start(key: &[u8]) -> ArgvScanner {
        let needles = [
            key.to_vec(),
            sluice_engine::hex(key).into_bytes(),
            sluice_engine::hex(key).to_uppercase().into_bytes(),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let scans = Arc::new(Mutex::new(0));
        let (s, h, n) = (Arc::clone(&stop), Arc::clone(&hits), Arc::clone(&scans));
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    if needles.iter().any(|n| contains(&cmdline, n)) {
                        h.lock().unwrap().push(text(&cmdline).replace('\0', " "));
                    }
                }
                *n.lock().unwrap() += 1;
            }
        });
        ArgvScanner {
            stop,
            hits,
            scans,
            thread: Some(thread),
        }
    }

    /// Stops and returns (the offending command lines, how many full scans ran).
    fn finish(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let hits = self.hits.lock().unwrap().clone();
        let scans = *self.scans.lock().unwrap();
        (hits, scans)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_key_absent(what: &str, content: &[u8], key: &[u8]) {
    let hex = sluice_engine::hex(key);
    assert!(!contains(content, key), "{what} holds the raw key");
    assert!(
        !contains(&content.to_ascii_lowercase(), hex.as_bytes()),
        "{what} holds the key in hex"
    );
}

/// The whole flow through the CLI: set up, data end to end, check, remove.
fn set_up_use_and_remove(name: &str, path_dirs: &str, program: &str, program_path: &str) {
    let slug = far_end_slug(name);
    clear_leftovers(&slug);
    let sshd = Sshd::start(path_dirs, Trust::ServerKey);
    let echo = Echo::tcp(LOCALHOST_V4);
    let far_port = free_port(LOCALHOST_V4);
    let local = local_side(name, far_port);

    let scanner = ArgvScanner::start(&local.key_bytes);
    let service = echo.addr.spiped();
    let setup = far_end_cli(&sshd, &local, "--far-end-setup", &["--service", &service]);
    let (hits, scans) = scanner.finish();
    let stdout = text(&setup.stdout);
    assert!(
        setup.status.success(),
        "setup failed:\n{stdout}\n{}\nsshd log:\n{}",
        text(&setup.stderr),
        sshd.log()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "one line per step:\n{stdout}");
    let steps = ["probe", "send key", "install sluiced", "start", "verify"];
    for (line, step) in lines.iter().zip(steps) {
        assert!(line.starts_with(&format!("{step}: ok: ")), "{line}");
    }
    assert!(
        lines[2].starts_with(&format!(
            "install sluiced: ok: nothing to install: {program} is there"
        )),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with(&format!(
            "start: ok: {program} -d -s [127.0.0.1]:{far_port} -t {service} as a daemon"
        )),
        "{}",
        lines[3]
    );
    assert!(lines[3].contains("no systemd"), "{}", lines[3]);
    assert!(lines[4].contains("OK: handshake completed"), "{}", lines[4]);
    assert!(scans > 0, "the argv scanner never completed a scan");
    assert!(hits.is_empty(), "the key was on a command line: {hits:?}");

    // The key file: the same bytes, owner-only, owned by the far-end user.
    let key_file = far_file(&slug, "key");
    assert_eq!(fs::read(&key_file).unwrap(), local.key_bytes);
    let meta = fs::metadata(&key_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let pid = fs::read_to_string(far_file(&slug, "pid"))
        .unwrap()
        .trim()
        .to_owned();
    let cmdline = text(&fs::read(format!("/proc/{pid}/cmdline")).unwrap()).replace('\0', " ");
    assert!(cmdline.starts_with(program_path), "{cmdline}");

    // Data end to end: a local `sluiced -e` → the far end's -d → the echo service.
    let (_local_tunnel, listen) = support::sluiced(
        "-e",
        LOCALHOST_V4,
        &Addr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, far_port))),
        &local.spec.key_path(),
        &[],
        local.dir.path(),
    );
    let data = support::test_data(100_000, 12);
    let got = support::exchange_with(&listen, &data, Duration::from_secs(10));
    support::assert_echoed("through the far end", &data, &got);

    let check = far_end_cli(&sshd, &local, "--far-end-check", &[]);
    let check_out = text(&check.stdout);
    assert!(check.status.success(), "check failed:\n{check_out}");
    assert_eq!(check_out.lines().count(), 2, "{check_out}");
    assert!(
        check_out.contains(&format!("running (pid {pid})")),
        "{check_out}"
    );

    // The far end program's own output, before remove deletes it.
    let far_log = fs::read(far_file(&slug, "log")).unwrap();

    let remove = far_end_cli(&sshd, &local, "--far-end-remove", &[]);
    let remove_out = text(&remove.stdout);
    assert!(
        remove.status.success(),
        "remove failed:\n{remove_out}\n{}",
        text(&remove.stderr)
    );
    assert!(
        remove_out.contains(&format!("stopped pid {pid}")),
        "{remove_out}"
    );
    assert!(
        wait_gone(&pid, Duration::from_secs(5)),
        "far end pid {pid} still runs"
    );
    for ext in ["key", "key.tmp", "pid", "log", "manifest"] {
        assert!(!far_file(&slug, ext).exists(), "{ext} left behind");
    }

    // No log holds the key: sshd's, the far end program's, and everything the CLI printed.
    for (what, content) in [
        ("sshd's log", sshd.log().into_bytes()),
        ("the far end's log", far_log),
        ("setup's output", [setup.stdout, setup.stderr].concat()),
        ("check's output", [check.stdout, check.stderr].concat()),
        ("remove's output", [remove.stdout, remove.stderr].concat()),
    ] {
        assert_key_absent(what, &content, &local.key_bytes);
    }

    // A second remove finds nothing and says so.
    let again = far_end_cli(&sshd, &local, "--far-end-remove", &[]);
    assert!(!again.status.success());
    assert!(
        text(&again.stdout).contains("nothing of tunnel"),
        "{}",
        text(&again.stdout)
    );
    drop(sshd.proc);
}

trait KeyPath {
    fn key_path(&self) -> PathBuf;
}

impl KeyPath for TunnelSpec {
    fn key_path(&self) -> PathBuf {
        match &self.key {
            KeyRef::File(path) => path.clone(),
            KeyRef::Keychain(_) => unreachable!("tests use key files"),
        }
    }
}

#[test]
fn set_up_with_spiped_on_the_far_end() {
    set_up_use_and_remove(
        "farend-spiped",
        "/usr/bin:/bin",
        "spiped",
        "/usr/bin/spiped",
    );
}

/// A directory the far-end user can read holding a copy of this build's sluiced, the copy,
/// and a far-end PATH with it first.
fn sluiced_on_path() -> (tempfile::TempDir, PathBuf, String) {
    let bin = temp_dir();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let copy = bin.path().join("sluiced");
    fs::copy(SLUICED, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    (bin, copy, path)
}

#[test]
fn set_up_with_sluiced_on_the_far_end() {
    let (_bin, copy, path) = sluiced_on_path();
    set_up_use_and_remove(
        "farend-sluiced",
        &path,
        "sluiced",
        &copy.display().to_string(),
    );
}

/// `--on-first-connection` on a far end without systemd (the test sshd's host, run from a
/// container), with sluiced on its PATH and without (then set-up would copy itself
/// there): set-up stops at the probe, saying so, and writes nothing there.
#[test]
fn a_far_end_that_cannot_start_on_its_first_connection_is_refused_before_anything_is_written() {
    let name = "farend-on-demand";
    let slug = far_end_slug(name);
    clear_leftovers(&slug);
    let (_bin, _, with_sluiced) = sluiced_on_path();
    for (path, expected) in [
        (
            with_sluiced.as_str(),
            "set-up cannot use systemd there (no systemd on the far end, so a daemon with a pid file",
        ),
        (
            "/usr/bin:/bin",
            "set-up cannot use systemd there (no systemd on the far end, so a daemon with a pid file",
        ),
    ] {
        let sshd = Sshd::start(path, Trust::ServerKey);
        let local = local_side(name, free_port(LOCALHOST_V4));
        let setup = far_end_cli(&sshd, &local, "--far-end-setup", &["--on-first-connection"]);
        let out = text(&setup.stdout);
        assert!(!setup.status.success(), "{out}");
        assert!(
            out.contains(&format!(
                "probe: FAILED: tunnel \"{name}\" cannot wait for its first connection on farend: "
            )) && out.contains(expected),
            "{out}"
        );
        assert!(
            out.contains("untick \"Start on first connection\""),
            "{out}"
        );
        for ext in ["key", "manifest"] {
            assert!(!far_file(&slug, ext).exists(), "{ext} written:\n{out}");
        }
    }
}

/// The engine API directly, for a host whose key the client does not accept.
fn setup_with(sshd: &Sshd, name: &str) -> (Result<(), FarEndError>, Vec<String>) {
    let far_port = free_port(LOCALHOST_V4);
    let local = local_side(name, far_port);
    let request = FarEndRequest {
        action: FarEndAction::Setup,
        tunnel: local.spec.clone(),
        far_address: None,
        this_host: "localhost".into(),
        key: Some(FarEndKey::load(&local.spec.key, None).unwrap()),
        ssh: client(sshd),
        on_first_connection: false,
        local_sluiced: None,
        previous_key: None,
    };
    let mut lines = Vec::new();
    let result = run_far_end(&request, &mut |r| lines.push(r.to_string()));
    (result, lines)
}

#[test]
fn a_changed_host_key_is_refused_and_nothing_is_written() {
    let name = "farend-changed";
    let slug = far_end_slug(name);
    clear_leftovers(&slug);
    let sshd = Sshd::start("/usr/bin:/bin", Trust::OtherKey);
    let (result, lines) = setup_with(&sshd, name);
    let error = result.unwrap_err();
    let FarEndError::Ssh(SshError::HostKeyChanged { fix, .. }) = &error else {
        panic!("{error:?}");
    };
    assert!(fix.starts_with("ssh-keygen "), "{fix}");
    assert!(fix.contains(&format!("[127.0.0.1]:{}", sshd.port)), "{fix}");
    let message = error.to_string();
    assert!(message.contains("has CHANGED"), "{message}");
    assert!(
        message.contains("ssh -o StrictHostKeyChecking=ask farend"),
        "{message}"
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].starts_with("probe: FAILED: the host key of farend has CHANGED"));
    assert!(!far_file(&slug, "manifest").exists());
    assert!(!far_file(&slug, "key").exists());
}

#[test]
fn an_unknown_host_key_is_refused_with_the_command_to_run() {
    let name = "farend-unknown";
    let slug = far_end_slug(name);
    clear_leftovers(&slug);
    let sshd = Sshd::start("/usr/bin:/bin", Trust::Nothing);
    let (result, _) = setup_with(&sshd, name);
    let error = result.unwrap_err();
    assert!(
        matches!(error, FarEndError::Ssh(SshError::HostKeyUnknown { .. })),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("`ssh -o StrictHostKeyChecking=ask farend`"),
        "{error}"
    );
    assert!(!far_file(&slug, "manifest").exists());
}

#[test]
fn a_busy_far_end_port_is_named_and_remove_cleans_up() {
    let name = "farend-busy";
    let slug = far_end_slug(name);
    clear_leftovers(&slug);
    let sshd = Sshd::start("/usr/bin:/bin", Trust::ServerKey);
    let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let far_port = busy.local_addr().unwrap().port();
    let local = local_side(name, far_port);
    let setup = far_end_cli(
        &sshd,
        &local,
        "--far-end-setup",
        &["--service", "[127.0.0.1]:9"],
    );
    let out = text(&setup.stdout);
    assert!(!setup.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "start: FAILED: the far end's port [127.0.0.1]:{far_port} is already in use"
        )),
        "{out}"
    );
    // The key was written before the start failed; remove takes it away.
    assert!(far_file(&slug, "key").exists());
    let remove = far_end_cli(&sshd, &local, "--far-end-remove", &[]);
    assert!(remove.status.success(), "{}", text(&remove.stdout));
    for ext in ["key", "pid", "log", "manifest"] {
        assert!(!far_file(&slug, ext).exists(), "{ext} left behind");
    }
}

/// A far end that never reads its standard input must not hang set-up: a stand-in for ssh
/// (what `SLUICE_SSH_COMMAND` names; here given as the client's command, so the test can
/// shorten the limit) answers the probe, then never reads the key and sleeps. The key is
/// 1 MiB, more than a pipe holds, so writing it blocks for as long as nobody reads.
#[test]
fn a_far_end_that_never_reads_the_key_fails_within_the_limit_and_leaves_no_process() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let fake_ssh = dir.path().join("fake-ssh");
    fs::write(
        &fake_ssh,
        format!(
            r#"#!/bin/sh
for script; do :; done
case "$script" in
  *'p user'*)
    printf 'sluice-far-end:%s\n' user=u uid=1000 home=/nonexistent spiped=/usr/bin/spiped
    exit 0 ;;
esac
echo "$$" >> '{pids}'
sleep 600 &
echo "$!" >> '{pids}'
wait
"#,
            pids = pids.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake_ssh, fs::Permissions::from_mode(0o755)).unwrap();
    let mut key = vec![0u8; 1 << 20];
    getrandom::fill(&mut key).unwrap();
    let key_path = support::write_key(dir.path(), "big.key", &key);
    let spec = TunnelSpec::new(
        "farend-never-reads",
        Mode::Encrypt,
        "[127.0.0.1]:6379",
        "[127.0.0.1]:8025",
        KeyRef::File(key_path),
    );
    let mut ssh = SshClient::new(vec![fake_ssh.display().to_string()], "fake", 1);
    ssh.command_timeout = Duration::from_secs(2);
    let limit = ssh.limit();
    let request = FarEndRequest {
        action: FarEndAction::Setup,
        key: Some(FarEndKey::load(&spec.key, None).unwrap()),
        tunnel: spec,
        far_address: None,
        this_host: "localhost".into(),
        ssh,
        on_first_connection: false,
        local_sluiced: None,
        previous_key: None,
    };

    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = Vec::new();
        let result = run_far_end(&request, &mut |r| lines.push(r.to_string()));
        let _ = tx.send((result, lines));
    });
    let watchdog = limit + Duration::from_secs(20);
    let (result, lines) = rx.recv_timeout(watchdog).unwrap_or_else(|_| {
        panic!("set-up had not returned after {watchdog:?}: the limit of {limit:?} does not cover writing the key")
    });
    let took = started.elapsed();

    let error = result.unwrap_err();
    assert!(
        matches!(
            &error,
            FarEndError::Ssh(SshError::TimedOut {
                stage: SshStage::WritingInput("the key"),
                ..
            })
        ),
        "{error:?}"
    );
    assert!(took >= limit, "failed after {took:?}, before the limit");
    assert!(
        took < limit + Duration::from_secs(10),
        "failed only after {took:?}; the limit is {limit:?}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("send key: FAILED: ssh to fake did not finish within 3 s, the limit for one command: it was still writing the key to ssh's standard input, which the far end did not read;"),
        "{lines:#?}"
    );
    assert_key_absent("the error", last.as_bytes(), &key);

    // The stand-in and the sleep it started are gone (or zombies awaiting pid 1).
    let recorded = fs::read_to_string(&pids).unwrap();
    let recorded: Vec<&str> = recorded.split_whitespace().collect();
    assert_eq!(recorded.len(), 2, "the stand-in recorded {recorded:?}");
    for pid in recorded {
        assert!(
            wait_gone(pid, Duration::from_secs(5)),
            "process {pid} that ssh's stand-in started is still running"
        );
    }
}

/// The manifest lives in the far-end user's home, where anything running as that user
/// can add lines to it. Remove must act only on what set-up makes for this tunnel: here a
/// forged manifest also lists files the far-end user may delete (outside the layout, and
/// another tunnel's key inside the Sluice directory), a system unit, a user unit and a
/// pid file. Remove takes the far end down, refuses the rest by name, and touches none of it.
#[test]
fn remove_acts_only_on_what_set_up_makes_and_refuses_the_rest() {
    let name = "farend-tampered";
    let slug = far_end_slug(name);
    clear_leftovers(&slug);
    let other_key = PathBuf::from(format!("{HOME}/.config/sluice-far-end/other-tunnel.key"));
    let _ = fs::remove_file(&other_key);
    let sshd = Sshd::start("/usr/bin:/bin", Trust::ServerKey);
    let echo = Echo::tcp(LOCALHOST_V4);
    let local = local_side(name, free_port(LOCALHOST_V4));
    let setup = far_end_cli(
        &sshd,
        &local,
        "--far-end-setup",
        &["--service", &echo.addr.spiped()],
    );
    assert!(setup.status.success(), "{}", text(&setup.stdout));
    let pid = fs::read_to_string(far_file(&slug, "pid"))
        .unwrap()
        .trim()
        .to_owned();

    // Files the far-end user could delete: in a directory anyone may write to, and
    // another tunnel's key next to this one's.
    let victims = temp_dir();
    fs::set_permissions(victims.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let victim = victims.path().join("data.txt");
    let decoy_pid = victims.path().join("service.pid");
    fs::write(&victim, "precious").unwrap();
    fs::write(&decoy_pid, "1\n").unwrap();
    fs::write(&other_key, "another tunnel's key").unwrap();
    let forged = [
        format!("file\t{}", victim.display()),
        format!("key\t{}", other_key.display()),
        format!("pidfile\t{}", decoy_pid.display()),
        "unit-system\tssh.service".to_owned(),
        "unit-user\tdefault.target".to_owned(),
        "sudo\tplease".to_owned(),
    ];
    let manifest = far_file(&slug, "manifest");
    let mut listed = fs::read_to_string(&manifest).unwrap();
    for line in &forged {
        listed.push_str(line);
        listed.push('\n');
    }
    fs::write(&manifest, &listed).unwrap();

    let remove = far_end_cli(&sshd, &local, "--far-end-remove", &[]);
    let out = text(&remove.stdout);
    assert!(
        !remove.status.success(),
        "a tampered manifest passed:\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("remove: FAILED: "))
        .unwrap_or_else(|| panic!("no failed remove step:\n{out}"));
    assert!(
        line.contains(&format!(
            "the manifest {} on farend lists things Sluice's set-up never makes, which remove refused and left alone: ",
            manifest.display()
        )),
        "{line}"
    );
    for refused in [
        format!("file {:?}", victim.display().to_string()),
        format!("key {:?}", other_key.display().to_string()),
        format!("pidfile {:?}", decoy_pid.display().to_string()),
        "unit-system \"ssh.service\"".to_owned(),
        "unit-user \"default.target\"".to_owned(),
        "sudo \"please\"".to_owned(),
    ] {
        assert!(line.contains(&refused), "{refused} is not named:\n{line}");
    }
    assert!(line.contains(&format!("stopped pid {pid}")), "{line}");

    // What set-up made is gone; what the forged lines named is untouched.
    assert!(
        wait_gone(&pid, Duration::from_secs(5)),
        "far end pid {pid} still runs"
    );
    for ext in ["key", "pid", "log"] {
        assert!(!far_file(&slug, ext).exists(), "{ext} left behind");
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(fs::read_to_string(&decoy_pid).unwrap(), "1\n");
    assert_eq!(
        fs::read_to_string(&other_key).unwrap(),
        "another tunnel's key"
    );
    // The manifest is kept, to be looked at.
    assert_eq!(fs::read_to_string(&manifest).unwrap(), listed);
    fs::remove_file(&manifest).unwrap();
    fs::remove_file(&other_key).unwrap();
}
