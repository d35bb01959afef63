//! Process life of `sluiced`: waiting until the listeners are up (the daemonized parent
//! returns only then, as with spiped), dropping privileges after the binds and before
//! anything is accepted, serving
//! until SIGTERM/SIGINT, rereading the config on SIGHUP, and the graceful stop: no new
//! connections at once, open ones finish. The system calls behind all this are in
//! `platform.rs`.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::time::Duration;

use sluice_engine::{
    Address, Desired, DesiredTunnel, Ending, Engine, EventKind, EventStream, Missed, Restart,
    StartFault, TunnelState,
};

use crate::audit_log::AuditLog;
use crate::cli::{Loaded, LoadedTunnels, RunOptions};
use crate::logging::Logger;
use crate::platform::{self, PrivilegeError, ReloadSignal, ReopenSignal, StopSignals};
use crate::readiness::{ServiceManager, running_status};

/// Drops privileges to `-u spec`, with the message sluiced reports when that fails.
pub fn switch_user(spec: &str) -> Result<(), String> {
    platform::drop_privileges(spec)
        .map_err(|e: PrivilegeError| format!("cannot switch to user {spec}: {e}"))
}

/// The declared set of a run: every loaded tunnel, running, retrying as `restart` says;
/// a tunnel taken out by a reload drains.
pub fn desired(tunnels: LoadedTunnels, restart: Restart) -> Desired {
    Desired {
        tunnels: tunnels
            .into_iter()
            .map(|(settings, _)| DesiredTunnel {
                settings,
                run: true,
                restart,
            })
            .collect(),
        ending: Ending::Drain,
    }
}

/// What -u means for a tunnel not listening when privileges are dropped: its retries run
/// without the privileges its first try had.
pub fn retried_as(name: &str, fault: &StartFault, user: &str) -> String {
    format!(
        "{name}: not listening yet ({fault}); retried every second as user {user}, who may not be allowed to bind it (a port below 1024, a socket in a root-only directory): if the retries say permission denied, make the address available before sluiced starts, or give {user} the right to bind it"
    )
}

/// Waits until each of the tunnels named has listened (a reverse-out end: started
/// dialling) or failed once. Without a restart
/// policy a failure ends the wait with an error (spiped without -D); with one the tunnel
/// retries by itself.
pub async fn first_starts(
    logger: &Logger,
    events: &mut EventStream,
    names: &[String],
    restart: Restart,
) -> Result<(), String> {
    let mut waiting: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    while !waiting.is_empty() {
        match events.next().await {
            Some(Ok(event)) => match &event.kind {
                EventKind::Listening { .. } | EventKind::Dialing { .. } => {
                    logger.info(&format!("{}: {}", event.tunnel, event.kind));
                    waiting.remove(event.tunnel.as_str());
                }
                EventKind::StartFailed(fault) => {
                    if restart == Restart::Never {
                        return Err(format!("{}: {fault}", event.tunnel));
                    }
                    logger.event(&event);
                    waiting.remove(event.tunnel.as_str());
                }
                _ => logger.event(&event),
            },
            Some(Err(_missed)) => {}
            None => return Err("the engine stopped unexpectedly".to_owned()),
        }
    }
    Ok(())
}

/// How the daemon reacts while it serves.
pub struct Serving<'a> {
    /// What was asked for; with `--config`, SIGHUP rereads the file.
    pub options: &'a RunOptions,
    /// Where metrics are served; bound once at start, so a reload cannot move it.
    pub metrics: Option<&'a Address>,
    pub service_manager: &'a ServiceManager,
}

