//! SluiceApp: the app's state and the one place that carries out what the views ask for.
//! Views draw and return [`UiCommand`]s; background work comes back as
//! [`Message`]s; the engine runs the tunnels on its own threads and wakes the UI when
//! something changed, so the UI repaints on change and sits idle otherwise.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use sluice_engine::config::{Config, ConfigError, KeyRef, Mode, TunnelSpec};
use sluice_engine::engine::{Engine, TunnelStatus};
use sluice_engine::events::{Event, TunnelId};
use sluice_engine::net::probe::{ProbeOutcome, ProbeRequest};
use sluice_engine::stats::RateSample;
use sluice_engine::tunnel::{TunnelSettings, TunnelState};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::background::{Background, DialogPurpose, Message, ProbeKey, SaveTarget};
use crate::dialogs::{DialogAnswer, DialogKind};
use crate::editor::{EditorState, KeyChoice};
use crate::keys::{self, KeyIndex, KeyInfo};
use crate::services::Services;
use crate::views;

/// Log lines kept per tunnel.
pub const LOG_LINES: usize = 500;

/// One tunnel of the list: its engine id (stable while the app runs) and its spec.
#[derive(Clone, Debug)]
pub struct TunnelEntry {
    pub id: TunnelId,
    pub spec: TunnelSpec,
}

/// Whether the config file could be used.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigStatus {
    /// Loaded (or created on first save).
    Ok,
    /// The file exists but could not be read: it is never overwritten; changes stay in
    /// memory until it is fixed and reloaded.
    Broken { path: PathBuf, message: String },
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
    pub keys_open: bool,
}

/// A message shown at the top until dismissed.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub error: bool,
    pub text: String,
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

/// What views ask the app to do.
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
}

/// Everything the views read.
pub struct Model {
    pub tunnels: Vec<TunnelEntry>,
    pub config_status: ConfigStatus,
    pub keys: KeyIndex,
    /// Set when the key list file could not be read: then it is not overwritten.
    pub keys_broken: Option<String>,
    pub keychain_problem: Option<String>,
    pub logs: HashMap<TunnelId, VecDeque<Event>>,
    /// Tunnels whose key is being loaded before they start.
    pub starting: HashSet<TunnelId>,
    pub probes: HashMap<ProbeKey, Option<ProbeOutcome>>,
    pub notices: Vec<Notice>,
    pub statuses: HashMap<TunnelId, TunnelStatus>,
    pub host_name: String,
    pub config_path: PathBuf,
}

impl Model {
    pub fn tunnel(&self, id: TunnelId) -> Option<&TunnelEntry> {
        self.tunnels.iter().find(|t| t.id == id)
    }

    pub fn tunnel_named(&self, name: &str) -> Option<&TunnelEntry> {
        self.tunnels.iter().find(|t| t.spec.name == name)
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
}

/// Transient view state: open dialogs and forms.
#[derive(Default)]
pub struct ViewState {
    pub editor: Option<EditorState>,
    pub key_form: Option<KeyForm>,
    pub confirm: Option<Confirm>,
    /// Set when a file dialog could not be shown: forms then ask for a typed path.
    pub dialogs_unavailable: bool,
}

pub struct SluiceApp {
    ctx: egui::Context,
    services: Services,
    engine: Engine,
    events: broadcast::Receiver<Event>,
    background: Background,
    inbox: mpsc::Receiver<Message>,
    next_id: u64,
    pub model: Model,
    pub ui: UiState,
    pub view: ViewState,
}

const UI_STATE_KEY: &str = "sluice-ui";

impl SluiceApp {
    /// Builds the app for eframe: restores UI state, starts the engine, loads the config
    /// and key list, and starts the tunnels marked to start with the app.
    pub fn new(cc: &eframe::CreationContext<'_>, services: Services) -> Result<SluiceApp, String> {
        let ui = cc
            .storage
            .and_then(|s| eframe::get_value::<UiState>(s, UI_STATE_KEY))
            .unwrap_or_default();
        crate::theme::apply(&cc.egui_ctx);
        SluiceApp::with_context(cc.egui_ctx.clone(), services, ui)
    }

