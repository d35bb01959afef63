//! Why a far-end step failed, split by cause: this machine (the SSH command, the key, the
//! tunnel), the SSH connection (host key, authentication, reachability), or the far end
//! itself (what is installed there, its ports, its commands). Messages say what to do.

use std::fmt;
use std::time::Duration;

use super::shell::SplitError;
use crate::config::SshDestinationError;

/// A step failed. Clone, so the same error can go to a progress list and a final result.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FarEndError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    FarHost(#[from] FarHostError),
}

impl FarEndError {
    /// Whether this is Check finding the far end stopped or changed, which
    /// [`super::FarEndAction::Repair`] addresses by putting back what set-up made: not
    /// running (or its key gone), or running but answering with another key or handshake
    /// mode, or not listening. Problems of this machine, of ssh and of the network are not.
    pub fn repairable(&self) -> bool {
        matches!(
            self,
            FarEndError::FarHost(
                FarHostError::NotRunning { .. } | FarHostError::TestFailed { changed: true, .. }
            )
        )
    }
}

/// Something on this machine is not right.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LocalError {
    #[error("SLUICE_SSH_COMMAND cannot be used: {0}")]
    SshCommand(SplitError),
    #[error(
        "cannot run {program:?} ({reason}): install the OpenSSH client (apt install openssh-client), or set SLUICE_SSH_COMMAND to the ssh command to use"
    )]
    SshNotRunnable { program: String, reason: String },
    #[error("tunnel {tunnel:?} cannot have its far end set up: {reason}")]
    Tunnel { tunnel: String, reason: String },
    #[error("the tunnel's key cannot be read: {0}")]
    Key(String),
    #[error("{0}")]
    Destination(#[from] SshDestinationError),
}

/// The SSH connection did not get as far as running a command.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SshError {
    #[error(
        "the host key of {destination} is not known here, so ssh refused to connect (Sluice never accepts host keys on its own): connect once with `{command}`, compare the fingerprint it shows with the server's, accept it, then try again"
    )]
    HostKeyUnknown {
        destination: String,
        command: String,
    },
    #[error(
        "the host key of {destination} has CHANGED since it was recorded in known_hosts: ssh refused to connect and nothing was done on the far end; this may be an attack, or the server was reinstalled. Check with the server's administrator; if the change is expected, remove the old key with `{fix}` and connect once with `ssh -o StrictHostKeyChecking=ask {destination}`"
    )]
    HostKeyChanged { destination: String, fix: String },
    #[error(
        "permission denied by {destination}: ssh could not log in without a prompt (Sluice runs ssh with BatchMode=yes); load your key into the agent (ssh-add) or configure the right IdentityFile and User for this host in ~/.ssh/config, and check that `ssh {destination} true` works without a password"
    )]
    PermissionDenied { destination: String },
    #[error(
        "cannot reach {destination}: {detail}; check the host name, the port and the network (ssh's ConnectTimeout was {timeout_secs} s)"
    )]
    Unreachable {
        destination: String,
        detail: String,
        timeout_secs: u64,
    },
    #[error(
        "ssh to {destination} did not finish within {} s, the limit for one command: it was still {stage}; ssh and everything it started here were stopped. Check that the far end is up and not overloaded, and that its login shell is a POSIX shell; then try again",
        .limit.as_secs_f64()
    )]
    TimedOut {
        destination: String,
        limit: Duration,
        stage: SshStage,
    },
    #[error("ssh to {destination} failed: {detail}")]
    Other { destination: String, detail: String },
}

/// How far one ssh command had got when its time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SshStage {
    /// Writing its standard input (what, in words): the far end was not reading it.
    WritingInput(&'static str),
    /// Running: its input, if any, was written, but its output had not ended.
    Running,
    /// Its output had ended, but ssh did not exit.
    Exiting,
}

