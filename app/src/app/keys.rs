//! The keys: the keys window, generating and importing keys (into the keychain, or as key
//! files where there is none), exporting, sharing (sealed bundles) and deleting them, and
//! the key list on disk. Keychain, file and scrypt work runs off the UI thread.

use std::path::PathBuf;
use std::sync::Arc;

use super::SluiceApp;
use crate::background::{KeyDialog, KeyMessage, Message, SaveTarget};
use crate::command::KeyCommand;
use crate::error::{AppError, ShareError};
use crate::file_dialogs::{DialogAnswer, DialogKind};
use crate::keys::{self, OpenedBundle};
use crate::model::{Confirm, KeyForm};
use crate::tunnel_file;

impl SluiceApp {
    pub(super) fn key_command(&mut self, command: KeyCommand) {
        match command {
            KeyCommand::ShowKeys(open) => self.ui.keys_open = open,
            KeyCommand::OpenForm(form) => self.view.key_form = Some(form),
            KeyCommand::CloseForm => self.view.key_form = None,
            KeyCommand::SubmitForm => self.submit_key_form(),
            KeyCommand::PickFormFile => match &self.view.key_form {
                Some(KeyForm::Import { .. }) => self.ask_file(DialogKind::OpenKeyFile, |answer| {
                    key_dialog(KeyDialog::ImportFile, answer)
                }),
                Some(KeyForm::OpenBundle { .. }) => {
                    self.ask_file(DialogKind::OpenBundle, |answer| {
                        key_dialog(KeyDialog::BundleFile, answer)
                    });
                }
                Some(KeyForm::Generate { name, .. }) => {
                    let suggested_name = match name.trim() {
                        "" => "sluice.key".to_owned(),
                        name => format!("{name}.key"),
                    };
                    self.ask_file(DialogKind::SaveKeyFile { suggested_name }, |answer| {
                        key_dialog(KeyDialog::GenerateCopy, answer)
                    });
                }
                None => {}
            },
            KeyCommand::AskExport(name) => {
                let suggested_name = format!("{name}.key");
                self.ask_file(DialogKind::SaveKeyFile { suggested_name }, move |answer| {
                    key_dialog(KeyDialog::Export(name), answer)
                });
            }
            KeyCommand::AskShare(name) => {
                let suggested_name = format!("{name}.age");
                self.ask_file(DialogKind::SaveBundle { suggested_name }, move |answer| {
                    key_dialog(KeyDialog::Share(name), answer)
                });
            }
            KeyCommand::AskShareTunnel(tunnel) => {
                let suggested_name = format!("{}.age", sluice_engine::far_end_slug(&tunnel));
                self.ask_file(DialogKind::SaveBundle { suggested_name }, move |answer| {
                    key_dialog(KeyDialog::ShareTunnel(tunnel), answer)
                });
            }
            // Dropping the passphrase wipes it.
            KeyCommand::CloseShared => self.view.shared = None,
            KeyCommand::SetReminder(name, days) => {
                let key = self
                    .model
                    .files
                    .keys
                    .keys
                    .iter_mut()
                    .find(|k| k.name == name);
                if let Some(key) = key.filter(|k| k.rotate_after_days != days) {
                    key.rotate_after_days = days;
                    self.save_keys();
                }
            }
            KeyCommand::AskDelete(name) => self.ask_delete_key(name),
            KeyCommand::ConfirmDelete(name) => {
                self.view.confirm = None;
                self.delete_key(name);
            }
        }
    }

