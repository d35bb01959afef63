//! The spiped handshake as a typestate machine: nonces, then signed Diffie-Hellman values,
//! then session keys. Each stage owns exactly the secrets it needs and consumes itself on
//! the way to the next, so messages cannot be sent or accepted out of order. The
//! [`driver`](super::driver) runs these stages against a byte stream.

use super::dh::{self, DH_LEN, EphemeralKeyPair};
use super::key::PresharedKey;
use super::packet::{PacketOpener, PacketSealer, hmac_sha256};
use super::{ForwardSecrecy, Role};
use hmac::Mac;
use sha2::Sha256;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Bytes of each side's nonce, the first message in each direction.
pub const NONCE_LEN: usize = 32;
/// Bytes of the signed DH message: y (256) ‖ HMAC-SHA256(dhmac_sender, y) (32).
pub const SIGNED_DH_LEN: usize = 288;

/// The DH value a `-f` side sends, and the shared value it then uses: 1.
const Y_ONE: [u8; DH_LEN] = {
    let mut y = [0u8; DH_LEN];
    y[DH_LEN - 1] = 1;
    y
};

/// A mistake of the caller, not of the peer: the handshake was driven against its rules.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeMisuse {
    #[error("internal error: forward secrecy is on but no Diffie-Hellman key pair was supplied")]
    MissingKeyPair,
    #[error("internal error: a key pair was supplied to a handshake that was not waiting for one")]
    KeyPairNotExpected,
    #[error("internal error: the handshake was asked for its result before it finished")]
    NotFinished,
}

/// Why this end refused the peer's handshake message. spiped simply drops the connection
/// in all these cases, so the peer only sees it close.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PeerRejection {
    #[error(
        "handshake rejected: the far end signed with a different key (check that both ends use the same key file)"
    )]
    BadSignature,
    #[error(
        "handshake rejected: the far end sent an out-of-range Diffie-Hellman value (it is not a correct spiped implementation, or the data was altered)"
    )]
    ValueOutOfRange,
    #[error(
        "handshake rejected: the far end sent a Diffie-Hellman value (0 or p - 1) that would make the session keys guessable; no correct spiped sends it (the far end is faulty, or the data was altered)"
    )]
    SmallSubgroupValue,
    #[error(
        "handshake rejected: the far end skips forward secrecy (-f) but this end requires it (-g)"
    )]
    ForwardSecrecyRefused,
    #[error(
        "handshake rejected: the far end's X25519 key gives an all-zero shared secret (a low-order point): it is not a correct Sluice peer, or the data was altered"
    )]
    NonContributory,
}

/// What every stage carries: who we are, the policy, K, and (unless this side runs `-f`)
/// the ephemeral key pair, boxed so that moving a stage never copies the exponent.
struct Common {
    role: Role,
    fs: ForwardSecrecy,
    key: PresharedKey,
    /// `None` exactly when `fs == Disabled`; the constructors establish this, so "this side
    /// skips DH" and "there is no key pair" are one and the same test.
    keypair: Option<Box<EphemeralKeyPair>>,
}

impl Common {
    fn new(
        role: Role,
        key: &PresharedKey,
        fs: ForwardSecrecy,
        keypair: Option<Box<EphemeralKeyPair>>,
    ) -> Result<Common, HandshakeMisuse> {
        let keypair = match fs {
            ForwardSecrecy::Disabled => None,
            ForwardSecrecy::Enabled | ForwardSecrecy::Required => {
                Some(keypair.ok_or(HandshakeMisuse::MissingKeyPair)?)
            }
        };
        Ok(Common {
            role,
            fs,
            key: key.clone(),
            keypair,
        })
    }

    /// This side's signed DH value under its own MAC key.
    fn signed_dh(&self, dhmac_ours: &[u8; 32]) -> [u8; SIGNED_DH_LEN] {
        let y = match &self.keypair {
            Some(keypair) => keypair.public(),
            None => &Y_ONE,
        };
        sign_dh(dhmac_ours, y)
    }

