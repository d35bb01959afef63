//! What differs between operating systems, in one place: which OS keychain holds the keys,
//! where the settings live, the tray icon, desktop notifications, starting at login and
//! the one-instance check. No other module has a `cfg(target_os)`.
//!
//! Linux: built and tested (Secret Service, ksni, freedesktop notifications, an XDG
//! autostart entry, a UNIX socket). Windows: built, not run (Credential Manager, tray-icon,
//! toasts through notify-rust, the HKCU Run key, a named pipe). macOS: type-checked and
//! linted, not run (Keychain, tray-icon, UNUserNotificationCenter through objc2, a
//! LaunchAgent, the UNIX socket).

#[cfg(unix)]
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

use sluice_engine::KeyStore;

use crate::alerts::Alert;
use crate::error::{
    InstanceError, KeychainUnavailable, LoginStartError, NotifyFailure, TrayUnavailable,
};
use crate::tray::{TrayAction, TraySnapshot};

/// The OS credential store through keyring-core: the Secret Service on Linux, the
/// Credential Manager on Windows, the login Keychain on macOS.
pub fn keychain_store() -> Result<Arc<dyn KeyStore>, KeychainUnavailable> {
    #[cfg(target_os = "linux")]
    {
        zbus_secret_service_keyring_store::Store::new()
            .map(|store| Arc::new(sluice_engine::KeychainStore::new(store)) as Arc<dyn KeyStore>)
            .map_err(|e| KeychainUnavailable::NoSecretService(e.to_string()))
    }
    #[cfg(target_os = "windows")]
    {
        windows_native_keyring_store::Store::new()
            .map(|store| Arc::new(sluice_engine::KeychainStore::new(store)) as Arc<dyn KeyStore>)
            .map_err(|e| KeychainUnavailable::System(e.to_string()))
    }
    #[cfg(target_os = "macos")]
    {
        apple_native_keyring_store::keychain::Store::new()
            .map(|store| Arc::new(sluice_engine::KeychainStore::new(store)) as Arc<dyn KeyStore>)
            .map_err(|e| KeychainUnavailable::System(e.to_string()))
    }
    #[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "macos")))]
    {
        Err(KeychainUnavailable::Unsupported)
    }
}

/// Names this process for the system, first thing in `main`: on Windows its app user
/// model id, the one the MSI's Start menu shortcut carries, so the taskbar groups the
/// window with a pinned shortcut and toasts show as Sluice's. Nothing elsewhere.
pub fn identify_process() {
    #[cfg(target_os = "windows")]
    {
        let id: Vec<u16> = crate::icon::APP_ID.encode_utf16().chain([0]).collect();
        // SAFETY: a NUL-terminated string, copied by the call. A failure only costs the
        // grouping and the toasts' name.
        unsafe {
            windows_sys::Win32::UI::Shell::SetCurrentProcessExplicitAppUserModelID(id.as_ptr());
        }
    }
}

/// The platform's directory for Sluice's settings (e.g. ~/.config/sluice on Linux).
pub fn config_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "Sluice", "sluice")
        .map(|dirs| dirs.config_dir().to_owned())
}

/// The user's OpenSSH client config (~/.ssh/config), whose host aliases the far-end tab
/// offers. OpenSSH uses the same path on every platform it runs on.
pub fn ssh_config_file() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.home_dir().join(".ssh").join("config"))
}

// ---- the tray icon ----------------------------------------------------------------

/// The tray icon. On Linux snapshots go to its own thread, so the UI thread never waits
/// on D-Bus; on Windows and macOS it lives on the UI thread, whose event loop (winit's)
/// delivers its clicks, as both systems require.
pub struct TrayIcon {
    #[cfg(not(any(target_os = "windows", target_os = "macos")))]
    snapshots: std::sync::mpsc::Sender<TraySnapshot>,
    #[cfg(any(target_os = "windows", target_os = "macos"))]
    native: Option<native_tray::NativeTray>,
}

impl TrayIcon {
    /// Shows a new state (the icon, the tooltip and the menu).
    pub fn show(&self, snapshot: TraySnapshot) {
        #[cfg(not(any(target_os = "windows", target_os = "macos")))]
        let _ = self.snapshots.send(snapshot);
        #[cfg(any(target_os = "windows", target_os = "macos"))]
        if let Some(native) = &self.native {
            native.show(&snapshot);
        }
    }
}

/// What the tray reports back: an action from its menu, whether a panel shows it, or that
/// it could not start.
pub enum TrayReport {
    Action(TrayAction),
    /// A panel (StatusNotifierWatcher) shows the icon (`true`), or none does now.
    InPanel(bool),
    Unavailable(TrayUnavailable),
}

/// Starts the tray icon on a thread of its own. On Linux it is a StatusNotifierItem
/// (ksni); it registers with the panel's StatusNotifierWatcher whenever one appears.
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
pub fn start_tray(
    first: TraySnapshot,
    report: impl Fn(TrayReport) + Send + Sync + 'static,
) -> TrayIcon {
    let (snapshots, receiver) = std::sync::mpsc::channel::<TraySnapshot>();
    let report: Arc<dyn Fn(TrayReport) + Send + Sync> = Arc::new(report);
    let thread_report = Arc::clone(&report);
    let started = std::thread::Builder::new()
        .name("sluice-tray".into())
        .spawn(move || run_tray(first, receiver, thread_report));
    if let Err(e) = started {
        report(TrayReport::Unavailable(TrayUnavailable::Service(
            e.to_string(),
        )));
    }
    TrayIcon { snapshots }
}

#[cfg(target_os = "linux")]
fn run_tray(
    first: TraySnapshot,
    snapshots: std::sync::mpsc::Receiver<TraySnapshot>,
    report: Arc<dyn Fn(TrayReport) + Send + Sync>,
) {
    use ksni::blocking::TrayMethods;
    let in_panel = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let tray = sni::SniTray {
        snapshot: first,
        report: Arc::clone(&report),
        in_panel: Arc::clone(&in_panel),
    };
    // A panel that starts after Sluice (or restarts) still gets the item.
    let handle = match tray.assume_sni_available(true).spawn() {
        Ok(handle) => {
            // With no panel yet, `watcher_offline` ran during the spawn.
            report(TrayReport::InPanel(
                in_panel.load(std::sync::atomic::Ordering::Relaxed),
            ));
            handle
        }
        Err(e) => {
            report(TrayReport::Unavailable(TrayUnavailable::Service(
                e.to_string(),
            )));
            return;
        }
    };
    for snapshot in snapshots {
        if handle
            .update(|tray: &mut sni::SniTray| tray.snapshot = snapshot)
            .is_none()
        {
            return;
        }
    }
    handle.shutdown().wait();
}

