//! Sluice, the desktop app: create, start, stop and watch spiped-compatible tunnels.
//! The engine (crate `sluice_engine`) runs the tunnels on its own threads; this crate
//! draws them and turns clicks into engine commands.

pub mod app;
pub mod background;
pub mod dialogs;
pub mod editor;
pub mod far_end;
pub mod format;
pub mod icon;
pub mod keys;
pub mod services;
pub mod theme;
pub mod views;

pub use app::SluiceApp;
pub use services::Services;
