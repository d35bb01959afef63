//! Sluice's test kit, shared by the engine's and the app's tests: loopback addresses that
//! were free a moment ago (and daemons started with a retry when one was taken), echo
//! servers, clients that send, half-close and read to the end, guarded child processes with
//! deadline-bound waits for their log lines and listeners, /proc readers, key files,
//! a small HTTP client, a real OpenSSH server ([`sshd`]), and the rule for missing
//! prerequisites ([`require`]). Everything runs on loopback and in temporary directories.
//! Unix only (signals, UNIX sockets, /proc): on other systems the crate is empty, and the
//! tests that use it are `cfg(unix)`. Windows is tested by the engine's unit tests under
//! wine and by `scripts/wine-interop`.

#![cfg(unix)]
#![allow(clippy::missing_panics_doc)]

pub mod sshd;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

// ---------------------------------------------------------------------------------------
// Prerequisites

/// Whether a test can run: `available` says whether `what` is there. Missing under CI
/// (the environment variable `CI` is set, as `.ci/run` does) is a failure naming what to
/// install, never a silent pass; elsewhere the test says it skipped and returns early.
#[must_use]
pub fn require(available: bool, what: &str, install: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "this test needs {what}, which is missing: {install}"
    );
    eprintln!("SKIPPED: this test needs {what}, which is missing here: {install}");
    false
}

/// Whether this process runs as root (the privilege tests need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `program` can be run (found on PATH and executable).
pub fn have_program(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------------------
// Addresses

/// A listening address in spiped's syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Addr {
    /// spiped syntax: `[127.0.0.1]:port`, `[::1]:port` or `/path`.
    pub fn spiped(&self) -> String {
        match self {
            Addr::Tcp(SocketAddr::V4(a)) => format!("[{}]:{}", a.ip(), a.port()),
            Addr::Tcp(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
            Addr::Unix(path) => path.display().to_string(),
        }
    }

    pub fn tcp(&self) -> SocketAddr {
        match self {
            Addr::Tcp(a) => *a,
            Addr::Unix(p) => panic!("{} is not a TCP address", p.display()),
        }
    }

    /// Connects a plain client socket.
    pub fn connect(&self) -> io::Result<Stream> {
        match self {
            Addr::Tcp(a) => TcpStream::connect_timeout(a, Duration::from_secs(5)).map(Stream::Tcp),
            Addr::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
        }
    }
}

/// A port that was free a moment ago on `ip` (bound to port 0, then released). Another
/// process may take it before we do: starters retry on "in use" (see [`start_daemon`]).
pub fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .and_then(|l| l.local_addr())
        .expect("bind port 0 on loopback")
        .port()
}

pub fn free_addr(ip: IpAddr) -> Addr {
    Addr::Tcp(SocketAddr::new(ip, free_port(ip)))
}

/// A TCP address on loopback where connections are refused for as long as this lives: a
/// socket bound there that never listens. Unlike a port that was free a moment ago, no
/// test running alongside can take it for a listener meanwhile, and the kernel does not
/// pick it as an outgoing connection's source port (which would let a connection to it
/// reach itself).
pub struct RefusingAddr {
    pub addr: Addr,
    _bound: socket2::Socket,
}

pub fn refusing_addr(ip: IpAddr) -> RefusingAddr {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(SocketAddr::new(ip, 0)),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .expect("TCP socket");
    socket
        .bind(&SocketAddr::new(ip, 0).into())
        .expect("bind port 0 on loopback");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("a bound socket's address");
    RefusingAddr {
        addr: Addr::Tcp(addr),
        _bound: socket,
    }
}

/// Whether `::1` can be bound here (IPv6 may be disabled in containers).
pub fn ipv6_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------------------------------
// Streams

/// A client socket of either kind.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How the stream the client read from ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum End {
    /// Orderly end of stream (FIN).
    Eof,
    /// The peer reset the connection.
    Reset,
    /// Nothing more arrived within the read timeout.
    TimedOut,
    /// Another error.
    Error(io::ErrorKind),
}

