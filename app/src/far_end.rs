//! The command to run on the other machine so it matches a tunnel: `spiped -d …` for an
//! Encrypt tunnel's server, `spiped -e …` for a Decrypt tunnel's client, and the same line
//! for `sluiced` (its flags are spiped's).

use sluice_engine::{Address, ForwardSecrecy, KeyAgreement, KeyRef, Mode, TunnelSpec};

/// The far end's commands and what the user must know to run them.
#[derive(Clone, Debug, PartialEq)]
pub struct FarEndCommands {
    /// `None` when stock spiped cannot be the far end (the X25519 handshake).
    pub spiped: Option<String>,
    pub sluiced: String,
    pub notes: Vec<String>,
}

/// The address on the far end that the user is asked to confirm: for an Encrypt tunnel
/// the service the far end forwards to, for a Decrypt tunnel where its clients connect.
/// The guess is loopback with the same port, the usual layout.
pub fn default_far_address(spec: &TunnelSpec) -> String {
    let port = match spec.mode {
        Mode::Encrypt => port_of(&spec.listen),
        Mode::Decrypt => port_of(&spec.target),
    };
    format!("[127.0.0.1]:{}", port.unwrap_or(8000))
}

/// What the far address field is for, in words.
pub fn far_address_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Encrypt => "Service on the far end (its spiped -t)",
        Mode::Decrypt => "Where the far end's clients connect (its spiped -s)",
    }
}

/// Builds the far end's command lines. `this_host` is how the far end reaches this
/// machine (used for Decrypt tunnels).
pub fn far_end_commands(spec: &TunnelSpec, far_address: &str, this_host: &str) -> FarEndCommands {
    let mut notes = Vec::new();
    let keyfile = match &spec.key {
        KeyRef::File(path) => {
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            notes.push(format!(
                "Copy the key file {} to the far end (keep it private: chmod 600).",
                path.display()
            ));
            name
        }
        KeyRef::Keychain(entry) => {
            notes.push(format!(
                "Export the key \"{entry}\" (Keys, Export) and copy the file to the far end (keep it private: chmod 600)."
            ));
            format!("{entry}.key")
        }
    };
    let (mode_flag, source, target) = match spec.mode {
        Mode::Encrypt => {
            let port = port_of(&spec.target).unwrap_or(8025);
            ("-d", format!("[0.0.0.0]:{port}"), far_address.to_owned())
        }
        Mode::Decrypt => {
            let port = port_of(&spec.listen).unwrap_or(8025);
            (
                "-e",
                far_address.to_owned(),
                format!("{}:{port}", reachable_host(&spec.listen, this_host)),
            )
        }
    };
    if spec.mode == Mode::Decrypt {
        notes.push(format!(
            "Replace {this_host} if the far end reaches this machine under another name or address."
        ));
    }
    let mut options = String::new();
    if let Some(flag) = spec.forward_secrecy.spiped_flag() {
        options.push(' ');
        options.push_str(flag);
    }
    if spec.key_agreement == KeyAgreement::X25519 {
        options.push_str(" --x25519");
        notes.push(
            "This tunnel uses Sluice's X25519 handshake: the far end must run sluiced with --x25519 (stock spiped cannot speak it).".into(),
        );
    }
    if spec.forward_secrecy == ForwardSecrecy::Required {
        notes.push("This end requires forward secrecy: the far end must not use -f.".into());
    }
    let args = format!(
        "{mode_flag} -s {} -t {} -k {}{options}",
        shell_quote(&source),
        shell_quote(&target),
        shell_quote(&keyfile)
    );
    FarEndCommands {
        spiped: (spec.key_agreement == KeyAgreement::Classic).then(|| format!("spiped {args}")),
        sluiced: format!("sluiced {args}"),
        notes,
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

/// Quotes for a POSIX shell when needed (brackets are glob characters).
fn shell_quote(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain && !word.is_empty() {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
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
}
