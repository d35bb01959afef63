//! Runs commands on the far end with the system's OpenSSH client, so the user's
//! ~/.ssh/config, agent, keys, ProxyJump and known_hosts apply exactly as on their command
//! line. Host-key checking is never weakened; `BatchMode=yes` so nothing waits for a prompt.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::error::{LocalError, SshError};
use super::shell::split_words;

/// The environment variable that replaces the `ssh` command, as `GIT_SSH_COMMAND` does
/// for git: split into words as a shell would (e.g. `ssh -F ~/.ssh/work_config`).
pub const SSH_COMMAND_VAR: &str = "SLUICE_SSH_COMMAND";

/// How long one remote command may take once connected. Each step's commands finish in
/// well under a second when the far end is healthy; this only stops a hung far end.
const COMMAND_ALLOWANCE: Duration = Duration::from_secs(60);

/// The ssh client to run and where to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshClient {
    /// The program and its own options, e.g. `["ssh", "-F", "/path/config"]`.
    pub command: Vec<String>,
    /// What `ssh` accepts: `user@host`, an alias from ~/.ssh/config.
    pub destination: String,
    /// ssh's `ConnectTimeout`, in seconds.
    pub connect_timeout_secs: u64,
}

/// What a remote command printed and how it ended (ssh passes the far end's exit status on).
#[derive(Clone, Debug)]
pub struct RemoteOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RemoteOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// The values of `sluice-far-end:NAME=VALUE` lines, the only lines of a script's
    /// output that are read (anything a login script prints is ignored).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.stdout.lines().filter_map(move |line| {
            line.strip_prefix("sluice-far-end:")
                .and_then(|rest| rest.strip_prefix(name))
                .and_then(|rest| rest.strip_prefix('='))
        })
    }

    pub fn value<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.values(name).next()
    }

    /// Whether the script printed the marker `sluice-far-end:NAME`.
    pub fn has(&self, name: &str) -> bool {
        self.stdout
            .lines()
            .any(|line| line.strip_prefix("sluice-far-end:") == Some(name))
    }

    /// Everything the far end printed except Sluice's markers, for error messages.
    pub fn diagnostics(&self) -> String {
        let text: Vec<&str> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|l| !l.starts_with("sluice-far-end:") && !l.trim().is_empty())
            .collect();
        if text.is_empty() {
            format!("it exited with status {} and printed nothing", self.status)
        } else {
            text.join("; ")
        }
    }
}

/// The host aliases a user's `~/.ssh/config` names (`Host` lines, patterns left out), in
/// file order without repeats: what the app offers as destinations.
pub fn host_aliases(ssh_config: &str) -> Vec<String> {
    let mut aliases: Vec<String> = Vec::new();
    for line in ssh_config.lines() {
        let line = line.trim();
        // "Host a b", "Host=a", "host a" all count; "HostName" does not.
        let Some((keyword, rest)) = line.split_once(|c: char| c.is_whitespace() || c == '=') else {
            continue;
        };
        if !keyword.eq_ignore_ascii_case("host") {
            continue;
        }
        let rest = rest.split('#').next().unwrap_or("");
        for alias in rest.split(|c: char| c.is_whitespace() || c == '=') {
            let alias = alias.trim_matches('"');
            let pattern = alias.contains(['*', '?', '!']);
            if !alias.is_empty() && !pattern && !aliases.iter().any(|a| a == alias) {
                aliases.push(alias.to_owned());
            }
        }
    }
    aliases
}

impl SshClient {
    /// `ssh`, or the command in `SLUICE_SSH_COMMAND` when it is set and not empty.
    pub fn from_env(destination: &str, connect_timeout_secs: u64) -> Result<SshClient, LocalError> {
        let command = match std::env::var(SSH_COMMAND_VAR) {
            Ok(line) if !line.trim().is_empty() => {
                split_words(&line).map_err(LocalError::SshCommand)?
            }
            _ => vec!["ssh".to_owned()],
        };
        Ok(SshClient {
            command,
            destination: destination.to_owned(),
            connect_timeout_secs,
        })
    }

