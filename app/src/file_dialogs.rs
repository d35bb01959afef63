//! File dialogs behind a trait, so tests can answer them. The real one runs rfd's native
//! dialog on its own thread (a dialog on the UI thread would freeze rendering) and
//! reports when no dialog could be shown at all, so the UI can ask for a typed path.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which dialog to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogKind {
    OpenKeyFile,
    SaveKeyFile {
        suggested_name: String,
    },
    /// A tunnel file (RON) to import.
    OpenTunnelFile,
    SaveTunnelFile {
        suggested_name: String,
    },
    /// A tunnel's connection history, as CSV.
    SaveCsvFile {
        suggested_name: String,
    },
    /// A sealed key bundle (an age file) to open.
    OpenBundle,
    SaveBundle {
        suggested_name: String,
    },
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogAnswer {
    Picked(PathBuf),
    Cancelled,
    /// No dialog could be shown (no desktop portal or display): ask for a typed path.
    Unavailable,
}

/// Shows file dialogs without blocking the caller.
pub trait FileDialog: Send + Sync {
    /// Starts a dialog; `done` is called with the answer, from any thread.
    fn open(&self, kind: DialogKind, done: Box<dyn FnOnce(DialogAnswer) + Send>);
}

/// rfd's native dialog (xdg-desktop-portal on Linux).
pub struct NativeFileDialog;

/// rfd answers "nothing picked" within milliseconds when it could not show a dialog at
/// all; nobody cancels a real dialog that fast.
const TOO_FAST_FOR_A_PERSON: Duration = Duration::from_millis(300);

impl FileDialog for NativeFileDialog {
    fn open(&self, kind: DialogKind, done: Box<dyn FnOnce(DialogAnswer) + Send>) {
        // If no thread can be started, no dialog appears; the typed path still works.
        let _ = std::thread::Builder::new()
            .name("sluice-file-dialog".into())
            .spawn(move || {
                let started = Instant::now();
                let picked = match &kind {
                    DialogKind::OpenKeyFile => rfd::FileDialog::new()
                        .set_title("Import a key file")
                        .pick_file(),
                    DialogKind::SaveKeyFile { suggested_name } => rfd::FileDialog::new()
                        .set_title("Save the key file")
                        .set_file_name(suggested_name)
                        .save_file(),
                    DialogKind::OpenTunnelFile => rfd::FileDialog::new()
                        .set_title("Import tunnels")
                        .add_filter("Sluice tunnels", &["ron"])
                        .pick_file(),
                    DialogKind::SaveTunnelFile { suggested_name } => rfd::FileDialog::new()
                        .set_title("Export tunnels (without keys)")
                        .set_file_name(suggested_name)
                        .save_file(),
                    DialogKind::SaveCsvFile { suggested_name } => rfd::FileDialog::new()
                        .set_title("Export the connection history")
                        .add_filter("CSV", &["csv"])
                        .set_file_name(suggested_name)
                        .save_file(),
                    DialogKind::OpenBundle => rfd::FileDialog::new()
                        .set_title("Open a shared key bundle")
                        .add_filter("Sealed key bundles", &["age"])
                        .pick_file(),
                    DialogKind::SaveBundle { suggested_name } => rfd::FileDialog::new()
                        .set_title("Save the sealed key bundle")
                        .set_file_name(suggested_name)
                        .save_file(),
                };
                done(match picked {
                    Some(path) => DialogAnswer::Picked(path),
                    None if started.elapsed() < TOO_FAST_FOR_A_PERSON => DialogAnswer::Unavailable,
                    None => DialogAnswer::Cancelled,
                });
            });
    }
}
