//! What the views draw from, in three parts: what the files hold (tunnels, keys), what
//! mirrors the engine and the work in flight (statuses, logs, probes, far-end runs;
//! cleared when a tunnel is deleted or the config reloaded), and the environment (this
//! machine's name, the keychain, ssh hosts). Plus notices, the UI state kept across runs
//! and the open forms. `app.rs` owns and changes it; views read it (and edit only the
//! open forms' fields) and ask for everything else with commands.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sluice_engine::{
    Config, ConfigError, Event, FarEndAction, FarEndError, FarEndStepReport, Health, HealthFault,
    KeyRef, Mode, ProbeOutcome, StartFault, TargetReport, TunnelSpec, TunnelState, TunnelStatus,
};

use crate::connections::ConnectionLog;
use crate::error::{AppError, KeyListError, KeychainUnavailable, ProbeNotTried};
use crate::keys::{KeyIndex, KeyInfo, SecretText, Shared};
use crate::peer::{self, PeerForm};
use crate::tray::{TrayHealth, TraySnapshot, TrayTunnel};
use crate::tunnel_file::Incoming;
use crate::tunnel_form::EditorState;

/// Log lines kept per tunnel.
pub const LOG_LINES: usize = 500;

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
    /// The connection history: one line per connection that ended.
    Connections,
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
    /// Per tunnel name: "Start on first connection" as ticked before a set-up records it.
    pub on_first_connection: BTreeMap<String, bool>,
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
    /// A bundle a teammate shared: its file, the passphrase they sent, and the name the
    /// key gets here. `opening` while scrypt runs.
    OpenBundle {
        name: String,
        path: String,
        passphrase: SecretText,
        opening: bool,
    },
}

/// What waits for the user to confirm (by tunnel or key name).
#[derive(Clone, Debug, PartialEq)]
pub enum Confirm {
    DeleteTunnel(String),
    DeleteKey(String),
}

/// Which test-connection run a verdict belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKey {
    /// From the editor (the settings being edited).
    Editor,
    Tunnel(String),
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

/// What a far-end run does for a key rotation, and so what changes here once it succeeds.
#[derive(Clone, Debug, PartialEq)]
pub enum RotationStep {
    /// The far end took the new key (and keeps letting in the old one if it accepts
    /// connections): this end switches to `new`.
    Start { new: KeyRef, old: KeyRef },
    /// The far end no longer lets in the old key.
    Finish,
}

/// A far-end action over ssh: its steps as they report, and how it ended.
#[derive(Clone, Debug)]
pub struct FarEndRun {
    pub action: FarEndAction,
    /// The run is part of a key rotation.
    pub rotation: Option<RotationStep>,
    pub destination: String,
    pub steps: Vec<FarEndStepReport>,
    /// `None` while it runs.
    pub finished: Option<Result<(), FarEndError>>,
}

impl FarEndRun {
    pub fn running(&self) -> bool {
        self.finished.is_none()
    }
}

/// Where a tunnel is, as the list, the detail panel, the tray and every "is it running"
/// question see it: one answer, drawn from the engine's status, the key being loaded,
/// and whether its connections fail.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Stopped,
    /// Its key is being read before it starts (or takes new settings).
    LoadingKey,
    Starting,
    Running {
        connections: u64,
    },
    /// Running, but its last connections failed (wrong key, far end unreachable).
    Failing,
    /// It could not start.
    Failed(StartFault),
    /// Not accepting; connections finish.
    Stopping {
        remaining: u64,
    },
}

impl Phase {
    /// Whether the tunnel runs or is about to: what Stop (rather than Start) applies to.
    pub fn is_running(&self) -> bool {
        !matches!(self, Phase::Stopped | Phase::Failed(_))
    }

    /// A tunnel that needs attention: it could not start, or its connections fail.
    pub fn is_failure(&self) -> bool {
        matches!(self, Phase::Failing | Phase::Failed(_))
    }
}

/// What the health checks know of a running Encrypt tunnel's far end: what the list, the
/// detail panel and the tray say next to its [`Phase`].
#[derive(Clone, Debug, PartialEq)]
pub enum FarEndHealth<'a> {
    /// Nothing to say: the tunnel does not dial a far end, its checks are off, or it does
    /// not run.
    Unchecked,
    /// It runs and checks, and the first check has not answered yet.
    Checking,
    Up {
        round_trip: Duration,
        checked: SystemTime,
        far_target: Option<TargetReport>,
    },
    Down {
        since: SystemTime,
        checked: SystemTime,
        fault: &'a HealthFault,
        /// The last good check's (or connection's) handshake time, kept while down.
        last_round_trip: Option<Duration>,
    },
}

/// What the config file and the key list hold.
pub struct Files {
    pub tunnels: Vec<TunnelSpec>,
    pub config_status: ConfigStatus,
    pub config_path: PathBuf,
    /// The config's settings other than its tunnels (the daemon's metrics address...),
    /// kept as loaded and written back unchanged.
    pub config_settings: Config,
    pub keys: KeyIndex,
    /// Set when the key list file could not be read: then it is not overwritten.
    pub keys_broken: Option<Arc<KeyListError>>,
}