    /// The full command line for `script`. The destination follows `--`, so one that
    /// starts with `-` cannot be read as an option. No agent (`-a`), no X11 (`-x`) and no
    /// port forwarding (`ClearAllForwardings`), whatever the user's ssh_config says: the
    /// far end runs a few shell commands and needs none of them, and each would hand a
    /// compromised far end a way back into this machine.
    pub fn argv(&self, script: &str) -> Vec<String> {
        let mut argv = self.command.clone();
        argv.extend([
            "-T".to_owned(),
            "-a".to_owned(),
            "-x".to_owned(),
            "-o".to_owned(),
            "ClearAllForwardings=yes".to_owned(),
            "-o".to_owned(),
            "BatchMode=yes".to_owned(),
            "-o".to_owned(),
            format!("ConnectTimeout={}", self.connect_timeout_secs),
            "--".to_owned(),
            self.destination.clone(),
            script.to_owned(),
        ]);
        argv
    }

    /// Runs `script` with the far end's login shell (a POSIX shell), with `stdin` as its
    /// standard input (the only way secrets travel). An SSH-level failure (ssh's own exit
    /// status 255) is an [`SshError`]; the far end's exit status comes back in the output.
    pub fn run(&self, script: &str, stdin: Option<&[u8]>) -> Result<RemoteOutput, SshFailure> {
        let argv = self.argv(script);
        let (program, args) =
            argv.split_first()
                .ok_or(SshFailure::Local(LocalError::SshCommand(
                    super::shell::SplitError::Empty,
                )))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                SshFailure::Local(LocalError::SshNotRunnable {
                    program: program.clone(),
                    reason: e.to_string(),
                })
            })?;
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A far end that exits early closes the pipe; its output says why.
            let _ = pipe.write_all(bytes);
        }
        let stdout = child.stdout.take().map(read_in_background);
        let stderr = child.stderr.take().map(read_in_background);
        let pid = child.id();
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait());
        });
        let allowance = Duration::from_secs(self.connect_timeout_secs) + COMMAND_ALLOWANCE;
        let status = match finished.recv_timeout(allowance) {
            Ok(status) => status,
            Err(_) => {
                // SAFETY: kill(2) on the pid of our own child, not yet reaped (the waiting
                // thread reaps it after this signal).
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
                let _ = finished.recv();
                return Err(SshFailure::Ssh(SshError::TimedOut {
                    destination: self.destination.clone(),
                    secs: allowance.as_secs(),
                }));
            }
        };
        let output = RemoteOutput {
            status: status.ok().and_then(|s| s.code()).unwrap_or(-1),
            stdout: stdout.map(collect).unwrap_or_default(),
            stderr: stderr.map(collect).unwrap_or_default(),
        };
        if output.status == 255 {
            return Err(SshFailure::Ssh(classify(
                &self.destination,
                &output.stderr,
                self.connect_timeout_secs,
            )));
        }
        Ok(output)
    }
}

/// Why [`SshClient::run`] got no answer from the far end.
#[derive(Clone, Debug, PartialEq)]
pub enum SshFailure {
    Local(LocalError),
    Ssh(SshError),
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

fn collect(rx: mpsc::Receiver<String>) -> String {
    rx.recv().unwrap_or_default()
}

/// Reads ssh's own complaint (it prints one on standard error before exiting with 255).
pub fn classify(destination: &str, stderr: &str, timeout_secs: u64) -> SshError {
    let destination = destination.to_owned();
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("has changed and you have requested strict checking")
    {
        // ssh prints the exact command for the known_hosts file it used.
        let fix = stderr
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("ssh-keygen ") && l.contains(" -R "))
            .map_or_else(
                || format!("ssh-keygen -R {}", host_of(&destination)),
                str::to_owned,
            );
        return SshError::HostKeyChanged { destination, fix };
    }
    if stderr.contains("Host key verification failed") || stderr.contains("host key is known for") {
        let command = format!("ssh -o StrictHostKeyChecking=ask {destination}");
        return SshError::HostKeyUnknown {
            destination,
            command,
        };
    }
    if stderr.contains("Permission denied") || stderr.contains("Too many authentication failures") {
        return SshError::PermissionDenied { destination };
    }
    let detail = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect::<Vec<_>>()
        .join("; ");
    for marker in [
        "Could not resolve hostname",
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Network is unreachable",
        "Operation timed out",
    ] {
        if stderr.contains(marker) {
            return SshError::Unreachable {
                destination,
                detail,
                timeout_secs,
            };
        }
    }
    let detail = if detail.is_empty() {
        "ssh exited with status 255 and printed nothing".to_owned()
    } else {
        detail
    };
    SshError::Other {
        destination,
        detail,
    }
}

