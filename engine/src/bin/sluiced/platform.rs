//! Everything in `sluiced` that depends on the operating system, in one place: forking into
//! the background, syslog, waiting for a stop (SIGTERM/SIGINT; Windows: Ctrl+C, Ctrl+Break,
//! the console closing, shutdown) and for a reload (SIGHUP; Windows: `sluiced --reload`
//! through a named event), the pid file, dropping privileges, and the service manager's
//! notification socket.
//!
//! `unix` runs on Linux (built and tested) and macOS (type-checked and linted, not run).
//! `windows` is built, and runs under wine in CI: there is no fork (sluiced always stays in
//! the foreground), no syslog and no `-u` (both refused when the command line is read),
//! no systemd socket.

#[cfg(unix)]
use std::io::Read;
use std::io::{self, Write};
use std::path::PathBuf;

/// What asks a running `sluiced --config` to reread its file, as its log names it.
#[cfg(unix)]
pub const RELOAD_REQUEST: &str = "SIGHUP";
#[cfg(windows)]
pub const RELOAD_REQUEST: &str = "sluiced --reload";

/// How a new key file is kept from other users, as `--generate-key` says.
#[cfg(unix)]
pub const OWNER_ONLY: &str = "mode 0600";
#[cfg(windows)]
pub const OWNER_ONLY: &str = "an access list naming only you";

#[cfg(unix)]
pub use unix::{
    NotifySocket, ReloadSignal, ReopenSignal, StopSignals, Syslog, daemonize, default_pid_file,
    drop_privileges, inetd_connection, monotonic_usec, open_log, refuse_unsupported,
    request_reload, restore_default_stop_signals, write_pid_file,
};
#[cfg(windows)]
pub use windows::{
    NotifySocket, ReloadSignal, ReopenSignal, StopSignals, Syslog, daemonize, default_pid_file,
    drop_privileges, inetd_connection, monotonic_usec, open_log, refuse_unsupported,
    request_reload, restore_default_stop_signals, write_pid_file,
};

/// How serious a log line is (syslog's priority).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Error,
    Warning,
    Info,
}

/// Why `-u` could not be applied. Every case stops sluiced: it must never serve with more
/// privileges than it was asked to keep.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[cfg(unix)]
    #[error("no user named {0:?}: check the name (getent passwd {0})")]
    NoSuchUser(String),
    #[cfg(unix)]
    #[error("no group named {0:?}: check the name (getent group {0})")]
    NoSuchGroup(String),
    #[cfg(unix)]
    #[error("looking up {what} {name:?} failed: {source}")]
    Lookup {
        what: &'static str,
        name: String,
        source: io::Error,
    },
    #[cfg(unix)]
    #[error(
        "{call} failed: {source}; -u needs sluiced to start as root (or with CAP_SETUID and CAP_SETGID)"
    )]
    Switch {
        call: &'static str,
        source: io::Error,
    },
    #[cfg(windows)]
    #[error(
        "-u (switching to another user) is not available on Windows: run sluiced as the account it should serve as"
    )]
    Unsupported,
}

/// Why the pid file was not written.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Refused: following it would let whoever made the link choose the file sluiced
    /// overwrites (as root, before it drops privileges).
    #[error(
        "pid file {}: it is a symbolic link, which sluiced does not follow (it could point at any file, and that file was left untouched): remove the link, or give -p another path",
        .0.display()
    )]
    Symlink(PathBuf),
    #[error("pid file {}: it is not a regular file: remove it, or give -p another path", .0.display())]
    NotAFile(PathBuf),
    #[error("cannot write pid file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// How a daemonized child tells the waiting parent that start-up worked or failed: one
/// byte, 0 for success, or 1 followed by the message. Without a parent (`-F`) it does
/// nothing.
pub struct StartupReport {
    pipe: Option<io::PipeWriter>,
}

impl StartupReport {
    pub fn foreground() -> StartupReport {
        StartupReport { pipe: None }
    }

    #[cfg(unix)]
    fn to_parent(pipe: io::PipeWriter) -> StartupReport {
        StartupReport { pipe: Some(pipe) }
    }

    pub fn success(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(&[0]);
        }
    }

    pub fn failure(&mut self, message: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(&[1]);
            let _ = pipe.write_all(message.as_bytes());
        }
    }
}

