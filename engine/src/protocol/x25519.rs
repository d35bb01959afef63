//! Sluice's opt-in fast handshake: spiped's message flow and key schedule with the
//! group-14 value replaced by an X25519 public key. Both ends must opt in; it does not
//! interoperate with stock spiped. Specified in docs/X25519.md.

use std::fmt;

use hmac::Mac;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::Role;
use super::handshake::{
    NONCE_LEN, Nonces, PeerRejection, PreviousKey, SessionKeys, dh_mac_keys, session_keys,
};
use super::key::PresharedKey;
use super::packet::hmac_sha256;

/// Bytes of an X25519 public key.
pub const X25519_KEY_LEN: usize = 32;
/// Bytes of the signed key message: public key (32) ‖ HMAC-SHA256(dhmac_sender, key) (32).
pub const SIGNED_X25519_LEN: usize = 64;

/// Stage 1: the nonce is ready to send.
pub struct X25519Handshake {
    role: Role,
    key: PresharedKey,
    /// A server's previous key, accepted beside `key` during a rotation.
    previous: Option<PresharedKey>,
    /// Boxed so that moving a stage moves a pointer, not a copy of the private key.
    secret: Box<StaticSecret>,
    nonce: [u8; NONCE_LEN],
}

impl X25519Handshake {
    /// `nonce` and `private` must be fresh random bytes; the private key is used for this
    /// one handshake only (x25519-dalek's `StaticSecret` is used because the randomness is
    /// passed in, not because it is kept: it is wiped when the handshake is dropped).
    pub fn new(role: Role, key: &PresharedKey, nonce: [u8; NONCE_LEN], private: [u8; 32]) -> Self {
        X25519Handshake {
            role,
            key: key.clone(),
            previous: None,
            secret: Box::new(StaticSecret::from(private)),
            nonce,
        }
    }

    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// A server also accepts clients holding `previous`, as the classic
    /// `ServerHandshake::accept_previous_key` (one more MAC for a stranger).
    pub fn accept_previous_key(&mut self, previous: &PresharedKey) {
        if self.role == Role::Server {
            self.previous = Some(previous.clone());
        }
    }

    /// Takes the peer's nonce and derives the MAC keys exactly as spiped does. A client
    /// signs its public key now (it sends first); a server computes and signs its own
    /// only once the client's has verified, so a stranger without the key costs it no
    /// scalar multiplication.
    pub fn receive_nonce(self, peer_nonce: &[u8; NONCE_LEN]) -> X25519NoncesExchanged {
        let nonces = Nonces::new(self.role, self.nonce, *peer_nonce);
        let (dhmac_client, dhmac_server) = dh_mac_keys(&self.key, &nonces);
        let (ours, peer) = match self.role {
            Role::Client => (dhmac_client, dhmac_server),
            Role::Server => (dhmac_server, dhmac_client),
        };
        let signed = (self.role == Role::Client).then(|| signed_public_of(&self.secret, &ours));
        let previous = self.previous.map(|key| {
            // Only a server has one: its MAC key first, then the client's.
            let (client, server) = dh_mac_keys(&key, &nonces);
            PreviousKey {
                key,
                ours: server,
                peer: client,
            }
        });
        X25519NoncesExchanged {
            role: self.role,
            key: self.key,
            previous,
            secret: self.secret,
            nonces,
            signed,
            dhmac_ours: ours,
            dhmac_peer: peer,
        }
    }
}

/// Stage 2: nonces exchanged; a client's signed key is ready.
pub struct X25519NoncesExchanged {
    role: Role,
    key: PresharedKey,
    /// A server's previous key and its MAC keys (ours, the client's).
    previous: Option<PreviousKey>,
    secret: Box<StaticSecret>,
    nonces: Nonces,
    /// The client's signed key; a server has none yet.
    signed: Option<[u8; SIGNED_X25519_LEN]>,
    dhmac_ours: Zeroizing<[u8; 32]>,
    dhmac_peer: Zeroizing<[u8; 32]>,
}

