//! The executor's provisioning steps that make a task resource (its user namespace, its
//! FireLens configuration), each failure a [`StepError`] naming the step.

use super::Executor;
use crate::errors::error_chain;
use crate::store::Store;
use crate::task::reason;
use crate::taskdef::model::{NetworkMode, TaskDefinition};

/// A provisioning step that failed. Its text is the task's `stoppedReason`, as the ECS
/// agent words it (`ResourceInitializationError: ...`).
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    /// The user namespace decision refused the task (`--userns` asks for one this host or
    /// task cannot have).
    #[error("{ri}: {0}", ri = reason::RESOURCE_INIT)]
    UsernsRefused(String),
    /// The store did not answer the claim of an id range.
    #[error("{ri}: {0}", ri = reason::RESOURCE_INIT)]
    UsernsClaim(String),
    /// Every id range is held.
    #[error(
        "{ri}: no user namespace id range is free: all {ranges} ranges of {ids} ids \
         ({start}:{count} from {source_}) are held by running tasks",
        ri = reason::RESOURCE_INIT
    )]
    UsernsFull {
        ranges: u32,
        ids: u32,
        start: u32,
        count: u32,
        source_: String,
    },
    /// The task's directory could not be opened to the namespace's ids.
    #[error("{ri}: {0}", ri = reason::RESOURCE_INIT)]
    UsernsDir(String),
    /// The holder process that makes the namespace failed.
    #[error("{ri}: {0}", ri = reason::RESOURCE_INIT)]
    UsernsHolder(String),
    /// The FireLens plan, its S3 config file or its socket path.
    #[error("{ri}: unable to initialize firelens resource: {0}", ri = reason::RESOURCE_INIT)]
    FirelensInit(String),
    /// Writing the router's generated configuration.
    #[error("{ri}: unable to generate firelens config file: {0}", ri = reason::RESOURCE_INIT)]
    FirelensConfig(String),
}

/// A container's runtime spec that could not be made (the container's reason follows
/// `CannotCreateContainerError: `).
#[derive(Debug, thiserror::Error)]
pub(super) enum SpecStepError {
    /// Its json-file rotation options (`logConfiguration`).
    #[error("{container}: {detail}")]
    LogRotation { container: String, detail: String },
    /// Its settings (`crate::supervisor::spec::build`).
    #[error("{0}")]
    Settings(String),
    /// Its volumes' mounts.
    #[error("{0}")]
    Mounts(String),
    /// Filling a new volume from the image.
    #[error("{0}")]
    Populate(String),
}

impl Executor {
    /// Hands the executor the network namespace its supervisor made while it waited for
    /// the task (`crate::supervisor::isolation::netns_ahead`).
    pub fn set_netns_ahead(
        &mut self,
        ahead: Option<crate::supervisor::isolation::netns_ahead::Ahead>,
    ) {
        self.netns_ahead = ahead;
    }

    /// The network namespace for the network step to pin: the holder's (made inside the
    /// task's user namespace), else the one made while this process waited for its task,
    /// else none (the step makes one). The descriptor returned beside keeps the second
    /// alive: drop it once the step has pinned it.
    pub(super) fn netns_to_pin(
        &mut self,
        mode: NetworkMode,
    ) -> (
        Option<crate::supervisor::isolation::netns_ahead::Made>,
        Option<std::path::PathBuf>,
    ) {
        let ahead = self.netns_ahead.take().and_then(|a| a.take());
        let adopt = self.namespaces.net_namespace().or_else(|| {
            (mode != NetworkMode::Host)
                .then(|| ahead.as_ref().map(|m| m.path()))
                .flatten()
        });
        (ahead, adopt)
    }

    /// Decides whether the task gets a user namespace (`super::userns`) and, if so,
    /// claims its ids and starts the holder that makes it.
    pub(super) fn setup_userns(
        &mut self,
        mode: NetworkMode,
        def: &TaskDefinition,
    ) -> Result<(), StepError> {
        use crate::supervisor::isolation::userns::{self, Decision};
        let pool = match userns::decide(
            self.opts.userns,
            def,
            mode,
            userns::pool,
            userns::kernel_supports,
        ) {
            Decision::Host(note) => {
                self.warnings.extend(note);
                return Ok(());
            }
            Decision::Fail(why) => return Err(StepError::UsernsRefused(why.to_string())),
            Decision::Isolate(pool) => pool,
        };
        let id = self.task.id.clone();
        let claim = |s: &mut Store| {
            s.claim_userns_slot(&id, pool.slots(), |n| {
                let r = pool.range(n);
                (r.start, r.count)
            })
        };
        let mut slot = self.store.with(claim);
        if matches!(slot, Ok(None)) && self.finish_dead_tasks() {
            slot = self.store.with(claim);
        }
        let slot = slot
            .map_err(|e| StepError::UsernsClaim(error_chain(&e)))?
            .ok_or_else(|| StepError::UsernsFull {
                ranges: pool.slots(),
                ids: userns::TASK_IDS,
                start: pool.start,
                count: pool.count,
                source_: pool.source.to_string(),
            })?;
        let range = pool.range(slot);
        self.userns = Some(range);
        userns::open_task_dir(&self.opts.root, &self.paths.dir, range)
            .map_err(|e| StepError::UsernsDir(e.to_string()))?;
        tracing::info!(task_id = %id, host_ids = range.start, count = range.count,
            "task user namespace");
        self.namespaces
            .setup_user(def, &id, range)
            .map_err(|e| StepError::UsernsHolder(error_chain(&e)))
    }

    /// Generates the log router's configuration into the task's dir (fetching an S3 config
    /// file with the execution identity), as the agent creates its FireLens resource
    /// before the containers.
    pub(super) fn setup_firelens(
        &mut self,
        mode: NetworkMode,
        def: &TaskDefinition,
    ) -> Result<(), StepError> {
        use crate::supervisor::logs::firelens::{self, External, Files, TaskIds};
        let revision = self
            .task
            .task_definition_arn
            .rsplit(':')
            .next()
            .unwrap_or_default();
        let cluster = self
            .task
            .cluster
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let task_definition = format!("{}:{revision}", self.task.family);
        let ids = TaskIds {
            cluster: &cluster,
            task_arn: &self.task.arn,
            task_definition: &task_definition,
            task_id: &self.task.id,
        };
        let init = |e: &dyn std::fmt::Display| StepError::FirelensInit(e.to_string());
        let Some(plan) = firelens::plan(def, mode, &ids).map_err(|e| init(&e))? else {
            return Ok(());
        };
        let files = Files::new(self.paths.dir.join("firelens"));
        // Ref: sun_path holds 108 bytes with its NUL (unix(7)); the agent notes the same
        // limit for its data dir (firelens_unix.go createDirectories).
        let sock = files.socket();
        if sock.as_os_str().len() > 107 {
            return Err(init(&format!(
                "the router's socket path {} is longer than a unix socket path can be (107 \
                 bytes): use a shorter --root",
                sock.display()
            )));
        }
        let external = match &plan.external {
            Some(External::S3(o)) => Some(
                firelens::fetch_s3(&mut self.inside.execution, &self.opts.region, o)
                    .map_err(|e| init(&e))?,
            ),
            _ => None,
        };
        let text = plan.render().map_err(|e| init(&e))?;
        files
            .write(
                &text,
                external.as_deref(),
                plan.router_user.as_deref(),
                self.userns,
            )
            .map_err(|e| StepError::FirelensConfig(error_chain(&e)))?;
        tracing::info!(task_id = %self.task.id, config = %files.config().display(), "firelens config generated");
        self.firelens = Some((plan, files));
        Ok(())
    }
}
