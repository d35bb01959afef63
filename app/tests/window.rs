//! The real binary in a real X window (Xvfb): the window appears with the title "Sluice",
//! the app ID as its WM_CLASS (so docks match it to org.sluice.Sluice.desktop) and the
//! 256 px icon, draws the list from a config file, and sits idle when nothing changes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