    pub(super) fn key_message(&mut self, message: KeyMessage) {
        match message {
            KeyMessage::Generated(result) => match result {
                Ok(info) => {
                    self.inform(format!(
                        "generated key \"{}\" ({}), fingerprint {}",
                        info.name,
                        info.where_label(),
                        info.fingerprint
                    ));
                    self.model.files.keys.keys.push(info);
                    self.save_keys();
                }
                Err(e) => self.report(AppError::KeyGenerate(e)),
            },
            KeyMessage::Imported(result) => match result {
                Ok((info, warnings)) => {
                    if let Some(same) = self.model.files.keys.with_fingerprint(&info.fingerprint) {
                        let text = format!(
                            "note: \"{}\" is the same key as \"{}\"",
                            info.name, same.name
                        );
                        self.inform(text);
                    }
                    for warning in warnings {
                        self.inform(format!("{}: {warning}", info.name));
                    }
                    self.inform(format!(
                        "imported key \"{}\", fingerprint {}",
                        info.name, info.fingerprint
                    ));
                    self.model.files.keys.keys.push(info);
                    self.save_keys();
                }
                Err(e) => self.report(AppError::KeyImport(e)),
            },
            KeyMessage::Shared { name, result } => match result {
                Ok(shared) => {
                    self.inform(format!(
                        "sealed key \"{}\" (fingerprint {}) into {}",
                        shared.name,
                        shared.fingerprint,
                        shared.bundle.display()
                    ));
                    self.view.shared = Some(shared);
                }
                Err(cause) => self.report(AppError::KeyShare { name, cause }),
            },
            KeyMessage::BundleChecked { path, result } => {
                let still_chosen = matches!(
                    &self.view.key_form,
                    Some(KeyForm::OpenBundle { path: p, .. }) if *p == path.display().to_string()
                );
                if let (Err(e), true) = (result, still_chosen) {
                    self.report(AppError::BundleOpen(e));
                }
            }
            KeyMessage::BundleOpened { path, result } => match result {
                Ok(OpenedBundle { key: info, tunnels }) => {
                    self.view.key_form = None;
                    if let Some(same) = self.model.files.keys.with_fingerprint(&info.fingerprint) {
                        let text = format!(
                            "note: \"{}\" is the same key as \"{}\"",
                            info.name, same.name
                        );
                        self.inform(text);
                    }
                    self.inform(format!(
                        "opened the shared bundle: key \"{}\", fingerprint {} (compare it with the sender's)",
                        info.name, info.fingerprint
                    ));
                    self.model.files.keys.keys.push(info);
                    self.save_keys();
                    // Tunnels sealed with the key go through the import's review, bound to
                    // it by its fingerprint.
                    if let Some(text) = tunnels {
                        let existing = &self.model.files.tunnels;
                        match tunnel_file::import(&path, &text, &self.model.files.keys, existing) {
                            Ok(incoming) => self.view.import_review = Some(incoming),
                            Err(e) => self.report(AppError::TunnelImport(e)),
                        }
                    }
                }
                Err(e) => {
                    // The form stays, passphrase and all, to correct a typo and try again.
                    if let Some(KeyForm::OpenBundle { opening, .. }) = &mut self.view.key_form {
                        *opening = false;
                    }
                    self.report(AppError::BundleOpen(e));
                }
            },
            KeyMessage::Exported(result) => match result {
                Ok(path) => self.inform(format!("key written to {} (mode 0600)", path.display())),
                Err(e) => self.report(AppError::KeyExport(e)),
            },
            KeyMessage::Deleted { name, result } => match result {
                Ok(()) => {
                    self.model.files.keys.keys.retain(|k| k.name != name);
                    self.save_keys();
                    self.inform(format!("deleted key \"{name}\""));
                }
                Err(cause) => self.report(AppError::KeyDelete { name, cause }),
            },
            KeyMessage::Dialog { purpose, answer } => {
                let Some(path) = self.picked(answer) else {
                    return;
                };
                self.key_file_picked(purpose, path);
            }
        }
    }

    fn key_file_picked(&mut self, purpose: KeyDialog, path: PathBuf) {
        let shown = path.display().to_string();
        match purpose {
            KeyDialog::ImportFile => {
                if let Some(KeyForm::Import { path: p, name }) = &mut self.view.key_form {
                    if name.trim().is_empty() {
                        *name = path
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                    }
                    *p = shown;
                }
            }
            KeyDialog::GenerateCopy => {
                if let Some(KeyForm::Generate {
                    path: p, save_copy, ..
                }) = &mut self.view.key_form
                {
                    *p = shown;
                    *save_copy = true;
                }
            }
            KeyDialog::BundleFile => {
                if let Some(KeyForm::OpenBundle { path: p, name, .. }) = &mut self.view.key_form {
                    if name.trim().is_empty() {
                        *name = path
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                    }
                    *p = shown;
                }
                // A file that is not a passphrase bundle is refused before the passphrase
                // is typed.
                self.background.run(move || {
                    let result = keys::check_bundle_file(&path);
                    Message::Key(KeyMessage::BundleChecked { path, result })
                });
            }
            KeyDialog::Share(name) => {
                let Some(info) = self.model.files.keys.get(&name).cloned() else {
                    return;
                };
                let keychain = self.keychain().cloned();
                self.background.run(move || {
                    Message::Key(KeyMessage::Shared {
                        result: keys::share(&info, keychain.as_ref(), &path),
                        name,
                    })
                });
            }
            KeyDialog::ShareTunnel(tunnel) => {
                let Some(spec) = self.model.tunnel(&tunnel) else {
                    return;
                };
                let Some(info) = self.model.files.keys.for_ref(&spec.key).cloned() else {
                    self.report(AppError::TunnelShare {
                        name: tunnel,
                        cause: ShareError::UnknownKey,
                    });
                    return;
                };
                let definition = tunnel_file::export_shared(spec, &self.model.files.keys);
                let keychain = self.keychain().cloned();
                self.background.run(move || {
                    Message::Key(KeyMessage::Shared {
                        result: keys::share_tunnel(
                            &tunnel,
                            &definition,
                            &info,
                            keychain.as_ref(),
                            &path,
                        ),
                        name: info.name.clone(),
                    })
                });
            }
            KeyDialog::Export(name) => {
                let Some(info) = self.model.files.keys.get(&name).cloned() else {
                    return;
                };
                let keychain = self.keychain().cloned();
                self.background.run(move || {
                    Message::Key(KeyMessage::Exported(keys::export(
                        &info,
                        keychain.as_ref(),
                        &path,
                    )))
                });
            }
        }
    }

