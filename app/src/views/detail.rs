//! The selected tunnel: its actions, live traffic (its far end's health, chart, totals,
//! connections against the limit, failures by cause, the event log) with the health
//! checks' latency beside the traffic chart, its connection history (searchable, as CSV),
//! and the far end (set up, check, repair, remove; the commands to run it by hand).

use std::time::SystemTime;

use egui::RichText;
use egui_plot::{HoverPosition, Legend, Line, MarkerShape, Plot, PlotPoints, Points};
use sluice_engine::{CheckSample, FarEndAction, HandshakeFailure, Mode, RateSample, TunnelSpec};

use crate::command::{FarEndCommand, KeyCommand, TunnelCommand, UiCommand, ViewCommand};
use crate::connections::{self, KEPT_PER_TUNNEL};
use crate::format;
use crate::model::{
    DetailTab, FarEndHealth, FarEndRun, Model, ProbeKey, UiState, ViewState, in_rotation,
};
use crate::peer::PeerForm;
use crate::theme;
use crate::views::History;
use crate::views::widgets::{far_end_progress, probe_result, role_label, state_words};

/// How much rate history the chart shows.
const CHART_SECONDS: usize = 300;

pub fn show(
    ui: &mut egui::Ui,
    model: &Model,
    state: &UiState,
    view: &mut ViewState,
    name: &str,
    history: &History,
    out: &mut Vec<UiCommand>,
) {
    let Some(spec) = model.tunnel(name) else {
        return;
    };
    let name = &spec.name;
    ui.add_space(6.0);
    ui.heading(&spec.name);
    ui.label(format!(
        "{}: {}  ➡  {}",
        role_label(spec.mode),
        spec.listen,
        spec.target
    ));
    let (words, color) = state_words(model, name);
    ui.label(RichText::new(words).color(color));
    ui.horizontal_wrapped(|ui| {
        if model.is_running(name) {
            if ui.button("■ Stop").clicked() {
                out.push(TunnelCommand::Stop(name.clone()).into());
            }
        } else if ui.button("▶ Start").clicked() {
            out.push(TunnelCommand::Start(name.clone()).into());
        }
        if ui.button("Edit").clicked() {
            out.push(TunnelCommand::Edit(name.clone()).into());
        }
        if ui.button("Duplicate").clicked() {
            out.push(TunnelCommand::Duplicate(name.clone()).into());
        }
        if ui.button("Delete").clicked() {
            out.push(TunnelCommand::AskDelete(name.clone()).into());
        }
        if ui
            .button("Share…")
            .on_hover_text(
                "Seal this tunnel and its key for a teammate, with a passphrase shown once",
            )
            .clicked()
        {
            out.push(KeyCommand::AskShareTunnel(name.clone()).into());
        }
        if PeerForm::of_pair(name, &model.files.tunnels, None).is_some()
            && ui
                .button("Peer settings…")
                .on_hover_text("The pair's Akka and Pekko settings, to copy again")
                .clicked()
        {
            out.push(TunnelCommand::ShowPeer(name.clone()).into());
        }
        if spec.mode == Mode::Encrypt
            && ui
                .button("Test connection")
                .on_hover_text("Connect to the far end and run the handshake, without sending data")
                .clicked()
        {
            out.push(TunnelCommand::Test(name.clone()).into());
        }
    });
    if let Some(probe) = model.mirror.probes.get(&ProbeKey::Tunnel(name.clone())) {
        probe_result(ui, probe.as_ref());
    }
    ui.separator();
    ui.horizontal(|ui| {
        if ui
            .selectable_label(state.tab == DetailTab::Traffic, "Traffic")
            .clicked()
        {
            out.push(ViewCommand::ShowTab(DetailTab::Traffic).into());
        }
        if ui
            .selectable_label(state.tab == DetailTab::Connections, "History")
            .clicked()
        {
            out.push(ViewCommand::ShowTab(DetailTab::Connections).into());
        }
        if ui
            .selectable_label(state.tab == DetailTab::FarEnd, "Far end")
            .clicked()
        {
            out.push(ViewCommand::ShowTab(DetailTab::FarEnd).into());
        }
    });
    ui.separator();
    match state.tab {
        DetailTab::Traffic => traffic(ui, model, spec, history),
        DetailTab::Connections => connections_tab(ui, model, view, name, out),
        DetailTab::FarEnd => far_end_tab(ui, model, state, spec, out),
    }
}

