//! The tunnels: what the user wants running becomes the engine's declared set
//! ([`sluice_engine::Engine::apply`]) every time it changes (Start, Stop, Save, Delete,
//! Reload), with keys loaded off the UI thread first. Also the editor, test connections,
//! the config file, and export and import of tunnels.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_engine::{
    Config, Desired, DesiredTunnel, Ending, KeyRef, KeyStore, KeyfileWarning, Mode, ProbeRequest,
    Restart, TunnelDefinition, TunnelSettings, TunnelSpec,
};

use super::SluiceApp;
use crate::background::{Message, SaveTarget, TunnelDialog, TunnelMessage};
use crate::bounded_read::{self, MAX_TUNNEL_FILE_LEN};
use crate::command::TunnelCommand;
use crate::connections;
use crate::error::{
    AppError, BoundedReadError, ProbeNotTried, SaveFailure, StartError, TunnelImportError,
};
use crate::file_dialogs::{DialogAnswer, DialogKind};
use crate::keys;
use crate::model::{ConfigStatus, Confirm, ProbeKey, ProbeVerdict};
use crate::peer::{self, PeerForm};
use crate::tunnel_file;
use crate::tunnel_form::{self, EditorState, KeyChoice};

/// What the tunnels feature keeps beside the model: the settings (key loaded) of each
/// tunnel the engine has been given, and the key loads under way, by name (only the
/// newest load of a tunnel counts).
#[derive(Default)]
pub(super) struct TunnelsState {
    settings: HashMap<String, TunnelSettings>,
    loads: HashMap<String, u64>,
    next_load: u64,
}

impl SluiceApp {
    pub(super) fn tunnel_command(&mut self, command: TunnelCommand) {
        match command {
            // A pair (Connect to a peer) is one item: both directions start and stop
            // together, from the list, the detail panel and the tray alike.
            TunnelCommand::Start(name) => {
                for name in self.with_partner(&name) {
                    self.start(&name);
                }
            }
            TunnelCommand::Stop(name) => {
                for name in self.with_partner(&name) {
                    self.stop(&name);
                }
            }
            TunnelCommand::StartAll => {
                let stopped: Vec<String> = self
                    .model
                    .files
                    .tunnels
                    .iter()
                    .filter(|t| !self.model.is_running(&t.name))
                    .map(|t| t.name.clone())
                    .collect();
                for name in stopped {
                    self.start(&name);
                }
            }
            TunnelCommand::StopAll => self.stop_all(),
            TunnelCommand::New => {
                let default_key = self.model.files.keys.keys.first().map(|k| k.name.clone());
                self.view.editor = Some(EditorState::new_tunnel(default_key.as_deref()));
                self.model.mirror.probes.remove(&ProbeKey::Editor);
            }
            TunnelCommand::Edit(name) => {
                if let Some(spec) = self.model.tunnel(&name) {
                    let editor = EditorState::from_spec(Some(name), spec, &self.model.key_names());
                    self.view.editor = Some(editor);
                    self.model.mirror.probes.remove(&ProbeKey::Editor);
                }
            }
            TunnelCommand::Duplicate(name) => self.duplicate(&name),
            TunnelCommand::AskDelete(name) => self.view.confirm = Some(Confirm::DeleteTunnel(name)),
            TunnelCommand::ConfirmDelete(name) => {
                self.view.confirm = None;
                self.delete_tunnel(&name);
            }
            TunnelCommand::EditorChanged => {}
            TunnelCommand::SaveEditor => self.save_editor(),
            TunnelCommand::CancelEditor => self.view.editor = None,
            TunnelCommand::TestFromEditor => {
                if let Some(editor) = &self.view.editor {
                    let spec = editor.to_spec(|name| self.model.key_location(name));
                    self.test_connection(ProbeKey::Editor, spec);
                }
            }
            TunnelCommand::Test(name) => {
                if let Some(spec) = self.model.tunnel(&name).cloned() {
                    self.test_connection(ProbeKey::Tunnel(name), spec);
                }
            }
            TunnelCommand::PickKeyFile => {
                self.ask_file(DialogKind::OpenKeyFile, |answer| {
                    tunnel_dialog(TunnelDialog::EditorKeyFile, answer)
                });
            }
            TunnelCommand::ReloadConfig => self.reload_config(),
            TunnelCommand::AskExport => self.ask_file(
                DialogKind::SaveTunnelFile {
                    suggested_name: "sluice-tunnels.ron".into(),
                },
                |answer| tunnel_dialog(TunnelDialog::Export, answer),
            ),
            TunnelCommand::ExportTo(path) => self.export_tunnels(path),
            TunnelCommand::AskImport => self.ask_file(DialogKind::OpenTunnelFile, |answer| {
                tunnel_dialog(TunnelDialog::Import, answer)
            }),
            TunnelCommand::ImportFrom(path) => self.import_tunnels(path),
            TunnelCommand::ConfirmImport => self.confirm_import(),
            TunnelCommand::CancelImport => self.view.import_review = None,
            TunnelCommand::ConnectPeer => {
                let default_key = self.model.files.keys.keys.first().map(|k| k.name.clone());
                self.view.peer = Some(PeerForm::new(default_key.as_deref()));
            }
            TunnelCommand::ShowPeer(name) => {
                let key_name = self.model.tunnel(&name).and_then(|spec| {
                    self.model
                        .files
                        .keys
                        .for_ref(&spec.key)
                        .map(|k| k.name.clone())
                });
                self.view.peer =
                    PeerForm::of_pair(&name, &self.model.files.tunnels, key_name.as_deref());
            }
            TunnelCommand::CreatePeer => self.create_peer(),
            TunnelCommand::ClosePeer => self.view.peer = None,
            TunnelCommand::AskExportHistory(name) => self.ask_file(
                DialogKind::SaveCsvFile {
                    suggested_name: format!("{}-connections.csv", file_stem(&name)),
                },
                move |answer| tunnel_dialog(TunnelDialog::ConnectionHistory(name), answer),
            ),
            TunnelCommand::ExportHistoryTo(name, path) => self.export_history(&name, path),
        }
    }

