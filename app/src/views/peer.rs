//! "Connect to a peer": the form that makes a forward tunnel and a reverse tunnel to one
//! remote host, and the settings the two actor systems need, read-only with a Copy
//! button. The pair's arithmetic is `peer.rs`; the app adds the tunnels.

use egui::RichText;

use sluice_engine::FarEndAction;

use crate::command::{FarEndCommand, TunnelCommand, UiCommand, ViewCommand};
use crate::model::{FarEndRun, Model};
use crate::peer::{PeerField, PeerForm, PeerPlan, forward_name, reverse_name};
use crate::views::widgets::{far_end_progress, field_error, labelled_row};

pub fn show(ctx: &egui::Context, form: &mut PeerForm, model: &Model, out: &mut Vec<UiCommand>) {
    let plan = form.plan(|name| model.key_location(name));
    let known_key = model.files.keys.get(form.key.trim()).is_some();
    // Once added, the pair is in the list and no longer a problem with itself.
    let problems = if form.created {
        Default::default()
    } else {
        form.problems(&plan, &model.files.tunnels, known_key)
    };
    let settings = plan.settings_text(&model.environment.host_name);
    let content_height = (ctx.content_rect().height() - 120.0).clamp(240.0, 700.0);
    egui::Window::new("Connect to a peer")
        .collapsible(false)
        .resizable(false)
        .min_width(640.0)
        .max_width(640.0)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            egui::ScrollArea::vertical()
                .max_height(content_height)
                .show(ui, |ui| {
                    ui.label(
                        "For a peer-to-peer system (Akka, Apache Pekko) between this machine (A), \
                         which cannot accept connections, and a remote host (B), which can. Two \
                         tunnels with one key: A ➡ B (Encrypt) and B ➡ A (Reverse out: this \
                         machine dials the remote host and keeps connections ready for B). \
                         They start and stop together.",
                    );
                    ui.add_space(6.0);
                    ui.add_enabled_ui(!form.created, |ui| fields(ui, form, model, &problems));
                    ui.add_space(6.0);
                    let heading = ui.horizontal(|ui| {
                        let heading =
                            ui.label(RichText::new("Settings for the two systems").strong());
                        if ui
                            .button("Copy")
                            .on_hover_text("Copy the settings to the clipboard")
                            .clicked()
                        {
                            out.push(ViewCommand::Copy(settings.clone()).into());
                        }
                        heading.id
                    });
                    ui.label(
                        RichText::new(
                            "Each system's canonical address is where the other one reaches it \
                             through the tunnels, so both sides use the same string.",
                        )
                        .small(),
                    );
                    // A `&str` makes the text box read-only, yet selectable.
                    ui.add(
                        egui::TextEdit::multiline(&mut settings.as_str())
                            .code_editor()
                            .desired_width(f32::INFINITY)
                            .desired_rows(12),
                    )
                    .labelled_by(heading.inner);
                    if form.created {
                        ui.add_space(6.0);
                        far_ends(ui, &plan, model, out);
                    }
                });
            ui.separator();
            ui.horizontal(|ui| {
                if form.created {
                    if ui.button("Close").clicked() {
                        out.push(TunnelCommand::ClosePeer.into());
                    }
                    ui.label(
                        "Added. Set up the far ends here, in each tunnel's Far end tab, or with the commands above.",
                    );
                } else {
                    if ui
                        .add_enabled(problems.is_empty(), egui::Button::new("Create the pair"))
                        .clicked()
                    {
                        out.push(TunnelCommand::CreatePeer.into());
                    }
                    if !problems.is_empty() {
                        ui.label(RichText::new("fix the fields marked in red to create").small());
                    }
                    if ui.button("Cancel").clicked() {
                        out.push(TunnelCommand::ClosePeer.into());
                    }
                }
            });
        });
}

