//! Bad input wherever a user types or a file is read, through the real sluiced binary:
//! addresses, ports, option values, config files (wrong version, unknown field, duplicate
//! names, truncated, empty, missing) and key files (missing, a directory, a dangling
//! link, unreadable). Each must fail with exit status 1 and a message naming what is wrong
//! and where (the option, the file, the line, the tunnel and field), and leave files as
//! they were.

// Unix only: these tests drive real processes (spiped, sluiced) through the test kit,
// with signals, UNIX sockets and /proc. Windows runs scripts/wine-interop instead.
#![cfg(unix)]

mod support;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Runs sluiced with `args` to its end. One that is still running after 30 s took the
/// bad input and is serving with it: it is killed, and the test fails saying so (rather
/// than hanging).
fn sluiced_output(args: &[&str]) -> Output {
    let mut child = Command::new(SLUICED)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluiced");
    // Read both pipes meanwhile, so a long message cannot block sluiced on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut bytes).expect("read sluiced's output");
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for sluiced") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{args:?} was accepted: sluiced was still running after 30 s:\n{}",
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs sluiced with `args`; it must exit 1 with every `needle` in its standard error.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let out = sluiced_output(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} was accepted:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: the message should contain {needle:?}:\n{stderr}"
        );
    }
    stderr
}

#[test]
fn bad_addresses_ports_and_option_values_name_the_option_and_value() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let key = key.to_str().unwrap();
    let run = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["-F", "-k", key];
        args.extend_from_slice(extra);
        refused(&args, needles)
    };
    let t = "[127.0.0.1]:1";
    let s = "[127.0.0.1]:2";
    let mut cases = 0;
    for (extra, needles) in [
        // Addresses and ports.
        (
            vec!["-e", "-s", "nowhere", "-t", t],
            vec!["-s:", "\"nowhere\" has no port"],
        ),
        (
            vec!["-e", "-s", "[127.0.0.1]:99999", "-t", t],
            vec!["-s:", "bad port", "1 to 65535"],
        ),
        (
            vec!["-e", "-s", "[127.0.0.1]:0", "-t", t],
            vec!["-s:", "bad port"],
        ),
        (
            vec!["-e", "-s", "[127.0.0.1]:http", "-t", t],
            vec!["-s:", "bad port"],
        ),
        (
            vec!["-e", "-s", s, "-t", "::1:80"],
            vec!["-t:", "without brackets"],
        ),
        (
            vec!["-d", "-s", "sock/relative", "-t", t],
            vec!["-s:", "relative path"],
        ),
        (
            vec!["-e", "-s", "[1.2.3.400]:80", "-t", t],
            vec!["-s:", "not a valid IP address"],
        ),
        (
            vec!["-e", "-s", "bad host:80", "-t", t],
            vec!["-s:", "not a valid host name"],
        ),
        (vec!["-e", "-s", ":80", "-t", t], vec!["-s:", "has no host"]),
        (
            vec!["-e", "-s", "", "-t", t],
            vec!["-s:", "the address is empty"],
        ),
        (
            vec!["-e", "-s", s, "-t", "8025"],
            vec!["-t:", "has no host"],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-b", "/tmp/x.sock"],
            vec!["-b:", "UNIX socket path"],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-b", "[::1]:x"],
            vec!["-b:", "bad port"],
        ),
        // Option values.
        (
            vec!["-e", "-s", s, "-t", t, "-o", "abc"],
            vec!["-o \"abc\"", "number of seconds"],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-o", "-1"],
            vec!["-o \"-1\"", "between 0 and 86400"],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-o", "86401"],
            vec!["-o \"86401\""],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-o", "nan"],
            vec!["-o \"nan\""],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-o", "inf"],
            vec!["-o \"inf\""],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-n", "-1"],
            vec!["-n \"-1\"", "whole number"],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-n", "1.5"],
            vec!["-n \"1.5\"", "whole number"],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-n", "99999999999"],
            vec!["-n \"99999999999\""],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-r", "0"],
            vec!["-r \"0\"", "at least 1"],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-r", "soon"],
            vec!["-r \"soon\""],
        ),
        // Shape of the command line.
        (vec!["-e", "-s", s, "-t"], vec!["option -t needs a value"]),
        (
            vec!["-e", "-s", s, "-s", s, "-t", t],
            vec!["option -s given more than once"],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "-f", "-g"],
            vec!["-f", "-g", "contradict"],
        ),
        (
            vec!["-e", "-s", s, "-t", t, "--colour"],
            vec!["unknown option --colour"],
        ),
        (vec!["-x"], vec!["unknown option -x"]),
    ] {
        let stderr = run(&extra, &needles);
        // The usage follows the message, so the fix is at hand.
        assert!(
            stderr.contains("usage: sluiced"),
            "{extra:?}: no usage:\n{stderr}"
        );
        cases += 1;
    }
    // --spipe takes addresses through the same checks.
    refused(
        &["--spipe", "-t", "nowhere", "-k", key],
        &["-t:", "has no port"],
    );
    eprintln!(
        "{} bad command lines refused with a message naming the option",
        cases + 1
    );
}

