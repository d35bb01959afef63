//! What the far end of a tunnel runs: `-d` for a local Encrypt tunnel, `-e` for a local
//! Decrypt tunnel, `--reverse-in` for a local reverse-out end and `--reverse-out` for a
//! local reverse-in end, with the tunnel's forward-secrecy and handshake settings, as a
//! plan (for the SSH set-up) and as the command lines the far-end tab shows.

use crate::address::Address;
use crate::config::{KeyRef, Mode, TunnelSpec};
use crate::protocol::{ForwardSecrecy, KeyAgreement};

use super::shell::quote;

/// The far end's commands and what the user must know to run them.
#[derive(Clone, Debug, PartialEq)]
pub struct FarEndCommands {
    /// `None` when stock spiped cannot be the far end (the X25519 handshake).
    pub spiped: Option<String>,
    pub sluiced: String,
    pub notes: Vec<String>,
}

/// Everything the far end of one tunnel needs, derived from the tunnel and the address
/// the user gave for the far end (see [`default_far_address`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FarEndPlan {
    /// The tunnel's name, as in the config.
    pub tunnel: String,
    /// The tunnel's name reduced to characters safe in file and unit names.
    pub slug: String,
    /// What the far end does: `Decrypt` (`-d`) for a local Encrypt tunnel, and the
    /// other way round.
    pub far_mode: Mode,
    /// The far end's `-s`.
    pub source: String,
    /// The far end's `-t` (`-l` for a reverse-in far end: where its clients connect).
    pub target: String,
    pub forward_secrecy: ForwardSecrecy,
    pub key_agreement: KeyAgreement,
    /// The key file's name on the far end, as the manual commands say it.
    pub key_file_name: String,
    /// systemd holds the far end's listening socket and starts it on the first
    /// connection (`-s systemd:SLUG`); set up over SSH only, never in the manual commands.
    pub on_first_connection: bool,
    /// During a rotation, the far end (an accepting end) also lets in clients holding the
    /// key being replaced, kept beside its key as `KEY.previous` (`--previous-key`).
    pub previous_key: bool,
    /// The command lines to run by hand, as the far-end tab shows them.
    pub commands: FarEndCommands,
}

/// The address on the far end that the user is asked to confirm: for an Encrypt tunnel
/// the service the far end forwards to, for a Decrypt tunnel where its clients connect.
/// The guess is loopback with the same port, the usual layout.
pub fn default_far_address(spec: &TunnelSpec) -> String {
    // The same port as this end's service or clients: a peer-to-peer system then finds
    // its peer at the port it knows (docs/REVERSE.md).
    let port = match spec.mode {
        Mode::Encrypt | Mode::ReverseIn => port_of(&spec.listen),
        Mode::Decrypt | Mode::ReverseOut => port_of(&spec.target),
    };
    format!("[127.0.0.1]:{}", port.unwrap_or(8000))
}

/// What the far address field is for, in words.
pub fn far_address_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Encrypt => "Service on the far end (its spiped -t)",
        Mode::Decrypt => "Where the far end's clients connect (its spiped -s)",
        Mode::ReverseIn => "Service on the far end (its sluiced --reverse-out -s)",
        Mode::ReverseOut => "Where the far end's clients connect (its sluiced --reverse-in -l)",
    }
}

/// Builds the far end's command lines. `this_host` is how the far end reaches this
/// machine (used for Decrypt tunnels).
pub fn far_end_commands(spec: &TunnelSpec, far_address: &str, this_host: &str) -> FarEndCommands {
    FarEndPlan::new(spec, far_address, this_host).commands
}

