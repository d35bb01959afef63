//! One tunnelled connection: reach the target, run the spiped handshake under a timeout,
//! then pump both directions with half-close propagated. A packet that fails
//! authentication ends the connection at once, with nothing after it forwarded.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BufMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::address::Address;
use crate::net::background::in_background;
use crate::net::buffers::{Lent, PACKETS_PER_BATCH};
use crate::net::dhpool::{KeyPairError, KeyPairPool, RandomnessError, RefillLater, random_bytes};
use crate::net::io_fault::IoFault;
use crate::net::resolve::ResolveError;
use crate::net::stream::{NetReadHalf, NetStream, NetWriteHalf};
use crate::protocol::key::PresharedKey;
use crate::protocol::tag::{NonceTag, TAG_RANDOM_LEN};
use crate::protocol::{
    ForwardSecrecy, HandshakeDriver, HandshakeMisuse, KeyAgreement, MAX_PAYLOAD, NONCE_LEN, Next,
    PACKET_LEN, PacketError, PacketOpener, PacketSealer, PeerFault, PeerRejection, Role,
    SIGNED_DH_LEN,
};

/// Why a handshake did not complete: the peer (as the protocol driver classified it), the
/// clock, the socket, or this end itself.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HandshakeFault {
    #[error(transparent)]
    Peer(PeerFault),
    #[error("handshake timed out after {:.1} s: the far end is not answering as an spiped peer (wrong port, a firewall, an overloaded server, or one end uses Sluice's X25519 handshake and the other does not)", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("network error during the handshake: {0}")]
    Io(IoFault),
    #[error(transparent)]
    Local(#[from] LocalFault),
}

/// A failure of this end, not of the peer or the network.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LocalFault {
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
    #[error(transparent)]
    KeyPair(#[from] KeyPairError),
    #[error(transparent)]
    Misuse(#[from] HandshakeMisuse),
    #[error("internal error: the session keys could not be computed (the engine is shutting down)")]
    Interrupted,
}

impl HandshakeFault {
    /// The cause under which this failure is counted, and from which the connection test
    /// words its verdict: the one classification of a handshake failure.
    pub fn cause(&self) -> HandshakeFailure {
        match self {
            HandshakeFault::Peer(fault) => match fault {
                PeerFault::Rejected(PeerRejection::BadSignature) | PeerFault::X25519Rejected => {
                    HandshakeFailure::WrongKey
                }
                PeerFault::Rejected(PeerRejection::ForwardSecrecyRefused) => {
                    HandshakeFailure::ForwardSecrecyMismatch
                }
                PeerFault::Rejected(_) | PeerFault::PeerUsesX25519 => HandshakeFailure::Protocol,
                // spiped answers a wrong key by hanging up once it has checked ours.
                PeerFault::Closed {
                    role: Role::Client,
                    after_our_value: true,
                } => HandshakeFailure::WrongKey,
                PeerFault::Closed { .. } => HandshakeFailure::Network,
            },
            HandshakeFault::Io(_) => HandshakeFailure::Network,
            HandshakeFault::TimedOut(_) => HandshakeFailure::Timeout,
            HandshakeFault::Local(_) => HandshakeFailure::Protocol,
        }
    }
}

/// Why a handshake did not complete, for counting and for the words shown to a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// The peer's signature did not verify, or it hung up instead of answering ours:
    /// almost always a different key.
    WrongKey,
    /// One end requires forward secrecy (`-g`) and the other skips it (`-f`).
    ForwardSecrecyMismatch,
    /// The peer did not finish within the handshake timeout.
    Timeout,
    /// The peer sent something no spiped peer sends (a value out of range, garbage).
    Protocol,
    /// The socket failed (reset, I/O error) during the handshake.
    Network,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 5] = [
        HandshakeFailure::WrongKey,
        HandshakeFailure::ForwardSecrecyMismatch,
        HandshakeFailure::Timeout,
        HandshakeFailure::Protocol,
        HandshakeFailure::Network,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::WrongKey => "wrong key",
            HandshakeFailure::ForwardSecrecyMismatch => "forward-secrecy mismatch",
            HandshakeFailure::Timeout => "timed out",
            HandshakeFailure::Protocol => "protocol violation",
            HandshakeFailure::Network => "network error",
        }
    }

    /// A stable machine name (a Prometheus label value, a log field).
    pub fn metric_label(self) -> &'static str {
        match self {
            HandshakeFailure::WrongKey => "wrong_key",
            HandshakeFailure::ForwardSecrecyMismatch => "forward_secrecy_mismatch",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Network => "network",
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
    /// What a client tags its nonce as (`protocol::tag`), if anything: a Sluice server
    /// answers a health probe with a report, and pools a reverse slot.
    pub tag: Option<NonceTag>,
    /// A server's key being replaced, still accepted (a rotation's grace period).
    pub previous_key: Option<&'a PresharedKey>,
}

