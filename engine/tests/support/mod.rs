//! Helpers for the engine's end-to-end tests beyond the shared test kit (`sluice-testkit`,
//! re-exported here): `sluiced` and stock spiped daemons started on free ports, a relay
//! that alters one byte, a man in the middle that knows spiped's framing, the engine's
//! library API in one call, and what a sluiced log says about failed handshakes.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub use sluice_testkit::*;

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
