//! The errors of the task network manager: one task's failed step ([`Error`]), a teardown
//! that ran every step and names those that failed ([`TeardownError`]), a GC pass's
//! failures ([`GcError`]).

use super::{FilesError, IpamError, NetlinkError, NftError, NsError, PortError, StateError};
use std::path::PathBuf;

/// A failed network operation for a task.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "failed to accept task id {id:?}: use 1-128 characters from A-Z a-z 0-9 _ . - not starting with '.'"
    )]
    InvalidTaskId { id: String },
    #[error("failed to accept bridge name {name:?}: use 1-15 characters from a-z A-Z 0-9 _ -")]
    InvalidBridgeName { name: String },
    #[error("failed to accept netns prefix {prefix:?}: use 1-32 characters from a-z A-Z 0-9 _ -")]
    InvalidPrefix { prefix: String },
    #[error("failed to set up the network of task {task}: it already has one (tear it down first)")]
    TaskExists { task: String },
    #[error(
        "failed to publish the ports of task {task}: nftables is not available ({reason}); install the nftables package"
    )]
    NftMissing { task: String, reason: String },
    #[error("failed to read or update the network state for task {task}")]
    State {
        task: String,
        #[source]
        source: StateError,
    },
    #[error("failed to lease an address for task {task}")]
    Ipam {
        task: String,
        #[source]
        source: IpamError,
    },
    #[error("failed to reserve host ports for task {task}")]
    Ports {
        task: String,
        #[source]
        source: PortError,
    },
    #[error("failed to configure links for task {task}")]
    Netlink {
        task: String,
        #[source]
        source: NetlinkError,
    },
    #[error("failed to manage the network namespace of task {task}")]
    Netns {
        task: String,
        #[source]
        source: NsError,
    },
    #[error("failed to update nftables for task {task}")]
    Nft {
        task: String,
        #[source]
        source: NftError,
    },
    #[error("failed to write the DNS files of task {task}")]
    Files {
        task: String,
        #[source]
        source: FilesError,
    },
    #[error("failed to write sysctl {path}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "failed to set up the network of task {task}: {} is gone (its owner's state was removed), so nothing every task shares (the bridge, the nftables table) is made for it",
        path.display()
    )]
    OwnerGone { task: String, path: PathBuf },
    #[error(
        "failed to set up the network of task {task}{}",
        cleanup_suffix(cleanup)
    )]
    Setup {
        task: String,
        #[source]
        source: Box<Error>,
        /// Errors from undoing the half-made setup (empty if cleanup was complete).
        cleanup: Vec<Error>,
    },
}

impl Error {
    /// Whether the setup failed for want of something another task holds: every address
    /// of the subnet leased, a host port reserved by another task or in use on the host,
    /// no dynamic host port free. A task whose supervisor died still holds these until it
    /// is cleaned up, so a caller may finish dead tasks and try once more.
    pub fn held_by_another_task(&self) -> bool {
        match self {
            Error::Ipam {
                source: IpamError::Exhausted { .. },
                ..
            } => true,
            Error::Ports { source, .. } => matches!(
                source,
                PortError::TakenByTask { .. }
                    | PortError::InUse { .. }
                    | PortError::NoDynamic { .. }
            ),
            Error::Setup { source, .. } => source.held_by_another_task(),
            _ => false,
        }
    }
}

fn cleanup_suffix(cleanup: &[Error]) -> String {
    if cleanup.is_empty() {
        String::new()
    } else {
        format!(" (and cleanup failed: {})", join_chain(cleanup))
    }
}

/// Renders each error with its whole source chain.
fn join_chain(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| chain(e))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Teardown ran every step; these are the ones that failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "failed to tear down the network of task {task}: {}",
    join_chain(errors)
)]
pub struct TeardownError {
    pub task: String,
    pub errors: Vec<Error>,
}

/// A GC pass reclaimed what it could; these tasks' teardowns failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to reclaim the network of {} dead task(s): {}", failures.len(), failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
pub struct GcError {
    pub reclaimed: Vec<String>,
    pub failures: Vec<TeardownError>,
}
