//! Sluice's config file: the list of tunnels (serde + RON), shared by the desktop app and
//! `sluiced --config FILE`. Parsing reports every problem at once, naming tunnel and
//! field; saving is atomic so a crash never leaves a half-written file. Example:
//!
//! ```ron
//! (
//!     version: 1,
//!     tunnels: [
//!         (
//!             name: "redis",
//!             mode: Encrypt,                  // spiped -e: plaintext in, encrypted out
//!             listen: "[127.0.0.1]:6379",
//!             target: "db.example.org:8025",
//!             key: Keychain("redis"),         // or File("/etc/sluice/redis.key")
//!             previous_key: None,             // Decrypt: a key being replaced, still let in
//!             // Everything below is optional; these are the defaults (spiped's).
//!             fingerprint: None,
//!             forward_secrecy: Enabled,       // Disabled = spiped -f, Required = -g
//!             key_agreement: Classic,         // X25519 = Sluice's fast handshake (both ends)
//!             max_connections: 100,           // 0 = unlimited (-n)
//!             timeout_secs: 5.0,              // connect + handshake timeout (-o)
//!             keepalive: true,                // false = spiped -j
//!             reresolve_secs: Some(60),       // None = resolve once (-R); 60 also works
//!             health_check_secs: Some(60),    // Encrypt: check the far end; None = never
//!             proxy_protocol: None,           // Some(V1) or Some(V2): the client's address
//!             accept_proxy_protocol: false,   // Encrypt: read a header from a load balancer
//!             bind: None,                     // outgoing address (-b), e.g. Some("[10.0.0.2]")
//!             autostart: false,
//!         ),
//!     ],
//! )
//! ```

use crate::address::{self, Address, AddressError};
use crate::atomic_file;
use crate::control_char::ControlChar;
pub use crate::definition::Mode;
use crate::definition::{self, DefinitionProblem, Part, TunnelDefinition, same_endpoint};
pub use crate::keystore::KeyRef;
use crate::protocol::{ForwardSecrecy, KeyAgreement};
use crate::proxy_header::ProxyVersion;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The config format this Sluice reads and writes. Bump it only for changes an older
/// Sluice would misread; new optional fields with defaults do not need a bump.
pub const CONFIG_VERSION: u32 = 1;

/// The most a config file may hold: 4 MiB. A tunnel takes a few hundred bytes, so this is
/// thousands of tunnels; the bound keeps `--check-config /dev/zero` (or a log file given by
/// mistake) from filling memory.
pub const MAX_CONFIG_LEN: u64 = 4 << 20;

/// Longest tunnel name: names show in lists, logs and keychain entries.
const MAX_NAME_CHARS: usize = 64;

/// One tunnel as the user wrote it. Addresses stay strings, exactly as typed, so a file
/// with one mistake still loads into the editor's view of it and round-trips unchanged;
/// [`TunnelSpec::validate`] gives the checked [`TunnelDefinition`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSpec {
    pub name: String,
    pub mode: Mode,
    /// spiped address syntax (`-s`).
    pub listen: String,
    /// spiped address syntax (`-t`).
    pub target: String,
    pub key: KeyRef,
    /// The key being replaced, still accepted beside `key` while a rotation lets old
    /// clients in (Decrypt and ReverseIn only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<KeyRef>,
    /// The key's fingerprint when it was configured, for display and comparison only.
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub forward_secrecy: ForwardSecrecy,
    /// Classic (spiped's protocol) or Sluice's X25519 variant, which both ends must use.
    #[serde(default)]
    pub key_agreement: KeyAgreement,
    /// Maximum simultaneous connections (`-n`); 0 = unlimited.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Connect timeout and, separately, handshake timeout (`-o`).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,
    /// TCP keep-alives on both sockets (`-j` turns them off).
    #[serde(default = "default_true")]
    pub keepalive: bool,
    /// How often to re-resolve a target host name (`-r`); `None` = once (`-R`).
    #[serde(default = "default_reresolve_secs")]
    pub reresolve_secs: Option<u64>,
    /// How often an Encrypt tunnel checks that its far end answers while no real
    /// connection shows it; `None` = never.
    #[serde(default = "default_health_check_secs")]
    pub health_check_secs: Option<u64>,
    /// Write a PROXY protocol header (`V1` or `V2`) at the start of each connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyVersion>,
    /// Read a PROXY header from the client (a load balancer) and pass its address on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_proxy_protocol: bool,
    /// Local address for outgoing connections (`-b`); the port may be omitted.
    #[serde(default)]
    pub bind: Option<String>,
    /// Start when the app or daemon starts.
    #[serde(default)]
    pub autostart: bool,
    /// Where this tunnel's far end was set up over SSH, so Check and Remove go there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub far_end: Option<FarEndRecord>,
}

/// Where a tunnel's far end was set up: an ssh destination and the far end's address.
/// Nothing secret: the key went over ssh and is not recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FarEndRecord {
    /// What `ssh` was given (`user@host`, an alias from `~/.ssh/config`).
    pub ssh: String,
    /// The far end's service (Encrypt tunnels) or listening address (Decrypt tunnels).
    pub far_address: String,
    /// systemd holds the far end's port and starts it on the first connection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_first_connection: bool,
    /// During a rotation of a far end that accepts connections: the key being replaced,
    /// which the far end still lets in beside the tunnel's key (a reference, never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<KeyRef>,
}

/// Why a text is not an ssh destination Sluice passes to `ssh`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SshDestinationError {
    #[error(
        "{input:?}: an ssh destination cannot contain control characters (here {found}): remove it"
    )]
    ControlCharacter { input: String, found: ControlChar },
    #[error("the ssh destination is empty: write user@host or a host alias from ~/.ssh/config")]
    Empty,
    #[error(
        "{0:?} starts with '-', which ssh would read as an option: write user@host or a host alias from ~/.ssh/config"
    )]
    Option(String),
    #[error(
        "{0:?} contains a space: write user@host or a host alias from ~/.ssh/config, without spaces"
    )]
    Space(String),
}

