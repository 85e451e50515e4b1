//! Readers of a task's host-side state that more than one front-end shows (the CLI's verbs
//! and the web console), so the two cannot disagree. They read; they never change a task:
//! inspect (namespaces, limits, processes), stats (cgroup counters, Docker's shape) and logs;
//! and exec, which starts a command in a task's container for `exec` and for an agent
//! answering an exec from another box.

pub mod exec;
pub mod inspect;
pub mod logs;