    /// The tunnel, and the other half of its pair if it is one.
    fn with_partner(&self, name: &str) -> Vec<String> {
        let partner = peer::partner(name, &self.model.files.tunnels).map(|t| t.name.clone());
        std::iter::once(name.to_owned()).chain(partner).collect()
    }

    /// Adds the pair the "Connect to a peer" form describes (stopped, like any new
    /// tunnel), and leaves the form open on the settings to copy.
    fn create_peer(&mut self) {
        let Some(form) = self.view.peer.as_mut() else {
            return;
        };
        let model = &self.model;
        let plan = form.plan(|name| model.key_location(name));
        let known_key = model.files.keys.get(form.key.trim()).is_some();
        if form.created
            || !form
                .problems(&plan, &model.files.tunnels, known_key)
                .is_empty()
        {
            return;
        }
        form.created = true;
        let [forward, reverse] = plan.tunnels();
        self.ui.selected = Some(forward.name.clone());
        self.model.files.tunnels.extend([forward, reverse]);
        self.save_config();
        self.inform(format!(
            "added the pair \"{}\": starting either direction starts both",
            plan.prefix
        ));
    }

    pub(super) fn tunnel_message(&mut self, message: TunnelMessage) {
        match message {
            TunnelMessage::Ready { name, load, result } => self.tunnel_ready(name, load, result),
            TunnelMessage::ConfigRead(result) => {
                self.config_read(result);
                if matches!(self.model.files.config_status, ConfigStatus::Ok) {
                    self.inform("config reloaded");
                }
            }
            TunnelMessage::ProbeReady { key, result } => match result {
                Ok(request) => {
                    let mailbox = self.mailbox();
                    self.engine.test_connection(request, move |outcome| {
                        mailbox.deliver(Message::Tunnel(TunnelMessage::Probe { key, outcome }));
                    });
                }
                Err(e) => {
                    let verdict = ProbeVerdict::NotTried(ProbeNotTried::Key(e));
                    self.model.mirror.probes.insert(key, Some(verdict));
                }
            },
            TunnelMessage::Probe { key, outcome } => {
                self.model
                    .mirror
                    .probes
                    .insert(key, Some(ProbeVerdict::Answered(outcome)));
            }
            TunnelMessage::PortChecked { listen, problem } => {
                if let Some(editor) = &mut self.view.editor {
                    editor.port_checked(&listen, problem);
                }
            }
            TunnelMessage::Exported(result) => match result {
                Ok(path) => self.inform(format!(
                    "{} tunnel(s) exported to {} (keys are not in the file)",
                    self.model.files.tunnels.len(),
                    path.display()
                )),
                Err(e) => self.report(AppError::TunnelExport(e)),
            },
            TunnelMessage::HistoryExported(result) => match result {
                Ok((path, count)) => self.inform(format!(
                    "{count} connection(s) exported to {}",
                    path.display()
                )),
                Err(e) => self.report(AppError::HistoryExport(e)),
            },
            TunnelMessage::FileRead(result) => {
                let existing = self.model.files.tunnels.clone();
                let incoming = result.and_then(|(path, text)| {
                    tunnel_file::import(&path, &text, &self.model.files.keys, &existing)
                });
                match incoming {
                    Ok(incoming) => self.view.import_review = Some(incoming),
                    Err(e) => self.report(AppError::TunnelImport(e)),
                }
            }
            TunnelMessage::Dialog { purpose, answer } => {
                let Some(path) = self.picked(answer) else {
                    return;
                };
                match purpose {
                    TunnelDialog::EditorKeyFile => {
                        if let Some(editor) = &mut self.view.editor {
                            editor.key = KeyChoice::File(path.display().to_string());
                        }
                    }
                    TunnelDialog::Export => self.export_tunnels(path),
                    TunnelDialog::Import => self.import_tunnels(path),
                    TunnelDialog::ConnectionHistory(name) => self.export_history(&name, path),
                }
            }
        }
    }

