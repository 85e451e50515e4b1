//! The one renderer of an error with its causes, below every layer (scripts/layers): the
//! CLI, the API's ServerException messages and every process's logs print errors with it.

/// An error and its causes on one line, "outer: cause: root cause", leaving out a cause
/// whose text the line already holds (a context that quotes its source). The one
/// renderer of the binary: the CLI, the API's ServerException messages and the logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}
