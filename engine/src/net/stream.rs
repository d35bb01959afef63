//! One socket type for TCP and UNIX-domain streams, so the connection code is written once.
//! Streams split into owned read and write halves for the two independent pump directions.
//! The UNIX-domain variants are `cfg(unix)`: Windows has TCP only.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, tcp};
#[cfg(unix)]
use tokio::net::{UnixStream, unix};

/// The other end of a connection, as an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Ip(std::net::SocketAddr),
    /// A UNIX-domain socket's client (which has no address worth showing).
    LocalSocket,
    /// The system could not say (the peer left already).
    Unknown,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Ip(addr) => addr.fmt(f),
            Peer::LocalSocket => f.write_str("local socket"),
            Peer::Unknown => f.write_str("unknown peer"),
        }
    }
}

/// A connected stream socket.
#[derive(Debug)]
pub enum NetStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl From<TcpStream> for NetStream {
    fn from(stream: TcpStream) -> NetStream {
        NetStream::Tcp(stream)
    }
}

#[cfg(unix)]
impl From<UnixStream> for NetStream {
    fn from(stream: UnixStream) -> NetStream {
        NetStream::Unix(stream)
    }
}

impl NetStream {
    /// Connects to the UNIX-domain socket at `path`; where there are none, an
    /// `Unsupported` error that says to use a TCP address.
    pub async fn connect_unix(path: &std::path::Path) -> io::Result<NetStream> {
        #[cfg(unix)]
        {
            UnixStream::connect(path).await.map(NetStream::Unix)
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "UNIX-domain socket addresses are not available on this system: use host:port or [ip]:port",
            ))
        }
    }

    /// TCP_NODELAY on (each packet is sent as soon as it is sealed, like spiped ≥ 1.5) and
    /// SO_KEEPALIVE as asked. Errors are ignored, as spiped does: an option the platform
    /// refuses must not cost the connection.
    pub fn tune(&self, keepalive: bool) {
        match self {
            NetStream::Tcp(tcp) => {
                let _ = tcp.set_nodelay(true);
                let _ = SockRef::from(tcp).set_keepalive(keepalive);
            }
            #[cfg(unix)]
            NetStream::Unix(_) => {}
        }
    }

    /// Makes the coming close a reset (SO_LINGER 0) instead of an orderly end of stream,
    /// for a connection that failed after the peer was told all was well. TCP only: a
    /// UNIX-domain socket has no way to close with a reset.
    pub fn reset_on_close(&self) {
        match self {
            NetStream::Tcp(tcp) => {
                let _ = SockRef::from(tcp).set_linger(Some(std::time::Duration::ZERO));
            }
            #[cfg(unix)]
            NetStream::Unix(_) => {}
        }
    }

    /// Who is at the other end (put into words only when shown).
    pub fn peer(&self) -> Peer {
        match self {
            NetStream::Tcp(tcp) => tcp.peer_addr().map_or(Peer::Unknown, Peer::Ip),
            #[cfg(unix)]
            NetStream::Unix(_) => Peer::LocalSocket,
        }
    }

    pub fn into_split(self) -> (NetReadHalf, NetWriteHalf) {
        match self {
            NetStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (NetReadHalf::Tcp(r), NetWriteHalf::Tcp(w))
            }
            #[cfg(unix)]
            NetStream::Unix(s) => {
                let (r, w) = s.into_split();
                (NetReadHalf::Unix(r), NetWriteHalf::Unix(w))
            }
        }
    }
}

pub enum NetReadHalf {
    Tcp(tcp::OwnedReadHalf),
    #[cfg(unix)]
    Unix(unix::OwnedReadHalf),
}

pub enum NetWriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    #[cfg(unix)]
    Unix(unix::OwnedWriteHalf),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Tcp($s) => $e,
            #[cfg(unix)]
            Self::Unix($s) => $e,
        }
    };
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for NetReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for NetWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl NetReadHalf {
    /// Waits until data (or end of stream) can be read, without needing a buffer: idle
    /// connections then hold no pump buffers at all.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            NetReadHalf::Tcp(r) => r.readable().await,
            #[cfg(unix)]
            NetReadHalf::Unix(r) => r.readable().await,
        }
    }
}

impl NetWriteHalf {
    /// Makes the coming close a reset (SO_LINGER 0) instead of an orderly end of stream,
    /// so a connection dropped for tampering is not mistaken for a clean finish.
    /// Consumes the half without the orderly shutdown tokio does on drop; the socket
    /// closes when its read half is dropped too.
    pub fn reset_on_close(self) {
        match self {
            NetWriteHalf::Tcp(w) => {
                let stream: &TcpStream = w.as_ref();
                let _ = SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
                w.forget();
            }
            #[cfg(unix)]
            NetWriteHalf::Unix(w) => w.forget(),
        }
    }
}
