//! `SIGHUP` with `--config`: what a reread config changes. Tunnels are matched by name:
//! new names start, missing ones stop after their connections drain, changed ones take
//! their new settings (a new listen address rebinds; open connections carry on), and
//! unchanged ones are not touched at all.

use sluice_engine::{Engine, TunnelId, TunnelSettings};

/// The tunnels `sluiced` runs, by id, and the next id to give.
pub struct RunningSet {
    tunnels: Vec<(TunnelId, TunnelSettings)>,
    next_id: u64,
}

/// What one reload does, and the counts it logs.
pub struct ReloadPlan {
    start: Vec<(TunnelId, TunnelSettings)>,
    change: Vec<(TunnelId, TunnelSettings)>,
    retire: Vec<(TunnelId, String)>,
    pub unchanged: usize,
}

impl RunningSet {
    /// Ids 0, 1, … in the order given, as at start-up.
    pub fn new(tunnels: Vec<TunnelSettings>) -> RunningSet {
        let tunnels: Vec<_> = tunnels
            .into_iter()
            .enumerate()
            .map(|(i, settings)| (TunnelId(i as u64), settings))
            .collect();
        RunningSet {
            next_id: tunnels.len() as u64,
            tunnels,
        }
    }

    pub fn tunnels(&self) -> &[(TunnelId, TunnelSettings)] {
        &self.tunnels
    }

    pub fn len(&self) -> usize {
        self.tunnels.len()
    }

    /// Compares with a newly read config's tunnels (already checked and with keys).
    pub fn plan(&mut self, wanted: Vec<TunnelSettings>) -> ReloadPlan {
        let mut plan = ReloadPlan {
            start: Vec::new(),
            change: Vec::new(),
            retire: Vec::new(),
            unchanged: 0,
        };
        for (id, settings) in &self.tunnels {
            let name = &settings.definition.name;
            if !wanted.iter().any(|w| &w.definition.name == name) {
                plan.retire.push((*id, name.clone()));
            }
        }
        for settings in wanted {
            let name = &settings.definition.name;
            match self
                .tunnels
                .iter()
                .find(|(_, s)| &s.definition.name == name)
            {
                Some((_, current)) if same_settings(current, &settings) => plan.unchanged += 1,
                Some((id, _)) => plan.change.push((*id, settings)),
                None => {
                    let id = TunnelId(self.next_id);
                    self.next_id += 1;
                    plan.start.push((id, settings));
                }
            }
        }
        plan
    }

    /// Applies a plan to the engine and records the new set.
    pub fn apply(&mut self, plan: ReloadPlan, engine: &Engine) {
        for (id, _) in &plan.retire {
            engine.retire_tunnel(*id);
        }
        self.tunnels
            .retain(|(id, _)| !plan.retire.iter().any(|(gone, _)| gone == id));
        for (id, settings) in plan.change {
            engine.update_tunnel(id, settings.clone());
            if let Some(slot) = self.tunnels.iter_mut().find(|(i, _)| *i == id) {
                slot.1 = settings;
            }
        }
        for (id, settings) in plan.start {
            engine.start_tunnel(id, settings.clone());
            self.tunnels.push((id, settings));
        }
    }
}

impl ReloadPlan {
    pub fn started(&self) -> impl Iterator<Item = &str> {
        self.start.iter().map(|(_, s)| s.definition.name.as_str())
    }

    pub fn changed(&self) -> impl Iterator<Item = &str> {
        self.change.iter().map(|(_, s)| s.definition.name.as_str())
    }

    pub fn retired(&self) -> impl Iterator<Item = &str> {
        self.retire.iter().map(|(_, name)| name.as_str())
    }
}

/// Settings and key alike (keys compared by fingerprint, which is a hash of the key).
fn same_settings(a: &TunnelSettings, b: &TunnelSettings) -> bool {
    a.definition == b.definition && a.key.fingerprint() == b.key.fingerprint()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::{Mode, PresharedKey, TunnelDefinition};

    fn tunnel(name: &str, listen_port: u16, key: &[u8]) -> TunnelSettings {
        let definition = TunnelDefinition::new(
            name,
            Mode::Decrypt,
            format!("[127.0.0.1]:{listen_port}").parse().unwrap(),
            "[127.0.0.1]:9".parse().unwrap(),
        );
        TunnelSettings::new(definition, PresharedKey::from_keyfile_bytes(key))
    }

    fn names<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        it.collect()
    }

    #[test]
    fn a_reload_starts_new_names_retires_missing_ones_and_leaves_the_same_alone() {
        let mut set = RunningSet::new(vec![
            tunnel("keep", 1001, b"k"),
            tunnel("move", 1002, b"k"),
            tunnel("rekey", 1003, b"k"),
            tunnel("gone", 1004, b"k"),
        ]);
        let plan = set.plan(vec![
            tunnel("new", 1005, b"k"),
            tunnel("keep", 1001, b"k"),
            tunnel("move", 1012, b"k"),
            tunnel("rekey", 1003, b"other key"),
        ]);
        assert_eq!(names(plan.started()), ["new"]);
        assert_eq!(names(plan.changed()), ["move", "rekey"]);
        assert_eq!(names(plan.retired()), ["gone"]);
        assert_eq!(plan.unchanged, 1);
        // A new tunnel never reuses a running (or draining) tunnel's id.
        assert_eq!(plan.start[0].0, TunnelId(4));
        let again = set.plan(vec![tunnel("another", 1006, b"k")]);
        assert_eq!(again.start[0].0, TunnelId(5));
    }
}
