//! What the far end has (read by the probe step) and what set-up therefore does: which
//! program serves the tunnel and how it is kept running, with the reason in words. Pure
//! functions of the probe's answers, so every branch is tested without a server.

use super::error::FarHostError;
use super::install::{LocalSluiced, this_platform};
use super::layout::Layout;
use super::plan::FarEndPlan;
use super::ssh::RemoteOutput;
use crate::protocol::KeyAgreement;

/// An installed program and the first line of its `-v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub path: String,
    pub version: String,
}

/// Who the SSH user is on the far end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    Root,
    /// `sudo -n true` works: sudo without a password.
    PasswordlessSudo,
    User,
}

/// The probe's findings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub user: String,
    pub home: String,
    pub os: String,
    /// `uname -s` and `uname -m`: whether this machine's sluiced runs there.
    pub kernel: String,
    pub machine: String,
    pub sluiced: Option<Installed>,
    pub spiped: Option<Installed>,
    pub privilege: Privilege,
    /// systemd runs the system (`/run/systemd/system` exists).
    pub systemd_system: bool,
    /// `systemctl --user` reaches a user manager.
    pub systemd_user: bool,
    /// systemd's version (`systemctl --version`), if systemctl is there.
    pub systemd_version: Option<u32>,
    /// Whether the user's manager keeps running after logout (`loginctl enable-linger`).
    pub linger: bool,
    /// The `sluiced@.service` template unit the Sluice .deb installs, if present.
    pub sluiced_template: Option<String>,
    /// Whether Sluice already set this tunnel up here (its manifest exists).
    pub already_set_up: bool,
}

impl HostFacts {
    /// Reads the probe script's `sluice-far-end:NAME=VALUE` lines.
    pub fn parse(output: &RemoteOutput) -> Option<HostFacts> {
        let installed = |name: &str| {
            output.value(name).map(|path| Installed {
                path: path.to_owned(),
                version: output
                    .value(&format!("{name}-version"))
                    .unwrap_or("unknown version")
                    .to_owned(),
            })
        };
        let yes = |name: &str| output.value(name) == Some("yes");
        let privilege = if output.value("uid") == Some("0") {
            Privilege::Root
        } else if yes("sudo") {
            Privilege::PasswordlessSudo
        } else {
            Privilege::User
        };
        Some(HostFacts {
            user: output.value("user")?.to_owned(),
            home: output.value("home")?.to_owned(),
            os: output.value("os").unwrap_or("unknown OS").to_owned(),
            kernel: output.value("kernel").unwrap_or_default().to_owned(),
            machine: output.value("machine").unwrap_or_default().to_owned(),
            sluiced: installed("sluiced"),
            spiped: installed("spiped"),
            privilege,
            systemd_system: yes("systemd-system"),
            systemd_user: yes("systemd-user"),
            systemd_version: output
                .value("systemd-version")
                .and_then(|v| v.trim().parse().ok()),
            linger: yes("linger"),
            sluiced_template: output.value("sluiced-template").map(str::to_owned),
            already_set_up: yes("manifest"),
        })
    }

    /// One line for the progress list.
    pub fn summary(&self) -> String {
        let program = |p: &Option<Installed>, name: &str| match p {
            Some(i) => format!("{name} {} ({})", i.version, i.path),
            None => format!("no {name}"),
        };
        let who = match self.privilege {
            Privilege::Root => "root".to_owned(),
            Privilege::PasswordlessSudo => format!("{} with password-less sudo", self.user),
            Privilege::User => format!("{} without password-less sudo", self.user),
        };
        let version = self
            .systemd_version
            .map_or_else(String::new, |v| format!(" {v}"));
        let systemd = match (self.systemd_system, self.systemd_user) {
            (true, true) => format!("systemd{version} (system and --user)"),
            (true, false) => format!("systemd{version} (system only, no --user manager)"),
            (false, true) => format!("systemd{version} --user only"),
            (false, false) => "no systemd".to_owned(),
        };
        format!(
            "{}; {}; {}; {systemd}; logged in as {who}",
            self.os,
            program(&self.sluiced, "sluiced"),
            program(&self.spiped, "spiped")
        )
    }
}

/// Which program serves the far end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Sluiced,
    Spiped,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::Sluiced => "sluiced",
            Program::Spiped => "spiped",
        }
    }
}

