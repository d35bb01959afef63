//! The POSIX shell scripts each step runs on the far end. Everything set-up creates is
//! first written to a manifest (`~/.config/sluice-far-end/NAME.manifest`, one
//! `KIND<TAB>VALUE` line per thing), so a step that fails half-way leaves only what
//! `remove` finds listed there. Secrets never appear here: they arrive on standard input.

use super::host::{Choice, Persistence, own_socket_unit};
use super::layout::{Layout, sluiced_config, system_unit_file, temporary, user_unit_file};
use super::manifest::{Removal, Undo};
use super::plan::FarEndPlan;
use super::shell::quote;

/// Shell functions every script that reads or writes the manifest uses.
const PRELUDE: &str = r#"note() { printf '%s\t%s\n' "$1" "$2" >> "$M"; }
say() { printf 'sluice-far-end:%s\n' "$1"; }
alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }
"#;

/// Reads what the far end has. Writes nothing.
pub fn probe(slug: &str) -> String {
    format!(
        r#"p() {{ printf 'sluice-far-end:%s=%s\n' "$1" "$2"; }}
p user "$(id -un)"
p uid "$(id -u)"
p home "$HOME"
os=$(uname -srm 2>/dev/null)
if [ -r /etc/os-release ]; then os="$(. /etc/os-release; printf '%s' "${{PRETTY_NAME:-}}"), $os"; fi
p os "$os"
p kernel "$(uname -s 2>/dev/null)"
p machine "$(uname -m 2>/dev/null)"
for prog in sluiced spiped; do
  path=$(command -v "$prog" 2>/dev/null) || continue
  p "$prog" "$path"
  p "$prog-version" "$("$path" -v 2>&1 | head -n 1)"
done
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then p sudo yes; fi
if [ -d /run/systemd/system ]; then p systemd-system yes; fi
if systemctl --user show-environment >/dev/null 2>&1; then p systemd-user yes; fi
p systemd-version "$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')"
if loginctl show-user "$(id -un)" -p Linger 2>/dev/null | grep -q '=yes'; then p linger yes; fi
for f in /etc/systemd/system/sluiced@.service /lib/systemd/system/sluiced@.service /usr/lib/systemd/system/sluiced@.service; do
  if [ -f "$f" ]; then p sluiced-template "$f"; break; fi
done
if [ -e "$HOME/.config/sluice-far-end/{slug}.manifest" ]; then p manifest yes; fi
exit 0
"#
    )
}

/// The root prefix for commands that need it: nothing, or `sudo -n`.
fn root(choice: &Choice) -> &'static str {
    if choice.sudo { "sudo -n" } else { "" }
}

/// Creates the manifest (failing if one exists: one set-up at a time), then writes the
/// key from standard input to a temporary name with umask 077 and renames it. Another
/// tunnel's remove takes the Sluice directory away once it is empty (`rmdir`), so the
/// manifest is created while an empty directory of this script's own holds the Sluice
/// directory; only making that holder can lose the race, and it is simply tried again.
pub fn send_key(layout: &Layout, choice: &Choice) -> String {
    let key_dir = layout
        .key
        .rsplit_once('/')
        .map_or(".", |(dir, _)| dir)
        .to_owned();
    format!(
        r#"umask 077
D={dir}; M={manifest}; K={key}; T={tmp}; R="{root}"
{PRELUDE}made=0; i=0; H="$D/.setting-up.$$"
while [ $made = 0 ] && [ $i -lt 50 ]; do
  if mkdir -p "$H" 2>/dev/null; then
    if (set -C; : > "$M") 2>/dev/null; then made=1; fi
    rmdir "$H"
    if [ $made = 0 ] && [ -e "$M" ]; then say already-set-up; exit 3; fi
    if [ $made = 0 ]; then say state-dir-failed; exit 2; fi
  fi
  i=$((i+1))
done
if [ $made = 0 ]; then say state-dir-failed; exit 2; fi
note sudo {sudo}
if $R test -e "$K"; then rm -f "$M"; say "occupied=$K"; exit 4; fi
note key "$K"
note file "$T"
$R mkdir -p {key_dir} || {{ say key-failed; exit 5; }}
{write}say "key=$K"
"#,
        dir = quote(&layout.dir),
        manifest = quote(&layout.manifest),
        key = quote(&layout.key),
        tmp = quote(&temporary(&layout.key)),
        root = root(choice),
        sudo = if choice.sudo { "yes" } else { "no" },
        key_dir = quote(&key_dir),
        write = write_key_file(choice, "$K"),
    )
}

/// Writes this machine's sluiced (standard input) to the tunnel's copy, noted in the
/// manifest first, and reports the first line of its `-v` as it runs there.
pub fn install(layout: &Layout) -> String {
    format!(
        r#"umask 077
D={dir}; M={manifest}; P={copy}; T={copy_tmp}
{PRELUDE}note file "$P"
note file "$T"
if ! (cat > "$T" && chmod 700 "$T" && mv -f "$T" "$P"); then rm -f "$T"; say install-failed; exit 8; fi
say "installed-version=$("$P" -v 2>&1 | head -n 1)"
"#,
        dir = quote(&layout.dir),
        manifest = quote(&layout.manifest),
        copy = quote(&layout.sluiced_copy),
        copy_tmp = quote(&temporary(&layout.sluiced_copy)),
    )
}

/// Writes standard input to the temporary file `$T` (owner-only, and readable by the
/// .deb's user sluiced, whose unit runs the key), then renames it to `dest`.
fn write_key_file(choice: &Choice, dest: &str) -> String {
    let owner = match choice.persistence {
        Persistence::SluicedTemplate { .. } => r#" && chown sluiced:sluiced "$1""#,
        _ => "",
    };
    format!(
        r#"if ! $R sh -c 'umask 077; cat > "$1"{owner} && mv -f "$1" "$2"' sluice-far-end "$T" "{dest}"; then
  $R rm -f "$T"; say key-failed; exit 5
fi
"#
    )
}

