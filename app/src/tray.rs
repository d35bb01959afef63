//! What the tray icon shows and what its menu can ask for, as plain data: the app builds
//! a [`TraySnapshot`] from its model, `platform` draws it as a StatusNotifierItem (Linux)
//! and sends back [`TrayAction`]s, which the app carries out like any command.

/// The icon's state at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrayHealth {
    /// Nothing runs.
    Idle,
    /// Something runs and nothing fails.
    Running,
    /// At least one tunnel failed.
    Failed,
    /// Nothing failed, but a running tunnel's far end is down (its health checks say so).
    FarEndDown,
}

impl TrayHealth {
    /// Whether the icon asks for attention (StatusNotifierItem `NeedsAttention`).
    pub fn needs_attention(self) -> bool {
        matches!(self, TrayHealth::Failed | TrayHealth::FarEndDown)
    }
}

/// One tunnel in the menu, or one pair (Connect to a peer) with its two directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrayTunnel {
    /// The tunnel its Start and Stop name (for a pair: its forward half; the app starts
    /// and stops both halves of a pair together).
    pub name: String,
    /// What the menu and tooltip call it: the tunnel's name, or the pair's.
    pub label: String,
    /// Its state in a word or two ("running", "stopped", "failed").
    pub state: String,
    pub running: bool,
    /// It could not start, or its connections fail (either direction of a pair).
    pub failure: bool,
    /// Its far end is down: why, in a few words ("nothing listening").
    pub far_end_down: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraySnapshot {
    pub health: TrayHealth,
    pub tunnels: Vec<TrayTunnel>,
}

impl TraySnapshot {
    /// The tooltip and title: how many tunnels run, whether one failed, and which far end
    /// is down and why.
    pub fn summary(&self) -> String {
        let running = self.tunnels.iter().filter(|t| t.running).count();
        match self.health {
            TrayHealth::Failed => format!("Sluice: a tunnel failed ({running} running)"),
            TrayHealth::FarEndDown => {
                let down: Vec<String> = self.tunnels.iter().filter_map(far_end_line).collect();
                match down.as_slice() {
                    [one] => format!("Sluice: {one}"),
                    _ => format!("Sluice: {} far ends down ({running} running)", down.len()),
                }
            }
            TrayHealth::Running => format!("Sluice: {running} running"),
            TrayHealth::Idle => "Sluice: no tunnel running".to_owned(),
        }
    }

    /// The tooltip's text under the summary: one line per tunnel that needs attention,
    /// naming it and why ("redis: far end down: nothing listening"); empty when none does.
    pub fn details(&self) -> String {
        let lines: Vec<String> = self
            .tunnels
            .iter()
            .flat_map(|t| {
                let failed = t
                    .failure
                    .then(|| format!("{}: {}", one_line(&t.label), t.state));
                failed.into_iter().chain(far_end_line(t))
            })
            .collect();
        lines.join("\n")
    }

    /// A menu item's label for a tunnel: its name and state, and its far end's being down.
    pub fn label(tunnel: &TrayTunnel) -> String {
        match &tunnel.far_end_down {
            Some(cause) => format!("{} — {}, far end down: {cause}", tunnel.label, tunnel.state),
            None => format!("{} — {}", tunnel.label, tunnel.state),
        }
    }
}

/// "redis: far end down: nothing listening", for a tunnel whose far end is down.
fn far_end_line(tunnel: &TrayTunnel) -> Option<String> {
    tunnel
        .far_end_down
        .as_ref()
        .map(|cause| format!("{}: far end down: {cause}", one_line(&tunnel.label)))
}

/// A name on one line: a control character (a newline, say) becomes a space, so a name
/// cannot pass for another tunnel's line in the tooltip.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// What the tray's menu (or a click on the icon) asks for; tunnels by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrayAction {
    Show,
    Quit,
    Start(String),
    Stop(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(name: &str, running: bool, down: Option<&str>) -> TrayTunnel {
        TrayTunnel {
            name: name.into(),
            label: name.into(),
            state: if running { "running" } else { "stopped" }.into(),
            running,
            failure: false,
            far_end_down: down.map(str::to_owned),
        }
    }

    #[test]
    fn a_far_end_down_is_named_with_its_cause() {
        let mut snapshot = TraySnapshot {
            health: TrayHealth::FarEndDown,
            tunnels: vec![
                tunnel("redis", true, Some("nothing listening")),
                tunnel("web", true, None),
            ],
        };
        assert!(snapshot.health.needs_attention());
        assert_eq!(
            snapshot.summary(),
            "Sluice: redis: far end down: nothing listening"
        );
        assert_eq!(snapshot.details(), "redis: far end down: nothing listening");
        assert_eq!(
            TraySnapshot::label(&snapshot.tunnels[0]),
            "redis — running, far end down: nothing listening"
        );
        assert_eq!(TraySnapshot::label(&snapshot.tunnels[1]), "web — running");
        snapshot.tunnels[1].far_end_down = Some("wrong key".into());
        assert_eq!(snapshot.summary(), "Sluice: 2 far ends down (2 running)");
        assert_eq!(
            snapshot.details(),
            "redis: far end down: nothing listening\nweb: far end down: wrong key"
        );
        snapshot.health = TrayHealth::Running;
        snapshot.tunnels = vec![tunnel("redis", true, None)];
        assert!(!snapshot.health.needs_attention());
        assert_eq!(snapshot.summary(), "Sluice: 1 running");
        assert_eq!(snapshot.details(), "");
    }
}
