//! Probing the far end: connect, run the client handshake with a nonce tagged as a health
//! probe (`protocol::health`), half-close, and read what the far end says of its own
//! target (a Sluice far end sends one report; stock spiped says nothing). Used by the
//! engine's health checks and by "Test connection", which also puts the verdict into
//! words. And the server's side: answering a probe with its report.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::address::Address;
use crate::net::conn::HandshakeFailure;
use crate::net::conn::{HandshakeFault, HandshakeParams, TargetFault};
use crate::net::dhpool::KeyPairPool;
use crate::net::dial::{DialFault, Dialer};
use crate::net::stream::NetStream;
use crate::protocol::health::TargetReport;
use crate::protocol::key::PresharedKey;
use crate::protocol::tag::NonceTag;
use crate::protocol::{
    ForwardSecrecy, KeyAgreement, PACKET_LEN, PacketOpener, PacketSealer, PeerFault, PeerRejection,
    Role,
};

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

/// A probe that got through: each step's own time, and the far end's report on its
/// target (`None` from a far end that sends none: stock spiped, or an older Sluice).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probed {
    /// The host-name lookup, if a name was looked up.
    pub lookup: Option<Duration>,
    pub connect: Duration,
    pub handshake: Duration,
    pub report: Option<TargetReport>,
}

/// The verdict of a test connection.
#[derive(Debug)]
pub enum ProbeOutcome {
    Ok(Probed),
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
        matches!(self, ProbeOutcome::Ok(_))
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
            ProbeOutcome::Ok(probed) => {
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                write!(
                    f,
                    "OK: handshake completed in {:.1} ms (",
                    ms(probed.handshake)
                )?;
                if let Some(lookup) = probed.lookup {
                    write!(f, "name lookup {:.1} ms, ", ms(lookup))?;
                }
                write!(f, "TCP connect {:.1} ms)", ms(probed.connect))?;
                match probed.report {
                    None => Ok(()),
                    Some(TargetReport::Unknown) => {
                        f.write_str("; the far end has not tried its target yet")
                    }
                    Some(TargetReport::Up { .. }) => {
                        f.write_str("; the far end reaches its target")
                    }
                    Some(TargetReport::Down { cause, .. }) => {
                        write!(
                            f,
                            "; but the far end cannot reach its target ({})",
                            cause.label()
                        )
                    }
                }
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
        tag: Some(NonceTag::HealthProbe),
        previous_key: None,
    };
    let dialer = Dialer::new(&request.target, request.bind.as_ref(), request.timeout);
    match probe_far_end(&dialer, &params).await {
        Ok(probed) => ProbeOutcome::Ok(probed),
        Err(fault) => ProbeOutcome::Failed(fault),
    }
}

/// How long a probe waits for the far end's report after its handshake, beyond the
/// handshake's own time: a Sluice far end sends it right after its half of the handshake,
/// so only stock spiped (which sends nothing, and closes once its target has seen the
/// half-close) ever makes a probe wait this long.
const REPORT_GRACE: Duration = Duration::from_secs(2);

/// Dials with a probe-tagged nonce (`params.health_probe` must be set), half-closes, and
/// reads the far end's report or its end of stream.
pub(crate) async fn probe_far_end(
    dialer: &Dialer<'_>,
    params: &HandshakeParams<'_>,
) -> Result<Probed, DialFault> {
    let dialed = dialer.dial(params).await?;
    let (_sealer, opener) = dialed.codecs;
    let mut stream = dialed.stream;
    // Nothing to send: the half-close tells stock spiped to close its target's side.
    let _ = stream.shutdown().await;
    let wait = (dialed.handshake * 2 + REPORT_GRACE).min(dialer.timeout());
    let report = tokio::time::timeout(wait, read_report(&mut stream, opener))
        .await
        .ok()
        .flatten();
    Ok(Probed {
        lookup: dialed.lookup,
        connect: dialed.connect,
        handshake: dialed.handshake,
        report,
    })
}

/// The first packet, if it is a report; `None` at end of stream, on an error, or when the
/// far end's first packet is something else (a stock spiped's target spoke first).
async fn read_report(stream: &mut NetStream, mut opener: PacketOpener) -> Option<TargetReport> {
    let mut packet = [0u8; PACKET_LEN];
    stream.read_exact(&mut packet).await.ok()?;
    let len = opener.open(&mut packet).ok()?;
    TargetReport::decode(&packet[..len])
}

/// A server's answer to a probe: one sealed report, then end of stream. Bounded by
/// `timeout`, so a prober that stops reading cannot hold the connection.
pub(crate) async fn answer_probe(
    stream: &mut NetStream,
    mut sealer: PacketSealer,
    report: TargetReport,
    timeout: Duration,
) {
    let mut packet = [0u8; PACKET_LEN];
    if sealer.seal(&report.encode(), &mut packet).is_err() {
        return;
    }
    let _ = tokio::time::timeout(timeout, async {
        stream.write_all(&packet).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::health::TargetDownCause;
    use std::io;

    fn shown(fault: DialFault) -> String {
        ProbeOutcome::Failed(fault).to_string()
    }

    #[test]
    fn verdicts_are_worded_as_before() {
        let ok = ProbeOutcome::Ok(Probed {
            lookup: None,
            connect: Duration::from_micros(1500),
            handshake: Duration::from_micros(2250),
            report: None,
        });
        assert!(ok.is_ok());
        assert_eq!(
            ok.to_string(),
            "OK: handshake completed in 2.2 ms (TCP connect 1.5 ms)"
        );
        let named = ProbeOutcome::Ok(Probed {
            lookup: Some(Duration::from_micros(4960)),
            connect: Duration::from_micros(120),
            handshake: Duration::from_micros(1040),
            report: Some(TargetReport::Down {
                age_secs: 3,
                cause: TargetDownCause::Refused,
            }),
        });
        assert_eq!(
            named.to_string(),
            "OK: handshake completed in 1.0 ms (name lookup 5.0 ms, TCP connect 0.1 ms); but the far end cannot reach its target (nothing listening)"
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
