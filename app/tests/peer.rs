//! "Connect to a peer" in the real app: one form makes a forward tunnel and a reverse
//! tunnel to a remote host with one key, shown and started as a pair, and gives each
//! actor system's Akka/Pekko settings (read-only, with Copy; again from the detail
//! panel). Then a stand-in for the remote host (a second engine with its far ends, and
//! two echo "actor systems") shows that each side reaches the other at the canonical
//! address the settings name. A second test sets both far ends up over a real sshd.
//!
//! The second test needs root (sshd, useradd) and `openssh-server`
//! (scripts/install-test-deps), and the sluiced `cargo test` builds.

// Unix only: these tests use the test kit's sockets. The app is built for Windows and
// macOS, not run there.
#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sluice::SluiceApp;
use sluice::command::FarEndCommand;
use sluice::keys::{KeyIndex, KeyInfo};
use sluice::services::SshSetup;
use sluice::tray::TraySnapshot;
use sluice_engine::{
    Config, Desired, DesiredTunnel, Ending, Engine, FarEndAction, KeyRef, Mode, PresharedKey,
    Restart, TunnelSettings, TunnelSpec, TunnelState,
};
use sluice_testkit::sshd::{self, ALIAS, Sshd, Trust};
use support::*;

const KEY: [u8; 32] = [9u8; 32];

/// `count` consecutive loopback ports free a moment ago.
fn free_ports(count: u16) -> u16 {
    for _ in 0..200 {
        let first = free_port();
        if first > u16::MAX - count {
            continue;
        }
        let held: Vec<_> = (first..first + count)
            .map_while(|port| TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if held.len() == usize::from(count) {
            return first;
        }
    }
    panic!("no {count} consecutive free ports on loopback");
}

/// An "actor system" stand-in: answers each connection with `name` and what it read.
fn answering_service(port: u16, name: &'static str) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the service binds");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut line = [0u8; 5];
                if stream.read_exact(&mut line).is_ok() {
                    let _ = stream.write_all(name.as_bytes());
                    let _ = stream.write_all(&line);
                }
            });
        }
    });
}

/// Who answers at `port` on loopback, within 20 s (a tunnel's pool may still be filling).
fn who_answers(port: u16) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"hello")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        });
        match answer {
            Ok(answer) if !answer.is_empty() => return answer,
            _ => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "nobody answered at 127.0.0.1:{port} within 20 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn harness_with_key_file(
    dir: &std::path::Path,
    ssh: SshSetup,
) -> (Harness<'static, SluiceApp>, PathBuf) {
    let key_path = sluice_testkit::write_key(dir, "pair.key", &KEY);
    let index = KeyIndex {
        keys: vec![KeyInfo {
            name: "pair".into(),
            fingerprint: "00:00".into(),
            location: KeyRef::File(key_path.clone()),
            created_unix: 0,
            rotate_after_days: None,
        }],
        ..KeyIndex::new()
    };
    std::fs::write(dir.join("keys.ron"), index.to_ron()).unwrap();
    let mut services = services(dir, mock_keychain(), Arc::new(ScriptedDialogs::default()));
    services.ssh = ssh;
    let mut harness = app_harness(services);
    harness.run_ok();
    (harness, key_path)
}

fn set_number(harness: &mut Harness<'_, SluiceApp>, label: &str, value: u16) {
    harness
        .get_by_role_and_label(Role::SpinButton, label)
        .set_value_accesskit(f64::from(value));
    harness.run_ok();
    // Enter ends the field's editing, as a person's typing would.
    harness.key_press(egui::Key::Enter);
    harness.run_ok();
}

