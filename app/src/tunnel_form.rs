//! The tunnel editor's state and its validation: the same rules the config file enforces,
//! checked once per change and kept, plus what only the machine can tell (a listen port
//! another program already holds), asked off the UI thread. Drawing lives in
//! `views::tunnel_editor`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_engine::{
    Address, Config, ConfigError, DEFAULT_HEALTH_CHECK, DEFAULT_MAX_CONNECTIONS, DEFAULT_RERESOLVE,
    Field, ForwardSecrecy, KeyAgreement, KeyRef, Mode, ProxyVersion, TunnelSpec,
};

use crate::error::ListenPortProblem;

/// Which key a tunnel uses, as the editor shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChoice {
    /// A key from the key list (by name).
    Known(String),
    /// A key file typed or picked directly.
    File(String),
}

/// How many times an editor was opened, for [`EditorState::scroll_id`].
static OPENINGS: AtomicU64 = AtomicU64::new(0);

/// Everything the editor form holds; turned into a [`TunnelSpec`] on save.
#[derive(Clone, Debug, PartialEq)]
pub struct EditorState {
    /// The name of the tunnel being edited (as it was when the editor opened); `None` for
    /// a new one.
    pub editing: Option<String>,
    pub name: String,
    pub mode: Mode,
    pub listen: String,
    pub target: String,
    pub key: KeyChoice,
    /// The key being replaced, still accepted during a rotation (Decrypt, ReverseIn).
    pub previous_key: Option<KeyChoice>,
    pub forward_secrecy: ForwardSecrecy,
    pub key_agreement: KeyAgreement,
    pub unlimited_connections: bool,
    pub max_connections: u32,
    pub timeout_secs: f64,
    pub keepalive: bool,
    pub reresolve: bool,
    pub reresolve_secs: u64,
    /// An Encrypt tunnel checks that its far end answers (`health_check_secs`).
    pub health_check: bool,
    pub health_check_secs: u64,
    /// The PROXY header this end writes (`None`: off). Kept while a mode that cannot
    /// write one is chosen, so switching back restores it; [`EditorState::to_spec`]
    /// drops it there.
    pub proxy_protocol: Option<ProxyVersion>,
    /// Take a PROXY header from a local load balancer (Encrypt, ReverseIn).
    pub accept_proxy_protocol: bool,
    pub bind: String,
    pub autostart: bool,
    /// Problems by field from the last check, the port check's included.
    problems: BTreeMap<Field, String>,
    /// The same without the port check.
    rule_problems: BTreeMap<Field, String>,
    port: PortCheck,
    /// Which opening of the editor this is. egui keeps a scroll area's position under its
    /// id, and the editor's window has the same id each time it opens for a tunnel: the
    /// fields scroll under an id of this opening's, so each opening starts at the top.
    opening: u64,
}

impl EditorState {
    /// A new tunnel with spiped's defaults, as the engine states them.
    pub fn new_tunnel(default_key: Option<&str>) -> EditorState {
        let key = KeyRef::Keychain(default_key.unwrap_or_default().to_owned());
        let spec = TunnelSpec::new("", Mode::Encrypt, "[127.0.0.1]:8000", "", key);
        let mut form = EditorState::from_spec(None, &spec, &HashMap::new());
        if default_key.is_none() {
            form.key = KeyChoice::File(String::new());
        }
        form
    }

