//! Where key bytes live: the OS keychain (through keyring-core's credential stores:
//! Secret Service, macOS Keychain, Windows Credential Manager) or key files. A config
//! only ever holds a [`KeyRef`]; this module turns one into a key.

use std::path::PathBuf;
use std::sync::Arc;

use keyring_core::{CredentialStore, Entry};
use zeroize::Zeroizing;

use crate::keyfile::{self, KeyfileError, LoadedKey};
use serde::{Deserialize, Serialize};

/// Where a tunnel's key lives. The config holds only this reference: key bytes are never
/// stored in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyRef {
    /// An entry name in the OS keychain.
    Keychain(String),
    /// A spiped key file; every byte of it is the key.
    File(PathBuf),
}

/// The keychain "service" under which Sluice files its keys; the entry name is the user.
pub const KEYCHAIN_SERVICE: &str = "sluice";

/// A place that keeps key bytes by name. Calls may block (a keychain may ask the user to
/// unlock it), so a GUI calls them off its UI thread.
pub trait KeyStore: Send + Sync {
    /// What this store is, for messages ("Secret Service", …).
    fn describe(&self) -> String;
    /// Stores `key_file_bytes` under `name`, replacing nothing: an existing entry is an error.
    fn store_new(&self, name: &str, key_file_bytes: &[u8]) -> Result<(), KeyStoreError>;
    fn load(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, KeyStoreError>;
    fn delete(&self, name: &str) -> Result<(), KeyStoreError>;
}

/// Why the keychain did not do what was asked. Never carries key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyStoreError {
    #[error(
        "the keychain has no key named {0:?}: it was deleted, or this machine's keychain is not the one it was created in; import the key file again"
    )]
    NotFound(String),
    #[error("the keychain already has a key named {0:?}: choose another name")]
    AlreadyExists(String),
    #[error("the keychain is locked or refused access ({0}): unlock it and try again")]
    Locked(String),
    #[error("the keychain is not available ({0}): use key files instead")]
    Unavailable(String),
    #[error("the keychain failed: {0}")]
    Failed(String),
}

/// Keys in an OS credential store, one entry per key under [`KEYCHAIN_SERVICE`].
pub struct KeychainStore {
    store: Arc<CredentialStore>,
    service: String,
}

impl KeychainStore {
    pub fn new(store: Arc<CredentialStore>) -> KeychainStore {
        KeychainStore::with_service(store, KEYCHAIN_SERVICE)
    }

    /// A store filing entries under another service name (tests use their own).
    pub fn with_service(store: Arc<CredentialStore>, service: &str) -> KeychainStore {
        KeychainStore {
            store,
            service: service.to_owned(),
        }
    }

    fn entry(&self, name: &str) -> Result<Entry, KeyStoreError> {
        Entry::new_in_store(&self.store, &self.service, name).map_err(|e| classify(e, name))
    }
}

impl KeyStore for KeychainStore {
    fn describe(&self) -> String {
        self.store.vendor()
    }

    fn store_new(&self, name: &str, key_file_bytes: &[u8]) -> Result<(), KeyStoreError> {
        let entry = self.entry(name)?;
        match entry.get_secret() {
            Ok(mut existing) => {
                zeroize::Zeroize::zeroize(&mut existing);
                return Err(KeyStoreError::AlreadyExists(name.to_owned()));
            }
            Err(keyring_core::Error::NoEntry) => {}
            Err(e) => return Err(classify(e, name)),
        }
        entry
            .set_secret(key_file_bytes)
            .map_err(|e| classify(e, name))
    }

    fn load(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
        self.entry(name)?
            .get_secret()
            .map(Zeroizing::new)
            .map_err(|e| classify(e, name))
    }

    fn delete(&self, name: &str) -> Result<(), KeyStoreError> {
        self.entry(name)?
            .delete_credential()
            .map_err(|e| classify(e, name))
    }
}

/// Maps keyring-core's errors to ours. Some of its variants carry the secret's bytes
/// (bad encodings): those are dropped here unread, never formatted.
fn classify(error: keyring_core::Error, name: &str) -> KeyStoreError {
    use keyring_core::Error as E;
    match error {
        E::NoEntry => KeyStoreError::NotFound(name.to_owned()),
        E::NoStorageAccess(e) => KeyStoreError::Locked(e.to_string()),
        E::PlatformFailure(e) => KeyStoreError::Unavailable(e.to_string()),
        E::NoDefaultStore => KeyStoreError::Unavailable("no credential store is set up".into()),
        E::BadEncoding(mut bytes) => {
            zeroize::Zeroize::zeroize(&mut bytes);
            KeyStoreError::Failed("the stored key is not in the expected format".into())
        }
        E::BadDataFormat(mut bytes, _) => {
            zeroize::Zeroize::zeroize(&mut bytes);
            KeyStoreError::Failed("the stored key is not in the expected format".into())
        }
        E::TooLong(what, limit) => KeyStoreError::Failed(format!(
            "{what} is longer than the keychain allows ({limit})"
        )),
        E::Invalid(what, why) => KeyStoreError::Failed(format!("{what}: {why}")),
        E::Ambiguous(_) => KeyStoreError::Failed(format!(
            "several keychain entries are named {name:?}: remove the duplicates"
        )),
        other => KeyStoreError::Failed(other.to_string()),
    }
}

