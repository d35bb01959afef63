//! The top bar: the app's actions and its menu (settings, export and import of tunnels,
//! Quit), and banners for what needs the user's attention (a config file that could not be
//! read, no keychain, notices). Several notices collapse into one line with a count.

use std::path::PathBuf;

use egui::RichText;

use crate::command::UiCommand;
use crate::model::{ConfigStatus, DialogPurpose, Model, Notice, UiState, ViewState};
use crate::theme;
use crate::views::widgets::{banner, keychain_note};

pub fn show(
    ui: &mut egui::Ui,
    model: &Model,
    state: &UiState,
    view: &mut ViewState,
    out: &mut Vec<UiCommand>,
) {
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
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.menu_button("Menu", |ui| app_menu(ui, model, view, out));
        });
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
    if let Some(why) = &model.keychain_problem
        && !state.settings.keychain_note_dismissed
    {
        banner(ui, theme::WARN, |ui| {
            ui.horizontal(|ui| {
                if ui
                    .small_button("Got it")
                    .on_hover_text("Hide this here; the keys window keeps showing it")
                    .clicked()
                {
                    out.push(UiCommand::DismissKeychainNote);
                }
                ui.vertical(|ui| keychain_note(ui, why));
            });
        });
    }
    if let Some(problem) = &model.keys_broken {
        banner(ui, theme::ERROR, |ui| {
            ui.label(problem.to_string());
        });
    }
    notices(ui, &model.notices, view.notices_expanded, out);
    ui.add_space(4.0);
}

fn app_menu(ui: &mut egui::Ui, model: &Model, view: &mut ViewState, out: &mut Vec<UiCommand>) {
    if ui.button("Settings…").clicked() {
        out.push(UiCommand::ShowSettings(true));
    }
    ui.separator();
    if ui
        .add_enabled(
            !model.tunnels.is_empty(),
            egui::Button::new("Export tunnels…"),
        )
        .on_hover_text("Write the tunnels to a file, without keys (they are named by fingerprint)")
        .clicked()
    {
        out.push(UiCommand::OpenDialog(DialogPurpose::ExportTunnels));
    }
    if ui
        .button("Import tunnels…")
        .on_hover_text("Add the tunnels of an exported file; their keys must be here already")
        .clicked()
    {
        out.push(UiCommand::OpenDialog(DialogPurpose::ImportTunnels));
    }
    if view.dialogs_unavailable {
        let label = ui.label("Tunnel file (no file dialog here: type the path)");
        ui.add(egui::TextEdit::singleline(&mut view.tunnel_file_path).desired_width(260.0))
            .labelled_by(label.id);
        let path = view.tunnel_file_path.trim();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!path.is_empty(), egui::Button::new("Export to this file"))
                .clicked()
            {
                out.push(UiCommand::ExportTunnelsTo(PathBuf::from(path)));
            }
            if ui
                .add_enabled(!path.is_empty(), egui::Button::new("Import this file"))
                .clicked()
            {
                out.push(UiCommand::ImportTunnelsFrom(PathBuf::from(path)));
            }
        });
    }
    ui.separator();
    if ui
        .button("Quit")
        .on_hover_text("Stop every tunnel and exit (Ctrl+Q)")
        .clicked()
    {
        out.push(UiCommand::Quit);
    }
}

/// One notice as a line, or several: expanded, each with its own line; collapsed, one
/// line with the newest first and a count.
fn notices(ui: &mut egui::Ui, notices: &[Notice], expanded: bool, out: &mut Vec<UiCommand>) {
    let color = |error: bool| if error { theme::ERROR } else { theme::OK };
    let text = |n: &Notice| match n.count {
        1 => n.text.clone(),
        count => format!("{} (×{count})", n.text),
    };
    match notices {
        [] => {}
        [notice] => banner(ui, color(notice.error), |ui| {
            ui.horizontal(|ui| {
                if ui.small_button("✖").on_hover_text("Dismiss").clicked() {
                    out.push(UiCommand::Dismiss(0));
                }
                ui.add(egui::Label::new(text(notice)).wrap());
            });
        }),
        several if expanded => {
            for (index, notice) in several.iter().enumerate().rev() {
                banner(ui, color(notice.error), |ui| {
                    ui.horizontal(|ui| {
                        if ui.small_button("✖").on_hover_text("Dismiss").clicked() {
                            out.push(UiCommand::Dismiss(index));
                        }
                        ui.add(egui::Label::new(text(notice)).wrap());
                    });
                });
            }
            ui.horizontal(|ui| {
                if ui.small_button("Collapse").clicked() {
                    out.push(UiCommand::ExpandNotices(false));
                }
                if ui.small_button("Dismiss all").clicked() {
                    out.push(UiCommand::DismissAllNotices);
                }
            });
        }
        several => {
            let any_error = several.iter().any(|n| n.error);
            banner(ui, color(any_error), |ui| {
                ui.horizontal(|ui| {
                    if ui.small_button("Dismiss all").clicked() {
                        out.push(UiCommand::DismissAllNotices);
                    }
                    if ui
                        .small_button(format!("Show all {}", several.len()))
                        .clicked()
                    {
                        out.push(UiCommand::ExpandNotices(true));
                    }
                    // Newest first, on one line; the rest is a click away.
                    let line = several
                        .iter()
                        .rev()
                        .map(text)
                        .collect::<Vec<_>>()
                        .join("   ·   ");
                    ui.add(egui::Label::new(line).truncate());
                });
            });
        }
    }
}