impl End {
    /// The connection was closed by the far end, one way or the other.
    pub fn closed(self) -> bool {
        matches!(self, End::Eof | End::Reset)
    }
}

/// What a client got back.
pub struct Received {
    pub bytes: Vec<u8>,
    pub end: End,
    /// From the start of the exchange to the end of the stream (or the timeout).
    pub elapsed: Duration,
}

/// Reads until end of stream, reset, or `timeout` without any data.
pub fn read_to_end(stream: &mut Stream, timeout: Duration) -> (Vec<u8>, End) {
    stream
        .set_read_timeout(Some(timeout))
        .expect("set read timeout");
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (bytes, End::Eof),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let end = match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => End::TimedOut,
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => End::Reset,
                    kind => End::Error(kind),
                };
                return (bytes, end);
            }
        }
    }
}

/// Sends `data` (from a second thread, so both directions flow at once), then
/// half-closes; meanwhile reads everything that comes back until end of stream.
pub fn exchange(stream: Stream, data: &[u8], timeout: Duration) -> Received {
    let started = Instant::now();
    let mut writer = stream.try_clone().expect("clone socket");
    let mut reader = stream;
    thread::scope(|s| {
        s.spawn(move || {
            // A failing write shows as a short or missing echo; the reader reports it.
            if writer.write_all(data).is_ok() {
                let _ = writer.shutdown(Shutdown::Write);
            }
        });
        let (bytes, end) = read_to_end(&mut reader, timeout);
        Received {
            bytes,
            end,
            elapsed: started.elapsed(),
        }
    })
}

/// Connects to `addr` and runs [`exchange`].
pub fn exchange_with(addr: &Addr, data: &[u8], timeout: Duration) -> Received {
    let stream = addr
        .connect()
        .unwrap_or_else(|e| panic!("connect to {}: {e}", addr.spiped()));
    exchange(stream, data, timeout)
}

/// Asserts that `got` is exactly `expected` and ended in an orderly end of stream,
/// without printing megabytes on failure.
/// A tunnel that must refuse: the client sees the connection close without any data,
/// within `within`, and the echo server behind it receives nothing.
pub fn assert_refused(what: &str, client_addr: &Addr, echo: &Echo, within: Duration) {
    let before = echo.bytes();
    let data = test_data(4096, 99);
    let got = exchange_with(client_addr, &data, within + Duration::from_secs(5));
    assert!(
        got.bytes.is_empty(),
        "{what}: expected no data, got {} bytes",
        got.bytes.len()
    );
    assert!(
        got.end.closed(),
        "{what}: expected the connection to be closed, got {:?} after {:?}",
        got.end,
        got.elapsed
    );
    assert!(
        got.elapsed < within,
        "{what}: the connection took {:?} to close",
        got.elapsed
    );
    assert_eq!(echo.bytes(), before, "{what}: data reached the target");
}

pub fn assert_echoed(what: &str, expected: &[u8], got: &Received) {
    if got.bytes != expected {
        let first_diff = expected
            .iter()
            .zip(&got.bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(expected.len().min(got.bytes.len()));
        panic!(
            "{what}: sent {} bytes, got {} back (ended by {:?} after {:?}); first difference at byte {first_diff}",
            expected.len(),
            got.bytes.len(),
            got.end,
            got.elapsed
        );
    }
    assert_eq!(
        got.end,
        End::Eof,
        "{what}: all data came back but the stream ended with {:?}",
        got.end
    );
}

/// Pseudo-random test data (xorshift64*), reproducible from `seed`.
pub fn test_data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------
// Echo servers

/// What a test server does with each connection.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Echoes data as it arrives; at end of stream shuts down its write side, so
    /// half-close propagates back.
    Echo,
    /// Speaks first: sends the banner as soon as the connection is accepted, then echoes.
    BannerThenEcho(Vec<u8>),
    /// Sends the banner and shuts down its write side at once, then reads (without
    /// echoing) until end of stream: half-close started by the server.
    BannerThenHalfClose(Vec<u8>),
}

