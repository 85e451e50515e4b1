//! The task's provisioning, as a straight list of steps in their order: the user
//! namespace, the network, the mount namespace and the wiring thread, secrets and the
//! metadata endpoint, images, the task cgroup, the task's directories, the containers'
//! root filesystems, volumes, shared namespaces. What a step made stays recorded on the
//! executor (its teardown undoes it, on every path), so a step only says why it stopped.

use super::{Executor, now_us, wiring};
use crate::errors::error_chain;
use crate::store::LastStatus;
use crate::supervisor::isolation::mountns;
use crate::task::reason;
use crate::taskdef::model::{NetworkMode, TaskDefinition};
use runtime::Steps;
use std::path::PathBuf;

/// Why provisioning stopped before its end.
enum Stopped {
    /// Every container that has not run gets this reason ([`Executor::fail_all`]).
    All(String),
    /// Container `idx` fails with this reason ([`Executor::fail_container`]).
    Container(usize, String),
    /// Already reported: a stop was asked for, or the pulls failed and said why.
    Reported,
}

impl Executor {
    /// Network, images, task cgroup, rootfs. False when the task cannot start (its
    /// containers have been told why).
    pub(super) fn provision(&mut self, mode: NetworkMode, def: &TaskDefinition) -> bool {
        let mut steps = Steps::new();
        match self.provision_steps(mode, def, &mut steps) {
            Ok(()) => {
                tracing::debug!(task_id = %self.task.id, steps = %steps, "provision steps (µs)");
                true
            }
            Err(Stopped::All(why)) => {
                self.fail_all(&why);
                false
            }
            Err(Stopped::Container(idx, why)) => {
                self.fail_container(idx, why);
                false
            }
            Err(Stopped::Reported) => false,
        }
    }

    /// The steps of [`Executor::provision`], in order, each timed in `steps`.
    fn provision_steps(
        &mut self,
        mode: NetworkMode,
        def: &TaskDefinition,
        steps: &mut Steps,
    ) -> Result<(), Stopped> {
        // The user namespace first: the holder makes it with the task's network namespace
        // owned by it, which the network step then adopts.
        let t0 = now_us();
        let userns = self.setup_userns(mode, def);
        self.phase(None, "userns", t0);
        steps.mark("userns");
        userns.map_err(|why| Stopped::All(why.to_string()))?;
        // Each of the next two steps may make what the run root's tasks share (the
        // network's state, the template mount namespace; the wiring checks again before
        // the bridge and the nftables table): not for a root whose state is gone.
        self.state_still_there()?;
        let wiring = self.prepare_network(mode)?;
        steps.mark("network");
        self.state_still_there()?;
        self.enter_mount_namespace(def);
        steps.mark("mount namespace");
        // After the mount namespace: the thread starts in it (and finds the pin there).
        if let Some(w) = wiring {
            let beside =
                wiring::spawn(w, &self.task.id).map_err(|e| Stopped::All(error_chain(&e)))?;
            self.wiring = Some(beside);
        }
        crate::task::test_pause(&self.paths.run_dir, "network");
        steps.mark("wiring thread");
        self.task.last_status = LastStatus::Pending;
        self.save();
        steps.mark("save PENDING");
        self.start_inside(mode, def)?;
        steps.mark("secrets, endpoint");
        self.drain_events();
        if self.stopping() || !self.pull_images() {
            return Err(Stopped::Reported);
        }
        steps.mark("images");
        self.join_cgroup_ahead();
        self.make_task_cgroup(def)?;
        steps.mark("task cgroup");
        self.make_task_dirs(mode, def)?;
        steps.mark("logs, firelens, ephemeral, rootfs dir");
        self.mount_rootfses()?;
        steps.mark("rootfs");
        let user = self.namespaces.user_namespace();
        match self
            .volumes
            .setup(def, &self.paths.dir, &self.opts.root, user.as_ref())
        {
            Ok(notes) => self.warnings.extend(notes),
            Err(e) => return Err(resource_init(&e)),
        }
        steps.mark("volumes");
        // The holder of shared pid/ipc namespaces: the calling (main) thread owns the task
        // to its end, so the holder's PR_SET_PDEATHSIG fires only if this process dies.
        let t0 = now_us();
        let shared = self.namespaces.setup(def, &self.task.id, &mut self.volumes);
        self.phase(None, "namespaces", t0);
        if let Err(e) = shared {
            return Err(Stopped::All(format!("{}: {e}", reason::RESOURCE_INIT)));
        }
        steps.mark("namespaces");
        Ok(())
    }

