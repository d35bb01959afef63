//! Command-line parsing for `sluiced`: spiped's flags with spiped's defaults and rules
//! (getopt-style clusters, every option at most once), plus Sluice's own long options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_engine::{
    Address, Config, ConfigError, DEFAULT_HEALTH_CHECK, DEFAULT_MAX_CONNECTIONS, DEFAULT_RERESOLVE,
    DEFAULT_TIMEOUT, ForwardSecrecy, KeyAgreement, KeyRef, KeySourceError, KeyfileWarning,
    LoadedKey, MAX_TIMEOUT, Mode, ProxyVersion, Restart, TunnelDefinition, TunnelSettings,
    check_handshake, check_timeout, load_key, parse_bind, parse_metrics_address, read_key_from,
};

pub const USAGE: &str = "\
usage: sluiced {-e | -d} -s <source socket> -t <target socket> -k <key file>
               [-b <bind address>] [-DFj] [-f | -g] [-n <max # connections>]
               [-o <connection timeout>] [-p <pidfile>] [-r <rtime> | -R]
               [--syslog] [-u <username> | <:groupname> | <username:groupname>]
               [--x25519] [--verbose] [--metrics <address>] [--health-check <seconds>]
               [--previous-key <key file>] [--proxy-protocol v1|v2] [--accept-proxy-protocol]
               [--audit-log <file>]
       sluiced --inetd {-e | -d} -t <target socket> -k <key file> [-b <bind address>]
               [-f | -g] [-j] [-o <timeout>] [--x25519] [--syslog] [--verbose] ...
       sluiced --reverse-out -t <far end> -s <service> -k <key file>
               [-f | -g] [--x25519] [-n <max # connections>] [-o <timeout>] [-DFj] ...
       sluiced --reverse-in -s <encrypted listen> -l <plaintext listen> -k <key file>
               [-f | -g] [--x25519] [-n <max # connections>] [-o <timeout>] [-DFj] ...
       sluiced --config <config file> [-DF] [-p <pidfile>] [--syslog] [-u <user>] [--verbose]
               [--metrics <address>]
       sluiced --check-config <config file>
       sluiced --reload --config <config file>      (Windows)
       sluiced --spipe -t <target socket> -k <key file> [-b <bind address>]
               [-f | -g] [-j] [-o <connection timeout>] [--x25519]
       sluiced --generate-key <new key file>
       sluiced --fingerprint <key file>
       sluiced --seal-key <key file> --out <new bundle>
       sluiced --unseal-key <bundle> --out <new key file>
       sluiced --far-end-setup <ssh destination> --config <config file> --tunnel <name>
               [--service <address on the far end>] [--on-first-connection]
       sluiced --far-end-check <ssh destination> --config <config file> --tunnel <name>
       sluiced --far-end-repair <ssh destination> --config <config file> --tunnel <name>
               [--service <address on the far end>] [--on-first-connection]
       sluiced --far-end-remove <ssh destination> --config <config file> --tunnel <name>
       sluiced -v

Addresses: [1.2.3.4]:port, [::1]:port, host.name:port, or /absolute/unix/socket.
Key file \"-\" reads the key from standard input.
--x25519 uses Sluice's fast X25519 handshake instead of spiped's; both ends must be
Sluice with --x25519 (stock spiped cannot speak it).
--metrics serves Prometheus metrics at http://<address>/metrics (e.g. 127.0.0.1:9185;
off unless given here or as `metrics: Some(\"127.0.0.1:9185\")` in the config file).
-e checks that the far end answers (a handshake, no data) every 60 s while no real
connection shows it, at once after a failed one and after a network change;
--health-check sets the period (0: no checks; config files: health_check_secs).
Stock spiped connects to its target for each check; a Sluice far end does not.
--reverse-out (on the machine with the service, which cannot accept connections) keeps
a few connections to the --reverse-in end (on the reachable machine) ready; each client
that connects to the reverse-in end's -l goes through one to the service (-s). Both
ends must be sluiced (docs/REVERSE.md).
--proxy-protocol v1|v2 puts a PROXY protocol header at the start of each connection: -e
(and --reverse-in) carries its client's address to the far end's service (stock spiped -d
passes it on); -d tells its target the -e end's address, dropping a header -e sent.
--accept-proxy-protocol (-e, --reverse-in) reads one from a load balancer and passes on
the address it names.
--audit-log appends one line per connection when it ends (time, tunnel, peer, the
client a PROXY header named, duration, bytes each way, outcome; docs/AUDIT.md) to a file
reopened on SIGHUP and SIGUSR1 (for logrotate); also `audit_log:` in a config file.
--inetd serves exactly one connection, the one on standard input (inetd, a systemd
socket with Accept=yes, tcpsvd, s6-tcpserver), and exits; logs go to standard error or
syslog, never into the connection.
--previous-key (with -d or --reverse-in) also lets in clients holding the key being
replaced, for a rotation without downtime; metrics count handshakes per key.
With --config, SIGHUP rereads the file (on Windows: sluiced --reload --config <the same
file>, as the same user or an administrator): new tunnels start, removed ones drain, changed
ones take their new settings, unchanged ones keep every connection; a file that does
not check out changes nothing. --check-config checks a file (and its keys) and exits.
On Windows sluiced stays in the foreground (-p writes a pid file unless -F), stops on
Ctrl+C, Ctrl+Break, the console closing or shutdown, and has no UNIX socket
addresses, -u or --syslog.
--seal-key seals a key for a teammate: a standard age file (age -d opens it too) with a
passphrase of 6 random words, printed once on standard output (the only output there);
send it by another channel than the bundle. --unseal-key opens such a bundle (or one made
with age -p) with the passphrase from standard input, one line (asked for without echo on
a terminal), writes the key file with mode 0600 and prints its fingerprint. Neither
overwrites an existing file, and nothing is written on any error.
--far-end-setup/-check/-repair/-remove set up, check, repair or take down the other end
of a config's tunnel over ssh (the system's OpenSSH client, BatchMode; SLUICE_SSH_COMMAND
replaces `ssh`): one line per step, exit status 0 only if every step succeeded. Repair
takes away exactly what set-up made and sets it up again (after a check found it stopped
or changed). --service defaults to the far end recorded in the config, if any.
--on-first-connection has systemd hold the far end's port (a socket unit) and start
sluiced there on the first connection; it needs sluiced and systemd on the far end.";

/// What the command line asks for.
pub enum Invocation {
    Version,
    Help,
    GenerateKey(PathBuf),
    Fingerprint(PathBuf),
    /// `--seal-key KEY --out BUNDLE` (`-` as the key: standard input).
    SealKey {
        key: PathBuf,
        out: PathBuf,
    },
    /// `--unseal-key BUNDLE --out KEY`.
    UnsealKey {
        bundle: PathBuf,
        out: PathBuf,
    },
    Spipe(SpipeOptions),
    Run(RunOptions),
    CheckConfig(PathBuf),
    /// `--reload --config FILE`: asks the sluiced running FILE to reread it (Windows).
    Reload(PathBuf),
    FarEnd(FarEndOptions),
}

/// `--far-end-setup/-check/-repair/-remove`: the far end of one config tunnel, over ssh.
pub struct FarEndOptions {
    pub action: sluice_engine::FarEndAction,
    pub destination: String,
    pub config: PathBuf,
    pub tunnel: String,
    pub service: Option<String>,
    /// Given: systemd starts the far end on its first connection. Not given: as recorded
    /// in the config for a repair, else running all the time.
    pub on_first_connection: bool,
}

/// `--spipe`: one client connection between stdin/stdout and the target.
pub struct SpipeOptions {
    pub target: Address,
    pub key: PathBuf,
    pub forward_secrecy: ForwardSecrecy,
    pub key_agreement: KeyAgreement,
    pub keepalive: bool,
    pub timeout: Duration,
    pub bind: Option<Address>,
}

/// Running tunnels as a daemon, from flags or from a config file.
#[derive(Clone)]
pub struct RunOptions {
    source: TunnelSource,
    pub foreground: bool,
    pub wait_for_dns: bool,
    pub pidfile: Option<PathBuf>,
    pub user: Option<String>,
    pub syslog: bool,
    pub verbose: bool,
    /// `--inetd`: serve the one connection on standard input and exit.
    pub inetd: bool,
    /// `--metrics`: where to serve metrics (overrides the config file's `metrics`).
    metrics: Option<Address>,
    /// `--audit-log`: where to append a line per connection (overrides the config's).
    audit_log: Option<PathBuf>,
}

#[derive(Clone)]
enum TunnelSource {
    /// spiped's flags: one tunnel, and the key file (or `-` for standard input), and the
    /// key being replaced (`--previous-key`), if any.
    Flags {
        tunnel: Box<TunnelDefinition>,
        key: PathBuf,
        previous_key: Option<PathBuf>,
    },
    Config(PathBuf),
}

/// How often a tunnel that cannot start tries again with `-D` (spiped retries failed DNS
/// every second).
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Tunnel settings ready to start, each with its key-file warnings.
pub type LoadedTunnels = Vec<(TunnelSettings, Vec<String>)>;

/// What a run starts: the tunnels, and where metrics are served (if anywhere).
pub struct Loaded {
    pub tunnels: LoadedTunnels,
    pub metrics: Option<Address>,
    /// Where one line per connection is appended, if anywhere (docs/AUDIT.md).
    pub audit_log: Option<PathBuf>,
}

impl RunOptions {
    /// Reads keys (and the config file) and builds every tunnel's settings; all problems
    /// are reported together.
    pub fn load(&self) -> Result<Loaded, Vec<String>> {
        match &self.source {
            TunnelSource::Flags {
                tunnel,
                key,
                previous_key,
            } => {
                let loaded = load_key_file(key).map_err(|e| vec![e.to_string()])?;
                let mut warnings = key_warnings(key, &loaded.warnings);
                let previous = match previous_key {
                    Some(path) => {
                        let loaded = load_key_file(path)
                            .map_err(|e| vec![format!("--previous-key: {e}")])?;
                        warnings.extend(key_warnings(path, &loaded.warnings));
                        Some(loaded.key)
                    }
                    None => None,
                };
                let settings = TunnelSettings::new(tunnel.as_ref().clone(), loaded.key)
                    .with_previous_key(previous);
                Ok(Loaded {
                    tunnels: vec![(settings, warnings)],
                    metrics: self.metrics.clone(),
                    audit_log: self.audit_log.clone(),
                })
            }
            TunnelSource::Config(path) => {
                let mut loaded = load_config(path)?;
                if self.metrics.is_some() {
                    loaded.metrics.clone_from(&self.metrics);
                }
                if self.audit_log.is_some() {
                    loaded.audit_log.clone_from(&self.audit_log);
                }
                Ok(loaded)
            }
        }
    }

    /// What a tunnel that cannot start does: spiped's -D tries again every second.
    pub fn restart(&self) -> Restart {
        if self.wait_for_dns {
            Restart::Every(RETRY_EVERY)
        } else {
            Restart::Never
        }
    }

    /// The config file a reload rereads; `None` for a tunnel given by flags.
    pub fn config_file(&self) -> Option<&Path> {
        match &self.source {
            TunnelSource::Config(path) => Some(path),
            TunnelSource::Flags { .. } => None,
        }
    }
}

/// Reads and checks a config file and every tunnel's key, as a start, a reload and
/// `--check-config` do; every problem names the file, the tunnel and the field.
pub fn load_config(path: &Path) -> Result<Loaded, Vec<String>> {
    let config = Config::load(path).map_err(|e| vec![config_error_in(path, &e)])?;
    if config.tunnels.is_empty() {
        return Err(vec![format!(
            "config file {} defines no tunnels: add one (the Sluice app writes this file), or check the path",
            path.display()
        )]);
    }
    let mut tunnels = Vec::new();
    let mut errors = Vec::new();
    for spec in &config.tunnels {
        // Checked first: a key is read only for a tunnel that can run (never standard
        // input, which a config cannot name).
        let definition = match spec.validate() {
            Ok(definition) => definition,
            Err(problems) => {
                errors.extend(problems.iter().map(|p| p.to_string()));
                continue;
            }
        };
        let warnings_of = |key: &KeyRef, loaded: &LoadedKey| match key {
            KeyRef::File(file) => key_warnings(file, &loaded.warnings),
            KeyRef::Keychain(_) => Vec::new(),
        };
        let previous = match spec
            .previous_key
            .as_ref()
            .map(|key| (key, load_key(key, None)))
        {
            None => Ok(None),
            Some((key, Ok(loaded))) => Ok(Some((warnings_of(key, &loaded), loaded.key))),
            Some((_, Err(e))) => Err(format!("tunnel {:?}: previous_key: {e}", spec.name)),
        };
        match (load_key(&spec.key, None), previous) {
            (Ok(loaded), Ok(previous)) => {
                let mut warnings = warnings_of(&spec.key, &loaded);
                let previous = previous.map(|(more, key)| {
                    warnings.extend(more);
                    key
                });
                let settings =
                    TunnelSettings::new(definition, loaded.key).with_previous_key(previous);
                tunnels.push((settings, warnings));
            }
            (Err(e), _) => errors.push(format!("tunnel {:?}: key: {e}", spec.name)),
            (_, Err(e)) => errors.push(e),
        }
    }
    let metrics = match config.metrics_address().transpose() {
        Ok(metrics) => metrics,
        Err(e) => {
            errors.push(config_error_in(path, &ConfigError::from(e)));
            None
        }
    };
    if errors.is_empty() {
        Ok(Loaded {
            tunnels,
            metrics,
            audit_log: config.audit_log.clone(),
        })
    } else {
        Err(errors)
    }
}

/// A config error that names the file: syntax, missing-file and I/O errors already do;
/// the rest (version, tunnel fields, duplicates) get the path in front.
fn config_error_in(path: &Path, error: &ConfigError) -> String {
    match error {
        ConfigError::Syntax { .. }
        | ConfigError::NotFound(_)
        | ConfigError::Io { .. }
        | ConfigError::TooLarge(_) => error.to_string(),
        other => format!("config file {}: {other}", path.display()),
    }
}

/// The key's warnings, each naming where the key came from.
pub fn key_warnings(path: &Path, warnings: &[KeyfileWarning]) -> Vec<String> {
    let source = if path == Path::new("-") {
        "the key from standard input".to_owned()
    } else {
        format!("key file {}", path.display())
    };
    warnings.iter().map(|w| format!("{source}: {w}")).collect()
}

/// Reads a key file through the engine's one key loader; `-` means standard input, as
/// in spiped.
pub fn load_key_file(path: &Path) -> Result<LoadedKey, KeySourceError> {
    if path == Path::new("-") {
        Ok(read_key_from(std::io::stdin().lock())?)
    } else {
        load_key(&KeyRef::File(path.to_owned()), None)
    }
}

/// Every option seen, each at most once.
#[derive(Default)]
struct Seen {
    encrypt: bool,
    decrypt: bool,
    source: Option<String>,
    target: Option<String>,
    key: Option<String>,
    bind: Option<String>,
    wait_for_dns: bool,
    foreground: bool,
    no_keepalive: bool,
    no_forward_secrecy: bool,
    require_forward_secrecy: bool,
    max_connections: Option<String>,
    timeout: Option<String>,
    pidfile: Option<String>,
    reresolve: Option<String>,
    no_reresolve: bool,
    syslog: bool,
    user: Option<String>,
    version: bool,
    help: bool,
    verbose: bool,
    config: Option<String>,
    spipe: bool,
    x25519: bool,
    generate_key: Option<String>,
    fingerprint: Option<String>,
    seal_key: Option<String>,
    unseal_key: Option<String>,
    out: Option<String>,
    far_end: Option<(sluice_engine::FarEndAction, String)>,
    tunnel: Option<String>,
    service: Option<String>,
    on_first_connection: bool,
    metrics: Option<String>,
    audit_log: Option<String>,
    check_config: Option<String>,
    health_check: Option<String>,
    previous_key: Option<String>,
    reverse_in: bool,
    reverse_out: bool,
    local: Option<String>,
    proxy_protocol: Option<String>,
    accept_proxy_protocol: bool,
    inetd: bool,
    reload: bool,
}

fn set_flag(flag: &mut bool, name: &str) -> Result<(), String> {
    if std::mem::replace(flag, true) {
        return Err(format!("option {name} given more than once"));
    }
    Ok(())
}

fn set_value(slot: &mut Option<String>, name: &str, value: String) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("option {name} given more than once"));
    }
    Ok(())
}

