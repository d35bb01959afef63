//! Key files on disk: generating fresh random keys, writing them without ever overwriting
//! one, and reading them the way spiped does (every byte, hashed at once), with warnings
//! for keys that work but are weak or exposed. Key bytes never appear in any message.

use crate::platform::OpenToOthers;
use crate::protocol::key::PresharedKey;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// Length of keys Sluice generates: 256 bits, what spiped's documentation asks for.
pub const GENERATED_KEY_LEN: usize = 32;

/// The most a key file may hold: 1 MiB. spiped hashes a key file of any length, but a real
/// one holds a few dozen bytes; the bound keeps `-k /dev/zero` (or a disk image given by
/// mistake) from growing memory without limit, and is far above any key anyone uses.
pub const MAX_KEYFILE_LEN: usize = 1 << 20;

/// The path used in errors when the key comes from standard input (spiped's `-k -`).
const STDIN_LABEL: &str = "-";

/// A loaded key and what looks wrong with its file. Warnings never stop a tunnel: spiped
/// accepts any key file, and so must Sluice to interoperate.
#[derive(Debug)]
pub struct LoadedKey {
    pub key: PresharedKey,
    pub warnings: Vec<KeyfileWarning>,
}

/// Why a key file could not be read or written. Paths are shown; contents never are.
#[derive(Debug, thiserror::Error)]
pub enum KeyfileError {
    #[error("key file {} does not exist: check the path, or generate one with sluiced --generate-key", .0.display())]
    NotFound(PathBuf),
    #[error("key file {} is a symbolic link to {}, which does not exist: point the link at the key file, or give the key file's own path", .path.display(), .target.display())]
    DanglingSymlink { path: PathBuf, target: PathBuf },
    #[error("permission denied for key file {}: check its owner and mode, or run as the user who owns it", .0.display())]
    PermissionDenied(PathBuf),
    #[error("{} is a directory, not a key file: give the path of the file inside it", .0.display())]
    IsDirectory(PathBuf),
    #[error("key file {} already exists and was left untouched: choose another name, or delete the old file first if you really mean to replace that key", .0.display())]
    AlreadyExists(PathBuf),
    #[error("{} is empty, and Sluice never uses an empty key: its K is SHA-256 of nothing, which everyone knows, so anyone could connect; generate a key with sluiced --generate-key and use the same file at both ends", label(.0))]
    Empty(PathBuf),
    #[error("{} is larger than 1 MiB, the most Sluice reads: a key file holds a few dozen random bytes (sluiced --generate-key writes 32); check that it names the key file (not, e.g., /dev/zero or a disk image)", label(.0))]
    TooLarge(PathBuf),
    #[error("cannot use {}: {source}", label(path))]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the operating system's random number generator failed ({0}): no key was generated; try again, and check the system's entropy source if it keeps failing"
    )]
    Rng(String),
}

fn label(path: &Path) -> String {
    if path == Path::new(STDIN_LABEL) {
        "the key from standard input".to_owned()
    } else {
        format!("key file {}", path.display())
    }
}

/// Something about a key that works but should be fixed. (An empty key is not a warning
/// but [`KeyfileError::Empty`]: spiped accepts one, and then anyone can connect.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyfileWarning {
    /// Fewer than [`GENERATED_KEY_LEN`] bytes (the length, not the bytes).
    Short(usize),
    /// Group or others may read (or write) the file; the permission bits are kept (Unix).
    ReadableByOthers(u32),
    /// The file's access list lets these broad groups read it (Windows).
    ReadableByAccounts(Vec<String>),
}

impl fmt::Display for KeyfileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyfileWarning::Short(len) => write!(
                f,
                "the key file has only {len} bytes: a key should hold at least {GENERATED_KEY_LEN} random bytes (256 bits); generate one with sluiced --generate-key"
            ),
            KeyfileWarning::ReadableByOthers(mode) => write!(
                f,
                "the key file can be read by other users (mode {mode:04o}): restrict it with chmod 600"
            ),
            KeyfileWarning::ReadableByAccounts(accounts) => write!(
                f,
                "the key file can be read by other users (its access list lets {} read it): restrict it to yourself with icacls FILE /inheritance:r /grant:r \"%USERNAME%:F\"",
                accounts.join(", ")
            ),
        }
    }
}

