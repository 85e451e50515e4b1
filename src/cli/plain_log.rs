//! The task supervisor's log subscriber: the lines `tracing_subscriber::fmt` writes in its
//! text format (time, level, message, fields), without its span registry.
//!
//! Why: the registry's slab allocates a table for 4,096 threads (32 KiB, written) when it
//! is made, and a supervisor keeps it resident as long as its task runs
//! (docs/benchmarks.md, "Supervisor memory"). The supervisor's own code opens no spans;
//! a line leaves out the spans of library code it was logged in, and keeps its fields.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Writes each event as one line to `out` (stderr: the supervisor's log file). Which
/// events it gets is the filter layer's business (`EnvFilter` over it).
pub struct PlainLog<W> {
    next_span: AtomicU64,
    out: W,
}

impl<W> PlainLog<W>
where
    W: Fn() -> Box<dyn std::io::Write> + Send + Sync + 'static,
{
    pub fn new(out: W) -> Self {
        PlainLog {
            next_span: AtomicU64::new(1),
            out,
        }
    }
}

impl<W> Subscriber for PlainLog<W>
where
    W: Fn() -> Box<dyn std::io::Write> + Send + Sync + 'static,
{
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = String::with_capacity(160);
        let _ = write!(
            line,
            "{} {:>5} ",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ"),
            event.metadata().level()
        );
        event.record(&mut Fields {
            line: &mut line,
            first: true,
        });
        // No terminal escapes from a field's value in a log file (as fmt sanitises them).
        let mut line = line.replace('\x1b', "\\x1b");
        line.push('\n');
        let _ = (self.out)().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// fmt's field layout: the message first as it is, then `name=value` (Debug), spaced.
struct Fields<'a> {
    line: &'a mut String,
    first: bool,
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        // What the `log` bridge records about a record's origin, as fmt leaves it out.
        if name.starts_with("log.") {
            return;
        }
        if !std::mem::take(&mut self.first) {
            self.line.push(' ');
        }
        let _ = match name {
            "message" => write!(self.line, "{value:?}"),
            _ => write!(self.line, "{}={value:?}", name.trim_start_matches("r#")),
        };
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut chain = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(chain, ": {s}");
            source = s.source();
        }
        self.record_debug(field, &format_args!("{chain}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_read_as_fmts_text_format() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let sub = PlainLog::new(move || Box::new(Shared(b.clone())) as Box<dyn std::io::Write>);
        let err = std::io::Error::other("disk full");
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("ignored", x = 1);
            let _g = span.enter();
            tracing::warn!(task_id = %"abc", n = 3, name = "q", "task {} \x1b[31mrunning", 7);
            tracing::error!(error = &err as &(dyn std::error::Error + 'static), "failed");
        });
        let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        // 2026-11-24T09:05:27.937404Z  WARN task 7 \x1b[31mrunning task_id=abc n=3 name="q"
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert!(
            time.len() == 27 && time.ends_with('Z') && time.contains('T'),
            "{time}"
        );
        assert_eq!(
            rest,
            r#" WARN task 7 \x1b[31mrunning task_id=abc n=3 name="q""#
        );
        assert!(
            lines[1].ends_with("ERROR failed error=disk full"),
            "{}",
            lines[1]
        );
    }
}
