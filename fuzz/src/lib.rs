//! Fuzz harnesses for Sluice's decoders, through the engine's public API only: the spiped
//! handshake, data packets, the config file and the address syntax. Shared by the libFuzzer
//! targets (fuzz_targets/) and by the stable-toolchain corpus replay in CI
//! (engine/tests/fuzz_corpus.rs includes this file), so both check the same properties.
//!
//! Each harness must never panic, whatever the input; the `assert!`s below are the
//! properties a fuzzer hunts for violations of (a forged handshake or packet accepted, a
//! config or address that does not survive printing and parsing back).

use sluice_engine::Config;
use sluice_engine::protocol::key::PresharedKey;
use sluice_engine::protocol::{
    EphemeralKeyPair, ForwardSecrecy, Handshake, MAX_PAYLOAD, NONCE_LEN, PACKET_LEN, PacketError,
    PacketOpener, PacketSealer, PeerRejection, Role, SIGNED_DH_LEN, SIGNED_X25519_LEN,
    X25519Handshake,
};
use sluice_engine::{Address, parse_bind};

/// The key file both ends share in every harness.
const KEY_FILE: &[u8] = b"sluice fuzzing key: 32 bytes+...";
const OUR_NONCE: [u8; NONCE_LEN] = [0x5a; NONCE_LEN];
const PEER_NONCE: [u8; NONCE_LEN] = [0xa5; NONCE_LEN];

fn key() -> PresharedKey {
    PresharedKey::from_keyfile_bytes(KEY_FILE)
}

/// Byte `i` of `data`, or 0 past its end.
fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

/// Exactly `N` bytes of `data` from `at`, zero-padded.
fn array<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = data.get(at..) {
        let n = src.len().min(N);
        out[..n].copy_from_slice(&src[..n]);
    }
    out
}

fn policy(bits: u8) -> ForwardSecrecy {
    match bits & 3 {
        0 => ForwardSecrecy::Enabled,
        2 => ForwardSecrecy::Required,
        _ => ForwardSecrecy::Disabled,
    }
}

