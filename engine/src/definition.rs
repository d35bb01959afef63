//! One tunnel, checked: the type that `sluiced`'s flags, the config file and the app's
//! editor all build, and that a running tunnel and "Test connection" start from. spiped's
//! defaults, and the rules that hold however a tunnel was written, are stated here once;
//! each front end only names the offending part its own way (config field, flag).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::control_char::ControlChar;
use crate::protocol::key::PresharedKey;
use crate::protocol::{ForwardSecrecy, KeyAgreement, Role};
use crate::proxy_header::ProxyVersion;

/// spiped's `-n` default: at most 100 connections at once (0 = unlimited).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 100;
/// spiped's `-o` default: 5 seconds to connect, and again to finish the handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// spiped's `-r` default: re-resolve a target host name every 60 seconds.
pub const DEFAULT_RERESOLVE: Duration = Duration::from_secs(60);
/// How often an encrypting tunnel checks its far end while nothing else shows it works.
pub const DEFAULT_HEALTH_CHECK: Duration = Duration::from_secs(60);
/// Longest connect/handshake timeout: beyond a day it is surely a typo.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Which way a tunnel encrypts, and which end dials. In every mode, `listen` is where the
/// tunnel's connections come from and `target` where they go (docs/REVERSE.md for the
/// reverse modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// `spiped -e`: plaintext comes in on `listen`, goes out encrypted to `target`.
    Encrypt,
    /// `spiped -d`: encrypted comes in on `listen`, goes out as plaintext to `target`.
    Decrypt,
    /// `sluiced --reverse-in`, on the reachable machine: plaintext clients come in on
    /// `listen` (`-l`) and go out through the connections the reverse-out end dialled in
    /// to `target` (`-s`, where this end listens for them).
    ReverseIn,
    /// `sluiced --reverse-out`, on the machine with the service that cannot accept
    /// connections: it dials `listen` (`-t`, the reverse-in end) and keeps a pool of
    /// ready connections there; each one the far end hands a client goes to `target`
    /// (`-s`, the service).
    ReverseOut,
}

impl Mode {
    /// The end of the handshake this tunnel is: the end that dials the encrypted
    /// connection is the client (Encrypt, ReverseOut), the one that accepts it the server.
    pub fn role(self) -> Role {
        match self {
            Mode::Encrypt | Mode::ReverseOut => Role::Client,
            Mode::Decrypt | Mode::ReverseIn => Role::Server,
        }
    }

    /// Whether this is one of the two ends of a reverse tunnel.
    pub fn is_reverse(self) -> bool {
        matches!(self, Mode::ReverseIn | Mode::ReverseOut)
    }
}

/// Everything about a tunnel except its key, parsed and checked by
/// [`TunnelDefinition::problems`]. Holds no secret: the key joins it only when the tunnel
/// starts (`TunnelSettings`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelDefinition {
    pub name: String,
    pub mode: Mode,
    /// Where the tunnel accepts connections (`-s`).
    pub listen: Address,
    /// Where it forwards them (`-t`).
    pub target: Address,
    /// Local address for outgoing connections to the target (`-b`).
    pub bind: Option<Address>,
    pub forward_secrecy: ForwardSecrecy,
    /// spiped's handshake, or Sluice's X25519 variant (both ends must agree).
    pub key_agreement: KeyAgreement,
    /// 0 = unlimited (`-n`).
    pub max_connections: u32,
    /// Connect timeout and handshake timeout, each (`-o`).
    pub timeout: Duration,
    /// TCP keep-alives on both sockets (`-j` turns them off).
    pub keepalive: bool,
    /// How often to re-resolve a target host name; `None` = never (`-R`).
    pub reresolve: Option<Duration>,
    /// How often an encrypting tunnel checks that its far end answers, while no real
    /// connection has shown it recently; `None` = never. Unused when decrypting.
    pub health_check: Option<Duration>,
    /// Put a PROXY protocol header at the start of each connection's plaintext: an
    /// encrypting end (or reverse-in end) carries its client's address to the far end's
    /// service; a decrypting end tells its target the encrypting end's address.
    pub proxy_protocol: Option<ProxyVersion>,
    /// An encrypting (or reverse-in) end reads a PROXY header from its client (a load
    /// balancer) and passes on the address it names.
    pub accept_proxy_protocol: bool,
}