impl HandshakeParams<'_> {
    /// This end's nonce: fresh random bytes, tagged when this is a probe.
    fn nonce(&self) -> Result<[u8; NONCE_LEN], LocalFault> {
        let random = random_bytes()?;
        match self.tag {
            Some(tag) if self.role == Role::Client => {
                let mut head = [0u8; TAG_RANDOM_LEN];
                head.copy_from_slice(&random[..TAG_RANDOM_LEN]);
                Ok(tag.nonce(self.key, head))
            }
            _ => Ok(random),
        }
    }
}

/// Runs the spiped handshake on `stream`, reading exactly the handshake's bytes so that
/// anything the peer sends after it stays in the socket for the data pump.
pub async fn handshake(
    stream: &mut NetStream,
    params: &HandshakeParams<'_>,
    timeout: Duration,
) -> Result<(PacketSealer, PacketOpener), HandshakeFault> {
    authenticate(stream, params, timeout)
        .await?
        .session_codecs()
        .await
}

/// The peer proved it holds the key and both signed values have been exchanged; what is
/// left of the handshake is local computation (see [`Authenticated::session_codecs`]).
pub struct Authenticated<'a> {
    authenticated: crate::protocol::Authenticated,
    /// Wakes the DH pool's refill once this handshake is over (dropped with `self`).
    _refill: Option<RefillLater<'a>>,
}

impl Authenticated<'_> {
    /// Whether the client holds the previous key (a server in a rotation let it in).
    pub fn used_previous_key(&self) -> bool {
        self.authenticated.used_previous_key()
    }

    /// What the client's nonce says this connection is for, if anything.
    pub fn nonce_tag(&self) -> Option<NonceTag> {
        self.authenticated.nonce_tag()
    }

    /// Derives the session keys. The classic handshake's modular exponentiation (about
    /// 0.3 ms, unless this side runs `-f`) runs on a background worker at background
    /// priority ([`in_background`]), never on a runtime thread whose other connections
    /// wait for it; X25519's key derivation is cheap and runs in place.
    pub async fn session_codecs(self) -> Result<(PacketSealer, PacketOpener), HandshakeFault> {
        let Authenticated {
            authenticated,
            _refill: refill,
        } = self;
        let codecs = if authenticated.costs_an_exponentiation() {
            in_background(move || authenticated.session_codecs())
                .await
                .map_err(|_| LocalFault::Interrupted)?
        } else {
            authenticated.session_codecs()
        };
        // The pool refills only once this handshake's own work is done.
        drop(refill);
        Ok(codecs)
    }
}

/// The I/O around the protocol's [`HandshakeDriver`]: write what it yields, read exactly
/// what it asks for, hand it a key pair when it asks (a server only once the client's
/// value has verified), all under `timeout`. The server has sent its signed value when
/// this returns, so the client is already computing its shared secret.
pub async fn authenticate<'a>(
    stream: &mut NetStream,
    params: &HandshakeParams<'a>,
    timeout: Duration,
) -> Result<Authenticated<'a>, HandshakeFault> {
    let mut refill = None;
    let mut driver = match params.key_agreement {
        KeyAgreement::Classic => {
            // The client sends its signed value right after the nonces, so it brings its
            // key pair; the server is asked for one only once the client has proved itself.
            let keypair = match (params.role, params.forward_secrecy) {
                (Role::Client, ForwardSecrecy::Enabled | ForwardSecrecy::Required) => {
                    let (pair, later) = params.pool.take().await.map_err(LocalFault::from)?;
                    refill = Some(later);
                    Some(pair)
                }
                _ => None,
            };
            HandshakeDriver::classic(
                params.role,
                params.key,
                params.forward_secrecy,
                params.nonce()?,
                keypair,
            )
            .map_err(LocalFault::from)?
        }
        KeyAgreement::X25519 => {
            let mut private = random_bytes().map_err(LocalFault::from)?;
            let driver = HandshakeDriver::x25519(params.role, params.key, params.nonce()?, private);
            zeroize::Zeroize::zeroize(&mut private);
            driver
        }
    };
    if let (Role::Server, Some(previous)) = (params.role, params.previous_key) {
        driver.accept_previous_key(previous);
    }
    let attempt = drive(stream, &mut driver, params.pool, &mut refill);
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => {}
        Ok(Err(fault)) => return Err(fault),
        Err(_) => {
            return Err(driver
                .diagnose_stall()
                .map_or(HandshakeFault::TimedOut(timeout), HandshakeFault::Peer));
        }
    }
    Ok(Authenticated {
        authenticated: driver.finish().map_err(LocalFault::from)?,
        _refill: refill,
    })
}

