//! Small pieces several views share: labelled form rows, field errors, banners.

use egui::{Color32, RichText};

use crate::theme;

/// A label and, in the next grid column, the widget `add` makes, named by the label for
/// screen readers (and tests). Returns the widget's response.
pub fn labelled_row(
    ui: &mut egui::Ui,
    label: &str,
    help: &str,
    add: impl FnOnce(&mut egui::Ui) -> egui::Response,
) -> egui::Response {
    let label_response = ui.label(label).on_hover_text(help);
    let response = add(ui).labelled_by(label_response.id).on_hover_text(help);
    ui.end_row();
    response
}

/// A field's problem, under it, in red (nothing if there is none).
pub fn field_error(ui: &mut egui::Ui, problem: Option<&String>) {
    if let Some(problem) = problem {
        ui.label("");
        ui.label(RichText::new(problem).color(theme::ERROR).small());
        ui.end_row();
    }
}

/// A coloured box with text, for messages that must not be missed.
pub fn banner(ui: &mut egui::Ui, color: Color32, add: impl FnOnce(&mut egui::Ui)) {
    egui::Frame::new()
        .fill(color.gamma_multiply(0.15))
        .stroke(egui::Stroke::new(1.0, color))
        .corner_radius(4)
        .inner_margin(8)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            add(ui);
        });
}
