//! What the app needs from the machine, gathered in one place so tests can build the app
//! with fakes: where files live, the keychain (if any), and file dialogs.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_engine::keystore::{KeyStore, KeychainStore};

use crate::dialogs::{FileDialog, NativeFileDialog};

/// Where the app keeps its files.
#[derive(Clone, Debug)]
pub struct AppPaths {
    /// The tunnels, in the engine's config format (`sluiced --config` reads it too).
    pub config_file: PathBuf,
    /// The key index: names, fingerprints, locations; never key bytes.
    pub keys_file: PathBuf,
    /// Suggested folder for new key files.
    pub keyfile_dir: PathBuf,
}

impl AppPaths {
    /// Paths inside one directory (tests use a temporary one).
    pub fn in_dir(dir: impl Into<PathBuf>) -> AppPaths {
        let dir = dir.into();
        AppPaths {
            config_file: dir.join("config.ron"),
            keys_file: dir.join("keys.ron"),
            keyfile_dir: dir.join("keys"),
        }
    }

    /// The platform's config directory (e.g. ~/.config/sluice on Linux).
    pub fn platform() -> Result<AppPaths, String> {
        directories::ProjectDirs::from("org", "Sluice", "sluice")
            .map(|dirs| AppPaths::in_dir(dirs.config_dir()))
            .ok_or_else(|| "cannot find a home directory for Sluice's settings".to_owned())
    }
}

/// The OS keychain, or why there is none.
#[derive(Clone)]
pub enum Keychain {
    Available(Arc<dyn KeyStore>),
    Unavailable(String),
}

impl Keychain {
    pub fn store(&self) -> Option<&Arc<dyn KeyStore>> {
        match self {
            Keychain::Available(store) => Some(store),
            Keychain::Unavailable(_) => None,
        }
    }

    /// The platform's credential store: Secret Service on Linux.
    pub fn platform() -> Keychain {
        #[cfg(target_os = "linux")]
        {
            match zbus_secret_service_keyring_store::Store::new() {
                Ok(store) => Keychain::Available(Arc::new(KeychainStore::new(store))),
                Err(e) => Keychain::Unavailable(format!(
                    "no Secret Service on the session bus ({e}); install and unlock GNOME Keyring or KeePassXC to keep keys there"
                )),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            Keychain::Unavailable(
                "this build of Sluice has no keychain support for this system".into(),
            )
        }
    }
}

pub struct Services {
    pub paths: AppPaths,
    pub keychain: Keychain,
    pub dialogs: Arc<dyn FileDialog>,
    /// How the far end reaches this machine, for the far-end commands.
    pub host_name: String,
}

impl Services {
    /// The real machine: platform paths, keychain and native dialogs.
    pub fn platform() -> Result<Services, String> {
        Ok(Services {
            paths: AppPaths::platform()?,
            keychain: Keychain::platform(),
            dialogs: Arc::new(NativeFileDialog),
            host_name: host_name(),
        })
    }
}

/// This machine's name, as the far end would most likely know it.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this-machine".to_owned())
}
