//! Two drivers back to back, no sockets: the `-f`/`-g` matrix, X25519, each end against
//! the other key agreement, a wrong key, tampering and truncation, and byte-at-a-time
//! delivery, which must give exactly what whole messages give.

use std::collections::VecDeque;

use super::*;
use crate::protocol::PACKET_LEN;
use crate::protocol::dh::{DH_LEN, MODULUS};
use crate::protocol::handshake::signed_by_server;
use crate::protocol::key::hex;

use ForwardSecrecy::{Disabled, Enabled, Required};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// How one end came out of a run.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum End {
    Done(Authenticated),
    Failed(PeerFault),
    /// Still waiting when nothing more could happen; what `diagnose_stall` said.
    Stalled(Option<PeerFault>),
}

impl End {
    fn done(self) -> Authenticated {
        match self {
            End::Done(a) => a,
            other => panic!("expected a finished handshake, got {other:?}"),
        }
    }

    fn fault(&self) -> Option<PeerFault> {
        match self {
            End::Done(_) => None,
            End::Failed(f) => Some(*f),
            End::Stalled(f) => *f,
        }
    }
}

/// What happens on the wire: `tamper` may alter any byte (by direction and offset in that
/// direction's stream); `cut` ends a direction after that many bytes (the sender closes).
type Tamper = Box<dyn FnMut(Dir, usize, &mut u8)>;

struct Wire {
    chunk: usize,
    tamper: Tamper,
    cut: Option<(Dir, usize)>,
}

impl Wire {
    fn chunked(chunk: usize) -> Wire {
        Wire {
            chunk,
            tamper: Box::new(|_, _, _| {}),
            cut: None,
        }
    }

    fn tampered(tamper: impl FnMut(Dir, usize, &mut u8) + 'static) -> Wire {
        Wire {
            tamper: Box::new(tamper),
            ..Wire::chunked(usize::MAX)
        }
    }

    fn cut(dir: Dir, at: usize) -> Wire {
        Wire {
            cut: Some((dir, at)),
            ..Wire::chunked(usize::MAX)
        }
    }
}

fn whole() -> Wire {
    Wire::chunked(usize::MAX)
}

struct Link {
    queue: VecDeque<u8>,
    sent: usize,
    closed: bool,
}

impl Link {
    fn new() -> Link {
        Link {
            queue: VecDeque::new(),
            sent: 0,
            closed: false,
        }
    }
}

/// Drains `driver`'s output onto `link`.
fn send(driver: &mut HandshakeDriver, link: &mut Link, dir: Dir, wire: &mut Wire) -> bool {
    let out = driver.pending_output().to_vec();
    if out.is_empty() {
        return false;
    }
    driver.output_sent(out.len());
    for mut b in out {
        if let Some((cut_dir, at)) = wire.cut
            && cut_dir == dir
            && link.sent >= at
        {
            link.closed = true;
            continue;
        }
        (wire.tamper)(dir, link.sent, &mut b);
        link.sent += 1;
        link.queue.push_back(b);
    }
    if let Some((cut_dir, at)) = wire.cut
        && cut_dir == dir
        && link.sent >= at
    {
        link.closed = true;
    }
    true
}

/// Feeds `driver` from `link` in pieces of at most `chunk` bytes.
fn deliver(driver: &mut HandshakeDriver, link: &mut Link, chunk: usize) -> Result<bool, PeerFault> {
    let mut progressed = false;
    loop {
        let want = driver.wants();
        if want == 0 || link.queue.is_empty() {
            return Ok(progressed);
        }
        let n = want.min(chunk).min(link.queue.len());
        let piece: Vec<u8> = link.queue.drain(..n).collect();
        let used = driver.receive(&piece)?;
        assert_eq!(used, n, "the driver takes what it asked for");
        progressed = true;
    }
}

