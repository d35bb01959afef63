//! "Connect to a peer": one form that makes the two tunnels a peer-to-peer system (Akka
//! Artery, Apache Pekko) needs with a reachable remote host, and each actor system's
//! settings, its canonical address the same string from both sides (docs/REVERSE.md).

// This machine (A) is behind NAT, so it can only dial: the forward tunnel (A to B) is an
// Encrypt tunnel here, and the way back (B to A) a reverse tunnel whose dialing end,
// Reverse out, runs here, its Reverse in end on the remote host.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sluice_engine::{
    Address, Config, ConfigError, FarEndRecord, Field, KeyRef, Mode, TunnelSpec, far_end_commands,
};

/// What a pair's two tunnel names end with: the shared prefix is the pair's name.
const FORWARD_SUFFIX: &str = " ➡ peer";
const REVERSE_SUFFIX: &str = " ⬅ peer";

/// The four local ports the pair uses from the first port on: A's actor system binds the
/// first, B's the second (on its host), A reaches B at the third, B reaches A at the
/// fourth. Four different ports, so nothing collides even with both systems on one machine.
const PORTS_USED: u16 = 4;

/// The name of the pair's forward (A ➡ B, Encrypt) tunnel.
pub fn forward_name(prefix: &str) -> String {
    format!("{prefix}{FORWARD_SUFFIX}")
}

/// The name of the pair's way back (B ➡ A, Reverse out) tunnel.
pub fn reverse_name(prefix: &str) -> String {
    format!("{prefix}{REVERSE_SUFFIX}")
}

/// What the tray calls the pair whose forward tunnel is `forward`: "NAME ⇄ peer".
pub fn pair_label(forward: &str) -> String {
    let prefix = forward.strip_suffix(FORWARD_SUFFIX).unwrap_or(forward);
    format!("{prefix} ⇄ peer")
}

/// The other tunnel of the pair `name` belongs to, if the list holds both with the modes
/// a pair has; `None` for a tunnel that is not half of a pair.
pub fn partner<'a>(name: &str, tunnels: &'a [TunnelSpec]) -> Option<&'a TunnelSpec> {
    let find = |name: &str, mode: Mode| tunnels.iter().find(|t| t.name == name && t.mode == mode);
    if let Some(prefix) = name.strip_suffix(FORWARD_SUFFIX) {
        find(name, Mode::Encrypt)?;
        find(&reverse_name(prefix), Mode::ReverseOut)
    } else if let Some(prefix) = name.strip_suffix(REVERSE_SUFFIX) {
        find(name, Mode::ReverseOut)?;
        find(&forward_name(prefix), Mode::Encrypt)
    } else {
        None
    }
}

/// A part of the form a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerField {
    Name,
    Host,
    Ssh,
    Key,
    Ports,
}

/// The "Connect to a peer" form.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerForm {
    /// The pair's name: both tunnels' names start with it.
    pub name: String,
    /// The remote host as this machine reaches it (a name or an address, no port).
    pub host: String,
    /// How ssh reaches it, for the far ends' set-up (empty: the host).
    pub ssh: String,
    /// The key both tunnels use, by its name in the key list.
    pub key: String,
    /// The first of the four local ports (see [`PORTS_USED`]).
    pub first_port: u16,
    /// The remote host's port for the forward tunnel; the reverse tunnel's is the next.
    pub remote_port: u16,
    /// Set once the pair was added: the form then only shows the settings.
    pub created: bool,
}

impl PeerForm {
    pub fn new(default_key: Option<&str>) -> PeerForm {
        PeerForm {
            name: String::new(),
            host: String::new(),
            ssh: String::new(),
            key: default_key.unwrap_or_default().to_owned(),
            first_port: 25520,
            remote_port: 8025,
            created: false,
        }
    }