impl TunnelDefinition {
    /// A tunnel with spiped's defaults for everything not given.
    pub fn new(name: &str, mode: Mode, listen: Address, target: Address) -> Self {
        TunnelDefinition {
            name: name.to_owned(),
            mode,
            listen,
            target,
            bind: None,
            forward_secrecy: ForwardSecrecy::Enabled,
            key_agreement: KeyAgreement::Classic,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeout: DEFAULT_TIMEOUT,
            keepalive: true,
            reresolve: Some(DEFAULT_RERESOLVE),
            health_check: Some(DEFAULT_HEALTH_CHECK),
            proxy_protocol: None,
            accept_proxy_protocol: false,
        }
    }

    /// The addresses this tunnel binds: its listen address, and a reverse-in end's
    /// target too; a reverse-out end binds none.
    pub fn listens(&self) -> Vec<&Address> {
        match self.mode {
            Mode::Encrypt | Mode::Decrypt => vec![&self.listen],
            Mode::ReverseIn => vec![&self.listen, &self.target],
            Mode::ReverseOut => Vec::new(),
        }
    }

    /// Whether this tunnel checks its far end's health: it dials one, and checks are on.
    pub fn checks_health(&self) -> bool {
        self.mode == Mode::Encrypt && self.health_check.is_some()
    }

    /// This tunnel's end of the encrypted connection.
    pub fn role(&self) -> Role {
        self.mode.role()
    }

    /// Every rule this definition breaks (empty when it can run).
    pub fn problems(&self) -> Vec<DefinitionProblem> {
        [
            check_name(&self.name),
            check_endpoints(&self.listen, &self.target),
            check_handshake(self.forward_secrecy, self.key_agreement),
            check_timeout(self.timeout),
            check_reresolve(self.reresolve),
            check_health_check(self.health_check),
            check_proxy_protocol(self.mode, self.proxy_protocol, self.accept_proxy_protocol),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }
}

// The rules one by one, so that a front end whose input is partly unparsable can still
// report every problem at once.

/// A name shows in logs, unit descriptions and config files, which a control character
/// (a line feed above all) would split or forge lines of.
pub fn check_name(name: &str) -> Result<(), DefinitionProblem> {
    match ControlChar::find(name) {
        Some(found) => Err(DefinitionProblem::NameControlCharacter(found)),
        None => Ok(()),
    }
}

/// The target must not be the listen address itself.
pub fn check_endpoints(listen: &Address, target: &Address) -> Result<(), DefinitionProblem> {
    if same_endpoint(listen, target) {
        return Err(DefinitionProblem::TargetIsListen(target.clone()));
    }
    Ok(())
}

/// X25519 always uses fresh keys, so it cannot run without forward secrecy. Binds a
/// single `--spipe` connection too.
pub fn check_handshake(
    forward_secrecy: ForwardSecrecy,
    key_agreement: KeyAgreement,
) -> Result<(), DefinitionProblem> {
    if key_agreement == KeyAgreement::X25519 && forward_secrecy == ForwardSecrecy::Disabled {
        return Err(DefinitionProblem::X25519WithoutForwardSecrecy);
    }
    Ok(())
}

/// More than nothing, at most a day.
pub fn check_timeout(timeout: Duration) -> Result<(), DefinitionProblem> {
    if timeout.is_zero() {
        Err(DefinitionProblem::ZeroTimeout)
    } else if timeout > MAX_TIMEOUT {
        Err(DefinitionProblem::TimeoutTooLong(timeout))
    } else {
        Ok(())
    }
}

/// Re-resolving needs a pause between lookups.
pub fn check_reresolve(period: Option<Duration>) -> Result<(), DefinitionProblem> {
    if period.is_some_and(|p| p.is_zero()) {
        return Err(DefinitionProblem::ZeroReresolve);
    }
    Ok(())
}

/// Checks need a pause between them.
pub fn check_health_check(interval: Option<Duration>) -> Result<(), DefinitionProblem> {
    if interval.is_some_and(|i| i.is_zero()) {
        return Err(DefinitionProblem::ZeroHealthCheck);
    }
    Ok(())
}

/// Which ends can write or read a PROXY header.
pub fn check_proxy_protocol(
    mode: Mode,
    proxy_protocol: Option<ProxyVersion>,
    accept: bool,
) -> Result<(), DefinitionProblem> {
    match (mode, proxy_protocol, accept) {
        (Mode::ReverseOut, Some(_), _) => Err(DefinitionProblem::ProxyOnReverseOut),
        (Mode::Decrypt | Mode::ReverseOut, _, true) => Err(DefinitionProblem::AcceptProxyHere),
        (_, None, true) => Err(DefinitionProblem::AcceptProxyWithoutVersion),
        _ => Ok(()),
    }
}

/// Same endpoint as written, without DNS: host names compare case-insensitively.
pub fn same_endpoint(a: &Address, b: &Address) -> bool {
    match (a, b) {
        (Address::Host { name: n, port: p }, Address::Host { name: m, port: q }) => {
            p == q && n.eq_ignore_ascii_case(m)
        }
        _ => a == b,
    }
}

/// The part of a tunnel a problem is about. Each front end names it its own way: the
/// config file by field (`config::Field`), `sluiced` by flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Name,
    Target,
    ForwardSecrecy,
    Timeout,
    Reresolve,
    HealthCheck,
    ProxyProtocol,
}

