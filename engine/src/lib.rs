//! Sluice's engine: the spiped wire protocol (sans-I/O), tunnels on tokio, and the
//! supervisor the desktop app and the `sluiced` daemon drive.
//!
//! Layers, each using only the ones above it: `protocol` (bytes in, bytes out), `net`
//! (sockets), `tunnel` (one listener and its connections), `engine` (the supervisor).

pub mod config;
pub mod engine;
pub mod events;
pub mod keyfile;
pub mod keystore;
pub mod net;
pub mod protocol;
pub mod stats;
pub mod tunnel;

pub use config::{Config, KeyRef, Mode, TunnelSpec};
pub use engine::{Engine, TunnelStatus};
pub use events::{Event, EventKind, TunnelId};
pub use net::addr::Address;
pub use net::probe::{ProbeOutcome, ProbeRequest};
pub use protocol::ForwardSecrecy;
pub use protocol::key::{Fingerprint, PresharedKey};
pub use stats::{CounterSnapshot, HandshakeFailure, RateSample};
pub use tunnel::{TunnelSettings, TunnelState};