impl fmt::Display for SshStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshStage::WritingInput(what) => write!(
                f,
                "writing {what} to ssh's standard input, which the far end did not read"
            ),
            SshStage::Running => f.write_str("running on the far end (its output had not ended)"),
            SshStage::Exiting => {
                f.write_str("exiting (its output had ended, but ssh had not exited)")
            }
        }
    }
}

/// The far end is reachable but cannot do what the step needs.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FarHostError {
    #[error(
        "neither sluiced nor spiped is installed on {destination} (or not on the PATH of non-interactive ssh commands), {no_copy}: install spiped there (`sudo apt install spiped` on Debian and Ubuntu), or the Sluice .deb for sluiced, then try again"
    )]
    NoProgram {
        destination: String,
        no_copy: String,
    },
    #[error(
        "{why}, and sluiced is not installed on {destination} (or not on the PATH of non-interactive ssh commands), {no_copy}: install the Sluice .deb there (`sudo apt install ./sluice_VERSION_amd64.deb`), then try again"
    )]
    NeedsSluiced {
        destination: String,
        why: &'static str,
        no_copy: String,
    },
    #[error(
        "this machine's sluiced was copied to {destination} but does not work there ({detail}): install the Sluice .deb there (`sudo apt install ./sluice_VERSION_amd64.deb`), then repair or set up again"
    )]
    CopyDoesNotRun { destination: String, detail: String },
    #[error(
        "tunnel {tunnel:?} cannot wait for its first connection on {destination}: {reason}; set it up to run all the time instead (untick \"Start on first connection\", or leave out --on-first-connection)"
    )]
    OnFirstConnection {
        destination: String,
        tunnel: String,
        reason: String,
    },
    #[error(
        "the far end's port {address} is already in use on {destination}: stop what listens there (`ss -ltnp` shows it), or point the tunnel at another port"
    )]
    PortInUse {
        destination: String,
        address: String,
    },
    #[error(
        "tunnel {tunnel:?} is already set up on {destination}: check it with --far-end-check, repair it with --far-end-repair, or take it down with --far-end-remove before setting it up again"
    )]
    AlreadySetUp { destination: String, tunnel: String },
    #[error(
        "nothing of tunnel {tunnel:?} was set up on {destination} by Sluice: set it up first (--far-end-setup)"
    )]
    NotSetUp { destination: String, tunnel: String },
    #[error(
        "{path} already exists on {destination} and was not made by Sluice: it was left untouched; rename the tunnel, or move that file away"
    )]
    Occupied { destination: String, path: String },
    #[error("the far end of tunnel {tunnel:?} on {destination} is not running: {detail}")]
    NotRunning {
        destination: String,
        tunnel: String,
        detail: String,
    },
    #[error(
        "the manifest {manifest} on {destination} lists things Sluice's set-up never makes ({refused}), so repair touched nothing: find out who changed that file (anything running as that user can), then remove (which leaves those lines alone) and set up again"
    )]
    RepairRefused {
        destination: String,
        manifest: String,
        refused: String,
    },
    #[error(
        "the manifest {manifest} on {destination} lists things Sluice's set-up never makes, which remove refused and left alone: {refused}. What set-up had made was removed ({done}). Sluice did not write those lines: find out who changed that file (anything running as that user can); it was kept so you can look at it, then delete it by hand"
    )]
    ManifestRefused {
        destination: String,
        manifest: String,
        refused: String,
        done: String,
    },
    /// The probe's verdict, in words: this error is cloned into step reports, which a
    /// probe's typed fault (holding an `io::Error`) cannot be.
    #[error("the connection test through the far end failed: {verdict}")]
    TestFailed {
        verdict: String,
        /// The far end answered wrongly (another key, another handshake mode) or nothing
        /// listened where it runs: what set-up made has changed or stopped, and a repair
        /// puts it back. A test that timed out or found no route is the network's doing.
        changed: bool,
    },
    #[error("{what} failed on {destination}: {detail}")]
    Command {
        destination: String,
        what: &'static str,
        detail: String,
    },
}