impl X25519NoncesExchanged {
    /// The client's signed key, which it sends at once; `None` for a server, which signs
    /// its own only after accepting the client's ([`X25519PeerVerified::signed_public`]).
    pub fn signed_public(&self) -> Option<&[u8; SIGNED_X25519_LEN]> {
        self.signed.as_ref()
    }

    /// Checks the peer's MAC (constant time), then computes the shared secret and rejects
    /// an all-zero one (a low-order public key would let the peer fix the secret); a
    /// server computes and signs its public key only now.
    pub fn receive_signed_public(
        self,
        peer: &[u8; SIGNED_X25519_LEN],
    ) -> Result<X25519PeerVerified, PeerRejection> {
        let (public, tag) = peer.split_at(X25519_KEY_LEN);
        let verifies = |dhmac_peer: &[u8; 32]| {
            let mut mac = hmac_sha256(dhmac_peer);
            mac.update(public);
            mac.verify_slice(tag).is_ok()
        };
        let (key, dhmac_ours, used_previous) = if verifies(&self.dhmac_peer) {
            (self.key, self.dhmac_ours, false)
        } else {
            match self.previous {
                Some(previous) if verifies(&previous.peer) => (previous.key, previous.ours, true),
                _ => return Err(PeerRejection::BadSignature),
            }
        };
        let mut peer_public = [0u8; X25519_KEY_LEN];
        peer_public.copy_from_slice(public);
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer_public));
        if !shared.was_contributory() {
            return Err(PeerRejection::NonContributory);
        }
        let signed = self
            .signed
            .unwrap_or_else(|| signed_public_of(&self.secret, &dhmac_ours));
        Ok(X25519PeerVerified {
            role: self.role,
            key,
            nonces: self.nonces,
            signed,
            shared: Zeroizing::new(shared.to_bytes()),
            used_previous,
        })
    }
}

/// Stage 3: the peer's key is authentic and the shared secret is computed.
pub struct X25519PeerVerified {
    role: Role,
    key: PresharedKey,
    nonces: Nonces,
    signed: [u8; SIGNED_X25519_LEN],
    shared: Zeroizing<[u8; 32]>,
    used_previous: bool,
}

impl X25519PeerVerified {
    pub(super) fn used_previous_key(&self) -> bool {
        self.used_previous
    }

    /// The client's nonce, and the key the handshake runs with (the one that verified).
    pub(super) fn client_nonce_and_key(&self) -> (&[u8; NONCE_LEN], &PresharedKey) {
        (self.nonces.client(), &self.key)
    }

    /// This side's signed key; the server sends it now.
    pub fn signed_public(&self) -> &[u8; SIGNED_X25519_LEN] {
        &self.signed
    }

    /// dk_2 = PBKDF2-HMAC-SHA256(K, nonce_C ‖ nonce_S ‖ shared secret, 1, 128), split as
    /// in spiped.
    pub fn derive_session(self) -> SessionKeys {
        session_keys(self.role, &self.key, &self.nonces, &self.shared[..])
    }
}

/// This side's public key (a scalar multiplication), signed.
fn signed_public_of(secret: &StaticSecret, dhmac: &[u8; 32]) -> [u8; SIGNED_X25519_LEN] {
    sign(dhmac, PublicKey::from(secret).as_bytes())
}

fn sign(dhmac: &[u8; 32], public: &[u8; X25519_KEY_LEN]) -> [u8; SIGNED_X25519_LEN] {
    let mut mac = hmac_sha256(dhmac);
    mac.update(public);
    let mut out = [0u8; SIGNED_X25519_LEN];
    out[..X25519_KEY_LEN].copy_from_slice(public);
    out[X25519_KEY_LEN..].copy_from_slice(&mac.finalize().into_bytes());
    out
}