/// Parses `args` (including the program name).
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut seen = Seen::default();
    let program_is_spipe = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "spipe");
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            if let Some(extra) = rest.next() {
                return Err(format!("unexpected argument {extra:?}"));
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let mut value = |what: &str| -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| rest.next().cloned())
                    .ok_or_else(|| format!("option --{name} needs {what}"))
            };
            match name {
                "syslog" => set_flag(&mut seen.syslog, "--syslog")?,
                "verbose" => set_flag(&mut seen.verbose, "--verbose")?,
                "spipe" => set_flag(&mut seen.spipe, "--spipe")?,
                "x25519" => set_flag(&mut seen.x25519, "--x25519")?,
                "on-first-connection" => {
                    set_flag(&mut seen.on_first_connection, "--on-first-connection")?
                }
                "reverse-in" => set_flag(&mut seen.reverse_in, "--reverse-in")?,
                "inetd" => set_flag(&mut seen.inetd, "--inetd")?,
                "reverse-out" => set_flag(&mut seen.reverse_out, "--reverse-out")?,
                "help" => set_flag(&mut seen.help, "--help")?,
                "reload" => set_flag(&mut seen.reload, "--reload")?,
                "version" => set_flag(&mut seen.version, "--version")?,
                "config" => set_value(&mut seen.config, "--config", value("a config file")?)?,
                "generate-key" => set_value(
                    &mut seen.generate_key,
                    "--generate-key",
                    value("the new key file's path")?,
                )?,
                "fingerprint" => {
                    set_value(&mut seen.fingerprint, "--fingerprint", value("a key file")?)?
                }
                "seal-key" => set_value(&mut seen.seal_key, "--seal-key", value("a key file")?)?,
                "unseal-key" => {
                    set_value(&mut seen.unseal_key, "--unseal-key", value("a bundle")?)?
                }
                "out" => set_value(&mut seen.out, "--out", value("the new file's path")?)?,
                "far-end-setup" | "far-end-check" | "far-end-repair" | "far-end-remove" => {
                    use sluice_engine::FarEndAction as A;
                    let action = match name {
                        "far-end-setup" => A::Setup,
                        "far-end-check" => A::Check,
                        "far-end-repair" => A::Repair,
                        _ => A::Remove,
                    };
                    let destination = value("an ssh destination (user@host or an alias)")?;
                    if seen.far_end.replace((action, destination)).is_some() {
                        return Err(
                            "give only one --far-end-setup, --far-end-check, --far-end-repair or --far-end-remove"
                                .into(),
                        );
                    }
                }
                "tunnel" => set_value(&mut seen.tunnel, "--tunnel", value("a tunnel name")?)?,
                "metrics" => set_value(
                    &mut seen.metrics,
                    "--metrics",
                    value("an address to serve metrics on, e.g. 127.0.0.1:9185")?,
                )?,
                "audit-log" => set_value(
                    &mut seen.audit_log,
                    "--audit-log",
                    value("a file to append one line per connection to")?,
                )?,
                "check-config" => set_value(
                    &mut seen.check_config,
                    "--check-config",
                    value("a config file")?,
                )?,
                "proxy-protocol" => set_value(
                    &mut seen.proxy_protocol,
                    "--proxy-protocol",
                    value("v1 or v2")?,
                )?,
                "accept-proxy-protocol" => {
                    set_flag(&mut seen.accept_proxy_protocol, "--accept-proxy-protocol")?
                }
                "previous-key" => set_value(
                    &mut seen.previous_key,
                    "--previous-key",
                    value("the key file being replaced")?,
                )?,
                "health-check" => set_value(
                    &mut seen.health_check,
                    "--health-check",
                    value("a number of seconds (0 = no checks)")?,
                )?,
                "service" => set_value(
                    &mut seen.service,
                    "--service",
                    value("the service address on the far end")?,
                )?,
                _ => return Err(format!("unknown option --{name}")),
            }
            continue;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        for (at, c) in cluster.char_indices() {
            let takes_value = "stknopbrul".contains(c);
            if takes_value {
                let attached = &cluster[at + c.len_utf8()..];
                let value = if attached.is_empty() {
                    rest.next()
                        .cloned()
                        .ok_or_else(|| format!("option -{c} needs a value"))?
                } else {
                    attached.to_owned()
                };
                let name = format!("-{c}");
                let slot = match c {
                    's' => &mut seen.source,
                    't' => &mut seen.target,
                    'k' => &mut seen.key,
                    'n' => &mut seen.max_connections,
                    'o' => &mut seen.timeout,
                    'p' => &mut seen.pidfile,
                    'b' => &mut seen.bind,
                    'r' => &mut seen.reresolve,
                    'l' => &mut seen.local,
                    _ => &mut seen.user,
                };
                set_value(slot, &name, value)?;
                break;
            }
            let name = format!("-{c}");
            let flag = match c {
                'e' => &mut seen.encrypt,
                'd' => &mut seen.decrypt,
                'D' => &mut seen.wait_for_dns,
                'F' => &mut seen.foreground,
                'j' => &mut seen.no_keepalive,
                'f' => &mut seen.no_forward_secrecy,
                'g' => &mut seen.require_forward_secrecy,
                'R' => &mut seen.no_reresolve,
                'v' => &mut seen.version,
                'h' => &mut seen.help,
                _ => return Err(format!("unknown option -{c}")),
            };
            set_flag(flag, &name)?;
        }
    }
    build(seen, program_is_spipe)
}