/// How the far end is kept running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// The .deb's `sluiced@NAME` system unit, running `/etc/sluice/NAME.ron`.
    SluicedTemplate { unit: String },
    /// A system unit Sluice writes (`/etc/systemd/system/sluice-far-end-NAME.service`).
    SystemUnit { unit: String },
    /// A `systemctl --user` unit Sluice writes; `linger` says whether it outlives logout.
    UserUnit { unit: String, linger: bool },
    /// The program's own daemon mode with a pid file: stops at reboot.
    Daemon,
}

/// The oldest systemd that runs Sluice's sandboxed system unit: `LoadCredential=` came
/// in 247, the `%d` specifier (the credentials' directory) its `ExecStart=` uses in 248.
pub const MIN_SYSTEMD_FOR_SANDBOX: u32 = 248;

/// The .deb's template unit for a tunnel: `sluiced@SLUG.service`.
pub fn template_unit(slug: &str) -> String {
    format!("sluiced@{slug}.service")
}

/// The unit Sluice writes for a tunnel, system or `--user`: `sluice-far-end-SLUG.service`.
pub fn own_unit(slug: &str) -> String {
    format!("sluice-far-end-{slug}.service")
}

/// Why set-up cannot run this far end: it needs sluiced (or has neither program), and this
/// machine's sluiced cannot be copied there.
fn no_program(
    facts: &HostFacts,
    plan: &FarEndPlan,
    destination: &str,
    local: Option<&LocalSluiced>,
    spiped: &Option<Installed>,
) -> FarHostError {
    let no_copy = match local {
        None => "and there is no sluiced beside this program to copy there".to_owned(),
        Some(_) => format!(
            "and this machine's sluiced is built for {}, not for the far end's {} {}",
            this_platform(),
            if facts.kernel.is_empty() {
                "unknown system"
            } else {
                &facts.kernel
            },
            facts.machine
        ),
    };
    let destination = destination.to_owned();
    if spiped.is_none() {
        return FarHostError::NoProgram {
            destination,
            no_copy,
        };
    }
    let why = if plan.previous_key {
        "during a rotation the far end lets in the key being replaced beside the new one, and stock spiped takes one key"
    } else if plan.key_agreement == KeyAgreement::X25519 {
        "this tunnel uses Sluice's X25519 handshake, which stock spiped cannot speak (or switch the tunnel to the classic handshake)"
    } else if plan.far_mode.is_reverse() {
        "the far end of a reverse tunnel is sluiced's (stock spiped has no reverse mode)"
    } else {
        "only sluiced takes its listening socket from systemd (start on first connection)"
    };
    FarHostError::NeedsSluiced {
        destination,
        why,
        no_copy,
    }
}

/// The socket unit that holds the port of a far end started on its first connection:
/// `sluice-far-end-SLUG.socket`, system or `--user` like its service.
pub fn own_socket_unit(slug: &str) -> String {
    format!("sluice-far-end-{slug}.socket")
}

/// What set-up will do on this far end, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub program: Program,
    pub program_path: String,
    pub persistence: Persistence,
    /// This machine's sluiced, to copy to `program_path` before the start: the far end
    /// needs sluiced and has none.
    pub install: Option<LocalSluiced>,
    /// Whether root commands go through `sudo -n`.
    pub sudo: bool,
    /// Started on the first connection: the `ListenStream=` of the socket unit that holds
    /// the far end's port until then (beside its service, system or `--user` alike).
    pub listen_stream: Option<String>,
    /// Why this was chosen, in words.
    pub why: String,
}

impl Choice {
    /// Where this far end's files go: for a system unit the key is root's, in /etc.
    pub fn layout(&self, facts: &HostFacts, plan: &FarEndPlan) -> Layout {
        let system = matches!(
            self.persistence,
            Persistence::SluicedTemplate { .. } | Persistence::SystemUnit { .. }
        );
        Layout::of(&facts.home, &plan.slug, system)
    }
}

