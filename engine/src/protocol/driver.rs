//! The handshake driver: one state machine for both key agreements that says how many bytes
//! it wants, takes the bytes that arrived and yields the bytes to send, in the manner of
//! rustls and quinn-proto. It performs no I/O and reads no clock; the net layer loops around it.

use std::fmt;

use super::dh::EphemeralKeyPair;
use super::handshake::{
    ClientVerified, Handshake, HandshakeMisuse, NONCE_LEN, NoncesExchanged, PeerRejection,
    PeerVerified, SIGNED_DH_LEN, ServerHandshake, ServerNoncesExchanged, SessionKeys,
};
use super::key::PresharedKey;
use super::packet::{PacketOpener, PacketSealer};
use super::tag::NonceTag;
use super::x25519::{
    SIGNED_X25519_LEN, X25519Handshake, X25519NoncesExchanged, X25519PeerVerified,
};
use super::{ForwardSecrecy, KeyAgreement, Role};

/// Why the peer made the handshake fail, as far as the bytes exchanged can tell.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PeerFault {
    /// This end checked the peer's message and refused it.
    #[error(transparent)]
    Rejected(PeerRejection),
    /// An X25519 end's MAC check failed: a different key, or a peer speaking the classic
    /// handshake (whose first 64 bytes cannot carry a valid X25519 signature).
    #[error(
        "handshake rejected: the far end has a different key, or does not use the X25519 handshake (stock spiped, or Sluice without X25519): turn X25519 on at both ends or at neither"
    )]
    X25519Rejected,
    /// A classic end received exactly an X25519-sized signed value and then nothing.
    #[error(
        "the far end sent a 64-byte key, as Sluice's X25519 handshake does, but this end uses the classic spiped handshake: turn X25519 on at both ends or at neither"
    )]
    PeerUsesX25519,
    /// The peer closed the connection before the handshake finished.
    #[error("{}", closed_message(*.role, *.after_our_value))]
    Closed {
        role: Role,
        /// Whether this end had the peer's nonce and so had sent, or was sending, its
        /// signed value (spiped answers a wrong key by hanging up after checking it).
        after_our_value: bool,
    },
}

fn closed_message(role: Role, after_our_value: bool) -> &'static str {
    match (role, after_our_value) {
        (Role::Client, true) => {
            "handshake rejected: the far end hung up mid-handshake; it has a different key, requires forward secrecy (-g) while this end has it off (-f), cannot reach its own target, or one end uses Sluice's X25519 handshake and the other does not"
        }
        (Role::Client, false) => {
            "the far end closed the connection before the handshake: is it an spiped server (spiped -d / a Decrypt tunnel)?"
        }
        (Role::Server, _) => "the client closed the connection before finishing the handshake",
    }
}

/// What the driver needs next, once [`HandshakeDriver::pending_output`] has been sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read at most this many bytes (never more: what follows the handshake belongs to the
    /// data phase) and pass them to [`HandshakeDriver::receive`].
    Receive(usize),
    /// The server has verified the client: give it its key pair
    /// ([`HandshakeDriver::supply_key_pair`]). Only now is the Diffie-Hellman work due.
    KeyPair,
    /// Both sides are authenticated: call [`HandshakeDriver::finish`].
    Done,
    /// The handshake failed; this is the fault [`HandshakeDriver::receive`] returned.
    Failed(PeerFault),
}

/// The first stage of the handshake this driver runs.
enum Start {
    /// A classic client: its key pair (unless `-f`) is taken up front, since it sends its
    /// signed value as soon as it has the server's nonce.
    Classic(Handshake),
    /// A classic server: it takes its key pair only after the client's value verified.
    ClassicServer(ServerHandshake),
    X25519(X25519Handshake),
}

#[allow(clippy::large_enum_variant)]
enum Exchanged {
    Classic(NoncesExchanged),
    ClassicServer(ServerNoncesExchanged),
    X25519(X25519NoncesExchanged),
}

// The driver lives for one handshake and holds exactly one stage; boxing the larger ones
// would cost allocations per connection for nothing.
#[allow(clippy::large_enum_variant)]
enum State {
    AwaitNonce(Start),
    AwaitSignedValue(Exchanged),
    NeedsKeyPair(ClientVerified),
    Done(Authenticated),
    Failed(PeerFault),
    /// Only while a transition runs, or after `finish`.
    Taken,
}