#[test]
fn bad_key_files_name_the_file_and_the_problem() {
    let dir = temp_dir();
    let d = dir.path();
    let listen = free_addr(LOCALHOST_V4).spiped();
    let run = |key: &Path, needles: &[&str]| {
        let key_s = key.to_str().unwrap();
        let mut all = vec![key_s];
        all.extend_from_slice(needles);
        refused(
            &[
                "-d",
                "-F",
                "-s",
                &listen,
                "-t",
                "[127.0.0.1]:1",
                "-k",
                key_s,
            ],
            &all,
        );
        // The key tools say the same.
        refused(&["--fingerprint", key_s], &all);
    };
    run(
        &d.join("missing.key"),
        &["does not exist", "--generate-key"],
    );
    run(d, &["is a directory"]);
    run(
        &write_key(d, "empty.key", b""),
        &["is empty", "never uses an empty key", "--generate-key"],
    );
    let link = d.join("link.key");
    std::os::unix::fs::symlink(d.join("gone.key"), &link).unwrap();
    run(&link, &["symbolic link", "gone.key", "does not exist"]);

    // Unreadable: root reads any file whatever its mode, so read as an unprivileged user
    // (nobody) a key inside a directory only root may enter.
    let private = d.join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let key = random_key(&private, "key");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            SLUICED,
            "--fingerprint",
        ])
        .arg(&key)
        .output();
    let ran = out
        .as_ref()
        .is_ok_and(|o| !String::from_utf8_lossy(&o.stderr).contains("setpriv"));
    if require(
        is_root() && ran,
        "root and setpriv (to read a key as nobody)",
        "run the tests as root; setpriv is in util-linux",
    ) {
        let out = out.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("permission denied for key file")
                && stderr.contains(key.to_str().unwrap()),
            "{stderr}"
        );
    }
    // A key file that cannot be created: its directory is missing.
    refused(
        &["--generate-key", d.join("no/dir/k").to_str().unwrap()],
        &["no/dir/k", "directory", "does not exist"],
    );
}

