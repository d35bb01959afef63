//! Starts the Sluice desktop app: one per user (a second start shows the running one's
//! window and exits), hidden in the tray with `--hidden` (as the login entry starts it).

// A release build on Windows is a GUI program: no console window opens beside it when it
// starts from the Start menu.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use sluice::platform::{self, Instance};
use sluice::services::Desktop;
use sluice::{Services, SluiceApp, icon};

fn main() -> eframe::Result {
    platform::identify_process();
    let mut start_hidden = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--hidden" => start_hidden = true,
            "--help" | "-h" => {
                println!(
                    "usage: sluice [--hidden]\n  --hidden  start in the tray, without showing the window"
                );
                return Ok(());
            }
            other => eprintln!("sluice: ignoring unknown argument {other}"),
        }
    }
    // Two apps would fight over the same ports and config file: a second start asks the
    // first to show its window instead.
    let instance = match platform::claim_instance(None) {
        Ok(Instance::HandedOver) => {
            eprintln!("sluice: already running; its window was asked to show");
            return Ok(());
        }
        Ok(Instance::First(lock)) => Some(lock),
        Err(e) if e.starts_alone() => {
            eprintln!("sluice: {e}; starting without the one-instance check");
            None
        }
        Err(e) => {
            eprintln!("sluice: {e}");
            std::process::exit(1);
        }
    };

    // Everything shows at 1280×800 and still works at 900×600.
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Sluice")
        .with_app_id(icon::APP_ID)
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([900.0, 600.0])
        .with_visible(!start_hidden);
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
    let desktop = Desktop::platform(start_hidden, instance);
    eframe::run_native(
        "Sluice",
        options,
        Box::new(move |cc| {
            let services = Services::platform(desktop)?;
            Ok(Box::new(SluiceApp::new(cc, services)?))
        }),
    )
}
