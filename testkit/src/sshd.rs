//! A real OpenSSH server for the far-end tests (engine and app): Debian's sshd on a free
//! loopback port, with throwaway host and client keys and a throwaway far-end user, and
//! the ssh_config/known_hosts a client uses to reach it as the alias `farend`.
//! Self-contained (std and tempfile only), so the app's tests include it by path.
//!
//! Needs root (sshd, useradd) and `openssh-server` (scripts/install-test-deps).

#![allow(dead_code)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub const USER: &str = "sluicefarend";
pub const HOME: &str = "/home/sluicefarend";
pub const ALIAS: &str = "farend";

/// The far-end user, created once (and kept across runs: `useradd` is skipped when the
/// user exists). `-p '*'` leaves it without a password yet not locked, so keys work.
pub fn far_end_user() {
    static ONCE: OnceLock<()> = OnceLock::new();
    let exists = || {
        Command::new("id")
            .arg(USER)
            .output()
            .unwrap()
            .status
            .success()
    };
    ONCE.get_or_init(|| {
        if !exists() {
            let out = Command::new("useradd")
                .args(["-m", "-p", "*", "-s", "/bin/sh", USER])
                .output()
                .unwrap();
            // Another test binary may have created it in between.
            assert!(
                exists(),
                "useradd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "sluice-test", "-f"])
        .arg(path));
}

/// sshd on a free loopback port, with its own host key, the far-end user's authorized
/// key, and an ssh_config/known_hosts for the client side.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub proc: SshdProcess,
}

impl Sshd {
    /// `path_dirs` becomes the far end's PATH. `trust` is the host key the client's
    /// known_hosts holds for it (None: the server's own).
    pub fn start(path_dirs: &str, trust: Trust) -> Sshd {
        far_end_user();
        fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("sluice-sshd-")
            .tempdir()
            .unwrap();
        // sshd reads authorized_keys as the far-end user: the directory must be traversable.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("other_host_key"));
        keygen(&d.join("client_key"));
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        fs::set_permissions(d.join("authorized_keys"), fs::Permissions::from_mode(0o644)).unwrap();
        for attempt in 0..5 {
            let port = free_port();
            fs::write(
                d.join("sshd_config"),
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nAuthorizedKeysFile {dir}/authorized_keys\nAllowUsers {USER}\nSetEnv PATH={path_dirs}\n",
                    dir = d.display()
                ),
            )
            .unwrap();
            let mut command = Command::new("/usr/sbin/sshd");
            command
                .arg("-D")
                .arg("-f")
                .arg(d.join("sshd_config"))
                .arg("-E")
                .arg(d.join("sshd.log"));
            let mut proc = SshdProcess(
                command
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start /usr/sbin/sshd"),
            );
            if !proc.wait_listening(port) {
                let log = fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
                if log.contains("in use") && attempt < 4 {
                    continue;
                }
                panic!("sshd did not start: {log}");
            }
            let trusted = match trust {
                Trust::ServerKey => Some("host_key.pub"),
                Trust::OtherKey => Some("other_host_key.pub"),
                Trust::Nothing => None,
            };
            let known = trusted.map_or_else(String::new, |file| {
                format!(
                    "[127.0.0.1]:{port} {}",
                    fs::read_to_string(d.join(file)).unwrap()
                )
            });
            fs::write(d.join("known_hosts"), known).unwrap();
            fs::write(
                d.join("ssh_config"),
                format!(
                    "Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {USER}\n  IdentityFile {dir}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {dir}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n",
                    dir = d.display()
                ),
            )
            .unwrap();
            return Sshd { dir, port, proc };
        }
        unreachable!("the loop returns or panics")
    }

    pub fn ssh_command(&self) -> String {
        format!("ssh -F {}", self.dir.path().join("ssh_config").display())
    }

    /// The ssh command line that reaches this server as [`ALIAS`], as words.
    pub fn ssh_words(&self) -> Vec<String> {
        vec![
            "ssh".into(),
            "-F".into(),
            self.ssh_config().display().to_string(),
        ]
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

#[derive(Clone, Copy)]
pub enum Trust {
    ServerKey,
    OtherKey,
    Nothing,
}

/// Where Sluice keeps a tunnel's far-end files for the test user.
pub fn far_file(slug: &str, ext: &str) -> PathBuf {
    PathBuf::from(format!("{HOME}/.config/sluice-far-end/{slug}.{ext}"))
}

/// Clears what an earlier, interrupted run of the same test may have left: the process
/// its pid file names (only if that process uses this tunnel's key file) and the files.
pub fn clear_leftovers(slug: &str) {
    let key = far_file(slug, "key");
    if let Ok(pid) = fs::read_to_string(far_file(slug, "pid")) {
        let pid = pid.trim();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&*key.to_string_lossy()) {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
    for ext in ["key", "key.tmp", "pid", "log", "manifest"] {
        let _ = fs::remove_file(far_file(slug, ext));
    }
}

/// sshd, killed and reaped when dropped.
pub struct SshdProcess(Child);

impl SshdProcess {
    /// Waits until something accepts on `port` (true) or sshd exits (false); panics
    /// after 15 s.
    fn wait_listening(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on {port} within 15 s"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SshdProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0 on loopback")
        .port()
}

/// Waits until `pid` is gone (or a zombie: the far end's daemons are reparented to a pid 1
/// that may not reap them).
pub fn wait_gone(pid: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let gone = match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        };
        if gone {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