/// The remote host's far ends, on an engine of their own: the forward tunnel's sluiced -d
/// and the way back's sluiced --reverse-in, as the settings' commands say.
fn remote_far_ends(remote_port: u16, b_bind: u16, a_canonical: u16) -> Engine {
    let engine = Engine::start(|| {}).expect("the remote engine starts");
    let tunnel = |name: &str, mode, listen: String, target: String| {
        let spec = TunnelSpec::new(name, mode, listen, target, KeyRef::File("unused".into()));
        DesiredTunnel {
            settings: TunnelSettings::new(
                spec.validate().expect("a valid far end"),
                PresharedKey::from_keyfile_bytes(&KEY),
            ),
            run: true,
            restart: Restart::Never,
        }
    };
    engine
        .apply(Desired {
            tunnels: vec![
                tunnel(
                    "forward far end",
                    Mode::Decrypt,
                    format!("[127.0.0.1]:{remote_port}"),
                    format!("[127.0.0.1]:{b_bind}"),
                ),
                tunnel(
                    "reverse far end",
                    Mode::ReverseIn,
                    format!("[127.0.0.1]:{a_canonical}"),
                    format!("[127.0.0.1]:{}", remote_port + 1),
                ),
            ],
            ending: Ending::Close,
        })
        .expect("the far ends apply");
    engine
}

