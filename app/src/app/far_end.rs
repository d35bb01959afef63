//! The far-end tab: where the far end is (ssh destination, far address), and Set up,
//! Check, Repair and Remove over the system's ssh, on a thread of their own (ssh takes
//! seconds per step); each step reports as it goes, and a finished set-up (or repair) is
//! remembered in the config. A key rotation is a repair with a new key (and, for a far
//! end that accepts connections, the old one beside it), then the switch here.

use sluice_engine::{
    FAR_END_CONNECT_TIMEOUT, FarEndAction, FarEndError, FarEndKey, FarEndRecord, FarEndRequest,
    KeyRef, LocalSluiced, Role, SshClient, TunnelSpec,
};

use super::SluiceApp;
use crate::background::{FarEndMessage, Message};
use crate::command::FarEndCommand;
use crate::error::AppError;
use crate::keys::{self, KeyInfo};
use crate::model::{FarEndRun, RotationStep, in_rotation};

/// The keys a far-end run sends: the tunnel's, and during a rotation the key being
/// replaced, for a far end that accepts connections.
struct RunKeys {
    key: KeyRef,
    previous: Option<KeyRef>,
}

impl SluiceApp {
    pub(super) fn far_end_command(&mut self, command: FarEndCommand) {
        match command {
            FarEndCommand::SetFarAddress(name, address) => {
                self.ui.far_addresses.insert(name, address);
            }
            FarEndCommand::SetSshDestination(name, destination) => {
                self.ui.ssh_destinations.insert(name, destination);
            }
            FarEndCommand::SetOnFirstConnection(name, on) => {
                self.ui.on_first_connection.insert(name, on);
            }
            FarEndCommand::Run(name, action) => self.far_end(&name, action),
            FarEndCommand::Rotate(name) => self.rotate(&name),
            FarEndCommand::FinishRotation(name) => self.finish_rotation(&name),
        }
    }

    pub(super) fn far_end_message(&mut self, message: FarEndMessage) {
        match message {
            FarEndMessage::Step { name, report } => {
                if let Some(run) = self.model.mirror.far_end_runs.get_mut(&name) {
                    // A step reports when it starts and again when it ends: keep one line.
                    match run.steps.last_mut() {
                        Some(last) if last.step == report.step => *last = report,
                        _ => run.steps.push(report),
                    }
                }
            }
            FarEndMessage::Done {
                name,
                action,
                record,
                rotation,
                result,
            } => self.far_end_done(&name, action, record, rotation, result),
            FarEndMessage::RotationKey { name, result } => match result {
                Ok(info) => self.rotation_key_ready(&name, info),
                Err(e) => {
                    self.model.mirror.far_end_runs.remove(&name);
                    self.report(AppError::KeyGenerate(e));
                }
            },
            FarEndMessage::SshHosts(hosts) => self.model.environment.ssh_hosts = hosts,
        }
    }

    /// Reads the ssh config's host aliases off the UI thread.
    pub(super) fn read_ssh_hosts(&mut self) {
        let Some(path) = self.services.ssh.config_file.clone() else {
            return;
        };
        self.background.run(move || {
            // No ssh config is the common case, and not worth a notice.
            let text = std::fs::read_to_string(path).unwrap_or_default();
            Message::FarEnd(FarEndMessage::SshHosts(sluice_engine::ssh_host_aliases(
                &text,
            )))
        });
    }

    fn far_end(&mut self, name: &str, action: FarEndAction) {
        let Some(spec) = self.model.tunnel(name).cloned() else {
            return;
        };
        // A repair during a rotation keeps the old key on the far end.
        let keys = RunKeys {
            key: spec.key.clone(),
            previous: spec.far_end.as_ref().and_then(|r| r.previous_key.clone()),
        };
        self.far_end_run(spec, action, keys, None);
    }

    /// Whether a far-end run of tunnel `name` (a rotation's included) is under way.
    fn far_end_busy(&self, name: &str) -> bool {
        let runs = &self.model.mirror.far_end_runs;
        runs.get(name).is_some_and(FarEndRun::running)
    }