    /// Makes the engine run what the user wants: every tunnel whose key was loaded, running
    /// if wanted. A tunnel taken out of the set stops, its connections closed; the others,
    /// and their connections, are not touched.
    fn apply(&mut self) {
        let wanted = &self.model.mirror.wanted;
        let tunnels = self
            .model
            .files
            .tunnels
            .iter()
            .filter_map(|spec| {
                let settings = self.tunnels.settings.get(&spec.name)?;
                Some(DesiredTunnel {
                    settings: settings.clone(),
                    run: wanted.contains(&spec.name),
                    restart: Restart::Never,
                })
            })
            .collect();
        let desired = Desired {
            tunnels,
            ending: Ending::Close,
        };
        if let Err(e) = self.engine.apply(desired) {
            self.report(AppError::Apply(e));
        }
    }

    /// Tunnel `name`'s key (or previous key) changed: a running tunnel takes it now, a
    /// stopped one when it starts.
    pub(super) fn rekeyed(&mut self, name: &str) {
        if self.model.mirror.wanted.contains(name) {
            self.start(name);
        } else {
            self.tunnels.settings.remove(name);
        }
    }

    /// Loads the tunnel's key off the UI thread, then runs it (or gives it new settings).
    fn start(&mut self, name: &str) {
        let Some(spec) = self.model.tunnel(name) else {
            return;
        };
        let definition = match spec.validate() {
            Ok(definition) => definition,
            Err(errors) => {
                self.report(AppError::CannotStart {
                    name: name.to_owned(),
                    cause: StartError::Settings(errors),
                });
                return;
            }
        };
        let key = spec.key.clone();
        let previous_key = spec.previous_key.clone();
        let name = name.to_owned();
        self.model.mirror.wanted.insert(name.clone());
        self.model.mirror.loading.insert(name.clone());
        let load = self.tunnels.next_load;
        self.tunnels.next_load += 1;
        self.tunnels.loads.insert(name.clone(), load);
        let keychain = self.keychain().cloned();
        self.background.run(move || {
            let result = load_settings(definition, &key, previous_key.as_ref(), keychain.as_ref());
            Message::Tunnel(TunnelMessage::Ready { name, load, result })
        });
    }

