//! The app on a real D-Bus session bus (run through scripts/with-test-session): it
//! registers its tray item with a StatusNotifierWatcher the test provides, the test reads
//! the item's menu over D-Bus and starts a tunnel from it, and a failing tunnel produces
//! one desktop notification, with the tunnel's name, at a notification server of the
//! test's own; closing the window then hides it and says so, once; and the tunnel's
//! recovery is told too. A far end its health checks find down turns the item's Status
//! to NeedsAttention with a tooltip naming the tunnel and the cause, and makes exactly one
//! notification for the whole spell; both return when it is back. Tunnel names reach a
//! server that reads markup escaped, as dbus-monitor sees them on the bus.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

mod support;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice::services::{Desktop, LoginEntries};
use sluice_engine::{Config, KeyRef, Mode, TunnelSpec, TunnelState};
use support::*;
use zbus::zvariant::{OwnedValue, Value};

/// A StatusNotifierWatcher, as a panel provides: it records the items that register.
struct Watcher {
    items: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    fn register_status_notifier_item(
        &self,
        service: &str,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) {
        // ksni registers its own bus name; an item may also pass only a path.
        let name = if service.starts_with('/') {
            header.sender().map(|s| s.to_string()).unwrap_or_default()
        } else {
            service.to_owned()
        };
        self.items.lock().unwrap().push(name);
    }

    fn register_status_notifier_host(&self, _service: &str) {}

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        self.items.lock().unwrap().clone()
    }

    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }
}

/// A notification server that keeps every (summary, body) it is sent, and says whether
/// it reads markup in bodies.
struct Notifications {
    received: Arc<Mutex<Vec<(String, String)>>>,
    body_markup: bool,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: &str,
        _replaces_id: u32,
        _app_icon: &str,
        summary: &str,
        body: &str,
        _actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut received = self.received.lock().unwrap();
        received.push((summary.to_owned(), body.to_owned()));
        received.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        let mut caps = vec!["body".into()];
        if self.body_markup {
            caps.push("body-markup".into());
        }
        caps
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        ("test".into(), "sluice".into(), "1".into(), "1.2".into())
    }

    fn close_notification(&self, _id: u32) {}
}

/// Every menu item's label and id, depth first, from a dbusmenu layout.
fn menu_items(value: &Value<'_>, out: &mut Vec<(i32, String)>) {
    match value {
        Value::Value(inner) => menu_items(inner, out),
        Value::Structure(s) => {
            let fields = s.fields();
            if let (Some(Value::I32(id)), Some(Value::Dict(props))) =
                (fields.first(), fields.get(1))
            {
                let label: Option<String> = props
                    .get::<&str, Value<'_>>(&"label")
                    .ok()
                    .flatten()
                    .and_then(|v| match v {
                        Value::Str(s) => Some(s.to_string()),
                        Value::Value(b) => match *b {
                            Value::Str(s) => Some(s.to_string()),
                            _ => None,
                        },
                        _ => None,
                    });
                if let Some(label) = label {
                    out.push((*id, label));
                }
            }
            for field in fields {
                menu_items(field, out);
            }
        }
        Value::Array(items) => {
            for item in items.iter() {
                menu_items(item, out);
            }
        }
        _ => {}
    }
}

fn read_menu(bus: &zbus::blocking::Connection, item: &str) -> Vec<(i32, String)> {
    let sni = zbus::blocking::Proxy::new(
        bus,
        item,
        "/StatusNotifierItem",
        "org.kde.StatusNotifierItem",
    )
    .unwrap();
    let menu_path: zbus::zvariant::OwnedObjectPath = sni.get_property("Menu").unwrap();
    let menu = zbus::blocking::Proxy::new(bus, item, menu_path.as_str(), "com.canonical.dbusmenu")
        .unwrap();
    let reply = menu
        .call_method("GetLayout", &(0i32, -1i32, Vec::<String>::new()))
        .unwrap();
    let body = reply.body();
    type Layout = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);
    let (_revision, (_root, _props, children)): (u32, Layout) = body.deserialize().unwrap();
    let mut items = Vec::new();
    for child in &children {
        menu_items(child, &mut items);
    }
    items
}

