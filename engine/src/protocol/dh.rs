//! Ephemeral Diffie-Hellman over RFC 3526 group 14 (2048-bit MODP, generator 2), the group
//! spiped uses for forward secrecy. Values travel as 256-byte big-endian numbers; the private
//! exponent is 2^258 + 256 random bits, as in spiped (any exponent of that size interoperates).
//! The shared secret is the system's constant-time exponentiation where the platform module
//! has one (OpenSSL's on Linux), else crypto-bigint's windowed `pow_bounded_exp`; the public
//! value, whose base is always 2, reads a table of fixed powers of 2 instead.

use crate::platform;
use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Choice, CtAssign, Limb, Odd, U320, U2048, Uint};
use std::fmt;
use std::sync::LazyLock;
use zeroize::{Zeroize, Zeroizing};

/// Length of a public value or shared secret on the wire.
pub const DH_LEN: usize = 256;

/// The RFC 3526 group 14 prime p = 2^2048 - 2^1984 - 1 + 2^64 * (floor(2^1918 pi) + 124476),
/// big-endian. Checked against OpenSSL's built-in `modp_2048` and by the tests below.
pub const MODULUS: [u8; DH_LEN] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc9, 0x0f, 0xda, 0xa2, 0x21, 0x68, 0xc2, 0x34,
    0xc4, 0xc6, 0x62, 0x8b, 0x80, 0xdc, 0x1c, 0xd1, 0x29, 0x02, 0x4e, 0x08, 0x8a, 0x67, 0xcc, 0x74,
    0x02, 0x0b, 0xbe, 0xa6, 0x3b, 0x13, 0x9b, 0x22, 0x51, 0x4a, 0x08, 0x79, 0x8e, 0x34, 0x04, 0xdd,
    0xef, 0x95, 0x19, 0xb3, 0xcd, 0x3a, 0x43, 0x1b, 0x30, 0x2b, 0x0a, 0x6d, 0xf2, 0x5f, 0x14, 0x37,
    0x4f, 0xe1, 0x35, 0x6d, 0x6d, 0x51, 0xc2, 0x45, 0xe4, 0x85, 0xb5, 0x76, 0x62, 0x5e, 0x7e, 0xc6,
    0xf4, 0x4c, 0x42, 0xe9, 0xa6, 0x37, 0xed, 0x6b, 0x0b, 0xff, 0x5c, 0xb6, 0xf4, 0x06, 0xb7, 0xed,
    0xee, 0x38, 0x6b, 0xfb, 0x5a, 0x89, 0x9f, 0xa5, 0xae, 0x9f, 0x24, 0x11, 0x7c, 0x4b, 0x1f, 0xe6,
    0x49, 0x28, 0x66, 0x51, 0xec, 0xe4, 0x5b, 0x3d, 0xc2, 0x00, 0x7c, 0xb8, 0xa1, 0x63, 0xbf, 0x05,
    0x98, 0xda, 0x48, 0x36, 0x1c, 0x55, 0xd3, 0x9a, 0x69, 0x16, 0x3f, 0xa8, 0xfd, 0x24, 0xcf, 0x5f,
    0x83, 0x65, 0x5d, 0x23, 0xdc, 0xa3, 0xad, 0x96, 0x1c, 0x62, 0xf3, 0x56, 0x20, 0x85, 0x52, 0xbb,
    0x9e, 0xd5, 0x29, 0x07, 0x70, 0x96, 0x96, 0x6d, 0x67, 0x0c, 0x35, 0x4e, 0x4a, 0xbc, 0x98, 0x04,
    0xf1, 0x74, 0x6c, 0x08, 0xca, 0x18, 0x21, 0x7c, 0x32, 0x90, 0x5e, 0x46, 0x2e, 0x36, 0xce, 0x3b,
    0xe3, 0x9e, 0x77, 0x2c, 0x18, 0x0e, 0x86, 0x03, 0x9b, 0x27, 0x83, 0xa2, 0xec, 0x07, 0xa2, 0x8f,
    0xb5, 0xc5, 0x5d, 0xf0, 0x6f, 0x4c, 0x52, 0xc9, 0xde, 0x2b, 0xcb, 0xf6, 0x95, 0x58, 0x17, 0x18,
    0x39, 0x95, 0x49, 0x7c, 0xea, 0x95, 0x6a, 0xe5, 0x15, 0xd2, 0x26, 0x18, 0x98, 0xfa, 0x05, 0x10,
    0x15, 0x72, 0x8e, 0x5a, 0x8a, 0xac, 0xaa, 0x68, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];