/// Runs both ends until both are done, one fails, or nothing moves. A failed end closes
/// its connection, so the other sees end of stream; a server asking for a key pair gets
/// a fresh one from `server_pair`.
fn run(
    mut client: HandshakeDriver,
    mut server: HandshakeDriver,
    server_pair: &mut dyn FnMut() -> Box<EphemeralKeyPair>,
    wire: &mut Wire,
) -> (End, End) {
    let mut to_server = Link::new();
    let mut to_client = Link::new();
    let mut client_fault = None;
    let mut server_fault = None;
    let mut asked_for_pair = false;
    loop {
        let mut moved = false;
        if client_fault.is_none() {
            moved |= send(&mut client, &mut to_server, Dir::ToServer, wire);
        }
        if server_fault.is_none() {
            moved |= send(&mut server, &mut to_client, Dir::ToClient, wire);
            if server.next() == Next::KeyPair {
                assert!(!asked_for_pair, "the server asks for one key pair");
                asked_for_pair = true;
                server.supply_key_pair(server_pair()).unwrap();
                moved = true;
            }
        }
        if server_fault.is_none() {
            match deliver(&mut server, &mut to_server, wire.chunk) {
                Ok(p) => moved |= p,
                Err(f) => server_fault = Some(f),
            }
        }
        if client_fault.is_none() {
            match deliver(&mut client, &mut to_client, wire.chunk) {
                Ok(p) => moved |= p,
                Err(f) => client_fault = Some(f),
            }
        }
        if !moved {
            break;
        }
    }
    let finish = |driver: HandshakeDriver, fault: Option<PeerFault>, peer_gone: bool| {
        if let Some(fault) = fault {
            return End::Failed(fault);
        }
        match driver.next() {
            Next::Done => End::Done(driver.finish().unwrap()),
            Next::Failed(f) => End::Failed(f),
            _ if peer_gone => End::Failed(driver.end_of_stream()),
            _ => End::Stalled(driver.diagnose_stall()),
        }
    };
    let client_gone = client_fault.is_some() || to_server.closed;
    let server_gone = server_fault.is_some() || to_client.closed;
    (
        finish(client, client_fault, server_gone),
        finish(server, server_fault, client_gone),
    )
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

fn pair_for(fs: ForwardSecrecy, seed: u8) -> Option<Box<EphemeralKeyPair>> {
    (fs != Disabled).then(|| EphemeralKeyPair::boxed_from_random([seed; 32]))
}

fn classic(role: Role, key: &PresharedKey, fs: ForwardSecrecy, nonce: [u8; 32]) -> HandshakeDriver {
    let pair = match role {
        Role::Client => pair_for(fs, 0xc1),
        Role::Server => None,
    };
    HandshakeDriver::classic(role, key, fs, nonce, pair).unwrap()
}

fn server_pair() -> Box<EphemeralKeyPair> {
    EphemeralKeyPair::boxed_from_random([0x5e; 32])
}

fn classic_run(
    client_key: &PresharedKey,
    server_key: &PresharedKey,
    client_fs: ForwardSecrecy,
    server_fs: ForwardSecrecy,
    wire: &mut Wire,
) -> (End, End) {
    run(
        classic(Role::Client, client_key, client_fs, [0x0c; 32]),
        classic(Role::Server, server_key, server_fs, [0x05; 32]),
        &mut server_pair,
        wire,
    )
}

/// Seals a packet each way and checks the other end opens it; returns the client's
/// first packet (deterministic for fixed nonces and key pairs).
fn data_flows(client: Authenticated, server: Authenticated) -> [u8; PACKET_LEN] {
    let (mut c_seal, mut c_open) = client.session_codecs();
    let (mut s_seal, mut s_open) = server.session_codecs();
    let mut first = [0u8; PACKET_LEN];
    c_seal.seal(b"up", &mut first).unwrap();
    let mut p = first;
    assert_eq!(s_open.open(&mut p), Ok(2));
    s_seal.seal(b"down", &mut p).unwrap();
    assert_eq!(c_open.open(&mut p), Ok(4));
    assert_eq!(&p[..4], b"down");
    first
}

/// The first 16 ciphertext bytes of the first packet, "hello", sealed by this end.
fn hello_from(end: Authenticated) -> String {
    let (mut sealer, _) = end.session_codecs();
    let mut packet = [0u8; PACKET_LEN];
    sealer.seal(b"hello", &mut packet).unwrap();
    hex(&packet[..16])
}

fn client_done_and(other: &End) -> bool {
    matches!(other, End::Done(_))
}

#[test]
fn classic_forward_secrecy_matrix() {
    let key = PresharedKey::from_keyfile_bytes(b"driver matrix");
    let all = [Enabled, Disabled, Required];
    for client_fs in all {
        for server_fs in all {
            let (client, server) = classic_run(&key, &key, client_fs, server_fs, &mut whole());
            let refused = Some(PeerFault::Rejected(PeerRejection::ForwardSecrecyRefused));
            match (client_fs, server_fs) {
                (Disabled, Required) => {
                    assert_eq!(server.fault(), refused, "server -g drops a -f client");
                    assert_eq!(
                        client.fault(),
                        Some(PeerFault::Closed {
                            role: Role::Client,
                            after_our_value: true
                        })
                    );
                }
                (Required, Disabled) => {
                    assert_eq!(client.fault(), refused, "client -g drops a -f server");
                    assert!(matches!(server, End::Done(_)), "the server had finished");
                }
                _ => {
                    let (client, server) = (client.done(), server.done());
                    assert_eq!(server.peer_skipped_forward_secrecy(), client_fs == Disabled);
                    assert_eq!(client.peer_skipped_forward_secrecy(), server_fs == Disabled);
                    data_flows(client, server);
                }
            }
        }
    }
}

#[test]
fn x25519_both_ends() {
    let key = PresharedKey::from_keyfile_bytes(b"x");
    let client = HandshakeDriver::x25519(Role::Client, &key, random(), random());
    let server = HandshakeDriver::x25519(Role::Server, &key, random(), random());
    let (client, server) = run(client, server, &mut server_pair, &mut whole());
    data_flows(client.done(), server.done());
}

#[test]
fn the_x25519_known_answer_vector_through_the_driver() {
    let key = PresharedKey::from_keyfile_bytes(b"");
    let bytes = |start: u8| -> [u8; 32] { std::array::from_fn(|i| start.wrapping_add(i as u8)) };
    let client = HandshakeDriver::x25519(Role::Client, &key, bytes(0x00), bytes(0x40));
    let server = HandshakeDriver::x25519(Role::Server, &key, bytes(0x20), bytes(0x60));
    let (client, server) = run(client, server, &mut server_pair, &mut whole());
    assert_eq!(
        hello_from(client.done()),
        "3f85de0e1cdfd15dea0b9335ca7239ef",
        "docs/X25519.md"
    );
    drop(server);
}

#[test]
fn the_classic_known_answer_vector_through_the_driver() {
    // PROTOCOL.md section 8: empty key file, -f both sides, nonces 00..1f and 20..3f.
    let key = PresharedKey::from_keyfile_bytes(b"");
    let nonce_c: [u8; 32] = std::array::from_fn(|i| i as u8);
    let nonce_s: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);
    let mut client = HandshakeDriver::classic(Role::Client, &key, Disabled, nonce_c, None).unwrap();
    assert_eq!(client.pending_output(), &nonce_c);
    client.output_sent(NONCE_LEN);
    client.receive(&nonce_s).unwrap();
    let signed = client.pending_output();
    assert_eq!(signed.len(), SIGNED_DH_LEN);
    assert_eq!(
        hex(&signed[DH_LEN..]),
        "445978f48035127230029720ecc9d51cf6c097b8c7fc1ba53ac804fe61e06aad"
    );
    let client = HandshakeDriver::classic(Role::Client, &key, Disabled, nonce_c, None).unwrap();
    let server = HandshakeDriver::classic(Role::Server, &key, Disabled, nonce_s, None).unwrap();
    let (client, server) = run(client, server, &mut server_pair, &mut whole());
    assert!(client_done_and(&server));
    assert_eq!(
        hello_from(client.done()),
        "58c902c0db9fddeec4eb95d70054aca8"
    );
}