    /// Why the task cannot go on when the state under the root is gone (its `state.db`
    /// removed since the task was read: the root deleted, e.g. by a test's cleanup, or
    /// `system reset`): what it would make now under the run root or on the host, no one
    /// would find again to remove. `None` while the state is there.
    fn state_gone(&self) -> Option<String> {
        let db = self.opts.root.join("state.db");
        (!db.is_file()).then(|| {
            format!(
                "{}: {} is gone (the root was removed while the task was starting): nothing more is made for it",
                reason::RESOURCE_INIT,
                db.display()
            )
        })
    }

    /// [`Executor::state_gone`] as a step's stop.
    fn state_still_there(&self) -> Result<(), Stopped> {
        match self.state_gone() {
            Some(why) => Err(Stopped::All(why)),
            None => Ok(()),
        }
    }

    /// The network's first half: what a container needs before its create, recorded as
    /// the task's attachment. The rest (links, addresses, routes, ports) is wired beside
    /// the launch: the wiring returned, if any.
    fn prepare_network(
        &mut self,
        mode: NetworkMode,
    ) -> Result<Option<crate::supervisor::isolation::network::Wiring>, Stopped> {
        let task_id = self.task.id.clone();
        let t0 = now_us();
        let (ahead, adopt) = self.netns_to_pin(mode);
        let mut net = self.net.prepare(&task_id, mode, adopt.as_deref());
        if net.as_ref().is_err_and(|e| e.held_by_another_task()) && self.finish_dead_tasks() {
            net = self.net.prepare(&task_id, mode, adopt.as_deref());
        }
        // Pinned now, or not wanted: the descriptor goes.
        drop(ahead);
        self.phase(None, "network", t0);
        match net {
            Ok((a, w)) => {
                self.warnings.extend(a.warnings.iter().cloned());
                self.attachment = Some(a);
                Ok(w)
            }
            Err(e) => Err(resource_init(&e)),
        }
    }

    /// From here on, the task's mounts go into a mount namespace of this supervisor's
    /// (its netns pin is in the host's table now): the host's table, which libcontainer
    /// reads several times per container, stays the same size however many tasks run.
    /// It is a copy of the run root's template (the host's table without the netns
    /// pins), made once: copying the host's would cost O(tasks running) per launch.
    /// Failing that, the mounts stay in the host's namespace (a warning, not a stop).
    fn enter_mount_namespace(&mut self, def: &TaskDefinition) {
        let pin = self.attachment.as_ref().and_then(|a| a.netns.clone());
        let template = mountns::Template::of(&self.opts.run_root);
        let needs = self.mount_needs(def);
        let from = mountns::FromTemplate {
            template: &template,
            needs: &needs,
        };
        match mountns::enter(pin.as_deref(), Some(from)) {
            Ok(mountns::Entered::Host(Some(e))) => {
                tracing::warn!(task_id = %self.task.id, error = %error_chain(&e),
                    "the task's mount namespace is a copy of the host's, not of the template");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(task_id = %self.task.id, error = %error_chain(&e),
                    "the task's mounts stay in the host's mount namespace");
            }
        }
    }

    /// The paths this task's mounts and containers use, which a copy of the template mount
    /// namespace must show as the host does (mountns::FromTemplate).
    fn mount_needs(&self, def: &TaskDefinition) -> Vec<PathBuf> {
        let (root, run_root) = (&self.opts.root, &self.opts.run_root);
        let mut needs = vec![
            root.clone(),
            run_root.clone(),
            root.join("layers"),
            self.paths.dir.clone(),
            self.paths.run_dir.clone(),
            self.paths.rootfs_dir.clone(),
        ];
        needs.extend(
            def.volumes
                .iter()
                .flatten()
                .filter_map(|v| v.host.as_ref()?.source_path.as_deref())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        );
        needs
    }

    /// Secrets and the metadata endpoint, before the pulls, as ECS resolves secrets and
    /// registry auth in one step ("unable to pull secrets or registry auth").
    fn start_inside(&mut self, mode: NetworkMode, def: &TaskDefinition) -> Result<(), Stopped> {
        let netns = (mode != NetworkMode::Host)
            .then(|| self.attachment.as_ref().and_then(|a| a.netns.clone()))
            .flatten();
        let inside = self
            .inside
            .provision(crate::supervisor::endpoints::metadata::Settings {
                root: &self.opts.root,
                task: &self.task,
                def,
                region: &self.opts.region,
                netns: netns.as_deref(),
                secrets_file: self.opts.secrets_file.clone(),
                host_credentials: self.opts.host_credentials,
                host_execution_credentials: self.opts.host_execution_credentials,
            });
        let endpoint = match inside {
            Ok(pending) => pending.map(|p| self.start_endpoint(p)),
            Err(why) => Some(Err(wiring::WiringError::from(why))),
        };
        match endpoint {
            Some(Err(why)) => Err(Stopped::All(why.to_string())),
            _ => Ok(()),
        }
    }