    fn submit_key_form(&mut self) {
        // A form being opened waits for its answer.
        let Some(form) = self
            .view
            .key_form
            .clone()
            .filter(|f| !matches!(f, KeyForm::OpenBundle { opening: true, .. }))
        else {
            return;
        };
        let keychain = self.keychain().cloned();
        match form {
            KeyForm::Generate {
                name,
                save_copy,
                path,
            } => {
                let name = name.trim().to_owned();
                if let Err(problem) = keys::check_new_name(&self.model.files.keys, &name) {
                    self.report(problem.into());
                    return;
                }
                let copy_to = (save_copy || keychain.is_none())
                    .then(|| PathBuf::from(path.trim()))
                    .filter(|p| !p.as_os_str().is_empty());
                if (save_copy || keychain.is_none()) && copy_to.is_none() {
                    self.report(AppError::NoKeyFileChosen);
                    return;
                }
                self.view.key_form = None;
                self.background.run(move || {
                    Message::Key(KeyMessage::Generated(keys::generate(
                        &name,
                        keychain.as_ref(),
                        copy_to.as_deref(),
                    )))
                });
            }
            KeyForm::OpenBundle {
                name,
                path,
                passphrase,
                ..
            } => {
                let name = name.trim().to_owned();
                if let Err(problem) = keys::check_new_name(&self.model.files.keys, &name) {
                    self.report(problem.into());
                    return;
                }
                if path.trim().is_empty() {
                    self.report(AppError::NoBundleChosen);
                    return;
                }
                if passphrase.expose().trim().is_empty() {
                    self.report(AppError::NoPassphrase);
                    return;
                }
                if let Some(KeyForm::OpenBundle { opening, .. }) = &mut self.view.key_form {
                    *opening = true;
                }
                let path = PathBuf::from(path.trim());
                self.background.run(move || {
                    // Pasted passphrases often carry a line break or spaces around them;
                    // the words themselves never contain a space.
                    let result = keys::open_bundle(
                        &name,
                        &path,
                        passphrase.expose().trim(),
                        keychain.as_ref(),
                    );
                    Message::Key(KeyMessage::BundleOpened { path, result })
                });
            }
            KeyForm::Import { name, path } => {
                let name = name.trim().to_owned();
                if let Err(problem) = keys::check_new_name(&self.model.files.keys, &name) {
                    self.report(problem.into());
                    return;
                }
                if path.trim().is_empty() {
                    self.report(AppError::NoImportFileChosen);
                    return;
                }
                self.view.key_form = None;
                let path = PathBuf::from(path.trim());
                self.background.run(move || {
                    Message::Key(KeyMessage::Imported(keys::import(
                        &name,
                        &path,
                        keychain.as_ref(),
                    )))
                });
            }
        }
    }

    fn ask_delete_key(&mut self, name: String) {
        let Some(info) = self.model.files.keys.get(&name) else {
            return;
        };
        let users = self.model.users_of(info);
        if users.is_empty() {
            self.view.confirm = Some(Confirm::DeleteKey(name));
        } else {
            self.report(AppError::KeyInUse { name, users });
        }
    }

    fn delete_key(&mut self, name: String) {
        let Some(info) = self.model.files.keys.get(&name).cloned() else {
            return;
        };
        let keychain = self.keychain().cloned();
        self.background.run(move || {
            Message::Key(KeyMessage::Deleted {
                result: keys::delete(&info, keychain.as_ref()),
                name,
            })
        });
    }

    pub(super) fn save_keys(&mut self) {
        if let Some(problem) = &self.model.files.keys_broken {
            self.report(AppError::KeyListBroken(Arc::clone(problem)));
            return;
        }
        self.background.save(
            SaveTarget::KeyIndex,
            self.services.paths.keys_file.clone(),
            self.model.files.keys.to_ron(),
        );
    }
}

fn key_dialog(purpose: KeyDialog, answer: DialogAnswer) -> Message {
    Message::Key(KeyMessage::Dialog { purpose, answer })
}
