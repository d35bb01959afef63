//! What a far end's manifest lists, and what `remove` may do about it. The manifest lives
//! in the far-end user's home, where anything running as that user can write, so it is read
//! as a claim, not as orders: remove acts only on entries naming what set-up itself makes
//! for this tunnel (its layout), and refuses, reports and leaves alone everything else.

use super::host::{own_socket_unit, own_unit, template_unit};
use super::layout::{Layout, sluiced_config, system_unit_file, temporary, user_unit_file};

/// One thing remove undoes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Undo {
    /// `systemctl disable --now` a system unit (through sudo if set-up used it).
    SystemUnit(String),
    /// `systemctl --user disable --now` a unit of the far-end user.
    UserUnit(String),
    /// Stops the process a pid file names, if it runs with this tunnel's key, then deletes
    /// the pid file.
    Process { pidfile: String },
    /// Deletes a file. `root`: it is in /etc, root's, so it goes through sudo if set-up
    /// used it; the user's own files never do (their directories are the user's to
    /// redirect, and root must not follow them).
    Delete { path: String, root: bool },
}

/// What remove does, read from a manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Set-up went through `sudo -n` (only root's files and system units use it).
    pub sudo: bool,
    /// The key file set-up wrote; a process is stopped only if its command line names it.
    pub key: Option<String>,
    /// In the manifest's order, each once.
    pub undo: Vec<Undo>,
    /// Lines naming anything else, shown as `kind "value"`: left alone.
    pub refused: Vec<String>,
}

impl Removal {
    /// Sorts the manifest's `KIND<TAB>VALUE` lines of tunnel `slug`, set up for the user
    /// whose home is `home`, into what to undo and what to refuse.
    pub fn from_manifest<'a>(
        lines: impl IntoIterator<Item = &'a str>,
        home: &str,
        slug: &str,
    ) -> Removal {
        let known = made_by_set_up(home, slug);
        let mut removal = Removal::default();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            let (kind, value) = line.split_once('\t').unwrap_or((line, ""));
            if kind == "sudo" && matches!(value, "yes" | "no") {
                removal.sudo |= value == "yes";
                continue;
            }
            match known.iter().find(|(k, v, _)| *k == kind && v == value) {
                Some((_, _, undo)) => {
                    if kind == "key" && removal.key.is_none() {
                        removal.key = Some(value.to_owned());
                    }
                    if !removal.undo.contains(undo) {
                        removal.undo.push(undo.clone());
                    }
                }
                None => {
                    let shown = if line.contains('\t') {
                        format!("{kind} {value:?}")
                    } else {
                        format!("{line:?}")
                    };
                    if !removal.refused.contains(&shown) {
                        removal.refused.push(shown);
                    }
                }
            }
        }
        removal
    }
}