    fn far_end_run(
        &mut self,
        spec: TunnelSpec,
        action: FarEndAction,
        keys: RunKeys,
        rotation: Option<RotationStep>,
    ) {
        let name = spec.name.as_str();
        // A rotation's own run follows its key's generation, which showed it as running.
        if self.far_end_busy(name) && rotation.is_none() {
            return;
        }
        let destination = self
            .model
            .ssh_destination(&self.ui, &spec)
            .trim()
            .to_owned();
        let far_address = self.model.far_address(&self.ui, &spec);
        let on_first_connection = self.model.on_first_connection(&self.ui, &spec);
        let record = FarEndRecord {
            ssh: destination.clone(),
            far_address: far_address.clone(),
            on_first_connection,
            previous_key: keys.previous.clone(),
        };
        self.model.mirror.far_end_runs.insert(
            name.to_owned(),
            FarEndRun {
                action,
                rotation: rotation.clone(),
                destination: destination.clone(),
                steps: Vec::new(),
                finished: None,
            },
        );
        let keychain = self.keychain().cloned();
        let ssh_command = self.services.ssh.command.clone();
        let sluiced = self.services.ssh.sluiced.clone();
        let this_host = self.model.environment.host_name.clone();
        let mailbox = self.mailbox();
        let name = name.to_owned();
        self.background.run(move || {
            let prepared = (|| {
                let ssh = match ssh_command {
                    Some(command) => {
                        SshClient::new(command, &destination, FAR_END_CONNECT_TIMEOUT.as_secs())
                    }
                    None => SshClient::from_env(&destination, FAR_END_CONNECT_TIMEOUT.as_secs())?,
                };
                // Taking the far end down needs no key (it may be gone already).
                let load = |key: &KeyRef| FarEndKey::load(key, keychain.as_deref());
                let key = action.needs_key().then(|| load(&keys.key)).transpose()?;
                let previous_key = match &keys.previous {
                    Some(previous) if action.sets_up() => Some(load(previous)?),
                    _ => None,
                };
                Ok(FarEndRequest {
                    action,
                    tunnel: spec,
                    far_address: Some(far_address),
                    this_host,
                    key,
                    previous_key,
                    ssh,
                    on_first_connection,
                    // Only set-up copies sluiced, and only to a far end without one.
                    local_sluiced: action
                        .sets_up()
                        .then(|| match sluiced {
                            Some(path) => LocalSluiced::at(&path).ok(),
                            None => LocalSluiced::beside_this_program(),
                        })
                        .flatten(),
                })
            })();
            let result = prepared.and_then(|request: FarEndRequest| {
                sluice_engine::run_far_end(&request, &mut |report| {
                    mailbox.deliver(Message::FarEnd(FarEndMessage::Step {
                        name: name.clone(),
                        report,
                    }));
                })
            });
            Message::FarEnd(FarEndMessage::Done {
                name,
                action,
                record,
                rotation,
                result,
            })
        });
    }

    /// Remembers where a set-up ran (and forgets it after a remove), in the config; a
    /// rotation's far end done, switches this end to the new key.
    fn far_end_done(
        &mut self,
        name: &str,
        action: FarEndAction,
        record: FarEndRecord,
        rotation: Option<RotationStep>,
        result: Result<(), FarEndError>,
    ) {
        let succeeded = result.is_ok();
        if let Some(run) = self.model.mirror.far_end_runs.get_mut(name) {
            run.finished = Some(result);
        }
        if succeeded && action.sets_up() {
            // The far end may have been down for minutes, its checks backing off: look
            // again now rather than at the next check. (The engine's one way to ask for
            // that re-checks every tunnel, which costs one handshake each.)
            self.engine.network_changed();
        }
        let Some(spec) = self.model.files.tunnels.iter_mut().find(|t| t.name == name) else {
            return;
        };
        if !succeeded {
            return;
        }
        spec.far_end = match action {
            FarEndAction::Setup | FarEndAction::Repair => Some(record),
            FarEndAction::Remove => None,
            FarEndAction::Check => return,
        };
        let rekeyed = match rotation {
            Some(RotationStep::Start { new, old }) => {
                // An accepting end here lets the old key in until the rotation ends; a
                // far end that accepts does so itself (its record names the old key).
                if spec.mode.role() == Role::Server {
                    spec.previous_key = Some(old);
                }
                spec.key = new;
                true
            }
            Some(RotationStep::Finish) | None => false,
        };
        self.ui.ssh_destinations.remove(name);
        self.ui.far_addresses.remove(name);
        self.ui.on_first_connection.remove(name);
        self.save_config();
        if rekeyed {
            self.inform(format!(
                "tunnel \"{name}\" uses its new key; the old one is let in until Finish rotation"
            ));
            self.rekeyed(name);
        }
    }

