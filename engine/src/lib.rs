//! Sluice's engine: the spiped wire protocol (sans-I/O), tunnels on tokio, and the
//! supervisor the desktop app and the `sluiced` daemon drive.
//!
//! Layers, each using only the ones above it: `protocol` (bytes in, bytes out), `net`
//! (sockets), `tunnel` (one listener and its connections), `engine` (the supervisor).
//! What this root exports is the engine's public surface; the app uses nothing else.

pub mod address;
pub mod atomic_file;
pub mod config;
pub mod control_char;
pub mod definition;
pub mod engine;
pub mod events;
pub mod fault;
pub mod keyfile;
pub mod keystore;
pub mod net;
pub mod plan;
mod platform;
pub mod protocol;
pub mod stats;
pub mod tunnel;

pub use address::{Address, AddressError, parse_bind};
pub use atomic_file::write_atomic;
pub use config::{
    Config, ConfigError, FarEndRecord, KeyRef, MetricsAddressError, SshDestinationError,
    TunnelSpec, check_ssh_destination, parse_metrics_address,
};
pub use control_char::ControlChar;
pub use definition::{DefinitionProblem, Mode, TunnelDefinition};
pub use engine::{Engine, EventStream, Missed, RuntimeThreads, StatusReader, TunnelStatus};
pub use events::{Event, EventKind, RepeatedProblem};
pub use fault::{
    ConnectionFault, HandshakeFailure, HandshakeFault, IoFault, ListenError, PumpFault,
    ResolveError, StartFault, TargetFault, TunnelFault,
};
pub use keyfile::{
    KeyfileError, KeyfileWarning, LoadedKey, generate_key_bytes, read_keyfile,
    read_keyfile_with_bytes, write_new_keyfile,
};
pub use keystore::{KeySourceError, KeyStore, KeyStoreError, KeychainStore, load_key};
pub use net::probe::{ProbeOutcome, ProbeRequest};
pub use net::spipe::{SpipeFault, SpipeRequest, spipe_session};
pub use net::stream::Peer;
pub use plan::{ApplyError, Desired, DesiredTunnel, Ending, Plan, Restart};
pub use platform::host_name;
pub use protocol::key::{Fingerprint, PresharedKey, hex};
pub use protocol::{ForwardSecrecy, KeyAgreement};
pub use stats::{CounterSnapshot, LastError, RateSample};
pub use tunnel::{TunnelSettings, TunnelState};
pub mod far_end;
pub use far_end::{
    Action as FarEndAction, DEFAULT_CONNECT_TIMEOUT as FAR_END_CONNECT_TIMEOUT, FarEndCommands,
    FarEndError, FarEndPlan, KeyBytes as FarEndKey, Request as FarEndRequest, SshClient,
    Step as FarEndStep, StepOutcome as FarEndStepOutcome, StepReport, default_far_address,
    far_address_label, far_end_commands, host_aliases as ssh_host_aliases, run as run_far_end,
};