    /// The form for an existing tunnel; `known_keys` maps key locations to key names.
    pub fn from_spec(
        editing: Option<String>,
        spec: &TunnelSpec,
        known_keys: &HashMap<KeyRef, String>,
    ) -> EditorState {
        let choice = |key: &KeyRef| match known_keys.get(key) {
            Some(name) => KeyChoice::Known(name.clone()),
            None => match key {
                KeyRef::File(path) => KeyChoice::File(path.display().to_string()),
                KeyRef::Keychain(entry) => KeyChoice::Known(entry.clone()),
            },
        };
        EditorState {
            editing,
            name: spec.name.clone(),
            mode: spec.mode,
            listen: spec.listen.clone(),
            target: spec.target.clone(),
            key: choice(&spec.key),
            previous_key: spec.previous_key.as_ref().map(choice),
            forward_secrecy: spec.forward_secrecy,
            key_agreement: spec.key_agreement,
            unlimited_connections: spec.max_connections == 0,
            // The count shown if "unlimited" is turned off again.
            max_connections: if spec.max_connections == 0 {
                DEFAULT_MAX_CONNECTIONS
            } else {
                spec.max_connections
            },
            timeout_secs: spec.timeout_secs,
            keepalive: spec.keepalive,
            reresolve: spec.reresolve_secs.is_some(),
            reresolve_secs: spec.reresolve_secs.unwrap_or(DEFAULT_RERESOLVE.as_secs()),
            health_check: spec.health_check_secs.is_some(),
            // The interval shown if checks are turned on again.
            health_check_secs: spec
                .health_check_secs
                .unwrap_or(DEFAULT_HEALTH_CHECK.as_secs()),
            proxy_protocol: spec.proxy_protocol,
            accept_proxy_protocol: spec.accept_proxy_protocol,
            bind: spec.bind.clone().unwrap_or_default(),
            autostart: spec.autostart,
            problems: BTreeMap::new(),
            rule_problems: BTreeMap::new(),
            port: PortCheck::NotNeeded,
            opening: OPENINGS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The id salt of this opening's scroll area (see the `opening` field).
    pub fn scroll_id(&self) -> (&'static str, u64) {
        ("editor fields", self.opening)
    }

    /// The spec this form describes; `key_ref` resolves a known key's name to its location.
    pub fn to_spec(&self, key_ref: impl Fn(&str) -> Option<KeyRef>) -> TunnelSpec {
        let location = |choice: &KeyChoice| match choice {
            KeyChoice::Known(name) => {
                key_ref(name).unwrap_or_else(|| KeyRef::Keychain(name.clone()))
            }
            KeyChoice::File(path) => KeyRef::File(PathBuf::from(path.trim())),
        };
        let mut spec = TunnelSpec::new(
            self.name.trim(),
            self.mode,
            self.listen.trim(),
            self.target.trim(),
            location(&self.key),
        );
        spec.previous_key = self.previous_key.as_ref().map(location);
        spec.forward_secrecy = self.forward_secrecy;
        spec.key_agreement = self.key_agreement;
        spec.max_connections = if self.unlimited_connections {
            0
        } else {
            self.max_connections
        };
        spec.timeout_secs = self.timeout_secs;
        spec.keepalive = self.keepalive;
        spec.reresolve_secs = self.reresolve.then_some(self.reresolve_secs);
        spec.health_check_secs = self.health_check.then_some(self.health_check_secs);
        // The editor hides the PROXY choices where the mode cannot use them; what is
        // hidden is not saved, so a mode switch never leaves a problem nobody can see.
        spec.proxy_protocol = self
            .proxy_protocol
            .filter(|_| writes_proxy_header(self.mode));
        spec.accept_proxy_protocol = self.accept_proxy_protocol && accepts_proxy_header(self.mode);
        spec.bind = Some(self.bind.trim().to_owned()).filter(|b| !b.is_empty());
        spec.autostart = self.autostart;
        spec
    }

    /// Every problem with the form, by field, as of the last [`EditorState::recheck`]
    /// (and port check answer).
    pub fn problems(&self) -> &BTreeMap<Field, String> {
        &self.problems
    }

    /// Checks the form again, after a change to it or to what it is checked against.
    /// `others` are the other tunnels (to catch duplicate names and listen addresses);
    /// `ours` is the listen address one of our own running tunnels holds (the one being
    /// edited), which is then not "in use by another program". Returns the listen port
    /// check to run off the UI thread, if the address has not been checked yet; its
    /// answer goes to [`EditorState::port_checked`].
    pub fn recheck(
        &mut self,
        spec: &TunnelSpec,
        others: &[TunnelSpec],
        ours: Option<&str>,
    ) -> Option<PortCheckRequest> {
        let mut problems = BTreeMap::new();
        if let Err(errors) = spec.validate() {
            for error in errors {
                if let ConfigError::Invalid { field, message, .. } = error {
                    problems.entry(field).or_insert(message);
                }
            }
        }
        let mut all = others.to_vec();
        all.push(spec.clone());
        let config = Config {
            tunnels: all,
            ..Config::default()
        };
        if let Err(errors) = config.validate() {
            for error in errors {
                match error {
                    ConfigError::DuplicateName(_) => {
                        problems
                            .entry(Field::Name)
                            .or_insert_with(|| "another tunnel already has this name".into());
                    }
                    ConfigError::DuplicateListen {
                        first,
                        second,
                        address,
                    } => {
                        let other = if first == spec.name { second } else { first };
                        // A reverse-in end listens on its target too (for the dialling
                        // end): the problem goes to the field that holds the address.
                        let field = if spec.mode == Mode::ReverseIn
                            && spec
                                .target
                                .parse::<Address>()
                                .is_ok_and(|a| address.contains(&a.to_string()))
                        {
                            Field::Target
                        } else {
                            Field::Listen
                        };
                        problems
                            .entry(field)
                            .or_insert_with(|| format!("tunnel \"{other}\" already listens here"));
                    }
                    _ => {}
                }
            }
        }
        if let KeyChoice::File(path) = &self.key
            && path.trim().is_empty()
        {
            problems.insert(
                Field::Key,
                "choose a key, or give the path of a key file".into(),
            );
        }
        self.rule_problems = problems;

        // Only numeric addresses are checked: a host name would need a DNS lookup. A
        // reverse-out end dials its `listen` (the far end) instead of listening there.
        let checkable = match spec.listen.parse::<Address>() {
            Ok(Address::Ip(addr))
                if spec.mode != Mode::ReverseOut
                    && !self.rule_problems.contains_key(&Field::Listen)
                    && ours != Some(spec.listen.as_str()) =>
            {
                Some(addr)
            }
            _ => None,
        };
        let request = match checkable {
            None => {
                self.port = PortCheck::NotNeeded;
                None
            }
            Some(addr) => match &self.port {
                PortCheck::Pending(listen) | PortCheck::Done { listen, .. }
                    if *listen == spec.listen =>
                {
                    None
                }
                _ => {
                    self.port = PortCheck::Pending(spec.listen.clone());
                    Some(PortCheckRequest {
                        listen: spec.listen.clone(),
                        addr,
                    })
                }
            },
        };
        self.merge_problems();
        request
    }

    /// The answer of a port check; ignored if the listen address changed meanwhile.
    pub fn port_checked(&mut self, listen: &str, problem: Option<ListenPortProblem>) {
        if matches!(&self.port, PortCheck::Pending(pending) if pending == listen) {
            self.port = PortCheck::Done {
                listen: listen.to_owned(),
                problem,
            };
            self.merge_problems();
        }
    }

    fn merge_problems(&mut self) {
        self.problems = self.rule_problems.clone();
        if let PortCheck::Done {
            problem: Some(problem),
            ..
        } = &self.port
        {
            self.problems.insert(Field::Listen, problem.to_string());
        }
    }
}

/// Whether a tunnel of this mode can write a PROXY header (spiped -e and -d, and
/// sluiced --reverse-in; the reverse-out end passes on what the reverse-in end wrote).
pub fn writes_proxy_header(mode: Mode) -> bool {
    mode != Mode::ReverseOut
}

/// Whether a tunnel of this mode can take a PROXY header from a local load balancer:
/// only the ends local clients connect to in plaintext.
pub fn accepts_proxy_header(mode: Mode) -> bool {
    matches!(mode, Mode::Encrypt | Mode::ReverseIn)
}

/// What the editor calls a tunnel's two addresses in each mode, with their tooltips:
/// the config file's `listen` and `target` mean different things for a reverse end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressLabels {
    pub listen: &'static str,
    pub listen_help: &'static str,
    pub target: &'static str,
    pub target_help: &'static str,
    /// Whether the target is shown first (the reverse-in end's encrypted side, which the
    /// far end dials, before the plaintext side local clients use).
    pub target_first: bool,
}

pub fn address_labels(mode: Mode) -> AddressLabels {
    match mode {
        Mode::Encrypt | Mode::Decrypt => AddressLabels {
            listen: "Listen on",
            listen_help: help::LISTEN,
            target: "Target",
            target_help: help::TARGET,
            target_first: false,
        },
        Mode::ReverseIn => AddressLabels {
            listen: "Plaintext listen address",
            listen_help: help::REVERSE_IN_PLAINTEXT,
            target: "Encrypted listen address",
            target_help: help::REVERSE_IN_ENCRYPTED,
            target_first: true,
        },
        Mode::ReverseOut => AddressLabels {
            listen: "Far end address",
            listen_help: help::REVERSE_OUT_FAR_END,
            target: "Local service address",
            target_help: help::REVERSE_OUT_SERVICE,
            target_first: false,
        },
    }
}

/// What each mode's choice in the editor says: what this end does.
pub fn mode_choice_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Encrypt => {
            "Encrypt (spiped -e) — clients connect here in plaintext, it goes encrypted to the far end"
        }
        Mode::Decrypt => {
            "Decrypt (spiped -d) — encrypted connections arrive here and go on to a local service"
        }
        Mode::ReverseIn => {
            "Reverse in — this machine is reachable: clients connect here, the far end dials in"
        }
        Mode::ReverseOut => {
            "Reverse out — this machine has the service but cannot accept connections: it dials the far end"
        }
    }
}

