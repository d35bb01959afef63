//! What the views draw from: the tunnels and their live state, the keys, notices, the UI
//! state kept across runs, and the open forms. `app.rs` owns and changes it; views read it
//! (and edit only the open forms' fields) and ask for everything else with commands.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_engine::{
    Config, ConfigError, Event, FarEndAction, FarEndError, KeyRef, ProbeOutcome, StepReport,
    TunnelId, TunnelSpec, TunnelState, TunnelStatus,
};

use crate::error::{AppError, KeyListError, KeychainUnavailable, ProbeNotTried};
use crate::keys::{KeyIndex, KeyInfo};
use crate::tray::{TrayHealth, TraySnapshot, TrayTunnel};
use crate::tunnel_file::Incoming;
use crate::tunnel_form::EditorState;

/// Log lines kept per tunnel.
pub const LOG_LINES: usize = 500;

/// One tunnel of the list: its engine id (stable while the app runs) and its spec.
#[derive(Clone, Debug)]
pub struct TunnelEntry {
    pub id: TunnelId,
    pub spec: TunnelSpec,
}

/// Whether the config file could be used.
#[derive(Debug)]
pub enum ConfigStatus {
    /// Loaded (or created on first save).
    Ok,
    /// The file exists but could not be read: it is never overwritten; changes stay in
    /// memory until it is fixed and reloaded.
    Broken { path: PathBuf, error: ConfigError },
}

/// Which part of the detail panel is showing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DetailTab {
    #[default]
    Traffic,
    FarEnd,
}

/// UI state kept across runs (window size is kept by eframe itself).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UiState {
    pub selected: Option<String>,
    pub tab: DetailTab,
    /// Per tunnel name: the far end's address, as the user corrected it.
    pub far_addresses: BTreeMap<String, String>,
    /// Per tunnel name: the ssh destination typed in the far-end tab (before a set-up
    /// records it in the config).
    pub ssh_destinations: BTreeMap<String, String>,
    pub keys_open: bool,
    pub settings: Settings,
}

/// The choices in the settings window, kept across runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Closing the window while tunnels run hides it and keeps them up (off: it quits).
    pub keep_running_when_closed: bool,
    /// Whether the first close to the tray was explained (it is, once).
    pub close_explained: bool,
    /// Desktop notifications when a running tunnel fails or recovers.
    pub notifications: bool,
    /// Start Sluice at login, hidden in the tray, with the autostart tunnels up.
    pub start_at_login: bool,
    /// The "no keychain" explanation was dismissed: it then shows only in the keys view.
    pub keychain_note_dismissed: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            keep_running_when_closed: true,
            close_explained: false,
            notifications: true,
            start_at_login: false,
            keychain_note_dismissed: false,
        }
    }
}

/// How long a success notice stays before it fades away by itself; errors stay until
/// dismissed.
pub const NOTICE_LIFETIME: Duration = Duration::from_secs(6);

/// A message shown at the top, already in words. The same message again counts up
/// instead of adding a line.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub error: bool,
    pub text: String,
    pub count: u32,
    /// When it was last raised: a success fades [`NOTICE_LIFETIME`] after.
    pub raised: Instant,
}

impl Notice {
    pub fn info(text: impl Into<String>) -> Notice {
        Notice {
            error: false,
            text: text.into(),
            count: 1,
            raised: Instant::now(),
        }
    }

    /// The one place an [`AppError`] becomes words.
    pub fn error(error: &AppError) -> Notice {
        Notice {
            error: true,
            text: error.to_string(),
            count: 1,
            raised: Instant::now(),
        }
    }

    /// How much of a success notice's life is left (errors do not fade).
    pub fn fades_in(&self, now: Instant) -> Option<Duration> {
        (!self.error).then(|| NOTICE_LIFETIME.saturating_sub(now.duration_since(self.raised)))
    }
}

/// The key dialogs (generate, import).
#[derive(Clone, Debug, PartialEq)]
pub enum KeyForm {
    Generate {
        name: String,
        save_copy: bool,
        path: String,
    },
    Import {
        name: String,
        path: String,
    },
}

