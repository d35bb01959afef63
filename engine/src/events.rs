//! What happened in a tunnel, as discrete events for logs and the app's event list.
//! Events go out on a bounded broadcast channel: a slow reader loses the oldest events
//! (and is told how many) rather than slowing the tunnels down.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::stats::HandshakeFailure;

/// Identifies a tunnel inside one [`crate::engine::Engine`]; chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelId(pub u64);

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One thing that happened, stamped with its tunnel and time.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub tunnel: TunnelId,
    /// The tunnel's name when the event happened.
    pub tunnel_name: String,
    pub at: SystemTime,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// The listener is bound and accepting.
    Listening {
        address: String,
    },
    /// The tunnel could not start (bind failed, target did not resolve, …).
    StartFailed {
        reason: String,
    },
    /// The tunnel stopped accepting; `draining` connections are still finishing.
    Stopped {
        draining: u64,
    },
    /// New settings were applied; open connections keep the settings they started with.
    Updated,
    ConnectionOpened {
        conn: u64,
        peer: String,
    },
    ConnectionClosed {
        conn: u64,
        peer: String,
        duration: Duration,
        bytes_up: u64,
        bytes_down: u64,
        /// `None` for an orderly close (both directions reached end of stream).
        error: Option<String>,
    },
    HandshakeFailed {
        conn: u64,
        peer: String,
        cause: HandshakeFailure,
        message: String,
    },
    TargetUnreachable {
        conn: u64,
        target: String,
        message: String,
    },
    /// All `limit` connection slots are busy; new clients wait until one frees up.
    ConnectionLimitReached {
        limit: u32,
    },
    /// accept() failed, typically because file descriptors ran out; retrying shortly.
    AcceptFailed {
        message: String,
        retry_in: Duration,
    },
    /// Re-resolving the target failed; the previous addresses stay in use.
    ResolveFailed {
        message: String,
    },
}

impl EventKind {
    /// Whether this event reports something going wrong.
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            EventKind::StartFailed { .. }
                | EventKind::HandshakeFailed { .. }
                | EventKind::TargetUnreachable { .. }
                | EventKind::ConnectionLimitReached { .. }
                | EventKind::AcceptFailed { .. }
                | EventKind::ResolveFailed { .. }
                | EventKind::ConnectionClosed { error: Some(_), .. }
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Listening { address } => write!(f, "listening on {address}"),
            EventKind::StartFailed { reason } => write!(f, "could not start: {reason}"),
            EventKind::Stopped { draining: 0 } => write!(f, "stopped"),
            EventKind::Stopped { draining } => {
                write!(f, "stopped accepting; {draining} connection(s) finishing")
            }
            EventKind::Updated => write!(f, "settings updated"),
            EventKind::ConnectionOpened { conn, peer } => {
                write!(f, "connection {conn} from {peer} opened")
            }
            EventKind::ConnectionClosed {
                conn,
                peer,
                duration,
                bytes_up,
                bytes_down,
                error,
            } => {
                write!(
                    f,
                    "connection {conn} from {peer} closed after {:.1} s ({bytes_up} B up, {bytes_down} B down)",
                    duration.as_secs_f64()
                )?;
                if let Some(error) = error {
                    write!(f, ": {error}")?;
                }
                Ok(())
            }
            EventKind::HandshakeFailed {
                conn,
                peer,
                message,
                ..
            } => write!(f, "connection {conn} from {peer}: {message}"),
            EventKind::TargetUnreachable {
                conn,
                target,
                message,
            } => write!(
                f,
                "connection {conn}: target {target} unreachable: {message}"
            ),
            EventKind::ConnectionLimitReached { limit } => write!(
                f,
                "maximum number of connections ({limit}) reached; new clients wait for a free slot"
            ),
            EventKind::AcceptFailed { message, retry_in } => write!(
                f,
                "cannot accept connections: {message}; retrying in {} ms",
                retry_in.as_millis()
            ),
            EventKind::ResolveFailed { message } => {
                write!(
                    f,
                    "re-resolving the target failed ({message}); keeping the previous addresses"
                )
            }
        }
    }
}
