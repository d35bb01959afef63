//! What differs between operating systems, in one place: which OS keychain holds the keys,
//! where the settings live and what this machine is called. No other module has a
//! `cfg(target_os)`. Only the Linux branches are built and tested; the others are written,
//! not built.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_engine::KeyStore;

use crate::error::KeychainUnavailable;

/// The OS credential store: the Secret Service on Linux.
pub fn keychain_store() -> Result<Arc<dyn KeyStore>, KeychainUnavailable> {
    #[cfg(target_os = "linux")]
    {
        zbus_secret_service_keyring_store::Store::new()
            .map(|store| Arc::new(sluice_engine::KeychainStore::new(store)) as Arc<dyn KeyStore>)
            .map_err(|e| KeychainUnavailable::NoSecretService(e.to_string()))
    }
    // Written, not built: macOS and Windows have store crates in Cargo.toml, but no
    // machine was at hand to check them, so those builds keep keys as key files.
    #[cfg(not(target_os = "linux"))]
    {
        Err(KeychainUnavailable::Unsupported)
    }
}

/// The platform's directory for Sluice's settings (e.g. ~/.config/sluice on Linux).
pub fn config_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "Sluice", "sluice")
        .map(|dirs| dirs.config_dir().to_owned())
}

/// The user's OpenSSH client config (~/.ssh/config), whose host aliases the far-end tab
/// offers. OpenSSH uses the same path on every platform it runs on.
pub fn ssh_config_file() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.home_dir().join(".ssh").join("config"))
}

/// This machine's name, as the far end would most likely know it: /etc/hostname on Linux,
/// then `$HOSTNAME`.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this-machine".to_owned())
}
