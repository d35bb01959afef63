//! What the engine does differently per operating system, in one place: file modes (for
//! saved files and key files), directory syncs, whether a process lives, thread
//! priorities, a listener's accept queue. The one other Unix-only part is the UNIX-domain
//! socket variant of `net::stream::NetStream` and `net::listener::Listener`: a Windows
//! port puts those variants under `cfg(unix)` and changes nothing else.
//!
//! Built and tested: Linux. Other Unix (macOS, BSD): the Unix code, written, not built.
//! Windows: the `not(unix)` fallbacks, written, not built.

#[cfg(unix)]
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;

/// This machine's name as the system knows it (`gethostname`; Windows: `COMPUTERNAME`),
/// or `localhost` when it has none: what the app shows, what a far end connects back to,
/// and a name the metrics endpoint answers to.
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
        // or truncates, and the last byte stays 0 either way.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } == 0;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
        match std::str::from_utf8(&buf[..end]) {
            Ok(name) if ok && !name.is_empty() => name.to_owned(),
            _ => "localhost".to_owned(),
        }
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    }
}

/// Makes `options` create files readable and writable by their owner only (mode 0600).
pub fn create_owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600)
    }
    // Windows: a new file inherits its directory's ACL, which for a profile directory
    // is already the user's own.
    #[cfg(not(unix))]
    {
        options
    }
}

/// The file's permission bits if its group or others may use it (a key file should be
/// the owner's alone); `None` when they may not, or where modes do not exist (Windows:
/// a file in the profile inherits the user's own ACL).
pub fn mode_open_to_others(meta: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Flushes a directory's entries to disk, so that a rename into it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    // Windows cannot open a directory as a file to flush it; its rename is already
    // durable enough for a settings file.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether process `pid` exists (it may belong to another user). Where this cannot be
/// told cheaply, the answer is yes, so nothing of a live process is ever removed.
pub fn process_exists(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        alive || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// How many connections wait in a listening TCP socket's accept queue (the kernel's
/// completed handshakes not yet accepted). Linux reports it in `TCP_INFO` of the listening
/// socket; elsewhere the number is unknown.
pub fn accept_queue_len(socket: &impl std::os::fd::AsRawFd) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: tcp_info is plain old data; getsockopt writes at most `len` bytes into it.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: the descriptor is open for the borrow; the pointers are to locals.
        let result = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut len,
            )
        };
        // For a listening socket, tcpi_unacked is the accept queue's current length.
        (result == 0).then_some(u64::from(info.tcpi_unacked))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        None
    }
}

/// A connected pair of local stream sockets: `sluiced --spipe` bridges standard input and
/// output through one, as spipe does. UNIX-domain where there are such sockets, else two
/// TCP sockets on the loopback address.
#[cfg(unix)]
pub type LocalStream = tokio::net::UnixStream;
#[cfg(not(unix))]
pub type LocalStream = tokio::net::TcpStream;

/// Makes a [`LocalStream`] pair.
pub async fn local_stream_pair() -> io::Result<(LocalStream, LocalStream)> {
    #[cfg(unix)]
    {
        tokio::net::UnixStream::pair()
    }
    #[cfg(not(unix))]
    {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let connecting = tokio::net::TcpStream::connect(listener.local_addr()?);
        let (connected, accepted) = tokio::join!(connecting, listener.accept());
        Ok((connected?, accepted?.0))
    }
}

