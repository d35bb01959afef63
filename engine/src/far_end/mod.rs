//! The far end in one action: set up, check, repair and remove the server side of a
//! tunnel over SSH, with the system's OpenSSH client. A supervisor-level module: it uses the config,
//! the key sources and the connection test; nothing in `protocol` or `net` uses it.
//!
//! The API is blocking: [`run_far_end`] performs one [`FarEndAction`] step by step,
//! calling back with a [`FarEndStepReport`] as each step starts and ends, and returns
//! when done; a caller with a UI thread runs it on a thread of its own. Do not call it
//! from inside a tokio runtime: the connection test runs a small runtime of its own.

mod error;
mod host;
mod install;
mod layout;
mod manifest;
mod plan;
mod scripts;
mod shell;
mod ssh;

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::address::Address;
use crate::config::{KeyRef, Mode, TunnelSpec, check_ssh_destination};
use crate::fault::TargetFault;
use crate::keystore::KeyStore;
use crate::net::dhpool::KeyPairPool;
use crate::net::dial::DialFault;
use crate::net::probe::{ProbeOutcome, ProbeRequest, probe};
use crate::protocol::Role;
use crate::protocol::key::PresharedKey;

pub use error::{FarEndError, FarHostError, LocalError, SshError, SshStage};
pub use host::{Choice, HostFacts, Persistence, choose};
pub use install::LocalSluiced;
pub use plan::{
    FarEndCommands, FarEndPlan, default_far_address, far_address_label, far_end_commands,
    far_end_slug,
};
pub use ssh::{Input, SSH_COMMAND_VAR, SshClient, ssh_host_aliases};

use layout::Layout;
use manifest::Removal;
use ssh::{RemoteOutput, SshFailure};

/// What to do about a far end that Check found stopped or changed.
const REPAIR_HINT: &str = "repair it (Repair in Sluice's far-end tab, or sluiced --far-end-repair), which puts back what set-up made";

/// ssh's `ConnectTimeout` unless the caller picks another.
pub const FAR_END_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do on the far end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FarEndAction {
    /// Probe, send the key, copy sluiced there if it needs one and has none, start the
    /// far end, verify.
    Setup,
    /// Probe, then verify what an earlier set-up started.
    Check,
    /// Stop what set-up started and delete the files it wrote, nothing else.
    Remove,
    /// Put back what an earlier set-up made, after Check found it stopped or changed:
    /// take away exactly what its manifest lists (as remove does, but refusing before
    /// anything is touched if the manifest lists anything set-up never makes), then set up
    /// again with this machine's key, and verify. Set-up refuses to write over what exists,
    /// so a repair is a remove and a set-up in one; nothing set-up did not make is touched.
    Repair,
}

impl FarEndAction {
    /// The steps this action runs, in order.
    pub fn steps(self) -> &'static [FarEndStep] {
        match self {
            FarEndAction::Setup => &[
                FarEndStep::Probe,
                FarEndStep::SendKey,
                FarEndStep::Install,
                FarEndStep::Start,
                FarEndStep::Verify,
            ],
            FarEndAction::Check => &[FarEndStep::Probe, FarEndStep::Verify],
            FarEndAction::Remove => &[FarEndStep::Probe, FarEndStep::Remove],
            FarEndAction::Repair => &[
                FarEndStep::Probe,
                FarEndStep::Remove,
                FarEndStep::SendKey,
                FarEndStep::Install,
                FarEndStep::Start,
                FarEndStep::Verify,
            ],
        }
    }

    /// Whether the action sets the far end up (again): set-up and repair, which choose how
    /// it runs, may copy sluiced there and carry a rotation's previous key.
    pub fn sets_up(self) -> bool {
        matches!(self, FarEndAction::Setup | FarEndAction::Repair)
    }

    /// Whether the action needs the tunnel's key (all but remove, which must work when the
    /// key is lost).
    pub fn needs_key(self) -> bool {
        self != FarEndAction::Remove
    }
}

/// One step of an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FarEndStep {
    Probe,
    SendKey,
    /// Copies this machine's sluiced, when the far end needs one and has none.
    Install,
    Start,
    Verify,
    Remove,
}

