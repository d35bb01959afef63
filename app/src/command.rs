//! What the views ask the app to do. Views only emit these; `app.rs` carries them out
//! against the engine, the key store and background work.

use std::path::PathBuf;

use sluice_engine::{FarEndAction, TunnelId};

use crate::model::{DetailTab, DialogPurpose, KeyForm, Settings};

#[derive(Clone, Debug, PartialEq)]
pub enum UiCommand {
    Select(TunnelId),
    ShowTab(DetailTab),
    Start(TunnelId),
    Stop(TunnelId),
    StartAll,
    StopAll,
    NewTunnel,
    Edit(TunnelId),
    Duplicate(TunnelId),
    AskDelete(TunnelId),
    /// A field of the open editor changed: check it again.
    EditorChanged,
    SaveEditor,
    CancelEditor,
    TestFromEditor,
    Test(TunnelId),
    OpenDialog(DialogPurpose),
    ShowKeys(bool),
    OpenKeyForm(KeyForm),
    CloseKeyForm,
    SubmitKeyForm,
    AskDeleteKey(String),
    Confirmed,
    CancelConfirm,
    Copy(String),
    Dismiss(usize),
    DismissAllNotices,
    /// Show every notice (true) or only the newest with a count (false).
    ExpandNotices(bool),
    /// Hide the "no keychain" explanation from the main window (the keys view keeps it).
    DismissKeychainNote,
    ShowSettings(bool),
    ChangeSettings(Settings),
    /// Write the tunnels (no keys) to a file chosen by the user, or typed.
    ExportTunnelsTo(PathBuf),
    ImportTunnelsFrom(PathBuf),
    /// Add the tunnels the import's confirmation lists.
    ConfirmImport,
    /// Close the import's confirmation; nothing is added.
    CancelImport,
    /// Show the window (from the tray or a second start).
    ShowWindow,
    /// Stop every tunnel and exit (tray, app menu, Ctrl+Q).
    Quit,
    ReloadConfig,
    SetFarAddress(String, String),
    /// The far-end tab's ssh destination for a tunnel (by name), as typed or picked.
    SetSshDestination(String, String),
    /// Set up, check or remove the tunnel's far end over ssh.
    FarEnd(TunnelId, FarEndAction),
}
