//! What `sluiced` does differently per operating system, in one place.
//!
//! Built and tested: Linux. Other Unix: written, not built.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::SocketAddr;

/// The address in `$NOTIFY_SOCKET`: a path, or on Linux an abstract name written `@name`.
pub fn notify_socket_address(value: &OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.split_first() {
        #[cfg(target_os = "linux")]
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        Some((b'/', _)) => SocketAddr::from_pathname(value),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "NOTIFY_SOCKET={} is neither a socket path nor an abstract name",
                value.to_string_lossy()
            ),
        )),
    }
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd wants with `RELOADING=1`.
pub fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1000).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(micros)
}