/// Checks an ssh destination (`user@host`, an alias): the one rule for the config file,
/// `sluiced --far-end-*` and the app's far-end tab (through the far-end steps).
pub fn check_ssh_destination(text: &str) -> Result<(), SshDestinationError> {
    if let Some(found) = ControlChar::find(text) {
        return Err(SshDestinationError::ControlCharacter {
            input: text.to_owned(),
            found,
        });
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err(SshDestinationError::Empty)
    } else if trimmed.starts_with('-') {
        Err(SshDestinationError::Option(text.to_owned()))
    } else if text.chars().any(char::is_whitespace) {
        Err(SshDestinationError::Space(text.to_owned()))
    } else {
        Ok(())
    }
}

// The file's defaults are spiped's, from the one place that states them.
fn default_max_connections() -> u32 {
    definition::DEFAULT_MAX_CONNECTIONS
}

fn default_timeout_secs() -> f64 {
    definition::DEFAULT_TIMEOUT.as_secs_f64()
}

fn default_true() -> bool {
    true
}

fn default_reresolve_secs() -> Option<u64> {
    Some(definition::DEFAULT_RERESOLVE.as_secs())
}

fn default_health_check_secs() -> Option<u64> {
    Some(definition::DEFAULT_HEALTH_CHECK.as_secs())
}

/// The whole config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    #[serde(default)]
    pub tunnels: Vec<TunnelSpec>,
    /// Where `sluiced --config` serves Prometheus metrics (`host:port`, loopback advised);
    /// `None`: no metrics. The app keeps it as it found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Where `sluiced --config` appends one line per connection (docs/AUDIT.md); `None`:
    /// no audit log. The app keeps it as it found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
}

/// A field of a tunnel in the config file that a problem can be about (the editor shows
/// each problem at its field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Name,
    Listen,
    Target,
    Key,
    PreviousKey,
    ForwardSecrecy,
    TimeoutSecs,
    ReresolveSecs,
    HealthCheckSecs,
    ProxyProtocol,
    Bind,
    FarEnd,
}

impl Field {
    /// The field's name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Listen => "listen",
            Field::Target => "target",
            Field::Key => "key",
            Field::PreviousKey => "previous_key",
            Field::ForwardSecrecy => "forward_secrecy",
            Field::TimeoutSecs => "timeout_secs",
            Field::ReresolveSecs => "reresolve_secs",
            Field::HealthCheckSecs => "health_check_secs",
            Field::ProxyProtocol => "proxy_protocol",
            Field::Bind => "bind",
            Field::FarEnd => "far_end",
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Part> for Field {
    fn from(part: Part) -> Field {
        match part {
            Part::Name => Field::Name,
            Part::Target => Field::Target,
            Part::ForwardSecrecy => Field::ForwardSecrecy,
            Part::Timeout => Field::TimeoutSecs,
            Part::Reresolve => Field::ReresolveSecs,
            Part::HealthCheck => Field::HealthCheckSecs,
            Part::ProxyProtocol => Field::ProxyProtocol,
        }
    }
}

/// What is wrong with a config file or one of its tunnels. Each message names the file
/// or the tunnel and field, and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist: check the path, or save a config there first", .0.display())]
    NotFound(PathBuf),
    #[error("cannot read or write config file {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("config file {} is larger than 4 MiB, the most Sluice reads: a config holds a few hundred bytes per tunnel; check that the path names the config file (not, e.g., /dev/zero or a log file)", .0.display())]
    TooLarge(PathBuf),
    #[error("{}:{line}:{column}: {message}; fix the file at that spot", path.as_ref().map_or_else(|| "config".to_owned(), |p| p.display().to_string()))]
    Syntax {
        path: Option<PathBuf>,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{}", version_message(*.found, *.supported))]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("tunnel {tunnel:?}: {field}: {message}")]
    Invalid {
        tunnel: String,
        field: Field,
        message: String,
    },
    #[error("two tunnels are named {0:?}: names must be unique; rename one of them")]
    DuplicateName(String),
    #[error(
        "tunnels {first:?} and {second:?} both listen on {address}: only one can; change the listen address of one of them"
    )]
    DuplicateListen {
        first: String,
        second: String,
        address: String,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsAddressError),
    #[error("{}", several_message(.0))]
    Several(Vec<ConfigError>),
}

/// Why a metrics address is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsAddressError {
    #[error("{0}")]
    Syntax(#[from] AddressError),
    #[error(
        "{0} is a UNIX socket path, which Prometheus cannot scrape: give a TCP address such as 127.0.0.1:9185"
    )]
    NotTcp(String),
}

/// Parses where metrics are served: a TCP `host:port` or `[ip]:port`.
pub fn parse_metrics_address(text: &str) -> Result<Address, MetricsAddressError> {
    match text.parse::<Address>()? {
        Address::Unix(_) | Address::Systemd(_) => Err(MetricsAddressError::NotTcp(text.to_owned())),
        address => Ok(address),
    }
}

fn version_message(found: u32, supported: u32) -> String {
    if found > supported {
        format!(
            "this config file was written by a newer Sluice (version {found}); this Sluice reads version {supported}: upgrade Sluice, or use a config written by this version"
        )
    } else {
        format!(
            "config version {found} is not one Sluice ever wrote; this Sluice reads version {supported}: set `version: {supported}` if the rest of the file is in the current format"
        )
    }
}

fn several_message(errors: &[ConfigError]) -> String {
    let mut out = format!("{} problems in the config:", errors.len());
    for e in errors {
        out.push_str("\n  - ");
        out.push_str(&e.to_string());
    }
    out
}

impl ConfigError {
    /// One error as itself, several as [`ConfigError::Several`].
    fn from_many(mut errors: Vec<ConfigError>) -> ConfigError {
        if errors.len() == 1
            && let Some(only) = errors.pop()
        {
            return only;
        }
        ConfigError::Several(errors)
    }