impl fmt::Display for FarEndStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FarEndStep::Probe => "probe",
            FarEndStep::SendKey => "send key",
            FarEndStep::Install => "install sluiced",
            FarEndStep::Start => "start",
            FarEndStep::Verify => "verify",
            FarEndStep::Remove => "remove",
        })
    }
}

/// Where a step is.
#[derive(Clone, Debug, PartialEq)]
pub enum FarEndStepOutcome {
    /// The step has started.
    Running,
    /// The step succeeded; what it found or did, in words.
    Done(String),
    /// The step failed; later steps do not run.
    Failed(FarEndError),
}

/// One progress report.
#[derive(Clone, Debug, PartialEq)]
pub struct FarEndStepReport {
    pub step: FarEndStep,
    pub outcome: FarEndStepOutcome,
}

impl fmt::Display for FarEndStepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            FarEndStepOutcome::Running => write!(f, "{}: running", self.step),
            FarEndStepOutcome::Done(what) => write!(f, "{}: ok: {what}", self.step),
            FarEndStepOutcome::Failed(why) => write!(f, "{}: FAILED: {why}", self.step),
        }
    }
}

/// The key file's bytes (what spiped reads from `-k`), wiped when dropped. Never shown.
pub struct FarEndKey(Zeroizing<Vec<u8>>);

impl FarEndKey {
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> FarEndKey {
        FarEndKey(bytes)
    }

    /// Reads the key a tunnel refers to: a key file, or the keychain when one is given.
    pub fn load(key: &KeyRef, keychain: Option<&dyn KeyStore>) -> Result<FarEndKey, LocalError> {
        crate::keystore::load_key_bytes(key, keychain)
            .map(|(bytes, _)| FarEndKey(bytes))
            .map_err(|e| LocalError::Key(e.to_string()))
    }

    fn preshared(&self) -> PresharedKey {
        PresharedKey::from_keyfile_bytes(&self.0)
    }
}

impl fmt::Debug for FarEndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FarEndKey({})", self.preshared().fingerprint())
    }
}

/// One far-end action for one tunnel.
#[derive(Debug)]
pub struct FarEndRequest {
    pub action: FarEndAction,
    /// The tunnel as configured on this machine.
    pub tunnel: TunnelSpec,
    /// The far end's service (Encrypt tunnels) or listening address (Decrypt tunnels);
    /// `None` = [`default_far_address`].
    pub far_address: Option<String>,
    /// How the far end reaches this machine (Decrypt tunnels only).
    pub this_host: String,
    /// Needed for set-up and check, not for remove.
    pub key: Option<FarEndKey>,
    /// Set-up and repair during a rotation: the key being replaced, which a far end that
    /// accepts connections (`-d`, `--reverse-in`) keeps letting in beside `key`. Needs
    /// sluiced there (stock spiped takes one key).
    pub previous_key: Option<FarEndKey>,
    pub ssh: SshClient,
    /// Set-up and repair: systemd holds the far end's port and starts it on the first
    /// connection, rather than it running all the time.
    pub on_first_connection: bool,
    /// This machine's sluiced, which set-up copies to a far end that needs sluiced and has
    /// none ([`LocalSluiced::beside_this_program`]); `None`: never copy.
    pub local_sluiced: Option<LocalSluiced>,
}

impl FarEndRequest {
    /// The plan this request carries out.
    pub fn plan(&self) -> FarEndPlan {
        let far = self
            .far_address
            .clone()
            .unwrap_or_else(|| default_far_address(&self.tunnel));
        let mut plan = FarEndPlan::new(&self.tunnel, &far, &self.this_host);
        plan.on_first_connection = self.on_first_connection;
        plan.previous_key = self.previous_key.is_some();
        plan
    }
}

/// Runs the action's steps in order, reporting each as it starts and as it ends, and
/// stops at the first failure (which is also the returned error). Blocks.
pub fn run_far_end(
    request: &FarEndRequest,
    on_step: &mut dyn FnMut(FarEndStepReport),
) -> Result<(), FarEndError> {
    let mut runner = Runner {
        request,
        plan: request.plan(),
        facts: None,
        choice: None,
    };
    for &step in request.action.steps() {
        on_step(FarEndStepReport {
            step,
            outcome: FarEndStepOutcome::Running,
        });
        match runner.step(step) {
            Ok(done) => on_step(FarEndStepReport {
                step,
                outcome: FarEndStepOutcome::Done(done),
            }),
            Err(error) => {
                on_step(FarEndStepReport {
                    step,
                    outcome: FarEndStepOutcome::Failed(error.clone()),
                });
                return Err(error);
            }
        }
    }
    Ok(())
}