/// The connections that ended, newest first: when, from where (and which client a PROXY
/// header named), for how long, how much each way and how it ended; a search over all of
/// it, and the connections it shows as CSV.
fn connections_tab(
    ui: &mut egui::Ui,
    model: &Model,
    view: &mut ViewState,
    name: &str,
    out: &mut Vec<UiCommand>,
) {
    let log = &model.mirror.connections;
    ui.horizontal(|ui| {
        let label = ui.label("Search connections");
        ui.add(
            egui::TextEdit::singleline(&mut view.history_search)
                .hint_text("address, outcome, cause (wrong_key)…")
                .desired_width(240.0),
        )
        .labelled_by(label.id);
        if !view.dialogs_unavailable
            && ui
                .button("Export CSV…")
                .on_hover_text("Save the connections listed below as a CSV file")
                .clicked()
        {
            out.push(TunnelCommand::AskExportHistory(name.to_owned()).into());
        }
    });
    if view.dialogs_unavailable {
        ui.horizontal(|ui| {
            let label = ui.label("Save the CSV as");
            ui.add(egui::TextEdit::singleline(&mut view.history_csv_path).desired_width(240.0))
                .labelled_by(label.id);
            let path = view.history_csv_path.trim();
            if ui
                .add_enabled(!path.is_empty(), egui::Button::new("Export CSV"))
                .clicked()
            {
                out.push(TunnelCommand::ExportHistoryTo(name.to_owned(), path.into()).into());
            }
        });
    }
    let shown: Vec<_> = log
        .newest_first(name)
        .filter(|record| connections::matches(record, &view.history_search))
        .collect();
    let total = log.len(name);
    ui.label(
        RichText::new(if total == KEPT_PER_TUNNEL {
            format!(
                "{} of the last {total} connections (older ones are not kept here)",
                shown.len()
            )
        } else {
            format!(
                "{} of {total} connections since Sluice started",
                shown.len()
            )
        })
        .color(theme::MUTED),
    );
    if shown.is_empty() {
        ui.label(
            RichText::new(if total == 0 {
                "No connection has ended yet."
            } else {
                "No connection matches the search."
            })
            .color(theme::MUTED),
        );
        return;
    }
    let row_height = ui.text_style_height(&egui::TextStyle::Monospace);
    egui::ScrollArea::vertical()
        .id_salt("connections")
        .auto_shrink(false)
        .show_rows(ui, row_height, shown.len(), |ui, rows| {
            for record in &shown[rows] {
                let (outcome, cause) = record.outcome.words();
                let color = if outcome == "ok" {
                    ui.visuals().text_color()
                } else {
                    theme::ERROR
                };
                let client = record
                    .client
                    .map(|c| format!(" for {c}"))
                    .unwrap_or_default();
                let cause = cause.map(|c| format!(" ({c})")).unwrap_or_default();
                ui.label(
                    RichText::new(format!(
                        "{}  {}{client}  {}  ↑{} ↓{}  {outcome}{cause}",
                        format::local_time(record.ended),
                        record.peer,
                        format::duration(record.duration),
                        format::bytes(record.bytes_up),
                        format::bytes(record.bytes_down),
                    ))
                    .monospace()
                    .color(color),
                );
            }
        });
}

/// What the health checks know of the far end, in full: the failed check's sentence and
/// when the spell began, or the round trip and what a Sluice far end says of its target.
fn far_end_health(ui: &mut egui::Ui, model: &Model, spec: &TunnelSpec) {
    let name = &spec.name;
    let (text, color) = match model.far_end_health(name) {
        // A stopped (or starting) tunnel has no far end to speak of yet.
        FarEndHealth::Unchecked if spec.health_check_secs.is_some() || !model.is_running(name) => {
            return;
        }
        FarEndHealth::Unchecked => (
            "Far end: not checked (health checks are off for this tunnel; Edit turns them on)."
                .to_owned(),
            theme::MUTED,
        ),
        FarEndHealth::Checking => (
            "Far end: the first check is running…".to_owned(),
            theme::MUTED,
        ),
        FarEndHealth::Up {
            round_trip,
            checked,
            far_target,
        } => (
            format!(
                "Far end ok: handshake in {} (checked {}); {}.",
                format::duration(round_trip),
                format::local_time(checked),
                format::far_target(far_target)
            ),
            theme::OK,
        ),
        FarEndHealth::Down {
            since,
            checked,
            fault,
            last_round_trip,
        } => {
            let last = last_round_trip.map_or_else(String::new, |rt| {
                format!(" The last good handshake took {}.", format::duration(rt))
            });
            (
                format!(
                    "Far end down since {} (last checked {}): {fault}.{last} {}",
                    format::local_time(since),
                    format::local_time(checked),
                    format::down_advice(fault.cause())
                ),
                theme::ERROR,
            )
        }
    };
    ui.label(RichText::new(text).color(color));
}

