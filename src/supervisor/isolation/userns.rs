//! Per-task user namespaces: whether a task gets one, and which host ids it maps.
//!
//! A task in its own user namespace runs its containers' root as an unprivileged host id:
//! the namespace holder ([`runtime::NamespaceHolder`], the task's pause process) makes the
//! user namespace and, owned by it, the task's network namespace (which the network step
//! adopts) and shared pid/ipc namespaces; containers join it; their rootfs shows the shared
//! image layers through idmapped mounts (`rootfs_cache::rootfs::mount_mapped`), so nothing
//! is copied or chowned. docs/security.md "Per-task user namespaces" has the model.
//!
//! **Ids.** The pool is `MINIFARGATE_USERNS_RANGE=START:COUNT`, else the `/etc/subuid` and
//! `/etc/subgid` entries of `MINIFARGATE_USERNS_USER` (default `minifargate`), as podman's
//! `--userns=auto` takes the `containers` user's. Each task gets 65,536 ids (container ids
//! 0–65535, what an image's files can name), slot N of the pool being
//! `START + N × 65536`; the store hands slots out so running tasks never share one.
//!
//! **Mode** (`--userns`, `MINIFARGATE_USERNS`): `auto` (the default) gives every task that
//! can have one a user namespace when a pool is configured, and none otherwise (container
//! root is host root, as on an ECS container instance without Docker's userns-remap);
//! `on` requires it (a task that cannot have one fails to start, naming why); `off` never.
//! Why `auto` and not `on`: a box without a configured pool would otherwise run nothing,
//! and the pool is a host-wide decision (`/etc/subuid` is shared with podman and others),
//! so it is the operator's to make; once made, every eligible task is isolated.
//! Ref: Docker's `userns-remap` (docs "Isolate containers with a user namespace"), which
//! likewise maps a whole daemon's containers and excludes host namespaces and privileged
//! containers; podman `--userns=auto` (one range per container from the subordinate ids).

use crate::taskdef::model::{IpcMode, NetworkMode, PidMode, TaskDefinition};
use runtime::IdRange;
use std::path::{Path, PathBuf};

/// Ids per task: every id an image's files and `user` can name.
pub const TASK_IDS: u32 = 65536;

/// The environment variable of the pool (for messages; src/config.rs reads it).
pub const ENV_RANGE: &str = "MINIFARGATE_USERNS_RANGE";
/// The subordinate-id user when `MINIFARGATE_USERNS_USER` is not set.
pub const DEFAULT_USER: &str = "minifargate";

/// Whether tasks get user namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Never: container root is host root.
    Off,
    /// Every task that can have one, when an id pool is configured.
    #[default]
    Auto,
    /// Every task; one that cannot have one fails to start.
    On,
}

/// The configured host ids tasks' ranges are cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub start: u32,
    pub count: u32,
    /// Where it came from, for messages.
    pub source: &'static str,
}

impl Pool {
    /// How many tasks can hold a range at once.
    pub fn slots(&self) -> u32 {
        self.count / TASK_IDS
    }

    /// The ids of slot `slot`.
    pub fn range(&self, slot: u32) -> IdRange {
        IdRange {
            start: self.start + slot * TASK_IDS,
            count: TASK_IDS,
        }
    }
}

/// A `START:COUNT` range that cannot be a pool (the check is the config's, which
/// also reads MINIFARGATE_USERNS_RANGE).
pub use crate::config::IdRangeError as RangeError;

/// Why the configured id pool cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `file` is `/etc/subuid` or `/etc/subgid` (named so, whatever root was read).
    #[error("{file} {user}: {source}")]
    SubidRange {
        file: &'static str,
        user: String,
        #[source]
        source: RangeError,
    },
    #[error(
        "/etc/subuid gives {user} {uid_start}:{uid_count} but /etc/subgid {gid_start}:{gid_count}: \
         give both the same range (a task's uids and gids are mapped alike)"
    )]
    SubidMismatch {
        user: String,
        uid_start: u32,
        uid_count: u32,
        gid_start: u32,
        gid_count: u32,
    },
    #[error(
        "{user} needs an entry in both /etc/subuid and /etc/subgid (e.g. \
         `{user}:100000:65536000`, see subuid(5)), or set {ENV_RANGE}=START:COUNT"
    )]
    NoSubidEntry { user: String },
}

/// Why this kernel cannot give tasks user namespaces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Linux {release} cannot show image layers through a user namespace (overlayfs over \
     idmapped mounts needs 5.19)"
)]
pub struct KernelError {
    pub release: String,
}

