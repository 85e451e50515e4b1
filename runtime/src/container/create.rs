//! Creating a container: the checks and its OCI spec, its bundle, then libcontainer's
//! build with the container's streams and cgroup; on a failure, what was made goes.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use libcontainer::container::Container as Lc;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use super::{
    ConsoleSocket, Container, LifecycleGuard, Meta, Runtime, RuntimeError, Shared, error_chain,
    force_delete, io_err, open_null, private_dir, receive_pty, spawn_waiter, valid_id, write_json,
};
use crate::cgroup::Cgroups;
use crate::logs::{LogFile, LogOutput};
use crate::oci::{self, OciInputs, ProcessLimits, SpecError};
use crate::spec::{ContainerSpec, LogConfig};
use crate::user;
use crate::workload::Workload;

/// Where the container's stdout and stderr go, set on libcontainer's builder: a console
/// socket that receives its pty master, or the read ends of its output pipes (for the
/// log's copiers, when it logs).
struct Streams {
    console: Option<ConsoleSocket>,
    readers: [Option<(&'static str, OwnedFd)>; 2],
}

impl Runtime {
    /// Creates container `id` of task `task_id` from `spec` on `rootfs` (an assembled
    /// rootfs directory), joining `netns` when given (a fresh network namespace
    /// otherwise). The task cgroup should exist ([`Runtime::create_task_cgroup`]);
    /// the container gets `minifargate/<task>/<id>`. The process is created but waits
    /// for [`Container::start`]. On failure nothing is left behind.
    pub fn create(
        &self,
        id: &str,
        task_id: &str,
        spec: &ContainerSpec,
        rootfs: &Path,
        netns: Option<&Path>,
    ) -> Result<Container, RuntimeError> {
        let mut steps = crate::Steps::new();
        if !valid_id(id) {
            return Err(RuntimeError::InvalidId { id: id.into() });
        }
        if !valid_id(task_id) {
            return Err(RuntimeError::InvalidId { id: task_id.into() });
        }
        oci::validate(spec).map_err(|source| RuntimeError::Spec {
            id: id.into(),
            source,
        })?;
        if !rootfs.is_dir() {
            return Err(RuntimeError::Spec {
                id: id.into(),
                source: SpecError::Invalid {
                    field: "rootfs".into(),
                    reason: format!("{} is not a directory", rootfs.display()),
                },
            });
        }
        if let Some(ns) = netns
            && !ns.exists()
        {
            return Err(RuntimeError::Spec {
                id: id.into(),
                source: SpecError::Invalid {
                    field: "netns".into(),
                    reason: format!("{} does not exist", ns.display()),
                },
            });
        }
        let user = user::resolve(rootfs, spec.user.as_deref(), &spec.additional_groups).map_err(
            |source| RuntimeError::User {
                id: id.into(),
                source,
            },
        )?;
        steps.mark("checks, user");
        let bundle = self.bundle_dir(id);
        if bundle.exists() || self.youki_root().join(id).exists() {
            return Err(RuntimeError::Exists { id: id.into() });
        }
        let cgroup_path = Cgroups::container_path(task_id, id);
        let config = oci::build(
            spec,
            &OciInputs {
                id,
                rootfs,
                netns,
                cgroup_path: &cgroup_path,
                user: &user,
                host: &ProcessLimits,
                dev_root: Path::new("/dev"),
            },
        )
        .map_err(|source| RuntimeError::Spec {
            id: id.into(),
            source,
        })?;
        steps.mark("spec");

        // create_dir, not create_dir_all: two creates of one id race here, one wins.
        // Owner-only, as its config.json (the container's environment).
        match std::fs::DirBuilder::new().mode(0o700).create(&bundle) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::Exists { id: id.into() });
            }
            Err(e) => return Err(io_err("create", &bundle)(e)),
        }
        // Here, not in the init: charged to this process's cgroup, not the container's
        // (src/mountpoints.rs says why that matters).
        crate::mountpoints::premake(rootfs, &config);
        steps.mark("bundle dir, mount points");
        let created =
            self.create_in_bundle(id, task_id, spec, &bundle, &cgroup_path, config, &mut steps);
        tracing::debug!(container_id = id, steps = %steps, "create steps (µs)");
        match created {
            Ok(c) => Ok(c),
            Err(e) => {
                let mut cleanup = Vec::new();
                // libcontainer removes its own state on a failed create; make sure.
                let state = self.youki_root().join(id);
                if state.exists()
                    && let Err(err) = force_delete(&state)
                {
                    cleanup.push(err);
                }
                if let Err(source) = self.cgroups.remove(&cgroup_path) {
                    cleanup.push(RuntimeError::Cgroup {
                        id: id.into(),
                        source,
                    });
                }
                if let Err(err) = std::fs::remove_dir_all(&bundle) {
                    cleanup.push(RuntimeError::Io {
                        action: "remove",
                        path: bundle.clone(),
                        source: err,
                    });
                }
                tracing::warn!(container_id = id, error = %error_chain(&e), "container create failed");
                match e {
                    RuntimeError::Create {
                        id,
                        source,
                        cleanup: mut inner,
                    } => {
                        inner.extend(cleanup);
                        Err(RuntimeError::Create {
                            id,
                            source,
                            cleanup: inner,
                        })
                    }
                    other if cleanup.is_empty() => Err(other),
                    other => Err(RuntimeError::Create {
                        id: id.into(),
                        source: Box::new(other),
                        cleanup,
                    }),
                }
            }
        }
    }

    /// The create's steps once the bundle dir is there: its files, the container's
    /// cgroup, its streams, libcontainer's build, then the threads that follow it.
    /// `create` removes what was made when this fails.
    #[allow(clippy::too_many_arguments)]
    fn create_in_bundle(
        &self,
        id: &str,
        task_id: &str,
        spec: &ContainerSpec,
        bundle: &Path,
        cgroup_path: &str,
        config: serde_json::Value,
        steps: &mut crate::Steps,
    ) -> Result<Container, RuntimeError> {
        let meta = Meta {
            task_id: task_id.into(),
            cgroup_path: cgroup_path.into(),
        };
        write_json(&bundle.join("meta.json"), &meta)?;
        write_json(&bundle.join("config.json"), &config)?;
        let (lc_bundle, init_filter) = self.lc_bundle(id, bundle, &config)?;
        steps.mark("config, filter");

        self.cgroups
            .create_container(task_id, id, &spec.limits)
            .map_err(|source| RuntimeError::Cgroup {
                id: id.into(),
                source,
            })?;
        steps.mark("cgroup");

        let log = open_log(id, &spec.log)?;
        let (stdin_r, stdin_w) = stdin_pipe(spec, bundle)?;
        let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(self.youki_root())
            .map_err(|e| RuntimeError::Create {
                id: id.into(),
                source: Box::new(e),
                cleanup: vec![],
            })?
            .with_executor(Workload {
                exec_seccomp: None,
                init_filter,
                exec: false,
                kill_with_caller: false,
                tty_size: None,
            })
            .with_stdin(stdin_r);
        let (builder, streams) = self.with_streams(builder, spec, &log, bundle)?;
        steps.mark("log, pipes");
        let lc = {
            let _g = LifecycleGuard::take();
            // The build clones this process: no thread starts or ends meanwhile.
            let _gate = threadgate::close();
            steps.mark("gate");
            builder
                .as_init(&lc_bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
                .map_err(|e| RuntimeError::Create {
                    id: id.into(),
                    source: Box::new(e),
                    cleanup: vec![],
                })?
        };
        steps.mark("libcontainer");
        let pid = lc.pid().map(|p| p.as_raw()).unwrap_or(0);
        let shared = Arc::new(Shared::default());
        let (lc, followers) = self.follow(lc, pid, cgroup_path, &shared, log, streams)?;
        Ok(Container {
            id: id.into(),
            task_id: task_id.into(),
            cgroup_path: cgroup_path.into(),
            bundle: bundle.into(),
            cgroups: self.cgroups.clone(),
            lc: Mutex::new(Some(lc)),
            pid,
            shared,
            waiter: Mutex::new(Some(followers.waiter)),
            copiers: Mutex::new(followers.copiers),
            stdin: Mutex::new(stdin_w),
            tty: Mutex::new(followers.tty),
            youki_root: self.youki_root(),
            sock_dir: self.state_dir.join("s"),
            rootfs: config["root"]["path"]
                .as_str()
                .map(PathBuf::from)
                .unwrap_or_default(),
            spec: config,
        })
    }

    /// The bundle libcontainer runs: with a filter compiled ahead, a spec of its own
    /// (`lc/`), and the filter its init loads; the bundle's config.json stays the
    /// container's, for exec and readers.
    fn lc_bundle(
        &self,
        id: &str,
        bundle: &Path,
        config: &serde_json::Value,
    ) -> Result<(PathBuf, Option<crate::filter::InitFilter>), RuntimeError> {
        let prepared = crate::filter::prepare(config, &self.filter_cache).map_err(|source| {
            RuntimeError::Filter {
                id: id.into(),
                source,
            }
        })?;
        match prepared {
            Some((lc_config, filter)) => {
                let dir = bundle.join("lc");
                private_dir(&dir).map_err(io_err("create", &dir))?;
                write_json(&dir.join("config.json"), &lc_config)?;
                Ok((dir, Some(filter)))
            }
            None => Ok((bundle.to_path_buf(), None)),
        }
    }

    /// Sets the container's stdout and stderr on `builder`: a console socket for a tty,
    /// else a pipe each (to `/dev/null` when it does not log).
    fn with_streams(
        &self,
        builder: ContainerBuilder,
        spec: &ContainerSpec,
        log: &Option<LogOutput>,
        bundle: &Path,
    ) -> Result<(ContainerBuilder, Streams), RuntimeError> {
        if spec.tty {
            let sock = ConsoleSocket::bind(&self.state_dir.join("s"))?;
            let builder = builder.with_console_socket(Some(&sock.path));
            let streams = Streams {
                console: Some(sock),
                readers: [None, None],
            };
            return Ok((builder, streams));
        }
        let (out_r, out_w) = output_pipe(log, bundle)?;
        let (err_r, err_w) = output_pipe(log, bundle)?;
        let builder = builder.with_stdout(out_w).with_stderr(err_w);
        let streams = Streams {
            console: None,
            readers: [out_r.map(|r| ("stdout", r)), err_r.map(|r| ("stderr", r))],
        };
        Ok((builder, streams))
    }

    /// The threads that follow a built container: the log's copiers (output written
    /// before they run waits in the pipes) and the waiter of its exit, started through
    /// the thread gate (see LifecycleGuard); with a tty, its pty master taken from the
    /// console socket. The container is deleted when that fails.
    fn follow(
        &self,
        lc: Lc,
        pid: i32,
        cgroup_path: &str,
        shared: &Arc<Shared>,
        log: Option<LogOutput>,
        streams: Streams,
    ) -> Result<(Lc, Followers), RuntimeError> {
        let mut copiers = Vec::new();
        if let Some(log) = &log {
            let sources: Vec<_> = streams.readers.into_iter().flatten().collect();
            if !sources.is_empty() {
                copiers.push(log.spawn_copiers(sources));
            }
        }
        let waiter = spawn_waiter(
            pid,
            self.cgroups.clone(),
            cgroup_path.to_string(),
            shared.clone(),
        );
        let mut tty = None;
        if let Some(sock) = streams.console {
            match receive_pty(&sock.listener) {
                Ok(master) => {
                    let master = File::from(master);
                    if let (Some(log), Ok(reader)) = (&log, master.try_clone()) {
                        copiers.push(log.spawn_copiers(vec![("stdout", reader.into())]));
                    }
                    tty = Some(master);
                }
                Err(source) => {
                    let mut lc = lc;
                    let _g = LifecycleGuard::take();
                    let _ = lc.delete(true);
                    return Err(RuntimeError::Io {
                        action: "receive the pty master from",
                        path: sock.path.clone(),
                        source,
                    });
                }
            }
        }
        let followers = Followers {
            waiter,
            copiers,
            tty,
        };
        Ok((lc, followers))
    }
}