/// The parent's side of daemonizing: waits for the child's report and exits with it.
#[cfg(unix)]
fn exit_with_report_of_child(mut pipe: io::PipeReader) -> ! {
    let mut report = Vec::new();
    let _ = pipe.read_to_end(&mut report);
    match report.split_first() {
        Some((0, _)) => std::process::exit(0),
        Some((_, message)) => {
            eprintln!("sluiced: {}", String::from_utf8_lossy(message));
            std::process::exit(1);
        }
        None => {
            eprintln!("sluiced: the daemon exited during start-up");
            std::process::exit(1);
        }
    }
}

#[cfg(unix)]
mod unix {
    use std::ffi::{CStr, CString};
    use std::fs::{File, OpenOptions};
    use std::io::{self, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    use tokio::signal::unix::{Signal, SignalKind, signal};

    use super::{PidFileError, Priority, PrivilegeError, StartupReport};

    /// Forks. The parent waits for the child's report and exits with it; the child
    /// returns, in a new session, with standard input on /dev/null. Must run before any
    /// thread starts. A child that cannot finish detaching reports that to the parent and
    /// exits.
    pub fn daemonize() -> io::Result<StartupReport> {
        // std's pipe is close-on-exec on every Unix (pipe2 is Linux-only).
        let (read_end, write_end) = io::pipe()?;
        // SAFETY: no other thread exists yet (sluiced forks before starting its runtime).
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                drop(read_end);
                let mut report = StartupReport::to_parent(write_end);
                if let Err(e) = detach() {
                    report.failure(&format!("cannot daemonize: {e}"));
                    std::process::exit(1);
                }
                Ok(report)
            }
            _child => {
                drop(write_end);
                super::exit_with_report_of_child(read_end)
            }
        }
    }

    /// The child's half: a session of its own, standard input from /dev/null.
    fn detach() -> io::Result<()> {
        // SAFETY: plain system call on this process.
        if unsafe { libc::setsid() } == -1 {
            return Err(context("setsid", io::Error::last_os_error()));
        }
        let null = File::open("/dev/null").map_err(|e| context("opening /dev/null", e))?;
        // SAFETY: both descriptors are open; dup2 replaces standard input.
        if unsafe { libc::dup2(null.as_raw_fd(), 0) } == -1 {
            return Err(context(
                "dup2 onto standard input",
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn context(what: &str, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{what}: {e}"))
    }

    /// The system log, opened once as "sluiced" (daemon facility, with the pid).
    pub struct Syslog(());

    impl Syslog {
        pub fn open() -> io::Result<Syslog> {
            // SAFETY: the identifier is a static NUL-terminated string, as openlog
            // requires (it keeps the pointer).
            unsafe {
                libc::openlog(c"sluiced".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
            }
            Ok(Syslog(()))
        }

        pub fn write(&self, priority: Priority, message: &str) {
            let priority = match priority {
                Priority::Error => libc::LOG_ERR,
                Priority::Warning => libc::LOG_WARNING,
                Priority::Info => libc::LOG_INFO,
            };
            // Interior NULs cannot come from our messages; drop the line rather than panic.
            if let Ok(text) = CString::new(message) {
                // SAFETY: "%s" with one valid C string argument.
                unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
            }
        }
    }

    /// SIGTERM and SIGINT, caught from the moment this is installed (inside the runtime).
    pub struct StopSignals {
        term: Signal,
        int: Signal,
    }

    impl StopSignals {
        pub fn install() -> io::Result<StopSignals> {
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }

        /// Waits for the next SIGTERM or SIGINT.
        pub async fn next(&mut self) {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        }
    }

    /// SIGHUP, caught from the moment this is installed: `sluiced --config` rereads its file.
    pub struct ReloadSignal(Signal);

    impl ReloadSignal {
        /// Catches SIGHUP whether or not there is a config file to reread (without one,
        /// a SIGHUP is logged as ignored, not fatal).
        pub fn install(_config: Option<&Path>) -> io::Result<ReloadSignal> {
            signal(SignalKind::hangup()).map(ReloadSignal)
        }

        /// Waits for the next SIGHUP.
        pub async fn next(&mut self) {
            self.0.recv().await;
        }
    }

    /// SIGUSR1, caught from the moment this is installed: the audit log is reopened.
    pub struct ReopenSignal(Signal);

    impl ReopenSignal {
        pub fn install() -> io::Result<ReopenSignal> {
            signal(SignalKind::user_defined1()).map(ReopenSignal)
        }

        /// Waits for the next SIGUSR1.
        pub async fn next(&mut self) {
            self.0.recv().await;
        }
    }

    /// The connection a super-server passed on standard input: the socket itself when
    /// standard input is one (inetd, systemd's `Accept=yes`, tcpsvd), else (a pipe, a
    /// terminal) standard input and output bridged through a socket pair, as spipe does.
    pub fn inetd_connection() -> io::Result<sluice_engine::AcceptedConnection> {
        use sluice_engine::AcceptedConnection;
        use std::os::fd::FromRawFd;
        // SAFETY: stat is plain old data; fstat fills it for descriptor 0.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(0, &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if stat.st_mode & libc::S_IFMT == libc::S_IFSOCK {
            // SAFETY: a plain fcntl; the copy is a new descriptor owned below.
            let copy = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: sockaddr_storage is plain old data; getsockname fills at most `len`.
            let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: as above, on the copy.
            let named =
                unsafe { libc::getsockname(copy, (&raw mut address).cast(), &mut len) } == 0;
            // SAFETY: `copy` is a fresh descriptor nobody else owns; the wrapper takes it.
            let connection = unsafe {
                if named && i32::from(address.ss_family) == libc::AF_UNIX {
                    AcceptedConnection::Unix(std::os::unix::net::UnixStream::from_raw_fd(copy))
                } else {
                    AcceptedConnection::Tcp(std::net::TcpStream::from_raw_fd(copy))
                }
            };
            return Ok(connection);
        }
        let (ours, bridge) = std::os::unix::net::UnixStream::pair()?;
        let mut to_bridge = bridge.try_clone()?;
        std::thread::Builder::new()
            .name("sluiced-stdin".into())
            .spawn(move || {
                let _ = io::copy(&mut io::stdin().lock(), &mut to_bridge);
                let _ = to_bridge.shutdown(std::net::Shutdown::Write);
            })?;
        let mut from_bridge = bridge;
        std::thread::Builder::new()
            .name("sluiced-stdout".into())
            .spawn(move || {
                let _ = io::copy(&mut from_bridge, &mut io::stdout().lock());
                let _ = io::stdout().flush();
            })?;
        Ok(AcceptedConnection::Unix(ours))
    }

    /// Opens a log file to append to, creating it readable by its owner and group (mode
    /// 0640: an auditor's group, not everyone), never through a symbolic link.
    pub fn open_log(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    }

    /// The service manager's datagram socket (`$NOTIFY_SOCKET`, systemd's `sd_notify`): a
    /// path, or on Linux an abstract name written `@name`.
    pub struct NotifySocket {
        socket: std::os::unix::net::UnixDatagram,
        address: std::os::unix::net::SocketAddr,
    }

    impl NotifySocket {
        pub fn open(value: &std::ffi::OsStr) -> io::Result<NotifySocket> {
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::net::{SocketAddr, UnixDatagram};
            let address = match value.as_bytes().split_first() {
                #[cfg(target_os = "linux")]
                Some((b'@', name)) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name)?
                }
                Some((b'/', _)) => SocketAddr::from_pathname(value)?,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "NOTIFY_SOCKET={} is neither a socket path nor an abstract name",
                            value.to_string_lossy()
                        ),
                    ));
                }
            };
            Ok(NotifySocket {
                socket: UnixDatagram::unbound()?,
                address,
            })
        }

        pub fn send(&self, message: &str) -> io::Result<()> {
            self.socket
                .send_to_addr(message.as_bytes(), &self.address)
                .map(drop)
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

    /// Gives SIGTERM and SIGINT their default action back (a second one kills at once,
    /// as in spiped).
    pub fn restore_default_stop_signals() {
        // SAFETY: restoring the default disposition of two signals is always sound.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }

    /// Options this system cannot honour, refused when the command line is read: none.
    pub fn refuse_unsupported(_user: bool, _syslog: bool) -> Result<(), String> {
        Ok(())
    }

    /// The pid file a daemon writes without `-p`: `SOURCE.pid`, as spiped does.
    pub fn default_pid_file(source: &str) -> Option<String> {
        Some(format!("{source}.pid"))
    }

    /// `sluiced --reload` is Windows' stand-in for SIGHUP; here SIGHUP itself is the way.
    pub fn request_reload(config: &Path) -> Result<String, String> {
        Err(format!(
            "--reload is for Windows, which has no SIGHUP; here send SIGHUP to the sluiced running {}: kill -HUP $(cat PIDFILE), or systemctl reload",
            config.display()
        ))
    }

    /// Writes this process's id to `path` (mode 0644 if created), never through a symbolic
    /// link: the file is opened with O_NOFOLLOW, so a link planted at the path (to
    /// /etc/passwd, say) is refused and what it points at is left untouched.
    pub fn write_pid_file(path: &Path) -> Result<(), PidFileError> {
        let io_error = |source| PidFileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            // O_NONBLOCK: a FIFO at the path must not hang start-up (it is refused below).
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => PidFileError::Symlink(path.to_owned()),
                Some(libc::ENXIO) => PidFileError::NotAFile(path.to_owned()),
                _ => io_error(e),
            })?;
        // Truncated only once it is known to be a regular file of our choosing.
        if !file.metadata().map_err(io_error)?.is_file() {
            return Err(PidFileError::NotAFile(path.to_owned()));
        }
        file.set_len(0).map_err(io_error)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io_error)
    }

    /// `-u user`, `-u :group` or `-u user:group`: switches the whole process (glibc and
    /// the BSDs apply these calls to every thread) to them; the supplementary groups
    /// become just the new group.
    pub fn drop_privileges(spec: &str) -> Result<(), PrivilegeError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (Some(u).filter(|u| !u.is_empty()), Some(g)),
            None => (Some(spec), None),
        };
        let user_ids = user.map(lookup_user).transpose()?;
        let gid = match group {
            Some(g) => Some(lookup_group(g)?),
            None => user_ids.map(|(_, gid)| gid),
        };
        if let Some(gid) = gid {
            // SAFETY: plain system calls with a valid one-element group list.
            unsafe {
                if libc::setgroups(1, &gid) != 0 {
                    return Err(switch_error("setgroups"));
                }
                if libc::setgid(gid) != 0 {
                    return Err(switch_error("setgid"));
                }
            }
        }
        if let Some((uid, _)) = user_ids {
            // SAFETY: as above.
            if unsafe { libc::setuid(uid) } != 0 {
                return Err(switch_error("setuid"));
            }
        }
        Ok(())
    }

    fn switch_error(call: &'static str) -> PrivilegeError {
        PrivilegeError::Switch {
            call,
            source: io::Error::last_os_error(),
        }
    }

    /// The buffer getpwnam_r/getgrnam_r may need is unbounded in principle (a group with
    /// thousands of members); beyond this much, the look-up is reported as failed.
    const MAX_LOOKUP_BUFFER: usize = 1 << 20;

    /// What one call of a reentrant look-up gave.
    enum Lookup<T> {
        Found(T),
        Missing,
        BufferTooSmall,
        Failed(io::Error),
    }

    /// Calls `call` with a buffer that doubles (from the system's suggested size) as long
    /// as it answers ERANGE.
    fn with_growing_buffer<T>(
        suggested: libc::c_int,
        mut call: impl FnMut(&mut [libc::c_char]) -> Lookup<T>,
    ) -> Result<Option<T>, io::Error> {
        // SAFETY: sysconf only reads a configuration value.
        let hint = unsafe { libc::sysconf(suggested) };
        let mut len = usize::try_from(hint)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(1024)
            .min(MAX_LOOKUP_BUFFER);
        loop {
            let mut buffer = vec![0 as libc::c_char; len];
            match call(&mut buffer) {
                Lookup::Found(value) => return Ok(Some(value)),
                Lookup::Missing => return Ok(None),
                Lookup::BufferTooSmall if len < MAX_LOOKUP_BUFFER => len *= 2,
                Lookup::BufferTooSmall => {
                    return Err(io::Error::other(format!(
                        "the entry needs more than {MAX_LOOKUP_BUFFER} bytes"
                    )));
                }
                Lookup::Failed(e) => return Err(e),
            }
        }
    }

    /// The meaning of a reentrant look-up's return code. POSIX lets "no such entry" come
    /// back as 0 with no result, or as one of several error numbers.
    fn classify<T>(rc: libc::c_int, found: Option<T>) -> Lookup<T> {
        match (rc, found) {
            (0, Some(value)) => Lookup::Found(value),
            (0, None) | (libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM, _) => {
                Lookup::Missing
            }
            (libc::ERANGE, _) => Lookup::BufferTooSmall,
            (e, _) => Lookup::Failed(io::Error::from_raw_os_error(e)),
        }
    }

    fn c_name(name: &str) -> Option<CString> {
        CString::new(name).ok()
    }

    fn lookup_user(name: &str) -> Result<(libc::uid_t, libc::gid_t), PrivilegeError> {
        let missing = || PrivilegeError::NoSuchUser(name.to_owned());
        let c_name: &CStr = &c_name(name).ok_or_else(missing)?;
        with_growing_buffer(libc::_SC_GETPW_R_SIZE_MAX, |buffer| {
            // SAFETY: all-zero is a valid passwd (integers and null pointers).
            let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call; the strings getpwnam_r stores
            // point into `buffer`, which outlives the ids read from `entry` below.
            let rc = unsafe {
                libc::getpwnam_r(
                    c_name.as_ptr(),
                    &mut entry,
                    buffer.as_mut_ptr(),
                    buffer.len(),
                    &mut result,
                )
            };
            classify(
                rc,
                (!result.is_null()).then_some((entry.pw_uid, entry.pw_gid)),
            )
        })
        .map_err(|source| PrivilegeError::Lookup {
            what: "user",
            name: name.to_owned(),
            source,
        })?
        .ok_or_else(missing)
    }

    fn lookup_group(name: &str) -> Result<libc::gid_t, PrivilegeError> {
        let missing = || PrivilegeError::NoSuchGroup(name.to_owned());
        let c_name: &CStr = &c_name(name).ok_or_else(missing)?;
        with_growing_buffer(libc::_SC_GETGR_R_SIZE_MAX, |buffer| {
            // SAFETY: all-zero is a valid group (integers and null pointers).
            let mut entry: libc::group = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::group = std::ptr::null_mut();
            // SAFETY: as in lookup_user.
            let rc = unsafe {
                libc::getgrnam_r(
                    c_name.as_ptr(),
                    &mut entry,
                    buffer.as_mut_ptr(),
                    buffer.len(),
                    &mut result,
                )
            };
            classify(rc, (!result.is_null()).then_some(entry.gr_gid))
        })
        .map_err(|source| PrivilegeError::Lookup {
            what: "group",
            name: name.to_owned(),
            source,
        })?
        .ok_or_else(missing)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn looks_up_root_and_refuses_unknown_names() {
            assert_eq!(lookup_user("root").unwrap(), (0, 0));
            assert_eq!(lookup_group("root").unwrap(), 0);
            assert!(matches!(
                lookup_user("no-such-user-sluice"),
                Err(PrivilegeError::NoSuchUser(_))
            ));
            assert!(matches!(
                lookup_group("no-such-group-sluice"),
                Err(PrivilegeError::NoSuchGroup(_))
            ));
            assert!(matches!(
                lookup_user("nul\0inside"),
                Err(PrivilegeError::NoSuchUser(_))
            ));
        }

        #[test]
        fn a_small_buffer_grows_until_the_entry_fits() {
            let mut sizes = Vec::new();
            let found = with_growing_buffer(libc::_SC_GETPW_R_SIZE_MAX, |buffer| {
                sizes.push(buffer.len());
                if buffer.len() < 8 * sizes[0] {
                    Lookup::BufferTooSmall
                } else {
                    Lookup::Found(buffer.len())
                }
            })
            .unwrap();
            assert_eq!(sizes.len(), 4, "{sizes:?}");
            assert_eq!(found, Some(8 * sizes[0]));
            assert!(sizes.windows(2).all(|w| w[1] == 2 * w[0]), "{sizes:?}");
        }

        #[test]
        fn a_buffer_that_never_suffices_is_an_error() {
            let result =
                with_growing_buffer::<()>(libc::_SC_GETGR_R_SIZE_MAX, |_| Lookup::BufferTooSmall);
            assert!(result.is_err());
        }
    }
}

