//! Work the UI thread must not wait for (keychain calls, disk reads and writes, dialogs,
//! probes, port checks, far-end actions over ssh) runs elsewhere and comes back as a
//! [`Message`] for the feature that asked, with a repaint request so the result shows at
//! once. Saves go through one writer thread, in order, so an older config can never land
//! after a newer one.

use std::path::PathBuf;
use std::sync::mpsc;

use sluice_engine::{
    Config, ConfigError, FarEndAction, FarEndError, FarEndRecord, FarEndStepReport, KeySourceError,
    KeyfileWarning, ProbeOutcome, ProbeRequest, TunnelSettings,
};

use crate::error::{
    KeyError, ListenPortProblem, LoginStartError, NotifyFailure, OpenBundleError, SaveFailure,
    ShareError, StartError, TunnelImportError,
};
use crate::file_dialogs::DialogAnswer;
use crate::keys::{KeyInfo, OpenedBundle, Shared};
use crate::model::{ProbeKey, RotationStep};

/// Which file a save was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveTarget {
    Config,
    KeyIndex,
}

/// A result of background work, for the feature that asked for it.
pub enum Message {
    Saved {
        target: SaveTarget,
        result: Result<(), SaveFailure>,
    },
    Tunnel(TunnelMessage),
    Key(KeyMessage),
    FarEnd(FarEndMessage),
    Desktop(DesktopMessage),
}

/// What a file dialog of the tunnels feature was opened for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelDialog {
    /// The key file a tunnel being edited refers to.
    EditorKeyFile,
    Export,
    Import,
    /// Where a tunnel's connection history goes, as CSV.
    ConnectionHistory(String),
}

pub enum TunnelMessage {
    /// A tunnel's key was loaded (or not) and its settings are ready to run; `load`
    /// tells this load from a newer one of the same tunnel.
    Ready {
        name: String,
        load: u64,
        result: Result<(TunnelSettings, Vec<KeyfileWarning>), StartError>,
    },
    /// The config file was read again (Reload).
    ConfigRead(Result<Config, ConfigError>),
    /// The key for a test connection was loaded; the engine can probe now.
    ProbeReady {
        key: ProbeKey,
        result: Result<ProbeRequest, KeySourceError>,
    },
    Probe {
        key: ProbeKey,
        outcome: ProbeOutcome,
    },
    /// Whether the editor's listen address is free (see `tunnel_form::check_listen_port`).
    PortChecked {
        listen: String,
        problem: Option<ListenPortProblem>,
    },
    Exported(Result<PathBuf, SaveFailure>),
    /// A connection history was written (where, how many connections) or not.
    HistoryExported(Result<(PathBuf, usize), SaveFailure>),
    /// A tunnel file to import was read: its path and text.
    FileRead(Result<(PathBuf, String), TunnelImportError>),
    Dialog {
        purpose: TunnelDialog,
        answer: DialogAnswer,
    },
}

/// What a file dialog of the keys feature was opened for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyDialog {
    /// The file the import form reads.
    ImportFile,
    /// Where the generate form writes the key's copy.
    GenerateCopy,
    /// Where a key (by name) is exported.
    Export(String),
    /// Where a key (by name) is sealed for a teammate.
    Share(String),
    /// Where a tunnel (by name) and its key are sealed for a teammate.
    ShareTunnel(String),
    /// The bundle the open-bundle form reads.
    BundleFile,
}

pub enum KeyMessage {
    Generated(Result<KeyInfo, KeyError>),
    Imported(Result<(KeyInfo, Vec<KeyfileWarning>), KeyError>),
    Exported(Result<PathBuf, KeyError>),
    Shared {
        name: String,
        result: Result<Shared, ShareError>,
    },
    /// A bundle picked for the open-bundle form, checked before the passphrase is used.
    BundleChecked {
        path: PathBuf,
        result: Result<(), OpenBundleError>,
    },
    BundleOpened {
        path: PathBuf,
        result: Result<OpenedBundle, OpenBundleError>,
    },
    Deleted {
        name: String,
        result: Result<(), KeyError>,
    },
    Dialog {
        purpose: KeyDialog,
        answer: DialogAnswer,
    },
}

pub enum FarEndMessage {
    /// A step of a far-end action started or ended.
    Step {
        name: String,
        report: FarEndStepReport,
    },
    /// A far-end action ended; `record` is where it ran.
    Done {
        name: String,
        action: FarEndAction,
        record: FarEndRecord,
        rotation: Option<RotationStep>,
        result: Result<(), FarEndError>,
    },
    /// The new key of a rotation of tunnel `name` was generated (or not).
    RotationKey {
        name: String,
        result: Result<KeyInfo, KeyError>,
    },
    /// The host aliases of the user's ssh config.
    SshHosts(Vec<String>),
}

pub enum DesktopMessage {
    /// A desktop notification was shown (or not).
    Notified(Result<(), NotifyFailure>),
    /// The start-at-login entry was written (`on`) or removed.
    LoginEntry {
        on: bool,
        result: Result<PathBuf, LoginStartError>,
    },
}

/// Delivers messages to the UI thread and wakes it.
#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::Sender<Message>,
    ctx: egui::Context,
}

impl Mailbox {
    pub fn deliver(&self, message: Message) {
        let _ = self.sender.send(message);
        self.ctx.request_repaint();
    }
}

/// Starts background work and delivers its results.
#[derive(Clone)]
pub struct Background {
    mailbox: Mailbox,
    saves: mpsc::Sender<(SaveTarget, PathBuf, String)>,
}

impl Background {
    pub fn new(ctx: egui::Context) -> (Background, mpsc::Receiver<Message>) {
        let (sender, receiver) = mpsc::channel();
        let mailbox = Mailbox { sender, ctx };
        let (saves, queue) = mpsc::channel::<(SaveTarget, PathBuf, String)>();
        let writer = mailbox.clone();
        // Ends when the last Background is dropped. If it cannot start, `save` reports
        // every save as failed.
        let _ = std::thread::Builder::new()
            .name("sluice-save".into())
            .spawn(move || {
                for (target, path, text) in queue {
                    let result =
                        sluice_engine::write_atomic(&path, text.as_bytes()).map_err(|source| {
                            SaveFailure::Write {
                                path: path.clone(),
                                source,
                            }
                        });
                    writer.deliver(Message::Saved { target, result });
                }
            });
        (Background { mailbox, saves }, receiver)
    }

    pub fn mailbox(&self) -> Mailbox {
        self.mailbox.clone()
    }

    /// Runs `job` on its own thread and delivers what it returns.
    pub fn run(&self, job: impl FnOnce() -> Message + Send + 'static) {
        let mailbox = self.mailbox.clone();
        // A thread that cannot start leaves the operation undone; the UI stays usable.
        let _ = std::thread::Builder::new()
            .name("sluice-job".into())
            .spawn(move || mailbox.deliver(job()));
    }

    /// Queues a file write; the result arrives as [`Message::Saved`].
    pub fn save(&self, target: SaveTarget, path: PathBuf, text: String) {
        if self.saves.send((target, path, text)).is_err() {
            self.mailbox.deliver(Message::Saved {
                target,
                result: Err(SaveFailure::NoSaveThread),
            });
        }
    }
}
