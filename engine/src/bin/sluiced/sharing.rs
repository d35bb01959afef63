//! `--seal-key` and `--unseal-key`: a key sealed into an age file with a generated
//! passphrase for a teammate, and such a bundle (or one made with `age -p`) opened into a
//! new key file. Every check comes before any write, so nothing is written on an error.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sluice_engine::{
    BundleFileError, KeyfileError, LoadedKey, Passphrase, PassphraseError, SealError, UnsealError,
    check_bundle, loaded_from_bytes, read_bundle, read_key_bytes_from, read_keyfile_with_bytes,
    seal_key, unseal_key, write_new_bundle, write_new_keyfile,
};
use zeroize::Zeroizing;

/// The longest passphrase line read from standard input: generated ones are under 60
/// bytes; the bound keeps a wrong redirection (a large file) from being read whole.
const MAX_PASSPHRASE_LINE: usize = 1024;

/// Why sealing or unsealing stopped; each says what to do, none shows a secret.
#[derive(Debug, thiserror::Error)]
enum SharingError {
    #[error(transparent)]
    Keyfile(#[from] KeyfileError),
    #[error(transparent)]
    BundleFile(#[from] BundleFileError),
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    #[error("{0}")]
    Seal(#[from] SealError),
    #[error("cannot open bundle {}: {source}", .path.display())]
    Unseal { path: PathBuf, source: UnsealError },
    #[error("{0}")]
    Input(#[from] PassphraseInputError),
    #[error(
        "the passphrase could not be printed ({0}), and a bundle nobody can open is no use: it was removed again; seal again with standard output going somewhere that can be read"
    )]
    NotShown(std::io::Error),
}

/// Why no passphrase was read.
#[derive(Debug, thiserror::Error)]
enum PassphraseInputError {
    #[error(
        "no passphrase: give it on standard input as one line (e.g. sluiced --unseal-key B --out K < passphrase.txt), or run sluiced in a terminal to be asked for it"
    )]
    Empty,
    #[error(
        "the passphrase line on standard input is longer than {MAX_PASSPHRASE_LINE} bytes: give only the passphrase, on one line"
    )]
    TooLong,
    #[error("the passphrase on standard input is not UTF-8 text: give the words as they were sent")]
    NotText,
    #[error("cannot read the passphrase: {0}")]
    Io(std::io::Error),
}

/// `--seal-key KEY --out BUNDLE`.
pub fn seal(key: &Path, out: &Path) -> ExitCode {
    report(seal_to(key, out))
}

/// `--unseal-key BUNDLE --out KEY`.
pub fn unseal(bundle: &Path, out: &Path) -> ExitCode {
    report(unseal_to(bundle, out))
}

fn report(result: Result<(), SharingError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluiced: {e}");
            ExitCode::FAILURE
        }
    }
}

fn seal_to(key: &Path, out: &Path) -> Result<(), SharingError> {
    // Before anything is read or asked: a bundle is never written over a file.
    if exists(out) {
        return Err(BundleFileError::AlreadyExists(out.to_owned()).into());
    }
    let (bytes, loaded) = if key == Path::new("-") {
        read_key_bytes_from(std::io::stdin().lock())?
    } else {
        read_keyfile_with_bytes(key)?
    };
    let label = key_label(key);
    warn(&label, &loaded);
    let passphrase = Passphrase::generate()?;
    let bundle = seal_key(&bytes, &passphrase)?;
    write_new_bundle(out, &bundle)?;
    eprintln!(
        "sluiced: sealed {label} (fingerprint {}) into {}, a standard age file; this passphrase opens it (sluiced --unseal-key, or age -d):",
        loaded.key.fingerprint(),
        out.display()
    );
    // The passphrase alone on standard output, so a script can take it; shown this once
    // and stored nowhere.
    let mut stdout = std::io::stdout().lock();
    let shown = writeln!(stdout, "{}", passphrase.reveal()).and_then(|()| stdout.flush());
    if let Err(e) = shown {
        // This process made the file a moment ago; nobody else has seen it.
        let _ = std::fs::remove_file(out);
        return Err(SharingError::NotShown(e));
    }
    eprintln!(
        "sluiced: send the passphrase by another channel than the bundle (read it out on a call, or use a different messenger): anyone with both has the key"
    );
    Ok(())
}

