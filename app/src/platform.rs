//! What differs between operating systems, in one place: which OS keychain holds the keys,
//! where the settings live, what this machine is called, the tray icon, desktop
//! notifications, starting at login and the one-instance socket. No other module has a
//! `cfg(target_os)`. Only the Linux branches are built and tested; the others are written,
//! not built.

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

/// The OS credential store: the Secret Service on Linux.
pub fn keychain_store() -> Result<Arc<dyn KeyStore>, KeychainUnavailable> {
    #[cfg(target_os = "linux")]
    {
        zbus_secret_service_keyring_store::Store::new()
            .map(|store| Arc::new(sluice_engine::KeychainStore::new(store)) as Arc<dyn KeyStore>)
            .map_err(|e| KeychainUnavailable::NoSecretService(e.to_string()))
    }
    // Written, not built: macOS and Windows have store crates in Cargo.toml, but no
    // machine was at hand to check them, so those builds keep keys as key files.
    #[cfg(not(target_os = "linux"))]
    {
        Err(KeychainUnavailable::Unsupported)
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

/// The tray icon: snapshots go to its own thread, so the UI thread never waits on D-Bus.
pub struct TrayIcon {
    snapshots: std::sync::mpsc::Sender<TraySnapshot>,
}

impl TrayIcon {
    /// Shows a new state (the icon, the tooltip and the menu).
    pub fn show(&self, snapshot: TraySnapshot) {
        let _ = self.snapshots.send(snapshot);
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

/// Written, not built: macOS and Windows need their own tray code (the `tray-icon` crate
/// would do; the BSDs could use ksni too); until then the window is the way back.
#[cfg(not(target_os = "linux"))]
fn run_tray(
    _first: TraySnapshot,
    _snapshots: std::sync::mpsc::Receiver<TraySnapshot>,
    report: Arc<dyn Fn(TrayReport) + Send + Sync>,
) {
    report(TrayReport::Unavailable(TrayUnavailable::Unsupported));
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

/// Shows one desktop notification (freedesktop notifications on Linux; the platform's
/// own elsewhere, through notify-rust). Blocks on the notification service: call it off
/// the UI thread.
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

/// Where the start-at-login entry lives: `dir` if given (tests), else the system's place
/// (the XDG autostart directory on Linux).
pub fn login_entry_path(dir: Option<&Path>) -> Option<PathBuf> {
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
/// (`--hidden`). Linux: an XDG autostart desktop entry. macOS (a LaunchAgent) and
/// Windows (a script in the Startup folder): written, not built or tested.
pub fn set_start_at_login(dir: Option<&Path>, on: bool) -> Result<PathBuf, LoginStartError> {
    let path = login_entry_path(dir).ok_or(LoginStartError::NoPlace)?;
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

// ---- one instance ---------------------------------------------------------------------

/// How long the first instance gives a connection to say what it wants; a silent or slow
/// client is dropped after this, so it holds up later starts by at most this long.
const REQUEST_DEADLINE: Duration = Duration::from_secs(1);

/// The most the first instance reads of a request ("show\n" is 5 bytes).
const MAX_REQUEST_LEN: usize = 16;

/// How long a second start waits for the first to answer (connect, write and read in
/// all) before it gives up, and starts nothing.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(3);

/// What a start found: it is the first Sluice of this user (and holds the instance
/// socket), or another one runs and was asked to show its window.
pub enum Instance {
    First(InstanceLock),
    HandedOver,
}

/// The first instance's socket; a second start connects to it and says "show".
pub struct InstanceLock {
    #[cfg(unix)]
    listener: std::os::unix::net::UnixListener,
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
        #[cfg(not(unix))]
        let _ = show;
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
#[cfg(unix)]
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

/// Written, not built: Windows would use a named pipe; until then every start is first.
#[cfg(not(unix))]
pub fn claim_instance(dir: Option<&Path>) -> Result<Instance, InstanceError> {
    let path = instance_socket(dir).ok_or(InstanceError::NoRuntimeDir)?;
    Ok(Instance::First(InstanceLock { path }))
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