fn build(mut seen: Seen, program_is_spipe: bool) -> Result<Invocation, String> {
    if seen.version {
        return Ok(Invocation::Version);
    }
    if seen.help {
        return Ok(Invocation::Help);
    }
    if let Some(sharing) = sharing(
        seen.seal_key.take(),
        seen.unseal_key.take(),
        seen.out.take(),
    ) {
        return sharing;
    }
    if let Some(path) = seen.generate_key {
        return Ok(Invocation::GenerateKey(PathBuf::from(path)));
    }
    if let Some(path) = seen.fingerprint {
        return Ok(Invocation::Fingerprint(PathBuf::from(path)));
    }
    if let Some(path) = seen.check_config {
        return Ok(Invocation::CheckConfig(PathBuf::from(path)));
    }
    if seen.reload {
        let config = seen
            .config
            .ok_or("--reload needs --config <the config file of the sluiced to reload>")?;
        return Ok(Invocation::Reload(PathBuf::from(config)));
    }
    if let Some((action, destination)) = seen.far_end {
        if seen.metrics.is_some() || seen.audit_log.is_some() {
            return Err("--metrics and --audit-log do not apply to --far-end-*".into());
        }
        return far_end_options(
            action,
            destination,
            seen.config,
            seen.tunnel,
            seen.service,
            seen.on_first_connection,
        );
    }
    let metrics = seen
        .metrics
        .as_deref()
        .map(|m| parse_metrics_address(m).map_err(|e| format!("--metrics: {e}")))
        .transpose()?;
    if seen.tunnel.is_some() || seen.service.is_some() || seen.on_first_connection {
        return Err(
            "--tunnel, --service and --on-first-connection go with --far-end-setup, --far-end-check, --far-end-repair or --far-end-remove"
                .into(),
        );
    }
    let forward_secrecy = match (seen.no_forward_secrecy, seen.require_forward_secrecy) {
        (true, true) => {
            return Err("-f (no forward secrecy) and -g (require it) contradict each other: give at most one".into());
        }
        (true, false) => ForwardSecrecy::Disabled,
        (false, true) => ForwardSecrecy::Required,
        (false, false) => ForwardSecrecy::Enabled,
    };
    let key_agreement = if seen.x25519 {
        KeyAgreement::X25519
    } else {
        KeyAgreement::Classic
    };
    check_handshake(forward_secrecy, key_agreement)
        .map_err(|problem| format!("{}: {problem}", problem.part().flag()))?;
    let timeout = parse_timeout(seen.timeout.as_deref())?;
    let bind = seen
        .bind
        .as_deref()
        .map(|b| parse_bind(b).map_err(|e| format!("-b: {e}")))
        .transpose()?;

    if seen.spipe || program_is_spipe {
        for (given, name) in [
            (seen.encrypt || seen.decrypt, "-e/-d"),
            (seen.source.is_some(), "-s"),
            (seen.max_connections.is_some(), "-n"),
            (seen.foreground || seen.wait_for_dns, "-F/-D"),
            (seen.pidfile.is_some(), "-p"),
            (seen.reresolve.is_some() || seen.no_reresolve, "-r/-R"),
            (seen.user.is_some() || seen.syslog, "-u/--syslog"),
            (seen.config.is_some(), "--config"),
            (metrics.is_some(), "--metrics"),
            (seen.audit_log.is_some(), "--audit-log"),
            (seen.health_check.is_some(), "--health-check"),
            (
                seen.reverse_in || seen.reverse_out || seen.local.is_some(),
                "--reverse-in/--reverse-out/-l",
            ),
            (seen.previous_key.is_some(), "--previous-key"),
            (
                seen.proxy_protocol.is_some() || seen.accept_proxy_protocol,
                "--proxy-protocol/--accept-proxy-protocol",
            ),
        ] {
            if given {
                return Err(format!("{name} does not apply to --spipe"));
            }
        }
        return Ok(Invocation::Spipe(SpipeOptions {
            target: parse_address(seen.target.as_deref(), "-t", "target")?,
            key: PathBuf::from(seen.key.ok_or("-k <key file> is required")?),
            forward_secrecy,
            key_agreement,
            keepalive: !seen.no_keepalive,
            timeout,
            bind,
        }));
    }

    // Refused here, before any key is read: this system cannot honour them.
    crate::platform::refuse_unsupported(seen.user.is_some(), seen.syslog)?;
    let pidfile_for = |default: Option<String>| seen.pidfile.clone().or(default).map(PathBuf::from);
    if let Some(config) = seen.config {
        for (given, name) in [
            (seen.encrypt || seen.decrypt, "-e/-d"),
            (seen.source.is_some() || seen.target.is_some(), "-s/-t"),
            (seen.key.is_some(), "-k"),
            (
                seen.max_connections.is_some() || seen.timeout.is_some() || seen.bind.is_some(),
                "-n/-o/-b",
            ),
            (
                seen.reresolve.is_some() || seen.no_reresolve || seen.no_keepalive,
                "-r/-R/-j",
            ),
            (
                forward_secrecy != ForwardSecrecy::Enabled || seen.x25519,
                "-f/-g/--x25519",
            ),
            (seen.health_check.is_some(), "--health-check"),
            (
                seen.reverse_in || seen.reverse_out || seen.local.is_some(),
                "--reverse-in/--reverse-out/-l",
            ),
            (seen.previous_key.is_some(), "--previous-key"),
            (
                seen.proxy_protocol.is_some() || seen.accept_proxy_protocol,
                "--proxy-protocol/--accept-proxy-protocol",
            ),
        ] {
            if given {
                return Err(format!(
                    "{name} cannot be combined with --config: set it per tunnel in the config file"
                ));
            }
        }
        return Ok(Invocation::Run(RunOptions {
            source: TunnelSource::Config(PathBuf::from(config)),
            foreground: seen.foreground,
            wait_for_dns: seen.wait_for_dns,
            pidfile: pidfile_for(None),
            user: seen.user,
            syslog: seen.syslog,
            verbose: seen.verbose,
            inetd: false,
            metrics,
            audit_log: seen.audit_log.map(PathBuf::from),
        }));
    }

    let modes = [
        (seen.encrypt, Mode::Encrypt),
        (seen.decrypt, Mode::Decrypt),
        (seen.reverse_in, Mode::ReverseIn),
        (seen.reverse_out, Mode::ReverseOut),
    ];
    let mode = match modes.iter().filter(|(given, _)| *given).collect::<Vec<_>>()[..] {
        [(_, mode)] => *mode,
        [] => {
            return Err("say which end this is: -e (encrypt, like spiped -e) or -d (decrypt), --reverse-in or --reverse-out, or use --config".into());
        }
        _ => {
            return Err(
                "give only one of -e (encrypt), -d (decrypt), --reverse-in and --reverse-out"
                    .into(),
            );
        }
    };
    if seen.inetd {
        for (given, name) in [
            (
                !matches!(mode, Mode::Encrypt | Mode::Decrypt),
                "--reverse-in/--reverse-out",
            ),
            (seen.source.is_some(), "-s"),
            (seen.max_connections.is_some(), "-n"),
            (seen.foreground || seen.wait_for_dns, "-F/-D"),
            (seen.pidfile.is_some(), "-p"),
            (seen.user.is_some(), "-u"),
            (metrics.is_some(), "--metrics"),
            (seen.health_check.is_some(), "--health-check"),
        ] {
            if given {
                return Err(format!(
                    "{name} does not apply to --inetd: it serves the one connection on standard input (use -e or -d)"
                ));
            }
        }
    }
    // With --inetd the connection comes in on standard input: a socket passed in.
    let source = match (&seen.source, seen.inetd) {
        (_, true) => "systemd:stdin".to_owned(),
        (Some(source), false) => source.clone(),
        (None, false) => return Err("-s <source socket> is required".into()),
    };
    if seen.local.is_some() && mode != Mode::ReverseIn {
        return Err("-l (where local clients connect) goes with --reverse-in".into());
    }
    // A tunnel's listen is where its connections come from, its target where they go
    // (docs/REVERSE.md): for the reverse ends that is not what -s and -t say.
    let (listen, target) = match mode {
        Mode::Encrypt | Mode::Decrypt => (
            parse_address(Some(&source), "-s", "source")?,
            parse_address(seen.target.as_deref(), "-t", "target")?,
        ),
        Mode::ReverseIn => {
            if seen.target.is_some() {
                return Err("--reverse-in takes -s (where the reverse-out end connects) and -l (where local clients connect), not -t".into());
            }
            (
                parse_address(seen.local.as_deref(), "-l", "local client")?,
                parse_address(Some(&source), "-s", "encrypted listen")?,
            )
        }
        Mode::ReverseOut => (
            parse_address(seen.target.as_deref(), "-t", "far end")?,
            parse_address(Some(&source), "-s", "service")?,
        ),
    };
    let key = PathBuf::from(seen.key.clone().ok_or("-k <key file> is required")?);
    let max_connections = match seen.max_connections.as_deref() {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(n) => n.parse::<u32>().map_err(|_| {
            format!("-n {n:?}: the connection limit must be a whole number (0 = unlimited)")
        })?,
    };
    let reresolve = match (seen.reresolve.as_deref(), seen.no_reresolve) {
        (Some(r), true) if r != "60" => {
            return Err("-r and -R contradict each other: give at most one".into());
        }
        (_, true) => None,
        (None, false) => Some(DEFAULT_RERESOLVE),
        (Some(r), false) => match r.parse::<u64>() {
            Ok(secs) if secs > 0 => Some(Duration::from_secs(secs)),
            _ => {
                return Err(format!(
                    "-r {r:?}: the re-resolution period must be a whole number of seconds, at least 1"
                ));
            }
        },
    };
    let health_check = match seen.health_check.as_deref() {
        // One connection: nothing to check between connections.
        None if seen.inetd => None,
        None => Some(DEFAULT_HEALTH_CHECK),
        Some(_) if mode != Mode::Encrypt => {
            return Err(
                "--health-check applies to -e: an encrypting tunnel checks its far end; a decrypting one answers checks"
                    .into(),
            );
        }
        Some("0") => None,
        Some(secs) => match secs.parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => {
                return Err(format!(
                    "--health-check {secs:?}: write a whole number of seconds between checks of the far end, or 0 for none"
                ));
            }
        },
    };
    let proxy_protocol = match seen.proxy_protocol.as_deref() {
        None => None,
        Some("v1" | "1") => Some(ProxyVersion::V1),
        Some("v2" | "2") => Some(ProxyVersion::V2),
        Some(other) => {
            return Err(format!(
                "--proxy-protocol {other:?}: write v1 (text) or v2 (binary), as the service behind the tunnel expects"
            ));
        }
    };
    // A flag tunnel is named after where it listens, as spiped's log lines name it.
    let tunnel = TunnelDefinition {
        name: listen.to_string(),
        mode,
        listen,
        target,
        bind,
        forward_secrecy,
        key_agreement,
        max_connections,
        timeout,
        keepalive: !seen.no_keepalive,
        reresolve,
        health_check,
        proxy_protocol,
        accept_proxy_protocol: seen.accept_proxy_protocol,
    };
    if let Some(problem) = tunnel.problems().first() {
        return Err(format!("{}: {problem}", problem.part().flag()));
    }
    if seen.previous_key.is_some() && !matches!(mode, Mode::Decrypt | Mode::ReverseIn) {
        return Err("--previous-key goes with -d or --reverse-in: the end that accepts connections lets clients with the old key in during a rotation".into());
    }
    let previous_key = seen.previous_key.map(PathBuf::from);
    if previous_key.as_deref() == Some(Path::new("-")) {
        return Err("--previous-key cannot read standard input (-k - may): give a key file".into());
    }
    Ok(Invocation::Run(RunOptions {
        source: TunnelSource::Flags {
            tunnel: Box::new(tunnel),
            key,
            previous_key,
        },
        foreground: seen.foreground,
        wait_for_dns: seen.wait_for_dns,
        pidfile: pidfile_for(
            (!seen.inetd)
                .then(|| crate::platform::default_pid_file(&source))
                .flatten(),
        ),
        user: seen.user,
        syslog: seen.syslog,
        verbose: seen.verbose,
        inetd: seen.inetd,
        metrics,
        audit_log: seen.audit_log.map(PathBuf::from),
    }))
}

