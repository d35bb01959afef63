//! Secrets stay secret: key-file bytes and K (SHA-256 of the key file) never appear in
//! sluiced's log through a wrong-key handshake, a good session and a tampered one, in its
//! key tools' output, in Debug output or panic messages of the engine's key-holding types;
//! generated key files are 0600, and a key file others can read is warned about by name.
//! (The app's config file and key index are checked in app/tests/secrets.rs.)

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]

mod support;

use std::panic::catch_unwind;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_engine::protocol::key::PresharedKey;
use sluice_engine::protocol::{EphemeralKeyPair, ForwardSecrecy, Handshake, Role};
use sluice_engine::{Address, Mode, TunnelDefinition, TunnelSettings};
use support::*;

const SLOW: Duration = Duration::from_secs(30);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Every form in which `secret` must never show: raw bytes, hex (both cases), base64, and
/// any 8-byte window of its hex or base64 (so a truncated print is caught too).
fn forbidden_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.to_vec()];
    let h = hex(secret);
    let b = base64(secret);
    for text in [h.clone(), h.to_uppercase(), b.clone()] {
        forms.push(text.clone().into_bytes());
        let bytes = text.as_bytes();
        for window in bytes.windows(16).step_by(4) {
            forms.push(window.to_vec());
        }
    }
    forms
}

/// Panics if `haystack` contains any form of the key file's bytes or of K.
fn assert_no_secret(what: &str, haystack: &[u8], key_file: &[u8]) {
    let k = Sha256::digest(key_file);
    for (name, secret) in [("key-file bytes", key_file), ("K", &k[..])] {
        for form in forbidden_forms(secret)
            .into_iter()
            .filter(|f| !f.is_empty())
        {
            assert!(
                !haystack.windows(form.len()).any(|w| w == &form[..]),
                "{what} contains the {name} (as {:?})",
                String::from_utf8_lossy(&form)
            );
        }
    }
}

/// No run of 16 or more hex digits: nothing that looks like a printed key.
fn assert_no_long_hex(what: &str, text: &str) {
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        assert!(run < 16, "{what} prints something key-like: {text}");
    }
}

#[test]
fn keys_never_reach_the_log_through_good_bad_and_tampered_sessions() {
    let dir = temp_dir();
    // A text key (greppable), and a random one for the wrong-key client.
    let key_bytes = b"correct horse battery staple / sluice secrets test key\n".to_vec();
    let key = write_key(dir.path(), "key", &key_bytes);
    let wrong = random_key(dir.path(), "wrong");
    let wrong_bytes = std::fs::read(&wrong).unwrap();
    let echo = Echo::tcp(LOCALHOST_V4);

    // sluiced on both sides, --verbose (every connection logged).
    let (server, server_addr) = sluiced("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let (client, client_addr) = sluiced("-e", LOCALHOST_V4, &server_addr, &key, &[], dir.path());
    let (bad_client, bad_addr) = sluiced("-e", LOCALHOST_V4, &server_addr, &wrong, &[], dir.path());
    let relay = Tamper::start(
        server_addr.clone(),
        Direction::ClientToServer,
        32 + 288 + 1060 + 5,
    );
    let (tampered_client, tampered_addr) =
        sluiced("-e", LOCALHOST_V4, &relay.addr, &key, &[], dir.path());

    let data = test_data(64 * 1024, 1);
    assert_echoed(
        "good session",
        &data,
        &exchange_with(&client_addr, &data, SLOW),
    );
    let got = exchange_with(&bad_addr, &data, SLOW);
    assert!(got.bytes.is_empty(), "wrong key got data through");
    let got = exchange_with(&tampered_addr, &data, SLOW);
    assert!(got.bytes.len() < data.len(), "tampering went unnoticed");
    assert!(server.wait_for_log("different key", Duration::from_secs(5)));
    assert!(server.wait_for_log("nothing after that packet", Duration::from_secs(5)));

    // Key tools: fingerprint, generate (its message), and errors about key files.
    let fp = Command::new(SLUICED)
        .arg("--fingerprint")
        .arg(&key)
        .output()
        .unwrap();
    assert!(fp.status.success());
    let generated = dir.path().join("generated.key");
    let gen_out = Command::new(SLUICED)
        .arg("--generate-key")
        .arg(&generated)
        .output()
        .unwrap();
    assert!(gen_out.status.success());
    let generated_bytes = std::fs::read(&generated).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&generated).unwrap().permissions().mode() & 0o777,
        0o600,
        "a generated key file must be readable by its owner only"
    );
    let again = Command::new(SLUICED)
        .arg("--generate-key")
        .arg(&generated)
        .output()
        .unwrap();
    assert!(!again.status.success());

    for (what, text, secret) in [
        ("sluiced -d log", server.stderr().into_bytes(), &key_bytes),
        ("sluiced -e log", client.stderr().into_bytes(), &key_bytes),
        (
            "sluiced -e (wrong key) log",
            bad_client.stderr().into_bytes(),
            &wrong_bytes,
        ),
        (
            "sluiced -e (wrong key) log vs the right key",
            bad_client.stderr().into_bytes(),
            &key_bytes,
        ),
        (
            "sluiced -e (tampered) log",
            tampered_client.stderr().into_bytes(),
            &key_bytes,
        ),
        (
            "sluiced -d log vs the wrong key",
            server.stderr().into_bytes(),
            &wrong_bytes,
        ),
        (
            "--fingerprint output",
            [fp.stdout, fp.stderr].concat(),
            &key_bytes,
        ),
        (
            "--generate-key output",
            [gen_out.stdout, gen_out.stderr].concat(),
            &generated_bytes,
        ),
        (
            "--generate-key refusal",
            [again.stdout, again.stderr].concat(),
            &generated_bytes,
        ),
    ] {
        assert!(
            !text.is_empty() || what.contains("refusal"),
            "{what} is empty"
        );
        assert_no_secret(what, &text, secret);
    }
    eprintln!(
        "checked {} bytes of logs and tool output: no key bytes, no K",
        server.stderr().len()
            + client.stderr().len()
            + bad_client.stderr().len()
            + tampered_client.stderr().len()
    );
}