    fn fmt_fields(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("role", &self.role)
            .field("forward_secrecy", &self.fs)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Both nonces in the order every key derivation uses: client's first.
#[derive(Clone, Copy)]
pub(super) struct Nonces {
    client: [u8; NONCE_LEN],
    server: [u8; NONCE_LEN],
}

impl Nonces {
    pub(super) fn new(role: Role, ours: [u8; NONCE_LEN], theirs: [u8; NONCE_LEN]) -> Self {
        match role {
            Role::Client => Nonces {
                client: ours,
                server: theirs,
            },
            Role::Server => Nonces {
                client: theirs,
                server: ours,
            },
        }
    }

    pub(super) fn client(&self) -> &[u8; NONCE_LEN] {
        &self.client
    }
}

/// (MAC key this side signs with, MAC key the peer signs with).
fn mac_keys_for(
    role: Role,
    key: &PresharedKey,
    nonces: &Nonces,
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let (dhmac_client, dhmac_server) = dh_mac_keys(key, nonces);
    match role {
        Role::Client => (dhmac_client, dhmac_server),
        Role::Server => (dhmac_server, dhmac_client),
    }
}

/// Stage 1: this side's nonce is ready to send; waiting for the peer's.
pub struct Handshake {
    common: Common,
    nonce: [u8; NONCE_LEN],
}

impl Handshake {
    /// `keypair` must be `Some` unless `fs == ForwardSecrecy::Disabled` (then it is ignored
    /// and y = 1 is sent). `nonce` must be fresh random bytes. A server that should do no
    /// Diffie-Hellman work before the client has proved it holds the key starts with
    /// [`ServerHandshake`] instead.
    pub fn new(
        role: Role,
        key: &PresharedKey,
        fs: ForwardSecrecy,
        nonce: [u8; NONCE_LEN],
        keypair: Option<Box<EphemeralKeyPair>>,
    ) -> Result<Handshake, HandshakeMisuse> {
        Ok(Handshake {
            common: Common::new(role, key, fs, keypair)?,
            nonce,
        })
    }

    /// The bytes to send first, without waiting for the peer.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Takes the peer's nonce; derives the DH MAC keys and signs this side's DH value.
    pub fn receive_nonce(self, peer_nonce: &[u8; NONCE_LEN]) -> NoncesExchanged {
        let Handshake { common, nonce } = self;
        let nonces = Nonces::new(common.role, nonce, *peer_nonce);
        let (dhmac_ours, dhmac_peer) = mac_keys_for(common.role, &common.key, &nonces);
        let signed_dh = common.signed_dh(&dhmac_ours);
        NoncesExchanged {
            common,
            nonces,
            signed_dh,
            dhmac_peer,
        }
    }
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.common.fmt_fields("Handshake", f)
    }
}

/// Stage 2: nonces are known; this side's signed DH value is ready.
pub struct NoncesExchanged {
    common: Common,
    nonces: Nonces,
    signed_dh: [u8; SIGNED_DH_LEN],
    dhmac_peer: Zeroizing<[u8; 32]>,
}

impl NoncesExchanged {
    /// y ‖ HMAC(dhmac_self, y). The client sends it at once; the server only after
    /// `receive_signed_dh` accepted the client's (use `PeerVerified::signed_dh` then).
    pub fn signed_dh(&self) -> &[u8; SIGNED_DH_LEN] {
        &self.signed_dh
    }

    /// Checks the peer's signed DH value (see [`verify_signed_dh`] for the order).
    pub fn receive_signed_dh(
        self,
        peer: &[u8; SIGNED_DH_LEN],
    ) -> Result<PeerVerified, PeerRejection> {
        let peer_y = verify_signed_dh(&self.dhmac_peer, self.common.fs, peer)?;
        let NoncesExchanged {
            common,
            nonces,
            signed_dh,
            dhmac_peer: _,
        } = self;
        Ok(PeerVerified {
            common,
            nonces,
            signed_dh,
            peer_y,
            used_previous: false,
        })
    }
}

impl fmt::Debug for NoncesExchanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.common.fmt_fields("NoncesExchanged", f)
    }
}

