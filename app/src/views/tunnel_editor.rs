//! The tunnel editor: every spiped option with its default and a tooltip, problems shown
//! under their field as you type, Save enabled only when there are none. The problems
//! are the form's own, checked by the app once per change (which this view reports).

use egui::RichText;
use sluice_engine::{Field, ForwardSecrecy, KeyAgreement, Mode, ProxyVersion};

use crate::command::{TunnelCommand, UiCommand};
use crate::model::{Model, ProbeKey};
use crate::tunnel_form::{
    EditorState, KeyChoice, accepts_proxy_header, address_labels, help, mode_choice_label,
    writes_proxy_header,
};
use crate::views::widgets::{field_error, labelled_row, probe_result};

pub fn show(
    ctx: &egui::Context,
    editor: &mut EditorState,
    model: &Model,
    dialogs_unavailable: bool,
    out: &mut Vec<UiCommand>,
) {
    let title = if editor.editing.is_some() {
        "Edit tunnel"
    } else {
        "New tunnel"
    };
    // Compared after drawing: any difference is an edit, and the app checks the form again.
    let before = editor.clone();
    let problems = before.problems();

    // One size whatever the problems shown (each field keeps a line for its problem), so
    // the field under the pointer never moves while typing; a small window scrolls.
    // The buttons stay in view under the fields.
    // What the window keeps besides the fields (title, buttons, a test's verdict) is about
    // 250 px: with all the fields taller than the rest of the screen, they scroll and the
    // buttons still show.
    let fields_height = (ctx.content_rect().height() - 250.0).clamp(240.0, 620.0);
    egui::Window::new(title)
        .collapsible(false)
        .resizable(false)
        .min_width(600.0)
        .max_width(600.0)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            egui::ScrollArea::vertical()
                .id_salt(editor.scroll_id())
                .max_height(fields_height)
                .show(ui, |ui| {
                    egui::Grid::new("editor")
                        .num_columns(2)
                        .spacing([12.0, 6.0])
                        .show(ui, |ui| {
                            labelled_row(
                                ui,
                                "Name",
                                "A name for this tunnel, unique in the list.",
                                |ui| {
                                    ui.add(
                                        egui::TextEdit::singleline(&mut editor.name)
                                            .hint_text("redis production"),
                                    )
                                },
                            );
                            field_error(ui, problems.get(&Field::Name));

                            ui.label("Role").on_hover_text(help::MODE);
                            ui.vertical(|ui| {
                                for mode in [
                                    Mode::Encrypt,
                                    Mode::Decrypt,
                                    Mode::ReverseIn,
                                    Mode::ReverseOut,
                                ] {
                                    ui.radio_value(&mut editor.mode, mode, mode_choice_label(mode))
                                        .on_hover_text(help::MODE);
                                }
                            });
                            ui.end_row();

                            // The two addresses, named for what they are in this mode (the
                            // config's listen and target swap meaning for reverse ends).
                            let labels = address_labels(editor.mode);
                            let listen = |ui: &mut egui::Ui, editor: &mut EditorState| {
                                labelled_row(ui, labels.listen, labels.listen_help, |ui| {
                                    ui.add(
                                        egui::TextEdit::singleline(&mut editor.listen)
                                            .hint_text(listen_hint(editor.mode)),
                                    )
                                });
                                field_error(ui, problems.get(&Field::Listen));
                            };
                            let target = |ui: &mut egui::Ui, editor: &mut EditorState| {
                                labelled_row(ui, labels.target, labels.target_help, |ui| {
                                    ui.add(
                                        egui::TextEdit::singleline(&mut editor.target)
                                            .hint_text(target_hint(editor.mode)),
                                    )
                                });
                                field_error(ui, problems.get(&Field::Target));
                            };
                            if labels.target_first {
                                target(ui, editor);
                                listen(ui, editor);
                            } else {
                                listen(ui, editor);
                                target(ui, editor);
                            }

                            let label = ui.label("Key").on_hover_text(help::KEY);
                            ui.vertical(|ui| {
                                key_picker(ui, editor, model, dialogs_unavailable, label.id, out)
                            });
                            ui.end_row();
                            field_error(ui, problems.get(&Field::Key));

                            // Only an end that accepts connections can let a rotation's old
                            // clients in; a problem shows whatever the role, as above.
                            if matches!(editor.mode, Mode::Decrypt | Mode::ReverseIn)
                                || editor.previous_key.is_some()
                            {
                                let label = ui
                                    .label("Previous key (accepted during a rotation)")
                                    .on_hover_text(help::PREVIOUS_KEY);
                                previous_key_picker(ui, editor, model, label.id);
                                ui.end_row();
                                field_error(ui, problems.get(&Field::PreviousKey));
                            }

                            labelled_row(ui, "Forward secrecy", help::FORWARD_SECRECY, |ui| {
                                egui::ComboBox::from_id_salt("forward_secrecy")
                                    .selected_text(fs_label(editor.forward_secrecy))
                                    .show_ui(ui, |ui| {
                                        for fs in [
                                            ForwardSecrecy::Enabled,
                                            ForwardSecrecy::Disabled,
                                            ForwardSecrecy::Required,
                                        ] {
                                            ui.selectable_value(
                                                &mut editor.forward_secrecy,
                                                fs,
                                                fs_label(fs),
                                            );
                                        }
                                    })
                                    .response
                            });

                            labelled_row(ui, "Handshake", help::KEY_AGREEMENT, |ui| {
                                egui::ComboBox::from_id_salt("key_agreement")
                                    .selected_text(agreement_label(editor.key_agreement))
                                    .show_ui(ui, |ui| {
                                        for agreement in
                                            [KeyAgreement::Classic, KeyAgreement::X25519]
                                        {
                                            ui.selectable_value(
                                                &mut editor.key_agreement,
                                                agreement,
                                                agreement_label(agreement),
                                            );
                                        }
                                    })
                                    .response
                            });
                            field_error(ui, problems.get(&Field::ForwardSecrecy));

                            let label = ui
                                .label("Connection limit")
                                .on_hover_text(help::max_connections());
                            ui.horizontal(|ui| {
                                ui.add_enabled(
                                    !editor.unlimited_connections,
                                    egui::DragValue::new(&mut editor.max_connections)
                                        .range(1..=1_000_000),
                                )
                                .labelled_by(label.id)
                                .on_hover_text(help::max_connections());
                                ui.checkbox(&mut editor.unlimited_connections, "unlimited (-n 0)");
                            });
                            ui.end_row();

                            labelled_row(ui, "Timeout", &help::timeout(), |ui| {
                                ui.add(
                                    egui::DragValue::new(&mut editor.timeout_secs)
                                        .range(0.1..=3600.0)
                                        .speed(0.1)
                                        .suffix(" s"),
                                )
                            });
                            field_error(ui, problems.get(&Field::TimeoutSecs));

                            labelled_row(ui, "Keep-alive", help::KEEPALIVE, |ui| {
                                ui.checkbox(
                                    &mut editor.keepalive,
                                    "TCP keep-alive (off = spiped -j)",
                                )
                            });

                            let label = ui
                                .label("Re-resolve target")
                                .on_hover_text(help::reresolve());
                            ui.horizontal(|ui| {
                                ui.checkbox(&mut editor.reresolve, "every")
                                    .on_hover_text(help::reresolve());
                                ui.add_enabled(
                                    editor.reresolve,
                                    egui::DragValue::new(&mut editor.reresolve_secs)
                                        .range(1..=86_400)
                                        .suffix(" s"),
                                )
                                .labelled_by(label.id);
                            });
                            ui.end_row();
                            field_error(ui, problems.get(&Field::ReresolveSecs));

                            // Only an encrypting tunnel dials a far end to check; a problem
                            // shows whatever the role, so Save is never disabled unseen.
                            if editor.mode == Mode::Encrypt
                                || problems.contains_key(&Field::HealthCheckSecs)
                            {
                                let label = ui
                                    .label("Far-end check")
                                    .on_hover_text(help::health_check());
                                ui.horizontal(|ui| {
                                    ui.checkbox(&mut editor.health_check, "on, every")
                                        .on_hover_text(help::health_check());
                                    ui.add_enabled(
                                        editor.health_check,
                                        egui::DragValue::new(&mut editor.health_check_secs)
                                            .range(1..=86_400)
                                            .suffix(" s"),
                                    )
                                    .labelled_by(label.id)
                                    .on_hover_text(help::health_check());
                                });
                                ui.end_row();
                                field_error(ui, problems.get(&Field::HealthCheckSecs));
                            }

                            // Shown only where the mode can use them: what is hidden is
                            // not saved (`EditorState::to_spec`).
                            if writes_proxy_header(editor.mode) {
                                labelled_row(ui, "PROXY protocol", help::PROXY_PROTOCOL, |ui| {
                                    egui::ComboBox::from_id_salt("proxy_protocol")
                                        .selected_text(proxy_label(editor.proxy_protocol))
                                        .show_ui(ui, |ui| {
                                            for version in [
                                                None,
                                                Some(ProxyVersion::V1),
                                                Some(ProxyVersion::V2),
                                            ] {
                                                ui.selectable_value(
                                                    &mut editor.proxy_protocol,
                                                    version,
                                                    proxy_label(version),
                                                );
                                            }
                                        })
                                        .response
                                });
                                if accepts_proxy_header(editor.mode) {
                                    // Named by its own words (not the row's label), which
                                    // say what it does.
                                    ui.label("Load balancer").on_hover_text(help::ACCEPT_PROXY);
                                    ui.checkbox(
                                        &mut editor.accept_proxy_protocol,
                                        "accept a PROXY header from a local load balancer",
                                    )
                                    .on_hover_text(help::ACCEPT_PROXY);
                                    ui.end_row();
                                }
                                field_error(ui, problems.get(&Field::ProxyProtocol));
                            }

                            // A reverse-in end dials nothing, so it has no outgoing address;
                            // a problem shows whatever the role, so Save is never disabled
                            // unseen.
                            if editor.mode != Mode::ReverseIn || problems.contains_key(&Field::Bind)
                            {
                                labelled_row(ui, "Outgoing address", help::BIND, |ui| {
                                    ui.add(
                                        egui::TextEdit::singleline(&mut editor.bind)
                                            .hint_text("optional, e.g. [192.0.2.10]"),
                                    )
                                });
                                field_error(ui, problems.get(&Field::Bind));
                            }

                            labelled_row(ui, "Autostart", help::AUTOSTART, |ui| {
                                ui.checkbox(&mut editor.autostart, "start when Sluice starts")
                            });
                        });
                });

            ui.separator();
            ui.horizontal(|ui| {
                let save = ui.add_enabled(problems.is_empty(), egui::Button::new("Save"));
                if save.clicked() {
                    out.push(TunnelCommand::SaveEditor.into());
                }
                if !problems.is_empty() {
                    ui.label(RichText::new("fix the fields marked in red to save").small());
                }
                if ui.button("Cancel").clicked() {
                    out.push(TunnelCommand::CancelEditor.into());
                }
                if editor.mode == Mode::Encrypt
                    && ui
                        .add_enabled(problems.is_empty(), egui::Button::new("Test connection"))
                        .on_hover_text(
                            "Connect to the target and run the handshake with these settings",
                        )
                        .clicked()
                {
                    out.push(TunnelCommand::TestFromEditor.into());
                }
            });
            if let Some(probe) = model.mirror.probes.get(&ProbeKey::Editor) {
                probe_result(ui, probe.as_ref());
            }
        });
    if *editor != before {
        out.push(TunnelCommand::EditorChanged.into());
    }
}

