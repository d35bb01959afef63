//! Reverse tunnels in the app, driven as a person would: the editor offers all four modes
//! with the fields each needs under their own names, shows problems at the right field,
//! saves the PROXY choices, and round-trips; a reverse pair started from the app carries
//! bytes, its dialing end saying "dialing"/"connected" instead of "listening".

// Unix only: these tests use the test kit's sockets. The app is built for Windows and
// macOS, not run there.
#![cfg(unix)]

mod support;

use std::sync::Arc;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use sluice::SluiceApp;
use sluice::command::TunnelCommand;
use sluice_engine::{Config, Field, Mode, ProxyVersion, TunnelState};
use support::*;

const REVERSE_IN: &str =
    "Reverse in — this machine is reachable: clients connect here, the far end dials in";
const REVERSE_OUT: &str = "Reverse out — this machine has the service but cannot accept connections: it dials the far end";

fn harness_with_key(dir: &std::path::Path) -> Harness<'static, SluiceApp> {
    let mut harness = app_harness(services(
        dir,
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    ));
    harness.run_ok();
    click(&mut harness, "🔑 Keys");
    click(&mut harness, "Generate…");
    set_text(&mut harness, "Key name", "pair");
    click(&mut harness, "Generate");
    wait_until(&mut harness, "the key", |app| {
        app.model.files.keys.get("pair").is_some()
    });
    harness.get_by_label("Close window").click();
    harness.run_ok();
    harness
}

/// The text in the field labelled `label`.
fn field_value(harness: &Harness<'_, SluiceApp>, label: &str) -> String {
    harness
        .get_by_role_and_label(Role::TextInput, label)
        .value()
        .unwrap_or_default()
}

/// Asserts that the problem containing `needle` shows under the field `above` and over
/// the field `below`: the problem is where the user looks.
fn problem_between(harness: &Harness<'_, SluiceApp>, needle: &str, above: &str, below: &str) {
    let problem = harness.get_by_label_contains(needle).rect();
    let above = harness.get_by_role_and_label(Role::TextInput, above).rect();
    let below = harness.get_by_role_and_label(Role::TextInput, below).rect();
    assert!(
        above.bottom() <= problem.top() && problem.bottom() <= below.top(),
        "{needle:?} at {problem:?}, between {above:?} and {below:?}"
    );
}

fn new_reverse_tunnel(
    harness: &mut Harness<'_, SluiceApp>,
    name: &str,
    mode: &str,
    fields: [(&str, &str); 2],
) {
    click(harness, "+ New tunnel");
    set_text(harness, "Name", name);
    click(harness, mode);
    for (label, text) in fields {
        set_text(harness, label, text);
    }
    click(harness, "Save");
    wait_until(harness, "the tunnel in the list", |app| {
        app.view.editor.is_none() && app.model.tunnel(name).is_some()
    });
}