macro_rules! redacted_debug {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("role", &self.role)
                    .field("key", &self.key)
                    .finish_non_exhaustive()
            }
        }
    )*};
}
redacted_debug!(X25519Handshake, X25519NoncesExchanged, X25519PeerVerified);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::key::hex;
    use crate::protocol::packet::PACKET_LEN;
    use proptest::prelude::*;

    fn bytes(start: u8) -> [u8; 32] {
        std::array::from_fn(|i| start.wrapping_add(i as u8))
    }

    /// Runs both ends back to back; returns (client, server) session keys.
    fn pair(
        client_key: &PresharedKey,
        server_key: &PresharedKey,
        tamper: impl Fn(&mut [u8; SIGNED_X25519_LEN]),
    ) -> Result<(SessionKeys, SessionKeys), PeerRejection> {
        let client = X25519Handshake::new(Role::Client, client_key, bytes(0x00), bytes(0x40));
        let server = X25519Handshake::new(Role::Server, server_key, bytes(0x20), bytes(0x60));
        let (client_nonce, server_nonce) = (*client.nonce(), *server.nonce());
        let client = client.receive_nonce(&server_nonce);
        let server = server.receive_nonce(&client_nonce);
        let mut to_server = *client.signed_public().expect("a client signs at once");
        tamper(&mut to_server);
        let server = server.receive_signed_public(&to_server)?;
        let to_client = *server.signed_public();
        let client = client.receive_signed_public(&to_client)?;
        Ok((client.derive_session(), server.derive_session()))
    }

    /// The known-answer vector of docs/X25519.md (computed independently with Python's
    /// `cryptography` and `hashlib`): empty key file, nonce_C = 00..1f, nonce_S = 20..3f,
    /// client private key 40..5f, server private key 60..7f.
    #[test]
    fn known_answer_vector() {
        let key = PresharedKey::from_keyfile_bytes(b"");
        let client = X25519Handshake::new(Role::Client, &key, bytes(0x00), bytes(0x40));
        let server = X25519Handshake::new(Role::Server, &key, bytes(0x20), bytes(0x60));
        let client = client.receive_nonce(&bytes(0x20));
        let server = server.receive_nonce(&bytes(0x00));
        assert_eq!(
            hex(client.signed_public().unwrap()),
            concat!(
                "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a",
                "8cb186a659df4b45768de1969085888ec1013060fffb42de61a07d0d7c1a27ac"
            )
        );
        let to_server = *client.signed_public().unwrap();
        let server = server.receive_signed_public(&to_server).unwrap();
        assert_eq!(
            hex(server.signed_public()),
            concat!(
                "675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f",
                "c100fbe41f2493af03d358cbc0922de83e0852a33bff2abf387d5673bc9cd30c"
            )
        );
        let to_client = *server.signed_public();
        let client = client.receive_signed_public(&to_client).unwrap();
        assert_eq!(
            hex(&client.shared[..]),
            "d6fb939511b2381bc8599b4b8edc5968829450dfd7a87aebe78a703cd04cd54e"
        );
        assert_eq!(hex(&server.shared[..]), hex(&client.shared[..]));

        let (mut client_sealer, mut client_opener) = client.derive_session().into_packet_codecs();
        let (mut server_sealer, mut server_opener) = server.derive_session().into_packet_codecs();
        let mut packet = [0u8; PACKET_LEN];
        client_sealer.seal(b"hello", &mut packet).unwrap();
        assert_eq!(hex(&packet[..16]), "3f85de0e1cdfd15dea0b9335ca7239ef");
        assert_eq!(
            hex(&packet[1028..]),
            "3b75512b1f86f42839227f18ad6b144cbad32b93582fa315317482e239096de5"
        );
        let n = server_opener.open(&mut packet).unwrap();
        assert_eq!(&packet[..n], b"hello");
        server_sealer.seal(b"world", &mut packet).unwrap();
        assert_eq!(hex(&packet[..16]), "94f6dc64dea1675444209cbc95ff47ef");
        assert_eq!(
            hex(&packet[1028..]),
            "b71d4d5e69ace447e0871801c222d35ff6ffcb9dd2a9386da1bbab10a921a0a6"
        );
        let n = client_opener.open(&mut packet).unwrap();
        assert_eq!(&packet[..n], b"world");
    }

    #[test]
    fn both_ends_agree_on_the_session_keys() {
        let key = PresharedKey::from_keyfile_bytes(b"shared");
        let (client, server) = pair(&key, &key, |_| {}).unwrap();
        let (mut client_sealer, mut client_opener) = client.into_packet_codecs();
        let (mut server_sealer, mut server_opener) = server.into_packet_codecs();
        let mut packet = [0u8; PACKET_LEN];
        for round in 0..3u8 {
            client_sealer.seal(&[round; 100], &mut packet).unwrap();
            assert_eq!(server_opener.open(&mut packet).unwrap(), 100);
            server_sealer.seal(&[round; 7], &mut packet).unwrap();
            assert_eq!(client_opener.open(&mut packet).unwrap(), 7);
        }
    }

    #[test]
    fn wrong_key_is_a_bad_signature() {
        let a = PresharedKey::from_keyfile_bytes(b"a");
        let b = PresharedKey::from_keyfile_bytes(b"b");
        assert_eq!(
            pair(&a, &b, |_| {}).err(),
            Some(PeerRejection::BadSignature)
        );
    }

    #[test]
    fn a_low_order_key_is_refused_even_with_a_valid_signature() {
        // A peer that knows K can sign anything: an all-zero public key (a low-order point)
        // must still be refused, or it would fix the shared secret to zero.
        let key = PresharedKey::from_keyfile_bytes(b"k");
        let server = X25519Handshake::new(Role::Server, &key, bytes(0x20), bytes(0x60));
        let server = server.receive_nonce(&bytes(0x00));
        let nonces = Nonces::new(Role::Client, bytes(0x00), bytes(0x20));
        let (dhmac_client, _) = dh_mac_keys(&key, &nonces);
        let forged = sign(&dhmac_client, &[0u8; 32]);
        assert_eq!(
            server.receive_signed_public(&forged).err(),
            Some(PeerRejection::NonContributory)
        );
    }

    #[test]
    fn a_server_has_no_public_key_until_the_client_has_proved_it_holds_the_key() {
        let key = PresharedKey::from_keyfile_bytes(b"k");
        let server = X25519Handshake::new(Role::Server, &key, bytes(0x20), bytes(0x60));
        let server = server.receive_nonce(&bytes(0x00));
        assert!(server.signed_public().is_none());
        // A stranger's value (signed with another key) is refused before any scalar
        // multiplication: the server's public key is computed only past the MAC check.
        let nonces = Nonces::new(Role::Client, bytes(0x00), bytes(0x20));
        let (stranger_mac, _) = dh_mac_keys(&PresharedKey::from_keyfile_bytes(b"x"), &nonces);
        let forged = sign(&stranger_mac, &[9u8; 32]);
        assert_eq!(
            server.receive_signed_public(&forged).err(),
            Some(PeerRejection::BadSignature)
        );
    }

    #[test]
    fn classic_and_x25519_session_keys_differ() {
        // Same nonces and key: the X25519 schedule never yields the classic -f keys.
        let key = PresharedKey::from_keyfile_bytes(b"");
        let (client, _) = pair(&key, &key, |_| {}).unwrap();
        let (mut sealer, _) = client.into_packet_codecs();
        let mut packet = [0u8; PACKET_LEN];
        sealer.seal(b"hello", &mut packet).unwrap();
        assert_ne!(hex(&packet[..16]), "58c902c0db9fddeec4eb95d70054aca8");
    }

    proptest! {
        #[test]
        fn any_bit_flip_in_the_signed_key_is_rejected(bit in 0usize..SIGNED_X25519_LEN * 8) {
            let key = PresharedKey::from_keyfile_bytes(b"k");
            let result = pair(&key, &key, |m| m[bit / 8] ^= 1 << (bit % 8));
            prop_assert!(result.is_err());
        }
    }
}
