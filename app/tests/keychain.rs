//! The real OS keychain: a key stored, read back and deleted through the Secret Service
//! (gnome-keyring under dbus-run-session; `scripts/test` sets that up).

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

use sluice::services::Keychain;
use sluice_engine::KeyStoreError;

#[test]
fn a_key_round_trips_through_the_secret_service() {
    let store = match Keychain::platform() {
        Keychain::Available(store) => store,
        Keychain::Unavailable(why) => panic!(
            "no Secret Service ({why}): run the tests through scripts/test, which starts gnome-keyring in a private D-Bus session"
        ),
    };
    let name = format!("sluice integration test {}", std::process::id());
    let key = b"\x00\x01 a key file's bytes, newline included\n\xff";
    store.store_new(&name, key).unwrap();
    assert_eq!(&store.load(&name).unwrap()[..], key);
    assert_eq!(
        store.store_new(&name, b"other"),
        Err(KeyStoreError::AlreadyExists(name.clone()))
    );
    store.delete(&name).unwrap();
    assert_eq!(
        store.load(&name),
        Err(KeyStoreError::NotFound(name.clone()))
    );
}
