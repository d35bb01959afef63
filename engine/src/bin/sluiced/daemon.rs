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

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use sluice_engine::{Address, Engine, Event, EventKind, TunnelId};

use crate::cli::{Loaded, RunOptions};
use crate::logging::Logger;
use crate::platform::{self, PrivilegeError, ReloadSignal, StopSignals};
use crate::readiness::{ServiceManager, running_status};
use crate::reload::RunningSet;

/// Drops privileges to `-u spec`, with the message sluiced reports when that fails.
pub fn switch_user(spec: &str) -> Result<(), String> {
    platform::drop_privileges(spec)
        .map_err(|e: PrivilegeError| format!("cannot switch to user {spec}: {e}"))
}

/// What a failed first start means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FirstStarts {
    /// Start-up fails (spiped without -D).
    StopAtFailure,
    /// The tunnel is retried every second (-D).
    RetryFailures,
}

/// A tunnel whose first start failed, retried later (-D).
pub struct NotListening {
    pub tunnel: TunnelId,
    name: String,
    reason: String,
}

impl NotListening {
    /// What -u means for it: the retry runs without the privileges the first try had.
    pub fn retried_as(&self, user: &str) -> String {
        format!(
            "{}: not listening yet ({}); retried every second as user {user}, who may not be allowed to bind it (a port below 1024, a socket in a root-only directory): if the retries say permission denied, make the address available before sluiced starts, or give {user} the right to bind it",
            self.name, self.reason
        )
    }
}

/// Waits until each of `tunnels` has listened or failed once. A failure ends the wait
/// with an error ([`FirstStarts::StopAtFailure`]) or is returned, to be retried.
pub async fn first_starts(
    logger: &Logger,
    events: &mut broadcast::Receiver<Event>,
    tunnels: &[TunnelId],
    failures: FirstStarts,
) -> Result<Vec<NotListening>, String> {
    let mut waiting: BTreeSet<TunnelId> = tunnels.iter().copied().collect();
    let mut failed = Vec::new();
    while !waiting.is_empty() {
        match events.recv().await {
            Ok(event) => match &event.kind {
                EventKind::Listening { .. } => {
                    logger.info(&format!("{}: {}", event.tunnel_name, event.kind));
                    waiting.remove(&event.tunnel);
                }
                EventKind::StartFailed { reason } => {
                    if failures == FirstStarts::StopAtFailure {
                        return Err(format!("{}: {reason}", event.tunnel_name));
                    }
                    logger.event(&event);
                    if waiting.remove(&event.tunnel) {
                        failed.push(NotListening {
                            tunnel: event.tunnel,
                            name: event.tunnel_name.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
                _ => logger.event(&event),
            },
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return Err("the engine stopped unexpectedly".to_owned()),
        }
    }
    Ok(failed)
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

/// Logs events until SIGTERM or SIGINT, retrying (`retry`: tunnels whose first start
/// failed, with -D) and reloading as `serving` says.
pub async fn serve_until_signal(
    engine: &Engine,
    logger: &Logger,
    events: &mut broadcast::Receiver<Event>,
    running: &mut RunningSet,
    serving: &Serving<'_>,
    retry: Vec<TunnelId>,
) -> Result<(), String> {
    let (mut stop, mut reload_signal) = match (StopSignals::install(), ReloadSignal::install()) {
        (Ok(stop), Ok(reload)) => (stop, reload),
        (Err(e), _) | (_, Err(e)) => {
            return Err(format!("cannot install signal handlers ({e}); stopping"));
        }
    };
    let first_retry = tokio::time::Instant::now() + RETRY_EVERY;
    let mut pending: Vec<(tokio::time::Instant, TunnelId)> =
        retry.into_iter().map(|id| (first_retry, id)).collect();
    let mut reading = Reading::default();
    loop {
        let next_retry = pending.iter().map(|(at, _)| *at).min();
        tokio::select! {
            () = stop.next() => return Ok(()),
            () = reload_signal.next() => match serving.options.config_file() {
                Some(path) => reading.start(logger, path, serving),
                None => logger.info("SIGHUP ignored: only sluiced --config rereads a file"),
            },
            read = reading.finished() => {
                match read {
                    Some(loaded) => reload(engine, logger, running, loaded, serving),
                    None => logger.error(&format!(
                        "reload: reading the config and its keys did not finish within {} s (a key file that blocks, such as a FIFO or a hung network mount?); nothing changed, the running tunnels go on as they were",
                        RELOAD_DEADLINE.as_secs()
                    )),
                }
                notify(logger, serving.service_manager.ready(&running_status(running.len())));
            }
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
                    if let EventKind::StartFailed { .. } = event.kind
                        && serving.retry_failed_starts
                    {
                        pending.push((tokio::time::Instant::now() + RETRY_EVERY, event.tunnel));
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
                "SIGHUP ignored: an earlier reload is still blocked reading {} or one of its keys; fix the path that blocks, then restart sluiced",
                path.display()
            ));
            return;
        }
        if self.current.is_some() {
            logger.info("SIGHUP ignored: a reload is already reading the config");
            return;
        }
        notify(logger, serving.service_manager.reloading());
        logger.info(&format!("SIGHUP: rereading {}", path.display()));
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
    running: &mut RunningSet,
    loaded: Result<Loaded, Vec<String>>,
    serving: &Serving<'_>,
) {
    match loaded {
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