/// What mirrors the engine and the work in flight, by tunnel name. An entry goes when its
/// tunnel is deleted, renamed or reloaded away.
#[derive(Default)]
pub struct Mirror {
    pub statuses: HashMap<String, TunnelStatus>,
    pub logs: HashMap<String, VecDeque<Event>>,
    /// Tunnels the user wants running (started, not stopped since).
    pub wanted: BTreeSet<String>,
    /// Tunnels whose key is being loaded before they start or take new settings.
    pub loading: HashSet<String>,
    /// Running tunnels whose connections fail (see `alerts`).
    pub failing: HashSet<String>,
    /// Test connections: `None` while one runs.
    pub probes: HashMap<ProbeKey, Option<ProbeVerdict>>,
    /// The last far-end action per tunnel.
    pub far_end_runs: HashMap<String, FarEndRun>,
    /// Each tunnel's connections, as they ended.
    pub connections: ConnectionLog,
}

impl Mirror {
    /// Forgets what was mirrored of a tunnel (deleted, renamed, reloaded away).
    pub fn forget(&mut self, name: &str) {
        self.statuses.remove(name);
        self.logs.remove(name);
        self.wanted.remove(name);
        self.loading.remove(name);
        self.failing.remove(name);
        self.probes.remove(&ProbeKey::Tunnel(name.to_owned()));
        self.far_end_runs.remove(name);
        self.connections.forget(name);
    }
}

/// What this machine is like.
pub struct Environment {
    pub host_name: String,
    pub keychain_problem: Option<KeychainUnavailable>,
    /// Host aliases from the user's ssh config, offered as destinations.
    pub ssh_hosts: Vec<String>,
}

/// Everything the views read.
pub struct Model {
    pub files: Files,
    pub mirror: Mirror,
    pub environment: Environment,
    pub notices: Vec<Notice>,
}

impl Model {
    pub fn tunnel(&self, name: &str) -> Option<&TunnelSpec> {
        self.files.tunnels.iter().find(|t| t.name == name)
    }

