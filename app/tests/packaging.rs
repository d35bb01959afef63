//! Packaging, run by `cargo test` through the installers' own scripts: the Debian package
//! is built from release binaries, unpacked into a throwaway root and checked
//! (installers/linux/test-deb), and the macOS bundle and Windows installer definitions,
//! which only build on their own systems, are linted here (installers/lint). Each script
//! prints one line per check; a failing test shows them all.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the app crate sits in the workspace")
        .to_path_buf()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs an installer script from the repository root; panics with its output on failure.
fn run_script(script: &str, envs: &[(&str, &Path)]) {
    let mut command = Command::new(repo().join(script));
    command.current_dir(repo()).env("CARGO", env!("CARGO"));
    for (name, value) in envs {
        command.env(name, value);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{report}");
    // Shown with --nocapture: the per-check lines and the script's closing total.
    println!("{report}");
}

#[test]
fn the_debian_package_builds_installs_and_runs() {
    if !have("dpkg-deb") {
        eprintln!("skipped: dpkg-deb is missing (not a Debian or Ubuntu machine)");
        return;
    }
    // Builds the release binaries itself (cargo build --release --locked): the outer
    // `cargo test` holds no build lock while tests run.
    run_script("installers/linux/test-deb", &[]);
}

#[test]
fn the_macos_and_windows_installers_are_well_formed() {
    if !have("python3") {
        eprintln!("skipped: python3 is missing");
        return;
    }
    // build-app.sh lays out the bundle around any sluice binary: this test's own.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sluice"))
        .parent()
        .expect("the binary is in a folder");
    run_script("installers/lint", &[("SLUICE_BIN_DIR", bin_dir)]);
}