/// `--seal-key` / `--unseal-key` with their `--out`, if either is given.
fn sharing(
    seal_key: Option<String>,
    unseal_key: Option<String>,
    out: Option<String>,
) -> Option<Result<Invocation, String>> {
    let out_for = |option: &str, what: &str| match out.as_deref() {
        None => Err(format!(
            "{option} needs --out <{what}>: where to write it (an existing file is never replaced)"
        )),
        Some("-") => Err(format!(
            "--out -: give a file path for the {what}; sluiced never writes it to standard output"
        )),
        Some(path) => Ok(PathBuf::from(path)),
    };
    Some(match (seal_key, unseal_key) {
        (Some(_), Some(_)) => Err("give only one of --seal-key and --unseal-key".into()),
        (Some(key), None) => out_for("--seal-key", "new bundle").map(|out| Invocation::SealKey {
            key: PathBuf::from(key),
            out,
        }),
        (None, Some(bundle)) if bundle == "-" => Err(
            "--unseal-key -: give the bundle's path; standard input carries the passphrase".into(),
        ),
        (None, Some(bundle)) => {
            out_for("--unseal-key", "new key file").map(|out| Invocation::UnsealKey {
                bundle: PathBuf::from(bundle),
                out,
            })
        }
        (None, None) if out.is_some() => Err("--out goes with --seal-key or --unseal-key".into()),
        (None, None) => return None,
    })
}

