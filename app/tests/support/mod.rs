//! Shared pieces of the app's UI tests: one harness factory building the real app with a
//! temporary config directory, keyring-core's mock store and scripted file dialogs; a
//! wait that steps frames until a condition holds. Echo servers, ports and clients come
//! from the shared test kit (`sluice-testkit`).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sluice::SluiceApp;
use sluice::file_dialogs::{DialogAnswer, DialogKind, FileDialog};
use sluice::services::{AppPaths, Keychain, Services};
use sluice_engine::KeychainStore;
pub use sluice_testkit::{Addr, Echo, LOCALHOST_V4, exchange_with};

/// File dialogs that answer from a script, recording what was asked.
#[derive(Default)]
pub struct ScriptedDialogs {
    pub answers: Mutex<VecDeque<DialogAnswer>>,
    pub asked: Mutex<Vec<DialogKind>>,
}

impl ScriptedDialogs {
    pub fn answer(&self, answer: DialogAnswer) {
        self.answers.lock().unwrap().push_back(answer);
    }
}

impl FileDialog for ScriptedDialogs {
    fn open(&self, kind: DialogKind, done: Box<dyn FnOnce(DialogAnswer) + Send>) {
        self.asked.lock().unwrap().push(kind);
        let answer = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(DialogAnswer::Cancelled);
        done(answer);
    }
}

pub fn mock_keychain() -> Keychain {
    Keychain::Available(Arc::new(KeychainStore::new(
        keyring_core::mock::Store::new().unwrap(),
    )))
}

pub fn services(dir: &Path, keychain: Keychain, dialogs: Arc<ScriptedDialogs>) -> Services {
    Services {
        paths: AppPaths::in_dir(dir),
        keychain,
        dialogs,
        host_name: "testhost".into(),
        ssh: Default::default(),
        desktop: sluice::services::Desktop::none(),
    }
}

/// The real app in a harness, sized like a laptop window.
pub fn app_harness(services: Services) -> Harness<'static, SluiceApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .with_max_steps(400)
        .build_eframe(move |cc| SluiceApp::new(cc, services).expect("the app starts"))
}

/// The same, rendering real pixels through wgpu (lavapipe here) for snapshots.
pub fn snapshot_harness(services: Services) -> Harness<'static, SluiceApp> {
    sized_snapshot_harness(services, [1280.0, 800.0])
}

/// A snapshot harness of a given window size.
pub fn sized_snapshot_harness(services: Services, size: [f32; 2]) -> Harness<'static, SluiceApp> {
    Harness::builder()
        .with_size(size)
        .with_max_steps(400)
        .wgpu()
        .build_eframe(move |cc| SluiceApp::new(cc, services).expect("the app starts"))
}

/// Steps frames (background work and the engine run on their own threads) until
/// `condition` holds, or fails the test after 20 s naming what it waited for.
pub fn wait_until(
    harness: &mut Harness<'_, SluiceApp>,
    what: &str,
    condition: impl Fn(&SluiceApp) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        harness.run_ok();
        if condition(harness.state()) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
}

/// Replaces the text of the text field labelled `label`.
pub fn set_text(harness: &mut Harness<'_, SluiceApp>, label: &str, text: &str) {
    let field = harness.get_by_role_and_label(Role::TextInput, label);
    field.focus();
    field.set_text_value_accesskit(text);
    harness.run_ok();
}

pub fn click(harness: &mut Harness<'_, SluiceApp>, label: &str) {
    harness.get_by_label(label).click();
    harness.run_ok();
}

/// Scrolls the widget of `role` labelled `label` into view, as a person would (a long
/// form scrolls), then clicks it.
pub fn click_in_view(harness: &mut Harness<'_, SluiceApp>, role: Role, label: &str) {
    harness.get_by_role_and_label(role, label).scroll_to_me();
    harness.run_ok();
    harness.get_by_role_and_label(role, label).click();
    harness.run_ok();
}

/// Whether some widget's text contains `needle`.
pub fn shows(harness: &Harness<'_, SluiceApp>, needle: &str) -> bool {
    harness.query_all_by_label_contains(needle).next().is_some()
}

/// Whether some widget's text contains `needle` within 5 s, stepping frames meanwhile:
/// for what a background thread answers (such as the listen port check).
pub fn shows_soon(harness: &mut Harness<'_, SluiceApp>, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        harness.run_ok();
        if shows(harness, needle) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
}

/// A TCP echo server on loopback (the shared test kit's), for as long as it is kept.
pub fn echo_server() -> Echo {
    Echo::tcp(LOCALHOST_V4)
}

/// A port on loopback that was free a moment ago.
pub fn free_port() -> u16 {
    sluice_testkit::free_port(LOCALHOST_V4)
}

/// Sends `data` through `addr`, half-closes, and returns everything that came back.
pub fn round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    exchange_with(&Addr::Tcp(addr), data, Duration::from_secs(20)).bytes
}

/// The sluiced `cargo test` built beside these tests (target/debug/sluiced), which far-end
/// set-up copies to a far end that has none; `None` (the test skips, loudly) where it was
/// not built, and under CI it must be.
pub fn built_sluiced() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("sluiced");
    sluice_testkit::require(
        path.exists(),
        "sluiced, built beside the tests",
        "cargo build -p sluice-engine --bin sluiced (scripts/test builds it)",
    )
    .then_some(path)
}

/// Steps frames until the far-end actions of the tunnels `names` have finished (ssh steps
/// take seconds, copying sluiced more), or fails the test after 90 s.
pub fn wait_for_far_ends(harness: &mut Harness<'_, SluiceApp>, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        harness.run_ok();
        let runs = &harness.state().model.mirror.far_end_runs;
        if names
            .iter()
            .all(|name| runs.get(*name).is_some_and(|r| !r.running()))
        {
            return;
        }
        let unfinished: Vec<_> = names.iter().map(|name| runs.get(*name)).collect();
        assert!(
            Instant::now() < deadline,
            "the far-end actions did not finish within 90 s: {unfinished:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
        harness.step();
    }
}
