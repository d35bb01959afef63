//! Where `sluiced` says what happens: standard error, or syslog after daemonizing with
//! `--syslog`. Problems are always logged (spiped logs almost nothing, which its users
//! asked about); each connection's open and close only with `--verbose`.

use std::ffi::CString;

use sluice_engine::events::{Event, EventKind};

pub struct Logger {
    syslog: bool,
    verbose: bool,
}

#[derive(Clone, Copy)]
enum Level {
    Error,
    Warning,
    Info,
}

impl Logger {
    pub fn new(syslog: bool, verbose: bool) -> Logger {
        if syslog {
            // SAFETY: the identifier is a static NUL-terminated string, as openlog requires
            // (it keeps the pointer).
            unsafe {
                libc::openlog(c"sluiced".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
            }
        }
        Logger { syslog, verbose }
    }

    pub fn error(&self, message: &str) {
        self.write(Level::Error, message);
    }

    pub fn warn(&self, message: &str) {
        self.write(Level::Warning, message);
    }

    pub fn info(&self, message: &str) {
        self.write(Level::Info, message);
    }

    /// Logs an engine event at the level it deserves.
    pub fn event(&self, event: &Event) {
        let line = format!("{}: {}", event.tunnel_name, event.kind);
        match &event.kind {
            EventKind::ConnectionOpened { .. }
            | EventKind::ConnectionClosed { error: None, .. } => {
                if self.verbose {
                    self.info(&line);
                }
            }
            kind if kind.is_problem() => self.warn(&line),
            _ => self.info(&line),
        }
    }

    fn write(&self, level: Level, message: &str) {
        if self.syslog {
            let priority = match level {
                Level::Error => libc::LOG_ERR,
                Level::Warning => libc::LOG_WARNING,
                Level::Info => libc::LOG_INFO,
            };
            // Interior NULs cannot come from our messages; drop the line rather than panic.
            if let Ok(text) = CString::new(message) {
                // SAFETY: "%s" with one valid C string argument.
                unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
            }
        } else {
            let tag = match level {
                Level::Error => "error: ",
                Level::Warning => "warning: ",
                Level::Info => "",
            };
            eprintln!("sluiced: {tag}{message}");
        }
    }
}
