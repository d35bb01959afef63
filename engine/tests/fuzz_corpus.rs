//! The fuzz targets' bounded run for CI, on the stable toolchain: every committed corpus
//! input (fuzz/corpus/TARGET/*) goes through the same harnesses libFuzzer drives
//! (fuzz/src/lib.rs), then a fixed number of seeded random mutations of them. A failing
//! input is saved under the target directory and its path printed, ready for scripts/fuzz.
//!
//! More mutations: SLUICE_FUZZ_MUTATIONS=100000 cargo test -p sluice-engine --test fuzz_corpus
//! Rewrite the seed inputs: cargo test -p sluice-engine --test fuzz_corpus -- --ignored write_seed_corpus

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn load_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut inputs: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(|e| {
            let path = e.ok()?.path();
            path.is_file().then(|| {
                let name = path.file_name()?.to_string_lossy().into_owned();
                Some((name, fs::read(&path).ok()?))
            })?
        })
        .collect();
    inputs.sort();
    inputs
}

/// xorshift64*: reproducible from its seed, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Tokens that text inputs (config files, addresses) are made of.
const TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "/",
    ".",
    "::",
    "0",
    "1",
    "65535",
    "65536",
    "-1",
    "1e309",
    "NaN",
    "version",
    "tunnels",
    "name",
    "mode",
    "Encrypt",
    "Decrypt",
    "listen",
    "target",
    "key",
    "File",
    "Keychain",
    "Some(",
    "None",
    "timeout_secs",
    "max_connections",
    "bind",
    "reresolve_secs",
    "forward_secrecy",
    "Required",
    "true",
    "//",
    "/*",
    "\\u{0}",
    "\n",
    "é",
];

/// One to four random edits of `input`: bit flips, byte sets, inserts, deletes, copies,
/// splices with another corpus input, truncation and token insertion.
fn mutate(input: &[u8], corpus: &[(String, Vec<u8>)], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.byte();
            }
            2 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                v.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                v.drain(at..at + n);
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let piece = v[at..at + n].to_vec();
                let to = rng.below(len + 1);
                v.splice(to..to, piece);
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())].1;
                let keep = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(keep);
                v.extend_from_slice(&other[from..]);
            }
            7 => v.truncate(rng.below(len + 1)),
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let at = rng.below(len + 1);
                v.splice(at..at, token.iter().copied());
            }
        }
    }
    v
}

/// Runs `harness` on `input`; on a panic, saves the input and fails naming it.
fn run_one(target: &str, what: &str, input: &[u8], harness: fn(&[u8])) {
    if catch_unwind(AssertUnwindSafe(|| harness(input))).is_err() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        let _ = fs::create_dir_all(&dir);
        let path = dir.join(format!("{target}-{}", what.replace('/', "_")));
        let _ = fs::write(&path, input);
        panic!(
            "fuzz target {target} failed on {what}; input saved to {} (reproduce with fuzz/target binaries or this test)",
            path.display()
        );
    }
}

