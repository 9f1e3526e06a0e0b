//! The modes of what boxtrap writes to disk: the data directory, the
//! SQLite database (token keys, password hashes, held mail), the logs, the
//! outbox and the Maildirs are its user's alone. Directories it creates are
//! 0700 and files 0600, whatever the umask (a umask can only take bits
//! away from these). Existing files and directories keep the mode they
//! have; [`too_open`] says when that lets other users in, for the warning
//! `serve` and `check-config` give.
//!
//! Owns creating directories and files with these modes and reading them
//! back; not what goes into them.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Directories boxtrap creates: its user only.
pub const DIR_MODE: u32 = 0o700;
/// Files boxtrap creates: its user only.
pub const FILE_MODE: u32 = 0o600;
/// Bits that make a file or directory too open: group write and anything
/// for other users. 0750 and 0640 (a group that may read, e.g. for
/// backups) are the widest modes that draw no warning.
pub const TOO_OPEN: u32 = 0o027;

/// Creates `dir` and any missing parents with mode 0700; directories that
/// exist are left as they are.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Creates a file that must not exist yet, for writing, with mode 0600.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Opens a file for appending, creating it with mode 0600 if it is missing.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
}

/// A warning when `path` exists and is open to other users (see
/// [`TOO_OPEN`]), naming its mode and the command that closes it; `None`
/// when it is missing or private enough.
pub fn too_open(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & TOO_OPEN == 0 {
        return None;
    }
    let (want, kind) = if meta.is_dir() {
        (DIR_MODE, "directory")
    } else {
        (FILE_MODE, "file")
    };
    Some(format!(
        "{kind} {} has mode {mode:04o}, open to other users: run `chmod {want:04o} {}` \
         (or at most {:04o} for a group you trust)",
        path.display(),
        path.display(),
        want | ((want >> 3) & 0o050),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_directories_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(d)) & 0o077, 0, "{d}");
        }
        let f = deep.join("f");
        create_new(&f).unwrap();
        assert_eq!(mode(&f) & 0o077, 0);
        assert!(create_new(&f).is_err(), "never an existing file");
        let log = deep.join("log");
        open_append(&log).unwrap();
        assert_eq!(mode(&log) & 0o077, 0);
    }

    #[test]
    fn existing_modes_are_kept_and_open_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("boxtrap.db");
        fs::write(&f, b"").unwrap();
        for (m, open) in [
            (0o600, false),
            (0o640, false),
            (0o644, true),
            (0o660, true),
            (0o666, true),
        ] {
            fs::set_permissions(&f, fs::Permissions::from_mode(m)).unwrap();
            open_append(&f).unwrap();
            assert_eq!(mode(&f), m, "opening keeps the mode");
            let warning = too_open(&f);
            assert_eq!(warning.is_some(), open, "{m:o}: {warning:?}");
            if let Some(w) = warning {
                assert!(w.contains(&format!("mode {m:04o}")), "{w}");
                assert!(w.contains("chmod 0600"), "{w}");
                assert!(w.contains("0640"), "{w}");
            }
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let w = too_open(dir.path()).unwrap();
        assert!(
            w.starts_with("directory") && w.contains("chmod 0700"),
            "{w}"
        );
        assert!(w.contains("0750"), "{w}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(too_open(dir.path()), None);
        assert_eq!(too_open(&dir.path().join("missing")), None);
    }
}
