//! What the desktop app costs: the time to lay out one frame with 200 tunnels in the list
//! (egui logic through egui_kittest, no GPU), and the CPU the real binary uses while idle
//! with 50 running tunnels, in a real X window under Xvfb. Figures for docs/PERFORMANCE.md.
//! `cargo bench -p sluice --bench ui_cost` (needs Xvfb: scripts/install-test-deps).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use sluice::SluiceApp;
use sluice::error::KeychainUnavailable;
use sluice::file_dialogs::{DialogAnswer, DialogKind, FileDialog};
use sluice::services::{AppPaths, Keychain, Services};
use sluice_engine::{Config, KeyRef, Mode, TunnelSpec};

struct NoDialogs;

impl FileDialog for NoDialogs {
    fn open(&self, _: DialogKind, done: Box<dyn FnOnce(DialogAnswer) + Send>) {
        done(DialogAnswer::Cancelled);
    }
}

/// A config dir with `count` tunnels on loopback ports from `first_port`, all using one
/// key file, optionally autostarted.
fn config_dir(count: u16, first_port: u16, autostart: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("bench.key");
    std::fs::write(&key, [7u8; 32]).expect("key");
    let mut config = Config::default();
    for i in 0..count {
        let mut spec = TunnelSpec::new(
            format!("tunnel {i:03}"),
            if i % 2 == 0 {
                Mode::Encrypt
            } else {
                Mode::Decrypt
            },
            format!("[127.0.0.1]:{}", first_port + i),
            format!("[127.0.0.1]:{}", first_port + 1000 + i),
            KeyRef::File(key.clone()),
        );
        spec.autostart = autostart;
        config.tunnels.push(spec);
    }
    config
        .save_atomic(&dir.path().join("config.ron"))
        .expect("config");
    dir
}

fn frame_time_with_200_tunnels() {
    let dir = config_dir(200, 30000, false);
    let services = Services {
        paths: AppPaths::in_dir(dir.path()),
        keychain: Keychain::Unavailable(KeychainUnavailable::LeftOut("benchmark".into())),
        dialogs: Arc::new(NoDialogs),
        host_name: "bench".into(),
        ssh: Default::default(),
        desktop: sluice::services::Desktop::none(),
    };
    let mut harness = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| SluiceApp::new(cc, services).expect("app"));
    harness.run_steps(10);
    let mut times = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        harness.step();
        times.push(start.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "frame (egui logic, 200 tunnels listed): median {:.2} ms, p90 {:.2} ms, max {:.2} ms over {} frames",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn idle_cpu_with_50_running_tunnels() {
    let Some(display) = (90..200)
        .find(|n| !Path::new(&format!("/tmp/.X{n}-lock")).exists())
        .map(|n| format!(":{n}"))
    else {
        println!("idle CPU: no free X display");
        return;
    };
    let Ok(mut xvfb) = Command::new("Xvfb")
        .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        println!("idle CPU: Xvfb is not installed (scripts/install-test-deps installs it)");
        return;
    };
    std::thread::sleep(Duration::from_secs(1));
    let home = config_dir(50, 31000, true);
    let config_home = home.path().join("xdg");
    std::fs::create_dir_all(config_home.join("sluice")).expect("dir");
    std::fs::copy(
        home.path().join("config.ron"),
        config_home.join("sluice/config.ron"),
    )
    .expect("copy");
    let app = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .env("DISPLAY", &display)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", &config_home)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut app) = app else {
        let _ = xvfb.kill();
        println!("idle CPU: the app did not start");
        return;
    };
    // Let it start the 50 tunnels and settle.
    std::thread::sleep(Duration::from_secs(8));
    let window = Duration::from_secs(20);
    let before = cpu_seconds(app.id());
    std::thread::sleep(window);
    let used = cpu_seconds(app.id()) - before;
    println!(
        "idle CPU with 50 running tunnels (real window, Xvfb, software GL): {:.2} s in {} s = {:.1}% of one core",
        used,
        window.as_secs(),
        100.0 * used / window.as_secs_f64()
    );
    let _ = app.kill();
    let _ = app.wait();
    let _ = xvfb.kill();
    let _ = xvfb.wait();
}

fn main() {
    frame_time_with_200_tunnels();
    idle_cpu_with_50_running_tunnels();
}
