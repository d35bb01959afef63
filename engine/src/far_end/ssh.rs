//! Runs commands on the far end with the system's OpenSSH client, so the user's
//! ~/.ssh/config, agent, keys, ProxyJump and known_hosts apply exactly as on their command
//! line. Host-key checking is never weakened; `BatchMode=yes` so nothing waits for a prompt.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::error::{LocalError, SshError, SshStage};
use super::shell::split_words;
use crate::platform::ProcessGroup;

/// The environment variable that replaces the `ssh` command, as `GIT_SSH_COMMAND` does
/// for git: split into words as a shell would (e.g. `ssh -F ~/.ssh/work_config`).
pub const SSH_COMMAND_VAR: &str = "SLUICE_SSH_COMMAND";

/// How long one remote command may take beyond ssh's connect timeout, everything
/// included: writing its standard input, running, printing and exiting. Each step's
/// commands finish in well under a second when the far end is healthy; this only stops a
/// hung far end.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Longer than any far end needs; a bound on what a caller can ask for.
const MAX_LIMIT: Duration = Duration::from_secs(86_400);

/// How long a stopped ssh may take to be reaped; SIGKILL ends it at once unless the
/// kernel holds it in an uninterruptible wait.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// The ssh client to run and where to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshClient {
    /// The program and its own options, e.g. `["ssh", "-F", "/path/config"]`.
    pub command: Vec<String>,
    /// What `ssh` accepts: `user@host`, an alias from ~/.ssh/config.
    pub destination: String,
    /// ssh's `ConnectTimeout`, in seconds.
    pub connect_timeout_secs: u64,
    /// How long one command may take beyond the connect timeout (see
    /// [`DEFAULT_COMMAND_TIMEOUT`]); [`SshClient::limit`] is the sum.
    pub command_timeout: Duration,
}