/// During a rotation: writes the key being replaced (standard input) beside the key, as
/// [`send_key`] writes the key, noted in the manifest first.
pub fn send_previous_key(layout: &Layout, choice: &Choice) -> String {
    format!(
        r#"umask 077
D={dir}; M={manifest}; P={previous}; T={tmp}; R="{root}"
{PRELUDE}note file "$P"
note file "$T"
{write}say "previous-key=$P"
"#,
        dir = quote(&layout.dir),
        manifest = quote(&layout.manifest),
        previous = quote(&layout.previous_key),
        tmp = quote(&temporary(&layout.previous_key)),
        root = root(choice),
        write = write_key_file(choice, "$P"),
    )
}

/// The far end's command line, quoted for the shell.
fn command_line(choice: &Choice, plan: &FarEndPlan, layout: &Layout) -> String {
    std::iter::once(choice.program_path.clone())
        .chain(plan.args(&layout.key))
        .map(|w| quote(&w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts the far end the chosen way. For units, standard input carries the unit file
/// (or, for `sluiced@NAME`, its config file): see [`start_input`].
pub fn start(layout: &Layout, choice: &Choice, plan: &FarEndPlan) -> String {
    let head = format!(
        "umask 077\nD={dir}; M={manifest}; R=\"{root}\"\n{PRELUDE}",
        dir = quote(&layout.dir),
        manifest = quote(&layout.manifest),
        root = root(choice),
    );
    match &choice.persistence {
        Persistence::Daemon => format!(
            r#"{head}P={pidfile}; L={log}
note pidfile "$P"
note file "$L"
rm -f "$P"
{command} -p "$P" > "$L" 2>&1 < /dev/null
rc=$?
i=0
while [ "$rc" = 0 ] && [ ! -s "$P" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ "$rc" != 0 ] || [ ! -s "$P" ]; then say start-failed; cat "$L"; exit 6; fi
say "pid=$(cat "$P")"
"#,
            pidfile = quote(&layout.pidfile),
            log = quote(&layout.log),
            command = command_line(choice, plan, layout),
        ),
        Persistence::UserUnit { unit, .. } => {
            let file = |unit: &str| user_unit_file(home_of(layout), unit);
            let socket = socket_unit(choice, plan, unit, &file);
            unit_start(&head, &file(unit), unit, socket, "systemctl --user", "")
        }
        Persistence::SystemUnit { unit } => {
            let socket = socket_unit(choice, plan, unit, &system_unit_file);
            unit_start(
                &head,
                &system_unit_file(unit),
                unit,
                socket,
                "$R systemctl",
                "$R ",
            )
        }
        Persistence::SluicedTemplate { unit } => {
            let config = sluiced_config(&plan.slug);
            format!(
                r#"{head}C={config}; U={unit}
if $R test -e "$C"; then say "occupied=$C"; exit 4; fi
note file "$C"
note unit-system "$U"
$R sh -c 'umask 027; cat > "$1.tmp" && chgrp sluiced "$1.tmp" && mv -f "$1.tmp" "$1"' sluice-far-end "$C" || {{ say start-failed; exit 6; }}
{wait}"#,
                config = quote(&config),
                unit = quote(unit),
                wait = enable_and_wait("$R systemctl"),
            )
        }
    }
}

/// The socket unit beside a far end started on its first connection.
struct SocketUnit {
    file: String,
    unit: String,
    text: String,
}

/// The socket unit of `choice`, if it starts on the first connection; `file` says where
/// a unit of that kind lives.
fn socket_unit(
    choice: &Choice,
    plan: &FarEndPlan,
    service: &str,
    file: &dyn Fn(&str) -> String,
) -> Option<SocketUnit> {
    let listen = choice.listen_stream.as_deref()?;
    let unit = own_socket_unit(&plan.slug);
    Some(SocketUnit {
        file: file(&unit),
        text: format!(
            "# Written by Sluice (sluiced --far-end-setup); removed by sluiced --far-end-remove.
# Holds the far end's port and starts {service} on the first connection.
[Unit]
Description=Sluice far end of tunnel {slug}: its listening socket

[Socket]
ListenStream={listen}
FileDescriptorName={slug}
Service={service}

[Install]
WantedBy=sockets.target
",
            slug = plan.slug,
        ),
        unit,
    })
}

/// Writes a unit file (from standard input) and enables it, or with `socket` writes its
/// socket unit too and enables that instead: the socket is noted first, so remove stops
/// it before the service it would start again.
fn unit_start(
    head: &str,
    file: &str,
    unit: &str,
    socket: Option<SocketUnit>,
    systemctl: &str,
    root: &str,
) -> String {
    let kind = if systemctl.contains("--user") {
        "unit-user"
    } else {
        "unit-system"
    };
    let dir = file.rsplit_once('/').map_or(".", |(d, _)| d).to_owned();
    let (note_socket, write_socket) = match &socket {
        None => (String::new(), String::new()),
        Some(s) => (
            format!(
                r#"S={file}; SU={unit}
if {root}test -e "$S"; then say "occupied=$S"; exit 4; fi
note file "$S"
note {kind} "$SU"
"#,
                file = quote(&s.file),
                unit = quote(&s.unit),
            ),
            format!(
                r#"printf '%s' {text} | {root}sh -c 'umask 022; cat > "$1"' sluice-far-end "$S" || {{ say start-failed; exit 6; }}
U="$SU"
"#,
                text = quote(&s.text),
            ),
        ),
    };
    format!(
        r#"{head}{note_socket}F={file}; U={unit}
if {root}test -e "$F"; then say "occupied=$F"; exit 4; fi
note file "$F"
note {kind} "$U"
{root}mkdir -p {dir} && {root}sh -c 'umask 022; cat > "$1"' sluice-far-end "$F" || {{ say start-failed; exit 6; }}
{write_socket}{systemctl} daemon-reload
{wait}"#,
        file = quote(file),
        unit = quote(unit),
        dir = quote(&dir),
        wait = enable_and_wait(systemctl),
    )
}

/// `enable --now`, then a unit that stays active for two seconds counts as started (a
/// bind failure ends it within that time: `Restart=` waits 5 s before a retry).
fn enable_and_wait(systemctl: &str) -> String {
    format!(
        r#"if ! {systemctl} enable --now "$U" >/dev/null 2>&1; then say start-failed; {systemctl} status --no-pager "$U" 2>&1 | tail -n 15; exit 6; fi
i=0
while [ $i -lt 20 ] && {systemctl} is-active --quiet "$U"; do sleep 0.1; i=$((i+1)); done
if [ $i -lt 20 ]; then say start-failed; {systemctl} status --no-pager "$U" 2>&1 | tail -n 15; exit 6; fi
say "unit=$U"
"#
    )
}

fn home_of(layout: &Layout) -> &str {
    layout
        .dir
        .strip_suffix("/.config/sluice-far-end")
        .unwrap_or(&layout.dir)
}

/// The hardening of Sluice's own system unit: the .deb's `sluiced@.service` block, line
/// for line, with a user systemd makes for the unit at start (`DynamicUser=`) in place of
/// the fixed user sluiced, which a host without the .deb does not have. Capabilities are
/// set by [`system_unit`] (none, or only binding a port below 1024).
const SANDBOX: &str = "DynamicUser=yes
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectProc=invisible
ProcSubset=pid
PrivateMounts=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
";

/// What the start script reads on standard input: the unit file, or the config file
/// `sluiced@NAME` runs; nothing for a daemon.
pub fn start_input(layout: &Layout, choice: &Choice, plan: &FarEndPlan) -> Option<String> {
    match &choice.persistence {
        Persistence::Daemon => None,
        Persistence::UserUnit { .. } => Some(user_unit(layout, choice, plan)),
        Persistence::SystemUnit { .. } => Some(system_unit(layout, choice, plan)),
        Persistence::SluicedTemplate { .. } => {
            let mut spec = crate::config::TunnelSpec::new(
                plan.tunnel.clone(),
                plan.far_mode,
                plan.source.clone(),
                plan.target.clone(),
                crate::config::KeyRef::File(layout.key.clone().into()),
            );
            spec.forward_secrecy = plan.forward_secrecy;
            spec.key_agreement = plan.key_agreement;
            spec.previous_key = plan
                .previous_key
                .then(|| crate::config::KeyRef::File(layout.previous_key.clone().into()));
            let config = crate::config::Config {
                tunnels: vec![spec],
                ..crate::config::Config::default()
            };
            Some(format!(
                "// Written by Sluice (sluiced --far-end-setup); removed by sluiced --far-end-remove.\n{}",
                config.to_ron()
            ))
        }
    }
}

/// `ExecStart=`'s words: the program in the foreground with the plan's arguments, the key
/// given as `key_word` and a rotation's previous key as `previous_word`, already in
/// systemd's syntax.
fn exec_start(choice: &Choice, plan: &FarEndPlan, key_word: &str, previous_word: &str) -> String {
    let mut words: Vec<String> = [choice.program_path.as_str(), "-F"]
        .into_iter()
        .map(systemd_quote)
        .collect();
    let mut args = plan.args("").into_iter();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-k" => Some(key_word),
            "--previous-key" => Some(previous_word),
            _ => None,
        };
        words.push(systemd_quote(&arg));
        if let Some(value) = value {
            args.next();
            words.push(value.to_owned());
        }
    }
    words.join(" ")
}

/// What a service unit says about when it starts: with its socket unit (started on the
/// first connection, which needs that socket), or at boot (`WantedBy=`).
fn start_when(choice: &Choice, plan: &FarEndPlan, wanted_by: &str) -> (String, String) {
    match choice.listen_stream {
        Some(_) => {
            let socket = own_socket_unit(&plan.slug);
            (
                format!("Requires={socket}\nAfter={socket}\n"),
                String::new(),
            )
        }
        None => (
            String::new(),
            format!("\n[Install]\nWantedBy={wanted_by}\n"),
        ),
    }
}

/// A `systemctl --user` unit: it runs as the far-end user, with the key in their home.
fn user_unit(layout: &Layout, choice: &Choice, plan: &FarEndPlan) -> String {
    let (needs, install) = start_when(choice, plan, "default.target");
    format!(
        "# Written by Sluice (sluiced --far-end-setup); removed by sluiced --far-end-remove.\n[Unit]\nDescription=Sluice far end of tunnel {name}\nWants=network-online.target\nAfter=network-online.target\n{needs}\n[Service]\nType=exec\nExecStart={exec}\nRestart=on-failure\nRestartSec=5s\n{install}",
        name = plan.slug,
        exec = exec_start(
            choice,
            plan,
            &systemd_quote(&layout.key),
            &systemd_quote(&layout.previous_key)
        ),
    )
}

/// Sluice's own system unit: never root. A user systemd makes at start runs the far end
/// in the .deb unit's sandbox; the key stays root's (mode 0600 in /etc/sluice/keys), and
/// systemd hands the service a copy as a credential, read from `%d/SLUG.key` (spiped's
/// `-k` and sluiced's alike read a path). The slug is letters, digits, `.`, `_` and `-`
/// only, so it needs no escaping in a credential name, a directory name or a path.
fn system_unit(layout: &Layout, choice: &Choice, plan: &FarEndPlan) -> String {
    let credential = format!("{}.key", plan.slug);
    let previous_credential = format!("{}.previous.key", plan.slug);
    // Binding a port below 1024 is all the far end may need beyond an ordinary user,
    // unless systemd binds it (started on the first connection).
    let low_port = choice.listen_stream.is_none()
        && plan
            .source
            .parse::<crate::address::Address>()
            .ok()
            .and_then(|a| a.port())
            .is_some_and(|port| port < 1024);
    let (needs, install) = start_when(choice, plan, "multi-user.target");
    let capabilities = if low_port { "CAP_NET_BIND_SERVICE" } else { "" };
    format!(
        "# Written by Sluice (sluiced --far-end-setup); removed by sluiced --far-end-remove.
# Runs as a user systemd makes for it, sandboxed like the Sluice package's sluiced@.service;
# the key stays in {key} (root's, mode 0600) and reaches the service as a credential.
# A UNIX socket it listens on must be in /run/sluice-far-end-{slug}/; to reach a UNIX socket
# only a group may use, add SupplementaryGroups=GROUP with `systemctl edit {unit}`.
[Unit]
Description=Sluice far end of tunnel {slug}
Wants=network-online.target
After=network-online.target
{needs}
[Service]
Type=exec
ExecStart={exec}
Restart=on-failure
RestartSec=5s
LoadCredential={credential}:{key}
{previous}RuntimeDirectory=sluice-far-end-{slug}
RuntimeDirectoryMode=0755
CapabilityBoundingSet={capabilities}
AmbientCapabilities={capabilities}
{SANDBOX}{install}",
        key = layout.key,
        slug = plan.slug,
        unit = super::host::own_unit(&plan.slug),
        exec = exec_start(
            choice,
            plan,
            &format!("\"%d/{credential}\""),
            &format!("\"%d/{previous_credential}\"")
        ),
        previous = if plan.previous_key {
            format!(
                "LoadCredential={previous_credential}:{}\n",
                layout.previous_key
            )
        } else {
            String::new()
        },
    )
}

/// A word for a unit's `ExecStart=`: double-quoted, with `\`, `"`, `%` and `$` escaped,
/// and control characters as `\xHH` (which systemd reads back), so no word can end the
/// line even if one got past the address and name checks.
fn systemd_quote(word: &str) -> String {
    let mut escaped = String::with_capacity(word.len() + 2);
    escaped.push('"');
    for c in word.chars() {
        match c {
            '\\' => escaped.push_str(r"\\"),
            '"' => escaped.push_str("\\\""),
            '%' => escaped.push_str("%%"),
            '$' => escaped.push_str("$$"),
            c if c.is_control() => {
                for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                    escaped.push_str(&format!("\\x{byte:02x}"));
                }
            }
            c => escaped.push(c),
        }
    }
    escaped.push('"');
    escaped
}