/// The exponent 2^258 + priv has exactly 259 significant bits. Only this length (public)
/// shapes the timing of the exponentiation, never the exponent's value.
const EXPONENT_BITS: u32 = 259;

const LIMBS: usize = U2048::LIMBS;

/// p as crypto-bigint's odd modulus; checked at compile time.
const ODD_MODULUS: Odd<U2048> = match U2048::from_be_slice(&MODULUS).to_odd().into_option_copied() {
    Some(p) => p,
    None => panic!("the RFC 3526 modulus is odd"),
};

/// p with its Montgomery constants, computed at compile time.
static GROUP: FixedMontyParams<LIMBS> = FixedMontyParams::new(ODD_MODULUS);

/// One side's ephemeral DH key pair. The private exponent is wiped on drop and never shown.
pub struct EphemeralKeyPair {
    /// 2^258 + priv, least significant 64 bits first.
    exponent: [u64; 5],
    public: [u8; DH_LEN],
}

impl EphemeralKeyPair {
    /// Builds the key pair from 32 fresh random bytes (the caller supplies randomness so
    /// the protocol core stays deterministic under test). Costs one fixed-base exponentiation
    /// (64 multiplications, about 0.1 ms).
    pub fn from_random(mut private: [u8; 32]) -> Self {
        // priv as four limbs (big-endian bytes, least significant limb first), then bit 258
        // = bit 2 of the fifth limb.
        let mut exponent = [0u64; 5];
        for (limb, chunk) in exponent.iter_mut().zip(private.rchunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *limb = u64::from_be_bytes(word);
            word.zeroize();
        }
        exponent[4] = 4;
        private.zeroize();

        let mut public = [0u8; DH_LEN];
        power_of_two_mod_p(&exponent, &mut public);
        EphemeralKeyPair { exponent, public }
    }

    /// [`EphemeralKeyPair::from_random`] straight into a box: the handshake and the pool
    /// move only the box, so no copy of the exponent is left behind in a moved-from slot.
    pub fn boxed_from_random(private: [u8; 32]) -> Box<Self> {
        Box::new(Self::from_random(private))
    }

    /// y = 2^(2^258 + priv) mod p, big-endian, left-padded to 256 bytes.
    pub fn public(&self) -> &[u8; DH_LEN] {
        &self.public
    }

    /// peer_y^(2^258 + priv) mod p. The handshake checks peer_y < p before calling this;
    /// any 256-byte input is nonetheless reduced correctly. OpenSSL computes it where the
    /// platform module has it (Linux), crypto-bigint elsewhere.
    pub fn shared_secret(&self, peer_y: &[u8; DH_LEN]) -> Zeroizing<[u8; DH_LEN]> {
        let mut out = Zeroizing::new([0u8; DH_LEN]);
        let exponent = exponent_to_be(&self.exponent);
        if !platform::system_constant_time_mod_exp(peer_y, &exponent[..], &MODULUS, &mut out[..]) {
            pow_mod_p(&U2048::from_be_slice(peer_y), &self.exponent, &mut out);
        }
        out
    }

    /// Same as [`is_below_modulus`], kept beside the key pair for discoverability.
    pub fn is_below_modulus(y: &[u8; DH_LEN]) -> bool {
        is_below_modulus(y)
    }
}

/// What computes [`EphemeralKeyPair::shared_secret`] on this system, for benchmark reports.
pub fn shared_secret_implementation() -> String {
    match platform::system_crypto_library() {
        Some(library) => format!("{library}, BN_mod_exp_mont_consttime"),
        None => "crypto-bigint, FixedMontyForm::pow_bounded_exp".to_owned(),
    }
}

/// base^exponent mod p into `out` (big-endian), in constant time: only the exponent's
/// public length, [`EXPONENT_BITS`], shapes the timing. Any 2048-bit base is reduced first.
/// The copies made here are wiped; crypto-bigint's own temporaries are out of reach.
fn pow_mod_p(base: &U2048, exponent: &[u64; 5], out: &mut [u8; DH_LEN]) {
    let mut exponent = exponent_to_uint(exponent);
    let mut base = FixedMontyForm::new(base, &GROUP);
    let mut power = base.pow_bounded_exp(&exponent, EXPONENT_BITS);
    let mut value = power.retrieve();
    uint_to_be(&value, out);
    exponent.zeroize();
    base.zeroize();
    power.zeroize();
    value.zeroize();
}