fn far_end_options(
    action: sluice_engine::FarEndAction,
    destination: String,
    config: Option<String>,
    tunnel: Option<String>,
    service: Option<String>,
    on_first_connection: bool,
) -> Result<Invocation, String> {
    let config = config.ok_or("--far-end-* needs --config <config file> (the tunnel's config)")?;
    let tunnel = tunnel.ok_or("--far-end-* needs --tunnel <name> (a tunnel of the config)")?;
    use sluice_engine::FarEndAction as A;
    if service.is_some() && !matches!(action, A::Setup | A::Repair) {
        return Err("--service applies only to --far-end-setup and --far-end-repair".into());
    }
    if on_first_connection && !matches!(action, A::Setup | A::Repair) {
        return Err(
            "--on-first-connection applies only to --far-end-setup and --far-end-repair".into(),
        );
    }
    sluice_engine::check_ssh_destination(&destination).map_err(|e| e.to_string())?;
    if let Some(service) = &service {
        // An address on the far end, a Unix server: a socket path is fine there.
        Address::parse_remote(service).map_err(|e| format!("--service: {e}"))?;
    }
    Ok(Invocation::FarEnd(FarEndOptions {
        action,
        destination,
        config: PathBuf::from(config),
        tunnel,
        service,
        on_first_connection,
    }))
}

