//! Where one tunnel's far end keeps what set-up makes: the user's Sluice directory (the
//! manifest, and for per-user set-ups the key, pid file and log), and one place each for
//! what goes beyond it (root's key, the .deb's config, unit files), so that remove can
//! recognise exactly these (`manifest`) and the scripts write exactly there (`scripts`).

/// Where one tunnel's far-end files live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The user's Sluice directory on the far end (manifest, and for per-user set-ups
    /// the key, pid file and log).
    pub dir: String,
    pub manifest: String,
    pub key: String,
    pub pidfile: String,
    pub log: String,
    /// Where set-up copies this machine's sluiced for this tunnel, when the far end has none.
    pub sluiced_copy: String,
    /// During a rotation, the key being replaced, beside the key.
    pub previous_key: String,
}

impl Layout {
    /// The files of `slug`'s far end for the user whose home is `home`; `system`: run by a
    /// system unit, so the key is root's, in /etc.
    pub fn of(home: &str, slug: &str, system: bool) -> Layout {
        let (dir, manifest) = Layout::manifest_only(home, slug);
        let key = if system {
            system_key(slug)
        } else {
            format!("{dir}/{slug}.key")
        };
        Layout {
            manifest,
            pidfile: format!("{dir}/{slug}.pid"),
            log: format!("{dir}/{slug}.log"),
            sluiced_copy: format!("{dir}/{slug}.sluiced"),
            previous_key: super::plan::previous_key_path(&key),
            key,
            dir,
        }
    }

    /// Just the manifest's place, for check and remove (which read the rest from it).
    pub fn manifest_only(home: &str, slug: &str) -> (String, String) {
        let dir = format!("{}/.config/sluice-far-end", home.trim_end_matches('/'));
        let manifest = format!("{dir}/{slug}.manifest");
        (dir, manifest)
    }
}

// Where set-up puts what it makes beyond the user's Sluice directory: one place each, so
// remove recognises exactly these (see `manifest`).

/// The temporary name a file set-up writes is written under before it is renamed into
/// place (remove deletes it too, should set-up have stopped in between).
pub fn temporary(path: &str) -> String {
    format!("{path}.tmp")
}

/// The key of a system set-up: root's, read by systemd (or by the .deb's sluiced user).
pub fn system_key(slug: &str) -> String {
    format!("/etc/sluice/keys/{slug}.key")
}

/// The config file the .deb's `sluiced@SLUG` runs.
pub fn sluiced_config(slug: &str) -> String {
    format!("/etc/sluice/{slug}.ron")
}

/// A system unit Sluice writes.
pub fn system_unit_file(unit: &str) -> String {
    format!("/etc/systemd/system/{unit}")
}

/// A `systemctl --user` unit Sluice writes, in the far-end user's home.
pub fn user_unit_file(home: &str, unit: &str) -> String {
    format!("{}/.config/systemd/user/{unit}", home.trim_end_matches('/'))
}