/// A step of [`open_task_dir`] that failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenTaskDirError {
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to set the mode of {}: {source}", path.display())]
    SetMode {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to give {} the task's group: {source}", path.display())]
    Chown {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn parse_range(start: &str, count: &str) -> Result<(u32, u32), RangeError> {
    crate::config::id_range(start, count).map(|r| (r.start, r.count))
}

/// The first `name:start:count` entry of a subordinate-id file for `user` (by name, or by
/// uid: `uid` is asked only when an entry is numeric), per subuid(5).
fn subid_entry(text: &str, user: &str, uid: &dyn Fn() -> Option<u32>) -> Option<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| {
            let mut f = l.split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            let matches = who == user || who.parse().ok().is_some_and(|n: u32| uid() == Some(n));
            matches.then(|| (start.to_string(), count.to_string()))
        })
}

/// The pool from the environment or the subordinate-id files under `etc`; `Ok(None)` when
/// none is configured.
pub fn pool_from(
    range: Option<crate::config::IdRange>,
    user: Option<&str>,
    etc: &Path,
) -> Result<Option<Pool>, PoolError> {
    if let Some(r) = range {
        return Ok(Some(Pool {
            start: r.start,
            count: r.count,
            source: ENV_RANGE,
        }));
    }
    let name = user.unwrap_or(DEFAULT_USER);
    // The user's uid, looked up (passwd) at most once and only for a numeric entry.
    let looked_up = std::cell::OnceCell::new();
    let uid = || {
        *looked_up.get_or_init(|| {
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        })
    };
    let read = |f: &str| std::fs::read_to_string(etc.join(f)).unwrap_or_default();
    let (u, g) = (
        subid_entry(&read("subuid"), name, &uid),
        subid_entry(&read("subgid"), name, &uid),
    );
    match (u, g) {
        (None, None) if user.is_none() => Ok(None),
        (Some(u), Some(g)) => {
            let subid = |file, (start, count): &(String, String)| {
                parse_range(start, count).map_err(|source| PoolError::SubidRange {
                    file,
                    user: name.to_string(),
                    source,
                })
            };
            let (us, uc) = subid("/etc/subuid", &u)?;
            let (gs, gc) = subid("/etc/subgid", &g)?;
            if (us, uc) != (gs, gc) {
                return Err(PoolError::SubidMismatch {
                    user: name.to_string(),
                    uid_start: us,
                    uid_count: uc,
                    gid_start: gs,
                    gid_count: gc,
                });
            }
            Ok(Some(Pool {
                start: us,
                count: uc,
                source: "/etc/subuid",
            }))
        }
        _ => Err(PoolError::NoSubidEntry {
            user: name.to_string(),
        }),
    }
}

/// The pool this host is configured with (`MINIFARGATE_USERNS_RANGE`, checked at
/// start-up, or `MINIFARGATE_USERNS_USER`'s subordinate ids: src/config.rs).
pub fn pool() -> Result<Option<Pool>, PoolError> {
    let c = crate::config::get();
    pool_from(c.userns_range, c.userns_user.as_deref(), Path::new("/etc"))
}

/// Why `def` cannot run in a user namespace of its own, if it cannot: what needs host
/// root or the host's namespaces, as Docker's userns-remap excludes them.
pub fn unfit(def: &TaskDefinition, network: NetworkMode) -> Option<String> {
    if network == NetworkMode::Host {
        return Some("networkMode host shares the host's network namespace".into());
    }
    if def.pid_mode == Some(PidMode::Host) {
        return Some("pidMode host shares the host's pid namespace".into());
    }
    if def.ipc_mode == Some(IpcMode::Host) {
        return Some("ipcMode host shares the host's ipc namespace".into());
    }
    let defs = || def.container_definitions.iter().flatten();
    // `user` naming a numeric id past the task's 65,536: setuid would fail in the
    // namespace (names resolve in the image's passwd, whose ids are checked at start).
    let beyond = |u: &str| {
        u.split(':')
            .filter_map(|p| p.parse::<u64>().ok())
            .any(|id| id >= u64::from(TASK_IDS))
    };
    if let Some(c) = defs().find(|c| c.user.as_deref().is_some_and(beyond)) {
        return Some(format!(
            "container {} runs as user {}, past the {TASK_IDS} ids a task maps",
            c.name.as_deref().unwrap_or("?"),
            c.user.as_deref().unwrap_or_default()
        ));
    }
    if let Some(c) = defs().find(|c| {
        c.linux_parameters
            .as_ref()
            .and_then(|l| l.devices.as_ref())
            .is_some_and(|d| !d.is_empty())
    }) {
        // A host device node is owned by host root (or a host group): the task's root
        // could not open it.
        return Some(format!(
            "container {} maps host devices (linuxParameters.devices), which host ids own",
            c.name.as_deref().unwrap_or("?")
        ));
    }
    defs().find(|c| c.privileged == Some(true)).map(|c| {
        format!(
            "container {} is privileged (it needs host root)",
            c.name.as_deref().unwrap_or("?")
        )
    })
}