    fn io(path: &Path, source: io::Error) -> ConfigError {
        ConfigError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl TunnelSpec {
    /// A tunnel with spiped's defaults for everything not given.
    pub fn new(
        name: impl Into<String>,
        mode: Mode,
        listen: impl Into<String>,
        target: impl Into<String>,
        key: KeyRef,
    ) -> TunnelSpec {
        TunnelSpec {
            name: name.into(),
            mode,
            listen: listen.into(),
            target: target.into(),
            key,
            previous_key: None,
            fingerprint: None,
            forward_secrecy: ForwardSecrecy::default(),
            key_agreement: KeyAgreement::default(),
            max_connections: default_max_connections(),
            timeout_secs: default_timeout_secs(),
            keepalive: default_true(),
            reresolve_secs: default_reresolve_secs(),
            health_check_secs: default_health_check_secs(),
            proxy_protocol: None,
            accept_proxy_protocol: false,
            bind: None,
            autostart: false,
            far_end: None,
        }
    }

    /// Checks every field and returns the tunnel it describes, or every problem found
    /// (not just the first), each naming this tunnel and the field.
    pub fn validate(&self) -> Result<TunnelDefinition, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut invalid = |field: Field, message: String| {
            errors.push(ConfigError::Invalid {
                tunnel: self.name.clone(),
                field,
                message,
            });
        };

        let name_chars = self.name.chars().count();
        if self.name.trim().is_empty() {
            invalid(
                Field::Name,
                "the name is empty: give the tunnel a name, e.g. redis".into(),
            );
        } else if name_chars > MAX_NAME_CHARS {
            invalid(
                Field::Name,
                format!("the name is {name_chars} characters long: use at most {MAX_NAME_CHARS}"),
            );
        }
        if let Err(problem) = definition::check_name(&self.name) {
            invalid(problem.part().into(), problem.to_string());
        }

        let address = |text: &str| text.parse::<Address>().map_err(|e| e.to_string());
        let listen = address(&self.listen)
            .map_err(|m| invalid(Field::Listen, m))
            .ok();
        let target = address(&self.target)
            .map_err(|m| invalid(Field::Target, m))
            .ok();
        let bind = match &self.bind {
            None => Ok(None),
            Some(text) => address::parse_bind(text)
                .map(Some)
                .map_err(|e: AddressError| invalid(Field::Bind, e.to_string())),
        };

        if let Some(message) = key_ref_problem(&self.key) {
            invalid(Field::Key, message);
        }
        if let Some(previous) = &self.previous_key {
            if let Some(message) = key_ref_problem(previous) {
                invalid(Field::PreviousKey, message);
            } else if previous == &self.key {
                invalid(
                    Field::PreviousKey,
                    "the previous key is the current key: give the key that is being replaced, or None".into(),
                );
            } else if !matches!(self.mode, Mode::Decrypt | Mode::ReverseIn) {
                invalid(
                    Field::PreviousKey,
                    "only the end that accepts connections (Decrypt, ReverseIn) can accept a previous key; the dialling end uses its one key: rotate it there by switching to the new key".into(),
                );
            }
        }

        if let Some(record) = &self.far_end
            && let Err(e) = check_ssh_destination(&record.ssh)
        {
            invalid(Field::FarEnd, e.to_string());
        }

        // Only what a number in a file can get wrong before it is a duration; the rules
        // on the duration itself are the definition's.
        let t = self.timeout_secs;
        let timeout = if !t.is_finite() {
            invalid(
                Field::TimeoutSecs,
                format!("{t} is not a number of seconds: write e.g. 5.0 (spiped's default)"),
            );
            None
        } else if t < 0.0 {
            invalid(
                Field::TimeoutSecs,
                format!("{t} is negative: the timeout must be more than 0 seconds, e.g. 5.0"),
            );
            None
        } else {
            Some(Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX))
        };

        let reresolve = self.reresolve_secs.map(Duration::from_secs);
        let health_check = self.health_check_secs.map(Duration::from_secs);
        let mut rule = |checked: Result<(), DefinitionProblem>| {
            if let Err(problem) = checked {
                invalid(problem.part().into(), problem.to_string());
            }
        };
        if let (Some(listen), Some(target)) = (&listen, &target) {
            rule(definition::check_endpoints(listen, target));
            rule(definition::check_dialled(self.mode, listen, target));
        }
        rule(definition::check_handshake(
            self.forward_secrecy,
            self.key_agreement,
        ));
        if let Some(timeout) = timeout {
            rule(definition::check_timeout(timeout));
        }
        rule(definition::check_reresolve(reresolve));
        rule(definition::check_health_check(health_check));
        rule(definition::check_proxy_protocol(
            self.mode,
            self.proxy_protocol,
            self.accept_proxy_protocol,
        ));

        match (listen, target, bind, timeout) {
            (Some(listen), Some(target), Ok(bind), Some(timeout)) if errors.is_empty() => {
                Ok(TunnelDefinition {
                    name: self.name.clone(),
                    mode: self.mode,
                    listen,
                    target,
                    bind,
                    forward_secrecy: self.forward_secrecy,
                    key_agreement: self.key_agreement,
                    max_connections: self.max_connections,
                    timeout,
                    keepalive: self.keepalive,
                    reresolve,
                    health_check,
                    proxy_protocol: self.proxy_protocol,
                    accept_proxy_protocol: self.accept_proxy_protocol,
                })
            }
            _ => Err(errors),
        }
    }
}

/// What is wrong with a key reference in a config file, if anything.
fn key_ref_problem(key: &KeyRef) -> Option<String> {
    Some(match key {
        KeyRef::Keychain(entry) if entry.trim().is_empty() => {
            "the keychain entry name is empty: choose the key in the editor or write Keychain(\"name\")".into()
        }
        KeyRef::Keychain(entry) => format!(
            "the keychain entry name {entry:?} cannot contain control characters (here {}): remove it",
            ControlChar::find(entry)?
        ),
        KeyRef::File(path) if path.as_os_str().is_empty() => {
            "the key file path is empty: write File(\"/path/to/key\"), or generate a key with sluiced --generate-key".into()
        }
        // spiped's `-k -`: read once, so a reload, or a second tunnel, would get nothing.
        KeyRef::File(path) if path.as_os_str() == "-" => {
            "File(\"-\") (standard input) cannot be used in a config file: standard input is read only once, so a reload or another tunnel would get no key; write the key to a file (mode 0600) and give its path".into()
        }
        // The config is text; a path that is not UTF-8 could not be saved back.
        KeyRef::File(path) if path.to_str().is_none() => format!(
            "the key file path {} is not valid UTF-8: rename the file or move it to a UTF-8 path",
            path.display()
        ),
        KeyRef::File(_) => return None,
    })
}

/// Whether two listeners would fight over the same socket. Beyond equal addresses, a
/// wildcard IP (0.0.0.0 or ::) takes its port on every address of its family. Anything
/// that needs DNS to tell is left to the bind at start, which reports it then.
fn listeners_overlap(a: &Address, b: &Address) -> bool {
    if same_endpoint(a, b) {
        return true;
    }
    match (a, b) {
        (Address::Ip(x), Address::Ip(y)) => {
            x.port() == y.port()
                && x.is_ipv4() == y.is_ipv4()
                && (x.ip().is_unspecified() || y.ip().is_unspecified())
        }
        _ => false,
    }
}

