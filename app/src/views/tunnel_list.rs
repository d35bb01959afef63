//! The main list: every tunnel with its role, addresses, state, current rates and totals,
//! and a start/stop button per row.

use egui::RichText;
use sluice_engine::TunnelId;

use crate::command::UiCommand;
use crate::format;
use crate::model::{Model, TunnelEntry};
use crate::views::widgets::{role_label, state_words};

pub fn show(
    ui: &mut egui::Ui,
    model: &Model,
    selected: Option<TunnelId>,
    out: &mut Vec<UiCommand>,
) {
    if model.tunnels.is_empty() {
        empty_state(ui, model, out);
        return;
    }
    egui::ScrollArea::both().auto_shrink(false).show(ui, |ui| {
        egui::Grid::new("tunnels")
            .striped(true)
            .num_columns(8)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                for heading in [
                    "",
                    "Name",
                    "Role",
                    "Listen",
                    "Target",
                    "State",
                    "Rate ⬆ / ⬇",
                    "Total ⬆ / ⬇",
                ] {
                    ui.label(RichText::new(heading).strong());
                }
                ui.end_row();
                for entry in &model.tunnels {
                    row(ui, model, entry, selected == Some(entry.id), out);
                }
            });
    });
}

fn row(
    ui: &mut egui::Ui,
    model: &Model,
    entry: &TunnelEntry,
    selected: bool,
    out: &mut Vec<UiCommand>,
) {
    let id = entry.id;
    let spec = &entry.spec;
    if model.is_running(id) {
        if ui
            .button("■")
            .on_hover_text(format!("Stop {}", spec.name))
            .clicked()
        {
            out.push(UiCommand::Stop(id));
        }
    } else if ui
        .button("▶")
        .on_hover_text(format!("Start {}", spec.name))
        .clicked()
    {
        out.push(UiCommand::Start(id));
    }
    if ui.selectable_label(selected, &spec.name).clicked() {
        out.push(UiCommand::Select(id));
    }
    ui.label(role_label(spec.mode));
    ui.label(RichText::new(&spec.listen).monospace());
    ui.label(RichText::new(&spec.target).monospace());
    let (text, color) = state_words(model, id);
    ui.label(RichText::new(text).color(color));
    match model.status(id) {
        Some(status) => {
            let c = &status.counters;
            ui.label(format!(
                "{} / {}",
                format::rate(c.rate_up),
                format::rate(c.rate_down)
            ));
            ui.label(format!(
                "{} / {}",
                format::bytes(c.bytes_up),
                format::bytes(c.bytes_down)
            ));
        }
        None => {
            ui.label("");
            ui.label("");
        }
    }
    ui.end_row();
}

fn empty_state(ui: &mut egui::Ui, model: &Model, out: &mut Vec<UiCommand>) {
    ui.vertical_centered(|ui| {
        ui.add_space(60.0);
        ui.heading("No tunnels yet");
        ui.add_space(8.0);
        if model.keys.keys.is_empty() {
            ui.label("A tunnel needs a key that both ends share. Start by generating one (or importing the far end's key file).");
            ui.add_space(8.0);
            if ui.button("🔑 Generate or import a key").clicked() {
                out.push(UiCommand::ShowKeys(true));
            }
        } else {
            ui.label("Create a tunnel to reach a service behind spiped -d, or to serve one.");
            ui.add_space(8.0);
            if ui.button("+ Create a tunnel").clicked() {
                out.push(UiCommand::NewTunnel);
            }
        }
    });
}
