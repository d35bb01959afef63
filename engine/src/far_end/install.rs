//! This machine's `sluiced`, which set-up copies to a far end that needs sluiced (a
//! reverse tunnel, the X25519 handshake, a start on first connection) and has none: only
//! to a far end of the same system and processor, into the far-end user's Sluice
//! directory, one copy per tunnel, listed in its manifest like everything set-up makes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A `sluiced` on this machine that set-up may copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSluiced {
    pub path: PathBuf,
    /// The first line of its `-v`, which the copy must repeat on the far end.
    pub version: String,
}

impl LocalSluiced {
    /// The program at `path`, if it runs here and says it is sluiced; why not, otherwise.
    pub fn at(path: &Path) -> Result<LocalSluiced, String> {
        let out = Command::new(path)
            .arg("-v")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        // sluiced, like spiped, prints its version on standard error.
        let said = String::from_utf8_lossy(if out.stderr.is_empty() {
            &out.stdout
        } else {
            &out.stderr
        })
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
        if !out.status.success() || !said.starts_with("sluiced ") {
            return Err(format!(
                "{} -v said {said:?}, not a sluiced version",
                path.display()
            ));
        }
        Ok(LocalSluiced {
            path: path.to_owned(),
            version: said,
        })
    }

    /// The `sluiced` beside the running program (the package installs the app and
    /// sluiced side by side), or the running program itself if that is sluiced.
    pub fn beside_this_program() -> Option<LocalSluiced> {
        let exe = std::env::current_exe().ok()?;
        let name = format!("sluiced{}", std::env::consts::EXE_SUFFIX);
        let path = if exe.file_name().is_some_and(|n| *n == *name) {
            exe
        } else {
            exe.parent()?.join(name)
        };
        LocalSluiced::at(&path).ok()
    }

    /// Whether the far end runs this machine's programs: Linux on the same processor
    /// (`uname -s` and `-m`, as the probe read them). Its C library is not known until the
    /// copy runs there, which install checks.
    pub fn runs_on(&self, kernel: &str, machine: &str) -> bool {
        let same_processor = match std::env::consts::ARCH {
            "aarch64" => ["aarch64", "arm64"].contains(&machine),
            "x86_64" => ["x86_64", "amd64"].contains(&machine),
            ours => ours == machine,
        };
        cfg!(target_os = "linux") && kernel == "Linux" && same_processor
    }
}

/// This machine's system and processor, as the far end's `uname -s` and `-m` would say
/// them, for messages.
pub fn this_platform() -> String {
    format!("{} {}", std::env::consts::OS, std::env::consts::ARCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_goes_only_to_the_same_system_and_processor() {
        let local = LocalSluiced {
            path: "/usr/bin/sluiced".into(),
            version: "sluiced 0.1.0 (spiped 1.6 protocol)".into(),
        };
        let here = std::env::consts::ARCH;
        let linux = cfg!(target_os = "linux");
        assert_eq!(local.runs_on("Linux", here), linux);
        assert!(!local.runs_on("Darwin", here));
        assert!(!local.runs_on("Linux", "riscv64"));
        assert!(!local.runs_on("", ""));
    }

    #[test]
    fn something_that_is_not_sluiced_is_not_taken_for_it() {
        let missing = LocalSluiced::at(Path::new("/nonexistent/sluiced")).unwrap_err();
        assert!(
            missing.contains("cannot run /nonexistent/sluiced"),
            "{missing}"
        );
    }
}
