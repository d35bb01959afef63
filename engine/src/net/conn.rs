//! One tunnelled connection: reach the target, run the spiped handshake under a timeout,
//! then pump both directions with half-close propagated. A packet that fails
//! authentication ends the connection at once, with nothing after it forwarded.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UnixStream};

use crate::address::Address;
use crate::config::Mode;
use crate::net::dhpool::{KeyPairPool, RandomnessError, RefillLater, random_bytes};
use crate::net::stream::{NetReadHalf, NetStream, NetWriteHalf};
use crate::protocol::handshake::{NONCE_LEN, SIGNED_DH_LEN};
use crate::protocol::key::PresharedKey;
use crate::protocol::x25519::{SIGNED_X25519_LEN, X25519NoncesExchanged, X25519PeerVerified};
use crate::protocol::{
    ForwardSecrecy, Handshake, HandshakeError, KeyAgreement, MAX_PAYLOAD, NoncesExchanged,
    PACKET_LEN, PacketError, PacketOpener, PacketSealer, PeerVerified, Role, X25519Handshake,
};
use crate::stats::HandshakeFailure;

/// Packets sealed or opened per read/write: one syscall moves up to this many.
pub const PACKETS_PER_BATCH: usize = 32;

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeFault {
    #[error("{}", rejected_message(*.0))]
    Rejected(HandshakeError),
    #[error("{}", closed_message(*.role, *.after_our_dh))]
    PeerClosed { role: Role, after_our_dh: bool },
    #[error("handshake timed out after {:.1} s: the far end is not answering as an spiped peer (wrong port, a firewall, an overloaded server, or one end uses Sluice's X25519 handshake and the other does not)", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error(
        "handshake rejected: the far end has a different key, or does not use the X25519 handshake (stock spiped, or Sluice without X25519): turn X25519 on at both ends or at neither"
    )]
    X25519Rejected,
    #[error(
        "the far end sent a 64-byte key, as Sluice's X25519 handshake does, but this end uses the classic spiped handshake: turn X25519 on at both ends or at neither"
    )]
    PeerUsesX25519,
    #[error("network error during the handshake: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
}

fn rejected_message(error: HandshakeError) -> String {
    error.to_string()
}

fn closed_message(role: Role, after_our_dh: bool) -> &'static str {
    match (role, after_our_dh) {
        (Role::Client, true) => {
            "handshake rejected: the far end hung up after checking our key; it has a different key, requires forward secrecy (-g) while this end has it off (-f), cannot reach its own target, or one end uses Sluice's X25519 handshake and the other does not"
        }
        (Role::Client, false) => {
            "the far end closed the connection before the handshake: is it an spiped server (spiped -d / a Decrypt tunnel)?"
        }
        (Role::Server, _) => "the client closed the connection before finishing the handshake",
    }
}

impl HandshakeFault {
    /// The cause under which this failure is counted.
    pub fn cause(&self) -> HandshakeFailure {
        match self {
            HandshakeFault::Rejected(HandshakeError::BadSignature)
            | HandshakeFault::X25519Rejected => HandshakeFailure::WrongKey,
            HandshakeFault::Rejected(HandshakeError::ForwardSecrecyRefused) => {
                HandshakeFailure::ForwardSecrecyMismatch
            }
            HandshakeFault::Rejected(_) => HandshakeFailure::Protocol,
            HandshakeFault::PeerClosed {
                role: Role::Client,
                after_our_dh: true,
            } => HandshakeFailure::WrongKey,
            HandshakeFault::PeerClosed { .. } | HandshakeFault::Io(_) => HandshakeFailure::Network,
            HandshakeFault::TimedOut(_) => HandshakeFailure::Timeout,
            HandshakeFault::PeerUsesX25519 => HandshakeFailure::Protocol,
            HandshakeFault::Randomness(_) => HandshakeFailure::Protocol,
        }
    }
}

/// What one end of the handshake needs to know.
pub struct HandshakeParams<'a> {
    pub role: Role,
    pub key: &'a PresharedKey,
    pub forward_secrecy: ForwardSecrecy,
    pub key_agreement: KeyAgreement,
    pub pool: &'a KeyPairPool,
}

/// Runs the spiped handshake on `stream`, reading exactly the handshake's bytes so that
/// anything the peer sends after it stays in the socket for the data pump.
pub async fn handshake(
    stream: &mut NetStream,
    params: &HandshakeParams<'_>,
    timeout: Duration,
) -> Result<(PacketSealer, PacketOpener), HandshakeFault> {
    Ok(authenticate(stream, params, timeout)
        .await?
        .session_codecs())
}

