//! The app's life beyond the window: the tray icon and its menu, desktop notifications
//! (rate-limited in `alerts`), the second start's "show", settings and start at login,
//! and what closing the window means (with tunnels running it hides; Quit stops them).

use std::sync::mpsc;
use std::time::Instant;

use super::SluiceApp;
use crate::alerts::{Alert, Alerts};
use crate::background::{DesktopMessage, Message};
use crate::command::{DesktopCommand, TunnelCommand, UiCommand};
use crate::error::AppError;
use crate::model::{Model, Settings};
use crate::platform::{self, TrayIcon, TrayReport};
use crate::services::{LoginEntries, Services};
use crate::tray::{TrayAction, TraySnapshot};

/// The app's life beyond the window: the tray icon, alerts, the window's visibility.
pub(super) struct DesktopState {
    tray: Option<TrayIcon>,
    /// Tray actions and the second start's "show", from their threads.
    requests: mpsc::Receiver<DesktopRequest>,
    /// What the tray shows now (sent again only when it changes).
    tray_shown: Option<TraySnapshot>,
    pub(super) alerts: Alerts,
    /// The window is hidden (closed with tunnels running, or started hidden).
    hidden: bool,
    /// Quit was asked for: the next close is not turned into hiding.
    quitting: bool,
    /// A notification failed once; the notice said so, and is not repeated.
    notify_failed: bool,
    /// Frames left in which a hidden start hides the window (see `window_logic`).
    hide_at_start: u8,
    /// A panel shows the tray icon.
    in_panel: bool,
}

enum DesktopRequest {
    Tray(TrayReport),
    Show,
}

impl DesktopState {
    /// Serves the one-instance socket and starts the tray icon, as the services say.
    pub(super) fn start(ctx: &egui::Context, services: &mut Services, model: &Model) -> Self {
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
            platform::start_tray(model.tray_snapshot(), move |report| {
                let _ = requests_in.send(DesktopRequest::Tray(report));
                wake.request_repaint();
            })
        });
        let hidden = services.desktop.start_hidden;
        DesktopState {
            tray,
            requests,
            tray_shown: None,
            alerts: Alerts::with_gap(services.desktop.notification_gap),
            hidden,
            quitting: false,
            notify_failed: false,
            hide_at_start: if hidden { 2 } else { 0 },
            in_panel: false,
        }
    }
}

impl SluiceApp {
    pub(super) fn desktop_command(&mut self, command: DesktopCommand) {
        match command {
            DesktopCommand::ShowSettings(open) => self.view.settings_open = open,
            DesktopCommand::ChangeSettings(settings) => self.change_settings(settings),
            DesktopCommand::DismissKeychainNote => self.ui.settings.keychain_note_dismissed = true,
            DesktopCommand::ShowWindow => {
                self.desktop.hidden = false;
                self.ctx
                    .send_viewport_cmd(egui::ViewportCommand::Visible(true));
                self.ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
            }
            DesktopCommand::Quit => {
                self.desktop.quitting = true;
                self.stop_all();
                self.ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        }
    }

    pub(super) fn desktop_message(&mut self, message: DesktopMessage) {
        match message {
            DesktopMessage::Notified(result) => {
                if let Err(failure) = result
                    && !std::mem::replace(&mut self.desktop.notify_failed, true)
                {
                    self.report(AppError::Notify(failure));
                }
            }
            DesktopMessage::LoginEntry { on, result } => match result {
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
        }
    }

    /// The tray's and the second start's requests, the notifications due, the notices
    /// fading, and the tray icon brought up to date. Every frame, after the engine's news.
    pub(super) fn desktop_sync(&mut self) {
        while let Ok(request) = self.desktop.requests.try_recv() {
            match request {
                DesktopRequest::Show => self.execute(DesktopCommand::ShowWindow.into()),
                DesktopRequest::Tray(TrayReport::Action(action)) => {
                    let command: UiCommand = match action {
                        TrayAction::Show => DesktopCommand::ShowWindow.into(),
                        TrayAction::Quit => DesktopCommand::Quit.into(),
                        TrayAction::Start(name) => TunnelCommand::Start(name).into(),
                        TrayAction::Stop(name) => TunnelCommand::Stop(name).into(),
                    };
                    self.execute(command);
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
            let snapshot = self.model.tray_snapshot();
            if self.desktop.tray_shown.as_ref() != Some(&snapshot) {
                tray.show(snapshot.clone());
                self.desktop.tray_shown = Some(snapshot);
            }
        }
    }

    /// Quit's shortcut, closing the window, and a hidden start.
    pub(super) fn window_logic(&mut self, ctx: &egui::Context) {
        let quit = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::Q);
        if ctx.input_mut(|i| i.consume_shortcut(&quit)) {
            self.execute(DesktopCommand::Quit.into());
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
                .run(move || Message::Desktop(DesktopMessage::Notified(platform::notify(&alert))));
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
            self.background.run(move || {
                Message::Desktop(DesktopMessage::LoginEntry {
                    on,
                    result: platform::set_start_at_login(dir.as_deref(), on),
                })
            });
        }
        self.ui.settings = settings;
    }

    /// The window was asked to close: with tunnels running (and the setting on) it hides
    /// and they go on; otherwise, or when quitting, the app exits.
    fn close_requested(&mut self) {
        if self.desktop.quitting
            || !self.ui.settings.keep_running_when_closed
            || !self.model.any_running()
        {
            self.stop_all();
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
                .files
                .tunnels
                .iter()
                .filter(|t| self.model.is_running(&t.name))
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
}
