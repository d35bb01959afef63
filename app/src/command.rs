//! What the views ask the app to do, by feature. Views only emit these; `app.rs` hands
//! each to the feature that carries it out (`app/tunnels.rs`, `app/keys.rs`,
//! `app/far_end.rs`, `app/desktop.rs`). Tunnels are named by their (unique) name.

use std::path::PathBuf;

use sluice_engine::FarEndAction;

use crate::model::{DetailTab, KeyForm, Settings};

#[derive(Clone, Debug, PartialEq)]
pub enum UiCommand {
    Tunnel(TunnelCommand),
    Key(KeyCommand),
    FarEnd(FarEndCommand),
    Desktop(DesktopCommand),
    /// What the window shows: selection, tabs, notices, the clipboard.
    View(ViewCommand),
}

/// The tunnel list, the editor, test connections, the config file, export and import.
#[derive(Clone, Debug, PartialEq)]
pub enum TunnelCommand {
    Start(String),
    Stop(String),
    StartAll,
    StopAll,
    New,
    Edit(String),
    Duplicate(String),
    AskDelete(String),
    /// Delete the tunnel the confirmation asked about.
    ConfirmDelete(String),
    /// A field of the open editor changed: check it again.
    EditorChanged,
    SaveEditor,
    CancelEditor,
    TestFromEditor,
    Test(String),
    /// Pick the editor's key file with a dialog.
    PickKeyFile,
    ReloadConfig,
    /// Pick where to export (a dialog), or write to a typed path.
    AskExport,
    ExportTo(PathBuf),
    AskImport,
    ImportFrom(PathBuf),
    /// Add the tunnels the import's confirmation lists.
    ConfirmImport,
    /// Close the import's confirmation; nothing is added.
    CancelImport,
    /// Open the "Connect to a peer" form.
    ConnectPeer,
    /// Show the settings of the pair this tunnel belongs to again.
    ShowPeer(String),
    /// Add the pair the form describes.
    CreatePeer,
    /// Close the form.
    ClosePeer,
    /// Pick where a tunnel's connection history goes (a dialog), or write it to a typed
    /// path; either way the connections the search shows, as CSV.
    AskExportHistory(String),
    ExportHistoryTo(String, PathBuf),
}

/// The keys window and its forms.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyCommand {
    ShowKeys(bool),
    OpenForm(KeyForm),
    CloseForm,
    SubmitForm,
    /// Pick the file to import, or where a generated key's copy goes, with a dialog.
    PickFormFile,
    /// Pick where to export a key (by name), with a dialog.
    AskExport(String),
    /// Pick where to write a key (by name) sealed for a teammate, with a dialog.
    AskShare(String),
    /// Pick where to write a tunnel (by name) with its key, sealed for a teammate.
    AskShareTunnel(String),
    /// Close the shared passphrase's window (the passphrase is wiped).
    CloseShared,
    AskDelete(String),
    ConfirmDelete(String),
    /// A key's (by name) rotation reminder, in days; `None` for none.
    SetReminder(String, Option<u32>),
}

/// The far-end tab.
#[derive(Clone, Debug, PartialEq)]
pub enum FarEndCommand {
    /// The far end's address for a tunnel (by name), as the user corrected it.
    SetFarAddress(String, String),
    /// The ssh destination for a tunnel (by name), as typed or picked.
    SetSshDestination(String, String),
    /// Whether a tunnel's (by name) far end, once set up, starts on its first connection.
    SetOnFirstConnection(String, bool),
    /// Set up, check, repair or remove the tunnel's far end over ssh.
    Run(String, FarEndAction),
    /// Rotate the tunnel's (by name) key: a new key, on the far end (beside the old one
    /// while clients switch, if the far end accepts connections) and then here.
    Rotate(String),
    /// End the tunnel's rotation: the old key is no longer let in, here or there.
    FinishRotation(String),
}

/// Life beyond the window: settings, the window itself, quitting.
#[derive(Clone, Debug, PartialEq)]
pub enum DesktopCommand {
    ShowSettings(bool),
    ChangeSettings(Settings),
    /// Hide the "no keychain" explanation from the main window (the keys view keeps it).
    DismissKeychainNote,
    /// Show the window (from the tray or a second start).
    ShowWindow,
    /// Stop every tunnel and exit (tray, app menu, Ctrl+Q).
    Quit,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ViewCommand {
    Select(String),
    ShowTab(DetailTab),
    Copy(String),
    Dismiss(usize),
    DismissAllNotices,
    /// Show every notice (true) or only the newest with a count (false).
    ExpandNotices(bool),
    /// Close the open confirmation without doing anything.
    CancelConfirm,
}

impl From<TunnelCommand> for UiCommand {
    fn from(command: TunnelCommand) -> UiCommand {
        UiCommand::Tunnel(command)
    }
}

impl From<KeyCommand> for UiCommand {
    fn from(command: KeyCommand) -> UiCommand {
        UiCommand::Key(command)
    }
}

impl From<FarEndCommand> for UiCommand {
    fn from(command: FarEndCommand) -> UiCommand {
        UiCommand::FarEnd(command)
    }
}

impl From<DesktopCommand> for UiCommand {
    fn from(command: DesktopCommand) -> UiCommand {
        UiCommand::Desktop(command)
    }
}

impl From<ViewCommand> for UiCommand {
    fn from(command: ViewCommand) -> UiCommand {
        UiCommand::View(command)
    }
}
