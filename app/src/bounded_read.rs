//! Reads the text files the app does not write alone (a tunnel file someone sent, the key
//! list on disk) up to a limit, so a huge file, a device such as /dev/zero or a disk image
//! picked by mistake cannot fill memory. Key files have their own bound in the engine.

use std::io::Read;
use std::path::Path;

use crate::error::BoundedReadError;

/// The most read of a tunnel file being imported: 1 MiB. An exported tunnel takes a few
/// hundred bytes, so this is thousands of tunnels.
pub const MAX_TUNNEL_FILE_LEN: u64 = 1 << 20;

/// The most read of the key list (keys.ron): 1 MiB. A key takes about 150 bytes there.
pub const MAX_KEY_INDEX_LEN: u64 = 1 << 20;

/// The file's text, if it holds at most `limit` bytes of UTF-8. Blocks on the disk: call
/// it off the UI thread, or before the window opens.
pub fn read_text(path: &Path, limit: u64) -> Result<String, BoundedReadError> {
    let file = std::fs::File::open(path)?;
    // A regular file's length tells at once; devices and pipes are caught by the read.
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > limit
    {
        return Err(BoundedReadError::TooLarge { limit });
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(BoundedReadError::TooLarge { limit });
    }
    String::from_utf8(bytes).map_err(|_| {
        let not_text = std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text");
        BoundedReadError::Io(not_text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_read_up_to_the_limit_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.ron");
        std::fs::write(&path, "x".repeat(100)).unwrap();
        assert_eq!(read_text(&path, 100).unwrap().len(), 100);
        assert!(matches!(
            read_text(&path, 99),
            Err(BoundedReadError::TooLarge { limit: 99 })
        ));
        // An endless device is cut off by the read, not by its length.
        assert!(matches!(
            read_text(Path::new("/dev/zero"), 4096),
            Err(BoundedReadError::TooLarge { limit: 4096 })
        ));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(
            matches!(read_text(&path, 100), Err(BoundedReadError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData)
        );
        let missing = read_text(&dir.path().join("missing"), 100);
        assert!(
            matches!(&missing, Err(BoundedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound)
        );
    }
}