/// The peer proved it holds the key and both signed values have been exchanged; what is
/// left of the handshake is local computation (see [`Authenticated::session_codecs`]).
pub struct Authenticated<'a> {
    verified: Verified,
    /// Wakes the DH pool's refill once this handshake is over (dropped with `self`).
    _refill: Option<RefillLater<'a>>,
}

// Lives only between the handshake's last message and the key derivation: boxing the
// larger variant would cost an allocation per connection for nothing.
#[allow(clippy::large_enum_variant)]
enum Verified {
    Classic(PeerVerified),
    X25519(X25519PeerVerified),
}

impl Authenticated<'_> {
    /// Derives the session keys: for the classic handshake one modular exponentiation
    /// unless this side runs `-f` (about half a millisecond); for X25519 only the key
    /// derivation (the shared secret was computed when the peer's key was checked).
    pub fn session_codecs(self) -> (PacketSealer, PacketOpener) {
        match self.verified {
            Verified::Classic(verified) => verified.derive_session(),
            Verified::X25519(verified) => verified.derive_session(),
        }
        .into_packet_codecs()
    }
}

/// The I/O part of the handshake: nonces, then the signed DH values, each checked. The
/// server has sent its signed DH value when this returns, so the client is already
/// computing its shared secret while the server computes its own.
pub async fn authenticate<'a>(
    stream: &mut NetStream,
    params: &HandshakeParams<'a>,
    timeout: Duration,
) -> Result<Authenticated<'a>, HandshakeFault> {
    // Bytes of the peer's signed value seen so far: a classic end that got exactly an
    // X25519 message before the peer gave up (or the clock ran out) can say so.
    let partial = AtomicUsize::new(0);
    let attempt = async {
        match params.key_agreement {
            KeyAgreement::Classic => authenticate_classic(stream, params, &partial).await,
            KeyAgreement::X25519 => {
                authenticate_x25519(stream, params, &partial)
                    .await
                    .map(|verified| Authenticated {
                        verified: Verified::X25519(verified),
                        _refill: None,
                    })
            }
        }
    };
    let result = match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeFault::TimedOut(timeout)),
    };
    match result {
        Err(HandshakeFault::TimedOut(_) | HandshakeFault::PeerClosed { .. })
            if params.key_agreement == KeyAgreement::Classic
                && partial.load(Ordering::Relaxed) == SIGNED_X25519_LEN =>
        {
            Err(HandshakeFault::PeerUsesX25519)
        }
        other => other,
    }
}

async fn authenticate_classic<'a>(
    stream: &mut NetStream,
    params: &HandshakeParams<'a>,
    partial: &AtomicUsize,
) -> Result<Authenticated<'a>, HandshakeFault> {
    let (keypair, refill) = match params.forward_secrecy {
        ForwardSecrecy::Disabled => (None, None),
        _ => {
            let (pair, refill) = params.pool.take_deferred()?;
            (Some(pair), Some(refill))
        }
    };
    let start = Handshake::new(
        params.role,
        params.key,
        params.forward_secrecy,
        random_bytes()?,
        keypair,
    )
    .map_err(HandshakeFault::Rejected)?;
    let nonce = *start.nonce();
    exchange(stream, params.role, &nonce, partial, |peer| {
        start.receive_nonce(peer)
    })
    .await
    .map(|verified| Authenticated {
        verified: Verified::Classic(verified),
        _refill: refill,
    })
    .map_err(|fault| match fault {
        Exchange::Fault(fault) => fault,
        Exchange::Rejected(error) => HandshakeFault::Rejected(error),
    })
}

async fn authenticate_x25519(
    stream: &mut NetStream,
    params: &HandshakeParams<'_>,
    partial: &AtomicUsize,
) -> Result<X25519PeerVerified, HandshakeFault> {
    let mut private = random_bytes()?;
    let start = X25519Handshake::new(params.role, params.key, random_bytes()?, private);
    zeroize::Zeroize::zeroize(&mut private);
    let nonce = *start.nonce();
    exchange(stream, params.role, &nonce, partial, |peer| {
        start.receive_nonce(peer)
    })
    .await
    .map_err(|fault| match fault {
        Exchange::Fault(fault) => fault,
        // A classic peer's first 64 bytes fail our MAC check just like a wrong key.
        Exchange::Rejected(HandshakeError::BadSignature) => HandshakeFault::X25519Rejected,
        Exchange::Rejected(error) => HandshakeFault::Rejected(error),
    })
}