/// Runs one end of the handshake (classic spiped or Sluice's X25519) over a byte stream it
/// never touches. The loop around it: send [`pending_output`](Self::pending_output) and
/// report it with [`output_sent`](Self::output_sent); then act on [`next`](Self::next).
pub struct HandshakeDriver {
    role: Role,
    agreement: KeyAgreement,
    state: State,
    /// The peer's current message, as far as it has arrived.
    inbox: [u8; SIGNED_DH_LEN],
    filled: usize,
    /// Bytes to send: at most our nonce and our signed value.
    outbox: [u8; NONCE_LEN + SIGNED_DH_LEN],
    out_start: usize,
    out_end: usize,
}

impl HandshakeDriver {
    /// The classic spiped handshake. A client with forward secrecy on must bring its key
    /// pair (`keypair`); a server must not: it is asked for one ([`Next::KeyPair`]) once
    /// the client has proved it holds the key. `nonce` must be fresh random bytes.
    pub fn classic(
        role: Role,
        key: &PresharedKey,
        forward_secrecy: ForwardSecrecy,
        nonce: [u8; NONCE_LEN],
        keypair: Option<Box<EphemeralKeyPair>>,
    ) -> Result<HandshakeDriver, HandshakeMisuse> {
        let start = match role {
            Role::Client => {
                Start::Classic(Handshake::new(role, key, forward_secrecy, nonce, keypair)?)
            }
            Role::Server if keypair.is_some() => return Err(HandshakeMisuse::KeyPairNotExpected),
            Role::Server => Start::ClassicServer(ServerHandshake::new(key, forward_secrecy, nonce)),
        };
        Ok(Self::with_start(role, KeyAgreement::Classic, nonce, start))
    }

    /// Sluice's X25519 handshake (docs/X25519.md). `nonce` and `private` must be fresh
    /// random bytes; the private key serves this one handshake.
    pub fn x25519(
        role: Role,
        key: &PresharedKey,
        nonce: [u8; NONCE_LEN],
        private: [u8; 32],
    ) -> HandshakeDriver {
        let start = Start::X25519(X25519Handshake::new(role, key, nonce, private));
        Self::with_start(role, KeyAgreement::X25519, nonce, start)
    }

    /// A server also accepts clients holding `previous` (a rotation's grace period): the
    /// current key is tried first, the previous one only for a client whose value does not
    /// verify with it. No effect on a client, or once the handshake has begun.
    pub fn accept_previous_key(&mut self, previous: &PresharedKey) {
        match &mut self.state {
            State::AwaitNonce(Start::ClassicServer(server)) => server.accept_previous_key(previous),
            State::AwaitNonce(Start::X25519(handshake)) => handshake.accept_previous_key(previous),
            _ => {}
        }
    }

    fn with_start(
        role: Role,
        agreement: KeyAgreement,
        nonce: [u8; NONCE_LEN],
        start: Start,
    ) -> HandshakeDriver {
        let mut driver = HandshakeDriver {
            role,
            agreement,
            state: State::AwaitNonce(start),
            inbox: [0; SIGNED_DH_LEN],
            filled: 0,
            outbox: [0; NONCE_LEN + SIGNED_DH_LEN],
            out_start: 0,
            out_end: 0,
        };
        // Both sides send their nonce at once, without waiting for the peer's.
        driver.queue(&nonce);
        driver
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn key_agreement(&self) -> KeyAgreement {
        self.agreement
    }

    /// Bytes to send to the peer now (empty if none).
    pub fn pending_output(&self) -> &[u8] {
        &self.outbox[self.out_start..self.out_end]
    }

    /// `n` bytes of [`pending_output`](Self::pending_output) have been sent.
    pub fn output_sent(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.out_end);
    }

    /// What to do once the pending output is sent.
    pub fn next(&self) -> Next {
        match &self.state {
            State::AwaitNonce(_) => Next::Receive(NONCE_LEN - self.filled),
            State::AwaitSignedValue(_) => Next::Receive(self.signed_len() - self.filled),
            State::NeedsKeyPair(_) => Next::KeyPair,
            State::Done(_) => Next::Done,
            State::Failed(fault) => Next::Failed(*fault),
            State::Taken => Next::Failed(PeerFault::Closed {
                role: self.role,
                after_our_value: false,
            }),
        }
    }

    /// How many bytes the driver wants now: 0 unless [`Next::Receive`].
    pub fn wants(&self) -> usize {
        match self.next() {
            Next::Receive(n) => n,
            _ => 0,
        }
    }

