//! spiped's data packets: every chunk of up to 1024 plaintext bytes travels as one fixed
//! 1060-byte packet, AES-256-CTR encrypted (length field included) and then authenticated
//! with HMAC-SHA256 over the ciphertext and an implicit per-direction packet number.

use crate::platform::KeyedHmacSha256;
use aes::Aes256;
use ctr::CtrCore;
use ctr::cipher::{InnerIvInit, KeyInit, StreamCipherCore};
use hmac::Hmac;
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Bytes of one packet on the wire.
pub const PACKET_LEN: usize = 1060;
/// Most plaintext bytes one packet carries.
pub const MAX_PAYLOAD: usize = 1024;

/// Encrypted part: payload area plus the big-endian u32 length field.
const CT_LEN: usize = MAX_PAYLOAD + 4;

type HmacSha256 = Hmac<Sha256>;
type Aes256Ctr = CtrCore<Aes256, ctr::flavors::Ctr128BE>;

/// Why a packet could not be sealed or opened. Any opening error means the stream is
/// broken or under attack; spiped drops the connection.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    #[error("nothing to send: a packet must carry at least one byte")]
    EmptyPayload,
    #[error("cannot send {0} bytes in one packet: the limit is 1024 (split the data first)")]
    PayloadTooLarge(usize),
    #[error(
        "data rejected: a packet failed authentication (tampering, corruption, or a different key)"
    )]
    BadMac,
    #[error(
        "data rejected: an authenticated packet claims {0} bytes of data (must be 1 to 1024); the far end is not speaking the spiped protocol correctly"
    )]
    BadLength(u32),
    #[error("connection exhausted: 2^64 packets were sent in one direction; reconnect to continue")]
    CounterExhausted,
}

/// Both directions share this: the expanded AES key and the HMAC states after absorbing the
/// key, each prepared once per connection and cloned per packet.
struct DirectionKeys {
    aes: Aes256,
    mac: KeyedHmacSha256,
    /// Number of the next packet: the CTR nonce and the MAC's implicit suffix.
    pnum: u64,
}

impl DirectionKeys {
    fn new(aes_key: &[u8; 32], hmac_key: &[u8; 32]) -> Self {
        DirectionKeys {
            aes: Aes256::new(aes_key.into()),
            mac: KeyedHmacSha256::new(hmac_key),
            pnum: 0,
        }
    }

    /// XORs the keystream for packet `pnum` into the 1028 encrypted bytes. The counter block
    /// is be64(pnum) ‖ be64(block index), i.e. a 128-bit big-endian counter starting at
    /// pnum << 64; 65 blocks never carry into the pnum half.
    fn apply_keystream(&self, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&self.pnum.to_be_bytes());
        Aes256Ctr::inner_iv_init(self.aes.clone(), (&iv).into())
            .apply_keystream_partial(data.into());
    }

    /// HMAC(H, ciphertext ‖ be64(pnum)), from clones of the pre-keyed states.
    fn mac_for(&self, ciphertext: &[u8]) -> [u8; 32] {
        self.mac.tag(&[ciphertext, &self.pnum.to_be_bytes()])
    }
}

/// What computes the packet MAC's SHA-256 on this system, for benchmark reports.
pub fn mac_implementation() -> String {
    match crate::platform::system_crypto_library() {
        Some(library) => format!("{library}, SHA-256"),
        None => "sha2".to_owned(),
    }
}

/// HMAC-SHA256 keyed with a 32-byte key. HMAC zero-pads short keys to the 64-byte block,
/// so passing the padded block through the fixed-size constructor is the same function
/// and avoids the slice constructor's (never-taken) error path.
pub(crate) fn hmac_sha256(key: &[u8; 32]) -> HmacSha256 {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    <HmacSha256 as KeyInit>::new((&*block).into())
}

/// Encrypts and authenticates what this side sends. The keys live in a box of their own:
/// a connection's future keeps the codecs in several of its states, and each keeps only a
/// pointer (and moving one never copies key material).
pub struct PacketSealer(Box<DirectionKeys>);