/// The peer's y once its signed value passed every check, in this order: the MAC (constant
/// time, as spiped), y < p (spiped), y is not 0 or p - 1 (Sluice: they would make the
/// shared secret known), and, if this side requires forward secrecy, y != 1 (spiped `-g`).
fn verify_signed_dh(
    dhmac_peer: &[u8; 32],
    fs: ForwardSecrecy,
    peer: &[u8; SIGNED_DH_LEN],
) -> Result<[u8; DH_LEN], PeerRejection> {
    let (y, tag) = peer.split_at(DH_LEN);
    let mut mac = hmac_sha256(dhmac_peer);
    mac.update(y);
    mac.verify_slice(tag)
        .map_err(|_| PeerRejection::BadSignature)?;

    let mut peer_y = [0u8; DH_LEN];
    peer_y.copy_from_slice(y);
    if !dh::is_below_modulus(&peer_y) {
        return Err(PeerRejection::ValueOutOfRange);
    }
    if peer_y == Y_ONE {
        // What a `-f` peer sends: acceptable unless this side requires forward secrecy.
        if fs == ForwardSecrecy::Required {
            return Err(PeerRejection::ForwardSecrecyRefused);
        }
    } else if dh::is_small_subgroup_value(&peer_y) {
        return Err(PeerRejection::SmallSubgroupValue);
    }
    Ok(peer_y)
}

/// Stage 3: the peer's DH value is authentic and acceptable.
pub struct PeerVerified {
    common: Common,
    nonces: Nonces,
    signed_dh: [u8; SIGNED_DH_LEN],
    peer_y: [u8; DH_LEN],
    /// A server accepted the client with its previous key (a rotation's grace period).
    used_previous: bool,
}

impl PeerVerified {
    pub(super) fn used_previous_key(&self) -> bool {
        self.used_previous
    }

    /// The client's nonce, and the key the handshake runs with (the one that verified).
    pub(super) fn client_nonce_and_key(&self) -> (&[u8; NONCE_LEN], &PresharedKey) {
        (self.nonces.client(), &self.common.key)
    }

    /// This side's signed DH value; the server sends it now.
    pub fn signed_dh(&self) -> &[u8; SIGNED_DH_LEN] {
        &self.signed_dh
    }

    /// The peer sent y = 1 (it runs `-f`), so this session has no forward secrecy.
    pub fn peer_skipped_forward_secrecy(&self) -> bool {
        self.peer_y == Y_ONE
    }

    /// Whether [`derive_session`](Self::derive_session) exponentiates (this side has a
    /// key pair, i.e. does not run `-f`).
    pub fn costs_an_exponentiation(&self) -> bool {
        self.common.keypair.is_some()
    }

    /// Computes the session keys. This is the expensive step (one modular exponentiation
    /// unless this side runs `-f`); it may be moved to a blocking thread.
    pub fn derive_session(self) -> SessionKeys {
        let shared = match &self.common.keypair {
            Some(keypair) => keypair.shared_secret(&self.peer_y),
            // A `-f` side uses 1 whatever the peer sent; a DH peer computes 1^x = 1 too.
            None => Zeroizing::new(Y_ONE),
        };
        session_keys(
            self.common.role,
            &self.common.key,
            &self.nonces,
            &shared[..],
        )
    }
}

impl fmt::Debug for PeerVerified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.common.fmt_fields("PeerVerified", f)
    }
}

/// The server's stage 1 when it takes its key pair only once the client has proved it
/// holds the key (as spiped, which generates its value after the client's MAC checks out):
/// a flood of unauthenticated connections then costs no Diffie-Hellman work at all.
pub struct ServerHandshake {
    key: PresharedKey,
    /// Accepted beside `key` while a rotation lets old clients in.
    previous: Option<PresharedKey>,
    fs: ForwardSecrecy,
    nonce: [u8; NONCE_LEN],
}

impl ServerHandshake {
    /// `nonce` must be fresh random bytes.
    pub fn new(key: &PresharedKey, fs: ForwardSecrecy, nonce: [u8; NONCE_LEN]) -> Self {
        ServerHandshake {
            key: key.clone(),
            previous: None,
            fs,
            nonce,
        }
    }