/// The read/write loop: until the driver is done or fails.
async fn drive<'a>(
    stream: &mut NetStream,
    driver: &mut HandshakeDriver,
    pool: &'a KeyPairPool,
    refill: &mut Option<RefillLater<'a>>,
) -> Result<(), HandshakeFault> {
    let mut buf = [0u8; SIGNED_DH_LEN];
    loop {
        let out = driver.pending_output();
        if !out.is_empty() {
            let n = out.len();
            stream.write_all(out).await.map_err(|e| lost(driver, e))?;
            driver.output_sent(n);
        }
        match driver.next() {
            Next::Done => return Ok(()),
            Next::Failed(fault) => return Err(HandshakeFault::Peer(fault)),
            Next::KeyPair => {
                let (pair, later) = pool.take().await.map_err(LocalFault::from)?;
                *refill = Some(later);
                driver.supply_key_pair(pair).map_err(LocalFault::from)?;
            }
            Next::Receive(want) => {
                let want = want.min(buf.len());
                match stream.read(&mut buf[..want]).await {
                    Ok(0) => return Err(HandshakeFault::Peer(driver.end_of_stream())),
                    Ok(n) => {
                        driver.receive(&buf[..n]).map_err(HandshakeFault::Peer)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(lost(driver, e)),
                }
            }
        }
    }
}

/// A socket error during the handshake: a peer that reset the connection may have hung up
/// in a way the driver can read ([`HandshakeDriver::connection_lost`]).
fn lost(driver: &HandshakeDriver, error: io::Error) -> HandshakeFault {
    let reset = matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    );
    match driver.connection_lost().filter(|_| reset) {
        Some(fault) => HandshakeFault::Peer(fault),
        None => HandshakeFault::Io(error.into()),
    }
}

/// Why the target could not be reached.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TargetFault {
    #[error(transparent)]
    Unresolved(ResolveError),
    #[error("bind address: {0}")]
    BindUnresolved(ResolveError),
    #[error("connection refused: nothing is listening at {0}")]
    Refused(String),
    #[error("no answer from {target} within {:.1} s", timeout.as_secs_f64())]
    TimedOut { target: String, timeout: Duration },
    #[error(
        "{target} has no usable address (not resolved yet, or no address of the bind address's family)"
    )]
    NoAddress { target: String },
    #[error("cannot connect to {target}: {source}")]
    Io { target: String, source: IoFault },
}

/// Connects to the target: each resolved address in order, all within one timeout. Used
/// through [`Dialer`](crate::net::dial::Dialer), which resolves first.
pub(crate) async fn connect_target(
    target: &Address,
    resolved: &[SocketAddr],
    bind: &[SocketAddr],
    timeout: Duration,
) -> Result<NetStream, TargetFault> {
    let attempt = async {
        if let Address::Unix(path) = target {
            return NetStream::connect_unix(path)
                .await
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
            source: e.into(),
        }
    }
}

/// Why the data phase of a connection ended early.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PumpFault {
    #[error("{0}; the connection was closed and nothing after that packet was forwarded")]
    Rejected(PacketError),
    #[error("{side} side: {source}")]
    Io { side: &'static str, source: IoFault },
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
    // A batch of plaintext seals into exactly a lent buffer's worth of packets.
    const ROOM: usize = PACKETS_PER_BATCH * MAX_PAYLOAD;
    loop {
        input.readable().await.map_err(io_fault(sides.input))?;
        let mut plain = Lent::new();
        let mut sealed = Lent::new();
        loop {
            plain.clear();
            let n = input
                .read_buf(&mut (&mut *plain).limit(ROOM))
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
            if n < ROOM {
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
    // Bytes received but not yet opened while idle: less than one packet.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        input.readable().await.map_err(io_fault(sides.input))?;
        let mut buf = Lent::new();
        buf.extend_from_slice(&carry);
        carry = Vec::new();
        loop {
            let room = buf.capacity() - buf.len();
            let n = input
                .read_buf(&mut *buf)
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
        // Drained: the batch buffer goes back; at most a partial packet stays.
        if !buf.is_empty() {
            carry = buf.to_vec();
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
    move |source| PumpFault::Io {
        side,
        source: source.into(),
    }
}

/// The pumps of a connection whose end of the handshake is `role`, with `inbound` the
/// accepted socket and `outbound` the one this end opened, both after the handshake. A
/// client reads plaintext from `inbound` and speaks the protocol on `outbound`; a server
/// the reverse. The connection ends when both directions have reached end of stream, or
/// at the first error.
pub async fn pump_connection(
    role: Role,
    inbound: NetStream,
    outbound: NetStream,
    codecs: (PacketSealer, PacketOpener),
    count_up: impl Fn(u64),
    count_down: impl Fn(u64),
) -> Result<(), PumpFault> {
    let (mut in_r, mut in_w) = inbound.into_split();
    let (mut out_r, mut out_w) = outbound.into_split();
    let (sealer, opener) = codecs;
    let result = match role {
        // Plaintext arrives on the accepted socket; the target is the encrypted side.
        Role::Client => {
            let up = seal_pump(&mut in_r, &mut out_w, sealer, CLIENT_UP, count_up);
            let down = open_pump(&mut out_r, &mut in_w, opener, CLIENT_DOWN, count_down);
            tokio::try_join!(up, down)
        }
        Role::Server => {
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

pub(crate) const CLIENT_UP: Sides = Sides {
    input: "local client",
    output: "far end",
};
pub(crate) const CLIENT_DOWN: Sides = Sides {
    input: "far end",
    output: "local client",
};
pub(crate) const SERVER_UP: Sides = Sides {
    input: "far end",
    output: "target",
};
pub(crate) const SERVER_DOWN: Sides = Sides {
    input: "target",
    output: "far end",
};
