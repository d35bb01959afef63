//! Sluice's engine: the spiped wire protocol (sans-I/O), tunnels on tokio, and the
//! supervisor the desktop app and the `sluiced` daemon drive.

pub mod config;
pub mod keyfile;
pub mod net;
pub mod protocol;
