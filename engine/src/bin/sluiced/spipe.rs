//! `sluiced --spipe`: the spipe client. One encrypted connection to an spiped server,
//! standard input sent through it and what comes back written to standard output, with
//! half-close as in spipe. Exit status 1 on connect, handshake or connection failure.

use std::process::ExitCode;

use sluice_engine::{SpipeRequest, spipe_session};

use crate::cli::{SpipeOptions, load_key_file};

pub fn run(options: &SpipeOptions) -> ExitCode {
    let loaded = match load_key_file(&options.key) {
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
    let request = SpipeRequest {
        target: options.target.clone(),
        bind: options.bind.clone(),
        key: loaded.key,
        forward_secrecy: options.forward_secrecy,
        key_agreement: options.key_agreement,
        keepalive: options.keepalive,
        timeout: options.timeout,
    };
    let result = runtime.block_on(spipe_session(&request));
    // A thread blocked reading standard input must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fault) => {
            eprintln!("sluiced: {fault}");
            ExitCode::FAILURE
        }
    }
}