/// The tests take the session bus's well-known names (the notification server, the
/// panel): one test at a time.
static SESSION_BUS: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SESSION_BUS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_tray_menu_and_one_notification_each_for_failing_and_recovering() {
    let _bus = one_at_a_time();
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "run through scripts/with-test-session (a private D-Bus session)"
    );
    let items = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(Mutex::new(Vec::new()));
    let _panel = zbus::blocking::connection::Builder::session()
        .unwrap()
        .name("org.kde.StatusNotifierWatcher")
        .unwrap()
        .serve_at(
            "/StatusNotifierWatcher",
            Watcher {
                items: Arc::clone(&items),
            },
        )
        .unwrap()
        .name("org.freedesktop.Notifications")
        .unwrap()
        .serve_at(
            "/org/freedesktop/Notifications",
            Notifications {
                received: Arc::clone(&received),
                body_markup: false,
            },
        )
        .unwrap()
        .build()
        .unwrap();

    // One tunnel whose target refuses connections: every client makes it fail.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("test.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let listen_port = free_port();
    let closed = sluice_testkit::refusing_addr(std::net::Ipv4Addr::LOCALHOST.into());
    let closed_port = closed.addr.tcp().port();
    let mut config = Config::default();
    let mut billing = TunnelSpec::new(
        "billing db",
        Mode::Encrypt,
        format!("[127.0.0.1]:{listen_port}"),
        format!("[127.0.0.1]:{closed_port}"),
        KeyRef::File(key.clone()),
    );
    // Its failing connections are what this test is about: no health checks, which
    // would speak for the far end instead (see the health test below).
    billing.health_check_secs = None;
    config.tunnels.push(billing);
    config.save_atomic(&dir.path().join("config.ron")).unwrap();

    let mut services = services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    );
    services.desktop = Desktop {
        tray: true,
        notifications: true,
        // Short, so the recovery below is told soon (the 30 s default is unit-tested).
        notification_gap: Duration::from_secs(1),
        login_entries: LoginEntries::Off,
        ..Desktop::none()
    };
    let mut harness = app_harness(services);
    harness.run_ok();

    // The item registers with the watcher, and its menu lists the tunnel.
    let bus = zbus::blocking::Connection::session().unwrap();
    let item = wait_for("the tray item to register", || {
        items.lock().unwrap().first().cloned()
    });
    let menu = read_menu(&bus, &item);
    let labels: Vec<&str> = menu.iter().map(|(_, l)| l.as_str()).collect();
    assert!(labels.contains(&"billing db — stopped"), "{labels:?}");
    assert!(labels.contains(&"Show Sluice") && labels.contains(&"Quit"));

    // Start it from the tray menu, as a click there does.
    let start = menu
        .iter()
        .find(|(_, l)| l == "Start billing db")
        .map(|(id, _)| *id)
        .expect("a start item for the tunnel");
    let dbusmenu =
        zbus::blocking::Proxy::new(&bus, item.as_str(), "/MenuBar", "com.canonical.dbusmenu")
            .unwrap();
    dbusmenu
        .call_method("Event", &(start, "clicked", Value::from(0i32), 0u32))
        .unwrap();
    wait_until(&mut harness, "the tunnel to listen", |app| {
        app.model
            .mirror
            .statuses
            .values()
            .any(|s| matches!(s.state, TunnelState::Listening { .. }))
    });
    let shown = wait_for("the menu to show the tunnel running", || {
        harness.step();
        harness.run_ok();
        read_menu(&bus, &item)
            .into_iter()
            .find(|(_, l)| l == "billing db — running")
    });
    assert_eq!(shown.1, "billing db — running");

    // A storm of clients, each failing at the unreachable target: one notification.
    let addr: SocketAddr = format!("127.0.0.1:{listen_port}").parse().unwrap();
    for _ in 0..20 {
        if let Ok(stream) = TcpStream::connect(addr) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
    wait_until(&mut harness, "all 20 failures to be counted", |app| {
        app.model
            .mirror
            .statuses
            .values()
            .any(|s| s.counters.target_failures >= 20)
    });
    let notes = wait_for("the notification", || {
        let notes = received.lock().unwrap().clone();
        (!notes.is_empty()).then_some(notes)
    });
    // Everything the app saw is told (nothing waits), and it was told once.
    harness.run_ok();
    assert_eq!(harness.state().pending_alerts(), 0);
    let notes_after = received.lock().unwrap().clone();
    assert_eq!(
        notes_after.len(),
        1,
        "one notification, not one per failure: {notes_after:?}"
    );
    let (summary, body) = &notes[0];
    assert_eq!(summary, "Tunnel \"billing db\" is failing");
    assert!(body.contains("target cannot be reached"), "{body}");

    // The tray shows the failure at a glance, in its title and in the menu.
    let sni = zbus::blocking::Proxy::new(
        &bus,
        item.as_str(),
        "/StatusNotifierItem",
        "org.kde.StatusNotifierItem",
    )
    .unwrap();
    let title = wait_for("the tray to show the failure", || {
        harness.step();
        harness.run_ok();
        let title: String = sni.get_property("Title").unwrap();
        title.contains("failed").then_some(title)
    });
    assert_eq!(title, "Sluice: a tunnel failed (1 running)");
    assert!(
        read_menu(&bus, &item)
            .iter()
            .any(|(_, l)| l == "billing db — failing")
    );

    // Closing the window with the tunnel running hides it, and says so once.
    harness
        .input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
    harness.step();
    harness.run_ok();
    assert!(harness.state().is_hidden(), "closing hid the window");
    let notes = wait_for("the close to be explained", || {
        let notes = received.lock().unwrap().clone();
        (notes.len() == 2).then_some(notes)
    });
    assert_eq!(notes[1].0, "Sluice keeps running");
    assert!(notes[1].1.contains("tray icon"), "{}", notes[1].1);

    // The far end comes up (the real spiped -d, with the same key, before an echo
    // server), data goes through again: the recovery is told, window hidden or not.
    let echo = echo_server();
    // The port was held refusing until now; spiped takes it over.
    drop(closed);
    let far_end = std::process::Command::new("spiped")
        .args(["-d", "-F", "-s"])
        .arg(format!("[127.0.0.1]:{closed_port}"))
        .arg("-t")
        .arg(format!("[127.0.0.1]:{}", echo.port()))
        .arg("-k")
        .arg(&key)
        .spawn()
        .expect("spiped runs (scripts/install-test-deps installs it)");
    let far_end = KillOnDrop(far_end);
    wait_for("spiped to listen", || {
        TcpStream::connect(("127.0.0.1", closed_port)).ok()
    });
    assert_eq!(round_trip(addr, b"hello again"), b"hello again");
    let notes = wait_for("the recovery to be told", || {
        harness.step();
        harness.run_ok();
        let notes = received.lock().unwrap().clone();
        (notes.len() == 3).then_some(notes)
    });
    assert_eq!(notes[2].0, "Tunnel \"billing db\" works again");
    drop(far_end);
}

