//! Dialling out, written once: resolve the target (and bind address), connect within the
//! timeout, and optionally run the client handshake. Used by the tunnel's connections,
//! the connection test and `sluiced --spipe`, with the time each step took.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::net::conn::{HandshakeFault, HandshakeParams, TargetFault, connect_target, handshake};
use crate::net::resolve::Resolve;
use crate::net::stream::NetStream;
use crate::protocol::{PacketOpener, PacketSealer};

/// Why dialling failed: the target could not be reached, or the handshake with it failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DialFault {
    #[error(transparent)]
    Target(TargetFault),
    #[error(transparent)]
    Handshake(HandshakeFault),
}

/// Where and how to connect.
#[derive(Clone, Copy, Debug)]
pub struct Dialer<'a> {
    target: &'a Address,
    bind: Option<&'a Address>,
    timeout: Duration,
    resolved: Option<Resolved<'a>>,
}

/// Addresses resolved beforehand (a tunnel re-resolves its target periodically).
#[derive(Clone, Copy, Debug)]
struct Resolved<'a> {
    target: &'a [SocketAddr],
    bind: &'a [SocketAddr],
}

/// A connected socket, how long the host-name lookup took (`None`: nothing was looked
/// up, the address was an IP, a UNIX path or resolved beforehand), and how long the TCP
/// (or UNIX-domain) connect took after it.
#[derive(Debug)]
pub struct Connected {
    pub stream: NetStream,
    pub lookup: Option<Duration>,
    pub connect: Duration,
}

/// A connection whose client handshake is done.
pub struct Dialed {
    pub stream: NetStream,
    pub codecs: (PacketSealer, PacketOpener),
    pub lookup: Option<Duration>,
    pub connect: Duration,
    pub handshake: Duration,
}

impl<'a> Dialer<'a> {
    /// `timeout` bounds the connect and, separately, the handshake (as spiped's `-o`).
    pub fn new(target: &'a Address, bind: Option<&'a Address>, timeout: Duration) -> Self {
        Dialer {
            target,
            bind,
            timeout,
            resolved: None,
        }
    }

    /// The connect timeout, which is also the handshake's.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Uses these addresses instead of resolving `target` and `bind` (an empty `bind`
    /// means no bind address).
    pub fn with_resolved(self, target: &'a [SocketAddr], bind: &'a [SocketAddr]) -> Self {
        Dialer {
            resolved: Some(Resolved { target, bind }),
            ..self
        }
    }

    /// Resolves (unless resolved already) and connects: each address in order, all within
    /// the timeout. `connect` in the answer excludes the name lookup.
    pub async fn connect(&self) -> Result<Connected, TargetFault> {
        let started;
        let mut lookup = None;
        let stream = match self.resolved {
            Some(resolved) => {
                started = Instant::now();
                connect_target(self.target, resolved.target, resolved.bind, self.timeout).await?
            }
            None => {
                let looking_up = Instant::now();
                let (target, bind) = self.resolve().await?;
                let names = [Some(self.target), self.bind];
                if names
                    .iter()
                    .flatten()
                    .any(|a| matches!(a, Address::Host { .. }))
                {
                    lookup = Some(looking_up.elapsed());
                }
                started = Instant::now();
                connect_target(self.target, &target, &bind, self.timeout).await?
            }
        };
        Ok(Connected {
            stream,
            lookup,
            connect: started.elapsed(),
        })
    }

    /// [`connect`](Self::connect), then the client handshake under its own timeout.
    pub async fn dial(&self, params: &HandshakeParams<'_>) -> Result<Dialed, DialFault> {
        let Connected {
            mut stream,
            lookup,
            connect,
        } = self.connect().await.map_err(DialFault::Target)?;
        let started = Instant::now();
        let codecs = handshake(&mut stream, params, self.timeout)
            .await
            .map_err(DialFault::Handshake)?;
        Ok(Dialed {
            stream,
            codecs,
            lookup,
            connect,
            handshake: started.elapsed(),
        })
    }

    async fn resolve(&self) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), TargetFault> {
        let target = match self.target {
            Address::Unix(_) => Vec::new(),
            target => target.resolve().await.map_err(TargetFault::Unresolved)?,
        };
        let bind = match self.bind {
            Some(bind) => bind.resolve().await.map_err(TargetFault::BindUnresolved)?,
            None => Vec::new(),
        };
        Ok((target, bind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_lookup_is_timed_apart_from_the_connect_and_only_for_a_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ip = Address::Ip(SocketAddr::from(([127, 0, 0, 1], port)));
        let name = Address::Host {
            name: "localhost".into(),
            port,
        };
        let timeout = Duration::from_secs(5);

        let by_ip = Dialer::new(&ip, None, timeout).connect().await.unwrap();
        assert_eq!(by_ip.lookup, None, "an IP needs no lookup");
        let by_name = Dialer::new(&name, None, timeout).connect().await.unwrap();
        assert!(by_name.lookup.is_some(), "a host name is looked up");
        let addrs = [SocketAddr::from(([127, 0, 0, 1], port))];
        let resolved = Dialer::new(&name, None, timeout)
            .with_resolved(&addrs, &[])
            .connect()
            .await
            .unwrap();
        assert_eq!(resolved.lookup, None, "resolved beforehand");
    }
}