/// Both far ends set up over ssh in one click, each tunnel's steps as they go.
fn far_ends(ui: &mut egui::Ui, plan: &PeerPlan, model: &Model, out: &mut Vec<UiCommand>) {
    let names = [forward_name(&plan.prefix), reverse_name(&plan.prefix)];
    let runs = names
        .each_ref()
        .map(|name| model.mirror.far_end_runs.get(name));
    let busy = runs.iter().flatten().any(|run| run.running());
    ui.label(RichText::new(format!("The far ends on {}", plan.ssh)).strong());
    ui.horizontal_wrapped(|ui| {
        let hint = "Over ssh: send the key, start spiped or sluiced for A ➡ B and sluiced for B ➡ A (copied from this machine if the host has none), and check both";
        if ui
            .add_enabled(!busy, egui::Button::new("Set up both far ends"))
            .on_hover_text(hint)
            .clicked()
        {
            for name in &names {
                out.push(FarEndCommand::Run(name.clone(), FarEndAction::Setup).into());
            }
        }
        if busy {
            ui.spinner();
        }
    });
    for (name, run) in names.iter().zip(runs) {
        if let Some(run) = run {
            ui.label(RichText::new(name).strong());
            far_end_progress(ui, run);
        }
    }
    if runs_succeeded(&runs) {
        ui.label(format!(
            "Both far ends run on {} and answered: start the pair here, then each system with its settings above.",
            plan.ssh
        ));
    }
}

/// Whether both far ends' set-ups finished well.
fn runs_succeeded(runs: &[Option<&FarEndRun>; 2]) -> bool {
    runs.iter().all(|run| {
        run.is_some_and(|r| r.action == FarEndAction::Setup && matches!(r.finished, Some(Ok(()))))
    })
}

fn fields(
    ui: &mut egui::Ui,
    form: &mut PeerForm,
    model: &Model,
    problems: &std::collections::BTreeMap<PeerField, String>,
) {
    egui::Grid::new("peer")
        .num_columns(2)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            labelled_row(
                ui,
                "Pair name",
                "Both tunnels' names start with it: \"NAME ➡ peer\" and \"NAME ⬅ peer\".",
                |ui| ui.add(egui::TextEdit::singleline(&mut form.name).hint_text("lab")),
            );
            field_error(ui, problems.get(&PeerField::Name));
            labelled_row(
                ui,
                "Remote host",
                "The remote host's name or address as this machine reaches it, without a port.",
                |ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut form.host).hint_text("server.example"),
                    )
                },
            );
            field_error(ui, problems.get(&PeerField::Host));
            labelled_row(
                ui,
                "SSH destination",
                "How ssh reaches the remote host, for setting up the far ends (user@host or an alias from ~/.ssh/config). Empty: the remote host.",
                |ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut form.ssh)
                            .hint_text("optional, e.g. me@server.example"),
                    )
                },
            );
            field_error(ui, problems.get(&PeerField::Ssh));
            labelled_row(ui, "Key", "The key both tunnels use.", |ui| {
                egui::ComboBox::from_id_salt("peer_key")
                    .selected_text(if form.key.is_empty() {
                        "choose a key"
                    } else {
                        form.key.as_str()
                    })
                    .show_ui(ui, |ui| {
                        for info in &model.files.keys.keys {
                            ui.selectable_value(&mut form.key, info.name.clone(), &info.name);
                        }
                    })
                    .response
            });
            field_error(ui, problems.get(&PeerField::Key));
            labelled_row(
                ui,
                "First local port",
                "A's actor system binds this port, B's the next (on its host); A reaches B at the third, B reaches A at the fourth.",
                |ui| ui.add(egui::DragValue::new(&mut form.first_port).range(1..=65532)),
            );
            labelled_row(
                ui,
                "Remote port",
                "The remote host's encrypted port for A ➡ B (its sluiced -d); the next one is for B ➡ A (its sluiced --reverse-in). The remote firewall must let both through.",
                |ui| ui.add(egui::DragValue::new(&mut form.remote_port).range(1..=65534)),
            );
            field_error(ui, problems.get(&PeerField::Ports));
        });
}
