//! Small windows over the main screen: the form for generating or importing a key, the
//! question before a deletion, and what an import of tunnels would add, marked where it
//! reaches beyond loopback, before anything is added.

use egui::RichText;
use sluice_engine::Mode;

use crate::command::{KeyCommand, TunnelCommand, UiCommand, ViewCommand};
use crate::keys::Shared;
use crate::model::{Confirm, KeyForm, Model};
use crate::theme;
use crate::tunnel_file::{Incoming, Reach, reach};
use crate::views::widgets::labelled_row;

pub fn key_form(
    ctx: &egui::Context,
    form: &mut KeyForm,
    model: &Model,
    dialogs_unavailable: bool,
    out: &mut Vec<UiCommand>,
) {
    let no_keychain = model.environment.keychain_problem.is_some();
    let title = match form {
        KeyForm::Generate { .. } => "Generate a key",
        KeyForm::Import { .. } => "Import a key file",
        KeyForm::OpenBundle { .. } => "Open a shared bundle",
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
                        path_row(ui, "Key file", path, "Save as…", out);
                    }
                }
                KeyForm::Import { name, path } => {
                    path_row(ui, "Key file", path, "Choose…", out);
                    labelled_row(ui, "Key name", "How this key is listed", |ui| ui.text_edit_singleline(name));
                }
                KeyForm::OpenBundle { name, path, passphrase, .. } => {
                    path_row(ui, "Bundle", path, "Choose…", out);
                    labelled_row(ui, "Passphrase", "The words the sender gave you, hyphens included", |ui| {
                        ui.add(egui::TextEdit::singleline(passphrase.as_mut_string()).password(true))
                    });
                    labelled_row(ui, "Key name", "How this key is listed here", |ui| ui.text_edit_singleline(name));
                }
            });
            if matches!(form, KeyForm::OpenBundle { .. }) {
                ui.label(RichText::new("The key goes into the keychain; compare its fingerprint with the sender's.").small());
            }
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
                    KeyForm::OpenBundle { .. } => "Open",
                };
                let busy = matches!(form, KeyForm::OpenBundle { opening: true, .. });
                if ui.add_enabled(!busy, egui::Button::new(action)).clicked() {
                    out.push(KeyCommand::SubmitForm.into());
                }
                if busy {
                    ui.spinner();
                    ui.label("opening (scrypt takes a second or two)…");
                }
                if ui.button("Cancel").clicked() {
                    out.push(KeyCommand::CloseForm.into());
                }
            });
        });
}

/// The key form's file: typed, or picked with a dialog (where the form says it goes).
fn path_row(
    ui: &mut egui::Ui,
    what: &str,
    path: &mut String,
    button: &str,
    out: &mut Vec<UiCommand>,
) {
    let label = ui
        .label(what)
        .on_hover_text("The file's path; type it or choose it");
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(path)
                .hint_text("/path/to/keyfile")
                .desired_width(240.0),
        )
        .labelled_by(label.id);
        if ui.button(button).clicked() {
            out.push(KeyCommand::PickFormFile.into());
        }
    });
    ui.end_row();
}

/// A key just sealed: the passphrase, shown this once, with a copy button and the advice
/// to send it apart from the bundle. Closing wipes it; Sluice keeps it nowhere.
pub fn shared_passphrase(ctx: &egui::Context, shared: &Shared, out: &mut Vec<UiCommand>) {
    egui::Modal::new(egui::Id::unique("sluice-shared-passphrase")).show(ctx, |ui| {
        ui.set_max_width(520.0);
        ui.label(RichText::new(format!("Sealed: {}", shared.what)).strong());
        ui.label(format!("Bundle: {}", shared.bundle.display()));
        ui.label(format!("Fingerprint: {}", shared.fingerprint));
        ui.add_space(6.0);
        ui.label("The passphrase that opens it (shown only now; Sluice does not keep it):");
        ui.label(RichText::new(shared.passphrase.reveal()).monospace().strong().size(16.0));
        ui.add_space(6.0);
        ui.label(
            RichText::new(
                "Send the passphrase by another channel than the bundle (say, the bundle by mail and the passphrase by phone or a messenger), so nobody who sees one sees both. Your teammate opens it with Open shared bundle… in Sluice's Keys, sluiced --unseal-key, or age -d.",
            )
            .color(theme::MUTED),
        );
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if ui
                .button("Copy")
                .on_hover_text("Copy the passphrase to the clipboard")
                .clicked()
            {
                ui.ctx().copy_text(shared.passphrase.reveal().to_owned());
            }
            if ui
                .button("Done")
                .on_hover_text("Close; the passphrase is forgotten")
                .clicked()
            {
                out.push(KeyCommand::CloseShared.into());
            }
        });
    });
}