    /// Also accepts clients holding `previous`: the current key is tried first; a client
    /// whose value does not verify with it is checked against the previous one (one more
    /// MAC, no exponentiation), and the handshake goes on with the key that verified.
    pub fn accept_previous_key(&mut self, previous: &PresharedKey) {
        self.previous = Some(previous.clone());
    }

    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Takes the client's nonce and derives the DH MAC keys.
    pub fn receive_nonce(self, client_nonce: &[u8; NONCE_LEN]) -> ServerNoncesExchanged {
        let nonces = Nonces::new(Role::Server, self.nonce, *client_nonce);
        let (dhmac_ours, dhmac_peer) = mac_keys_for(Role::Server, &self.key, &nonces);
        let previous = self.previous.map(|key| {
            let (ours, peer) = mac_keys_for(Role::Server, &key, &nonces);
            PreviousKey { key, ours, peer }
        });
        ServerNoncesExchanged {
            key: self.key,
            previous,
            fs: self.fs,
            nonces,
            dhmac_ours,
            dhmac_peer,
        }
    }
}

/// A server's previous key (a rotation's grace period) and its DH MAC keys for this
/// handshake: the server's own, and the client's.
pub(super) struct PreviousKey {
    pub key: PresharedKey,
    pub ours: Zeroizing<[u8; 32]>,
    pub peer: Zeroizing<[u8; 32]>,
}

/// The server's stage 2: nonces known, waiting for the client's signed value.
pub struct ServerNoncesExchanged {
    key: PresharedKey,
    /// The previous key and its MAC keys (ours, the client's), if it is accepted too.
    previous: Option<PreviousKey>,
    fs: ForwardSecrecy,
    nonces: Nonces,
    dhmac_ours: Zeroizing<[u8; 32]>,
    dhmac_peer: Zeroizing<[u8; 32]>,
}

impl ServerNoncesExchanged {
    /// Checks the client's signed DH value, exactly as [`NoncesExchanged::receive_signed_dh`]:
    /// with the current key, then (if its signature did not verify) the previous one.
    pub fn receive_signed_dh(
        self,
        client: &[u8; SIGNED_DH_LEN],
    ) -> Result<ClientVerified, PeerRejection> {
        let current = verify_signed_dh(&self.dhmac_peer, self.fs, client);
        let (key, dhmac_ours, peer_y, used_previous) = match (current, self.previous) {
            (Ok(peer_y), _) => (self.key, self.dhmac_ours, peer_y, false),
            (Err(PeerRejection::BadSignature), Some(previous)) => {
                let peer_y = verify_signed_dh(&previous.peer, self.fs, client)?;
                (previous.key, previous.ours, peer_y, true)
            }
            (Err(rejection), _) => return Err(rejection),
        };
        Ok(ClientVerified {
            key,
            fs: self.fs,
            nonces: self.nonces,
            dhmac_ours,
            peer_y,
            used_previous,
        })
    }
}

/// The server's stage 3: the client is authentic; the server's own value is not yet made.
pub struct ClientVerified {
    key: PresharedKey,
    fs: ForwardSecrecy,
    nonces: Nonces,
    dhmac_ours: Zeroizing<[u8; 32]>,
    peer_y: [u8; DH_LEN],
    used_previous: bool,
}

impl ClientVerified {
    /// Whether [`ClientVerified::sign`] needs a key pair (it does unless this side runs `-f`).
    pub fn needs_key_pair(&self) -> bool {
        self.fs != ForwardSecrecy::Disabled
    }

    /// Signs the server's DH value with `keypair` (`Some` unless this side runs `-f`).
    pub fn sign(
        self,
        keypair: Option<Box<EphemeralKeyPair>>,
    ) -> Result<PeerVerified, HandshakeMisuse> {
        let common = Common::new(Role::Server, &self.key, self.fs, keypair)?;
        let signed_dh = common.signed_dh(&self.dhmac_ours);
        Ok(PeerVerified {
            common,
            nonces: self.nonces,
            signed_dh,
            peer_y: self.peer_y,
            used_previous: self.used_previous,
        })
    }
}

macro_rules! server_debug {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("role", &Role::Server)
                    .field("forward_secrecy", &self.fs)
                    .field("key", &self.key)
                    .finish_non_exhaustive()
            }
        }
    )*};
}
server_debug!(ServerHandshake, ServerNoncesExchanged, ClientVerified);

