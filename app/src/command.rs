//! What the views ask the app to do. Views only emit these; `app.rs` carries them out
//! against the engine, the key store and background work.

use sluice_engine::{FarEndAction, TunnelId};

use crate::model::{DetailTab, DialogPurpose, KeyForm};

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
    ReloadConfig,
    SetFarAddress(String, String),
    /// The far-end tab's ssh destination for a tunnel (by name), as typed or picked.
    SetSshDestination(String, String),
    /// Set up, check or remove the tunnel's far end over ssh.
    FarEnd(TunnelId, FarEndAction),
}
