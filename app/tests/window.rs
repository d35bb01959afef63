//! The real binary in a real X window (Xvfb): the window appears with the title "Sluice",
//! the app ID as its WM_CLASS (so docks match it to org.sluice.Sluice.desktop) and the
//! 256 px icon, draws the list from a config file, and sits idle when nothing changes.
//! Closed by the window manager (WM_DELETE_WINDOW) while tunnels run, it hides and the
//! tunnels carry data on; a second start shows the first one's window; Ctrl+Q quits;
//! `--hidden` (the login entry's start) runs the tunnels with no window until asked.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tests here take turns: two starting Xvfb at once could both take one display.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Kills and reaps the processes a test started, whatever happens.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts Xvfb on the first display number nobody holds and waits for its socket.
fn start_xvfb(reaper: &mut Reaper) -> String {
    for number in 90..200 {
        if Path::new(&format!("/tmp/.X{number}-lock")).exists() {
            continue;
        }
        let mut xvfb = Command::new("Xvfb")
            .args([
                &format!(":{number}"),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb runs (scripts/test installs the xvfb package)");
        let socket = format!("/tmp/.X11-unix/X{number}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&socket).exists() && Instant::now() < deadline {
            if let Ok(Some(_)) = xvfb.try_wait() {
                break; // lost a race for this display; try the next
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if Path::new(&socket).exists() && matches!(xvfb.try_wait(), Ok(None)) {
            reaper.0.push(xvfb);
            return format!(":{number}");
        }
        let _ = xvfb.kill();
        let _ = xvfb.wait();
    }
    panic!("no free X display between :90 and :199");
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses); utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn xdotool(display: &str, args: &[&str]) -> Option<String> {
    x_tool("xdotool", display, args)
}

fn x_tool(tool: &str, display: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(tool)
        .env("DISPLAY", display)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn the_window_appears_titled_sluice_and_idles() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut reaper = Reaper(Vec::new());
    let display = start_xvfb(&mut reaper);
    let home = tempfile::tempdir().unwrap();
    let config_dir = home.path().join(".config/sluice");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.ron"),
        "(version: 1, tunnels: [(name: \"redis\", mode: Encrypt, listen: \"[127.0.0.1]:16379\", target: \"db.example.org:8025\", key: File(\"/nonexistent.key\"))])",
    )
    .unwrap();
    let app = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .env("DISPLAY", &display)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = app.id();
    reaper.0.push(app);

    let deadline = Instant::now() + Duration::from_secs(30);
    let window = loop {
        if let Some(id) =
            xdotool(&display, &["search", "--name", "^Sluice$"]).filter(|s| !s.is_empty())
        {
            break id.lines().next().unwrap_or_default().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no window titled Sluice appeared within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        xdotool(&display, &["getwindowname", &window]).as_deref(),
        Some("Sluice")
    );
    assert_eq!(
        x_tool("xprop", &display, &["-id", &window, "-notype", "WM_CLASS"]).as_deref(),
        Some("WM_CLASS = \"\", \"org.sluice.Sluice\""),
        "the X11 class is the app ID (xprop comes with x11-utils)"
    );
    // _NET_WM_ICON starts with the icon's width and height; read only those two numbers.
    let icon = x_tool(
        "xprop",
        &display,
        &[
            "-id",
            &window,
            "-notype",
            "-len",
            "16",
            "-f",
            "_NET_WM_ICON",
            "32c",
            " = $0 x $1\n",
            "_NET_WM_ICON",
        ],
    );
    assert_eq!(
        icon.as_deref(),
        Some("_NET_WM_ICON = 256 x 256"),
        "the window carries the 256 px app icon"
    );

    // Let the first frames settle, then measure: an idle app repaints only on change.
    std::thread::sleep(Duration::from_secs(3));
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(4));
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 0.8,
        "the idle app used {used:.2} s of CPU in 4 s: it is repainting continuously"
    );

    let shot = home.path().join("window.png");
    let status = Command::new("import")
        .env("DISPLAY", &display)
        .args(["-window", "root"])
        .arg(&shot)
        .status()
        .expect("ImageMagick's import runs");
    assert!(status.success());
    assert!(
        std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0) > 10_000,
        "the screenshot has content"
    );
    if let Ok(keep) = std::env::var("SLUICE_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, Path::new(&keep));
    }
}

fn visible_window(display: &str) -> Option<String> {
    xdotool(display, &["search", "--onlyvisible", "--name", "^Sluice$"])
        .filter(|s| !s.is_empty())
        .and_then(|s| s.lines().next().map(str::to_owned))
}

fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn carries_data(port: u16) -> bool {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
        && support::round_trip(addr, b"still here") == b"still here"
}

#[test]
fn closing_the_window_keeps_tunnels_up_and_a_second_start_shows_it() {
    use sluice_engine::{Config, KeyRef, Mode, TunnelSpec};
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut reaper = Reaper(Vec::new());
    let display = start_xvfb(&mut reaper);
    // A window manager: it is what turns "close" into WM_DELETE_WINDOW.
    let openbox = Command::new("openbox")
        .env("DISPLAY", &display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openbox runs (scripts/install-test-deps installs it)");
    reaper.0.push(openbox);
    wait_for("the window manager", || {
        x_tool("wmctrl", &display, &["-m"]).is_some()
    });

    let home = tempfile::tempdir().unwrap();
    let config_dir = home.path().join(".config/sluice");
    std::fs::create_dir_all(&config_dir).unwrap();
    let runtime = home.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = home.path().join("shared.key");
    std::fs::write(&key, [42u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let echo = support::echo_server();
    let (server_port, client_port) = (support::free_port(), support::free_port());
    let mut config = Config::default();
    for (name, mode, listen, target) in [
        ("server", Mode::Decrypt, server_port, echo.port()),
        ("client", Mode::Encrypt, client_port, server_port),
    ] {
        let mut spec = TunnelSpec::new(
            name,
            mode,
            format!("[127.0.0.1]:{listen}"),
            format!("[127.0.0.1]:{target}"),
            KeyRef::File(key.clone()),
        );
        spec.autostart = true;
        config.tunnels.push(spec);
    }
    config.save_atomic(&config_dir.join("config.ron")).unwrap();

    let sluice = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .env("DISPLAY", &display)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("XDG_DATA_HOME", home.path().join(".local/share"))
            .env("XDG_RUNTIME_DIR", &runtime)
            // No session bus: no tray and no notifications here (tests/desktop.rs has them).
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("WAYLAND_DISPLAY")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let mut first = sluice().spawn().unwrap();
    let pid = first.id();
    wait_for("the window", || visible_window(&display).is_some());
    wait_for("the autostarted tunnels to carry data", || {
        carries_data(client_port)
    });

    // Closed as a user closes it: the window goes, the app and its tunnels stay.
    assert!(x_tool("wmctrl", &display, &["-c", "Sluice"]).is_some());
    wait_for("the window to hide", || visible_window(&display).is_none());
    assert!(
        matches!(first.try_wait(), Ok(None)),
        "the app is still running after its window was closed"
    );
    assert!(
        carries_data(client_port),
        "the tunnel carries data afterwards"
    );

    // A second start hands over to the first: it exits, and the first shows its window.
    let mut second = sluice().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the second start did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    wait_for("the first window to show again", || {
        visible_window(&display).is_some()
    });
    assert_eq!(
        first.id(),
        pid,
        "the window shown belongs to the first start"
    );

    // Ctrl+Q quits: the tunnels stop with the app.
    let window = visible_window(&display).unwrap();
    xdotool(&display, &["windowfocus", "--sync", &window]);
    xdotool(&display, &["key", "--window", &window, "ctrl+q"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "Ctrl+Q did not quit the app");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !carries_data(client_port),
        "the tunnels stopped with the app"
    );
    reaper.0.push(first);

    // As the login entry starts it: hidden, with the autostart tunnels up; a second start
    // shows the window.
    let hidden = sluice().arg("--hidden").spawn().unwrap();
    reaper.0.push(hidden);
    wait_for("the tunnels of the hidden app", || {
        carries_data(client_port)
    });
    // eframe shows every window after its first frame; the app hides it right after.
    wait_for("the hidden start to have no window", || {
        visible_window(&display).is_none()
    });
    assert!(sluice().status().unwrap().success());
    wait_for("the hidden app's window to show", || {
        visible_window(&display).is_some()
    });
}