/// Fresh key bytes from the operating system's RNG, wiped when dropped.
pub fn generate_key_bytes() -> Result<Zeroizing<[u8; GENERATED_KEY_LEN]>, KeyfileError> {
    let mut key = Zeroizing::new([0u8; GENERATED_KEY_LEN]);
    getrandom::fill(key.as_mut()).map_err(|e| KeyfileError::Rng(e.to_string()))?;
    Ok(key)
}

/// Writes a new key file, readable by its owner only (mode 0600 set when the file is
/// created, or on Windows an access list of the owner alone set before anything is
/// written, so it is never readable by others with the key in it), and flushes it to disk. Never
/// overwrites: an existing file is reported as [`KeyfileError::AlreadyExists`] and left
/// alone, since replacing a key silently breaks every tunnel that uses it. A file that
/// could not be written completely is removed rather than left truncated.
pub fn write_new_keyfile(path: &Path, bytes: &[u8]) -> Result<(), KeyfileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let mut file =
        crate::platform::create_owner_only(&mut options, path).map_err(|e| match e.kind() {
            // Only the directory can be missing when creating a file; "key file does not
            // exist" would send the user looking for the wrong thing.
            io::ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or(Path::new("."));
                let why = format!(
                    "its directory {} does not exist: create it first",
                    dir.display()
                );
                io_error(path, io::Error::new(io::ErrorKind::NotFound, why))
            }
            _ => open_error(path, e),
        })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // Best effort: the write error is what the caller needs to see.
        let _ = std::fs::remove_file(path);
        return Err(io_error(path, e));
    }
    Ok(())
}

/// Reads a key file exactly as spiped does (every byte, no trimming) and hashes it to K.
/// The raw bytes are wiped as soon as they are hashed.
pub fn read_keyfile(path: &Path) -> Result<LoadedKey, KeyfileError> {
    read_keyfile_with_bytes(path).map(|(_, loaded)| loaded)
}