    fn tunnel_ready(
        &mut self,
        name: String,
        load: u64,
        result: Result<(TunnelSettings, Vec<KeyfileWarning>), StartError>,
    ) {
        // Stopped, deleted or edited again while the key was loading: this load is not
        // the one that counts.
        if self.tunnels.loads.get(&name) != Some(&load) {
            return;
        }
        self.tunnels.loads.remove(&name);
        self.model.mirror.loading.remove(&name);
        match result {
            Ok((settings, warnings)) => {
                for warning in warnings {
                    self.inform(format!("{name}: {warning}"));
                }
                self.tunnels.settings.insert(name.clone(), settings);
                self.apply();
                // The engine's checks begin an interval after the start (a minute by
                // default); asking for one now lets the row say at once whether the far
                // end answers. Nothing happens for a tunnel without checks.
                self.engine.check_now(&name);
            }
            Err(cause) => {
                self.model.mirror.wanted.remove(&name);
                self.report(AppError::CannotStart { name, cause });
            }
        }
    }

    fn stop(&mut self, name: &str) {
        self.tunnels.loads.remove(name);
        self.model.mirror.loading.remove(name);
        if self.model.mirror.wanted.remove(name) {
            self.apply();
        }
    }

    pub(super) fn stop_all(&mut self) {
        self.tunnels.loads.clear();
        self.model.mirror.loading.clear();
        if !self.model.mirror.wanted.is_empty() {
            self.model.mirror.wanted.clear();
            self.apply();
        }
    }

    /// Forgets a tunnel that is gone (deleted, renamed, reloaded away); the next apply
    /// takes it from the engine.
    fn forget(&mut self, name: &str) {
        self.tunnels.settings.remove(name);
        self.tunnels.loads.remove(name);
        self.model.mirror.forget(name);
    }

    /// The tunnels marked to start with the app.
    pub(super) fn start_autostart_tunnels(&mut self) {
        let names: Vec<String> = self
            .model
            .files
            .tunnels
            .iter()
            .filter(|t| t.autostart)
            .map(|t| t.name.clone())
            .collect();
        for name in names {
            self.start(&name);
        }
    }

    /// Takes a (re)read config's tunnels. A tunnel whose definition is the same keeps
    /// running untouched, connections and all; a changed one that runs loads its key again
    /// and takes the new settings; one that is gone stops and is forgotten.
    pub(super) fn replace_tunnels(&mut self, specs: Vec<TunnelSpec>) {
        let old = std::mem::replace(&mut self.model.files.tunnels, specs);
        let mut restart = Vec::new();
        for before in &old {
            match self.model.tunnel(&before.name) {
                Some(now) if now == before => {}
                Some(_) if self.model.mirror.wanted.contains(&before.name) => {
                    restart.push(before.name.clone());
                }
                // Changed while stopped, or gone.
                Some(_) => {
                    self.tunnels.settings.remove(&before.name);
                }
                None => self.forget(&before.name),
            }
        }
        if self
            .ui
            .selected
            .as_deref()
            .is_some_and(|name| self.model.tunnel(name).is_none())
        {
            self.ui.selected = None;
        }
        self.apply();
        for name in restart {
            self.start(&name);
        }
    }

    fn reload_config(&mut self) {
        let path = self.services.paths.config_file.clone();
        self.background
            .run(move || Message::Tunnel(TunnelMessage::ConfigRead(Config::load(&path))));
    }

    fn duplicate(&mut self, name: &str) {
        let Some(spec) = self.model.tunnel(name) else {
            return;
        };
        let mut spec = spec.clone();
        spec.name = (2..)
            .map(|n| format!("{name} ({n})"))
            .find(|candidate| self.model.tunnel(candidate).is_none())
            .unwrap_or_else(|| name.to_owned());
        spec.autostart = false;
        spec.far_end = None;
        self.view.editor = Some(EditorState::from_spec(None, &spec, &self.model.key_names()));
    }