/// Hex digits in priv: the public value is one table row per digit.
const DIGITS: usize = 64;

/// Row i holds 2^(d * 16^i) mod p for d = 0..15, in Montgomery form; row 0 also carries
/// the exponent's fixed leading term, 2^(2^258). 64 rows of 16 entries: 256 KiB, built
/// once per process (about 1,300 multiplications, a few milliseconds) on first use.
type PowersOfTwo = Vec<[U2048; 16]>;

static POWERS_OF_TWO: LazyLock<PowersOfTwo> = LazyLock::new(|| {
    let mut rows = Vec::with_capacity(DIGITS);
    // 2^(16^i): the value one step of digit i multiplies by.
    let mut step = FixedMontyForm::new(&U2048::from_u8(2), &GROUP);
    let mut leading = step;
    for _ in 0..258 {
        leading = leading.square();
    }
    for i in 0..DIGITS {
        let mut entry = if i == 0 {
            leading
        } else {
            FixedMontyForm::one(&GROUP)
        };
        let mut row = [U2048::ZERO; 16];
        for slot in &mut row {
            *slot = *entry.as_montgomery();
            entry = entry.mul(&step);
        }
        rows.push(row);
        step = step.square().square().square().square();
    }
    rows
});

/// 2^(2^258 + priv) mod p into `out` (big-endian), in constant time: the product of one
/// entry per row of [`POWERS_OF_TWO`], 64 multiplications where the windowed
/// exponentiation takes about 330. Every entry of every row is read and the one wanted
/// kept by constant-time selection, so neither the time taken nor the memory touched
/// depends on priv. `exponent` is the key pair's (its fifth limb, the 2^258, is row 0's).
fn power_of_two_mod_p(exponent: &[u64; 5], out: &mut [u8; DH_LEN]) {
    let mut product = FixedMontyForm::one(&GROUP);
    let mut entry = U2048::ZERO;
    for (i, row) in POWERS_OF_TWO.iter().enumerate() {
        let mut digit = ((exponent[i / 16] >> (4 * (i % 16))) & 0xf) as u8;
        entry = row[0];
        for (d, candidate) in (0u8..).zip(row).skip(1) {
            entry.ct_assign(candidate, Choice::from_u8_eq(d, digit));
        }
        digit.zeroize();
        product = product.mul(&FixedMontyForm::from_montgomery(entry, &GROUP));
    }
    let mut value = product.retrieve();
    uint_to_be(&value, out);
    entry.zeroize();
    product.zeroize();
    value.zeroize();
}

/// The exponent's limbs (least significant first) as a crypto-bigint number, through
/// big-endian bytes so that it works whatever crypto-bigint's word size.
fn exponent_to_uint(exponent: &[u64; 5]) -> U320 {
    U320::from_be_slice(&exponent_to_be(exponent)[..])
}

/// The exponent's limbs (least significant first) as 40 big-endian bytes, wiped on drop.
fn exponent_to_be(exponent: &[u64; 5]) -> Zeroizing<[u8; 40]> {
    let mut bytes = Zeroizing::new([0u8; 40]);
    for (limb, chunk) in exponent.iter().zip(bytes.rchunks_exact_mut(8)) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    bytes
}

/// A `Uint` to big-endian bytes; `out` must hold exactly `L` limbs.
fn uint_to_be<const L: usize>(n: &Uint<L>, out: &mut [u8]) {
    for (word, chunk) in n.as_words().iter().zip(out.rchunks_mut(Limb::BYTES)) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
}

/// True iff y < p as unsigned big-endian numbers: the range check spiped applies to the
/// peer's value (0 and p - 1 pass, as in spiped).
pub fn is_below_modulus(y: &[u8; DH_LEN]) -> bool {
    // Equal-length big-endian byte strings order exactly like the numbers they encode.
    // y is public, so a variable-time comparison leaks nothing.
    y[..] < MODULUS[..]
}

