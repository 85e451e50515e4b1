//! `pidMode` and `ipcMode` on this host: which pid and ipc namespaces, and which `/dev/shm`,
//! each container of the task gets, and the holder process that keeps shared ones alive.
//!
//! Ref: ecs.json `TaskDefinition.pidMode` / `ipcMode`: `host` = the host's namespace,
//! `task` = one namespace shared by all containers of the task, `none` (ipc) = private;
//! without a value, each container has its own (Docker's default). The ECS agent shares a
//! task's namespaces through its pause container (amazon-ecs-agent agent/api/task/task.go,
//! `--pid`/`--ipc container:<pause>`); here a [`runtime::NamespaceHolder`] plays that part,
//! started before the first container and killed at teardown.
//! `/dev/shm` follows Docker (moby daemon/container_operations_unix.go `setupIpcDirs`,
//! docs "IPC settings (--ipc)"): `host` binds the host's /dev/shm, a joined ipc namespace
//! shares one tmpfs, `none` has no /dev/shm mounted.

use crate::supervisor::isolation::volumes::{TaskVolumes, VolumeError};
use crate::taskdef::model::{IpcMode, PidMode, TaskDefinition};
use runtime::{ContainerSpec, DevShm, HeldNamespaces, NamespaceHolder, NamespaceMode};
use std::path::{Path, PathBuf};

