//! The key list: each key's name, where it lives, its fingerprint (safe to compare
//! between machines; the key itself is never shown), which tunnels use it, its age and
//! rotation reminder (a key older than its reminder is flagged).

use egui::RichText;

use crate::command::{KeyCommand, UiCommand};
use crate::keys::{KeyInfo, ROTATION_REMINDERS, SecretText, now_unix};
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
                .num_columns(7)
                .spacing([12.0, 6.0])
                .show(ui, |ui| {
                    let now = now_unix();
                    for heading in
                        ["Name", "Stored in", "Fingerprint", "Used by", "Age", "Rotate after", ""]
                    {
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
                        age(ui, info, now);
                        reminder(ui, info, out);
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

/// How old the key is here, flagged when its reminder says it is time to rotate.
fn age(ui: &mut egui::Ui, info: &KeyInfo, now: u64) {
    let words = match info.age_days(now) {
        None => "unknown".to_owned(),
        Some(0) => "today".to_owned(),
        Some(1) => "1 day".to_owned(),
        Some(days) => format!("{days} days"),
    };
    if info.rotation_due(now) {
        ui.label(RichText::new(format!("{words}: rotation due")).color(theme::WARN))
            .on_hover_text(
                "Older than its reminder: generate a new key and put it on both ends (a Decrypt tunnel can keep accepting this one as its previous key meanwhile)",
            );
    } else if info.age_days(now).is_none() {
        ui.label(words)
            .on_hover_text("Added before Sluice recorded when keys were created");
    } else {
        ui.label(words);
    }
}

/// The key's rotation reminder: none, or a number of days.
fn reminder(ui: &mut egui::Ui, info: &KeyInfo, out: &mut Vec<UiCommand>) {
    let label = |days: Option<u32>| days.map_or_else(|| "none".to_owned(), |d| format!("{d} days"));
    let mut chosen = info.rotate_after_days;
    let response = egui::ComboBox::from_id_salt(("reminder", &info.name))
        .selected_text(label(chosen))
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut chosen, None, label(None));
            for days in ROTATION_REMINDERS {
                ui.selectable_value(&mut chosen, Some(days), label(Some(days)));
            }
        })
        .response;
    // Named for screen readers (and tests): the menu has no visible label of its own.
    response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::accesskit::Role::ComboBox,
            true,
            format!("Rotation reminder for {}", info.name),
        )
    });
    response.on_hover_text(format!(
        "Flag {} for rotation once it is this old",
        info.name
    ));
    if chosen != info.rotate_after_days {
        out.push(KeyCommand::SetReminder(info.name.clone(), chosen).into());
    }
}