#[test]
fn connect_to_a_peer_makes_a_pair_each_side_reaches_at_its_canonical_address() {
    let dir = tempfile::tempdir().unwrap();
    let (mut harness, key_path) = harness_with_key_file(dir.path(), SshSetup::default());
    let first = free_ports(4);
    let remote = free_ports(2);

    click(&mut harness, "Menu");
    click(&mut harness, "Connect to a peer…");
    assert!(shows(&harness, "the pair has no name"));
    assert!(shows(&harness, "fix the fields marked in red to create"));
    set_text(&mut harness, "Pair name", "lab");
    set_text(&mut harness, "Remote host", "server.example:22");
    assert!(shows(&harness, "write it without a port"));
    set_text(&mut harness, "Remote host", "127.0.0.1");
    set_number(&mut harness, "First local port", first);
    set_number(&mut harness, "Remote port", remote);
    assert!(!shows(&harness, "fix the fields marked in red to create"));

    // The settings: A binds the first port and is reached at the fourth; B binds the
    // second and is reached at the third. The same for Pekko.
    let settings = harness
        .get_by_role_and_label(Role::MultilineTextInput, "Settings for the two systems")
        .value()
        .unwrap_or_default();
    let (a_bind, b_bind, b_canonical, a_canonical) = (first, first + 1, first + 2, first + 3);
    let artery = |root: &str, canonical: u16, bind: u16| {
        format!(
            "{root}.remote.artery {{\n  transport = tcp\n  canonical.hostname = \"127.0.0.1\"\n  canonical.port = {canonical}\n  bind.hostname = \"127.0.0.1\"\n  bind.port = {bind}\n}}"
        )
    };
    for root in ["akka", "pekko"] {
        assert!(
            settings.contains(&format!(
                "on this machine (A)\n{}",
                artery(root, a_canonical, a_bind)
            )),
            "{settings}"
        );
        assert!(
            settings.contains(&format!(
                "on 127.0.0.1 (B)\n{}",
                artery(root, b_canonical, b_bind)
            )),
            "{settings}"
        );
    }
    assert!(settings.contains(&format!(
        "A (this machine) listens on 127.0.0.1:{a_bind} and reaches B at 127.0.0.1:{b_canonical}."
    )));
    assert!(settings.contains("--reverse-in"), "{settings}");

    // Copy puts exactly that text on the clipboard (in the frame that handles the click).
    harness.get_by_label("Copy").click();
    harness.step();
    let copied = harness
        .output()
        .platform_output
        .commands
        .iter()
        .any(|c| matches!(c, egui::OutputCommand::CopyText(text) if *text == settings));
    assert!(copied, "Copy put the settings on the clipboard");

    click(&mut harness, "Create the pair");
    let config_path = dir.path().join("config.ron");
    wait_until(&mut harness, "the pair in the config file", |_| {
        Config::load(&config_path).is_ok_and(|c| c.tunnels.len() == 2)
    });
    let saved = Config::load(&config_path).unwrap().tunnels;
    let (forward, reverse) = (&saved[0], &saved[1]);
    assert_eq!(forward.name, "lab ➡ peer");
    assert_eq!(forward.mode, Mode::Encrypt);
    assert_eq!(forward.listen, format!("[127.0.0.1]:{b_canonical}"));
    assert_eq!(forward.target, format!("[127.0.0.1]:{remote}"));
    assert_eq!(reverse.name, "lab ⬅ peer");
    assert_eq!(reverse.mode, Mode::ReverseOut);
    assert_eq!(reverse.listen, format!("[127.0.0.1]:{}", remote + 1));
    assert_eq!(reverse.target, format!("[127.0.0.1]:{a_bind}"));
    for spec in [forward, reverse] {
        assert_eq!(spec.key, KeyRef::File(key_path.clone()), "one key for both");
        assert_eq!(
            spec.far_end.as_ref().map(|f| f.ssh.as_str()),
            Some("127.0.0.1"),
            "the far end's set-up goes to the remote host"
        );
    }
    click(&mut harness, "Close");
    assert_eq!(harness.query_all_by_label("↔ pair").count(), 2);

    // Closed, the settings are still there: from either tunnel's detail panel.
    harness
        .get_by_role_and_label(Role::Button, "lab ⬅ peer")
        .click();
    harness.run_ok();
    click(&mut harness, "Peer settings…");
    assert_eq!(
        harness
            .get_by_role_and_label(Role::MultilineTextInput, "Settings for the two systems")
            .value()
            .as_deref(),
        Some(settings.as_str())
    );
    click(&mut harness, "Close");

    // The two systems and the remote host's far ends; then Start on one starts both.
    answering_service(a_bind, "A:");
    answering_service(b_bind, "B:");
    let _remote = remote_far_ends(remote, b_bind, a_canonical);
    harness
        .get_by_role_and_label(Role::Button, "lab ➡ peer")
        .click();
    harness.run_ok();
    click(&mut harness, "▶ Start");
    wait_until(&mut harness, "both directions to run", |app| {
        let status = |name| {
            app.model
                .status(name)
                .map(|s| (&s.state, s.counters.reverse_ready))
        };
        matches!(
            status("lab ➡ peer"),
            Some((TunnelState::Listening { .. }, _))
        ) && matches!(status("lab ⬅ peer"), Some((TunnelState::Dialing { .. }, ready)) if ready > 0)
    });
    // A reaches B at B's canonical address, here; B reaches A at A's, on its host.
    assert_eq!(who_answers(b_canonical), "B:hello");
    assert_eq!(who_answers(a_canonical), "A:hello");

    // The tray has one item for the pair, whose Stop names the forward half (the app
    // stops both halves of a pair together).
    let tray = harness.state().model.tray_snapshot();
    assert_eq!(tray.tunnels.len(), 1, "{tray:?}");
    let pair = &tray.tunnels[0];
    assert_eq!(TraySnapshot::label(pair), "lab ⇄ peer — running");
    assert_eq!(pair.name, "lab ➡ peer");
    assert!(pair.running && !pair.failure);
    assert_eq!(tray.summary(), "Sluice: 1 running");

    click(&mut harness, "■ Stop");
    wait_until(&mut harness, "both directions to stop", |app| {
        !app.model.is_running("lab ➡ peer") && !app.model.is_running("lab ⬅ peer")
    });
    let tray = harness.state().model.tray_snapshot();
    assert_eq!(
        tray.tunnels
            .iter()
            .map(TraySnapshot::label)
            .collect::<Vec<_>>(),
        ["lab ⇄ peer — stopped"]
    );
}