/// The host part of a destination, for `ssh-keygen -R`: without `user@` and without an
/// `ssh://` scheme or port.
fn host_of(destination: &str) -> String {
    let rest = destination.strip_prefix("ssh://").unwrap_or(destination);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.contains(':') => {
            host
        }
        _ => rest,
    };
    host.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_aliases_are_the_host_lines_without_patterns() {
        let config = "\
# comment: Host commented
Host db db-replica
    HostName 10.0.0.5
Host *.internal !bastion
Host=web \"quoted\" # trailing comment
host db
Match host x
HostName not-an-alias
";
        assert_eq!(host_aliases(config), ["db", "db-replica", "web", "quoted"]);
        assert!(host_aliases("").is_empty());
    }

    use super::*;

    fn client() -> SshClient {
        SshClient {
            command: vec!["ssh".into(), "-F".into(), "/t/config".into()],
            destination: "me@db".into(),
            connect_timeout_secs: 7,
        }
    }

    #[test]
    fn argv_has_batch_mode_and_a_timeout_and_never_weakens_host_keys() {
        let argv = client().argv("echo hi");
        assert_eq!(
            argv,
            [
                "ssh",
                "-F",
                "/t/config",
                "-T",
                "-a",
                "-x",
                "-o",
                "ClearAllForwardings=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=7",
                "--",
                "me@db",
                "echo hi"
            ]
        );
        assert!(!argv.iter().any(|a| a.contains("StrictHostKeyChecking")));
    }

    #[test]
    fn argv_forwards_no_agent_no_x11_and_no_ports() {
        let argv = client().argv("true");
        let script_at = argv.len() - 1;
        let destination_at = argv.iter().position(|a| a == "--").unwrap();
        // After the user's own words, where the last of -a/-A and -x/-X wins; before `--`,
        // where ssh still reads options.
        for flag in ["-a", "-x"] {
            let at = argv.iter().position(|a| a == flag).unwrap();
            assert!(at > 2 && at < destination_at, "{argv:?}");
        }
        let clear = argv
            .windows(2)
            .position(|w| w == ["-o", "ClearAllForwardings=yes"])
            .unwrap();
        assert!(clear < destination_at, "{argv:?}");
        assert_eq!(destination_at + 2, script_at);
        for forwarding in ["-A", "-X", "-Y", "-L", "-R", "-D"] {
            assert!(!argv.contains(&forwarding.to_owned()), "{argv:?}");
        }
    }

    #[test]
    fn ssh_complaints_are_classified() {
        let changed = "@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nOffending ED25519 key in /root/.ssh/known_hosts:3\n  remove with:\n  ssh-keygen -f '/root/.ssh/known_hosts' -R '[127.0.0.1]:2222'\nHost key verification failed.\n";
        match classify("me@db", changed, 5) {
            SshError::HostKeyChanged { fix, .. } => {
                assert_eq!(
                    fix,
                    "ssh-keygen -f '/root/.ssh/known_hosts' -R '[127.0.0.1]:2222'"
                )
            }
            other => panic!("{other:?}"),
        }
        let unknown = "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n";
        let e = classify("me@db", unknown, 5);
        assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("`ssh -o StrictHostKeyChecking=ask me@db`"),
            "{e}"
        );
        assert!(matches!(
            classify("db", "me@db: Permission denied (publickey).\n", 5),
            SshError::PermissionDenied { .. }
        ));
        assert!(matches!(
            classify(
                "db",
                "ssh: connect to host db port 22: Connection refused\n",
                5
            ),
            SshError::Unreachable { .. }
        ));
        assert!(matches!(
            classify("db", "", 5),
            SshError::Other { detail, .. } if detail.contains("255")
        ));
    }

    #[test]
    fn host_of_strips_user_and_port() {
        assert_eq!(host_of("me@db.example.org"), "db.example.org");
        assert_eq!(host_of("ssh://me@db:2222"), "db");
        assert_eq!(host_of("alias"), "alias");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn only_marked_lines_are_read() {
        let out = RemoteOutput {
            status: 0,
            stdout: "Welcome!\nsluice-far-end:home=/home/u\nsluice-far-end:done\nhome=/evil\n"
                .into(),
            stderr: String::new(),
        };
        assert_eq!(out.value("home"), Some("/home/u"));
        assert!(out.has("done"));
        assert!(!out.has("home"));
        assert_eq!(out.diagnostics(), "Welcome!; home=/evil");
    }

    #[test]
    fn a_missing_ssh_program_is_a_local_error() {
        let mut c = client();
        c.command = vec!["/nonexistent/ssh-for-sluice-test".into()];
        assert!(matches!(
            c.run("true", None),
            Err(SshFailure::Local(LocalError::SshNotRunnable { .. }))
        ));
    }
}