/// Other Unix systems have no tray code yet (the BSDs could use ksni too): the window
/// is the way back.
#[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "macos")))]
fn run_tray(
    _first: TraySnapshot,
    _snapshots: std::sync::mpsc::Receiver<TraySnapshot>,
    report: Arc<dyn Fn(TrayReport) + Send + Sync>,
) {
    report(TrayReport::Unavailable(TrayUnavailable::Unsupported));
}

/// Starts the tray icon (Windows' notification area, macOS's status bar) on the calling
/// thread, which must be the UI thread: both systems deliver its clicks through that
/// thread's event loop. Its menu's choices come back through `report`.
#[cfg(any(target_os = "windows", target_os = "macos"))]
pub fn start_tray(
    first: TraySnapshot,
    report: impl Fn(TrayReport) + Send + Sync + 'static,
) -> TrayIcon {
    let report: Arc<dyn Fn(TrayReport) + Send + Sync> = Arc::new(report);
    match native_tray::NativeTray::start(&first, Arc::clone(&report)) {
        Ok(native) => {
            // The notification area and the status bar are always there.
            report(TrayReport::InPanel(true));
            TrayIcon {
                native: Some(native),
            }
        }
        Err(why) => {
            report(TrayReport::Unavailable(TrayUnavailable::Service(why)));
            TrayIcon { native: None }
        }
    }
}

/// The tray on Windows and macOS, through `tray-icon` (Tauri's; pure Rust on both, over
/// windows-sys and objc2). Menu items carry what they do in their ids (`show`, `quit`,
/// `start:NAME`, `stop:NAME`), so the click handler needs no state shared with the UI
/// thread.
#[cfg(any(target_os = "windows", target_os = "macos"))]
mod native_tray {
    use std::sync::Arc;

    use tray_icon::menu::{Menu, MenuEvent, MenuId, MenuItem, PredefinedMenuItem, Submenu};
    use tray_icon::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};

    use super::TrayReport;
    use crate::icon;
    use crate::tray::{TrayAction, TraySnapshot};

    pub struct NativeTray {
        icon: tray_icon::TrayIcon,
    }

    impl NativeTray {
        pub fn start(
            first: &TraySnapshot,
            report: Arc<dyn Fn(TrayReport) + Send + Sync>,
        ) -> Result<NativeTray, String> {
            let menu_report = Arc::clone(&report);
            MenuEvent::set_event_handler(Some(move |event: MenuEvent| {
                if let Some(action) = action_of(&event.id) {
                    menu_report(TrayReport::Action(action));
                }
            }));
            // A click on the icon itself shows the window (the menu is on the right
            // button on Windows, and on any click on macOS).
            TrayIconEvent::set_event_handler(Some(move |event: TrayIconEvent| {
                if let TrayIconEvent::Click {
                    button: MouseButton::Left,
                    button_state: MouseButtonState::Up,
                    ..
                } = event
                {
                    report(TrayReport::Action(TrayAction::Show));
                }
            }));
            let mut builder = TrayIconBuilder::new()
                .with_id(icon::APP_ID)
                .with_tooltip(first.summary())
                .with_menu(Box::new(menu(first)?))
                .with_menu_on_left_click(cfg!(target_os = "macos"));
            if let Some(image) = image(first) {
                builder = builder.with_icon(image);
            }
            builder
                .build()
                .map(|icon| NativeTray { icon })
                .map_err(|e| e.to_string())
        }

        /// Brings the icon, tooltip and menu up to date; a part that fails keeps its old
        /// state (the next change tries again).
        pub fn show(&self, snapshot: &TraySnapshot) {
            if let Ok(menu) = menu(snapshot) {
                self.icon.set_menu(Some(Box::new(menu)));
            }
            let _ = self.icon.set_tooltip(Some(snapshot.summary()));
            if let Some(image) = image(snapshot) {
                let _ = self.icon.set_icon(Some(image));
            }
        }
    }

    fn image(snapshot: &TraySnapshot) -> Option<tray_icon::Icon> {
        let data = icon::tray_icon(snapshot.health).ok()?;
        tray_icon::Icon::from_rgba(data.rgba, data.width, data.height).ok()
    }

    /// What a menu item's id asks for.
    fn action_of(id: &MenuId) -> Option<TrayAction> {
        let id = id.as_ref();
        match id {
            "show" => Some(TrayAction::Show),
            "quit" => Some(TrayAction::Quit),
            _ => {
                if let Some(name) = id.strip_prefix("start:") {
                    Some(TrayAction::Start(name.to_owned()))
                } else {
                    id.strip_prefix("stop:")
                        .map(|name| TrayAction::Stop(name.to_owned()))
                }
            }
        }
    }

    /// One submenu per tunnel (its state, and Start or Stop), then Show and Quit: the
    /// same menu the Linux tray shows.
    fn menu(snapshot: &TraySnapshot) -> Result<Menu, String> {
        let menu = Menu::new();
        let failed = |e: tray_icon::menu::Error| e.to_string();
        for tunnel in &snapshot.tunnels {
            let (verb, id) = if tunnel.running {
                ("Stop", format!("stop:{}", tunnel.name))
            } else {
                ("Start", format!("start:{}", tunnel.name))
            };
            let item = MenuItem::with_id(id, format!("{verb} {}", tunnel.name), true, None);
            let submenu =
                Submenu::with_items(TraySnapshot::label(tunnel), true, &[&item]).map_err(failed)?;
            menu.append(&submenu).map_err(failed)?;
        }
        if !snapshot.tunnels.is_empty() {
            menu.append(&PredefinedMenuItem::separator())
                .map_err(failed)?;
        }
        menu.append(&MenuItem::with_id("show", "Show Sluice", true, None))
            .map_err(failed)?;
        menu.append(&MenuItem::with_id("quit", "Quit", true, None))
            .map_err(failed)?;
        Ok(menu)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn menu_ids_say_what_they_do() {
            assert!(matches!(
                action_of(&MenuId::new("show")),
                Some(TrayAction::Show)
            ));
            assert!(matches!(
                action_of(&MenuId::new("quit")),
                Some(TrayAction::Quit)
            ));
            assert!(
                matches!(action_of(&MenuId::new("start:a:b")), Some(TrayAction::Start(n)) if n == "a:b")
            );
            assert!(
                matches!(action_of(&MenuId::new("stop:x")), Some(TrayAction::Stop(n)) if n == "x")
            );
            assert!(action_of(&MenuId::new("other")).is_none());
        }
    }
}