/// The pair with a real remote host: "Set up both far ends" runs the far-end set-up of
/// both tunnels over ssh (the test sshd on loopback, whose PATH has spiped but no
/// sluiced): A ➡ B's far end is stock spiped, B ➡ A's a copy of this machine's sluiced,
/// which set-up installs and checks. Then each system reaches the other through them.
#[test]
fn connect_to_a_peer_sets_up_both_far_ends_over_ssh() {
    let Some(sluiced) = built_sluiced() else {
        return;
    };
    let names = ["ssh pair ➡ peer", "ssh pair ⬅ peer"];
    let slugs = names.map(sluice_engine::far_end_slug);
    for slug in &slugs {
        sshd::clear_leftovers(slug);
    }
    let sshd = Sshd::start("/usr/bin:/bin", Trust::ServerKey);
    let dir = tempfile::tempdir().unwrap();
    let ssh = SshSetup {
        command: Some(sshd.ssh_words()),
        config_file: Some(sshd.ssh_config()),
        sluiced: Some(sluiced),
    };
    let (mut harness, _) = harness_with_key_file(dir.path(), ssh);
    let first = free_ports(4);
    let remote = free_ports(2);
    click(&mut harness, "Menu");
    click(&mut harness, "Connect to a peer…");
    set_text(&mut harness, "Pair name", "ssh pair");
    set_text(&mut harness, "Remote host", "127.0.0.1");
    set_text(&mut harness, "SSH destination", ALIAS);
    set_number(&mut harness, "First local port", first);
    set_number(&mut harness, "Remote port", remote);
    click(&mut harness, "Create the pair");

    // Both systems run (the far end's check of A ➡ B reaches B through stock spiped,
    // which connects to its target before the handshake).
    let (a_bind, b_bind, b_canonical, a_canonical) = (first, first + 1, first + 2, first + 3);
    answering_service(a_bind, "A:");
    answering_service(b_bind, "B:");
    click_in_view(&mut harness, Role::Button, "Set up both far ends");
    wait_for_far_ends(&mut harness, &names);
    let runs = names.map(|name| harness.state().model.mirror.far_end_runs[name].clone());
    for run in &runs {
        assert!(
            matches!(run.finished, Some(Ok(()))),
            "{run:?}\nsshd log:\n{}",
            sshd.log()
        );
    }
    let said = |run: &sluice::model::FarEndRun| {
        run.steps
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        said(&runs[0]).contains("install sluiced: ok: nothing to install: spiped is there"),
        "{}",
        said(&runs[0])
    );
    assert!(
        said(&runs[1]).contains("install sluiced: ok: copied this machine's sluiced "),
        "{}",
        said(&runs[1])
    );
    assert!(shows(&harness, "Both far ends run on farend and answered"));
    let copy = sshd::far_file(&slugs[1], "sluiced");
    assert!(
        copy.exists(),
        "the copy is in the far end's Sluice directory"
    );

    // The two systems talk through the far ends set-up started.
    click(&mut harness, "Close");
    harness
        .state_mut()
        .execute(sluice::command::TunnelCommand::Start(names[0].into()).into());
    wait_until(&mut harness, "both directions to run", |app| {
        names.iter().all(|name| app.model.is_running(name))
            && app
                .model
                .status(names[1])
                .is_some_and(|s| s.counters.reverse_ready > 0)
    });
    assert_eq!(who_answers(b_canonical), "B:hello");
    assert_eq!(who_answers(a_canonical), "A:hello");
    harness
        .state_mut()
        .execute(sluice::command::TunnelCommand::Stop(names[0].into()).into());

    // Remove takes away the copy with everything else set-up made.
    for name in names {
        harness
            .state_mut()
            .execute(FarEndCommand::Run(name.into(), FarEndAction::Remove).into());
        wait_for_far_ends(&mut harness, &[name]);
        let run = harness.state().model.mirror.far_end_runs[name].clone();
        assert!(matches!(run.finished, Some(Ok(()))), "{run:?}");
    }
    assert!(!copy.exists(), "remove deleted the copy");
    for slug in &slugs {
        assert!(!sshd::far_file(slug, "manifest").exists());
    }
}