/// Kills and reaps a process the test started, whatever happens.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dbus-monitor watching every Notify call on the session bus; its output so far.
struct Monitor {
    child: KillOnDrop,
    output: Arc<Mutex<String>>,
}

impl Monitor {
    fn start() -> Monitor {
        let child = match std::process::Command::new("dbus-monitor")
            .args([
                "--session",
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("dbus-monitor does not run ({e}): apt-get install dbus-bin"),
        };
        let mut child = KillOnDrop(child);
        let mut stdout = child.0.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let monitor = Monitor { child, output };
        // It has become a monitor once the bus took its name away.
        wait_for("dbus-monitor to watch", || {
            monitor.text().contains("member=NameLost").then_some(())
        });
        monitor
    }

    fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

#[test]
fn tunnel_names_reach_a_markup_reading_server_escaped() {
    let _bus = one_at_a_time();
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "run through scripts/with-test-session (a private D-Bus session)"
    );
    let received = Arc::new(Mutex::new(Vec::new()));
    let _server = zbus::blocking::connection::Builder::session()
        .unwrap()
        .name("org.freedesktop.Notifications")
        .unwrap()
        .serve_at(
            "/org/freedesktop/Notifications",
            Notifications {
                received: Arc::clone(&received),
                body_markup: true,
            },
        )
        .unwrap()
        .build()
        .unwrap();
    let monitor = Monitor::start();

    // Three tunnels whose targets refuse connections; two with names a server would take
    // for markup.
    let hostile = r#"<b>x</b> & 100% "q" \ a"#;
    let names = ["first", hostile, "<i>also</i>"];
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("test.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = Config::default();
    let mut ports = Vec::new();
    for name in names {
        let port = free_port();
        ports.push(port);
        let mut spec = TunnelSpec::new(
            name,
            Mode::Encrypt,
            format!("[127.0.0.1]:{port}"),
            format!("[127.0.0.1]:{}", free_port()),
            KeyRef::File(key.clone()),
        );
        spec.autostart = true;
        // Failing connections, not health checks, make these notifications.
        spec.health_check_secs = None;
        config.tunnels.push(spec);
    }
    config.save_atomic(&dir.path().join("config.ron")).unwrap();
    let mut services = services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    );
    services.desktop = Desktop {
        notifications: true,
        // Long enough that the two failures after the first are told together.
        notification_gap: Duration::from_secs(3),
        ..Desktop::none()
    };
    let mut harness = app_harness(services);
    wait_until(&mut harness, "the three tunnels to listen", |app| {
        app.model.mirror.statuses.len() == 3
            && app
                .model
                .mirror
                .statuses
                .values()
                .all(|s| matches!(s.state, TunnelState::Listening { .. }))
    });
    let fail = |port: u16| {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    };
    fail(ports[0]);
    wait_for("the first notification", || {
        harness.step();
        harness.run_ok();
        (received.lock().unwrap().len() == 1).then_some(())
    });
    // The other two fail within the gap: one notification, one line each, by name.
    fail(ports[1]);
    fail(ports[2]);
    let notes = wait_for("the second notification", || {
        harness.step();
        harness.run_ok();
        let notes = received.lock().unwrap().clone();
        (notes.len() == 2).then_some(notes)
    });
    assert_eq!(notes[1].0, "2 tunnels are failing");
    let escaped = r#"&lt;b&gt;x&lt;/b&gt; &amp; 100% "q" \ a: the target cannot be reached"#;
    assert_eq!(
        notes[1].1,
        format!("{escaped}\n&lt;i&gt;also&lt;/i&gt;: the target cannot be reached")
    );
    // What went over the bus, as a bystander saw it.
    let seen = wait_for("dbus-monitor to see both calls", || {
        let text = monitor.text();
        text.contains(escaped).then_some(text)
    });
    assert!(
        !seen.contains("<b>") && !seen.contains("<i>"),
        "unescaped markup on the bus: {seen}"
    );
    drop(monitor.child);
}

/// The tray item's `Status` and its `ToolTip`'s title and description, over D-Bus.
fn tray_status(bus: &zbus::blocking::Connection, item: &str) -> (String, String, String) {
    let sni = zbus::blocking::Proxy::new(
        bus,
        item,
        "/StatusNotifierItem",
        "org.kde.StatusNotifierItem",
    )
    .unwrap();
    let status: String = sni.get_property("Status").unwrap();
    type Pixmap = Vec<(i32, i32, Vec<u8>)>;
    let (_icon, _pixmaps, title, description): (String, Pixmap, String, String) =
        sni.get_property("ToolTip").unwrap();
    (status, title, description)
}

#[test]
fn a_far_end_down_needs_attention_in_the_tray_and_is_told_once() {
    let _bus = one_at_a_time();
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "run through scripts/with-test-session (a private D-Bus session)"
    );
    let items = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(Mutex::new(Vec::new()));
    let _panel = zbus::blocking::connection::Builder::session()
        .unwrap()
        .name("org.kde.StatusNotifierWatcher")
        .unwrap()
        .serve_at(
            "/StatusNotifierWatcher",
            Watcher {
                items: Arc::clone(&items),
            },
        )
        .unwrap()
        .name("org.freedesktop.Notifications")
        .unwrap()
        .serve_at(
            "/org/freedesktop/Notifications",
            Notifications {
                received: Arc::clone(&received),
                body_markup: false,
            },
        )
        .unwrap()
        .build()
        .unwrap();