/// Why a tunnel's key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error(transparent)]
    File(#[from] KeyfileError),
    #[error(transparent)]
    Keychain(#[from] KeyStoreError),
    #[error(
        "its key is in the desktop keychain (entry {0:?}), which is not available here (sluiced never reads it): export the key to a file in Sluice (Keys, Export) and reference it as File(\"/path/to/keyfile\")"
    )]
    NoKeychain(String),
    #[error(
        "the keychain entry {0:?} holds an empty key, which Sluice never uses (anyone could connect with it): delete it and generate or import a real key"
    )]
    EmptyKeychainEntry(String),
}

/// Loads the key a config refers to: the one way every front end (the app, `sluiced`,
/// the far end's set-up) turns a [`KeyRef`] into a key.
pub fn load_key(
    key: &KeyRef,
    keychain: Option<&dyn KeyStore>,
) -> Result<LoadedKey, KeySourceError> {
    load_key_bytes(key, keychain).map(|(_, loaded)| loaded)
}

/// [`load_key`], also returning the key's raw bytes (wiped when dropped), for copying it
/// elsewhere (the far end, an exported key file).
pub fn load_key_bytes(
    key: &KeyRef,
    keychain: Option<&dyn KeyStore>,
) -> Result<(Zeroizing<Vec<u8>>, LoadedKey), KeySourceError> {
    match key {
        KeyRef::File(path) => Ok(keyfile::read_keyfile_with_bytes(path)?),
        KeyRef::Keychain(name) => {
            let store = keychain.ok_or_else(|| KeySourceError::NoKeychain(name.clone()))?;
            let bytes = store.load(name)?;
            let loaded = keyfile::loaded_from_bytes(&bytes)
                .map_err(|keyfile::EmptyKey| KeySourceError::EmptyKeychainEntry(name.clone()))?;
            Ok((bytes, loaded))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock() -> KeychainStore {
        KeychainStore::new(keyring_core::mock::Store::new().unwrap())
    }

    #[test]
    fn store_load_delete_round_trip() {
        let store = mock();
        store
            .store_new("redis", b"0123456789abcdef0123456789abcdef")
            .unwrap();
        assert_eq!(
            &store.load("redis").unwrap()[..],
            b"0123456789abcdef0123456789abcdef"
        );
        store.delete("redis").unwrap();
        assert_eq!(
            store.load("redis"),
            Err(KeyStoreError::NotFound("redis".into()))
        );
    }

    #[test]
    fn an_existing_key_is_never_replaced() {
        let store = mock();
        store.store_new("k", b"first").unwrap();
        assert_eq!(
            store.store_new("k", b"second"),
            Err(KeyStoreError::AlreadyExists("k".into()))
        );
        assert_eq!(&store.load("k").unwrap()[..], b"first");
    }

    #[test]
    fn keychain_keys_hash_like_key_files() {
        let store = mock();
        store.store_new("k", b"same bytes").unwrap();
        let from_keychain = load_key(&KeyRef::Keychain("k".into()), Some(&store)).unwrap();
        let expected = crate::PresharedKey::from_keyfile_bytes(b"same bytes");
        assert_eq!(from_keychain.key.fingerprint(), expected.fingerprint());
    }

    #[test]
    fn an_empty_keychain_entry_is_refused() {
        let store = mock();
        store.store_new("empty", b"").unwrap();
        let err = load_key(&KeyRef::Keychain("empty".into()), Some(&store)).unwrap_err();
        assert!(matches!(&err, KeySourceError::EmptyKeychainEntry(n) if n == "empty"));
        assert!(err.to_string().contains("never uses"), "{err}");
    }

    #[test]
    fn keychain_reference_without_a_keychain_says_what_to_do() {
        let err = load_key(&KeyRef::Keychain("k".into()), None).unwrap_err();
        assert!(
            err.to_string().contains("export the key to a file"),
            "{err}"
        );
    }
}