#[test]
fn key_holding_types_print_no_secrets_in_debug_or_panics() {
    let key_file = b"debug output test key file bytes".to_vec();
    let key = PresharedKey::from_keyfile_bytes(&key_file);
    let settings = TunnelSettings::new(
        TunnelDefinition::new(
            "t",
            Mode::Encrypt,
            "[127.0.0.1]:1".parse::<Address>().unwrap(),
            "[127.0.0.1]:2".parse::<Address>().unwrap(),
        ),
        key.clone(),
    );
    // A whole handshake through the public API, printing every stage.
    let mut shown = vec![
        format!("{key:?}"),
        format!("{settings:?}"),
        format!("{settings:#?}"),
    ];
    let pair = || Some(EphemeralKeyPair::boxed_from_random([7; 32]));
    let c = Handshake::new(Role::Client, &key, ForwardSecrecy::Enabled, [1; 32], pair()).unwrap();
    let s = Handshake::new(Role::Server, &key, ForwardSecrecy::Enabled, [2; 32], pair()).unwrap();
    shown.push(format!("{c:?} {s:?}"));
    // The key pair shows the start of its public value, which is sent in the clear.
    let keypair = format!("{:?}", pair().unwrap());
    assert_no_secret("EphemeralKeyPair", keypair.as_bytes(), &key_file);
    assert!(
        !keypair.contains(&hex(&[7; 8])),
        "the private value shows: {keypair}"
    );
    let c_nonce = *c.nonce();
    let c = c.receive_nonce(s.nonce());
    let s = s.receive_nonce(&c_nonce);
    shown.push(format!("{c:?} {s:?}"));
    let s = s.receive_signed_dh(c.signed_dh()).unwrap();
    let c = c.receive_signed_dh(s.signed_dh()).unwrap();
    shown.push(format!("{c:?} {s:?}"));
    let c_keys = c.derive_session();
    let s_keys = s.derive_session();
    shown.push(format!("{c_keys:?} {s_keys:#?}"));
    let (sealer, opener) = c_keys.into_packet_codecs();
    shown.push(format!("{sealer:?} {opener:?}"));
    let loaded = sluice_engine::loaded_from_bytes(&key_file);
    shown.push(format!("{loaded:?}"));

    // A panic message built from them says no more than their Debug does.
    let panicked = catch_unwind(|| panic!("tunnel failed: {settings:?} {key:?}")).unwrap_err();
    shown.push(
        panicked
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
    );

    for text in &shown {
        assert_no_secret("Debug output", text.as_bytes(), &key_file);
        assert_no_long_hex("Debug output", text);
    }
}

