//! The top bar: the app's actions, and banners for what needs the user's attention
//! (a config file that could not be read, no keychain, notices).

use egui::RichText;

use crate::command::UiCommand;
use crate::model::{ConfigStatus, Model};
use crate::theme;
use crate::views::widgets::banner;

pub fn show(ui: &mut egui::Ui, model: &Model, out: &mut Vec<UiCommand>) {
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.heading("Sluice");
        ui.separator();
        if ui
            .button("+ New tunnel")
            .on_hover_text("Create a tunnel to or from a machine running spiped or sluiced")
            .clicked()
        {
            out.push(UiCommand::NewTunnel);
        }
        let any = !model.tunnels.is_empty();
        if ui
            .add_enabled(any, egui::Button::new("▶ Start all"))
            .clicked()
        {
            out.push(UiCommand::StartAll);
        }
        if ui
            .add_enabled(any, egui::Button::new("■ Stop all"))
            .clicked()
        {
            out.push(UiCommand::StopAll);
        }
        if ui
            .button("🔑 Keys")
            .on_hover_text("Generate, import, export and delete keys")
            .clicked()
        {
            out.push(UiCommand::ShowKeys(true));
        }
    });
    ui.add_space(4.0);

    if let ConfigStatus::Broken { path, error } = &model.config_status {
        banner(ui, theme::ERROR, |ui| {
            ui.label(RichText::new("The tunnel list could not be read").strong());
            ui.label(format!("File: {}", path.display()));
            ui.label(error.to_string());
            ui.label(
                "The file was left untouched and nothing will be written to it. Fix it (or move it aside), then reload.",
            );
            if ui.button("⟳ Reload").clicked() {
                out.push(UiCommand::ReloadConfig);
            }
        });
    }
    if let Some(why) = &model.keychain_problem {
        banner(ui, theme::WARN, |ui| {
            ui.label(RichText::new("No keychain available").strong());
            ui.label(why.to_string());
            ui.label(
                "Keys are kept as key files instead (mode 0600); tunnels refer to them by path.",
            );
        });
    }
    if let Some(problem) = &model.keys_broken {
        banner(ui, theme::ERROR, |ui| {
            ui.label(problem.to_string());
        });
    }
    for (index, notice) in model.notices.iter().enumerate() {
        let color = if notice.error {
            theme::ERROR
        } else {
            theme::OK
        };
        banner(ui, color, |ui| {
            ui.horizontal(|ui| {
                if ui.small_button("✖").on_hover_text("Dismiss").clicked() {
                    out.push(UiCommand::Dismiss(index));
                }
                ui.label(&notice.text);
            });
        });
    }
    ui.add_space(4.0);
}