    // The real spiped -d as the far end, before an echo server; checked every second.
    let dir = tempfile::tempdir().unwrap();
    let key = sluice_testkit::write_key(dir.path(), "redis.key", &[7u8; 32]);
    let echo = echo_server();
    let far_port = free_port();
    let spiped = |port: u16| {
        let child = std::process::Command::new("spiped")
            .args(["-d", "-F", "-s"])
            .arg(format!("[127.0.0.1]:{port}"))
            .arg("-t")
            .arg(format!("[127.0.0.1]:{}", echo.port()))
            .arg("-k")
            .arg(&key)
            .spawn()
            .expect("spiped runs (scripts/install-test-deps installs it)");
        let child = KillOnDrop(child);
        wait_for("spiped to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        child
    };
    let far_end = spiped(far_port);
    let listen_port = free_port();
    let mut spec = TunnelSpec::new(
        "redis",
        Mode::Encrypt,
        format!("[127.0.0.1]:{listen_port}"),
        format!("[127.0.0.1]:{far_port}"),
        KeyRef::File(key.clone()),
    );
    spec.autostart = true;
    spec.health_check_secs = Some(1);
    let mut config = Config::default();
    config.tunnels.push(spec);
    config.save_atomic(&dir.path().join("config.ron")).unwrap();
    let mut services = services(
        dir.path(),
        mock_keychain(),
        Arc::new(ScriptedDialogs::default()),
    );
    services.desktop = Desktop {
        tray: true,
        notifications: true,
        notification_gap: Duration::from_secs(1),
        login_entries: LoginEntries::Off,
        ..Desktop::none()
    };
    let mut harness = app_harness(services);
    let bus = zbus::blocking::Connection::session().unwrap();
    let item = wait_for("the tray item to register", || {
        harness.step();
        harness.run_ok();
        items.lock().unwrap().first().cloned()
    });
    let read = |harness: &mut egui_kittest::Harness<'_, sluice::SluiceApp>| {
        harness.step();
        harness.run_ok();
        tray_status(&bus, &item)
    };
    let (status, title, _) = wait_for("the far end to be found up", || {
        let seen = read(&mut harness);
        harness
            .state()
            .model
            .status("redis")
            .is_some_and(|s| matches!(s.health, sluice_engine::Health::Up { .. }))
            .then_some(seen)
    });
    assert_eq!(status, "Active");
    assert_eq!(title, "Sluice: 1 running");

