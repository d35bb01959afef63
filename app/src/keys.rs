//! The keys the app knows: an index of names, fingerprints and where each key lives
//! (keychain entry or key file), saved beside the config. Key bytes are never in it; they
//! stay in the keychain or the key file. Also sharing a key sealed with a passphrase
//! (docs/SHARING.md) and opening such a bundle into the keychain. The operations here may
//! block (keychain prompts, disks, scrypt), so the app runs them on background threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sluice_engine::{
    KeyRef, KeySourceError, KeyStore, KeyfileWarning, LoadedKey, Passphrase, PresharedKey,
    SealError, check_bundle, generate_key_bytes, load_key, read_bundle, read_keyfile_with_bytes,
    seal_key, seal_key_with_tunnels, unseal_bundle, write_new_bundle, write_new_keyfile,
};
use zeroize::Zeroizing;

use crate::bounded_read::{self, MAX_KEY_INDEX_LEN};
use crate::error::{
    BoundedReadError, KeyError, KeyListError, KeyNameProblem, OpenBundleError, ShareError,
};

pub const KEY_INDEX_VERSION: u32 = 1;

/// One known key. `location` is exactly what a tunnel's config refers to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    pub name: String,
    pub fingerprint: String,
    pub location: KeyRef,
    /// When the key was generated or came in here (seconds since 1970); 0 if unknown
    /// (lists written before Sluice kept it).
    #[serde(default)]
    pub created_unix: u64,
    /// Flag the key for rotation once it is this many days old (a reminder, nothing more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_after_days: Option<u32>,
}

/// The reminders the Keys window offers, in days.
pub const ROTATION_REMINDERS: [u32; 4] = [30, 90, 180, 365];

impl KeyInfo {
    /// Whole days since the key was created here, if known.
    pub fn age_days(&self, now_unix: u64) -> Option<u64> {
        (self.created_unix > 0).then(|| now_unix.saturating_sub(self.created_unix) / 86_400)
    }

    /// Whether the key is older than its rotation reminder asks.
    pub fn rotation_due(&self, now_unix: u64) -> bool {
        match (self.rotate_after_days, self.age_days(now_unix)) {
            (Some(limit), Some(age)) => age >= u64::from(limit),
            _ => false,
        }
    }