impl Part {
    /// The spiped-style flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            // A tunnel given by flags is named after where it listens.
            Part::Name => "-s",
            Part::Target => "-t",
            Part::ForwardSecrecy => "--x25519",
            Part::Timeout => "-o",
            Part::Reresolve => "-r",
            Part::HealthCheck => "--health-check",
            Part::ProxyProtocol => "--proxy-protocol",
        }
    }
}

/// A rule a [`TunnelDefinition`] breaks. Each message says what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionProblem {
    #[error("a tunnel name cannot contain control characters (here {0}): remove it")]
    NameControlCharacter(ControlChar),
    #[error(
        "the target {0} is the listen address itself: every connection would loop back into the tunnel; point the target at the service (or the far end) instead"
    )]
    TargetIsListen(Address),
    #[error(
        "the X25519 handshake always uses fresh keys, so forward secrecy cannot be turned off (it cannot be combined with -f): choose the default or required forward secrecy"
    )]
    X25519WithoutForwardSecrecy,
    #[error(
        "0 would drop every connection at once (spiped reads -o 0 as its default): write 5.0 for spiped's default"
    )]
    ZeroTimeout,
    #[error("{} seconds is more than a day: use at most {}; spiped's default is 5", Secs(*.0), MAX_TIMEOUT.as_secs())]
    TimeoutTooLong(Duration),
    #[error(
        "0 would re-resolve without pause: use at least 1 second (spiped's default is 60), or None to resolve only once (spiped -R)"
    )]
    ZeroReresolve,
    #[error(
        "0 would check the far end without pause: use at least 1 second (the default is 60), or None to not check"
    )]
    ZeroHealthCheck,
    #[error(
        "a reverse-out end does not see the clients (its far end, the reverse-in end, does): set the PROXY protocol there"
    )]
    ProxyOnReverseOut,
    #[error(
        "only the end that clients connect to in plaintext (Encrypt, ReverseIn) can read a PROXY header from a load balancer"
    )]
    AcceptProxyHere,
    #[error(
        "reading a PROXY header from a load balancer passes its address on: also choose the version to pass it on with (v1 or v2)"
    )]
    AcceptProxyWithoutVersion,
}

impl DefinitionProblem {
    /// Which part of the tunnel is wrong.
    pub fn part(&self) -> Part {
        match self {
            DefinitionProblem::NameControlCharacter(_) => Part::Name,
            DefinitionProblem::TargetIsListen(_) => Part::Target,
            DefinitionProblem::X25519WithoutForwardSecrecy => Part::ForwardSecrecy,
            DefinitionProblem::ZeroTimeout | DefinitionProblem::TimeoutTooLong(_) => Part::Timeout,
            DefinitionProblem::ZeroReresolve => Part::Reresolve,
            DefinitionProblem::ZeroHealthCheck => Part::HealthCheck,
            DefinitionProblem::ProxyOnReverseOut
            | DefinitionProblem::AcceptProxyHere
            | DefinitionProblem::AcceptProxyWithoutVersion => Part::ProxyProtocol,
        }
    }
}

/// Everything a tunnel needs to run: its checked definition and its key, loaded.
#[derive(Clone)]
pub struct TunnelSettings {
    pub definition: TunnelDefinition,
    pub key: PresharedKey,
    /// A key being replaced, still accepted beside `key` by an end that accepts
    /// connections (a rotation's grace period).
    pub previous_key: Option<PresharedKey>,
}