impl FarEndPlan {
    /// The plan for `spec`'s far end. `far_address` is the far end's service (Encrypt
    /// tunnels) or its listening address (Decrypt tunnels); `this_host` is how the far
    /// end reaches this machine (Decrypt tunnels only).
    pub fn new(spec: &TunnelSpec, far_address: &str, this_host: &str) -> FarEndPlan {
        let mut notes = Vec::new();
        let key_file_name = match &spec.key {
            KeyRef::File(path) => {
                notes.push(format!(
                    "Copy the key file {} to the far end (keep it private: chmod 600).",
                    path.display()
                ));
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            }
            KeyRef::Keychain(entry) => {
                notes.push(format!(
                    "Export the key \"{entry}\" (Keys, Export) and copy the file to the far end (keep it private: chmod 600)."
                ));
                format!("{entry}.key")
            }
        };
        let (far_mode, source, target) = match spec.mode {
            Mode::Encrypt => (
                Mode::Decrypt,
                far_listen_address(&spec.target),
                far_address.to_owned(),
            ),
            Mode::Decrypt => {
                let port = port_of(&spec.listen).unwrap_or(8025);
                (
                    Mode::Encrypt,
                    far_address.to_owned(),
                    format!("{}:{port}", reachable_host(&spec.listen, this_host)),
                )
            }
            // This end dials the far end's -s and serves its -l clients.
            Mode::ReverseOut => (
                Mode::ReverseIn,
                far_listen_address(&spec.listen),
                far_address.to_owned(),
            ),
            // The far end dials this end's -s (the tunnel's target) and serves its service.
            Mode::ReverseIn => {
                let port = port_of(&spec.target).unwrap_or(8025);
                (
                    Mode::ReverseOut,
                    far_address.to_owned(),
                    format!("{}:{port}", reachable_host(&spec.target, this_host)),
                )
            }
        };
        if matches!(spec.mode, Mode::Decrypt | Mode::ReverseIn) {
            notes.push(format!(
                "Replace {this_host} if the far end reaches this machine under another name or address."
            ));
        }
        if spec.key_agreement == KeyAgreement::X25519 {
            notes.push(
                "This tunnel uses Sluice's X25519 handshake: the far end must run sluiced with --x25519 (stock spiped cannot speak it).".into(),
            );
        }
        if spec.forward_secrecy == ForwardSecrecy::Required {
            notes.push("This end requires forward secrecy: the far end must not use -f.".into());
        }
        let mut plan = FarEndPlan {
            tunnel: spec.name.clone(),
            slug: far_end_slug(&spec.name),
            far_mode,
            source,
            target,
            forward_secrecy: spec.forward_secrecy,
            key_agreement: spec.key_agreement,
            key_file_name,
            on_first_connection: false,
            previous_key: false,
            commands: FarEndCommands {
                spiped: None,
                sluiced: String::new(),
                notes,
            },
        };
        let args = plan
            .args(&plan.key_file_name)
            .iter()
            .map(|a| quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        plan.commands.sluiced = format!("sluiced {args}");
        plan.commands.spiped = plan.spiped_can_serve().then(|| format!("spiped {args}"));
        plan
    }

    /// `-d`, `-e`, `--reverse-in` or `--reverse-out`.
    pub fn mode_flag(&self) -> &'static str {
        match self.far_mode {
            Mode::Decrypt => "-d",
            Mode::Encrypt => "-e",
            Mode::ReverseIn => "--reverse-in",
            Mode::ReverseOut => "--reverse-out",
        }
    }

    /// Whether stock spiped can be this far end (it cannot speak X25519, nor run either
    /// end of a reverse tunnel).
    pub fn spiped_can_serve(&self) -> bool {
        self.key_agreement == KeyAgreement::Classic
            && !self.far_mode.is_reverse()
            && !self.previous_key
    }

    /// Why the far end cannot wait for its first connection under systemd, if it cannot:
    /// only a far end that listens (`-d`, `-e`) and only on an address systemd can bind.
    /// The socket unit's `ListenStream=` otherwise.
    pub fn listen_stream(&self) -> Result<String, String> {
        if self.far_mode.is_reverse() {
            return Err("a reverse tunnel keeps connections to its far end open all the time, so the far end would start at once anyway".into());
        }
        match self.source.parse::<Address>() {
            Ok(Address::Ip(addr)) => Ok(addr.to_string()),
            Ok(Address::Unix(path)) => Ok(path.display().to_string()),
            _ => Err(format!(
                "the far end listens on {}, and systemd listens only on an IP address ([0.0.0.0]:8025, [::1]:8025) or a socket path",
                self.source
            )),
        }
    }

