//! The side-by-side benchmark itself (Unix: it runs Debian's spiped and sluiced as
//! processes, with signals and rlimits; Linux also ties their lives to its own).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_engine::PresharedKey;
use sluice_engine::protocol::{ForwardSecrecy, Handshake, PACKET_LEN, Role};

const SLUICED: &str = env!("CARGO_BIN_EXE_sluiced");
const SPIPED_DEFAULT: &str = "/usr/bin/spiped";
/// Bytes of the repeating test pattern: a prime, so it never lines up with packets.
const PATTERN_LEN: usize = 1_048_573;
/// Client sockets give up after this long, so a stuck pipe fails the run instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Options and sizes

struct Opts {
    quick: bool,
    only: Option<Vec<String>>,
    mixed: bool,
    spiped: PathBuf,
    /// Another sluiced (for example a build of an earlier commit), to measure a change
    /// against stock spiped in the same way.
    sluiced: PathBuf,
}

impl Opts {
    fn parse() -> Opts {
        let mut opts = Opts {
            quick: false,
            only: None,
            mixed: true,
            spiped: PathBuf::from(SPIPED_DEFAULT),
            sluiced: PathBuf::from(SLUICED),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--no-mixed" => opts.mixed = false,
                "--only" => {
                    let list = args.next().unwrap_or_default();
                    opts.only = Some(list.split(',').map(str::to_owned).collect());
                }
                "--spiped" => opts.spiped = PathBuf::from(args.next().unwrap_or_default()),
                "--sluiced" => opts.sluiced = PathBuf::from(args.next().unwrap_or_default()),
                // cargo bench passes --bench to every bench target.
                "--bench" => {}
                // Internal: the echo server for the memory figure, in its own process so
                // that this one's file descriptors go to client sockets only.
                "--serve-echo" => serve_echo_process(),
                // Internal: one hop of the plain forwarder (no crypto), the small-message
                // figure's ceiling, forwarding to the port that follows.
                "--serve-forward" => {
                    let port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                    serve_forward_process(port, Forwarder::Readiness)
                }
                // Internal: the same hop on io_uring (Linux).
                "--serve-forward-uring" => {
                    let port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                    serve_forward_process(port, Forwarder::IoUring)
                }
                "-h" | "--help" => {
                    println!(
                        "sidebyside [--quick] [--only throughput,latency,handshakes,x25519,reverse,messages,contention,redis,memory,ceiling,mixed] [--no-mixed] [--spiped PATH] [--sluiced PATH]"
                    );
                    std::process::exit(0);
                }
                other => eprintln!("sidebyside: ignoring unknown argument {other:?}"),
            }
        }
        opts
    }

    fn wants(&self, part: &str) -> bool {
        if part == "mixed" && !self.mixed {
            return false;
        }
        self.only
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| p == part))
    }
}

/// How much of everything one run does.
struct Sizes {
    bulk_bytes: u64,
    bulk_reps: usize,
    latency_samples: usize,
    latency_gap: Duration,
    handshake_secs: f64,
    handshake_reps: usize,
    handshake_clients: usize,
    memory_counts: Vec<usize>,
    message_conns: usize,
    message_secs: f64,
    message_reps: usize,
    ceiling_bytes: u64,
    mixed_bytes: u64,
    redis_requests: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                bulk_bytes: 64 << 20,
                bulk_reps: 3,
                latency_samples: 40,
                latency_gap: Duration::from_millis(20),
                handshake_secs: 2.0,
                handshake_reps: 1,
                handshake_clients: 8,
                memory_counts: vec![200, 1000],
                message_conns: 50,
                message_secs: 2.0,
                message_reps: 1,
                ceiling_bytes: 32 << 20,
                mixed_bytes: 32 << 20,
                redis_requests: 50_000,
            }
        } else {
            Sizes {
                bulk_bytes: 1 << 30,
                bulk_reps: 5,
                latency_samples: 300,
                latency_gap: Duration::from_millis(20),
                handshake_secs: 5.0,
                handshake_reps: 3,
                handshake_clients: 8,
                memory_counts: vec![1000, 10_000],
                message_conns: 50,
                message_secs: 5.0,
                message_reps: 3,
                ceiling_bytes: 256 << 20,
                mixed_bytes: 256 << 20,
                redis_requests: 400_000,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Daemons

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Sluice,
    Spiped,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sluice => "sluiced",
            Kind::Spiped => "spiped",
        }
    }
}

/// Everything a daemon is started with that is common to the whole run.
struct Env {
    spiped: PathBuf,
    sluiced: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

/// A Redis server on loopback (Debian's redis-tools carries the server binary, run under
/// the name `redis-server`), for redis-benchmark: a real client of small messages.
struct Redis {
    _server: Daemon,
    port: u16,
}

impl Redis {
    fn start(env: &Env) -> Result<Redis, String> {
        let binary = Path::new("/usr/bin/redis-check-rdb");
        if !binary.exists() || !Path::new("/usr/bin/redis-benchmark").exists() {
            return Err("install redis-tools (scripts/install-test-deps does)".into());
        }
        // The binary serves when its name says redis-server.
        let server = env.dir.join("redis-server");
        if !server.exists() {
            std::os::unix::fs::symlink(binary, &server).map_err(|e| e.to_string())?;
        }
        let port = free_port();
        let args = [
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            env.dir.display().to_string(),
        ];
        let mut daemon = Daemon::spawn_plain(&server, &args, format!("redis :{port}"), &env.dir);
        daemon.wait_listening(port);
        Ok(Redis {
            _server: daemon,
            port,
        })
    }

    /// redis-benchmark's requests per second, SET and GET averaged, 50 clients.
    fn benchmark(&self, port: u16, requests: u64) -> io::Result<f64> {
        let out = Command::new("/usr/bin/redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "50"])
            .args(["-n", &requests.to_string(), "-t", "set,get", "--csv", "-q"])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        // "test","rps",...: one line per test after the header.
        let text = String::from_utf8_lossy(&out.stdout);
        let rates: Vec<f64> = text
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').nth(1)?.trim_matches('"').parse().ok())
            .collect();
        if rates.is_empty() {
            return Err(io::Error::other(format!("no rate in {text:?}")));
        }
        Ok(rates.iter().sum::<f64>() / rates.len() as f64)
    }
}

/// A daemon this benchmark started; stopped (SIGTERM, then SIGKILL) and reaped on drop.
struct Daemon {
    child: Child,
    label: String,
    log: PathBuf,
}

impl Daemon {
    fn start(
        env: &Env,
        kind: Kind,
        encrypt: bool,
        listen: u16,
        target: u16,
        extra: &[&str],
    ) -> Daemon {
        let bin: &Path = match kind {
            Kind::Sluice => &env.sluiced,
            Kind::Spiped => &env.spiped,
        };
        let mode = if encrypt { "-e" } else { "-d" };
        let label = format!("{} {mode} :{listen}->:{target}", kind.name());
        let args = [
            mode.to_owned(),
            "-s".into(),
            format!("[127.0.0.1]:{listen}"),
            "-t".into(),
            format!("[127.0.0.1]:{target}"),
        ];
        let mut daemon = Daemon::spawn(env, bin, &args, extra, label, listen);
        daemon.wait_listening(listen);
        daemon
    }