/// The second stage of either handshake: this side's signed value is ready, and the
/// peer's can be checked.
trait SignedStage: Sized {
    type Verified: VerifiedStage;
    /// Bytes of the signed value in each direction.
    const LEN: usize;
    fn ours(&self) -> &[u8];
    fn accept(self, peer: &[u8]) -> Result<Self::Verified, HandshakeError>;
}

trait VerifiedStage {
    fn ours(&self) -> &[u8];
}

impl SignedStage for NoncesExchanged {
    type Verified = PeerVerified;
    const LEN: usize = SIGNED_DH_LEN;
    fn ours(&self) -> &[u8] {
        self.signed_dh()
    }
    fn accept(self, peer: &[u8]) -> Result<PeerVerified, HandshakeError> {
        let peer = peer.try_into().map_err(|_| HandshakeError::BadSignature)?;
        self.receive_signed_dh(peer)
    }
}

impl VerifiedStage for PeerVerified {
    fn ours(&self) -> &[u8] {
        self.signed_dh()
    }
}

impl SignedStage for X25519NoncesExchanged {
    type Verified = X25519PeerVerified;
    const LEN: usize = SIGNED_X25519_LEN;
    fn ours(&self) -> &[u8] {
        self.signed_public()
    }
    fn accept(self, peer: &[u8]) -> Result<X25519PeerVerified, HandshakeError> {
        let peer = peer.try_into().map_err(|_| HandshakeError::BadSignature)?;
        self.receive_signed_public(peer)
    }
}

impl VerifiedStage for X25519PeerVerified {
    fn ours(&self) -> &[u8] {
        self.signed_public()
    }
}

enum Exchange {
    Fault(HandshakeFault),
    Rejected(HandshakeError),
}

impl From<HandshakeFault> for Exchange {
    fn from(fault: HandshakeFault) -> Self {
        Exchange::Fault(fault)
    }
}

impl From<io::Error> for Exchange {
    fn from(e: io::Error) -> Self {
        Exchange::Fault(HandshakeFault::Io(e))
    }
}

/// The message flow both handshakes share (PROTOCOL.md 3.1): nonces both ways at once;
/// the client sends its signed value straight away, the server only after checking the
/// client's. Reads are exact, so nothing after the handshake is consumed.
async fn exchange<S: SignedStage>(
    stream: &mut NetStream,
    role: Role,
    nonce: &[u8; NONCE_LEN],
    partial: &AtomicUsize,
    receive_nonce: impl FnOnce(&[u8; NONCE_LEN]) -> S,
) -> Result<S::Verified, Exchange> {
    stream.write_all(nonce).await?;
    let mut peer_nonce = [0u8; NONCE_LEN];
    let ignored = AtomicUsize::new(0);
    read_handshake_bytes(stream, &mut peer_nonce, role, false, &ignored).await?;
    let exchanged = receive_nonce(&peer_nonce);
    let mut buf = [0u8; SIGNED_DH_LEN];
    let peer = &mut buf[..S::LEN];
    match role {
        Role::Client => {
            stream.write_all(exchanged.ours()).await?;
            read_handshake_bytes(stream, peer, role, true, partial).await?;
            exchanged.accept(peer).map_err(Exchange::Rejected)
        }
        Role::Server => {
            read_handshake_bytes(stream, peer, role, false, partial).await?;
            let verified = exchanged.accept(peer).map_err(Exchange::Rejected)?;
            stream.write_all(verified.ours()).await?;
            Ok(verified)
        }
    }
}

/// Runs the synchronous `work` while `io` makes progress: `io` is polled once first, so
/// whatever it starts (a connect's SYN) is under way before `work` occupies the thread.
pub async fn overlap<F: Future, T>(io: F, work: impl FnOnce() -> T) -> (F::Output, T) {
    let mut io = std::pin::pin!(io);
    let first = std::future::poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await;
    let done = work();
    let output = match first {
        Poll::Ready(output) => output,
        Poll::Pending => io.await,
    };
    (output, done)
}

/// Reads exactly `buf.len()` bytes, counting them in `received` as they arrive.
async fn read_handshake_bytes(
    stream: &mut NetStream,
    buf: &mut [u8],
    role: Role,
    after_our_dh: bool,
    received: &AtomicUsize,
) -> Result<(), HandshakeFault> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) => return Err(HandshakeFault::PeerClosed { role, after_our_dh }),
            Ok(n) => {
                filled += n;
                received.store(filled, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HandshakeFault::Io(e)),
        }
    }
    Ok(())
}

