//! Container output: Docker json-file logs (one JSON object per line with `log`, `stream`
//! and `time`, rotated by size and count like Docker's `max-size`/`max-file`) and, when
//! given, a caller's [`LogSink`] (a log driver), written by one thread per container for
//! all its streams; and a reader that follows the files across rotations.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
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

/// When a json-file log rotates: like Docker's json-file `max-size` and `max-file`. The
/// file being written is `<path>`; older ones are `<path>.1` (newest) … `<path>.<max_files-1>`.
/// A container's log never takes more than about `max_size * max_files` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes after which the file rotates; 0: never (Docker's default, `max-size -1`).
    pub max_size: u64,
    /// Files kept, the current one included (at least 1; 1 truncates at `max_size`).
    pub max_files: u32,
}

impl Default for Rotation {
    /// 10 MiB × 5, the sizes Docker's `local` driver uses by default.
    fn default() -> Self {
        Rotation {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// Where a container's output goes, other than a json-file: called from the container's
/// log thread, once per line (a line longer than 16 KiB in pieces, like Docker). A sink
/// that blocks stalls the container once its pipe is full (Docker's `mode: blocking`).
pub trait LogSink: Send + Sync {
    /// One line (with its `\n` unless it is a piece or the last, unterminated line),
    /// read at `time`.
    fn write(&self, stream: &'static str, line: &[u8], time: chrono::DateTime<chrono::Utc>);
    /// All of the container's output streams ended.
    fn close(&self) {}
}

/// A shared [`LogSink`]; equal when it is the same sink.
#[derive(Clone)]
pub struct SinkRef(pub Arc<dyn LogSink>);

impl std::fmt::Debug for SinkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkRef(..)")
    }
}

impl PartialEq for SinkRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SinkRef {}

/// The open file being written and its size.
struct Current {
    file: File,
    size: u64,
}

/// Where the stream threads of one container (and its execs) write: its json-file, and
/// its sink when it has one.
#[derive(Clone)]
pub(crate) struct LogOutput {
    pub(crate) file: LogFile,
    pub(crate) sink: Option<Arc<dyn LogSink>>,
}

impl LogOutput {
    fn emit(&self, stream: &'static str, chunk: &[u8]) {
        let now = chrono::Utc::now();
        self.file.write_entry(stream, chunk, now);
        if let Some(s) = &self.sink {
            s.write(stream, chunk, now);
        }
    }

    fn close(&self) {
        if let Some(s) = &self.sink {
            s.close();
        }
    }

    /// Copies `source` line by line until EOF (or EIO from a pty master whose slave side
    /// closed).
    #[cfg(test)]
    pub(crate) fn spawn_copier(
        &self,
        stream: &'static str,
        source: impl Into<std::os::fd::OwnedFd>,
    ) -> JoinHandle<()> {
        self.spawn_copiers(vec![(stream, source.into())])
    }

    /// Copies each source line by line, tagged with its stream, until all reach EOF (or
    /// EIO from a pty master whose slave side closed): one thread, which waits for
    /// whichever has output. A line longer than [`MAX_LINE`] becomes several entries, as
    /// in Docker.
    pub(crate) fn spawn_copiers(
        &self,
        sources: Vec<(&'static str, std::os::fd::OwnedFd)>,
    ) -> JoinHandle<()> {
        let log = self.clone();
        let name = match sources.as_slice() {
            [(stream, _)] => format!("log-{stream}"),
            _ => "logs".to_string(),
        };
        threadgate::spawn(std::thread::Builder::new().name(name), move || {
            log.copy_all(sources);
            log.close();
        })
        .expect("spawning a thread")
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
                complete_lines(pending, n == 0, |line| self.emit(stream, line));
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

/// A json-file log shared by the stream threads of one container, rotated by [`Rotation`].
#[derive(Clone)]
pub(crate) struct LogFile {
    path: Arc<PathBuf>,
    rotation: Rotation,
    current: Arc<Mutex<Current>>,
}

impl LogFile {
    pub(crate) fn open(path: &Path, rotation: Rotation) -> Result<Self, LogError> {
        let file = open_append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            rotation,
            current: Arc::new(Mutex::new(Current { file, size })),
        })
    }

    fn write_entry(&self, stream: &str, chunk: &[u8], time: chrono::DateTime<chrono::Utc>) {
        let entry = LogEntry {
            log: String::from_utf8_lossy(chunk).into_owned(),
            stream: stream.to_string(),
            time: time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let max = self.rotation.max_size;
        if max > 0 && cur.size > 0 && cur.size + line.len() as u64 > max {
            // Under the lock: a follower that sees the rename knows the old file is
            // complete (see LogFollower::next_entry).
            match self.rotate() {
                Ok(file) => *cur = Current { file, size: 0 },
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "failed to rotate a container log")
                }
            }
        }
        // One write per entry so a follower never sees half an object mid-file.
        match cur.file.write_all(&line) {
            Ok(()) => cur.size += line.len() as u64,
            Err(e) => tracing::warn!(stream, error = %e, "failed to write container log line"),
        }
    }

    /// Shifts `<path>.N-1` → `<path>.N` … `<path>` → `<path>.1` (the oldest falls off) and
    /// opens a new `<path>`; with `max_files` 1 the file starts again empty (Docker's
    /// json-file truncates it, moby daemon/logger/loggerutils/logfile.go `rotate`).
    fn rotate(&self) -> std::io::Result<File> {
        let path = self.path.as_path();
        let keep = self.rotation.max_files.max(1);
        if keep == 1 {
            // A new file rather than truncating: a follower notices the new inode and
            // starts it from the beginning instead of reading on mid-line.
            std::fs::remove_file(path)?;
            return open_append(path).map_err(|e| match e {
                LogError::Open { source, .. } | LogError::Read { source, .. } => source,
            });
        }
        for i in (1..keep - 1).rev() {
            let from = rotated(path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(path, i + 1))?;
            }
        }
        std::fs::rename(path, rotated(path, 1))?;
        open_append(path).map_err(|e| match e {
            LogError::Open { source, .. } | LogError::Read { source, .. } => source,
        })
    }
}

fn open_append(path: &Path) -> Result<File, LogError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// `<path>.<n>`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The files of the log at `path` that exist, oldest first: `<path>.N` … `<path>.1`, `<path>`.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut n = 1;
    while rotated(path, n).exists() {
        n += 1;
    }
    let mut files: Vec<PathBuf> = (1..n).rev().map(|i| rotated(path, i)).collect();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
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

/// Follows a json-file log as it grows and rotates: [`LogFollower::next_entry`] returns
/// complete lines only and `None` at the current end of the newest file; call it again
/// later.
pub struct LogFollower {
    /// The log's path (its newest file).
    path: PathBuf,
    /// The file being read (one of [`log_files`]) and its inode.
    reading: PathBuf,
    ino: u64,
    reader: BufReader<File>,
    partial: String,
}

impl LogFollower {
    /// Opens the log at `path` at its start: its oldest rotated file, or `path` itself.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let first = log_files(path)
            .into_iter()
            .next()
            .unwrap_or_else(|| path.to_path_buf());
        Self::open_file(path, &first)
    }