    pub fn with_context(
        ctx: egui::Context,
        services: Services,
        ui: UiState,
    ) -> Result<SluiceApp, String> {
        let repaint = ctx.clone();
        let engine = Engine::start(move || repaint.request_repaint())
            .map_err(|e| format!("cannot start the tunnel engine: {e}"))?;
        let events = engine.subscribe();
        let (background, inbox) = Background::new(ctx.clone());
        let (keys, keys_broken) = match KeyIndex::load(&services.paths.keys_file) {
            Ok(index) => (index, None),
            Err(message) => (KeyIndex::new(), Some(message)),
        };
        let keychain_problem = match &services.keychain {
            crate::services::Keychain::Available(_) => None,
            crate::services::Keychain::Unavailable(why) => Some(why.clone()),
        };
        let model = Model {
            tunnels: Vec::new(),
            config_status: ConfigStatus::Ok,
            keys,
            keys_broken,
            keychain_problem,
            logs: HashMap::new(),
            starting: HashSet::new(),
            probes: HashMap::new(),
            notices: Vec::new(),
            statuses: HashMap::new(),
            host_name: services.host_name.clone(),
            config_path: services.paths.config_file.clone(),
        };
        let mut app = SluiceApp {
            ctx,
            services,
            engine,
            events,
            background,
            inbox,
            next_id: 1,
            model,
            ui,
            view: ViewState::default(),
        };
        app.load_config();
        let autostart: Vec<TunnelId> = app
            .model
            .tunnels
            .iter()
            .filter(|t| t.spec.autostart)
            .map(|t| t.id)
            .collect();
        for id in autostart {
            app.start(id);
        }
        Ok(app)
    }

    /// Reads the config file. A missing file means no tunnels yet; a broken one is shown
    /// with its location and never overwritten.
    fn load_config(&mut self) {
        let path = self.services.paths.config_file.clone();
        match Config::load(&path) {
            Ok(config) => {
                self.model.config_status = ConfigStatus::Ok;
                self.replace_tunnels(config.tunnels);
            }
            Err(ConfigError::NotFound(_)) => {
                self.model.config_status = ConfigStatus::Ok;
                self.replace_tunnels(Vec::new());
            }
            Err(e) => {
                self.model.config_status = ConfigStatus::Broken {
                    path,
                    message: e.to_string(),
                };
            }
        }
    }

    fn replace_tunnels(&mut self, specs: Vec<TunnelSpec>) {
        for old in std::mem::take(&mut self.model.tunnels) {
            self.engine.remove_tunnel(old.id);
        }
        self.model.tunnels = specs
            .into_iter()
            .map(|spec| TunnelEntry {
                id: self.fresh_id(),
                spec,
            })
            .collect();
    }

