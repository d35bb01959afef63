//! The screens. Each view draws from the [`Model`] (and edits only its own form's
//! fields) and returns what the user asked for as [`UiCommand`]s; only `app.rs` acts on
//! them. Views import the model, the commands, `views::widgets` and the pure helpers
//! (format, theme, tunnel_form, peer, tunnel_file's `reach`), never the app or each other.

mod detail;
mod header;
mod keys;
mod modals;
mod peer;
mod settings;
mod tunnel_editor;
mod tunnel_list;
mod widgets;

use sluice_engine::{CheckSample, RateSample};

use crate::command::UiCommand;
use crate::model::{Model, UiState, ViewState};
use crate::theme;

/// The selected tunnel's history, read from the engine once per frame for the detail
/// panel's charts.
#[derive(Default)]
pub struct History {
    /// Bytes per second each way, one sample a second.
    pub rates: Vec<RateSample>,
    /// Its far end's health checks: round trips, and failed checks.
    pub checks: Vec<CheckSample>,
}

/// Draws one frame of the whole app. `history` is the selected tunnel's.
pub fn show(
    ui: &mut egui::Ui,
    model: &Model,
    state: &UiState,
    view: &mut ViewState,
    history: &History,
) -> Vec<UiCommand> {
    let mut out = Vec::new();
    let selected = model.selected(state).map(|spec| spec.name.as_str());

    egui::Panel::top("header").show(ui, |ui| header::show(ui, model, state, view, &mut out));
    if let Some(name) = selected {
        // The list keeps at least half of a small window.
        let widest = (ui.available_width() * 0.5).max(320.0);
        egui::Panel::right("detail")
            .resizable(true)
            .default_size(theme::DETAIL_PANEL_WIDTH.min(widest))
            .max_size(widest)
            .show(ui, |ui| {
                detail::show(ui, model, state, view, name, history, &mut out)
            });
    }
    egui::CentralPanel::default().show(ui, |ui| tunnel_list::show(ui, model, selected, &mut out));

    let ctx = ui.ctx().clone();
    if let Some(editor) = &mut view.editor {
        tunnel_editor::show(&ctx, editor, model, view.dialogs_unavailable, &mut out);
    }
    if state.keys_open {
        keys::show(&ctx, model, &mut out);
    }
    if view.settings_open {
        settings::show(&ctx, &state.settings, &mut out);
    }
    if let Some(form) = &mut view.key_form {
        modals::key_form(&ctx, form, model, view.dialogs_unavailable, &mut out);
    }
    if let Some(confirm) = &view.confirm {
        modals::confirm(&ctx, confirm, &mut out);
    }
    if let Some(form) = &mut view.peer {
        peer::show(&ctx, form, model, &mut out);
    }
    if let Some(incoming) = &view.import_review {
        modals::import_review(&ctx, incoming, model, &mut out);
    }
    if let Some(shared) = &view.shared {
        modals::shared_passphrase(&ctx, shared, &mut out);
    }
    out
}