    fn save_editor(&mut self) {
        // An edit in the same frame as the click is not checked yet.
        self.recheck_editor();
        let Some(editor) = self.view.editor.as_ref() else {
            return;
        };
        if !editor.problems().is_empty() {
            return;
        }
        let mut spec = editor.to_spec(|name| self.model.key_location(name));
        let editing = editor.editing.clone();
        self.view.editor = None;
        let new_name = spec.name.clone();
        match editing {
            Some(old_name) => {
                let was_running = self.model.mirror.wanted.contains(&old_name);
                let Some(slot) = self
                    .model
                    .files
                    .tunnels
                    .iter_mut()
                    .find(|t| t.name == old_name)
                else {
                    return;
                };
                // The editor does not show where the far end was set up; keep it.
                spec.far_end = slot.far_end.take();
                let unchanged = *slot == spec;
                *slot = spec;
                if self.ui.selected.as_deref() == Some(old_name.as_str()) {
                    self.ui.selected = Some(new_name.clone());
                }
                if old_name != new_name {
                    // A new name is a new tunnel to the engine: the old one goes.
                    self.forget(&old_name);
                } else if !unchanged && !was_running {
                    // Stopped: it takes its new settings when it starts.
                    self.tunnels.settings.remove(&old_name);
                }
                self.apply();
                // A running tunnel takes the new settings without touching the others.
                if was_running && !unchanged {
                    self.start(&new_name);
                }
            }
            None => {
                self.ui.selected = Some(new_name.clone());
                let autostart = spec.autostart;
                self.model.files.tunnels.push(spec);
                if autostart {
                    self.start(&new_name);
                }
            }
        }
        self.save_config();
    }

    fn delete_tunnel(&mut self, name: &str) {
        let Some(index) = self.model.files.tunnels.iter().position(|t| t.name == name) else {
            return;
        };
        self.model.files.tunnels.remove(index);
        self.forget(name);
        if self.ui.selected.as_deref() == Some(name) {
            self.ui.selected = None;
        }
        self.apply();
        self.save_config();
    }

    /// Writes the config in the background, unless the file on disk is broken: then it
    /// is kept as the user left it.
    pub(super) fn save_config(&mut self) {
        if let ConfigStatus::Broken { path, .. } = &self.model.files.config_status {
            self.report(AppError::ConfigFileBroken(path.clone()));
            return;
        }
        let config = Config {
            tunnels: self.model.files.tunnels.clone(),
            ..self.model.files.config_settings.clone()
        };
        if let Err(errors) = config.validate() {
            self.report(AppError::ConfigInvalid(errors));
            return;
        }
        self.background.save(
            SaveTarget::Config,
            self.services.paths.config_file.clone(),
            config.to_ron(),
        );
    }

    /// Checks the open editor's form again (after an edit, or a change to the tunnels or
    /// keys it is checked against), and starts the listen port check off the UI thread
    /// if the address is new.
    pub(super) fn recheck_editor(&mut self) {
        let Some(editor) = self.view.editor.as_mut() else {
            return;
        };
        let model = &self.model;
        let spec = editor.to_spec(|name| model.key_location(name));
        let editing = editor.editing.as_deref();
        let others: Vec<TunnelSpec> = model
            .files
            .tunnels
            .iter()
            .filter(|t| Some(t.name.as_str()) != editing)
            .cloned()
            .collect();
        let ours = editing
            .filter(|name| model.is_running(name))
            .and_then(|name| model.tunnel(name))
            .map(|t| t.listen.as_str());
        if let Some(request) = editor.recheck(&spec, &others, ours) {
            self.background.run(move || {
                Message::Tunnel(TunnelMessage::PortChecked {
                    problem: tunnel_form::check_listen_port(request.addr),
                    listen: request.listen,
                })
            });
        }
    }

