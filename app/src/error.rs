//! The app's errors, typed by cause: what stops it from starting, what keeps the keychain
//! away, and what can go wrong with something the user asked for. Each is rendered to
//! words once, where it is shown (a notice, a banner, a test verdict), and handled once.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_engine::{
    ApplyError, BundleFileError, ConfigError, KeySourceError, KeyStoreError, KeyfileError,
    PassphraseError, SealError, UnsealError,
};

/// Why the app could not start at all (eframe reports it and exits).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot find a home directory for Sluice's settings")]
    NoConfigDir,
    #[error("cannot start the tunnel engine: {0}")]
    Engine(#[source] std::io::Error),
}

/// Why the embedded window icon could not be decoded (the app starts with the desktop's
/// default icon).
#[derive(Debug, thiserror::Error)]
#[error("the window icon: {0}")]
pub struct IconError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Why there is no OS keychain; the app runs on and keeps keys as key files.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KeychainUnavailable {
    /// The Secret Service did not answer on the session bus (Linux).
    #[error(
        "no Secret Service on the session bus ({0}); install and unlock GNOME Keyring or KeePassXC to keep keys there"
    )]
    NoSecretService(String),
    /// The Credential Manager (Windows) or the login Keychain (macOS) could not be opened.
    #[error("the system's keychain cannot be used ({0}); keys are kept as key files")]
    System(String),
    /// This build knows no keychain store for the system it runs on.
    #[error("this build of Sluice has no keychain support for this system")]
    Unsupported,
    /// Whoever built the app's services left the keychain out, saying why (tests,
    /// benchmarks).
    #[error("{0}")]
    LeftOut(String),
}

/// Why a text file could not be read whole (`bounded_read`).
#[derive(Debug, thiserror::Error)]
pub enum BoundedReadError {
    #[error("the file is larger than {}, the most Sluice reads", mib(*.limit))]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why the key list file could not be used; it is then never overwritten.
#[derive(Debug, thiserror::Error)]
pub enum KeyListError {
    #[error("key list {} is damaged ({source}); it was left as it is", .path.display())]
    Damaged {
        path: PathBuf,
        source: Box<ron::error::SpannedError>,
    },
    #[error("cannot read the key list {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "key list {} is larger than {}, the most Sluice reads (a key takes about 150 bytes in it); it was left as it is: move it aside, restart Sluice and import the keys again",
        .path.display(), mib(*.limit)
    )]
    TooLarge { path: PathBuf, limit: u64 },
}

/// What is wrong with the name given for a new key (the user fixes it in the form).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyNameProblem {
    #[error("give the key a name, such as \"redis production\"")]
    Empty,
    #[error("the name must be at most 64 printable characters")]
    NotPrintable,
    #[error("there is already a key named \"{0}\"")]
    Taken(String),
}

/// Why generating, importing, exporting or deleting a key failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    File(#[from] KeyfileError),
    #[error(transparent)]
    Keychain(#[from] KeyStoreError),
    /// The key lives in the keychain, and this machine has none.
    #[error("no keychain is available on this machine")]
    NoKeychain,
    /// A new key needs a home: the keychain, or else a key file.
    #[error("no keychain is available: choose where to save the key file")]
    NowhereToKeep,
}

/// Why a key could not be shared (sealed into a bundle).
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Bundle(#[from] BundleFileError),
    #[error(
        "its key is not one of Sluice's keys here (Keys lists them): import or generate the key, point the tunnel at it, then share again"
    )]
    UnknownKey,
}

/// Why a shared bundle could not be opened; nothing was stored when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum OpenBundleError {
    #[error(transparent)]
    File(#[from] BundleFileError),
    #[error("{}", unseal_words(.0))]
    Unseal(#[from] UnsealError),
    #[error(
        "no keychain is available on this machine to keep the key: open the bundle with sluiced --unseal-key BUNDLE --out KEYFILE instead, then import the key file"
    )]
    NoKeychain,
    #[error(transparent)]
    Keychain(#[from] KeyStoreError),
}