#[test]
fn classic_client_against_an_x25519_server() {
    let key = PresharedKey::from_keyfile_bytes(b"mismatch");
    let client = classic(Role::Client, &key, Enabled, random());
    let server = HandshakeDriver::x25519(Role::Server, &key, random(), random());
    let (client, server) = run(client, server, &mut server_pair, &mut whole());
    assert_eq!(server.fault(), Some(PeerFault::X25519Rejected));
    assert_eq!(
        client.fault(),
        Some(PeerFault::Closed {
            role: Role::Client,
            after_our_value: true
        })
    );
}

#[test]
fn x25519_client_against_a_classic_server() {
    let key = PresharedKey::from_keyfile_bytes(b"mismatch");
    let client = HandshakeDriver::x25519(Role::Client, &key, random(), random());
    let server = classic(Role::Server, &key, Enabled, random());
    let (client, server) = run(client, server, &mut server_pair, &mut whole());
    // The classic server holds 64 of the 288 bytes it waits for; the client waits for
    // the server's value. Neither can move: the server can tell why, the client cannot.
    assert!(
        matches!(server, End::Stalled(Some(PeerFault::PeerUsesX25519))),
        "{server:?}"
    );
    assert!(matches!(client, End::Stalled(None)), "{client:?}");

    // When the client gives up and closes, the server says the same.
    let client = HandshakeDriver::x25519(Role::Client, &key, random(), random());
    let server = classic(Role::Server, &key, Enabled, random());
    let (_, server) = run(
        client,
        server,
        &mut server_pair,
        &mut Wire::cut(Dir::ToServer, NONCE_LEN + SIGNED_X25519_LEN),
    );
    assert_eq!(server.fault(), Some(PeerFault::PeerUsesX25519));
}

