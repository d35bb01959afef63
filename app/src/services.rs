//! What the app needs from the machine, gathered in one place so tests can build the app
//! with fakes: where files live, the keychain (if any), file dialogs, and the desktop
//! (tray, notifications, start at login, the one-instance socket). The real machine's
//! answers come from `platform`.

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

/// Where the start-at-login entry is written.
#[derive(Clone, Debug)]
pub enum LoginEntries {
    /// The system's place (the XDG autostart directory on Linux).
    System,
    /// A directory of the caller's (tests).
    In(PathBuf),
    /// Nowhere: the setting is kept, nothing is written (tests that do not look).
    Off,
}

/// The app's part of the desktop beyond its window.
pub struct Desktop {
    /// Show a tray icon (a StatusNotifierItem on the session bus).
    pub tray: bool,
    /// Send desktop notifications through the platform.
    pub notifications: bool,
    /// At most one failure/recovery notification per this long (`alerts::MIN_GAP`).
    pub notification_gap: std::time::Duration,
    pub login_entries: LoginEntries,
    /// Started with the window hidden (`--hidden`, as the login entry starts it).
    pub start_hidden: bool,
    /// The one-instance socket; later starts ask through it to show the window.
    pub instance: Option<platform::InstanceLock>,
}

impl Desktop {
    /// No tray, no notifications, nothing written for login: for tests of the window.
    pub fn none() -> Desktop {
        Desktop {
            tray: false,
            notifications: false,
            notification_gap: crate::alerts::MIN_GAP,
            login_entries: LoginEntries::Off,
            start_hidden: false,
            instance: None,
        }
    }

    /// The real desktop.
    pub fn platform(start_hidden: bool, instance: Option<platform::InstanceLock>) -> Desktop {
        Desktop {
            tray: true,
            notifications: true,
            notification_gap: crate::alerts::MIN_GAP,
            login_entries: LoginEntries::System,
            start_hidden,
            instance,
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
    pub desktop: Desktop,
}

/// How the far-end actions reach servers.
#[derive(Clone, Debug, Default)]
pub struct SshSetup {
    /// The ssh command and its first arguments; `None`: `ssh`, or `$SLUICE_SSH_COMMAND`.
    pub command: Option<Vec<String>>,
    /// The ssh config whose host aliases are offered as destinations.
    pub config_file: Option<PathBuf>,
    /// This machine's sluiced, which set-up copies to a far end that needs sluiced and has
    /// none; `None`: the one installed beside this program, if any.
    pub sluiced: Option<PathBuf>,
}

impl Services {
    /// The real machine: platform paths, keychain, native dialogs and the desktop.
    pub fn platform(desktop: Desktop) -> Result<Services, StartupError> {
        Ok(Services {
            paths: AppPaths::platform()?,
            keychain: Keychain::platform(),
            dialogs: Arc::new(NativeFileDialog),
            host_name: sluice_engine::host_name(),
            ssh: SshSetup {
                command: None,
                config_file: platform::ssh_config_file(),
                sluiced: None,
            },
            desktop,
        })
    }
}