fn parse_address(value: Option<&str>, flag: &str, what: &str) -> Result<Address, String> {
    let value = value.ok_or_else(|| format!("{flag} <{what} socket> is required"))?;
    value.parse().map_err(|e| format!("{flag}: {e}"))
}

/// `-o`: seconds, fractions allowed; 0 means the default, as in spiped.
fn parse_timeout(value: Option<&str>) -> Result<Duration, String> {
    let Some(value) = value else {
        return Ok(DEFAULT_TIMEOUT);
    };
    let max = MAX_TIMEOUT.as_secs();
    let timeout = match value.parse::<f64>() {
        Ok(0.0) => DEFAULT_TIMEOUT,
        Ok(secs) if secs > 0.0 => Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX),
        _ => {
            return Err(format!(
                "-o {value:?}: the timeout must be a number of seconds between 0 and {max} (fractions allowed)"
            ));
        }
    };
    check_timeout(timeout).map_err(|problem| format!("-o {value:?}: {problem}"))?;
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        std::iter::once("sluiced")
            .chain(line.split_whitespace())
            .map(String::from)
            .collect()
    }

    fn run_options(line: &str) -> RunOptions {
        match parse(&args(line)) {
            Ok(Invocation::Run(options)) => options,
            Ok(_) => panic!("{line}: not a run invocation"),
            Err(e) => panic!("{line}: {e}"),
        }
    }

    fn flags(options: &RunOptions) -> &TunnelDefinition {
        match &options.source {
            TunnelSource::Flags { tunnel, .. } => tunnel,
            TunnelSource::Config(_) => panic!("not flags"),
        }
    }

    fn key_path(options: &RunOptions) -> &Path {
        match &options.source {
            TunnelSource::Flags { key, .. } => key,
            TunnelSource::Config(_) => panic!("not flags"),
        }
    }

    #[test]
    fn spiped_defaults() {
        let options = run_options("-e -s [127.0.0.1]:8025 -t example.org:8026 -k key");
        let f = flags(&options);
        assert_eq!(f.mode, Mode::Encrypt);
        assert_eq!(f.max_connections, 100);
        assert_eq!(f.timeout, Duration::from_secs(5));
        assert!(f.keepalive);
        assert_eq!(f.reresolve, Some(Duration::from_secs(60)));
        assert_eq!(f.forward_secrecy, ForwardSecrecy::Enabled);
        assert!(!options.foreground);
        // Windows: no default pid file (a colon cannot be in a file name there).
        let pidfile = cfg!(unix).then_some(Path::new("[127.0.0.1]:8025.pid"));
        assert_eq!(options.pidfile.as_deref(), pidfile);
    }

    #[test]
    fn clusters_and_attached_values() {
        let source = if cfg!(unix) {
            "/tmp/x.sock"
        } else {
            "[::1]:81"
        };
        let options = run_options(&format!(
            "-dFj -g -n0 -o 0.5 -R -s {source} -t [::1]:80 -k -"
        ));
        let f = flags(&options);
        assert_eq!(f.mode, Mode::Decrypt);
        assert!(options.foreground && !f.keepalive);
        assert_eq!(f.max_connections, 0);
        assert_eq!(f.timeout, Duration::from_millis(500));
        assert_eq!(f.reresolve, None);
        assert_eq!(f.forward_secrecy, ForwardSecrecy::Required);
        assert_eq!(key_path(&options), Path::new("-"));
    }

    /// Windows: what cannot work there is refused by name before anything starts.
    #[cfg(windows)]
    #[test]
    fn windows_refuses_unix_sockets_user_switching_and_syslog() {
        for (line, expect) in [
            (
                "-e -s /run/x.sock -t [::1]:2 -k k",
                "no UNIX-domain sockets",
            ),
            (
                "-d -s [::1]:1 -t /run/x.sock -k k",
                "no UNIX-domain sockets",
            ),
            ("-e -s [::1]:1 -t [::1]:2 -k k -u nobody", "-u"),
            ("-e -s [::1]:1 -t [::1]:2 -k k --syslog", "--syslog"),
            ("--config c.ron --syslog", "--syslog"),
            ("--reload", "--reload needs --config"),
        ] {
            match parse(&args(line)) {
                Err(e) => assert!(e.contains(expect), "{line}: {e}"),
                Ok(_) => panic!("{line}: accepted"),
            }
        }
        // -D only retries name look-ups, which Windows has too.
        assert!(run_options("-e -D -s [::1]:1 -t [::1]:2 -k k").wait_for_dns);
        assert!(matches!(
            parse(&args("--reload --config c.ron")),
            Ok(Invocation::Reload(_))
        ));
    }

    #[test]
    fn health_checks_are_on_for_encrypting_tunnels_and_can_be_set_or_turned_off() {
        let base = "-e -s [::1]:1 -t [::1]:2 -k k";
        let check = |extra: &str| flags(&run_options(&format!("{base} {extra}"))).health_check;
        assert_eq!(check(""), Some(Duration::from_secs(60)));
        assert_eq!(check("--health-check 5"), Some(Duration::from_secs(5)));
        assert_eq!(check("--health-check=0"), None);
        for (line, expect) in [
            (
                "-d -s [::1]:1 -t [::1]:2 -k k --health-check 5",
                "applies to -e",
            ),
            (
                &format!("{base} --health-check soon") as &str,
                "whole number of seconds",
            ),
            (
                "--config c --health-check 5",
                "cannot be combined with --config",
            ),
            (
                "--spipe -t [::1]:2 -k k --health-check 5",
                "does not apply to --spipe",
            ),
        ] {
            let args: Vec<String> = std::iter::once("sluiced")
                .chain(line.split_whitespace())
                .map(str::to_owned)
                .collect();
            match parse(&args) {
                Err(message) => assert!(message.contains(expect), "{line}: {message}"),
                Ok(_) => panic!("{line}: accepted"),
            }
        }
    }

    #[test]
    fn zero_timeout_means_default() {
        let options = run_options("-e -s [::1]:1 -t [::1]:2 -k k -o 0");
        assert_eq!(flags(&options).timeout, Duration::from_secs(5));
    }

    #[test]
    fn usage_errors_are_clear() {
        for (line, expect) in [
            ("-s [::1]:1 -t [::1]:2 -k k", "-e (encrypt"),
            ("-e -d -s [::1]:1 -t [::1]:2 -k k", "only one of -e"),
            ("-e -t [::1]:2 -k k", "-s <source socket> is required"),
            ("-e -s [::1]:1 -k k", "-t <target socket> is required"),
            ("-e -s [::1]:1 -t [::1]:2", "-k <key file> is required"),
            ("-e -f -g -s [::1]:1 -t [::1]:2 -k k", "contradict"),
            ("-e -e -s [::1]:1 -t [::1]:2 -k k", "more than once"),
            ("-e -s [::1]:1 -t [::1]:2 -k k -n many", "whole number"),
            ("-e -s [::1]:1 -t [::1]:2 -k k -o -1", "timeout"),
            ("-e -s [::1]:1 -t [::1]:2 -k k -r 30 -R", "contradict"),
            ("-e -s [::1]:1 -t [::1]:2 -k k extra", "unexpected argument"),
            ("-e -s nowhere -t [::1]:2 -k k", "-s:"),
            ("-e -x", "unknown option -x"),
            ("--config c.ron -e", "cannot be combined with --config"),
            ("--spipe -t [::1]:2 -k k -n 3", "does not apply to --spipe"),
            (
                "-e -s [::1]:1 -t [::1]:2 -k k -f --x25519",
                "cannot be combined with -f",
            ),
        ] {
            match parse(&args(line)) {
                Err(e) => assert!(e.contains(expect), "{line}: {e}"),
                Ok(_) => panic!("{line}: accepted"),
            }
        }
    }

    #[test]
    fn r_60_with_capital_r_is_allowed_like_spiped() {
        let options = run_options("-e -s [::1]:1 -t [::1]:2 -k k -r 60 -R");
        assert_eq!(flags(&options).reresolve, None);
    }

    #[test]
    fn spipe_mode() {
        match parse(&args("--spipe -t [127.0.0.1]:9 -k key -f -o 2")) {
            Ok(Invocation::Spipe(s)) => {
                assert_eq!(s.forward_secrecy, ForwardSecrecy::Disabled);
                assert_eq!(s.timeout, Duration::from_secs(2));
            }
            _ => panic!("not spipe"),
        }
    }

    #[test]
    fn x25519_is_opt_in() {
        let classic = run_options("-e -s [::1]:1 -t [::1]:2 -k k");
        assert_eq!(flags(&classic).key_agreement, KeyAgreement::Classic);
        let fast = run_options("-d -s [::1]:1 -t [::1]:2 -k k --x25519 -g");
        assert_eq!(flags(&fast).key_agreement, KeyAgreement::X25519);
    }

    #[test]
    fn far_end_forms() {
        use sluice_engine::FarEndAction as A;
        for (line, action) in [
            (
                "--far-end-setup me@db --config c.ron --tunnel redis --service [127.0.0.1]:6380",
                A::Setup,
            ),
            ("--far-end-check db --config c.ron --tunnel redis", A::Check),
            (
                "--far-end-repair db --config c.ron --tunnel redis --service [127.0.0.1]:6380 --on-first-connection",
                A::Repair,
            ),
            (
                "--far-end-remove db --tunnel redis --config c.ron",
                A::Remove,
            ),
        ] {
            match parse(&args(line)) {
                Ok(Invocation::FarEnd(f)) => {
                    assert_eq!(f.action, action, "{line}");
                    assert_eq!(f.config, PathBuf::from("c.ron"));
                    assert_eq!(f.tunnel, "redis");
                    assert_eq!(f.service.is_some(), matches!(action, A::Setup | A::Repair));
                    assert_eq!(f.on_first_connection, action == A::Repair);
                }
                Err(e) => panic!("{line}: {e}"),
                Ok(_) => panic!("{line}: not a far-end invocation"),
            }
        }
        for (line, expect) in [
            ("--far-end-setup db --tunnel redis", "needs --config"),
            ("--far-end-setup db --config c.ron", "needs --tunnel"),
            (
                "--far-end-check db --config c --tunnel t --service x:1",
                "only to --far-end-setup and --far-end-repair",
            ),
            (
                "--far-end-check db --far-end-remove db --config c --tunnel t",
                "only one",
            ),
            ("--tunnel t --config c", "go with --far-end"),
            (
                "--far-end-remove db --config c --tunnel t --on-first-connection",
                "--on-first-connection applies only to --far-end-setup and --far-end-repair",
            ),
            (
                "-d -s [127.0.0.1]:1 -t [127.0.0.1]:2 -k k --on-first-connection",
                "go with --far-end",
            ),
        ] {
            match parse(&args(line)) {
                Err(e) => assert!(e.contains(expect), "{line}: {e}"),
                Ok(_) => panic!("{line}: accepted"),
            }
        }
        // Words a shell would pass whole, a line feed inside.
        for (words, expect) in [
            (
                ["--far-end-setup", "db\nx", "--service", "[127.0.0.1]:1"],
                r#""db\nx": an ssh destination cannot contain control characters (here a line feed at position 3): remove it"#,
            ),
            (
                ["--far-end-setup", "db", "--service", "/run/s\nx"],
                r#"--service: "/run/s\nx": an address cannot contain control characters (here a line feed at position 7): remove it"#,
            ),
            (
                ["--far-end-check", "-oProxyCommand=x", "--tunnel", "t"],
                "which ssh would read as an option",
            ),
        ] {
            let mut line = args("--config c.ron");
            line.extend(words.map(String::from));
            if !words.contains(&"--tunnel") {
                line.extend(["--tunnel".into(), "t".into()]);
            }
            match parse(&line) {
                Err(e) => assert!(e.contains(expect), "{words:?}: {e}"),
                Ok(_) => panic!("{words:?}: accepted"),
            }
        }
    }

    #[test]
    fn sharing_forms() {
        match parse(&args("--seal-key redis.key --out redis.age")) {
            Ok(Invocation::SealKey { key, out }) => {
                assert_eq!(
                    (key.as_path(), out.as_path()),
                    (Path::new("redis.key"), Path::new("redis.age"))
                );
            }
            _ => panic!("not --seal-key"),
        }
        assert!(matches!(
            parse(&args("--out=k --unseal-key b.age")),
            Ok(Invocation::UnsealKey { bundle, out }) if bundle == Path::new("b.age") && out == Path::new("k")
        ));
        assert!(matches!(
            parse(&args("--seal-key - --out b.age")),
            Ok(Invocation::SealKey { key, .. }) if key == Path::new("-")
        ));
        for (line, expect) in [
            ("--seal-key k", "--seal-key needs --out <new bundle>"),
            ("--unseal-key b", "--unseal-key needs --out <new key file>"),
            ("--seal-key k --out -", "never writes it to standard output"),
            (
                "--unseal-key - --out k",
                "standard input carries the passphrase",
            ),
            (
                "--seal-key k --unseal-key b --out x",
                "only one of --seal-key",
            ),
            ("--out x", "--out goes with --seal-key or --unseal-key"),
            ("--generate-key k --out x", "--out goes with"),
            ("--seal-key k --seal-key j --out x", "more than once"),
            ("--seal-key", "--seal-key needs a key file"),
        ] {
            match parse(&args(line)) {
                Err(e) => assert!(e.contains(expect), "{line}: {e}"),
                Ok(_) => panic!("{line}: accepted"),
            }
        }
    }

    #[test]
    fn version_wins() {
        assert!(matches!(parse(&args("-v")), Ok(Invocation::Version)));
    }
}