    fn open_file(path: &Path, file: &Path) -> Result<Self, LogError> {
        let f = File::open(file).map_err(|source| LogError::Open {
            path: file.to_path_buf(),
            source,
        })?;
        let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
        Ok(Self {
            path: path.to_path_buf(),
            reading: file.to_path_buf(),
            ino,
            reader: BufReader::new(f),
            partial: String::new(),
        })
    }

    /// The last `n` entries of the log at `path` (from the end of its files, without
    /// reading the rest), and a follower at the end of the newest file.
    pub fn open_tail(path: &Path, n: usize) -> Result<(Vec<LogEntry>, Self), LogError> {
        let mut follower = Self::open_file(path, path)?;
        let end = follower
            .reader
            .seek(SeekFrom::End(0))
            .map_err(|source| LogError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let mut lines: Vec<String> = Vec::new();
        let files = log_files(path);
        for (i, file) in files.iter().rev().enumerate() {
            if lines.len() >= n {
                break;
            }
            // The newest file only up to where the follower goes on from.
            let limit = if i == 0 { Some(end) } else { None };
            let mut older = last_lines(file, n - lines.len(), limit)?;
            older.append(&mut lines);
            lines = older;
        }
        let entries = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<LogEntry>(l).ok())
            .collect();
        Ok((entries, follower))
    }