#[test]
fn keyfile_warnings_name_the_file() {
    let dir = temp_dir();
    let echo = Echo::tcp(LOCALHOST_V4);
    let exposed = write_key(dir.path(), "exposed.key", &test_data(32, 3));
    std::fs::set_permissions(
        &exposed,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let short = write_key(dir.path(), "short.key", &[0xa5, 0x5a, 0xc3, 0x3c, 0x99]);
    for (key, warning) in [
        (&exposed, "can be read by other users (mode 0644)"),
        (&short, "the key file has only 5 bytes"),
    ] {
        let (proc, _) = sluiced("-d", LOCALHOST_V4, &echo.addr, key, &[], dir.path());
        let line = proc
            .wait_for_log_line(|l| l.contains(warning), Duration::from_secs(3))
            .unwrap_or_else(|| panic!("no warning {warning:?}:\n{}", proc.stderr()));
        let log = proc.stderr();
        assert!(
            line.contains(&key.display().to_string()) && line.contains("warning"),
            "the warning should name the key file: {line}"
        );
        assert_no_secret("warning", log.as_bytes(), &std::fs::read(key).unwrap());
        let fp = Command::new(SLUICED)
            .arg("--fingerprint")
            .arg(key)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&fp.stderr);
        assert!(
            text.contains(warning) && text.contains(&key.display().to_string()),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Exponents never linger in freed heap memory.

/// Hands every block to the system allocator, but while `WATCHING` first looks in each
/// block being freed for the marker exponent (and moves every reallocation, so the old
/// block is inspected too: that is where a growing `Vec<EphemeralKeyPair>` would leave
/// copies of exponents behind).
struct ScanningAllocator;

static WATCHING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static FOUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The private bytes of the marker key pairs: its exponent's low 256 bits are these.
const MARKER: u8 = 0x7e;

fn scan_freed(ptr: *mut u8, size: usize) {
    if !WATCHING.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut run = 0;
    for i in 0..size {
        // SAFETY: the block is ours until it is handed back just after this scan. Volatile,
        // so the read is not assumed away; bytes never written read as whatever is there.
        let byte = unsafe { std::ptr::read_volatile(ptr.add(i)) };
        run = if byte == MARKER { run + 1 } else { 0 };
        if run == 32 {
            FOUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
    }
}

unsafe impl std::alloc::GlobalAlloc for ScanningAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        scan_freed(ptr, layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: a new block of the new size and same alignment, filled from the old one,
        // which is then freed (and scanned) as in `dealloc`.
        unsafe {
            let new_layout =
                std::alloc::Layout::from_size_align_unchecked(new_size, layout.align());
            let new = std::alloc::System.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: ScanningAllocator = ScanningAllocator;

#[test]
fn no_exponent_is_left_in_freed_memory_after_handshakes() {
    use sluice_engine::protocol::{HandshakeDriver, Next};
    let key = PresharedKey::from_keyfile_bytes(b"lingering exponents");
    WATCHING.store(true, std::sync::atomic::Ordering::Relaxed);
    for round in 0..4 {
        let pair = || EphemeralKeyPair::boxed_from_random([MARKER; 32]);
        let mut client = HandshakeDriver::classic(
            Role::Client,
            &key,
            ForwardSecrecy::Enabled,
            [1; 32],
            Some(pair()),
        )
        .unwrap();
        let mut server =
            HandshakeDriver::classic(Role::Server, &key, ForwardSecrecy::Required, [2; 32], None)
                .unwrap();
        // Byte queues between the ends, grown and shrunk as a socket buffer would be.
        let mut to_server: Vec<u8> = Vec::new();
        let mut to_client: Vec<u8> = Vec::new();
        for _ in 0..8 {
            to_server.extend_from_slice(client.pending_output());
            let n = client.pending_output().len();
            client.output_sent(n);
            to_client.extend_from_slice(server.pending_output());
            let n = server.pending_output().len();
            server.output_sent(n);
            if server.next() == Next::KeyPair {
                server.supply_key_pair(pair()).unwrap();
            }
            let n = server.receive(&to_server).unwrap();
            to_server.drain(..n);
            let n = client.receive(&to_client).unwrap();
            to_client.drain(..n);
        }
        assert_eq!(
            (client.next(), server.next()),
            (Next::Done, Next::Done),
            "round {round}"
        );
        let (mut sealer, _) = client.finish().unwrap().session_codecs();
        let (_, mut opener) = server.finish().unwrap().session_codecs();
        let mut packet = [0u8; sluice_engine::protocol::PACKET_LEN];
        sealer.seal(b"x", &mut packet).unwrap();
        assert_eq!(opener.open(&mut packet), Ok(1));

        // Key pairs kept in a vector that grows, as a pool's would: boxes move, not pairs.
        let mut kept: Vec<Box<EphemeralKeyPair>> = Vec::new();
        for _ in 0..5 {
            kept.push(pair());
        }
        kept.shrink_to_fit();
        drop(kept);
    }
    WATCHING.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        FOUND.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a freed heap block held a private exponent"
    );
}