/// spiped accepts an empty key file (K = SHA-256 of nothing, which everyone knows); Sluice
/// refuses one from every source, in every mode, naming where it came from.
#[test]
fn an_empty_key_is_never_used_in_any_mode() {
    let dir = temp_dir();
    let d = dir.path();
    let empty = write_key(d, "empty.key", b"");
    let empty_s = empty.to_str().unwrap();
    let listen = free_addr(LOCALHOST_V4).spiped();
    let target = "[127.0.0.1]:1";
    for key in [empty_s, "/dev/null"] {
        for mode in ["-d", "-e"] {
            refused(
                &[mode, "-F", "-s", &listen, "-t", target, "-k", key],
                &[key, "is empty", "never uses an empty key"],
            );
        }
        refused(&["--spipe", "-t", target, "-k", key], &[key, "is empty"]);
    }
    // `-k -` with nothing on standard input.
    let out = Command::new(SLUICED)
        .args(["-d", "-F", "-s", &listen, "-t", target, "-k", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the key from standard input is empty"),
        "{stderr}"
    );

    // In a config file: an empty key file, and standard input (which a reload or a second
    // tunnel could not read again), for a start and for --check-config alike.
    let tunnel = |name: &str, key: &str| {
        format!(
            "(name: {name:?}, mode: Decrypt, listen: {:?}, target: {target:?}, key: File({key:?}))",
            free_addr(LOCALHOST_V4).spiped()
        )
    };
    for (what, tunnels, needles) in [
        (
            "empty-key-file",
            vec![tunnel("e", empty_s)],
            vec![format!("tunnel \"e\": key: key file {empty_s} is empty")],
        ),
        (
            "stdin-twice",
            vec![tunnel("a", "-"), tunnel("b", "-")],
            vec![
                "tunnel \"a\": key: File(\"-\") (standard input) cannot be used in a config file"
                    .to_owned(),
                "tunnel \"b\": key: File(\"-\") (standard input) cannot be used in a config file"
                    .to_owned(),
            ],
        ),
    ] {
        let path = d.join(format!("{what}.ron"));
        fs::write(
            &path,
            format!("(version: 1, tunnels: [{}])", tunnels.join(", ")),
        )
        .unwrap();
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let path_s = path.to_str().unwrap();
        refused(&["-F", "--config", path_s], &needles);
        refused(&["--check-config", path_s], &needles);
    }
}

#[test]
fn bad_config_files_name_the_file_line_tunnel_and_field_and_are_left_alone() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let tunnel = |name: &str, extra: &str| {
        format!(
            "(name: {name:?}, mode: Decrypt, listen: {:?}, target: \"[127.0.0.1]:1\", key: File({:?}){extra})",
            free_addr(LOCALHOST_V4).spiped(),
            key.display().to_string()
        )
    };
    let config = |tunnels: &[String]| {
        format!(
            "(\n    version: 1,\n    tunnels: [\n        {},\n    ],\n)\n",
            tunnels.join(",\n        ")
        )
    };
    let good = config(&[tunnel("a", "")]);
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "newer version",
            good.replace("version: 1", "version: 2"),
            vec!["written by a newer Sluice (version 2)".into()],
        ),
        (
            "bogus version",
            good.replace("version: 1", "version: 0"),
            vec!["version 0 is not one Sluice ever wrote".into()],
        ),
        (
            "unknown field",
            config(&[tunnel("a", ", colour: \"red\"")]),
            vec![":4:".into(), "colour".into()],
        ),
        (
            "duplicate names",
            config(&[tunnel("a", ""), tunnel("a", "")]),
            vec!["two tunnels are named \"a\"".into()],
        ),
        (
            "truncated",
            good[..good.len() / 2].to_owned(),
            vec![":".into(), "fix the file at that spot".into()],
        ),
        (
            "empty",
            String::new(),
            vec![":1:1: the file is empty".into()],
        ),
        (
            "no tunnels",
            "(version: 1)".into(),
            vec!["defines no tunnels".into()],
        ),
        (
            "bad field",
            config(&[tunnel("b", ", timeout_secs: -2.0")]),
            vec!["tunnel \"b\": timeout_secs:".into(), "negative".into()],
        ),
        (
            "bad address",
            config(&[tunnel("c", "").replace("[127.0.0.1]:1", "nowhere")]),
            vec!["tunnel \"c\": target:".into(), "no port".into()],
        ),
        (
            "keychain key",
            config(&[tunnel("k", "").replace(
                &format!("File({:?})", key.display().to_string()),
                "Keychain(\"k\")",
            )]),
            vec![
                "tunnel \"k\": key:".into(),
                "keychain".into(),
                "export the key".into(),
            ],
        ),
        (
            "missing key file",
            config(&[tunnel("m", "").replace(key.to_str().unwrap(), "/nonexistent/k")]),
            vec![
                "tunnel \"m\": key:".into(),
                "/nonexistent/k does not exist".into(),
            ],
        ),
        (
            "binary garbage",
            String::from_utf8_lossy(&test_data(300, 1)).into_owned(),
            vec![":".into()],
        ),
    ];
    for (what, text, needles) in &cases {
        let path = dir.path().join(format!("{}.ron", what.replace(' ', "-")));
        fs::write(&path, text).unwrap();
        let path_s = path.to_str().unwrap();
        let mut all: Vec<&str> = vec![path_s];
        // The tunnel's own problems name the tunnel instead of the file.
        if what.starts_with("bad ") || what.ends_with("key") || what.ends_with("key file") {
            all.clear();
        }
        all.extend(needles.iter().map(String::as_str));
        refused(&["-F", "--config", path_s], &all);
        assert_eq!(
            &fs::read_to_string(&path).unwrap(),
            text,
            "{what}: the file was changed"
        );
    }
    // A config path that does not exist, or is a directory.
    let missing = dir.path().join("none.ron");
    refused(
        &["--config", missing.to_str().unwrap()],
        &[missing.to_str().unwrap(), "does not exist"],
    );
    refused(
        &["--config", dir.path().to_str().unwrap()],
        &["cannot read", dir.path().to_str().unwrap()],
    );
    eprintln!(
        "{} bad config files refused, each named, none changed",
        cases.len() + 2
    );
}