/// A lower scheduling priority for the calling thread (nice 10): background work such as
/// refilling the Diffie-Hellman pool gives way to the connections it serves, yet still
/// progresses on a busy machine (SCHED_IDLE or nice 19 starved it there). Errors leave
/// the priority as it was; elsewhere than Linux, priorities work per process and the
/// thread keeps normal priority.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread; gettid cannot fail.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// How long the machine has spent suspended since it booted: a clock that runs through
/// sleep minus one that stops for it. Its growth between two looks means the machine
/// slept and woke in between, with no service (logind, a power manager) to ask: Linux
/// `CLOCK_BOOTTIME` − `CLOCK_MONOTONIC`, macOS `CLOCK_MONOTONIC` − `CLOCK_UPTIME_RAW`,
/// Windows interrupt time − unbiased interrupt time. `None` where it cannot be read.
pub fn suspended_time() -> Option<std::time::Duration> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let (with_sleep, without_sleep) = (
        clock_time(libc::CLOCK_BOOTTIME)?,
        clock_time(libc::CLOCK_MONOTONIC)?,
    );
    #[cfg(target_vendor = "apple")]
    let (with_sleep, without_sleep) = (
        clock_time(libc::CLOCK_MONOTONIC)?,
        clock_time(libc::CLOCK_UPTIME_RAW)?,
    );
    #[cfg(windows)]
    let (with_sleep, without_sleep) = {
        use windows_sys::Win32::System::WindowsProgramming::{
            QueryInterruptTime, QueryUnbiasedInterruptTime,
        };
        let (mut with_sleep, mut without_sleep) = (0u64, 0u64);
        // SAFETY: both write one u64 through a valid pointer to a local.
        let ok = unsafe {
            QueryInterruptTime(&mut with_sleep);
            QueryUnbiasedInterruptTime(&mut without_sleep)
        };
        if ok == 0 {
            return None;
        }
        // Both count 100-nanosecond units.
        (
            std::time::Duration::from_nanos(with_sleep.saturating_mul(100)),
            std::time::Duration::from_nanos(without_sleep.saturating_mul(100)),
        )
    };
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        windows
    )))]
    let (with_sleep, without_sleep) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    Some(with_sleep.saturating_sub(without_sleep))
}

#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn clock_time(clock: libc::clockid_t) -> Option<std::time::Duration> {
    // SAFETY: timespec is plain old data; clock_gettime writes it through a valid pointer.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    Some(std::time::Duration::new(secs, nanos))
}

/// Calls `changed` whenever the machine's addresses or routes change (once per burst:
/// bringing an interface up changes several at once). Runs until the watch fails, and
/// returns why; where the platform offers no watch, returns at once. Linux: a netlink
/// socket on the link, address and route groups; macOS: a routing socket; Windows: the
/// IP Helper's address and route change notifications.
pub async fn watch_network(changed: impl Fn()) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        use tokio::io::{Interest, unix::AsyncFd};
        // SAFETY: an OwnedFd's descriptor is valid, stays open while it is owned (here by
        // the AsyncFd) and is the one it always returns.
        let socket = unsafe {
            AsyncFd::register_with_interest(network_change_socket()?, Interest::READABLE)
        }?;
        loop {
            let mut ready = socket.readable().await?;
            let mut relevant = drain_network_messages(ready.get_inner())?;
            ready.clear_ready();
            drop(ready);
            if !relevant {
                continue;
            }
            // The rest of the burst, taken as one change.
            tokio::time::sleep(NETWORK_SETTLE).await;
            relevant = drain_network_messages(socket.get_ref())? || relevant;
            if relevant {
                changed();
            }
        }
    }
    #[cfg(windows)]
    {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let _subscriptions = windows_network::subscribe(sender)?;
        while receiver.recv().await.is_some() {
            tokio::time::sleep(NETWORK_SETTLE).await;
            while receiver.try_recv().is_ok() {}
            changed();
        }
        Ok(())
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        windows
    )))]
    {
        let _ = changed;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this system offers no way to watch the network",
        ))
    }
}

/// How long a burst of network changes is given to settle before it counts as one.
const NETWORK_SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

#[cfg(any(target_os = "linux", target_os = "android"))]
fn network_change_socket() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain old data.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address.nl_groups = (libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_ROUTE) as u32;
    // SAFETY: the address is a valid sockaddr_nl of the given length.
    let bound = unsafe {
        libc::bind(
            fd,
            (&raw const address).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

#[cfg(target_vendor = "apple")]
fn network_change_socket() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::PF_ROUTE, libc::SOCK_RAW, libc::AF_UNSPEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain fcntl calls on the descriptor just made.
    let nonblocking = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0
            && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
            && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
    };
    if !nonblocking {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Reads every message waiting on the watch socket; whether any reports a change of
/// addresses, routes or links (a routing socket also carries replies and misses).
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn drain_network_messages(socket: &std::os::fd::OwnedFd) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut buffer = [0u8; 8192];
    let mut relevant = false;
    loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock => Ok(relevant),
                io::ErrorKind::Interrupted => continue,
                // The kernel dropped messages (ENOBUFS): something surely changed.
                _ if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    relevant = true;
                    continue;
                }
                _ => Err(error),
            };
        }
        let message = &buffer[..n.unsigned_abs()];
        relevant |= reports_a_change(message);
    }
}

