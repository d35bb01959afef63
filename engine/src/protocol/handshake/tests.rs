//! Handshake tests: the PROTOCOL.md section 8 known-answer vector through the public API,
//! the `-f`/`-g` matrix of section 7 with real Diffie-Hellman, and tampering.

use super::*;
use crate::protocol::dh::MODULUS;
use crate::protocol::key::hex;
use crate::protocol::packet::{PACKET_LEN, PacketError};
use proptest::prelude::*;

use ForwardSecrecy::{Disabled, Enabled, Required};

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

fn keypair_for(fs: ForwardSecrecy) -> Option<Box<EphemeralKeyPair>> {
    (fs != Disabled).then(|| EphemeralKeyPair::boxed_from_random(random()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// The four handshake messages in wire order, for tampering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    NonceC,
    NonceS,
    SignedDhC,
    SignedDhS,
}

struct Finished {
    client: SessionKeys,
    server: SessionKeys,
    client_saw_peer_skip: bool,
    server_saw_peer_skip: bool,
}

/// Drives a client and a server back to back, in the order spiped sends the messages
/// (the server's signed DH only after it verified the client's), letting `tamper` alter
/// each message in transit. Errors say which side rejected the handshake.
#[allow(clippy::too_many_arguments)]
fn run_with(
    client_key: &PresharedKey,
    server_key: &PresharedKey,
    client_fs: ForwardSecrecy,
    server_fs: ForwardSecrecy,
    nonce_c: [u8; 32],
    nonce_s: [u8; 32],
    client_keypair: Option<Box<EphemeralKeyPair>>,
    server_keypair: Option<Box<EphemeralKeyPair>>,
    mut tamper: impl FnMut(Msg, &mut [u8]),
) -> Result<Finished, (Side, PeerRejection)> {
    let client =
        Handshake::new(Role::Client, client_key, client_fs, nonce_c, client_keypair).unwrap();
    let server =
        Handshake::new(Role::Server, server_key, server_fs, nonce_s, server_keypair).unwrap();

    let mut to_server = *client.nonce();
    tamper(Msg::NonceC, &mut to_server);
    let mut to_client = *server.nonce();
    tamper(Msg::NonceS, &mut to_client);
    let client = client.receive_nonce(&to_client);
    let server = server.receive_nonce(&to_server);

    let mut yh_c = *client.signed_dh();
    tamper(Msg::SignedDhC, &mut yh_c);
    let server = server
        .receive_signed_dh(&yh_c)
        .map_err(|e| (Side::Server, e))?;
    let mut yh_s = *server.signed_dh();
    tamper(Msg::SignedDhS, &mut yh_s);
    let client = client
        .receive_signed_dh(&yh_s)
        .map_err(|e| (Side::Client, e))?;

    Ok(Finished {
        client_saw_peer_skip: client.peer_skipped_forward_secrecy(),
        server_saw_peer_skip: server.peer_skipped_forward_secrecy(),
        client: client.derive_session(),
        server: server.derive_session(),
    })
}

fn run(
    client_fs: ForwardSecrecy,
    server_fs: ForwardSecrecy,
) -> Result<Finished, (Side, PeerRejection)> {
    let key = PresharedKey::from_keyfile_bytes(b"matrix test key\n");
    run_with(
        &key,
        &key,
        client_fs,
        server_fs,
        random(),
        random(),
        keypair_for(client_fs),
        keypair_for(server_fs),
        |_, _| {},
    )
}

fn key_bytes(k: &SessionKeys) -> [[u8; 32]; 4] {
    [k.e_c, k.h_c, k.e_s, k.h_s]
}

/// Client sends three packets, server two back; every one must open on the other side.
fn assert_data_flows(done: Finished) {
    let (mut c_seal, mut c_open) = done.client.into_packet_codecs();
    let (mut s_seal, mut s_open) = done.server.into_packet_codecs();
    for (i, msg) in [&b"first"[..], &[0xaa; 1024][..], b"x"]
        .into_iter()
        .enumerate()
    {
        let mut p = [0u8; PACKET_LEN];
        c_seal.seal(msg, &mut p).unwrap();
        assert_eq!(s_open.open(&mut p), Ok(msg.len()), "client packet {i}");
        assert_eq!(&p[..msg.len()], msg);
    }
    for msg in [&b"reply"[..], b"second reply"] {
        let mut p = [0u8; PACKET_LEN];
        s_seal.seal(msg, &mut p).unwrap();
        assert_eq!(c_open.open(&mut p), Ok(msg.len()));
        assert_eq!(&p[..msg.len()], msg);
    }
    // A direction's keys never open the other direction's packets.
    let mut p = [0u8; PACKET_LEN];
    c_seal.seal(b"loop", &mut p).unwrap();
    assert_eq!(c_open.open(&mut p), Err(PacketError::BadMac));
}

#[test]
fn known_answer_vector_of_protocol_md_section_8() {
    let key = PresharedKey::from_keyfile_bytes(b"");
    assert_eq!(
        hex(key.secret()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let nonce_c: [u8; 32] = std::array::from_fn(|i| i as u8);
    let nonce_s: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);

    let client = Handshake::new(Role::Client, &key, Disabled, nonce_c, None).unwrap();
    let server = Handshake::new(Role::Server, &key, Disabled, nonce_s, None).unwrap();
    assert_eq!(client.nonce(), &nonce_c);
    assert_eq!(server.nonce(), &nonce_s);
    let client = client.receive_nonce(server.nonce());
    let server = server.receive_nonce(client.nonce_for_test());

    // Each side keeps the peer's DH MAC key.
    assert_eq!(
        hex(&server.dhmac_peer[..]),
        "7904361d53e2664a0dbd4796a70e54bd4982586a0b0ba1d9179250c1b3fd64de"
    );
    assert_eq!(
        hex(&client.dhmac_peer[..]),
        "a4d01c3926fabc66368149404b6311c23f65f3ef576f44d7849e3424c4d0c909"
    );
    assert_eq!(client.signed_dh()[..DH_LEN], Y_ONE);
    assert_eq!(
        hex(&client.signed_dh()[DH_LEN..]),
        "445978f48035127230029720ecc9d51cf6c097b8c7fc1ba53ac804fe61e06aad"
    );
    assert_eq!(server.signed_dh()[..DH_LEN], Y_ONE);
    assert_eq!(
        hex(&server.signed_dh()[DH_LEN..]),
        "4e98e1033845bb0d0f6d64ab3b754af49ade2a3b3f3e4ddf9e2f9b0232aa7496"
    );

    let server = server.receive_signed_dh(client.signed_dh()).unwrap();
    let client = client.receive_signed_dh(server.signed_dh()).unwrap();
    assert!(client.peer_skipped_forward_secrecy());
    assert!(server.peer_skipped_forward_secrecy());
    let client = client.derive_session();
    let server = server.derive_session();
    let expected = [
        "3e812f0e1130dfd79ce80aad9c322a0c80d72c82f8c032f3d6d5df597018250f", // E_C
        "6d0d5168f2a0af0e4c9212b224e56adc0d4320fc238122ccf2fd6edd7c47a065", // H_C
        "31587b6956f7b11a9023b6d6122eb366f2cdab56f5060a7e227e15c79d843bc3", // E_S
        "a553c4d44a3bc9304e497bf1739895e1bc715f817086ff1fd96fc589f259fceb", // H_S
    ];
    for keys in [&client, &server] {
        let got = key_bytes(keys).map(|k| hex(&k));
        assert_eq!(got, expected);
    }

    let (mut c_seal, _) = client.into_packet_codecs();
    let (mut s_seal, mut s_open) = server.into_packet_codecs();
    let mut p0 = [0u8; PACKET_LEN];
    c_seal.seal(b"hello", &mut p0).unwrap();
    assert_eq!(hex(&p0[..16]), "58c902c0db9fddeec4eb95d70054aca8");
    assert_eq!(hex(&p0[1024..1028]), "703c0fb9");
    assert_eq!(
        hex(&p0[1028..]),
        "9614ec84a746c248f094fa629267466ea7a03a0eff92961aeda9282cd266c97b"
    );
    let mut p1 = [0u8; PACKET_LEN];
    c_seal.seal(b"hello", &mut p1).unwrap();
    assert_eq!(hex(&p1[..16]), "607cbc869dc9c3e543e9f2d7a4b265f3");
    assert_eq!(
        hex(&p1[1028..]),
        "bf84616038082f128ccca6887210e19cd9e30f0af8227c84cdb1e26edead8d4b"
    );
    let mut p2 = [0u8; PACKET_LEN];
    s_seal.seal(b"world", &mut p2).unwrap();
    assert_eq!(hex(&p2[..16]), "0a2423ad04ba4e7df7c170e1d5943234");
    assert_eq!(
        hex(&p2[1028..]),
        "0f19bf40545185800a8c613474e57dc9e0aba7a8e53df521c039f471115270a4"
    );

    assert_eq!(s_open.open(&mut p0), Ok(5));
    assert_eq!(&p0[..5], b"hello");
    assert_eq!(s_open.open(&mut p1), Ok(5));
}

impl NoncesExchanged {
    /// The nonce this side sent, for tests that feed stage-2 objects to each other.
    fn nonce_for_test(&self) -> &[u8; 32] {
        match self.common.role {
            Role::Client => &self.nonces.client,
            Role::Server => &self.nonces.server,
        }
    }
}

/// Section 7: which `-f`/`-g` pairs work, which fail, on which side, and whether the
/// session has forward secrecy.
#[test]
fn forward_secrecy_matrix_of_protocol_md_section_7() {
    let all = [Enabled, Disabled, Required];
    for client_fs in all {
        for server_fs in all {
            let outcome = run(client_fs, server_fs);
            match (client_fs, server_fs) {
                (Disabled, Required) => assert_eq!(
                    outcome.err(),
                    Some((Side::Server, PeerRejection::ForwardSecrecyRefused)),
                    "server -g drops a -f client"
                ),
                (Required, Disabled) => assert_eq!(
                    outcome.err(),
                    Some((Side::Client, PeerRejection::ForwardSecrecyRefused)),
                    "client -g drops a -f server"
                ),
                _ => {
                    let done = outcome.unwrap_or_else(|e| {
                        panic!("{client_fs:?}/{server_fs:?} must work, got {e:?}")
                    });
                    assert_eq!(done.server_saw_peer_skip, client_fs == Disabled);
                    assert_eq!(done.client_saw_peer_skip, server_fs == Disabled);
                    assert_eq!(key_bytes(&done.client), key_bytes(&done.server));
                    assert_data_flows(done);
                }
            }
        }
    }
}

/// With `-f` on either side both ends use y_SC = 1, so the keys are exactly what two `-f`
/// ends derive from the same nonces; with DH on both sides they are not.
#[test]
fn forward_secrecy_only_when_neither_side_skips_it() {
    let key = PresharedKey::from_keyfile_bytes(b"k");
    let (nc, ns) = (random(), random());
    let handshake = |cfs, sfs| {
        run_with(
            &key,
            &key,
            cfs,
            sfs,
            nc,
            ns,
            keypair_for(cfs),
            keypair_for(sfs),
            |_, _| {},
        )
        .unwrap()
    };
    let reference = key_bytes(&handshake(Disabled, Disabled).client);
    for (cfs, sfs) in [(Disabled, Enabled), (Enabled, Disabled)] {
        let done = handshake(cfs, sfs);
        assert_eq!(key_bytes(&done.client), reference);
        assert_eq!(key_bytes(&done.server), reference);
    }
    let pfs = handshake(Enabled, Enabled);
    assert_eq!(key_bytes(&pfs.client), key_bytes(&pfs.server));
    assert_ne!(key_bytes(&pfs.client), reference);
}

#[test]
fn missing_key_pair_is_a_local_error() {
    let key = PresharedKey::from_keyfile_bytes(b"k");
    for fs in [Enabled, Required] {
        assert_eq!(
            Handshake::new(Role::Client, &key, fs, [0; 32], None).err(),
            Some(HandshakeMisuse::MissingKeyPair)
        );
    }
    // -f ignores a supplied key pair and sends y = 1.
    let hs = Handshake::new(
        Role::Server,
        &key,
        Disabled,
        [0; 32],
        Some(EphemeralKeyPair::boxed_from_random([1; 32])),
    )
    .unwrap();
    assert_eq!(hs.receive_nonce(&[0; 32]).signed_dh()[..DH_LEN], Y_ONE);
}

#[test]
fn wrong_key_is_bad_signature_at_the_server() {
    let a = PresharedKey::from_keyfile_bytes(b"key one");
    let b = PresharedKey::from_keyfile_bytes(b"key two");
    for fs in [Enabled, Disabled] {
        let outcome = run_with(
            &a,
            &b,
            fs,
            fs,
            random(),
            random(),
            keypair_for(fs),
            keypair_for(fs),
            |_, _| {},
        );
        assert_eq!(
            outcome.err(),
            Some((Side::Server, PeerRejection::BadSignature))
        );
    }
}

/// Replaces the client's signed DH with `y` correctly signed under the real dhmac_C, as a
/// peer that knows the key but misbehaves would, and returns the server's verdict.
fn server_verdict_on_client_y(
    server_fs: ForwardSecrecy,
    y: &[u8; DH_LEN],
) -> Result<(), PeerRejection> {
    let key = PresharedKey::from_keyfile_bytes(b"range test");
    let (nonce_c, nonce_s) = (random(), random());
    let server = Handshake::new(
        Role::Server,
        &key,
        server_fs,
        nonce_s,
        keypair_for(server_fs),
    )
    .unwrap()
    .receive_nonce(&nonce_c);
    let (dhmac_c, _) = dh_mac_keys(
        &key,
        &Nonces {
            client: nonce_c,
            server: nonce_s,
        },
    );
    server.receive_signed_dh(&sign_dh(&dhmac_c, y)).map(|_| ())
}

#[test]
fn peer_value_at_or_above_p_is_out_of_range() {
    // p ends in 68 ff ff ff ff ff ff ff ff; adding 1 carries into the 0x68.
    let mut p_plus_1 = MODULUS;
    p_plus_1[DH_LEN - 9] += 1;
    p_plus_1[DH_LEN - 8..].fill(0);
    for y in [MODULUS, p_plus_1, [0xff; DH_LEN]] {
        assert_eq!(
            server_verdict_on_client_y(Enabled, &y),
            Err(PeerRejection::ValueOutOfRange)
        );
    }
    // spiped accepts 0 and p - 1 (it checks only y < p); Sluice refuses them, whatever
    // its policy, because they fix the shared secret. y = 1 (a -f peer) passes unless -g.
    let mut p_minus_1 = MODULUS;
    p_minus_1[DH_LEN - 1] -= 1;
    for fs in [Enabled, Disabled, Required] {
        for y in [[0; DH_LEN], p_minus_1] {
            assert_eq!(
                server_verdict_on_client_y(fs, &y),
                Err(PeerRejection::SmallSubgroupValue),
                "{fs:?}"
            );
        }
    }
    for fs in [Enabled, Disabled] {
        assert_eq!(server_verdict_on_client_y(fs, &Y_ONE), Ok(()));
    }
    let mut two = [0u8; DH_LEN];
    two[DH_LEN - 1] = 2;
    let mut p_minus_2 = MODULUS;
    p_minus_2[DH_LEN - 1] -= 2;
    for y in [two, p_minus_2] {
        assert_eq!(server_verdict_on_client_y(Required, &y), Ok(()));
    }
    // The range check comes before the -g check.
    assert_eq!(
        server_verdict_on_client_y(Required, &MODULUS),
        Err(PeerRejection::ValueOutOfRange)
    );
    assert_eq!(
        server_verdict_on_client_y(Required, &Y_ONE),
        Err(PeerRejection::ForwardSecrecyRefused)
    );
}

#[test]
fn bad_mac_is_checked_before_range() {
    let key = PresharedKey::from_keyfile_bytes(b"order");
    let server = Handshake::new(Role::Server, &key, Disabled, [2; 32], None)
        .unwrap()
        .receive_nonce(&[1; 32]);
    let mut forged = [0u8; SIGNED_DH_LEN];
    forged[..DH_LEN].copy_from_slice(&MODULUS);
    assert_eq!(
        server.receive_signed_dh(&forged).err(),
        Some(PeerRejection::BadSignature)
    );
}

#[test]
fn peer_verified_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<PeerVerified>();
    assert_send::<Handshake>();
    assert_send::<NoncesExchanged>();
    assert_send::<SessionKeys>();
}

#[test]
fn debug_output_reveals_no_secrets() {
    let key = PresharedKey::from_keyfile_bytes(b"debug key");
    let nonce_c = [0x3c; 32];
    let hs = Handshake::new(
        Role::Client,
        &key,
        Enabled,
        nonce_c,
        Some(EphemeralKeyPair::boxed_from_random([0x77; 32])),
    )
    .unwrap();
    let stage1 = format!("{hs:?}");
    let stage2_obj = hs.receive_nonce(&[0x5d; 32]);
    let stage2 = format!("{stage2_obj:?}");
    let dhmac = hex(&stage2_obj.dhmac_peer[..]);
    let secret = hex(key.secret());
    let done = run(Enabled, Enabled).unwrap();
    let keys = format!("{:?}", done.client);
    let e_c = hex(&done.client.e_c);
    for shown in [&stage1, &stage2, &keys] {
        assert!(!shown.contains(&secret[..16]));
        assert!(!shown.contains(&dhmac[..16]));
        assert!(!shown.contains(&e_c[..16]));
        assert!(!shown.contains("7777"));
    }
    assert!(stage1.starts_with("Handshake { role: Client"));
}

#[test]
fn error_messages_are_user_facing() {
    assert_eq!(
        PeerRejection::BadSignature.to_string(),
        "handshake rejected: the far end signed with a different key (check that both ends use the same key file)"
    );
    assert_eq!(
        PeerRejection::ForwardSecrecyRefused.to_string(),
        "handshake rejected: the far end skips forward secrecy (-f) but this end requires it (-g)"
    );
}

/// A bit flip in any handshake message in transit either makes a side reject the
/// handshake or, failing that, makes the first data packet fail authentication.
fn flip_fails(client_fs: ForwardSecrecy, server_fs: ForwardSecrecy, msg: Msg, bit: usize) {
    let key = PresharedKey::from_keyfile_bytes(b"flip");
    let outcome = run_with(
        &key,
        &key,
        client_fs,
        server_fs,
        random(),
        random(),
        keypair_for(client_fs),
        keypair_for(server_fs),
        |m, bytes| {
            if m == msg {
                let bit = bit % (bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
        },
    );
    match outcome {
        Err((_, e)) => assert_eq!(e, PeerRejection::BadSignature, "{msg:?} bit {bit}"),
        Ok(done) => {
            let (mut c_seal, _) = done.client.into_packet_codecs();
            let (_, mut s_open) = done.server.into_packet_codecs();
            let mut p = [0u8; PACKET_LEN];
            c_seal.seal(b"probe", &mut p).unwrap();
            assert_eq!(
                s_open.open(&mut p),
                Err(PacketError::BadMac),
                "{msg:?} bit {bit}"
            );
        }
    }
}

fn any_msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        Just(Msg::NonceC),
        Just(Msg::NonceS),
        Just(Msg::SignedDhC),
        Just(Msg::SignedDhS),
    ]
}

proptest! {
    /// Cheap configuration (both -f), so every bit position gets exercised.
    #[test]
    fn handshake_bit_flips_without_dh(msg in any_msg(), bit in 0..SIGNED_DH_LEN * 8) {
        flip_fails(Disabled, Disabled, msg, bit);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Real DH on both sides; fewer cases because each costs four exponentiations.
    #[test]
    fn handshake_bit_flips_with_dh(msg in any_msg(), bit in 0..SIGNED_DH_LEN * 8) {
        flip_fails(Enabled, Required, msg, bit);
    }
}
