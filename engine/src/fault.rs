//! What went wrong in a tunnel, typed by cause, as it crosses the engine's boundary in
//! states, events and last errors. The faults themselves are defined where they happen
//! (`net/`); words come from their `Display`, in the front ends only.

use crate::address::Address;
pub use crate::net::conn::{HandshakeFailure, HandshakeFault, PumpFault, TargetFault};
pub use crate::net::io_fault::IoFault;
pub use crate::net::listener::ListenError;
pub use crate::net::proxy::ProxyFault;
pub use crate::net::resolve::ResolveError;
pub use crate::net::reverse::ReverseFault;

/// Why a tunnel could not start listening.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StartFault {
    #[error(transparent)]
    Listen(ListenError),
    #[error("cannot resolve target {target}: {error}")]
    Target {
        target: Address,
        error: ResolveError,
    },
    #[error("cannot resolve bind address {bind}: {error}")]
    Bind { bind: Address, error: ResolveError },
    /// Key loaders refuse empty keys; this keeps any other way in from running one.
    #[error(
        "its key is empty, which anyone could use to connect: generate a key (sluiced --generate-key) and use it at both ends"
    )]
    EmptyKey,
}

/// Why a connection ended before both directions reached end of stream.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConnectionFault {
    #[error(transparent)]
    Pump(PumpFault),
    #[error(transparent)]
    Proxy(ProxyFault),
    #[error("closed because the tunnel stopped")]
    TunnelStopped,
}

/// A tunnel's most recent failure, of whichever kind.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TunnelFault {
    #[error("could not start: {0}")]
    Start(StartFault),
    #[error(transparent)]
    Handshake(HandshakeFault),
    #[error(transparent)]
    Target(TargetFault),
    #[error(transparent)]
    Pump(PumpFault),
    #[error("cannot accept connections: {0}")]
    Accept(IoFault),
    #[error(transparent)]
    Reverse(ReverseFault),
    #[error(transparent)]
    Proxy(ProxyFault),
}