/// Why the target could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum TargetFault {
    #[error("connection refused: nothing is listening at {0}")]
    Refused(String),
    #[error("no answer from {target} within {:.1} s", timeout.as_secs_f64())]
    TimedOut { target: String, timeout: Duration },
    #[error(
        "{target} has no usable address (not resolved yet, or no address of the bind address's family)"
    )]
    NoAddress { target: String },
    #[error("cannot connect to {target}: {source}")]
    Io { target: String, source: io::Error },
}

/// Connects to the target: each resolved address in order, all within one timeout.
pub async fn connect_target(
    target: &Address,
    resolved: &[SocketAddr],
    bind: &[SocketAddr],
    timeout: Duration,
) -> Result<NetStream, TargetFault> {
    let attempt = async {
        if let Address::Unix(path) = target {
            return UnixStream::connect(path)
                .await
                .map(NetStream::Unix)
                .map_err(|e| classify_connect_error(target, e));
        }
        let mut last = None;
        for addr in resolved {
            match connect_tcp(*addr, bind).await {
                Ok(Some(stream)) => return Ok(NetStream::Tcp(stream)),
                Ok(None) => {}
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => classify_connect_error(target, e),
            None => TargetFault::NoAddress {
                target: target.to_string(),
            },
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(TargetFault::TimedOut {
            target: target.to_string(),
            timeout,
        }),
    }
}

/// `Ok(None)` when a bind address is set but none has this address's family.
async fn connect_tcp(
    addr: SocketAddr,
    bind: &[SocketAddr],
) -> io::Result<Option<tokio::net::TcpStream>> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if !bind.is_empty() {
        let Some(local) = bind.iter().find(|b| b.is_ipv4() == addr.is_ipv4()) else {
            return Ok(None);
        };
        socket.bind(*local)?;
    }
    socket.connect(addr).await.map(Some)
}

fn classify_connect_error(target: &Address, e: io::Error) -> TargetFault {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        TargetFault::Refused(target.to_string())
    } else {
        TargetFault::Io {
            target: target.to_string(),
            source: e,
        }
    }
}

/// Why the data phase of a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum PumpFault {
    #[error("{0}; the connection was closed and nothing after that packet was forwarded")]
    Rejected(PacketError),
    #[error("{side} side: {source}")]
    Io {
        side: &'static str,
        source: io::Error,
    },
}

/// Which socket is which inside a pump, for error messages.
#[derive(Clone, Copy)]
pub struct Sides {
    pub input: &'static str,
    pub output: &'static str,
}

/// Plaintext in, packets out, until end of stream; then shuts down the output's write
/// side so the far end sees end of stream too. `count` is told of each chunk moved.
///
/// Buffers exist only while data flows: they are allocated when the input becomes
/// readable and released as soon as it has been drained, so an idle connection holds none.
pub async fn seal_pump(
    input: &mut NetReadHalf,
    output: &mut NetWriteHalf,
    mut sealer: PacketSealer,
    sides: Sides,
    count: impl Fn(u64),
) -> Result<(), PumpFault> {
    loop {
        input.readable().await.map_err(io_fault(sides.input))?;
        let mut plain: Vec<u8> = Vec::with_capacity(PACKETS_PER_BATCH * MAX_PAYLOAD);
        let mut sealed: Vec<u8> = Vec::new();
        loop {
            plain.clear();
            let room = plain.capacity();
            let n = input
                .read_buf(&mut plain)
                .await
                .map_err(io_fault(sides.input))?;
            if n == 0 {
                finish_direction(output).await;
                return Ok(());
            }
            sealed.clear();
            sealer.seal_all(&plain, &mut sealed);
            output
                .write_all(&sealed)
                .await
                .map_err(io_fault(sides.output))?;
            count(n as u64);
            // A short read drained the socket (and cleared its readiness): go idle
            // without the extra read that would only say "would block".
            if n < room {
                break;
            }
        }
    }
}

