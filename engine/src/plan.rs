//! What applying a declared set of tunnels changes, computed without touching anything:
//! which tunnels start, take new settings, stop or go, and which stay as they are.
//! Tunnels are matched by name. Start-up is a plan from nothing; a reload of `sluiced`
//! and every Start, Stop, Save and Reload in the app are plans from what runs.

use std::time::Duration;

use crate::definition::TunnelSettings;

/// One tunnel the caller wants the engine to know.
#[derive(Clone, Debug)]
pub struct DesiredTunnel {
    /// Its definition (whose name identifies it) and its key.
    pub settings: TunnelSettings,
    /// Whether it should run now; a tunnel that should not is kept, stopped, with its
    /// counters.
    pub run: bool,
    /// What to do when it cannot start.
    pub restart: Restart,
}

/// What a tunnel that cannot start (its address does not resolve, its port is taken)
/// does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// It stays failed until it is started again or given new settings.
    Never,
    /// It tries again after this long, for as long as it fails (spiped's `-D`: 1 s).
    Every(Duration),
}

/// What becomes of the open connections of a tunnel that stops or goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// They finish on their own (a reload: nobody's session is cut).
    Drain,
    /// They are closed now (the user pressed Stop).
    Close,
}

/// Every tunnel the caller wants, and what happens to the connections of those that stop
/// or go.
#[derive(Clone, Debug)]
pub struct Desired {
    pub tunnels: Vec<DesiredTunnel>,
    pub ending: Ending,
}

/// Why a declared set cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("two tunnels are named {0:?}: names identify tunnels, so each must be unique")]
    DuplicateName(String),
}

/// What one tunnel of the declared set gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start it (it is new, stopped, or failed and not retrying).
    Start,
    /// It runs: give it the new settings (open connections keep the old ones).
    Update,
    /// It runs and should not: stop it.
    Stop,
    /// Nothing to do: it runs as wanted, or is stopped as wanted.
    Keep,
}

/// What applying a declared set does, by tunnel name (for logs and messages), and each
/// declared tunnel's action in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub started: Vec<String>,
    pub updated: Vec<String>,
    pub stopped: Vec<String>,
    /// Tunnels the engine knew that the set no longer has: they stop and are forgotten.
    pub retired: Vec<String>,
    /// Tunnels left as they are (running or not).
    pub unchanged: Vec<String>,
    pub(crate) actions: Vec<Action>,
}

/// A tunnel the engine knows, as the plan sees it.
pub(crate) struct Known<'a> {
    pub name: &'a str,
    pub settings: &'a TunnelSettings,
    pub restart: Restart,
    /// Running, or failed and trying again; not stopped, draining or failed for good.
    pub active: bool,
}

