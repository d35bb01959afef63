//! The main list: every tunnel with its role, addresses, state and far end's health,
//! current rates and totals, and a start/stop button per row; it fits the width it is
//! given.

use egui::RichText;
use egui::text::TextFormat;
use sluice_engine::TunnelSpec;

use crate::command::{KeyCommand, TunnelCommand, UiCommand, ViewCommand};
use crate::format;
use crate::model::Model;
use crate::peer;
use crate::theme;
use crate::views::widgets::{far_end_words, role_label, state_words};

/// The traffic column's width; the rest of a row shrinks to fit, so the list never needs
/// a horizontal scroll bar (long names and addresses are cut, whole on hover).
const TRAFFIC_WIDTH: f32 = 190.0;

pub fn show(ui: &mut egui::Ui, model: &Model, selected: Option<&str>, out: &mut Vec<UiCommand>) {
    if model.files.tunnels.is_empty() {
        empty_state(ui, model, out);
        return;
    }
    egui::ScrollArea::vertical()
        .auto_shrink(false)
        .show(ui, |ui| {
            for spec in &model.files.tunnels {
                row(ui, model, spec, selected == Some(spec.name.as_str()), out);
                ui.separator();
            }
        });
}

/// One tunnel on two lines: start/stop, name, role, state and far-end health; then its
/// addresses. Its traffic (now and in total) at the right.
fn row(
    ui: &mut egui::Ui,
    model: &Model,
    spec: &TunnelSpec,
    selected: bool,
    out: &mut Vec<UiCommand>,
) {
    let name = &spec.name;
    let width = ui.available_width();
    ui.horizontal(|ui| {
        if model.is_running(name) {
            if ui
                .button("■")
                .on_hover_text(format!("Stop {name}"))
                .clicked()
            {
                out.push(TunnelCommand::Stop(name.clone()).into());
            }
        } else if ui
            .button("▶")
            .on_hover_text(format!("Start {name}"))
            .clicked()
        {
            out.push(TunnelCommand::Start(name.clone()).into());
        }
        let main_width = (width - TRAFFIC_WIDTH - 48.0).max(120.0);
        ui.vertical(|ui| {
            ui.set_width(main_width);
            ui.horizontal(|ui| {
                if ui
                    .selectable_label(selected, RichText::new(&spec.name).strong())
                    .clicked()
                {
                    out.push(ViewCommand::Select(name.clone()).into());
                }
                ui.label(RichText::new(role_label(spec.mode)).color(theme::MUTED));
                if let Some(partner) = peer::partner(name, &model.files.tunnels) {
                    ui.label(RichText::new("↔ pair").color(theme::MUTED))
                        .on_hover_text(format!(
                            "One of a pair with \"{}\": they start and stop together",
                            partner.name
                        ));
                }
                // The state and the far end's health as one label, cut together when the
                // row is narrow (whole on hover).
                let font = egui::TextStyle::Body.resolve(ui.style());
                let mut job = egui::text::LayoutJob::default();
                let mut whole = String::new();
                let (state, color) = state_words(model, name);
                let health = far_end_words(model, name);
                for (i, (text, color)) in std::iter::once((state, color)).chain(health).enumerate()
                {
                    if i > 0 {
                        job.append("  ·  ", 0.0, TextFormat::simple(font.clone(), theme::MUTED));
                        whole.push_str(" · ");
                    }
                    job.append(&text, 0.0, TextFormat::simple(font.clone(), color));
                    whole.push_str(&text);
                }
                ui.add(egui::Label::new(job).truncate())
                    .on_hover_text(whole);
            });
            let route = format!("{}  ➡  {}", spec.listen, spec.target);
            ui.add(egui::Label::new(RichText::new(&route).monospace()).truncate())
                .on_hover_text(route);
        });
        ui.vertical(|ui| {
            ui.set_width(TRAFFIC_WIDTH);
            if let Some(status) = model.status(name) {
                let c = &status.counters;
                ui.label(format!(
                    "⬆ {}  ⬇ {}",
                    format::rate(c.rate_up),
                    format::rate(c.rate_down)
                ))
                .on_hover_text("Now, toward the target and back");
                ui.label(
                    RichText::new(format!(
                        "Total ⬆ {}  ⬇ {}",
                        format::bytes(c.bytes_up),
                        format::bytes(c.bytes_down)
                    ))
                    .color(theme::MUTED),
                );
            }
        });
    });
}

fn empty_state(ui: &mut egui::Ui, model: &Model, out: &mut Vec<UiCommand>) {
    ui.vertical_centered(|ui| {
        ui.add_space(60.0);
        ui.heading("No tunnels yet");
        ui.add_space(8.0);
        if model.files.keys.keys.is_empty() {
            ui.label("A tunnel needs a key that both ends share. Start by generating one (or importing the far end's key file).");
            ui.add_space(8.0);
            if ui.button("🔑 Generate or import a key").clicked() {
                out.push(KeyCommand::ShowKeys(true).into());
            }
        } else {
            ui.label("Create a tunnel to reach a service behind spiped -d, or to serve one.");
            ui.add_space(8.0);
            if ui.button("+ Create a tunnel").clicked() {
                out.push(TunnelCommand::New.into());
            }
        }
    });
}