/// The four session keys of PROTOCOL.md 3.5. Wiped on drop; never shown.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    #[zeroize(skip)]
    role: Role,
    e_c: [u8; 32],
    h_c: [u8; 32],
    e_s: [u8; 32],
    h_s: [u8; 32],
}

impl SessionKeys {
    /// (sealer for what this side sends, opener for what it receives): the client sends with
    /// (E_C, H_C) and receives with (E_S, H_S); the server the reverse.
    pub fn into_packet_codecs(self) -> (PacketSealer, PacketOpener) {
        let client = (&self.e_c, &self.h_c);
        let server = (&self.e_s, &self.h_s);
        let (send, receive) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        (
            PacketSealer::from_keys(send.0, send.1),
            PacketOpener::from_keys(receive.0, receive.1),
        )
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// dk_2 = PBKDF2-HMAC-SHA256(K, nonce_C ‖ nonce_S ‖ shared, 1, 128) split into E_C, H_C,
/// E_S, H_S. `shared` is y_SC for the classic handshake, the X25519 secret for Sluice's.
pub(super) fn session_keys(
    role: Role,
    key: &PresharedKey,
    nonces: &Nonces,
    shared: &[u8],
) -> SessionKeys {
    let mut salt = Zeroizing::new(Vec::with_capacity(2 * NONCE_LEN + shared.len()));
    salt.extend_from_slice(&nonces.client);
    salt.extend_from_slice(&nonces.server);
    salt.extend_from_slice(shared);
    let mut dk = Zeroizing::new([0u8; 128]);
    pbkdf2::pbkdf2_hmac::<Sha256>(key.secret(), &salt[..], 1, &mut dk[..]);

    let mut keys = SessionKeys {
        role,
        e_c: [0; 32],
        h_c: [0; 32],
        e_s: [0; 32],
        h_s: [0; 32],
    };
    keys.e_c.copy_from_slice(&dk[..32]);
    keys.h_c.copy_from_slice(&dk[32..64]);
    keys.e_s.copy_from_slice(&dk[64..96]);
    keys.h_s.copy_from_slice(&dk[96..]);
    keys
}

/// dk_1 = PBKDF2-HMAC-SHA256(K, nonce_C ‖ nonce_S, 1, 64) split into (dhmac_C, dhmac_S).
pub(super) fn dh_mac_keys(
    key: &PresharedKey,
    nonces: &Nonces,
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let mut salt = [0u8; 2 * NONCE_LEN];
    salt[..NONCE_LEN].copy_from_slice(&nonces.client);
    salt[NONCE_LEN..].copy_from_slice(&nonces.server);
    let mut dk = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<Sha256>(key.secret(), &salt, 1, &mut dk[..]);
    let mut client = Zeroizing::new([0u8; 32]);
    let mut server = Zeroizing::new([0u8; 32]);
    client.copy_from_slice(&dk[..32]);
    server.copy_from_slice(&dk[32..]);
    (client, server)
}

/// y ‖ HMAC-SHA256(dhmac, y).
fn sign_dh(dhmac: &[u8; 32], y: &[u8; DH_LEN]) -> [u8; SIGNED_DH_LEN] {
    let mut mac = hmac_sha256(dhmac);
    mac.update(y);
    let mut out = [0u8; SIGNED_DH_LEN];
    out[..DH_LEN].copy_from_slice(y);
    out[DH_LEN..].copy_from_slice(&mac.finalize().into_bytes());
    out
}

// y followed by an HMAC-SHA256 tag.
const _: () = assert!(SIGNED_DH_LEN == DH_LEN + 32);

/// The server's signed value for an arbitrary y, as a peer that holds K could make it.
#[cfg(test)]
pub(super) fn signed_by_server(
    key: &PresharedKey,
    nonce_c: [u8; NONCE_LEN],
    nonce_s: [u8; NONCE_LEN],
    y: &[u8; DH_LEN],
) -> [u8; SIGNED_DH_LEN] {
    let nonces = Nonces {
        client: nonce_c,
        server: nonce_s,
    };
    let (_, dhmac_server) = dh_mac_keys(key, &nonces);
    sign_dh(&dhmac_server, y)
}

#[cfg(test)]
mod tests;