fn proxy_label(version: Option<ProxyVersion>) -> &'static str {
    match version {
        None => "off",
        Some(ProxyVersion::V1) => "v1 (text)",
        Some(ProxyVersion::V2) => "v2 (binary)",
    }
}

fn listen_hint(mode: Mode) -> &'static str {
    match mode {
        Mode::Encrypt | Mode::Decrypt => "[127.0.0.1]:6379",
        Mode::ReverseIn => "[127.0.0.1]:25521",
        Mode::ReverseOut => "server.example:8026",
    }
}

fn target_hint(mode: Mode) -> &'static str {
    match mode {
        Mode::Encrypt | Mode::Decrypt => "server.example:8025",
        Mode::ReverseIn => "[0.0.0.0]:8026",
        Mode::ReverseOut => "[127.0.0.1]:25520",
    }
}

fn agreement_label(agreement: KeyAgreement) -> &'static str {
    match agreement {
        KeyAgreement::Classic => "spiped (classic)",
        KeyAgreement::X25519 => "X25519 (Sluice to Sluice, faster)",
    }
}

fn fs_label(fs: ForwardSecrecy) -> &'static str {
    match fs {
        ForwardSecrecy::Enabled => "default (accept either)",
        ForwardSecrecy::Disabled => "off (-f)",
        ForwardSecrecy::Required => "required (-g)",
    }
}

