//! Process life of `sluiced`: daemonizing (the parent returns only once the listeners are
//! up, as with spiped), dropping privileges, waiting for SIGTERM/SIGINT without polling,
//! rereading the config on SIGHUP, and the graceful stop: no new connections at once,
//! open ones finish.

use std::io::{self, Read, Write};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast::{self, error::RecvError};

use std::path::Path;

use sluice_engine::{Address, Engine, Event, EventKind, TunnelId};

use crate::cli::RunOptions;
use crate::logging::Logger;
use crate::readiness::{ServiceManager, running_status};
use crate::reload::RunningSet;

/// How a daemonized child tells the waiting parent that start-up worked or failed.
pub struct StartupReport {
    pipe: Option<std::io::PipeWriter>,
}

impl StartupReport {
    pub fn foreground() -> StartupReport {
        StartupReport { pipe: None }
    }

    pub fn success(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(&[0]);
        }
    }

    pub fn failure(&mut self, message: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(&[1]);
            let _ = pipe.write_all(message.as_bytes());
        }
    }
}

/// Forks. The parent waits for the child's report and exits with it; the child returns,
/// in a new session, with standard input on /dev/null. Must run before any thread starts.
pub fn daemonize() -> io::Result<StartupReport> {
    // std's pipe is close-on-exec on every Unix (pipe2 is Linux-only).
    let (mut read_end, write_end) = std::io::pipe()?;
    // SAFETY: no other thread exists yet (sluiced forks before starting its runtime).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read_end);
            // SAFETY: plain system calls on this process.
            unsafe {
                libc::setsid();
            }
            if let Ok(null) = std::fs::File::open("/dev/null") {
                use std::os::fd::AsRawFd;
                // SAFETY: both descriptors are open; dup2 replaces standard input.
                unsafe {
                    libc::dup2(null.as_raw_fd(), 0);
                }
            }
            Ok(StartupReport {
                pipe: Some(write_end),
            })
        }
        _child => {
            drop(write_end);
            let mut report = Vec::new();
            let _ = read_end.read_to_end(&mut report);
            match report.split_first() {
                Some((0, _)) => std::process::exit(0),
                Some((_, message)) => {
                    eprintln!("sluiced: {}", String::from_utf8_lossy(message));
                    std::process::exit(1);
                }
                None => {
                    eprintln!("sluiced: the daemon exited during start-up");
                    std::process::exit(1);
                }
            }
        }
    }
}

/// `-u user`, `-u :group` or `-u user:group`: switch to them after binding.
pub fn drop_privileges(spec: &str) -> io::Result<()> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (Some(u).filter(|u| !u.is_empty()), Some(g)),
        None => (Some(spec), None),
    };
    let user_ids = user.map(lookup_user).transpose()?;
    let gid = match group {
        Some(g) => Some(lookup_group(g)?),
        None => user_ids.map(|(_, gid)| gid),
    };
    if let Some(gid) = gid {
        // SAFETY: plain system calls; glibc applies them to every thread of the process.
        unsafe {
            if libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    if let Some((uid, _)) = user_ids {
        // SAFETY: as above.
        if unsafe { libc::setuid(uid) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn lookup_user(name: &str) -> io::Result<(libc::uid_t, libc::gid_t)> {
    let c_name = std::ffi::CString::new(name).map_err(|_| not_found("user", name))?;
    // SAFETY: getpwnam returns null or a pointer to a static record, read at once; no
    // other thread of sluiced looks users up.
    unsafe {
        let entry = libc::getpwnam(c_name.as_ptr());
        if entry.is_null() {
            return Err(not_found("user", name));
        }
        Ok(((*entry).pw_uid, (*entry).pw_gid))
    }
}

fn lookup_group(name: &str) -> io::Result<libc::gid_t> {
    let c_name = std::ffi::CString::new(name).map_err(|_| not_found("group", name))?;
    // SAFETY: as in lookup_user.
    unsafe {
        let entry = libc::getgrnam(c_name.as_ptr());
        if entry.is_null() {
            return Err(not_found("group", name));
        }
        Ok((*entry).gr_gid)
    }
}

fn not_found(what: &str, name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no {what} named {name:?}"))
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

/// Logs events until SIGTERM or SIGINT, retrying and reloading as `serving` says.
pub async fn serve_until_signal(
    engine: &Engine,
    logger: &Logger,
    events: &mut broadcast::Receiver<Event>,
    running: &mut RunningSet,
    serving: &Serving<'_>,
) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        logger.error("cannot install signal handlers; stopping");
        return;
    };
    let mut pending: Vec<(tokio::time::Instant, TunnelId)> = Vec::new();
    loop {
        let next_retry = pending.iter().map(|(at, _)| *at).min();
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match serving.options.config_file() {
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
                    if serving.retry_failed_starts && matches!(event.kind, EventKind::StartFailed { .. }) {
                        pending.push((tokio::time::Instant::now() + RETRY_EVERY, event.tunnel));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    logger.warn(&format!("{missed} events were not logged (too many at once)"));
                }
                Err(RecvError::Closed) => break,
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
            let list = |names: Vec<&str>| names.join(", ");
            let mut summary = Vec::new();
            let started = list(plan.started().collect());
            if !started.is_empty() {
                summary.push(format!("starting {started}"));
            }
            let changed = list(plan.changed().collect());
            if !changed.is_empty() {
                summary.push(format!("new settings for {changed}"));
            }
            let retired = list(plan.retired().collect());
            if !retired.is_empty() {
                summary.push(format!("stopping {retired} once their connections end"));
            }
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
pub fn drain_then_exit(engine: Engine, logger: &Logger) {
    // SAFETY: restoring the default disposition of two signals is always sound.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
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
    logger.info("stopped");
}