    /// The next complete entry, or `None` when the writer has not written more yet.
    /// Lines that are not valid entries are skipped.
    pub fn next_entry(&mut self) -> Result<Option<LogEntry>, LogError> {
        // After the file was seen rotated away, one more pass to its end: the writer
        // renames only after its last write to it, so then it is complete.
        let mut rotated_away = false;
        loop {
            let mut buf = String::new();
            let n = self
                .reader
                .read_line(&mut buf)
                .map_err(|source| LogError::Read {
                    path: self.reading.clone(),
                    source,
                })?;
            if n == 0 {
                if !self.partial.is_empty() {
                    // Reached the end in the middle of a line: keep it for the next call.
                    return Ok(None);
                }
                if rotated_away {
                    match self.successor() {
                        Some(next) => {
                            let path = self.path.clone();
                            *self = Self::open_file(&path, &next)?;
                            rotated_away = false;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                let current = std::fs::metadata(&self.reading).map(|m| m.ino()).ok();
                if self.reading == self.path && current == Some(self.ino) {
                    // Still the newest file.
                    return Ok(None);
                }
                rotated_away = true;
                continue;
            }
            self.partial.push_str(&buf);
            if !self.partial.ends_with('\n') {
                continue;
            }
            let line = std::mem::take(&mut self.partial);
            match serde_json::from_str::<LogEntry>(line.trim_end()) {
                Ok(e) => return Ok(Some(e)),
                Err(e) => {
                    tracing::debug!(path = %self.reading.display(), error = %e, "skipping a malformed log line")
                }
            }
        }
    }

    /// The file written after the one being read: the next one in [`log_files`] after the
    /// one with this inode, or the oldest when it is gone (lines rotated away unread are
    /// lost, as with Docker). None when the one being read is the newest.
    fn successor(&self) -> Option<PathBuf> {
        let files = log_files(&self.path);
        let inos: Vec<Option<u64>> = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.ino()).ok())
            .collect();
        match inos.iter().position(|i| *i == Some(self.ino)) {
            Some(i) if i + 1 < files.len() => Some(files[i + 1].clone()),
            Some(_) => None,
            None => files.into_iter().next(),
        }
    }

    /// Every complete entry currently in the log.
    pub fn drain(&mut self) -> Result<Vec<LogEntry>, LogError> {
        let mut out = Vec::new();
        while let Some(e) = self.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }
}

/// The last `n` complete lines of `file` (without their `\n`), reading backwards from
/// `limit` (default: its end) in blocks.
fn last_lines(file: &Path, n: usize, limit: Option<u64>) -> Result<Vec<String>, LogError> {
    let read_err = |source| LogError::Read {
        path: file.to_path_buf(),
        source,
    };
    let mut f = match File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LogError::Open {
                path: file.to_path_buf(),
                source,
            });
        }
    };
    let end = match limit {
        Some(l) => l,
        None => f.metadata().map_err(read_err)?.len(),
    };
    const BLOCK: u64 = 64 * 1024;
    let mut pos = end;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        // Lines complete in `tail`: those after its first newline (or all at the start).
        let newlines = tail.iter().filter(|&&b| b == b'\n').count();
        if pos == 0 || newlines > n {
            break;
        }
        let from = pos.saturating_sub(BLOCK);
        let mut block = vec![0u8; (pos - from) as usize];
        f.seek(SeekFrom::Start(from)).map_err(read_err)?;
        f.read_exact(&mut block).map_err(read_err)?;
        block.extend_from_slice(&tail);
        tail = block;
        pos = from;
    }
    let text = String::from_utf8_lossy(&tail);
    // Only newline-terminated lines; the first is whole only when it starts the file.
    let mut lines: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .collect();
    if pos > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..]
        .iter()
        .map(|l| l.trim_end().to_string())
        .collect())
}