fn traffic(ui: &mut egui::Ui, model: &Model, spec: &TunnelSpec, history: &History) {
    let name = &spec.name;
    let Some(status) = model.status(name) else {
        ui.label(
            RichText::new("Not started yet: start the tunnel to see its traffic.")
                .color(theme::MUTED),
        );
        return;
    };
    // Here rather than above the tabs: the health's words change length as checks come
    // and go, and the buttons above must not move under the pointer.
    if spec.mode == Mode::Encrypt {
        far_end_health(ui, model, spec);
        ui.add_space(4.0);
    }
    let c = &status.counters;
    egui::Grid::new("totals")
        .num_columns(2)
        .spacing([16.0, 4.0])
        .show(ui, |ui| {
            ui.label("Now");
            ui.label(format!(
                "⬆ {}   ⬇ {}",
                format::rate(c.rate_up),
                format::rate(c.rate_down)
            ));
            ui.end_row();
            ui.label("Total");
            ui.label(format!(
                "⬆ {}   ⬇ {}",
                format::bytes(c.bytes_up),
                format::bytes(c.bytes_down)
            ));
            ui.end_row();
            ui.label("Connections");
            let limit = match status.max_connections {
                0 => "unlimited".to_owned(),
                n => n.to_string(),
            };
            ui.label(format!(
                "{} active of {limit}, {} since start",
                c.active_connections, c.total_connections
            ));
            ui.end_row();
            // An accepting end counts its clients' handshakes per key, so the user sees
            // when the last client of a rotation's previous key is gone.
            if matches!(spec.mode, Mode::Decrypt | Mode::ReverseIn) {
                let [current, previous] = c.handshakes;
                ui.label("Handshakes by key")
                    .on_hover_text("Completed handshakes since start, by the key the client used");
                if spec.previous_key.is_some() || previous > 0 {
                    let words = format!(
                        "{current} with the current key, {previous} with the previous key"
                    );
                    let hint = if spec.previous_key.is_some() {
                        "When the previous key's count stops growing, no client uses it any more: Finish rotation (Far end tab), or Edit and set the previous key to none."
                    } else {
                        "The previous key is no longer accepted."
                    };
                    ui.label(words).on_hover_text(hint);
                } else {
                    ui.label(format!("{current} with the current key"));
                }
                ui.end_row();
            }
            let failures = c.total_handshake_failures();
            ui.label("Handshake failures");
            if failures == 0 {
                ui.label("none");
            } else {
                let parts: Vec<String> = HandshakeFailure::ALL
                    .iter()
                    .filter(|cause| c.handshake_failures_for(**cause) > 0)
                    .map(|cause| format!("{} {}", c.handshake_failures_for(*cause), cause.label()))
                    .collect();
                ui.label(RichText::new(parts.join(", ")).color(theme::ERROR));
            }
            ui.end_row();
            ui.label("Target unreachable");
            ui.label(c.target_failures.to_string());
            ui.end_row();
            ui.label("Rejected packets");
            ui.label(c.data_rejections.to_string());
            ui.end_row();
            if c.limit_reached > 0 {
                ui.label("Limit reached");
                ui.label(RichText::new(format!("{} times", c.limit_reached)).color(theme::WARN));
                ui.end_row();
            }
            if let Some(last) = &c.last_error {
                ui.label("Last error");
                ui.label(
                    RichText::new(format!("{}: {}", format::local_time(last.at), last.fault))
                        .color(theme::ERROR),
                );
                ui.end_row();
            }
        });
    ui.add_space(6.0);
    // The event log under the charts stays in view in a small window.
    let height = (ui.available_height() * 0.4).clamp(90.0, 170.0);
    let checked = spec.mode == Mode::Encrypt
        && (spec.health_check_secs.is_some() || !history.checks.is_empty());
    if checked {
        ui.columns(2, |columns| {
            chart(&mut columns[0], &history.rates, height);
            latency_chart(&mut columns[1], &history.checks, height);
        });
    } else {
        chart(ui, &history.rates, height);
    }
    ui.add_space(6.0);
    ui.label(RichText::new("Events (newest first)").strong());
    egui::ScrollArea::vertical()
        .id_salt("log")
        .auto_shrink(false)
        .show(ui, |ui| match model.mirror.logs.get(name) {
            Some(log) if !log.is_empty() => {
                for event in log.iter().rev() {
                    let color = if event.kind.is_problem() {
                        theme::ERROR
                    } else {
                        ui.visuals().text_color()
                    };
                    ui.label(
                        RichText::new(format!("{}  {}", format::local_time(event.at), event.kind))
                            .color(color),
                    );
                }
            }
            _ => {
                ui.label(RichText::new("No events yet.").color(theme::MUTED));
            }
        });
}

