//! Telling a service manager how `sluiced` is doing, systemd's `sd_notify` protocol:
//! `READY=1` once every listener is bound, `RELOADING=1` while a reload runs, `STOPPING=1`
//! when draining, and a `STATUS=` line a person reads in `systemctl status`.

use std::io;

use crate::platform::{self, NotifySocket};

/// The service manager's notification socket (`$NOTIFY_SOCKET`), or nothing to tell.
pub struct ServiceManager {
    socket: Option<NotifySocket>,
}

impl ServiceManager {
    /// From `$NOTIFY_SOCKET`; none set (not started by systemd with `Type=notify`) means
    /// every notification is a no-op. A socket that cannot be opened is an error the
    /// caller logs once.
    pub fn from_env() -> io::Result<ServiceManager> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(ServiceManager::none());
        };
        Ok(ServiceManager {
            socket: Some(NotifySocket::open(&path)?),
        })
    }

    /// Nothing to tell.
    pub fn none() -> ServiceManager {
        ServiceManager { socket: None }
    }

    /// Every listener is bound: the service is up.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={status}"))
    }

    /// A reload has begun; [`ServiceManager::ready`] ends it.
    pub fn reloading(&self) -> io::Result<()> {
        let now = platform::monotonic_usec();
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"))
    }

    pub fn stopping(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STOPPING=1\nSTATUS={status}"))
    }

    fn send(&self, message: &str) -> io::Result<()> {
        match &self.socket {
            None => Ok(()),
            Some(socket) => socket.send(message),
        }
    }
}

/// The status line for a number of running tunnels.
pub fn running_status(tunnels: usize) -> String {
    match tunnels {
        1 => "running 1 tunnel".to_owned(),
        n => format!("running {n} tunnels"),
    }
}

// Unix only: the notification socket is systemd's.
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_notify_socket_and_nothing_happens_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let manager = ServiceManager {
            socket: Some(NotifySocket::open(path.as_os_str()).unwrap()),
        };
        let mut buf = [0u8; 256];
        manager.ready(&running_status(2)).unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=running 2 tunnels");
        manager.reloading().unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        assert!(
            text["RELOADING=1\nMONOTONIC_USEC=".len()..]
                .parse::<u64>()
                .unwrap()
                > 0
        );

        let silent = ServiceManager::none();
        silent.ready("x").unwrap();
        silent.stopping("x").unwrap();
    }
}
