//! Export and import of tunnels: a RON file of tunnel definitions without key material.
//! An import binds each tunnel to the key of the same fingerprint here, and keeps nothing
//! that acts on its own (autostart, the far-end record); the user confirms what it adds.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_engine::{Address, Config, TunnelSpec};

use crate::error::TunnelImportError;
use crate::keys::KeyIndex;

pub const TUNNEL_FILE_VERSION: u32 = 1;

/// The file: its format version and the tunnels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelFile {
    pub version: u32,
    pub tunnels: Vec<ExportedTunnel>,
}

/// One tunnel and the key it needs. `tunnel.key` is the exporting machine's reference (a
/// keychain entry's name or a key file's path, never the key); an import replaces it with
/// where this machine keeps the key of that fingerprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedTunnel {
    pub key: KeyMention,
    pub tunnel: TunnelSpec,
}

/// A key by its name and fingerprint. The name is for people; an import matches the
/// fingerprint only (a file without one imports nothing: a name alone would bind whatever
/// key happens to carry it here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyMention {
    pub name: String,
    pub fingerprint: Option<String>,
}

/// The file's text for these tunnels.
pub fn export(tunnels: &[TunnelSpec], keys: &KeyIndex) -> String {
    file_text(tunnels.iter().map(|spec| exported(spec, keys)).collect())
}

/// The file's text for one tunnel shared with a teammate: nothing of this machine's
/// (the key named, never a key file's path; no far-end record; it does not start by
/// itself there).
pub fn export_shared(spec: &TunnelSpec, keys: &KeyIndex) -> String {
    let mut shared = exported(spec, keys);
    shared.tunnel.key = sluice_engine::KeyRef::Keychain(shared.key.name.clone());
    shared.tunnel.fingerprint = shared.key.fingerprint.clone();
    shared.tunnel.far_end = None;
    shared.tunnel.autostart = false;
    file_text(vec![shared])
}

/// One tunnel as the file holds it, with the key it needs by name and fingerprint.
fn exported(spec: &TunnelSpec, keys: &KeyIndex) -> ExportedTunnel {
    let known = keys.for_ref(&spec.key);
    let key = KeyMention {
        name: known.map_or_else(|| key_ref_name(spec), |k| k.name.clone()),
        fingerprint: known
            .map(|k| k.fingerprint.clone())
            .or_else(|| spec.fingerprint.clone()),
    };
    // A rotation's previous key is this machine's reference and a passing state: it
    // stays here.
    ExportedTunnel {
        key,
        tunnel: TunnelSpec {
            previous_key: None,
            ..spec.clone()
        },
    }
}

fn file_text(tunnels: Vec<ExportedTunnel>) -> String {
    let file = TunnelFile {
        version: TUNNEL_FILE_VERSION,
        tunnels,
    };
    ron::ser::to_string_pretty(&file, ron::ser::PrettyConfig::new()).unwrap_or_default()
}

fn key_ref_name(spec: &TunnelSpec) -> String {
    match &spec.key {
        sluice_engine::KeyRef::Keychain(name) => name.clone(),
        sluice_engine::KeyRef::File(path) => path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into(),
        ),
    }
}

/// Tunnels of a file, as this machine would keep them, waiting for the user to confirm.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    pub path: PathBuf,
    pub tunnels: Vec<TunnelSpec>,
    /// How many were marked to start by themselves (they are not, once imported).
    pub autostart_dropped: usize,
    /// How many named a far end set up over ssh (the record is not imported).
    pub far_ends_dropped: usize,
}

/// Where an address leads, as the import's confirmation marks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A loopback address or `localhost`: this machine only.
    Loopback,
    /// A UNIX socket: a local service (an ssh agent, a database), or a file created here.
    UnixSocket,
    /// Anything else: other machines (a listen address they can connect to, or a target
    /// elsewhere).
    Network,
}

/// Where an address in spiped's syntax leads. One that does not parse is taken as the
/// network, the case that needs the user's eye.
pub fn reach(address: &str) -> Reach {
    match address.parse::<Address>() {
        Ok(Address::Unix(_)) => Reach::UnixSocket,
        Ok(address) if address.is_loopback() => Reach::Loopback,
        _ => Reach::Network,
    }
}

