//! `sluiced --inetd`: one connection, the one a super-server accepted and passed on
//! standard input (inetd, a systemd socket with `Accept=yes`, tcpsvd, s6-tcpserver),
//! served as a tunnel serves one it accepted; then exit. Logs never go to standard output,
//! which is the connection.

use std::process::ExitCode;

use sluice_engine::{Engine, RuntimeThreads, TunnelSettings};

use crate::audit_log::AuditLog;
use crate::logging::Logger;
use crate::platform;

/// Serves the connection; exit status 0 when it ended in order, 1 otherwise.
pub fn run(
    logger: &Logger,
    settings: TunnelSettings,
    audit_log: Option<&std::path::Path>,
    verbose: bool,
) -> ExitCode {
    let connection = match platform::inetd_connection() {
        Ok(connection) => connection,
        Err(e) => {
            logger.error(&format!(
                "--inetd: cannot use standard input as the connection: {e}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let engine = match Engine::start_with(RuntimeThreads::One, || {}) {
        Ok(engine) => engine,
        Err(e) => {
            logger.error(&format!("cannot start the engine: {e}"));
            return ExitCode::FAILURE;
        }
    };
    engine.set_connection_events(verbose);
    let mut audit = match audit_log {
        Some(path) => match engine
            .audit_trail()
            .map(|trail| AuditLog::open(path, trail))
        {
            Some(Ok(log)) => Some(log),
            Some(Err(e)) => {
                logger.error(&e);
                return ExitCode::FAILURE;
            }
            None => None,
        },
        None => None,
    };
    let mut events = engine.subscribe();
    let served = engine.serve_accepted(settings, connection);
    while let Some(Ok(event)) = events.try_next() {
        logger.event(&event);
    }
    if let Some(log) = audit.as_mut() {
        for error in log.drain() {
            logger.error(&error);
        }
    }
    match served {
        Ok(counters) if counters.last_error.is_none() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(fault) => {
            logger.error(&format!("cannot serve the connection: {fault}"));
            ExitCode::FAILURE
        }
    }
}