/// What waits for the user to confirm.
#[derive(Clone, Debug, PartialEq)]
pub enum Confirm {
    DeleteTunnel(TunnelId),
    DeleteKey(String),
}

/// What a file dialog was opened for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogPurpose {
    /// The key file a tunnel being edited refers to.
    EditorKeyFile,
    ImportKey,
    GenerateCopy,
    ExportKey(String),
    ExportTunnels,
    ImportTunnels,
}

/// Which test-connection run a verdict belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKey {
    /// From the editor (the settings being edited).
    Editor,
    Tunnel(TunnelId),
}

/// How a test connection ended: the engine's verdict, or why it was not tried.
pub enum ProbeVerdict {
    Answered(ProbeOutcome),
    NotTried(ProbeNotTried),
}

impl ProbeVerdict {
    pub fn is_ok(&self) -> bool {
        match self {
            ProbeVerdict::Answered(outcome) => outcome.is_ok(),
            ProbeVerdict::NotTried(_) => false,
        }
    }
}

impl fmt::Display for ProbeVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeVerdict::Answered(outcome) => outcome.fmt(f),
            ProbeVerdict::NotTried(why) => why.fmt(f),
        }
    }
}

/// A far-end action over ssh: its steps as they report, and how it ended.
#[derive(Clone, Debug)]
pub struct FarEndRun {
    pub action: FarEndAction,
    pub destination: String,
    pub steps: Vec<StepReport>,
    /// `None` while it runs.
    pub finished: Option<Result<(), FarEndError>>,
}

impl FarEndRun {
    pub fn running(&self) -> bool {
        self.finished.is_none()
    }
}

/// Everything the views read.
pub struct Model {
    pub tunnels: Vec<TunnelEntry>,
    pub config_status: ConfigStatus,
    pub keys: KeyIndex,
    /// Set when the key list file could not be read: then it is not overwritten.
    pub keys_broken: Option<Arc<KeyListError>>,
    pub keychain_problem: Option<KeychainUnavailable>,
    pub logs: HashMap<TunnelId, VecDeque<Event>>,
    /// Tunnels whose key is being loaded before they start.
    pub starting: HashSet<TunnelId>,
    /// Test connections: `None` while one runs.
    pub probes: HashMap<ProbeKey, Option<ProbeVerdict>>,
    pub notices: Vec<Notice>,
    pub statuses: HashMap<TunnelId, TunnelStatus>,
    pub host_name: String,
    pub config_path: PathBuf,
    /// The config's settings other than its tunnels (the daemon's metrics address...),
    /// kept as loaded and written back unchanged.
    pub config_settings: Config,
    /// The last far-end action per tunnel.
    pub far_end_runs: HashMap<TunnelId, FarEndRun>,
    /// Host aliases from the user's ssh config, offered as destinations.
    pub ssh_hosts: Vec<String>,
}

impl Model {
    pub fn tunnel(&self, id: TunnelId) -> Option<&TunnelEntry> {
        self.tunnels.iter().find(|t| t.id == id)
    }

    pub fn tunnel_named(&self, name: &str) -> Option<&TunnelEntry> {
        self.tunnels.iter().find(|t| t.spec.name == name)
    }

    /// The tunnel the detail panel shows.
    pub fn selected(&self, ui: &UiState) -> Option<TunnelId> {
        ui.selected
            .as_ref()
            .and_then(|name| self.tunnel_named(name))
            .map(|t| t.id)
    }

    pub fn status(&self, id: TunnelId) -> Option<&TunnelStatus> {
        self.statuses.get(&id)
    }

    /// Whether the engine is running the tunnel (listening, starting or draining).
    pub fn is_running(&self, id: TunnelId) -> bool {
        self.starting.contains(&id)
            || self.status(id).is_some_and(|s| {
                matches!(
                    s.state,
                    TunnelState::Listening { .. }
                        | TunnelState::Starting
                        | TunnelState::Draining { .. }
                )
            })
    }