/// Packets in, plaintext out. A partial packet at end of stream is a clean end (as in
/// spiped); a packet that fails authentication or has a bad length is an error, and the
/// plaintext of the packets before it is still delivered. Like [`seal_pump`], holds a
/// batch buffer only while data flows (plus any partial packet while waiting for its rest).
pub async fn open_pump(
    input: &mut NetReadHalf,
    output: &mut NetWriteHalf,
    mut opener: PacketOpener,
    sides: Sides,
    count: impl Fn(u64),
) -> Result<(), PumpFault> {
    // Bytes received but not yet opened: always less than one packet between reads.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        input.readable().await.map_err(io_fault(sides.input))?;
        buf.reserve_exact((PACKETS_PER_BATCH * PACKET_LEN).saturating_sub(buf.len()));
        loop {
            let room = buf.capacity() - buf.len();
            let n = input
                .read_buf(&mut buf)
                .await
                .map_err(io_fault(sides.input))?;
            if n == 0 {
                finish_direction(output).await;
                return Ok(());
            }
            let filled = buf.len();
            let whole = filled / PACKET_LEN * PACKET_LEN;
            let (plain_len, verdict) = open_in_place(&mut opener, &mut buf[..whole]);
            if plain_len > 0 {
                output
                    .write_all(&buf[..plain_len])
                    .await
                    .map_err(io_fault(sides.output))?;
                count(plain_len as u64);
            }
            verdict.map_err(PumpFault::Rejected)?;
            buf.copy_within(whole..filled, 0);
            buf.truncate(filled - whole);
            // As in seal_pump: a short read means the socket is drained.
            if n < room {
                break;
            }
        }
        // Drained: keep at most the partial packet.
        if buf.is_empty() {
            buf = Vec::new();
        } else {
            buf.shrink_to(PACKET_LEN);
        }
    }
}

/// Opens every packet of `packets` (a whole number of them) and packs their plaintext at
/// the front of the same buffer. Stops at the first bad packet; returns how many
/// plaintext bytes are at the front, and whether all packets were good.
fn open_in_place(
    opener: &mut PacketOpener,
    packets: &mut [u8],
) -> (usize, Result<(), PacketError>) {
    let mut plain_len = 0;
    let mut offset = 0;
    while offset < packets.len() {
        let packet: &mut [u8; PACKET_LEN] =
            match (&mut packets[offset..offset + PACKET_LEN]).try_into() {
                Ok(p) => p,
                // Unreachable: the slice is exactly PACKET_LEN long by construction.
                Err(_) => return (plain_len, Err(PacketError::BadLength(0))),
            };
        match opener.open(packet) {
            Ok(len) => {
                packets.copy_within(offset..offset + len, plain_len);
                plain_len += len;
            }
            Err(e) => return (plain_len, Err(e)),
        }
        offset += PACKET_LEN;
    }
    (plain_len, Ok(()))
}

/// End of stream on one direction: pass it on as a half-close. A peer that already
/// went away makes shutdown fail with ENOTCONN/ECONNRESET; that is harmless here (the
/// bug spiped 1.6.3 aborted the whole daemon on), so the error is ignored.
async fn finish_direction(output: &mut NetWriteHalf) {
    let _ = output.shutdown().await;
}

fn io_fault(side: &'static str) -> impl Fn(io::Error) -> PumpFault {
    move |source| PumpFault::Io { side, source }
}

/// The pumps of a tunnel connection in `mode`, with `inbound` the accepted socket and
/// `outbound` the one to the target, both after the handshake. The connection ends when
/// both directions have reached end of stream, or at the first error.
pub async fn pump_connection(
    mode: Mode,
    inbound: NetStream,
    outbound: NetStream,
    codecs: (PacketSealer, PacketOpener),
    count_up: impl Fn(u64),
    count_down: impl Fn(u64),
) -> Result<(), PumpFault> {
    let (mut in_r, mut in_w) = inbound.into_split();
    let (mut out_r, mut out_w) = outbound.into_split();
    let (sealer, opener) = codecs;
    let result = match mode {
        // Plaintext arrives on the accepted socket; the target is the encrypted side.
        Mode::Encrypt => {
            let up = seal_pump(&mut in_r, &mut out_w, sealer, CLIENT_UP, count_up);
            let down = open_pump(&mut out_r, &mut in_w, opener, CLIENT_DOWN, count_down);
            tokio::try_join!(up, down)
        }
        Mode::Decrypt => {
            let up = open_pump(&mut in_r, &mut out_w, opener, SERVER_UP, count_up);
            let down = seal_pump(&mut out_r, &mut in_w, sealer, SERVER_DOWN, count_down);
            tokio::try_join!(up, down)
        }
    };
    if result.is_err() {
        in_w.reset_on_close();
        out_w.reset_on_close();
    }
    result.map(|_| ())
}

const CLIENT_UP: Sides = Sides {
    input: "local client",
    output: "far end",
};
const CLIENT_DOWN: Sides = Sides {
    input: "far end",
    output: "local client",
};
const SERVER_UP: Sides = Sides {
    input: "far end",
    output: "target",
};
const SERVER_DOWN: Sides = Sides {
    input: "target",
    output: "far end",
};