    /// `bin ARGS -k KEY -F -n 0 EXTRA`, logging to a file named after `log_port`.
    fn spawn(
        env: &Env,
        bin: &Path,
        args: &[String],
        extra: &[&str],
        label: String,
        log_port: u16,
    ) -> Daemon {
        let name = bin
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let log = env.dir.join(format!("{name}-{log_port}.log"));
        let log_file = std::fs::File::create(&log).expect("create daemon log");
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .arg("-k")
            .arg(&env.key)
            .args(["-F", "-n", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        // The daemon dies with this benchmark even if it is killed: no strays (Linux;
        // elsewhere the guard's drop is the only stop).
        // SAFETY: prctl is async-signal-safe and touches only the new process.
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Daemon { child, label, log }
    }

    /// `program ARGS`, logging to a file in `dir`; no key, no tunnel flags.
    fn spawn_plain(program: &Path, args: &[String], label: String, dir: &Path) -> Daemon {
        let log = dir.join(format!("{}.log", label.replace([' ', ':'], "-")));
        let log_file = std::fs::File::create(&log).expect("create daemon log");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Daemon { child, label, log }
    }

    /// Waits until the daemon's log has a line containing `needle`.
    fn wait_for_log(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&self.log).is_ok_and(|t| t.contains(needle)) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}): {}", self.label, self.log_tail());
            }
            assert!(Instant::now() < deadline, "{}: no {needle:?}", self.label);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_listening(port) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}): {}", self.label, self.log_tail());
            }
            assert!(Instant::now() < deadline, "{} never listened", self.label);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time (user + system) used so far, in seconds.
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks as f64 / hz
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill on the pid of a child we have not reaped yet.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// True when something listens on 127.0.0.1:`port` (read from /proc, so probing does not
/// open a connection through the daemon).
fn is_listening(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3
                    && format!("{} ", fields[1]).ends_with(&needle)
                    && fields[3] == "0A"
            })
        })
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// client → encrypting end → decrypting end → `target` (a server in this process).
struct Pair {
    enc: Daemon,
    dec: Daemon,
    entry: u16,
    label: String,
}

impl Pair {
    fn start(env: &Env, enc: Kind, dec: Kind, target: u16, flags: &[&str]) -> Pair {
        let entry = free_port();
        let middle = free_port();
        let dec_d = Daemon::start(env, dec, false, middle, target, flags);
        let enc_d = Daemon::start(env, enc, true, entry, middle, flags);
        let label = if enc == dec {
            enc.name().to_owned()
        } else {
            format!("{} -e → {} -d", enc.name(), dec.name())
        };
        Pair {
            enc: enc_d,
            dec: dec_d,
            entry,
            label,
        }
    }

    /// client → `sluiced --reverse-in` (-l) → the pooled connections the
    /// `sluiced --reverse-out` end dialled in → `target`: `enc` is the reverse-in end,
    /// `dec` the reverse-out end. Returns once the reverse-in end has its pool.
    fn reverse(env: &Env, target: u16, flags: &[&str]) -> Pair {
        let entry = free_port();
        let slots = free_port();
        let at = |port: u16| format!("[127.0.0.1]:{port}");
        let r_in_args = [
            "--reverse-in".into(),
            "-s".into(),
            at(slots),
            "-l".into(),
            at(entry),
        ];
        let mut r_in = Daemon::spawn(
            env,
            &env.sluiced,
            &r_in_args,
            flags,
            format!("sluiced --reverse-in :{entry}"),
            entry,
        );
        r_in.wait_listening(entry);
        let r_out_args = [
            "--reverse-out".into(),
            "-t".into(),
            at(slots),
            "-s".into(),
            at(target),
        ];
        let r_out = Daemon::spawn(
            env,
            &env.sluiced,
            &r_out_args,
            flags,
            format!("sluiced --reverse-out :{slots}"),
            slots,
        );
        r_in.wait_for_log("far end up");
        Pair {
            enc: r_in,
            dec: r_out,
            entry,
            label: "sluiced reverse".into(),
        }
    }

    fn rss_kib(&self) -> u64 {
        self.enc.rss_kib() + self.dec.rss_kib()
    }

    fn cpu_secs(&self) -> (f64, f64) {
        (self.enc.cpu_secs(), self.dec.cpu_secs())
    }

    fn connect(&self) -> io::Result<TcpStream> {
        connect_to(self.entry)
    }
}

/// A benchmark client's socket: TCP_NODELAY (each request goes out as written) and
/// timeouts, so a stuck pipe fails the run instead of hanging it.
fn connect_to(port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// Servers inside this process: a verifying sink and an echo, on a tokio thread.

/// The repeating pattern, twice over, so any window of up to PATTERN_LEN bytes starting
/// anywhere in the pattern is one slice.
fn pattern() -> Arc<[u8]> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let once: Vec<u8> = (0..PATTERN_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let mut twice = once.clone();
    twice.extend_from_slice(&once);
    twice.into()
}

struct Servers {
    sink: u16,
    echo: u16,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Servers {
    fn start(pattern: Arc<[u8]>) -> Servers {
        let sink = std::net::TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let echo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind echo");
        let ports = (
            sink.local_addr().expect("sink addr").port(),
            echo.local_addr().expect("echo addr").port(),
        );
        sink.set_nonblocking(true).expect("nonblocking");
        echo.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(tokio::sync::Notify::new());
        let stop_server = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bench-servers".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let sink = tokio::net::TcpListener::from_std(sink).expect("sink listener");
                    let echo = tokio::net::TcpListener::from_std(echo).expect("echo listener");
                    loop {
                        tokio::select! {
                            () = stop_server.notified() => return,
                            Ok((s, _)) = sink.accept() => {
                                tokio::spawn(serve_sink(s, Arc::clone(&pattern)));
                            }
                            Ok((s, _)) = echo.accept() => {
                                tokio::spawn(serve_echo(s));
                            }
                        }
                    }
                });
            })
            .expect("server thread");
        Servers {
            sink: ports.0,
            echo: ports.1,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads to end of stream, checking every byte against the pattern; then answers with
/// [verified bytes u64][all good u8][nanoseconds from first to last byte u64].
async fn serve_sink(mut s: tokio::net::TcpStream, pattern: Arc<[u8]>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    let mut good = true;
    let mut first: Option<Instant> = None;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        first.get_or_insert_with(Instant::now);
        if good {
            let mut checked = 0;
            while checked < n {
                let at = ((total + checked as u64) % PATTERN_LEN as u64) as usize;
                let len = (n - checked).min(PATTERN_LEN);
                good &= buf[checked..checked + len] == pattern[at..at + len];
                checked += len;
            }
        }
        total += n as u64;
    }
    let nanos = first.map_or(0, |f| f.elapsed().as_nanos() as u64);
    let mut answer = [0u8; 17];
    answer[..8].copy_from_slice(&total.to_be_bytes());
    answer[8] = u8::from(good);
    answer[9..].copy_from_slice(&nanos.to_be_bytes());
    let _ = s.write_all(&answer).await;
    let _ = s.shutdown().await;
}

async fn serve_echo(mut s: tokio::net::TcpStream) {
    let _ = s.set_nodelay(true);
    let (mut r, mut w) = s.split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
    use tokio::io::AsyncWriteExt;
    let _ = w.shutdown().await;
}

/// Child-process mode: an echo server that prints its port, then serves until its standard
/// input closes (the benchmark exiting, or dropping the guard).
fn serve_echo_process() -> ! {
    raise_fd_limit(u64::MAX);
    let servers = Servers::start(Arc::from(Vec::new()));
    println!("{}", servers.echo);
    let _ = io::stdout().flush();
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    drop(servers);
    std::process::exit(0);
}

/// How a plain forwarder hop waits for its sockets.
#[derive(Clone, Copy, PartialEq)]
enum Forwarder {
    /// tokio's readiness loop (epoll), the data path's kind of loop.
    Readiness,
    /// Completions from io_uring (`uring.rs`), Linux only.
    IoUring,
}

/// Child-process mode: a plain TCP forwarder without crypto to 127.0.0.1:`target` (one
/// task per connection, both sockets TCP_NODELAY, bytes copied as they come), the
/// ceiling for small messages through two hops; or the same on io_uring. Prints its
/// port, serves until its standard input closes.
fn serve_forward_process(target: u16, kind: Forwarder) -> ! {
    raise_fd_limit(u64::MAX);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
    let port = listener.local_addr().expect("forwarder addr").port();
    if kind == Forwarder::IoUring {
        #[cfg(target_os = "linux")]
        std::thread::spawn(move || {
            if let Err(e) = crate::uring::forward(listener, target) {
                eprintln!("sidebyside: the io_uring forwarder stopped: {e}");
            }
        });
        #[cfg(not(target_os = "linux"))]
        {
            eprintln!("sidebyside: io_uring is Linux only");
            std::process::exit(2);
        }
    } else {
        serve_forward_readiness(listener, target);
    }
    println!("{port}");
    let _ = io::stdout().flush();
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    std::process::exit(0);
}

