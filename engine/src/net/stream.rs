//! One socket type for TCP and UNIX-domain streams, so the connection code is written once.
//! Streams split into owned read and write halves for the two independent pump directions.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// A connected stream socket.
#[derive(Debug)]
pub enum NetStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl NetStream {
    /// TCP_NODELAY on (each packet is sent as soon as it is sealed, like spiped ≥ 1.5) and
    /// SO_KEEPALIVE as asked. Errors are ignored, as spiped does: an option the platform
    /// refuses must not cost the connection.
    pub fn tune(&self, keepalive: bool) {
        if let NetStream::Tcp(tcp) = self {
            let _ = tcp.set_nodelay(true);
            let _ = SockRef::from(tcp).set_keepalive(keepalive);
        }
    }

    /// Makes the coming close a reset (SO_LINGER 0) instead of an orderly end of stream,
    /// for a connection that failed after the peer was told all was well. TCP only: a
    /// UNIX-domain socket has no way to close with a reset.
    pub fn reset_on_close(&self) {
        if let NetStream::Tcp(tcp) = self {
            let _ = SockRef::from(tcp).set_linger(Some(std::time::Duration::ZERO));
        }
    }

    /// The peer's address in words, for logs.
    pub fn peer_label(&self) -> String {
        match self {
            NetStream::Tcp(tcp) => tcp
                .peer_addr()
                .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string()),
            NetStream::Unix(_) => "local socket".to_owned(),
        }
    }

    pub fn into_split(self) -> (NetReadHalf, NetWriteHalf) {
        match self {
            NetStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (NetReadHalf::Tcp(r), NetWriteHalf::Tcp(w))
            }
            NetStream::Unix(s) => {
                let (r, w) = s.into_split();
                (NetReadHalf::Unix(r), NetWriteHalf::Unix(w))
            }
        }
    }
}

pub enum NetReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

pub enum NetWriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Tcp($s) => $e,
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
            NetWriteHalf::Unix(w) => w.forget(),
        }
    }
}
