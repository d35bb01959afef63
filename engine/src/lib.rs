//! Sluice's engine: the spiped wire protocol (sans-I/O), tunnels on tokio, and the
//! supervisor the desktop app and the `sluiced` daemon drive.
//!
//! Layers, each using only the ones below it (docs/ARCHITECTURE.md draws them): the
//! leaves (`address`, `protocol`, `keyfile`, `sealed`, `platform`, …), `definition`, `net`
//! (sockets), `fault`, `stats` and `events`, `keystore`, `config`, `plan`, `tunnel` (one
//! listener and its connections), `engine` (the supervisor), `far_end`. Only `protocol`
//! is public as a module (the fuzz targets and benchmarks drive it directly); everything
//! else a front end uses is exported here, and the app and `sluiced` use nothing else.

mod address;
mod atomic_file;
mod audit;
mod config;
mod control_char;
mod definition;
mod engine;
mod events;
mod far_end;
mod fault;
mod health;
mod keyfile;
mod keystore;
mod net;
mod plan;
mod platform;
pub mod protocol;
mod proxy_header;
mod sealed;
mod stats;
mod tunnel;

pub use address::{Address, AddressError, parse_bind};
pub use atomic_file::{write_atomic, write_atomic_new};
pub use audit::{AuditOutcome, AuditRecord};
pub use config::{
    Config, ConfigError, FarEndRecord, Field, MetricsAddressError, SshDestinationError, TunnelSpec,
    check_ssh_destination, parse_metrics_address,
};
pub use control_char::ControlChar;
pub use definition::{
    DEFAULT_HEALTH_CHECK, DEFAULT_MAX_CONNECTIONS, DEFAULT_RERESOLVE, DEFAULT_TIMEOUT,
    DefinitionProblem, MAX_TIMEOUT, Mode, Part, TunnelDefinition, TunnelSettings, check_handshake,
    check_timeout,
};
pub use engine::{
    AUDIT_CAPACITY, AcceptedConnection, AuditTrail, Engine, EventStream, Missed, RuntimeThreads,
    StatusReader, TunnelStatus,
};
pub use events::{Event, EventKind, RepeatedProblem};
pub use far_end::{
    FAR_END_CONNECT_TIMEOUT, FarEndAction, FarEndCommands, FarEndError, FarEndKey, FarEndPlan,
    FarEndRequest, FarEndStep, FarEndStepOutcome, FarEndStepReport, LocalSluiced, SSH_COMMAND_VAR,
    SshClient, SshError, SshStage, default_far_address, far_address_label, far_end_commands,
    far_end_slug, run_far_end, ssh_host_aliases,
};
pub use fault::{
    ConnectionFault, HandshakeFailure, HandshakeFault, IoFault, ListenError, ProxyFault, PumpFault,
    ResolveError, StartFault, TargetFault, TunnelFault,
};
pub use health::{CheckSample, DownCause, Health, HealthFault};
pub use keyfile::{
    EmptyKey, KeyfileError, KeyfileWarning, LoadedKey, generate_key_bytes, loaded_from_bytes,
    read_key_bytes_from, read_key_from, read_keyfile, read_keyfile_with_bytes, write_new_keyfile,
};
pub use keystore::{
    KeyRef, KeySourceError, KeyStore, KeyStoreError, KeychainStore, load_key, load_key_bytes,
};
pub use net::probe::{ProbeOutcome, ProbeRequest, Probed};
pub use net::spipe::{SpipeFault, SpipeRequest, spipe_session};
pub use net::stream::Peer;
pub use plan::{ApplyError, Desired, DesiredTunnel, Ending, Plan, Restart};
pub use platform::host_name;
#[cfg(windows)]
pub use platform::{SecurityAttributes, current_user_sid, current_user_sid_string, user_sid_of};
pub use protocol::health::{TargetDownCause, TargetReport};
pub use protocol::key::{Fingerprint, PresharedKey, hex};
pub use protocol::{ForwardSecrecy, KeyAgreement, Role};
pub use proxy_header::ProxyVersion;
pub use sealed::{
    BUNDLE_PREFIX, BundleFileError, BundlePart, MAX_BUNDLE_LEN, MAX_WORK_FACTOR, MalformedPart,
    PASSPHRASE_SEPARATOR, PASSPHRASE_WORDS, Passphrase, PassphraseError, SEAL_WORK_FACTOR,
    SealError, UnsealError, Unsealed, check_bundle, read_bundle, seal, seal_key,
    seal_key_with_tunnels, unseal, unseal_bundle, unseal_key, write_new_bundle,
};
pub use stats::{CounterSnapshot, LastError, RateSample};
pub use tunnel::TunnelState;