/// Logs events until SIGTERM or SIGINT, and reloads on SIGHUP with `--config`.
pub async fn serve_until_signal(
    engine: &Engine,
    logger: &Logger,
    events: &mut EventStream,
    audit: &mut Option<AuditLog>,
    serving: &Serving<'_>,
) -> Result<(), String> {
    let signals = (
        StopSignals::install(),
        ReloadSignal::install(serving.options.config_file()),
        ReopenSignal::install(),
    );
    let (mut stop, mut reload_signal, mut reopen_signal) = match signals {
        (Ok(stop), Ok(reload), Ok(reopen)) => (stop, reload, reopen),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return Err(format!("cannot install signal handlers ({e}); stopping"));
        }
    };
    let mut reading = Reading::default();
    loop {
        tokio::select! {
            () = stop.next() => return Ok(()),
            () = reload_signal.next() => {
                reopen_audit_log(logger, audit);
                match serving.options.config_file() {
                    Some(path) => reading.start(logger, path, serving),
                    None => logger.info("SIGHUP: only sluiced --config rereads a file"),
                }
            }
            () = reopen_signal.next() => reopen_audit_log(logger, audit),
            Some(record) = next_audit_record(audit) => {
                if let Some(log) = audit.as_mut()
                    && let Err(e) = log.write(&record)
                {
                    logger.error(&e);
                }
            }
            read = reading.finished() => {
                match read {
                    Some(loaded) => reload(engine, logger, loaded, serving),
                    None => logger.error(&format!(
                        "reload: reading the config and its keys did not finish within {} s (a key file that blocks, such as a FIFO or a hung network mount?); nothing changed, the running tunnels go on as they were",
                        RELOAD_DEADLINE.as_secs()
                    )),
                }
                let running = engine
                    .statuses()
                    .iter()
                    .filter(|s| {
                        matches!(
                            s.state,
                            TunnelState::Listening { .. } | TunnelState::Dialing { .. }
                        )
                    })
                    .count();
                notify(logger, serving.service_manager.ready(&running_status(running)));
            }
            event = events.next() => match event {
                Some(Ok(event)) => logger.event(&event),
                Some(Err(Missed(missed))) => {
                    logger.warn(&format!("{missed} events were not logged (too many at once)"));
                }
                None => return Ok(()),
            },
        }
    }
}

/// The next audit record, or never when there is no audit log.
async fn next_audit_record(audit: &mut Option<AuditLog>) -> Option<sluice_engine::AuditRecord> {
    match audit {
        Some(log) => log.next().await,
        None => std::future::pending().await,
    }
}

fn reopen_audit_log(logger: &Logger, audit: &mut Option<AuditLog>) {
    if let Some(log) = audit.as_mut() {
        match log.reopen() {
            Ok(()) => logger.info("audit log reopened"),
            Err(e) => logger.error(&e),
        }
    }
}

/// How long a reload may take to read the config and its keys.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

/// A reading of the config and its keys, on its blocking thread.
type Read = tokio::task::JoinHandle<Result<Loaded, Vec<String>>>;

/// A reload's reading of the config and its keys, on a blocking thread: a key path that
/// never answers (a FIFO) must not hold up the loop that takes SIGTERM.
#[derive(Default)]
struct Reading {
    /// The read under way, and when it must have finished.
    current: Option<(Read, tokio::time::Instant)>,
    /// A read that missed its deadline and is still blocked; no other starts meanwhile,
    /// so a key that blocks costs one thread, not one per SIGHUP.
    stuck: Option<Read>,
}

impl Reading {
    fn start(&mut self, logger: &Logger, path: &Path, serving: &Serving<'_>) {
        if self.stuck.as_ref().is_some_and(|t| !t.is_finished()) {
            logger.error(&format!(
                "{} ignored: an earlier reload is still blocked reading {} or one of its keys; fix the path that blocks, then restart sluiced",
                platform::RELOAD_REQUEST,
                path.display()
            ));
            return;
        }
        if self.current.is_some() {
            logger.info(&format!(
                "{} ignored: a reload is already reading the config",
                platform::RELOAD_REQUEST
            ));
            return;
        }
        notify(logger, serving.service_manager.reloading());
        logger.info(&format!(
            "{}: rereading {}",
            platform::RELOAD_REQUEST,
            path.display()
        ));
        let options = serving.options.clone();
        let read = tokio::task::spawn_blocking(move || options.load());
        self.current = Some((read, tokio::time::Instant::now() + RELOAD_DEADLINE));
    }