/// Like [`read_keyfile`], also returning the raw bytes (wiped when dropped), for copying
/// a key into the keychain or another file.
pub fn read_keyfile_with_bytes(
    path: &Path,
) -> Result<(Zeroizing<Vec<u8>>, LoadedKey), KeyfileError> {
    let file = File::open(path).map_err(|e| open_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    // Opening a directory for reading succeeds on Linux; only the read would fail.
    if meta.is_dir() {
        return Err(KeyfileError::IsDirectory(path.to_owned()));
    }
    // A regular file's length says at once that it is too large; devices and pipes
    // (/dev/zero) are caught by the bounded read.
    if meta.len() > MAX_KEYFILE_LEN as u64 {
        return Err(KeyfileError::TooLarge(path.to_owned()));
    }
    // Presize from the file length so the buffer is not reallocated (which would leave
    // unwiped copies behind); special files can report odd lengths, hence the cap.
    let hint = usize::try_from(meta.len())
        .unwrap_or(0)
        .min(MAX_KEYFILE_LEN)
        + 1;
    let bytes = read_all_zeroizing(file, hint)
        .map_err(|e| io_error(path, e))?
        .ok_or_else(|| KeyfileError::TooLarge(path.to_owned()))?;
    let mut loaded =
        loaded_from_bytes(&bytes).map_err(|EmptyKey| KeyfileError::Empty(path.to_owned()))?;
    // Device nodes such as /dev/null (spiped's own tests use it) have their own modes;
    // only a regular file's mode (or access list) says who can read the key.
    if meta.is_file()
        && let Some(open) = crate::platform::open_to_others(path, &meta)
    {
        loaded.warnings.push(match open {
            #[cfg(unix)]
            OpenToOthers::Mode(mode) => KeyfileWarning::ReadableByOthers(mode),
            #[cfg(windows)]
            OpenToOthers::Accounts(accounts) => KeyfileWarning::ReadableByAccounts(accounts),
        });
    }
    Ok((bytes, loaded))
}

/// Reads a key from any reader, e.g. standard input for `-k -`. Same rules as
/// [`read_keyfile`], without the file-mode check.
pub fn read_key_from(reader: impl Read) -> Result<LoadedKey, KeyfileError> {
    read_key_bytes_from(reader).map(|(_, loaded)| loaded)
}

/// Like [`read_key_from`], also returning the raw bytes (wiped when dropped), for sealing
/// a key given on standard input.
pub fn read_key_bytes_from(
    reader: impl Read,
) -> Result<(Zeroizing<Vec<u8>>, LoadedKey), KeyfileError> {
    let stdin = Path::new(STDIN_LABEL);
    let bytes = read_all_zeroizing(reader, 4096)
        .map_err(|e| io_error(stdin, e))?
        .ok_or_else(|| KeyfileError::TooLarge(stdin.to_owned()))?;
    let loaded =
        loaded_from_bytes(&bytes).map_err(|EmptyKey| KeyfileError::Empty(stdin.to_owned()))?;
    Ok((bytes, loaded))
}

/// A key of zero bytes, which no tunnel may use (see [`KeyfileError::Empty`]); the caller
/// names where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmptyKey;

/// K and the warnings for a key's raw bytes; an empty key is refused.
pub fn loaded_from_bytes(bytes: &[u8]) -> Result<LoadedKey, EmptyKey> {
    if bytes.is_empty() {
        return Err(EmptyKey);
    }
    let key = PresharedKey::from_keyfile_bytes(bytes);
    let mut warnings = Vec::new();
    if bytes.len() < GENERATED_KEY_LEN {
        warnings.push(KeyfileWarning::Short(bytes.len()));
    }
    Ok(LoadedKey { key, warnings })
}

/// Reads to EOF into a buffer that is wiped when dropped; `None` once more than
/// [`MAX_KEYFILE_LEN`] bytes arrive (the rest is never read). `Vec::reserve` would free the
/// old allocation without wiping it, so growth copies into a new zeroizing buffer and
/// lets the old one wipe itself.
fn read_all_zeroizing(
    mut reader: impl Read,
    capacity: usize,
) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity.clamp(64, MAX_KEYFILE_LEN + 1)));
    let mut chunk = Zeroizing::new([0u8; 4096]);
    loop {
        let n = match reader.read(chunk.as_mut()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.len() + n > MAX_KEYFILE_LEN {
            return Ok(None);
        }
        if buf.len() + n > buf.capacity() {
            let mut bigger =
                Zeroizing::new(Vec::with_capacity((buf.len() + n).max(buf.capacity() * 2)));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    chunk.zeroize();
    Ok(Some(buf))
}

fn open_error(path: &Path, e: io::Error) -> KeyfileError {
    let path = path.to_owned();
    match e.kind() {
        io::ErrorKind::NotFound => match std::fs::read_link(&path) {
            Ok(target) => KeyfileError::DanglingSymlink { path, target },
            Err(_) => KeyfileError::NotFound(path),
        },
        // Windows refuses to open a directory as a file instead of failing the read.
        io::ErrorKind::PermissionDenied if path.is_dir() => KeyfileError::IsDirectory(path),
        io::ErrorKind::PermissionDenied => KeyfileError::PermissionDenied(path),
        io::ErrorKind::IsADirectory => KeyfileError::IsDirectory(path),
        io::ErrorKind::AlreadyExists => KeyfileError::AlreadyExists(path),
        _ => KeyfileError::Io { path, source: e },
    }
}

fn io_error(path: &Path, e: io::Error) -> KeyfileError {
    match e.kind() {
        io::ErrorKind::IsADirectory => KeyfileError::IsDirectory(path.to_owned()),
        _ => KeyfileError::Io {
            path: path.to_owned(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    fn fingerprint_of(bytes: &[u8]) -> String {
        PresharedKey::from_keyfile_bytes(bytes)
            .fingerprint()
            .to_string()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generated_keys_are_random() {
        let a = generate_key_bytes().unwrap();
        let b = generate_key_bytes().unwrap();
        assert_eq!(a.len(), GENERATED_KEY_LEN);
        assert_ne!(*a, *b);
        assert_ne!(*a, [0u8; GENERATED_KEY_LEN]);
    }

    #[test]
    fn generate_write_read_gives_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redis.key");
        let bytes = generate_key_bytes().unwrap();
        write_new_keyfile(&path, bytes.as_ref()).unwrap();

        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..]);
        let loaded = read_keyfile(&path).unwrap();
        assert_eq!(
            loaded.key.fingerprint().to_string(),
            fingerprint_of(bytes.as_ref())
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn never_overwrites_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"old key").unwrap();
        match write_new_keyfile(&path, b"new key") {
            Err(KeyfileError::AlreadyExists(p)) => assert_eq!(p, path),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"old key");
        let msg = write_new_keyfile(&path, b"x").unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn write_into_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/k");
        let err = write_new_keyfile(&path, b"k").unwrap_err();
        assert!(matches!(&err, KeyfileError::Io { path: p, .. } if *p == path));
        let parent = dir.path().join("no/such");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot use key file {}: its directory {} does not exist: create it first",
                path.display(),
                parent.display()
            )
        );
    }

    #[test]
    fn read_errors_by_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(read_keyfile(&missing), Err(KeyfileError::NotFound(p)) if p == missing));
        assert!(matches!(
            read_keyfile(dir.path()),
            Err(KeyfileError::IsDirectory(p)) if p == dir.path()
        ));
        let msg = read_keyfile(&missing).unwrap_err().to_string();
        assert!(
            msg.contains("does not exist") && msg.contains("--generate-key"),
            "{msg}"
        );
    }

    /// A link to nowhere names both ends (root reads any mode, so a dangling link and a
    /// directory are the unreadable key files a test can make).
    #[cfg(unix)]
    #[test]
    fn a_dangling_link_names_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("gone"), &link).unwrap();
        let err = read_keyfile(&link).unwrap_err();
        assert!(matches!(&err, KeyfileError::DanglingSymlink { path, .. } if *path == link));
        let msg = err.to_string();
        assert!(msg.contains("link") && msg.contains("gone"), "{msg}");
    }

    #[test]
    fn hashes_every_byte_without_trimming() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let text = b"0123456789abcdef0123456789abcdef\n";
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = read_keyfile(&path).unwrap();
        assert_eq!(loaded.key.fingerprint().to_string(), fingerprint_of(text));
        assert_ne!(
            loaded.key.fingerprint().to_string(),
            fingerprint_of(&text[..32])
        );
    }

    #[cfg(unix)]
    #[test]
    fn warns_about_empty_short_and_exposed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8], m: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
            p
        };

        let short = read_keyfile(&write("short", &[7u8; 31], 0o600)).unwrap();
        assert_eq!(short.warnings, vec![KeyfileWarning::Short(31)]);

        let exposed = read_keyfile(&write("exposed", &[7u8; 32], 0o644)).unwrap();
        assert_eq!(
            exposed.warnings,
            vec![KeyfileWarning::ReadableByOthers(0o644)]
        );

        let group = read_keyfile(&write("group", &[7u8; 40], 0o640)).unwrap();
        assert_eq!(
            group.warnings,
            vec![KeyfileWarning::ReadableByOthers(0o640)]
        );

        let both = read_keyfile(&write("both", b"short", 0o666)).unwrap();
        assert_eq!(
            both.warnings,
            vec![
                KeyfileWarning::Short(5),
                KeyfileWarning::ReadableByOthers(0o666)
            ]
        );
    }

    #[test]
    fn an_empty_key_is_refused_from_every_source() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        // spiped's own tests use /dev/null as a key; Sluice refuses it like any empty key.
        let mut paths = vec![empty.as_path()];
        if cfg!(unix) {
            paths.push(Path::new("/dev/null"));
        }
        for path in paths {
            let err = read_keyfile(path).unwrap_err();
            assert!(
                matches!(&err, KeyfileError::Empty(p) if p == path),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&path.display().to_string())
                    && msg.contains("never uses an empty key")
                    && msg.contains("sluiced --generate-key"),
                "{msg}"
            );
        }
        let err = read_key_from(io::empty()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the key from standard input is empty"),
            "{err}"
        );
        assert_eq!(loaded_from_bytes(b"").unwrap_err(), EmptyKey);
    }

    /// Windows: who may read a key file is its access list's to say. A new key file's
    /// list names its owner only; an entry letting Everyone read it is flagged.
    #[cfg(windows)]
    #[test]
    fn a_key_file_everyone_may_read_is_flagged_by_its_access_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_new_keyfile(&path, &[7u8; 32]).unwrap();
        let loaded = read_keyfile(&path).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

        crate::platform::grant_everyone_read(&path).unwrap();
        let loaded = read_keyfile(&path).unwrap();
        assert_eq!(
            loaded.warnings,
            vec![KeyfileWarning::ReadableByAccounts(vec!["Everyone".into()])]
        );
        assert!(loaded.warnings[0].to_string().contains("icacls"));
    }

    #[test]
    fn warning_messages_say_what_to_do() {
        assert!(
            KeyfileWarning::Short(5)
                .to_string()
                .contains("only 5 bytes")
        );
        assert!(
            KeyfileWarning::ReadableByOthers(0o644)
                .to_string()
                .contains("mode 0644): restrict it with chmod 600")
        );
    }

    #[test]
    fn reads_from_any_reader_including_large_keys() {
        let loaded = read_key_from(&b"from stdin"[..]).unwrap();
        assert_eq!(
            loaded.key.fingerprint().to_string(),
            fingerprint_of(b"from stdin")
        );
        assert_eq!(loaded.warnings, vec![KeyfileWarning::Short(10)]);

        // 1 MB through a reader forces the buffer to grow many times (spiped takes it).
        let big: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let loaded = read_key_from(io::Cursor::new(&big)).unwrap();
        assert_eq!(loaded.key.fingerprint().to_string(), fingerprint_of(&big));
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn key_files_are_read_up_to_1_mib() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, len: usize| {
            let p = dir.path().join(name);
            let bytes: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
            std::fs::write(&p, &bytes).unwrap();
            #[cfg(unix)]
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            (p, bytes)
        };
        let (exact, bytes) = write("exact", MAX_KEYFILE_LEN);
        let loaded = read_keyfile(&exact).unwrap();
        assert_eq!(loaded.key.fingerprint().to_string(), fingerprint_of(&bytes));

        let (over, _) = write("over", MAX_KEYFILE_LEN + 1);
        let err = read_keyfile(&over).unwrap_err();
        assert!(
            matches!(&err, KeyfileError::TooLarge(p) if *p == over),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&over.display().to_string()) && msg.contains("larger than 1 MiB"),
            "{msg}"
        );

        // A device that never ends: refused after 1 MiB instead of filling memory.
        #[cfg(unix)]
        {
            let err = read_keyfile(Path::new("/dev/zero")).unwrap_err();
            assert!(matches!(&err, KeyfileError::TooLarge(p) if p == Path::new("/dev/zero")));
            assert!(err.to_string().contains("/dev/zero"), "{err}");
        }
    }

    #[test]
    fn standard_input_is_read_up_to_1_mib() {
        let exact = vec![7u8; MAX_KEYFILE_LEN];
        let loaded = read_key_from(io::Cursor::new(&exact)).unwrap();
        assert_eq!(loaded.key.fingerprint().to_string(), fingerprint_of(&exact));

        let over = vec![7u8; MAX_KEYFILE_LEN + 1];
        let err = read_key_from(io::Cursor::new(&over)).unwrap_err();
        assert!(matches!(err, KeyfileError::TooLarge(_)));
        assert!(
            err.to_string()
                .starts_with("the key from standard input is larger than 1 MiB"),
            "{err}"
        );
        // An endless reader stops at the bound.
        let err = read_key_from(io::repeat(0)).unwrap_err();
        assert!(matches!(err, KeyfileError::TooLarge(_)));
    }

    #[test]
    fn reader_errors_name_standard_input() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("device gone"))
            }
        }
        let err = read_key_from(Broken).unwrap_err();
        assert!(matches!(err, KeyfileError::Io { .. }));
        assert_eq!(
            err.to_string(),
            "cannot use the key from standard input: device gone"
        );
    }

    #[test]
    fn key_bytes_never_show_in_debug_or_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let secret = b"correct horse battery staple, definitely secret";
        write_new_keyfile(&path, secret).unwrap();
        let loaded = read_keyfile(&path).unwrap();
        let err = write_new_keyfile(&path, secret).unwrap_err();
        let shown = format!("{loaded:?} {err} {err:?}");
        assert!(!shown.contains("horse"), "{shown}");
        assert!(
            !shown.contains(&crate::protocol::key::hex(secret)[..16]),
            "{shown}"
        );
    }

    #[test]
    fn rng_error_says_nothing_was_generated() {
        let msg = KeyfileError::Rng("EAGAIN".into()).to_string();
        assert!(
            msg.contains("EAGAIN") && msg.contains("no key was generated"),
            "{msg}"
        );
    }
}
