//! Turning an [`Address`] into socket addresses to try, through the system resolver
//! (`getaddrinfo`, like spiped). The address syntax itself is pure and lives in
//! `crate::address`; only this step needs the runtime.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use crate::address::Address;

/// Why an address gave no socket address to connect to or bind.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ResolveError {
    #[error("cannot resolve host {host:?}: {reason}; check the name and your DNS or network")]
    Lookup { host: String, reason: String },
    #[error("host {0:?} resolved to no addresses: check the name and your DNS")]
    NoAddresses(String),
    #[error("{0:?} is a UNIX socket path, which cannot be used here: use host:port or [ip]:port")]
    NotANetworkAddress(String),
}

/// Looks host names up. The engine's tunnels use the one they are given (the system's,
/// outside tests), so a test can give them one that never answers.
pub trait Resolver: Send + Sync + 'static {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;
}

/// The system resolver (`getaddrinfo`, on tokio's blocking pool).
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Resolving, as a method of [`Address`] so call sites read `target.resolve().await`.
pub trait Resolve {
    /// Socket addresses to try in order: an IP is itself; a host name goes through the
    /// system resolver, keeping its order; a UNIX path has none and is an error.
    fn resolve(&self) -> impl Future<Output = Result<Vec<SocketAddr>, ResolveError>> + Send;

    /// [`Resolve::resolve`] with host names looked up by `resolver`.
    fn resolve_with(
        &self,
        resolver: &dyn Resolver,
    ) -> impl Future<Output = Result<Vec<SocketAddr>, ResolveError>> + Send;
}

impl Resolve for Address {
    async fn resolve(&self) -> Result<Vec<SocketAddr>, ResolveError> {
        self.resolve_with(&SystemResolver).await
    }

    async fn resolve_with(&self, resolver: &dyn Resolver) -> Result<Vec<SocketAddr>, ResolveError> {
        match self {
            Address::Unix(path) => {
                Err(ResolveError::NotANetworkAddress(path.display().to_string()))
            }
            Address::Systemd(_) => Err(ResolveError::NotANetworkAddress(self.to_string())),
            Address::Ip(addr) => Ok(vec![*addr]),
            Address::Host { name, port } => {
                let addrs =
                    resolver
                        .lookup(name, *port)
                        .await
                        .map_err(|e| ResolveError::Lookup {
                            host: name.clone(),
                            reason: e.to_string(),
                        })?;
                if addrs.is_empty() {
                    Err(ResolveError::NoAddresses(name.clone()))
                } else {
                    Ok(addrs)
                }
            }
        }
    }
}

/// Target addresses, refreshed in the background for host names.
pub struct ResolvedTarget {
    addrs: RwLock<Arc<[SocketAddr]>>,
}

impl ResolvedTarget {
    pub fn new(addrs: Vec<SocketAddr>) -> Self {
        ResolvedTarget {
            addrs: RwLock::new(Arc::from(addrs)),
        }
    }

    pub fn current(&self) -> Arc<[SocketAddr]> {
        self.addrs
            .read()
            .map(|a| Arc::clone(&a))
            .unwrap_or_else(|_| Arc::from(Vec::new()))
    }

    pub fn replace(&self, addrs: Vec<SocketAddr>) {
        if let Ok(mut slot) = self.addrs.write() {
            *slot = Arc::from(addrs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn host(name: &str, port: u16) -> Address {
        Address::Host {
            name: name.to_owned(),
            port,
        }
    }

    #[tokio::test]
    async fn resolves_ips_hosts_and_refuses_unix() {
        let v4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80));
        assert_eq!(Address::Ip(v4).resolve().await, Ok(vec![v4]));

        let local = host("localhost", 8025).resolve().await.unwrap();
        assert!(!local.is_empty());
        assert!(
            local
                .iter()
                .all(|a| a.port() == 8025 && a.ip().is_loopback())
        );

        assert!(matches!(
            Address::Unix("/tmp/s".into()).resolve().await,
            Err(ResolveError::NotANetworkAddress(p)) if p == "/tmp/s"
        ));

        // ".invalid" is reserved (RFC 6761): it never resolves, with or without network.
        match host("no-such-host.invalid", 80).resolve().await {
            Err(ResolveError::Lookup { host, reason }) => {
                assert_eq!(host, "no-such-host.invalid");
                assert!(!reason.is_empty());
            }
            other => panic!("expected a resolve error, got {other:?}"),
        }
    }
}