/// The plan that takes the engine from `known` to `desired`.
pub(crate) fn plan(known: &[Known<'_>], desired: &[DesiredTunnel]) -> Result<Plan, ApplyError> {
    let mut plan = Plan::default();
    for (i, tunnel) in desired.iter().enumerate() {
        let name = &tunnel.settings.definition.name;
        if desired[..i]
            .iter()
            .any(|earlier| earlier.settings.definition.name == *name)
        {
            return Err(ApplyError::DuplicateName(name.clone()));
        }
        let current = known.iter().find(|k| k.name == name);
        let action = match current {
            None if tunnel.run => Action::Start,
            None => Action::Keep,
            Some(k) => match (tunnel.run, k.active) {
                (true, true)
                    if k.settings.same_as(&tunnel.settings) && k.restart == tunnel.restart =>
                {
                    Action::Keep
                }
                (true, true) => Action::Update,
                (true, false) => Action::Start,
                (false, true) => Action::Stop,
                (false, false) => Action::Keep,
            },
        };
        let list = match action {
            Action::Start => &mut plan.started,
            Action::Update => &mut plan.updated,
            Action::Stop => &mut plan.stopped,
            Action::Keep => &mut plan.unchanged,
        };
        list.push(name.clone());
        plan.actions.push(action);
    }
    plan.retired = known
        .iter()
        .filter(|k| !desired.iter().any(|d| d.settings.definition.name == k.name))
        .map(|k| k.name.to_owned())
        .collect();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{Mode, TunnelDefinition};
    use crate::protocol::key::PresharedKey;

    fn settings(name: &str, listen_port: u16, key: &[u8]) -> TunnelSettings {
        let definition = TunnelDefinition::new(
            name,
            Mode::Decrypt,
            format!("[127.0.0.1]:{listen_port}").parse().unwrap(),
            "[127.0.0.1]:9".parse().unwrap(),
        );
        TunnelSettings::new(definition, PresharedKey::from_keyfile_bytes(key))
    }

    fn wanted(settings: TunnelSettings, run: bool) -> DesiredTunnel {
        DesiredTunnel {
            settings,
            run,
            restart: Restart::Never,
        }
    }

    fn known<'a>(name: &'a str, settings: &'a TunnelSettings, active: bool) -> Known<'a> {
        Known {
            name,
            settings,
            restart: Restart::Never,
            active,
        }
    }

    #[test]
    fn start_up_is_a_plan_from_nothing() {
        let plan = plan(
            &[],
            &[
                wanted(settings("a", 1001, b"k"), true),
                wanted(settings("b", 1002, b"k"), false),
            ],
        )
        .unwrap();
        assert_eq!(plan.started, ["a"]);
        assert_eq!(plan.unchanged, ["b"], "known, not running");
        assert_eq!(plan.actions, [Action::Start, Action::Keep]);
        assert!(plan.retired.is_empty());
    }

    #[test]
    fn a_reload_starts_new_names_updates_changed_ones_retires_missing_ones() {
        let keep = settings("keep", 1001, b"k");
        let moved = settings("move", 1002, b"k");
        let rekey = settings("rekey", 1003, b"k");
        let gone = settings("gone", 1004, b"k");
        let current = [
            known("keep", &keep, true),
            known("move", &moved, true),
            known("rekey", &rekey, true),
            known("gone", &gone, true),
        ];
        let plan = plan(
            &current,
            &[
                wanted(settings("new", 1005, b"k"), true),
                wanted(settings("keep", 1001, b"k"), true),
                wanted(settings("move", 1012, b"k"), true),
                wanted(settings("rekey", 1003, b"other key"), true),
            ],
        )
        .unwrap();
        assert_eq!(plan.started, ["new"]);
        assert_eq!(plan.updated, ["move", "rekey"]);
        assert_eq!(plan.retired, ["gone"]);
        assert_eq!(plan.unchanged, ["keep"]);
    }

    #[test]
    fn run_flags_start_and_stop_and_a_failed_tunnel_starts_again() {
        let a = settings("a", 1001, b"k");
        let b = settings("b", 1002, b"k");
        let c = settings("c", 1003, b"k");
        let current = [
            known("a", &a, true),
            known("b", &b, false),
            known("c", &c, false),
        ];
        let plan = plan(
            &current,
            &[
                wanted(a.clone(), false),
                // Stopped, or failed for good: wanted running, it starts.
                wanted(b.clone(), true),
                wanted(c.clone(), false),
            ],
        )
        .unwrap();
        assert_eq!(plan.stopped, ["a"]);
        assert_eq!(plan.started, ["b"]);
        assert_eq!(plan.unchanged, ["c"]);
    }

    #[test]
    fn a_new_restart_policy_is_an_update() {
        let a = settings("a", 1001, b"k");
        let current = [known("a", &a, true)];
        let mut again = wanted(a.clone(), true);
        again.restart = Restart::Every(Duration::from_secs(1));
        assert_eq!(plan(&current, &[again]).unwrap().updated, ["a"]);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let err = plan(
            &[],
            &[
                wanted(settings("a", 1001, b"k"), true),
                wanted(settings("a", 1002, b"k"), true),
            ],
        )
        .unwrap_err();
        assert_eq!(err, ApplyError::DuplicateName("a".into()));
    }
}