    /// Takes bytes received from the peer; returns how many it consumed (never more than
    /// [`wants`](Self::wants): the rest belongs to the data phase and stays with the caller).
    pub fn receive(&mut self, bytes: &[u8]) -> Result<usize, PeerFault> {
        if let State::Failed(fault) = self.state {
            return Err(fault);
        }
        let n = self.wants().min(bytes.len());
        self.inbox[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
        self.filled += n;
        if n > 0 && self.wants() == 0 {
            self.filled = 0;
            if let Err(fault) = self.advance() {
                self.state = State::Failed(fault);
                return Err(fault);
            }
        }
        Ok(n)
    }

    /// The server's key pair, once [`Next::KeyPair`] asked for it. Signs the server's value
    /// and queues it; the handshake is then done.
    pub fn supply_key_pair(
        &mut self,
        keypair: Box<EphemeralKeyPair>,
    ) -> Result<(), HandshakeMisuse> {
        match std::mem::replace(&mut self.state, State::Taken) {
            State::NeedsKeyPair(verified) => {
                let verified = verified.sign(Some(keypair))?;
                self.queue(&verified.signed_dh()[..]);
                self.state = State::Done(Authenticated(Verified::Classic(verified)));
                Ok(())
            }
            other => {
                self.state = other;
                Err(HandshakeMisuse::KeyPairNotExpected)
            }
        }
    }

    /// The peer closed the connection before the handshake finished: what that means.
    pub fn end_of_stream(&self) -> PeerFault {
        if let Some(fault) = self.diagnose_stall() {
            return fault;
        }
        PeerFault::Closed {
            role: self.role,
            after_our_value: self.role == Role::Client
                && matches!(self.state, State::AwaitSignedValue(_)),
        }
    }

    /// The connection was reset (or broke under a write) before the handshake finished.
    /// A client that holds the server's nonce heard an spiped server answer and then hang
    /// up with our bytes unread, which is how stock spiped ends a connection whose own
    /// target connect failed: the same hang-up as [`end_of_stream`](Self::end_of_stream).
    /// `None`: nothing more specific than a network error can be said.
    pub fn connection_lost(&self) -> Option<PeerFault> {
        let had_their_nonce =
            self.role == Role::Client && matches!(self.state, State::AwaitSignedValue(_));
        had_their_nonce.then(|| self.end_of_stream())
    }

    /// The peer went silent (the caller's timeout ran out): whether the bytes so far say
    /// why. `None` means nothing more specific than a timeout can be said.
    pub fn diagnose_stall(&self) -> Option<PeerFault> {
        let classic_got_x25519_value = self.agreement == KeyAgreement::Classic
            && matches!(self.state, State::AwaitSignedValue(_))
            && self.filled == SIGNED_X25519_LEN;
        classic_got_x25519_value.then_some(PeerFault::PeerUsesX25519)
    }

    /// The authenticated handshake, once [`Next::Done`] and the last output is sent.
    pub fn finish(mut self) -> Result<Authenticated, HandshakeMisuse> {
        if !self.pending_output().is_empty() {
            return Err(HandshakeMisuse::NotFinished);
        }
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Done(authenticated) => Ok(authenticated),
            _ => Err(HandshakeMisuse::NotFinished),
        }
    }

    fn signed_len(&self) -> usize {
        match self.agreement {
            KeyAgreement::Classic => SIGNED_DH_LEN,
            KeyAgreement::X25519 => SIGNED_X25519_LEN,
        }
    }

    fn queue(&mut self, bytes: &[u8]) {
        if self.out_start == self.out_end {
            self.out_start = 0;
            self.out_end = 0;
        }
        // At most nonce + signed value are ever queued, which is the outbox's size.
        let end = self.out_end + bytes.len();
        self.outbox[self.out_end..end].copy_from_slice(bytes);
        self.out_end = end;
    }