    /// The far end's arguments (spiped's and sluiced's are the same), unquoted, with the
    /// key file at `key_path`.
    pub fn args(&self, key_path: &str) -> Vec<String> {
        let target_flag = match self.far_mode {
            Mode::ReverseIn => "-l",
            _ => "-t",
        };
        let source = if self.on_first_connection {
            Address::Systemd(self.slug.clone()).to_string()
        } else {
            self.source.clone()
        };
        let mut args: Vec<String> = vec![
            self.mode_flag().into(),
            "-s".into(),
            source,
            target_flag.into(),
            self.target.clone(),
            "-k".into(),
            key_path.into(),
        ];
        if let Some(flag) = self.forward_secrecy.spiped_flag() {
            args.push(flag.into());
        }
        if self.key_agreement == KeyAgreement::X25519 {
            args.push("--x25519".into());
        }
        if self.previous_key {
            args.push("--previous-key".into());
            args.push(previous_key_path(key_path));
        }
        args
    }
}

/// Where a far end keeps the key being replaced during a rotation, beside its key.
pub fn previous_key_path(key_path: &str) -> String {
    format!("{key_path}.previous")
}

/// Where the far end of an Encrypt tunnel listens: the port the tunnel targets, on every
/// address, unless the tunnel targets a loopback address. Then the far end is reached on
/// its own loopback (an SSH port forward, or the same machine), and listening on every
/// address would only expose it.
fn far_listen_address(target: &str) -> String {
    let parsed = target.parse::<Address>().ok();
    let port = parsed.as_ref().and_then(Address::port).unwrap_or(8025);
    match parsed {
        Some(Address::Ip(addr)) if addr.ip().is_loopback() => Address::Ip(addr).to_string(),
        Some(address @ Address::Host { .. }) if address.is_loopback() => {
            format!("[127.0.0.1]:{port}")
        }
        _ => format!("[0.0.0.0]:{port}"),
    }
}

fn port_of(address: &str) -> Option<u16> {
    address.parse::<Address>().ok().and_then(|a| a.port())
}

/// The listen host if it names one reachable address, else this machine's name.
fn reachable_host(listen: &str, this_host: &str) -> String {
    match listen.parse::<Address>() {
        Ok(Address::Ip(addr)) if !addr.ip().is_unspecified() && !addr.ip().is_loopback() => {
            Address::Ip(addr)
                .to_string()
                .rsplit_once(':')
                .map_or_else(String::new, |(h, _)| h.to_owned())
        }
        Ok(Address::Host { name, .. }) if name != "localhost" => name,
        _ => this_host.to_owned(),
    }
}