/// The engine's words, but for a bundle with more than a key, which the engine sends to
/// this very dialog.
fn unseal_words(error: &UnsealError) -> String {
    match error {
        UnsealError::HoldsMoreThanAKey => "the bundle holds more than a key (tunnels too), and this version of Sluice opens bundles of one key only: ask the sender to share the key alone (Share with a teammate… in Keys, or sluiced --seal-key)".to_owned(),
        other => other.to_string(),
    }
}

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveFailure {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the save thread is not running: changes are not being saved")]
    NoSaveThread,
}

/// Why a tunnel could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", in_one_line(.0))]
    Settings(Vec<ConfigError>),
    #[error(transparent)]
    Key(#[from] KeySourceError),
    #[error("previous key (accepted during a rotation): {0}; choose another in Edit, or none")]
    PreviousKey(KeySourceError),
}

/// Why a test connection was not even tried; worded like the engine's verdicts.
#[derive(Debug, thiserror::Error)]
pub enum ProbeNotTried {
    #[error("Unreachable: {}", in_one_line(.0))]
    Settings(Vec<ConfigError>),
    #[error("Rejected: cannot load the key: {0}")]
    Key(#[from] KeySourceError),
}

/// Why a listen address cannot be used, found by binding it briefly off the UI thread.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListenPortProblem {
    #[error("port {0} is already used by another program")]
    InUse(u16),
    #[error("port {0} needs administrator rights; pick a port above 1023")]
    Privileged(u16),
    #[error("{0} is not an address of this machine")]
    NotOurAddress(IpAddr),
}

/// Why there is no tray icon; the window stays the way back (and a second start shows it).
#[derive(Clone, Debug, thiserror::Error)]
pub enum TrayUnavailable {
    #[error(
        "no tray icon ({0}); closing the window with tunnels running hides it: start Sluice again to show it"
    )]
    Service(String),
    #[error(
        "this build of Sluice has no tray icon for this system; closing the window with tunnels running hides it: start Sluice again to show it"
    )]
    Unsupported,
}

/// Why a desktop notification was not shown.
#[derive(Clone, Debug, thiserror::Error)]
#[error("desktop notifications cannot be shown ({0}); failures are still shown in the window")]
pub struct NotifyFailure(pub String);

/// Why the start-at-login entry could not be written or removed.
#[derive(Debug, thiserror::Error)]
pub enum LoginStartError {
    #[error("cannot find where this system keeps programs started at login")]
    NoPlace,
    #[error("cannot find the Sluice program to start: {0}")]
    NoProgram(#[source] std::io::Error),
    #[error(
        "the Sluice program's path {} is not UTF-8, which a start-at-login entry cannot hold: install Sluice under a UTF-8 path",
        .0.display()
    )]
    NotUtf8(PathBuf),
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove {}: {source}", .path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why the one-instance check could not be made. Without a place for the socket, or
/// when it cannot be bound, the app starts on its own ([`InstanceError::starts_alone`]);
/// an unsafe directory or a holder that does not answer stop the start instead, so two
/// Sluices never run at once.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("no runtime directory for the instance socket")]
    NoRuntimeDir,
    #[error("cannot listen on {}: {source}", .path.display())]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} belongs to user {owner}, not to you (user {us}): Sluice keeps its instance socket only in a directory of your own; set XDG_RUNTIME_DIR to one (mode 0700) and start again",
        .dir.display()
    )]
    DirNotOurs { dir: PathBuf, owner: u32, us: u32 },
    #[error(
        "{} can be written by other users (mode {mode:04o}), so one of them could answer in Sluice's place: run chmod 700 {} and start again",
        .dir.display(), .dir.display()
    )]
    DirOpen { dir: PathBuf, mode: u32 },
    #[error(
        "another Sluice holds {} but did not answer within {} s, so this one did not start: if its window does not show, quit it (or, if none runs, remove {}) and start again",
        .path.display(), .waited.as_secs(), .path.display()
    )]
    NoAnswer {
        path: PathBuf,
        waited: std::time::Duration,
    },
    /// Windows: a program of another user holds the instance pipe's name.
    #[error(
        "{} is held by a program of another user, not by a Sluice of yours",
        .path.display()
    )]
    NotOurs { path: PathBuf },
}

