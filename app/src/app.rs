//! SluiceApp: the one place that carries out what the views ask for. Views draw from the
//! [`Model`] and return [`UiCommand`]s; background work comes back as [`Message`]s; the
//! engine runs the tunnels on its own threads and wakes the UI when something changed, so
//! the UI repaints on change and sits idle otherwise. Errors become notices here, once.
//! The window is not the app's life: with tunnels running, closing it hides it (the tray
//! icon and desktop notifications carry on); Quit stops the tunnels and exits.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use sluice_engine::{
    Config, ConfigError, Engine, Event, FAR_END_CONNECT_TIMEOUT, FarEndAction, FarEndKey,
    FarEndRecord, FarEndRequest, KeyStore, Mode, ProbeRequest, RateSample, SshClient, TunnelId,
    TunnelSettings, TunnelSpec,
};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::alerts::{Alert, Alerts};
use crate::background::{Background, Message, SaveTarget};
use crate::bounded_read::{self, MAX_TUNNEL_FILE_LEN};
use crate::command::UiCommand;
use crate::error::{
    AppError, BoundedReadError, ProbeNotTried, SaveFailure, StartError, StartupError,
    TunnelImportError,
};
use crate::file_dialogs::{DialogAnswer, DialogKind};
use crate::keys::{self, KeyIndex};
use crate::model::{
    ConfigStatus, Confirm, DialogPurpose, FarEndRun, KeyForm, LOG_LINES, Model, Notice, ProbeKey,
    ProbeVerdict, Settings, TunnelEntry, UiState, ViewState,
};
use crate::platform::{self, TrayIcon, TrayReport};
use crate::services::{LoginEntries, Services};
use crate::tray::{TrayAction, TraySnapshot};
use crate::tunnel_file;
use crate::tunnel_form::{self, EditorState, KeyChoice};
use crate::views;

/// The app's life beyond the window: the tray icon, alerts, the window's visibility.
struct DesktopState {
    tray: Option<TrayIcon>,
    /// Tray actions and the second start's "show", from their threads.
    requests: mpsc::Receiver<DesktopRequest>,
    /// What the tray shows now (sent again only when it changes).
    tray_shown: Option<TraySnapshot>,
    alerts: Alerts,
    /// The window is hidden (closed with tunnels running, or started hidden).
    pub hidden: bool,
    /// Quit was asked for: the next close is not turned into hiding.
    quitting: bool,
    /// A notification failed once; the notice said so, and is not repeated.
    notify_failed: bool,
    /// Frames left in which a hidden start hides the window (see `logic`).
    hide_at_start: u8,
    /// A panel shows the tray icon.
    in_panel: bool,
}

enum DesktopRequest {
    Tray(TrayReport),
    Show,
}

pub struct SluiceApp {
    ctx: egui::Context,
    services: Services,
    engine: Engine,
    events: broadcast::Receiver<Event>,
    background: Background,
    inbox: mpsc::Receiver<Message>,
    next_id: u64,
    desktop: DesktopState,
    pub model: Model,
    pub ui: UiState,
    pub view: ViewState,
}

const UI_STATE_KEY: &str = "sluice-ui";