/// Opens a set-up's manifest for `status` and `remove`: none means nothing was set up;
/// `R` becomes `sudo -n` if set-up needed it, `K` the key file it wrote.
const READ_MANIFEST: &str = r#"if [ ! -f "$M" ]; then say not-set-up; exit 0; fi
R=""; if grep -q "^sudo	yes$" "$M"; then R="sudo -n"; fi
K=$(sed -n 's/^key	//p' "$M" | head -n 1)
"#;

/// Reports whether each thing the manifest lists as started is running; a service whose
/// socket unit is listening is idle (it starts on the first connection).
pub fn status(dir: &str, manifest: &str) -> String {
    format!(
        r#"D={dir}; M={manifest}
{PRELUDE}{READ_MANIFEST}if [ -n "$K" ] && $R test -s "$K"; then say "key=$K"; else say "no-key=$K"; fi
unit() {{
  if $1 is-active --quiet "$2"; then say "running=unit $2"
  elif [ "${{2%.service}}" != "$2" ] && $1 is-active --quiet "${{2%.service}}.socket"; then say "idle=unit $2"
  else say "stopped=unit $2"; fi
}}
while IFS='	' read -r kind value; do
  case "$kind" in
    unit-system) unit "$R systemctl" "$value" ;;
    unit-user) unit "systemctl --user" "$value" ;;
    pidfile)
      pid=$(cat "$value" 2>/dev/null)
      if [ -n "$pid" ] && alive "$pid"; then say "running=pid $pid"; else say "stopped=no process from pid file $value"; fi ;;
  esac
