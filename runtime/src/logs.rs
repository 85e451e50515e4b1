//! Container output as Docker json-file logs: one JSON object per line with `log`,
//! `stream` and `time`, written by one thread per container for all its streams; and a
//! reader that follows them.

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
    #[cfg(test)]
    pub(crate) fn spawn_copier(
        &self,
        stream: &'static str,
        source: impl Into<std::os::fd::OwnedFd>,
    ) -> JoinHandle<()> {
        self.spawn_copiers(vec![(stream, source.into())])
    }

    /// Copies each source line by line into the file, tagged with its stream, until all
    /// reach EOF (or EIO from a pty master whose slave side closed): one thread, which
    /// waits for whichever has output. A line longer than [`MAX_LINE`] becomes several
    /// entries, as in Docker.
    pub(crate) fn spawn_copiers(
        &self,
        sources: Vec<(&'static str, std::os::fd::OwnedFd)>,
    ) -> JoinHandle<()> {
        let log = self.clone();
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let name = match sources.as_slice() {
            [(stream, _)] => format!("log-{stream}"),
            _ => "logs".to_string(),
        };
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _ = started_tx.send(());
                log.copy_all(sources);
            })
            .expect("spawning a thread");
        // Return only once the thread runs: see container::LifecycleGuard on thread
        // start-up racing with libcontainer's clone.
        let _ = started_rx.recv();
        handle
    }

    fn copy_all(&self, sources: Vec<(&'static str, std::os::fd::OwnedFd)>) {
        use std::os::fd::AsFd;
        let mut open: Vec<(&'static str, File, Vec<u8>)> = sources
            .into_iter()
            .map(|(stream, fd)| (stream, File::from(fd), Vec::new()))
            .collect();
        let mut buf = vec![0u8; MAX_LINE];
        while !open.is_empty() {
            let ready = {
                let fds: Vec<_> = open.iter().map(|(_, f, _)| f.as_fd()).collect();
                match crate::sys::poll_readable(&fds) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to wait for container output");
                        return;
                    }
                }
            };
            let mut ended = Vec::new();
            for (i, (stream, file, pending)) in open.iter_mut().enumerate() {
                if !ready[i] {
                    continue;
                }
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                pending.extend_from_slice(&buf[..n]);
                complete_lines(pending, n == 0, |line| self.write_entry(stream, line));
                if n == 0 {
                    ended.push(i);
                }
            }
            for i in ended.into_iter().rev() {
                open.remove(i);
            }
        }
    }
}

/// Takes the entries that are complete off the front of `pending`, handing each to
/// `emit`: lines up to and with their `\n`, at most [`MAX_LINE`] bytes each; at the end
/// of the stream, the rest too.
fn complete_lines(pending: &mut Vec<u8>, at_end: bool, mut emit: impl FnMut(&[u8])) {
    let mut start = 0;
    loop {
        let rest = &pending[start..];
        let window = &rest[..rest.len().min(MAX_LINE)];
        let len = match window.iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if window.len() == MAX_LINE || (at_end && !window.is_empty()) => window.len(),
            None => break,
        };
        emit(&rest[..len]);
        start += len;
    }
    pending.drain(..start);
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

    /// A log file in a fresh temporary directory (kept while the guard lives).
    fn new_log() -> (tempfile::TempDir, PathBuf, LogFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let log = LogFile::open(&path).unwrap();
        (dir, path, log)
    }

    #[test]
    fn copies_lines_and_follower_sees_them_as_they_arrive() {
        let (_dir, path, log) = new_log();
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
    fn one_thread_copies_both_streams_each_line_whole() {
        let (_dir, path, log) = new_log();
        let (out_r, mut out_w) = std::io::pipe().unwrap();
        let (err_r, mut err_w) = std::io::pipe().unwrap();
        let t = log.spawn_copiers(vec![("stdout", out_r.into()), ("stderr", err_r.into())]);
        // Halves of a line on one stream around a whole line on the other.
        out_w.write_all(b"first ha").unwrap();
        err_w.write_all(b"oops\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        out_w.write_all(b"lf\nsecond\n").unwrap();
        drop(err_w);
        out_w.write_all(b"tail").unwrap();
        drop(out_w);
        t.join().unwrap();
        let entries = read_log(&path).unwrap();
        // Each stream's entries in its order (the two streams interleave as they come).
        let of = |stream: &str| -> Vec<String> {
            entries
                .iter()
                .filter(|e| e.stream == stream)
                .map(|e| e.log.clone())
                .collect()
        };
        assert_eq!(of("stdout"), vec!["first half\n", "second\n", "tail"]);
        assert_eq!(of("stderr"), vec!["oops\n"]);
        assert_eq!(entries.len(), 4);
    }

    #[test]
    fn complete_lines_split_at_newlines_and_max_line() {
        let complete_lines = |p: &mut Vec<u8>, at_end| {
            let mut lines = Vec::new();
            complete_lines(p, at_end, |l| lines.push(l.to_vec()));
            lines
        };
        let mut p = b"a\nbc".to_vec();
        assert_eq!(complete_lines(&mut p, false), vec![b"a\n".to_vec()]);
        assert_eq!(p, b"bc");
        assert_eq!(complete_lines(&mut p, true), vec![b"bc".to_vec()]);
        assert!(p.is_empty());
        let mut p = vec![b'x'; 2 * MAX_LINE + 1];
        let lines = complete_lines(&mut p, false);
        assert_eq!(
            lines.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_LINE, MAX_LINE]
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn long_lines_are_split() {
        let (_dir, path, log) = new_log();
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