/// Picks the program (sluiced if present, else spiped where it can serve, else a copy of
/// `local`, this machine's sluiced, where it runs) and the most persistent way to run it
/// that the far end allows.
pub fn choose(
    facts: &HostFacts,
    plan: &FarEndPlan,
    destination: &str,
    local: Option<&LocalSluiced>,
) -> Result<Choice, FarHostError> {
    let needs_sluiced = !plan.spiped_can_serve() || plan.on_first_connection;
    let (program, program_path, install) = match (&facts.sluiced, &facts.spiped) {
        (Some(s), _) => (Program::Sluiced, s.path.clone(), None),
        (None, Some(s)) if !needs_sluiced => (Program::Spiped, s.path.clone(), None),
        (None, spiped) => match local.filter(|l| l.runs_on(&facts.kernel, &facts.machine)) {
            Some(local) => {
                let copy = Layout::of(&facts.home, &plan.slug, false).sluiced_copy;
                (Program::Sluiced, copy, Some(local.clone()))
            }
            None => return Err(no_program(facts, plan, destination, local, spiped)),
        },
    };
    // Root is used only for a system unit: everything else stays in the user's home. A
    // system unit never runs the far end as root: the .deb's runs it as the user sluiced,
    // Sluice's own as a user systemd makes for it, which needs a recent enough systemd.
    // A copy of sluiced lives in the user's home, which a system unit's sandbox hides.
    let could_be_privileged = facts.systemd_system && facts.privilege != Privilege::User;
    let privileged = could_be_privileged && install.is_none();
    // Started on the first connection: Sluice's own units, a socket unit beside each
    // (the .deb's template is for config files the administrator writes).
    let template = privileged
        && program == Program::Sluiced
        && facts.sluiced_template.is_some()
        && !plan.on_first_connection;
    let sandbox = privileged
        && facts
            .systemd_version
            .is_some_and(|v| v >= MIN_SYSTEMD_FOR_SANDBOX);
    let sudo = (template || sandbox) && facts.privilege == Privilege::PasswordlessSudo;
    let via = if sudo { " through sudo" } else { " as root" };
    // Why no system unit, when root or sudo would allow one.
    let old_systemd = || match facts.systemd_version {
        Some(v) => format!(
            "systemd {v} is older than {MIN_SYSTEMD_FOR_SANDBOX}, which Sluice's sandboxed system unit needs (LoadCredential= and %d), so"
        ),
        None => format!(
            "the version of systemd could not be read, and Sluice's sandboxed system unit needs {MIN_SYSTEMD_FOR_SANDBOX} or newer, so"
        ),
    };
    let (persistence, why) = if template {
        (
            Persistence::SluicedTemplate {
                unit: template_unit(&plan.slug),
            },
            format!(
                "the system unit sluiced@{} from the Sluice package, started{via}: it runs as the user sluiced, at boot, and restarts on failure",
                plan.slug
            ),
        )
    } else if sandbox {
        (
            Persistence::SystemUnit {
                unit: own_unit(&plan.slug),
            },
            format!(
                "a system unit sluice-far-end-{}.service, written and started{via}: it runs as a user of its own (DynamicUser=) in a sandbox, reads the key through LoadCredential=, starts at boot and restarts on failure",
                plan.slug
            ),
        )
    } else if facts.systemd_user {
        let unit = own_unit(&plan.slug);
        let lead = if privileged {
            old_systemd()
        } else if could_be_privileged {
            format!(
                "the copy of sluiced is in {}'s home, which a system unit's sandbox hides, so",
                facts.user
            )
        } else if facts.systemd_system {
            format!("{} has neither root nor password-less sudo, so", facts.user)
        } else {
            "no system manager is reachable, so".to_owned()
        };
        let linger_note = if facts.linger {
            "lingering is on for this user, so it keeps running after logout and starts at boot"
                .to_owned()
        } else {
            format!(
                "lingering is off: it stops when {} logs out and does not start at boot until an administrator runs `loginctl enable-linger {}`",
                facts.user, facts.user
            )
        };
        (
            Persistence::UserUnit {
                unit: unit.clone(),
                linger: facts.linger,
            },
            format!(
                "{lead} a systemd --user unit {unit}, running as {}; {linger_note}",
                facts.user
            ),
        )
    } else {
        let lead = if privileged {
            format!(
                "{} and there is no systemd --user manager, so",
                old_systemd().trim_end_matches(", so")
            )
        } else if could_be_privileged {
            format!(
                "the copy of sluiced is in {}'s home, which a system unit's sandbox hides, and there is no systemd --user manager, so",
                facts.user
            )
        } else if facts.systemd_system {
            format!(
                "{} has neither root nor password-less sudo and no systemd --user manager, so",
                facts.user
            )
        } else {
            "no systemd on the far end, so".to_owned()
        };
        (
            Persistence::Daemon,
            format!(
                "{lead} a daemon with a pid file, running as {} (it does not start again after a reboot)",
                facts.user
            ),
        )
    };
    let mut why = why;
    if let Some(local) = &install {
        why = format!(
            "{why}; sluiced is not installed there, so set-up copies this machine's ({}) to {program_path}",
            local.version
        );
    }
    let mut listen_stream = None;
    if plan.on_first_connection {
        let refuse = |reason: String| {
            Err(FarHostError::OnFirstConnection {
                destination: destination.to_owned(),
                tunnel: plan.tunnel.clone(),
                reason,
            })
        };
        let listen = match plan.listen_stream() {
            Ok(listen) => listen,
            Err(reason) => return refuse(reason),
        };
        if persistence == Persistence::Daemon {
            return refuse(format!(
                "systemd must hold the port until then, and set-up cannot use systemd there ({why})"
            ));
        }
        why.push_str(&format!(
            "; it starts on the first connection to {listen}, which systemd holds until then ({})",
            own_socket_unit(&plan.slug)
        ));
        listen_stream = Some(listen);
    }
    Ok(Choice {
        program,
        program_path,
        install,
        persistence,
        sudo,
        listen_stream,
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyRef, Mode, TunnelSpec};
    use crate::protocol::KeyAgreement;

    fn facts() -> HostFacts {
        HostFacts {
            user: "deploy".into(),
            home: "/home/deploy".into(),
            os: "Debian GNU/Linux 12 (bookworm)".into(),
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

    fn plan(agreement: KeyAgreement) -> FarEndPlan {
        let mut spec = TunnelSpec::new(
            "redis",
            Mode::Encrypt,
            "[127.0.0.1]:6379",
            "db:8025",
            KeyRef::File("/k".into()),
        );
        spec.key_agreement = agreement;
        FarEndPlan::new(&spec, "[127.0.0.1]:6379", "laptop")
    }

    fn sluiced() -> Option<Installed> {
        Some(Installed {
            path: "/usr/bin/sluiced".into(),
            version: "sluiced 0.1.0 (spiped 1.6 protocol)".into(),
        })
    }

    #[test]
    fn parse_reads_marked_lines() {
        let out = RemoteOutput {
            status: 0,
            stdout: "motd\nsluice-far-end:user=deploy\nsluice-far-end:home=/home/deploy\nsluice-far-end:uid=1000\nsluice-far-end:os=Linux 6.1\nsluice-far-end:spiped=/usr/bin/spiped\nsluice-far-end:spiped-version=spiped 1.6.2\nsluice-far-end:sudo=yes\nsluice-far-end:systemd-user=yes\nsluice-far-end:systemd-version=252\n".into(),
            stderr: String::new(),
        };
        let f = HostFacts::parse(&out).unwrap();
        assert_eq!(f.privilege, Privilege::PasswordlessSudo);
        assert_eq!(f.spiped.as_ref().unwrap().version, "spiped 1.6.2");
        assert!(f.sluiced.is_none() && f.systemd_user && !f.systemd_system);
        assert_eq!(f.systemd_version, Some(252));
        assert!(
            f.summary().contains("systemd 252 --user only"),
            "{}",
            f.summary()
        );
        let empty = RemoteOutput {
            status: 0,
            stdout: String::new(),
            stderr: String::new(),
        };
        assert_eq!(HostFacts::parse(&empty), None);
    }

    #[test]
    fn no_systemd_means_a_daemon_with_spiped() {
        let c = choose(&facts(), &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert_eq!(c.program, Program::Spiped);
        assert_eq!(c.persistence, Persistence::Daemon);
        assert!(!c.sudo);
        assert!(c.why.contains("no systemd"), "{}", c.why);
    }

    #[test]
    fn sluiced_is_preferred() {
        let mut f = facts();
        f.sluiced = sluiced();
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert_eq!(c.program, Program::Sluiced);
        assert_eq!(c.program_path, "/usr/bin/sluiced");
    }

    #[test]
    fn root_with_the_template_uses_sluiced_at_name() {
        let mut f = facts();
        f.sluiced = sluiced();
        f.privilege = Privilege::Root;
        f.systemd_system = true;
        f.sluiced_template = Some("/lib/systemd/system/sluiced@.service".into());
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert_eq!(
            c.persistence,
            Persistence::SluicedTemplate {
                unit: "sluiced@redis.service".into()
            }
        );
        assert!(!c.sudo);
        assert!(c.why.contains("as root"), "{}", c.why);
    }

    #[test]
    fn sudo_with_spiped_writes_a_system_unit() {
        let mut f = facts();
        f.privilege = Privilege::PasswordlessSudo;
        f.systemd_system = true;
        f.systemd_user = true;
        f.sluiced_template = Some("/lib/systemd/system/sluiced@.service".into());
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert_eq!(
            c.persistence,
            Persistence::SystemUnit {
                unit: "sluice-far-end-redis.service".into()
            }
        );
        assert!(c.sudo);
        assert!(c.why.contains("through sudo"), "{}", c.why);
    }

    #[test]
    fn a_system_unit_of_sluices_own_needs_a_systemd_that_sandboxes_it() {
        let mut f = facts();
        f.privilege = Privilege::Root;
        f.systemd_system = true;
        f.systemd_user = true;
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert!(matches!(c.persistence, Persistence::SystemUnit { .. }));
        assert!(c.why.contains("DynamicUser="), "{}", c.why);
        // Too old for LoadCredential= and %d: never a system unit as root instead.
        for (version, words) in [
            (Some(247), "systemd 247 is older than 248"),
            (None, "could not be read"),
        ] {
            f.systemd_version = version;
            let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
            assert!(
                matches!(c.persistence, Persistence::UserUnit { .. }),
                "{:?}",
                c.persistence
            );
            assert!(!c.sudo);
            assert!(c.why.contains(words), "{}", c.why);
            assert!(c.why.contains("running as deploy"), "{}", c.why);
        }
        f.systemd_user = false;
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert_eq!(c.persistence, Persistence::Daemon);
        assert!(c.why.contains("no systemd --user manager"), "{}", c.why);
        // The .deb's unit runs as its own user whatever the version.
        f.sluiced = sluiced();
        f.sluiced_template = Some("/lib/systemd/system/sluiced@.service".into());
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert!(matches!(c.persistence, Persistence::SluicedTemplate { .. }));
        assert!(c.why.contains("as the user sluiced"), "{}", c.why);
    }

    #[test]
    fn an_ordinary_user_gets_a_user_unit_with_a_lingering_note() {
        let mut f = facts();
        f.systemd_system = true;
        f.systemd_user = true;
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert_eq!(
            c.persistence,
            Persistence::UserUnit {
                unit: "sluice-far-end-redis.service".into(),
                linger: false
            }
        );
        assert!(c.why.contains("loginctl enable-linger deploy"), "{}", c.why);
        assert!(!c.sudo);
        f.linger = true;
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert!(c.why.contains("lingering is on"), "{}", c.why);
    }

    #[test]
    fn systemd_without_privilege_or_user_manager_is_a_daemon() {
        let mut f = facts();
        f.systemd_system = true;
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert_eq!(c.persistence, Persistence::Daemon);
        assert!(
            c.why.contains("neither root nor password-less sudo"),
            "{}",
            c.why
        );
    }

    #[test]
    fn a_far_end_started_on_its_first_connection_needs_sluiced_systemd_and_an_address() {
        let on_demand = |mode: Mode, far: &str| {
            let spec = TunnelSpec::new(
                "redis",
                mode,
                "[127.0.0.1]:6379",
                "db:8025",
                KeyRef::File("/k".into()),
            );
            let mut plan = FarEndPlan::new(&spec, far, "laptop");
            plan.on_first_connection = true;
            plan
        };
        let refused = |f: &HostFacts, plan: &FarEndPlan, words: &str| {
            let e = choose(f, plan, "db", None).unwrap_err();
            assert!(matches!(e, FarHostError::OnFirstConnection { .. }), "{e:?}");
            let text = e.to_string();
            assert!(text.contains(words), "{text}");
            assert!(
                text.contains("untick \"Start on first connection\""),
                "{text}"
            );
        };
        let encrypt = on_demand(Mode::Encrypt, "[127.0.0.1]:6379");
        let mut f = facts();
        f.systemd_user = true;
        // Stock spiped can serve an Encrypt tunnel's far end, but not from systemd's socket.
        let e = choose(&f, &encrypt, "db", None).unwrap_err();
        assert!(
            e.to_string().starts_with("only sluiced takes its listening socket from systemd (start on first connection), and sluiced is not installed on db"),
            "{e}"
        );
        f.sluiced = sluiced();
        f.systemd_user = false;
        refused(
            &f,
            &encrypt,
            "cannot use systemd there (no systemd on the far end",
        );
        for (plan, words) in [
            (
                on_demand(Mode::Decrypt, "db.internal:8025"),
                "systemd listens only on an IP address",
            ),
            (
                on_demand(Mode::ReverseOut, "[127.0.0.1]:6379"),
                "a reverse tunnel keeps connections",
            ),
        ] {
            f.systemd_user = true;
            refused(&f, &plan, words);
        }

        // A user unit and its socket: sluiced takes the port from systemd.
        let c = choose(&f, &encrypt, "db", None).unwrap();
        assert!(matches!(c.persistence, Persistence::UserUnit { .. }));
        assert_eq!(c.listen_stream.as_deref(), Some("0.0.0.0:8025"));
        assert!(
            c.why.contains("it starts on the first connection to 0.0.0.0:8025, which systemd holds until then (sluice-far-end-redis.socket)"),
            "{}",
            c.why
        );
        // Root with the .deb's template: Sluice's own system unit, which has a socket.
        f.privilege = Privilege::Root;
        f.systemd_system = true;
        f.sluiced_template = Some("/lib/systemd/system/sluiced@.service".into());
        let c = choose(&f, &encrypt, "db", None).unwrap();
        assert!(matches!(c.persistence, Persistence::SystemUnit { .. }));
        assert!(c.listen_stream.is_some());
        // Not asked for: no socket.
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap();
        assert_eq!(c.listen_stream, None);
    }

    #[test]
    fn a_far_end_without_the_sluiced_it_needs_gets_a_copy_where_it_runs() {
        let local = LocalSluiced {
            path: "/usr/bin/sluiced".into(),
            version: "sluiced 1.0.0 (spiped 1.6 protocol)".into(),
        };
        let mut f = facts();
        f.privilege = Privilege::PasswordlessSudo;
        f.systemd_system = true;
        f.systemd_user = true;
        // Spiped serves the classic handshake: nothing to copy.
        let c = choose(&f, &plan(KeyAgreement::Classic), "db", Some(&local)).unwrap();
        assert_eq!((c.program, c.install), (Program::Spiped, None));
        // X25519 needs sluiced: a copy in the user's home, run by a --user unit (a system
        // unit's sandbox hides the home).
        let c = choose(&f, &plan(KeyAgreement::X25519), "db", Some(&local));
        if cfg!(target_os = "linux") {
            let c = c.unwrap();
            assert_eq!(c.program, Program::Sluiced);
            assert_eq!(c.install, Some(local.clone()));
            assert_eq!(
                c.program_path,
                "/home/deploy/.config/sluice-far-end/redis.sluiced"
            );
            assert!(matches!(c.persistence, Persistence::UserUnit { .. }));
            assert!(!c.sudo);
            assert!(
                c.why.contains(
                    "the copy of sluiced is in deploy's home, which a system unit's sandbox hides"
                ),
                "{}",
                c.why
            );
            assert!(
                c.why
                    .contains("set-up copies this machine's (sluiced 1.0.0 (spiped 1.6 protocol))"),
                "{}",
                c.why
            );
        }
        // Not to another system or processor: the error says why not.
        f.machine = "riscv64".into();
        let e = choose(&f, &plan(KeyAgreement::X25519), "db", Some(&local)).unwrap_err();
        assert!(matches!(e, FarHostError::NeedsSluiced { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("this machine's sluiced is built for"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("not for the far end's Linux riscv64"),
            "{e}"
        );
    }

    #[test]
    fn missing_programs_say_what_to_install() {
        let mut f = facts();
        let e = choose(&f, &plan(KeyAgreement::X25519), "db", None).unwrap_err();
        assert!(matches!(e, FarHostError::NeedsSluiced { .. }));
        assert!(e.to_string().contains("Sluice .deb"), "{e}");
        f.spiped = None;
        let e = choose(&f, &plan(KeyAgreement::Classic), "db", None).unwrap_err();
        assert!(e.to_string().contains("sudo apt install spiped"), "{e}");
        f.sluiced = sluiced();
        assert!(choose(&f, &plan(KeyAgreement::X25519), "db", None).is_ok());
    }
}