    /// The task's cgroup, unless made ahead (`prepare_task_cgroup`, `CgroupAhead`); the
    /// runtime is kept for the containers' creates (and the teardown) even when it fails.
    fn make_task_cgroup(&mut self, def: &TaskDefinition) -> Result<(), Stopped> {
        if self.task_cgroup {
            return Ok(());
        }
        let rt = self.new_runtime().map_err(|e| resource_init(&e))?;
        let made = rt.create_task_cgroup(&self.task.id, &self.limits(def));
        self.rt = Some(rt);
        made.map_err(|e| resource_init(&e))?;
        self.task_cgroup = true;
        Ok(())
    }

    /// The task's log dir, its FireLens configuration, its ephemeral storage (where it is
    /// enforced) and the dir of its containers' root filesystems.
    fn make_task_dirs(&mut self, mode: NetworkMode, def: &TaskDefinition) -> Result<(), Stopped> {
        let logs = self.paths.dir.join("logs");
        if let Err(e) = std::fs::create_dir_all(&logs) {
            return Err(Stopped::All(format!(
                "{}: failed to create {}: {e}",
                reason::RESOURCE_INIT,
                logs.display()
            )));
        }
        self.setup_firelens(mode, def)
            .map_err(|why| Stopped::All(why.to_string()))?;
        if crate::supervisor::isolation::ephemeral::enforced() {
            let t0 = now_us();
            let made = crate::supervisor::isolation::ephemeral::Ephemeral::create(
                &self.paths.dir,
                crate::supervisor::isolation::ephemeral::size_gib(def),
                self.slots.len(),
            );
            self.phase(None, "ephemeral", t0);
            self.ephemeral = Some(made.map_err(|e| resource_init(&e))?);
        }
        if let Err(e) = self.paths.make_rootfs_dir(self.userns.map(|r| r.start)) {
            return Err(Stopped::All(format!(
                "{}: failed to create {}: {e}",
                reason::RESOURCE_INIT,
                self.paths.rootfs_dir.display()
            )));
        }
        Ok(())
    }

    /// Each container's root filesystem: its image's layers under an overlay, mapped to
    /// the task's user namespace when it has one. A container whose mount fails stops
    /// the others from being mounted.
    fn mount_rootfses(&mut self) -> Result<(), Stopped> {
        let images = self.image_store();
        for idx in 0..self.slots.len() {
            let layers: Vec<PathBuf> = match (&images, &self.slots[idx].image) {
                (Ok(store), Some(rec)) => rec
                    .layers
                    .iter()
                    .map(|l| store.layer_path(&l.diff_id))
                    .collect(),
                _ => {
                    return Err(Stopped::Container(
                        idx,
                        format!("{}: the image cache is unavailable", reason::CANNOT_CREATE),
                    ));
                }
            };
            let state = self.paths.container_state(idx);
            let target = self.paths.rootfs(idx);
            let t0 = now_us();
            // Volatile: the upper dir lives exactly as long as this mount (a restart
            // keeps the mount; teardown and reconcile delete the upper after the
            // unmount), so the unmount need not sync the host's whole filesystem.
            let user = self.namespaces.user_namespace();
            let mounted = rootfs_cache::rootfs::mount_mapped(
                &layers,
                &state,
                &target,
                rootfs_cache::rootfs::MountApi::Auto,
                true,
                user.as_ref().map(|u| rootfs_cache::rootfs::Idmap {
                    userns: &u.path,
                    root_uid: u.range.start,
                    root_gid: u.range.start,
                }),
            );
            self.phase(Some(idx), "rootfs", t0);
            match mounted {
                Ok(_) => self.slots[idx].mounted = true,
                Err(e) => {
                    return Err(Stopped::Container(
                        idx,
                        format!("{}: {}", reason::CANNOT_CREATE, error_chain(&e)),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A step's failure to make a task resource, as the agent words it.
fn resource_init(e: &(dyn std::error::Error + 'static)) -> Stopped {
    Stopped::All(format!("{}: {}", reason::RESOURCE_INIT, error_chain(e)))
}
