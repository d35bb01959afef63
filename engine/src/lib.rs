//! Sluice's engine: the spiped wire protocol (sans-I/O), tunnels on tokio, and the
//! supervisor the desktop app and the `sluiced` daemon drive.
//!
//! Layers, each using only the ones above it: `protocol` (bytes in, bytes out), `net`
//! (sockets), `tunnel` (one listener and its connections), `engine` (the supervisor).
//! What this root exports is the engine's public surface; the app uses nothing else.

pub mod config;
pub mod engine;
pub mod events;
pub mod keyfile;
pub mod keystore;
pub mod net;
pub mod protocol;
pub mod stats;
pub mod tunnel;

pub use config::{Config, ConfigError, KeyRef, Mode, TunnelSpec, write_atomic};
pub use engine::{Engine, TunnelStatus};
pub use events::{Event, EventKind, TunnelId};
pub use keyfile::{KeyfileError, KeyfileWarning, LoadedKey};
pub use keystore::{KeySourceError, KeyStore, KeyStoreError, KeychainStore};
pub use net::addr::{Address, AddressError};
pub use net::probe::{ProbeOutcome, ProbeRequest};
pub use protocol::key::{Fingerprint, PresharedKey, hex};
pub use protocol::{ForwardSecrecy, KeyAgreement};
pub use stats::{CounterSnapshot, HandshakeFailure, RateSample};
pub use tunnel::{TunnelSettings, TunnelState};
