//! Who the app is to the desktop: its app ID (the Wayland app_id and X11 WM_CLASS, which
//! the launcher entry, the AppStream metainfo and the icon are named after) and its window
//! icon, the 256 px PNG from `assets/icons` embedded in the binary.

use crate::error::IconError;
use crate::tray::TrayHealth;

/// The app ID; `assets/org.sluice.Sluice.desktop` must carry the same name.
pub const APP_ID: &str = "org.sluice.Sluice";

const ICON_PNG: &[u8] =
    include_bytes!("../../assets/icons/hicolor/256x256/apps/org.sluice.Sluice.png");

/// The window icon, decoded from the embedded PNG.
pub fn window_icon() -> Result<egui::IconData, IconError> {
    eframe::icon_data::from_png_bytes(ICON_PNG).map_err(|e| IconError(Box::new(e)))
}

const TRAY_PNG: &[u8] =
    include_bytes!("../../assets/icons/hicolor/128x128/apps/org.sluice.Sluice.png");

/// The tray icon for a state: the app icon with a dot in its lower right corner, green
/// while tunnels run, red when one failed or a far end is down, none when nothing runs.
pub fn tray_icon(health: TrayHealth) -> Result<egui::IconData, IconError> {
    let mut icon =
        eframe::icon_data::from_png_bytes(TRAY_PNG).map_err(|e| IconError(Box::new(e)))?;
    let dot = match health {
        TrayHealth::Idle => return Ok(icon),
        TrayHealth::Running => [0x2e, 0xb8, 0x5c],
        TrayHealth::Failed | TrayHealth::FarEndDown => [0xe0, 0x36, 0x2c],
    };
    let (w, h) = (icon.width as usize, icon.height as usize);
    let radius = w as f32 * 0.22;
    let (cx, cy) = (w as f32 - radius - 1.0, h as f32 - radius - 1.0);
    for y in 0..h {
        for x in 0..w {
            let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
            let i = (y * w + x) * 4;
            if d <= radius {
                icon.rgba[i..i + 4].copy_from_slice(&[dot[0], dot[1], dot[2], 255]);
            } else if d <= radius + w as f32 * 0.05 {
                // A white ring keeps the dot apart from the icon behind it.
                icon.rgba[i..i + 4].copy_from_slice(&[255, 255, 255, 255]);
            }
        }
    }
    Ok(icon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_icon_decodes_to_256_px() {
        let icon = window_icon().unwrap();
        assert_eq!((icon.width, icon.height), (256, 256));
        assert_eq!(icon.rgba.len(), 256 * 256 * 4);
        // The tile is opaque in the middle and transparent in the corner.
        let alpha = |x: usize, y: usize| icon.rgba[(y * 256 + x) * 4 + 3];
        assert_eq!(alpha(128, 128), 255);
        assert_eq!(alpha(0, 0), 0);
    }

    #[test]
    fn the_tray_icon_carries_its_state_as_a_dot() {
        let pixel = |health| {
            let icon = tray_icon(health).unwrap();
            let (w, h) = (icon.width as usize, icon.height as usize);
            // The dot's centre, in the lower right corner.
            let (x, y) = (w - w * 22 / 100 - 1, h - h * 22 / 100 - 1);
            icon.rgba[(y * w + x) * 4..(y * w + x) * 4 + 4].to_vec()
        };
        assert_eq!(pixel(TrayHealth::Running), [0x2e, 0xb8, 0x5c, 255]);
        assert_eq!(pixel(TrayHealth::Failed), [0xe0, 0x36, 0x2c, 255]);
        assert_ne!(pixel(TrayHealth::Idle), pixel(TrayHealth::Running));
    }

    #[test]
    fn the_desktop_files_use_the_app_id() {
        let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets");
        let desktop = std::fs::read_to_string(assets.join(format!("{APP_ID}.desktop"))).unwrap();
        assert!(desktop.contains(&format!("\nIcon={APP_ID}\n")));
        assert!(desktop.contains(&format!("\nStartupWMClass={APP_ID}\n")));
        let metainfo =
            std::fs::read_to_string(assets.join(format!("{APP_ID}.metainfo.xml"))).unwrap();
        assert!(metainfo.contains(&format!("<id>{APP_ID}</id>")));
        assert!(metainfo.contains(&format!(
            "<launchable type=\"desktop-id\">{APP_ID}.desktop</launchable>"
        )));
        assert!(assets.join(format!("icons/{APP_ID}.svg")).is_file());
    }
}