    // The far end dies; nobody uses the tunnel.
    drop(far_end);
    let (status, title, description) = wait_for("the tray to ask for attention", || {
        let seen = read(&mut harness);
        (seen.0 == "NeedsAttention").then_some(seen)
    });
    assert_eq!(status, "NeedsAttention");
    assert_eq!(title, "Sluice: redis: far end down: nothing listening");
    assert_eq!(description, "redis: far end down: nothing listening");
    let notes = wait_for("the notification", || {
        harness.step();
        harness.run_ok();
        let notes = received.lock().unwrap().clone();
        (!notes.is_empty()).then_some(notes)
    });
    assert_eq!(
        notes[0].0,
        format!("redis: far end down — nothing listening at [127.0.0.1]:{far_port}")
    );
    assert!(
        notes[0].1.contains("nothing is listening"),
        "{}",
        notes[0].1
    );

    // The spell goes on: checks keep failing (and back off), a client fails too; the
    // notification gap (1 s) passes several times over. Nothing more is told.
    if let Ok(stream) = TcpStream::connect(("127.0.0.1", listen_port)) {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let checks_before = harness.state().check_history("redis").len();
    wait_for("two more failed checks", || {
        harness.step();
        harness.run_ok();
        let checks = harness.state().check_history("redis");
        (checks.len() >= checks_before + 2).then_some(())
    });
    harness.run_ok();
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "one notification for one spell: {:?}",
        received.lock().unwrap()
    );
    assert_eq!(read(&mut harness).0, "NeedsAttention");

    // Back: the tray returns to normal, and the recovery is told once.
    let _far_end = spiped(far_port);
    let (status, title, description) = wait_for("the tray to return to normal", || {
        let seen = read(&mut harness);
        (seen.0 == "Active").then_some(seen)
    });
    assert_eq!(
        (status.as_str(), title.as_str()),
        ("Active", "Sluice: 1 running")
    );
    assert_eq!(description, "");
    let notes = wait_for("the recovery to be told", || {
        harness.step();
        harness.run_ok();
        let notes = received.lock().unwrap().clone();
        (notes.len() == 2).then_some(notes)
    });
    assert_eq!(notes[1].0, "redis: far end back up");
}
