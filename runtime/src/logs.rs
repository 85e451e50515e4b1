//! Container output as Docker json-file logs: one JSON object per line with `log`,
//! `stream` and `time`, written by a thread per stream; and a reader that follows them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

/// Docker splits log lines longer than this into several entries.
const MAX_LINE: usize = 16 * 1024;

/// Errors from log files.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("failed to open log file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read log file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The line including its trailing `\n` (absent for a last partial line).
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
}

/// A log file shared by the stream threads of one container (and its execs).
#[derive(Clone)]
pub(crate) struct LogFile {
    file: Arc<Mutex<File>>,
}

impl LogFile {
    pub(crate) fn open(path: &Path) -> Result<Self, LogError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LogError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn write_entry(&self, stream: &str, chunk: &[u8]) {
        let entry = LogEntry {
            log: String::from_utf8_lossy(chunk).into_owned(),
            stream: stream.to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // One write per entry so a follower never sees half an object mid-file.
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(stream, error = %e, "failed to write container log line");
        }
    }

    /// Copies `source` line by line into the file until EOF (or EIO from a pty master
    /// whose slave side closed).
    pub(crate) fn spawn_copier(
        &self,
        stream: &'static str,
        source: impl Read + Send + 'static,
    ) -> JoinHandle<()> {
        let log = self.clone();
        std::thread::Builder::new()
            .name(format!("log-{stream}"))
            .spawn(move || {
                let mut reader = BufReader::with_capacity(MAX_LINE, source);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    let n = match (&mut reader)
                        .take(MAX_LINE as u64)
                        .read_until(b'\n', &mut line)
                    {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => 0,
                    };
                    if n == 0 {
                        break;
                    }
                    log.write_entry(stream, &line);
                }
            })
            .expect("spawning a thread")
    }
}

/// Follows a json-file log as it grows: [`LogFollower::next_entry`] returns complete
/// lines only and `None` at the current end of the file; call it again later.
pub struct LogFollower {
    path: PathBuf,
    reader: BufReader<File>,
    partial: String,
}

impl LogFollower {
    /// Opens `path` at its start.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let file = File::open(path).map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            partial: String::new(),
        })
    }

    /// The next complete entry, or `None` when the writer has not written more yet.
    /// Lines that are not valid entries are skipped.
    pub fn next_entry(&mut self) -> Result<Option<LogEntry>, LogError> {
        loop {
            let mut buf = String::new();
            let n = self
                .reader
                .read_line(&mut buf)
                .map_err(|source| LogError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.partial.push_str(&buf);
            if !self.partial.ends_with('\n') {
                // Reached the end in the middle of a line: keep it for the next call.
                return Ok(None);
            }
            let line = std::mem::take(&mut self.partial);
            match serde_json::from_str::<LogEntry>(line.trim_end()) {
                Ok(e) => return Ok(Some(e)),
                Err(e) => {
                    tracing::debug!(path = %self.path.display(), error = %e, "skipping a malformed log line")
                }
            }
        }
    }

    /// Every complete entry currently in the file.
    pub fn drain(&mut self) -> Result<Vec<LogEntry>, LogError> {
        let mut out = Vec::new();
        while let Some(e) = self.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }
}

/// Reads a whole log file: every complete entry.
pub fn read_log(path: &Path) -> Result<Vec<LogEntry>, LogError> {
    LogFollower::open(path)?.drain()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_lines_and_follower_sees_them_as_they_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let log = LogFile::open(&path).unwrap();
        let mut follower = LogFollower::open(&path).unwrap();
        assert_eq!(follower.next_entry().unwrap(), None);

        let (r, mut w) = std::io::pipe().unwrap();
        let t = log.spawn_copier("stdout", r);
        w.write_all(b"hello\nwor").unwrap();
        w.flush().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let first = loop {
            if let Some(e) = follower.next_entry().unwrap() {
                break e;
            }
            assert!(std::time::Instant::now() < deadline, "no entry");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(
            (first.log.as_str(), first.stream.as_str()),
            ("hello\n", "stdout")
        );
        assert!(
            first.time.ends_with('Z') && first.time.contains('T'),
            "{}",
            first.time
        );
        w.write_all(b"ld\nlast without newline").unwrap();
        drop(w);
        t.join().unwrap();
        let rest = follower.drain().unwrap();
        let logs: Vec<&str> = rest.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(logs, vec!["world\n", "last without newline"]);
    }

    #[test]
    fn long_lines_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let log = LogFile::open(&path).unwrap();
        let (r, mut w) = std::io::pipe().unwrap();
        let t = log.spawn_copier("stderr", r);
        w.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        w.write_all(b"\n").unwrap();
        drop(w);
        t.join().unwrap();
        let entries = read_log(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].log.len(), MAX_LINE);
        assert_eq!(entries[1].log.len(), 11);
        assert_eq!(entries[1].stream, "stderr");
    }
}