pub fn confirm(ctx: &egui::Context, confirm: &Confirm, out: &mut Vec<UiCommand>) {
    let (question, detail, confirmed): (_, _, UiCommand) = match confirm {
        Confirm::DeleteTunnel(name) => (
            format!("Delete tunnel \"{name}\"?"),
            "Its connections are closed and it is removed from the list. The key is kept.".to_owned(),
            TunnelCommand::ConfirmDelete(name.clone()).into(),
        ),
        Confirm::DeleteKey(name) => (
            format!("Delete key \"{name}\"?"),
            "It is removed from the keychain. Without a copy, tunnels using it on other machines cannot be matched again."
                .to_owned(),
            KeyCommand::ConfirmDelete(name.clone()).into(),
        ),
    };
    egui::Modal::new(egui::Id::unique("sluice-confirm")).show(ctx, |ui| {
        ui.label(RichText::new(question).strong());
        ui.label(RichText::new(detail).color(theme::MUTED));
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if ui.button("Delete").clicked() {
                out.push(confirmed.clone());
            }
            if ui.button("Cancel").clicked() {
                out.push(ViewCommand::CancelConfirm.into());
            }
        });
    });
}

/// The tunnels of a file, as they would be added (name, role, listen, target, key), with
/// every address that is not loopback marked, and Import / Cancel.
pub fn import_review(
    ctx: &egui::Context,
    incoming: &Incoming,
    model: &Model,
    out: &mut Vec<UiCommand>,
) {
    let key_names = model.key_names();
    let file = incoming.path.file_name().map_or_else(
        || incoming.path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    egui::Modal::new(egui::Id::unique("sluice-import-review")).show(ctx, |ui| {
        let count = incoming.tunnels.len();
        ui.label(RichText::new(format!("Import {count} tunnel(s) from {file}?")).strong());
        ui.label(RichText::new(incoming.path.display().to_string()).color(theme::MUTED).small());
        ui.add_space(6.0);
        egui::ScrollArea::vertical().max_height(380.0).show(ui, |ui| {
            for (index, spec) in incoming.tunnels.iter().enumerate() {
                ui.separator();
                ui.horizontal(|ui| {
                    ui.label(RichText::new(&spec.name).strong());
                    let role = match spec.mode {
                        Mode::Encrypt => "Encrypt (spiped -e)",
                        Mode::Decrypt => "Decrypt (spiped -d)",
                        Mode::ReverseIn => "Reverse in (sluiced --reverse-in)",
                        Mode::ReverseOut => "Reverse out (sluiced --reverse-out)",
                    };
                    ui.label(RichText::new(role).color(theme::MUTED));
                });
                egui::Grid::new(("import_review", index)).num_columns(2).spacing([12.0, 2.0]).show(ui, |ui| {
                    ui.label("Listen on");
                    address(ui, &spec.listen, true);
                    ui.end_row();
                    ui.label("Target");
                    address(ui, &spec.target, false);
                    ui.end_row();
                    ui.label("Key");
                    ui.label(key_names.get(&spec.key).map_or("?", String::as_str));
                    ui.end_row();
                });
            }
        });
        ui.separator();
        let mut notes = vec![
            "Imported tunnels do not start by themselves: start each when you have checked it."
                .to_owned(),
        ];
        if incoming.autostart_dropped > 0 {
            notes.push(format!(
                "{} marked to start with Sluice in the file: that mark is not imported.",
                incoming.autostart_dropped
            ));
        }
        if incoming.far_ends_dropped > 0 {
            notes.push(format!(
                "{} named a far end set up over ssh: not imported; set it up yourself from the Far end tab.",
                incoming.far_ends_dropped
            ));
        }
        for note in notes {
            ui.label(RichText::new(note).color(theme::MUTED));
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if ui.button("Import").clicked() {
                out.push(TunnelCommand::ConfirmImport.into());
            }
            if ui.button("Cancel").clicked() {
                out.push(TunnelCommand::CancelImport.into());
            }
        });
    });
}

/// An address, and beside it what it reaches when that is more than this machine's
/// loopback: the network (listen: others can connect; target: it connects out) or a UNIX
/// socket (a local service such as an ssh agent).
fn address(ui: &mut egui::Ui, text: &str, listen: bool) {
    ui.horizontal(|ui| {
        ui.add(egui::Label::new(RichText::new(text).monospace()).extend());
        let mark = match (reach(text), listen) {
            (Reach::Loopback, _) => return,
            (Reach::Network, true) => "⚠ not loopback: other machines can connect",
            (Reach::Network, false) => "⚠ not loopback: connects to another machine",
            (Reach::UnixSocket, true) => "⚠ UNIX socket: a file created on this machine",
            (Reach::UnixSocket, false) => "⚠ UNIX socket: a local service, such as an ssh agent",
        };
        ui.add(egui::Label::new(RichText::new(mark).color(theme::WARN)).extend());
    });
}
