//! Sharing a key sealed with a passphrase, end to end: the real `sluiced --seal-key` and
//! `--unseal-key` against Debian's `age` tool, both ways, byte for byte; the passphrase
//! typed on a terminal without echo; and every kind of bad bundle refused with its reason
//! and nothing written. `age` reads passphrases from its terminal only, so it runs on a
//! pseudo-terminal of its own (util-linux's `script`), and each test waits for a prompt,
//! with a deadline, before typing.

// Unix only: these tests drive real processes and sockets through the test kit.
#![cfg(unix)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use support::*;

/// Each scrypt takes about a second here; a loaded CI machine may take several.
const SLOW: Duration = Duration::from_secs(90);

fn have_age() -> bool {
    require(
        have_program("age") && have_program("age-keygen") && have_program("script"),
        "the age tool (age, age-keygen) and script (util-linux)",
        "apt-get install age bsdutils",
    )
}

// ---------------------------------------------------------------------------------------
// A program on a terminal of its own

/// A command on a pseudo-terminal, through `script -q -f -e -c … /dev/null`: what the
/// program shows is collected as it comes; what is typed goes in through script's
/// standard input. script leaves the terminal's echo on, so anything typed shows on the
/// screen unless the program turns echo off, as a passphrase prompt must.
struct Terminal {
    child: Child,
    input: Option<ChildStdin>,
    screen: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Terminal {
    fn run(words: &[&str]) -> Terminal {
        let line = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
        let mut child = Command::new("script")
            .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start script -c {line}: {e}"));
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let outputs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("script's stdout")),
            Box::new(child.stderr.take().expect("script's stderr")),
        ];
        for mut output in outputs {
            let screen = Arc::clone(&screen);
            readers.push(thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = output.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    screen.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            }));
        }
        Terminal {
            input: child.stdin.take(),
            child,
            screen,
            readers,
            status: None,
        }
    }

    /// Everything shown so far.
    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits (up to [`SLOW`]) until the screen shows `text` `count` times in all.
    fn wait_for(&self, text: &str, count: usize) {
        let shown = wait_until(SLOW, || self.shown().matches(text).count() >= count);
        assert!(
            shown,
            "waited for {text:?} (×{count}); the screen shows:\n{}",
            self.shown()
        );
    }

    fn type_line(&mut self, text: &str) {
        let input = self.input.as_mut().expect("still typing");
        input
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| input.flush())
            .expect("type into the terminal");
    }

    /// Waits (up to [`SLOW`]) for the program to end; its status and the whole screen.
    fn finish(mut self) -> (ExitStatus, String) {
        let ended = wait_until(SLOW, || {
            self.status = self.child.try_wait().expect("poll script");
            self.status.is_some()
        });
        assert!(ended, "the program did not end; screen:\n{}", self.shown());
        self.input = None;
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        (self.status.expect("ended"), self.shown())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `word` as one shell word.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

// ---------------------------------------------------------------------------------------
// sluiced and age

/// Runs sluiced with `stdin` as its standard input.
fn sluiced(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(SLUICED)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluiced");
    let mut input = child.stdin.take().expect("stdin");
    // sluiced may exit before reading (a refusal before the passphrase): a broken pipe
    // then is expected.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("run sluiced")
}

/// `sluiced --seal-key KEY --out BUNDLE`; the passphrase it printed.
fn seal(key: &Path, bundle: &Path) -> String {
    let out = sluiced(&["--seal-key", text(key), "--out", text(bundle)], b"");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "--seal-key: {}\n{stderr}", out.status);
    // The passphrase alone on standard output, and nowhere else.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout:?}");
    let passphrase = lines[0].to_owned();
    assert!(!stderr.contains(&passphrase), "{stderr}");
    passphrase
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A key file that is not merely random bytes: 40 of them and a line feed, which must
/// survive every trip unchanged.
fn odd_key(dir: &Path) -> PathBuf {
    let mut bytes = test_data(40, 26);
    bytes.push(b'\n');
    write_key(dir, "odd.key", &bytes)
}

fn fingerprint(key: &Path) -> String {
    let out = sluiced(&["--fingerprint", text(key)], b"");
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `age -p` on a terminal: encrypts `input` to `output` with `passphrase`, typed twice.
fn age_p(args: &[&str], input: &Path, output: &Path, passphrase: &str) {
    let mut words = vec!["age", "-p"];
    words.extend_from_slice(args);
    words.extend(["-o", text(output), text(input)]);
    let mut terminal = Terminal::run(&words);
    terminal.wait_for("Enter passphrase", 1);
    terminal.type_line(passphrase);
    terminal.wait_for("Confirm passphrase", 1);
    terminal.type_line(passphrase);
    let (status, screen) = terminal.finish();
    assert!(status.success(), "age -p: {status}\n{screen}");
}

// ---------------------------------------------------------------------------------------
// Both ways with age

#[test]
fn a_sealed_key_opens_with_age_into_the_same_bytes() {
    if !have_age() {
        return;
    }
    let dir = temp_dir();
    let key = dir.path().join("redis.key");
    let made = sluiced(&["--generate-key", text(&key)], b"");
    assert!(made.status.success(), "{}", stderr_of(&made));
    let bundle = dir.path().join("redis.age");

    let out = sluiced(&["--seal-key", text(&key), "--out", text(&bundle)], b"");
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let passphrase = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    // Six words of lower-case letters (a few EFF words hold a hyphen), hyphen-joined.
    assert!(passphrase.split('-').count() >= 6, "{passphrase}");
    assert!(
        passphrase
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-'),
        "{passphrase}"
    );
    assert!(
        stderr.contains(&fingerprint(&key))
            && stderr.contains(text(&bundle))
            && stderr.contains("another channel than the bundle"),
        "{stderr}"
    );
    assert!(!stderr.contains(&passphrase), "{stderr}");
    assert_eq!(mode(&bundle), 0o600);
    let sealed = fs::read(&bundle).unwrap();
    assert!(
        sealed.starts_with(b"age-encryption.org/v1\n-> scrypt "),
        "{:?}",
        String::from_utf8_lossy(&sealed[..40])
    );
    assert_eq!(names_in(dir.path()), ["redis.age", "redis.key"]);

    // Debian's age, with the passphrase typed on its terminal.
    let opened = dir.path().join("opened.key");
    let mut terminal = Terminal::run(&["age", "-d", "-o", text(&opened), text(&bundle)]);
    terminal.wait_for("Enter passphrase", 1);
    terminal.type_line(&passphrase);
    let (status, screen) = terminal.finish();
    assert!(status.success(), "age -d: {status}\n{screen}");
    assert_eq!(
        fs::read(&opened).unwrap(),
        fs::read(&key).unwrap(),
        "age -d gives back the key file byte for byte"
    );
}

#[test]
fn a_key_sealed_by_age_p_opens_with_unseal_key() {
    if !have_age() {
        return;
    }
    let dir = temp_dir();
    let key = odd_key(dir.path());
    let passphrase = "correct horse battery staple, with spaces";
    for (name, args) in [("binary.age", &[][..]), ("armored.age", &["-a"][..])] {
        let bundle = dir.path().join(name);
        age_p(args, &key, &bundle, passphrase);
        let out_key = dir.path().join(format!("{name}.key"));
        let out = sluiced(
            &["--unseal-key", text(&bundle), "--out", text(&out_key)],
            format!("{passphrase}\n").as_bytes(),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        assert_eq!(
            fs::read(&out_key).unwrap(),
            fs::read(&key).unwrap(),
            "{name}: the key file byte for byte"
        );
        assert_eq!(mode(&out_key), 0o600, "{name}");
        assert!(
            stdout.contains(&format!("fingerprint {}", fingerprint(&key)))
                && stdout.contains("mode 0600"),
            "{name}: {stdout}"
        );
        assert!(
            !stdout.contains("horse") && !stderr_of(&out).contains("horse"),
            "{stdout}"
        );
    }
    // The armored one really is text.
    assert!(
        fs::read(dir.path().join("armored.age"))
            .unwrap()
            .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    );
}

#[test]
fn the_passphrase_is_asked_for_on_the_terminal_without_echo() {
    if !have_age() {
        return;
    }
    let dir = temp_dir();
    let key = odd_key(dir.path());
    let bundle = dir.path().join("k.age");
    let passphrase = seal(&key, &bundle);
    let out_key = dir.path().join("opened.key");

    let mut terminal = Terminal::run(&[
        SLUICED,
        "--unseal-key",
        text(&bundle),
        "--out",
        text(&out_key),
    ]);
    terminal.wait_for(&format!("passphrase for {}", text(&bundle)), 1);
    terminal.type_line(&passphrase);
    let (status, screen) = terminal.finish();
    assert!(status.success(), "{status}\n{screen}");
    assert!(
        !screen.contains(&passphrase),
        "the passphrase was echoed:\n{screen}"
    );
    assert!(screen.contains(&fingerprint(&key)), "{screen}");
    assert_eq!(fs::read(&out_key).unwrap(), fs::read(&key).unwrap());
    assert_eq!(mode(&out_key), 0o600);
}

// ---------------------------------------------------------------------------------------
// Refusals: each with its reason, nothing written

/// Runs `--unseal-key BUNDLE --out DIR/out.key` with `stdin`, expects a refusal whose
/// message holds every one of `expect`, and that nothing new appeared in `dir`.
fn refused_unseal(dir: &Path, bundle: &Path, stdin: &[u8], expect: &[&str]) {
    let before = names_in(dir);
    let out_key = dir.join("out.key");
    let out = sluiced(
        &["--unseal-key", text(bundle), "--out", text(&out_key)],
        stdin,
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", bundle.display());
    for needle in expect {
        assert!(
            stderr.contains(needle),
            "{}: {needle:?} not in {stderr}",
            bundle.display()
        );
    }
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(names_in(dir), before, "something was written");
}

#[test]
fn a_wrong_passphrase_is_refused_and_nothing_is_written() {
    if !have_age() {
        return;
    }
    let dir = temp_dir();
    let key = odd_key(dir.path());
    let bundle = dir.path().join("k.age");
    let passphrase = seal(&key, &bundle);
    let wrong = passphrase.replacen('-', "_", 1);
    refused_unseal(
        dir.path(),
        &bundle,
        format!("{wrong}\n").as_bytes(),
        &["passphrase does not open this bundle", "try again"],
    );
    // Nor is anything written when no passphrase comes at all.
    refused_unseal(dir.path(), &bundle, b"", &["no passphrase"]);
    // age agrees that it is wrong.
    let opened = dir.path().join("by-age.key");
    let mut terminal = Terminal::run(&["age", "-d", "-o", text(&opened), text(&bundle)]);
    terminal.wait_for("Enter passphrase", 1);
    terminal.type_line(&wrong);
    let (status, screen) = terminal.finish();
    assert!(!status.success(), "{screen}");
}

#[test]
fn bad_bundles_are_refused_with_their_reason() {
    if !have_age() {
        return;
    }
    let dir = temp_dir();
    let files = temp_dir();
    let key = odd_key(files.path());
    let bundle = files.path().join("k.age");
    let passphrase = seal(&key, &bundle);
    let right = format!("{passphrase}\n");
    let sealed = fs::read(&bundle).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = files.path().join(name);
        fs::write(&path, bytes).unwrap();
        path
    };

    // For an age key, from age-keygen: refused before any passphrase is asked for.
    let identity = files.path().join("identity.txt");
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let recipient = Command::new("age-keygen")
        .arg("-y")
        .arg(&identity)
        .output()
        .unwrap();
    let recipient = String::from_utf8(recipient.stdout).unwrap();
    let x25519 = files.path().join("x25519.age");
    let made = Command::new("age")
        .args(["-r", recipient.trim(), "-o", text(&x25519), text(&key)])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr_of(&made));
    refused_unseal(
        dir.path(),
        &x25519,
        b"",
        &["age X25519 key", "not with a passphrase", "age -d -i"],
    );

    refused_unseal(dir.path(), &key, b"", &["not an age file"]);
    let cut = write("cut.age", &sealed[..sealed.len() / 3]);
    refused_unseal(dir.path(), &cut, right.as_bytes(), &["cut short"]);
    let mut bent = sealed.clone();
    *bent.last_mut().unwrap() ^= 0x04;
    let bent = write("bent.age", &bent);
    refused_unseal(
        dir.path(),
        &bent,
        right.as_bytes(),
        &["altered", "integrity check"],
    );
    let huge = write("huge.age", &vec![b'a'; 3 << 20]);
    refused_unseal(dir.path(), &huge, b"", &["larger than 2 MiB"]);
    refused_unseal(
        dir.path(),
        &files.path().join("missing.age"),
        b"",
        &["does not exist"],
    );
    // A hostile work factor: refused at once, before the passphrase.
    let at = sealed
        .windows(4)
        .position(|w| w == b" 18\n")
        .expect("the scrypt line ends with work factor 18");
    let mut hostile = sealed.clone();
    hostile[at + 1..at + 3].copy_from_slice(b"40");
    let hostile = write("hostile.age", &hostile);
    refused_unseal(
        dir.path(),
        &hostile,
        b"",
        &["work factor 40, above the 20", "not tried"],
    );
}

#[test]
fn existing_files_are_never_replaced() {
    if !have_age() {
        return;
    }
    let dir = temp_dir();
    let key = odd_key(dir.path());
    let taken = write_key(dir.path(), "taken", b"already here");

    // Sealing onto an existing file: refused before a passphrase is made.
    let out = sluiced(&["--seal-key", text(&key), "--out", text(&taken)], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "no passphrase for a bundle never written"
    );
    assert!(
        stderr_of(&out).contains("already exists"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(fs::read(&taken).unwrap(), b"already here");

    // Unsealing onto one: refused before the passphrase is read.
    let bundle = dir.path().join("k.age");
    seal(&key, &bundle);
    let out = sluiced(&["--unseal-key", text(&bundle), "--out", text(&taken)], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("already exists") && !stderr.contains("passphrase"),
        "{stderr}"
    );
    assert_eq!(fs::read(&taken).unwrap(), b"already here");

    // An empty key is never sealed.
    let empty = write_key(dir.path(), "empty.key", b"");
    let nothing = dir.path().join("empty.age");
    let out = sluiced(&["--seal-key", text(&empty), "--out", text(&nothing)], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("is empty"), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty() && !nothing.exists());
    assert_eq!(
        names_in(dir.path()),
        ["empty.key", "k.age", "odd.key", "taken"]
    );
}

#[test]
fn a_key_on_standard_input_seals_too() {
    if !have_age() {
        return;
    }
    let dir = temp_dir();
    let key = odd_key(dir.path());
    let bundle = dir.path().join("stdin.age");
    let out = sluiced(
        &["--seal-key", "-", "--out", text(&bundle)],
        &fs::read(&key).unwrap(),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("the key from standard input"),
        "{}",
        stderr_of(&out)
    );
    let passphrase = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    let opened = dir.path().join("opened.key");
    let out = sluiced(
        &["--unseal-key", text(&bundle), "--out", text(&opened)],
        format!("{passphrase}\r\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(fs::read(&opened).unwrap(), fs::read(&key).unwrap());
}
