//! Export and import of tunnels: a RON file of tunnel definitions without key material.
//! Each tunnel names its key by name and fingerprint; an import finds the key with that
//! fingerprint in this machine's key list, and imports nothing unless every tunnel fits.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sluice_engine::{Config, TunnelSpec};

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

/// A key by its name and fingerprint (`None` if the key was not in the key list; then
/// the name alone finds it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyMention {
    pub name: String,
    pub fingerprint: Option<String>,
}

/// The file's text for these tunnels.
pub fn export(tunnels: &[TunnelSpec], keys: &KeyIndex) -> String {
    let file = TunnelFile {
        version: TUNNEL_FILE_VERSION,
        tunnels: tunnels
            .iter()
            .map(|spec| {
                let known = keys.for_ref(&spec.key);
                let key = KeyMention {
                    name: known.map_or_else(|| key_ref_name(spec), |k| k.name.clone()),
                    fingerprint: known
                        .map(|k| k.fingerprint.clone())
                        .or_else(|| spec.fingerprint.clone()),
                };
                ExportedTunnel {
                    key,
                    tunnel: spec.clone(),
                }
            })
            .collect(),
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

/// Reads an exported file and gives the tunnels as this machine would keep them, or why
/// none can be imported: a key this machine lacks (each named), a name already taken, a
/// tunnel that does not check out next to the existing ones.
pub fn import(
    path: &Path,
    text: &str,
    keys: &KeyIndex,
    existing: &[TunnelSpec],
) -> Result<Vec<TunnelSpec>, TunnelImportError> {
    let file: TunnelFile = ron::from_str(text).map_err(|source| TunnelImportError::Format {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let mut missing = Vec::new();
    let mut imported = Vec::new();
    for exported in file.tunnels {
        let local = match &exported.key.fingerprint {
            Some(fingerprint) => keys.with_fingerprint(fingerprint),
            None => keys.get(&exported.key.name),
        };
        match local {
            Some(info) => {
                let mut spec = exported.tunnel;
                spec.key = info.location.clone();
                spec.fingerprint = Some(info.fingerprint.clone());
                imported.push(spec);
            }
            None => {
                let mention = match &exported.key.fingerprint {
                    Some(f) => format!("\"{}\" (fingerprint {f})", exported.key.name),
                    None => format!("\"{}\"", exported.key.name),
                };
                if !missing.contains(&mention) {
                    missing.push(mention);
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(TunnelImportError::MissingKeys(missing));
    }
    let taken: Vec<String> = imported
        .iter()
        .filter(|t| existing.iter().any(|e| e.name == t.name))
        .map(|t| t.name.clone())
        .collect();
    if !taken.is_empty() {
        return Err(TunnelImportError::NamesTaken(taken));
    }
    let all = Config {
        tunnels: existing.iter().cloned().chain(imported.clone()).collect(),
        ..Config::default()
    };
    all.validate().map_err(TunnelImportError::Invalid)?;
    Ok(imported)
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
        let tunnels = import(Path::new("t.ron"), &text, &there, &[]).unwrap();
        assert_eq!(tunnels.len(), 1);
        assert_eq!(tunnels[0].key, KeyRef::Keychain("from alice".into()));
    }

    #[test]
    fn a_missing_key_is_named_and_nothing_is_imported() {
        let mut here = index("redis prod", "aa:bb");
        here.keys.push(KeyInfo {
            name: "metrics".into(),
            fingerprint: "cc:dd".into(),
            location: KeyRef::Keychain("metrics".into()),
            created_unix: 0,
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
            "the file names keys this machine does not have: \"metrics\" (fingerprint cc:dd)"
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
    }
}