/// RON as users may write it: `Some(60)` or just `60` for optional fields.
/// Reads a config file of at most [`MAX_CONFIG_LEN`] bytes; devices and pipes are cut off
/// at the bound rather than read to their end.
fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let file = fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ConfigError::NotFound(path.to_owned()),
        _ => ConfigError::io(path, e),
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError::io(path, e))?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(ConfigError::TooLarge(path.to_owned()));
    }
    String::from_utf8(bytes).map_err(|e| {
        ConfigError::io(
            path,
            io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 text ({e})")),
        )
    })
}

fn ron_options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
}

/// Only the version, read leniently, so a newer file is reported as newer rather than
/// as full of unknown fields.
#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            tunnels: Vec::new(),
            metrics: None,
            audit_log: None,
        }
    }
}

impl Config {
    /// Parses and checks a config: RON syntax (errors give line:column), then the
    /// version, then every tunnel. Several problems come back as
    /// [`ConfigError::Several`].
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            // An emptied file (truncated by hand or by a tool): say so plainly.
            return Err(ConfigError::Syntax {
                path: None,
                message: "the file is empty: a config holds at least `(version: 1)`".into(),
                line: 1,
                column: 1,
            });
        }
        let config: Config = match ron_options().from_str(text) {
            Ok(config) => config,
            Err(err) => {
                if let Ok(probe) = ron_options().from_str::<VersionProbe>(text)
                    && probe.version != CONFIG_VERSION
                {
                    return Err(ConfigError::UnsupportedVersion {
                        found: probe.version,
                        supported: CONFIG_VERSION,
                    });
                }
                return Err(ConfigError::Syntax {
                    path: None,
                    message: err.code.to_string(),
                    line: err.span.start.line,
                    column: err.span.start.col,
                });
            }
        };
        if config.version != CONFIG_VERSION {
            return Err(ConfigError::UnsupportedVersion {
                found: config.version,
                supported: CONFIG_VERSION,
            });
        }
        config.validate().map_err(ConfigError::from_many)?;
        Ok(config)
    }

    /// Checks every tunnel, that names are unique, and that no two tunnels listen on
    /// the same address. Returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut listens: Vec<(usize, Address)> = Vec::new();
        for (i, tunnel) in self.tunnels.iter().enumerate() {
            match tunnel.validate() {
                Ok(valid) => listens.extend(valid.listens().into_iter().map(|a| (i, a.clone()))),
                Err(mut problems) => errors.append(&mut problems),
            }
        }

        // Report each repeated name once, at its second occurrence.
        for (i, tunnel) in self.tunnels.iter().enumerate() {
            let earlier = self.tunnels[..i]
                .iter()
                .filter(|t| t.name == tunnel.name)
                .count();
            if earlier == 1 {
                errors.push(ConfigError::DuplicateName(tunnel.name.clone()));
            }
        }

        // One report per later tunnel, naming the first one it collides with.
        for (j, (tj, addr_j)) in listens.iter().enumerate() {
            if let Some((ti, addr_i)) = listens[..j]
                .iter()
                .find(|(_, addr_i)| listeners_overlap(addr_i, addr_j))
            {
                errors.push(ConfigError::DuplicateListen {
                    first: self.tunnels[*ti].name.clone(),
                    second: self.tunnels[*tj].name.clone(),
                    address: if addr_i == addr_j {
                        addr_i.to_string()
                    } else {
                        format!("{addr_i} and {addr_j}")
                    },
                });
            }
        }

        if let Some(metrics) = &self.metrics
            && let Err(e) = parse_metrics_address(metrics)
        {
            errors.push(e.into());
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Where metrics are served, if the config asks for them (checked by
    /// [`Config::validate`]).
    pub fn metrics_address(&self) -> Option<Result<Address, MetricsAddressError>> {
        self.metrics.as_deref().map(parse_metrics_address)
    }

    /// Reads and parses a config file. A missing file is [`ConfigError::NotFound`]
    /// (the app reads it as "no tunnels yet"), distinct from a file that is unreadable
    /// or malformed.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_bounded(path)?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Syntax {
                message,
                line,
                column,
                ..
            } => ConfigError::Syntax {
                path: Some(path.to_owned()),
                message,
                line,
                column,
            },
            other => other,
        })
    }

    /// Pretty RON in declaration order, which [`Config::parse`] reads back to the same
    /// config.
    pub fn to_ron(&self) -> String {
        // Cannot fail for a config whose key paths are UTF-8 (validate checks that); if it
        // ever does, the output is a comment that will not parse, never a silently
        // incomplete config.
        self.render()
            .unwrap_or_else(|e| format!("// Sluice could not write this config: {e}\n"))
    }

    fn render(&self) -> Result<String, ron::Error> {
        let mut text = ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::new())?;
        text.push('\n');
        Ok(text)
    }

    /// Validates, then writes the config so that `path` always holds either the old file
    /// or the complete new one: write a temporary file (mode 0600) in the same directory,
    /// flush it to disk, rename it over `path`, then flush the directory so the rename
    /// itself survives a crash. Creates missing parent directories. An invalid config is
    /// refused, because a file that `load` rejects would lose every tunnel at next start.
    pub fn save_atomic(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate().map_err(ConfigError::from_many)?;
        let text = self.render().map_err(|e| {
            ConfigError::io(
                path,
                io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;

        atomic_file::write_atomic(path, text.as_bytes()).map_err(|e| ConfigError::io(path, e))
    }

    /// The tunnel with this exact name.
    pub fn tunnel(&self, name: &str) -> Option<&TunnelSpec> {
        self.tunnels.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    fn spec(name: &str, listen: &str, target: &str) -> TunnelSpec {
        TunnelSpec::new(
            name,
            Mode::Encrypt,
            listen,
            target,
            KeyRef::Keychain("sluice-test".to_owned()),
        )
    }

    fn config(tunnels: Vec<TunnelSpec>) -> Config {
        Config {
            tunnels,
            ..Config::default()
        }
    }

    /// The single problem in `t`, as (field, message).
    fn only_problem(t: &TunnelSpec) -> (&'static str, String) {
        let errors = t.validate().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        match &errors[0] {
            ConfigError::Invalid { tunnel, field, .. } => {
                assert_eq!(tunnel, &t.name);
                (field.as_str(), errors[0].to_string())
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// A UNIX socket address where the system has them; elsewhere (Windows) a TCP one,
    /// so the tests about something else run there too.
    fn local_socket(path: &str, port: u16) -> String {
        if crate::platform::UNIX_SOCKETS {
            path.to_owned()
        } else {
            format!("[127.0.0.1]:{port}")
        }
    }

    fn full_example() -> Config {
        let mut a = spec("redis", "[127.0.0.1]:6379", "db.example.org:8025");
        a.fingerprint = Some("0123:4567:89ab:cdef:0123:4567:89ab:cdef".into());
        a.forward_secrecy = ForwardSecrecy::Required;
        a.max_connections = 0;
        a.timeout_secs = 2.5;
        a.keepalive = false;
        a.reresolve_secs = None;
        a.bind = Some("[10.0.0.2]".into());
        a.autostart = true;
        let mut b = TunnelSpec::new(
            "metrics \"sink\" ✔",
            Mode::Decrypt,
            "[::]:8025",
            local_socket("/run/metrics.sock", 9100),
            KeyRef::File("/etc/sluice/metrics.key".into()),
        );
        b.forward_secrecy = ForwardSecrecy::Disabled;
        config(vec![a, b])
    }

    #[test]
    fn round_trips_through_ron() {
        let cfg = full_example();
        let text = cfg.to_ron();
        assert_eq!(Config::parse(&text).unwrap(), cfg);
        // Stable: rendering the parsed config gives the same text.
        assert_eq!(Config::parse(&text).unwrap().to_ron(), text);
        assert_eq!(
            Config::parse(&Config::default().to_ron()).unwrap(),
            Config::default()
        );
        // Declaration order, so diffs of saved files stay readable.
        let name = text.find("name:").unwrap();
        let autostart = text.find("autostart:").unwrap();
        assert!(text.find("version:").unwrap() < name && name < autostart);
    }

    #[test]
    fn a_far_end_record_round_trips_and_a_bad_destination_is_named() {
        let mut cfg = full_example();
        cfg.tunnels[0].far_end = Some(FarEndRecord {
            ssh: "me@db.example.org".into(),
            far_address: "[127.0.0.1]:6379".into(),
            on_first_connection: false,
            previous_key: None,
        });
        let text = cfg.to_ron();
        assert_eq!(Config::parse(&text).unwrap(), cfg);
        assert_eq!(text.matches("far_end:").count(), 1, "only where set");
        assert!(!text.contains("on_first_connection"), "only when chosen");
        if let Some(record) = &mut cfg.tunnels[0].far_end {
            record.on_first_connection = true;
        }
        let text = cfg.to_ron();
        assert!(text.contains("on_first_connection: true"), "{text}");
        assert_eq!(Config::parse(&text).unwrap(), cfg);
        for bad in [
            "",
            "-oProxyCommand=x",
            "two words",
            "db\n",
            "db\u{1b}",
            "me@\0db",
        ] {
            cfg.tunnels[0].far_end = Some(FarEndRecord {
                ssh: bad.into(),
                far_address: "x".into(),
                on_first_connection: false,
                previous_key: None,
            });
            assert_eq!(only_problem(&cfg.tunnels[0]).0, "far_end", "{bad:?}");
        }
        assert_eq!(
            check_ssh_destination("me@db\nProxyCommand x")
                .unwrap_err()
                .to_string(),
            r#""me@db\nProxyCommand x": an ssh destination cannot contain control characters (here a line feed at position 6): remove it"#
        );
        assert_eq!(check_ssh_destination(" "), Err(SshDestinationError::Empty));
        assert!(check_ssh_destination("me@db.example.org").is_ok());
        assert!(check_ssh_destination("ssh://me@[::1]:2222").is_ok());
    }

    #[test]
    fn metrics_address_is_optional_checked_and_kept() {
        let mut cfg = full_example();
        assert!(!cfg.to_ron().contains("metrics:"), "absent unless set");
        cfg.metrics = Some("127.0.0.1:9185".into());
        let text = cfg.to_ron();
        assert_eq!(Config::parse(&text).unwrap(), cfg);
        assert_eq!(
            cfg.metrics_address(),
            Some(Ok(Address::Ip("127.0.0.1:9185".parse().unwrap())))
        );
        let unix_words = if crate::platform::UNIX_SOCKETS {
            "Prometheus cannot scrape"
        } else {
            "no UNIX-domain sockets"
        };
        for (bad, words) in [
            ("/run/sluiced/metrics.sock", unix_words),
            ("localhost", "port"),
            ("[::1]:0", "port"),
        ] {
            cfg.metrics = Some(bad.into());
            let errors = cfg.validate().unwrap_err();
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            let message = errors[0].to_string();
            assert!(
                message.starts_with("metrics: ") && message.contains(words),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn module_doc_example_parses() {
        let source = include_str!("config.rs");
        let doc: String = source
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let start = doc.find("```ron").unwrap() + "```ron".len();
        let end = start + doc[start..].find("```").unwrap();
        let cfg = Config::parse(&doc[start..end]).unwrap();
        let mut defaults = spec("redis", "[127.0.0.1]:6379", "db.example.org:8025");
        defaults.key = KeyRef::Keychain("redis".into());
        assert_eq!(cfg, config(vec![defaults]));
    }

    #[test]
    fn minimal_file_gets_spiped_defaults() {
        let text = r#"(
            version: 1,
            tunnels: [(
                name: "api",
                mode: Decrypt,
                listen: "[0.0.0.0]:8443",
                target: "127.0.0.1:8080",
                key: File("/k"),
            )],
        )"#;
        let cfg = Config::parse(text).unwrap();
        let t = cfg.tunnel("api").unwrap();
        assert_eq!(
            *t,
            TunnelSpec::new(
                "api",
                Mode::Decrypt,
                "[0.0.0.0]:8443",
                "127.0.0.1:8080",
                KeyRef::File("/k".into())
            )
        );
        assert_eq!(t.max_connections, 100);
        assert_eq!(t.timeout_secs, 5.0);
        assert!(t.keepalive);
        assert_eq!(t.reresolve_secs, Some(60));
        assert_eq!(t.forward_secrecy, ForwardSecrecy::Enabled);
        assert_eq!(t.fingerprint, None);
        assert_eq!(t.bind, None);
        assert!(!t.autostart);
        assert!(cfg.tunnel("nope").is_none());

        assert_eq!(Config::parse("(version: 1)").unwrap(), Config::default());
    }

    #[test]
    fn optional_fields_may_omit_some() {
        let text = r#"(version: 1, tunnels: [(name: "a", mode: Encrypt, listen: "[::1]:1",
            target: "h:2", key: Keychain("a"), reresolve_secs: 30, bind: "[::1]")])"#;
        let cfg = Config::parse(text).unwrap();
        assert_eq!(cfg.tunnels[0].reresolve_secs, Some(30));
        assert_eq!(cfg.tunnels[0].bind.as_deref(), Some("[::1]"));
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let text = "(version: 1, tunnels: [(name: \"a\", mode: Encrypt, listen: \"[::1]:1\",\n target: \"h:2\", key: Keychain(\"a\"), colour: \"red\")])";
        match Config::parse(text) {
            Err(ConfigError::Syntax {
                message,
                line,
                path,
                ..
            }) => {
                assert!(message.contains("colour"), "{message}");
                assert_eq!(line, 2);
                assert_eq!(path, None);
            }
            other => panic!("expected Syntax, got {other:?}"),
        }
        let top = Config::parse("(version: 1, tunnles: [])")
            .unwrap_err()
            .to_string();
        assert!(top.contains("tunnles"), "{top}");
    }

    #[test]
    fn newer_and_bogus_versions_are_refused() {
        match Config::parse("(version: 2, tunnels: [])") {
            Err(ConfigError::UnsupportedVersion {
                found: 2,
                supported: 1,
            }) => {}
            other => panic!("{other:?}"),
        }
        // A newer file with fields this version does not know is still "newer".
        let err = Config::parse("(version: 7, tunnels: [], groups: [])").unwrap_err();
        assert!(matches!(
            err,
            ConfigError::UnsupportedVersion { found: 7, .. }
        ));
        assert!(
            err.to_string()
                .starts_with("this config file was written by a newer Sluice (version 7)"),
            "{err}"
        );
        let zero = Config::parse("(version: 0)").unwrap_err();
        assert!(matches!(
            zero,
            ConfigError::UnsupportedVersion { found: 0, .. }
        ));
        assert!(zero.to_string().contains("version: 1"), "{zero}");
    }

    #[test]
    fn truncated_file_is_a_syntax_error_with_position() {
        let text = full_example().to_ron();
        let cut = &text[..text.len() / 2];
        match Config::parse(cut) {
            Err(ConfigError::Syntax { line, column, .. }) => {
                assert!(line > 1 && column >= 1, "{line}:{column}");
            }
            other => panic!("expected Syntax, got {other:?}"),
        }
        assert!(matches!(Config::parse(""), Err(ConfigError::Syntax { .. })));
        let empty = Config::parse(" \n").unwrap_err().to_string();
        assert!(
            empty.starts_with("config:1:1: the file is empty"),
            "{empty}"
        );
        let msg = Config::parse("(version: 1,\n tunnels: [(name: 5)])")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("config:2:"), "{msg}");
    }

    #[test]
    fn duplicate_names_are_reported_once() {
        let cfg = config(vec![
            spec("a", "[127.0.0.1]:1", "h:1"),
            spec("a", "[127.0.0.1]:2", "h:1"),
            spec("a", "[127.0.0.1]:3", "h:1"),
            spec("b", "[127.0.0.1]:4", "h:1"),
        ]);
        let errors = cfg.validate().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(matches!(&errors[0], ConfigError::DuplicateName(n) if n == "a"));
        assert!(errors[0].to_string().contains("rename one"));
    }

    #[test]
    fn duplicate_listen_addresses_are_reported() {
        let cfg = config(vec![
            spec("a", "[127.0.0.1]:7000", "h:1"),
            spec("b", "127.0.0.1:7000", "h:2"),
            spec("c", "Example.org:9", "h:3"),
            spec("d", "example.org:9", "h:4"),
            spec("e", &local_socket("/run/x.sock", 7002), "h:5"),
            spec("f", &local_socket("/run/x.sock", 7002), "h:6"),
            // Different port or family: fine.
            spec("g", "[127.0.0.1]:7001", "h:7"),
            spec("h", "[::1]:7000", "h:8"),
        ]);
        let errors = cfg.validate().unwrap_err();
        let pairs: Vec<(String, String, String)> = errors
            .iter()
            .map(|e| match e {
                ConfigError::DuplicateListen {
                    first,
                    second,
                    address,
                } => (first.clone(), second.clone(), address.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "b".into(), "[127.0.0.1]:7000".into()),
                (
                    "c".into(),
                    "d".into(),
                    "Example.org:9 and example.org:9".into()
                ),
                ("e".into(), "f".into(), local_socket("/run/x.sock", 7002)),
            ]
        );
        assert_eq!(
            errors[0].to_string(),
            "tunnels \"a\" and \"b\" both listen on [127.0.0.1]:7000: only one can; change the listen address of one of them"
        );
    }

    #[test]
    fn wildcard_listeners_overlap_their_family() {
        let cfg = config(vec![
            spec("any4", "[0.0.0.0]:80", "h:1"),
            spec("lo4", "[127.0.0.1]:80", "h:1"),
        ]);
        assert!(matches!(
            cfg.validate().unwrap_err().as_slice(),
            [ConfigError::DuplicateListen { .. }]
        ));
        let cfg = config(vec![
            spec("any6", "[::]:80", "h:1"),
            spec("lo6", "[::1]:80", "h:1"),
        ]);
        assert!(cfg.validate().is_err());
        let cfg = config(vec![
            spec("any4", "[0.0.0.0]:80", "h:1"),
            spec("lo6", "[::1]:80", "h:1"),
            spec("lo4", "[127.0.0.1]:81", "h:1"),
        ]);
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn valid_tunnel_has_parsed_forms() {
        let mut t = spec("redis", "127.0.0.1:6379", "db.example.org:8025");
        t.bind = Some("10.0.0.2".into());
        t.timeout_secs = 0.25;
        let v = t.validate().unwrap();
        assert_eq!(
            v.listen,
            Address::Ip("127.0.0.1:6379".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(
            v.target,
            Address::Host {
                name: "db.example.org".into(),
                port: 8025
            }
        );
        assert_eq!(v.bind, Some(Address::Ip("10.0.0.2:0".parse().unwrap())));
        assert_eq!(v.timeout, Duration::from_millis(250));
        assert_eq!(v.reresolve, Some(Duration::from_secs(60)));
        t.reresolve_secs = None;
        assert_eq!(t.validate().unwrap().reresolve, None);
    }

    #[test]
    fn name_rules() {
        let ok = spec(&"n".repeat(64), "[::1]:1", "h:1");
        assert!(ok.validate().is_ok());
        let ok = spec("Ünïcødé ✔", "[::1]:1", "h:1");
        assert!(ok.validate().is_ok());

        let (field, msg) = only_problem(&spec("", "[::1]:1", "h:1"));
        assert_eq!(field, "name");
        assert_eq!(
            msg,
            "tunnel \"\": name: the name is empty: give the tunnel a name, e.g. redis"
        );
        assert_eq!(only_problem(&spec("   ", "[::1]:1", "h:1")).0, "name");

        let (field, msg) = only_problem(&spec(&"n".repeat(65), "[::1]:1", "h:1"));
        assert_eq!(field, "name");
        assert!(msg.contains("65 characters long: use at most 64"), "{msg}");

        let (field, msg) = only_problem(&spec("a\nb", "[::1]:1", "h:1"));
        assert_eq!(field, "name");
        assert!(
            msg.ends_with("name: a tunnel name cannot contain control characters (here a line feed at position 2): remove it"),
            "{msg}"
        );
        // Quoted with escapes, so a stray newline cannot split or forge a log line.
        assert!(msg.starts_with("tunnel \"a\\nb\": name:"), "{msg}");
        assert_eq!(only_problem(&spec("tab\there", "[::1]:1", "h:1")).0, "name");
    }

    #[test]
    fn control_characters_are_refused_in_every_address_and_name() {
        let cases = [
            (spec("redis", "/run/a\nb.sock", "h:1"), "listen"),
            (spec("redis", "[::1]:1", "/tmp/x\r"), "target"),
            (spec("redis\u{7f}", "[::1]:1", "h:1"), "name"),
        ];
        for (t, want) in cases {
            let (field, msg) = only_problem(&t);
            assert_eq!(field, want, "{msg}");
            assert!(msg.contains("cannot contain control characters"), "{msg}");
        }
        let mut t = spec("redis", "[::1]:1", "h:1");
        t.bind = Some("[::1]\n".into());
        assert_eq!(only_problem(&t).0, "bind");
        t.bind = None;
        t.key = KeyRef::Keychain("redis\tprod".into());
        let (field, msg) = only_problem(&t);
        assert_eq!(field, "key");
        assert!(msg.contains("(here a tab at position 6)"), "{msg}");
        let mut cfg = config(vec![spec("redis", "[::1]:1", "h:1")]);
        cfg.metrics = Some("127.0.0.1:9185\n".into());
        assert!(
            cfg.validate().unwrap_err()[0]
                .to_string()
                .contains("cannot contain control characters"),
        );
    }

    #[test]
    fn address_rules() {
        let (field, msg) = only_problem(&spec("redis", "[127.0.0.1]:6379", "db.example.org"));
        assert_eq!(field, "target");
        assert_eq!(
            msg,
            "tunnel \"redis\": target: \"db.example.org\" has no port: write it as host:port, e.g. db.example.org:8025"
        );
        let (field, msg) = only_problem(&spec("redis", "::1:80", "h:1"));
        assert_eq!(field, "listen");
        assert!(msg.contains("without brackets"), "{msg}");

        let (field, msg) = only_problem(&spec("loop", "[127.0.0.1]:80", "127.0.0.1:80"));
        assert_eq!(field, "target");
        assert!(msg.contains("loop back"), "{msg}");
        assert_eq!(
            only_problem(&spec("loop", "LOCALHOST:80", "localhost:80")).0,
            "target"
        );
        if crate::platform::UNIX_SOCKETS {
            assert_eq!(only_problem(&spec("loop", "/s", "/s")).0, "target");
        } else {
            let errors = spec("loop", "/s", "h:1").validate().unwrap_err();
            assert!(
                errors[0].to_string().contains("no UNIX-domain sockets"),
                "{errors:?}"
            );
        }

        let mut t = spec("b", "[::1]:1", "h:1");
        t.bind = Some("/tmp/sock".into());
        let (field, msg) = only_problem(&t);
        assert_eq!(field, "bind");
        assert!(msg.contains("UNIX socket path"), "{msg}");
        t.bind = Some("host:99999".into());
        assert_eq!(only_problem(&t).0, "bind");
    }

    #[test]
    fn key_rules() {
        let mut t = spec("k", "[::1]:1", "h:1");
        t.key = KeyRef::Keychain(" ".into());
        let (field, msg) = only_problem(&t);
        assert_eq!(field, "key");
        assert!(msg.contains("keychain entry name is empty"), "{msg}");
        t.key = KeyRef::File(PathBuf::new());
        let (field, msg) = only_problem(&t);
        assert_eq!(field, "key");
        assert!(msg.contains("key file path is empty"), "{msg}");
        t.key = KeyRef::File(PathBuf::from("-"));
        let (field, msg) = only_problem(&t);
        assert_eq!(field, "key");
        assert!(
            msg.contains("standard input") && msg.contains("is read only once"),
            "{msg}"
        );

        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            t.key = KeyRef::File(PathBuf::from(std::ffi::OsStr::from_bytes(b"/k\xff")));
            assert_eq!(only_problem(&t).0, "key");
        }
    }

    #[test]
    fn timeout_rules() {
        let mut t = spec("t", "[::1]:1", "h:1");
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 86_400.5] {
            t.timeout_secs = bad;
            assert_eq!(only_problem(&t).0, "timeout_secs", "{bad}");
        }
        t.timeout_secs = 0.0;
        assert!(only_problem(&t).1.contains("write 5.0"));
        for good in [0.001, 5.0, 86_400.0] {
            t.timeout_secs = good;
            assert!(t.validate().is_ok(), "{good}");
        }
    }

    #[test]
    fn reresolve_rules() {
        let mut t = spec("r", "[::1]:1", "h:1");
        t.reresolve_secs = Some(0);
        let (field, msg) = only_problem(&t);
        assert_eq!(field, "reresolve_secs");
        assert!(msg.contains("None to resolve only once"), "{msg}");
        t.reresolve_secs = Some(1);
        assert_eq!(
            t.validate().unwrap().reresolve,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_previous_key_is_for_the_accepting_end_and_not_the_current_one() {
        let mut t = spec("r", "[::1]:1", "h:1");
        t.mode = Mode::Decrypt;
        t.previous_key = Some(KeyRef::File("/etc/sluice/old.key".into()));
        assert!(t.validate().is_ok());
        t.previous_key = Some(t.key.clone());
        let (field, msg) = only_problem(&t);
        assert_eq!(field, "previous_key");
        assert!(msg.contains("is the current key"), "{msg}");
        t.previous_key = Some(KeyRef::File("-".into()));
        assert!(only_problem(&t).1.contains("standard input"));
        t.mode = Mode::Encrypt;
        t.previous_key = Some(KeyRef::File("/etc/sluice/old.key".into()));
        assert!(
            only_problem(&t)
                .1
                .contains("only the end that accepts connections")
        );
        let text = r#"(version: 1, tunnels: [(name: "d", mode: Decrypt, listen: "[::1]:1",
            target: "h:2", key: Keychain("new"), previous_key: Some(Keychain("old")))])"#;
        let cfg = Config::parse(text).unwrap();
        assert_eq!(
            cfg.tunnels[0].previous_key,
            Some(KeyRef::Keychain("old".into()))
        );
    }

    #[test]
    fn health_check_rules_and_default() {
        let mut t = spec("h", "[::1]:1", "h:1");
        assert_eq!(
            t.validate().unwrap().health_check,
            Some(Duration::from_secs(60))
        );
        let text = r#"(version: 1, tunnels: [(name: "h", mode: Encrypt, listen: "[::1]:1",
            target: "h:2", key: Keychain("a"), health_check_secs: None)])"#;
        let cfg = Config::parse(text).unwrap();
        assert_eq!(cfg.tunnels[0].health_check_secs, None);
        assert_eq!(cfg.tunnels[0].validate().unwrap().health_check, None);
        t.health_check_secs = Some(0);
        let (field, msg) = only_problem(&t);
        assert_eq!(field, "health_check_secs");
        assert!(msg.contains("None to not check"), "{msg}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut t = spec("", "nowhere", "::1:80");
        t.timeout_secs = 0.0;
        t.reresolve_secs = Some(0);
        t.key = KeyRef::Keychain(String::new());
        let fields: Vec<&str> = t
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| match e {
                ConfigError::Invalid { field, .. } => field.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                "name",
                "listen",
                "target",
                "key",
                "timeout_secs",
                "reresolve_secs"
            ]
        );

        let mut cfg = config(vec![t, spec("ok", "[::1]:1", "h:1")]);
        cfg.tunnels.push(spec("ok", "[::1]:2", "h:1"));
        match Config::parse(&cfg.to_ron()) {
            Err(ConfigError::Several(errors)) => {
                assert_eq!(errors.len(), 7);
                let msg = ConfigError::Several(errors).to_string();
                assert!(
                    msg.starts_with("7 problems in the config:\n  - tunnel \"\": name:"),
                    "{msg}"
                );
            }
            other => panic!("expected Several, got {other:?}"),
        }
        // A single problem comes back as itself.
        let one = config(vec![spec("x", "[::1]:1", "h")]);
        assert!(matches!(
            Config::parse(&one.to_ron()),
            Err(ConfigError::Invalid {
                field: Field::Target,
                ..
            })
        ));
    }

    #[test]
    fn load_distinguishes_missing_unreadable_and_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.ron");
        assert!(matches!(Config::load(&missing), Err(ConfigError::NotFound(p)) if p == missing));

        assert!(matches!(
            Config::load(dir.path()),
            Err(ConfigError::Io { .. })
        ));

        let bad = dir.path().join("bad.ron");
        fs::write(&bad, "(version: 1,\n tunnels: [").unwrap();
        match Config::load(&bad) {
            Err(ConfigError::Syntax { path, line, .. }) => {
                assert_eq!(path.as_deref(), Some(bad.as_path()));
                assert_eq!(line, 2);
            }
            other => panic!("{other:?}"),
        }
        let msg = Config::load(&bad).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{}:2:", bad.display())), "{msg}");
    }

    #[test]
    fn load_reads_at_most_4_mib() {
        #[cfg(unix)]
        {
            let err = Config::load(Path::new("/dev/zero")).unwrap_err();
            assert!(matches!(&err, ConfigError::TooLarge(p) if p == Path::new("/dev/zero")));
            assert!(
                err.to_string().contains("/dev/zero is larger than 4 MiB"),
                "{err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.ron");
        let mut text = "(version: 1, tunnels: [])".to_owned();
        text.push_str(&" ".repeat(MAX_CONFIG_LEN as usize - text.len()));
        fs::write(&big, &text).unwrap();
        assert!(Config::load(&big).is_ok(), "exactly 4 MiB is read");
        text.push(' ');
        fs::write(&big, &text).unwrap();
        assert!(matches!(Config::load(&big), Err(ConfigError::TooLarge(_))));
    }

    #[test]
    fn save_atomic_writes_owner_only_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dirs/config.ron");
        let first = full_example();
        first.save_atomic(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), first);
        #[cfg(unix)]
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // Replacing: a fresh file (new inode), and no temporary files left behind.
        #[cfg(unix)]
        let inode_before = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        let second = config(vec![spec("only", "[::1]:9", "h:9")]);
        second.save_atomic(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), second);
        #[cfg(unix)]
        {
            let inode_after = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
            assert_ne!(inode_before, inode_after);
        }
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.ron")]);
    }

    #[test]
    fn save_atomic_refuses_invalid_config_and_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ron");
        full_example().save_atomic(&path).unwrap();
        let before = fs::read_to_string(&path).unwrap();

        let bad = config(vec![spec("x", "[::1]:1", "nowhere")]);
        assert!(matches!(
            bad.save_atomic(&path),
            Err(ConfigError::Invalid { .. })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), before);

        // Renaming over a directory fails: the old content stays and no temp is left.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), "x").unwrap();
        assert!(matches!(
            full_example().save_atomic(&blocked),
            Err(ConfigError::Io { .. })
        ));
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["blocked", "config.ron"]);
    }

    #[test]
    fn save_atomic_needs_a_file_name() {
        let err = Config::default().save_atomic(Path::new("/")).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(err.to_string().contains("names no file"), "{err}");
    }
}
