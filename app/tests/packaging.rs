//! Packaging, run by `cargo test` through the installers' own scripts: the Debian package
//! is built from release binaries, unpacked into a throwaway root and checked
//! (installers/linux/test-deb), and the macOS bundle and Windows installer definitions,
//! which only build on their own systems, are linted here (installers/lint). Each script
//! prints one line per check; a failing test shows them all.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the app crate sits in the workspace")
        .to_path_buf()
}

/// Runs an installer script from the repository root; panics with its output on failure.
fn run_script(script: &str, args: &[&OsStr], envs: &[(&str, &Path)]) {
    let mut command = Command::new(repo().join(script));
    command
        .args(args)
        .current_dir(repo())
        .env("CARGO", env!("CARGO"));
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
    if !sluice_testkit::require(
        sluice_testkit::have_program("dpkg-deb"),
        "dpkg-deb",
        "apt install dpkg-dev (scripts/install-test-deps)",
    ) {
        return;
    }
    // The package is made from this test run's own (debug) builds rather than a release
    // build of its own, which would take minutes: what is checked is the packaging, and
    // the binaries behave the same. sluiced is brought up to date first (the outer `cargo
    // test` holds no build lock while tests run), for a run of this crate's tests alone,
    // with the whole workspace's test selection: after `cargo test --workspace` that builds
    // nothing, where any narrower selection would resolve other features and build sluiced
    // and its dependencies again.
    let built = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args(["test", "--workspace", "--locked", "--no-run"])
        .status()
        .expect("run cargo test --no-run");
    assert!(built.success(), "cargo test --workspace --no-run failed");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sluice"))
        .parent()
        .expect("the binary is in a directory");
    run_script(
        "installers/linux/test-deb",
        &["--binaries".as_ref(), bin_dir.as_os_str()],
        &[],
    );
}

#[test]
fn the_macos_and_windows_installers_are_well_formed() {
    if !sluice_testkit::require(
        sluice_testkit::have_program("python3"),
        "python3",
        "apt install python3 (scripts/install-test-deps)",
    ) {
        return;
    }
    // build-app.sh lays out the bundle around any sluice binary: this test's own.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sluice"))
        .parent()
        .expect("the binary is in a folder");
    run_script("installers/lint", &[], &[("SLUICE_BIN_DIR", bin_dir)]);
}
