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
