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
}

/// One tunnel in the menu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrayTunnel {
    pub name: String,
    /// Its state in a word or two ("running", "stopped", "failed").
    pub state: String,
    pub running: bool,
    /// It could not start, or its connections fail.
    pub failure: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraySnapshot {
    pub health: TrayHealth,
    pub tunnels: Vec<TrayTunnel>,
}

impl TraySnapshot {
    /// The tooltip and title: how many tunnels run, and whether one failed.
    pub fn summary(&self) -> String {
        let running = self.tunnels.iter().filter(|t| t.running).count();
        match self.health {
            TrayHealth::Failed => format!("Sluice: a tunnel failed ({running} running)"),
            TrayHealth::Running => format!("Sluice: {running} running"),
            TrayHealth::Idle => "Sluice: no tunnel running".to_owned(),
        }
    }

    /// A menu item's label for a tunnel: its name and state.
    pub fn label(tunnel: &TrayTunnel) -> String {
        format!("{} — {}", tunnel.name, tunnel.state)
    }
}

/// What the tray's menu (or a click on the icon) asks for; tunnels by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrayAction {
    Show,
    Quit,
    Start(String),
    Stop(String),
}
