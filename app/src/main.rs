//! Starts the Sluice desktop app.

use sluice::{Services, SluiceApp};

fn main() -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Sluice")
            .with_app_id("org.sluice.Sluice")
            .with_inner_size([1180.0, 720.0])
            .with_min_inner_size([720.0, 420.0]),
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