/// The readiness forwarder on a thread of its own.
fn serve_forward_readiness(listener: std::net::TcpListener, target: u16) {
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("forwarder runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
    });
}

/// A server in a child process of this benchmark (`--serve-echo`, `--serve-forward`),
/// which prints its port on standard output; stopped on drop.
struct ChildServer {
    child: Child,
    port: u16,
}

impl ChildServer {
    /// The echo server for the memory figure.
    fn echo() -> ChildServer {
        ChildServer::spawn(&["--serve-echo".to_owned()])
    }

    /// One hop of the plain forwarder, forwarding to `target`.
    fn forwarder(target: u16, kind: Forwarder) -> ChildServer {
        let mode = match kind {
            Forwarder::Readiness => "--serve-forward",
            Forwarder::IoUring => "--serve-forward-uring",
        };
        ChildServer::spawn(&[mode.to_owned(), target.to_string()])
    }

    fn spawn(args: &[String]) -> ChildServer {
        let exe = std::env::current_exe().expect("own path");
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: as in Daemon::start.
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("child server process");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        io::BufRead::read_line(&mut io::BufReader::new(stdout), &mut line)
            .expect("child server port");
        let port = line.trim().parse().expect("child server port number");
        ChildServer { child, port }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Workloads

/// One-way bulk transfer of `bytes` through the pair; MB/s measured at the sink from first
/// to last byte, plus the CPU seconds each daemon used during it.
struct Bulk {
    mb_s: f64,
    cpu_enc: f64,
    cpu_dec: f64,
    secs: f64,
}

fn bulk(pair: &Pair, pattern: &[u8], bytes: u64) -> io::Result<Bulk> {
    let cpu0 = pair.cpu_secs();
    let mut s = pair.connect()?;
    let mut sent: u64 = 0;
    const CHUNK: usize = 256 * 1024;
    while sent < bytes {
        let at = (sent % PATTERN_LEN as u64) as usize;
        let len = CHUNK.min((bytes - sent) as usize);
        s.write_all(&pattern[at..at + len])?;
        sent += len as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut answer = [0u8; 17];
    s.read_exact(&mut answer)?;
    let cpu1 = pair.cpu_secs();
    let total = u64::from_be_bytes(answer[..8].try_into().expect("8 bytes"));
    let nanos = u64::from_be_bytes(answer[9..].try_into().expect("8 bytes"));
    if total != bytes || answer[8] != 1 {
        return Err(io::Error::other(format!(
            "{}: sink got {total} of {bytes} bytes, pattern {}",
            pair.label,
            if answer[8] == 1 {
                "intact"
            } else {
                "CORRUPTED"
            }
        )));
    }
    let secs = nanos as f64 / 1e9;
    Ok(Bulk {
        mb_s: bytes as f64 / 1e6 / secs,
        cpu_enc: cpu1.0 - cpu0.0,
        cpu_dec: cpu1.1 - cpu0.1,
        secs,
    })
}

/// connect + 1-byte echo; returns the time from before connect() to the echoed byte.
fn echo_once(port: u16) -> io::Result<Duration> {
    let t0 = Instant::now();
    let mut s = connect_to(port)?;
    s.write_all(&[0x5a])?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    let dt = t0.elapsed();
    if b[0] != 0x5a {
        return Err(io::Error::other("echo returned a different byte"));
    }
    Ok(dt)
}

/// Echoes `bytes` of pattern in both directions at once and checks every byte.
fn echo_verify(pair: &Pair, pattern: &Arc<[u8]>, bytes: usize) -> io::Result<()> {
    let s = pair.connect()?;
    let mut w = s.try_clone()?;
    let pat = Arc::clone(pattern);
    let writer = std::thread::spawn(move || -> io::Result<()> {
        let mut sent = 0;
        while sent < bytes {
            let len = (64 * 1024).min(bytes - sent);
            let at = sent % PATTERN_LEN;
            w.write_all(&pat[at..at + len])?;
            sent += len;
        }
        w.shutdown(Shutdown::Write)
    });
    let mut r = s;
    let mut got = Vec::with_capacity(bytes);
    r.read_to_end(&mut got)?;
    writer
        .join()
        .map_err(|_| io::Error::other("writer panicked"))??;
    let ok = got.len() == bytes && got.chunks(PATTERN_LEN).all(|c| c == &pattern[..c.len()]);
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{}: echo of {bytes} bytes came back wrong ({} bytes)",
            pair.label,
            got.len()
        )))
    }
}