struct Runner<'a> {
    request: &'a FarEndRequest,
    plan: FarEndPlan,
    facts: Option<HostFacts>,
    choice: Option<Choice>,
}

impl Runner<'_> {
    fn destination(&self) -> String {
        self.request.ssh.destination.clone()
    }

    fn step(&mut self, step: FarEndStep) -> Result<String, FarEndError> {
        match step {
            FarEndStep::Probe => self.probe(),
            FarEndStep::SendKey => self.send_key(),
            FarEndStep::Install => self.install(),
            FarEndStep::Start => self.start(),
            FarEndStep::Verify => self.verify(),
            FarEndStep::Remove => self.remove(),
        }
    }

    fn remote(&self, script: &str, input: Option<Input<'_>>) -> Result<RemoteOutput, FarEndError> {
        self.request
            .ssh
            .run(script, input)
            .map_err(|failure| match failure {
                SshFailure::Local(e) => FarEndError::Local(e),
                SshFailure::Ssh(e) => FarEndError::Ssh(e),
            })
    }

    fn command_failed(&self, what: &'static str, output: &RemoteOutput) -> FarEndError {
        FarHostError::Command {
            destination: self.destination(),
            what,
            detail: output.diagnostics(),
        }
        .into()
    }

    fn check_tunnel(&self) -> Result<(), FarEndError> {
        let spec = &self.request.tunnel;
        let invalid = |reason: String| LocalError::Tunnel {
            tunnel: spec.name.clone(),
            reason,
        };
        check_ssh_destination(&self.request.ssh.destination).map_err(LocalError::from)?;
        if let Err(problems) = spec.validate() {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(invalid(text.join("; ")).into());
        }
        if self.request.previous_key.is_some() && self.plan.far_mode.role() != Role::Server {
            return Err(invalid(format!(
                "a rotation's previous key is for the end that accepts connections, and the far end of this {:?} tunnel dials (its {} end): it switches to the new key; keep the previous key on this end instead",
                spec.mode,
                self.plan.mode_flag()
            ))
            .into());
        }
        // Both go into the far end's command line and unit file: the far address as the
        // user gave it (--service, the far-end tab), and how it reaches this machine.
        for (flag, address) in [("-s", &self.plan.source), ("-t", &self.plan.target)] {
            if let Err(e) = Address::parse_remote(address) {
                return Err(invalid(format!("the far end's {flag}: {e}")).into());
            }
        }
        Ok(())
    }

    fn probe(&mut self) -> Result<String, FarEndError> {
        self.check_tunnel()?;
        let output = self.remote(&scripts::probe(&self.plan.slug), None)?;
        let facts =
            HostFacts::parse(&output).ok_or_else(|| self.command_failed("the probe", &output))?;
        let summary = facts.summary();
        let destination = self.destination();
        let mut done = summary;
        let action = self.request.action;
        if action != FarEndAction::Setup && !facts.already_set_up {
            return Err(FarHostError::NotSetUp {
                destination,
                tunnel: self.plan.tunnel.clone(),
            }
            .into());
        }
        match action {
            FarEndAction::Setup | FarEndAction::Repair => {
                if action == FarEndAction::Setup && facts.already_set_up {
                    return Err(FarHostError::AlreadySetUp {
                        destination,
                        tunnel: self.plan.tunnel.clone(),
                    }
                    .into());
                }
                // A repair chooses before it removes anything: a far end that can no
                // longer run the tunnel (its program uninstalled) is left as it is.
                let local = self.request.local_sluiced.as_ref();
                let choice = choose(&facts, &self.plan, &destination, local)?;
                done.push_str(&format!(
                    "; will run {} as {}",
                    choice.program.name(),
                    choice.why
                ));
                self.choice = Some(choice);
            }
            FarEndAction::Check | FarEndAction::Remove => {}
        }
        self.facts = Some(facts);
        Ok(done)
    }

    fn facts_and_choice(&self) -> Result<(&HostFacts, &Choice), FarEndError> {
        match (&self.facts, &self.choice) {
            (Some(f), Some(c)) => Ok((f, c)),
            // Steps run in order; reaching this means the probe did not run.
            _ => Err(LocalError::Tunnel {
                tunnel: self.plan.tunnel.clone(),
                reason: "internal error: set-up ran without probing the far end first".into(),
            }
            .into()),
        }
    }

    fn key(&self) -> Result<&FarEndKey, FarEndError> {
        self.request.key.as_ref().ok_or_else(|| {
            LocalError::Key("no key was given, and this step needs it".into()).into()
        })
    }

    fn send_key(&mut self) -> Result<String, FarEndError> {
        let (facts, choice) = self.facts_and_choice()?;
        let key = self.key()?;
        let layout = choice.layout(facts, &self.plan);
        let input = Input {
            what: "the key",
            bytes: &key.0,
        };
        let output = self.remote(&scripts::send_key(&layout, choice), Some(input))?;
        if output.has("already-set-up") {
            return Err(FarHostError::AlreadySetUp {
                destination: self.destination(),
                tunnel: self.plan.tunnel.clone(),
            }
            .into());
        }
        if let Some(path) = output.value("occupied") {
            return Err(FarHostError::Occupied {
                destination: self.destination(),
                path: path.to_owned(),
            }
            .into());
        }
        let written = match output.value("key") {
            Some(path) if output.success() => format!(
                "{} bytes written to {path} (mode 0600; fingerprint {})",
                key.0.len(),
                key.preshared().fingerprint()
            ),
            _ => return Err(self.command_failed("writing the key file", &output)),
        };
        let Some(previous) = &self.request.previous_key else {
            return Ok(written);
        };
        let input = Input {
            what: "the previous key",
            bytes: &previous.0,
        };
        let output = self.remote(&scripts::send_previous_key(&layout, choice), Some(input))?;
        match output.value("previous-key") {
            Some(path) if output.success() => Ok(format!(
                "{written}; the key being replaced beside it, {path} (fingerprint {}), still let in until the rotation is finished",
                previous.preshared().fingerprint()
            )),
            _ => Err(self.command_failed("writing the previous key file", &output)),
        }
    }

    fn install(&mut self) -> Result<String, FarEndError> {
        let (facts, choice) = self.facts_and_choice()?;
        let Some(local) = &choice.install else {
            return Ok(format!(
                "nothing to install: {} is there ({})",
                choice.program.name(),
                choice.program_path
            ));
        };
        let bytes = std::fs::read(&local.path).map_err(|e| LocalError::Tunnel {
            tunnel: self.plan.tunnel.clone(),
            reason: format!(
                "this machine's sluiced ({}) cannot be read: {e}",
                local.path.display()
            ),
        })?;
        let layout = choice.layout(facts, &self.plan);
        let input = Input {
            what: "sluiced",
            bytes: &bytes,
        };
        let output = self.remote(&scripts::install(&layout), Some(input))?;
        let destination = self.destination();
        match output.value("installed-version") {
            Some(said) if output.success() && said == local.version => Ok(format!(
                "copied this machine's {said} ({:.1} MB) to {}, and it runs there",
                bytes.len() as f64 / 1e6,
                layout.sluiced_copy
            )),
            Some(said) => Err(FarHostError::CopyDoesNotRun {
                destination,
                detail: format!("it says {said:?}, not {:?}", local.version),
            }
            .into()),
            None => Err(FarHostError::CopyDoesNotRun {
                destination,
                detail: output.diagnostics(),
            }
            .into()),
        }
    }

    fn start(&mut self) -> Result<String, FarEndError> {
        let (facts, choice) = self.facts_and_choice()?;
        let layout = choice.layout(facts, &self.plan);
        let text = scripts::start_input(&layout, choice, &self.plan);
        let input = text.as_deref().map(|text| Input {
            what: match choice.persistence {
                Persistence::SluicedTemplate { .. } => "the tunnel's config file",
                _ => "the unit file",
            },
            bytes: text.as_bytes(),
        });
        let output = self.remote(&scripts::start(&layout, choice, &self.plan), input)?;
        if let Some(path) = output.value("occupied") {
            return Err(FarHostError::Occupied {
                destination: self.destination(),
                path: path.to_owned(),
            }
            .into());
        }
        if !output.success() || output.has("start-failed") {
            let text = output.diagnostics();
            if text.to_ascii_lowercase().contains("in use") {
                return Err(FarHostError::PortInUse {
                    destination: self.destination(),
                    address: self.plan.source.clone(),
                }
                .into());
            }
            return Err(self.command_failed("starting the far end", &output));
        }
        let how = match (output.value("pid"), output.value("unit")) {
            (Some(pid), _) => format!("as a daemon, pid {pid}, pid file {}", layout.pidfile),
            (None, Some(unit)) => format!("as the systemd unit {unit}"),
            (None, None) => "(no pid or unit reported)".to_owned(),
        };
        Ok(format!(
            "{} {} -s {} -t {} {how}; chosen: {}",
            choice.program.name(),
            self.plan.mode_flag(),
            self.plan.source,
            self.plan.target,
            choice.why
        ))
    }

    fn home(&self) -> Result<&str, FarEndError> {
        self.facts.as_ref().map(|f| f.home.as_str()).ok_or_else(|| {
            LocalError::Tunnel {
                tunnel: self.plan.tunnel.clone(),
                reason: "internal error: the far end was not probed".into(),
            }
            .into()
        })
    }

    fn verify(&mut self) -> Result<String, FarEndError> {
        let (dir, manifest) = Layout::manifest_only(self.home()?, &self.plan.slug);
        let output = self.remote(&scripts::status(&dir, &manifest), None)?;
        let destination = self.destination();
        let tunnel = self.plan.tunnel.clone();
        if output.has("not-set-up") {
            return Err(FarHostError::NotSetUp {
                destination,
                tunnel,
            }
            .into());
        }
        let stopped: Vec<&str> = output.values("stopped").collect();
        let running: Vec<&str> = output.values("running").collect();
        let idle: Vec<String> = output
            .values("idle")
            .map(|unit| format!("{unit} starts on the first connection"))
            .collect();
        if let Some(missing) = output.value("no-key") {
            return Err(FarHostError::NotRunning {
                destination,
                tunnel,
                detail: format!("its key file {missing} is gone: {REPAIR_HINT}"),
            }
            .into());
        }
        if !stopped.is_empty() || running.is_empty() {
            let detail = if stopped.is_empty() {
                format!("set-up never got as far as starting it: {REPAIR_HINT}")
            } else {
                format!(
                    "{} (a reboot stops a daemon with a pid file): {REPAIR_HINT}",
                    stopped.join(", ")
                )
            };
            return Err(FarHostError::NotRunning {
                destination,
                tunnel,
                detail,
            }
            .into());
        }
        let running = running
            .into_iter()
            .map(str::to_owned)
            .chain(idle)
            .collect::<Vec<_>>()
            .join(", ");
        match self.request.tunnel.mode {
            Mode::Encrypt => {
                let outcome = self.connection_test()?;
                if !outcome.is_ok() {
                    let changed = matches!(
                        outcome,
                        ProbeOutcome::Failed(
                            DialFault::Handshake(_) | DialFault::Target(TargetFault::Refused(_))
                        )
                    );
                    return Err(FarHostError::TestFailed {
                        verdict: outcome.to_string(),
                        changed,
                    }
                    .into());
                }
                Ok(format!(
                    "far end running ({running}); connection test to {}: {outcome}",
                    self.request.tunnel.target
                ))
            }
            Mode::Decrypt | Mode::ReverseIn | Mode::ReverseOut => Ok(format!(
                "far end running ({running}); checked: its process is alive on {destination}. Not checked: the encrypted path from the far end's -e back to this machine ({}), which is tested by the first client that connects to {} on the far end",
                self.plan.target, self.plan.source
            )),
        }
    }

    fn connection_test(&self) -> Result<ProbeOutcome, FarEndError> {
        let spec = &self.request.tunnel;
        let invalid = |reason: String| -> FarEndError {
            LocalError::Tunnel {
                tunnel: spec.name.clone(),
                reason,
            }
            .into()
        };
        let valid = spec.validate().map_err(|p| {
            invalid(
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let request = ProbeRequest {
            target: valid.target,
            key: self.key()?.preshared(),
            forward_secrecy: spec.forward_secrecy,
            key_agreement: spec.key_agreement,
            timeout: valid.timeout,
            bind: valid.bind,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| invalid(format!("cannot start the connection test: {e}")))?;
        // No pool thread: one handshake computes its key pair inline.
        let pool = KeyPairPool::new(0);
        Ok(runtime.block_on(probe(&request, &pool)))
    }

    fn remove(&mut self) -> Result<String, FarEndError> {
        let home = self.home()?.to_owned();
        let (dir, manifest) = Layout::manifest_only(&home, &self.plan.slug);
        let listed = self.remote(&scripts::read_manifest(&dir, &manifest), None)?;
        if listed.has("not-set-up") {
            return Err(FarHostError::NotSetUp {
                destination: self.destination(),
                tunnel: self.plan.tunnel.clone(),
            }
            .into());
        }
        if !listed.success() || !listed.has("manifest-read") {
            return Err(self.command_failed("reading the far end's manifest", &listed));
        }
        let removal = Removal::from_manifest(listed.values("entry"), &home, &self.plan.slug);
        if self.request.action == FarEndAction::Repair && !removal.refused.is_empty() {
            // A repair undoes only to set up again: with lines nobody can vouch for, it
            // touches nothing at all.
            return Err(FarHostError::RepairRefused {
                destination: self.destination(),
                manifest,
                refused: removal.refused.join(", "),
            }
            .into());
        }
        let output = self.remote(&scripts::remove(&dir, &manifest, &removal), None)?;
        if !output.success() || !output.has("removed") {
            return Err(self.command_failed("removing the far end", &output));
        }
        let mut done: Vec<String> = output
            .values("stopped")
            .map(|s| format!("stopped {s}"))
            .collect();
        done.extend(output.values("deleted").map(|d| format!("deleted {d}")));
        done.extend(
            output
                .values("foreign")
                .map(|p| format!("left pid {p} alone (not the far end Sluice started)")),
        );
        if done.is_empty() {
            done.push("nothing was left to remove".into());
        }
        let done = done.join("; ");
        if !removal.refused.is_empty() {
            return Err(FarHostError::ManifestRefused {
                destination: self.destination(),
                manifest,
                refused: removal.refused.join(", "),
                done,
            }
            .into());
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set-up whose ssh would fail loudly if it ever ran: these requests must be
    /// refused before any command reaches a far end.
    fn setup(far_address: Option<&str>, destination: &str) -> FarEndRequest {
        FarEndRequest {
            action: FarEndAction::Setup,
            tunnel: TunnelSpec::new(
                "redis",
                Mode::Encrypt,
                "[127.0.0.1]:6379",
                "db.example.org:8025",
                KeyRef::File("/nonexistent/redis.key".into()),
            ),
            far_address: far_address.map(str::to_owned),
            this_host: "laptop".into(),
            key: None,
            ssh: SshClient::new(vec!["/nonexistent/ssh".into()], destination, 1),
            on_first_connection: false,
            local_sluiced: None,
            previous_key: None,
        }
    }

    fn refused(request: &FarEndRequest) -> String {
        let mut reports = Vec::new();
        let error = run_far_end(request, &mut |r| reports.push(r)).unwrap_err();
        assert!(
            matches!(
                error,
                FarEndError::Local(LocalError::Tunnel { .. } | LocalError::Destination(_))
            ),
            "{error:?}"
        );
        assert_eq!(reports.len(), 2, "only the probe ran: {reports:?}");
        error.to_string()
    }

    #[test]
    fn repair_takes_away_what_set_up_made_then_sets_it_up_again() {
        assert_eq!(
            FarEndAction::Repair.steps(),
            [
                FarEndStep::Probe,
                FarEndStep::Remove,
                FarEndStep::SendKey,
                FarEndStep::Install,
                FarEndStep::Start,
                FarEndStep::Verify
            ]
        );
        assert!(FarEndAction::Repair.needs_key() && !FarEndAction::Remove.needs_key());
    }

    #[test]
    fn only_a_stopped_or_changed_far_end_is_repairable() {
        let host = |e: FarHostError| FarEndError::FarHost(e);
        let stopped = host(FarHostError::NotRunning {
            destination: "db".into(),
            tunnel: "redis".into(),
            detail: "stopped".into(),
        });
        let test = |changed| {
            host(FarHostError::TestFailed {
                verdict: "Rejected: wrong key".into(),
                changed,
            })
        };
        assert!(stopped.repairable());
        assert!(test(true).repairable());
        assert!(!test(false).repairable(), "the network's doing");
        assert!(
            !host(FarHostError::NotSetUp {
                destination: "db".into(),
                tunnel: "redis".into()
            })
            .repairable()
        );
        assert!(
            !FarEndError::Ssh(SshError::PermissionDenied {
                destination: "db".into()
            })
            .repairable()
        );
        assert!(!FarEndError::Local(LocalError::Key("gone".into())).repairable());
    }

    /// A far end on this machine: an "ssh" that runs each script with `sh` in a home of
    /// its own, and an "spiped" whose daemon is a `sleep` naming the key on its command
    /// line (as the real one's does) and writing its pid file.
    #[cfg(unix)]
    struct LocalFarEnd {
        dir: tempfile::TempDir,
        home: std::path::PathBuf,
        ssh: std::path::PathBuf,
    }

    #[cfg(unix)]
    impl LocalFarEnd {
        fn new() -> LocalFarEnd {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            let home = dir.path().join("home");
            let bin = dir.path().join("bin");
            std::fs::create_dir_all(&home).unwrap();
            std::fs::create_dir_all(&bin).unwrap();
            let spiped = bin.join("spiped");
            std::fs::write(
                &spiped,
                r#"#!/bin/sh
if [ "$1" = -v ]; then echo "spiped 1.6.2"; exit 0; fi
while [ $# -gt 0 ]; do case "$1" in -p) P=$2; shift ;; -k) K=$2; shift ;; esac; shift; done
sh -c 'sleep 60' stand-in "$K" &
echo $! > "$P"
"#,
            )
            .unwrap();
            let ssh = dir.path().join("ssh");
            std::fs::write(
                &ssh,
                format!(
                    "#!/bin/sh\nfor last; do :; done\nexport HOME='{}' PATH='{}:/usr/bin:/bin'\nexec sh -c \"$last\"\n",
                    home.display(),
                    bin.display()
                ),
            )
            .unwrap();
            // An ordinary user without sudo or systemd, whatever this machine is: set-up
            // then chooses a daemon with a pid file, all of it in the home above.
            let mut programs = vec![spiped, ssh.clone()];
            for (name, script) in [
                (
                    "id",
                    "case \"$1\" in -un) echo farend ;; -u) echo 1000 ;; esac\n",
                ),
                ("sudo", "exit 1\n"),
                ("systemctl", "exit 1\n"),
                ("loginctl", "exit 1\n"),
            ] {
                let path = bin.join(name);
                std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
                programs.push(path);
            }
            for file in &programs {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            LocalFarEnd { dir, home, ssh }
        }

        fn sluice_dir(&self) -> std::path::PathBuf {
            self.home.join(".config/sluice-far-end")
        }

        /// What a per-user set-up of tunnel "redis" leaves, its daemon long gone, plus
        /// `extra` manifest lines.
        fn set_up_and_stopped(&self, extra: &str) {
            let dir = self.sluice_dir();
            std::fs::create_dir_all(&dir).unwrap();
            let d = dir.display();
            std::fs::write(dir.join("redis.key"), [1u8; 32]).unwrap();
            // No process has this pid (above the kernel's pid_max).
            std::fs::write(dir.join("redis.pid"), "99999999\n").unwrap();
            std::fs::write(dir.join("redis.log"), "").unwrap();
            std::fs::write(
                dir.join("redis.manifest"),
                format!(
                    "sudo\tno\nkey\t{d}/redis.key\nfile\t{d}/redis.key.tmp\npidfile\t{d}/redis.pid\nfile\t{d}/redis.log\n{extra}"
                ),
            )
            .unwrap();
            // Another tunnel's set-up, in the same directory.
            std::fs::write(dir.join("other.manifest"), "sudo\tno\n").unwrap();
        }

        /// A repair of the Decrypt tunnel "redis" (whose far end runs `-e`; its check
        /// needs no connection test), with a new key.
        fn repair(&self) -> (Result<(), FarEndError>, Vec<FarEndStepReport>) {
            let request = FarEndRequest {
                action: FarEndAction::Repair,
                tunnel: TunnelSpec::new(
                    "redis",
                    Mode::Decrypt,
                    "[127.0.0.1]:16379",
                    "[127.0.0.1]:6379",
                    KeyRef::File("/nonexistent/redis.key".into()),
                ),
                far_address: Some("[127.0.0.1]:6379".into()),
                this_host: "laptop".into(),
                key: Some(FarEndKey::new(Zeroizing::new(vec![2u8; 32]))),
                ssh: SshClient::new(vec![self.ssh.display().to_string()], "farend", 5),
                on_first_connection: false,
                local_sluiced: None,
                previous_key: None,
            };
            let mut reports = Vec::new();
            let result = run_far_end(&request, &mut |r| {
                if !matches!(r.outcome, FarEndStepOutcome::Running) {
                    reports.push(r)
                }
            });
            (result, reports)
        }

        fn daemon_pid(&self) -> Option<String> {
            std::fs::read_to_string(self.sluice_dir().join("redis.pid"))
                .ok()
                .map(|pid| pid.trim().to_owned())
                .filter(|pid| !pid.is_empty() && pid != "99999999")
        }
    }

    #[cfg(unix)]
    impl Drop for LocalFarEnd {
        fn drop(&mut self) {
            if let Some(pid) = self.daemon_pid() {
                let _ = std::process::Command::new("kill").arg(&pid).status();
            }
            let _ = &self.dir;
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_repair_puts_back_a_stopped_far_end_with_this_key() {
        let far = LocalFarEnd::new();
        far.set_up_and_stopped("");
        let (result, reports) = far.repair();
        assert!(result.is_ok(), "{result:?}\n{reports:#?}");
        let steps: Vec<FarEndStep> = reports.iter().map(|r| r.step).collect();
        assert_eq!(steps, FarEndAction::Repair.steps());
        let FarEndStepOutcome::Done(removed) = &reports[1].outcome else {
            panic!("{reports:?}");
        };
        assert!(removed.contains("redis.key"), "{removed}");
        let dir = far.sluice_dir();
        assert_eq!(std::fs::read(dir.join("redis.key")).unwrap(), [2u8; 32]);
        assert!(far.daemon_pid().is_some(), "a daemon runs again");
        assert!(
            dir.join("other.manifest").exists(),
            "another tunnel's set-up is left alone"
        );
        let manifest = std::fs::read_to_string(dir.join("redis.manifest")).unwrap();
        assert!(manifest.contains("pidfile\t"), "{manifest}");
    }

    #[cfg(unix)]
    #[test]
    fn a_repair_touches_nothing_when_the_manifest_lists_what_set_up_never_makes() {
        let far = LocalFarEnd::new();
        let stranger = far.dir.path().join("not-sluices");
        std::fs::write(&stranger, "keep me").unwrap();
        far.set_up_and_stopped(&format!("file\t{}\n", stranger.display()));
        let (result, reports) = far.repair();
        let Err(FarEndError::FarHost(FarHostError::RepairRefused { refused, .. })) = &result else {
            panic!("{result:?}\n{reports:#?}");
        };
        assert!(refused.contains("not-sluices"), "{refused}");
        assert_eq!(reports.len(), 2, "the probe, then the refusal: {reports:?}");
        let dir = far.sluice_dir();
        for kept in ["redis.key", "redis.pid", "redis.log", "redis.manifest"] {
            assert!(dir.join(kept).exists(), "{kept} was touched");
        }
        assert_eq!(std::fs::read(dir.join("redis.key")).unwrap(), [1u8; 32]);
        assert!(stranger.exists());
    }

    #[test]
    fn control_characters_never_reach_the_far_end() {
        // A far address that would end the unit file's ExecStart= line and start another.
        let message = refused(&setup(
            Some("/run/redis.sock\nExecStartPre=/bin/sh -c evil"),
            "db",
        ));
        assert!(
            message.contains(r#"the far end's -t: "/run/redis.sock\nExecStartPre=/bin/sh -c evil": an address cannot contain control characters (here a line feed at position 16): remove it"#),
            "{message}"
        );
        let mut decrypt = setup(None, "db");
        decrypt.tunnel.mode = Mode::Decrypt;
        decrypt.tunnel.listen = "[0.0.0.0]:8025".into();
        decrypt.this_host = "laptop\r".into();
        assert!(refused(&decrypt).contains("the far end's -t"));
        let message = refused(&setup(None, "db\nProxyCommand=x"));
        assert!(
            message.contains("an ssh destination cannot contain control characters"),
            "{message}"
        );
    }
}