impl PacketSealer {
    pub(crate) fn from_keys(aes_key: &[u8; 32], hmac_key: &[u8; 32]) -> Self {
        PacketSealer(Box::new(DirectionKeys::new(aes_key, hmac_key)))
    }

    /// Seals 1..=1024 bytes into `out` (exactly one packet). Errors, never panics, on
    /// empty or oversized input; nothing is consumed on error.
    pub fn seal(&mut self, payload: &[u8], out: &mut [u8; PACKET_LEN]) -> Result<(), PacketError> {
        if payload.is_empty() {
            return Err(PacketError::EmptyPayload);
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(PacketError::PayloadTooLarge(payload.len()));
        }
        // Packet number u64::MAX is never used, so the counter cannot wrap into reuse of a
        // CTR nonce (unreachable in practice: that is 2^64 packets).
        if self.0.pnum == u64::MAX {
            return Err(PacketError::CounterExhausted);
        }

        let (body, tag) = out.split_at_mut(CT_LEN);
        body[..payload.len()].copy_from_slice(payload);
        body[payload.len()..MAX_PAYLOAD].fill(0);
        // payload.len() <= 1024 was checked above, so the cast cannot truncate.
        body[MAX_PAYLOAD..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        self.0.apply_keystream(body);
        tag.copy_from_slice(&self.0.mac_for(body));
        self.0.pnum += 1;
        Ok(())
    }

    /// Cuts `plaintext` into <=1024-byte pieces and appends one packet per piece to `out`,
    /// reserving once (no allocation when `out` already has room). Empty input appends
    /// nothing.
    ///
    /// The only possible failure is packet-counter exhaustion after 2^64 packets, which
    /// cannot happen in practice; should it, the packets that fit are appended, the rest is
    /// not, and `packets_sealed()` shows how far it got.
    pub fn seal_all(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let pieces = plaintext.len().div_ceil(MAX_PAYLOAD);
        out.resize(start + pieces * PACKET_LEN, 0);
        let (slots, _) = out[start..].as_chunks_mut::<PACKET_LEN>();
        let mut sealed = 0;
        for (piece, slot) in plaintext.chunks(MAX_PAYLOAD).zip(slots) {
            if self.seal(piece, slot).is_err() {
                break;
            }
            sealed += 1;
        }
        out.truncate(start + sealed * PACKET_LEN);
    }

    /// Packets sealed so far in this direction (the next packet number).
    pub fn packets_sealed(&self) -> u64 {
        self.0.pnum
    }
}

impl fmt::Debug for PacketSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketSealer")
            .field("packets_sealed", &self.0.pnum)
            .finish_non_exhaustive()
    }
}

/// Authenticates and decrypts what this side receives (its keys boxed, as the sealer's).
pub struct PacketOpener(Box<DirectionKeys>);

impl PacketOpener {
    pub(crate) fn from_keys(aes_key: &[u8; 32], hmac_key: &[u8; 32]) -> Self {
        PacketOpener(Box::new(DirectionKeys::new(aes_key, hmac_key)))
    }

    /// Verifies the MAC over ciphertext[0..1028] ‖ be64(pnum) in constant time, then
    /// decrypts in place, then advances the packet number, then requires 1 <= L <= 1024
    /// (spiped's order). Returns L; the plaintext is `packet[..L]`.
    ///
    /// Because the packet number is implicit, a replayed, reordered or dropped packet fails
    /// the MAC. After any error the stream must be abandoned.
    pub fn open(&mut self, packet: &mut [u8; PACKET_LEN]) -> Result<usize, PacketError> {
        if self.0.pnum == u64::MAX {
            return Err(PacketError::CounterExhausted);
        }
        let (body, tag) = packet.split_at_mut(CT_LEN);
        if !bool::from(self.0.mac_for(body)[..].ct_eq(tag)) {
            return Err(PacketError::BadMac);
        }
        self.0.apply_keystream(body);
        self.0.pnum += 1;

        let mut len_field = [0u8; 4];
        len_field.copy_from_slice(&body[MAX_PAYLOAD..]);
        let len = u32::from_be_bytes(len_field);
        match usize::try_from(len) {
            Ok(l) if (1..=MAX_PAYLOAD).contains(&l) => Ok(l),
            _ => Err(PacketError::BadLength(len)),
        }
    }

