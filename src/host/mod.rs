//! Readers of a task's host-side state that more than one front-end shows (the CLI's verbs
//! and the web console), so the two cannot disagree. They read; they never change a task.

pub mod logs;