/// Docker's default `/dev/shm` size, which the pause container's shared one has too.
const DEFAULT_SHM: u64 = runtime::oci::DEFAULT_SHM_SIZE;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("failed to start the holder of the task's shared namespaces")]
    Holder(#[from] runtime::HolderError),
    #[error("failed to make the task's shared /dev/shm")]
    Shm(#[from] VolumeError),
}

/// The task's choices and what was made for them.
#[derive(Debug, Default)]
pub struct TaskNamespaces {
    pid: Option<PidMode>,
    ipc: Option<IpcMode>,
    holder: Option<NamespaceHolder>,
    shm: Option<PathBuf>,
}

/// The shared `/dev/shm`'s size: the largest `linuxParameters.sharedMemorySize` (MiB) of the
/// task's containers, else Docker's 64 MiB. (Docker sizes it by the container that owns
/// the namespace; with the holder in that place, no container's wish is lost.)
fn shared_shm_size(def: &TaskDefinition) -> u64 {
    def.container_definitions
        .iter()
        .flatten()
        .filter_map(|c| c.linux_parameters.as_ref()?.shared_memory_size)
        .filter(|m| *m > 0)
        .map(|m| (m as u64) << 20)
        .max()
        .unwrap_or(DEFAULT_SHM)
}

impl TaskNamespaces {
    /// For a task in its own user namespace ([`crate::supervisor::isolation::userns`]), before anything else of
    /// the task is made: starts the holder with the user namespace mapping `range` and the
    /// task's network namespace owned by it (which the network step adopts), and the pid
    /// and ipc namespaces the definition shares, all owned by it.
    pub fn setup_user(
        &mut self,
        def: &TaskDefinition,
        task_id: &str,
        range: runtime::IdRange,
    ) -> Result<(), NamespaceError> {
        self.start_holder(def, task_id, Some(range))
    }

    /// The task's network namespace, when the holder made it ([`Self::setup_user`]).
    pub fn net_namespace(&self) -> Option<PathBuf> {
        self.holder
            .as_ref()
            .and_then(NamespaceHolder::net_namespace)
    }

    /// The task's user namespace, when it has one.
    pub fn user_namespace(&self) -> Option<runtime::UserNamespace> {
        self.holder
            .as_ref()
            .and_then(NamespaceHolder::user_namespace)
    }

    fn start_holder(
        &mut self,
        def: &TaskDefinition,
        task_id: &str,
        user: Option<runtime::IdRange>,
    ) -> Result<(), NamespaceError> {
        self.pid = def.pid_mode;
        self.ipc = def.ipc_mode;
        let held = HeldNamespaces {
            pid: self.pid == Some(PidMode::Task),
            ipc: self.ipc == Some(IpcMode::Task),
            user,
            net: user.is_some(),
        };
        if self.holder.is_none() && held.any() {
            // This very program, even if its file was replaced since it started.
            let h = NamespaceHolder::start(Path::new("/proc/self/exe"), &[task_id], held)?;
            tracing::info!(
                task_id,
                holder_pid = h.pid(),
                ?held,
                "namespace holder started"
            );
            self.holder = Some(h);
        }
        Ok(())
    }

    /// Starts the holder when `pidMode` or `ipcMode` is `task` (unless [`Self::setup_user`]
    /// did), and the shared /dev/shm for `ipcMode: task` (in `volumes`, which unmounts it).
    /// What was made before an error is kept for [`Self::stop`] and the volumes' teardown.
    pub fn setup(
        &mut self,
        def: &TaskDefinition,
        task_id: &str,
        volumes: &mut TaskVolumes,
    ) -> Result<(), NamespaceError> {
        self.start_holder(def, task_id, None)?;
        if self.ipc == Some(IpcMode::Task) {
            self.shm = Some(volumes.shared_shm(shared_shm_size(def))?);
        }
        Ok(())
    }

    /// Sets the pid and ipc namespaces and `/dev/shm` of one container's spec.
    pub fn apply(&self, spec: &mut ContainerSpec) {
        let holder = self.holder.as_ref();
        spec.namespaces.pid = match self.pid {
            Some(PidMode::Host) => NamespaceMode::Host,
            Some(PidMode::Task) => holder
                .and_then(NamespaceHolder::pid_namespace)
                .map_or(NamespaceMode::Private, NamespaceMode::Join),
            None => NamespaceMode::Private,
        };
        let (ipc, shm) = match self.ipc {
            Some(IpcMode::Host) => (NamespaceMode::Host, DevShm::Bind("/dev/shm".into())),
            Some(IpcMode::Task) => (
                holder
                    .and_then(NamespaceHolder::ipc_namespace)
                    .map_or(NamespaceMode::Private, NamespaceMode::Join),
                self.shm.clone().map_or(DevShm::Tmpfs, DevShm::Bind),
            ),
            Some(IpcMode::None) => (NamespaceMode::Private, DevShm::None),
            None => (NamespaceMode::Private, DevShm::Tmpfs),
        };
        spec.namespaces.ipc = ipc;
        spec.dev_shm = shm;
        spec.namespaces.user = self.user_namespace();
    }

    /// Whether a container's processes may outlive its pid 1: in the task's shared pid
    /// namespace (its holder's, which also stands for `ipcMode` and user namespaces) or
    /// the host's (`pidMode` `host`), pid 1's exit does not end the others.
    pub fn processes_may_outlive_pid1(&self) -> bool {
        self.holder.is_some() || self.pid == Some(PidMode::Host)
    }

    /// Kills the holder, and with it every process left in a shared pid namespace (also
    /// those an exited container's main process left behind). Teardown's first step.
    pub fn kill(&mut self) -> Result<(), runtime::HolderError> {
        match self.holder.as_mut() {
            Some(h) => h.kill(),
            None => Ok(()),
        }
    }

    /// Reaps the holder. After the containers are deleted: the holder (pid 1) finishes
    /// dying only when every process of its namespace is reaped, and the containers'
    /// processes are reaped by their delete.
    pub fn stop(&mut self) -> Result<(), runtime::HolderError> {
        match self.holder.take() {
            Some(h) => h.stop(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: &str) -> TaskDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn modes_become_runtime_namespaces_and_dev_shm() {
        let mut spec = ContainerSpec::default();
        let ns = TaskNamespaces {
            pid: Some(PidMode::Host),
            ipc: Some(IpcMode::Host),
            ..Default::default()
        };
        ns.apply(&mut spec);
        assert_eq!(spec.namespaces.pid, NamespaceMode::Host);
        assert_eq!(spec.namespaces.ipc, NamespaceMode::Host);
        assert_eq!(spec.dev_shm, DevShm::Bind("/dev/shm".into()));
        let ns = TaskNamespaces {
            ipc: Some(IpcMode::None),
            ..Default::default()
        };
        ns.apply(&mut spec);
        assert_eq!(spec.namespaces.pid, NamespaceMode::Private);
        assert_eq!(spec.namespaces.ipc, NamespaceMode::Private);
        assert_eq!(spec.dev_shm, DevShm::None);
        TaskNamespaces::default().apply(&mut spec);
        assert_eq!(spec.dev_shm, DevShm::Tmpfs);
    }

    #[test]
    fn the_shared_shm_is_the_largest_asked_for() {
        assert_eq!(
            shared_shm_size(&def(r#"{"containerDefinitions":[{"name":"a"}]}"#)),
            64 << 20
        );
        assert_eq!(
            shared_shm_size(&def(
                r#"{"containerDefinitions":[{"name":"a","linuxParameters":{"sharedMemorySize":128}},
                    {"name":"b","linuxParameters":{"sharedMemorySize":256}}]}"#
            )),
            256 << 20
        );
    }
}
