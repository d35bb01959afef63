//! What the app needs from the machine, gathered in one place so tests can build the app
//! with fakes: where files live, the keychain (if any), and file dialogs. The real
//! machine's answers come from `platform`.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_engine::KeyStore;

use crate::error::{KeychainUnavailable, StartupError};
use crate::file_dialogs::{FileDialog, NativeFileDialog};
use crate::platform;

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
    pub fn platform() -> Result<AppPaths, StartupError> {
        platform::config_dir()
            .map(AppPaths::in_dir)
            .ok_or(StartupError::NoConfigDir)
    }
}

/// The OS keychain, or why there is none.
#[derive(Clone)]
pub enum Keychain {
    Available(Arc<dyn KeyStore>),
    Unavailable(KeychainUnavailable),
}

impl Keychain {
    pub fn store(&self) -> Option<&Arc<dyn KeyStore>> {
        match self {
            Keychain::Available(store) => Some(store),
            Keychain::Unavailable(_) => None,
        }
    }

    /// The platform's credential store, or why there is none.
    pub fn platform() -> Keychain {
        match platform::keychain_store() {
            Ok(store) => Keychain::Available(store),
            Err(why) => Keychain::Unavailable(why),
        }
    }

    /// Why there is no keychain, if there is none.
    pub fn problem(&self) -> Option<&KeychainUnavailable> {
        match self {
            Keychain::Available(_) => None,
            Keychain::Unavailable(why) => Some(why),
        }
    }
}

pub struct Services {
    pub paths: AppPaths,
    pub keychain: Keychain,
    pub dialogs: Arc<dyn FileDialog>,
    /// How the far end reaches this machine, for the far-end commands.
    pub host_name: String,
    pub ssh: SshSetup,
}

/// How the far-end actions reach servers.
#[derive(Clone, Debug, Default)]
pub struct SshSetup {
    /// The ssh command and its first arguments; `None`: `ssh`, or `$SLUICE_SSH_COMMAND`.
    pub command: Option<Vec<String>>,
    /// The ssh config whose host aliases are offered as destinations.
    pub config_file: Option<PathBuf>,
}

impl Services {
    /// The real machine: platform paths, keychain and native dialogs.
    pub fn platform() -> Result<Services, StartupError> {
        Ok(Services {
            paths: AppPaths::platform()?,
            keychain: Keychain::platform(),
            dialogs: Arc::new(NativeFileDialog),
            host_name: platform::host_name(),
            ssh: SshSetup {
                command: None,
                config_file: platform::ssh_config_file(),
            },
        })
    }
}
