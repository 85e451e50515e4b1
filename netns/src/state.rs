//! Persisted network state under the run root: one JSON file of task records (lease,
//! names of what was created, port reservations), changed only under an exclusive flock.
//!
//! A record is written *before* anything is created for a task, so a crash at any
//! point leaves a record that the GC pass can follow to remove whatever exists.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::{NetworkMode, Protocol};

/// A failed read or write of the state file or its lock.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to create run root {path}")]
    CreateRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read network state {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "failed to parse network state {path} (remove it after `minifargate system reset` if it is damaged)"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to write network state {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One published port as reserved in the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub protocol: Protocol,
    pub host_port: u16,
    pub container_port: u16,
}

/// Everything created (or about to be created) for one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub mode: NetworkMode,
    pub netns: Option<PathBuf>,
    pub veth: Option<String>,
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ports: Vec<Reservation>,
    /// Whether port map elements may have been added to our nftables table.
    #[serde(default)]
    pub nft_ports: bool,
    pub files: Option<PathBuf>,
    /// Set (unix ms) once teardown removed everything but the veth, which the kernel
    /// frees with the namespace; the address stays leased until the veth is gone.
    #[serde(default)]
    pub releasing_since_ms: Option<u64>,
}

/// The whole state file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub tasks: BTreeMap<String, TaskRecord>,
    /// Whether our nftables table exists (created with the first task, removed with the last).
    #[serde(default)]
    pub nft_table: bool,
    /// The last address handed out, so the next lease starts after it.
    #[serde(default)]
    pub last_ip: Option<Ipv4Addr>,
}

impl State {
    /// All leased addresses.
    pub fn leased(&self) -> std::collections::HashSet<Ipv4Addr> {
        self.tasks.values().filter_map(|t| t.ip).collect()
    }
}

/// The state file held under its exclusive lock; dropping it unlocks.
pub struct Locked {
    _lock: Flock<File>,
    path: PathBuf,
    pub state: State,
}

/// Locks the state under `root` (creating `root` if needed) and reads it.
pub fn lock(root: &Path) -> Result<Locked, StateError> {
    fs::create_dir_all(root).map_err(|source| StateError::CreateRoot {
        path: root.into(),
        source,
    })?;
    let lock_path = root.join("netns.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StateError::Lock {
            path: lock_path.clone(),
            source,
        })?;
    let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Lock {
        path: lock_path.clone(),
        source: e.into(),
    })?;
    let path = root.join("netns.json");
    let state = match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| StateError::Parse {
            path: path.clone(),
            source,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    Ok(Locked {
        _lock: lock,
        path,
        state,
    })
}

impl Locked {
    /// Writes the state back (temp file + rename, so a crash never leaves half a file).
    pub fn save(&self) -> Result<(), StateError> {
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&self.state).expect("state serializes");
        fs::write(&tmp, body)
            .and_then(|()| fs::rename(&tmp, &self.path))
            .map_err(|source| StateError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_under_lock() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut l = lock(dir.path()).unwrap();
            assert!(l.state.tasks.is_empty());
            l.state.tasks.insert(
                "t1".into(),
                TaskRecord {
                    mode: NetworkMode::Awsvpc,
                    netns: None,
                    veth: Some("mv1".into()),
                    ip: Some(Ipv4Addr::new(10, 94, 0, 2)),
                    ports: vec![Reservation {
                        protocol: Protocol::Tcp,
                        host_port: 80,
                        container_port: 80,
                    }],
                    nft_ports: false,
                    files: None,
                    releasing_since_ms: None,
                },
            );
            l.save().unwrap();
        }
        let l = lock(dir.path()).unwrap();
        assert_eq!(
            l.state.leased().into_iter().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(10, 94, 0, 2)]
        );
    }

    #[test]
    fn damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("netns.json"), "{").unwrap();
        let err = lock(dir.path()).err().unwrap();
        assert!(
            err.to_string().contains("failed to parse network state"),
            "{err}"
        );
    }
}