/// Replays the corpus, then `default_mutations` mutated inputs (or SLUICE_FUZZ_MUTATIONS).
fn replay(target: &str, harness: fn(&[u8]), default_mutations: usize, seed: u64) {
    let corpus = load_corpus(target);
    assert!(
        corpus.len() >= 5,
        "fuzz/corpus/{target} has only {} inputs",
        corpus.len()
    );
    let started = Instant::now();
    for (name, input) in &corpus {
        run_one(target, name, input, harness);
    }
    let mutations = std::env::var("SLUICE_FUZZ_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default_mutations);
    let mut rng = Rng(seed | 1);
    for i in 0..mutations {
        let base = &corpus[rng.below(corpus.len())].1;
        let input = mutate(base, &corpus, &mut rng);
        run_one(target, &format!("mutation-{i}"), &input, harness);
    }
    eprintln!(
        "fuzz replay {target}: {} corpus inputs + {mutations} mutations in {:?}",
        corpus.len(),
        started.elapsed()
    );
}

#[test]
fn handshake_corpus_and_mutations() {
    replay("handshake", harness::handshake, 1_500, 0x5eed_0001);
}

#[test]
fn x25519_corpus_and_mutations() {
    replay("x25519", harness::x25519_handshake, 2_000, 0x5eed_0005);
}

#[test]
fn packets_corpus_and_mutations() {
    replay("packets", harness::packets, 5_000, 0x5eed_0002);
}

#[test]
fn config_corpus_and_mutations() {
    replay("config", harness::config, 50_000, 0x5eed_0003);
}

#[test]
fn address_corpus_and_mutations() {
    replay("address", harness::address, 200_000, 0x5eed_0004);
}

// ---------------------------------------------------------------------------------------
// Seed inputs: the committed starting points, written by the ignored test below. libFuzzer
// adds to them (scripts/fuzz TARGET, then scripts/fuzz TARGET merge).

fn seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_dir(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

/// Whether the seeded peer follows the protocol.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    Honest,
    Raw,
}

fn handshake_seed(role_server: bool, ours: u8, peer: u8, behaviour: Peer) -> Vec<u8> {
    let honest = behaviour == Peer::Honest;
    let flags = u8::from(role_server) | (ours << 1) | (u8::from(honest) << 3) | (peer << 4);
    let mut v = vec![flags];
    v.extend_from_slice(&[0u8; 320]);
    v.extend((0..2100u32).map(|i| (i * 7) as u8));
    v
}

#[test]
#[ignore = "writes the seed corpus into fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    // Handshake: every role and policy pair with an honest peer, single-bit alterations
    // of nonce, DH value and MAC, and raw bytes.
    for server in [false, true] {
        for ours in 0..3 {
            for peer in 0..3 {
                let name = format!("honest-{}-{ours}{peer}", if server { "s" } else { "c" });
                seed(
                    "handshake",
                    &name,
                    &handshake_seed(server, ours, peer, Peer::Honest),
                );
            }
        }
        for (part, offset) in [("nonce", 1 + 5), ("y", 1 + 32 + 100), ("mac", 1 + 32 + 270)] {
            let mut v = handshake_seed(server, 1, 1, Peer::Honest);
            v[offset] = 0x10;
            let name = format!("flip-{part}-{}", if server { "s" } else { "c" });
            seed("handshake", &name, &v);
        }
        let mut raw = handshake_seed(server, 1, 0, Peer::Raw);
        for (i, b) in raw.iter_mut().enumerate().skip(1).take(320) {
            *b = (i * 13) as u8;
        }
        seed(
            "handshake",
            &format!("raw-{}", if server { "s" } else { "c" }),
            &raw,
        );
    }

    // Packets: scripts (opcode, operands) for each kind of interference.
    let seal = |len: u16, fill: u8| {
        let mut v = vec![0u8];
        v.extend_from_slice(&len.to_le_bytes());
        v.push(fill);
        v
    };
    let script = |ops: &[Vec<u8>]| {
        let mut v = vec![0u8];
        for op in ops {
            v.extend_from_slice(op);
        }
        v
    };
    let three = || vec![seal(1, 1), seal(1024, 2), seal(500, 3)];
    let with = |extra: Vec<Vec<u8>>| {
        let mut ops = three();
        ops.extend(extra);
        script(&ops)
    };
    seed("packets", "clean", &with(vec![]));
    seed(
        "packets",
        "sizes",
        &script(&[seal(0, 0), seal(1025, 0), seal(1024, 9), seal(7, 1)]),
    );
    seed(
        "packets",
        "flip",
        &with(vec![vec![1, 0x10, 0x00], seal(9, 4)]),
    );
    seed("packets", "flip-len", &with(vec![vec![1, 0x01, 0x20]]));
    seed("packets", "flip-mac", &with(vec![vec![1, 0x40, 0x20]]));
    seed("packets", "replay", &with(vec![vec![2], seal(5, 5)]));
    seed("packets", "drop", &with(vec![vec![3], seal(5, 5)]));
    seed("packets", "swap", &with(vec![vec![4], seal(5, 5)]));
    let mut garbage = vec![5u8];
    garbage.extend((0..1060u32).map(|i| (i * 31) as u8));
    seed("packets", "garbage", &with(vec![garbage]));
    seed("packets", "truncate", &with(vec![vec![6], seal(5, 5)]));
    let mut raw = vec![0x80u8];
    raw.extend((0..2 * 1060u32).map(|i| (i * 17) as u8));
    seed("packets", "raw", &raw);

    // Config files: the documented example, every option, and typical mistakes.
    let full = r#"(
    version: 1,
    tunnels: [
        (
            name: "redis",
            mode: Encrypt,
            listen: "[127.0.0.1]:6379",
            target: "db.example.org:8025",
            key: Keychain("redis"),
            fingerprint: Some("0123:4567:89ab:cdef:0123:4567:89ab:cdef"),
            forward_secrecy: Required,
            max_connections: 0,
            timeout_secs: 2.5,
            keepalive: false,
            reresolve_secs: None,
            bind: Some("[10.0.0.2]"),
            autostart: true,
        ),
        (
            name: "metrics",
            mode: Decrypt,
            listen: "[::]:8025",
            target: "/run/metrics.sock",
            key: File("/etc/sluice/metrics.key"),
            forward_secrecy: Disabled,
            reresolve_secs: 30,
        ),
    ],
)
"#;
    seed("config", "full", full.as_bytes());
    seed("config", "minimal", b"(version: 1)");
    seed("config", "truncated", &full.as_bytes()[..full.len() / 2]);
    seed("config", "newer", b"(version: 2, tunnels: [], groups: [])");
    seed(
        "config",
        "unknown-field",
        full.replace("keepalive", "colour").as_bytes(),
    );
    seed(
        "config",
        "duplicate",
        full.replace("metrics", "redis").as_bytes(),
    );
    seed(
        "config",
        "bad-values",
        full.replace("2.5", "0.0")
            .replace("[10.0.0.2]", "/x")
            .as_bytes(),
    );

    // Addresses: every form, and the usual mistakes.
    for (i, text) in [
        "[127.0.0.1]:8025",
        "[::1]:8025",
        "[fe80::1%lo]:1",
        "127.0.0.1:80",
        "example.org:8025",
        "/run/sluice.sock",
        "relative/path",
        "::1:80",
        "host",
        ":80",
        "host:0",
        "host:65536",
        "[1.2.3.4]",
        "10.0.0.2",
        "",
    ]
    .iter()
    .enumerate()
    {
        seed("address", &format!("{i:02}"), text.as_bytes());
    }
}