fn other(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

/// A handshake for one side; the DH key pair (one modular exponentiation) only when the
/// policy needs it, from fixed "random" bytes so runs are reproducible.
fn start(role: Role, fs: ForwardSecrecy, nonce: [u8; NONCE_LEN], seed: u8) -> Handshake {
    let keypair =
        (fs != ForwardSecrecy::Disabled).then(|| EphemeralKeyPair::boxed_from_random([seed; 32]));
    match Handshake::new(role, &key(), fs, nonce, keypair) {
        Ok(h) => h,
        Err(e) => panic!("a key pair was supplied, so Handshake::new cannot fail: {e}"),
    }
}

/// The handshake decoder: what this side does with the peer's 32-byte nonce and 288-byte
/// signed DH value.
///
/// Layout: byte 0 = flags (bit 0: our role is server; bits 1-2: our policy; bit 3: honest
/// peer; bits 4-5: the peer's policy), then 320 bytes, then packet data.
/// - Raw mode: the 320 bytes are the peer's nonce and signed DH value. Nobody without the
///   key can sign, so the handshake must fail with `BadSignature`.
/// - Honest mode: a real peer (same key) runs the handshake, and the 320 bytes are XORed
///   onto what it sends. Any change must be rejected as `BadSignature`; no change must
///   succeed (unless the policies are incompatible), and the session must then carry the
///   rest of the input intact in the peer-to-us direction.
pub fn handshake(data: &[u8]) {
    let flags = byte(data, 0);
    let role = if flags & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let ours_fs = policy(flags >> 1);
    let peer_fs = policy(flags >> 4);
    let honest = flags & 8 != 0;
    let nonce_part: [u8; NONCE_LEN] = array(data, 1);
    let dh_part: [u8; SIGNED_DH_LEN] = array(data, 1 + NONCE_LEN);
    let rest = data.get(1 + NONCE_LEN + SIGNED_DH_LEN..).unwrap_or(&[]);

    let ours = start(role, ours_fs, OUR_NONCE, 0x11);
    if !honest {
        let exchanged = ours.receive_nonce(&nonce_part);
        let verdict = exchanged.receive_signed_dh(&dh_part);
        assert!(
            matches!(verdict, Err(PeerRejection::BadSignature)),
            "unsigned bytes got past the handshake: {verdict:?}"
        );
        return;
    }

    let peer = start(other(role), peer_fs, PEER_NONCE, 0x22);
    let mut peer_nonce = *peer.nonce();
    xor(&mut peer_nonce, &nonce_part);
    let peer = peer.receive_nonce(ours.nonce());
    let ours = ours.receive_nonce(&peer_nonce);
    let mut peer_dh = *peer.signed_dh();
    xor(&mut peer_dh, &dh_part);
    let tampered = nonce_part.iter().chain(&dh_part[..]).any(|&b| b != 0);

    let verified = match ours.receive_signed_dh(&peer_dh) {
        Ok(v) => v,
        Err(e) => {
            let expected = if tampered {
                PeerRejection::BadSignature
            } else {
                PeerRejection::ForwardSecrecyRefused
            };
            assert_eq!(e, expected, "tampered: {tampered}");
            if !tampered {
                assert_eq!(
                    (ours_fs, peer_fs),
                    (ForwardSecrecy::Required, ForwardSecrecy::Disabled),
                    "an honest handshake was refused"
                );
            }
            return;
        }
    };
    assert!(!tampered, "an altered handshake message was accepted");
    assert_eq!(
        verified.peer_skipped_forward_secrecy(),
        peer_fs == ForwardSecrecy::Disabled
    );
    // The peer side completes too (its check of our value is the same code, other role).
    let peer = match peer.receive_signed_dh(verified.signed_dh()) {
        Ok(p) => p,
        Err(e) if peer_fs == ForwardSecrecy::Required && ours_fs == ForwardSecrecy::Disabled => {
            assert_eq!(e, PeerRejection::ForwardSecrecyRefused);
            return;
        }
        Err(e) => panic!("the honest peer refused our handshake: {e}"),
    };
    let (_, mut opener) = verified.derive_session().into_packet_codecs();
    let (mut sealer, _) = peer.derive_session().into_packet_codecs();
    round_trip(&mut sealer, &mut opener, rest);
}

/// The X25519 handshake decoder (docs/X25519.md): what this side does with the peer's
/// 32-byte nonce and 64-byte signed public key.
///
/// Layout: byte 0 = flags (bit 0: our role is server; bit 3: honest peer), then 96 bytes,
/// then packet data. Raw mode: the 96 bytes are the peer's messages; without the key they
/// cannot be signed, so the handshake must fail with `BadSignature`. Honest mode: the 96
/// bytes are XORed onto what a real peer sends; any change must be rejected, no change
/// must succeed and then carry the rest of the input intact.
pub fn x25519_handshake(data: &[u8]) {
    let flags = byte(data, 0);
    let role = if flags & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let honest = flags & 8 != 0;
    let nonce_part: [u8; NONCE_LEN] = array(data, 1);
    let signed_part: [u8; SIGNED_X25519_LEN] = array(data, 1 + NONCE_LEN);
    let rest = data.get(1 + NONCE_LEN + SIGNED_X25519_LEN..).unwrap_or(&[]);

    let ours = X25519Handshake::new(role, &key(), OUR_NONCE, [0x11; 32]);
    if !honest {
        let verdict = ours
            .receive_nonce(&nonce_part)
            .receive_signed_public(&signed_part);
        assert!(
            matches!(verdict, Err(PeerRejection::BadSignature)),
            "unsigned bytes got past the X25519 handshake: {verdict:?}"
        );
        return;
    }
    let peer = X25519Handshake::new(other(role), &key(), PEER_NONCE, [0x22; 32]);
    let mut peer_nonce = *peer.nonce();
    xor(&mut peer_nonce, &nonce_part);
    let peer = peer.receive_nonce(ours.nonce());
    let ours = ours.receive_nonce(&peer_nonce);
    let tampered = nonce_part.iter().chain(&signed_part[..]).any(|&b| b != 0);
    // The client's signed key goes first; a server signs its own only after checking it.
    let (verified, peer) = match ours.signed_public().copied() {
        // We are the client: the (honest) server checks our key (signed with MAC keys
        // from its nonce as we received it), then we take its, tampered.
        Some(our_signed) => {
            let peer = match peer.receive_signed_public(&our_signed) {
                Ok(p) => p,
                Err(e) => {
                    assert!(
                        tampered,
                        "the honest peer refused our X25519 handshake: {e}"
                    );
                    assert_eq!(e, PeerRejection::BadSignature);
                    return;
                }
            };
            let mut signed = *peer.signed_public();
            xor(&mut signed, &signed_part);
            match ours.receive_signed_public(&signed) {
                Ok(v) => (v, peer),
                Err(e) => {
                    assert!(tampered, "an honest X25519 handshake was refused: {e}");
                    assert_eq!(e, PeerRejection::BadSignature);
                    return;
                }
            }
        }
        // We are the server: the client's key, tampered, comes first.
        None => {
            let mut signed = *peer
                .signed_public()
                .expect("an X25519 client signs its key at once");
            xor(&mut signed, &signed_part);
            let verified = match ours.receive_signed_public(&signed) {
                Ok(v) => v,
                Err(e) => {
                    assert!(tampered, "an honest X25519 handshake was refused: {e}");
                    assert_eq!(e, PeerRejection::BadSignature);
                    return;
                }
            };
            let peer = match peer.receive_signed_public(verified.signed_public()) {
                Ok(p) => p,
                Err(e) => panic!("the honest peer refused our X25519 handshake: {e}"),
            };
            (verified, peer)
        }
    };
    assert!(
        !tampered,
        "an altered X25519 handshake message was accepted"
    );
    let (_, mut opener) = verified.derive_session().into_packet_codecs();
    let (mut sealer, _) = peer.derive_session().into_packet_codecs();
    round_trip(&mut sealer, &mut opener, rest);
}

fn xor<const N: usize>(target: &mut [u8; N], mask: &[u8; N]) {
    for (t, m) in target.iter_mut().zip(mask) {
        *t ^= m;
    }
}

/// Seals `data` in pieces of varying size and opens it again, expecting it unchanged.
fn round_trip(sealer: &mut PacketSealer, opener: &mut PacketOpener, data: &[u8]) {
    let mut wire = Vec::new();
    sealer.seal_all(data, &mut wire);
    let mut got = Vec::new();
    for chunk in wire.chunks_exact_mut(PACKET_LEN) {
        let packet: &mut [u8; PACKET_LEN] = chunk.try_into().expect("exact chunk");
        let len = opener.open(packet).expect("an honest packet opens");
        got.extend_from_slice(&packet[..len]);
    }
    assert_eq!(got, data, "the session altered data");
}

/// A session between two honest ends (no forward secrecy, fixed nonces: cheap and
/// deterministic), as (what the peer seals with, what we open with).
fn session() -> (PacketSealer, PacketOpener) {
    let client = start(Role::Client, ForwardSecrecy::Disabled, PEER_NONCE, 0);
    let server = start(Role::Server, ForwardSecrecy::Disabled, OUR_NONCE, 0);
    let client_nonce = *client.nonce();
    let client = client.receive_nonce(server.nonce());
    let server = server.receive_nonce(&client_nonce);
    let server = server
        .receive_signed_dh(client.signed_dh())
        .expect("honest client accepted");
    let client = client
        .receive_signed_dh(server.signed_dh())
        .expect("honest server accepted");
    let (sealer, _) = client.derive_session().into_packet_codecs();
    let (_, opener) = server.derive_session().into_packet_codecs();
    (sealer, opener)
}

/// The packet decoder, fed what a man in the middle makes of an honest sender's packets.
///
/// Byte 0 with its top bit set: raw mode, the rest is the wire itself (1060-byte packets),
/// and no packet may open. Otherwise the input is a script, one opcode byte then operands:
/// seal a payload, flip a bit, replay, drop or swap packets, insert a garbage packet, or
/// truncate the stream. The receiver must deliver exactly the payloads of the packets that
/// arrive unaltered and in order, and refuse the first packet that is not.
pub fn packets(data: &[u8]) {
    let (mut sealer, mut opener) = session();
    if byte(data, 0) & 0x80 != 0 {
        // The first packet decides: after a refusal the stream is abandoned.
        if let Some(chunk) = data[1..].chunks_exact(PACKET_LEN).next() {
            let mut packet: [u8; PACKET_LEN] = chunk.try_into().expect("exact chunk");
            assert_eq!(
                opener.open(&mut packet),
                Err(PacketError::BadMac),
                "garbage opened"
            );
        }
        return;
    }

    // What the honest sender produced, in order, and what reaches the receiver.
    let mut honest: Vec<([u8; PACKET_LEN], Vec<u8>)> = Vec::new();
    let mut wire: Vec<[u8; PACKET_LEN]> = Vec::new();
    let mut truncated = false;
    let mut at = 1;
    let mut next = |n: usize| {
        let start = at;
        at += n;
        data.get(start..at.min(data.len())).unwrap_or(&[])
    };
    while !truncated {
        let op = next(1);
        let Some(&op) = op.first() else { break };
        match op % 8 {
            0 | 7 => {
                let len_bytes = next(2);
                let len = usize::from(u16::from_le_bytes(array(len_bytes, 0))) % (MAX_PAYLOAD + 2);
                let seed = byte(next(1), 0);
                let payload: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                    .collect();
                let mut packet = [0u8; PACKET_LEN];
                match sealer.seal(&payload, &mut packet) {
                    Ok(()) => {
                        assert!((1..=MAX_PAYLOAD).contains(&len));
                        honest.push((packet, payload));
                        wire.push(packet);
                    }
                    Err(PacketError::EmptyPayload) => assert_eq!(len, 0),
                    Err(PacketError::PayloadTooLarge(n)) => assert_eq!(n, len),
                    Err(e) => panic!("sealing {len} bytes failed: {e}"),
                }
            }
            1 => {
                let pos = u16::from_le_bytes(array(next(2), 0));
                if let Some(last) = wire.last_mut() {
                    let bit = usize::from(pos) % (PACKET_LEN * 8);
                    last[bit / 8] ^= 1 << (bit % 8);
                }
            }
            2 => {
                if let Some(&last) = wire.last() {
                    wire.push(last);
                }
            }
            3 => {
                wire.pop();
            }
            4 => {
                let n = wire.len();
                if n >= 2 {
                    wire.swap(n - 1, n - 2);
                }
            }
            5 => {
                wire.push(array(next(PACKET_LEN), 0));
            }
            _ => truncated = true,
        }
    }
    // A truncated last packet never reaches the decoder (the pump only decodes whole
    // packets; a partial one at end of stream is dropped, as in spiped).
    if truncated {
        wire.pop();
    }

    // Exactly the packets that arrive unaltered and in their place open, each to what was
    // sealed; the first one that does not is refused, and the stream ends there.
    let in_order = wire
        .iter()
        .zip(&honest)
        .take_while(|(w, (h, _))| w == &h)
        .count();
    for (i, packet) in wire.iter().enumerate() {
        let mut packet = *packet;
        let verdict = opener.open(&mut packet);
        if i < in_order {
            let len = verdict.expect("an unaltered packet in its place was refused");
            assert_eq!(
                &packet[..len],
                &honest[i].1[..],
                "a packet opened to other data"
            );
            assert_eq!(opener.packets_opened(), i as u64 + 1);
        } else {
            assert_eq!(verdict, Err(PacketError::BadMac), "packet {i} of the wire");
            break;
        }
    }
}

/// The config file parser: any text either parses or gives an error that can be shown;
/// what parses must print and parse back to the same config.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => {
            let printed = config.to_ron();
            match Config::parse(&printed) {
                Ok(again) => assert_eq!(again, config, "config changed through save and load"),
                Err(e) => panic!("a saved config does not load: {e}\n{printed}"),
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
        }
    }
}

/// The address syntax (listen, target and bind addresses): anything either parses or
/// gives an error that can be shown; what parses must print and parse back unchanged.
pub fn address(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Address>() {
        Ok(addr) => {
            let printed = addr.to_string();
            assert_eq!(
                printed.parse::<Address>().as_ref(),
                Ok(&addr),
                "{text:?} -> {printed:?}"
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match parse_bind(text) {
        Ok(addr) => {
            let printed = addr.to_string();
            assert_eq!(
                parse_bind(&printed).as_ref(),
                Ok(&addr),
                "bind {text:?} -> {printed:?}"
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
