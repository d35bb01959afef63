//! `sluiced`: the headless daemon. A drop-in for spiped's flags (`-e`/`-d`), an spipe-like
//! client (`--spipe`), a runner for the tunnels of a Sluice config file (`--config`), and
//! small key tools (`--generate-key`, `--fingerprint`).

mod cli;
mod daemon;
mod far_end;
mod logging;
mod spipe;

use std::process::ExitCode;

use sluice_engine::engine::Engine;
use sluice_engine::events::TunnelId;
use sluice_engine::keyfile;
use sluice_engine::tunnel::TunnelSettings;

use cli::{Invocation, RunOptions};
use logging::Logger;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let invocation = match cli::parse(&args) {
        Ok(invocation) => invocation,
        Err(message) => {
            eprintln!("sluiced: {message}");
            eprintln!("{}", cli::USAGE);
            return ExitCode::FAILURE;
        }
    };
    match invocation {
        Invocation::Version => {
            // spiped prints its version on stderr; scripts written for it look there.
            eprintln!(
                "sluiced {} (spiped 1.6 protocol)",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Invocation::Help => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Invocation::GenerateKey(path) => generate_key(&path),
        Invocation::Fingerprint(path) => fingerprint(&path),
        Invocation::Spipe(options) => spipe::run(&options),
        Invocation::Run(options) => run(options),
        Invocation::FarEnd(options) => far_end::run(&options),
    }
}

fn generate_key(path: &std::path::Path) -> ExitCode {
    let result = keyfile::generate_key_bytes().and_then(|bytes| {
        keyfile::write_new_keyfile(path, &bytes[..])?;
        Ok(sluice_engine::PresharedKey::from_keyfile_bytes(&bytes[..]).fingerprint())
    });
    match result {
        Ok(fp) => {
            println!("wrote a new 256-bit key to {} (mode 0600)", path.display());
            println!("fingerprint {fp}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluiced: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fingerprint(path: &std::path::Path) -> ExitCode {
    match cli::load_key(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("sluiced: warning: {}: {warning}", path.display());
            }
            println!("{}", loaded.key.fingerprint());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluiced: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs tunnels until SIGTERM/SIGINT, daemonizing first unless `-F`.
fn run(options: RunOptions) -> ExitCode {
    let tunnels = match options.load_tunnels() {
        Ok(tunnels) => tunnels,
        Err(errors) => {
            for error in errors {
                eprintln!("sluiced: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let logger = Logger::new(options.syslog && !options.foreground, options.verbose);
    for (settings, warnings) in &tunnels {
        for warning in warnings {
            logger.warn(&format!("{}: {warning}", settings.definition.name));
        }
    }

    // Fork before any thread exists; the parent exits once the child reports.
    let mut report = if options.foreground {
        daemon::StartupReport::foreground()
    } else {
        match daemon::daemonize() {
            Ok(report) => report,
            Err(e) => {
                eprintln!("sluiced: cannot daemonize: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    if options.wait_for_dns {
        // -D: report success now; tunnels retry until their addresses resolve.
        report.success();
    }

    let engine = match Engine::start(|| {}) {
        Ok(engine) => engine,
        Err(e) => {
            report.failure(&format!("cannot start the engine: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Without --verbose nothing is logged for a routine connection: do not publish those
    // events at all, so no connection wakes this thread on its way in.
    engine.set_connection_events(options.verbose);
    let mut events = engine.subscribe();
    let ids: Vec<TunnelId> = (0..tunnels.len() as u64).map(TunnelId).collect();
    let settings_by_id: Vec<(TunnelId, TunnelSettings)> = ids
        .iter()
        .copied()
        .zip(tunnels.into_iter().map(|(s, _)| s))
        .collect();
    for (id, settings) in &settings_by_id {
        engine.start_tunnel(*id, settings.clone());
    }

    // Wait until every tunnel listens, or one fails (with -D, tunnels retry instead).
    let startup = if options.wait_for_dns {
        Ok(())
    } else {
        engine.runtime().block_on(daemon::wait_until_listening(
            &logger,
            &mut events,
            ids.len(),
        ))
    };
    if let Err(message) = startup {
        logger.error(&message);
        report.failure(&message);
        engine.shutdown(false);
        return ExitCode::FAILURE;
    }

    if let Some(spec) = &options.user
        && let Err(e) = daemon::drop_privileges(spec)
    {
        let message = format!("cannot switch to user {spec}: {e}");
        logger.error(&message);
        report.failure(&message);
        engine.shutdown(false);
        return ExitCode::FAILURE;
    }
    if let Some(pidfile) = options.pidfile.as_deref().filter(|_| !options.foreground)
        && let Err(e) = std::fs::write(pidfile, format!("{}\n", std::process::id()))
    {
        logger.warn(&format!("cannot write pid file {}: {e}", pidfile.display()));
    }
    report.success();

    let retry = options.wait_for_dns.then_some(settings_by_id.as_slice());
    engine.runtime().block_on(daemon::serve_until_signal(
        &engine,
        &logger,
        &mut events,
        retry,
    ));
    daemon::drain_then_exit(engine, &logger);
    ExitCode::SUCCESS
}
