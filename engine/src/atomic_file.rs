//! Saving a file so that its path always holds either the old content or the complete
//! new one: a temporary file (owner-only) in the same directory, flushed, renamed over the
//! path (or, for a new file that must not replace one, hard-linked to it), then the
//! directory flushed. Shared by everything Sluice saves.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::platform;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically (see the module docs), creating missing parent
/// directories. On error the old file is untouched and no temporary file is left.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, file_name) = dir_and_name(path)?;
    fs::create_dir_all(dir)?;

    let (temp_path, mut file) = create_temp(dir, file_name)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&temp_path, path)
        });
    if let Err(e) = written {
        // Best effort: the write or rename error is the one to report.
        let _ = fs::remove_file(&temp_path);
        return Err(e);
    }
    platform::sync_dir(dir)?;
    remove_stale_temps(dir, file_name);
    Ok(())
}

/// Writes a new file at `path` atomically and never over an existing one: the flushed
/// temporary file is hard-linked to `path` (which the kernel refuses, as `AlreadyExists`,
/// if anything is there, even if it appeared a moment ago), so `path` holds the complete
/// file or nothing. Unlike [`write_atomic`], missing directories are not created: a
/// mistyped directory is reported (`NotFound`) rather than made. On a filesystem without
/// hard links (FAT on a USB stick) the file is created in place instead, still never over
/// an existing one, and removed if it could not be written completely.
pub fn write_atomic_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, file_name) = dir_and_name(path)?;
    let (temp_path, mut file) = create_temp(dir, file_name)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    let linked = written.and_then(|()| fs::hard_link(&temp_path, path));
    // The temporary name goes either way: after a link the file lives on at `path`.
    let _ = fs::remove_file(&temp_path);
    match linked {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
            ) =>
        {
            // The temporary file could be created in this directory, so a refused link
            // means the filesystem has none (Linux says EPERM for FAT).
            write_new_in_place(path, bytes)?;
        }
        Err(e) => return Err(e),
    }
    platform::sync_dir(dir)?;
    remove_stale_temps(dir, file_name);
    Ok(())
}

/// Creates `path` (never over an existing file), writes and flushes it; removes it again
/// if the write fails, so no truncated file is left.
fn write_new_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file =
        platform::create_owner_only(OpenOptions::new().write(true).create_new(true), path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // Best effort: the write error is the one to report.
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// The directory a file at `path` goes in (`.` for a bare name) and its name.
fn dir_and_name(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file: give a file path such as ~/.config/sluice/config.ron",
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, file_name))
}

/// Removes temporary files that a save killed mid-way (power loss, SIGKILL) left next to
/// `file_name`: those named after a process that no longer exists. Best effort; another
/// live process's temporary file is never touched.
fn remove_stale_temps(dir: &Path, file_name: &OsStr) {
    let Some(name) = file_name.to_str() else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name();
        let Some(pid) = entry_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(pid, n)| n.parse::<u64>().ok().and(pid.parse::<u32>().ok()))
        else {
            continue;
        };
        if pid != std::process::id() && !platform::process_exists(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A new, uniquely named hidden file next to the target, readable by its owner only:
/// `.NAME.PID.N.tmp`, so a later save can tell whose leftover it is.
fn create_temp(dir: &Path, file_name: &OsStr) -> io::Result<(PathBuf, File)> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let mut attempt = 0;
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = OsString::from(".");
        name.push(file_name);
        name.push(format!(".{}.{n}.tmp", std::process::id()));
        let temp_path = dir.join(name);
        match platform::create_owner_only(&mut options, &temp_path) {
            Ok(file) => return Ok((temp_path, file)),
            // A leftover from a crashed run with a recycled pid: pick the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_owner_only_and_replaces_with_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dirs/file.txt");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        #[cfg(unix)]
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        #[cfg(unix)]
        let inode_before = fs::metadata(&path).unwrap().ino();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        #[cfg(unix)]
        assert_ne!(inode_before, fs::metadata(&path).unwrap().ino());
        assert_eq!(names_in(path.parent().unwrap()), ["file.txt"]);
    }

    #[test]
    fn a_failed_rename_keeps_everything_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), "x").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(names_in(dir.path()), ["blocked"]);
        assert_eq!(fs::read(blocked.join("inside")).unwrap(), b"x");
    }

    #[test]
    fn removes_temporaries_of_dead_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ron");
        // pid 0x7fff_fff0 exists nowhere; our own pid and an unrelated name stay.
        let dead = dir.path().join(".config.ron.2147483632.5.tmp");
        let ours = dir
            .path()
            .join(format!(".config.ron.{}.999999.tmp", std::process::id()));
        let other = dir.path().join(".other.ron.2147483632.5.tmp");
        for p in [&dead, &ours, &other] {
            fs::write(p, "partial").unwrap();
        }
        write_atomic(&path, b"content").unwrap();
        assert!(!dead.exists(), "a dead process's temporary file is removed");
        assert!(ours.exists() && other.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_never_replaces_one_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.age");
        write_atomic_new(&path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = write_atomic_new(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        // A dangling symbolic link counts as existing: nothing is written through it.
        let link = dir.path().join("link.age");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        let err = write_atomic_new(&link, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(!dir.path().join("elsewhere").exists());
        assert_eq!(names_in(dir.path()), ["bundle.age", "link.age"]);

        let err = write_atomic_new(&dir.path().join("no/such/b.age"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!dir.path().join("no").exists());
    }

    #[test]
    fn in_place_fallback_never_replaces_either() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_new_in_place(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        let err = write_new_in_place(&path, b"two").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn needs_a_file_name() {
        let err = write_atomic(Path::new("/"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = write_atomic_new(Path::new("/"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("names no file"), "{err}");
    }
}
