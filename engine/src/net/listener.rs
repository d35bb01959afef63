//! Listening sockets for tunnels: TCP (IPv4, IPv6, host names) and UNIX-domain sockets.
//! A stale UNIX socket file left by a dead process is replaced; one that a live process
//! still answers on is never stolen. The UNIX-domain parts are `cfg(unix)`: elsewhere a
//! `/path` address is refused with [`ListenError::UnixSocketsUnsupported`].

use std::io;
#[cfg(unix)]
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
#[cfg(unix)]
use std::path::PathBuf;

#[cfg(unix)]
use tokio::net::UnixListener;
use tokio::net::{TcpListener, TcpSocket};

use crate::address::Address;
use crate::net::io_fault::IoFault;
use crate::net::resolve::{Resolve, ResolveError, Resolver};
use crate::net::stream::{NetStream, Peer};

/// Pending connections the kernel queues for us. Clients beyond the connection limit
/// wait here (and in SYN retries beyond it) instead of being refused.
const BACKLOG: u32 = 128;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {address}: {source}")]
    Resolve {
        address: String,
        source: ResolveError,
    },
    #[error(
        "{address} is already in use by another program (or another tunnel): pick another port, or stop the program using it"
    )]
    InUse { address: String },
    #[error(
        "{address} is a socket that a running program is still listening on: stop that program, or pick another path"
    )]
    SocketInUse { address: String },
    #[error("{address} exists and is not a socket: refusing to replace it; pick another path")]
    NotASocket { address: String },
    #[error("not allowed to listen on {address}: {hint}")]
    PermissionDenied { address: String, hint: &'static str },
    #[error("cannot listen on {address}: {source}")]
    Io { address: String, source: IoFault },
    #[error("cannot listen on {address}: {reason}")]
    Inherited { address: String, reason: String },
    #[error(
        "cannot listen on {address}: UNIX-domain socket addresses are not available on this system; listen on host:port or [ip]:port instead"
    )]
    UnixSocketsUnsupported { address: String },
}

/// A bound listener. A UNIX socket file this process created is removed when the
/// listener is dropped, but only if it is still the same file.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix {
        listener: UnixListener,
        path: PathBuf,
        inode: u64,
    },
    /// A UNIX socket a service manager passed in: its file is the manager's.
    #[cfg(unix)]
    InheritedUnix(UnixListener),
}

impl Listener {
    /// Binds `address`, resolving a host name with `resolver` once and using its first
    /// address, as spiped does.
    pub async fn bind_with(
        address: &Address,
        resolver: &dyn Resolver,
    ) -> Result<Listener, ListenError> {
        let label = address.to_string();
        match address {
            Address::Unix(path) => bind_unix(path, &label),
            Address::Systemd(name) => inherited(name, &label),
            _ => {
                let resolved = address.resolve_with(resolver).await.map_err(|source| {
                    ListenError::Resolve {
                        address: label.clone(),
                        source,
                    }
                })?;
                let Some(first) = resolved.first() else {
                    return Err(ListenError::Resolve {
                        address: label.clone(),
                        source: ResolveError::NoAddresses(label),
                    });
                };
                bind_tcp(*first).map_err(|e| classify_bind_error(&label, e))
            }
        }
    }

    /// A connection and who it is from: the address accept() returns, so that no
    /// further system call asks for it.
    pub async fn accept(&self) -> io::Result<(NetStream, Peer)> {
        match self {
            Listener::Tcp(l) => l
                .accept()
                .await
                .map(|(s, peer)| (NetStream::Tcp(s), Peer::Ip(peer))),
            #[cfg(unix)]
            Listener::Unix { listener, .. } | Listener::InheritedUnix(listener) => listener
                .accept()
                .await
                .map(|(s, _)| (NetStream::Unix(s), Peer::LocalSocket)),
        }
    }

    /// Clients waiting in the kernel's accept queue, where the system can tell (TCP on
    /// Linux); `None` where it cannot.
    pub fn queued_connections(&self) -> Option<u64> {
        match self {
            Listener::Tcp(l) => crate::platform::accept_queue_len(l),
            #[cfg(unix)]
            Listener::Unix { .. } | Listener::InheritedUnix(_) => None,
        }
    }

    /// Where this listener actually listens (with the real port if port 0 was asked
    /// for); `None` if the system cannot say.
    pub fn local_address(&self) -> Option<Address> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().map(Address::Ip),
            #[cfg(unix)]
            Listener::Unix { path, .. } => Some(Address::Unix(path.clone())),
            #[cfg(unix)]
            Listener::InheritedUnix(listener) => listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| Address::Unix(p.to_owned()))),
        }
    }
}