/// True iff y is 0, 1 or p − 1: the values whose powers stay in {0}, {1} or {1, p − 1}, so
/// the "shared" secret is known without the other side's exponent. spiped checks only
/// y < p; Sluice refuses 0 and p − 1 always (no spiped sends them) and 1 under `-g` (a `-f`
/// peer sends 1 by design). y is public: a variable-time comparison leaks nothing.
pub fn is_small_subgroup_value(y: &[u8; DH_LEN]) -> bool {
    let (high, last) = y.split_at(DH_LEN - 1);
    let zero_above_last = high.iter().all(|&b| b == 0);
    let mut p_minus_1 = MODULUS;
    p_minus_1[DH_LEN - 1] -= 1;
    (zero_above_last && last[0] <= 1) || y[..] == p_minus_1[..]
}

impl Drop for EphemeralKeyPair {
    fn drop(&mut self) {
        // pow_mod_p wipes the copies it makes; the long-lived exponent is wiped here.
        self.exponent.zeroize();
    }
}

impl fmt::Debug for EphemeralKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralKeyPair")
            .field(
                "public",
                &format_args!("{}…", super::key::hex(&self.public[..8])),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_bigint::{Limb, Word};
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    /// Big-endian bytes (length exactly `L` limbs) to a `Uint`.
    fn uint_from_be<const L: usize>(bytes: &[u8]) -> Uint<L> {
        let mut n = Uint::<L>::ZERO;
        for (word, chunk) in n.as_mut_words().iter_mut().zip(bytes.rchunks(Limb::BYTES)) {
            *word = chunk
                .iter()
                .fold(0, |acc: Word, &b| (acc << 8) | Word::from(b));
        }
        n
    }

    /// base^(2^258 + priv) mod p the slow, obvious way: square and multiply, bit by bit
    /// from the top, with crypto-bigint's plain Montgomery product (variable time; a
    /// reference for the windowed constant-time ladder, not a replacement).
    fn square_and_multiply(base: &[u8; DH_LEN], private: &[u8; 32]) -> [u8; DH_LEN] {
        let x = FixedMontyForm::new(&U2048::from_be_slice(base), &GROUP);
        // Bit 258 is the leading one, bits 257 and 256 are zero, then the 256 bits of priv,
        // top first.
        let mut acc = x.square().square();
        for byte in private {
            for bit in (0..8).rev() {
                acc = acc.square();
                if byte >> bit & 1 == 1 {
                    acc *= x;
                }
            }
        }
        let mut out = [0u8; DH_LEN];
        uint_to_be(&acc.retrieve(), &mut out);
        out
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        super::super::key::hex(&Sha256::digest(bytes))
    }

    /// y = 1, the value a `-f` side sends.
    fn one() -> [u8; DH_LEN] {
        let mut y = [0u8; DH_LEN];
        y[DH_LEN - 1] = 1;
        y
    }

    #[test]
    fn modulus_has_the_rfc_3526_shape() {
        assert_eq!(MODULUS[DH_LEN - 1] & 1, 1, "p is odd");
        assert_eq!(
            MODULUS[..12],
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc9, 0x0f, 0xda, 0xa2
            ]
        );
        assert_eq!(MODULUS[DH_LEN - 8..], [0xff; 8]);
        // Second 64-bit word from the bottom: the end of the pi digits plus 124476.
        assert_eq!(
            MODULUS[DH_LEN - 16..DH_LEN - 8],
            [0x15, 0x72, 0x8e, 0x5a, 0x8a, 0xac, 0xaa, 0x68]
        );
    }

    /// A single mistyped byte would almost surely break these: p is a safe prime
    /// (p = 2q + 1, q prime), and 2 generates the order-q subgroup because p = 7 mod 8.
    #[test]
    fn modulus_is_a_safe_prime_with_generator_of_order_q() {
        let p = *ODD_MODULUS.as_ref();
        let two = FixedMontyForm::new(&U2048::from_u8(2), &GROUP);
        let p_minus_1 = p.wrapping_sub(&U2048::ONE);
        let q = p_minus_1.shr_vartime(1);
        assert_eq!(two.pow_vartime(&p_minus_1).retrieve(), U2048::ONE);
        assert_eq!(two.pow_vartime(&q).retrieve(), U2048::ONE);

        let q_params = FixedMontyParams::new(q.to_odd().into_option().unwrap());
        let three = FixedMontyForm::new(&U2048::from_u8(3), &q_params);
        let q_minus_1 = q.wrapping_sub(&U2048::ONE);
        assert_eq!(three.pow_vartime(&q_minus_1).retrieve(), U2048::ONE);
    }

    #[test]
    fn shared_secrets_agree() {
        let a = EphemeralKeyPair::from_random([0x11; 32]);
        let b = EphemeralKeyPair::from_random([0xfe; 32]);
        assert_ne!(a.public(), b.public());
        let ab = a.shared_secret(b.public());
        let ba = b.shared_secret(a.public());
        assert_eq!(*ab, *ba);
        assert!(EphemeralKeyPair::is_below_modulus(&ab));
        assert_ne!(*ab, one());
    }

    /// The exponent really is 2^258 + priv: with priv = 0, y = 2^(2^258), which is 2
    /// squared 258 times; computed here the slow, obvious way.
    #[test]
    fn public_value_matches_repeated_squaring() {
        let mut x = FixedMontyForm::new(&U2048::from_u8(2), &GROUP);
        for _ in 0..258 {
            x = x.square();
        }
        let mut expected = [0u8; DH_LEN];
        uint_to_be(&x.retrieve(), &mut expected);
        assert_eq!(EphemeralKeyPair::from_random([0; 32]).public(), &expected);

        // priv = 1 multiplies by one more 2.
        let mut expected2 = [0u8; DH_LEN];
        uint_to_be(&(x + x).retrieve(), &mut expected2);
        let mut one_priv = [0u8; 32];
        one_priv[31] = 1;
        assert_eq!(EphemeralKeyPair::from_random(one_priv).public(), &expected2);
    }

    /// The table path against the windowed ladder with base 2, for every digit value in
    /// every position (priv made of one repeated hex digit) and digits that all differ.
    #[test]
    fn public_value_from_the_table_matches_the_ladder() {
        let mut privs: Vec<[u8; 32]> = (0..16u8).map(|d| [d * 0x11; 32]).collect();
        privs.push(std::array::from_fn(|i| (i as u8).wrapping_mul(0x37) ^ 0x5c));
        for private in privs {
            let pair = EphemeralKeyPair::from_random(private);
            let mut by_ladder = [0u8; DH_LEN];
            pow_mod_p(&U2048::from_u8(2), &pair.exponent, &mut by_ladder);
            assert_eq!(pair.public(), &by_ladder, "priv {:02x?}", &private[..4]);
        }
    }

    #[test]
    fn peer_value_of_one_gives_one() {
        let a = EphemeralKeyPair::from_random([0x42; 32]);
        assert_eq!(*a.shared_secret(&one()), one());
    }

    #[test]
    fn range_check_is_a_big_endian_compare() {
        assert!(is_below_modulus(&[0; DH_LEN]));
        assert!(EphemeralKeyPair::is_below_modulus(&one()));
        let mut p_minus_1 = MODULUS;
        p_minus_1[DH_LEN - 1] -= 1;
        assert!(EphemeralKeyPair::is_below_modulus(&p_minus_1));
        assert!(!EphemeralKeyPair::is_below_modulus(&MODULUS));
        let mut p_plus_1 = MODULUS;
        // p ends in 68 ff ff ff ff ff ff ff ff; adding 1 carries into the 0x68.
        p_plus_1[DH_LEN - 9] += 1;
        p_plus_1[DH_LEN - 8..].fill(0);
        assert!(!EphemeralKeyPair::is_below_modulus(&p_plus_1));
        assert!(!EphemeralKeyPair::is_below_modulus(&[0xff; DH_LEN]));
    }

    #[test]
    fn small_subgroup_values_are_exactly_0_1_and_p_minus_1() {
        let mut p_minus_1 = MODULUS;
        p_minus_1[DH_LEN - 1] -= 1;
        for y in [[0; DH_LEN], one(), p_minus_1] {
            assert!(is_small_subgroup_value(&y));
        }
        let mut two = [0u8; DH_LEN];
        two[DH_LEN - 1] = 2;
        let mut p_minus_2 = MODULUS;
        p_minus_2[DH_LEN - 1] -= 2;
        let mut high_one = one();
        high_one[0] = 1;
        let honest = EphemeralKeyPair::from_random([0x33; 32]);
        for y in [two, p_minus_2, high_one, MODULUS, *honest.public()] {
            assert!(!is_small_subgroup_value(&y));
        }
    }

    #[test]
    fn round_trip_of_the_byte_conversions() {
        let mut out = [0u8; DH_LEN];
        uint_to_be(&uint_from_be::<LIMBS>(&MODULUS), &mut out);
        assert_eq!(out, MODULUS);
    }

    #[test]
    fn debug_shows_no_exponent() {
        let a = EphemeralKeyPair::from_random([0x5a; 32]);
        let shown = format!("{a:?}");
        assert!(shown.starts_with("EphemeralKeyPair"));
        assert!(!shown.contains("5a5a5a5a"));
    }

    /// Known answers computed once with an independent implementation (Python's built-in
    /// `pow(y, 2**258 + priv, p)`), recorded as SHA-256 digests of the 256-byte values.
    #[test]
    fn known_answers_from_an_independent_implementation() {
        let a = EphemeralKeyPair::from_random([0x11; 32]);
        let b = EphemeralKeyPair::from_random([0xfe; 32]);
        assert_eq!(
            sha256_hex(a.public()),
            "4acbf0e6572d7ed655fabf87a91f43a04a7630addb0f2e2fa40958dbab49247d"
        );
        assert_eq!(
            sha256_hex(b.public()),
            "838072290960443b961dace5d768ebded5f040a211a8ab02e2de7e9723d00d09"
        );
        assert_eq!(
            sha256_hex(&a.shared_secret(b.public())[..]),
            "4fd598b6935b66a3d291d1416740af6e599ad83c54b9636f35480c7f6a4b2350"
        );
        // A peer value of 2^2048 - 1 (above p; the handshake refuses it before this point)
        // is reduced, not mangled.
        assert_eq!(
            sha256_hex(&a.shared_secret(&[0xff; DH_LEN])[..]),
            "9f7b32194acd9d2e59a23645d8be7dc24fd9b1c25211b27de7c5e1322027f7e0"
        );
    }

    #[test]
    fn edge_bases_match_square_and_multiply() {
        let mut p_minus_1 = MODULUS;
        p_minus_1[DH_LEN - 1] -= 1;
        let mut two = [0u8; DH_LEN];
        two[DH_LEN - 1] = 2;
        for private in [[0u8; 32], [0xff; 32], [0x5a; 32]] {
            let pair = EphemeralKeyPair::from_random(private);
            for base in [
                [0u8; DH_LEN],
                [0xff; DH_LEN],
                MODULUS,
                p_minus_1,
                two,
                one(),
            ] {
                assert_eq!(
                    *pair.shared_secret(&base),
                    square_and_multiply(&base, &private)
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Both public values and the shared secret against the bit-by-bit reference, and
        /// the two sides agree.
        #[test]
        fn matches_square_and_multiply_and_sides_agree(
            a in prop::array::uniform32(any::<u8>()),
            b in prop::array::uniform32(any::<u8>()),
        ) {
            let (pa, pb) = (EphemeralKeyPair::from_random(a), EphemeralKeyPair::from_random(b));
            let mut two = [0u8; DH_LEN];
            two[DH_LEN - 1] = 2;
            prop_assert_eq!(pa.public(), &square_and_multiply(&two, &a));
            let secret = pa.shared_secret(pb.public());
            prop_assert_eq!(*secret, square_and_multiply(pb.public(), &a));
            prop_assert_eq!(*secret, *pb.shared_secret(pa.public()));
        }

        /// Both exponentiations, the system's (`shared_secret` on Linux) and crypto-bigint's
        /// (`pow_mod_p`, the one other systems use), agree on any 256-byte base, p and above
        /// included.
        #[test]
        fn system_and_crypto_bigint_exponentiations_agree(
            base in prop::collection::vec(any::<u8>(), DH_LEN),
            private in prop::array::uniform32(any::<u8>()),
        ) {
            let base: [u8; DH_LEN] = base.try_into().unwrap();
            let pair = EphemeralKeyPair::from_random(private);
            let mut by_crypto_bigint = [0u8; DH_LEN];
            pow_mod_p(&U2048::from_be_slice(&base), &pair.exponent, &mut by_crypto_bigint);
            prop_assert_eq!(*pair.shared_secret(&base), by_crypto_bigint);
        }
    }

    /// Linux has OpenSSL's exponentiation, so the test above compares two implementations
    /// there and not one with itself.
    #[test]
    fn linux_computes_the_shared_secret_with_openssl() {
        let pair = EphemeralKeyPair::from_random([0x5a; 32]);
        let mut out = [0u8; DH_LEN];
        let used = platform::system_constant_time_mod_exp(
            &one(),
            &exponent_to_be(&pair.exponent)[..],
            &MODULUS,
            &mut out,
        );
        assert_eq!(used, cfg!(target_os = "linux"));
        if used {
            assert_eq!(out, one());
        }
    }
}