#[cfg(target_os = "linux")]
mod sni {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::TrayReport;
    use crate::icon;
    use crate::tray::{TrayAction, TraySnapshot};

    pub struct SniTray {
        pub snapshot: TraySnapshot,
        pub report: Arc<dyn Fn(TrayReport) + Send + Sync>,
        pub in_panel: Arc<AtomicBool>,
    }

    fn item(label: String, action: TrayAction) -> ksni::MenuItem<SniTray> {
        ksni::menu::StandardItem {
            label,
            activate: Box::new(move |tray: &mut SniTray| {
                (tray.report)(TrayReport::Action(action.clone()))
            }),
            ..Default::default()
        }
        .into()
    }

    impl ksni::Tray for SniTray {
        fn id(&self) -> String {
            icon::APP_ID.into()
        }

        fn title(&self) -> String {
            self.snapshot.summary()
        }

        fn icon_name(&self) -> String {
            icon::APP_ID.into()
        }

        fn icon_pixmap(&self) -> Vec<ksni::Icon> {
            icon::tray_icon(self.snapshot.health)
                .map(|data| {
                    // RGBA to ARGB32 in network byte order, as the item's pixmaps are.
                    let argb = data
                        .rgba
                        .chunks_exact(4)
                        .flat_map(|p| [p[3], p[0], p[1], p[2]])
                        .collect();
                    vec![ksni::Icon {
                        width: data.width as i32,
                        height: data.height as i32,
                        data: argb,
                    }]
                })
                .unwrap_or_default()
        }

        fn status(&self) -> ksni::Status {
            if self.snapshot.health.needs_attention() {
                ksni::Status::NeedsAttention
            } else {
                ksni::Status::Active
            }
        }

        fn tool_tip(&self) -> ksni::ToolTip {
            ksni::ToolTip {
                title: self.snapshot.summary(),
                // The spec lets hosts read markup here: names are text, not tags.
                description: super::escape_markup(&self.snapshot.details()),
                ..Default::default()
            }
        }

        fn activate(&mut self, _x: i32, _y: i32) {
            (self.report)(TrayReport::Action(TrayAction::Show));
        }

        fn watcher_online(&self) {
            self.in_panel.store(true, Ordering::Relaxed);
            (self.report)(TrayReport::InPanel(true));
        }

        fn watcher_offline(&self, _reason: ksni::OfflineReason) -> bool {
            self.in_panel.store(false, Ordering::Relaxed);
            (self.report)(TrayReport::InPanel(false));
            // Keep the item: it registers again when a panel comes (back).
            true
        }

        fn menu(&self) -> Vec<ksni::MenuItem<Self>> {
            let mut items = Vec::new();
            for tunnel in &self.snapshot.tunnels {
                let (verb, action) = if tunnel.running {
                    ("Stop", TrayAction::Stop(tunnel.name.clone()))
                } else {
                    ("Start", TrayAction::Start(tunnel.name.clone()))
                };
                items.push(
                    ksni::menu::SubMenu {
                        label: TraySnapshot::label(tunnel),
                        submenu: vec![item(format!("{verb} {}", tunnel.name), action)],
                        ..Default::default()
                    }
                    .into(),
                );
            }
            if !items.is_empty() {
                items.push(ksni::MenuItem::Separator);
            }
            items.push(item("Show Sluice".into(), TrayAction::Show));
            items.push(item("Quit".into(), TrayAction::Quit));
            items
        }
    }
}

// ---- desktop notifications ----------------------------------------------------------

/// Shows one desktop notification (freedesktop notifications on Linux, a toast on
/// Windows, both through notify-rust; UNUserNotificationCenter on macOS). Blocks on the
/// notification service: call it off the UI thread.
#[cfg(not(target_os = "macos"))]
pub fn notify(alert: &Alert) -> Result<(), NotifyFailure> {
    // A server that reads markup in bodies says so ("body-markup"); one that does not
    // shows the body as it is. If it cannot be asked, escaping is the safe guess.
    #[cfg(all(unix, not(target_os = "macos")))]
    let body_markup = notify_rust::get_capabilities()
        .map_or(true, |caps| caps.iter().any(|c| c == "body-markup"));
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    let body_markup = false;
    let (summary, body) = notification_text(alert, body_markup);
    let mut notification = notify_rust::Notification::new();
    notification
        .appname("Sluice")
        .summary(&summary)
        .body(&body)
        .icon(crate::icon::APP_ID);
    // Windows shows a toast only for an app id a Start menu shortcut carries: the MSI's
    // shortcut has this one (installers/windows/sluice.wxs).
    #[cfg(target_os = "windows")]
    notification.app_id(crate::icon::APP_ID);
    #[cfg(target_os = "linux")]
    notification.urgency(if alert.failure {
        notify_rust::Urgency::Critical
    } else {
        notify_rust::Urgency::Normal
    });
    notification
        .show()
        .map(|_| ())
        .map_err(|e| NotifyFailure(e.to_string()))
}