    /// The tunnels using a key.
    pub fn users_of(&self, key: &KeyInfo) -> Vec<String> {
        self.tunnels
            .iter()
            .filter(|t| t.spec.key == key.location)
            .map(|t| t.spec.name.clone())
            .collect()
    }

    /// Key locations → key names, for the editor.
    pub fn key_names(&self) -> HashMap<KeyRef, String> {
        self.keys
            .keys
            .iter()
            .map(|k| (k.location.clone(), k.name.clone()))
            .collect()
    }

    /// The ssh destination the far-end tab shows: as typed, else where it was set up.
    pub fn ssh_destination(&self, ui: &UiState, spec: &TunnelSpec) -> String {
        ui.ssh_destinations
            .get(&spec.name)
            .cloned()
            .or_else(|| spec.far_end.as_ref().map(|r| r.ssh.clone()))
            .unwrap_or_default()
    }

    /// The far end's address the far-end tab shows: as corrected, else where it was set
    /// up, else the default for the tunnel.
    pub fn far_address(&self, ui: &UiState, spec: &TunnelSpec) -> String {
        ui.far_addresses
            .get(&spec.name)
            .cloned()
            .or_else(|| spec.far_end.as_ref().map(|r| r.far_address.clone()))
            .unwrap_or_else(|| sluice_engine::default_far_address(spec))
    }

    /// What the tray icon shows: the tunnels with their state, and at a glance whether
    /// one fails or some run. `failing` tells a running tunnel whose connections fail.
    pub fn tray_snapshot(&self, failing: impl Fn(TunnelId) -> bool) -> TraySnapshot {
        let mut any_failed = false;
        let tunnels: Vec<TrayTunnel> = self
            .tunnels
            .iter()
            .map(|t| {
                let state = match self.status(t.id).map(|s| &s.state) {
                    _ if self.starting.contains(&t.id) => "starting",
                    Some(TunnelState::Failed { .. }) => {
                        any_failed = true;
                        "failed"
                    }
                    Some(TunnelState::Listening { .. }) if failing(t.id) => {
                        any_failed = true;
                        "failing"
                    }
                    Some(TunnelState::Listening { .. }) => "running",
                    Some(TunnelState::Starting) => "starting",
                    Some(TunnelState::Draining { .. }) => "stopping",
                    Some(TunnelState::Stopped) | None => "stopped",
                };
                TrayTunnel {
                    id: t.id,
                    name: t.spec.name.clone(),
                    state: state.to_owned(),
                    running: self.is_running(t.id),
                }
            })
            .collect();
        let health = if any_failed {
            TrayHealth::Failed
        } else if tunnels.iter().any(|t| t.running) {
            TrayHealth::Running
        } else {
            TrayHealth::Idle
        };
        TraySnapshot { health, tunnels }
    }

    /// Whether any tunnel runs (or is about to).
    pub fn any_running(&self) -> bool {
        self.tunnels.iter().any(|t| self.is_running(t.id))
    }

    /// A known key's location by its name, for the editor's key choice.
    pub fn key_location(&self, name: &str) -> Option<KeyRef> {
        self.keys.get(name).map(|k| k.location.clone())
    }
}

/// Transient view state: open dialogs and forms. Views edit the forms' fields directly.
#[derive(Default)]
pub struct ViewState {
    pub editor: Option<EditorState>,
    pub key_form: Option<KeyForm>,
    pub confirm: Option<Confirm>,
    /// Set when a file dialog could not be shown: forms then ask for a typed path.
    pub dialogs_unavailable: bool,
    /// Several notices: shown all, or collapsed into one line with a count.
    pub notices_expanded: bool,
    pub settings_open: bool,
    /// Typed paths for exporting and importing tunnels when no dialog can be shown.
    pub tunnel_file_path: String,
    /// Tunnels read from a file, shown for the user to confirm before anything is added.
    pub import_review: Option<Incoming>,
}
