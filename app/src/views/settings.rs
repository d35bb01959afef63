//! The settings window: what closing the window does, desktop notifications, and
//! starting at login. It edits a copy and asks the app to apply it.

use egui::RichText;

use crate::command::{DesktopCommand, UiCommand};
use crate::model::Settings;
use crate::theme;

pub fn show(ctx: &egui::Context, settings: &Settings, out: &mut Vec<UiCommand>) {
    let mut open = true;
    let mut changed = settings.clone();
    egui::Window::new("Settings")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .default_width(460.0)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            ui.checkbox(
                &mut changed.keep_running_when_closed,
                "Keep tunnels running when the window is closed",
            );
            hint(
                ui,
                "The window hides and the tray icon stays; Quit (in the tray, the menu or Ctrl+Q) stops the tunnels. With nothing running, closing always quits.",
            );
            ui.checkbox(&mut changed.notifications, "Desktop notifications");
            hint(
                ui,
                "When a running tunnel starts failing (wrong key, target unreachable, listener lost) and when it works again; at most one every 30 s.",
            );
            ui.checkbox(&mut changed.start_at_login, "Start Sluice at login");
            hint(
                ui,
                "Starts hidden in the tray, with the tunnels marked \"start when Sluice starts\" up.",
            );
        });
    if changed != *settings {
        out.push(DesktopCommand::ChangeSettings(changed).into());
    }
    if !open {
        out.push(DesktopCommand::ShowSettings(false).into());
    }
}

fn hint(ui: &mut egui::Ui, text: &str) {
    ui.indent("hint", |ui| {
        ui.label(RichText::new(text).small().color(theme::MUTED));
    });
    ui.add_space(4.0);
}
