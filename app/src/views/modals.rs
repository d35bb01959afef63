//! Small windows over the main screen: the form for generating or importing a key, and
//! the question before a deletion.

use egui::RichText;

use crate::command::UiCommand;
use crate::model::{Confirm, DialogPurpose, KeyForm, Model};
use crate::theme;
use crate::views::widgets::labelled_row;

pub fn key_form(
    ctx: &egui::Context,
    form: &mut KeyForm,
    model: &Model,
    dialogs_unavailable: bool,
    out: &mut Vec<UiCommand>,
) {
    let no_keychain = model.keychain_problem.is_some();
    let title = match form {
        KeyForm::Generate { .. } => "Generate a key",
        KeyForm::Import { .. } => "Import a key file",
    };
    egui::Window::new(title)
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            egui::Grid::new("key_form").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| match form {
                KeyForm::Generate { name, save_copy, path } => {
                    labelled_row(ui, "Key name", "How this key is listed, e.g. \"redis production\"", |ui| {
                        ui.text_edit_singleline(name)
                    });
                    if no_keychain {
                        *save_copy = true;
                        ui.label("");
                        ui.label("No keychain here: the key is kept as this key file.");
                        ui.end_row();
                    } else {
                        labelled_row(ui, "Key file copy", "Also write the key to a file (mode 0600), e.g. to copy it to the far end", |ui| {
                            ui.checkbox(save_copy, "Save a copy as key file")
                        });
                    }
                    if *save_copy {
                        path_row(ui, path, DialogPurpose::GenerateCopy, "Save as…", out);
                    }
                }
                KeyForm::Import { name, path } => {
                    path_row(ui, path, DialogPurpose::ImportKey, "Choose…", out);
                    labelled_row(ui, "Key name", "How this key is listed", |ui| ui.text_edit_singleline(name));
                }
            });
            if dialogs_unavailable {
                ui.label(RichText::new("No file dialog is available here: type the path.").small());
            }
            if matches!(form, KeyForm::Import { .. }) && !no_keychain {
                ui.label(RichText::new("The key's bytes are copied into the keychain; the file itself is left as it is.").small());
            }
            ui.separator();
            ui.horizontal(|ui| {
                let action = match form {
                    KeyForm::Generate { .. } => "Generate",
                    KeyForm::Import { .. } => "Import",
                };
                if ui.button(action).clicked() {
                    out.push(UiCommand::SubmitKeyForm);
                }
                if ui.button("Cancel").clicked() {
                    out.push(UiCommand::CloseKeyForm);
                }
            });
        });
}

fn path_row(
    ui: &mut egui::Ui,
    path: &mut String,
    purpose: DialogPurpose,
    button: &str,
    out: &mut Vec<UiCommand>,
) {
    let label = ui
        .label("Key file")
        .on_hover_text("The key file's path; type it or choose it");
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(path)
                .hint_text("/path/to/keyfile")
                .desired_width(240.0),
        )
        .labelled_by(label.id);
        if ui.button(button).clicked() {
            out.push(UiCommand::OpenDialog(purpose));
        }
    });
    ui.end_row();
}

pub fn confirm(ctx: &egui::Context, confirm: &Confirm, model: &Model, out: &mut Vec<UiCommand>) {
    let (question, detail) = match confirm {
        Confirm::DeleteTunnel(id) => (
            format!("Delete tunnel \"{}\"?", model.tunnel(*id).map_or("", |t| t.spec.name.as_str())),
            "Its connections are closed and it is removed from the list. The key is kept.".to_owned(),
        ),
        Confirm::DeleteKey(name) => (
            format!("Delete key \"{name}\"?"),
            "It is removed from the keychain. Without a copy, tunnels using it on other machines cannot be matched again."
                .to_owned(),
        ),
    };
    egui::Modal::new(egui::Id::unique("sluice-confirm")).show(ctx, |ui| {
        ui.label(RichText::new(question).strong());
        ui.label(RichText::new(detail).color(theme::MUTED));
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if ui.button("Delete").clicked() {
                out.push(UiCommand::Confirmed);
            }
            if ui.button("Cancel").clicked() {
                out.push(UiCommand::CancelConfirm);
            }
        });
    });
}