/// A tunnel name as a file and unit name: ASCII letters, digits, `.`, `_` and `-` stay,
/// everything else becomes `_`, and a leading `.` or `-` gets a `_` in front, so the name
/// is never hidden or read as an option. A name that had to change gets a short hash of
/// itself appended, so `a b` and `a_b` do not share files.
pub fn far_end_slug(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(['.', '-']) || out.is_empty() {
        out.insert(0, '_');
    }
    if out != name {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(name.as_bytes());
        out.push('-');
        out.push_str(&crate::protocol::key::hex(&digest[..4]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn spec(mode: Mode, listen: &str, target: &str) -> TunnelSpec {
        TunnelSpec::new(
            "redis",
            mode,
            listen,
            target,
            KeyRef::File(PathBuf::from("/home/me/redis.key")),
        )
    }

    #[test]
    fn encrypt_tunnel_gets_a_decrypting_server() {
        let mut s = spec(Mode::Encrypt, "[127.0.0.1]:6379", "db.example.org:8025");
        s.forward_secrecy = ForwardSecrecy::Required;
        let far = default_far_address(&s);
        assert_eq!(far, "[127.0.0.1]:6379");
        let c = far_end_commands(&s, &far, "laptop");
        let spiped = c.spiped.unwrap();
        assert_eq!(
            spiped,
            "spiped -d -s '[0.0.0.0]:8025' -t '[127.0.0.1]:6379' -k redis.key -g"
        );
        assert_eq!(c.sluiced, spiped.replacen("spiped", "sluiced", 1));
        assert!(c.notes.iter().any(|n| n.contains("/home/me/redis.key")));
    }

    #[test]
    fn decrypt_tunnel_gets_an_encrypting_client() {
        let mut s = spec(Mode::Decrypt, "[0.0.0.0]:8025", "[127.0.0.1]:6379");
        s.key = KeyRef::Keychain("redis prod".into());
        s.forward_secrecy = ForwardSecrecy::Disabled;
        let c = far_end_commands(&s, &default_far_address(&s), "server1");
        assert_eq!(
            c.spiped.as_deref(),
            Some("spiped -e -s '[127.0.0.1]:6379' -t server1:8025 -k 'redis prod.key' -f")
        );
        assert!(c.notes.iter().any(|n| n.contains("Export the key")));
    }

    #[test]
    fn a_specific_listen_address_is_used_as_the_host() {
        let s = spec(Mode::Decrypt, "[192.0.2.7]:8025", "[127.0.0.1]:80");
        let c = far_end_commands(&s, "[127.0.0.1]:8080", "server1");
        assert!(c.sluiced.contains("-t '[192.0.2.7]:8025'"), "{}", c.sluiced);
    }

    #[test]
    fn x25519_needs_sluiced_on_the_far_end() {
        let mut s = spec(Mode::Encrypt, "[127.0.0.1]:6379", "db.example.org:8025");
        s.key_agreement = KeyAgreement::X25519;
        let c = far_end_commands(&s, &default_far_address(&s), "laptop");
        assert_eq!(c.spiped, None);
        assert!(c.sluiced.ends_with("--x25519"), "{}", c.sluiced);
    }

    #[test]
    fn a_loopback_target_keeps_the_far_end_on_loopback() {
        let s = spec(Mode::Encrypt, "[127.0.0.1]:6379", "[127.0.0.1]:18025");
        let plan = FarEndPlan::new(&s, "[127.0.0.1]:6379", "laptop");
        assert_eq!(plan.source, "[127.0.0.1]:18025");
        assert_eq!(
            FarEndPlan::new(&spec(Mode::Encrypt, "[::1]:1", "localhost:9"), "x:1", "l").source,
            "[127.0.0.1]:9"
        );
        assert_eq!(
            FarEndPlan::new(&spec(Mode::Encrypt, "[::1]:1", "[::1]:9"), "x:1", "l").source,
            "[::1]:9"
        );
    }

    #[test]
    fn plan_arguments_are_the_commands_words() {
        let mut s = spec(Mode::Encrypt, "[127.0.0.1]:6379", "db.example.org:8025");
        s.key_agreement = KeyAgreement::X25519;
        s.forward_secrecy = ForwardSecrecy::Required;
        let plan = FarEndPlan::new(&s, "[127.0.0.1]:6379", "laptop");
        assert_eq!(plan.far_mode, Mode::Decrypt);
        assert_eq!(plan.key_file_name, "redis.key");
        assert_eq!(
            plan.args("/k/redis.key"),
            [
                "-d",
                "-s",
                "[0.0.0.0]:8025",
                "-t",
                "[127.0.0.1]:6379",
                "-k",
                "/k/redis.key",
                "-g",
                "--x25519"
            ]
        );
        assert!(!plan.spiped_can_serve());
    }

    #[test]
    fn slugs_are_safe_file_names() {
        assert_eq!(far_end_slug("redis"), "redis");
        assert_eq!(far_end_slug("redis-2.prod_x"), "redis-2.prod_x");
        let changed = far_end_slug("redis prod/1");
        assert!(changed.starts_with("redis_prod_1-"), "{changed}");
        assert_eq!(changed.len(), "redis_prod_1-".len() + 8);
        assert_ne!(far_end_slug("a b"), far_end_slug("a_b"));
        assert!(far_end_slug("-x").starts_with("_-x-"));
        assert!(far_end_slug("..").starts_with("_..-"));
        assert!(far_end_slug("").starts_with("_-"));
        assert!(far_end_slug("Ünï").starts_with("_n_-"));
        for name in ["a b", "-x", "..", "", "Ünï", "x/../y"] {
            let s = far_end_slug(name);
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{s}"
            );
            assert!(!s.starts_with(['.', '-']), "{s}");
        }
    }
}
