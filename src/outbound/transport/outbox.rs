//! The development outbox: `.eml` files instead of sending.

use super::SendError;
use crate::filemode;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Development mode: each message becomes `<outbox_dir>/<random>.eml`, the
/// message exactly as it would have been sent, so a newcomer can open it.
///
/// The envelope is not stored: challenges always go from `<>` to the
/// address in their `To:` header, and the caller's main-log line names the
/// recipient.
pub struct FileOutbox {
    pub(super) dir: PathBuf,
}

impl FileOutbox {
    /// An outbox writing into `dir` (created on first use).
    pub fn new(dir: PathBuf) -> FileOutbox {
        FileOutbox { dir }
    }

    pub(super) async fn send(&self, data: &[u8]) -> Result<String, SendError> {
        let dir = self.dir.clone();
        let data = data.to_vec();
        let written = tokio::task::spawn_blocking(move || write_eml(&dir, &data))
            .await
            .map_err(|e| SendError::Temporary(format!("outbox writer stopped: {e}")))?;
        match written {
            Ok(path) => Ok(path.display().to_string()),
            Err(e) => Err(SendError::Temporary(format!(
                "cannot write into outbox {}: {e}",
                self.dir.display()
            ))),
        }
    }
}

/// Writes under a hidden temporary name, fsyncs, then renames: the `.eml`
/// never appears half-written, and it survives a crash once we return.
/// The file (its link releases held mail) is 0600 in a 0700 directory.
fn write_eml(dir: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    filemode::create_dir_all(dir)?;
    let id = format!("{:032x}", rand::random::<u128>());
    let tmp = dir.join(format!(".{id}.tmp"));
    let path = dir.join(format!("{id}.eml"));
    let result = (|| {
        let mut file = filemode::create_new(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn outbox_files_carrying_live_links_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        let path = write_eml(&outbox, b"Subject: verify#x\r\n\r\nlink\r\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&outbox) & 0o077, 0);
    }
}
