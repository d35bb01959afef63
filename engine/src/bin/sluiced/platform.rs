//! Everything in `sluiced` that depends on the operating system, in one place: forking into
//! the background, syslog, waiting for SIGTERM/SIGINT (and SIGHUP), the pid file, dropping
//! privileges, and the service manager's notification socket. A port to macOS or Windows touches this module and nothing else in sluiced.
//!
//! `unix` is what runs (Linux and the BSDs/macOS alike). `unsupported`, for every other
//! platform, is written but not built anywhere yet: each of its functions returns a clear
//! "not supported on this platform yet" error, so a port starts from a build that works
//! with `-F` and no `-u`/`--syslog`, and fills those in.

use std::io::{self, Read, Write};
use std::path::PathBuf;

#[cfg(unix)]
pub use unix::{
    NotifySocket, ReloadSignal, ReopenSignal, StopSignals, Syslog, daemonize, drop_privileges,
    monotonic_usec, open_log, restore_default_stop_signals, write_pid_file,
};
#[cfg(not(unix))]
pub use unsupported::{
    NotifySocket, ReloadSignal, ReopenSignal, StopSignals, Syslog, daemonize, drop_privileges,
    monotonic_usec, open_log, restore_default_stop_signals, write_pid_file,
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
    #[error("no user named {0:?}: check the name (getent passwd {0})")]
    NoSuchUser(String),
    #[error("no group named {0:?}: check the name (getent group {0})")]
    NoSuchGroup(String),
    #[error("looking up {what} {name:?} failed: {source}")]
    Lookup {
        what: &'static str,
        name: String,
        source: io::Error,
    },
    #[error(
        "{call} failed: {source}; -u needs sluiced to start as root (or with CAP_SETUID and CAP_SETGID)"
    )]
    Switch {
        call: &'static str,
        source: io::Error,
    },
    #[cfg(not(unix))]
    #[error("-u (switching to another user) is not supported on this platform yet")]
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
        pub fn install() -> io::Result<ReloadSignal> {
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

#[cfg(not(unix))]
mod unsupported {
    use std::io;
    use std::path::Path;

    use super::{PidFileError, Priority, PrivilegeError, StartupReport};

    fn unsupported(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{what} is not supported on this platform yet"),
        )
    }

    pub fn daemonize() -> io::Result<StartupReport> {
        Err(unsupported(
            "running in the background (start sluiced with -F, under a service manager)",
        ))
    }

    pub struct Syslog(());

    impl Syslog {
        pub fn open() -> io::Result<Syslog> {
            Err(unsupported("--syslog"))
        }

        pub fn write(&self, _priority: Priority, _message: &str) {}
    }

    pub struct StopSignals(());

    impl StopSignals {
        pub fn install() -> io::Result<StopSignals> {
            Err(unsupported("waiting for a stop signal"))
        }

        pub async fn next(&mut self) {
            std::future::pending::<()>().await
        }
    }

    pub fn restore_default_stop_signals() {}

    pub struct ReloadSignal(());

    impl ReloadSignal {
        pub fn install() -> io::Result<ReloadSignal> {
            Err(unsupported("reloading on a signal"))
        }

        pub async fn next(&mut self) {
            std::future::pending::<()>().await
        }
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
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
    }

    pub struct NotifySocket(());

    impl NotifySocket {
        pub fn open(_value: &std::ffi::OsStr) -> io::Result<NotifySocket> {
            Err(unsupported("a service manager's notification socket"))
        }

        pub fn send(&self, _message: &str) -> io::Result<()> {
            Ok(())
        }
    }

    pub fn monotonic_usec() -> u64 {
        0
    }

    pub fn write_pid_file(path: &Path) -> Result<(), PidFileError> {
        Err(PidFileError::Io {
            path: path.to_owned(),
            source: unsupported("a pid file"),
        })
    }

    pub fn drop_privileges(_spec: &str) -> Result<(), PrivilegeError> {
        Err(PrivilegeError::Unsupported)
    }
}