    /// Packets opened successfully so far in this direction.
    pub fn packets_opened(&self) -> u64 {
        self.0.pnum
    }
}

impl fmt::Debug for PacketOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketOpener")
            .field("packets_opened", &self.0.pnum)
            .finish_non_exhaustive()
    }
}

// 1024 + 4 bytes encrypted, then an HMAC-SHA256 tag.
const _: () = assert!(PACKET_LEN == CT_LEN + 32);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    const AES_KEY: [u8; 32] = [0x17; 32];
    const HMAC_KEY: [u8; 32] = [0x71; 32];

    fn pair() -> (PacketSealer, PacketOpener) {
        (
            PacketSealer::from_keys(&AES_KEY, &HMAC_KEY),
            PacketOpener::from_keys(&AES_KEY, &HMAC_KEY),
        )
    }

    fn sealed(sealer: &mut PacketSealer, payload: &[u8]) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        sealer.seal(payload, &mut out).unwrap();
        out
    }

    /// A packet with a valid MAC whose plaintext is exactly `body` (payload area and length
    /// field chosen freely), as a misbehaving peer holding the keys could send.
    fn forge(keys: &DirectionKeys, body_plain: &[u8; CT_LEN]) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        out[..CT_LEN].copy_from_slice(body_plain);
        keys.apply_keystream(&mut out[..CT_LEN]);
        let tag = keys.mac_for(&out[..CT_LEN]);
        out[CT_LEN..].copy_from_slice(&tag);
        out
    }

    #[test]
    fn round_trip_and_counters() {
        let (mut s, mut o) = pair();
        for (i, len) in [1usize, 5, 1023, 1024, 17].into_iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
            let mut p = sealed(&mut s, &payload);
            let l = o.open(&mut p).unwrap();
            assert_eq!(&p[..l], &payload[..]);
        }
        assert_eq!(s.packets_sealed(), 5);
        assert_eq!(o.packets_opened(), 5);
    }

    #[test]
    fn seal_rejects_empty_and_oversize() {
        let (mut s, _) = pair();
        let mut out = [0u8; PACKET_LEN];
        assert_eq!(s.seal(&[], &mut out), Err(PacketError::EmptyPayload));
        assert_eq!(
            s.seal(&[0; 1025], &mut out),
            Err(PacketError::PayloadTooLarge(1025))
        );
        assert_eq!(s.packets_sealed(), 0);
    }

    #[test]
    fn seal_all_chunks_and_does_not_reallocate() {
        let (mut s, mut o) = pair();
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut out = Vec::with_capacity(5 * PACKET_LEN + 3);
        out.extend_from_slice(b"abc");
        let ptr = out.as_ptr();
        s.seal_all(&data, &mut out);
        assert_eq!(out.as_ptr(), ptr, "no reallocation with enough capacity");
        assert_eq!(out.len(), 3 + 5 * PACKET_LEN);
        assert_eq!(&out[..3], b"abc");
        let mut got = Vec::new();
        for chunk in out[3..].chunks_exact_mut(PACKET_LEN) {
            let packet: &mut [u8; PACKET_LEN] = chunk.try_into().unwrap();
            let l = o.open(packet).unwrap();
            got.extend_from_slice(&packet[..l]);
        }
        assert_eq!(got, data);

        let before = out.len();
        s.seal_all(&[], &mut out);
        assert_eq!(out.len(), before);
    }

    #[test]
    fn exhausted_counter_is_an_error_not_a_wrap() {
        let (mut s, mut o) = pair();
        s.0.pnum = u64::MAX;
        o.0.pnum = u64::MAX;
        let mut out = [0u8; PACKET_LEN];
        assert_eq!(s.seal(b"x", &mut out), Err(PacketError::CounterExhausted));
        assert_eq!(o.open(&mut out), Err(PacketError::CounterExhausted));
        let mut v = Vec::new();
        s.seal_all(b"data", &mut v);
        assert!(v.is_empty());
    }

    #[test]
    fn length_zero_or_over_1024_with_valid_mac_is_bad_length() {
        for claimed in [0u32, 1025, 4096, u32::MAX] {
            let (_, mut o) = pair();
            let keys = DirectionKeys::new(&AES_KEY, &HMAC_KEY);
            let mut plain = [0u8; CT_LEN];
            plain[..4].copy_from_slice(b"data");
            plain[MAX_PAYLOAD..].copy_from_slice(&claimed.to_be_bytes());
            let mut p = forge(&keys, &plain);
            assert_eq!(o.open(&mut p), Err(PacketError::BadLength(claimed)));
            // spiped advances the counter before the length check.
            assert_eq!(o.packets_opened(), 1);
        }
    }

    #[test]
    fn forged_valid_length_is_accepted() {
        // Sanity check for `forge`, so the BadLength test proves what it claims.
        let (_, mut o) = pair();
        let keys = DirectionKeys::new(&AES_KEY, &HMAC_KEY);
        let mut plain = [0u8; CT_LEN];
        plain[..4].copy_from_slice(b"data");
        plain[MAX_PAYLOAD..].copy_from_slice(&4u32.to_be_bytes());
        let mut p = forge(&keys, &plain);
        assert_eq!(o.open(&mut p), Ok(4));
        assert_eq!(&p[..4], b"data");
    }

    #[test]
    fn wrong_keys_fail_authentication() {
        let (mut s, _) = pair();
        let mut other = PacketOpener::from_keys(&AES_KEY, &[0x72; 32]);
        let mut p = sealed(&mut s, b"hello");
        assert_eq!(other.open(&mut p), Err(PacketError::BadMac));
    }

    #[test]
    fn debug_shows_only_counters() {
        let (s, o) = pair();
        assert_eq!(
            format!("{s:?} {o:?}"),
            "PacketSealer { packets_sealed: 0, .. } PacketOpener { packets_opened: 0, .. }"
        );
    }

    #[test]
    fn error_messages_say_what_happened() {
        assert_eq!(
            PacketError::BadMac.to_string(),
            "data rejected: a packet failed authentication (tampering, corruption, or a different key)"
        );
    }

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 1..=MAX_PAYLOAD)
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_is_rejected(
            payloads in prop::collection::vec(payload(), 1..4),
            which in any::<prop::sample::Index>(),
            bit in 0..PACKET_LEN * 8,
        ) {
            let (mut s, mut o) = pair();
            let mut packets: Vec<_> = payloads.iter().map(|p| sealed(&mut s, p)).collect();
            let target = which.index(packets.len());
            packets[target][bit / 8] ^= 1 << (bit % 8);
            for (i, mut p) in packets.into_iter().enumerate() {
                if i < target {
                    let l = o.open(&mut p).unwrap();
                    prop_assert_eq!(&p[..l], &payloads[i][..]);
                } else {
                    prop_assert_eq!(o.open(&mut p), Err(PacketError::BadMac));
                    break;
                }
            }
        }

        #[test]
        fn replay_is_rejected(payloads in prop::collection::vec(payload(), 1..4)) {
            let (mut s, mut o) = pair();
            let packets: Vec<_> = payloads.iter().map(|p| sealed(&mut s, p)).collect();
            for p in &packets {
                o.open(&mut p.clone()).unwrap();
            }
            let mut again = *packets.last().unwrap();
            prop_assert_eq!(o.open(&mut again), Err(PacketError::BadMac));
        }

        #[test]
        fn reordering_is_rejected(a in payload(), b in payload()) {
            let (mut s, mut o) = pair();
            let first = sealed(&mut s, &a);
            let mut second = sealed(&mut s, &b);
            prop_assert_eq!(o.open(&mut second), Err(PacketError::BadMac));
            let (_, mut fresh) = pair();
            fresh.open(&mut first.clone()).unwrap();
            let mut first_again = first;
            prop_assert_eq!(fresh.open(&mut first_again), Err(PacketError::BadMac));
        }

        #[test]
        fn dropped_packet_is_rejected(a in payload(), b in payload()) {
            let (mut s, mut o) = pair();
            let _lost = sealed(&mut s, &a);
            let mut next = sealed(&mut s, &b);
            prop_assert_eq!(o.open(&mut next), Err(PacketError::BadMac));
        }

        /// A short packet padded out with garbage (how a truncated read would look if a
        /// caller mis-framed) or an entirely random one fails the MAC.
        #[test]
        fn truncated_or_garbled_packet_is_rejected(
            p in payload(),
            keep in 0..PACKET_LEN,
            filler in any::<u8>(),
            garbage in prop::collection::vec(any::<u8>(), PACKET_LEN),
        ) {
            let (mut s, mut o) = pair();
            let mut packet = sealed(&mut s, &p);
            let original = packet;
            packet[keep..].fill(filler);
            prop_assume!(packet != original);
            prop_assert_eq!(o.open(&mut packet), Err(PacketError::BadMac));

            let (_, mut o2) = pair();
            let mut random: [u8; PACKET_LEN] = garbage.try_into().unwrap();
            prop_assert_eq!(o2.open(&mut random), Err(PacketError::BadMac));
        }

        #[test]
        fn seal_rejects_bad_sizes(extra in 1usize..4096) {
            let (mut s, _) = pair();
            let mut out = [0u8; PACKET_LEN];
            let big = vec![0u8; MAX_PAYLOAD + extra];
            prop_assert_eq!(
                s.seal(&big, &mut out),
                Err(PacketError::PayloadTooLarge(MAX_PAYLOAD + extra))
            );
            prop_assert_eq!(s.seal(&[], &mut out), Err(PacketError::EmptyPayload));
        }

        /// The MAC (OpenSSL's SHA-256 on Linux) is HMAC-SHA256 over the ciphertext and the
        /// packet number as the hmac crate computes it, for any key and packet.
        #[test]
        fn packet_mac_is_hmac_sha256_of_ciphertext_and_packet_number(
            key in prop::array::uniform32(any::<u8>()),
            ciphertext in prop::collection::vec(any::<u8>(), CT_LEN),
            pnum in any::<u64>(),
        ) {
            use hmac::Mac;
            let mut keys = DirectionKeys::new(&AES_KEY, &key);
            keys.pnum = pnum;
            let mut reference = hmac_sha256(&key);
            reference.update(&ciphertext);
            reference.update(&pnum.to_be_bytes());
            prop_assert_eq!(keys.mac_for(&ciphertext), <[u8; 32]>::from(reference.finalize().into_bytes()));
        }

        #[test]
        fn bad_length_fields_are_rejected(
            claimed in prop_oneof![Just(0u32), (MAX_PAYLOAD as u32 + 1)..=u32::MAX],
            data in prop::collection::vec(any::<u8>(), MAX_PAYLOAD),
        ) {
            let (_, mut o) = pair();
            let keys = DirectionKeys::new(&AES_KEY, &HMAC_KEY);
            let mut plain = [0u8; CT_LEN];
            plain[..MAX_PAYLOAD].copy_from_slice(&data);
            plain[MAX_PAYLOAD..].copy_from_slice(&claimed.to_be_bytes());
            let mut p = forge(&keys, &plain);
            prop_assert_eq!(o.open(&mut p), Err(PacketError::BadLength(claimed)));
        }
    }
}