/// A listen address to check by binding it (see [`check_listen_port`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortCheckRequest {
    /// The address as the form has it, to match the answer to the form.
    pub listen: String,
    pub addr: SocketAddr,
}

/// The listen port check: whether one is needed, running, or what it said.
#[derive(Clone, Debug, Default, PartialEq)]
enum PortCheck {
    #[default]
    NotNeeded,
    Pending(String),
    Done {
        listen: String,
        problem: Option<ListenPortProblem>,
    },
}

/// Whether another program holds the address, found by binding it briefly. Blocks (a
/// system call): run it off the UI thread.
pub fn check_listen_port(addr: SocketAddr) -> Option<ListenPortProblem> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Some(ListenPortProblem::InUse(addr.port()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Some(ListenPortProblem::Privileged(addr.port()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            Some(ListenPortProblem::NotOurAddress(addr.ip()))
        }
        Err(_) => None,
    }
}

/// Tooltips explaining each option, in spiped's terms (defaults as the engine states them).
pub mod help {
    use sluice_engine::{
        DEFAULT_HEALTH_CHECK, DEFAULT_MAX_CONNECTIONS, DEFAULT_RERESOLVE, DEFAULT_TIMEOUT,
    };

    pub const MODE: &str = "Encrypt: local applications connect here in plaintext and the tunnel carries it encrypted to the far end (spiped -e).\nDecrypt: encrypted connections arrive here and go on in plaintext to a local service (spiped -d).\nReverse in: on the reachable machine; the reverse-out end dials in and keeps connections ready, and local clients are handed one (sluiced --reverse-in).\nReverse out: on the machine with the service that cannot accept connections; it dials the reverse-in end and carries each connection handed to it to the service (sluiced --reverse-out). Both ends must be Sluice.";
    pub const REVERSE_IN_ENCRYPTED: &str = "Where the reverse-out end's encrypted connections arrive (sluiced --reverse-in -s): a port the far end can reach, e.g. [0.0.0.0]:8026.";
    pub const REVERSE_IN_PLAINTEXT: &str = "Where local clients connect in plaintext (sluiced --reverse-in -l), e.g. [127.0.0.1]:25521; each is joined to a connection the far end dialled in.";
    pub const REVERSE_OUT_FAR_END: &str = "The reverse-in end this machine dials and keeps connections ready at (sluiced --reverse-out -t), e.g. server.example:8026.";
    pub const REVERSE_OUT_SERVICE: &str = "The local service each connection goes to (sluiced --reverse-out -s), e.g. [127.0.0.1]:25520.";
    pub const PROXY_PROTOCOL: &str = "Write a PROXY protocol header (HAProxy's, v1 text or v2 binary) at the start of each connection, so the service sees the client's real address instead of 127.0.0.1. Encrypt: the header carries the local client's address and travels encrypted to the far end's service. Decrypt and Reverse in: it is written toward the target. The service must expect the header.";
    pub const ACCEPT_PROXY: &str = "Read a PROXY header from a local load balancer in front of this end and pass on the address it names (sluiced --accept-proxy-protocol); needs a PROXY version to write. Clients that send no header are refused.";
    pub const LISTEN: &str = "Where this tunnel accepts connections (spiped -s): [127.0.0.1]:6379, [::1]:6379, host.name:6379 or /absolute/socket/path.";
    pub const TARGET: &str = "Where each connection goes (spiped -t): for Encrypt, the far end's spiped -d; for Decrypt, the local service.";
    pub const PREVIOUS_KEY: &str = "During a rotation: the key being replaced, still accepted beside the key above, so clients not yet switched get through. The Traffic tab counts handshakes per key; once the previous key's count stops growing, set this back to none.";
    pub const KEY: &str = "The shared key. Both ends must use exactly the same key file; compare fingerprints to check.";
    pub const FORWARD_SECRECY: &str = "Default: ephemeral Diffie-Hellman, accepting a peer that skips it.\nOff (-f): skip Diffie-Hellman; faster, but a stolen key decrypts recorded traffic.\nRequired (-g): refuse peers that use -f.";
    pub const KEY_AGREEMENT: &str = "spiped (classic): works with stock spiped and any Sluice.\nX25519: Sluice's fast handshake (tens of microseconds instead of milliseconds per connection); the far end must be Sluice with X25519 on too.";
    pub fn max_connections() -> String {
        format!(
            "At most this many connections at once (spiped -n, default {DEFAULT_MAX_CONNECTIONS}). Further clients wait until a slot frees up."
        )
    }
    pub fn timeout() -> String {
        format!(
            "Seconds allowed to connect to the target and, separately, to finish the handshake (spiped -o, default {}). Idle connections are never timed out.",
            DEFAULT_TIMEOUT.as_secs_f64()
        )
    }
    pub const KEEPALIVE: &str = "TCP keep-alive probes on both sockets, so dead peers are noticed (on by default; spiped -j turns it off).";
    pub fn reresolve() -> String {
        format!(
            "Look the target's host name up again every so often (spiped -r, default {} s); off = resolve once (spiped -R).",
            DEFAULT_RERESOLVE.as_secs()
        )
    }
    pub fn health_check() -> String {
        format!(
            "Encrypt tunnels: connect to the far end and run a handshake every so often (default every {} s) while no real connection shows that it works, so the list, the tray and a notification say when it is down and why. Off: never checked. A check against stock spiped also opens one connection to its target.",
            DEFAULT_HEALTH_CHECK.as_secs()
        )
    }
    pub const BIND: &str = "Local address for outgoing connections to the target (spiped -b), e.g. [192.0.2.10] or [192.0.2.10]:0. Empty: the system chooses.";
    pub const AUTOSTART: &str = "Start this tunnel when Sluice starts.";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_keys(_: &str) -> Option<KeyRef> {
        None
    }

    #[test]
    fn a_new_form_starts_from_the_engines_defaults() {
        let spec = EditorState::new_tunnel(None).to_spec(no_keys);
        let defaults = TunnelSpec::new("", Mode::Encrypt, "", "", KeyRef::File("k".into()));
        assert_eq!(spec.max_connections, defaults.max_connections);
        assert_eq!(spec.timeout_secs, defaults.timeout_secs);
        assert_eq!(spec.reresolve_secs, defaults.reresolve_secs);
        assert_eq!(spec.health_check_secs, defaults.health_check_secs);
        assert_eq!(spec.health_check_secs, Some(DEFAULT_HEALTH_CHECK.as_secs()));
        assert_eq!(spec.keepalive, defaults.keepalive);
        assert_eq!(spec.forward_secrecy, defaults.forward_secrecy);
    }

    #[test]
    fn a_new_form_round_trips_through_a_spec() {
        let mut form = EditorState::new_tunnel(Some("redis"));
        form.name = "redis".into();
        form.target = "db.example.org:8025".into();
        form.unlimited_connections = true;
        form.reresolve = false;
        form.health_check_secs = 15;
        let spec = form.to_spec(no_keys);
        assert_eq!(spec.max_connections, 0);
        assert_eq!(spec.reresolve_secs, None);
        assert_eq!(spec.health_check_secs, Some(15));
        assert_eq!(spec.key, KeyRef::Keychain("redis".into()));
        let known = HashMap::from([(KeyRef::Keychain("redis".into()), "redis".to_owned())]);
        let again = EditorState::from_spec(None, &spec, &known);
        assert_eq!(again.to_spec(no_keys), spec);
    }

    #[test]
    fn a_previous_key_round_trips_and_is_refused_on_an_encrypting_end() {
        let mut form = EditorState::new_tunnel(Some("new"));
        form.name = "svc".into();
        form.mode = Mode::Decrypt;
        form.target = "[127.0.0.1]:6379".into();
        form.previous_key = Some(KeyChoice::Known("old".into()));
        let spec = form.to_spec(no_keys);
        assert_eq!(spec.previous_key, Some(KeyRef::Keychain("old".into())));
        let known = HashMap::from([
            (KeyRef::Keychain("new".into()), "new".to_owned()),
            (KeyRef::Keychain("old".into()), "old".to_owned()),
        ]);
        let mut again = EditorState::from_spec(Some("svc".into()), &spec, &known);
        assert_eq!(again.previous_key, Some(KeyChoice::Known("old".into())));
        again.recheck(&spec, &[], None);
        assert!(!again.problems().contains_key(&Field::PreviousKey));

        // The dialling end has one key: the same choice is a problem there.
        again.mode = Mode::Encrypt;
        let spec = again.to_spec(no_keys);
        again.recheck(&spec, &[], None);
        assert!(
            again.problems().contains_key(&Field::PreviousKey),
            "{:?}",
            again.problems()
        );
    }

    #[test]
    fn health_checks_turned_off_keep_their_interval_in_the_form() {
        let mut spec = EditorState::new_tunnel(None).to_spec(no_keys);
        spec.health_check_secs = None;
        let form = EditorState::from_spec(None, &spec, &HashMap::new());
        assert!(!form.health_check);
        assert_eq!(form.health_check_secs, DEFAULT_HEALTH_CHECK.as_secs());
        assert_eq!(form.to_spec(no_keys).health_check_secs, None);
        let mut form = form;
        form.health_check = true;
        form.health_check_secs = 0;
        let spec = form.to_spec(no_keys);
        form.recheck(&spec, &[], None);
        assert!(
            form.problems().contains_key(&Field::HealthCheckSecs),
            "{:?}",
            form.problems()
        );
    }

    #[test]
    fn proxy_choices_round_trip_and_are_not_saved_where_the_mode_cannot_use_them() {
        let mut form = EditorState::new_tunnel(Some("k"));
        form.mode = Mode::ReverseIn;
        form.proxy_protocol = Some(ProxyVersion::V1);
        form.accept_proxy_protocol = true;
        let spec = form.to_spec(no_keys);
        assert_eq!(spec.proxy_protocol, Some(ProxyVersion::V1));
        assert!(spec.accept_proxy_protocol);
        let again = EditorState::from_spec(None, &spec, &HashMap::new());
        assert_eq!(again.to_spec(no_keys), spec);

        form.mode = Mode::Decrypt;
        let spec = form.to_spec(no_keys);
        assert_eq!(spec.proxy_protocol, Some(ProxyVersion::V1));
        assert!(!spec.accept_proxy_protocol, "only -e and reverse-in accept");
        form.mode = Mode::ReverseOut;
        let spec = form.to_spec(no_keys);
        assert_eq!(spec.proxy_protocol, None);
        assert!(!spec.accept_proxy_protocol);
        assert_eq!(
            form.proxy_protocol,
            Some(ProxyVersion::V1),
            "kept in the form"
        );
    }

    #[test]
    fn a_reverse_out_end_dials_its_listen_address_so_no_port_is_checked_there() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let mut form = EditorState::new_tunnel(Some("k"));
        form.name = "laptop".into();
        form.mode = Mode::ReverseOut;
        form.listen = format!("[127.0.0.1]:{port}");
        form.target = "[127.0.0.1]:25520".into();
        let spec = form.to_spec(no_keys);
        assert_eq!(form.recheck(&spec, &[], None), None);
        assert!(form.problems().is_empty(), "{:?}", form.problems());
        form.mode = Mode::ReverseIn;
        let spec = form.to_spec(no_keys);
        assert!(
            form.recheck(&spec, &[], None).is_some(),
            "reverse-in listens"
        );
    }

    #[test]
    fn a_reverse_in_ends_encrypted_address_taken_by_another_tunnel_is_its_fields_problem() {
        let mut other = TunnelSpec::new(
            "web",
            Mode::Decrypt,
            "[127.0.0.1]:8026",
            "[127.0.0.1]:80",
            KeyRef::Keychain("k".into()),
        );
        other.autostart = false;
        let mut form = EditorState::new_tunnel(Some("k"));
        form.name = "server".into();
        form.mode = Mode::ReverseIn;
        form.listen = "/tmp/sluice-test-plaintext.sock".into();
        form.target = "[127.0.0.1]:8026".into();
        let spec = form.to_spec(no_keys);
        form.recheck(&spec, &[other], None);
        let problems = form.problems();
        assert!(
            problems[&Field::Target].contains("\"web\" already listens"),
            "{problems:?}"
        );
        assert!(!problems.contains_key(&Field::Listen), "{problems:?}");
    }

    #[test]
    fn problems_name_their_field() {
        let mut form = EditorState::new_tunnel(None);
        form.listen = "[127.0.0.1]:99999".into();
        form.target = "nowhere".into();
        let spec = form.to_spec(no_keys);
        assert_eq!(form.recheck(&spec, &[], None), None, "no port to check");
        let problems = form.problems();
        assert!(problems.contains_key(&Field::Name), "{problems:?}");
        assert!(problems.contains_key(&Field::Listen), "{problems:?}");
        assert!(problems[&Field::Target].contains("port"), "{problems:?}");
        assert!(problems.contains_key(&Field::Key), "{problems:?}");
    }

    #[test]
    fn control_characters_are_a_problem_of_their_field() {
        let mut form = EditorState::new_tunnel(Some("k"));
        // Inside the text: the editor trims only the ends.
        form.name = "redis\nprod".into();
        form.listen = "/run/a\nb.sock".into();
        form.target = "db\r.example.org:8025".into();
        form.bind = "[::1]\u{1b}".into();
        let spec = form.to_spec(no_keys);
        form.recheck(&spec, &[], None);
        let problems = form.problems();
        for field in [Field::Name, Field::Listen, Field::Target, Field::Bind] {
            let problem = problems.get(&field).map_or("", String::as_str);
            assert!(
                problem.contains("cannot contain control characters"),
                "{field}: {problems:?}"
            );
        }
        assert!(
            problems[&Field::Listen].contains("(here a line feed at position 7): remove it"),
            "{problems:?}"
        );
    }

    #[test]
    fn duplicates_and_busy_ports_are_caught() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let mut form = EditorState::new_tunnel(Some("k"));
        form.name = "a".into();
        form.target = "[127.0.0.1]:1".into();
        form.listen = format!("[127.0.0.1]:{port}");
        let spec = form.to_spec(no_keys);
        let request = form.recheck(&spec, &[], None).expect("a port check");
        assert_eq!(request.addr.port(), port);
        assert!(form.problems().is_empty(), "no verdict before the answer");
        // Checked once per address: the same address asks nothing more.
        assert_eq!(form.recheck(&spec, &[], None), None);
        form.port_checked(&request.listen, check_listen_port(request.addr));
        let problems = form.problems();
        assert!(
            problems[&Field::Listen].contains("another program"),
            "{problems:?}"
        );
        // Our own running tunnel on that address is not "another program".
        assert_eq!(form.recheck(&spec, &[], Some(&spec.listen)), None);
        assert!(!form.problems().contains_key(&Field::Listen));
        // A late answer for an address no longer in the form is ignored.
        form.port_checked(&request.listen, Some(ListenPortProblem::InUse(port)));
        assert!(!form.problems().contains_key(&Field::Listen));

        let mut other = spec.clone();
        other.listen = "[127.0.0.1]:2".into();
        form.recheck(&other, &[other.clone()], Some(&other.listen));
        let problems = form.problems();
        assert!(
            problems[&Field::Name].contains("another tunnel"),
            "{problems:?}"
        );
        assert!(
            problems[&Field::Listen].contains("already listens"),
            "{problems:?}"
        );
    }
}