#[test]
fn the_editor_offers_the_reverse_modes_with_their_fields_and_saves_them() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.ron");
    let mut harness = harness_with_key(dir.path());

    click(&mut harness, "+ New tunnel");
    for mode in [
        "Encrypt (spiped -e) — clients connect here in plaintext, it goes encrypted to the far end",
        "Decrypt (spiped -d) — encrypted connections arrive here and go on to a local service",
        REVERSE_IN,
        REVERSE_OUT,
    ] {
        assert!(shows(&harness, mode), "the editor offers {mode:?}");
    }
    // An Encrypt tunnel writes and accepts PROXY headers.
    assert!(
        harness
            .query_by_role_and_label(Role::ComboBox, "PROXY protocol")
            .is_some()
    );
    assert!(shows(
        &harness,
        "accept a PROXY header from a local load balancer"
    ));

    // Reverse in: the encrypted side the far end dials, then the plaintext side.
    set_text(&mut harness, "Name", "peer-in");
    click(&mut harness, REVERSE_IN);
    assert!(harness.query_by_label("Listen on").is_none());
    assert!(harness.query_by_label("Target").is_none());
    assert!(
        harness.query_by_label("Outgoing address").is_none(),
        "a reverse-in end dials nothing"
    );
    set_text(
        &mut harness,
        "Encrypted listen address",
        "[127.0.0.1]:99999",
    );
    set_text(
        &mut harness,
        "Plaintext listen address",
        "[127.0.0.1]:25521",
    );
    let problems = harness.state().view.editor.as_ref().unwrap().problems();
    assert!(problems.contains_key(&Field::Target), "{problems:?}");
    assert!(!problems.contains_key(&Field::Listen), "{problems:?}");
    problem_between(
        &harness,
        "99999",
        "Encrypted listen address",
        "Plaintext listen address",
    );
    set_text(&mut harness, "Encrypted listen address", "[0.0.0.0]:8026");
    // v2, and a header taken from a load balancer in front of this end.
    click_in_view(&mut harness, Role::ComboBox, "PROXY protocol");
    click(&mut harness, "v2 (binary)");
    click_in_view(
        &mut harness,
        Role::CheckBox,
        "accept a PROXY header from a local load balancer",
    );
    click(&mut harness, "Save");
    wait_until(&mut harness, "peer-in in the config file", |_| {
        Config::load(&config_path).is_ok_and(|c| c.tunnels.len() == 1)
    });
    let saved = Config::load(&config_path).unwrap().tunnels[0].clone();
    assert_eq!(saved.mode, Mode::ReverseIn);
    assert_eq!(saved.listen, "[127.0.0.1]:25521", "plaintext is -l, listen");
    assert_eq!(saved.target, "[0.0.0.0]:8026", "encrypted is -s, target");
    assert_eq!(saved.proxy_protocol, Some(ProxyVersion::V2));
    assert!(saved.accept_proxy_protocol);

    // Reverse out: the far end it dials, then the local service; no PROXY choice.
    click(&mut harness, "+ New tunnel");
    set_text(&mut harness, "Name", "peer-out");
    // The editor's form scrolls, and the last one was scrolled down to its PROXY fields.
    harness.get_by_label(REVERSE_OUT).scroll_to_me();
    harness.run_ok();
    click(&mut harness, REVERSE_OUT);
    assert!(
        harness
            .query_by_role_and_label(Role::ComboBox, "PROXY protocol")
            .is_none(),
        "a reverse-out end passes on what the reverse-in end wrote"
    );
    set_text(&mut harness, "Far end address", "server.example");
    set_text(&mut harness, "Local service address", "[127.0.0.1]:25520");
    let problems = harness.state().view.editor.as_ref().unwrap().problems();
    assert!(problems.contains_key(&Field::Listen), "{problems:?}");
    problem_between(
        &harness,
        "has no port",
        "Far end address",
        "Local service address",
    );
    set_text(&mut harness, "Far end address", "server.example:8026");
    click(&mut harness, "Save");
    wait_until(&mut harness, "peer-out in the config file", |_| {
        Config::load(&config_path).is_ok_and(|c| c.tunnels.len() == 2)
    });
    let saved = Config::load(&config_path).unwrap().tunnels[1].clone();
    assert_eq!(saved.mode, Mode::ReverseOut);
    assert_eq!(
        saved.listen, "server.example:8026",
        "the far end is -t, listen"
    );
    assert_eq!(
        saved.target, "[127.0.0.1]:25520",
        "the service is -s, target"
    );
    assert_eq!(saved.proxy_protocol, None);

    // Opened again, each field shows what the file has, and saving changes nothing.
    let before = Config::load(&config_path).unwrap();
    harness
        .state_mut()
        .execute(TunnelCommand::Edit("peer-in".into()).into());
    harness.run_ok();
    assert_eq!(
        field_value(&harness, "Encrypted listen address"),
        "[0.0.0.0]:8026"
    );
    assert_eq!(
        field_value(&harness, "Plaintext listen address"),
        "[127.0.0.1]:25521"
    );
    let proxy = harness.get_by_role_and_label(Role::ComboBox, "PROXY protocol");
    assert_eq!(proxy.value().as_deref(), Some("v2 (binary)"), "{proxy:?}");
    assert!(
        harness
            .get_by_role_and_label(
                Role::CheckBox,
                "accept a PROXY header from a local load balancer"
            )
            .accesskit_node()
            .toggled()
            .is_some_and(|t| t == egui::accesskit::Toggled::True)
    );
    click(&mut harness, "Save");
    harness
        .state_mut()
        .execute(TunnelCommand::Edit("peer-out".into()).into());
    harness.run_ok();
    assert_eq!(
        field_value(&harness, "Far end address"),
        "server.example:8026"
    );
    assert_eq!(
        field_value(&harness, "Local service address"),
        "[127.0.0.1]:25520"
    );
    click(&mut harness, "Save");
    wait_until(&mut harness, "the editor to close", |app| {
        app.view.editor.is_none()
    });
    assert_eq!(harness.state().model.files.tunnels, before.tunnels);
    assert_eq!(Config::load(&config_path).unwrap().tunnels, before.tunnels);
}

#[test]
fn a_reverse_pair_started_from_the_app_carries_bytes_and_its_dialing_end_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = harness_with_key(dir.path());
    let service = echo_server();
    let encrypted = free_port();
    let plaintext = free_port();

    // The dialing end first: nothing answers yet, so it is dialing, not "listening".
    new_reverse_tunnel(
        &mut harness,
        "laptop",
        REVERSE_OUT,
        [
            ("Far end address", &format!("[127.0.0.1]:{encrypted}")),
            (
                "Local service address",
                &format!("[127.0.0.1]:{}", service.port()),
            ),
        ],
    );
    click(&mut harness, "▶ Start");
    wait_until(&mut harness, "the dialing end to run", |app| {
        matches!(
            app.model.status("laptop").map(|s| &s.state),
            Some(TunnelState::Dialing { .. })
        )
    });
    assert!(shows(&harness, "dialing the far end…"));
    assert!(harness.query_by_label("listening").is_none());

    new_reverse_tunnel(
        &mut harness,
        "server",
        REVERSE_IN,
        [
            (
                "Encrypted listen address",
                &format!("[127.0.0.1]:{encrypted}"),
            ),
            (
                "Plaintext listen address",
                &format!("[127.0.0.1]:{plaintext}"),
            ),
        ],
    );
    click(&mut harness, "▶ Start");
    wait_until(&mut harness, "the dialing end to connect", |app| {
        app.model
            .status("laptop")
            .is_some_and(|s| s.counters.reverse_ready > 0)
    });
    assert!(
        shows_soon(&mut harness, "connected to the far end"),
        "the dialing end's row says it is connected"
    );

    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 13) as u8).collect();
    let back = round_trip(format!("127.0.0.1:{plaintext}").parse().unwrap(), &data);
    assert!(
        back == data,
        "through the reverse pair came back {} of {} bytes",
        back.len(),
        data.len()
    );
}