    fn fresh_id(&mut self) -> TunnelId {
        let id = TunnelId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Folds in what happened since the last frame: engine events, statuses, background
    /// results. Called at the start of every frame.
    pub fn sync(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(event) => {
                    let log = self.model.logs.entry(event.tunnel).or_default();
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(event);
                }
                Err(TryRecvError::Lagged(missed)) => self.notify(
                    false,
                    format!("{missed} events came too fast to show; the counters are still exact"),
                ),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        self.model.statuses = self
            .engine
            .statuses()
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        while let Ok(message) = self.inbox.try_recv() {
            self.handle_message(message);
        }
    }

    pub fn rate_history(&self, id: TunnelId) -> Vec<RateSample> {
        self.engine.rate_history(id)
    }

    fn notify(&mut self, error: bool, text: String) {
        self.model.notices.push(Notice { error, text });
    }

    fn keychain(&self) -> Option<&std::sync::Arc<dyn sluice_engine::keystore::KeyStore>> {
        self.services.keychain.store()
    }

    // ---- commands ----------------------------------------------------------------

    pub fn execute(&mut self, command: UiCommand) {
        match command {
            UiCommand::Select(id) => {
                self.ui.selected = self.model.tunnel(id).map(|t| t.spec.name.clone());
            }
            UiCommand::ShowTab(tab) => self.ui.tab = tab,
            UiCommand::Start(id) => self.start(id),
            UiCommand::Stop(id) => self.stop(id),
            UiCommand::StartAll => {
                let ids: Vec<_> = self.model.tunnels.iter().map(|t| t.id).collect();
                for id in ids {
                    if !self.model.is_running(id) {
                        self.start(id);
                    }
                }
            }
            UiCommand::StopAll => {
                let ids: Vec<_> = self.model.tunnels.iter().map(|t| t.id).collect();
                for id in ids {
                    self.stop(id);
                }
            }
            UiCommand::NewTunnel => {
                let default_key = self.model.keys.keys.first().map(|k| k.name.clone());
                self.view.editor = Some(EditorState::new_tunnel(default_key.as_deref()));
                self.model.probes.remove(&ProbeKey::Editor);
            }
            UiCommand::Edit(id) => {
                if let Some(entry) = self.model.tunnel(id) {
                    self.view.editor = Some(EditorState::from_spec(
                        Some(id),
                        &entry.spec,
                        &self.model.key_names(),
                    ));
                    self.model.probes.remove(&ProbeKey::Editor);
                }
            }
            UiCommand::Duplicate(id) => self.duplicate(id),
            UiCommand::AskDelete(id) => self.view.confirm = Some(Confirm::DeleteTunnel(id)),
            UiCommand::SaveEditor => self.save_editor(),
            UiCommand::CancelEditor => self.view.editor = None,
            UiCommand::TestFromEditor => {
                if let Some(editor) = &self.view.editor {
                    let spec = editor
                        .to_spec(|name| self.model.keys.get(name).map(|k| k.location.clone()));
                    self.test_connection(ProbeKey::Editor, spec);
                }
            }
            UiCommand::Test(id) => {
                if let Some(entry) = self.model.tunnel(id) {
                    let spec = entry.spec.clone();
                    self.test_connection(ProbeKey::Tunnel(id), spec);
                }
            }
            UiCommand::OpenDialog(purpose) => self.open_dialog(purpose),
            UiCommand::ShowKeys(open) => self.ui.keys_open = open,
            UiCommand::OpenKeyForm(form) => self.view.key_form = Some(form),
            UiCommand::CloseKeyForm => self.view.key_form = None,
            UiCommand::SubmitKeyForm => self.submit_key_form(),
            UiCommand::AskDeleteKey(name) => self.ask_delete_key(name),
            UiCommand::Confirmed => match self.view.confirm.take() {
                Some(Confirm::DeleteTunnel(id)) => self.delete_tunnel(id),
                Some(Confirm::DeleteKey(name)) => self.delete_key(name),
                None => {}
            },
            UiCommand::CancelConfirm => self.view.confirm = None,
            UiCommand::Copy(text) => {
                self.ctx.copy_text(text);
                self.notify(false, "copied to the clipboard".into());
            }
            UiCommand::Dismiss(index) => {
                if index < self.model.notices.len() {
                    self.model.notices.remove(index);
                }
            }
            UiCommand::ReloadConfig => {
                self.load_config();
                if self.model.config_status == ConfigStatus::Ok {
                    self.notify(false, "config reloaded".into());
                }
            }
            UiCommand::SetFarAddress(name, address) => {
                self.ui.far_addresses.insert(name, address);
            }
        }
    }

    /// Loads the tunnel's key off the UI thread, then starts (or updates) it.
    fn start(&mut self, id: TunnelId) {
        let Some(entry) = self.model.tunnel(id) else {
            return;
        };
        let spec = entry.spec.clone();
        if let Err(errors) = spec.validate() {
            let text = in_one_line(&errors);
            self.notify(true, format!("cannot start \"{}\": {text}", spec.name));
            return;
        }
        self.model.starting.insert(id);
        let keychain = self.keychain().cloned();
        self.background.run(move || {
            let result = keys::load_for_tunnel(&spec.key, keychain.as_ref()).and_then(|loaded| {
                let warnings = loaded.warnings.iter().map(|w| w.to_string()).collect();
                TunnelSettings::from_spec(&spec, loaded.key)
                    .map(|settings| (settings, warnings))
                    .map_err(|errors| in_one_line(&errors))
            });
            Message::TunnelReady { id, result }
        });
    }

    fn stop(&mut self, id: TunnelId) {
        self.model.starting.remove(&id);
        self.engine.stop_tunnel(id);
    }

    fn duplicate(&mut self, id: TunnelId) {
        let Some(entry) = self.model.tunnel(id) else {
            return;
        };
        let mut spec = entry.spec.clone();
        let base = spec.name.clone();
        spec.name = (2..)
            .map(|n| format!("{base} ({n})"))
            .find(|name| self.model.tunnel_named(name).is_none())
            .unwrap_or(base);
        spec.autostart = false;
        let mut editor = EditorState::from_spec(None, &spec, &self.model.key_names());
        // The copy needs its own listen address; leave the field for the user to change.
        editor.listen = spec.listen.clone();
        self.view.editor = Some(editor);
    }

    fn save_editor(&mut self) {
        let Some(editor) = self.view.editor.as_mut() else {
            return;
        };
        let spec = editor.to_spec(|name| self.model.keys.get(name).map(|k| k.location.clone()));
        let others: Vec<TunnelSpec> = self
            .model
            .tunnels
            .iter()
            .filter(|t| Some(t.id) != editor.editing)
            .map(|t| t.spec.clone())
            .collect();
        let editing = editor.editing;
        let running_listen: Vec<String> = editing
            .filter(|id| self.model.is_running(*id))
            .and_then(|id| self.model.tunnel(id))
            .map(|t| vec![t.spec.listen.clone()])
            .unwrap_or_default();
        let problems = editor.problems(&spec, &others, |listen| {
            running_listen.iter().any(|l| l == listen)
        });
        if !problems.is_empty() {
            return;
        }
        self.view.editor = None;
        match editing {
            Some(id) => {
                let was_running = self.model.is_running(id);
                if let Some(entry) = self.model.tunnels.iter_mut().find(|t| t.id == id) {
                    if self.ui.selected.as_deref() == Some(entry.spec.name.as_str()) {
                        self.ui.selected = Some(spec.name.clone());
                    }
                    entry.spec = spec;
                }
                // A running tunnel takes the new settings without touching the others.
                if was_running {
                    self.start(id);
                }
            }
            None => {
                let id = self.fresh_id();
                self.ui.selected = Some(spec.name.clone());
                let autostart = spec.autostart;
                self.model.tunnels.push(TunnelEntry { id, spec });
                if autostart {
                    self.start(id);
                }
            }
        }
        self.save_config();
    }

    fn delete_tunnel(&mut self, id: TunnelId) {
        self.engine.remove_tunnel(id);
        self.model.starting.remove(&id);
        self.model.logs.remove(&id);
        if let Some(index) = self.model.tunnels.iter().position(|t| t.id == id) {
            let removed = self.model.tunnels.remove(index);
            if self.ui.selected.as_deref() == Some(removed.spec.name.as_str()) {
                self.ui.selected = None;
            }
        }
        self.save_config();
    }

    /// Writes the config in the background, unless the file on disk is broken: then it
    /// is kept as the user left it.
    fn save_config(&mut self) {
        if let ConfigStatus::Broken { path, .. } = &self.model.config_status {
            let text = format!(
                "not saved: {} could not be read, so it is left untouched; fix or move it, then Reload",
                path.display()
            );
            self.notify(true, text);
            return;
        }
        let config = Config {
            tunnels: self.model.tunnels.iter().map(|t| t.spec.clone()).collect(),
            ..Config::default()
        };
        if let Err(errors) = config.validate() {
            let text = in_one_line(&errors);
            self.notify(true, format!("not saved: {text}"));
            return;
        }
        self.background.save(
            SaveTarget::Config,
            self.services.paths.config_file.clone(),
            config.to_ron(),
        );
    }

    fn save_keys(&mut self) {
        if let Some(problem) = &self.model.keys_broken {
            let text = format!("key list not saved: {problem}");
            self.notify(true, text);
            return;
        }
        self.background.save(
            SaveTarget::KeyIndex,
            self.services.paths.keys_file.clone(),
            self.model.keys.to_ron(),
        );
    }

    /// Test connection: the key is loaded off the UI thread, then the engine probes.
    fn test_connection(&mut self, key: ProbeKey, spec: TunnelSpec) {
        if spec.mode != Mode::Encrypt {
            return;
        }
        let valid = match spec.validate() {
            Ok(valid) => valid,
            Err(errors) => {
                let text = in_one_line(&errors);
                self.model
                    .probes
                    .insert(key, Some(ProbeOutcome::Unreachable(text)));
                return;
            }
        };
        self.model.probes.insert(key, None);
        let keychain = self.keychain().cloned();
        self.background.run(move || {
            let result =
                keys::load_for_tunnel(&spec.key, keychain.as_ref()).map(|loaded| ProbeRequest {
                    target: valid.target,
                    key: loaded.key,
                    forward_secrecy: spec.forward_secrecy,
                    key_agreement: spec.key_agreement,
                    timeout: valid.timeout,
                    bind: valid.bind,
                });
            Message::ProbeReady { key, result }
        });
    }

    fn open_dialog(&mut self, purpose: DialogPurpose) {
        let kind = match &purpose {
            DialogPurpose::EditorKeyFile | DialogPurpose::ImportKey => DialogKind::OpenKeyFile,
            DialogPurpose::GenerateCopy => DialogKind::SaveKeyFile {
                suggested_name: match &self.view.key_form {
                    Some(KeyForm::Generate { name, .. }) if !name.trim().is_empty() => {
                        format!("{}.key", name.trim())
                    }
                    _ => "sluice.key".into(),
                },
            },
            DialogPurpose::ExportKey(name) => DialogKind::SaveKeyFile {
                suggested_name: format!("{name}.key"),
            },
        };
        let mailbox = self.background.mailbox();
        self.services.dialogs.open(
            kind,
            Box::new(move |answer| mailbox.deliver(Message::Dialog { purpose, answer })),
        );
    }

    fn submit_key_form(&mut self) {
        let Some(form) = self.view.key_form.clone() else {
            return;
        };
        let keychain = self.keychain().cloned();
        match form {
            KeyForm::Generate {
                name,
                save_copy,
                path,
            } => {
                let name = name.trim().to_owned();
                if let Err(problem) = keys::check_new_name(&self.model.keys, &name) {
                    self.notify(true, problem);
                    return;
                }
                let copy_to = (save_copy || keychain.is_none())
                    .then(|| PathBuf::from(path.trim()))
                    .filter(|p| !p.as_os_str().is_empty());
                if (save_copy || keychain.is_none()) && copy_to.is_none() {
                    self.notify(true, "choose where to save the key file".into());
                    return;
                }
                self.view.key_form = None;
                self.background.run(move || {
                    Message::KeyGenerated(keys::generate(
                        &name,
                        keychain.as_ref(),
                        copy_to.as_deref(),
                    ))
                });
            }
            KeyForm::Import { name, path } => {
                let name = name.trim().to_owned();
                if let Err(problem) = keys::check_new_name(&self.model.keys, &name) {
                    self.notify(true, problem);
                    return;
                }
                if path.trim().is_empty() {
                    self.notify(true, "choose the key file to import".into());
                    return;
                }
                self.view.key_form = None;
                let path = PathBuf::from(path.trim());
                self.background.run(move || {
                    Message::KeyImported(keys::import(&name, &path, keychain.as_ref()))
                });
            }
        }
    }

    fn ask_delete_key(&mut self, name: String) {
        let Some(info) = self.model.keys.get(&name) else {
            return;
        };
        let users = self.model.users_of(info);
        if users.is_empty() {
            self.view.confirm = Some(Confirm::DeleteKey(name));
        } else {
            self.notify(
                true,
                format!(
                    "key \"{name}\" is used by {}: give those tunnels another key first",
                    users
                        .iter()
                        .map(|u| format!("\"{u}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }

    fn delete_key(&mut self, name: String) {
        let Some(info) = self.model.keys.get(&name).cloned() else {
            return;
        };
        let keychain = self.keychain().cloned();
        self.background.run(move || Message::KeyDeleted {
            result: keys::delete(&info, keychain.as_ref()),
            name,
        });
    }

    // ---- background results ------------------------------------------------------

    fn handle_message(&mut self, message: Message) {
        match message {
            Message::Saved { target, result } => {
                if let Err(e) = result {
                    let what = match target {
                        SaveTarget::Config => "tunnels",
                        SaveTarget::KeyIndex => "key list",
                    };
                    self.notify(true, format!("could not save the {what}: {e}"));
                }
            }
            Message::TunnelReady { id, result } => {
                // Stopped (or deleted) while the key was loading: do not start after all.
                if !self.model.starting.remove(&id) || self.model.tunnel(id).is_none() {
                    return;
                }
                match result {
                    Ok((settings, warnings)) => {
                        for warning in warnings {
                            self.notify(false, format!("{}: {warning}", settings.definition.name));
                        }
                        self.engine.start_tunnel(id, settings);
                    }
                    Err(e) => {
                        let name = self
                            .model
                            .tunnel(id)
                            .map(|t| t.spec.name.clone())
                            .unwrap_or_default();
                        self.notify(true, format!("cannot start \"{name}\": {e}"));
                    }
                }
            }
            Message::KeyGenerated(result) => match result {
                Ok(info) => {
                    self.notify(
                        false,
                        format!(
                            "generated key \"{}\" ({}), fingerprint {}",
                            info.name,
                            info.where_label(),
                            info.fingerprint
                        ),
                    );
                    self.model.keys.keys.push(info);
                    self.save_keys();
                }
                Err(e) => self.notify(true, format!("could not generate the key: {e}")),
            },
            Message::KeyImported(result) => match result {
                Ok((info, warnings)) => {
                    if let Some(same) = self.model.keys.with_fingerprint(&info.fingerprint) {
                        let text = format!(
                            "note: \"{}\" is the same key as \"{}\"",
                            info.name, same.name
                        );
                        self.notify(false, text);
                    }
                    for warning in warnings {
                        self.notify(false, format!("{}: {warning}", info.name));
                    }
                    self.notify(
                        false,
                        format!(
                            "imported key \"{}\", fingerprint {}",
                            info.name, info.fingerprint
                        ),
                    );
                    self.model.keys.keys.push(info);
                    self.save_keys();
                }
                Err(e) => self.notify(true, format!("could not import the key: {e}")),
            },
            Message::KeyExported(result) => match result {
                Ok(path) => self.notify(
                    false,
                    format!("key written to {} (mode 0600)", path.display()),
                ),
                Err(e) => self.notify(true, format!("could not export the key: {e}")),
            },
            Message::KeyDeleted { name, result } => match result {
                Ok(()) => {
                    self.model.keys.keys.retain(|k| k.name != name);
                    self.save_keys();
                    self.notify(false, format!("deleted key \"{name}\""));
                }
                Err(e) => self.notify(true, format!("could not delete key \"{name}\": {e}")),
            },
            Message::Dialog { purpose, answer } => self.dialog_answered(purpose, answer),
            Message::ProbeReady { key, result } => match result {
                Ok(request) => {
                    let mailbox = self.background.mailbox();
                    self.engine.test_connection(request, move |outcome| {
                        mailbox.deliver(Message::Probe { key, outcome });
                    });
                }
                Err(e) => {
                    self.model.probes.insert(
                        key,
                        Some(ProbeOutcome::Rejected(format!("cannot load the key: {e}"))),
                    );
                }
            },
            Message::Probe { key, outcome } => {
                self.model.probes.insert(key, Some(outcome));
            }
        }
    }

    fn dialog_answered(&mut self, purpose: DialogPurpose, answer: DialogAnswer) {
        let path = match answer {
            DialogAnswer::Picked(path) => path.display().to_string(),
            DialogAnswer::Cancelled => return,
            DialogAnswer::Unavailable => {
                self.view.dialogs_unavailable = true;
                self.notify(
                    true,
                    "no file dialog could be shown (no desktop portal is running): type the path instead".into(),
                );
                return;
            }
        };
        match purpose {
            DialogPurpose::EditorKeyFile => {
                if let Some(editor) = &mut self.view.editor {
                    editor.key = KeyChoice::File(path);
                }
            }
            DialogPurpose::ImportKey => {
                if let Some(KeyForm::Import { path: p, name }) = &mut self.view.key_form {
                    if name.trim().is_empty() {
                        *name = std::path::Path::new(&path)
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                    }
                    *p = path;
                }
            }
            DialogPurpose::GenerateCopy => {
                if let Some(KeyForm::Generate {
                    path: p, save_copy, ..
                }) = &mut self.view.key_form
                {
                    *p = path;
                    *save_copy = true;
                }
            }
            DialogPurpose::ExportKey(name) => {
                let Some(info) = self.model.keys.get(&name).cloned() else {
                    return;
                };
                let keychain = self.keychain().cloned();
                let to = PathBuf::from(path);
                self.background
                    .run(move || Message::KeyExported(keys::export(&info, keychain.as_ref(), &to)));
            }
        }
    }
}

impl eframe::App for SluiceApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.sync();
        let commands = views::show(ui, self);
        for command in commands {
            self.execute(command);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, UI_STATE_KEY, &self.ui);
    }
}

/// Several config problems as one line for a notice.
fn in_one_line(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
