//! `sluiced`: the headless daemon. A drop-in for spiped's flags (`-e`/`-d`), an spipe-like
//! client (`--spipe`), a runner for the tunnels of a Sluice config file (`--config`), and
//! small key tools (`--generate-key`, `--fingerprint`, and `--seal-key`/`--unseal-key` to
//! share a key sealed with a passphrase), a config checker (`--check-config`), Windows'
//! reload request (`--reload`), and the far-end set-up over ssh (`--far-end-*`).

mod audit_log;
mod cli;
mod daemon;
mod far_end;
mod inetd;
mod logging;
mod metrics;
mod platform;
mod readiness;
mod sharing;
mod spipe;

use std::process::ExitCode;

use sluice_engine::{Address, Engine, RuntimeThreads, TunnelState};

use cli::{Invocation, RunOptions};
use logging::{LogTo, Logger, Verbosity};
use platform::{PidFileError, StartupReport};
use readiness::{ServiceManager, running_status};

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
        Invocation::SealKey { key, out } => sharing::seal(&key, &out),
        Invocation::UnsealKey { bundle, out } => sharing::unseal(&bundle, &out),
        Invocation::Spipe(options) => spipe::run(&options),
        Invocation::Run(options) => run(options),
        Invocation::CheckConfig(path) => check_config(&path),
        Invocation::Reload(path) => match platform::request_reload(&path) {
            Ok(done) => {
                println!("{done}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("sluiced: {message}");
                ExitCode::FAILURE
            }
        },
        Invocation::FarEnd(options) => far_end::run(&options),
    }
}