/// Bytes per second each way over the last minutes; x is seconds before now.
fn chart(ui: &mut egui::Ui, history: &[RateSample], height: f32) {
    let recent = &history[history.len().saturating_sub(CHART_SECONDS)..];
    let newest = recent.last().map_or(0, |s| s.unix_secs);
    let points = |pick: fn(&RateSample) -> f64| -> Vec<[f64; 2]> {
        recent
            .iter()
            .map(|s| [s.unix_secs as f64 - newest as f64, pick(s)])
            .collect()
    };
    Plot::new("rates")
        .height(height)
        .legend(small_legend())
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .include_y(0.0)
        .include_x(-(CHART_SECONDS as f64))
        .include_x(0.0)
        .x_axis_label("seconds ago")
        .y_axis_formatter(|mark, _| format::rate(mark.value))
        .label_formatter(|hover| match hover {
            HoverPosition::NearDataPoint {
                plot_name,
                position,
                ..
            } => Some(format!(
                "{plot_name}: {} ({:.0} s ago)",
                format::rate(position.y),
                -position.x
            )),
            HoverPosition::Elsewhere { .. } => None,
        })
        .show(ui, |plot| {
            plot.line(Line::new("⬆ up", PlotPoints::from(points(|s| s.up))).color(theme::UP));
            plot.line(Line::new("⬇ down", PlotPoints::from(points(|s| s.down))).color(theme::DOWN));
        });
}