    /// Test connection: the key is loaded off the UI thread, then the engine probes.
    fn test_connection(&mut self, key: ProbeKey, spec: TunnelSpec) {
        if spec.mode != Mode::Encrypt {
            return;
        }
        let definition = match spec.validate() {
            Ok(definition) => definition,
            Err(errors) => {
                let verdict = ProbeVerdict::NotTried(ProbeNotTried::Settings(errors));
                self.model.mirror.probes.insert(key, Some(verdict));
                return;
            }
        };
        self.model.mirror.probes.insert(key.clone(), None);
        let keychain = self.keychain().cloned();
        self.background.run(move || {
            let result =
                keys::load_for_tunnel(&spec.key, keychain.as_ref()).map(|loaded| ProbeRequest {
                    target: definition.target,
                    key: loaded.key,
                    forward_secrecy: definition.forward_secrecy,
                    key_agreement: definition.key_agreement,
                    timeout: definition.timeout,
                    bind: definition.bind,
                });
            Message::Tunnel(TunnelMessage::ProbeReady { key, result })
        });
    }

    fn export_tunnels(&mut self, path: PathBuf) {
        let text = tunnel_file::export(&self.model.files.tunnels, &self.model.files.keys);
        self.background.run(move || {
            let result = sluice_engine::write_atomic(&path, text.as_bytes())
                .map(|()| path.clone())
                .map_err(|source| SaveFailure::Write { path, source });
            Message::Tunnel(TunnelMessage::Exported(result))
        });
    }

    /// Writes the tunnel's connections that the search shows, as CSV.
    fn export_history(&mut self, name: &str, path: PathBuf) {
        let search = &self.view.history_search;
        let shown: Vec<_> = self
            .model
            .mirror
            .connections
            .newest_first(name)
            .filter(|record| connections::matches(record, search))
            .collect();
        let count = shown.len();
        let text = connections::csv(shown);
        self.background.run(move || {
            let result = sluice_engine::write_atomic(&path, text.as_bytes())
                .map(|()| (path.clone(), count))
                .map_err(|source| SaveFailure::Write { path, source });
            Message::Tunnel(TunnelMessage::HistoryExported(result))
        });
    }

    fn import_tunnels(&mut self, path: PathBuf) {
        self.background.run(move || {
            let result = match bounded_read::read_text(&path, MAX_TUNNEL_FILE_LEN) {
                Ok(text) => Ok((path, text)),
                Err(BoundedReadError::TooLarge { limit }) => {
                    Err(TunnelImportError::TooLarge { path, limit })
                }
                Err(BoundedReadError::Io(source)) => Err(TunnelImportError::Read { path, source }),
            };
            Message::Tunnel(TunnelMessage::FileRead(result))
        });
    }

    /// Adds the tunnels the user confirmed, if they still fit next to the tunnels there
    /// are now. None of them starts.
    fn confirm_import(&mut self) {
        let Some(incoming) = self.view.import_review.take() else {
            return;
        };
        if let Err(e) = tunnel_file::fits(&incoming.tunnels, &self.model.files.tunnels) {
            self.report(AppError::TunnelImport(e));
            return;
        }
        let count = incoming.tunnels.len();
        self.model.files.tunnels.extend(incoming.tunnels);
        self.save_config();
        self.inform(format!("imported {count} tunnel(s); none is started"));
    }
}

/// Loads a tunnel's key and, during a rotation, the previous key its accepting end still
/// lets in: both must load, or the tunnel does not start (a rotation half-applied would
/// refuse the clients it exists for).
fn load_settings(
    definition: TunnelDefinition,
    key: &KeyRef,
    previous_key: Option<&KeyRef>,
    keychain: Option<&Arc<dyn KeyStore>>,
) -> Result<(TunnelSettings, Vec<KeyfileWarning>), StartError> {
    let loaded = keys::load_for_tunnel(key, keychain)?;
    let mut warnings = loaded.warnings;
    let previous = match previous_key {
        None => None,
        Some(previous_key) => {
            let previous =
                keys::load_for_tunnel(previous_key, keychain).map_err(StartError::PreviousKey)?;
            warnings.extend(previous.warnings);
            Some(previous.key)
        }
    };
    let settings = TunnelSettings::new(definition, loaded.key).with_previous_key(previous);
    Ok((settings, warnings))
}

fn tunnel_dialog(purpose: TunnelDialog, answer: DialogAnswer) -> Message {
    Message::Tunnel(TunnelMessage::Dialog { purpose, answer })
}

/// A tunnel's name as part of a file name: what a file name cannot hold becomes `_`.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