fn generate_key(path: &std::path::Path) -> ExitCode {
    let result = sluice_engine::generate_key_bytes().and_then(|bytes| {
        sluice_engine::write_new_keyfile(path, &bytes[..])?;
        Ok(sluice_engine::PresharedKey::from_keyfile_bytes(&bytes[..]).fingerprint())
    });
    match result {
        Ok(fp) => {
            println!(
                "wrote a new 256-bit key to {} ({})",
                path.display(),
                platform::OWNER_ONLY
            );
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
    match cli::load_key_file(path) {
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

/// `--check-config`: the same checks as a start or a reload, keys included.
fn check_config(path: &std::path::Path) -> ExitCode {
    match cli::load_config(path) {
        Ok(loaded) => {
            for (settings, warnings) in &loaded.tunnels {
                for warning in warnings {
                    eprintln!("sluiced: warning: {}: {warning}", settings.definition.name);
                }
            }
            let count = loaded.tunnels.len();
            let plural = if count == 1 { "" } else { "s" };
            println!("{}: {count} tunnel{plural}, all fine", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in errors {
                eprintln!("sluiced: {error}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs tunnels until SIGTERM/SIGINT, daemonizing first unless `-F`. As in spiped, the
/// pid file is written and privileges dropped only once every listener is bound (with
/// `-D`, the pid file right after daemonizing), so a port below 1024, a socket in a
/// root-only directory and a pid file under /run all work with `-u`.
fn run(options: RunOptions) -> ExitCode {
    let loaded = match options.load() {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in errors {
                eprintln!("sluiced: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let to = if options.syslog && !options.foreground {
        LogTo::Syslog
    } else {
        LogTo::StandardError
    };
    let verbosity = if options.verbose {
        Verbosity::EveryConnection
    } else {
        Verbosity::Problems
    };
    let logger = Logger::new(to, verbosity);
    for (settings, warnings) in &loaded.tunnels {
        for warning in warnings {
            logger.warn(&format!("{}: {warning}", settings.definition.name));
        }
    }
    if options.inetd {
        let Some((settings, _)) = loaded.tunnels.into_iter().next() else {
            return ExitCode::FAILURE;
        };
        return inetd::run(
            &logger,
            settings,
            loaded.audit_log.as_deref(),
            options.verbose,
        );
    }
    let service_manager = ServiceManager::from_env().unwrap_or_else(|e| {
        logger.warn(&format!(
            "not notifying the service manager (NOTIFY_SOCKET): {e}"
        ));
        ServiceManager::none()
    });

    // Fork before any thread exists; the parent exits once the child reports.
    let mut report = if options.foreground {
        StartupReport::foreground()
    } else {
        match platform::daemonize() {
            Ok(report) => report,
            Err(e) => {
                eprintln!("sluiced: cannot daemonize: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let pidfile = options.pidfile.as_deref().filter(|_| !options.foreground);
    if options.wait_for_dns {
        // -D: the pid file now, as spiped does, and report success; tunnels retry until
        // their addresses resolve.
        if let Err(message) = write_pid_file(pidfile, &logger) {
            logger.error(&message);
            report.failure(&message);
            return ExitCode::FAILURE;
        }
        report.success();
    }

    // One runtime thread: a message through the daemon then costs no hand-off between
    // workers (docs/PERFORMANCE.md, "Second wave", change 2); exponentiations run on their own
    // threads either way.
    let engine = match Engine::start_with(RuntimeThreads::One, || {}) {
        Ok(engine) => engine,
        Err(e) => {
            report.failure(&format!("cannot start the engine: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Without --verbose nothing is logged for a routine connection: do not publish those
    // events at all, so no connection wakes this thread on its way in.
    engine.set_connection_events(options.verbose);
    // With -u, tunnels listen but accept nothing until privileges are dropped: no
    // connection is ever served as root (spiped drops them before it accepts anything).
    if options.user.is_some() {
        engine.hold_connections();
    }
    let mut events = engine.subscribe();
    // Taken before any tunnel starts, so the trail misses no connection.
    let trail = loaded.audit_log.as_ref().and_then(|_| engine.audit_trail());
    let restart = options.restart();
    let names: Vec<String> = loaded
        .tunnels
        .iter()
        .map(|(settings, _)| settings.definition.name.clone())
        .collect();
    let started = engine.apply(daemon::desired(loaded.tunnels, restart));

    // Every tunnel's first start: without -D the first failure ends start-up; with -D the
    // tunnels that failed retry every second (as the new user, with -u, once it is
    // dropped). Then metrics bind, the pid file is written, privileges are dropped, and
    // only then is anything accepted.
    let startup = started
        .map_err(|e| e.to_string())
        .and_then(|_| {
            engine
                .runtime()
                .block_on(daemon::first_starts(&logger, &mut events, &names, restart))
        })
        .and_then(|()| {
            let metrics = loaded
                .metrics
                .as_ref()
                .map(|address| bind_metrics(&engine, &logger, address))
                .transpose()?;
            // Opened with the privileges sluiced started with, like the metrics port.
            let audit = match (loaded.audit_log.as_deref(), trail) {
                (Some(path), Some(trail)) => {
                    logger.info(&format!("audit log: {}", path.display()));
                    Some(audit_log::AuditLog::open(path, trail)?)
                }
                _ => None,
            };
            if !options.wait_for_dns {
                write_pid_file(pidfile, &logger)?;
            }
            if let Some(user) = options.user.as_deref() {
                daemon::switch_user(user)?;
                for status in engine.statuses() {
                    if let TunnelState::Failed(fault) = &status.state {
                        logger.warn(&daemon::retried_as(&status.name, fault, user));
                    }
                }
            }
            Ok((metrics, audit))
        });
    let (metrics, mut audit) = match startup {
        Ok(started) => started,
        Err(message) => {
            logger.error(&message);
            report.failure(&message);
            engine.shutdown(false);
            return ExitCode::FAILURE;
        }
    };
    engine.release_connections();
    if let Some((listener, hosts)) = metrics {
        let collector = metrics::SluiceCollector::new(engine.status_reader());
        engine
            .runtime()
            .spawn(metrics::serve(listener, collector, hosts));
    }
    report.success();
    daemon::notify(&logger, service_manager.ready(&running_status(names.len())));

    let serving = daemon::Serving {
        options: &options,
        metrics: loaded.metrics.as_ref(),
        service_manager: &service_manager,
    };
    let served = engine.runtime().block_on(daemon::serve_until_signal(
        &engine,
        &logger,
        &mut events,
        &mut audit,
        &serving,
    ));
    if let Err(message) = served {
        logger.error(&message);
        engine.shutdown(false);
        return ExitCode::FAILURE;
    }
    daemon::notify(
        &logger,
        service_manager.stopping("stopping: open connections are finishing"),
    );
    daemon::drain_then_exit(engine, &logger, &mut events, &mut audit);
    ExitCode::SUCCESS
}

/// Binds the metrics address (before privileges are dropped, so a port below 1024 works);
/// scrapes are served once the tunnels accept connections.
fn bind_metrics(
    engine: &Engine,
    logger: &Logger,
    address: &Address,
) -> Result<(tokio::net::TcpListener, metrics::AllowedHosts), String> {
    let listener = engine
        .runtime()
        .block_on(metrics::bind(address))
        .map_err(|e| format!("cannot serve metrics on {address}: {e}"))?;
    let bound = listener.local_addr().ok();
    let shown = bound.map_or_else(|| address.to_string(), |a| a.to_string());
    logger.info(&format!("metrics at http://{shown}/metrics"));
    if let Some(warning) = bound.and_then(metrics::exposure_warning) {
        logger.warn(&warning);
    }
    let hosts = metrics::AllowedHosts::for_address(address, &sluice_engine::host_name());
    Ok((listener, hosts))
}

/// Writes the pid file, if there is one. A symbolic link at its path stops start-up (it
/// is refused, and what it points at left untouched); any other problem is a warning, as
/// before: the tunnels work without a pid file.
fn write_pid_file(path: Option<&std::path::Path>, logger: &Logger) -> Result<(), String> {
    let Some(path) = path else {
        return Ok(());
    };
    match platform::write_pid_file(path) {
        Ok(()) => Ok(()),
        Err(e @ PidFileError::Symlink(_)) => Err(e.to_string()),
        Err(e) => {
            logger.warn(&e.to_string());
            Ok(())
        }
    }
}