fn key_picker(
    ui: &mut egui::Ui,
    editor: &mut EditorState,
    model: &Model,
    dialogs_unavailable: bool,
    label: egui::Id,
    out: &mut Vec<UiCommand>,
) {
    let selected = match &editor.key {
        KeyChoice::Known(name) => match model.files.keys.get(name) {
            Some(info) => format!("{name}  ({})", short_fingerprint(&info.fingerprint)),
            None => format!("{name} (not in the key list)"),
        },
        KeyChoice::File(_) => "a key file…".to_owned(),
    };
    egui::ComboBox::from_id_salt("key")
        .selected_text(selected)
        .width(260.0)
        .show_ui(ui, |ui| {
            for info in &model.files.keys.keys {
                let text = format!("{}  ({})", info.name, short_fingerprint(&info.fingerprint));
                ui.selectable_value(&mut editor.key, KeyChoice::Known(info.name.clone()), text);
            }
            if !matches!(editor.key, KeyChoice::File(_))
                && ui.selectable_label(false, "a key file…").clicked()
            {
                editor.key = KeyChoice::File(String::new());
            }
        })
        .response
        .labelled_by(label)
        .on_hover_text(help::KEY);
    if let KeyChoice::File(path) = &mut editor.key {
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(path)
                    .hint_text("/path/to/keyfile")
                    .desired_width(200.0),
            )
            .labelled_by(label);
            if ui.button("Browse…").clicked() {
                out.push(TunnelCommand::PickKeyFile.into());
            }
        });
        if dialogs_unavailable {
            ui.label(RichText::new("No file dialog is available here: type the path.").small());
        }
    }
}

