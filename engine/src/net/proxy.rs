//! The PROXY protocol on a tunnel's sockets: reading a load balancer's header from a
//! plaintext client (bounded in size and time), and taking a header off the front of a
//! decrypted stream, so a target never sees two. The header format is `proxy_header`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::conn::PumpFault;
use crate::net::io_fault::IoFault;
use crate::net::reverse::{PacketReader, ReverseFault};
use crate::net::stream::{NetReadHalf, NetStream, NetWriteHalf};
use crate::protocol::PacketOpener;
use crate::proxy_header::{self, Endpoints, MAX_HEADER, Parsed, ProxyHeaderError};

/// Why a client's PROXY header was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProxyFault {
    #[error(transparent)]
    Header(ProxyHeaderError),
    #[error(
        "the client sent no PROXY protocol header, which this tunnel expects from its load balancer (accept_proxy_protocol): connect through the load balancer, or turn the option off"
    )]
    Missing,
    #[error("the client sent no complete PROXY protocol header within {:.1} s", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("the client closed the connection before its PROXY protocol header was complete")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(IoFault),
}

/// The addresses a plaintext connection is between, as a header would carry them
/// (`None` for a UNIX-domain socket).
pub fn endpoints_of(stream: &NetStream) -> Endpoints {
    match stream {
        NetStream::Tcp(tcp) => Some((tcp.peer_addr().ok()?, tcp.local_addr().ok()?)),
        #[cfg(unix)]
        NetStream::Unix(_) => None,
    }
}

/// Reads a load balancer's header from `client`; returns the addresses it names and
/// whatever the client sent after it (to be passed on first).
pub async fn read_header(
    client: &mut NetStream,
    timeout: Duration,
) -> Result<(Endpoints, Vec<u8>), ProxyFault> {
    let reading = async {
        let mut bytes = Vec::with_capacity(MAX_HEADER);
        let mut chunk = [0u8; MAX_HEADER];
        loop {
            match proxy_header::parse(&bytes).map_err(ProxyFault::Header)? {
                Parsed::Header { len, endpoints } => return Ok((endpoints, bytes.split_off(len))),
                Parsed::NotAHeader => return Err(ProxyFault::Missing),
                Parsed::Incomplete => {}
            }
            let room = MAX_HEADER.saturating_sub(bytes.len()).max(1);
            let n = client
                .read(&mut chunk[..room])
                .await
                .map_err(|e| ProxyFault::Io(e.into()))?;
            if n == 0 {
                return Err(ProxyFault::Closed);
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(timeout, reading)
        .await
        .unwrap_or(Err(ProxyFault::TimedOut(timeout)))
}

/// The first plaintext of a decrypted stream, without a PROXY header it may start with
/// (an encrypting end that writes one; this end writes its own): what follows the
/// header is written to `output`. Returns the address the removed header named.
pub async fn strip_header(
    input: &mut NetReadHalf,
    opener: &mut PacketOpener,
    output: &mut NetWriteHalf,
    count: impl Fn(u64),
) -> Result<Option<SocketAddr>, PumpFault> {
    let mut reader = PacketReader::default();
    let mut plain = Vec::new();
    let (client, rest) = loop {
        match reader.next(input, opener).await {
            Ok(packet) => plain.extend_from_slice(&packet),
            // End of stream before a whole header: pass on what came, as data.
            Err(ReverseFault::Closed) => break (None, plain),
            Err(ReverseFault::Rejected(e)) => return Err(PumpFault::Rejected(e)),
            Err(ReverseFault::Io(source)) => {
                return Err(PumpFault::Io {
                    side: "far end",
                    source,
                });
            }
            Err(_) => break (None, plain),
        }
        match proxy_header::parse(&plain) {
            Ok(Parsed::Header { len, endpoints }) => {
                break (endpoints.map(|(client, _)| client), plain.split_off(len));
            }
            Ok(Parsed::Incomplete) if plain.len() < MAX_HEADER => {}
            // Not a header (or not one this reads): the client's data, untouched.
            _ => break (None, plain),
        }
    };
    if !rest.is_empty() {
        output.write_all(&rest).await.map_err(|e| PumpFault::Io {
            side: "target",
            source: e.into(),
        })?;
        count(rest.len() as u64);
    }
    Ok(client)
}
