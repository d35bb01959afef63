//! The pre-shared key: spiped hashes every byte of the key file with SHA-256 and uses the
//! digest K. Also a fingerprint of K for display, so both ends can be compared without
//! revealing the key.

use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// SHA-256 of nothing: K of an empty key file.
const EMPTY_KEY_K: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// K = SHA-256(entire key file). Wiped on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; 32]);

impl PresharedKey {
    /// Hashes the raw key-file bytes exactly as spiped does: no trimming, no decoding.
    /// An empty file is valid (K = SHA-256 of nothing).
    pub fn from_keyfile_bytes(bytes: &[u8]) -> Self {
        // The digest goes straight into the wiped-on-drop array: no unwiped copy of K is
        // left in a temporary (the hasher wipes its own state when it is consumed).
        let mut key = PresharedKey([0; 32]);
        let mut hasher = Sha256::new();
        hasher.update(bytes);
        hasher.finalize_into((&mut key.0).into());
        key
    }

    /// Whether this is K of an empty key file (SHA-256 of nothing), which everyone can
    /// compute: no tunnel may run with it.
    pub fn is_empty_key(&self) -> bool {
        // Not secret-dependent in any useful way: it only tells this one public value apart.
        self.0 == EMPTY_KEY_K
    }

    /// K itself, for the handshake's key derivation only.
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short, one-way identifier of the key, safe to show and compare.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut hasher = Sha256::new();
        hasher.update(b"sluice key fingerprint v1\0");
        // By reference: passing the array by value would leave a copy of K on the stack.
        hasher.update(self.0.as_slice());
        let digest = hasher.finalize();
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        Fingerprint(short)
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresharedKey({})", self.fingerprint())
    }
}

/// First 128 bits of SHA-256("sluice key fingerprint v1\0" ‖ K), shown as hex groups.
/// Domain-separated so it is never equal to K or to anything spiped derives from K.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Lower-case hex of arbitrary bytes (digest 0.11 outputs no longer implement `LowerHex`).
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_keyfile_is_sha256_of_nothing() {
        let k = PresharedKey::from_keyfile_bytes(b"");
        assert_eq!(
            hex(k.secret()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(k.is_empty_key());
        assert!(!PresharedKey::from_keyfile_bytes(b"\0").is_empty_key());
    }

    #[test]
    fn trailing_newline_is_part_of_the_key() {
        let a = PresharedKey::from_keyfile_bytes(b"secret");
        let b = PresharedKey::from_keyfile_bytes(b"secret\n");
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn fingerprint_and_debug_do_not_reveal_the_key() {
        let k = PresharedKey::from_keyfile_bytes(b"some key file");
        let secret_hex = hex(k.secret());
        let shown = format!("{} {:?}", k.fingerprint(), k);
        assert!(!shown.contains(&secret_hex[..8]));
        assert_eq!(k.fingerprint().to_string().len(), 39);
    }
}
