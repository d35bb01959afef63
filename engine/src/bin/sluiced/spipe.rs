//! `sluiced --spipe`: the spipe client. One encrypted connection to an spiped server,
//! standard input sent through it and what comes back written to standard output, with
//! half-close as in spipe. Exit status 1 on connect, handshake or connection failure.

use std::process::ExitCode;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use sluice_engine::net::conn::{HandshakeParams, TargetFault, pump_connection};
use sluice_engine::net::dhpool::KeyPairPool;
use sluice_engine::net::dial::{DialFault, Dialer};
use sluice_engine::net::stream::NetStream;
use sluice_engine::protocol::Role;
use sluice_engine::protocol::key::PresharedKey;

use crate::cli::{SpipeOptions, load_key};

pub fn run(options: &SpipeOptions) -> ExitCode {
    let loaded = match load_key(&options.key) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("sluiced: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in crate::cli::key_warnings(&options.key, &loaded.warnings) {
        eprintln!("sluiced: warning: {warning}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluiced: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(session(options, &loaded.key));
    // A thread blocked reading standard input must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sluiced: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn session(options: &SpipeOptions, key: &PresharedKey) -> Result<(), String> {
    // One connection: a pool would only compute a key pair nobody uses.
    let pool = KeyPairPool::new(0);
    let params = HandshakeParams {
        role: Role::Client,
        key,
        forward_secrecy: options.forward_secrecy,
        key_agreement: options.key_agreement,
        pool: &pool,
    };
    let dialed = Dialer::new(&options.target, options.bind.as_ref(), options.timeout)
        .dial(&params)
        .await
        .map_err(|fault| match fault {
            DialFault::Target(TargetFault::BindUnresolved(e)) => format!("-b: {e}"),
            DialFault::Target(fault) => format!("could not connect: {fault}"),
            DialFault::Handshake(fault) => format!("handshake failed: {fault}"),
        })?;
    let (encrypted, codecs) = (dialed.stream, dialed.codecs);
    encrypted.tune(options.keepalive);

    // Standard input and output are bridged through a socket pair, as spipe does, so the
    // pumps see an ordinary socket with an ordinary half-close.
    let (local, bridge) = UnixStream::pair().map_err(|e| format!("cannot start: {e}"))?;
    let (mut bridge_read, mut bridge_write) = bridge.into_split();
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
        NetStream::Unix(local),
        encrypted,
        codecs,
        |_| {},
        |_| {},
    )
    .await
    .map_err(|e| format!("connection error: {e}"))?;
    match to_stdout.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("error writing standard output: {e}")),
        Err(_) => Err("error writing standard output".to_owned()),
    }
}