/// A test server on a std thread, one thread per connection. Counts connections and
/// keeps every byte it received.
pub struct Echo {
    pub addr: Addr,
    stats: Arc<EchoStats>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct EchoStats {
    connections: AtomicUsize,
    finished: AtomicUsize,
    received: Mutex<Vec<u8>>,
}

impl Echo {
    /// Its TCP port (a TCP echo server's).
    pub fn port(&self) -> u16 {
        self.addr.tcp().port()
    }

    /// An echo server on `ip`, port chosen by the kernel.
    pub fn tcp(ip: IpAddr) -> Echo {
        Echo::tcp_with(ip, Behaviour::Echo)
    }

    pub fn tcp_with(ip: IpAddr, behaviour: Behaviour) -> Echo {
        Echo::tcp_at(SocketAddr::new(ip, 0), behaviour).expect("bind echo server")
    }

    /// An echo server on exactly `addr` (which may be taken by now: then an error).
    pub fn tcp_at(addr: SocketAddr, behaviour: Behaviour) -> io::Result<Echo> {
        let listener = TcpListener::bind(addr)?;
        let addr = Addr::Tcp(listener.local_addr()?);
        Ok(Echo::serve(addr, behaviour, move || {
            listener.accept().map(|(s, _)| Stream::Tcp(s))
        }))
    }

    /// An echo server on a UNIX socket at `path`.
    pub fn unix(path: &Path) -> Echo {
        let listener = UnixListener::bind(path).expect("bind echo server");
        Echo::serve(Addr::Unix(path.to_owned()), Behaviour::Echo, move || {
            listener.accept().map(|(s, _)| Stream::Unix(s))
        })
    }