/// The threads following a container, and its pty master when it has a tty.
struct Followers {
    waiter: JoinHandle<()>,
    copiers: Vec<JoinHandle<()>>,
    tty: Option<File>,
}

/// The container's json-file log, opened (none when its output is discarded).
fn open_log(id: &str, log: &LogConfig) -> Result<Option<LogOutput>, RuntimeError> {
    match log {
        LogConfig::JsonFile {
            path,
            rotation,
            sink,
        } => Ok(Some(LogOutput {
            file: LogFile::open(path, *rotation).map_err(|source| RuntimeError::Log {
                id: id.into(),
                source,
            })?,
            sink: sink.as_ref().map(|s| s.0.clone()),
        })),
        LogConfig::Discard => Ok(None),
    }
}

/// The container's stdin, and the end kept to write to it: a pipe when it is
/// interactive without a tty, else `/dev/null`. Pipes are CLOEXEC: a container created
/// later (forked from this process) must not keep this one's pipes open.
fn stdin_pipe(
    spec: &ContainerSpec,
    bundle: &Path,
) -> Result<(OwnedFd, Option<File>), RuntimeError> {
    if spec.interactive && !spec.tty {
        let (r, w) = cloexec_pipe("create stdin pipe for", bundle)?;
        Ok((r, Some(File::from(w))))
    } else {
        Ok((open_null(true)?.into(), None))
    }
}

/// A read end for the copier (when logging) and a write end for the container.
fn output_pipe(
    log: &Option<LogOutput>,
    bundle: &Path,
) -> Result<(Option<OwnedFd>, OwnedFd), RuntimeError> {
    if log.is_none() {
        return Ok((None, open_null(false)?.into()));
    }
    let (r, w) = cloexec_pipe("create output pipe for", bundle)?;
    Ok((Some(r), w))
}

/// A pipe (read end, write end), CLOEXEC; `action` and the bundle name it in the error.
fn cloexec_pipe(action: &'static str, bundle: &Path) -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Io {
        action,
        path: bundle.into(),
        source: e.into(),
    })
}