/// A listening socket a service manager passed in, by name (`systemd:NAME`).
fn inherited(name: &str, label: &str) -> Result<Listener, ListenError> {
    let listener =
        crate::platform::inherited_listener(name).map_err(|e| ListenError::Inherited {
            address: label.to_owned(),
            reason: e.to_string(),
        })?;
    let io = |e: io::Error| ListenError::Io {
        address: label.to_owned(),
        source: e.into(),
    };
    match listener {
        crate::platform::InheritedListener::Tcp(tcp) => {
            tcp.set_nonblocking(true).map_err(io)?;
            TcpListener::from_std(tcp).map(Listener::Tcp).map_err(io)
        }
        #[cfg(unix)]
        crate::platform::InheritedListener::Unix(unix) => {
            unix.set_nonblocking(true).map_err(io)?;
            UnixListener::from_std(unix)
                .map(Listener::InheritedUnix)
                .map_err(io)
        }
    }
}

#[cfg(unix)]
impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix { path, inode, .. } = self
            && std::fs::symlink_metadata(&*path).is_ok_and(|m| m.ino() == *inode)
        {
            let _ = std::fs::remove_file(&*path);
        }
    }
}

fn bind_tcp(addr: std::net::SocketAddr) -> io::Result<Listener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if crate::platform::REUSE_LISTEN_ADDRESS {
        socket.set_reuseaddr(true)?;
    }
    socket.bind(addr)?;
    Ok(Listener::Tcp(socket.listen(BACKLOG)?))
}

#[cfg(not(unix))]
fn bind_unix(_path: &Path, label: &str) -> Result<Listener, ListenError> {
    Err(ListenError::UnixSocketsUnsupported {
        address: label.to_owned(),
    })
}

#[cfg(unix)]
fn bind_unix(path: &Path, label: &str) -> Result<Listener, ListenError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ListenError::NotASocket {
                address: label.to_owned(),
            });
        }
        // A socket file: live if someone accepts on it, stale if connecting is refused.
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(ListenError::SocketInUse {
                    address: label.to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| classify_bind_error(label, e))?;
            }
            Err(e) => return Err(classify_bind_error(label, e)),
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| classify_bind_error(label, e))?;
    let inode = std::fs::symlink_metadata(path)
        .map(|m| m.ino())
        .map_err(|e| classify_bind_error(label, e))?;
    Ok(Listener::Unix {
        listener,
        path: path.to_owned(),
        inode,
    })
}

fn classify_bind_error(address: &str, e: io::Error) -> ListenError {
    let address = address.to_owned();
    match e.kind() {
        io::ErrorKind::AddrInUse => ListenError::InUse { address },
        io::ErrorKind::PermissionDenied => ListenError::PermissionDenied {
            address,
            hint: crate::platform::LISTEN_DENIED_HINT,
        },
        io::ErrorKind::AddrNotAvailable => ListenError::Io {
            address,
            source: io::Error::new(
                e.kind(),
                "this machine has no such address (check the IP in the listen address)",
            )
            .into(),
        },
        _ => ListenError::Io {
            address,
            source: e.into(),
        },
    }
}

/// Whether an accept() error means the process or system ran out of something
/// (descriptors, buffers, memory) rather than that one client gave up.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    crate::platform::is_resource_exhaustion(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::resolve::SystemResolver;

    #[cfg(unix)]
    fn temp_socket_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("sluice-test-{}-{name}.sock", std::process::id()))
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn stale_unix_socket_is_replaced() {
        let path = temp_socket_path("stale");
        let _ = std::fs::remove_file(&path);
        // A socket file whose owner is gone: bind, then drop without unlinking.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = Listener::bind_with(&Address::Unix(path.clone()), &SystemResolver)
            .await
            .unwrap();
        drop(listener);
        assert!(!path.exists(), "our own socket file is removed on drop");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn live_unix_socket_is_not_stolen() {
        let path = temp_socket_path("live");
        let _ = std::fs::remove_file(&path);
        let _owner = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = Listener::bind_with(&Address::Unix(path.clone()), &SystemResolver)
            .await
            .unwrap_err();
        assert!(matches!(err, ListenError::SocketInUse { .. }), "{err}");
        assert!(path.exists());
        let _ = std::fs::remove_file(&path);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn regular_file_is_not_replaced() {
        let path = temp_socket_path("file");
        std::fs::write(&path, b"precious").unwrap();
        let err = Listener::bind_with(&Address::Unix(path.clone()), &SystemResolver)
            .await
            .unwrap_err();
        assert!(matches!(err, ListenError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        let _ = std::fs::remove_file(&path);
    }

    #[cfg(not(unix))]
    #[tokio::test]
    async fn unix_socket_addresses_are_refused_in_words() {
        let err = Listener::bind_with(&Address::Unix("/run/x.sock".into()), &SystemResolver)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ListenError::UnixSocketsUnsupported { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("host:port"), "{err}");
    }

    #[tokio::test]
    async fn busy_tcp_port_is_reported_in_words() {
        let any_port = Address::Ip("127.0.0.1:0".parse().unwrap());
        let first = Listener::bind_with(&any_port, &SystemResolver)
            .await
            .unwrap();
        let taken = first.local_address().unwrap();
        let err = Listener::bind_with(&taken, &SystemResolver)
            .await
            .unwrap_err();
        assert!(matches!(err, ListenError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("already in use"));
    }
}