/// Reads a whole log, rotated files included: every complete entry.
pub fn read_log(path: &Path) -> Result<Vec<LogEntry>, LogError> {
    LogFollower::open(path)?.drain()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log file in a fresh temporary directory (kept while the guard lives).
    fn new_log() -> (tempfile::TempDir, PathBuf, LogOutput) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let log = LogOutput {
            file: LogFile::open(&path, Rotation::default()).unwrap(),
            sink: None,
        };
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

    /// Writes `n` numbered lines through a log rotating at `rotation`.
    fn write_lines(log: &LogOutput, from: usize, n: usize) {
        for i in from..from + n {
            log.emit(
                "stdout",
                format!("line {i:05} {}\n", "x".repeat(40)).as_bytes(),
            );
        }
    }

    fn numbers(entries: &[LogEntry]) -> Vec<usize> {
        entries
            .iter()
            .map(|e| e.log[5..10].parse().unwrap())
            .collect()
    }

    #[test]
    fn rotation_keeps_size_and_count_and_readers_see_every_kept_line_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let rotation = Rotation {
            max_size: 4096,
            max_files: 3,
        };
        let log = LogOutput {
            file: LogFile::open(&path, rotation).unwrap(),
            sink: None,
        };
        write_lines(&log, 0, 1000);
        let files = log_files(&path);
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(!rotated(&path, 3).exists());
        for f in &files {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len <= 4096, "{} is {len} bytes", f.display());
        }
        let all = read_log(&path).unwrap();
        let nums = numbers(&all);
        assert_eq!(*nums.last().unwrap(), 999);
        // Consecutive: the oldest kept line onwards, none missing or repeated.
        let first = nums[0];
        assert_eq!(nums, (first..1000).collect::<Vec<_>>());
        assert!(first > 0, "nothing was rotated away");

        // The tail comes from the end of the files, across the rotated boundary too.
        let newest = read_log_file_only(&path);
        let (tail, _) = LogFollower::open_tail(&path, newest + 2).unwrap();
        assert_eq!(numbers(&tail), (998 - newest..1000).collect::<Vec<_>>());
        let (tail, _) = LogFollower::open_tail(&path, 100_000).unwrap();
        assert_eq!(numbers(&tail), nums);
    }

    /// How many entries the newest file alone holds.
    fn read_log_file_only(path: &Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
    }

    #[test]
    fn a_follower_goes_on_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let rotation = Rotation {
            max_size: 2048,
            max_files: 4,
        };
        let log = LogOutput {
            file: LogFile::open(&path, rotation).unwrap(),
            sink: None,
        };
        write_lines(&log, 0, 10);
        let (_, mut follower) = LogFollower::open_tail(&path, 0).unwrap();
        let mut seen = Vec::new();
        // A few lines at a time, each batch read before the next: across several
        // rotations (each file holds about 30 lines).
        for batch in 0..20 {
            write_lines(&log, 10 + batch * 7, 7);
            seen.extend(numbers(&follower.drain().unwrap()));
        }
        assert_eq!(seen, (10..150).collect::<Vec<_>>());
        // Falling behind by a whole rotation loses nothing while the files are kept.
        write_lines(&log, 150, 40);
        assert_eq!(
            numbers(&follower.drain().unwrap()),
            (150..190).collect::<Vec<_>>()
        );
    }

    #[test]
    fn one_file_starts_again_and_is_followed_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let rotation = Rotation {
            max_size: 1024,
            max_files: 1,
        };
        let log = LogOutput {
            file: LogFile::open(&path, rotation).unwrap(),
            sink: None,
        };
        write_lines(&log, 0, 5);
        let mut follower = LogFollower::open(&path).unwrap();
        assert_eq!(follower.drain().unwrap().len(), 5);
        write_lines(&log, 5, 40);
        assert!(std::fs::metadata(&path).unwrap().len() <= 1024);
        assert_eq!(log_files(&path), vec![path.clone()]);
        let after = numbers(&follower.drain().unwrap());
        assert_eq!(*after.last().unwrap(), 44);
    }

    #[test]
    fn a_sink_gets_each_line_as_the_file_does_and_the_close() {
        #[derive(Default)]
        struct Rec(Mutex<(Vec<(String, String)>, bool)>);
        impl LogSink for Rec {
            fn write(&self, stream: &'static str, line: &[u8], _: chrono::DateTime<chrono::Utc>) {
                let mut g = self.0.lock().unwrap();
                g.0.push((stream.into(), String::from_utf8_lossy(line).into()));
            }
            fn close(&self) {
                self.0.lock().unwrap().1 = true;
            }
        }
        let rec = Arc::new(Rec::default());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let out = LogOutput {
            file: LogFile::open(&path, Rotation::default()).unwrap(),
            sink: Some(rec.clone()),
        };
        let (r, mut w) = std::io::pipe().unwrap();
        let t = out.spawn_copier("stderr", r);
        w.write_all(b"a\nb").unwrap();
        drop(w);
        t.join().unwrap();
        let g = rec.0.lock().unwrap();
        assert_eq!(
            g.0,
            vec![
                ("stderr".to_string(), "a\n".to_string()),
                ("stderr".to_string(), "b".to_string())
            ]
        );
        assert!(g.1);
        assert_eq!(read_log(&path).unwrap().len(), 2);
    }
}