    /// The form (already created) of the pair `name` belongs to, so its settings can be
    /// shown again; `None` when it is not half of a pair, or when its tunnels were edited
    /// away from what the form would make (the settings would then be wrong).
    pub fn of_pair(name: &str, tunnels: &[TunnelSpec], key_name: Option<&str>) -> Option<PeerForm> {
        let spec = tunnels.iter().find(|t| t.name == name)?;
        let other = partner(name, tunnels)?;
        let (forward, reverse) = match spec.mode {
            Mode::Encrypt => (spec, other),
            _ => (other, spec),
        };
        let (host, remote_port) = match forward.target.parse::<Address>().ok()? {
            Address::Host { name, port } => (name, port),
            Address::Ip(addr) => (addr.ip().to_string(), addr.port()),
            _ => return None,
        };
        let ssh = forward
            .far_end
            .as_ref()
            .map(|r| r.ssh.clone())
            .filter(|ssh| *ssh != host)
            .unwrap_or_default();
        let form = PeerForm {
            name: forward.name.strip_suffix(FORWARD_SUFFIX)?.to_owned(),
            host,
            ssh,
            key: key_name.map_or_else(String::new, str::to_owned),
            first_port: reverse.target.parse::<Address>().ok()?.port()?,
            remote_port,
            created: true,
        };
        let made = form.plan(|_| Some(forward.key.clone())).tunnels();
        let same = |made: &TunnelSpec, is: &TunnelSpec| {
            (
                &made.name,
                made.mode,
                &made.listen,
                &made.target,
                &made.key,
                &made.far_end,
            ) == (
                &is.name,
                is.mode,
                &is.listen,
                &is.target,
                &is.key,
                &is.far_end,
            )
        };
        (same(&made[0], forward) && same(&made[1], reverse)).then_some(form)
    }

    /// The ssh destination: as typed, else the host.
    fn ssh_destination(&self) -> &str {
        match self.ssh.trim() {
            "" => self.host.trim(),
            ssh => ssh,
        }
    }

    /// The plan this form describes; `key_ref` resolves the key's name to its location.
    pub fn plan(&self, key_ref: impl Fn(&str) -> Option<KeyRef>) -> PeerPlan {
        let key = self.key.trim();
        PeerPlan {
            prefix: self.name.trim().to_owned(),
            host: self.host.trim().to_owned(),
            ssh: self.ssh_destination().to_owned(),
            key: key_ref(key).unwrap_or_else(|| KeyRef::Keychain(key.to_owned())),
            first_port: self.first_port,
            remote_port: self.remote_port,
        }
    }

    /// Every problem with the form, by field: the tunnels' own rules (as the config file
    /// checks them), and the pair's place among `others`, the tunnels there are.
    pub fn problems(
        &self,
        plan: &PeerPlan,
        others: &[TunnelSpec],
        known_key: bool,
    ) -> BTreeMap<PeerField, String> {
        let mut problems = BTreeMap::new();
        if plan.prefix.is_empty() {
            problems.insert(
                PeerField::Name,
                "the pair has no name: give it one, e.g. the remote host's".to_owned(),
            );
        }
        if plan.host.is_empty() {
            problems.insert(
                PeerField::Host,
                "give the remote host's name or address, as this machine reaches it".to_owned(),
            );
        } else if plan.host.contains([':', '[', ']', '/', ' '])
            && plan.host.parse::<IpAddr>().is_err()
        {
            problems.insert(
                PeerField::Host,
                format!(
                    "{:?} is not a host name or address: write it without a port, e.g. server.example",
                    plan.host
                ),
            );
        }
        if !known_key {
            problems.insert(
                PeerField::Key,
                "choose a key from the key list (generate one under Keys first)".to_owned(),
            );
        }
        if plan.first_port == 0 || plan.first_port > u16::MAX - (PORTS_USED - 1) {
            problems.insert(
                PeerField::Ports,
                format!(
                    "the first local port must be from 1 to {}: the pair uses it and the next three",
                    u16::MAX - (PORTS_USED - 1)
                ),
            );
        }
        if plan.remote_port == 0 || plan.remote_port == u16::MAX {
            problems.insert(
                PeerField::Ports,
                "the remote port must be from 1 to 65534: the pair uses it and the next".to_owned(),
            );
        }
        if !problems.is_empty() {
            // The tunnels' own checks would only say the same again, less clearly.
            return problems;
        }
        let tunnels = plan.tunnels();
        for spec in &tunnels {
            if let Err(errors) = spec.validate() {
                for error in errors {
                    if let ConfigError::Invalid { field, message, .. } = error {
                        let at = match field {
                            Field::Name => PeerField::Name,
                            Field::FarEnd => PeerField::Ssh,
                            Field::Key => PeerField::Key,
                            _ => PeerField::Host,
                        };
                        problems.entry(at).or_insert(message);
                    }
                }
            }
        }
        let config = Config {
            tunnels: others.iter().cloned().chain(tunnels).collect(),
            ..Config::default()
        };
        if let Err(errors) = config.validate() {
            for error in errors {
                match error {
                    ConfigError::DuplicateName(name) => {
                        problems.entry(PeerField::Name).or_insert_with(|| {
                            format!("a tunnel is already called \"{name}\": choose another name")
                        });
                    }
                    ConfigError::DuplicateListen { first, .. } => {
                        problems.entry(PeerField::Ports).or_insert_with(|| {
                            format!(
                                "tunnel \"{first}\" already listens on one of these ports: choose another first port"
                            )
                        });
                    }
                    _ => {}
                }
            }
        }
        problems
    }
}

