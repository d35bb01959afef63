//! The spipe client as one session: an encrypted connection to an spiped server, standard
//! input sent through it and what comes back written to standard output, with half-close
//! as in spipe. `sluiced --spipe` runs it through the crate root.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::address::Address;
use crate::net::conn::{HandshakeFault, HandshakeParams, PumpFault, TargetFault, pump_connection};
use crate::net::dhpool::KeyPairPool;
use crate::net::dial::{DialFault, Dialer};
use crate::net::io_fault::IoFault;
use crate::net::resolve::ResolveError;
use crate::net::stream::NetStream;
use crate::protocol::key::PresharedKey;
use crate::protocol::{ForwardSecrecy, KeyAgreement, Role};

/// Where to connect and how.
pub struct SpipeRequest {
    pub target: Address,
    pub bind: Option<Address>,
    pub key: PresharedKey,
    pub forward_secrecy: ForwardSecrecy,
    pub key_agreement: KeyAgreement,
    pub keepalive: bool,
    /// Bounds the connect and, separately, the handshake (spiped's `-o`).
    pub timeout: Duration,
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SpipeFault {
    #[error("-b: {0}")]
    Bind(ResolveError),
    #[error("could not connect: {0}")]
    Connect(TargetFault),
    #[error("handshake failed: {0}")]
    Handshake(HandshakeFault),
    #[error("cannot start: {0}")]
    Bridge(IoFault),
    #[error("connection error: {0}")]
    Connection(PumpFault),
    #[error("error writing standard output: {0}")]
    Output(IoFault),
}

/// Runs one session; returns when both directions have ended. Run it on a runtime that
/// can be dropped without waiting (`shutdown_background`): the thread reading standard
/// input may stay blocked in its read.
pub async fn spipe_session(request: &SpipeRequest) -> Result<(), SpipeFault> {
    // One connection: a pool would only compute a key pair nobody uses.
    let pool = KeyPairPool::new(0);
    let params = HandshakeParams {
        role: Role::Client,
        key: &request.key,
        forward_secrecy: request.forward_secrecy,
        key_agreement: request.key_agreement,
        pool: &pool,
        tag: None,
        previous_key: None,
    };
    let dialed = Dialer::new(&request.target, request.bind.as_ref(), request.timeout)
        .dial(&params)
        .await
        .map_err(|fault| match fault {
            DialFault::Target(TargetFault::BindUnresolved(e)) => SpipeFault::Bind(e),
            DialFault::Target(fault) => SpipeFault::Connect(fault),
            DialFault::Handshake(fault) => SpipeFault::Handshake(fault),
        })?;
    let (encrypted, codecs) = (dialed.stream, dialed.codecs);
    encrypted.tune(request.keepalive);

    // Standard input and output are bridged through a connected pair of sockets, as
    // spipe does, so the pumps see an ordinary socket with an ordinary half-close.
    let (local, bridge) = crate::platform::local_stream_pair()
        .await
        .map_err(|e| SpipeFault::Bridge(e.into()))?;
    let (mut bridge_read, mut bridge_write) = tokio::io::split(bridge);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let _ = tokio::io::copy(&mut stdin, &mut bridge_write).await;
        let _ = bridge_write.shutdown().await;
    });
    let to_stdout = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        let copied = tokio::io::copy(&mut bridge_read, &mut stdout).await;
        let flushed = stdout.flush().await;
        copied.and(flushed)
    });
    pump_connection(
        Role::Client,
        NetStream::from(local),
        encrypted,
        codecs,
        |_| {},
        |_| {},
    )
    .await
    .map_err(SpipeFault::Connection)?;
    match to_stdout.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(SpipeFault::Output(e.into())),
        Err(e) => Err(SpipeFault::Output(std::io::Error::other(e).into())),
    }
}
