//! The spiped 1.6 wire protocol, sans-I/O: keys, Diffie-Hellman, the handshake state
//! machines and the 1060-byte data packets. Nothing here touches a socket, a clock or a
//! runtime; randomness is passed in, so both ends can be driven back to back in tests.

pub mod dh;
pub mod driver;
pub mod handshake;
pub mod health;
pub mod key;
pub mod packet;
pub mod reverse;
pub mod tag;
pub mod x25519;

pub use dh::EphemeralKeyPair;
pub use driver::{Authenticated, HandshakeDriver, Next, PeerFault};
pub use handshake::{
    ClientVerified, Handshake, HandshakeMisuse, NONCE_LEN, NoncesExchanged, PeerRejection,
    PeerVerified, SIGNED_DH_LEN, ServerHandshake, ServerNoncesExchanged, SessionKeys,
};
pub use packet::{MAX_PAYLOAD, PACKET_LEN, PacketError, PacketOpener, PacketSealer};
pub use x25519::{SIGNED_X25519_LEN, X25519Handshake};

use serde::{Deserialize, Serialize};

/// Which end of the encrypted connection this side is.
///
/// The client initiates the encrypted TCP connection (`spiped -e`, `spipe`); the server
/// accepts it (`spiped -d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
}

/// Forward-secrecy policy of one end, spiped's `-f` / `-g`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ForwardSecrecy {
    /// Ephemeral Diffie-Hellman; accept a peer that skips it (spiped's default).
    #[default]
    Enabled,
    /// Send y = 1 and skip the Diffie-Hellman work (`-f`): no forward secrecy.
    Disabled,
    /// Ephemeral Diffie-Hellman and reject a peer that sends y = 1 (`-g`).
    Required,
}

impl ForwardSecrecy {
    /// The spiped flag that selects this policy, if any.
    pub fn spiped_flag(self) -> Option<&'static str> {
        match self {
            ForwardSecrecy::Enabled => None,
            ForwardSecrecy::Disabled => Some("-f"),
            ForwardSecrecy::Required => Some("-g"),
        }
    }
}

/// Which key agreement the handshake uses. Classic is spiped's protocol, byte for byte;
/// X25519 is Sluice's opt-in fast variant (docs/X25519.md), which only another Sluice
/// with X25519 enabled understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAgreement {
    #[default]
    Classic,
    X25519,
}
