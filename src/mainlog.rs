//! The Exim-style main log and reject log: one line per event, greppable by
//! queue id, with Exim's flags so admins' habits carry over:
//!
//! ```text
//! 2026-11-27 14:05:53 1wH3kL-0004dR-2k <= bob@example.org H=(client.test) [192.0.2.7]:40312 P=esmtp S=1834 id=<x@example.org>
//! 2026-11-27 14:05:53 1wH3kL-0004dR-2k => alice@example.test <alice+news@example.test> R=local T=maildir
//! 2026-11-27 14:05:53 1wH3kL-0004dR-2k == carol@example.test <carol@example.test> R=local T=maildir defer: No space left on device (os error 28)
//! 2026-11-27 14:06:53 1wH3kL-0004dR-2k ** carol@example.test <carol@example.test> R=local T=maildir: retry time exceeded: No space left on device (os error 28)
//! 2026-11-27 14:05:53 1wH3kL-0004dR-2k Completed
//! ```
//!
//! Structured `tracing` output to stderr is separate; this file is for admins.
//! Files are reopened when logrotate moves them away.

use crate::clock::Clock;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often to check whether the file was rotated away.
const REOPEN_CHECK: Duration = Duration::from_secs(1);

struct LogFile {
    path: PathBuf,
    file: File,
    checked: Instant,
}

impl LogFile {
    fn open(path: &Path) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile {
            path: path.to_owned(),
            file,
            checked: Instant::now(),
        })
    }

    fn write_line(&mut self, line: &str) {
        if self.checked.elapsed() >= REOPEN_CHECK {
            self.checked = Instant::now();
            let moved = match (std::fs::metadata(&self.path), self.file.metadata()) {
                (Ok(on_disk), Ok(open)) => {
                    on_disk.ino() != open.ino() || on_disk.dev() != open.dev()
                }
                _ => true,
            };
            if moved && let Ok(f) = LogFile::open(&self.path) {
                *self = f;
            }
        }
        // One write(2) per line on an O_APPEND file: lines from several
        // processes (serve and the CLI) never interleave.
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write log line");
        }
    }
}

/// The main log and the reject log.
#[derive(Clone)]
pub struct MainLog {
    main: Arc<Mutex<LogFile>>,
    reject: Arc<Mutex<LogFile>>,
    clock: Arc<dyn Clock>,
}

impl MainLog {
    pub fn open(main: &Path, reject: &Path, clock: Arc<dyn Clock>) -> std::io::Result<MainLog> {
        Ok(MainLog {
            main: Arc::new(Mutex::new(LogFile::open(main)?)),
            reject: Arc::new(Mutex::new(LogFile::open(reject)?)),
            clock,
        })
    }

    fn stamp(&self, text: &str) -> String {
        format!("{} {}\n", self.clock.now().log_format(), text)
    }

    /// Writes one event line to the main log.
    pub fn main(&self, text: &str) {
        let line = self.stamp(text);
        if let Ok(mut f) = self.main.lock() {
            f.write_line(&line);
        }
    }

    /// Writes a refusal to the reject log, and to the main log as Exim does.
    pub fn reject(&self, text: &str) {
        let line = self.stamp(text);
        if let Ok(mut f) = self.main.lock() {
            f.write_line(&line);
        }
        if let Ok(mut f) = self.reject.lock() {
            f.write_line(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, Timestamp};

    #[test]
    fn writes_stamped_lines_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (m, r) = (
            dir.path().join("log/mainlog"),
            dir.path().join("log/rejectlog"),
        );
        let clock = ManualClock::new(Timestamp::from_secs(1_795_788_353));
        let log = MainLog::open(&m, &r, Arc::new(clock)).unwrap();
        log.main("1wH3kL-0004dR-2k <= bob@example.org");
        log.reject("H=[127.0.0.1] rejected RCPT <x@example.test>: No such user here");
        let main = std::fs::read_to_string(&m).unwrap();
        assert_eq!(
            main,
            "2026-11-27 14:05:53 1wH3kL-0004dR-2k <= bob@example.org\n\
             2026-11-27 14:05:53 H=[127.0.0.1] rejected RCPT <x@example.test>: No such user here\n"
        );
        assert_eq!(std::fs::read_to_string(&r).unwrap().lines().count(), 1);

        std::fs::rename(&m, dir.path().join("log/mainlog.1")).unwrap();
        log.main.lock().unwrap().checked -= REOPEN_CHECK;
        log.main("after rotation");
        assert!(
            std::fs::read_to_string(&m)
                .unwrap()
                .ends_with("after rotation\n")
        );
    }
}
