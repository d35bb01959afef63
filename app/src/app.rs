//! SluiceApp: the one place that carries out what the views ask for. Views draw from the
//! [`Model`] and return [`UiCommand`]s; background work comes back as [`Message`]s; each
//! goes to the feature it belongs to (`tunnels`, `keys`, `far_end`, `desktop`, below),
//! which handles its own commands, messages and dialogs. The engine runs the tunnels on
//! its own threads and wakes the UI when something changed, so the UI repaints on change
//! and sits idle otherwise. Errors become notices here, once.

mod desktop;
mod far_end;
mod keys;
mod tunnels;

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use sluice_engine::{
    AuditTrail, CheckSample, Config, ConfigError, DownCause, Engine, EventStream, Health, KeyStore,
    Missed, RateSample, TunnelStatus,
};

use crate::background::{Background, Mailbox, Message, SaveTarget};
use crate::command::{UiCommand, ViewCommand};
use crate::error::{AppError, SaveFailure, StartupError};
use crate::file_dialogs::{DialogAnswer, DialogKind};
use crate::keys::KeyIndex;
use crate::model::{
    ConfigStatus, Environment, Files, LOG_LINES, Mirror, Model, Notice, UiState, ViewState,
};
use crate::services::Services;
use crate::views;

use desktop::DesktopState;
use tunnels::TunnelsState;

pub struct SluiceApp {
    ctx: egui::Context,
    services: Services,
    engine: Engine,
    events: EventStream,
    /// One record per connection when it ends (the Connections tab); `None` only if
    /// something else took the engine's trail first.
    audit: Option<AuditTrail>,
    background: Background,
    inbox: mpsc::Receiver<Message>,
    tunnels: TunnelsState,
    desktop: DesktopState,
    health: HealthNews,
    pub model: Model,
    pub ui: UiState,
    pub view: ViewState,
}

const UI_STATE_KEY: &str = "sluice-ui";

/// How long after one health change the engine may hold the next back: it publishes (and
/// wakes the app for) at most one per tunnel in this long, and keeps a change that comes
/// sooner for later. The engine's `PUBLISH_GAP`, plus a second.
const HEALTH_QUIET: Duration = Duration::from_secs(11);

/// Keeps the window, the tray and alerts up to date with far-end health the engine has
/// changed without waking the app: its health events are throttled (for its log), and a
/// change it holds back wakes nobody. So for a few seconds after a change is seen, the
/// app looks again every second; the rest of the time it sleeps until woken.
#[derive(Default)]
struct HealthNews {
    /// Per tunnel: up, down (with its cause) or unknown, as last seen.
    seen: HashMap<String, (u8, Option<DownCause>)>,
    changed: Option<Instant>,
}