#[cfg(windows)]
mod windows {
    use std::fs::OpenOptions;
    use std::io::{self, Write};
    use std::os::windows::fs::OpenOptionsExt;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
    use std::path::Path;

    use sha2::{Digest, Sha256};
    use tokio::signal::windows::{CtrlBreak, CtrlC, CtrlClose, CtrlShutdown};
    use windows_sys::Win32::Foundation::{
        ERROR_FILE_NOT_FOUND, GetLastError, HANDLE, WAIT_OBJECT_0,
    };
    use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_OPEN_REPARSE_POINT;
    use windows_sys::Win32::System::Console::{
        CTRL_BREAK_EVENT, CTRL_C_EVENT, SetConsoleCtrlHandler,
    };
    use windows_sys::Win32::System::Threading::{
        CreateEventW, EVENT_MODIFY_STATE, ExitProcess, INFINITE, OpenEventW, SetEvent,
        WaitForSingleObject,
    };

    use super::{PidFileError, Priority, PrivilegeError, StartupReport};

    /// Windows has no fork: sluiced stays in the foreground whether or not `-F` was
    /// given (`-F` then only means no pid file). Run it in the background with `start /b`,
    /// or as a service through a service wrapper.
    pub fn daemonize() -> io::Result<StartupReport> {
        Ok(StartupReport::foreground())
    }