fn unseal_to(bundle_path: &Path, out: &Path) -> Result<(), SharingError> {
    if exists(out) {
        return Err(KeyfileError::AlreadyExists(out.to_owned()).into());
    }
    let bundle = read_bundle(bundle_path)?;
    let unseal_error = |source| SharingError::Unseal {
        path: bundle_path.to_owned(),
        source,
    };
    // What can be told without the passphrase (not an age file, another recipient type,
    // a hostile work factor) is told before asking for it.
    check_bundle(&bundle).map_err(unseal_error)?;
    let passphrase = read_passphrase(bundle_path)?;
    let key = unseal_key(&bundle, &passphrase).map_err(unseal_error)?;
    drop(passphrase);
    // unseal_key refuses an empty key; this is the hash and the warnings (a short key).
    let loaded = loaded_from_bytes(&key).map_err(|_| unseal_error(UnsealError::EmptyKey))?;
    write_new_keyfile(out, &key)?;
    warn(&format!("the key in {}", bundle_path.display()), &loaded);
    println!("wrote the key to {} (mode 0600)", out.display());
    println!("fingerprint {}", loaded.key.fingerprint());
    Ok(())
}

/// The passphrase: asked for on the terminal without echo when standard input is one,
/// otherwise the first line of standard input (its line ending removed, nothing else:
/// spaces are part of a passphrase).
fn read_passphrase(bundle: &Path) -> Result<Zeroizing<String>, PassphraseInputError> {
    let stdin = std::io::stdin();
    let text = if stdin.is_terminal() {
        let prompt = format!("passphrase for {}: ", bundle.display());
        Zeroizing::new(rpassword::prompt_password(prompt).map_err(PassphraseInputError::Io)?)
    } else {
        read_line(stdin.lock())?
    };
    if text.is_empty() {
        return Err(PassphraseInputError::Empty);
    }
    Ok(text)
}

/// One line of at most [`MAX_PASSPHRASE_LINE`] bytes, into buffers sized once (growing
/// would leave unwiped copies of the passphrase behind).
fn read_line(reader: impl BufRead) -> Result<Zeroizing<String>, PassphraseInputError> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_LINE + 2));
    reader
        .take(MAX_PASSPHRASE_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(PassphraseInputError::Io)?;
    let mut end = line.len();
    if line.ends_with(b"\n") {
        end -= 1;
        if line[..end].ends_with(b"\r") {
            end -= 1;
        }
    } else if end > MAX_PASSPHRASE_LINE {
        return Err(PassphraseInputError::TooLong);
    }
    let text = std::str::from_utf8(&line[..end]).map_err(|_| PassphraseInputError::NotText)?;
    let mut passphrase = Zeroizing::new(String::with_capacity(text.len()));
    passphrase.push_str(text);
    Ok(passphrase)
}

/// Whether anything (a dangling link included) is at `path`.
fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

fn key_label(path: &Path) -> String {
    if path == Path::new("-") {
        "the key from standard input".to_owned()
    } else {
        format!("key file {}", path.display())
    }
}

fn warn(label: &str, loaded: &LoadedKey) {
    for warning in &loaded.warnings {
        eprintln!("sluiced: warning: {label}: {warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_read_and_only_its_ending_removed() {
        let read = |input: &[u8]| read_line(input).map(|p| p.as_str().to_owned());
        assert_eq!(read(b"alpha-beta\n").unwrap(), "alpha-beta");
        assert_eq!(read(b"alpha-beta\r\nsecond line\n").unwrap(), "alpha-beta");
        assert_eq!(read(b"no newline").unwrap(), "no newline");
        assert_eq!(read(b" spaced \n").unwrap(), " spaced ");
        assert_eq!(read(b"\n").unwrap(), "");
        let long = vec![b'a'; MAX_PASSPHRASE_LINE];
        assert_eq!(read(&long).unwrap().len(), MAX_PASSPHRASE_LINE);
        let longer = vec![b'a'; MAX_PASSPHRASE_LINE + 1];
        assert!(matches!(read(&longer), Err(PassphraseInputError::TooLong)));
        assert!(matches!(
            read(b"\xff\xfe\n"),
            Err(PassphraseInputError::NotText)
        ));
    }
}