/// Netlink: the groups joined carry nothing but changes.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn reports_a_change(message: &[u8]) -> bool {
    !message.is_empty()
}

/// A routing socket message (`rt_msghdr`: length u16, version u8, type u8, …) of a kind
/// that changes what is reachable: route added, deleted or changed, address added or
/// removed, interface up or down.
#[cfg(target_vendor = "apple")]
fn reports_a_change(message: &[u8]) -> bool {
    const RTM_ADD: u8 = 0x1;
    const RTM_DELETE: u8 = 0x2;
    const RTM_CHANGE: u8 = 0x3;
    const RTM_NEWADDR: u8 = 0xc;
    const RTM_DELADDR: u8 = 0xd;
    const RTM_IFINFO: u8 = 0xe;
    matches!(
        message.get(3),
        Some(&(RTM_ADD | RTM_DELETE | RTM_CHANGE | RTM_NEWADDR | RTM_DELADDR | RTM_IFINFO))
    )
}

/// The IP Helper's change notifications, which call back on a system thread.
#[cfg(windows)]
mod windows_network {
    use std::ffi::c_void;
    use std::io;

    use tokio::sync::mpsc::UnboundedSender;
    use windows_sys::Win32::Foundation::{HANDLE, NO_ERROR};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        CancelMibChangeNotify2, MIB_IPFORWARD_ROW2, MIB_NOTIFICATION_TYPE,
        MIB_UNICASTIPADDRESS_ROW, NotifyRouteChange2, NotifyUnicastIpAddressChange,
    };
    use windows_sys::Win32::Networking::WinSock::AF_UNSPEC;

    /// The registrations; cancelled (and the sender freed) when dropped.
    pub struct Subscriptions {
        handles: Vec<HANDLE>,
        sender: *mut UnboundedSender<()>,
    }

    // SAFETY: the handles and the boxed sender are only touched on drop, by the owner.
    unsafe impl Send for Subscriptions {}

    impl Drop for Subscriptions {
        fn drop(&mut self) {
            for handle in self.handles.drain(..) {
                // SAFETY: a handle from a successful registration; cancelling waits for
                // callbacks in flight, so the sender outlives them.
                unsafe { CancelMibChangeNotify2(handle) };
            }
            // SAFETY: made by Box::into_raw below; no callback can run any more.
            drop(unsafe { Box::from_raw(self.sender) });
        }
    }

    unsafe extern "system" fn address_changed(
        context: *const c_void,
        _row: *const MIB_UNICASTIPADDRESS_ROW,
        _kind: MIB_NOTIFICATION_TYPE,
    ) {
        // SAFETY: the context is the boxed sender, alive until the registrations end.
        let sender = unsafe { &*context.cast::<UnboundedSender<()>>() };
        let _ = sender.send(());
    }

    unsafe extern "system" fn route_changed(
        context: *const c_void,
        _row: *const MIB_IPFORWARD_ROW2,
        _kind: MIB_NOTIFICATION_TYPE,
    ) {
        // SAFETY: as above.
        let sender = unsafe { &*context.cast::<UnboundedSender<()>>() };
        let _ = sender.send(());
    }

    pub fn subscribe(sender: UnboundedSender<()>) -> io::Result<Subscriptions> {
        let mut subscriptions = Subscriptions {
            handles: Vec::new(),
            sender: Box::into_raw(Box::new(sender)),
        };
        let context = subscriptions.sender.cast::<c_void>().cast_const();
        let mut handle: HANDLE = std::ptr::null_mut();
        // SAFETY: a valid callback and context, and a pointer to a local for the handle.
        let result = unsafe {
            NotifyUnicastIpAddressChange(
                AF_UNSPEC,
                Some(address_changed),
                context,
                false,
                &mut handle,
            )
        };
        if result != NO_ERROR {
            return Err(io::Error::from_raw_os_error(result as i32));
        }
        subscriptions.handles.push(handle);
        let mut handle: HANDLE = std::ptr::null_mut();
        // SAFETY: as above.
        let result = unsafe {
            NotifyRouteChange2(AF_UNSPEC, Some(route_changed), context, false, &mut handle)
        };
        if result != NO_ERROR {
            return Err(io::Error::from_raw_os_error(result as i32));
        }
        subscriptions.handles.push(handle);
        Ok(subscriptions)
    }
}