/// The health checks' handshake times over the history the engine keeps; x is seconds
/// before now. A failed check breaks the line and shows as a red cross on the axis.
fn latency_chart(ui: &mut egui::Ui, checks: &[CheckSample], height: f32) {
    let now = SystemTime::now();
    let ago = |sample: &CheckSample| -> f64 {
        -now.duration_since(sample.at)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    // Consecutive good checks make one line; a failed one ends it.
    let mut runs: Vec<Vec<[f64; 2]>> = vec![Vec::new()];
    let mut failed = Vec::new();
    for sample in checks {
        match sample.round_trip {
            Some(rt) => {
                if let Some(run) = runs.last_mut() {
                    run.push([ago(sample), rt.as_secs_f64() * 1000.0]);
                }
            }
            None => {
                failed.push([ago(sample), 0.0]);
                runs.push(Vec::new());
            }
        }
    }
    // The whole history the engine keeps (hours at the default interval), but at least a
    // minute, so a few checks do not fill the width.
    let oldest = checks.first().map_or(0.0, ago).min(-60.0);
    Plot::new("checks")
        .height(height)
        .legend(small_legend())
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .include_y(0.0)
        .include_y(1.0)
        .include_x(oldest)
        .include_x(0.0)
        .x_axis_label("far-end checks, time ago")
        .x_axis_formatter(|mark, _| ago_label(-mark.value))
        .y_axis_formatter(|mark, _| format!("{} ms", mark.value))
        .label_formatter(|hover| match hover {
            HoverPosition::NearDataPoint {
                plot_name,
                position,
                ..
            } if *plot_name == FAILED_CHECK => {
                Some(format!("{FAILED_CHECK} ({} ago)", ago_label(-position.x)))
            }
            HoverPosition::NearDataPoint { position, .. } => Some(format!(
                "handshake {:.1} ms ({} ago)",
                position.y,
                ago_label(-position.x)
            )),
            HoverPosition::Elsewhere { .. } => None,
        })
        .show(ui, |plot| {
            for (i, run) in runs.into_iter().filter(|r| !r.is_empty()).enumerate() {
                plot.line(
                    Line::new(ROUND_TRIP, PlotPoints::from(run))
                        .id(("check run", i))
                        .color(theme::OK),
                );
            }
            if !failed.is_empty() {
                plot.points(
                    Points::new(FAILED_CHECK, PlotPoints::from(failed))
                        .shape(MarkerShape::Cross)
                        .radius(5.0)
                        .color(theme::ERROR),
                );
            }
        });
}

/// A legend in small type: two charts share the panel's width.
fn small_legend() -> Legend {
    Legend::default()
        .text_style(egui::TextStyle::Small)
        .background_alpha(0.5)
}

const ROUND_TRIP: &str = "handshake";
const FAILED_CHECK: &str = "failed check";

/// Seconds before now as the axis says it: "45 s", "12 min", "3 h".
fn ago_label(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

fn far_end_tab(
    ui: &mut egui::Ui,
    model: &Model,
    state: &UiState,
    spec: &TunnelSpec,
    out: &mut Vec<UiCommand>,
) {
    let far = model.far_address(state, spec);
    ui.horizontal(|ui| {
        let label = ui.label(sluice_engine::far_address_label(spec.mode));
        let mut text = far.clone();
        if ui
            .add(egui::TextEdit::singleline(&mut text).desired_width(220.0))
            .labelled_by(label.id)
            .changed()
        {
            out.push(FarEndCommand::SetFarAddress(spec.name.clone(), text).into());
        }
    });
    ui.add_space(4.0);
    over_ssh(ui, model, state, spec, out);
    ui.separator();

    ui.label(match spec.mode {
        Mode::Encrypt => {
            "Or run this on the server by hand, next to the service (stock spiped or sluiced):"
        }
        Mode::Decrypt => {
            "Or run this by hand on the machine whose clients use this tunnel (stock spiped or sluiced):"
        }
        Mode::ReverseOut => {
            "Or run this by hand on the reachable machine whose clients use this tunnel (sluiced):"
        }
        Mode::ReverseIn => {
            "Or run this by hand on the machine with the service, which dials this one (sluiced):"
        }
    });
    let commands = sluice_engine::far_end_commands(spec, &far, &model.environment.host_name);
    let lines = commands
        .spiped
        .iter()
        .map(|line| ("spiped", line))
        .chain(std::iter::once(("sluiced", &commands.sluiced)));
    for (what, line) in lines {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.label(RichText::new(what).strong());
            if ui.button(format!("📋 Copy {what} command")).clicked() {
                out.push(ViewCommand::Copy(line.clone()).into());
            }
        });
        egui::Frame::new()
            .fill(ui.visuals().extreme_bg_color)
            .inner_margin(6)
            .corner_radius(4)
            .show(ui, |ui| {
                ui.add(egui::Label::new(RichText::new(line).monospace()).selectable(true));
            });
    }
    ui.add_space(4.0);
    for note in &commands.notes {
        ui.label(RichText::new(note).color(theme::MUTED));
    }
    if let Some(key) = model.files.keys.for_ref(&spec.key) {
        ui.label(format!(
            "Key fingerprint (compare with sluiced --fingerprint on the far end): {}",
            key.fingerprint
        ));
    }
}