#[test]
fn wrong_key_is_refused_by_the_server() {
    let a = PresharedKey::from_keyfile_bytes(b"key one");
    let b = PresharedKey::from_keyfile_bytes(b"key two");
    for fs in [Enabled, Disabled] {
        let (client, server) = classic_run(&a, &b, fs, fs, &mut whole());
        assert_eq!(
            server.fault(),
            Some(PeerFault::Rejected(PeerRejection::BadSignature))
        );
        assert_eq!(
            client.fault(),
            Some(PeerFault::Closed {
                role: Role::Client,
                after_our_value: true
            })
        );
    }
    let client = HandshakeDriver::x25519(Role::Client, &a, random(), random());
    let server = HandshakeDriver::x25519(Role::Server, &b, random(), random());
    let (_, server) = run(client, server, &mut server_pair, &mut whole());
    assert_eq!(server.fault(), Some(PeerFault::X25519Rejected));
}

#[test]
fn the_server_takes_no_key_pair_for_an_unauthenticated_client() {
    let key = PresharedKey::from_keyfile_bytes(b"k");
    let mut server = classic(Role::Server, &key, Enabled, random());
    server.output_sent(NONCE_LEN);
    assert_eq!(server.receive(&random::<NONCE_LEN>()), Ok(NONCE_LEN));
    assert_eq!(server.next(), Next::Receive(SIGNED_DH_LEN));
    let forged = [0x42u8; SIGNED_DH_LEN];
    assert_eq!(
        server.receive(&forged),
        Err(PeerFault::Rejected(PeerRejection::BadSignature))
    );
    assert!(server.pending_output().is_empty(), "nothing is sent back");
    assert_eq!(
        server.supply_key_pair(server_pair()),
        Err(HandshakeMisuse::KeyPairNotExpected)
    );
}

/// Flips one bit at `offset` of one direction's stream.
fn flip(dir: Dir, offset: usize) -> impl FnMut(Dir, usize, &mut u8) {
    move |d, at, byte| {
        if d == dir && at == offset {
            *byte ^= 0x10;
        }
    }
}

#[test]
fn each_tampered_message_is_refused() {
    let key = PresharedKey::from_keyfile_bytes(b"tamper");
    let bad = Some(PeerFault::Rejected(PeerRejection::BadSignature));
    // (direction, offset, who notices): a nonce (the MAC keys then differ), y, the MAC.
    for (dir, offset, what) in [
        (Dir::ToServer, 3, "client nonce"),
        (Dir::ToClient, 30, "server nonce"),
        (Dir::ToServer, NONCE_LEN + 100, "client y"),
        (Dir::ToServer, NONCE_LEN + DH_LEN + 5, "client MAC"),
        (Dir::ToClient, NONCE_LEN + 7, "server y"),
        (Dir::ToClient, NONCE_LEN + DH_LEN + 31, "server MAC"),
    ] {
        let (client, server) = classic_run(
            &key,
            &key,
            Enabled,
            Enabled,
            &mut Wire::tampered(flip(dir, offset)),
        );
        let noticed = if matches!(dir, Dir::ToClient) && offset >= NONCE_LEN {
            client.fault()
        } else {
            server.fault()
        };
        assert_eq!(noticed, bad, "{what}");
    }
}

#[test]
fn a_truncated_handshake_is_end_of_stream() {
    let key = PresharedKey::from_keyfile_bytes(b"cut");
    for (dir, at) in [
        (Dir::ToServer, 0),
        (Dir::ToServer, 10),
        (Dir::ToServer, NONCE_LEN + 200),
        (Dir::ToClient, 5),
        (Dir::ToClient, NONCE_LEN + 287),
    ] {
        let (client, server) = classic_run(&key, &key, Enabled, Enabled, &mut Wire::cut(dir, at));
        let (stopped, role, after_our_value) = match dir {
            Dir::ToServer => (server, Role::Server, false),
            Dir::ToClient => (client, Role::Client, at >= NONCE_LEN),
        };
        assert_eq!(
            stopped.fault(),
            Some(PeerFault::Closed {
                role,
                after_our_value
            }),
            "{dir:?} cut at {at}"
        );
    }
}

