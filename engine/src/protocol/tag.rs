//! Tags in the client's nonce: Sluice's way of saying what a connection is for without
//! changing spiped's handshake. The client's 32-byte nonce is `r ‖ t`, 16 random bytes
//! and the first 16 bytes of HMAC-SHA256(K, label ‖ r); only a holder of the key can make
//! or recognize one, and to anyone else (stock spiped included) it is a random nonce.

use hmac::Mac;
use subtle::ConstantTimeEq;

use super::NONCE_LEN;
use super::key::PresharedKey;
use super::packet::hmac_sha256;

/// Random bytes at the front of a tagged nonce; the tag fills the rest.
pub const TAG_RANDOM_LEN: usize = 16;
const TAG_LEN: usize = NONCE_LEN - TAG_RANDOM_LEN;

/// What a tagged connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NonceTag {
    /// A far-end health check (docs/HEALTH.md): the server answers with a report.
    HealthProbe,
    /// A reverse tunnel's pooled connection (docs/REVERSE.md): the server is the
    /// reverse-in end, which hands it a client later.
    ReverseSlot,
}

impl NonceTag {
    const ALL: [NonceTag; 2] = [NonceTag::HealthProbe, NonceTag::ReverseSlot];

    fn label(self) -> &'static [u8] {
        match self {
            NonceTag::HealthProbe => b"sluice health probe v1\0",
            NonceTag::ReverseSlot => b"sluice reverse slot v1\0",
        }
    }

    /// A client nonce carrying this tag: `random ‖ tag(K, random)`.
    pub fn nonce(self, key: &PresharedKey, random: [u8; TAG_RANDOM_LEN]) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..TAG_RANDOM_LEN].copy_from_slice(&random);
        nonce[TAG_RANDOM_LEN..].copy_from_slice(&self.tag(key, &random));
        nonce
    }

    /// The tag a client's nonce carries, if any. Only meaningful once the client has
    /// proved it holds the key: a stranger can copy a tagged nonce, not sign the
    /// handshake after it.
    pub fn of(key: &PresharedKey, nonce: &[u8; NONCE_LEN]) -> Option<NonceTag> {
        let (random, tag) = nonce.split_at(TAG_RANDOM_LEN);
        let random: [u8; TAG_RANDOM_LEN] = random.try_into().ok()?;
        NonceTag::ALL
            .into_iter()
            .find(|kind| bool::from(kind.tag(key, &random).ct_eq(tag)))
    }

    fn tag(self, key: &PresharedKey, random: &[u8; TAG_RANDOM_LEN]) -> [u8; TAG_LEN] {
        let mut mac = hmac_sha256(key.secret());
        mac.update(self.label());
        mac.update(random);
        let digest = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PresharedKey {
        PresharedKey::from_keyfile_bytes(&[byte; 32])
    }

    #[test]
    fn only_the_key_that_tagged_a_nonce_recognizes_it_and_its_purpose() {
        for kind in NonceTag::ALL {
            let nonce = kind.nonce(&key(1), [7; TAG_RANDOM_LEN]);
            assert_eq!(&nonce[..TAG_RANDOM_LEN], &[7; TAG_RANDOM_LEN]);
            assert_eq!(NonceTag::of(&key(1), &nonce), Some(kind));
            assert_eq!(NonceTag::of(&key(2), &nonce), None);
            let mut tampered = nonce;
            tampered[0] ^= 1;
            assert_eq!(NonceTag::of(&key(1), &tampered), None);
        }
        assert_eq!(NonceTag::of(&key(1), &[0; NONCE_LEN]), None);
    }

    /// The tag of docs/HEALTH.md and docs/REVERSE.md, for K = SHA-256 of 32 bytes 0x01 and
    /// r = 16 bytes 0x07.
    #[test]
    fn known_answers() {
        let probe = NonceTag::HealthProbe.nonce(&key(1), [7; TAG_RANDOM_LEN]);
        let slot = NonceTag::ReverseSlot.nonce(&key(1), [7; TAG_RANDOM_LEN]);
        assert_eq!(
            crate::protocol::key::hex(&probe[TAG_RANDOM_LEN..]),
            PROBE_TAG
        );
        assert_eq!(crate::protocol::key::hex(&slot[TAG_RANDOM_LEN..]), SLOT_TAG);
    }

    const PROBE_TAG: &str = "d709346d5648cc7bac2483a44b28333c";
    const SLOT_TAG: &str = "094a40c856444ab93460c84a495c4390";
}