impl InstanceError {
    /// Whether the app may start without the check: nothing else can be running there,
    /// or the socket cannot exist at all.
    pub fn starts_alone(&self) -> bool {
        matches!(
            self,
            InstanceError::NoRuntimeDir
                | InstanceError::Listen { .. }
                // Another user cannot be allowed to keep Sluice from starting.
                | InstanceError::NotOurs { .. }
        )
    }
}

/// What is wrong with a tunnel file being imported; nothing of it was imported.
#[derive(Debug, thiserror::Error)]
pub enum TunnelImportError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is larger than {}, the most Sluice reads of a tunnel file (a tunnel takes a few hundred bytes in it): check that you chose a file Sluice exported",
        .path.display(), mib(*.limit)
    )]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{} is not a Sluice tunnel file: {source}", .path.display())]
    Format {
        path: PathBuf,
        source: Box<ron::error::SpannedError>,
    },
    #[error("{} holds no tunnels", .0.display())]
    NoTunnels(PathBuf),
    #[error(
        "the file names keys this machine does not have: {}; import those keys first (Keys, Import), then the tunnels",
        .0.join(", ")
    )]
    MissingKeys(Vec<String>),
    #[error("tunnels with these names exist already: {}", quoted(.0))]
    NamesTaken(Vec<String>),
    #[error("the tunnels in the file are not valid: {}", in_one_line(.0))]
    Invalid(Vec<ConfigError>),
}

/// Something the user asked for that did not happen, as the notice line says it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    // The user's input: fix it and try again.
    #[error(transparent)]
    KeyName(#[from] KeyNameProblem),
    #[error("choose where to save the key file")]
    NoKeyFileChosen,
    #[error("choose the key file to import")]
    NoImportFileChosen,
    #[error("choose the bundle file to open")]
    NoBundleChosen,
    #[error("type the passphrase the sender gave you")]
    NoPassphrase,
    #[error("key \"{name}\" is used by {}: give those tunnels another key first", quoted(.users))]
    KeyInUse { name: String, users: Vec<String> },
    #[error("not saved: {}", in_one_line(.0))]
    ConfigInvalid(Vec<ConfigError>),
    #[error("the tunnels could not be applied: {0}")]
    Apply(ApplyError),

    // Files the app refuses to overwrite.
    #[error(
        "not saved: {} could not be read, so it is left untouched; fix or move it, then Reload",
        .0.display()
    )]
    ConfigFileBroken(PathBuf),
    #[error("key list not saved: {0}")]
    KeyListBroken(Arc<KeyListError>),

    // Operations that failed on this machine.
    #[error("could not save the tunnels: {0}")]
    ConfigNotWritten(SaveFailure),
    #[error("could not save the key list: {0}")]
    KeyListNotWritten(SaveFailure),
    #[error("cannot start \"{name}\": {cause}")]
    CannotStart { name: String, cause: StartError },
    #[error("could not generate the key: {0}")]
    KeyGenerate(KeyError),
    #[error("could not import the key: {0}")]
    KeyImport(KeyError),
    #[error("could not export the key: {0}")]
    KeyExport(KeyError),
    #[error("could not share key \"{name}\": {cause}")]
    KeyShare { name: String, cause: ShareError },
    #[error("could not share tunnel \"{name}\": {cause}")]
    TunnelShare { name: String, cause: ShareError },
    #[error("could not open the shared bundle: {0}")]
    BundleOpen(OpenBundleError),
    #[error("could not delete key \"{name}\": {cause}")]
    KeyDelete { name: String, cause: KeyError },
    #[error("no file dialog could be shown (no desktop portal is running): type the path instead")]
    NoFileDialog,
    #[error(transparent)]
    Tray(TrayUnavailable),
    #[error(transparent)]
    Notify(NotifyFailure),
    #[error("start at login: {0}")]
    LoginStart(LoginStartError),
    #[error("could not export the tunnels: {0}")]
    TunnelExport(SaveFailure),
    #[error("could not export the connection history: {0}")]
    HistoryExport(SaveFailure),
    #[error("nothing imported: {0}")]
    TunnelImport(TunnelImportError),
}

/// Several config problems as one line.
pub fn in_one_line(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A size limit in the words the messages use: 1048576 → "1 MiB".
fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