/// The far end over ssh: where, the three actions (and Repair when Check found the far end
/// stopped or changed), and the steps of the last one.
fn over_ssh(
    ui: &mut egui::Ui,
    model: &Model,
    state: &UiState,
    spec: &TunnelSpec,
    out: &mut Vec<UiCommand>,
) {
    let run = model.mirror.far_end_runs.get(&spec.name);
    let busy = run.is_some_and(FarEndRun::running);
    let destination = model.ssh_destination(state, spec);
    ui.horizontal(|ui| {
        let label = ui.label("SSH destination:");
        let mut text = destination.clone();
        let field = ui.add_enabled(
            !busy,
            egui::TextEdit::singleline(&mut text)
                .hint_text("user@host or an alias")
                .desired_width(180.0),
        );
        let field = field.labelled_by(label.id);
        if field.changed() {
            out.push(FarEndCommand::SetSshDestination(spec.name.clone(), text).into());
        }
        if !model.environment.ssh_hosts.is_empty() {
            ui.add_enabled_ui(!busy, |ui| {
                ui.menu_button("Known hosts", |ui| {
                    for host in &model.environment.ssh_hosts {
                        if ui.button(host).clicked() {
                            out.push(
                                FarEndCommand::SetSshDestination(spec.name.clone(), host.clone())
                                    .into(),
                            );
                            ui.close();
                        }
                    }
                });
            });
        }
    });
    // Only a far end that listens can wait for its first client. A far end already set
    // up changes at its next set-up or repair.
    if matches!(spec.mode, Mode::Encrypt | Mode::Decrypt) {
        let mut on = model.on_first_connection(state, spec);
        let toggle = ui
            .add_enabled(
                !busy,
                egui::Checkbox::new(&mut on, "Start on first connection"),
            )
            .on_hover_text(
                "systemd holds the far end's port and starts sluiced there when the first client connects (needs sluiced and systemd on the far end); applies at the next Set up or Repair",
            );
        if toggle.changed() {
            out.push(FarEndCommand::SetOnFirstConnection(spec.name.clone(), on).into());
        }
    }
    if let Some(record) = &spec.far_end {
        let when = if record.on_first_connection {
            ", started on its first connection"
        } else {
            ""
        };
        ui.label(
            RichText::new(format!(
                "Set up on {} (far end {}{when}).",
                record.ssh, record.far_address
            ))
            .color(theme::MUTED),
        );
    }
    let ready = !busy && !destination.trim().is_empty();
    ui.horizontal(|ui| {
        for (action, label, hint) in [
            (
                FarEndAction::Setup,
                "Set up",
                "Send the key over ssh and start spiped or sluiced on the far end",
            ),
            (
                FarEndAction::Check,
                "Check",
                "See that the far end runs, and test the tunnel through it",
            ),
            (
                FarEndAction::Remove,
                "Remove",
                "Stop what Set up started there and delete the key file it wrote",
            ),
        ] {
            if ui
                .add_enabled(ready, egui::Button::new(label))
                .on_hover_text(hint)
                .clicked()
            {
                out.push(FarEndCommand::Run(spec.name.clone(), action).into());
            }
        }
        if busy {
            ui.spinner();
        }
    });
    if spec.far_end.is_some() {
        rotation(ui, model, spec, busy, out);
    }
    let Some(run) = run else {
        return;
    };
    far_end_progress(ui, run);
    // Check (or a repair that did not take) found what set-up made stopped or changed:
    // one click puts it back.
    if let Some(Err(why)) = &run.finished
        && matches!(run.action, FarEndAction::Check | FarEndAction::Repair)
        && why.repairable()
    {
        ui.add_space(4.0);
        ui.horizontal_wrapped(|ui| {
            let hint = "Stop and delete exactly what Set up made on the far end (as listed in its manifest there), then set it up again with this tunnel's key, and check it";
            if ui
                .add_enabled(!busy, egui::Button::new("Repair"))
                .on_hover_text(hint)
                .clicked()
            {
                out.push(FarEndCommand::Run(spec.name.clone(), FarEndAction::Repair).into());
            }
            ui.label(
                RichText::new(format!(
                    "The far end on {} is stopped or changed: Repair puts back what Set up made there, and touches nothing else.",
                    run.destination
                ))
                .color(theme::WARN),
            );
        });
    }
}

/// Rotate key, or, while a rotation is under way, what still lets the old key in, the
/// handshakes by key where this end counts them, and Finish rotation.
fn rotation(
    ui: &mut egui::Ui,
    model: &Model,
    spec: &TunnelSpec,
    busy: bool,
    out: &mut Vec<UiCommand>,
) {
    ui.add_space(4.0);
    if !in_rotation(spec) {
        let hint = "Generate a new key, install it on the far end over ssh (a far end that accepts connections keeps letting the old key in until Finish rotation; it needs sluiced, copied there if missing), then switch this end to it";
        if ui
            .add_enabled(!busy, egui::Button::new("Rotate key…"))
            .on_hover_text(hint)
            .clicked()
        {
            out.push(FarEndCommand::Rotate(spec.name.clone()).into());
        }
        return;
    }
    let (where_, counts) = if spec.previous_key.is_some() {
        let counts = model.status(&spec.name).map(|s| {
            let [current, previous] = s.counters.handshakes;
            format!(" Handshakes since start: {current} with the new key, {previous} with the old.")
        });
        ("this end", counts.unwrap_or_default())
    } else {
        let counts = " The far end's sluiced counts handshakes per key (sluice_handshakes_total on its --metrics).";
        ("the far end", counts.to_owned())
    };
    ui.horizontal_wrapped(|ui| {
        ui.label(
            RichText::new(format!(
                "Rotation under way: {where_} still lets the old key in, so clients not yet switched get through.{counts}"
            ))
            .color(theme::WARN),
        );
        if ui
            .add_enabled(!busy, egui::Button::new("Finish rotation"))
            .on_hover_text("Stop letting the old key in (on the far end over ssh, or here), once no client uses it")
            .clicked()
        {
            out.push(FarEndCommand::FinishRotation(spec.name.clone()).into());
        }
    });
}
