//! "Test connection": connect to an spiped server, run the client handshake, hang up, and
//! say in words what happened: OK (and how long the handshake took), unreachable,
//! refused, timed out, or rejected (wrong key, or a forward-secrecy mismatch).

use std::fmt;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::net::conn::{HandshakeFault, HandshakeParams, TargetFault, connect_target, handshake};
use crate::net::dhpool::KeyPairPool;
use crate::net::resolve::Resolve;
use crate::protocol::key::PresharedKey;
use crate::protocol::{ForwardSecrecy, HandshakeError, KeyAgreement, Role};

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

/// The verdict, in a form the UI can show as is.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeOutcome {
    Ok {
        connect: Duration,
        handshake: Duration,
    },
    Unreachable(String),
    Refused(String),
    TimedOut(String),
    Rejected(String),
}

impl ProbeOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, ProbeOutcome::Ok { .. })
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Ok { connect, handshake } => write!(
                f,
                "OK: handshake completed in {:.1} ms (TCP connect {:.1} ms)",
                handshake.as_secs_f64() * 1000.0,
                connect.as_secs_f64() * 1000.0
            ),
            ProbeOutcome::Unreachable(why) => write!(f, "Unreachable: {why}"),
            ProbeOutcome::Refused(why) => write!(f, "Refused: {why}"),
            ProbeOutcome::TimedOut(why) => write!(f, "Timed out: {why}"),
            ProbeOutcome::Rejected(why) => write!(f, "Rejected: {why}"),
        }
    }
}

/// Runs one test connection. Never panics, always answers.
pub async fn probe(request: &ProbeRequest, pool: &KeyPairPool) -> ProbeOutcome {
    let resolved = match &request.target {
        Address::Unix(_) => Vec::new(),
        target => match target.resolve().await {
            Ok(addrs) => addrs,
            Err(e) => return ProbeOutcome::Unreachable(e.to_string()),
        },
    };
    let bind = match &request.bind {
        Some(bind) => match bind.resolve().await {
            Ok(addrs) => addrs,
            Err(e) => return ProbeOutcome::Unreachable(format!("bind address: {e}")),
        },
        None => Vec::new(),
    };
    let started = Instant::now();
    let mut stream = match connect_target(&request.target, &resolved, &bind, request.timeout).await
    {
        Ok(stream) => stream,
        Err(fault @ TargetFault::Refused(_)) => return ProbeOutcome::Refused(fault.to_string()),
        Err(fault @ TargetFault::TimedOut { .. }) => {
            return ProbeOutcome::TimedOut(fault.to_string());
        }
        Err(fault) => return ProbeOutcome::Unreachable(fault.to_string()),
    };
    let connect = started.elapsed();
    let params = HandshakeParams {
        role: Role::Client,
        key: &request.key,
        forward_secrecy: request.forward_secrecy,
        key_agreement: request.key_agreement,
        pool,
    };
    let handshake_started = Instant::now();
    match handshake(&mut stream, &params, request.timeout).await {
        Ok(_) => ProbeOutcome::Ok {
            connect,
            handshake: handshake_started.elapsed(),
        },
        Err(fault @ HandshakeFault::TimedOut(_)) => ProbeOutcome::TimedOut(fault.to_string()),
        Err(HandshakeFault::Rejected(HandshakeError::ForwardSecrecyRefused)) => {
            ProbeOutcome::Rejected(
                "the far end skips forward secrecy (spiped -f) but this tunnel requires it (-g): set forward secrecy to the same policy on both ends".into(),
            )
        }
        Err(fault @ (HandshakeFault::X25519Rejected | HandshakeFault::PeerUsesX25519)) => {
            ProbeOutcome::Rejected(fault.to_string())
        }
        Err(fault @ HandshakeFault::PeerClosed { after_our_dh: true, .. }) => {
            ProbeOutcome::Rejected(fault.to_string())
        }
        Err(fault @ HandshakeFault::PeerClosed { .. }) => {
            ProbeOutcome::Unreachable(fault.to_string())
        }
        Err(fault) => ProbeOutcome::Rejected(fault.to_string()),
    }
}