done < "$M"
"#,
        dir = quote(dir),
        manifest = quote(manifest),
    )
}

/// Prints the manifest's lines, each as `entry=LINE`, for [`Removal::from_manifest`] to
/// sort: remove decides in Rust what it may touch, not in the far end's shell.
pub fn read_manifest(dir: &str, manifest: &str) -> String {
    format!(
        r#"D={dir}; M={manifest}
{PRELUDE}if [ ! -f "$M" ]; then say not-set-up; exit 0; fi
while IFS= read -r line || [ -n "$line" ]; do say "entry=$line"; done < "$M"
say manifest-read
"#,
        dir = quote(dir),
        manifest = quote(manifest),
    )
}

/// Undoes exactly what `removal` lists (stops first, then deletions) and nothing else; no
/// path or unit here comes from the far end, each is one set-up makes. A process is
/// stopped only if its command line names the key set-up wrote, so a reused pid is never
/// signalled. The manifest goes last, unless something could not be undone (then running
/// remove again retries) or it listed things that were refused (it is kept to be looked at).
pub fn remove(dir: &str, manifest: &str, removal: &Removal) -> String {
    let mut stops = String::new();
    let mut deletes = String::new();
    let (mut system, mut user) = (false, false);
    for undo in &removal.undo {
        match undo {
            Undo::SystemUnit(unit) => {
                system = true;
                stops.push_str(&format!("stop_unit \"$R systemctl\" {}\n", quote(unit)));
            }
            Undo::UserUnit(unit) => {
                user = true;
                stops.push_str(&format!("stop_unit \"systemctl --user\" {}\n", quote(unit)));
            }
            Undo::Process { pidfile } => {
                stops.push_str(&format!("stop_process {}\n", quote(pidfile)));
                deletes.push_str(&format!("delete \"\" {}\n", quote(pidfile)));
            }
            Undo::Delete { path, root } => {
                let who = if *root { "\"$R\"" } else { "\"\"" };
                deletes.push_str(&format!("delete {who} {}\n", quote(path)));
            }
        }
    }
    let mut reload = String::new();
    if system {
        reload.push_str("$R systemctl daemon-reload\n");
    }
    if user {
        reload.push_str("systemctl --user daemon-reload\n");
    }
    let finish = if removal.refused.is_empty() {
        "rm -f \"$M\"; rmdir \"$D\" 2>/dev/null"
    } else {
        "say kept-manifest"
    };
    format!(
        r#"D={dir}; M={manifest}; R="{root}"; K={key}
{PRELUDE}ok=1
stop_unit() {{
  $1 disable --now "$2" >/dev/null 2>&1
  if $1 is-active --quiet "$2"; then ok=0; echo "cannot stop $2"; else say "stopped=unit $2"; fi
}}
stop_process() {{
  pid=$(cat "$1" 2>/dev/null)
  if [ -n "$pid" ] && [ -n "$K" ] && alive "$pid"; then
    args=$(ps -o args= -p "$pid" 2>/dev/null || tr '\0' ' ' < "/proc/$pid/cmdline")
    case "$args" in
      *"$K"*)
        kill "$pid"
        i=0; while alive "$pid" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        if alive "$pid"; then kill -9 "$pid"; i=0; while alive "$pid" && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; fi
        if alive "$pid"; then ok=0; echo "cannot stop process $pid"; else say "stopped=pid $pid"; fi ;;
      *) say "foreign=$pid" ;;
    esac
  fi
}}
delete() {{
  if $1 test -e "$2" || $1 test -L "$2"; then
    if $1 rm -f "$2"; then say "deleted=$2"; else ok=0; fi
  fi
}}
{stops}{deletes}{reload}if [ "$ok" = 1 ]; then {finish}; say removed; else exit 7; fi
"#,
        dir = quote(dir),
        manifest = quote(manifest),
        root = if removal.sudo { "sudo -n" } else { "" },
        key = removal
            .key
            .as_deref()
            .map_or_else(|| "''".to_owned(), quote),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyRef, Mode, TunnelSpec};
    use crate::far_end::host::{HostFacts, Installed, Privilege, Program};

    fn facts() -> HostFacts {
        HostFacts {
            user: "u".into(),
            home: "/home/u".into(),
            os: "Linux".into(),
            kernel: "Linux".into(),
            machine: std::env::consts::ARCH.into(),
            sluiced: None,
            spiped: Some(Installed {
                path: "/usr/bin/spiped".into(),
                version: "spiped 1.6.2".into(),
            }),
            privilege: Privilege::User,
            systemd_system: false,
            systemd_user: false,
            systemd_version: Some(252),
            linger: false,
            sluiced_template: None,
            already_set_up: false,
        }
    }

    fn plan() -> FarEndPlan {
        let spec = TunnelSpec::new(
            "redis",
            Mode::Encrypt,
            "[127.0.0.1]:6379",
            "db:8025",
            KeyRef::File("/k".into()),
        );
        FarEndPlan::new(&spec, "[127.0.0.1]:6379", "laptop")
    }

    fn choice(persistence: Persistence, sudo: bool) -> Choice {
        Choice {
            program: Program::Sluiced,
            program_path: "/usr/bin/sluiced".into(),
            persistence,
            sudo,
            listen_stream: None,
            install: None,
            why: String::new(),
        }
    }

    #[test]
    fn per_user_layouts_stay_in_the_home_directory() {
        let c = choice(Persistence::Daemon, false);
        let l = c.layout(&facts(), &plan());
        assert_eq!(l.key, "/home/u/.config/sluice-far-end/redis.key");
        assert_eq!(l.manifest, "/home/u/.config/sluice-far-end/redis.manifest");
        let s = start(&l, &c, &plan());
        assert!(
            s.contains("/usr/bin/sluiced -d -s '[0.0.0.0]:8025' -t '[127.0.0.1]:6379' -k /home/u/.config/sluice-far-end/redis.key -p \"$P\""),
            "{s}"
        );
        assert_eq!(start_input(&l, &c, &plan()), None);
    }

    #[test]
    fn system_layouts_put_the_key_in_etc_and_use_sudo() {
        let c = choice(
            Persistence::SluicedTemplate {
                unit: "sluiced@redis.service".into(),
            },
            true,
        );
        let l = c.layout(&facts(), &plan());
        assert_eq!(l.key, "/etc/sluice/keys/redis.key");
        let key = send_key(&l, &c);
        assert!(key.contains("R=\"sudo -n\""), "{key}");
        assert!(key.contains("chown sluiced:sluiced"), "{key}");
        assert!(key.contains("note sudo yes"), "{key}");
        let config = start_input(&l, &c, &plan()).unwrap();
        let parsed = crate::config::Config::parse(&config).unwrap();
        let t = &parsed.tunnels[0];
        assert_eq!(t.mode, Mode::Decrypt);
        assert_eq!(t.listen, "[0.0.0.0]:8025");
        assert_eq!(t.key, KeyRef::File("/etc/sluice/keys/redis.key".into()));
        assert!(start(&l, &c, &plan()).contains("note unit-system \"$U\""));
    }

    #[test]
    fn units_run_in_the_foreground_with_systemd_quoting() {
        let c = choice(
            Persistence::UserUnit {
                unit: "sluice-far-end-redis.service".into(),
                linger: false,
            },
            false,
        );
        let l = c.layout(&facts(), &plan());
        let unit = start_input(&l, &c, &plan()).unwrap();
        assert!(
            unit.contains("ExecStart=\"/usr/bin/sluiced\" \"-F\" \"-d\" \"-s\" \"[0.0.0.0]:8025\""),
            "{unit}"
        );
        assert!(unit.contains("WantedBy=default.target"));
        let s = start(&l, &c, &plan());
        assert!(
            s.contains("F=/home/u/.config/systemd/user/sluice-far-end-redis.service"),
            "{s}"
        );
        assert!(s.contains("systemctl --user enable --now"), "{s}");
        assert_eq!(systemd_quote("a%b$c\"d\\"), r#""a%%b$$c\"d\\""#);
        assert_eq!(systemd_quote("a\nb\u{85}"), r#""a\x0ab\xc2\x85""#);
    }

    fn system_choice(program: Program, path: &str) -> Choice {
        Choice {
            program,
            program_path: path.into(),
            persistence: Persistence::SystemUnit {
                unit: "sluice-far-end-redis.service".into(),
            },
            sudo: true,
            listen_stream: None,
            install: None,
            why: String::new(),
        }
    }

    fn plan_to(target: &str) -> FarEndPlan {
        let spec = TunnelSpec::new(
            "redis",
            Mode::Encrypt,
            "[127.0.0.1]:6379",
            target,
            KeyRef::File("/k".into()),
        );
        FarEndPlan::new(&spec, "[127.0.0.1]:6379", "laptop")
    }

    /// The .deb's unit, whose hardening the far end's system unit must match.
    const DEB_UNIT: &str = include_str!("../../../installers/linux/sluiced@.service");

    #[test]
    fn system_units_never_run_as_root_and_read_the_key_as_a_credential() {
        for (program, path) in [
            (Program::Spiped, "/usr/bin/spiped"),
            (Program::Sluiced, "/usr/bin/sluiced"),
        ] {
            let c = system_choice(program, path);
            let l = c.layout(&facts(), &plan());
            assert_eq!(l.key, "/etc/sluice/keys/redis.key");
            let unit = start_input(&l, &c, &plan()).unwrap();
            let lines: Vec<&str> = unit.lines().collect();
            let has = |line: &str| lines.contains(&line);
            assert!(has("DynamicUser=yes"), "{unit}");
            assert!(!unit.contains("\nUser="), "{unit}");
            assert!(
                has("LoadCredential=redis.key:/etc/sluice/keys/redis.key"),
                "{unit}"
            );
            assert!(
                has(&format!(
                    "ExecStart=\"{path}\" \"-F\" \"-d\" \"-s\" \"[0.0.0.0]:8025\" \"-t\" \"[127.0.0.1]:6379\" \"-k\" \"%d/redis.key\""
                )),
                "{unit}"
            );
            assert!(
                has("CapabilityBoundingSet=") && has("AmbientCapabilities="),
                "{unit}"
            );
            assert!(has("WantedBy=multi-user.target"), "{unit}");
            // Every hardening line of the .deb's unit, but its fixed user and its
            // runtime directory's name.
            let hardening = DEB_UNIT
                .lines()
                .skip_while(|l| !l.starts_with("User="))
                .take_while(|l| !l.starts_with('['))
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter(|l| !l.starts_with("User=") && !l.starts_with("Group="))
                .filter(|l| !l.starts_with("RuntimeDirectory="));
            let mut checked = 0;
            for line in hardening {
                assert!(has(line), "the .deb's {line:?} is missing:\n{unit}");
                checked += 1;
            }
            assert!(
                checked >= 25,
                "only {checked} lines of the .deb's unit compared"
            );
            assert!(has("RuntimeDirectory=sluice-far-end-redis"), "{unit}");
        }
        // The key's file is root's: no chown to a service user.
        let c = system_choice(Program::Spiped, "/usr/bin/spiped");
        let l = c.layout(&facts(), &plan());
        assert!(!send_key(&l, &c).contains("chown"));
        // A port below 1024 is the one capability it may get.
        let low = plan_to("db:443");
        let unit = start_input(&c.layout(&facts(), &low), &c, &low).unwrap();
        assert!(
            unit.contains("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"),
            "{unit}"
        );
        // Per-user units stay as they were: the far-end user's, the key in their home.
        let c = choice(
            Persistence::UserUnit {
                unit: "sluice-far-end-redis.service".into(),
                linger: true,
            },
            false,
        );
        let l = c.layout(&facts(), &plan());
        let unit = start_input(&l, &c, &plan()).unwrap();
        assert!(!unit.contains("DynamicUser"), "{unit}");
        assert!(
            unit.contains("\"-k\" \"/home/u/.config/sluice-far-end/redis.key\""),
            "{unit}"
        );
    }

    /// systemd's own checks on the unit set-up writes, for spiped and for sluiced: `verify`
    /// finds nothing wrong with it, and `security` rates its exposure no worse than the
    /// .deb's `sluiced@.service`. Only lines about Sluice's units count: other units
    /// installed here may draw warnings of their own.
    #[test]
    #[cfg(unix)]
    fn systemd_analyze_accepts_the_system_unit_and_rates_it_like_the_debs() {
        let Some(analyze) = systemd_analyze() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("sluiced@.service");
        std::fs::write(&deb, DEB_UNIT).unwrap();
        let deb_exposure = exposure(&analyze, &deb);
        for program in [Program::Spiped, Program::Sluiced] {
            // verify wants ExecStart's program to exist: a stand-in of the same name.
            let bin = dir.path().join(program.name());
            std::fs::write(&bin, "#!/bin/sh\nexit 0\n").unwrap();
            std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            let c = system_choice(program, bin.to_str().unwrap());
            let l = c.layout(&facts(), &plan());
            let unit_dir = dir.path().join(program.name()).with_extension("units");
            std::fs::create_dir(&unit_dir).unwrap();
            let file = unit_dir.join("sluice-far-end-redis.service");
            std::fs::write(&file, start_input(&l, &c, &plan()).unwrap()).unwrap();

            let ours = verify(&analyze, &[file.as_path()], program.name());
            assert!(
                ours.is_empty(),
                "systemd-analyze verify, on the {} unit:\n{}",
                program.name(),
                ours.join("\n")
            );

            let ours = exposure(&analyze, &file);
            assert!(
                ours <= deb_exposure,
                "{}: exposure {ours}, the .deb's sluiced@.service {deb_exposure}",
                program.name()
            );
            let report = security(&analyze, &file);
            assert!(
                report
                    .lines()
                    .any(|l| l.starts_with("✓ User=/DynamicUser=")),
                "{report}"
            );
        }
    }

    #[cfg(unix)]
    /// `systemd-analyze`, or `None` (the test is skipped, loudly) where it is missing;
    /// under CI it must be there.
    fn systemd_analyze() -> Option<std::path::PathBuf> {
        let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists());
        if found.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "systemd-analyze is missing, and CI needs it to check the far end's unit: install systemd (apt-get install -y systemd, or scripts/install-test-deps)"
            );
            eprintln!(
                "SKIPPED: systemd-analyze is missing, so the far end's unit was not checked: install systemd"
            );
        }
        found
    }

    /// What `systemd-analyze verify` says of `files` about Sluice's units or `program`:
    /// other units installed here may draw warnings of their own.
    #[cfg(unix)]
    fn verify(analyze: &std::path::Path, files: &[&std::path::Path], program: &str) -> Vec<String> {
        let out = std::process::Command::new(analyze)
            .arg("verify")
            .args(files)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        said.lines()
            .filter(|l| l.contains("sluice-far-end") || l.contains(program))
            .map(str::to_owned)
            .collect()
    }

    #[cfg(unix)]
    fn security(analyze: &std::path::Path, unit: &std::path::Path) -> String {
        let out = std::process::Command::new(analyze)
            .args(["security", "--offline=true"])
            .arg(unit)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "systemd-analyze security {}:\n{report}{}",
            unit.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        report
    }

    #[cfg(unix)]
    /// The "Overall exposure level" systemd-analyze security gives a unit file.
    fn exposure(analyze: &std::path::Path, unit: &std::path::Path) -> f64 {
        let report = security(analyze, unit);
        report
            .lines()
            .find_map(|l| {
                let (_, rest) = l.split_once("Overall exposure level for ")?;
                let (_, level) = rest.split_once(": ")?;
                level.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no exposure level for {}:\n{report}", unit.display()))
    }

    /// Two tunnels on one far end: one is removed over and over (its remove deletes the
    /// Sluice directory once it is empty) while the other is set up over and over, so
    /// removes land between a set-up's making the directory and creating its manifest.
    // Unix only: runs the scripts with sh.
    #[cfg(unix)]
    #[test]
    fn set_up_survives_another_tunnels_remove_taking_the_directory_away() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

        let home = tempfile::tempdir().unwrap();
        let mut f = facts();
        f.home = home.path().display().to_string();
        let c = choice(Persistence::Daemon, false);
        let l = c.layout(&f, &plan());
        let set_up = send_key(&l, &c);
        let other = format!("{}/other.manifest", l.dir);
        let take_down = remove(&l.dir, &other, &Removal::default());
        let stop = Arc::new(AtomicBool::new(false));
        let removes = Arc::new(AtomicUsize::new(0));
        let remover = {
            let (stop, removes, dir) = (Arc::clone(&stop), Arc::clone(&removes), l.dir.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&other, "").is_ok() {
                        let _ = Command::new("sh").arg("-c").arg(&take_down).output();
                        removes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        for round in 0..100 {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(&set_up)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(b"k").unwrap();
            let out = child.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && said.contains("sluice-far-end:key="),
                "round {round}: {said}"
            );
            std::fs::remove_file(&l.key).unwrap();
            std::fs::remove_file(&l.manifest).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        remover.join().unwrap();
        assert!(
            removes.load(Ordering::Relaxed) > 0,
            "the other tunnel was never removed"
        );
    }

    #[test]
    fn a_rotating_far_end_lets_the_previous_key_in_beside_its_key() {
        let mut p = plan();
        p.previous_key = true;
        assert!(!p.spiped_can_serve(), "stock spiped takes one key");
        assert_eq!(
            p.args("/k").join(" "),
            "-d -s [0.0.0.0]:8025 -t [127.0.0.1]:6379 -k /k --previous-key /k.previous"
        );
        // Sluice's own system unit: a second credential.
        let c = system_choice(Program::Sluiced, "/usr/bin/sluiced");
        let l = c.layout(&facts(), &p);
        assert_eq!(l.previous_key, "/etc/sluice/keys/redis.key.previous");
        let unit = start_input(&l, &c, &p).unwrap();
        assert!(
            unit.contains("\"-k\" \"%d/redis.key\" \"--previous-key\" \"%d/redis.previous.key\""),
            "{unit}"
        );
        assert!(
            unit.contains(
                "\nLoadCredential=redis.previous.key:/etc/sluice/keys/redis.key.previous\n"
            ),
            "{unit}"
        );
        // A user unit reads it from the home; the .deb's config names it.
        let user = choice(
            Persistence::UserUnit {
                unit: "sluice-far-end-redis.service".into(),
                linger: true,
            },
            false,
        );
        let unit = start_input(&user.layout(&facts(), &p), &user, &p).unwrap();
        assert!(
            unit.contains(
                "\"--previous-key\" \"/home/u/.config/sluice-far-end/redis.key.previous\""
            ),
            "{unit}"
        );
        let template = choice(
            Persistence::SluicedTemplate {
                unit: "sluiced@redis.service".into(),
            },
            true,
        );
        let config = start_input(&template.layout(&facts(), &p), &template, &p).unwrap();
        let parsed = crate::config::Config::parse(&config).unwrap();
        assert_eq!(
            parsed.tunnels[0].previous_key,
            Some(KeyRef::File("/etc/sluice/keys/redis.key.previous".into()))
        );
        // Written like the key (the .deb's user may read it), noted before it is written.
        let script = send_previous_key(&template.layout(&facts(), &p), &template);
        assert!(script.contains("chown sluiced:sluiced"), "{script}");
        assert!(
            script.find("note file \"$P\"") < script.find("cat >"),
            "{script}"
        );
        let removal = Removal::from_manifest(
            [
                "file\t/etc/sluice/keys/redis.key.previous",
                "file\t/home/u/.config/sluice-far-end/redis.key.previous",
            ],
            "/home/u",
            "redis",
        );
        assert!(removal.refused.is_empty(), "{:?}", removal.refused);
    }

    /// A far end started on its first connection: `(choice, plan)` for a user or a
    /// system unit.
    fn on_demand(persistence: Persistence, sudo: bool) -> (Choice, FarEndPlan) {
        let mut c = choice(persistence, sudo);
        c.listen_stream = Some("0.0.0.0:8025".into());
        let mut p = plan_to("db:443");
        p.on_first_connection = true;
        (c, p)
    }

    #[test]
    fn a_far_end_started_on_its_first_connection_has_systemd_hold_its_port() {
        let user = Persistence::UserUnit {
            unit: "sluice-far-end-redis.service".into(),
            linger: true,
        };
        let system = Persistence::SystemUnit {
            unit: "sluice-far-end-redis.service".into(),
        };
        for (persistence, sudo, units, kind) in [
            (user, false, "/home/u/.config/systemd/user", "unit-user"),
            (system, true, "/etc/systemd/system", "unit-system"),
        ] {
            let (c, p) = on_demand(persistence, sudo);
            let l = c.layout(&facts(), &p);
            let unit = start_input(&l, &c, &p).unwrap();
            assert!(
                unit.contains("\"-d\" \"-s\" \"systemd:redis\" \"-t\""),
                "{unit}"
            );
            assert!(
                unit.contains(
                    "Requires=sluice-far-end-redis.socket\nAfter=sluice-far-end-redis.socket\n"
                ),
                "{unit}"
            );
            // Nothing starts it at boot but its socket; systemd binds even port 443.
            assert!(!unit.contains("[Install]"), "{unit}");
            assert!(!unit.contains("CAP_NET_BIND_SERVICE"), "{unit}");

            let file = |unit: &str| format!("{units}/{unit}");
            let socket = socket_unit(&c, &p, "sluice-far-end-redis.service", &file).unwrap();
            assert_eq!(socket.unit, "sluice-far-end-redis.socket");
            assert_eq!(socket.file, file("sluice-far-end-redis.socket"));
            assert!(
                socket.text.contains(
                    "\n[Socket]\nListenStream=0.0.0.0:8025\nFileDescriptorName=redis\nService=sluice-far-end-redis.service\n"
                ),
                "{}",
                socket.text
            );
            assert!(socket.text.contains("WantedBy=sockets.target"));

            // The socket is noted (and so stopped by remove) before the service it starts,
            // and is what gets enabled.
            let script = start(&l, &c, &p);
            let at = |needle: &str| {
                script
                    .find(needle)
                    .unwrap_or_else(|| panic!("{needle:?} missing from:\n{script}"))
            };
            assert!(at("note file \"$S\"") < at("note file \"$F\""), "{script}");
            assert!(at(&format!("note {kind} \"$SU\"")) < at(&format!("note {kind} \"$U\"")));
            assert!(at("U=\"$SU\"") < at("enable --now \"$U\""), "{script}");
            let removal = Removal::from_manifest(
                [
                    format!("file\t{}", socket.file),
                    format!("{kind}\tsluice-far-end-redis.socket"),
                    format!("file\t{}", file("sluice-far-end-redis.service")),
                    format!("{kind}\tsluice-far-end-redis.service"),
                ]
                .iter()
                .map(String::as_str),
                "/home/u",
                "redis",
            );
            assert!(removal.refused.is_empty(), "{:?}", removal.refused);
            let socket_unit = match kind {
                "unit-user" => Undo::UserUnit(socket.unit.clone()),
                _ => Undo::SystemUnit(socket.unit.clone()),
            };
            assert_eq!(removal.undo[1], socket_unit);
        }
    }

    /// Check reads an idle service beside a listening socket as started: its first
    /// connection starts it. Unix only: runs the script with sh and a stand-in systemctl
    /// for which only the socket of `redis` is active.
    #[cfg(unix)]
    #[test]
    fn status_reads_a_service_waiting_behind_its_socket_as_idle() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let systemctl = bin.join("systemctl");
        std::fs::write(
            &systemctl,
            "#!/bin/sh\nfor last; do :; done\ncase \"$last\" in sluice-far-end-redis.socket) exit 0 ;; *) exit 3 ;; esac\n",
        )
        .unwrap();
        std::fs::set_permissions(
            &systemctl,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (d, m) = Layout::manifest_only(dir.path().to_str().unwrap(), "redis");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            &m,
            "unit-user\tsluice-far-end-redis.socket\nunit-user\tsluice-far-end-redis.service\nunit-user\tsluice-far-end-other.service\n",
        )
        .unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(status(&d, &m))
            .env("PATH", path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        for line in [
            "sluice-far-end:running=unit sluice-far-end-redis.socket",
            "sluice-far-end:idle=unit sluice-far-end-redis.service",
            "sluice-far-end:stopped=unit sluice-far-end-other.service",
        ] {
            assert!(said.lines().any(|l| l == line), "{line:?} missing:\n{said}");
        }
    }

    /// systemd's `verify` finds nothing wrong with the socket unit and its service.
    #[test]
    #[cfg(unix)]
    fn systemd_analyze_accepts_the_socket_unit_and_its_service() {
        let Some(analyze) = systemd_analyze() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("sluiced");
        std::fs::write(&bin, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let system = Persistence::SystemUnit {
            unit: "sluice-far-end-redis.service".into(),
        };
        let (mut c, p) = on_demand(system, true);
        c.program_path = bin.display().to_string();
        let l = c.layout(&facts(), &p);
        let units = dir.path().join("units");
        std::fs::create_dir(&units).unwrap();
        let file = |unit: &str| units.join(unit).display().to_string();
        let service = file("sluice-far-end-redis.service");
        std::fs::write(&service, start_input(&l, &c, &p).unwrap()).unwrap();
        let socket = socket_unit(&c, &p, "sluice-far-end-redis.service", &file).unwrap();
        std::fs::write(&socket.file, &socket.text).unwrap();
        let files = [socket.file.as_ref(), std::path::Path::new(&service)];
        let ours = verify(&analyze, &files, "sluiced");
        assert!(
            ours.is_empty(),
            "systemd-analyze verify:\n{}",
            ours.join("\n")
        );
    }

    // Unix only: runs the scripts with sh.
    #[cfg(unix)]
    #[test]
    fn scripts_carry_no_key_material_and_parse_as_sh() {
        let c = choice(Persistence::Daemon, false);
        let l = c.layout(&facts(), &plan());
        for script in [
            probe("redis"),
            send_key(&l, &c),
            send_previous_key(&l, &c),
            install(&l),
            start(&l, &c, &plan()),
            status(&l.dir, &l.manifest),
            read_manifest(&l.dir, &l.manifest),
            remove(&l.dir, &l.manifest, &Removal::default()),
            {
                let system = Persistence::SystemUnit {
                    unit: "sluice-far-end-redis.service".into(),
                };
                let (c, p) = on_demand(system, true);
                start(&c.layout(&facts(), &p), &c, &p)
            },
            remove(
                &l.dir,
                &l.manifest,
                &Removal::from_manifest(
                    [
                        "sudo\tyes",
                        "key\t/home/u/.config/sluice-far-end/redis.key",
                        "pidfile\t/home/u/.config/sluice-far-end/redis.pid",
                        "unit-system\tsluiced@redis.service",
                        "unit-user\tsluice-far-end-redis.service",
                        "file\t/etc/shadow",
                    ],
                    "/home/u",
                    "redis",
                ),
            ),
        ] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
