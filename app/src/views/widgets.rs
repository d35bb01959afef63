//! Small pieces several views share: labelled form rows, field errors, banners, a
//! tunnel's role, state and far-end health in words, test-connection verdicts. Sibling
//! views import these, never each other.

use egui::{Color32, RichText};
use sluice_engine::{FarEndAction, FarEndStepOutcome, Mode};

use crate::error::KeychainUnavailable;
use crate::format;
use crate::model::{FarEndHealth, FarEndRun, Model, Phase, ProbeVerdict, RotationStep};
use crate::theme;

/// A label and, in the next grid column, the widget `add` makes, named by the label for
/// screen readers (and tests). Returns the widget's response.
pub fn labelled_row(
    ui: &mut egui::Ui,
    label: &str,
    help: &str,
    add: impl FnOnce(&mut egui::Ui) -> egui::Response,
) -> egui::Response {
    let label_response = ui.label(label).on_hover_text(help);
    let response = add(ui).labelled_by(label_response.id).on_hover_text(help);
    ui.end_row();
    response
}

/// A field's problem, under it, in red, on one line (the whole text on hover). The row
/// is there even with no problem, so a form keeps its size and its fields stay under the
/// pointer while problems come and go.
pub fn field_error(ui: &mut egui::Ui, problem: Option<&String>) {
    ui.label("");
    match problem {
        Some(problem) => {
            ui.add(egui::Label::new(RichText::new(problem).color(theme::ERROR).small()).truncate())
                .on_hover_text(problem);
        }
        None => {
            ui.label(RichText::new(" ").small());
        }
    }
    ui.end_row();
}

/// Why there is no keychain and what Sluice does instead.
pub fn keychain_note(ui: &mut egui::Ui, why: &KeychainUnavailable) {
    ui.label(RichText::new("No keychain available").strong());
    ui.label(why.to_string());
    ui.label("Keys are kept as key files instead (mode 0600); tunnels refer to them by path.");
}

/// A coloured box with text, for messages that must not be missed.
pub fn banner(ui: &mut egui::Ui, color: Color32, add: impl FnOnce(&mut egui::Ui)) {
    egui::Frame::new()
        .fill(color.gamma_multiply(0.15))
        .stroke(egui::Stroke::new(1.0, color))
        .corner_radius(4)
        .inner_margin(8)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            add(ui);
        });
}

/// The verdict of a test connection, or that one is running.
pub fn probe_result(ui: &mut egui::Ui, probe: Option<&ProbeVerdict>) {
    match probe {
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("testing…");
            });
        }
        Some(verdict) => {
            let color = if verdict.is_ok() {
                theme::OK
            } else {
                theme::ERROR
            };
            ui.label(RichText::new(verdict.to_string()).color(color));
        }
    }
}

pub fn role_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Encrypt => "Encrypt",
        Mode::Decrypt => "Decrypt",
        Mode::ReverseIn => "Reverse in",
        Mode::ReverseOut => "Reverse out",
    }
}

/// The tunnel's phase in words, and its colour: what the list and the detail panel show.
pub fn state_words(model: &Model, name: &str) -> (String, egui::Color32) {
    match model.phase(name) {
        Phase::Stopped => ("stopped".into(), theme::MUTED),
        Phase::LoadingKey => ("loading key…".into(), theme::MUTED),
        Phase::Starting => ("starting…".into(), theme::MUTED),
        // A reverse-out end listens nowhere: it dials the far end and keeps connections
        // ready there, so "listening" would send the user looking for a port.
        Phase::Running { connections: 0 }
            if model
                .tunnel(name)
                .is_some_and(|t| t.mode == Mode::ReverseOut) =>
        {
            match model.status(name).map_or(0, |s| s.counters.reverse_ready) {
                0 => ("dialing the far end…".into(), theme::MUTED),
                ready => (
                    format!("connected to the far end, {ready} ready"),
                    theme::OK,
                ),
            }
        }
        Phase::Running { connections } => match connections {
            0 => ("listening".into(), theme::OK),
            1 => ("1 active connection".into(), theme::OK),
            n => (format!("{n} active connections"), theme::OK),
        },
        Phase::Failing => {
            let why = model
                .status(name)
                .and_then(|s| s.counters.last_error.as_ref())
                .map_or_else(String::new, |last| format!(": {}", last.fault));
            (format!("failing{why}"), theme::ERROR)
        }
        Phase::Stopping { remaining } => (format!("stopping, {remaining} finishing"), theme::WARN),
        Phase::Failed(fault) => (format!("error: {fault}"), theme::ERROR),
    }
}

/// The far end's health in a few words, and its colour, for the list and the detail
/// panel: "ok, 12 ms", "far end down since 14:02: nothing listening at db:8025",
/// "checking…"; `None` when there is nothing to say (see [`FarEndHealth::Unchecked`]).
pub fn far_end_words(model: &Model, name: &str) -> Option<(String, Color32)> {
    match model.far_end_health(name) {
        FarEndHealth::Unchecked => None,
        FarEndHealth::Checking => Some(("checking…".into(), theme::MUTED)),
        FarEndHealth::Up { round_trip, .. } => {
            Some((format!("ok, {}", format::duration(round_trip)), theme::OK))
        }
        FarEndHealth::Down { since, fault, .. } => {
            let target = model.tunnel(name).map_or("", |t| t.target.as_str());
            Some((
                format!(
                    "far end down since {}: {}",
                    format::local_minute(since),
                    format::down_cause_at(fault.cause(), target)
                ),
                theme::ERROR,
            ))
        }
    }
}

/// The steps of a far-end action as they went, and its outcome in a sentence.
pub fn far_end_progress(ui: &mut egui::Ui, run: &FarEndRun) {
    for report in &run.steps {
        let (mark, color, text) = match &report.outcome {
            FarEndStepOutcome::Running => ("…", theme::MUTED, "running".to_owned()),
            FarEndStepOutcome::Done(what) => ("✔", theme::OK, what.clone()),
            FarEndStepOutcome::Failed(why) => ("✖", theme::ERROR, why.to_string()),
        };
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(format!("{mark} {}:", report.step))
                    .color(color)
                    .strong(),
            );
            ui.label(RichText::new(text).color(color));
        });
    }
    // A failure before any step ran (the key, the ssh command) has no step line.
    if let Some(Err(why)) = &run.finished
        && !run
            .steps
            .iter()
            .any(|r| matches!(r.outcome, FarEndStepOutcome::Failed(_)))
    {
        ui.label(RichText::new(format!("✖ {why}")).color(theme::ERROR));
    }
    if let Some(Ok(())) = &run.finished {
        let done = match (&run.rotation, run.action) {
            (Some(RotationStep::Start { .. }), _) => format!(
                "The far end on {} has the new key, and this end uses it.",
                run.destination
            ),
            (Some(RotationStep::Finish), _) => format!(
                "The far end on {} no longer lets the old key in: the rotation is finished.",
                run.destination
            ),
            (None, action) => action_done(action, &run.destination),
        };
        ui.label(RichText::new(done).color(theme::OK));
    }
}

/// What a finished far-end action did, in a sentence.
fn action_done(action: FarEndAction, destination: &str) -> String {
    match action {
        FarEndAction::Setup => format!("The far end is set up on {destination}."),
        FarEndAction::Check => format!("The far end on {destination} works."),
        FarEndAction::Repair => {
            format!("The far end on {destination} is repaired: set up again, and it works.")
        }
        FarEndAction::Remove => format!("The far end on {destination} is removed."),
    }
}