/// The pair as decided: everything the tunnels and the settings are derived from.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerPlan {
    pub prefix: String,
    pub host: String,
    pub ssh: String,
    pub key: KeyRef,
    pub first_port: u16,
    pub remote_port: u16,
}

impl PeerPlan {
    /// Where A's actor system binds, here; the reverse tunnel brings B's connections to it.
    pub fn a_bind(&self) -> u16 {
        self.first_port
    }

    /// Where B's actor system binds, on its host; the forward tunnel's far end goes there.
    pub fn b_bind(&self) -> u16 {
        self.first_port.saturating_add(1)
    }

    /// B's canonical port: the forward tunnel listens here on it, so A reaches B at
    /// 127.0.0.1 on this port, and B calls itself that.
    pub fn b_canonical(&self) -> u16 {
        self.first_port.saturating_add(2)
    }

    /// A's canonical port: the reverse-in end listens on B's host on it, so B reaches A at
    /// 127.0.0.1 on this port, and A calls itself that.
    pub fn a_canonical(&self) -> u16 {
        self.first_port.saturating_add(3)
    }

    /// The remote host and a port, in spiped's address syntax.
    fn remote(&self, port: u16) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => format!("[{ip}]:{port}"),
            Err(_) => format!("{}:{port}", self.host),
        }
    }

    /// The two tunnels: A ➡ B (Encrypt, listening where B's canonical address is) and
    /// B ➡ A (Reverse out, dialing the remote host and carrying B's connections to A).
    /// Each records where its far end goes, so its Far end tab can set it up over ssh.
    pub fn tunnels(&self) -> [TunnelSpec; 2] {
        let mut forward = TunnelSpec::new(
            forward_name(&self.prefix),
            Mode::Encrypt,
            format!("[127.0.0.1]:{}", self.b_canonical()),
            self.remote(self.remote_port),
            self.key.clone(),
        );
        forward.far_end = Some(FarEndRecord {
            ssh: self.ssh.clone(),
            far_address: format!("[127.0.0.1]:{}", self.b_bind()),
            on_first_connection: false,
            previous_key: None,
        });
        let mut reverse = TunnelSpec::new(
            reverse_name(&self.prefix),
            Mode::ReverseOut,
            self.remote(self.remote_port.saturating_add(1)),
            format!("[127.0.0.1]:{}", self.a_bind()),
            self.key.clone(),
        );
        reverse.far_end = Some(FarEndRecord {
            ssh: self.ssh.clone(),
            far_address: format!("[127.0.0.1]:{}", self.a_canonical()),
            on_first_connection: false,
            previous_key: None,
        });
        [forward, reverse]
    }

    /// What to paste into each side's configuration: Akka (Artery) and Apache Pekko, in
    /// HOCON, then the same in plain words, then the far ends' commands. `this_host` is
    /// this machine's name, for the far-end commands' comments.
    pub fn settings_text(&self, this_host: &str) -> String {
        let host = &self.host;
        let (a_canonical, a_bind) = (self.a_canonical(), self.a_bind());
        let (b_canonical, b_bind) = (self.b_canonical(), self.b_bind());
        let artery = |root: &str, canonical: u16, bind: u16| {
            format!(
                "{root}.remote.artery {{\n  transport = tcp\n  canonical.hostname = \"127.0.0.1\"\n  canonical.port = {canonical}\n  bind.hostname = \"127.0.0.1\"\n  bind.port = {bind}\n}}\n"
            )
        };
        let mut text = String::new();
        for (product, root) in [("Akka (Artery)", "akka"), ("Apache Pekko", "pekko")] {
            text.push_str(&format!("# {product}, on this machine (A)\n"));
            text.push_str(&artery(root, a_canonical, a_bind));
            text.push_str(&format!("# {product}, on {host} (B)\n"));
            text.push_str(&artery(root, b_canonical, b_bind));
            text.push('\n');
        }
        text.push_str(&format!(
            "# Anything else\n\
             # A (this machine) listens on 127.0.0.1:{a_bind} and reaches B at 127.0.0.1:{b_canonical}.\n\
             # B ({host}) listens on 127.0.0.1:{b_bind} and reaches A at 127.0.0.1:{a_canonical}.\n\n"
        ));
        text.push_str(&format!(
            "# The far ends, on {host} (or Set up in each tunnel's Far end tab):\n"
        ));
        let [forward, reverse] = self.tunnels();
        for spec in [&forward, &reverse] {
            if let Some(record) = &spec.far_end {
                let commands = far_end_commands(spec, &record.far_address, this_host);
                text.push_str(&commands.sluiced);
                text.push('\n');
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PeerPlan {
        PeerForm {
            name: "lab".into(),
            host: "server.example".into(),
            ..PeerForm::new(Some("pair"))
        }
        .plan(|_| None)
    }

    #[test]
    fn the_pair_is_a_forward_tunnel_and_a_dialing_reverse_end_with_one_key() {
        let [forward, reverse] = plan().tunnels();
        assert_eq!(forward.name, "lab ➡ peer");
        assert_eq!(forward.mode, Mode::Encrypt);
        assert_eq!(forward.listen, "[127.0.0.1]:25522");
        assert_eq!(forward.target, "server.example:8025");
        assert_eq!(reverse.name, "lab ⬅ peer");
        assert_eq!(reverse.mode, Mode::ReverseOut);
        assert_eq!(
            reverse.listen, "server.example:8026",
            "dials the reverse-in end"
        );
        assert_eq!(reverse.target, "[127.0.0.1]:25520", "A's actor system");
        assert_eq!(forward.key, reverse.key);
        assert!(forward.validate().is_ok() && reverse.validate().is_ok());
        let tunnels = [forward.clone(), reverse.clone()];
        assert_eq!(partner(&forward.name, &tunnels), Some(&reverse));
        assert_eq!(partner(&reverse.name, &tunnels), Some(&forward));
        assert_eq!(partner(&forward.name, &tunnels[..1]), None);
    }

    #[test]
    fn canonical_addresses_are_where_the_other_side_reaches_each_system() {
        let plan = plan();
        let text = plan.settings_text("laptop");
        let [forward, _] = plan.tunnels();
        // A reaches B through the forward tunnel's listen address: B's canonical port.
        assert!(
            forward
                .listen
                .ends_with(&format!(":{}", plan.b_canonical()))
        );
        for root in ["akka", "pekko"] {
            assert_eq!(
                text.matches(&format!("{root}.remote.artery {{")).count(),
                2,
                "{text}"
            );
        }
        assert!(text.contains(
            "canonical.port = 25523\n  bind.hostname = \"127.0.0.1\"\n  bind.port = 25520"
        ));
        assert!(text.contains(
            "canonical.port = 25522\n  bind.hostname = \"127.0.0.1\"\n  bind.port = 25521"
        ));
        assert!(text.contains("--reverse-in"), "{text}");
        assert!(text.contains("-l '[127.0.0.1]:25523'"), "{text}");
    }

    #[test]
    fn a_pair_gives_back_its_form_unless_it_was_edited() {
        let form = PeerForm {
            name: "lab".into(),
            host: "server.example".into(),
            ssh: "me@server.example".into(),
            ..PeerForm::new(Some("pair"))
        };
        let mut tunnels = form.plan(|_| None).tunnels().to_vec();
        let again = PeerForm::of_pair("lab ⬅ peer", &tunnels, Some("pair"));
        assert_eq!(
            again,
            Some(PeerForm {
                created: true,
                ..form
            })
        );
        tunnels[0].listen = "[127.0.0.1]:9999".into();
        assert_eq!(
            PeerForm::of_pair("lab ➡ peer", &tunnels, Some("pair")),
            None
        );
    }

    #[test]
    fn problems_name_their_part_of_the_form() {
        let mut form = PeerForm::new(None);
        form.host = "server.example:22".into();
        form.first_port = 65535;
        let plan = form.plan(|_| None);
        let problems = form.problems(&plan, &[], false);
        for field in [
            PeerField::Name,
            PeerField::Host,
            PeerField::Key,
            PeerField::Ports,
        ] {
            assert!(problems.contains_key(&field), "{field:?}: {problems:?}");
        }

        let form = PeerForm {
            name: "lab".into(),
            host: "server.example".into(),
            ..PeerForm::new(Some("pair"))
        };
        let plan = form.plan(|_| None);
        assert!(form.problems(&plan, &[], true).is_empty());
        let taken = plan.tunnels()[0].clone();
        let problems = form.problems(&plan, &[taken], true);
        assert!(
            problems[&PeerField::Name].contains("already called"),
            "{problems:?}"
        );
    }
}