/// Overlayfs over idmapped layers needs Linux 5.19.
pub fn kernel_supports() -> Result<(), KernelError> {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (5, 19) {
        Ok(())
    } else {
        Err(KernelError { release })
    }
}

/// Lets the task's root reach the task dir, whose volumes and FireLens files its
/// containers bind from inside the user namespace (libcontainer mounts them as the
/// container's root, before `pivot_root`): the state root and `tasks/` get search
/// permission for others (0711: no listing; what is below stays owner-only), and the task
/// dir is 0710 with the task's root group, so only host root and this task's root reach it.
/// After `pivot_root` no host path is reachable from the container. Ref: containers/storage
/// makes its layer dirs 0711 for user-namespaced containers for the same reason.
pub fn open_task_dir(root: &Path, task_dir: &Path, range: IdRange) -> Result<(), OpenTaskDirError> {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|source| {
            OpenTaskDirError::SetMode {
                path: p.to_path_buf(),
                source,
            }
        })
    };
    for dir in [root.to_path_buf(), root.join("tasks")] {
        let mode = std::fs::metadata(&dir)
            .map_err(|source| OpenTaskDirError::Read {
                path: dir.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            set(&dir, (mode & 0o7777) | 0o711)?;
        }
    }
    std::os::unix::fs::chown(task_dir, Some(0), Some(range.start)).map_err(|source| {
        OpenTaskDirError::Chown {
            path: task_dir.to_path_buf(),
            source,
        }
    })?;
    set(task_dir, 0o710)
}

/// What a task gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// A user namespace with ids cut from this pool.
    Isolate(Pool),
    /// None; `Some(note)` is a task warning (a configured isolation that this task lacks).
    Host(Option<String>),
    /// The task cannot start (`on` and no user namespace possible).
    Fail(String),
}