    /// The read's result once it is there; `None` once the deadline passed without one.
    /// Pending while nothing is being read.
    async fn finished(&mut self) -> Option<Result<Loaded, Vec<String>>> {
        let Some((read, deadline)) = &mut self.current else {
            return std::future::pending().await;
        };
        let result = tokio::time::timeout_at(*deadline, &mut *read).await;
        let (read, _) = self.current.take()?;
        match result {
            Ok(joined) => Some(joined.unwrap_or_else(|e| {
                Err(vec![format!("reading the config failed unexpectedly: {e}")])
            })),
            Err(_elapsed) => {
                self.stuck = Some(read);
                None
            }
        }
    }
}

/// Applies a reread config if every tunnel checked out and its key loaded, else logs why
/// and changes nothing.
fn reload(
    engine: &Engine,
    logger: &Logger,
    loaded: Result<Loaded, Vec<String>>,
    serving: &Serving<'_>,
) {
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in errors {
                logger.error(&format!("reload: {error}"));
            }
            logger.error("reload: nothing changed; the running tunnels go on as they were");
            return;
        }
    };
    if loaded.metrics.as_ref() != serving.metrics {
        logger
            .warn("reload: the metrics address is read only at start: restart sluiced to move it");
    }
    for (settings, warnings) in &loaded.tunnels {
        for warning in warnings {
            logger.warn(&format!("{}: {warning}", settings.definition.name));
        }
    }
    let plan = match engine.apply(desired(loaded.tunnels, serving.options.restart())) {
        Ok(plan) => plan,
        Err(e) => {
            logger.error(&format!("reload: {e}; nothing changed"));
            return;
        }
    };
    let parts = [
        ("starting ", &plan.started, ""),
        ("new settings for ", &plan.updated, ""),
        ("stopping ", &plan.retired, " once their connections end"),
    ];
    let mut summary: Vec<String> = parts
        .iter()
        .filter(|(_, names, _)| !names.is_empty())
        .map(|(before, names, after)| format!("{before}{}{after}", names.join(", ")))
        .collect();
    summary.push(format!("{} unchanged", plan.unchanged.len()));
    logger.info(&format!("reload: {}", summary.join("; ")));
}

/// A service-manager notification that failed is worth one log line, never a stop.
pub fn notify(logger: &Logger, result: io::Result<()>) {
    if let Err(e) = result {
        logger.warn(&format!("cannot notify the service manager: {e}"));
    }
}

/// Graceful stop after the first signal: listeners close at once, open connections
/// finish. A second SIGTERM/SIGINT kills the process (default action restored, as in
/// spiped).
pub fn drain_then_exit(
    engine: Engine,
    logger: &Logger,
    events: &mut EventStream,
    audit: &mut Option<AuditLog>,
) {
    platform::restore_default_stop_signals();
    let open: u64 = engine
        .statuses()
        .iter()
        .map(|s| s.counters.active_connections)
        .sum();
    if open > 0 {
        logger.info(&format!(
            "stopping: no new connections; waiting for {open} open connection(s) to finish (signal again to exit now)"
        ));
    }
    engine.shutdown(true);
    // What went wrong while the connections finished, and the last summary of problems
    // (published as each tunnel stops), are still in the stream; routine events are not
    // worth a late line.
    while let Some(event) = events.try_next() {
        match event {
            Ok(event) if event.kind.is_problem() => logger.event(&event),
            Ok(_) => {}
            Err(Missed(missed)) => {
                logger.warn(&format!(
                    "{missed} events were not logged (too many at once)"
                ));
            }
        }
    }
    // The connections that ended while draining, in the audit log too.
    if let Some(log) = audit.as_mut() {
        for error in log.drain() {
            logger.error(&error);
        }
    }
    logger.info("stopped");
}