#[test]
fn byte_at_a_time_gives_the_same_session() {
    let key = PresharedKey::from_keyfile_bytes(b"chunks");
    let mut packets = Vec::new();
    for chunk in [usize::MAX, 1, 7, 33, 289] {
        for (client_fs, server_fs) in [(Enabled, Enabled), (Disabled, Enabled)] {
            let (client, server) =
                classic_run(&key, &key, client_fs, server_fs, &mut Wire::chunked(chunk));
            packets.push((
                (client_fs, server_fs),
                data_flows(client.done(), server.done()),
            ));
        }
        let bytes = |s: u8| -> [u8; 32] { [s; 32] };
        let client = HandshakeDriver::x25519(Role::Client, &key, bytes(1), bytes(2));
        let server = HandshakeDriver::x25519(Role::Server, &key, bytes(3), bytes(4));
        let (client, server) = run(client, server, &mut server_pair, &mut Wire::chunked(chunk));
        packets.push((
            (Required, Required),
            data_flows(client.done(), server.done()),
        ));
    }
    for (config, packet) in &packets {
        let first = packets.iter().find(|(c, _)| c == config).unwrap();
        assert_eq!(packet, &first.1, "{config:?}");
    }
}

#[test]
fn nothing_after_the_handshake_is_consumed() {
    let key = PresharedKey::from_keyfile_bytes(b"after");
    let mut client = classic(Role::Client, &key, Disabled, random());
    let mut server = classic(Role::Server, &key, Disabled, random());
    let to_server = client.pending_output().to_vec();
    client.output_sent(to_server.len());
    let mut to_client = server.pending_output().to_vec();
    server.output_sent(to_client.len());
    client.receive(&to_client).unwrap();
    let signed = client.pending_output().to_vec();
    client.output_sent(signed.len());
    server.receive(&to_server).unwrap();
    server.receive(&signed).unwrap();
    // The server's signed value and a data packet arrive in one read.
    to_client = server.pending_output().to_vec();
    server.output_sent(to_client.len());
    to_client.extend_from_slice(&[0xdd; PACKET_LEN]);
    assert_eq!(client.receive(&to_client), Ok(SIGNED_DH_LEN));
    assert_eq!(client.next(), Next::Done);
    assert_eq!(client.receive(&to_client[SIGNED_DH_LEN..]), Ok(0));
    assert_eq!(server.next(), Next::Done);
    data_flows(client.finish().unwrap(), server.finish().unwrap());
}

#[test]
fn local_misuse_is_its_own_error() {
    let key = PresharedKey::from_keyfile_bytes(b"misuse");
    assert_eq!(
        HandshakeDriver::classic(Role::Client, &key, Enabled, [0; 32], None).err(),
        Some(HandshakeMisuse::MissingKeyPair)
    );
    assert_eq!(
        HandshakeDriver::classic(Role::Server, &key, Enabled, [0; 32], Some(server_pair())).err(),
        Some(HandshakeMisuse::KeyPairNotExpected)
    );
    let mut client = classic(Role::Client, &key, Enabled, [0; 32]);
    assert_eq!(
        client.supply_key_pair(server_pair()),
        Err(HandshakeMisuse::KeyPairNotExpected)
    );
    assert_eq!(client.next(), Next::Receive(NONCE_LEN));
    assert_eq!(client.finish().err(), Some(HandshakeMisuse::NotFinished));
}

