//! The endpoints a task's supervisor serves inside the task's network namespace: the task
//! metadata endpoint (v2/v4), the credentials endpoint of the task role, task scale-in
//! protection, and the private-registry credentials the executor's pulls use.

pub mod credentials;
pub mod metadata;
pub mod protection;
pub mod registry_auth;
