//! Process life of `sluiced`: waiting until the listeners are up (the daemonized parent
//! returns only then, as with spiped), dropping privileges only after every bind, serving
//! until SIGTERM/SIGINT, rereading the config on SIGHUP, and the graceful stop: no new
//! connections at once, open ones finish. The system calls behind all this are in
//! `platform.rs`.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use sluice_engine::{Address, Engine, Event, EventKind, TunnelId};

use crate::cli::RunOptions;
use crate::logging::Logger;
use crate::platform::{self, PrivilegeError, ReloadSignal, StopSignals};
use crate::readiness::{ServiceManager, running_status};
use crate::reload::RunningSet;

/// `-u` with `-D`: tunnels bind in the background (retrying until their addresses
/// resolve), so privileges are dropped once the last of them listens, not before.
pub struct DropAfterListening<'a> {
    pub spec: &'a str,
    pub waiting_for: BTreeSet<TunnelId>,
}

impl DropAfterListening<'_> {
    /// Notes that `tunnel` listens; drops privileges once every tunnel does.
    fn listening(&mut self, tunnel: TunnelId, logger: &Logger) -> Result<(), String> {
        if !self.waiting_for.remove(&tunnel) || !self.waiting_for.is_empty() {
            return Ok(());
        }
        switch_user(self.spec)?;
        logger.info(&format!(
            "every tunnel listens; now running as {}",
            self.spec
        ));
        Ok(())
    }
}

/// Drops privileges to `-u spec`, with the message sluiced reports when that fails.
pub fn switch_user(spec: &str) -> Result<(), String> {
    platform::drop_privileges(spec)
        .map_err(|e: PrivilegeError| format!("cannot switch to user {spec}: {e}"))
}

/// Waits until `count` tunnels listen; the first that fails to start ends the wait.
pub async fn wait_until_listening(
    logger: &Logger,
    events: &mut broadcast::Receiver<Event>,
    mut count: usize,
) -> Result<(), String> {
    while count > 0 {
        match events.recv().await {
            Ok(event) => match &event.kind {
                EventKind::Listening { .. } => {
                    logger.info(&format!("{}: {}", event.tunnel_name, event.kind));
                    count -= 1;
                }
                EventKind::StartFailed { reason } => {
                    return Err(format!("{}: {reason}", event.tunnel_name));
                }
                _ => logger.event(&event),
            },
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return Err("the engine stopped unexpectedly".to_owned()),
        }
    }
    Ok(())
}

/// spiped's -D retries failed DNS every second; so do tunnels that failed to start.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How the daemon reacts while it serves.
pub struct Serving<'a> {
    /// `-D`: a tunnel that fails to start is started again a second later.
    pub retry_failed_starts: bool,
    /// What was asked for; with `--config`, SIGHUP rereads the file.
    pub options: &'a RunOptions,
    /// Where metrics are served; bound once at start, so a reload cannot move it.
    pub metrics: Option<&'a Address>,
    pub service_manager: &'a ServiceManager,
}