#[test]
fn values_that_void_forward_secrecy_are_refused_by_the_driver() {
    // A peer that holds K but sends y = 0 or y = p - 1: the client (which knows its
    // own MAC keys from the nonces) refuses either; y = 1 only under -g.
    let key = PresharedKey::from_keyfile_bytes(b"small");
    let mut p_minus_1 = MODULUS;
    p_minus_1[DH_LEN - 1] -= 1;
    let mut one = [0u8; DH_LEN];
    one[DH_LEN - 1] = 1;
    for (y, fs, expected) in [
        (
            [0; DH_LEN],
            Enabled,
            Some(PeerRejection::SmallSubgroupValue),
        ),
        (p_minus_1, Disabled, Some(PeerRejection::SmallSubgroupValue)),
        (one, Required, Some(PeerRejection::ForwardSecrecyRefused)),
        (one, Enabled, None),
    ] {
        // The server's signed value, made by a misbehaving server that holds K.
        let nonce_c = random();
        let nonce_s = random();
        let mut client = classic(Role::Client, &key, fs, nonce_c);
        client.output_sent(NONCE_LEN);
        client.receive(&nonce_s).unwrap();
        client.output_sent(SIGNED_DH_LEN);
        let forged = signed_by_server(&key, nonce_c, nonce_s, &y);
        let verdict = client.receive(&forged);
        match expected {
            Some(rejection) => assert_eq!(verdict, Err(PeerFault::Rejected(rejection))),
            None => assert_eq!(verdict, Ok(SIGNED_DH_LEN)),
        }
    }
}

#[test]
fn debug_shows_no_secret() {
    let key = PresharedKey::from_keyfile_bytes(b"debug driver");
    let driver = classic(Role::Client, &key, Enabled, [0x3c; 32]);
    let shown = format!("{driver:?}");
    assert!(
        shown.starts_with("HandshakeDriver { role: Client"),
        "{shown}"
    );
    assert!(!shown.contains(&hex(key.secret())[..16]));
    assert!(!shown.contains("3c3c"));
}

/// A rotation: a server with a previous key lets clients with either key in (each session
/// then works), says which key a client used, and refuses any other key as before.
#[test]
fn a_server_in_rotation_accepts_the_current_and_the_previous_key() {
    let new = PresharedKey::from_keyfile_bytes(b"the new key");
    let old = PresharedKey::from_keyfile_bytes(b"the old key");
    let other = PresharedKey::from_keyfile_bytes(b"somebody else's key");
    let rotating = |agreement: KeyAgreement| {
        let mut server = match agreement {
            KeyAgreement::Classic => classic(Role::Server, &new, Enabled, random()),
            KeyAgreement::X25519 => HandshakeDriver::x25519(Role::Server, &new, random(), random()),
        };
        server.accept_previous_key(&old);
        server
    };
    let client = |agreement: KeyAgreement, key: &PresharedKey| match agreement {
        KeyAgreement::Classic => classic(Role::Client, key, Enabled, random()),
        KeyAgreement::X25519 => HandshakeDriver::x25519(Role::Client, key, random(), random()),
    };
    for agreement in [KeyAgreement::Classic, KeyAgreement::X25519] {
        for (key, previous) in [(&new, false), (&old, true)] {
            let (c, s) = run(
                client(agreement, key),
                rotating(agreement),
                &mut server_pair,
                &mut whole(),
            );
            let (End::Done(c), End::Done(s)) = (c, s) else {
                panic!(
                    "{agreement:?}: a client with the {} key is let in",
                    if previous { "old" } else { "new" }
                );
            };
            assert_eq!(s.used_previous_key(), previous, "{agreement:?}");
            assert!(!c.used_previous_key());
            data_flows(c, s);
        }
        let (_, s) = run(
            client(agreement, &other),
            rotating(agreement),
            &mut server_pair,
            &mut whole(),
        );
        assert!(
            matches!(
                s.fault(),
                Some(PeerFault::Rejected(PeerRejection::BadSignature) | PeerFault::X25519Rejected)
            ),
            "{agreement:?}: another key is refused"
        );
    }
}

#[test]
fn a_reset_reads_as_a_hang_up_only_for_a_client_that_has_the_servers_nonce() {
    let key = PresharedKey::from_keyfile_bytes(b"reset");
    let client = || HandshakeDriver::classic(Role::Client, &key, Disabled, [1; 32], None).unwrap();
    let server = HandshakeDriver::classic(Role::Server, &key, Disabled, [2; 32], None).unwrap();
    assert_eq!(
        client().connection_lost(),
        None,
        "no nonce yet: a network error"
    );
    assert_eq!(
        server.connection_lost(),
        None,
        "a server's client reset: a network error"
    );

    // Stock spiped -d whose target connect failed: its nonce, then a reset.
    let mut answered = client();
    answered.receive(&[3; NONCE_LEN]).unwrap();
    assert_eq!(
        answered.connection_lost(),
        Some(PeerFault::Closed {
            role: Role::Client,
            after_our_value: true
        })
    );
    assert_eq!(answered.connection_lost(), Some(answered.end_of_stream()));
}