/// The decision for one task. `pool` and `kernel` ([`pool`], [`kernel_supports`]) are
/// asked only when the mode needs them: `off`, the default without a pool, reads nothing.
pub fn decide(
    mode: Mode,
    def: &TaskDefinition,
    network: NetworkMode,
    pool: impl FnOnce() -> Result<Option<Pool>, PoolError>,
    kernel: impl FnOnce() -> Result<(), KernelError>,
) -> Decision {
    let not = |why: String| match mode {
        Mode::On => Decision::Fail(format!("user namespaces are required (--userns on): {why}")),
        _ => Decision::Host(Some(format!(
            "user namespace: not applied here: {why}; container root is host root in this task"
        ))),
    };
    if mode == Mode::Off {
        return Decision::Host(None);
    }
    let pool = match pool() {
        Ok(Some(p)) => p,
        Ok(None) if mode == Mode::Auto => return Decision::Host(None),
        Ok(None) => {
            return not(format!(
                "no id range is configured (an entry for {DEFAULT_USER} in /etc/subuid and \
                 /etc/subgid, or {ENV_RANGE})"
            ));
        }
        Err(e) => return not(e.to_string()),
    };
    if let Err(e) = kernel() {
        return not(e.to_string());
    }
    match unfit(def, network) {
        Some(why) => not(why),
        None => Decision::Isolate(pool),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: &str) -> TaskDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_pool_comes_from_the_range_or_the_subid_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pool_from(None, None, dir.path()), Ok(None));
        let range = crate::config::id_range("200000", "655360").unwrap();
        let p = pool_from(Some(range), None, dir.path()).unwrap().unwrap();
        assert_eq!((p.start, p.count, p.slots()), (200_000, 655_360, 10));
        assert_eq!(
            p.range(2),
            IdRange {
                start: 331_072,
                count: 65536
            }
        );
        // Bad ranges are refused at start-up: src/config.rs's tests.
        std::fs::write(
            dir.path().join("subuid"),
            "# comment\nalice:100000:65536\nminifargate:1000000:6553600\n",
        )
        .unwrap();
        // Only one of the two files: an error that names both.
        let e = pool_from(None, None, dir.path()).unwrap_err().to_string();
        assert!(e.contains("/etc/subgid"), "{e}");
        std::fs::write(dir.path().join("subgid"), "minifargate:1000000:6553600\n").unwrap();
        let p = pool_from(None, None, dir.path()).unwrap().unwrap();
        assert_eq!((p.start, p.slots()), (1_000_000, 100));
        std::fs::write(dir.path().join("subgid"), "minifargate:2000000:6553600\n").unwrap();
        let e = pool_from(None, None, dir.path()).unwrap_err().to_string();
        assert!(e.contains("same range"), "{e}");
        // A named user that has no entry is an error, not "none configured".
        let e = pool_from(None, Some("bob"), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bob"), "{e}");
    }

    #[test]
    fn each_mode_decides_as_documented() {
        let plain = def(r#"{"containerDefinitions":[{"name":"a"}]}"#);
        let privileged = def(r#"{"containerDefinitions":[{"name":"a","privileged":true}]}"#);
        let pool = Pool {
            start: 100_000,
            count: 65536 * 4,
            source: ENV_RANGE,
        };
        let aw = NetworkMode::Awsvpc;
        let d = |m, t: &TaskDefinition, n, p: Result<Option<Pool>, PoolError>| {
            decide(m, t, n, || p, || Ok(()))
        };
        assert_eq!(
            d(Mode::Auto, &plain, aw, Ok(Some(pool))),
            Decision::Isolate(pool)
        );
        assert_eq!(d(Mode::Auto, &plain, aw, Ok(None)), Decision::Host(None));
        assert_eq!(
            d(Mode::Off, &plain, aw, Ok(Some(pool))),
            Decision::Host(None)
        );
        let Decision::Host(Some(w)) = d(Mode::Auto, &privileged, aw, Ok(Some(pool))) else {
            panic!()
        };
        assert!(w.contains("privileged") && w.contains("not applied"), "{w}");
        let Decision::Host(Some(w)) = d(Mode::Auto, &plain, NetworkMode::Host, Ok(Some(pool)))
        else {
            panic!()
        };
        assert!(w.contains("networkMode host"), "{w}");
        let Decision::Fail(e) = d(Mode::On, &plain, aw, Ok(None)) else {
            panic!()
        };
        assert!(e.contains("no id range"), "{e}");
        let Decision::Fail(e) = d(Mode::On, &privileged, aw, Ok(Some(pool))) else {
            panic!()
        };
        assert!(e.contains("privileged"), "{e}");
        let big = def(r#"{"containerDefinitions":[{"name":"a","user":"1000:70000"}]}"#);
        let Decision::Host(Some(w)) = d(Mode::Auto, &big, aw, Ok(Some(pool))) else {
            panic!()
        };
        assert!(w.contains("70000") || w.contains("1000:70000"), "{w}");
        let Decision::Fail(e) = decide(
            Mode::On,
            &plain,
            aw,
            || Ok(Some(pool)),
            || {
                Err(KernelError {
                    release: "old".into(),
                })
            },
        ) else {
            panic!()
        };
        assert!(e.contains("old"), "{e}");
    }

    /// The errors' text is what `--userns on` tasks stop with and `auto` tasks warn with:
    /// pinned word for word.
    #[test]
    fn each_error_reads_as_before() {
        // A bad MINIFARGATE_USERNS_RANGE is refused at start-up (src/config.rs's tests).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("subuid"), "minifargate:100000:10\n").unwrap();
        std::fs::write(dir.path().join("subgid"), "minifargate:100000:65536\n").unwrap();
        assert_eq!(
            pool_from(None, None, dir.path()).unwrap_err().to_string(),
            "/etc/subuid minifargate: 10 ids are fewer than one task needs (65536)"
        );
        std::fs::write(dir.path().join("subuid"), "minifargate:200000:65536\n").unwrap();
        assert_eq!(
            pool_from(None, None, dir.path()).unwrap_err().to_string(),
            "/etc/subuid gives minifargate 200000:65536 but /etc/subgid 100000:65536: give both \
             the same range (a task's uids and gids are mapped alike)"
        );
        assert_eq!(
            pool_from(None, Some("bob"), dir.path())
                .unwrap_err()
                .to_string(),
            "bob needs an entry in both /etc/subuid and /etc/subgid (e.g. `bob:100000:65536000`, \
             see subuid(5)), or set MINIFARGATE_USERNS_RANGE=START:COUNT"
        );
        assert_eq!(
            KernelError {
                release: "5.15.0-1".into()
            }
            .to_string(),
            "Linux 5.15.0-1 cannot show image layers through a user namespace (overlayfs over \
             idmapped mounts needs 5.19)"
        );
        let missing = dir.path().join("none");
        let e = open_task_dir(
            &missing,
            &missing,
            IdRange {
                start: 100_000,
                count: TASK_IDS,
            },
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "failed to read {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }
}