/// `clients` threads connecting + echoing one byte in a loop for `secs`; completed
/// connections per second and the number that failed.
fn handshake_rate(pair: &Pair, clients: usize, secs: f64) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            let (done, failed, stop) = (Arc::clone(&done), Arc::clone(&failed), Arc::clone(&stop));
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match echo_once(pair.entry) {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

/// Bytes of one request and of its response in the small-message figure.
const MESSAGE_LEN: usize = 100;

/// `conns` keep-alive connections to 127.0.0.1:`port`, each on its own thread sending a
/// `MESSAGE_LEN`-byte request and reading the echoed response before the next, for `secs`;
/// requests per second over all connections. Every response is checked.
fn message_rate(port: u16, conns: usize, secs: f64) -> io::Result<f64> {
    message_rate_over(message_connections(port, conns)?, secs)
}

/// `conns` keep-alive connections to 127.0.0.1:`port`, each set up end to end (handshake
/// done, target connected) by one echoed byte, so that no clock includes their set-up.
fn message_connections(port: u16, conns: usize) -> io::Result<Vec<TcpStream>> {
    (0..conns)
        .map(|_| {
            let mut s = connect_to(port)?;
            s.write_all(&[0])?;
            s.read_exact(&mut [0u8; 1])?;
            Ok(s)
        })
        .collect()
}

/// The small-message workload through `pair` while the handshake workload's clients
/// connect through it in a loop, both for `message_secs`: (requests per second,
/// handshakes per second, failed handshakes).
fn messages_during_handshakes(pair: &Pair, sizes: &Sizes) -> io::Result<(f64, f64, u64)> {
    let streams = message_connections(pair.entry, sizes.message_conns)?;
    std::thread::scope(|scope| {
        let connecting =
            scope.spawn(|| handshake_rate(pair, sizes.handshake_clients, sizes.message_secs));
        let messages = message_rate_over(streams, sizes.message_secs);
        let (rate, failed) = connecting.join().unwrap_or((0.0, u64::MAX));
        messages.map(|messages| (messages, rate, failed))
    })
}

/// [`message_rate`] over connections already open, one thread each.
fn message_rate_over(streams: Vec<TcpStream>, secs: f64) -> io::Result<f64> {
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let results: Vec<io::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                let (done, stop) = (&done, &stop);
                scope.spawn(move || -> io::Result<()> {
                    let mut request = [0u8; MESSAGE_LEN];
                    let mut response = [0u8; MESSAGE_LEN];
                    let mut n: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        request[..8].copy_from_slice(&(i as u64).to_be_bytes());
                        request[8..16].copy_from_slice(&n.to_be_bytes());
                        s.write_all(&request)?;
                        s.read_exact(&mut response)?;
                        if response != request {
                            return Err(io::Error::other("a response came back wrong"));
                        }
                        n += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("client panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    results.into_iter().collect::<io::Result<Vec<()>>>()?;
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// Resident memory per open idle connection: the pair's summed VmRSS before and after
/// opening `n` connections (each has echoed one byte, so it is fully set up end to end).
struct Memory {
    kib_per_conn: f64,
    base_kib: u64,
    loaded_kib: u64,
    open_failed: usize,
    held_failed: usize,
    open_secs: f64,
}

fn memory(pair: &Pair, n: usize) -> Memory {
    // Warm up: the first connections allocate per-process things (thread stacks, caches).
    for _ in 0..4 {
        let _ = echo_once(pair.entry);
    }
    std::thread::sleep(Duration::from_millis(500));
    let base_kib = pair.rss_kib();
    let t0 = Instant::now();
    let openers = 4;
    let (conns, open_failed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..openers)
            .map(|i| {
                let count = n / openers + usize::from(i < n % openers);
                scope.spawn(move || {
                    let mut conns = Vec::with_capacity(count);
                    let mut failed = 0;
                    for _ in 0..count {
                        let opened = pair.connect().and_then(|mut s| {
                            s.write_all(&[1])?;
                            let mut b = [0u8; 1];
                            s.read_exact(&mut b)?;
                            Ok(s)
                        });
                        match opened {
                            Ok(s) => conns.push(s),
                            Err(_) => failed += 1,
                        }
                    }
                    (conns, failed)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        let mut failed = 0;
        for h in handles {
            let (c, f) = h.join().expect("opener thread");
            all.extend(c);
            failed += f;
        }
        (all, failed)
    });
    let open_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(1000));
    let loaded_kib = pair.rss_kib();
    // Every connection must still work: one more byte each way. All bytes go out first,
    // so a daemon that scans every descriptor per event (spiped's poll loop) handles many
    // per scan instead of one.
    let sent: Vec<bool> = conns
        .iter()
        .map(|mut s| s.write_all(&[2]).is_ok())
        .collect();
    let mut held_failed = 0;
    for (mut s, sent) in conns.iter().zip(sent) {
        let ok = sent && {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).is_ok() && b[0] == 2
        };
        held_failed += usize::from(!ok);
    }
    drop(conns);
    Memory {
        kib_per_conn: (loaded_kib as f64 - base_kib as f64) / n as f64,
        base_kib,
        loaded_kib,
        open_failed,
        held_failed,
        open_secs,
    }
}

// ---------------------------------------------------------------------------------------
// Ceiling: the packet code alone on one core.

struct Ceiling {
    seal_mb_s: f64,
    open_mb_s: f64,
    aes_mb_s: f64,
    hmac_mb_s: f64,
    /// OpenSSL's AES-256-CTR and HMAC-SHA256 the same way (Linux): the other candidate
    /// back end for the packet code.
    openssl: Option<(f64, f64)>,
}

fn ceiling(bytes: u64) -> Ceiling {
    // Session keys from a real (in-process, back-to-back) handshake through the public API.
    let key = PresharedKey::from_keyfile_bytes(b"ceiling benchmark key");
    let nonce = |b: u8| [b; 32];
    let client = Handshake::new(Role::Client, &key, ForwardSecrecy::Disabled, nonce(1), None)
        .expect("client handshake");
    let server = Handshake::new(Role::Server, &key, ForwardSecrecy::Disabled, nonce(2), None)
        .expect("server handshake");
    let (c_nonce, s_nonce) = (*client.nonce(), *server.nonce());
    let client = client.receive_nonce(&s_nonce);
    let server = server.receive_nonce(&c_nonce);
    let server = server
        .receive_signed_dh(client.signed_dh())
        .expect("server accepts");
    let client = client
        .receive_signed_dh(server.signed_dh())
        .expect("client accepts");
    let (mut sealer, _) = client.derive_session().into_packet_codecs();
    let (_, mut opener) = server.derive_session().into_packet_codecs();

    // Same batch shape as the pumps: 32 KiB of plaintext in, 32 packets out.
    let plain: Vec<u8> = (0..32 * 1024).map(|i| (i * 31) as u8).collect();
    let mut sealed = Vec::with_capacity(32 * PACKET_LEN);
    let batches = bytes / plain.len() as u64;
    let (mut t_seal, mut t_open) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..batches {
        sealed.clear();
        let t = Instant::now();
        sealer.seal_all(&plain, &mut sealed);
        t_seal += t.elapsed();
        let t = Instant::now();
        for packet in sealed.chunks_exact_mut(PACKET_LEN) {
            let packet: &mut [u8; PACKET_LEN] = packet.try_into().expect("packet size");
            std::hint::black_box(opener.open(packet).expect("opens"));
        }
        t_open += t.elapsed();
    }
    let mb = (batches * plain.len() as u64) as f64 / 1e6;

    // The two primitives alone, as the packet code uses them: AES-256-CTR over 1028 bytes
    // with a fresh counter block per packet, HMAC-SHA256 over 1036 bytes from a pre-keyed
    // state.
    use aes::cipher::KeyInit;
    use ctr::cipher::{InnerIvInit, StreamCipherCore};
    use hmac::Mac;
    type AesCtr = ctr::CtrCore<aes::Aes256, ctr::flavors::Ctr128BE>;
    let aes = aes::Aes256::new(&[7u8; 32].into());
    let mut body = [0u8; 1028];
    let packets = bytes / 1024;
    let t = Instant::now();
    for p in 0..packets {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&p.to_be_bytes());
        AesCtr::inner_iv_init(aes.clone(), (&iv).into())
            .apply_keystream_partial((&mut body[..]).into());
        std::hint::black_box(&body);
    }
    let aes_secs = t.elapsed().as_secs_f64();
    let keyed = <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&[9u8; 64].into());
    let msg = [3u8; 1036];
    let t = Instant::now();
    for _ in 0..packets {
        let mut m = keyed.clone();
        m.update(&msg);
        std::hint::black_box(m.finalize().into_bytes());
    }
    let hmac_secs = t.elapsed().as_secs_f64();
    let pmb = (packets * 1024) as f64 / 1e6;
    #[cfg(target_os = "linux")]
    let openssl = Some(openssl_primitives(packets)).map(|(aes, hmac)| (pmb / aes, pmb / hmac));
    #[cfg(not(target_os = "linux"))]
    let openssl = None;
    Ceiling {
        seal_mb_s: mb / t_seal.as_secs_f64(),
        open_mb_s: mb / t_open.as_secs_f64(),
        aes_mb_s: pmb / aes_secs,
        hmac_mb_s: pmb / hmac_secs,
        openssl,
    }
}

/// Seconds for `packets` packets of OpenSSL's AES-256-CTR (one context, a fresh counter
/// block per packet, as the packet code's) and of its HMAC-SHA256 (pre-keyed inner and
/// outer SHA-256 states cloned per packet), shaped as `ceiling`'s own primitives.
#[cfg(target_os = "linux")]
fn openssl_primitives(packets: u64) -> (f64, f64) {
    use openssl::cipher::Cipher;
    use openssl::cipher_ctx::CipherCtx;
    use openssl::sha::Sha256;
    let mut ctx = CipherCtx::new().expect("cipher context");
    ctx.encrypt_init(Some(Cipher::aes_256_ctr()), Some(&[7u8; 32]), None)
        .expect("AES-256-CTR");
    let mut body = [0u8; 1028];
    let t = Instant::now();
    for p in 0..packets {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&p.to_be_bytes());
        ctx.encrypt_init(None, None, Some(&iv))
            .expect("counter block");
        ctx.cipher_update_inplace(&mut body, 1028)
            .expect("encrypts");
        std::hint::black_box(&body);
    }
    let aes_secs = t.elapsed().as_secs_f64();
    let (mut inner, mut outer) = (Sha256::new(), Sha256::new());
    inner.update(&[9 ^ 0x36; 64]);
    outer.update(&[9 ^ 0x5c; 64]);
    let msg = [3u8; 1036];
    let t = Instant::now();
    for _ in 0..packets {
        let mut m = inner.clone();
        m.update(&msg);
        let mut o = outer.clone();
        o.update(&m.finish());
        std::hint::black_box(o.finish());
    }
    (aes_secs, t.elapsed().as_secs_f64())
}

/// One Diffie-Hellman modular exponentiation (2048-bit modulus, 259-bit exponent) as the
/// handshake does it: milliseconds for a key pair and for a shared secret (median of `n`).
fn dh_cost(n: usize) -> (f64, f64) {
    use sluice_engine::protocol::EphemeralKeyPair;
    let (mut gen_ms, mut shared_ms) = (Vec::new(), Vec::new());
    let peer = EphemeralKeyPair::from_random([0x42; 32]);
    for i in 0..n {
        let t = Instant::now();
        let pair = EphemeralKeyPair::from_random([i as u8; 32]);
        gen_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        std::hint::black_box(pair.shared_secret(peer.public()));
        shared_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (median(&gen_ms), median(&shared_ms))
}

// ---------------------------------------------------------------------------------------
// Statistics and report

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// Nearest-rank percentile (p in 0..=1).
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// One line of the summary: both figures, their ratio and the target (if any).
struct Row {
    figure: String,
    unit: &'static str,
    sluice: f64,
    spiped: f64,
    target: Option<(Better, f64)>,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.sluice / self.spiped
    }

    fn verdict(&self) -> String {
        match self.target {
            None => "—".into(),
            Some((better, bound)) => {
                let r = self.ratio();
                let (met, op) = match better {
                    Better::Higher => (r >= bound, "≥"),
                    Better::Lower => (r <= bound, "≤"),
                };
                // Two decimals at most, without trailing zeros: 0.25, 0.6, 2.5, 2.
                let bound = format!("{bound:.2}");
                let bound = bound.trim_end_matches('0').trim_end_matches('.');
                format!("{op} {bound}×: {}", if met { "met" } else { "NOT met" })
            }
        }
    }
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn note(msg: &str) {
    eprintln!("[sidebyside] {msg}");
}

fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let raised = libc::rlimit {
            rlim_cur: want.max(lim.rlim_cur),
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            // Not allowed to raise the hard limit: take what is allowed.
            let soft = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/debian_version").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {:.1} GiB RAM, AES-NI {}, SHA-NI {}, AVX2 {}; Linux {}, Debian {}",
        mem_kib as f64 / 1048576.0,
        if has("aes") { "yes" } else { "no" },
        if has("sha_ni") { "yes" } else { "no" },
        if has("avx2") { "yes" } else { "no" },
        kernel.trim(),
        os.trim()
    )
}

/// Which code the packet cryptography, the handshake's HMACs and the shared secret run on
/// here: the engine says which library, the crates choose their code at run time (sha2:
/// SHA-NI with SSE4.1; aes: VAES with AVX-512, then AES-NI).
fn crypto_backends() -> String {
    let sha256 = if std::arch::is_x86_feature_detected!("sha")
        && std::arch::is_x86_feature_detected!("sse4.1")
    {
        "SHA-NI"
    } else {
        "portable"
    };
    let aes = if std::arch::is_x86_feature_detected!("vaes")
        && std::arch::is_x86_feature_detected!("avx512f")
    {
        "VAES-512"
    } else if std::arch::is_x86_feature_detected!("vaes") {
        "VAES-256"
    } else if aes::hardware_accelerated() {
        "AES-NI"
    } else {
        "portable"
    };
    format!(
        "crypto of this build: packet MAC HMAC-SHA256 {} (the handshake's HMACs: sha2, {sha256}), AES-256-CTR {aes} (aes), DH shared secret {}",
        sluice_engine::protocol::packet::mac_implementation(),
        sluice_engine::protocol::dh::shared_secret_implementation()
    )
}

fn spiped_version(spiped: &Path) -> String {
    Command::new(spiped)
        .arg("-v")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            if text.is_empty() {
                String::from_utf8_lossy(&o.stdout).trim().to_owned()
            } else {
                text
            }
        })
        .unwrap_or_else(|e| format!("not runnable: {e}"))
}

