//! Helpers for the end-to-end interoperability tests: echo servers, guarded child
//! processes (killed and reaped on drop), listening checks that do not open connections,
//! key files, test data, and a client that sends, half-closes and reads to the end.
//!
//! Everything runs on loopback and in temporary directories.

#![allow(dead_code)]

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

/// `sluiced`, built by cargo for this test run.
pub const SLUICED: &str = env!("CARGO_BIN_EXE_sluiced");

/// Debian's spiped 1.6.2 (override with `SPIPED=/path`).
pub fn spiped_bin() -> String {
    std::env::var("SPIPED").unwrap_or_else(|_| "/usr/bin/spiped".to_owned())
}

/// Debian's spipe 1.6.2 (override with `SPIPE=/path`).
pub fn spipe_bin() -> String {
    std::env::var("SPIPE").unwrap_or_else(|_| "/usr/bin/spipe".to_owned())
}

pub const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

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
// A relay that alters one byte

/// Which way through a [`Tamper`] relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// A TCP relay on loopback to `upstream` that flips the low bit of the byte at stream
/// offset `offset` in one direction of each connection; everything else passes through,
/// half-closes included.
pub struct Tamper {
    pub addr: Addr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Tamper {
    pub fn start(upstream: Addr, direction: Direction, offset: u64) -> Tamper {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = Addr::Tcp(listener.local_addr().expect("relay address"));
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            loop {
                let accepted = listener.accept();
                if thread_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok((client, _)) = accepted else { continue };
                let Ok(server) = upstream.connect() else {
                    continue;
                };
                let client = Stream::Tcp(client);
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let flip = move |d| (direction == d).then_some(offset);
                thread::spawn(move || relay(client, server2, flip(Direction::ClientToServer)));
                thread::spawn(move || relay(server, client2, flip(Direction::ServerToClient)));
            }
        });
        Tamper {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn relay(mut from: Stream, mut to: Stream, flip_at: Option<u64>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut position = 0u64;
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if let Some(at) = flip_at
                    && (position..position + n as u64).contains(&at)
                {
                    buf[(at - position) as usize] ^= 1;
                }
                position += n as u64;
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

impl Drop for Tamper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
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

/// `spiped {-e|-d} -F -s SRC -t TGT -k KEY EXTRA...`, started on a free TCP port of `ip`.
pub fn spiped(
    mode: &str,
    ip: IpAddr,
    target: &Addr,
    key: &Path,
    extra: &[&str],
    dir: &Path,
) -> (Proc, Addr) {
    spiped_on(mode, || free_addr(ip), target, key, extra, dir)
}

/// Same as [`spiped`], listening on addresses from `pick`.
pub fn spiped_on(
    mode: &str,
    pick: impl FnMut() -> Addr,
    target: &Addr,
    key: &Path,
    extra: &[&str],
    dir: &Path,
) -> (Proc, Addr) {
    start_daemon(&format!("spiped{mode}"), dir, pick, |listen| {
        let mut c = Command::new(spiped_bin());
        c.args([mode, "-F", "-s", &listen.spiped(), "-t", &target.spiped()])
            .arg("-k")
            .arg(key)
            .args(extra);
        c
    })
}

/// `sluiced {-e|-d} -F --verbose -s SRC -t TGT -k KEY EXTRA...`, on a free TCP port of `ip`.
pub fn sluiced(
    mode: &str,
    ip: IpAddr,
    target: &Addr,
    key: &Path,
    extra: &[&str],
    dir: &Path,
) -> (Proc, Addr) {
    sluiced_on(mode, || free_addr(ip), target, key, extra, dir)
}

/// Same as [`sluiced`], listening on addresses from `pick`.
pub fn sluiced_on(
    mode: &str,
    pick: impl FnMut() -> Addr,
    target: &Addr,
    key: &Path,
    extra: &[&str],
    dir: &Path,
) -> (Proc, Addr) {
    start_daemon(&format!("sluiced{mode}"), dir, pick, |listen| {
        let mut c = Command::new(SLUICED);
        c.args([
            mode,
            "-F",
            "--verbose",
            "-s",
            &listen.spiped(),
            "-t",
            &target.spiped(),
        ])
        .arg("-k")
        .arg(key)
        .args(extra);
        c
    })
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

// ---------------------------------------------------------------------------------------
// A man in the middle that knows spiped's framing

/// Bytes of each unit of one direction of an spiped connection: unit 0 is the 32-byte
/// nonce, unit 1 the 288-byte signed DH value, unit 2 + i data packet i (1060 bytes).
pub fn unit_len(unit: usize) -> usize {
    match unit {
        0 => 32,
        1 => 288,
        _ => 1060,
    }
}

/// The unit that carries data packet `i`.
pub const fn packet_unit(i: usize) -> usize {
    2 + i
}

/// What a [`Mitm`] does to one direction of one connection.
#[derive(Clone, Debug)]
pub enum Attack {
    /// Sends these bytes before anything else (garbage before the handshake).
    Prefix(Vec<u8>),
    /// Flips the low bit of byte `byte` of unit `unit`.
    Flip { unit: usize, byte: usize },
    /// Sends unit `unit` twice (a replay).
    Replay(usize),
    /// Never sends unit `unit`.
    Drop(usize),
    /// Sends unit `unit + 1` before unit `unit`.
    Swap(usize),
    /// Sends the first `keep` bytes of unit `unit`, then ends the stream (FIN).
    Truncate { unit: usize, keep: usize },
    /// Sends the first `keep` bytes of unit `unit`, then nothing, without closing.
    Stall { unit: usize, keep: usize },
    /// After unit `unit`, sends pseudo-random bytes as fast as the peer takes them, until
    /// the connection fails.
    Flood(usize),
}

/// The attacks on one connection, one per direction (`None` = pass through).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub client_to_server: Option<Attack>,
    pub server_to_client: Option<Attack>,
}

impl Plan {
    pub fn on(direction: Direction, attack: Attack) -> Plan {
        match direction {
            Direction::ClientToServer => Plan {
                client_to_server: Some(attack),
                server_to_client: None,
            },
            Direction::ServerToClient => Plan {
                client_to_server: None,
                server_to_client: Some(attack),
            },
        }
    }
}

/// What happened to a flood.
#[derive(Default)]
pub struct FloodReport {
    pub bytes: AtomicUsize,
    /// The victim stopped taking the flood (the write failed).
    pub stopped: AtomicBool,
}

/// A TCP relay on loopback to `upstream` that applies the next armed [`Plan`] to each
/// connection it accepts (connections with no armed plan pass through untouched).
pub struct Mitm {
    pub addr: Addr,
    plans: Arc<Mutex<std::collections::VecDeque<Plan>>>,
    floods: Arc<Mutex<Vec<Arc<FloodReport>>>>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Mitm {
    pub fn start(upstream: Addr) -> Mitm {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = Addr::Tcp(listener.local_addr().expect("relay address"));
        let plans: Arc<Mutex<std::collections::VecDeque<Plan>>> = Arc::default();
        let floods: Arc<Mutex<Vec<Arc<FloodReport>>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t_plans, t_floods, t_accepted, t_stop) = (
            Arc::clone(&plans),
            Arc::clone(&floods),
            Arc::clone(&accepted),
            Arc::clone(&stop),
        );
        let thread = thread::spawn(move || {
            loop {
                let accepted = listener.accept();
                if t_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok((client, _)) = accepted else { continue };
                t_accepted.fetch_add(1, Ordering::SeqCst);
                let plan = t_plans
                    .lock()
                    .expect("plans")
                    .pop_front()
                    .unwrap_or_default();
                let Ok(server) = upstream.connect() else {
                    continue;
                };
                let client = Stream::Tcp(client);
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let report = Arc::new(FloodReport::default());
                t_floods.lock().expect("floods").push(Arc::clone(&report));
                let r2 = Arc::clone(&report);
                thread::spawn(move || {
                    framed_relay(client, server2, plan.client_to_server, &report)
                });
                thread::spawn(move || framed_relay(server, client2, plan.server_to_client, &r2));
            }
        });
        Mitm {
            addr,
            plans,
            floods,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// The next connection accepted gets `plan`.
    pub fn arm(&self, plan: Plan) {
        self.plans.lock().expect("plans").push_back(plan);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The flood report of the most recent connection.
    pub fn last_flood(&self) -> Arc<FloodReport> {
        Arc::clone(
            self.floods
                .lock()
                .expect("floods")
                .last()
                .expect("a connection"),
        )
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.addr.connect();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Relays one direction unit by unit, applying `attack`. Whole units are forwarded as
/// they complete; at end of stream any partial unit is forwarded as it is.
fn framed_relay(mut from: Stream, mut to: Stream, attack: Option<Attack>, flood: &FloodReport) {
    if let Some(Attack::Prefix(bytes)) = &attack
        && to.write_all(bytes).is_err()
    {
        return;
    }
    let mut unit = 0usize;
    let mut pending: Vec<u8> = Vec::new();
    let mut held: Option<Vec<u8>> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                // End of stream: pass on what is left, then the end itself.
                let _ = to.write_all(&pending);
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        };
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= unit_len(unit) {
            let mut bytes: Vec<u8> = pending.drain(..unit_len(unit)).collect();
            let this = unit;
            unit += 1;
            let mut out: Vec<u8> = Vec::new();
            let mut then = After::Continue;
            match &attack {
                Some(Attack::Flip { unit: u, byte }) if *u == this => {
                    bytes[*byte] ^= 1;
                    out.extend_from_slice(&bytes);
                }
                Some(Attack::Replay(u)) if *u == this => {
                    out.extend_from_slice(&bytes);
                    out.extend_from_slice(&bytes);
                }
                Some(Attack::Drop(u)) if *u == this => {}
                Some(Attack::Swap(u)) if *u == this => held = Some(bytes),
                Some(Attack::Swap(u)) if *u + 1 == this => {
                    out.extend_from_slice(&bytes);
                    out.extend(held.take().unwrap_or_default());
                }
                Some(Attack::Truncate { unit: u, keep }) if *u == this => {
                    out.extend_from_slice(&bytes[..*keep]);
                    then = After::Close;
                }
                Some(Attack::Stall { unit: u, keep }) if *u == this => {
                    out.extend_from_slice(&bytes[..*keep]);
                    then = After::Stall;
                }
                Some(Attack::Flood(u)) if *u == this => {
                    out.extend_from_slice(&bytes);
                    then = After::Flood;
                }
                _ => out.extend_from_slice(&bytes),
            }
            if to.write_all(&out).is_err() {
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            match then {
                After::Continue => {}
                After::Close => {
                    let _ = to.shutdown(Shutdown::Write);
                    return drain(from);
                }
                After::Stall => return drain(from),
                After::Flood => {
                    let mut state = 0x9E37_79B9_7F4A_7C15u64;
                    let mut chunk = vec![0u8; 16 * 1024];
                    loop {
                        for b in chunk.iter_mut() {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            *b = state as u8;
                        }
                        if to.write_all(&chunk).is_err() {
                            flood.stopped.store(true, Ordering::SeqCst);
                            let _ = from.shutdown(Shutdown::Both);
                            return;
                        }
                        flood.bytes.fetch_add(chunk.len(), Ordering::SeqCst);
                    }
                }
            }
        }
    }
}

enum After {
    Continue,
    Close,
    Stall,
    Flood,
}

/// Reads and discards until end of stream or an error (so the sender is never blocked).
fn drain(mut from: Stream) {
    let mut buf = vec![0u8; 64 * 1024];
    while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
}

/// How many complete lines of the process's standard error so far contain `needle`.
pub fn log_count(proc: &Proc, needle: &str) -> usize {
    complete_lines(&proc.stderr())
        .filter(|line| line.contains(needle))
        .count()
}

// ---------------------------------------------------------------------------------------
// The engine's library API

/// Makes `engine` run exactly these tunnels (those it ran before and not here stop, their
/// connections closed).
pub fn run_tunnels(engine: &sluice_engine::Engine, tunnels: Vec<sluice_engine::TunnelSettings>) {
    use sluice_engine::{Desired, DesiredTunnel, Ending, Restart};
    engine
        .apply(Desired {
            tunnels: tunnels
                .into_iter()
                .map(|settings| DesiredTunnel {
                    settings,
                    run: true,
                    restart: Restart::Never,
                })
                .collect(),
            ending: Ending::Close,
        })
        .expect("apply the tunnels");
}

/// Waits for the next event matching `want`, skipping others; panics after 10 s.
pub fn next_event<T>(
    engine: &sluice_engine::Engine,
    events: &mut sluice_engine::EventStream,
    mut want: impl FnMut(&sluice_engine::EventKind) -> Option<T>,
) -> T {
    engine.runtime().block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, events.next())
                .await
                .expect("event within 10 s")
                .expect("event stream open")
                .expect("no event missed");
            if let Some(found) = want(&event.kind) {
                return found;
            }
        }
    })
}

/// Waits until the tunnel listens; its address, as a test address.
pub fn listening_address(
    engine: &sluice_engine::Engine,
    events: &mut sluice_engine::EventStream,
) -> Addr {
    use sluice_engine::{Address, EventKind};
    next_event(engine, events, |kind| match kind {
        EventKind::Listening {
            address: Address::Ip(addr),
        } => Some(Addr::Tcp(*addr)),
        EventKind::Listening { address } => panic!("odd listening address {address}"),
        EventKind::StartFailed(fault) => panic!("tunnel did not start: {fault}"),
        _ => None,
    })
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

/// What a sluiced log says about failed handshakes: the lines about single failures, and
/// the summaries of the ones counted after them ("N more handshake failures in the last
/// minute (a wrong key, b timed out)"), by cause.
#[derive(Debug, Default)]
pub struct HandshakeFailureLog {
    /// Lines "TUNNEL: connection N from PEER: MESSAGE".
    pub in_full: Vec<String>,
    /// Summary lines.
    pub summaries: Vec<String>,
    /// Failures the summaries count, by cause label ("wrong key", "timed out", ...).
    pub summarized: std::collections::BTreeMap<String, u64>,
}

impl HandshakeFailureLog {
    pub fn parse(log: &str) -> HandshakeFailureLog {
        let mut parsed = HandshakeFailureLog::default();
        for line in complete_lines(log) {
            if line.contains(" more handshake failure") {
                let causes = line
                    .split_once(" (")
                    .and_then(|(_, rest)| rest.split_once(')'))
                    .map_or("", |(causes, _)| causes);
                for part in causes.split(", ") {
                    if let Some((n, label)) = part.split_once(' ')
                        && let Ok(n) = n.parse::<u64>()
                    {
                        *parsed.summarized.entry(label.to_owned()).or_default() += n;
                    }
                }
                parsed.summaries.push(line.to_owned());
            } else if is_single_handshake_failure(line) {
                parsed.in_full.push(line.to_owned());
            }
        }
        parsed
    }

    /// Every failure the log accounts for.
    pub fn total(&self) -> u64 {
        self.in_full.len() as u64 + self.summarized.values().sum::<u64>()
    }

    /// Failures of one cause: lines in full that contain `needle`, plus the summaries'
    /// count for `label`.
    pub fn of_cause(&self, needle: &str, label: &str) -> u64 {
        self.in_full.iter().filter(|l| l.contains(needle)).count() as u64
            + self.summarized.get(label).copied().unwrap_or(0)
    }
}

/// "…: connection 12 from 127.0.0.1:5555: message" (not "… opened", "… closed after").
fn is_single_handshake_failure(line: &str) -> bool {
    line.match_indices("connection ").any(|(at, _)| {
        let rest = &line[at + "connection ".len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        digits > 0
            && rest[digits..]
                .strip_prefix(" from ")
                .and_then(|peer| peer.split_whitespace().next())
                .is_some_and(|peer| peer.ends_with(':'))
    })
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
