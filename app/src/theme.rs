//! Colours and spacing in one place, so every view agrees on what "error" or "upload"
//! looks like.

use egui::Color32;

pub const OK: Color32 = Color32::from_rgb(0x2e, 0x9e, 0x5b);
pub const WARN: Color32 = Color32::from_rgb(0xd0, 0x8c, 0x1a);
pub const ERROR: Color32 = Color32::from_rgb(0xd2, 0x3f, 0x3f);
pub const MUTED: Color32 = Color32::from_rgb(0x8a, 0x8f, 0x98);
/// Traffic from the listening side toward the target.
pub const UP: Color32 = Color32::from_rgb(0x3b, 0x82, 0xf6);
/// Traffic coming back.
pub const DOWN: Color32 = Color32::from_rgb(0x16, 0xa3, 0x8a);

pub const SPACING: f32 = 8.0;
pub const DETAIL_PANEL_WIDTH: f32 = 520.0;

/// Applied once at start-up.
pub fn apply(ctx: &egui::Context) {
    ctx.all_styles_mut(|style| {
        style.spacing.item_spacing = egui::vec2(SPACING, 6.0);
        style.spacing.button_padding = egui::vec2(8.0, 4.0);
    });
}
