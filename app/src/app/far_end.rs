//! The far-end tab: where the far end is (ssh destination, far address), and Set up,
//! Check, Repair and Remove over the system's ssh, on a thread of their own (ssh takes
//! seconds per step); each step reports as it goes, and a finished set-up (or repair) is
//! remembered in the config.

use sluice_engine::{
    FAR_END_CONNECT_TIMEOUT, FarEndAction, FarEndError, FarEndKey, FarEndRecord, FarEndRequest,
    LocalSluiced, SshClient,
};

use super::SluiceApp;
use crate::background::{FarEndMessage, Message};
use crate::command::FarEndCommand;
use crate::model::FarEndRun;

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
                result,
            } => self.far_end_done(&name, action, record, result),
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
        let runs = &mut self.model.mirror.far_end_runs;
        if runs.get(name).is_some_and(FarEndRun::running) {
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
        };
        self.model.mirror.far_end_runs.insert(
            name.to_owned(),
            FarEndRun {
                action,
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
                let key = if action.needs_key() {
                    Some(FarEndKey::load(&spec.key, keychain.as_deref())?)
                } else {
                    None
                };
                Ok(FarEndRequest {
                    action,
                    tunnel: spec,
                    far_address: Some(far_address),
                    this_host,
                    key,
                    ssh,
                    on_first_connection,
                    // Only set-up copies sluiced, and only to a far end without one.
                    local_sluiced: matches!(action, FarEndAction::Setup | FarEndAction::Repair)
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
                result,
            })
        });
    }

    /// Remembers where a set-up ran (and forgets it after a remove), in the config.
    fn far_end_done(
        &mut self,
        name: &str,
        action: FarEndAction,
        record: FarEndRecord,
        result: Result<(), FarEndError>,
    ) {
        let succeeded = result.is_ok();
        if let Some(run) = self.model.mirror.far_end_runs.get_mut(name) {
            run.finished = Some(result);
        }
        if succeeded && matches!(action, FarEndAction::Setup | FarEndAction::Repair) {
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
        self.ui.ssh_destinations.remove(name);
        self.ui.far_addresses.remove(name);
        self.ui.on_first_connection.remove(name);
        self.save_config();
    }
}
