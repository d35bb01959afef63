//! Where `sluiced` says what happens: standard error, or syslog after daemonizing with
//! `--syslog`. Problems are always logged (spiped logs almost nothing, which its users
//! asked about); each connection's open and close only with `--verbose`; handshake
//! failures the first of a spell in full, then one summary a minute (the engine's).

use std::io::Write;

use sluice_engine::{Event, EventKind};

use crate::platform::{Priority, Syslog};

pub struct Logger {
    syslog: Option<Syslog>,
    verbose: bool,
}

/// Where log lines go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    StandardError,
    /// Syslog (after daemonizing with `--syslog`).
    Syslog,
}

/// How much is logged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Problems and state changes.
    Problems,
    /// Also every connection's open and close (`--verbose`).
    EveryConnection,
}

impl Logger {
    /// Standard error, or syslog (falling back to standard error, with a warning, where
    /// the platform has none).
    pub fn new(to: LogTo, verbosity: Verbosity) -> Logger {
        let verbose = verbosity == Verbosity::EveryConnection;
        let wants_syslog = to == LogTo::Syslog;
        let syslog = match wants_syslog.then(Syslog::open).transpose() {
            Ok(syslog) => syslog,
            Err(e) => {
                write_stderr(
                    Priority::Warning,
                    &format!("{e}; logging to standard error"),
                );
                None
            }
        };
        Logger { syslog, verbose }
    }

    pub fn error(&self, message: &str) {
        self.write(Priority::Error, message);
    }

    pub fn warn(&self, message: &str) {
        self.write(Priority::Warning, message);
    }

    pub fn info(&self, message: &str) {
        self.write(Priority::Info, message);
    }

    /// Logs an engine event at the level it deserves.
    pub fn event(&self, event: &Event) {
        let line = format!("{}: {}", event.tunnel, event.kind);
        match &event.kind {
            EventKind::ConnectionOpened { .. }
            | EventKind::ConnectionClosed { fault: None, .. } => {
                if self.verbose {
                    self.info(&line);
                }
            }
            // "N more handshake failures in the last minute (…)": the engine publishes
            // only the first failure of a spell in full, so a stranger's flood costs the
            // log one line a minute.
            EventKind::HandshakeFailuresSummarized { .. }
            | EventKind::ProblemsSummarized { .. } => self.warn(&line),
            kind if kind.is_problem() => self.warn(&line),
            _ => self.info(&line),
        }
    }

    fn write(&self, priority: Priority, message: &str) {
        match &self.syslog {
            Some(syslog) => syslog.write(priority, message),
            None => write_stderr(priority, message),
        }
    }
}

/// One line, in one write: standard error is unbuffered, and a line written in pieces
/// could be read (by a person tailing the log, or a test) half-finished.
fn write_stderr(priority: Priority, message: &str) {
    let tag = match priority {
        Priority::Error => "error: ",
        Priority::Warning => "warning: ",
        Priority::Info => "",
    };
    let line = format!("sluiced: {tag}{message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
