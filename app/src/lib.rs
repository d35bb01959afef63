//! Sluice, the desktop app: create, start, stop and watch spiped-compatible tunnels.
//! The engine (crate `sluice_engine`, used only through its crate-root exports) runs the
//! tunnels on its own threads; this crate draws them and turns clicks into engine commands.
//!
//! Layers, each importing only those below it (and never in a cycle):
//! 1. `error` (imports nothing of the app); `format`, `theme`, `tray` (nothing either);
//!    `alerts` (`format`); `bounded_read` (`error`), `icon` (`error`, `tray`), `platform`
//!    (`error`, `tray`, `alerts`, `icon`).
//! 2. `file_dialogs`, `keys`, `tunnel_form`, `peer`, `tunnel_file`, `connections`, then
//!    `services`: the machine, the forms, the export file and the connection history.
//! 3. `model`, then `command`: what the views read and what they may ask for.
//! 4. `views` (draws, emits commands) and `background` (work off the UI thread).
//! 5. `app`: the one place commands and background results are carried out.
//!
//! Locks: the app holds none. Its state lives on the UI thread and crosses threads only
//! as messages (channels in `background`), so there is no lock to poison; the one rule
//! for locks, should one be needed, is in docs/ARCHITECTURE.md.

pub mod alerts;
pub mod app;
pub mod background;
pub mod bounded_read;
pub mod command;
pub mod connections;
pub mod error;
pub mod file_dialogs;
pub mod format;
pub mod icon;
pub mod keys;
pub mod model;
pub mod peer;
pub mod platform;
pub mod services;
pub mod theme;
pub mod tray;
pub mod tunnel_file;
pub mod tunnel_form;
pub mod views;

pub use app::SluiceApp;
pub use services::Services;