    pub fn where_label(&self) -> String {
        match &self.location {
            KeyRef::Keychain(_) => "keychain".to_owned(),
            KeyRef::File(path) => format!("file {}", path.display()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyIndex {
    pub version: u32,
    #[serde(default)]
    pub keys: Vec<KeyInfo>,
}

impl KeyIndex {
    pub fn new() -> KeyIndex {
        KeyIndex {
            version: KEY_INDEX_VERSION,
            keys: Vec::new(),
        }
    }

    /// Reads the index (at most [`MAX_KEY_INDEX_LEN`] bytes); a missing file is an empty
    /// index.
    pub fn load(path: &Path) -> Result<KeyIndex, KeyListError> {
        match bounded_read::read_text(path, MAX_KEY_INDEX_LEN) {
            Ok(text) => ron::from_str(&text).map_err(|source| KeyListError::Damaged {
                path: path.to_owned(),
                source: Box::new(source),
            }),
            Err(BoundedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(KeyIndex::new())
            }
            Err(BoundedReadError::Io(source)) => Err(KeyListError::Unreadable {
                path: path.to_owned(),
                source,
            }),
            Err(BoundedReadError::TooLarge { limit }) => Err(KeyListError::TooLarge {
                path: path.to_owned(),
                limit,
            }),
        }
    }

    pub fn to_ron(&self) -> String {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::new()).unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<&KeyInfo> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// The key a tunnel refers to, if the index knows it.
    pub fn for_ref(&self, key: &KeyRef) -> Option<&KeyInfo> {
        self.keys.iter().find(|k| &k.location == key)
    }

    pub fn with_fingerprint(&self, fingerprint: &str) -> Option<&KeyInfo> {
        self.keys.iter().find(|k| k.fingerprint == fingerprint)
    }
}

/// Checks a new key's name: non-empty, unused, printable.
pub fn check_new_name(index: &KeyIndex, name: &str) -> Result<(), KeyNameProblem> {
    let name = name.trim();
    if name.is_empty() {
        return Err(KeyNameProblem::Empty);
    }
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(KeyNameProblem::NotPrintable);
    }
    if index.get(name).is_some() {
        return Err(KeyNameProblem::Taken(name.to_owned()));
    }
    Ok(())
}

/// Seconds since 1970 now (0 if the clock is before it).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Generates 256 bits from the OS RNG; stores them in the keychain if there is one, and
/// writes a key file at `copy_to` (mode 0600, never over an existing file) if asked.
/// Without a keychain the key file is where the key lives, so `copy_to` is required.
pub fn generate(
    name: &str,
    keychain: Option<&Arc<dyn KeyStore>>,
    copy_to: Option<&Path>,
) -> Result<KeyInfo, KeyError> {
    let bytes = generate_key_bytes()?;
    let fingerprint = PresharedKey::from_keyfile_bytes(&bytes[..])
        .fingerprint()
        .to_string();
    if let Some(path) = copy_to {
        write_new_keyfile(path, &bytes[..])?;
    }
    let location = match (keychain, copy_to) {
        (Some(store), _) => {
            store.store_new(name, &bytes[..])?;
            KeyRef::Keychain(name.to_owned())
        }
        (None, Some(path)) => KeyRef::File(path.to_owned()),
        (None, None) => return Err(KeyError::NowhereToKeep),
    };
    Ok(KeyInfo {
        name: name.to_owned(),
        fingerprint,
        location,
        created_unix: now_unix(),
        rotate_after_days: None,
    })
}

/// Imports a key file: its bytes go into the keychain if there is one; otherwise the
/// key stays in the file and the index refers to it. Returns the warnings about the file.
pub fn import(
    name: &str,
    path: &Path,
    keychain: Option<&Arc<dyn KeyStore>>,
) -> Result<(KeyInfo, Vec<KeyfileWarning>), KeyError> {
    let (bytes, LoadedKey { key, warnings }) = read_keyfile_with_bytes(path)?;
    let location = match keychain {
        Some(store) => {
            store.store_new(name, &bytes[..])?;
            KeyRef::Keychain(name.to_owned())
        }
        None => KeyRef::File(path.to_owned()),
    };
    Ok((
        KeyInfo {
            name: name.to_owned(),
            fingerprint: key.fingerprint().to_string(),
            location,
            created_unix: now_unix(),
            rotate_after_days: None,
        },
        warnings,
    ))
}

/// The key file's bytes of a known key, wiped when dropped.
fn key_bytes(
    info: &KeyInfo,
    keychain: Option<&Arc<dyn KeyStore>>,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    Ok(match &info.location {
        KeyRef::Keychain(entry) => keychain.ok_or(KeyError::NoKeychain)?.load(entry)?,
        KeyRef::File(path) => read_keyfile_with_bytes(path)?.0,
    })
}

/// Writes the key's bytes to a new file (mode 0600; an existing file is never replaced).
pub fn export(
    info: &KeyInfo,
    keychain: Option<&Arc<dyn KeyStore>>,
    to: &Path,
) -> Result<PathBuf, KeyError> {
    let bytes = key_bytes(info, keychain)?;
    write_new_keyfile(to, &bytes[..])?;
    Ok(to.to_owned())
}

/// A key sealed for a teammate: the bundle written, and the passphrase that opens it, to
/// be shown once. Sluice keeps the passphrase nowhere else; dropping this wipes it.
#[derive(Debug)]
pub struct Shared {
    /// What is sealed, in words: `key "db"`, `tunnel "redis" and its key "db"`.
    pub what: String,
    pub name: String,
    pub fingerprint: String,
    pub bundle: PathBuf,
    pub passphrase: Passphrase,
}

/// Seals the key with a new passphrase (six random words) into a new age file at `to`
/// (never over an existing file). Takes a second or more: scrypt.
pub fn share(
    info: &KeyInfo,
    keychain: Option<&Arc<dyn KeyStore>>,
    to: &Path,
) -> Result<Shared, ShareError> {
    let what = format!("key \"{}\"", info.name);
    seal_to(info, keychain, to, what, seal_key)
}

/// Seals `info`'s key with a new passphrase through `seal`, into a new file at `to`.
fn seal_to(
    info: &KeyInfo,
    keychain: Option<&Arc<dyn KeyStore>>,
    to: &Path,
    what: String,
    seal: impl FnOnce(&[u8], &Passphrase) -> Result<Vec<u8>, SealError>,
) -> Result<Shared, ShareError> {
    let bytes = key_bytes(info, keychain)?;
    let passphrase = Passphrase::generate()?;
    let bundle = seal(&bytes[..], &passphrase)?;
    write_new_bundle(to, &bundle)?;
    Ok(Shared {
        what,
        name: info.name.clone(),
        fingerprint: info.fingerprint.clone(),
        bundle: to.to_owned(),
        passphrase,
    })
}

/// Seals a tunnel's definition (`tunnel_file::export_shared`) with its key `info`, as
/// [`share`] seals a key.
pub fn share_tunnel(
    tunnel: &str,
    definition: &str,
    info: &KeyInfo,
    keychain: Option<&Arc<dyn KeyStore>>,
    to: &Path,
) -> Result<Shared, ShareError> {
    let what = format!("tunnel \"{tunnel}\" and its key \"{}\"", info.name);
    seal_to(info, keychain, to, what, |key, passphrase| {
        seal_key_with_tunnels(key, definition, passphrase)
    })
}

/// What an opened bundle gave: its key, now in the keychain, and the tunnel definitions
/// sealed with it, if any, for the import's review.
#[derive(Debug)]
pub struct OpenedBundle {
    pub key: KeyInfo,
    pub tunnels: Option<String>,
}

/// Reads a bundle and checks what can be checked without the passphrase (an age file,
/// passphrase-sealed, a sane work factor), so a wrong file is refused before asking.
pub fn check_bundle_file(path: &Path) -> Result<(), OpenBundleError> {
    check_bundle(&read_bundle(path)?)?;
    Ok(())
}

/// Opens a bundle with the passphrase and keeps its key in the keychain as `name`.
/// Nothing is stored unless the key came out whole. Takes a second or more: scrypt.
pub fn open_bundle(
    name: &str,
    path: &Path,
    passphrase: &str,
    keychain: Option<&Arc<dyn KeyStore>>,
) -> Result<OpenedBundle, OpenBundleError> {
    let store = keychain.ok_or(OpenBundleError::NoKeychain)?;
    let bundle = read_bundle(path)?;
    let opened = unseal_bundle(&bundle, passphrase)?;
    let fingerprint = PresharedKey::from_keyfile_bytes(&opened.key[..])
        .fingerprint()
        .to_string();
    store.store_new(name, &opened.key[..])?;
    Ok(OpenedBundle {
        key: KeyInfo {
            name: name.to_owned(),
            fingerprint,
            location: KeyRef::Keychain(name.to_owned()),
            created_unix: now_unix(),
            rotate_after_days: None,
        },
        tunnels: opened.tunnels,
    })
}

/// Text the user types that must not outlive its use (a bundle's passphrase): wiped when
/// dropped, hidden from `Debug`. It starts with room for any passphrase one would type, so
/// typing does not reallocate and leave unwiped copies behind.
#[derive(Clone, PartialEq)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    const ROOM: usize = 256;

    /// The text, for the password field that edits it.
    pub fn as_mut_string(&mut self) -> &mut String {
        &mut self.0
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Default for SecretText {
    fn default() -> SecretText {
        SecretText(Zeroizing::new(String::with_capacity(SecretText::ROOM)))
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(<hidden>)")
    }
}

/// Removes the key from the keychain; a key file is left on disk (only forgotten).
pub fn delete(info: &KeyInfo, keychain: Option<&Arc<dyn KeyStore>>) -> Result<(), KeyError> {
    match &info.location {
        KeyRef::Keychain(entry) => Ok(keychain.ok_or(KeyError::NoKeychain)?.delete(entry)?),
        KeyRef::File(_) => Ok(()),
    }
}

/// Loads the key a tunnel uses.
pub fn load_for_tunnel(
    key: &KeyRef,
    keychain: Option<&Arc<dyn KeyStore>>,
) -> Result<LoadedKey, KeySourceError> {
    load_key(key, keychain.map(|k| &**k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::KeychainStore;

    fn mock_keychain() -> Arc<dyn KeyStore> {
        Arc::new(KeychainStore::new(
            keyring_core::mock::Store::new().unwrap(),
        ))
    }

    #[test]
    fn generated_keys_live_in_the_keychain_and_export_to_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let keychain = mock_keychain();
        let info = generate("redis", Some(&keychain), None).unwrap();
        assert_eq!(info.location, KeyRef::Keychain("redis".into()));
        let exported = dir.path().join("redis.key");
        export(&info, Some(&keychain), &exported).unwrap();
        let loaded = sluice_engine::read_keyfile(&exported).unwrap();
        assert_eq!(loaded.key.fingerprint().to_string(), info.fingerprint);
        assert!(
            loaded.warnings.is_empty(),
            "exported file is 0600 and 32 bytes"
        );
        // Exporting again never overwrites.
        assert!(export(&info, Some(&keychain), &exported).is_err());
    }

    #[test]
    fn without_a_keychain_keys_are_key_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(generate("k", None, None).is_err());
        let path = dir.path().join("k.key");
        let info = generate("k", None, Some(&path)).unwrap();
        assert_eq!(info.location, KeyRef::File(path.clone()));
        let (imported, _) = import("again", &path, None).unwrap();
        assert_eq!(imported.fingerprint, info.fingerprint);
    }

    #[test]
    fn import_warns_about_weak_files_and_refuses_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.key");
        std::fs::write(&path, b"short").unwrap();
        let (_, warnings) = import("short", &path, Some(&mock_keychain())).unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.to_string().contains("only 5 bytes")),
            "{warnings:?}"
        );

        let path = dir.path().join("empty.key");
        std::fs::write(&path, b"").unwrap();
        let keychain = mock_keychain();
        let err = import("empty", &path, Some(&keychain)).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        assert!(keychain.load("empty").is_err(), "nothing was stored");
    }

    #[test]
    fn a_shared_key_opens_with_its_passphrase_only_and_into_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let ours = mock_keychain();
        let info = generate("db", Some(&ours), None).unwrap();
        let bundle = dir.path().join("db.age");
        let shared = share(&info, Some(&ours), &bundle).unwrap();
        assert!(!format!("{shared:?}").contains(shared.passphrase.reveal()));
        check_bundle_file(&bundle).unwrap();
        // Never over an existing file.
        assert!(matches!(
            share(&info, Some(&ours), &bundle),
            Err(ShareError::Bundle(_))
        ));

        let theirs = mock_keychain();
        let wrong = open_bundle("from alice", &bundle, "not-the-words", Some(&theirs));
        assert!(
            matches!(wrong, Err(OpenBundleError::Unseal(_))),
            "{wrong:?}"
        );
        assert!(theirs.load("from alice").is_err(), "nothing was stored");
        let opened = open_bundle(
            "from alice",
            &bundle,
            shared.passphrase.reveal(),
            Some(&theirs),
        )
        .unwrap();
        assert_eq!(opened.key.fingerprint, info.fingerprint);
        assert!(opened.tunnels.is_none(), "a key alone");
        assert_eq!(theirs.load("from alice").unwrap(), ours.load("db").unwrap());
        let err = check_bundle_file(&dir.path().join("missing.age")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert_eq!(
            format!("{:?}", SecretText::default()),
            "SecretText(<hidden>)"
        );
    }

    #[test]
    fn a_key_is_due_for_rotation_once_older_than_its_reminder() {
        let day = 86_400;
        let mut info = generate("k", Some(&mock_keychain()), None).unwrap();
        let now = info.created_unix;
        assert_eq!(info.age_days(now + 89 * day + day / 2), Some(89));
        assert!(
            !info.rotation_due(now + 400 * day),
            "no reminder, never due"
        );
        info.rotate_after_days = Some(90);
        assert!(!info.rotation_due(now + 89 * day));
        assert!(info.rotation_due(now + 90 * day));
        info.created_unix = 0;
        assert_eq!(info.age_days(now), None);
        assert!(!info.rotation_due(now), "an unknown age is never due");
    }

    #[test]
    fn names_are_checked() {
        let mut index = KeyIndex::new();
        assert!(check_new_name(&index, "  ").is_err());
        index.keys.push(KeyInfo {
            name: "a".into(),
            fingerprint: "f".into(),
            location: KeyRef::Keychain("a".into()),
            created_unix: 0,
            rotate_after_days: None,
        });
        assert!(check_new_name(&index, "a").is_err());
        assert!(check_new_name(&index, "b").is_ok());
    }

    #[test]
    fn the_index_round_trips_without_key_bytes() {
        let keychain = mock_keychain();
        let mut index = KeyIndex::new();
        index
            .keys
            .push(generate("db", Some(&keychain), None).unwrap());
        let text = index.to_ron();
        let secret = keychain.load("db").unwrap();
        let secret_hex = sluice_engine::hex(&secret);
        assert!(!text.contains(&secret_hex[..16]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.ron");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(KeyIndex::load(&path).unwrap(), index);
    }

    #[test]
    fn a_key_list_beyond_1_mib_is_refused_naming_the_file_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.ron");
        // A valid list padded with spaces: only its size is wrong.
        let text = KeyIndex::new().to_ron();
        let padded = |len: u64| format!("{text}{}", " ".repeat(len as usize - text.len()));
        std::fs::write(&path, padded(MAX_KEY_INDEX_LEN)).unwrap();
        assert_eq!(KeyIndex::load(&path).unwrap(), KeyIndex::new());
        std::fs::write(&path, padded(MAX_KEY_INDEX_LEN + 1)).unwrap();
        let error = KeyIndex::load(&path).unwrap_err();
        assert!(matches!(error, KeyListError::TooLarge { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("larger than 1 MiB"),
            "{message}"
        );
    }
}