/// Shows one notification through UNUserNotificationCenter, asking for permission the
/// first time (macOS remembers the answer). Only an app bundle may post: run from a bare
/// binary, this says so instead. Blocks until macOS has taken it: call it off the UI
/// thread.
#[cfg(target_os = "macos")]
pub fn notify(alert: &Alert) -> Result<(), NotifyFailure> {
    use std::sync::mpsc;

    use block2::RcBlock;
    use objc2::runtime::Bool;
    use objc2_foundation::{NSBundle, NSError, NSString};
    use objc2_user_notifications::{
        UNAuthorizationOptions, UNMutableNotificationContent, UNNotificationRequest,
        UNUserNotificationCenter,
    };

    /// How long macOS may take to answer each request.
    const ANSWER: Duration = Duration::from_secs(10);
    let failed = |why: &str| NotifyFailure(why.to_owned());
    // currentNotificationCenter raises an Objective-C exception (an abort) in a process
    // without a bundle identifier.
    if NSBundle::mainBundle().bundleIdentifier().is_none() {
        return Err(failed(
            "macOS shows notifications only for an app bundle: start Sluice from Sluice.app",
        ));
    }
    let (summary, body) = notification_text(alert, false);
    let center = UNUserNotificationCenter::currentNotificationCenter();

    let (granted_tx, granted) = mpsc::channel();
    let on_answer = RcBlock::new(move |yes: Bool, _error: *mut NSError| {
        let _ = granted_tx.send(yes.as_bool());
    });
    center.requestAuthorizationWithOptions_completionHandler(
        UNAuthorizationOptions::Alert | UNAuthorizationOptions::Sound,
        &on_answer,
    );
    match granted.recv_timeout(ANSWER) {
        Ok(true) => {}
        Ok(false) => {
            return Err(failed(
                "notifications are turned off for Sluice: allow them in System Settings, Notifications",
            ));
        }
        Err(_) => return Err(failed("macOS did not answer the request to notify")),
    }

    let content = UNMutableNotificationContent::new();
    content.setTitle(&NSString::from_str(&summary));
    content.setBody(&NSString::from_str(&body));
    let id = format!("org.sluice.Sluice.{}", std::process::id());
    let request = UNNotificationRequest::requestWithIdentifier_content_trigger(
        &NSString::from_str(&id),
        &content,
        None,
    );
    let (added_tx, added) = mpsc::channel();
    let on_added = RcBlock::new(move |error: *mut NSError| {
        let _ = added_tx.send(error.is_null());
    });
    center.addNotificationRequest_withCompletionHandler(&request, Some(&on_added));
    match added.recv_timeout(ANSWER) {
        Ok(true) => Ok(()),
        Ok(false) => Err(failed("macOS refused the notification")),
        Err(_) => Err(failed("macOS did not take the notification in time")),
    }
}

/// The summary and body as the freedesktop notification spec wants them: the summary is
/// one line of plain text; in the body, where the server reads markup, `&`, `<` and `>`
/// are escaped, so a tunnel's name or a peer's words show as written and never as
/// markup (a link, an image, bold).
pub fn notification_text(alert: &Alert, body_markup: bool) -> (String, String) {
    let summary = alert
        .summary
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let body = if body_markup {
        escape_markup(&alert.body)
    } else {
        alert.body.clone()
    };
    (summary, body)
}

/// `&`, `<` and `>` as the entities the notification spec's markup (a subset of XML)
/// reads back as those characters.
fn escape_markup(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    escaped
}

// ---- start at login -----------------------------------------------------------------

/// Where Windows keeps what starts at login for this user (the value is named "Sluice").
#[cfg(target_os = "windows")]
const RUN_KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Run";

/// Where the start-at-login entry lives: `dir` if given (tests), else the system's place
/// (the XDG autostart directory on Linux, ~/Library/LaunchAgents on macOS; on Windows
/// the Run key's "Sluice" value, named as a path for messages).
pub fn login_entry_path(dir: Option<&Path>) -> Option<PathBuf> {
    #[cfg(target_os = "windows")]
    if dir.is_none() {
        return Some(PathBuf::from(format!(
            r"HKEY_CURRENT_USER\{RUN_KEY}\Sluice"
        )));
    }
    #[cfg(not(any(target_os = "macos", target_os = "windows")))]
    const NAME: &str = "org.sluice.Sluice.desktop";
    #[cfg(target_os = "macos")]
    const NAME: &str = "org.sluice.Sluice.plist";
    #[cfg(target_os = "windows")]
    const NAME: &str = "Sluice.cmd";
    let base = directories::BaseDirs::new();
    let default = || {
        base.as_ref().map(|b| {
            #[cfg(not(any(target_os = "macos", target_os = "windows")))]
            let dir = b.config_dir().join("autostart");
            #[cfg(target_os = "macos")]
            let dir = b.home_dir().join("Library/LaunchAgents");
            #[cfg(target_os = "windows")]
            let dir = b
                .config_dir()
                .join("Microsoft\\Windows\\Start Menu\\Programs\\Startup");
            dir
        })
    };
    dir.map(Path::to_owned)
        .or_else(default)
        .map(|d| d.join(NAME))
}

