//! The top bar: the app's actions and its menu (settings, export and import of tunnels,
//! Quit), and banners for what needs the user's attention (a config file that could not be
//! read, no keychain, notices). Several notices collapse into one line with a count.

use std::path::PathBuf;

use egui::RichText;

use crate::command::{DesktopCommand, KeyCommand, TunnelCommand, UiCommand, ViewCommand};
use crate::model::{ConfigStatus, Model, Notice, UiState, ViewState};
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
            out.push(TunnelCommand::New.into());
        }
        let any = !model.files.tunnels.is_empty();
        if ui
            .add_enabled(any, egui::Button::new("▶ Start all"))
            .clicked()
        {
            out.push(TunnelCommand::StartAll.into());
        }
        if ui
            .add_enabled(any, egui::Button::new("■ Stop all"))
            .clicked()
        {
            out.push(TunnelCommand::StopAll.into());
        }
        if ui
            .button("🔑 Keys")
            .on_hover_text("Generate, import, export and delete keys")
            .clicked()
        {
            out.push(KeyCommand::ShowKeys(true).into());
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.menu_button("Menu", |ui| app_menu(ui, model, view, out));
        });
    });
    ui.add_space(4.0);

    if let ConfigStatus::Broken { path, error } = &model.files.config_status {
        banner(ui, theme::ERROR, |ui| {
            ui.label(RichText::new("The tunnel list could not be read").strong());
            ui.label(format!("File: {}", path.display()));
            ui.label(error.to_string());
            ui.label(
                "The file was left untouched and nothing will be written to it. Fix it (or move it aside), then reload.",
            );
            if ui.button("⟳ Reload").clicked() {
                out.push(TunnelCommand::ReloadConfig.into());
            }
        });
    }
    if let Some(why) = &model.environment.keychain_problem
        && !state.settings.keychain_note_dismissed
    {
        banner(ui, theme::WARN, |ui| {
            ui.horizontal(|ui| {
                if ui
                    .small_button("Got it")
                    .on_hover_text("Hide this here; the keys window keeps showing it")
                    .clicked()
                {
                    out.push(DesktopCommand::DismissKeychainNote.into());
                }
                ui.vertical(|ui| keychain_note(ui, why));
            });
        });
    }
    if let Some(problem) = &model.files.keys_broken {
        banner(ui, theme::ERROR, |ui| {
            ui.label(problem.to_string());
        });
    }
    notices(ui, &model.notices, view.notices_expanded, out);
    ui.add_space(4.0);
}

fn app_menu(ui: &mut egui::Ui, model: &Model, view: &mut ViewState, out: &mut Vec<UiCommand>) {
    if ui.button("Settings…").clicked() {
        out.push(DesktopCommand::ShowSettings(true).into());
    }
    ui.separator();
    if ui
        .button("Connect to a peer…")
        .on_hover_text(
            "Two tunnels to a remote host, one each way, for Akka, Pekko and other peer-to-peer systems",
        )
        .clicked()
    {
        out.push(TunnelCommand::ConnectPeer.into());
    }
    if ui
        .add_enabled(
            !model.files.tunnels.is_empty(),
            egui::Button::new("Export tunnels…"),
        )
        .on_hover_text("Write the tunnels to a file, without keys (they are named by fingerprint)")
        .clicked()
    {
        out.push(TunnelCommand::AskExport.into());
    }
    if ui
        .button("Import tunnels…")
        .on_hover_text("Add the tunnels of an exported file; their keys must be here already")
        .clicked()
    {
        out.push(TunnelCommand::AskImport.into());
    }
    if ui
        .button("Reload tunnel list")
        .on_hover_text(
            "Read the tunnel list again from its file (after editing it by hand): tunnels that did not change keep running, with their connections",
        )
        .clicked()
    {
        out.push(TunnelCommand::ReloadConfig.into());
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
                out.push(TunnelCommand::ExportTo(PathBuf::from(path)).into());
            }
            if ui
                .add_enabled(!path.is_empty(), egui::Button::new("Import this file"))
                .clicked()
            {
                out.push(TunnelCommand::ImportFrom(PathBuf::from(path)).into());
            }
        });
    }
    ui.separator();
    if ui
        .button("Quit")
        .on_hover_text("Stop every tunnel and exit (Ctrl+Q)")
        .clicked()
    {
        out.push(DesktopCommand::Quit.into());
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
                    out.push(ViewCommand::Dismiss(0).into());
                }
                ui.add(egui::Label::new(text(notice)).wrap());
            });
        }),
        several if expanded => {
            for (index, notice) in several.iter().enumerate().rev() {
                banner(ui, color(notice.error), |ui| {
                    ui.horizontal(|ui| {
                        if ui.small_button("✖").on_hover_text("Dismiss").clicked() {
                            out.push(ViewCommand::Dismiss(index).into());
                        }
                        ui.add(egui::Label::new(text(notice)).wrap());
                    });
                });
            }
            ui.horizontal(|ui| {
                if ui.small_button("Collapse").clicked() {
                    out.push(ViewCommand::ExpandNotices(false).into());
                }
                if ui.small_button("Dismiss all").clicked() {
                    out.push(ViewCommand::DismissAllNotices.into());
                }
            });
        }
        several => {
            let any_error = several.iter().any(|n| n.error);
            banner(ui, color(any_error), |ui| {
                ui.horizontal(|ui| {
                    if ui.small_button("Dismiss all").clicked() {
                        out.push(ViewCommand::DismissAllNotices.into());
                    }
                    if ui
                        .small_button(format!("Show all {}", several.len()))
                        .clicked()
                    {
                        out.push(ViewCommand::ExpandNotices(true).into());
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