    /// A whole message is in the inbox: move to the next stage.
    fn advance(&mut self) -> Result<(), PeerFault> {
        let client = self.role == Role::Client;
        let next = match std::mem::replace(&mut self.state, State::Taken) {
            State::AwaitNonce(start) => {
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&self.inbox[..NONCE_LEN]);
                let exchanged = match start {
                    Start::Classic(h) => Exchanged::Classic(h.receive_nonce(&nonce)),
                    Start::ClassicServer(h) => Exchanged::ClassicServer(h.receive_nonce(&nonce)),
                    Start::X25519(h) => Exchanged::X25519(h.receive_nonce(&nonce)),
                };
                // The client sends its signed value at once; the server only after
                // checking the client's (PROTOCOL.md 3.1).
                match &exchanged {
                    Exchanged::Classic(e) if client => self.queue(&e.signed_dh()[..]),
                    Exchanged::X25519(e) => {
                        if let Some(signed) = e.signed_public() {
                            self.queue(&signed[..]);
                        }
                    }
                    _ => {}
                }
                State::AwaitSignedValue(exchanged)
            }
            State::AwaitSignedValue(exchanged) => self.accept_signed_value(exchanged)?,
            other => other,
        };
        self.state = next;
        Ok(())
    }

    fn accept_signed_value(&mut self, exchanged: Exchanged) -> Result<State, PeerFault> {
        let mut classic = [0u8; SIGNED_DH_LEN];
        let mut x25519 = [0u8; SIGNED_X25519_LEN];
        Ok(match exchanged {
            Exchanged::Classic(e) => {
                classic.copy_from_slice(&self.inbox);
                let verified = e.receive_signed_dh(&classic).map_err(PeerFault::Rejected)?;
                State::Done(Authenticated(Verified::Classic(verified)))
            }
            Exchanged::ClassicServer(e) => {
                classic.copy_from_slice(&self.inbox);
                let verified = e.receive_signed_dh(&classic).map_err(PeerFault::Rejected)?;
                if verified.needs_key_pair() {
                    State::NeedsKeyPair(verified)
                } else {
                    // -f: y = 1, nothing to compute.
                    match verified.sign(None) {
                        Ok(signed) => {
                            self.queue(&signed.signed_dh()[..]);
                            State::Done(Authenticated(Verified::Classic(signed)))
                        }
                        // Unreachable: `needs_key_pair` is false exactly when None is right.
                        Err(_) => {
                            return Err(PeerFault::Closed {
                                role: self.role,
                                after_our_value: false,
                            });
                        }
                    }
                }
            }
            Exchanged::X25519(e) => {
                x25519.copy_from_slice(&self.inbox[..SIGNED_X25519_LEN]);
                let verified = e.receive_signed_public(&x25519).map_err(|e| match e {
                    PeerRejection::BadSignature => PeerFault::X25519Rejected,
                    other => PeerFault::Rejected(other),
                })?;
                if self.role == Role::Server {
                    self.queue(&verified.signed_public()[..]);
                }
                State::Done(Authenticated(Verified::X25519(verified)))
            }
        })
    }
}

impl fmt::Debug for HandshakeDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeDriver")
            .field("role", &self.role)
            .field("key_agreement", &self.agreement)
            .field("next", &self.next())
            .finish_non_exhaustive()
    }
}

// Lives only between the handshake's last message and the key derivation.
#[allow(clippy::large_enum_variant)]
enum Verified {
    Classic(PeerVerified),
    X25519(X25519PeerVerified),
}

/// Both ends have proved they hold the key and exchanged their values; what is left is
/// local computation ([`derive_session`](Self::derive_session)), which the caller may
/// overlap with other work (connecting to the target).
pub struct Authenticated(Verified);

impl Authenticated {
    /// The peer runs spiped `-f` (sent y = 1): this session has no forward secrecy.
    pub fn peer_skipped_forward_secrecy(&self) -> bool {
        match &self.0 {
            Verified::Classic(v) => v.peer_skipped_forward_secrecy(),
            Verified::X25519(_) => false,
        }
    }

    /// What the client tagged its nonce as (see [`super::tag`]), with the key it proved
    /// it holds, if anything: on a server, what the connection is for.
    pub fn nonce_tag(&self) -> Option<NonceTag> {
        let (client_nonce, key) = match &self.0 {
            Verified::Classic(v) => v.client_nonce_and_key(),
            Verified::X25519(v) => v.client_nonce_and_key(),
        };
        NonceTag::of(key, client_nonce)
    }

    /// Whether a server accepted the client with its previous key.
    pub fn used_previous_key(&self) -> bool {
        match &self.0 {
            Verified::Classic(v) => v.used_previous_key(),
            Verified::X25519(v) => v.used_previous_key(),
        }
    }

    /// Whether deriving the session keys costs a modular exponentiation (the classic
    /// handshake, unless this side runs `-f`), so a caller can move it off a thread that
    /// serves I/O.
    pub fn costs_an_exponentiation(&self) -> bool {
        match &self.0 {
            Verified::Classic(v) => v.costs_an_exponentiation(),
            Verified::X25519(_) => false,
        }
    }

    /// The session keys: for the classic handshake one modular exponentiation unless this
    /// side runs `-f`; for X25519 only the key derivation (the shared secret was computed
    /// when the peer's key was checked).
    pub fn derive_session(self) -> SessionKeys {
        match self.0 {
            Verified::Classic(v) => v.derive_session(),
            Verified::X25519(v) => v.derive_session(),
        }
    }

    /// [`derive_session`](Self::derive_session), as (sealer for what this side sends,
    /// opener for what it receives).
    pub fn session_codecs(self) -> (PacketSealer, PacketOpener) {
        self.derive_session().into_packet_codecs()
    }
}

impl fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Verified::Classic(v) => v.fmt(f),
            Verified::X25519(v) => v.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests;
