//! Log routing in a task's supervisor: the json-file every container writes, and the
//! drivers that forward it (awslogs, FireLens and its router, the forwarder between them).

pub mod awslogs;
pub mod firelens;
pub mod forward;
pub mod logging;