/// Every entry set-up can write for tunnel `slug` of the user whose home is `home`, in any
/// of its ways (daemon, user unit, system unit, the .deb's unit, a socket unit beside
/// either of Sluice's own), with what undoes it.
fn made_by_set_up(home: &str, slug: &str) -> Vec<(&'static str, String, Undo)> {
    let user = Layout::of(home, slug, false);
    let system = Layout::of(home, slug, true);
    let delete = |kind: &'static str, path: String, root: bool| {
        let undo = Undo::Delete {
            path: path.clone(),
            root,
        };
        (kind, path, undo)
    };
    let own = own_unit(slug);
    let socket = own_socket_unit(slug);
    vec![
        delete("file", user_unit_file(home, &socket), false),
        delete("file", system_unit_file(&socket), true),
        (
            "unit-system",
            socket.clone(),
            Undo::SystemUnit(socket.clone()),
        ),
        ("unit-user", socket.clone(), Undo::UserUnit(socket)),
        delete("key", user.key.clone(), false),
        delete("key", system.key.clone(), true),
        delete("file", temporary(&user.key), false),
        delete("file", temporary(&system.key), true),
        delete("file", user.log.clone(), false),
        delete("file", user.sluiced_copy.clone(), false),
        delete("file", user.previous_key.clone(), false),
        delete("file", temporary(&user.previous_key), false),
        delete("file", system.previous_key.clone(), true),
        delete("file", temporary(&system.previous_key), true),
        delete("file", temporary(&user.sluiced_copy), false),
        delete("file", user_unit_file(home, &own), false),
        delete("file", system_unit_file(&own), true),
        delete("file", sluiced_config(slug), true),
        (
            "pidfile",
            user.pidfile.clone(),
            Undo::Process {
                pidfile: user.pidfile,
            },
        ),
        (
            "unit-system",
            template_unit(slug),
            Undo::SystemUnit(template_unit(slug)),
        ),
        ("unit-system", own.clone(), Undo::SystemUnit(own.clone())),
        ("unit-user", own.clone(), Undo::UserUnit(own)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyRef, Mode, TunnelSpec};
    use crate::far_end::host::{Choice, HostFacts, Persistence, Privilege, Program};
    use crate::far_end::plan::FarEndPlan;

    const HOME: &str = "/home/u";

    fn removal(lines: &[&str]) -> Removal {
        Removal::from_manifest(lines.iter().copied(), HOME, "redis")
    }

    #[test]
    fn what_set_up_writes_is_undone_in_order() {
        let r = removal(&[
            "sudo\tyes",
            "key\t/etc/sluice/keys/redis.key",
            "file\t/etc/sluice/keys/redis.key.tmp",
            "file\t/etc/systemd/system/sluice-far-end-redis.service",
            "unit-system\tsluice-far-end-redis.service",
            "unit-system\tsluice-far-end-redis.service",
            "",
        ]);
        assert!(r.sudo);
        assert_eq!(r.key.as_deref(), Some("/etc/sluice/keys/redis.key"));
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        assert_eq!(
            r.undo,
            [
                Undo::Delete {
                    path: "/etc/sluice/keys/redis.key".into(),
                    root: true
                },
                Undo::Delete {
                    path: "/etc/sluice/keys/redis.key.tmp".into(),
                    root: true
                },
                Undo::Delete {
                    path: "/etc/systemd/system/sluice-far-end-redis.service".into(),
                    root: true
                },
                Undo::SystemUnit("sluice-far-end-redis.service".into()),
            ]
        );
        let r = removal(&[
            "sudo\tno",
            "key\t/home/u/.config/sluice-far-end/redis.key",
            "pidfile\t/home/u/.config/sluice-far-end/redis.pid",
            "file\t/home/u/.config/sluice-far-end/redis.log",
        ]);
        assert!(!r.sudo);
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        // The user's own files never go through sudo.
        assert!(
            r.undo
                .iter()
                .all(|u| !matches!(u, Undo::Delete { root: true, .. })),
            "{:?}",
            r.undo
        );
        assert!(r.undo.contains(&Undo::Process {
            pidfile: "/home/u/.config/sluice-far-end/redis.pid".into()
        }));
    }

    #[test]
    fn anything_else_is_refused_and_reported() {
        let r = removal(&[
            "sudo\tyes",
            "file\t/etc/shadow",
            "key\t/etc/ssh/ssh_host_ed25519_key",
            "file\t/etc/sluice/keys/../../shadow",
            "file\t/home/u/.config/sluice-far-end/other.key",
            // Another tunnel's files and units, and this tunnel's under the wrong kind.
            "key\t/etc/sluice/keys/other.key",
            "unit-system\tsluiced@other.service",
            "unit-system\tssh.service",
            "unit-user\tdefault.target",
            "pidfile\t/run/sshd.pid",
            "key\t/home/u/.config/sluice-far-end/redis.pid",
            "unit-user\tsluiced@redis.service",
            "sudo\tplease",
            "garbage",
            "file\t/etc/shadow",
        ]);
        assert!(r.undo.is_empty(), "{:?}", r.undo);
        assert_eq!(r.key, None);
        assert!(r.sudo);
        assert_eq!(r.refused.len(), 13, "{:#?}", r.refused);
        assert_eq!(r.refused[0], r#"file "/etc/shadow""#);
        assert_eq!(r.refused[12], r#""garbage""#);
    }

    #[test]
    fn a_home_with_a_trailing_slash_is_the_same_home() {
        let r = Removal::from_manifest(
            ["key\t/home/u/.config/sluice-far-end/redis.key"],
            "/home/u/",
            "redis",
        );
        assert!(r.refused.is_empty(), "{:?}", r.refused);
    }

    /// Whatever way set-up chose, what it writes down is what remove recognises.
    #[test]
    fn every_layout_set_up_uses_is_recognised() {
        let spec = TunnelSpec::new(
            "redis",
            Mode::Encrypt,
            "[127.0.0.1]:6379",
            "db:8025",
            KeyRef::File("/k".into()),
        );
        let plan = FarEndPlan::new(&spec, "[127.0.0.1]:6379", "laptop");
        let facts = HostFacts {
            user: "u".into(),
            home: HOME.into(),
            os: "Linux".into(),
            kernel: "Linux".into(),
            machine: std::env::consts::ARCH.into(),
            sluiced: None,
            spiped: None,
            privilege: Privilege::Root,
            systemd_system: true,
            systemd_user: true,
            systemd_version: Some(252),
            linger: false,
            sluiced_template: None,
            already_set_up: false,
        };
        let ways = [
            Persistence::Daemon,
            Persistence::UserUnit {
                unit: own_unit("redis"),
                linger: true,
            },
            Persistence::SystemUnit {
                unit: own_unit("redis"),
            },
            Persistence::SluicedTemplate {
                unit: template_unit("redis"),
            },
        ];
        for persistence in ways {
            let choice = Choice {
                program: Program::Sluiced,
                program_path: "/usr/bin/sluiced".into(),
                persistence: persistence.clone(),
                sudo: true,
                listen_stream: None,
                install: None,
                why: String::new(),
            };
            let layout = choice.layout(&facts, &plan);
            let mut lines = vec![
                format!("key\t{}", layout.key),
                format!("file\t{}", temporary(&layout.key)),
            ];
            match &persistence {
                Persistence::Daemon => {
                    lines.push(format!("pidfile\t{}", layout.pidfile));
                    lines.push(format!("file\t{}", layout.log));
                }
                Persistence::UserUnit { unit, .. } => {
                    lines.push(format!("file\t{}", user_unit_file(HOME, unit)));
                    lines.push(format!("unit-user\t{unit}"));
                }
                Persistence::SystemUnit { unit } => {
                    lines.push(format!("file\t{}", system_unit_file(unit)));
                    lines.push(format!("unit-system\t{unit}"));
                }
                Persistence::SluicedTemplate { unit } => {
                    lines.push(format!("file\t{}", sluiced_config("redis")));
                    lines.push(format!("unit-system\t{unit}"));
                }
            }
            let r = Removal::from_manifest(lines.iter().map(String::as_str), HOME, "redis");
            assert!(r.refused.is_empty(), "{persistence:?}: {:?}", r.refused);
            assert_eq!(r.undo.len(), 4, "{persistence:?}: {:?}", r.undo);
            assert_eq!(r.key.as_deref(), Some(layout.key.as_str()));
        }
    }
}