impl SluiceApp {
    /// Builds the app for eframe: restores UI state, starts the engine, loads the config
    /// and key list, and starts the tunnels marked to start with the app.
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        services: Services,
    ) -> Result<SluiceApp, StartupError> {
        let ui = cc
            .storage
            .and_then(|s| eframe::get_value::<UiState>(s, UI_STATE_KEY))
            .unwrap_or_default();
        crate::theme::apply(&cc.egui_ctx);
        SluiceApp::with_context(cc.egui_ctx.clone(), services, ui)
    }

    pub fn with_context(
        ctx: egui::Context,
        mut services: Services,
        ui: UiState,
    ) -> Result<SluiceApp, StartupError> {
        let repaint = ctx.clone();
        let engine =
            Engine::start(move || repaint.request_repaint()).map_err(StartupError::Engine)?;
        let events = engine.subscribe();
        let (background, inbox) = Background::new(ctx.clone());
        let (keys, keys_broken) = match KeyIndex::load(&services.paths.keys_file) {
            Ok(index) => (index, None),
            Err(problem) => (KeyIndex::new(), Some(Arc::new(problem))),
        };
        let keychain_problem = services.keychain.problem().cloned();
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
            config_settings: Config::default(),
            far_end_runs: HashMap::new(),
            ssh_hosts: Vec::new(),
        };
        let (requests_in, requests) = mpsc::channel();
        if let Some(instance) = services.desktop.instance.take() {
            let wake = ctx.clone();
            let sender = requests_in.clone();
            instance.serve(move || {
                let _ = sender.send(DesktopRequest::Show);
                wake.request_repaint();
            });
        }
        let tray = services.desktop.tray.then(|| {
            let wake = ctx.clone();
            let sender = requests_in.clone();
            platform::start_tray(model.tray_snapshot(|_| false), move |report| {
                let _ = sender.send(DesktopRequest::Tray(report));
                wake.request_repaint();
            })
        });
        let hidden = services.desktop.start_hidden;
        let gap = services.desktop.notification_gap;
        let mut app = SluiceApp {
            ctx,
            services,
            engine,
            events,
            background,
            inbox,
            next_id: 1,
            desktop: DesktopState {
                tray,
                requests,
                tray_shown: None,
                alerts: Alerts::with_gap(gap),
                hidden,
                quitting: false,
                notify_failed: false,
                hide_at_start: if hidden { 2 } else { 0 },
                in_panel: false,
            },
            model,
            ui,
            view: ViewState::default(),
        };
        app.load_config();
        app.read_ssh_hosts();
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
            Ok(mut config) => {
                self.model.config_status = ConfigStatus::Ok;
                self.replace_tunnels(std::mem::take(&mut config.tunnels));
                self.model.config_settings = config;
            }
            Err(ConfigError::NotFound(_)) => {
                self.model.config_status = ConfigStatus::Ok;
                self.replace_tunnels(Vec::new());
            }
            Err(error) => self.model.config_status = ConfigStatus::Broken { path, error },
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
                Err(TryRecvError::Lagged(missed)) => self.inform(format!(
                    "{missed} events came too fast to show; the counters are still exact"
                )),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        let statuses = self.engine.statuses();
        self.desktop.alerts.observe(&statuses);
        self.model.statuses = statuses.into_iter().map(|s| (s.id, s)).collect();
        let mut any = false;
        while let Ok(message) = self.inbox.try_recv() {
            self.handle_message(message);
            any = true;
        }
        // Keys or tunnels may have changed under the open editor.
        if any {
            self.recheck_editor();
        }
        while let Ok(request) = self.desktop.requests.try_recv() {
            match request {
                DesktopRequest::Show => self.execute(UiCommand::ShowWindow),
                DesktopRequest::Tray(TrayReport::Action(action)) => {
                    self.execute(match action {
                        TrayAction::Show => UiCommand::ShowWindow,
                        TrayAction::Quit => UiCommand::Quit,
                        TrayAction::Start(id) => UiCommand::Start(id),
                        TrayAction::Stop(id) => UiCommand::Stop(id),
                    });
                }
                DesktopRequest::Tray(TrayReport::InPanel(shown)) => {
                    self.desktop.in_panel = shown;
                }
                DesktopRequest::Tray(TrayReport::Unavailable(why)) => {
                    self.desktop.tray = None;
                    self.report(AppError::Tray(why));
                }
            }
        }
        self.send_alerts();
        self.fade_notices();
        if let Some(tray) = &self.desktop.tray {
            let alerts = &self.desktop.alerts;
            let snapshot = self.model.tray_snapshot(|id| alerts.is_failing(id));
            if self.desktop.tray_shown.as_ref() != Some(&snapshot) {
                tray.show(snapshot.clone());
                self.desktop.tray_shown = Some(snapshot);
            }
        }
    }

    /// Sends the notification that is due, if notifications are on; wakes up again when
    /// held-back changes may go out.
    fn send_alerts(&mut self) {
        match self.desktop.alerts.take_due(Instant::now()) {
            Ok(Some(alert)) => self.notify(alert),
            Ok(None) => {}
            Err(wait) => self.ctx.request_repaint_after(wait),
        }
    }

    fn notify(&mut self, alert: Alert) {
        if self.ui.settings.notifications && self.services.desktop.notifications {
            self.background
                .run(move || Message::Notified(platform::notify(&alert)));
        }
    }

    /// Success notices fade by themselves; a frame is asked for when the next one goes.
    fn fade_notices(&mut self) {
        let now = Instant::now();
        self.model
            .notices
            .retain(|n| n.fades_in(now).is_none_or(|left| !left.is_zero()));
        if let Some(next) = self
            .model
            .notices
            .iter()
            .filter_map(|n| n.fades_in(now))
            .min()
        {
            self.ctx.request_repaint_after(next);
        }
    }

    pub fn rate_history(&self, id: TunnelId) -> Vec<RateSample> {
        self.engine.rate_history(id)
    }

    fn inform(&mut self, text: impl Into<String>) {
        self.raise(Notice::info(text));
    }

    /// Where every failure the user should hear about ends: once, as a notice.
    fn report(&mut self, error: AppError) {
        self.raise(Notice::error(&error));
    }

    /// The same message again counts up (and comes to the front) instead of adding a line.
    fn raise(&mut self, notice: Notice) {
        let notices = &mut self.model.notices;
        if let Some(index) = notices
            .iter()
            .position(|n| n.text == notice.text && n.error == notice.error)
        {
            let mut same = notices.remove(index);
            same.count += 1;
            same.raised = notice.raised;
            notices.push(same);
        } else {
            notices.push(notice);
        }
    }

    fn keychain(&self) -> Option<&Arc<dyn KeyStore>> {
        self.services.keychain.store()
    }

    /// Checks the open editor's form again (after an edit, or a change to the tunnels or
    /// keys it is checked against), and starts the listen port check off the UI thread
    /// if the address is new.
    fn recheck_editor(&mut self) {
        let Some(editor) = self.view.editor.as_mut() else {
            return;
        };
        let model = &self.model;
        let spec = editor.to_spec(|name| model.key_location(name));
        let others: Vec<TunnelSpec> = model
            .tunnels
            .iter()
            .filter(|t| Some(t.id) != editor.editing)
            .map(|t| t.spec.clone())
            .collect();
        let ours = editor
            .editing
            .filter(|id| model.is_running(*id))
            .and_then(|id| model.tunnel(id))
            .map(|t| t.spec.listen.as_str());
        if let Some(request) = editor.recheck(&spec, &others, ours) {
            self.background.run(move || Message::PortChecked {
                problem: tunnel_form::check_listen_port(request.addr),
                listen: request.listen,
            });
        }
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
                    let spec = editor.to_spec(|name| self.model.key_location(name));
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
                self.inform("copied to the clipboard");
            }
            UiCommand::Dismiss(index) => {
                if index < self.model.notices.len() {
                    self.model.notices.remove(index);
                }
            }
            UiCommand::DismissAllNotices => {
                self.model.notices.clear();
                self.view.notices_expanded = false;
            }
            UiCommand::ExpandNotices(open) => self.view.notices_expanded = open,
            UiCommand::DismissKeychainNote => self.ui.settings.keychain_note_dismissed = true,
            UiCommand::ShowSettings(open) => self.view.settings_open = open,
            UiCommand::ChangeSettings(settings) => self.change_settings(settings),
            UiCommand::ExportTunnelsTo(path) => self.export_tunnels(path),
            UiCommand::ImportTunnelsFrom(path) => self.import_tunnels(path),
            UiCommand::ConfirmImport => self.confirm_import(),
            UiCommand::CancelImport => self.view.import_review = None,
            UiCommand::ShowWindow => {
                self.desktop.hidden = false;
                self.ctx
                    .send_viewport_cmd(egui::ViewportCommand::Visible(true));
                self.ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
            }
            UiCommand::Quit => {
                self.desktop.quitting = true;
                self.engine.stop_all();
                self.ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            UiCommand::ReloadConfig => {
                self.load_config();
                if matches!(self.model.config_status, ConfigStatus::Ok) {
                    self.inform("config reloaded");
                }
            }
            UiCommand::SetFarAddress(name, address) => {
                self.ui.far_addresses.insert(name, address);
            }
            UiCommand::SetSshDestination(name, destination) => {
                self.ui.ssh_destinations.insert(name, destination);
            }
            UiCommand::FarEnd(id, action) => self.far_end(id, action),
            UiCommand::EditorChanged => {}
        }
        self.recheck_editor();
    }

    /// Loads the tunnel's key off the UI thread, then starts (or updates) it.
    fn start(&mut self, id: TunnelId) {
        let Some(entry) = self.model.tunnel(id) else {
            return;
        };
        let definition = match entry.spec.validate() {
            Ok(definition) => definition,
            Err(errors) => {
                self.report(AppError::CannotStart {
                    name: entry.spec.name.clone(),
                    cause: StartError::Settings(errors),
                });
                return;
            }
        };
        let key = entry.spec.key.clone();
        self.model.starting.insert(id);
        let keychain = self.keychain().cloned();
        self.background.run(move || {
            let result = keys::load_for_tunnel(&key, keychain.as_ref())
                .map(|loaded| (TunnelSettings::new(definition, loaded.key), loaded.warnings))
                .map_err(StartError::from);
            Message::TunnelReady { id, result }
        });
    }

    /// Reads the ssh config's host aliases off the UI thread.
    fn read_ssh_hosts(&mut self) {
        let Some(path) = self.services.ssh.config_file.clone() else {
            return;
        };
        self.background.run(move || {
            // No ssh config is the common case, and not worth a notice.
            let text = std::fs::read_to_string(path).unwrap_or_default();
            Message::SshHosts(sluice_engine::ssh_host_aliases(&text))
        });
    }

    /// Sets up, checks or removes the tunnel's far end over ssh, on a thread of its own
    /// (ssh may take seconds per step); each step reports as it goes.
    fn far_end(&mut self, id: TunnelId, action: FarEndAction) {
        let Some(entry) = self.model.tunnel(id) else {
            return;
        };
        if self
            .model
            .far_end_runs
            .get(&id)
            .is_some_and(|r| r.running())
        {
            return;
        }
        let spec = entry.spec.clone();
        let destination = self
            .model
            .ssh_destination(&self.ui, &spec)
            .trim()
            .to_owned();
        let far_address = self.model.far_address(&self.ui, &spec);
        let record = FarEndRecord {
            ssh: destination.clone(),
            far_address: far_address.clone(),
        };
        self.model.far_end_runs.insert(
            id,
            FarEndRun {
                action,
                destination: destination.clone(),
                steps: Vec::new(),
                finished: None,
            },
        );
        let keychain = self.keychain().cloned();
        let ssh_command = self.services.ssh.command.clone();
        let this_host = self.model.host_name.clone();
        let mailbox = self.background.mailbox();
        self.background.run(move || {
            let prepared = (|| {
                let ssh = match ssh_command {
                    Some(command) => {
                        SshClient::new(command, &destination, FAR_END_CONNECT_TIMEOUT.as_secs())
                    }
                    None => SshClient::from_env(&destination, FAR_END_CONNECT_TIMEOUT.as_secs())?,
                };
                // Taking the far end down needs no key (it may be gone already).
                let key = match action {
                    FarEndAction::Remove => None,
                    _ => Some(FarEndKey::load(&spec.key, keychain.as_deref())?),
                };
                Ok(FarEndRequest {
                    action,
                    tunnel: spec,
                    far_address: Some(far_address),
                    this_host,
                    key,
                    ssh,
                })
            })();
            let result = prepared.and_then(|request: FarEndRequest| {
                sluice_engine::run_far_end(&request, &mut |report| {
                    mailbox.deliver(Message::FarEndStep { id, report });
                })
            });
            Message::FarEndDone {
                id,
                action,
                record,
                result,
            }
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
        // An edit in the same frame as the click is not checked yet.
        self.recheck_editor();
        let Some(editor) = self.view.editor.as_ref() else {
            return;
        };
        if !editor.problems().is_empty() {
            return;
        }
        let mut spec = editor.to_spec(|name| self.model.key_location(name));
        let editing = editor.editing;
        self.view.editor = None;
        match editing {
            Some(id) => {
                let was_running = self.model.is_running(id);
                if let Some(entry) = self.model.tunnels.iter_mut().find(|t| t.id == id) {
                    if self.ui.selected.as_deref() == Some(entry.spec.name.as_str()) {
                        self.ui.selected = Some(spec.name.clone());
                    }
                    // The editor does not show where the far end was set up; keep it.
                    spec.far_end = entry.spec.far_end.take();
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
            self.report(AppError::ConfigFileBroken(path.clone()));
            return;
        }
        let config = Config {
            tunnels: self.model.tunnels.iter().map(|t| t.spec.clone()).collect(),
            ..self.model.config_settings.clone()
        };
        if let Err(errors) = config.validate() {
            self.report(AppError::ConfigInvalid(errors));
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
            self.report(AppError::KeyListBroken(Arc::clone(problem)));
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
        let definition = match spec.validate() {
            Ok(definition) => definition,
            Err(errors) => {
                let verdict = ProbeVerdict::NotTried(ProbeNotTried::Settings(errors));
                self.model.probes.insert(key, Some(verdict));
                return;
            }
        };
        self.model.probes.insert(key, None);
        let keychain = self.keychain().cloned();
        self.background.run(move || {
            let result =
                keys::load_for_tunnel(&spec.key, keychain.as_ref()).map(|loaded| ProbeRequest {
                    target: definition.target,
                    key: loaded.key,
                    forward_secrecy: definition.forward_secrecy,
                    key_agreement: definition.key_agreement,
                    timeout: definition.timeout,
                    bind: definition.bind,
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
            DialogPurpose::ExportTunnels => DialogKind::SaveTunnelFile {
                suggested_name: "sluice-tunnels.ron".into(),
            },
            DialogPurpose::ImportTunnels => DialogKind::OpenTunnelFile,
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
                    self.report(problem.into());
                    return;
                }
                let copy_to = (save_copy || keychain.is_none())
                    .then(|| PathBuf::from(path.trim()))
                    .filter(|p| !p.as_os_str().is_empty());
                if (save_copy || keychain.is_none()) && copy_to.is_none() {
                    self.report(AppError::NoKeyFileChosen);
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
                    self.report(problem.into());
                    return;
                }
                if path.trim().is_empty() {
                    self.report(AppError::NoImportFileChosen);
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
            self.report(AppError::KeyInUse { name, users });
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

    fn change_settings(&mut self, settings: Settings) {
        if settings.start_at_login != self.ui.settings.start_at_login {
            let dir = match &self.services.desktop.login_entries {
                LoginEntries::System => None,
                LoginEntries::In(dir) => Some(dir.clone()),
                LoginEntries::Off => {
                    self.ui.settings = settings;
                    return;
                }
            };
            let on = settings.start_at_login;
            // A small file write, but still off the UI thread.
            self.background.run(move || Message::LoginEntry {
                on,
                result: platform::set_start_at_login(dir.as_deref(), on),
            });
        }
        self.ui.settings = settings;
    }

    fn export_tunnels(&mut self, path: PathBuf) {
        let specs: Vec<TunnelSpec> = self.model.tunnels.iter().map(|t| t.spec.clone()).collect();
        let text = tunnel_file::export(&specs, &self.model.keys);
        self.background.run(move || {
            let result = sluice_engine::write_atomic(&path, text.as_bytes())
                .map(|()| path.clone())
                .map_err(|source| SaveFailure::Write { path, source });
            Message::TunnelsExported(result)
        });
    }

    fn import_tunnels(&mut self, path: PathBuf) {
        self.background.run(move || {
            let result = match bounded_read::read_text(&path, MAX_TUNNEL_FILE_LEN) {
                Ok(text) => Ok((path, text)),
                Err(BoundedReadError::TooLarge { limit }) => {
                    Err(TunnelImportError::TooLarge { path, limit })
                }
                Err(BoundedReadError::Io(source)) => Err(TunnelImportError::Read { path, source }),
            };
            Message::TunnelFileRead(result)
        });
    }

    /// Adds the tunnels the user confirmed, if they still fit next to the tunnels there
    /// are now. None of them starts.
    fn confirm_import(&mut self) {
        let Some(incoming) = self.view.import_review.take() else {
            return;
        };
        let existing: Vec<TunnelSpec> = self.model.tunnels.iter().map(|t| t.spec.clone()).collect();
        if let Err(e) = tunnel_file::fits(&incoming.tunnels, &existing) {
            self.report(AppError::TunnelImport(e));
            return;
        }
        let count = incoming.tunnels.len();
        for spec in incoming.tunnels {
            let id = self.fresh_id();
            self.model.tunnels.push(TunnelEntry { id, spec });
        }
        self.save_config();
        self.inform(format!("imported {count} tunnel(s); none is started"));
    }

    /// The window was asked to close: with tunnels running (and the setting on) it hides
    /// and they go on; otherwise, or when quitting, the app exits.
    fn close_requested(&mut self) {
        if self.desktop.quitting
            || !self.ui.settings.keep_running_when_closed
            || !self.model.any_running()
        {
            self.engine.stop_all();
            return;
        }
        self.ctx
            .send_viewport_cmd(egui::ViewportCommand::CancelClose);
        self.ctx
            .send_viewport_cmd(egui::ViewportCommand::Visible(false));
        self.desktop.hidden = true;
        if !self.ui.settings.close_explained {
            self.ui.settings.close_explained = true;
            let running = self
                .model
                .tunnels
                .iter()
                .filter(|t| self.model.is_running(t.id))
                .count();
            let way_back = if self.desktop.tray.is_some() && self.desktop.in_panel {
                "Its tray icon shows them; choose Quit there to stop them."
            } else {
                "Start Sluice again to show the window; choose Quit there to stop them."
            };
            self.notify(Alert {
                summary: "Sluice keeps running".into(),
                body: format!(
                    "{running} tunnel(s) stay up with the window closed. {way_back} Settings can make closing quit instead."
                ),
                failure: false,
            });
        }
    }

    /// How many changes wait to be told in a notification (held back by the rate limit).
    pub fn pending_alerts(&self) -> usize {
        self.desktop.alerts.pending().count()
    }

    /// Whether the window is hidden (closed with tunnels running, or started hidden).
    pub fn is_hidden(&self) -> bool {
        self.desktop.hidden
    }

    // ---- background results ------------------------------------------------------

    fn handle_message(&mut self, message: Message) {
        match message {
            Message::Saved { target, result } => {
                if let Err(failure) = result {
                    self.report(match target {
                        SaveTarget::Config => AppError::ConfigNotWritten(failure),
                        SaveTarget::KeyIndex => AppError::KeyListNotWritten(failure),
                    });
                }
            }
            Message::TunnelReady { id, result } => {
                // Stopped (or deleted) while the key was loading: do not start after all.
                if !self.model.starting.remove(&id) {
                    return;
                }
                let Some(entry) = self.model.tunnel(id) else {
                    return;
                };
                let name = entry.spec.name.clone();
                match result {
                    Ok((settings, warnings)) => {
                        for warning in warnings {
                            self.inform(format!("{}: {warning}", settings.definition.name));
                        }
                        self.engine.start_tunnel(id, settings);
                    }
                    Err(cause) => self.report(AppError::CannotStart { name, cause }),
                }
            }
            Message::KeyGenerated(result) => match result {
                Ok(info) => {
                    self.inform(format!(
                        "generated key \"{}\" ({}), fingerprint {}",
                        info.name,
                        info.where_label(),
                        info.fingerprint
                    ));
                    self.model.keys.keys.push(info);
                    self.save_keys();
                }
                Err(e) => self.report(AppError::KeyGenerate(e)),
            },
            Message::KeyImported(result) => match result {
                Ok((info, warnings)) => {
                    if let Some(same) = self.model.keys.with_fingerprint(&info.fingerprint) {
                        let text = format!(
                            "note: \"{}\" is the same key as \"{}\"",
                            info.name, same.name
                        );
                        self.inform(text);
                    }
                    for warning in warnings {
                        self.inform(format!("{}: {warning}", info.name));
                    }
                    self.inform(format!(
                        "imported key \"{}\", fingerprint {}",
                        info.name, info.fingerprint
                    ));
                    self.model.keys.keys.push(info);
                    self.save_keys();
                }
                Err(e) => self.report(AppError::KeyImport(e)),
            },
            Message::KeyExported(result) => match result {
                Ok(path) => self.inform(format!("key written to {} (mode 0600)", path.display())),
                Err(e) => self.report(AppError::KeyExport(e)),
            },
            Message::KeyDeleted { name, result } => match result {
                Ok(()) => {
                    self.model.keys.keys.retain(|k| k.name != name);
                    self.save_keys();
                    self.inform(format!("deleted key \"{name}\""));
                }
                Err(cause) => self.report(AppError::KeyDelete { name, cause }),
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
                    let verdict = ProbeVerdict::NotTried(ProbeNotTried::Key(e));
                    self.model.probes.insert(key, Some(verdict));
                }
            },
            Message::Probe { key, outcome } => {
                self.model
                    .probes
                    .insert(key, Some(ProbeVerdict::Answered(outcome)));
            }
            Message::PortChecked { listen, problem } => {
                if let Some(editor) = &mut self.view.editor {
                    editor.port_checked(&listen, problem);
                }
            }
            Message::FarEndStep { id, report } => {
                if let Some(run) = self.model.far_end_runs.get_mut(&id) {
                    // A step reports when it starts and again when it ends: keep one line.
                    match run.steps.last_mut() {
                        Some(last) if last.step == report.step => *last = report,
                        _ => run.steps.push(report),
                    }
                }
            }
            Message::FarEndDone {
                id,
                action,
                record,
                result,
            } => self.far_end_done(id, action, record, result),
            Message::SshHosts(hosts) => self.model.ssh_hosts = hosts,
            Message::Notified(result) => {
                if let Err(failure) = result
                    && !std::mem::replace(&mut self.desktop.notify_failed, true)
                {
                    self.report(AppError::Notify(failure));
                }
            }
            Message::LoginEntry { on, result } => match result {
                Ok(path) if on => self.inform(format!(
                    "Sluice will start at login, in the tray ({})",
                    path.display()
                )),
                Ok(_) => self.inform("Sluice will not start at login"),
                Err(e) => {
                    self.ui.settings.start_at_login = !on;
                    self.report(AppError::LoginStart(e));
                }
            },
            Message::TunnelsExported(result) => match result {
                Ok(path) => self.inform(format!(
                    "{} tunnel(s) exported to {} (keys are not in the file)",
                    self.model.tunnels.len(),
                    path.display()
                )),
                Err(e) => self.report(AppError::TunnelExport(e)),
            },
            Message::TunnelFileRead(result) => {
                let existing: Vec<TunnelSpec> =
                    self.model.tunnels.iter().map(|t| t.spec.clone()).collect();
                let imported = result.and_then(|(path, text)| {
                    tunnel_file::import(&path, &text, &self.model.keys, &existing)
                });
                // Nothing is added before the user has seen what the file would add.
                match imported {
                    Ok(incoming) => self.view.import_review = Some(incoming),
                    Err(e) => self.report(AppError::TunnelImport(e)),
                }
            }
        }
    }

    /// Remembers where a set-up ran (and forgets it after a remove), in the config.
    fn far_end_done(
        &mut self,
        id: TunnelId,
        action: FarEndAction,
        record: FarEndRecord,
        result: Result<(), sluice_engine::FarEndError>,
    ) {
        let succeeded = result.is_ok();
        if let Some(run) = self.model.far_end_runs.get_mut(&id) {
            run.finished = Some(result);
        }
        let Some(entry) = self.model.tunnels.iter_mut().find(|t| t.id == id) else {
            return;
        };
        if !succeeded {
            return;
        }
        let name = entry.spec.name.clone();
        let remembered = match action {
            FarEndAction::Setup => Some(record),
            FarEndAction::Remove => None,
            FarEndAction::Check => return,
        };
        entry.spec.far_end = remembered;
        self.ui.ssh_destinations.remove(&name);
        self.ui.far_addresses.remove(&name);
        self.save_config();
    }

    fn dialog_answered(&mut self, purpose: DialogPurpose, answer: DialogAnswer) {
        let path = match answer {
            DialogAnswer::Picked(path) => path.display().to_string(),
            DialogAnswer::Cancelled => return,
            DialogAnswer::Unavailable => {
                self.view.dialogs_unavailable = true;
                self.report(AppError::NoFileDialog);
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
            DialogPurpose::ExportTunnels => self.export_tunnels(PathBuf::from(path)),
            DialogPurpose::ImportTunnels => self.import_tunnels(PathBuf::from(path)),
        }
    }
}

impl eframe::App for SluiceApp {
    /// Runs every frame, also while the window is hidden: engine news, the tray, alerts,
    /// and what closing the window means.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.sync();
        let quit = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::Q);
        if ctx.input_mut(|i| i.consume_shortcut(&quit)) {
            self.execute(UiCommand::Quit);
        }
        if ctx.input(|i| i.viewport().close_requested()) {
            self.close_requested();
        }
        if self.desktop.hide_at_start > 0 && self.desktop.hidden {
            // Started hidden (at login). eframe shows the window after its first frame
            // whatever it was built with, so it is hidden again in the frame after that.
            self.desktop.hide_at_start -= 1;
            ctx.send_viewport_cmd(egui::ViewportCommand::Visible(false));
            ctx.request_repaint();
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let history = self
            .model
            .selected(&self.ui)
            .map(|id| self.engine.rate_history(id))
            .unwrap_or_default();
        let commands = views::show(ui, &self.model, &self.ui, &mut self.view, &history);
        if !commands.is_empty() {
            // What the commands changed shows in the next frame.
            self.ctx.request_repaint();
        }
        for command in commands {
            self.execute(command);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, UI_STATE_KEY, &self.ui);
    }
}