    fn serve(
        addr: Addr,
        behaviour: Behaviour,
        accept: impl Fn() -> io::Result<Stream> + Send + 'static,
    ) -> Echo {
        let stats = Arc::new(EchoStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_stats, thread_stop) = (Arc::clone(&stats), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            loop {
                let accepted = accept();
                if thread_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = accepted else { continue };
                thread_stats.connections.fetch_add(1, Ordering::SeqCst);
                let stats = Arc::clone(&thread_stats);
                let behaviour = behaviour.clone();
                thread::spawn(move || {
                    serve_one(stream, &behaviour, &stats);
                    stats.finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Echo {
            addr,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Connections that ended (end of stream or error) so far.
    pub fn finished(&self) -> usize {
        self.stats.finished.load(Ordering::SeqCst)
    }

    /// Bytes received so far, over all connections.
    pub fn bytes(&self) -> u64 {
        self.received().len() as u64
    }

    /// Everything received so far, over all connections, in arrival order.
    pub fn received(&self) -> Vec<u8> {
        self.stats.received.lock().expect("echo stats").clone()
    }

    /// Waits up to `timeout` until `n` connections have ended.
    /// Waits until `n` connections have reached this server.
    pub fn wait_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.connections() < n {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        true
    }

    pub fn wait_finished(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.finished() < n {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

fn serve_one(mut stream: Stream, behaviour: &Behaviour, stats: &EchoStats) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let echo = match behaviour {
        Behaviour::Echo => true,
        Behaviour::BannerThenEcho(banner) => {
            if out.write_all(banner).is_err() {
                return;
            }
            true
        }
        Behaviour::BannerThenHalfClose(banner) => {
            if out.write_all(banner).is_err() || out.shutdown(Shutdown::Write).is_err() {
                return;
            }
            false
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                if echo {
                    let _ = out.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => {
                stats
                    .received
                    .lock()
                    .expect("echo stats")
                    .extend_from_slice(&buf[..n]);
                if echo && out.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() so the thread sees the flag.
        let _ = self.addr.connect();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Child processes

/// A child process that is killed and reaped when dropped. Standard input is /dev/null;
/// standard output and error go to files (so a chatty child can never block on a pipe).
pub struct Proc {
    pub name: String,
    child: Child,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, command: Command, log_dir: &Path) -> Proc {
        Proc::spawn_with_stdin(name, command, log_dir, Stdio::null())
    }

    /// Like [`Proc::spawn`], with standard input from `stdin` (e.g. a file).
    pub fn spawn_with_stdin(
        name: &str,
        mut command: Command,
        log_dir: &Path,
        stdin: Stdio,
    ) -> Proc {
        let stdout_path = unique_path(log_dir, &format!("{name}.out"));
        let stderr_path = unique_path(log_dir, &format!("{name}.err"));
        let stdout = fs::File::create(&stdout_path).expect("create stdout log");
        let stderr = fs::File::create(&stderr_path).expect("create stderr log");
        let child = command
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        Proc {
            name: name.to_owned(),
            child,
            stdout_path,
            stderr_path,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote on standard error so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Everything the process wrote on standard output so far.
    pub fn stdout(&self) -> Vec<u8> {
        fs::read(&self.stdout_path).unwrap_or_default()
    }

    /// Waits up to `timeout` until a complete line of standard error contains `needle`
    /// (case-insensitive).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let needle = needle.to_lowercase();
        self.wait_for_log_line(|line| line.to_lowercase().contains(&needle), timeout)
            .is_some()
    }

    /// Waits up to `timeout` for a complete line of standard error that `matches`; see
    /// [`wait_for_log_line`].
    pub fn wait_for_log_line(
        &self,
        matches: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        wait_for_log_line(&self.stderr_path, matches, timeout)
    }

    /// Waits up to `timeout` until `count` complete lines of standard error contain
    /// `needle` (case-sensitive); true if they do.
    pub fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        wait_until(timeout, || log_count(self, needle) >= count)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) if the process has not been reaped yet.
    pub fn signal(&mut self, signal: i32) {
        if self.try_wait().is_none() {
            let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process holds a listening socket on `addr`, found through /proc
    /// (so checking opens no connection that the process would see).
    pub fn listens_on(&self, addr: &Addr) -> bool {
        pid_listens_on(self.pid(), addr)
    }

    /// Waits until the process listens on `addr` (true) or exits (false); panics after 15 s.
    pub fn wait_listening(&mut self, addr: &Addr) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.listens_on(addr) {
                return true;
            }
            if self.try_wait().is_some() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {} within 15 s; stderr:\n{}",
                self.name,
                addr.spiped(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether process `pid` holds a listening socket on `addr`, found through /proc (so
/// checking opens no connection that the process would see).
pub fn pid_listens_on(pid: u32, addr: &Addr) -> bool {
    let inodes = socket_inodes(pid);
    if inodes.is_empty() {
        return false;
    }
    match addr {
        Addr::Tcp(a) => {
            let table = if a.is_ipv4() {
                "/proc/net/tcp"
            } else {
                "/proc/net/tcp6"
            };
            listening_tcp_inodes(table, a.port())
                .iter()
                .any(|i| inodes.contains(i))
        }
        Addr::Unix(path) => listening_unix_inodes(path)
            .iter()
            .any(|i| inodes.contains(i)),
    }
}

fn unique_path(dir: &Path, name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    dir.join(format!(
        "{}-{name}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Inodes of the sockets `pid` has open (from /proc/PID/fd).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_str()?;
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Inodes of TCP sockets listening on `port` (state 0A) in a /proc/net/tcp{,6} table.
fn listening_tcp_inodes(table: &str, port: u16) -> Vec<u64> {
    let text = fs::read_to_string(table).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let listening = *fields.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Inodes of UNIX sockets listening (accepting) at `path`, from /proc/net/unix.
fn listening_unix_inodes(path: &Path) -> Vec<u64> {
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    let text = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let wanted = path.to_str().unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let matches = flags & SO_ACCEPTCON != 0 && *fields.get(7)? == wanted;
            matches.then(|| fields.get(6)?.parse().ok()).flatten()
        })
        .collect()
}

/// Starts a daemon that listens on addresses of our choosing, retrying with fresh
/// addresses when a chosen one turned out to be taken (ports are picked by binding port
/// 0 and releasing it, so another process may grab one in between).
///
/// `pick` chooses the listen addresses; `make` returns the command that listens on them.
/// Returns once the process listens on all of them.
pub fn start_daemon_multi(
    name: &str,
    log_dir: &Path,
    mut pick: impl FnMut() -> Vec<Addr>,
    mut make: impl FnMut(&[Addr]) -> Command,
) -> (Proc, Vec<Addr>) {
    const ATTEMPTS: usize = 8;
    let mut last_stderr = String::new();
    'attempt: for _ in 0..ATTEMPTS {
        let addrs = pick();
        let mut proc = Proc::spawn(name, make(&addrs), log_dir);
        for addr in &addrs {
            if !proc.wait_listening(addr) {
                last_stderr = proc.stderr();
                if last_stderr.to_lowercase().contains("in use") {
                    continue 'attempt;
                }
                panic!(
                    "{name} exited ({:?}) instead of listening on {}; stderr:\n{last_stderr}",
                    proc.try_wait(),
                    addr.spiped()
                );
            }
        }
        return (proc, addrs);
    }
    panic!("{name}: no free address after {ATTEMPTS} attempts; last stderr:\n{last_stderr}");
}

/// [`start_daemon_multi`] for a daemon with one listening address.
pub fn start_daemon(
    name: &str,
    log_dir: &Path,
    mut pick: impl FnMut() -> Addr,
    mut make: impl FnMut(&Addr) -> Command,
) -> (Proc, Addr) {
    let (proc, mut addrs) =
        start_daemon_multi(name, log_dir, || vec![pick()], |addrs| make(&addrs[0]));
    (proc, addrs.remove(0))
}

// ---------------------------------------------------------------------------------------
// Key files and temporary directories

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sluice-interop-")
        .tempdir()
        .expect("create temp dir")
}

/// Writes a key file (mode 0600) with exactly `bytes`.
pub fn write_key(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).expect("write key file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod key file");
    path
}

/// A key file of 32 random bytes.
pub fn random_key(dir: &Path, name: &str) -> PathBuf {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("random key");
    write_key(dir, name, &bytes)
}

/// How many complete lines of the process's standard error so far contain `needle`.
pub fn log_count(proc: &Proc, needle: &str) -> usize {
    complete_lines(&proc.stderr())
        .filter(|line| line.contains(needle))
        .count()
}

// ---------------------------------------------------------------------------------------
// HTTP, for metrics endpoints

/// A plain HTTP/1.1 GET on loopback: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of an unlabelled-or-labelled sample line `NAME{...} VALUE` in an OpenMetrics
/// text, if the exact series `series` is there.
pub fn metric_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------
// Waiting for log lines

/// The lines of `text` that are complete (end in a newline): a line a process is still
/// writing is not there yet.
pub fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines()
}

/// Polls `ok` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `timeout` for a complete line of the log file at `path` that `matches`,
/// and returns it. Tests that check what a daemon logged wait for the line they expect
/// this way: the daemon writes it some time after the client saw the connection end.
pub fn wait_for_log_line(
    path: &Path,
    mut matches: impl FnMut(&str) -> bool,
    timeout: Duration,
) -> Option<String> {
    let mut found = None;
    wait_until(timeout, || {
        let text = fs::read_to_string(path).unwrap_or_default();
        found = complete_lines(&text)
            .find(|line| matches(line))
            .map(str::to_owned);
        found.is_some()
    });
    found
}

/// Number of open file descriptors of process `pid` (from /proc).
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Resident memory of process `pid` in KiB (VmRSS from /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
