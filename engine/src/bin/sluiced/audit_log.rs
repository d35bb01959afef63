//! `--audit-log FILE`: the engine's audit trail, one line per connection (docs/AUDIT.md),
//! appended to a file that is reopened on SIGHUP and SIGUSR1, so logrotate can move it
//! away. A line is written whole, in one write, and never holds up the tunnels.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sluice_engine::{AuditRecord, AuditTrail};

use crate::platform;

pub struct AuditLog {
    path: PathBuf,
    file: File,
    trail: AuditTrail,
    /// Dropped records already reported.
    reported_dropped: u64,
}

impl AuditLog {
    /// Opens (creates, appends to) `path` for the engine's trail.
    pub fn open(path: &Path, trail: AuditTrail) -> Result<AuditLog, String> {
        let file = platform::open_log(path).map_err(|e| {
            format!(
                "cannot open the audit log {}: {e}; check that its directory exists and is writable",
                path.display()
            )
        })?;
        Ok(AuditLog {
            path: path.to_owned(),
            file,
            trail,
            reported_dropped: 0,
        })
    }

    pub async fn next(&mut self) -> Option<AuditRecord> {
        self.trail.next().await
    }

    /// Appends one record's line. An error is returned to be logged; the next record tries
    /// again.
    pub fn write(&mut self, record: &AuditRecord) -> Result<(), String> {
        let mut line = record.to_string();
        let dropped = self.trail.dropped();
        if dropped > self.reported_dropped {
            // Said in the trail itself, where an auditor looks.
            line.push_str(&format!(
                "\n# {} audit records were dropped: sluiced could not write them as fast as connections ended",
                dropped - self.reported_dropped
            ));
            self.reported_dropped = dropped;
        }
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| format!("cannot write the audit log {}: {e}", self.path.display()))
    }

    /// Writes what is waiting, without waiting for more (at a stop).
    pub fn drain(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some(record) = self.trail.try_next() {
            if let Err(e) = self.write(&record) {
                errors.push(e);
            }
        }
        errors
    }

    /// Opens the file again by its name (after logrotate moved it away). On failure the
    /// old file stays in use.
    pub fn reopen(&mut self) -> Result<(), String> {
        self.file = platform::open_log(&self.path).map_err(|e| {
            format!(
                "cannot reopen the audit log {}: {e}; still writing to the file opened before",
                self.path.display()
            )
        })?;
        Ok(())
    }
}