impl TunnelSettings {
    /// A definition that [`TunnelDefinition::problems`] found nothing wrong with, and
    /// its key.
    pub fn new(definition: TunnelDefinition, key: PresharedKey) -> Self {
        TunnelSettings {
            definition,
            key,
            previous_key: None,
        }
    }

    /// The same, also accepting clients with `previous` (a rotation's grace period).
    pub fn with_previous_key(self, previous: Option<PresharedKey>) -> Self {
        TunnelSettings {
            previous_key: previous,
            ..self
        }
    }

    /// The same definition and the same key (keys compared by fingerprint, a hash of K).
    pub fn same_as(&self, other: &TunnelSettings) -> bool {
        let fingerprint = |key: &Option<PresharedKey>| key.as_ref().map(PresharedKey::fingerprint);
        self.definition == other.definition
            && self.key.fingerprint() == other.key.fingerprint()
            && fingerprint(&self.previous_key) == fingerprint(&other.previous_key)
    }
}

impl fmt::Debug for TunnelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelSettings")
            .field("definition", &self.definition)
            .field("key", &self.key.fingerprint())
            .field(
                "previous_key",
                &self.previous_key.as_ref().map(PresharedKey::fingerprint),
            )
            .finish()
    }
}

/// Seconds as a person wrote them: `90000`, `0.5`.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel() -> TunnelDefinition {
        TunnelDefinition::new(
            "redis",
            Mode::Encrypt,
            "[127.0.0.1]:6379".parse().unwrap(),
            "db.example.org:8025".parse().unwrap(),
        )
    }

    #[test]
    fn spipeds_defaults_pass() {
        let t = tunnel();
        assert_eq!(t.max_connections, 100);
        assert_eq!(t.timeout, Duration::from_secs(5));
        assert_eq!(t.reresolve, Some(Duration::from_secs(60)));
        assert!(t.keepalive);
        assert_eq!(t.forward_secrecy, ForwardSecrecy::Enabled);
        assert_eq!(t.key_agreement, KeyAgreement::Classic);
        assert_eq!(t.role(), Role::Client);
        assert!(t.problems().is_empty());
    }

    #[test]
    fn every_rule_names_its_part() {
        let mut t = tunnel();
        t.target = "[127.0.0.1]:6379".parse().unwrap();
        t.key_agreement = KeyAgreement::X25519;
        t.forward_secrecy = ForwardSecrecy::Disabled;
        t.timeout = Duration::from_secs(90_000);
        t.reresolve = Some(Duration::ZERO);
        let parts: Vec<Part> = t.problems().iter().map(DefinitionProblem::part).collect();
        assert_eq!(
            parts,
            [
                Part::Target,
                Part::ForwardSecrecy,
                Part::Timeout,
                Part::Reresolve
            ]
        );
        let words: Vec<String> = t.problems().iter().map(ToString::to_string).collect();
        assert!(words[0].contains("loop back"), "{}", words[0]);
        assert!(words[2].contains("90000 seconds"), "{}", words[2]);
    }

    #[test]
    fn a_name_with_a_control_character_is_a_problem_however_the_tunnel_was_written() {
        let mut t = tunnel();
        t.name = "redis\nExecStartPre=/bin/sh".into();
        let problems = t.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].part(), Part::Name);
        assert_eq!(
            problems[0].to_string(),
            "a tunnel name cannot contain control characters (here a line feed at position 6): remove it"
        );
        assert_eq!(Part::Name.flag(), "-s");
        assert!(check_name("Ünïcødé ✔ (2)").is_ok());
        assert!(check_name("tab\there").is_err());
    }

    #[test]
    fn host_names_compare_without_case() {
        let a: Address = "DB.example.org:1".parse().unwrap();
        let b: Address = "db.example.org:1".parse().unwrap();
        let c: Address = "db.example.org:2".parse().unwrap();
        assert!(same_endpoint(&a, &b));
        assert!(!same_endpoint(&a, &c));
    }

    #[test]
    fn x25519_needs_forward_secrecy() {
        assert!(check_handshake(ForwardSecrecy::Disabled, KeyAgreement::Classic).is_ok());
        assert!(check_handshake(ForwardSecrecy::Required, KeyAgreement::X25519).is_ok());
        let refused = check_handshake(ForwardSecrecy::Disabled, KeyAgreement::X25519);
        assert_eq!(refused, Err(DefinitionProblem::X25519WithoutForwardSecrecy));
    }
}