/// The key being replaced: none, or one from the key list. A key file the config names
/// is shown and kept, not offered (a rotation's old key is one the app already knows).
fn previous_key_picker(
    ui: &mut egui::Ui,
    editor: &mut EditorState,
    model: &Model,
    label: egui::Id,
) {
    let selected = match &editor.previous_key {
        None => "none".to_owned(),
        Some(KeyChoice::Known(name)) => match model.files.keys.get(name) {
            Some(info) => format!("{name}  ({})", short_fingerprint(&info.fingerprint)),
            None => format!("{name} (not in the key list)"),
        },
        Some(KeyChoice::File(path)) => format!("key file {path}"),
    };
    egui::ComboBox::from_id_salt("previous_key")
        .selected_text(selected)
        .width(260.0)
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut editor.previous_key, None, "none");
            for info in &model.files.keys.keys {
                let text = format!("{}  ({})", info.name, short_fingerprint(&info.fingerprint));
                ui.selectable_value(
                    &mut editor.previous_key,
                    Some(KeyChoice::Known(info.name.clone())),
                    text,
                );
            }
        })
        .response
        .labelled_by(label)
        .on_hover_text(help::PREVIOUS_KEY);
}

/// The first two groups of a fingerprint: enough to tell keys apart in a list.
fn short_fingerprint(fingerprint: &str) -> String {
    fingerprint.split(':').take(2).collect::<Vec<_>>().join(":")
}