/// Issue 21.8: a control character (a line feed above all) in an address, a name or an ssh
/// destination is refused by every front end of sluiced, with where it is and what to do.
#[test]
fn control_characters_are_refused_in_flags_config_files_and_far_end_options() {
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let key = key.to_str().unwrap();
    let s = "[127.0.0.1]:2";
    let t = "[127.0.0.1]:1";
    let rule = "cannot contain control characters";
    refused(
        &["-F", "-k", key, "-d", "-s", "/tmp/a\nb", "-t", t],
        &[
            r#"-s: "/tmp/a\nb": an address cannot contain control characters (here a line feed at position 7): remove it"#,
        ],
    );
    refused(
        &["-F", "-k", key, "-e", "-s", s, "-t", "db\r:8025"],
        &["-t:", rule, "a carriage return at position 3"],
    );
    refused(
        &["-F", "-k", key, "-e", "-s", s, "-t", t, "-b", "[::1]\n"],
        &["-b:", rule],
    );
    refused(
        &["--spipe", "-t", "db:8025\u{1b}", "-k", key],
        &["-t:", rule, "an escape at position 8"],
    );

    let tunnel = |name: &str, listen: &str, extra: &str| {
        format!(
            "(version: 1, tunnels: [(name: {name:?}, mode: Decrypt, listen: {listen:?}, target: {t:?}, key: File({key:?}){extra})])\n"
        )
    };
    let listen = free_addr(LOCALHOST_V4).spiped();
    let good = dir.path().join("good.ron");
    fs::write(&good, tunnel("a", &listen, "")).unwrap();
    for (what, text, needles) in [
        (
            "listen",
            tunnel("c", "/run/a\nb.sock", ""),
            vec![
                r#"tunnel "c": listen: "/run/a\nb.sock": an address cannot contain control characters (here a line feed at position 7): remove it"#,
            ],
        ),
        (
            "name",
            tunnel("a\nb", &listen, ""),
            vec![
                r#"tunnel "a\nb": name: a tunnel name cannot contain control characters (here a line feed at position 2): remove it"#,
            ],
        ),
        (
            "far-end",
            tunnel(
                "f",
                &listen,
                ", far_end: Some((ssh: \"db\\n\", far_address: \"[127.0.0.1]:1\"))",
            ),
            vec![r#"tunnel "f": far_end: "db\n": an ssh destination cannot"#],
        ),
    ] {
        let path = dir.path().join(format!("{what}.ron"));
        fs::write(&path, &text).unwrap();
        refused(&["-F", "--config", path.to_str().unwrap()], &needles);
        refused(&["--check-config", path.to_str().unwrap()], &needles);
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "{what}: changed");
    }

    let good = good.to_str().unwrap();
    refused(
        &["--far-end-setup", "db\n", "--config", good, "--tunnel", "a"],
        &[
            r#""db\n": an ssh destination cannot contain control characters (here a line feed at position 3): remove it"#,
        ],
    );
    refused(
        &[
            "--far-end-setup",
            "db",
            "--config",
            good,
            "--tunnel",
            "a",
            "--service",
            "/run/redis.sock\nExecStartPre=/bin/sh",
        ],
        &["--service:", rule, "a line feed at position 16"],
    );
}