    /// The tunnel the detail panel shows.
    pub fn selected<'a>(&'a self, ui: &UiState) -> Option<&'a TunnelSpec> {
        ui.selected.as_deref().and_then(|name| self.tunnel(name))
    }

    pub fn status(&self, name: &str) -> Option<&TunnelStatus> {
        self.mirror.statuses.get(name)
    }

    /// The one answer to "where is this tunnel" (see [`Phase`]).
    pub fn phase(&self, name: &str) -> Phase {
        let status = self.status(name);
        if self.mirror.loading.contains(name) && !status.is_some_and(|s| is_up(&s.state)) {
            return Phase::LoadingKey;
        }
        let Some(status) = status else {
            return Phase::Stopped;
        };
        match &status.state {
            TunnelState::Stopped => Phase::Stopped,
            TunnelState::Starting => Phase::Starting,
            TunnelState::Listening { .. } | TunnelState::Dialing { .. }
                if self.mirror.failing.contains(name) =>
            {
                Phase::Failing
            }
            TunnelState::Listening { .. } | TunnelState::Dialing { .. } => Phase::Running {
                connections: status.counters.active_connections,
            },
            TunnelState::Draining { remaining } => Phase::Stopping {
                remaining: *remaining,
            },
            TunnelState::Failed(fault) => Phase::Failed(fault.clone()),
        }
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.phase(name).is_running()
    }

    /// What the checks know of the tunnel's far end (see [`FarEndHealth`]). Only a tunnel
    /// that accepts connections has a far end worth telling about: a stopped or stopping
    /// one says nothing, whatever was last known.
    pub fn far_end_health(&self, name: &str) -> FarEndHealth<'_> {
        let checks = self
            .tunnel(name)
            .is_some_and(|t| t.mode == Mode::Encrypt && t.health_check_secs.is_some());
        if !checks || !matches!(self.phase(name), Phase::Running { .. } | Phase::Failing) {
            return FarEndHealth::Unchecked;
        }
        let Some(status) = self.status(name) else {
            return FarEndHealth::Unchecked;
        };
        match &status.health {
            Health::Unknown => FarEndHealth::Checking,
            Health::Up {
                round_trip,
                checked,
                far_target,
            } => FarEndHealth::Up {
                round_trip: *round_trip,
                checked: *checked,
                far_target: *far_target,
            },
            Health::Down {
                since,
                checked,
                fault,
            } => FarEndHealth::Down {
                since: *since,
                checked: *checked,
                fault,
                last_round_trip: status.last_round_trip,
            },
        }
    }

    /// Whether any tunnel runs (or is about to).
    pub fn any_running(&self) -> bool {
        self.files.tunnels.iter().any(|t| self.is_running(&t.name))
    }

    /// The tunnels using a key.
    pub fn users_of(&self, key: &KeyInfo) -> Vec<String> {
        self.files
            .tunnels
            .iter()
            // A rotation's previous key is in use too: deleting it would stop the tunnel.
            .filter(|t| t.key == key.location || t.previous_key.as_ref() == Some(&key.location))
            .map(|t| t.name.clone())
            .collect()
    }

    /// Key locations → key names, for the editor.
    pub fn key_names(&self) -> HashMap<KeyRef, String> {
        self.files
            .keys
            .keys
            .iter()
            .map(|k| (k.location.clone(), k.name.clone()))
            .collect()
    }

    /// A known key's location by its name, for the editor's key choice.
    pub fn key_location(&self, name: &str) -> Option<KeyRef> {
        self.files.keys.get(name).map(|k| k.location.clone())
    }

    /// The ssh destination the far-end tab shows: as typed, else where it was set up.
    pub fn ssh_destination(&self, ui: &UiState, spec: &TunnelSpec) -> String {
        ui.ssh_destinations
            .get(&spec.name)
            .cloned()
            .or_else(|| spec.far_end.as_ref().map(|r| r.ssh.clone()))
            .unwrap_or_default()
    }

    /// Whether the far end starts on its first connection: as ticked, else as set up.
    pub fn on_first_connection(&self, ui: &UiState, spec: &TunnelSpec) -> bool {
        ui.on_first_connection
            .get(&spec.name)
            .copied()
            .or_else(|| spec.far_end.as_ref().map(|r| r.on_first_connection))
            .unwrap_or(false)
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

    /// What the tray icon shows: the tunnels with their phase and whether their far end is
    /// down, and at a glance whether one fails, has its far end down, or some run.
    /// A pair (Connect to a peer) is one item with its two directions.
    pub fn tray_snapshot(&self) -> TraySnapshot {
        let all = &self.files.tunnels;
        let tunnels: Vec<TrayTunnel> = all
            .iter()
            .filter_map(|t| match peer::partner(&t.name, all) {
                // Shown with its forward half.
                Some(_) if t.mode == Mode::ReverseOut => None,
                Some(back) => Some(self.tray_pair(t, back)),
                None => Some(self.tray_tunnel(t)),
            })
            .collect();
        let health = if tunnels.iter().any(|t| t.failure) {
            TrayHealth::Failed
        } else if tunnels.iter().any(|t| t.far_end_down.is_some()) {
            TrayHealth::FarEndDown
        } else if tunnels.iter().any(|t| t.running) {
            TrayHealth::Running
        } else {
            TrayHealth::Idle
        };
        TraySnapshot { health, tunnels }
    }

    fn tray_tunnel(&self, t: &TunnelSpec) -> TrayTunnel {
        let phase = self.phase(&t.name);
        let far_end_down = match self.far_end_health(&t.name) {
            FarEndHealth::Down { fault, .. } => Some(fault.cause().label().to_owned()),
            _ => None,
        };
        TrayTunnel {
            name: t.name.clone(),
            label: t.name.clone(),
            state: phase_label(&phase).to_owned(),
            running: phase.is_running(),
            failure: phase.is_failure(),
            far_end_down,
        }
    }

    /// A pair's item: its state once if both directions share it, else each direction's.
    fn tray_pair(&self, forward: &TunnelSpec, back: &TunnelSpec) -> TrayTunnel {
        let (there, back) = (self.tray_tunnel(forward), self.tray_tunnel(back));
        let state = if there.state == back.state {
            there.state.clone()
        } else {
            format!("there {}, back {}", there.state, back.state)
        };
        let far_end_down = match (there.far_end_down, back.far_end_down) {
            (Some(cause), _) => Some(cause),
            (None, Some(cause)) => Some(format!("{cause} (the way back)")),
            (None, None) => None,
        };
        TrayTunnel {
            label: peer::pair_label(&there.name),
            name: there.name,
            state,
            running: there.running || back.running,
            failure: there.failure || back.failure,
            far_end_down,
        }
    }
}

/// A phase in a word or two, for the tray's menu.
fn phase_label(phase: &Phase) -> &'static str {
    match phase {
        Phase::Stopped => "stopped",
        Phase::LoadingKey | Phase::Starting => "starting",
        Phase::Running { .. } => "running",
        Phase::Failing => "failing",
        Phase::Failed(_) => "failed",
        Phase::Stopping { .. } => "stopping",
    }
}

/// Whether the engine has the tunnel up (so new settings loading do not hide that).
fn is_up(state: &TunnelState) -> bool {
    matches!(
        state,
        TunnelState::Listening { .. } | TunnelState::Draining { .. }
    )
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
    /// The "Connect to a peer" form, while open.
    pub peer: Option<PeerForm>,
    /// The connection history's search words.
    pub history_search: String,
    /// A typed path for the history's CSV when no dialog can be shown.
    pub history_csv_path: String,
    /// A key just shared: its passphrase is shown once, and wiped when this is closed.
    pub shared: Option<Shared>,
}

/// Whether tunnel `spec` is in a rotation: the old key is still let in, here or there.
pub fn in_rotation(spec: &TunnelSpec) -> bool {
    spec.previous_key.is_some()
        || spec
            .far_end
            .as_ref()
            .is_some_and(|r| r.previous_key.is_some())
}