/// Reads an exported file and gives the tunnels as this machine would keep them, or why
/// none can be imported: a key this machine lacks or a file that names a key without its
/// fingerprint (each named), a name already taken, a tunnel that does not check out next
/// to the existing ones. Imported tunnels never start by themselves and carry no far-end
/// record (which would pre-fill where "Set up" sends the key).
pub fn import(
    path: &Path,
    text: &str,
    keys: &KeyIndex,
    existing: &[TunnelSpec],
) -> Result<Incoming, TunnelImportError> {
    let file: TunnelFile = ron::from_str(text).map_err(|source| TunnelImportError::Format {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    if file.tunnels.is_empty() {
        return Err(TunnelImportError::NoTunnels(path.to_owned()));
    }
    let mut missing = Vec::new();
    let mut incoming = Incoming {
        path: path.to_owned(),
        tunnels: Vec::new(),
        autostart_dropped: 0,
        far_ends_dropped: 0,
    };
    for exported in file.tunnels {
        let name = shortened(&exported.key.name);
        let local = match &exported.key.fingerprint {
            Some(fingerprint) => keys
                .with_fingerprint(fingerprint)
                .ok_or_else(|| format!("\"{name}\" (fingerprint {})", shortened(fingerprint))),
            None => Err(format!(
                "\"{name}\" (the file gives no fingerprint, and keys are matched by fingerprint only)"
            )),
        };
        match local {
            Ok(info) => {
                let mut spec = exported.tunnel;
                spec.key = info.location.clone();
                // Another machine's reference, never meant for this one.
                spec.previous_key = None;
                spec.fingerprint = Some(info.fingerprint.clone());
                if std::mem::take(&mut spec.autostart) {
                    incoming.autostart_dropped += 1;
                }
                if spec.far_end.take().is_some() {
                    incoming.far_ends_dropped += 1;
                }
                incoming.tunnels.push(spec);
            }
            Err(mention) => {
                if !missing.contains(&mention) {
                    missing.push(mention);
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(TunnelImportError::MissingKeys(missing));
    }
    fits(&incoming.tunnels, existing)?;
    Ok(incoming)
}

/// Whether these tunnels can join the existing ones: no name taken, and all of them
/// together check out (addresses, listen ports, each tunnel's rules).
pub fn fits(tunnels: &[TunnelSpec], existing: &[TunnelSpec]) -> Result<(), TunnelImportError> {
    let taken: Vec<String> = tunnels
        .iter()
        .filter(|t| existing.iter().any(|e| e.name == t.name))
        .map(|t| t.name.clone())
        .collect();
    if !taken.is_empty() {
        return Err(TunnelImportError::NamesTaken(taken));
    }
    let all = Config {
        tunnels: existing.iter().chain(tunnels).cloned().collect(),
        ..Config::default()
    };
    all.validate().map_err(TunnelImportError::Invalid)
}

/// Text from the file as a message quotes it: at most 64 characters, no control
/// characters, so a hostile file cannot flood or reshape the notice.
fn shortened(text: &str) -> String {
    const MOST: usize = 64;
    let mut short: String = text
        .chars()
        .take(MOST)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MOST {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyInfo;
    use sluice_engine::{KeyRef, Mode};

    fn index(name: &str, fingerprint: &str) -> KeyIndex {
        let mut keys = KeyIndex::new();
        keys.keys.push(KeyInfo {
            name: name.into(),
            fingerprint: fingerprint.into(),
            location: KeyRef::Keychain(name.into()),
            created_unix: 0,
            rotate_after_days: None,
        });
        keys
    }

    fn spec(name: &str, port: u16, key: &str) -> TunnelSpec {
        TunnelSpec::new(
            name,
            Mode::Encrypt,
            format!("[127.0.0.1]:{port}"),
            "[127.0.0.1]:8025",
            KeyRef::Keychain(key.into()),
        )
    }

    #[test]
    fn a_round_trip_finds_the_key_by_fingerprint_under_another_name() {
        let here = index("redis prod", "aa:bb");
        let text = export(&[spec("redis", 16379, "redis prod")], &here);
        assert!(text.contains("aa:bb") && !text.contains("secret"));
        let there = index("from alice", "aa:bb");
        let tunnels = import(Path::new("t.ron"), &text, &there, &[])
            .unwrap()
            .tunnels;
        assert_eq!(tunnels.len(), 1);
        assert_eq!(tunnels[0].key, KeyRef::Keychain("from alice".into()));
    }

    #[test]
    fn a_rotations_previous_key_stays_on_this_machine() {
        let here = index("new", "aa:bb");
        let mut server = spec("svc", 16379, "new");
        server.mode = Mode::Decrypt;
        server.previous_key = Some(KeyRef::File("/home/me/old-secret.key".into()));
        let text = export(&[server.clone()], &here);
        assert!(
            !text.contains("old-secret") && !text.contains("previous_key"),
            "{text}"
        );
        // A file written elsewhere with a previous key brings no reference in either.
        let mut file: TunnelFile = ron::from_str(&text).unwrap();
        file.tunnels[0].tunnel.previous_key = Some(KeyRef::File("/tmp/planted.key".into()));
        let text = ron::ser::to_string(&file).unwrap();
        let tunnels = import(Path::new("t.ron"), &text, &here, &[])
            .unwrap()
            .tunnels;
        assert_eq!(tunnels[0].previous_key, None);
    }

    #[test]
    fn a_missing_key_is_named_and_nothing_is_imported() {
        let mut here = index("redis prod", "aa:bb");
        here.keys.push(KeyInfo {
            name: "metrics".into(),
            fingerprint: "cc:dd".into(),
            location: KeyRef::Keychain("metrics".into()),
            created_unix: 0,
            rotate_after_days: None,
        });
        let text = export(
            &[
                spec("redis", 16379, "redis prod"),
                spec("m", 16380, "metrics"),
            ],
            &here,
        );
        let there = index("redis prod", "aa:bb");
        let error = import(Path::new("t.ron"), &text, &there, &[]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the file names keys this machine does not have: \"metrics\" (fingerprint cc:dd); import those keys first (Keys, Import), then the tunnels"
        );
    }

    /// What a hostile file would plant: a tunnel that starts by itself, listens on every
    /// interface and forwards to a local UNIX socket, with a far-end record that pre-fills
    /// where "Set up" sends the key.
    const PLANTED: &str = r#"(
        version: 1,
        tunnels: [(
            key: (name: "shared", fingerprint: Some("aa:bb")),
            tunnel: (
                name: "agent",
                mode: Decrypt,
                listen: "[0.0.0.0]:16022",
                target: "/run/user/1000/ssh-agent.socket",
                key: File("/home/attacker/k.key"),
                autostart: true,
                far_end: Some((ssh: "attacker@evil.example", far_address: "[127.0.0.1]:22")),
            ),
        )],
    )"#;

    #[test]
    fn an_import_starts_nothing_by_itself_and_forgets_the_far_end() {
        let keys = index("mine", "aa:bb");
        let incoming = import(Path::new("t.ron"), PLANTED, &keys, &[]).unwrap();
        let [spec] = incoming.tunnels.as_slice() else {
            panic!("{incoming:?}");
        };
        assert!(!spec.autostart, "autostart is off");
        assert_eq!(spec.far_end, None, "the far-end record is dropped");
        assert_eq!(
            spec.key,
            KeyRef::Keychain("mine".into()),
            "bound by fingerprint"
        );
        assert_eq!(spec.fingerprint.as_deref(), Some("aa:bb"));
        assert_eq!(
            (incoming.autostart_dropped, incoming.far_ends_dropped),
            (1, 1)
        );
        // The confirmation marks where it listens and sends.
        assert_eq!(reach(&spec.listen), Reach::Network);
        assert_eq!(reach(&spec.target), Reach::UnixSocket);
        assert_eq!(reach("[127.0.0.1]:1"), Reach::Loopback);
        assert_eq!(reach("[::1]:1"), Reach::Loopback);
        assert_eq!(reach("localhost:1"), Reach::Loopback);
        assert_eq!(reach("db.example:1"), Reach::Network);
    }

    #[test]
    fn a_key_without_a_fingerprint_is_not_bound_by_its_name() {
        let keys = index("shared", "aa:bb");
        let text = PLANTED.replace(r#"Some("aa:bb")"#, "None");
        let error = import(Path::new("t.ron"), &text, &keys, &[]).unwrap_err();
        assert!(
            matches!(error, TunnelImportError::MissingKeys(_)),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("\"shared\" (the file gives no fingerprint"),
            "{message}"
        );
        // An unknown fingerprint is refused the same way, and hostile text is tamed.
        let long = format!("{}\n{}", "x".repeat(100), "y");
        let text = PLANTED
            .replace(r#"Some("aa:bb")"#, r#"Some("cc:dd")"#)
            .replace(r#"name: "shared""#, &format!("name: {long:?}"));
        let message = import(Path::new("t.ron"), &text, &keys, &[])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&format!("\"{}…\"", "x".repeat(64))),
            "{message}"
        );
        assert!(
            !message.contains('\n') && message.contains("cc:dd"),
            "{message}"
        );
    }

    #[test]
    fn a_taken_name_or_port_imports_nothing() {
        let keys = index("k", "aa:bb");
        let text = export(&[spec("redis", 16379, "k")], &keys);
        let taken = import(Path::new("t"), &text, &keys, &[spec("redis", 1, "k")]);
        assert!(matches!(taken, Err(TunnelImportError::NamesTaken(_))));
        let clash = import(Path::new("t"), &text, &keys, &[spec("other", 16379, "k")]);
        assert!(
            matches!(clash, Err(TunnelImportError::Invalid(_))),
            "{clash:?}"
        );
        let garbage = import(Path::new("t"), "(version: 1, tunnels: [(", &keys, &[]);
        assert!(matches!(garbage, Err(TunnelImportError::Format { .. })));
        let empty = import(Path::new("t"), "(version: 1, tunnels: [])", &keys, &[]);
        assert!(matches!(empty, Err(TunnelImportError::NoTunnels(_))));
    }
}
