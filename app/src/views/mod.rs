//! The screens. Each view draws from the app's state and returns what the user asked for
//! as [`UiCommand`]s; only `app.rs` acts on them.

mod detail;
mod dialogs;
mod editor;
mod header;
mod keys;
mod tunnel_list;
mod widgets;

use crate::app::{SluiceApp, UiCommand};
use crate::theme;

/// Draws one frame of the whole app.
pub fn show(ui: &mut egui::Ui, app: &mut SluiceApp) -> Vec<UiCommand> {
    let mut out = Vec::new();
    let selected = app
        .ui
        .selected
        .as_ref()
        .and_then(|name| app.model.tunnel_named(name))
        .map(|t| t.id);
    let history = selected.map(|id| app.rate_history(id)).unwrap_or_default();
    let SluiceApp {
        model,
        ui: state,
        view,
        ..
    } = app;

    egui::Panel::top("header").show(ui, |ui| header::show(ui, model, &mut out));
    if let Some(id) = selected {
        egui::Panel::right("detail")
            .resizable(true)
            .default_size(theme::DETAIL_PANEL_WIDTH)
            .show(ui, |ui| {
                detail::show(ui, model, state, id, &history, &mut out)
            });
    }
    egui::CentralPanel::default().show(ui, |ui| tunnel_list::show(ui, model, selected, &mut out));

    let ctx = ui.ctx().clone();
    if let Some(editor) = &mut view.editor {
        editor::show(&ctx, editor, model, view.dialogs_unavailable, &mut out);
    }
    if state.keys_open {
        keys::show(&ctx, model, &mut out);
    }
    if let Some(form) = &mut view.key_form {
        dialogs::key_form(&ctx, form, model, view.dialogs_unavailable, &mut out);
    }
    if let Some(confirm) = &view.confirm {
        dialogs::confirm(&ctx, confirm, model, &mut out);
    }
    out
}