/// A listening socket a service manager passed to this process.
pub enum InheritedListener {
    Tcp(std::net::TcpListener),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixListener),
}

/// Why an inherited listening socket cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InheritedError {
    #[error(
        "no socket named {name:?} was passed to sluiced (passed: {passed}): name it with FileDescriptorName= in the .socket unit, or --fdname= for systemd-socket-activate"
    )]
    NotPassed { name: String, passed: String },
    #[error("the socket named {0:?} is not a listening stream socket")]
    NotListening(String),
    #[error("the socket named {name:?} cannot be used: {reason}")]
    Io { name: String, reason: String },
    #[cfg(not(unix))]
    #[error("taking listening sockets from a service manager is not supported on this system")]
    Unsupported,
}

/// A copy of the listening socket named `name` among those a service manager passed
/// (systemd's socket activation: `LISTEN_PID` naming this process, `LISTEN_FDS` sockets
/// from descriptor 3, `LISTEN_FDNAMES` their names). The passed sockets themselves stay
/// open for the life of the process, so a tunnel that stops and starts again finds its
/// socket still there, with the connections that queued meanwhile.
pub fn inherited_listener(name: &str) -> Result<InheritedListener, InheritedError> {
    #[cfg(unix)]
    {
        use std::os::fd::{FromRawFd, RawFd};
        static PASSED: std::sync::OnceLock<Vec<(String, RawFd)>> = std::sync::OnceLock::new();
        let passed = PASSED.get_or_init(|| {
            let for_us = std::env::var("LISTEN_PID")
                .ok()
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| pid == std::process::id());
            let count = std::env::var("LISTEN_FDS")
                .ok()
                .and_then(|n| n.parse::<RawFd>().ok())
                .filter(|_| for_us)
                .unwrap_or(0);
            let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
            let mut names = names.split(':');
            (0..count)
                .map(|i| {
                    let fd = 3 + i;
                    // SAFETY: a plain fcntl on a descriptor the service manager passed; it
                    // stays open (and out of any child) for the life of the process.
                    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                    let name = names.next().filter(|n| !n.is_empty()).unwrap_or("unknown");
                    (name.to_owned(), fd)
                })
                .collect()
        });
        let Some(&(_, fd)) = passed.iter().find(|(passed, _)| passed == name) else {
            let list: Vec<&str> = passed.iter().map(|(n, _)| n.as_str()).collect();
            return Err(InheritedError::NotPassed {
                name: name.to_owned(),
                passed: if list.is_empty() {
                    "none".to_owned()
                } else {
                    list.join(", ")
                },
            });
        };
        let io = |e: io::Error| InheritedError::Io {
            name: name.to_owned(),
            reason: e.to_string(),
        };
        let mut listening: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one int through valid pointers to locals.
        let ok = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&raw mut listening).cast(),
                &mut len,
            )
        } == 0;
        if !ok || listening == 0 {
            return Err(InheritedError::NotListening(name.to_owned()));
        }
        // SAFETY: a plain fcntl; the copy is a new descriptor owned below.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if copy < 0 {
            return Err(io(io::Error::last_os_error()));
        }
        // SAFETY: sockaddr_storage is plain old data; getsockname fills at most `len`.
        let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: as above, on the copy just made.
        let named = unsafe { libc::getsockname(copy, (&raw mut address).cast(), &mut len) } == 0;
        let error = (!named).then(io::Error::last_os_error);
        // SAFETY: `copy` is a fresh descriptor nobody else owns; the wrappers take it.
        let listener = unsafe {
            match i32::from(address.ss_family) {
                libc::AF_UNIX => {
                    InheritedListener::Unix(std::os::unix::net::UnixListener::from_raw_fd(copy))
                }
                _ => InheritedListener::Tcp(std::net::TcpListener::from_raw_fd(copy)),
            }
        };
        match error {
            Some(e) => Err(io(e)),
            None => Ok(listener),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = name;
        Err(InheritedError::Unsupported)
    }
}