/// What a command reads on its standard input, and what that is, in words for errors
/// ("the key"). The bytes may be secret: they are only ever written to ssh's pipe.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub what: &'static str,
    pub bytes: &'a [u8],
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
pub fn ssh_host_aliases(ssh_config: &str) -> Vec<String> {
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
    /// `command` to `destination`, with the default command timeout.
    pub fn new(command: Vec<String>, destination: &str, connect_timeout_secs: u64) -> SshClient {
        SshClient {
            command,
            destination: destination.to_owned(),
            connect_timeout_secs,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// `ssh`, or the command in `SLUICE_SSH_COMMAND` when it is set and not empty.
    pub fn from_env(destination: &str, connect_timeout_secs: u64) -> Result<SshClient, LocalError> {
        let command = match std::env::var(SSH_COMMAND_VAR) {
            Ok(line) if !line.trim().is_empty() => {
                split_words(&line).map_err(LocalError::SshCommand)?
            }
            _ => vec!["ssh".to_owned()],
        };
        Ok(SshClient::new(command, destination, connect_timeout_secs))
    }

    /// The most one remote command may take, from starting ssh to its exit: the connect
    /// timeout plus the command timeout, at most a day (so a deadline can always be set).
    pub fn limit(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
            .saturating_add(self.command_timeout)
            .min(MAX_LIMIT)
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

    /// Runs `script` with the far end's login shell (a POSIX shell), with `input` as its
    /// standard input (the only way secrets travel). An SSH-level failure (ssh's own exit
    /// status 255) is an [`SshError`]; the far end's exit status comes back in the output.
    ///
    /// [`SshClient::limit`] bounds the whole call: writing the input, reading the output
    /// and the exit. Past it, ssh and everything it started here (its process group) are
    /// killed and reaped, and the error names the stage that was still going on.
    pub fn run(&self, script: &str, input: Option<Input<'_>>) -> Result<RemoteOutput, SshFailure> {
        let deadline = Instant::now() + self.limit();
        let argv = self.argv(script);
        let (program, args) =
            argv.split_first()
                .ok_or(SshFailure::Local(LocalError::SshCommand(
                    super::shell::SplitError::Empty,
                )))?;
        let mut command = Command::new(program);
        // A group of its own, so a stop also reaches what ssh started (a ProxyCommand,
        // or a wrapper's children). ssh never needs the terminal: BatchMode=yes.
        ProcessGroup::prepare(&mut command);
        let mut child = command
            .args(args)
            .stdin(if input.is_some() {
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
        // Each pipe on a thread of its own: a far end that does not read blocks the write
        // once the pipe's buffer is full, and one that does not exit blocks the reads; the
        // deadline must hold through all of them.
        let written = match (input, child.stdin.take()) {
            (Some(input), Some(pipe)) => Some((
                input.what,
                write_in_background(pipe, Zeroizing::new(input.bytes.to_vec())),
            )),
            _ => None,
        };
        let stdout = child.stdout.take().map(read_in_background);
        let stderr = child.stderr.take().map(read_in_background);
        let group = ProcessGroup::of(&child);
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait());
        });

        let stopped = |stage: SshStage| {
            group.kill();
            let _ = finished.recv_timeout(REAP_GRACE);
            SshFailure::Ssh(SshError::TimedOut {
                destination: self.destination.clone(),
                limit: self.limit(),
                stage,
            })
        };
        if let Some((what, written)) = written
            && wait_until(&written, deadline).is_err()
        {
            return Err(stopped(SshStage::WritingInput(what)));
        }
        let mut texts = [String::new(), String::new()];
        for (pipe, text) in [stdout, stderr].into_iter().zip(&mut texts) {
            if let Some(pipe) = pipe {
                let read =
                    wait_until(&pipe, deadline).map_err(|Late| stopped(SshStage::Running))?;
                *text = read.unwrap_or_default();
            }
        }
        let status = wait_until(&finished, deadline).map_err(|Late| stopped(SshStage::Exiting))?;
        let [stdout, stderr] = texts;
        let output = RemoteOutput {
            status: status
                .and_then(Result::ok)
                .and_then(|s| s.code())
                .unwrap_or(-1),
            stdout,
            stderr,
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

/// Time ran out before a background thread reported.
struct Late;

/// Waits for a background thread's result until `deadline`. `Ok(None)`: the thread ended
/// without one (it cannot, short of a panic).
fn wait_until<T>(rx: &mpsc::Receiver<T>, deadline: Instant) -> Result<Option<T>, Late> {
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(value) => Ok(Some(value)),
        Err(RecvTimeoutError::Disconnected) => Ok(None),
        Err(RecvTimeoutError::Timeout) => Err(Late),
    }
}

/// Writes `bytes` and closes the pipe, so the far end sees the end of its input; the
/// receiver hears when that is done. A far end that exits early closes the pipe (the
/// write fails): its output says why, so the error itself is not needed.
fn write_in_background(
    mut pipe: impl Write + Send + 'static,
    bytes: Zeroizing<Vec<u8>>,
) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = pipe.write_all(&bytes);
        drop(pipe);
        drop(bytes);
        let _ = tx.send(());
    });
    rx
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
        assert_eq!(
            ssh_host_aliases(config),
            ["db", "db-replica", "web", "quoted"]
        );
        assert!(ssh_host_aliases("").is_empty());
    }

    use super::*;

    fn client() -> SshClient {
        SshClient::new(
            vec!["ssh".into(), "-F".into(), "/t/config".into()],
            "me@db",
            7,
        )
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

    #[cfg(unix)]
    /// A stand-in for ssh: `sh -c SCRIPT`, which ignores the ssh options appended to it.
    fn fake(script: &str, limit: Duration) -> SshClient {
        let mut c = SshClient::new(
            vec!["sh".into(), "-c".into(), script.into(), "fake-ssh".into()],
            "fake",
            0,
        );
        c.command_timeout = limit;
        c
    }

    #[cfg(unix)]
    fn key_input(bytes: &[u8]) -> Option<Input<'_>> {
        Some(Input {
            what: "the key",
            bytes,
        })
    }

    #[cfg(unix)]
    /// Runs `client` and checks it was stopped at its limit, in `stage`.
    fn assert_stopped(client: &SshClient, input: Option<Input<'_>>, stage: SshStage) {
        let started = Instant::now();
        let result = client.run("true", input);
        let took = started.elapsed();
        let limit = client.limit();
        match result {
            Err(SshFailure::Ssh(e @ SshError::TimedOut { .. })) => {
                assert_eq!(
                    e,
                    SshError::TimedOut {
                        destination: "fake".into(),
                        limit,
                        stage
                    }
                );
                assert!(e.to_string().contains(&stage.to_string()), "{e}");
            }
            other => panic!("expected a time-out while {stage}, got {other:?}"),
        }
        assert!(took >= limit, "stopped after {took:?}, before the limit");
        assert!(
            took < limit + Duration::from_secs(5),
            "stopped only after {took:?}, the limit being {limit:?}"
        );
    }

    // Unix only: the stand-in for ssh is sh.
    #[cfg(unix)]
    #[test]
    fn the_limit_covers_writing_the_input_to_a_far_end_that_never_reads_it() {
        // More than a pipe holds, so the write blocks for as long as nobody reads.
        let key = vec![7u8; 1 << 20];
        let client = fake("sleep 30", Duration::from_secs(2));
        assert_stopped(&client, key_input(&key), SshStage::WritingInput("the key"));
        let message = SshError::TimedOut {
            destination: "db".into(),
            limit: Duration::from_secs(70),
            stage: SshStage::WritingInput("the key"),
        }
        .to_string();
        assert!(
            message.starts_with("ssh to db did not finish within 70 s, the limit for one command: it was still writing the key to ssh's standard input, which the far end did not read;"),
            "{message}"
        );
    }

    // Unix only: the stand-in for ssh is sh.
    #[cfg(unix)]
    #[test]
    fn the_limit_covers_a_command_that_does_not_end() {
        // The input fits the pipe's buffer, so writing it is done at once.
        let client = fake("sleep 30", Duration::from_secs(2));
        assert_stopped(&client, key_input(b"0123456789"), SshStage::Running);
        assert_stopped(&client, None, SshStage::Running);
    }

    // Unix only: the stand-in for ssh is sh.
    #[cfg(unix)]
    #[test]
    fn the_limit_covers_an_ssh_that_does_not_exit() {
        let client = fake("exec >/dev/null 2>&1; sleep 30", Duration::from_secs(2));
        assert_stopped(&client, None, SshStage::Exiting);
    }

    // Unix only: the stand-in for ssh is sh.
    #[cfg(unix)]
    #[test]
    fn input_is_delivered_whole_and_closed() {
        let key: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
        let client = fake("wc -c; echo status >&2; exit 3", DEFAULT_COMMAND_TIMEOUT);
        let out = client.run("true", key_input(&key)).unwrap();
        assert_eq!(out.stdout.trim(), (3 << 20).to_string());
        assert_eq!(out.stderr, "status\n");
        assert_eq!(out.status, 3);
        let out = fake("cat", DEFAULT_COMMAND_TIMEOUT)
            .run("true", None)
            .unwrap();
        assert_eq!((out.status, out.stdout.as_str()), (0, ""));
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
