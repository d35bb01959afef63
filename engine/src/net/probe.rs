//! "Test connection": connect to an spiped server, run the client handshake, hang up, and
//! report what happened: OK (and how long each step took), or the typed reason it failed,
//! put into words (unreachable, refused, timed out, rejected) only when displayed.

use std::fmt;
use std::time::Duration;

use crate::address::Address;
use crate::net::conn::HandshakeFailure;
use crate::net::conn::{HandshakeFault, HandshakeParams, TargetFault};
use crate::net::dhpool::KeyPairPool;
use crate::net::dial::{DialFault, Dialer};
use crate::protocol::key::PresharedKey;
use crate::protocol::{ForwardSecrecy, KeyAgreement, PeerFault, PeerRejection, Role};

/// What to test: the far end of an Encrypt tunnel, with its key and options.
#[derive(Clone)]
pub struct ProbeRequest {
    pub target: Address,
    pub key: PresharedKey,
    pub forward_secrecy: ForwardSecrecy,
    pub key_agreement: KeyAgreement,
    pub timeout: Duration,
    pub bind: Option<Address>,
}

/// The verdict of a test connection.
#[derive(Debug)]
pub enum ProbeOutcome {
    /// Each step's own time: the host-name lookup (if a name was looked up), the TCP
    /// connect, the handshake.
    Ok {
        lookup: Option<Duration>,
        connect: Duration,
        handshake: Duration,
    },
    /// The probe ran and failed, with the typed cause.
    Failed(DialFault),
    /// The caller found the target unusable before any probe ran (settings that do not
    /// validate), in words.
    Unreachable(String),
    /// The caller could not run the handshake at all (the key would not load), in words.
    Rejected(String),
}

impl ProbeOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, ProbeOutcome::Ok { .. })
    }
}

/// The verdict's first word, as the user sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Unreachable,
    Refused,
    TimedOut,
    Rejected,
}

impl Verdict {
    fn of(fault: &DialFault) -> Verdict {
        match fault {
            DialFault::Target(TargetFault::Refused(_)) => Verdict::Refused,
            DialFault::Target(TargetFault::TimedOut { .. }) => Verdict::TimedOut,
            DialFault::Target(_) => Verdict::Unreachable,
            DialFault::Handshake(fault) => match fault.cause() {
                HandshakeFailure::Timeout => Verdict::TimedOut,
                HandshakeFailure::Network => Verdict::Unreachable,
                HandshakeFailure::WrongKey
                | HandshakeFailure::ForwardSecrecyMismatch
                | HandshakeFailure::Protocol => Verdict::Rejected,
            },
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Unreachable => "Unreachable",
            Verdict::Refused => "Refused",
            Verdict::TimedOut => "Timed out",
            Verdict::Rejected => "Rejected",
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Ok {
                lookup,
                connect,
                handshake,
            } => {
                let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
                write!(f, "OK: handshake completed in {:.1} ms (", ms(handshake))?;
                if let Some(lookup) = lookup {
                    write!(f, "name lookup {:.1} ms, ", ms(lookup))?;
                }
                write!(f, "TCP connect {:.1} ms)", ms(connect))
            }
            ProbeOutcome::Failed(fault) => {
                write!(f, "{}: ", Verdict::of(fault).label())?;
                match fault {
                    // Said as advice about the tunnel being tested, not about "this end".
                    DialFault::Handshake(HandshakeFault::Peer(PeerFault::Rejected(
                        PeerRejection::ForwardSecrecyRefused,
                    ))) => f.write_str(
                        "the far end skips forward secrecy (spiped -f) but this tunnel requires it (-g): set forward secrecy to the same policy on both ends",
                    ),
                    fault => write!(f, "{fault}"),
                }
            }
            ProbeOutcome::Unreachable(why) => write!(f, "Unreachable: {why}"),
            ProbeOutcome::Rejected(why) => write!(f, "Rejected: {why}"),
        }
    }
}

/// Runs one test connection. Never panics, always answers.
pub async fn probe(request: &ProbeRequest, pool: &KeyPairPool) -> ProbeOutcome {
    let params = HandshakeParams {
        role: Role::Client,
        key: &request.key,
        forward_secrecy: request.forward_secrecy,
        key_agreement: request.key_agreement,
        pool,
    };
    match Dialer::new(&request.target, request.bind.as_ref(), request.timeout)
        .dial(&params)
        .await
    {
        Ok(dialed) => ProbeOutcome::Ok {
            lookup: dialed.lookup,
            connect: dialed.connect,
            handshake: dialed.handshake,
        },
        Err(fault) => ProbeOutcome::Failed(fault),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn shown(fault: DialFault) -> String {
        ProbeOutcome::Failed(fault).to_string()
    }

    #[test]
    fn verdicts_are_worded_as_before() {
        let ok = ProbeOutcome::Ok {
            lookup: None,
            connect: Duration::from_micros(1500),
            handshake: Duration::from_micros(2250),
        };
        assert!(ok.is_ok());
        assert_eq!(
            ok.to_string(),
            "OK: handshake completed in 2.2 ms (TCP connect 1.5 ms)"
        );
        let named = ProbeOutcome::Ok {
            lookup: Some(Duration::from_micros(4960)),
            connect: Duration::from_micros(120),
            handshake: Duration::from_micros(1040),
        };
        assert_eq!(
            named.to_string(),
            "OK: handshake completed in 1.0 ms (name lookup 5.0 ms, TCP connect 0.1 ms)"
        );
        let refused = shown(DialFault::Target(TargetFault::Refused(
            "[127.0.0.1]:9".into(),
        )));
        assert!(
            refused.starts_with("Refused: connection refused"),
            "{refused}"
        );
        let timed_out = shown(DialFault::Handshake(HandshakeFault::TimedOut(
            Duration::from_secs(2),
        )));
        assert!(timed_out.starts_with("Timed out: handshake timed out after 2.0 s"));
        let wrong_key = shown(DialFault::Handshake(HandshakeFault::Peer(
            PeerFault::Closed {
                role: Role::Client,
                after_our_value: true,
            },
        )));
        assert!(wrong_key.starts_with("Rejected: handshake rejected: the far end hung up"));
        assert!(wrong_key.contains("different key"));
        let not_spiped = shown(DialFault::Handshake(HandshakeFault::Peer(
            PeerFault::Closed {
                role: Role::Client,
                after_our_value: false,
            },
        )));
        assert!(not_spiped.starts_with("Unreachable: the far end closed the connection"));
        let fs = shown(DialFault::Handshake(HandshakeFault::Peer(
            PeerFault::Rejected(PeerRejection::ForwardSecrecyRefused),
        )));
        assert_eq!(
            fs,
            "Rejected: the far end skips forward secrecy (spiped -f) but this tunnel requires it (-g): set forward secrecy to the same policy on both ends"
        );
        let x = shown(DialFault::Handshake(HandshakeFault::Peer(
            PeerFault::X25519Rejected,
        )));
        assert!(x.starts_with("Rejected: handshake rejected: the far end has a different key"));
        let io = shown(DialFault::Target(TargetFault::Io {
            target: "t".into(),
            source: io::Error::other("boom").into(),
        }));
        assert_eq!(io, "Unreachable: cannot connect to t: boom");
        assert!(!ProbeOutcome::Rejected("x".into()).is_ok());
        assert_eq!(
            ProbeOutcome::Unreachable("bad".into()).to_string(),
            "Unreachable: bad"
        );
    }
}