    /// `-u` and `--syslog`, refused before anything starts: Windows has neither a user to
    /// switch to after binding nor syslog.
    pub fn refuse_unsupported(user: bool, syslog: bool) -> Result<(), String> {
        if user {
            return Err(PrivilegeError::Unsupported.to_string());
        }
        if syslog {
            return Err("--syslog is not available on Windows, which has no syslog: sluiced logs to standard error; redirect it to a file, or let the service wrapper that runs sluiced keep it".to_owned());
        }
        Ok(())
    }

    /// No default pid file: spiped's `SOURCE.pid` (`[127.0.0.1]:8025.pid`) is no valid
    /// Windows file name (a colon names a stream of a file). Give `-p` for one.
    pub fn default_pid_file(_source: &str) -> Option<String> {
        None
    }

    /// Never constructed: `--syslog` is refused when the command line is read.
    pub struct Syslog(());

    impl Syslog {
        pub fn open() -> io::Result<Syslog> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "--syslog is not available on Windows",
            ))
        }

        pub fn write(&self, _priority: Priority, _message: &str) {}
    }

    /// Ctrl+C and Ctrl+Break (a console, or a service wrapper stopping sluiced), the
    /// console window closing, and the system shutting down. A user logging off is not a
    /// stop: sluiced run as a service outlives the sessions of those who log on.
    pub struct StopSignals {
        c: CtrlC,
        brk: CtrlBreak,
        close: CtrlClose,
        shutdown: CtrlShutdown,
    }

    impl StopSignals {
        pub fn install() -> io::Result<StopSignals> {
            use tokio::signal::windows;
            Ok(StopSignals {
                c: windows::ctrl_c()?,
                brk: windows::ctrl_break()?,
                close: windows::ctrl_close()?,
                shutdown: windows::ctrl_shutdown()?,
            })
        }

        /// Waits for the next stop. For closing and shutdown, Windows ends the process a
        /// few seconds after asking (tokio holds it that long), so the drain may be cut
        /// short then.
        pub async fn next(&mut self) {
            tokio::select! {
                _ = self.c.recv() => {}
                _ = self.brk.recv() => {}
                _ = self.close.recv() => {}
                _ = self.shutdown.recv() => {}
            }
        }
    }

    /// After the first stop, a second Ctrl+C or Ctrl+Break ends the process at once, as a
    /// second SIGTERM/SIGINT does on Unix. Handlers run last-added first; this one ends
    /// the process before tokio's would take the event.
    pub fn restore_default_stop_signals() {
        unsafe extern "system" fn exit_now(event: u32) -> i32 {
            if event == CTRL_C_EVENT || event == CTRL_BREAK_EVENT {
                // SAFETY: ends this process, which is what a second stop asks for.
                unsafe { ExitProcess(1) }
            }
            0
        }
        // SAFETY: adds a handler that lives as long as the program (a plain function).
        unsafe {
            SetConsoleCtrlHandler(Some(exit_now), 1);
        }
    }

    /// The namespaces a reload event may live in, tried in this order: `Global\` where
    /// sluiced may create objects there (a service, or an administrator), so that a
    /// prompt in another session reaches it; else `Local\`, this logon session's.
    const NAMESPACES: [&str; 2] = ["Global", "Local"];

    /// The name of the event `sluiced --reload --config FILE` sets and the sluiced
    /// running FILE waits on, in `namespace`: after a hash of the file's full path (case
    /// folded: Windows paths are case-insensitive).
    fn reload_event_name(namespace: &str, config: &Path) -> io::Result<Vec<u16>> {
        let full = std::fs::canonicalize(config)?;
        let folded = full.to_string_lossy().to_lowercase();
        let digest = Sha256::digest(folded.as_bytes());
        let name = format!(
            "{namespace}\\org.sluice.sluiced.reload.{}",
            sluice_engine::hex(&digest[..16])
        );
        Ok(name.encode_utf16().chain([0]).collect())
    }

    /// Creates the reload event in the first namespace that lets us, with an access list
    /// that lets the system, administrators and the user who started sluiced set it
    /// (a service's default list would keep administrators out).
    fn create_reload_event(config: &Path) -> io::Result<OwnedHandle> {
        let attributes = sluice_engine::SecurityAttributes::from_sddl(&format!(
            "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;{})",
            sluice_engine::current_user_sid_string()?
        ))?;
        let mut refused = io::Error::from(io::ErrorKind::NotFound);
        for namespace in NAMESPACES {
            let name = reload_event_name(namespace, config)?;
            // SAFETY: valid attributes, auto-reset, not set, a NUL-terminated name.
            let event = unsafe { CreateEventW(attributes.as_ptr(), 0, 0, name.as_ptr()) };
            if !event.is_null() {
                // SAFETY: a handle we own, closed on drop.
                return Ok(unsafe { OwnedHandle::from_raw_handle(event as RawHandle) });
            }
            // Global\ needs SeCreateGlobalPrivilege: try the session's namespace next.
            refused = io::Error::last_os_error();
        }
        Err(refused)
    }

    /// What Windows has instead of SIGHUP for `sluiced --config`: an event named after
    /// the config file, which `sluiced --reload --config FILE` sets. A thread waits on it
    /// and hands each setting to the daemon's loop.
    pub struct ReloadSignal(Option<tokio::sync::mpsc::UnboundedReceiver<()>>);

    impl ReloadSignal {
        /// Creates the config's event (or opens it, if another sluiced runs the same
        /// file: then one of them takes each reload); without a config file there is
        /// nothing to wait for.
        pub fn install(config: Option<&Path>) -> io::Result<ReloadSignal> {
            let Some(config) = config else {
                return Ok(ReloadSignal(None));
            };
            let event = create_reload_event(config)?;
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            std::thread::Builder::new()
                .name("sluiced-reload".into())
                .spawn(move || {
                    loop {
                        // SAFETY: an open event handle; waiting changes nothing else.
                        let woke = unsafe {
                            WaitForSingleObject(event.as_raw_handle() as HANDLE, INFINITE)
                        };
                        if woke != WAIT_OBJECT_0 || sender.send(()).is_err() {
                            return;
                        }
                    }
                })?;
            Ok(ReloadSignal(Some(receiver)))
        }

        /// Waits for the next `sluiced --reload`.
        pub async fn next(&mut self) {
            let arrived = match &mut self.0 {
                Some(receiver) => receiver.recv().await.is_some(),
                None => false,
            };
            if !arrived {
                // No config, or the waiting thread ended: no reload will come.
                self.0 = None;
                std::future::pending::<()>().await;
            }
        }
    }

    /// inetd and socket units with Accept=yes are Unix's: a connection as standard input.
    pub fn inetd_connection() -> io::Result<sluice_engine::AcceptedConnection> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--inetd is not available on Windows, which passes no connection as standard input: run sluiced -d or -e with -s instead",
        ))
    }

    /// No SIGUSR1 here: the audit log is reopened with the reload instead.
    pub struct ReopenSignal(());

    impl ReopenSignal {
        pub fn install() -> io::Result<ReopenSignal> {
            Ok(ReopenSignal(()))
        }

        pub async fn next(&mut self) {
            std::future::pending::<()>().await
        }
    }

    pub fn open_log(path: &Path) -> io::Result<std::fs::File> {
        OpenOptions::new().append(true).create(true).open(path)
    }

    /// `sluiced --reload --config FILE`: sets the event of the sluiced running FILE (a
    /// service's, in the global namespace, or one in this session). What the reload did,
    /// that sluiced logs.
    pub fn request_reload(config: &Path) -> Result<String, String> {
        let mut denied = None;
        for namespace in NAMESPACES {
            let name = reload_event_name(namespace, config).map_err(|e| {
                format!(
                    "--reload: cannot read config file {}: {e}",
                    config.display()
                )
            })?;
            // SAFETY: a NUL-terminated name; the handle, if any, is ours.
            let event = unsafe { OpenEventW(EVENT_MODIFY_STATE, 0, name.as_ptr()) };
            if event.is_null() {
                // SAFETY: reads this thread's last error, nothing else.
                let error = unsafe { GetLastError() };
                if error != ERROR_FILE_NOT_FOUND {
                    denied = Some(io::Error::from_raw_os_error(error as i32));
                }
                continue;
            }
            // SAFETY: a handle we own, closed on drop.
            let event = unsafe { OwnedHandle::from_raw_handle(event as RawHandle) };
            // SAFETY: an open event handle with the right to set it.
            if unsafe { SetEvent(event.as_raw_handle() as HANDLE) } == 0 {
                return Err(format!(
                    "--reload: cannot signal the sluiced running {}: {}",
                    config.display(),
                    io::Error::last_os_error()
                ));
            }
            return Ok(format!(
                "asked the sluiced running {} to reread it; its log says what changed",
                config.display()
            ));
        }
        Err(match denied {
            Some(e) => format!(
                "--reload: cannot reach the sluiced running {} ({e}): run this as the user who started it, or as an administrator",
                config.display()
            ),
            None => format!(
                "--reload: no sluiced is running {}: start one with sluiced --config {}",
                config.display(),
                config.display()
            ),
        })
    }

    /// Never constructed: systemd's notification socket does not exist on Windows.
    pub struct NotifySocket(());

    impl NotifySocket {
        pub fn open(_value: &std::ffi::OsStr) -> io::Result<NotifySocket> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "NOTIFY_SOCKET is systemd's, which Windows does not have",
            ))
        }

        pub fn send(&self, _message: &str) -> io::Result<()> {
            Ok(())
        }
    }

    /// Only ever sent through a [`NotifySocket`], which Windows never has.
    pub fn monotonic_usec() -> u64 {
        0
    }

    /// Writes this process's id to `path`, never through a symbolic link or junction: one
    /// at the path is refused, and the file is opened as itself (not what a link raced in
    /// would point at), so whatever such a link names is left untouched.
    pub fn write_pid_file(path: &Path) -> Result<(), PidFileError> {
        let io_error = |source| PidFileError::Io {
            path: path.to_owned(),
            source,
        };
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(PidFileError::Symlink(path.to_owned()));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)
            .map_err(io_error)?;
        let meta = file.metadata().map_err(io_error)?;
        if meta.file_type().is_symlink() {
            return Err(PidFileError::Symlink(path.to_owned()));
        }
        if !meta.is_file() {
            return Err(PidFileError::NotAFile(path.to_owned()));
        }
        file.set_len(0).map_err(io_error)?;
        file.write_all(format!("{}\r\n", std::process::id()).as_bytes())
            .map_err(io_error)
    }

    /// Never reached: `-u` is refused when the command line is read.
    pub fn drop_privileges(_spec: &str) -> Result<(), PrivilegeError> {
        Err(PrivilegeError::Unsupported)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// `sluiced --reload --config FILE` reaches the sluiced that runs FILE, whichever
        /// way FILE is written, and no other.
        #[tokio::test]
        async fn a_reload_request_reaches_the_sluiced_running_that_config() {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("tunnels.ron");
            let other = dir.path().join("other.ron");
            std::fs::write(&config, "").unwrap();
            std::fs::write(&other, "").unwrap();
            assert!(
                request_reload(&config)
                    .unwrap_err()
                    .contains("no sluiced is running")
            );

            let mut reload = ReloadSignal::install(Some(&config)).unwrap();
            let upper = dir.path().join("TUNNELS.RON");
            request_reload(&upper).unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(10), reload.next())
                .await
                .expect("the reload request arrives");
            assert!(request_reload(&other).is_err(), "another file's sluiced");
        }

        #[test]
        fn user_switching_and_syslog_are_refused_by_name() {
            assert!(refuse_unsupported(true, false).unwrap_err().contains("-u"));
            assert!(
                refuse_unsupported(false, true)
                    .unwrap_err()
                    .contains("--syslog")
            );
            assert!(refuse_unsupported(false, false).is_ok());
        }

        #[test]
        fn the_pid_file_is_written_and_a_link_refused() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sluiced.pid");
            write_pid_file(&path).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.trim(), std::process::id().to_string());
            assert!(matches!(
                write_pid_file(dir.path()),
                Err(PidFileError::NotAFile(_) | PidFileError::Io { .. })
            ));
        }
    }
}