// ---------------------------------------------------------------------------------------

pub fn main() {
    let opts = Opts::parse();
    let sizes = Sizes::new(opts.quick);
    if !opts.spiped.exists() {
        eprintln!(
            "sidebyside: {} not found; install Debian's spiped (apt-get install spiped) or pass --spiped PATH",
            opts.spiped.display()
        );
        std::process::exit(2);
    }
    if !opts.sluiced.exists() {
        eprintln!("sidebyside: {} not found", opts.sluiced.display());
        std::process::exit(2);
    }
    let max_conns = sizes.memory_counts.iter().copied().max().unwrap_or(0) as u64;
    // Each daemon holds two sockets per connection; children inherit this limit.
    let fd_limit = raise_fd_limit(max_conns * 2 + 1024);

    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("bench.key");
    let mut key_bytes = [0u8; 32];
    getrandom::fill(&mut key_bytes).expect("random key");
    std::fs::write(&key, key_bytes).expect("write key");
    let env = Env {
        spiped: opts.spiped.clone(),
        sluiced: opts.sluiced.clone(),
        key,
        dir: dir.path().to_owned(),
    };
    let pattern = pattern();
    let servers = Servers::start(Arc::clone(&pattern));

    let machine = machine();
    let versions = format!(
        "{}; sluiced {}",
        spiped_version(&opts.spiped),
        opts.sluiced.display()
    );
    note(&machine);
    note(&crypto_backends());
    note(&versions);
    note(&format!(
        "mode {}; fd limit {fd_limit}",
        if opts.quick { "--quick" } else { "full" }
    ));

    let mut rows: Vec<Row> = Vec::new();
    let mut details = String::new();
    let kinds = [Kind::Sluice, Kind::Spiped];

    if opts.wants("throughput") {
        let pairs: Vec<Pair> = kinds
            .iter()
            .map(|&k| Pair::start(&env, k, k, servers.sink, &[]))
            .collect();
        let mut mbs = [Vec::new(), Vec::new()];
        for rep in 0..sizes.bulk_reps {
            // Alternate which goes first, so drift on a shared machine hits both alike.
            let order: [usize; 2] = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                match bulk(&pairs[i], &pattern, sizes.bulk_bytes) {
                    Ok(b) => {
                        note(&format!(
                            "bulk {:8} rep {rep}: {:7.1} MB/s over {:.2} s; CPU -e {:.0}%, -d {:.0}%",
                            pairs[i].label,
                            b.mb_s,
                            b.secs,
                            100.0 * b.cpu_enc / b.secs,
                            100.0 * b.cpu_dec / b.secs
                        ));
                        let gb = sizes.bulk_bytes as f64 / 1e9;
                        let _ = writeln!(
                            details,
                            "bulk {} rep {rep}: {:.1} MB/s; CPU -e {:.0}% -d {:.0}%, i.e. {:.2} s (-e) and {:.2} s (-d) of CPU per GB",
                            pairs[i].label,
                            b.mb_s,
                            100.0 * b.cpu_enc / b.secs,
                            100.0 * b.cpu_dec / b.secs,
                            b.cpu_enc / gb,
                            b.cpu_dec / gb
                        );
                        mbs[i].push(b.mb_s);
                    }
                    Err(e) => note(&format!("bulk {} rep {rep} FAILED: {e}", pairs[i].label)),
                }
            }
        }
        rows.push(Row {
            figure: format!(
                "bulk one-way throughput, 1 connection ({} MiB × {})",
                sizes.bulk_bytes >> 20,
                sizes.bulk_reps
            ),
            unit: "MB/s",
            sluice: median(&mbs[0]),
            spiped: median(&mbs[1]),
            target: Some((Better::Higher, 2.5)),
        });
    }

    if opts.wants("latency") {
        // Connections 20 ms apart meet idle daemons (and, on a VM, idle vCPUs whose caches
        // the host has used meanwhile): that is the figure the targets are about. Back to
        // back, with no idle time between connections, shows what the same path costs warm.
        // With -f, two hops of the plain forwarder (no handshake, no crypto, the target
        // connected at accept) go in the same rotation: what a tokio hop costs by itself.
        let back_to_back = Duration::ZERO;
        for (flags, label, gap, bound) in [
            (&[][..], "forward secrecy", sizes.latency_gap, Some(0.5)),
            (&["-f"][..], "-f on both ends", sizes.latency_gap, Some(0.8)),
            (
                &["-f"][..],
                "-f on both ends, back to back",
                back_to_back,
                None,
            ),
        ] {
            let pairs: Vec<Pair> = kinds
                .iter()
                .map(|&k| Pair::start(&env, k, k, servers.echo, flags))
                .collect();
            let mut ports = vec![pairs[0].entry, pairs[1].entry];
            let mut names = vec![pairs[0].label.as_str(), pairs[1].label.as_str()];
            let plain_hops = flags.contains(&"-f").then(|| {
                let second = ChildServer::forwarder(servers.echo, Forwarder::Readiness);
                let first = ChildServer::forwarder(second.port, Forwarder::Readiness);
                ports.push(first.port);
                names.push("plain forwarder (no crypto)");
                [first, second]
            });
            // Let the DH pools fill before measuring.
            std::thread::sleep(Duration::from_millis(500));
            let variants = ports.len();
            let mut ms = vec![Vec::new(); variants];
            let mut failures = vec![0usize; variants];
            for sample in 0..sizes.latency_samples {
                for step in 0..variants {
                    let i = (sample + step) % variants;
                    match echo_once(ports[i]) {
                        Ok(d) => ms[i].push(d.as_secs_f64() * 1e3),
                        Err(_) => failures[i] += 1,
                    }
                    std::thread::sleep(gap);
                }
            }
            drop(plain_hops);
            for i in 0..variants {
                note(&format!(
                    "latency {label} {}: median {:.3} ms, p90 {:.3} ms, min {:.3} ms, {} failed",
                    names[i],
                    median(&ms[i]),
                    percentile(&ms[i], 0.9),
                    percentile(&ms[i], 0.0),
                    failures[i]
                ));
            }
            for (name, p) in [("median", 0.5), ("p90", 0.9)] {
                rows.push(Row {
                    figure: format!("connect + 1-byte echo, {label}, {name}"),
                    unit: "ms",
                    sluice: percentile(&ms[0], p),
                    spiped: percentile(&ms[1], p),
                    target: bound
                        .filter(|_| name == "median")
                        .map(|b| (Better::Lower, b)),
                });
            }
            if let Some(plain) = ms.get(2) {
                rows.push(Row {
                    figure: format!(
                        "connect + 1-byte echo, {label}: two hops of the plain forwarder vs spiped, median (first column: the forwarder, no handshake, no crypto; no Sluice)"
                    ),
                    unit: "ms",
                    sluice: median(plain),
                    spiped: median(&ms[1]),
                    target: None,
                });
            }
        }
    }

    if opts.wants("handshakes") {
        for (flags, label) in [
            (&[][..], "forward secrecy"),
            (&["-f"][..], "-f on both ends"),
        ] {
            let pairs: Vec<Pair> = kinds
                .iter()
                .map(|&k| Pair::start(&env, k, k, servers.echo, flags))
                .collect();
            let mut rates = [Vec::new(), Vec::new()];
            for rep in 0..sizes.handshake_reps {
                let order: [usize; 2] = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
                for i in order {
                    std::thread::sleep(Duration::from_millis(500));
                    let cpu0 = pairs[i].cpu_secs();
                    let (rate, failed) =
                        handshake_rate(&pairs[i], sizes.handshake_clients, sizes.handshake_secs);
                    let cpu1 = pairs[i].cpu_secs();
                    let line = format!(
                        "handshakes {label} {} rep {rep}: {rate:.0}/s ({failed} failed); CPU per connection -e {:.0} µs, -d {:.0} µs",
                        pairs[i].label,
                        1e6 * (cpu1.0 - cpu0.0) / (rate * sizes.handshake_secs),
                        1e6 * (cpu1.1 - cpu0.1) / (rate * sizes.handshake_secs)
                    );
                    note(&line);
                    let _ = writeln!(details, "{line}");
                    rates[i].push(rate);
                }
            }
            rows.push(Row {
                figure: format!(
                    "handshakes per second, {} clients in a loop ({label})",
                    sizes.handshake_clients
                ),
                unit: "conn/s",
                sluice: median(&rates[0]),
                spiped: median(&rates[1]),
                target: flags.is_empty().then_some((Better::Higher, 2.0)),
            });
        }
    }

    if opts.wants("x25519") {
        // Sluice's opt-in X25519 handshake (docs/X25519.md) against the classic
        // forward-secret handshake, Sluice's and stock spiped's, in the same run.
        let variants = [
            Pair::start(
                &env,
                Kind::Sluice,
                Kind::Sluice,
                servers.echo,
                &["--x25519"],
            ),
            Pair::start(&env, Kind::Sluice, Kind::Sluice, servers.echo, &[]),
            Pair::start(&env, Kind::Spiped, Kind::Spiped, servers.echo, &[]),
        ];
        let names = ["sluiced --x25519", "sluiced (classic, PFS)", "spiped (PFS)"];
        std::thread::sleep(Duration::from_millis(500));
        let mut ms: [Vec<f64>; 3] = Default::default();
        let mut failures = [0usize; 3];
        for sample in 0..sizes.latency_samples {
            for step in 0..3 {
                let i = (sample + step) % 3;
                match echo_once(variants[i].entry) {
                    Ok(d) => ms[i].push(d.as_secs_f64() * 1e3),
                    Err(_) => failures[i] += 1,
                }
                std::thread::sleep(sizes.latency_gap);
            }
        }
        let mut rates: [Vec<f64>; 3] = Default::default();
        for rep in 0..sizes.handshake_reps {
            for step in 0..3 {
                let i = (rep + step) % 3;
                std::thread::sleep(Duration::from_millis(500));
                let (rate, _) =
                    handshake_rate(&variants[i], sizes.handshake_clients, sizes.handshake_secs);
                rates[i].push(rate);
            }
        }
        for i in 0..3 {
            let line = format!(
                "x25519 comparison, {}: echo median {:.3} ms, p90 {:.3} ms ({} failed); {:.0} handshakes/s",
                names[i],
                median(&ms[i]),
                percentile(&ms[i], 0.9),
                failures[i],
                median(&rates[i])
            );
            note(&line);
            let _ = writeln!(details, "{line}");
        }
        let _ = writeln!(
            details,
            "X25519 against Sluice's own classic PFS handshake: latency {:.2}×, handshakes/s {:.2}×",
            median(&ms[0]) / median(&ms[1]),
            median(&rates[0]) / median(&rates[1])
        );
        for (name, p) in [("median", 0.5), ("p90", 0.9)] {
            rows.push(Row {
                figure: format!(
                    "connect + 1-byte echo, Sluice X25519 vs spiped forward secrecy, {name}"
                ),
                unit: "ms",
                sluice: percentile(&ms[0], p),
                spiped: percentile(&ms[2], p),
                target: (name == "median").then_some((Better::Lower, 0.25)),
            });
        }
        rows.push(Row {
            figure: format!(
                "handshakes per second, {} clients, Sluice X25519 vs spiped forward secrecy",
                sizes.handshake_clients
            ),
            unit: "conn/s",
            sluice: median(&rates[0]),
            spiped: median(&rates[2]),
            target: None,
        });
    }

    if opts.wants("reverse") {
        // A reverse tunnel beside a forward one, Sluice's and stock spiped's, in the same
        // run: connect + first byte (a ready pooled connection, so no handshake) and bulk.
        let variants = [
            Pair::reverse(&env, servers.echo, &[]),
            Pair::start(&env, Kind::Sluice, Kind::Sluice, servers.echo, &[]),
            Pair::start(&env, Kind::Spiped, Kind::Spiped, servers.echo, &[]),
        ];
        let names = ["sluiced reverse", "sluiced forward", "spiped forward"];
        std::thread::sleep(Duration::from_millis(500));
        let mut ms: [Vec<f64>; 3] = Default::default();
        let mut failures = [0usize; 3];
        for sample in 0..sizes.latency_samples {
            for step in 0..3 {
                let i = (sample + step) % 3;
                match echo_once(variants[i].entry) {
                    Ok(d) => ms[i].push(d.as_secs_f64() * 1e3),
                    Err(_) => failures[i] += 1,
                }
                std::thread::sleep(sizes.latency_gap);
            }
        }
        let sinks = [
            Pair::reverse(&env, servers.sink, &[]),
            Pair::start(&env, Kind::Sluice, Kind::Sluice, servers.sink, &[]),
            Pair::start(&env, Kind::Spiped, Kind::Spiped, servers.sink, &[]),
        ];
        let mut mbs: [Vec<f64>; 3] = Default::default();
        for rep in 0..sizes.bulk_reps {
            for step in 0..3 {
                let i = (rep + step) % 3;
                match bulk(&sinks[i], &pattern, sizes.bulk_bytes) {
                    Ok(b) => mbs[i].push(b.mb_s),
                    Err(e) => note(&format!("bulk {} rep {rep} FAILED: {e}", names[i])),
                }
            }
        }
        for i in 0..3 {
            let line = format!(
                "reverse comparison, {}: connect + 1-byte echo median {:.3} ms, p90 {:.3} ms ({} failed); bulk {:.1} MB/s",
                names[i],
                median(&ms[i]),
                percentile(&ms[i], 0.9),
                failures[i],
                median(&mbs[i])
            );
            note(&line);
            let _ = writeln!(details, "{line}");
        }
        let _ = writeln!(
            details,
            "reverse against Sluice's own forward tunnel: latency {:.2}×, bulk {:.2}×",
            median(&ms[0]) / median(&ms[1]),
            median(&mbs[0]) / median(&mbs[1])
        );
        rows.push(Row {
            figure: "connect + 1-byte echo, Sluice reverse tunnel vs spiped forward, median".into(),
            unit: "ms",
            sluice: median(&ms[0]),
            spiped: median(&ms[2]),
            target: None,
        });
        rows.push(Row {
            figure: format!(
                "bulk throughput, Sluice reverse tunnel vs spiped forward ({} MiB × {})",
                sizes.bulk_bytes >> 20,
                sizes.bulk_reps
            ),
            unit: "MB/s",
            sluice: median(&mbs[0]),
            spiped: median(&mbs[2]),
            target: None,
        });
    }

    if opts.wants("contention") {
        // Small messages and forward-secret handshakes through one pair at once: each
        // handshake's exponentiations compete with the data path for the CPU, and where
        // they run (spiped: in its one event loop; Sluice: on other threads) decides how
        // much of its small-message rate a pair keeps.
        let pairs: Vec<Pair> = kinds
            .iter()
            .map(|&k| Pair::start(&env, k, k, servers.echo, &[]))
            .collect();
        let mut alone = [Vec::new(), Vec::new()];
        let mut together = [Vec::new(), Vec::new()];
        let mut handshakes = [Vec::new(), Vec::new()];
        for rep in 0..sizes.message_reps {
            let order: [usize; 2] = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let pair = &pairs[i];
                std::thread::sleep(Duration::from_millis(500));
                let measured = message_rate(pair.entry, sizes.message_conns, sizes.message_secs)
                    .and_then(|rate| {
                        alone[i].push(rate);
                        std::thread::sleep(Duration::from_millis(500));
                        messages_during_handshakes(pair, &sizes)
                    });
                match measured {
                    Ok((messages, rate, failed)) => {
                        note(&format!(
                            "contention {} rep {rep}: {messages:.0} requests/s ({:.0} alone) while {rate:.0} handshakes/s ({failed} failed)",
                            pair.label,
                            alone[i].last().copied().unwrap_or(0.0)
                        ));
                        together[i].push(messages);
                        handshakes[i].push(rate);
                    }
                    Err(e) => note(&format!("contention {} rep {rep} FAILED: {e}", pair.label)),
                }
            }
        }
        for i in 0..2 {
            let line = format!(
                "contention, {}: small messages {:.0} requests/s alone, {:.0} while {} clients connect in a loop ({:.0}% kept); {:.0} handshakes/s meanwhile",
                pairs[i].label,
                median(&alone[i]),
                median(&together[i]),
                sizes.handshake_clients,
                100.0 * median(&together[i]) / median(&alone[i]),
                median(&handshakes[i]),
            );
            note(&line);
            let _ = writeln!(details, "{line}");
        }
        rows.push(Row {
            figure: format!(
                "small messages ({MESSAGE_LEN} B, {} connections) while {} clients make forward-secret connections in a loop",
                sizes.message_conns, sizes.handshake_clients
            ),
            unit: "req/s",
            sluice: median(&together[0]),
            spiped: median(&together[1]),
            target: None,
        });
        rows.push(Row {
            figure: format!(
                "forward-secret handshakes per second, {} clients, while those small messages flow",
                sizes.handshake_clients
            ),
            unit: "conn/s",
            sluice: median(&handshakes[0]),
            spiped: median(&handshakes[1]),
            target: None,
        });
    }

    if opts.wants("messages") {
        // Small request/response messages over keep-alive connections: through each pair,
        // and through two hops of a plain forwarder without crypto (the ceiling).
        let pairs: Vec<Pair> = kinds
            .iter()
            .map(|&k| Pair::start(&env, k, k, servers.echo, &[]))
            .collect();
        let second_hop = ChildServer::forwarder(servers.echo, Forwarder::Readiness);
        let first_hop = ChildServer::forwarder(second_hop.port, Forwarder::Readiness);
        let mut ports = vec![pairs[0].entry, pairs[1].entry, first_hop.port];
        let mut names = vec!["sluiced", "spiped", "plain forwarder (no crypto)"];
        // Linux: the same two hops on io_uring, what a completion-based data path could
        // gain over the readiness loop.
        let uring_hops = cfg!(target_os = "linux").then(|| {
            let second = ChildServer::forwarder(servers.echo, Forwarder::IoUring);
            let first = ChildServer::forwarder(second.port, Forwarder::IoUring);
            ports.push(first.port);
            names.push("plain forwarder on io_uring (no crypto)");
            [first, second]
        });
        std::thread::sleep(Duration::from_millis(500));
        let variants = ports.len();
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants];
        for rep in 0..sizes.message_reps {
            for step in 0..variants {
                let i = (rep + step) % variants;
                std::thread::sleep(Duration::from_millis(500));
                let cpu0 = pairs.get(i).map(Pair::cpu_secs);
                match message_rate(ports[i], sizes.message_conns, sizes.message_secs) {
                    Ok(rate) => {
                        // The daemons' CPU per request (not for the forwarder).
                        let cpu = match (cpu0, pairs.get(i).map(Pair::cpu_secs)) {
                            (Some(a), Some(b)) => {
                                let requests = rate * sizes.message_secs;
                                format!(
                                    "; CPU per request -e {:.1} µs, -d {:.1} µs",
                                    1e6 * (b.0 - a.0) / requests,
                                    1e6 * (b.1 - a.1) / requests
                                )
                            }
                            _ => String::new(),
                        };
                        let line = format!(
                            "messages {} rep {rep}: {rate:.0} requests/s over {} connections ({MESSAGE_LEN}-byte requests and responses){cpu}",
                            names[i], sizes.message_conns
                        );
                        note(&line);
                        let _ = writeln!(details, "{line}");
                        rates[i].push(rate);
                    }
                    Err(e) => note(&format!("messages {} rep {rep} FAILED: {e}", names[i])),
                }
            }
        }
        let [sluice, spiped, plain] = [0, 1, 2].map(|i| median(&rates[i]));
        let _ = writeln!(
            details,
            "messages against the plain forwarder (two hops, no crypto, {plain:.0} requests/s): sluiced {:.0}%, spiped {:.0}%",
            100.0 * sluice / plain,
            100.0 * spiped / plain
        );
        rows.push(Row {
            figure: format!(
                "small request/response messages ({MESSAGE_LEN} B), {} keep-alive connections",
                sizes.message_conns
            ),
            unit: "req/s",
            sluice,
            spiped,
            target: Some((Better::Higher, 2.0)),
        });
        rows.push(Row {
            figure: format!(
                "small messages, {} connections, Sluice vs the plain forwarder (ceiling; second column: the forwarder, not spiped)",
                sizes.message_conns
            ),
            unit: "req/s",
            sluice,
            spiped: plain,
            target: None,
        });
        if let Some(rates) = rates.get(3).filter(|_| uring_hops.is_some()) {
            rows.push(Row {
                figure: format!(
                    "small messages, {} connections, the plain forwarder on io_uring vs on the readiness loop (first column: io_uring, second: readiness; no Sluice, no spiped)",
                    sizes.message_conns
                ),
                unit: "req/s",
                sluice: median(rates),
                spiped: plain,
                target: None,
            });
        }
        drop(uring_hops);
    }

    if opts.wants("redis") {
        match Redis::start(&env) {
            Err(why) => note(&format!("redis: skipped ({why})")),
            Ok(redis) => {
                // A real client of small messages: redis-benchmark, 50 keep-alive clients,
                // SET and GET, through each pair and straight to the server (the ceiling).
                let pairs: Vec<Pair> = kinds
                    .iter()
                    .map(|&k| Pair::start(&env, k, k, redis.port, &[]))
                    .collect();
                let ports = [pairs[0].entry, pairs[1].entry, redis.port];
                let names = ["sluiced", "spiped", "no tunnel"];
                std::thread::sleep(Duration::from_millis(500));
                let mut rates: [Vec<f64>; 3] = Default::default();
                for rep in 0..sizes.message_reps {
                    for step in 0..3 {
                        let i = (rep + step) % 3;
                        match redis.benchmark(ports[i], sizes.redis_requests) {
                            Ok(rate) => {
                                let line = format!(
                                    "redis-benchmark {} rep {rep}: {rate:.0} requests/s (SET and GET, 50 clients)",
                                    names[i]
                                );
                                note(&line);
                                let _ = writeln!(details, "{line}");
                                rates[i].push(rate);
                            }
                            Err(e) => note(&format!("redis {} rep {rep} FAILED: {e}", names[i])),
                        }
                    }
                }
                let [sluice, spiped, direct] = rates.each_ref().map(|r| median(r));
                let _ = writeln!(
                    details,
                    "redis-benchmark against no tunnel ({direct:.0} requests/s): sluiced {:.2}×, spiped {:.2}×",
                    sluice / direct,
                    spiped / direct
                );
                rows.push(Row {
                    figure: "redis-benchmark SET/GET, 50 keep-alive clients".into(),
                    unit: "req/s",
                    sluice,
                    spiped,
                    target: Some((Better::Higher, 1.6)),
                });
                rows.push(Row {
                    figure: "redis-benchmark, Sluice vs no tunnel at all (second column: no tunnel, not spiped)".into(),
                    unit: "req/s",
                    sluice,
                    spiped: direct,
                    target: Some((Better::Higher, 0.45)),
                });
            }
        }
    }

    if opts.wants("memory") {
        let echo = ChildServer::echo();
        for &wanted in &sizes.memory_counts {
            // Each daemon holds two sockets per connection and cannot go past the fd limit
            // it inherits; keep some room for listeners, logs and the runtime.
            let allowed = (fd_limit.saturating_sub(100) / 2) as usize;
            let n = wanted.min(allowed);
            if n < wanted {
                note(&format!(
                    "memory: {wanted} connections need {} fds per daemon, but the hard fd limit is {fd_limit} and cannot be raised here; measuring at {n}",
                    2 * wanted + 100
                ));
            }
            let mut per = [f64::NAN; 2];
            let mut held = [String::new(), String::new()];
            for (i, &k) in kinds.iter().enumerate() {
                let pair = Pair::start(&env, k, k, echo.port, &["-f"]);
                let m = memory(&pair, n);
                note(&format!(
                    "memory {:8} at {n}: {:.2} KiB/conn (RSS {} → {} KiB), opened in {:.1} s, {} failed to open, {} failed the hold check",
                    pair.label,
                    m.kib_per_conn,
                    m.base_kib,
                    m.loaded_kib,
                    m.open_secs,
                    m.open_failed,
                    m.held_failed
                ));
                let _ = writeln!(
                    details,
                    "memory {} at {n}: RSS of both daemons {} → {} KiB; {} failed to open, {} failed the hold check",
                    pair.label, m.base_kib, m.loaded_kib, m.open_failed, m.held_failed
                );
                per[i] = m.kib_per_conn;
                held[i] = if m.open_failed + m.held_failed == 0 {
                    format!("{} held {n} connections without error", pair.label)
                } else {
                    format!(
                        "{} at {n} connections: {} failed to open, {} failed the hold check",
                        pair.label, m.open_failed, m.held_failed
                    )
                };
                drop(pair);
                // Let closing sockets finish before the next daemon starts.
                std::thread::sleep(Duration::from_millis(1000));
            }
            let _ = writeln!(details, "{}; {}", held[0], held[1]);
            rows.push(Row {
                figure: if n < wanted {
                    format!(
                        "resident memory per idle connection, {n} open (both daemons; {wanted} asked, fd limit {fd_limit})"
                    )
                } else {
                    format!("resident memory per idle connection, {n} open (both daemons)")
                },
                unit: "KiB",
                sluice: per[0],
                spiped: per[1],
                target: Some((Better::Lower, 0.5)),
            });
        }
    }

    let mut ceiling_line = String::new();
    if opts.wants("ceiling") {
        let c = ceiling(sizes.ceiling_bytes);
        ceiling_line = format!(
            "Packet code alone, one core, {} MiB: seal (AES-256-CTR + HMAC-SHA256) {:.0} MB/s, open {:.0} MB/s; AES-256-CTR alone {:.0} MB/s, HMAC-SHA256 alone {:.0} MB/s (plaintext MB/s).",
            sizes.ceiling_bytes >> 20,
            c.seal_mb_s,
            c.open_mb_s,
            c.aes_mb_s,
            c.hmac_mb_s
        );
        if let Some((aes, hmac)) = c.openssl {
            let _ = write!(
                ceiling_line,
                " OpenSSL the same way: AES-256-CTR {aes:.0} MB/s, HMAC-SHA256 {hmac:.0} MB/s."
            );
        }
        let (gen_ms, shared_ms) = dh_cost(if opts.quick { 20 } else { 100 });
        let _ = write!(
            ceiling_line,
            " One DH exponentiation (2048-bit, 259-bit exponent): key pair {gen_ms:.3} ms, shared secret {shared_ms:.3} ms."
        );
        note(&ceiling_line);
        if let Some(row) = rows.iter().find(|r| r.figure.starts_with("bulk")) {
            let _ = write!(
                ceiling_line,
                " The Sluice pipe runs at {:.0}% of the slower of the two (spiped's at {:.0}%).",
                100.0 * row.sluice / c.seal_mb_s.min(c.open_mb_s),
                100.0 * row.spiped / c.seal_mb_s.min(c.open_mb_s)
            );
        }
    }

    let mut mixed_lines = Vec::new();
    if opts.wants("mixed") {
        for (enc, dec) in [(Kind::Sluice, Kind::Spiped), (Kind::Spiped, Kind::Sluice)] {
            for flags in [&[][..], &["-f"][..]] {
                let sink_pair = Pair::start(&env, enc, dec, servers.sink, flags);
                let echo_pair = Pair::start(&env, enc, dec, servers.echo, flags);
                let flag_label = if flags.is_empty() { "PFS" } else { "-f" };
                let verdict = match (
                    bulk(&sink_pair, &pattern, sizes.mixed_bytes),
                    echo_verify(&echo_pair, &pattern, 4 << 20),
                ) {
                    (Ok(b), Ok(())) => format!(
                        "{} ({flag_label}): bytes verified both ways; one-way {:.0} MB/s",
                        sink_pair.label, b.mb_s
                    ),
                    (Err(e), _) | (_, Err(e)) => {
                        format!("{} ({flag_label}): FAILED: {e}", sink_pair.label)
                    }
                };
                note(&verdict);
                mixed_lines.push(verdict);
            }
        }
    }

    drop(servers);

    // The summary, as a Markdown table for docs/PERFORMANCE.md.
    println!();
    println!("Machine: {machine}");
    println!("Peers: {versions}");
    println!(
        "Run: cargo bench -p sluice-engine --bench sidebyside{}",
        if opts.quick { " -- --quick" } else { "" }
    );
    println!();
    println!("| Figure | Sluice | spiped 1.6.2 | Sluice / spiped | Target |");
    println!("|---|---:|---:|---:|---|");
    for row in &rows {
        println!(
            "| {} | {} {} | {} {} | {:.2}× | {} |",
            row.figure,
            fmt_num(row.sluice),
            row.unit,
            fmt_num(row.spiped),
            row.unit,
            row.ratio(),
            row.verdict()
        );
    }
    if !ceiling_line.is_empty() {
        println!();
        println!("{ceiling_line}");
    }
    if !mixed_lines.is_empty() {
        println!();
        println!("Mixed pairs:");
        for line in &mixed_lines {
            println!("- {line}");
        }
    }
    if !details.is_empty() {
        println!();
        println!("Details:");
        print!("{details}");
    }
}