/// Logs events until SIGTERM or SIGINT, retrying and reloading as `serving` says. With
/// `drop_privileges` (-D -u), privileges are dropped once every tunnel listens. An error
/// (privileges that could not be dropped) ends serving: sluiced must not go on with more
/// privileges than it was asked to keep.
pub async fn serve_until_signal(
    engine: &Engine,
    logger: &Logger,
    events: &mut broadcast::Receiver<Event>,
    running: &mut RunningSet,
    serving: &Serving<'_>,
    mut drop_privileges: Option<DropAfterListening<'_>>,
) -> Result<(), String> {
    let (mut stop, mut reload_signal) = match (StopSignals::install(), ReloadSignal::install()) {
        (Ok(stop), Ok(reload)) => (stop, reload),
        (Err(e), _) | (_, Err(e)) => {
            return Err(format!("cannot install signal handlers ({e}); stopping"));
        }
    };
    let mut pending: Vec<(tokio::time::Instant, TunnelId)> = Vec::new();
    loop {
        let next_retry = pending.iter().map(|(at, _)| *at).min();
        tokio::select! {
            () = stop.next() => return Ok(()),
            () = reload_signal.next() => match serving.options.config_file() {
                Some(path) => reload(engine, logger, running, path, serving),
                None => logger.info("SIGHUP ignored: only sluiced --config rereads a file"),
            },
            () = sleep_until(next_retry) => {
                let now = tokio::time::Instant::now();
                let due: Vec<TunnelId> = pending.iter().filter(|(at, _)| *at <= now).map(|(_, id)| *id).collect();
                pending.retain(|(at, _)| *at > now);
                for id in due {
                    // A tunnel removed by a reload meanwhile is not started again.
                    if let Some((_, settings)) = running.tunnels().iter().find(|(i, _)| *i == id) {
                        engine.start_tunnel(id, settings.clone());
                    }
                }
            }
            event = events.recv() => match event {
                Ok(event) => {
                    logger.event(&event);
                    match event.kind {
                        EventKind::StartFailed { .. } if serving.retry_failed_starts => {
                            pending.push((tokio::time::Instant::now() + RETRY_EVERY, event.tunnel));
                        }
                        EventKind::Listening { .. } => {
                            if let Some(pending_drop) = &mut drop_privileges {
                                pending_drop.listening(event.tunnel, logger)?;
                            }
                        }
                        _ => {}
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    logger.warn(&format!("{missed} events were not logged (too many at once)"));
                }
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Rereads the config: applies it if every tunnel checks out and its key loads, else
/// logs why and changes nothing.
fn reload(
    engine: &Engine,
    logger: &Logger,
    running: &mut RunningSet,
    path: &Path,
    serving: &Serving<'_>,
) {
    let service_manager = serving.service_manager;
    notify(logger, service_manager.reloading());
    logger.info(&format!("SIGHUP: rereading {}", path.display()));
    match serving.options.load() {
        Err(errors) => {
            for error in errors {
                logger.error(&format!("reload: {error}"));
            }
            logger.error("reload: nothing changed; the running tunnels go on as they were");
        }
        Ok(loaded) => {
            if loaded.metrics.as_ref() != serving.metrics {
                logger.warn(
                    "reload: the metrics address is read only at start: restart sluiced to move it",
                );
            }
            for (settings, warnings) in &loaded.tunnels {
                for warning in warnings {
                    logger.warn(&format!("{}: {warning}", settings.definition.name));
                }
            }
            let plan = running.plan(loaded.tunnels.into_iter().map(|(s, _)| s).collect());
            let parts = [
                ("starting ", plan.started().collect::<Vec<_>>(), ""),
                ("new settings for ", plan.changed().collect(), ""),
                (
                    "stopping ",
                    plan.retired().collect(),
                    " once their connections end",
                ),
            ];
            let mut summary: Vec<String> = parts
                .iter()
                .filter(|(_, names, _)| !names.is_empty())
                .map(|(before, names, after)| format!("{before}{}{after}", names.join(", ")))
                .collect();
            summary.push(format!("{} unchanged", plan.unchanged));
            logger.info(&format!("reload: {}", summary.join("; ")));
            running.apply(plan, engine);
        }
    }
    notify(
        logger,
        service_manager.ready(&running_status(running.len())),
    );
}

/// A service-manager notification that failed is worth one log line, never a stop.
pub fn notify(logger: &Logger, result: io::Result<()>) {
    if let Err(e) = result {
        logger.warn(&format!("cannot notify the service manager: {e}"));
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Graceful stop after the first signal: listeners close at once, open connections
/// finish. A second SIGTERM/SIGINT kills the process (default action restored, as in
/// spiped).
pub fn drain_then_exit(engine: Engine, logger: &Logger, events: &mut broadcast::Receiver<Event>) {
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
    // What went wrong while the connections finished, and the last summary of handshake
    // failures (published as each tunnel stops), are still in the channel; routine
    // events are not worth a late line.
    loop {
        match events.try_recv() {
            Ok(event) if event.kind.is_problem() => logger.event(&event),
            Ok(_) => {}
            Err(TryRecvError::Lagged(missed)) => {
                logger.warn(&format!(
                    "{missed} events were not logged (too many at once)"
                ));
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    logger.info("stopped");
}
