//! Starts the Sluice desktop app.

// A release build on Windows is a GUI program: no console window opens beside it when it
// starts from the Start menu.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use sluice::{Services, SluiceApp, icon};

fn main() -> eframe::Result {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Sluice")
        .with_app_id(icon::APP_ID)
        .with_inner_size([1180.0, 720.0])
        .with_min_inner_size([720.0, 420.0]);
    // A broken icon is no reason not to start: say so and use the desktop's default.
    match icon::window_icon() {
        Ok(icon) => viewport = viewport.with_icon(icon),
        Err(e) => eprintln!("sluice: {e}"),
    }
    let options = eframe::NativeOptions {
        viewport,
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        "Sluice",
        options,
        Box::new(|cc| {
            let services = Services::platform()?;
            Ok(Box::new(SluiceApp::new(cc, services)?))
        }),
    )
}
