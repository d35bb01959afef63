//! The key list: each key's name, where it lives, its fingerprint (safe to compare
//! between machines; the key itself is never shown) and which tunnels use it.

use egui::RichText;

use crate::command::{KeyCommand, UiCommand};
use crate::keys::SecretText;
use crate::model::{KeyForm, Model};
use crate::theme;
use crate::views::widgets::keychain_note;

pub fn show(ctx: &egui::Context, model: &Model, out: &mut Vec<UiCommand>) {
    let mut open = true;
    egui::Window::new("Keys")
        .open(&mut open)
        .default_width(640.0)
        .default_pos([160.0, 90.0])
        .show(ctx, |ui| {
            ui.horizontal(|ui| {
                if ui
                    .button("Generate…")
                    .on_hover_text(
                        "A new 256-bit key from the operating system's random number generator",
                    )
                    .clicked()
                {
                    out.push(UiCommand::Key(KeyCommand::OpenForm(KeyForm::Generate {
                        name: String::new(),
                        save_copy: model.environment.keychain_problem.is_some(),
                        path: String::new(),
                    })));
                }
                if ui
                    .button("Import…")
                    .on_hover_text("Use an existing spiped key file")
                    .clicked()
                {
                    out.push(UiCommand::Key(KeyCommand::OpenForm(KeyForm::Import {
                        name: String::new(),
                        path: String::new(),
                    })));
                }
                if ui
                    .button("Open shared bundle…")
                    .on_hover_text(
                        "Open a key a teammate sealed with a passphrase (Sluice's Share, sluiced --seal-key or age -p)",
                    )
                    .clicked()
                {
                    out.push(UiCommand::Key(KeyCommand::OpenForm(KeyForm::OpenBundle {
                        name: String::new(),
                        path: String::new(),
                        passphrase: SecretText::default(),
                        opening: false,
                    })));
                }
            });
            if let Some(why) = &model.environment.keychain_problem {
                ui.separator();
                keychain_note(ui, why);
            }
            ui.separator();
            if model.files.keys.keys.is_empty() {
                ui.label(
                    RichText::new(
                        "No keys yet. Generate one, or import the key file the far end uses.",
                    )
                    .color(theme::MUTED),
                );
                return;
            }
            egui::Grid::new("keys")
                .striped(true)
                .num_columns(5)
                .spacing([12.0, 6.0])
                .show(ui, |ui| {
                    for heading in ["Name", "Stored in", "Fingerprint", "Used by", ""] {
                        ui.label(RichText::new(heading).strong());
                    }
                    ui.end_row();
                    for info in &model.files.keys.keys {
                        ui.label(&info.name);
                        ui.label(info.where_label());
                        ui.label(RichText::new(&info.fingerprint).monospace());
                        let users = model.users_of(info);
                        ui.label(if users.is_empty() {
                            "no tunnel".to_owned()
                        } else {
                            users.join(", ")
                        });
                        ui.horizontal(|ui| {
                            if ui
                                .button("Export…")
                                .on_hover_text(format!("Write {} to a key file", info.name))
                                .clicked()
                            {
                                out.push(KeyCommand::AskExport(info.name.clone()).into());
                            }
                            if ui
                                .button("Share with a teammate…")
                                .on_hover_text(format!(
                                    "Seal {} into a file with a passphrase of six random words, shown once",
                                    info.name
                                ))
                                .clicked()
                            {
                                out.push(KeyCommand::AskShare(info.name.clone()).into());
                            }
                            let delete =
                                ui.add_enabled(users.is_empty(), egui::Button::new("Delete"));
                            let delete = if users.is_empty() {
                                delete.on_hover_text(format!("Delete {}", info.name))
                            } else {
                                delete.on_disabled_hover_text(
                                    "In use by a tunnel: give it another key first",
                                )
                            };
                            if delete.clicked() {
                                out.push(KeyCommand::AskDelete(info.name.clone()).into());
                            }
                        });
                        ui.end_row();
                    }
                });
        });
    if !open {
        out.push(KeyCommand::ShowKeys(false).into());
    }
}
