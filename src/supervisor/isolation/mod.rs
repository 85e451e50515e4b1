//! The isolation steps a task's supervisor provisions (and tears down) before its
//! containers run: namespaces (user, mount, the task's shared ones), the network, volumes,
//! ephemeral storage, the platform check and the resource maths of the task's cgroup.

pub mod ephemeral;
pub mod mountns;
pub mod namespaces;
pub mod netns_ahead;
pub mod network;
pub mod platform;
pub mod resources;
pub mod userns;
pub mod volumes;