    /// Starts a rotation of tunnel `name`'s key: a new key in the keychain first.
    fn rotate(&mut self, name: &str) {
        let Some(spec) = self.model.tunnel(name) else {
            return;
        };
        if spec.far_end.is_none() || self.far_end_busy(name) || in_rotation(spec) {
            return;
        }
        let old_name = self
            .model
            .files
            .keys
            .for_ref(&spec.key)
            .map_or_else(|| spec.name.clone(), |k| k.name.clone());
        let new_name = self.unused_key_name(&old_name);
        let destination = self.model.ssh_destination(&self.ui, spec);
        // Shown as busy from now: the key is generated before the far end is touched.
        self.model.mirror.far_end_runs.insert(
            name.to_owned(),
            FarEndRun {
                action: FarEndAction::Repair,
                rotation: Some(RotationStep::Start {
                    new: KeyRef::Keychain(new_name.clone()),
                    old: spec.key.clone(),
                }),
                destination,
                steps: Vec::new(),
                finished: None,
            },
        );
        let keychain = self.keychain().cloned();
        let name = name.to_owned();
        self.background.run(move || {
            let result = keys::generate(&new_name, keychain.as_ref(), None);
            Message::FarEnd(FarEndMessage::RotationKey { name, result })
        });
    }

    /// "NAME YYYY-MM-DD", or with " 2", " 3"… if taken.
    fn unused_key_name(&self, old: &str) -> String {
        let date = crate::format::local_date();
        let base = format!("{old} {date}");
        let keys = &self.model.files.keys;
        std::iter::once(base.clone())
            .chain((2..).map(|n| format!("{base} {n}")))
            .find(|name| keys.get(name).is_none())
            .unwrap_or(base)
    }

    /// The rotation's new key exists: the far end takes it (with the old one beside it if
    /// it accepts connections), then this end switches ([`Self::far_end_done`]).
    fn rotation_key_ready(&mut self, name: &str, info: KeyInfo) {
        let new = info.location.clone();
        self.inform(format!(
            "generated key \"{}\" for the rotation of tunnel \"{name}\", fingerprint {}",
            info.name, info.fingerprint
        ));
        self.model.files.keys.keys.push(info);
        self.save_keys();
        let Some(spec) = self.model.tunnel(name).cloned() else {
            return;
        };
        let old = spec.key.clone();
        let far_accepts = spec.mode.role() == Role::Client;
        let keys = RunKeys {
            key: new.clone(),
            previous: far_accepts.then(|| old.clone()),
        };
        let rotation = RotationStep::Start { new, old };
        self.far_end_run(spec, FarEndAction::Repair, keys, Some(rotation));
    }

    /// Ends a rotation: the far end drops the old key (a repair with the key alone), or
    /// this end does, whichever accepts connections.
    fn finish_rotation(&mut self, name: &str) {
        let Some(spec) = self.model.tunnel(name).cloned() else {
            return;
        };
        if self.far_end_busy(name) {
            return;
        }
        if spec
            .far_end
            .as_ref()
            .is_some_and(|r| r.previous_key.is_some())
        {
            let keys = RunKeys {
                key: spec.key.clone(),
                previous: None,
            };
            self.far_end_run(spec, FarEndAction::Repair, keys, Some(RotationStep::Finish));
        } else if spec.previous_key.is_some() {
            if let Some(slot) = self.model.files.tunnels.iter_mut().find(|t| t.name == name) {
                slot.previous_key = None;
            }
            self.save_config();
            self.inform(format!(
                "tunnel \"{name}\": the rotation is finished, the old key no longer gets in"
            ));
            self.rekeyed(name);
        }
    }
}