impl HealthNews {
    fn observe(&mut self, ctx: &egui::Context, statuses: &HashMap<String, TunnelStatus>) {
        let now = Instant::now();
        self.seen.retain(|name, _| statuses.contains_key(name));
        for (name, status) in statuses {
            let verdict = match &status.health {
                Health::Unknown => (0, None),
                Health::Up { .. } => (1, None),
                Health::Down { .. } => (2, status.health.down_cause()),
            };
            // A tunnel first seen knowing nothing is no news.
            let before = self.seen.insert(name.clone(), verdict).unwrap_or((0, None));
            if before != verdict {
                self.changed = Some(now);
            }
        }
        if self
            .changed
            .is_some_and(|at| now.saturating_duration_since(at) < HEALTH_QUIET)
        {
            ctx.request_repaint_after(Duration::from_secs(1));
        }
    }
}

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

    /// The config and the key list are read here, once, before the first frame (there is
    /// no window yet to keep responsive); every later read or write is off the UI thread.
    pub fn with_context(
        ctx: egui::Context,
        mut services: Services,
        ui: UiState,
    ) -> Result<SluiceApp, StartupError> {
        let repaint = ctx.clone();
        let engine =
            Engine::start(move || repaint.request_repaint()).map_err(StartupError::Engine)?;
        let events = engine.subscribe();
        let audit = engine.audit_trail();
        let (background, inbox) = Background::new(ctx.clone());
        let (keys, keys_broken) = match KeyIndex::load(&services.paths.keys_file) {
            Ok(index) => (index, None),
            Err(problem) => (KeyIndex::new(), Some(Arc::new(problem))),
        };
        let model = Model {
            files: Files {
                tunnels: Vec::new(),
                config_status: ConfigStatus::Ok,
                config_path: services.paths.config_file.clone(),
                config_settings: Config::default(),
                keys,
                keys_broken,
            },
            mirror: Mirror::default(),
            environment: Environment {
                host_name: services.host_name.clone(),
                keychain_problem: services.keychain.problem().cloned(),
                ssh_hosts: Vec::new(),
            },
            notices: Vec::new(),
        };
        let desktop = DesktopState::start(&ctx, &mut services, &model);
        let mut app = SluiceApp {
            ctx,
            services,
            engine,
            events,
            audit,
            background,
            inbox,
            tunnels: TunnelsState::default(),
            health: HealthNews::default(),
            desktop,
            model,
            ui,
            view: ViewState::default(),
        };
        let config = Config::load(&app.services.paths.config_file);
        app.config_read(config);
        app.read_ssh_hosts();
        app.start_autostart_tunnels();
        Ok(app)
    }

    /// Folds in what happened since the last frame: engine events, statuses, background
    /// results, the tray and the second start. Called at the start of every frame.
    pub fn sync(&mut self) {
        while let Some(event) = self.events.try_next() {
            match event {
                Ok(event) => {
                    let log = self
                        .model
                        .mirror
                        .logs
                        .entry(event.tunnel.clone())
                        .or_default();
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(event);
                }
                Err(Missed(missed)) => self.inform(format!(
                    "{missed} events came too fast to show; the counters are still exact"
                )),
            }
        }
        if let Some(audit) = &mut self.audit {
            while let Some(record) = audit.try_next() {
                self.model.mirror.connections.record(record);
            }
        }
        let statuses = self.engine.statuses();
        let model = &self.model;
        self.desktop.alerts.observe(&statuses, |name| {
            model
                .tunnel(name)
                .map(|t| t.target.clone())
                .unwrap_or_default()
        });
        let mirror = &mut self.model.mirror;
        mirror.failing = self.desktop.alerts.failing().map(str::to_owned).collect();
        // A tunnel retired while its connections finish shares its name with nothing the
        // list shows; the declared one of a name wins.
        mirror.statuses.clear();
        for status in statuses {
            mirror.statuses.insert(status.name.clone(), status);
        }
        let mut any = false;
        while let Ok(message) = self.inbox.try_recv() {
            self.handle_message(message);
            any = true;
        }
        // Keys or tunnels may have changed under the open editor.
        if any {
            self.recheck_editor();
        }
        self.health.observe(&self.ctx, &self.model.mirror.statuses);
        self.desktop_sync();
    }

    pub fn rate_history(&self, name: &str) -> Vec<RateSample> {
        self.engine.rate_history(name)
    }

    /// The tunnel's health checks over time (the detail panel's latency chart).
    pub fn check_history(&self, name: &str) -> Vec<CheckSample> {
        self.engine.check_history(name)
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

    fn mailbox(&self) -> Mailbox {
        self.background.mailbox()
    }

    /// Shows a file dialog; its answer comes back as the message `answered` makes.
    fn ask_file(
        &mut self,
        kind: DialogKind,
        answered: impl FnOnce(DialogAnswer) -> Message + Send + 'static,
    ) {
        let mailbox = self.mailbox();
        self.services.dialogs.open(
            kind,
            Box::new(move |answer| mailbox.deliver(answered(answer))),
        );
    }

    /// The path a dialog gave, or `None` (cancelled, or no dialog could be shown: then the
    /// forms ask for a typed path from now on).
    fn picked(&mut self, answer: DialogAnswer) -> Option<std::path::PathBuf> {
        match answer {
            DialogAnswer::Picked(path) => Some(path),
            DialogAnswer::Cancelled => None,
            DialogAnswer::Unavailable => {
                self.view.dialogs_unavailable = true;
                self.report(AppError::NoFileDialog);
                None
            }
        }
    }

    // ---- commands ----------------------------------------------------------------

    pub fn execute(&mut self, command: UiCommand) {
        match command {
            UiCommand::Tunnel(command) => self.tunnel_command(command),
            UiCommand::Key(command) => self.key_command(command),
            UiCommand::FarEnd(command) => self.far_end_command(command),
            UiCommand::Desktop(command) => self.desktop_command(command),
            UiCommand::View(command) => self.view_command(command),
        }
        self.recheck_editor();
    }

    fn view_command(&mut self, command: ViewCommand) {
        match command {
            ViewCommand::Select(name) => {
                self.ui.selected = self.model.tunnel(&name).map(|t| t.name.clone());
            }
            ViewCommand::ShowTab(tab) => self.ui.tab = tab,
            ViewCommand::Copy(text) => {
                self.ctx.copy_text(text);
                self.inform("copied to the clipboard");
            }
            ViewCommand::Dismiss(index) => {
                if index < self.model.notices.len() {
                    self.model.notices.remove(index);
                }
            }
            ViewCommand::DismissAllNotices => {
                self.model.notices.clear();
                self.view.notices_expanded = false;
            }
            ViewCommand::ExpandNotices(open) => self.view.notices_expanded = open,
            ViewCommand::CancelConfirm => self.view.confirm = None,
        }
    }

    // ---- background results ------------------------------------------------------

    fn handle_message(&mut self, message: Message) {
        match message {
            Message::Saved { target, result } => self.saved(target, result),
            Message::Tunnel(message) => self.tunnel_message(message),
            Message::Key(message) => self.key_message(message),
            Message::FarEnd(message) => self.far_end_message(message),
            Message::Desktop(message) => self.desktop_message(message),
        }
    }

    fn saved(&mut self, target: SaveTarget, result: Result<(), SaveFailure>) {
        if let Err(failure) = result {
            self.report(match target {
                SaveTarget::Config => AppError::ConfigNotWritten(failure),
                SaveTarget::KeyIndex => AppError::KeyListNotWritten(failure),
            });
        }
    }

    /// Reads the config's text into the files' part of the model. A missing file means no
    /// tunnels yet; a broken one is shown with its location and never overwritten.
    fn config_read(&mut self, result: Result<Config, ConfigError>) {
        let path = self.services.paths.config_file.clone();
        match result {
            Ok(mut config) => {
                self.model.files.config_status = ConfigStatus::Ok;
                let tunnels = std::mem::take(&mut config.tunnels);
                self.model.files.config_settings = config;
                self.replace_tunnels(tunnels);
            }
            Err(ConfigError::NotFound(_)) => {
                self.model.files.config_status = ConfigStatus::Ok;
                self.replace_tunnels(Vec::new());
            }
            Err(error) => self.model.files.config_status = ConfigStatus::Broken { path, error },
        }
    }
}

impl eframe::App for SluiceApp {
    /// Runs every frame, also while the window is hidden: engine news, the tray, alerts,
    /// and what closing the window means.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.sync();
        self.window_logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let history = self
            .model
            .selected(&self.ui)
            .map(|spec| views::History {
                rates: self.engine.rate_history(&spec.name),
                checks: self.engine.check_history(&spec.name),
            })
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