/// Writes (or removes) the entry that starts Sluice at login, hidden in the tray
/// (`--hidden`). Linux: an XDG autostart desktop entry. macOS: a LaunchAgent (checked,
/// not run). Windows: the HKCU Run key's "Sluice" value (built, not run); with `dir`
/// (tests), a script there instead.
pub fn set_start_at_login(dir: Option<&Path>, on: bool) -> Result<PathBuf, LoginStartError> {
    let path = login_entry_path(dir).ok_or(LoginStartError::NoPlace)?;
    #[cfg(target_os = "windows")]
    if dir.is_none() {
        return run_key::set(&path, on).map(|()| path);
    }
    if !on {
        return match std::fs::remove_file(&path) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(path),
            Err(source) => Err(LoginStartError::Remove { path, source }),
        };
    }
    let program = std::env::current_exe().map_err(LoginStartError::NoProgram)?;
    let text = login_entry(&program)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| LoginStartError::Write {
            path: path.clone(),
            source,
        })?;
    }
    sluice_engine::write_atomic(&path, text.as_bytes()).map_err(|source| {
        LoginStartError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

#[cfg(not(any(target_os = "macos", target_os = "windows")))]
fn login_entry(program: &Path) -> Result<String, LoginStartError> {
    // A desktop entry is UTF-8: a path that is not cannot be written into one.
    let program = program
        .to_str()
        .ok_or_else(|| LoginStartError::NotUtf8(program.to_owned()))?;
    Ok(format!(
        "[Desktop Entry]\nType=Application\nName=Sluice\nComment=Starts Sluice's tunnels at login, in the tray\nExec={} --hidden\nIcon={}\nTerminal=false\nNoDisplay=true\nX-GNOME-Autostart-enabled=true\n",
        exec_argument(program),
        crate::icon::APP_ID
    ))
}

/// One argument of a desktop entry's `Exec=` key, as the Desktop Entry spec reads it back:
/// quoted whole, with `"`, `` ` ``, `$` and `\` escaped by a backslash inside the quotes;
/// a literal `%` doubled (a single one starts a field code such as `%f`); then, since
/// `Exec` is a string value, backslashes doubled again and newlines, tabs and carriage
/// returns written as `\n`, `\t`, `\r` (that escaping is undone first when the entry is
/// read, the quoting after it).
#[cfg(not(any(target_os = "macos", target_os = "windows")))]
fn exec_argument(argument: &str) -> String {
    let mut quoted = String::from("\"");
    for c in argument.chars() {
        match c {
            '"' | '`' | '$' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '%' => quoted.push_str("%%"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    let mut value = String::with_capacity(quoted.len());
    for c in quoted.chars() {
        match c {
            '\\' => value.push_str("\\\\"),
            '\n' => value.push_str("\\n"),
            '\t' => value.push_str("\\t"),
            '\r' => value.push_str("\\r"),
            c => value.push(c),
        }
    }
    value
}

#[cfg(target_os = "macos")]
fn login_entry(program: &Path) -> Result<String, LoginStartError> {
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\"><dict><key>Label</key><string>org.sluice.Sluice</string><key>ProgramArguments</key><array><string>{}</string><string>--hidden</string></array><key>RunAtLoad</key><true/></dict></plist>\n",
        escape_markup(&program.display().to_string())
    ))
}

#[cfg(target_os = "windows")]
fn login_entry(program: &Path) -> Result<String, LoginStartError> {
    // In a batch file a single `%` starts a variable.
    let program = program.display().to_string().replace('%', "%%");
    Ok(format!("@start \"\" \"{program}\" --hidden\r\n"))
}

/// The HKCU Run key's "Sluice" value: the quoted program path and `--hidden`.
#[cfg(target_os = "windows")]
mod run_key {
    use std::path::Path;

    use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_SUCCESS};
    use windows_sys::Win32::System::Registry::{
        HKEY_CURRENT_USER, REG_SZ, RegDeleteKeyValueW, RegSetKeyValueW,
    };

    use crate::error::LoginStartError;

    fn wide(text: &str) -> Vec<u16> {
        text.encode_utf16().chain([0]).collect()
    }

    /// Sets (or deletes) the value; `shown` names it in errors.
    pub fn set(shown: &Path, on: bool) -> Result<(), LoginStartError> {
        let key = wide(super::RUN_KEY);
        let name = wide("Sluice");
        if !on {
            // SAFETY: NUL-terminated strings; deleting a missing value is reported, not
            // undefined.
            let status =
                unsafe { RegDeleteKeyValueW(HKEY_CURRENT_USER, key.as_ptr(), name.as_ptr()) };
            return match status {
                ERROR_SUCCESS | ERROR_FILE_NOT_FOUND => Ok(()),
                error => Err(LoginStartError::Remove {
                    path: shown.to_owned(),
                    source: std::io::Error::from_raw_os_error(error as i32),
                }),
            };
        }
        let program = std::env::current_exe().map_err(LoginStartError::NoProgram)?;
        let program = program
            .to_str()
            .ok_or_else(|| LoginStartError::NotUtf8(program.clone()))?;
        // Quoted whole: Program Files has a space in its name.
        let value = wide(&format!("\"{program}\" --hidden"));
        let bytes = u32::try_from(value.len() * 2).map_err(|e| LoginStartError::Write {
            path: shown.to_owned(),
            source: std::io::Error::other(e),
        })?;
        // SAFETY: NUL-terminated strings; `bytes` is the value's size with its NUL.
        let status = unsafe {
            RegSetKeyValueW(
                HKEY_CURRENT_USER,
                key.as_ptr(),
                name.as_ptr(),
                REG_SZ,
                value.as_ptr().cast(),
                bytes,
            )
        };
        if status == ERROR_SUCCESS {
            Ok(())
        } else {
            Err(LoginStartError::Write {
                path: shown.to_owned(),
                source: std::io::Error::from_raw_os_error(status as i32),
            })
        }
    }
}

// ---- one instance ---------------------------------------------------------------------

/// How long the first instance gives a connection to say what it wants; a silent or slow
/// client is dropped after this, so it holds up later starts by at most this long.
#[cfg(unix)]
const REQUEST_DEADLINE: Duration = Duration::from_secs(1);

/// The most the first instance reads of a request ("show\n" is 5 bytes).
const MAX_REQUEST_LEN: usize = 16;

/// How long a second start waits for the first to answer (connect, write and read in
/// all) before it gives up, and starts nothing.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(3);

/// What a start found: it is the first Sluice of this user (and holds the instance
/// socket, or on Windows the instance pipe), or another one runs and was asked to show
/// its window.
pub enum Instance {
    First(InstanceLock),
    HandedOver,
}

/// The first instance's socket; a second start connects to it and says "show". On
/// Windows, the first instance of the instance pipe; a second start connects and is
/// answered "ok" as the window shows.
pub struct InstanceLock {
    #[cfg(unix)]
    listener: std::os::unix::net::UnixListener,
    #[cfg(windows)]
    pipe: std::fs::File,
    path: PathBuf,
}

impl InstanceLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers later starts on a thread of its own, calling `show` for each. Connections
    /// are taken one at a time, each given [`REQUEST_DEADLINE`] and [`MAX_REQUEST_LEN`]
    /// bytes to ask, and only from processes of this user: another user's connection is
    /// closed unread.
    pub fn serve(self, show: impl Fn() + Send + 'static) {
        #[cfg(unix)]
        {
            let _ = std::thread::Builder::new()
                .name("sluice-instance".into())
                .spawn(move || {
                    let us = unix::our_uid();
                    for stream in self.listener.incoming() {
                        let stream = match stream {
                            Ok(stream) => stream,
                            // Out of descriptors, most likely: wait instead of spinning.
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                        };
                        if unix::peer_uid(&stream) != Some(us) {
                            continue;
                        }
                        if read_request(&stream, REQUEST_DEADLINE).as_deref() == Some("show") {
                            show();
                            let _ = stream.set_write_timeout(Some(REQUEST_DEADLINE));
                            let _ = (&stream).write_all(b"ok\n");
                        }
                    }
                });
        }
        #[cfg(windows)]
        {
            let _ = std::thread::Builder::new()
                .name("sluice-instance".into())
                .spawn(move || pipe::serve(self.pipe, &self.path, show));
        }
    }
}

/// One line (without its newline) of at most [`MAX_REQUEST_LEN`] bytes, read within
/// `deadline` in all; `None` if the peer is silent, slow, says more, or is not text.
#[cfg(unix)]
fn read_request(stream: &std::os::unix::net::UnixStream, deadline: Duration) -> Option<String> {
    let until = Instant::now() + deadline;
    let mut buf = [0u8; MAX_REQUEST_LEN];
    let mut len = 0;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        match (&*stream).read(&mut buf[len..]) {
            Ok(0) => return None,
            Ok(n) => {
                len += n;
                if let Some(end) = buf[..len].iter().position(|&b| b == b'\n') {
                    return std::str::from_utf8(&buf[..end]).ok().map(str::to_owned);
                }
                if len == buf.len() {
                    return None;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// The instance socket's place: `$XDG_RUNTIME_DIR/org.sluice.Sluice.sock` (private to
/// the user), or `dir` if given (tests).
#[cfg(unix)]
pub fn instance_socket(dir: Option<&Path>) -> Option<PathBuf> {
    dir.map(Path::to_owned)
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
        .filter(|d| d.is_dir())
        .map(|d| d.join("org.sluice.Sluice.sock"))
}

/// What asking the socket's holder to show its window came to.
#[cfg(unix)]
enum Asked {
    Shown,
    /// Nothing accepts connections there (no file, or one left by a Sluice that crashed).
    NobodyThere,
    /// Something accepted the connection but did not answer "ok" in time.
    NoAnswer,
}

/// Asks whoever holds the socket to show its window, waiting at most `deadline`. A
/// connect can block (the holder's backlog is full), so the exchange runs on a thread of
/// its own and is abandoned when the deadline passes.
#[cfg(unix)]
fn ask_to_show(path: &Path, deadline: Duration) -> Asked {
    let path = path.to_owned();
    within(deadline, move || {
        let Ok(stream) = std::os::unix::net::UnixStream::connect(&path) else {
            return Asked::NobodyThere;
        };
        let _ = stream.set_write_timeout(Some(deadline));
        if (&stream).write_all(b"show\n").is_err() {
            return Asked::NoAnswer;
        }
        match read_request(&stream, deadline).as_deref() {
            Some("ok") => Asked::Shown,
            _ => Asked::NoAnswer,
        }
    })
    .unwrap_or(Asked::NoAnswer)
}

/// Whether something accepts connections at `path`, known within `deadline` (else yes).
#[cfg(unix)]
fn connectable(path: &Path, deadline: Duration) -> bool {
    let path = path.to_owned();
    within(deadline, move || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    })
    .unwrap_or(true)
}

/// `job`'s result if it comes within `deadline`; the job runs on a thread of its own and
/// is left behind (to end by itself) if it takes longer.
fn within<T: Send + 'static>(
    deadline: Duration,
    job: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sluice-instance-ask".into())
        .spawn(move || {
            let _ = sender.send(job());
        })
        .ok()?;
    receiver.recv_timeout(deadline).ok()
}

/// Claims the instance socket, or hands over to the Sluice that holds it. The directory
/// holding the socket must be this user's and closed to others (else another user could
/// answer for Sluice, or replace its socket); a holder that does not answer within
/// [`ANSWER_DEADLINE`] is an error, not a reason to start a second Sluice.
#[cfg(unix)]
pub fn claim_instance(dir: Option<&Path>) -> Result<Instance, InstanceError> {
    use std::os::unix::net::UnixListener;
    let path = instance_socket(dir).ok_or(InstanceError::NoRuntimeDir)?;
    if let Some(parent) = path.parent() {
        unix::check_private_dir(parent)?;
    }
    // Two tries: a socket file left by a crashed Sluice is removed and bound again.
    for _ in 0..2 {
        match ask_to_show(&path, ANSWER_DEADLINE) {
            Asked::Shown => return Ok(Instance::HandedOver),
            Asked::NoAnswer => {
                return Err(InstanceError::NoAnswer {
                    path,
                    waited: ANSWER_DEADLINE,
                });
            }
            Asked::NobodyThere => {}
        }
        match UnixListener::bind(&path) {
            Ok(listener) => {
                // Only this user may connect (the directory is private already).
                use std::os::unix::fs::PermissionsExt;
                let private = std::fs::Permissions::from_mode(0o600);
                if let Err(source) = std::fs::set_permissions(&path, private) {
                    return Err(InstanceError::Listen { path, source });
                }
                return Ok(Instance::First(InstanceLock { listener, path }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                // Nobody answered on it: stale. (If another start just bound it, the
                // next ask reaches that one.)
                if !connectable(&path, ANSWER_DEADLINE) {
                    let _ = std::fs::remove_file(&path);
                }
            }
            Err(source) => return Err(InstanceError::Listen { path, source }),
        }
    }
    Err(InstanceError::NoAnswer {
        path,
        waited: ANSWER_DEADLINE,
    })
}

/// The instance pipe's name: `\\.\pipe\org.sluice.Sluice.<the user's SID>`, one per
/// user (pipe names are machine-wide), and per `dir` if given (tests).
#[cfg(windows)]
pub fn instance_socket(dir: Option<&Path>) -> Option<PathBuf> {
    let sid = sluice_engine::current_user_sid_string().ok()?;
    let mut name = format!(r"\\.\pipe\org.sluice.Sluice.{sid}");
    if let Some(dir) = dir {
        // Distinct per directory, without the directory's own characters.
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        dir.hash(&mut hasher);
        name.push_str(&format!(".{:016x}", hasher.finish()));
    }
    Some(PathBuf::from(name))
}

/// Claims the instance pipe (its first instance, which only this user may open), or hands
/// over to the Sluice that holds it. A pipe of that name held by another user's program
/// is [`InstanceError::NotOurs`]; a holder that does not answer within
/// [`ANSWER_DEADLINE`] is an error, not a reason to start a second Sluice.
#[cfg(windows)]
pub fn claim_instance(dir: Option<&Path>) -> Result<Instance, InstanceError> {
    let path = instance_socket(dir).ok_or(InstanceError::NoRuntimeDir)?;
    // Two tries: the holder may quit between our failed create and our connect.
    for _ in 0..2 {
        match pipe::create(&path, true) {
            Ok(pipe) => return Ok(Instance::First(InstanceLock { pipe, path })),
            Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => {
                return Err(InstanceError::Listen { path, source: e });
            }
            // The name is taken (FILE_FLAG_FIRST_PIPE_INSTANCE): ask its holder.
            Err(_) => match pipe::ask_to_show(&path, ANSWER_DEADLINE) {
                pipe::Asked::Shown => return Ok(Instance::HandedOver),
                pipe::Asked::NoAnswer => {
                    return Err(InstanceError::NoAnswer {
                        path,
                        waited: ANSWER_DEADLINE,
                    });
                }
                pipe::Asked::NotOurs => return Err(InstanceError::NotOurs { path }),
                pipe::Asked::NobodyThere => {}
            },
        }
    }
    Err(InstanceError::NoAnswer {
        path,
        waited: ANSWER_DEADLINE,
    })
}

/// The instance pipe on Windows: created with an access list that lets only this user
/// open it, local clients only; a start that finds it taken checks that its holder runs
/// as this user before believing its answer.
#[cfg(windows)]
mod pipe {
    use std::io::{Read, Write};
    use std::os::windows::io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use windows_sys::Win32::Foundation::{
        ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
    };
    use windows_sys::Win32::Security::EqualSid;
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_FLAG_FIRST_PIPE_INSTANCE, PIPE_ACCESS_DUPLEX,
    };
    use windows_sys::Win32::System::Pipes::{
        ConnectNamedPipe, CreateNamedPipeW, DisconnectNamedPipe, GetNamedPipeServerProcessId,
        PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
        WaitNamedPipeW,
    };
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION};

    use super::{MAX_REQUEST_LEN, within};

    fn wide(path: &Path) -> Vec<u16> {
        use std::os::windows::ffi::OsStrExt;
        path.as_os_str().encode_wide().chain([0]).collect()
    }

    /// A handle from a call that returns null or INVALID_HANDLE_VALUE on failure.
    fn owned(handle: HANDLE) -> Option<OwnedHandle> {
        // SAFETY: a valid handle the call just returned is ours to close, once.
        (!handle.is_null() && handle != INVALID_HANDLE_VALUE)
            .then(|| unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
    }

    /// One instance of the pipe, which only this user may open, local clients only. The
    /// first (`first`) fails with PermissionDenied if the name is taken.
    pub fn create(path: &Path, first: bool) -> std::io::Result<std::fs::File> {
        // Protected DACL: generic all for this user, nothing for anyone else.
        let attributes = sluice_engine::SecurityAttributes::from_sddl(&format!(
            "D:P(A;;GA;;;{})",
            sluice_engine::current_user_sid_string()?
        ))?;
        let open_mode = PIPE_ACCESS_DUPLEX
            | if first {
                FILE_FLAG_FIRST_PIPE_INSTANCE
            } else {
                0
            };
        let name = wide(path);
        // SAFETY: a NUL-terminated name and valid attributes; the handle is ours.
        let handle = unsafe {
            CreateNamedPipeW(
                name.as_ptr(),
                open_mode,
                PIPE_TYPE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                PIPE_UNLIMITED_INSTANCES,
                MAX_REQUEST_LEN as u32,
                MAX_REQUEST_LEN as u32,
                0,
                attributes.as_ptr(),
            )
        };
        let error = std::io::Error::last_os_error();
        owned(handle).map(std::fs::File::from).ok_or(error)
    }

    /// Answers each connection with "ok" after calling `show`, one connection at a time;
    /// a fresh instance waits for the next start while a connection is finished off.
    pub fn serve(mut pipe: std::fs::File, path: &Path, show: impl Fn()) {
        loop {
            // SAFETY: an open pipe handle; no OVERLAPPED (the call blocks).
            let connected = unsafe {
                ConnectNamedPipe(pipe.as_raw_handle(), std::ptr::null_mut()) != 0
                    || GetLastError() == ERROR_PIPE_CONNECTED
            };
            let next = match create(path, false) {
                Ok(next) => next,
                // Out of handles, most likely: wait instead of spinning.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let done = std::mem::replace(&mut pipe, next);
            if !connected {
                continue;
            }
            show();
            // The answer waits in the pipe until the client reads it; a client that never
            // does holds up only this thread, never the next start.
            let _ = std::thread::Builder::new()
                .name("sluice-instance-answer".into())
                .spawn(move || {
                    let mut done = done;
                    let _ = done.write_all(b"ok\n");
                    let _ = done.sync_all();
                    // SAFETY: an open, connected pipe handle.
                    unsafe { DisconnectNamedPipe(done.as_raw_handle()) };
                });
        }
    }

    /// What asking the pipe's holder to show its window came to.
    pub enum Asked {
        Shown,
        /// Nothing holds the pipe (the holder just quit).
        NobodyThere,
        /// The holder did not answer "ok" in time.
        NoAnswer,
        /// The holder runs as another user: not a Sluice of ours.
        NotOurs,
    }

    /// Connects (waiting while every instance is busy) within `deadline`, checks that the
    /// holder runs as this user, and reads its answer.
    pub fn ask_to_show(path: &Path, deadline: Duration) -> Asked {
        let path = path.to_owned();
        within(deadline, move || {
            let until = Instant::now() + deadline;
            let mut pipe = loop {
                match std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                {
                    Ok(pipe) => break pipe,
                    Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                        let left = until.saturating_duration_since(Instant::now());
                        let ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
                        // SAFETY: a NUL-terminated name.
                        unsafe { WaitNamedPipeW(wide(&path).as_ptr(), ms) };
                        if Instant::now() >= until {
                            return Asked::NoAnswer;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Asked::NobodyThere;
                    }
                    Err(_) => return Asked::NotOurs,
                }
            };
            let mut server = 0u32;
            // SAFETY: an open pipe handle and a local to write to.
            let known =
                unsafe { GetNamedPipeServerProcessId(pipe.as_raw_handle(), &mut server) } != 0;
            // SAFETY: OpenProcess returns a handle we own, or null.
            let holder =
                owned(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, server) });
            let theirs = holder.and_then(|h| sluice_engine::user_sid_of(h.as_handle()).ok());
            let ours = sluice_engine::current_user_sid().ok();
            let same = match (known, theirs, ours) {
                // SAFETY: two valid SIDs.
                (true, Some(mut a), Some(mut b)) => unsafe {
                    EqualSid(a.as_mut_ptr().cast(), b.as_mut_ptr().cast()) != 0
                },
                _ => false,
            };
            if !same {
                return Asked::NotOurs;
            }
            let mut answer = [0u8; MAX_REQUEST_LEN];
            let mut len = 0;
            while len < answer.len() {
                match pipe.read(&mut answer[len..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
                if answer[..len].contains(&b'\n') {
                    break;
                }
            }
            if answer[..len].starts_with(b"ok\n") {
                Asked::Shown
            } else {
                Asked::NoAnswer
            }
        })
        .unwrap_or(Asked::NoAnswer)
    }
}

/// Who is at the other end of the instance socket, and whose its directory is.
#[cfg(unix)]
mod unix {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;
    use std::path::Path;

    use crate::error::InstanceError;

    /// This process's effective user id, the one its files and sockets get.
    pub fn our_uid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// The effective user id of the process that connected (`SO_PEERCRED`).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn peer_uid(stream: &UnixStream) -> Option<u32> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: the descriptor is open for the borrow; getsockopt writes at most `len`
        // bytes into the local `cred`.
        let result = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        (result == 0 && len as usize == std::mem::size_of::<libc::ucred>()).then_some(cred.uid)
    }

    /// The effective user id of the process that connected (`getpeereid`, the BSDs and
    /// macOS). Written, not built here.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub fn peer_uid(stream: &UnixStream) -> Option<u32> {
        let mut uid: libc::uid_t = 0;
        let mut gid: libc::gid_t = 0;
        // SAFETY: the descriptor is open for the borrow; the pointers are to locals.
        let result = unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) };
        (result == 0).then_some(uid)
    }

    /// The directory must be a directory of this user's that neither group nor others can
    /// write to: anyone who can write there can put a socket of their own in its place.
    pub fn check_private_dir(dir: &Path) -> Result<(), InstanceError> {
        let meta = std::fs::metadata(dir).map_err(|source| InstanceError::Listen {
            path: dir.to_owned(),
            source,
        })?;
        let us = our_uid();
        if meta.uid() != us {
            return Err(InstanceError::DirNotOurs {
                dir: dir.to_owned(),
                owner: meta.uid(),
                us,
            });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(InstanceError::DirOpen {
                dir: dir.to_owned(),
                mode: meta.mode() & 0o7777,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tunnel's name as hostile as a name (or a peer's words) can be.
    const HOSTILE: &str = "<b>x</b> & 100% \"q\" \\ a\nsecond line";

    #[test]
    fn notification_bodies_escape_markup_only_where_the_server_reads_it() {
        let alert = Alert {
            summary: HOSTILE.into(),
            body: HOSTILE.into(),
            failure: true,
        };
        let (summary, body) = notification_text(&alert, true);
        assert_eq!(
            summary, "<b>x</b> & 100% \"q\" \\ a second line",
            "plain, one line"
        );
        assert_eq!(
            body,
            "&lt;b&gt;x&lt;/b&gt; &amp; 100% \"q\" \\ a\nsecond line"
        );
        let (_, body) = notification_text(&alert, false);
        assert_eq!(
            body, HOSTILE,
            "a server without markup shows the body as it is"
        );
    }

    /// The Desktop Entry spec's reading of one `Exec` argument: the string escapes first,
    /// then `%%`, then the quoting (as GLib and KDE read it).
    #[cfg(not(any(target_os = "macos", target_os = "windows")))]
    fn read_exec_argument(value: &str) -> String {
        let mut unescaped = String::new();
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                unescaped.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => unescaped.push('\n'),
                Some('t') => unescaped.push('\t'),
                Some('r') => unescaped.push('\r'),
                Some('s') => unescaped.push(' '),
                Some('\\') => unescaped.push('\\'),
                other => panic!("a stray backslash before {other:?} in {value}"),
            }
        }
        let expanded = unescaped.replace("%%", "\u{0}");
        assert!(!expanded.contains('%'), "a field code in {value}");
        let inner = expanded
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("not quoted whole: {value}"));
        let mut argument = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('"' | '`' | '$' | '\\')) => argument.push(e),
                    other => panic!("a bad escape before {other:?} in {value}"),
                },
                '"' | '`' | '$' => panic!("an unescaped {c} in {value}"),
                c => argument.push(c),
            }
        }
        argument.replace('\u{0}', "%")
    }

    #[cfg(not(any(target_os = "macos", target_os = "windows")))]
    #[test]
    fn the_exec_line_quotes_percent_backslashes_and_newlines_as_the_spec_says() {
        let program = format!("/opt/{HOSTILE} `$HOME` %f/sluice");
        let value = exec_argument(&program);
        assert_eq!(
            value,
            r#""/opt/<b>x</b> & 100%% \\"q\\" \\\\ a\nsecond line \\`\\$HOME\\` %%f/sluice""#
        );
        assert!(!value.contains('\n'), "one line");
        assert_eq!(read_exec_argument(&value), program, "read back whole");

        let entry = login_entry(Path::new(&program)).unwrap();
        let exec = entry.lines().find_map(|l| l.strip_prefix("Exec=")).unwrap();
        assert_eq!(exec, format!("{value} --hidden"));
        // The validator of desktop-file-utils agrees (it is what the .deb's checks use).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("org.sluice.Sluice.desktop");
        std::fs::write(&file, &entry).unwrap();
        match std::process::Command::new("desktop-file-validate")
            .arg(&file)
            .output()
        {
            Ok(out) => assert!(
                out.status.success() && out.stdout.is_empty(),
                "{}{entry}",
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(_) if std::env::var_os("CI").is_none() => {
                eprintln!(
                    "desktop-file-validate not found: the entry was checked by the spec's reading only"
                );
            }
            Err(e) => panic!("desktop-file-validate: {e}: apt-get install desktop-file-utils"),
        }

        use std::os::unix::ffi::OsStrExt;
        let not_utf8 = Path::new(std::ffi::OsStr::from_bytes(b"/opt/\xff/sluice"));
        assert!(matches!(
            login_entry(not_utf8),
            Err(LoginStartError::NotUtf8(_))
        ));
    }
}
