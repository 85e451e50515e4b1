//! Task volumes: what each `volumes[]` entry of a task definition becomes on this host, the
//! bind mounts `mountPoints` and `volumesFrom` give each container, and their cleanup.
//!
//! - no `host` (or `host` without `sourcePath`), and `dockerVolumeConfiguration` with scope
//!   `task`: a directory `<root>/tasks/<id>/volumes/<name>` shared by the task's containers
//!   and removed with the task (Fargate's bind-mount ephemeral storage).
//! - `host.sourcePath` (EC2): a bind of the host path (created when missing, as Docker does).
//! - `dockerVolumeConfiguration` scope `shared`: `<root>/volumes/<name>`, kept after the task;
//!   created only with `autoprovision: true`. Local driver options `type=tmpfs` and
//!   `type=none,o=bind,device=PATH` are honoured; other drivers and options are errors.
//! - EFS, FSx and volumes configured at launch: "not available locally" unless mapped to a
//!   local directory with `run-task --volume-map NAME=/dir` (which makes them host binds).
//!
//! Image content: a new empty Docker volume (task or shared scope) is filled with what the
//! image has at the mount path, as Docker does for named volumes; a bind-mount volume only
//! when the image declares that path as a `VOLUME`, which is the rule ECS documents for
//! Fargate bind mounts ("Bind mounts" in the ECS developer guide). Host paths never are.

use crate::taskdef::model::{
    ContainerDefinition, DockerVolumeConfiguration, DockerVolumeScope, TaskDefinition, Volume,
};
use runtime::Mount;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "volumes[{idx}].{field}: volume {name:?} needs {what}, which is not available locally; \
         map it to a local directory with `run-task --volume-map {name}=/local/dir`"
    )]
    NotLocal {
        idx: usize,
        name: String,
        field: &'static str,
        what: &'static str,
    },
    #[error("volumes[{idx}].host.sourcePath: {path:?} must be an absolute host path")]
    RelativeSource { idx: usize, path: String },
    #[error("volumes[{idx}].name: {name:?} is not a valid volume name (letters, digits, _ and -)")]
    BadName { idx: usize, name: String },
    #[error("--volume-map {arg:?}: use NAME=/local/dir")]
    MapSyntax { arg: String },
    #[error(
        "--volume-map {name}: the task definition has no volume named {name:?} (its volumes: {known})"
    )]
    MapUnknown { name: String, known: String },
    #[error("--volume-map {name}={path}: not an existing directory")]
    MapPath { name: String, path: String },
    #[error(
        "volumes[{idx}].dockerVolumeConfiguration.driver: driver {driver:?} of volume {name:?} \
         is not available locally; only the `local` driver is"
    )]
    Driver {
        idx: usize,
        name: String,
        driver: String,
    },
    #[error("volumes[{idx}].dockerVolumeConfiguration.driverOpts.{key}: {detail}")]
    DriverOpt {
        idx: usize,
        key: String,
        detail: String,
    },
    #[error(
        "volumes[{idx}].dockerVolumeConfiguration: shared volume {name:?} does not exist ({}) and \
         autoprovision is false; create it (`mkdir -p {}`) or set autoprovision to true",
        path.display(), path.display()
    )]
    MissingShared {
        idx: usize,
        name: String,
        path: PathBuf,
    },
    #[error(
        "containerDefinitions[{idx}].mountPoints[{k}].sourceVolume: no volume named {name:?} in the task definition's volumes"
    )]
    UnknownVolume { idx: usize, k: usize, name: String },
    #[error(
        "containerDefinitions[{idx}].volumesFrom[{k}].sourceContainer: no container named {name:?} in the task"
    )]
    UnknownContainer { idx: usize, k: usize, name: String },
    #[error("failed to create volume directory {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to mount a tmpfs for volume {name:?} at {}", path.display())]
    Tmpfs {
        name: String,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("failed to unmount the tmpfs of volume {name:?} at {}", path.display())]
    Unmount {
        name: String,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("failed to remove the task's volumes at {}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to copy the image's {container_path} into volume {name:?}")]
    CopyUp {
        name: String,
        container_path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a volume's data lives on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory of the task, removed with it.
    TaskDir,
    /// A tmpfs mounted on a directory of the task (local driver `type=tmpfs`), `o` options.
    TaskTmpfs { options: String },
    /// A host path (`sourcePath`, `--volume-map`, local driver `o=bind`).
    Host(PathBuf),
    /// `<root>/volumes/<name>`, kept after the task.
    Shared(PathBuf),
}

/// How the local driver options of a Docker volume change it.
fn local_driver(idx: usize, c: &DockerVolumeConfiguration) -> Result<Option<Kind>, VolumeError> {
    let opts = c.driver_opts.clone().unwrap_or_default();
    if opts.is_empty() {
        return Ok(None);
    }
    let bad = |key: &str, detail: String| VolumeError::DriverOpt {
        idx,
        key: key.to_string(),
        detail,
    };
    if let Some(k) = opts
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "o" | "device"))
    {
        return Err(bad(
            k,
            "unknown option of the local driver (it takes type, o and device)".into(),
        ));
    }
    let o = opts.get("o").cloned().unwrap_or_default();
    match opts.get("type").map(String::as_str) {
        Some("tmpfs") => {
            if c.scope == Some(DockerVolumeScope::Shared) {
                return Err(bad(
                    "type",
                    "a tmpfs volume cannot be shared between tasks here; use scope task".into(),
                ));
            }
            Ok(Some(Kind::TaskTmpfs { options: o }))
        }
        Some("none") | None if o.split(',').any(|x| x == "bind") => {
            let dev = opts.get("device").cloned().unwrap_or_default();
            if !dev.starts_with('/') {
                return Err(bad(
                    "device",
                    format!("{dev:?}: a bind volume needs an absolute host path"),
                ));
            }
            Ok(Some(Kind::Host(PathBuf::from(dev))))
        }
        Some(t) => Err(bad(
            "type",
            format!(
                "{t:?} is not supported locally (only `tmpfs`, and `none` with o=bind and device)"
            ),
        )),
        None => Err(bad(
            "o",
            format!("{o:?} without a type is not supported locally"),
        )),
    }
}

/// The shared volume directory of `name`.
pub fn shared_path(root: &Path, name: &str) -> PathBuf {
    root.join("volumes").join(name)
}

/// Parses `--volume-map NAME=/dir` arguments.
pub fn parse_map(args: &[String]) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((n, p)) if !n.is_empty() && p.starts_with('/') => {
                Ok((n.to_string(), PathBuf::from(p)))
            }
            _ => Err(VolumeError::MapSyntax { arg: a.clone() }),
        })
        .collect()
}

/// Launch-time check (before anything of the task exists): refuses what cannot be mounted
/// here and rewrites mapped EFS/FSx/configured-at-launch volumes into host binds.
pub fn check(
    def: &mut TaskDefinition,
    map: &BTreeMap<String, PathBuf>,
    root: &Path,
) -> Result<(), VolumeError> {
    let vols = def.volumes.get_or_insert_with(Vec::new);
    for name in map.keys() {
        if !vols.iter().any(|v| v.name.as_deref() == Some(name)) {
            return Err(VolumeError::MapUnknown {
                name: name.clone(),
                known: vols
                    .iter()
                    .filter_map(|v| v.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    for (idx, v) in vols.iter_mut().enumerate() {
        let name = v.name.clone().unwrap_or_default();
        // The name becomes a directory name (task and shared volumes).
        if !name.is_empty()
            && !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(VolumeError::BadName { idx, name });
        }
        if let Some(p) = v.host.as_ref().and_then(|h| h.source_path.as_deref())
            && !p.is_empty()
            && !p.starts_with('/')
        {
            return Err(VolumeError::RelativeSource {
                idx,
                path: p.to_string(),
            });
        }
        if let Some(dir) = map.get(&name) {
            if !dir.is_dir() {
                return Err(VolumeError::MapPath {
                    name,
                    path: dir.display().to_string(),
                });
            }
            *v = Volume {
                name: v.name.clone(),
                host: Some(crate::taskdef::model::HostVolumeProperties {
                    source_path: Some(dir.display().to_string()),
                }),
                ..Default::default()
            };
            continue;
        }
        let not_local = |field, what| VolumeError::NotLocal {
            idx,
            name: name.clone(),
            field,
            what,
        };
        if v.efs_volume_configuration.is_some() {
            return Err(not_local("efsVolumeConfiguration", "Amazon EFS"));
        }
        if v.fsx_windows_file_server_volume_configuration.is_some() {
            return Err(not_local(
                "fsxWindowsFileServerVolumeConfiguration",
                "Amazon FSx for Windows File Server",
            ));
        }
        if v.s3files_volume_configuration.is_some() {
            return Err(not_local("s3filesVolumeConfiguration", "Amazon S3 Files"));
        }
        if v.configured_at_launch == Some(true) {
            return Err(not_local(
                "configuredAtLaunch",
                "an Amazon EBS volume configured at launch",
            ));
        }
        if let Some(c) = &v.docker_volume_configuration {
            let driver = c.driver.as_deref().unwrap_or("local");
            if driver != "local" {
                return Err(VolumeError::Driver {
                    idx,
                    name,
                    driver: driver.to_string(),
                });
            }
            local_driver(idx, c)?;
            let path = shared_path(root, &name);
            if c.scope == Some(DockerVolumeScope::Shared)
                && c.autoprovision != Some(true)
                && !path.is_dir()
            {
                return Err(VolumeError::MissingShared { idx, name, path });
            }
        }
    }
    if vols.is_empty() {
        def.volumes = None;
    }
    Ok(())
}

#[derive(Debug)]
struct Resolved {
    kind: Kind,
    /// Docker volume semantics: filled with the image's content when empty.
    docker: bool,
    /// Its directory on the host (the bind source).
    path: PathBuf,
}

/// The volumes of one running task. Dropping it does not clean up: call [`Self::teardown`].
#[derive(Debug, Default)]
pub struct TaskVolumes {
    /// `<root>/tasks/<id>/volumes`.
    dir: PathBuf,
    vols: BTreeMap<String, Resolved>,
    /// Tmpfs volumes currently mounted on the host (name, path).
    mounted: Vec<(String, PathBuf)>,
}

impl TaskVolumes {
    /// Creates the task's volume directories (tmpfs mounted, shared volumes provisioned).
    /// On error what was made is recorded: [`Self::teardown`] removes it.
    ///
    /// With the task's user namespace `user`: the task's own volumes are owned by its root
    /// (a container's root sees an empty volume as its own, as without one); a shared
    /// Docker volume, used by tasks with different ranges, is bound through an idmapped
    /// mount, so its files stay in host-root terms on disk and each task sees them as its
    /// root's; a host path (`host.sourcePath`) is not mapped: the container's root is no
    /// one there and cannot write the host's files. Returns the task's notes on that.
    pub fn setup(
        &mut self,
        def: &TaskDefinition,
        task_dir: &Path,
        root: &Path,
        user: Option<&runtime::UserNamespace>,
    ) -> Result<Vec<String>, VolumeError> {
        let mut notes = Vec::new();
        self.dir = task_dir.join("volumes");
        let mkdir = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|source| VolumeError::Create {
                path: p.to_path_buf(),
                source,
            })
        };
        for (idx, v) in def.volumes.iter().flatten().enumerate() {
            let Some(name) = v.name.clone().filter(|n| !n.is_empty()) else {
                continue;
            };
            if name.contains('/') || name == ".." || name == "." {
                return Err(VolumeError::BadName { idx, name });
            }
            let task_path = self.dir.join(&name);
            let (kind, docker) = match (&v.host, &v.docker_volume_configuration) {
                (Some(h), _) if h.source_path.as_deref().is_some_and(|p| !p.is_empty()) => (
                    Kind::Host(PathBuf::from(h.source_path.clone().unwrap_or_default())),
                    false,
                ),
                (_, Some(c)) => match local_driver(idx, c)? {
                    Some(k) => (k, false),
                    None if c.scope == Some(DockerVolumeScope::Shared) => {
                        (Kind::Shared(shared_path(root, &name)), true)
                    }
                    None => (Kind::TaskDir, true),
                },
                _ => (Kind::TaskDir, false),
            };
            let mut path = match &kind {
                Kind::TaskDir | Kind::TaskTmpfs { .. } => task_path,
                Kind::Host(p) | Kind::Shared(p) => p.clone(),
            };
            if let Kind::Shared(p) = &kind
                && !p.is_dir()
                && v.docker_volume_configuration
                    .as_ref()
                    .and_then(|c| c.autoprovision)
                    != Some(true)
            {
                return Err(VolumeError::MissingShared {
                    idx,
                    name,
                    path: p.clone(),
                });
            }
            mkdir(&path)?;
            if let Kind::TaskTmpfs { options } = &kind {
                let data = (!options.is_empty()).then_some(options.as_str());
                nix::mount::mount(
                    Some("tmpfs"),
                    &path,
                    Some("tmpfs"),
                    nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                    data,
                )
                .map_err(|source| VolumeError::Tmpfs {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                })?;
                self.mounted.push((name.clone(), path.clone()));
            }
            if let Some(u) = user {
                match &kind {
                    Kind::TaskDir | Kind::TaskTmpfs { .. } => {
                        let id = Some(u.range.start);
                        std::os::unix::fs::chown(&path, id, id).map_err(|source| {
                            VolumeError::Create {
                                path: path.clone(),
                                source,
                            }
                        })?;
                    }
                    Kind::Shared(p) => {
                        let at = self.dir.join(format!(".idmap-{name}"));
                        mkdir(&at)?;
                        let mapped = std::fs::File::open(&u.path)
                            .and_then(|ns| rootfs_cache::rootfs::idmapped_bind(p, &at, &ns, false));
                        mapped.map_err(|source| VolumeError::Create {
                            path: at.clone(),
                            source,
                        })?;
                        self.mounted.push((name.clone(), at.clone()));
                        path = at;
                    }
                    Kind::Host(p) => notes.push(format!(
                        "volume {name}: host path {} is not mapped into the task's user \
                         namespace: files of host users show as nobody (65534) and the \
                         container's root cannot write what host users own",
                        p.display()
                    )),
                }
            }
            tracing::debug!(volume = %name, ?kind, path = %path.display(), "volume ready");
            self.vols.insert(name, Resolved { kind, docker, path });
        }
        Ok(notes)
    }

    /// A tmpfs of `size` bytes for the `/dev/shm` the task's containers share
    /// (`ipcMode: task`), under the volumes dir (`.shm`: no ECS volume name starts with a
    /// dot); [`Self::teardown`] unmounts it, [`cleanup_dead`] after a crash.
    /// Ref: moby daemon/container_operations_unix.go `setupIpcDirs`: a container joining
    /// another's ipc namespace gets that container's /dev/shm.
    pub fn shared_shm(&mut self, size: u64) -> Result<PathBuf, VolumeError> {
        let name = "/dev/shm".to_string();
        let path = self.dir.join(".shm");
        std::fs::create_dir_all(&path).map_err(|source| VolumeError::Create {
            path: path.clone(),
            source,
        })?;
        use nix::mount::MsFlags;
        nix::mount::mount(
            Some("shm"),
            &path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,size={size}").as_str()),
        )
        .map_err(|source| VolumeError::Tmpfs {
            name: name.clone(),
            path: path.clone(),
            source,
        })?;
        self.mounted.push((name, path.clone()));
        Ok(path)
    }

    /// The bind mounts of container `idx` of `defs`: its `mountPoints`, then what it takes
    /// with `volumesFrom` (recursively; `readOnly` there makes all of them read-only).
    /// Sorted so that a parent directory is mounted before what is mounted inside it.
    pub fn mounts(
        &self,
        defs: &[ContainerDefinition],
        idx: usize,
    ) -> Result<Vec<Mount>, VolumeError> {
        let mut out = Vec::new();
        let mut seen = vec![idx];
        self.collect(defs, idx, false, &mut seen, &mut out)?;
        out.sort_by_key(|m| match m {
            Mount::Bind { destination, .. } | Mount::Tmpfs { destination, .. } => {
                destination.trim_end_matches('/').matches('/').count()
            }
        });
        Ok(out)
    }

    fn collect(
        &self,
        defs: &[ContainerDefinition],
        idx: usize,
        force_ro: bool,
        seen: &mut Vec<usize>,
        out: &mut Vec<Mount>,
    ) -> Result<(), VolumeError> {
        let def = &defs[idx];
        for (k, mp) in def.mount_points.iter().flatten().enumerate() {
            let name = mp.source_volume.clone().unwrap_or_default();
            let v = self
                .vols
                .get(&name)
                .ok_or_else(|| VolumeError::UnknownVolume {
                    idx,
                    k,
                    name: name.clone(),
                })?;
            let Some(dest) = mp.container_path.clone() else {
                continue;
            };
            // A later mount at the same path wins, as in Docker (no duplicate mount).
            out.retain(|m| !matches!(m, Mount::Bind { destination, .. } if *destination == dest));
            out.push(Mount::Bind {
                source: v.path.clone(),
                destination: dest,
                read_only: force_ro || mp.read_only == Some(true),
            });
        }
        for (k, vf) in def.volumes_from.iter().flatten().enumerate() {
            let name = vf.source_container.clone().unwrap_or_default();
            let src = defs
                .iter()
                .position(|d| d.name_str() == name)
                .ok_or_else(|| VolumeError::UnknownContainer {
                    idx,
                    k,
                    name: name.clone(),
                })?;
            if seen.contains(&src) {
                continue;
            }
            seen.push(src);
            self.collect(defs, src, force_ro || vf.read_only == Some(true), seen, out)?;
        }
        Ok(())
    }

    /// Fills the empty volumes container `idx` mounts with what its image has at the mount
    /// path (see the module doc for which volumes); `image_volumes` are the image config's
    /// `Volumes`. Symlinked mount paths are skipped (they could point out of the rootfs).
    pub fn populate(
        &self,
        def: &ContainerDefinition,
        rootfs: &Path,
        image_volumes: &[String],
    ) -> Result<(), VolumeError> {
        for mp in def.mount_points.iter().flatten() {
            let (Some(name), Some(cpath)) = (&mp.source_volume, &mp.container_path) else {
                continue;
            };
            let Some(v) = self.vols.get(name) else {
                continue;
            };
            let declared = image_volumes
                .iter()
                .any(|p| p.trim_end_matches('/') == cpath.trim_end_matches('/'));
            if !(v.docker || v.kind == Kind::TaskDir && declared) {
                continue;
            }
            let Some(src) = inside_rootfs(rootfs, cpath) else {
                continue;
            };
            let empty = std::fs::read_dir(&v.path).is_ok_and(|mut d| d.next().is_none());
            if !empty {
                continue;
            }
            copy_tree(&src, &v.path).map_err(|source| VolumeError::CopyUp {
                name: name.clone(),
                container_path: cpath.clone(),
                source,
            })?;
            tracing::info!(volume = %name, container_path = %cpath, "volume filled from the image");
        }
        Ok(())
    }

    /// Unmounts tmpfs volumes and removes the task's volume directories (host paths and
    /// shared volumes stay). Runs every step; returns every error.
    pub fn teardown(&mut self) -> Vec<VolumeError> {
        let mut errors = Vec::new();
        for (name, path) in std::mem::take(&mut self.mounted) {
            if let Err(source) = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
                errors.push(VolumeError::Unmount { name, path, source });
            }
        }
        if errors.is_empty()
            && self.dir.exists()
            && let Err(source) = std::fs::remove_dir_all(&self.dir)
        {
            errors.push(VolumeError::Remove {
                path: self.dir.clone(),
                source,
            });
        }
        errors
    }
}

/// Cleanup after a supervisor that died: unmounts what is mounted under
/// `<task dir>/volumes` (tmpfs volumes), deepest first, then removes it. Nothing is removed
/// while something stays mounted there.
pub fn cleanup_dead(task_dir: &Path) -> Vec<VolumeError> {
    let dir = task_dir.join("volumes");
    if !dir.exists() {
        return Vec::new();
    }
    let mut errors = Vec::new();
    let mut points: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for path in points {
        if let Err(source) = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            errors.push(VolumeError::Unmount { name, path, source });
        }
    }
    if errors.is_empty()
        && let Err(source) = std::fs::remove_dir_all(&dir)
    {
        errors.push(VolumeError::Remove { path: dir, source });
    }
    errors
}

/// Every mount point in this process's mount namespace (/proc/self/mountinfo).
pub fn mount_points() -> Vec<PathBuf> {
    runtime::mountinfo::own()
        .into_iter()
        .map(|m| m.mount_point)
        .collect()
}

/// `cpath` inside `rootfs` when it is a directory reached without symlinks.
fn inside_rootfs(rootfs: &Path, cpath: &str) -> Option<PathBuf> {
    let mut p = rootfs.to_path_buf();
    for comp in cpath.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return None;
        }
        p.push(comp);
        let md = std::fs::symlink_metadata(&p).ok()?;
        if md.file_type().is_symlink() {
            return None;
        }
    }
    std::fs::symlink_metadata(&p).ok()?.is_dir().then_some(p)
}

/// Copies the tree under `src` into the existing directory `dst`, keeping modes, owners and
/// symlinks (never followed). `dst` gets `src`'s mode and owner too, as Docker does.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = std::fs::symlink_metadata(src)?;
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = std::fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
            continue;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        } else {
            // Devices, fifos and sockets are not volume content.
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(md.uid()), Some(md.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: &str) -> TaskDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn efs_is_refused_unless_mapped() {
        let root = tempfile::tempdir().unwrap();
        let json = r#"{"volumes":[{"name":"data","efsVolumeConfiguration":{"fileSystemId":"fs-1"}}],
            "containerDefinitions":[{"name":"a"}]}"#;
        let e = check(&mut def(json), &BTreeMap::new(), root.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("volumes[0].efsVolumeConfiguration: volume \"data\" needs Amazon EFS")
                && e.contains("--volume-map data=/local/dir"),
            "{e}"
        );
        let map = parse_map(&[format!("data={}", root.path().display())]).unwrap();
        let mut d = def(json);
        check(&mut d, &map, root.path()).unwrap();
        let v = &d.volumes.unwrap()[0];
        assert!(v.efs_volume_configuration.is_none());
        assert_eq!(
            v.host.as_ref().unwrap().source_path.as_deref(),
            Some(root.path().to_str().unwrap())
        );
        let e = check(
            &mut def(json),
            &parse_map(&["other=/tmp".into()]).unwrap(),
            root.path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no volume named \"other\""), "{e}");
        assert!(parse_map(&["x".into()]).is_err());
        let e = check(
            &mut def(r#"{"volumes":[{"name":"h","host":{"sourcePath":"data"}}]}"#),
            &BTreeMap::new(),
            root.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("volumes[0].host.sourcePath: \"data\""), "{e}");
        let e = check(
            &mut def(r#"{"volumes":[{"name":"../x"}]}"#),
            &BTreeMap::new(),
            root.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("volumes[0].name:"), "{e}");
    }

    #[test]
    fn docker_volume_drivers_and_options() {
        let root = tempfile::tempdir().unwrap();
        let e = check(
            &mut def(
                r#"{"volumes":[{"name":"v","dockerVolumeConfiguration":{"driver":"rexray/ebs"}}]}"#,
            ),
            &BTreeMap::new(),
            root.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("driver \"rexray/ebs\""), "{e}");
        let e = check(
            &mut def(
                r#"{"volumes":[{"name":"v","dockerVolumeConfiguration":{"driverOpts":{"type":"nfs","o":"addr=1.2.3.4"}}}]}"#,
            ),
            &BTreeMap::new(),
            root.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("volumes[0].dockerVolumeConfiguration.driverOpts.type: \"nfs\""),
            "{e}"
        );
        let e = check(
            &mut def(
                r#"{"volumes":[{"name":"v","dockerVolumeConfiguration":{"scope":"shared"}}]}"#,
            ),
            &BTreeMap::new(),
            root.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("autoprovision is false"), "{e}");
        check(
            &mut def(
                r#"{"volumes":[{"name":"v","dockerVolumeConfiguration":{"scope":"shared","autoprovision":true}}]}"#,
            ),
            &BTreeMap::new(),
            root.path(),
        )
        .unwrap();
    }

    #[test]
    fn mounts_follow_mount_points_and_volumes_from() {
        let dir = tempfile::tempdir().unwrap();
        let d = def(
            r#"{"volumes":[{"name":"a"},{"name":"b","host":{}}],"containerDefinitions":[
              {"name":"w","mountPoints":[{"sourceVolume":"a","containerPath":"/data/sub"},
                                         {"sourceVolume":"b","containerPath":"/data","readOnly":true}]},
              {"name":"r","volumesFrom":[{"sourceContainer":"w","readOnly":true}]},
              {"name":"x","volumesFrom":[{"sourceContainer":"w"}]},
              {"name":"bad","mountPoints":[{"sourceVolume":"zz","containerPath":"/z"}]}]}"#,
        );
        let mut tv = TaskVolumes::default();
        tv.setup(&d, dir.path(), dir.path(), None).unwrap();
        assert!(dir.path().join("volumes/a").is_dir());
        let defs = d.container_definitions.unwrap();
        let m = tv.mounts(&defs, 0).unwrap();
        assert_eq!(
            m,
            [
                Mount::Bind {
                    source: dir.path().join("volumes/b"),
                    destination: "/data".into(),
                    read_only: true
                },
                Mount::Bind {
                    source: dir.path().join("volumes/a"),
                    destination: "/data/sub".into(),
                    read_only: false
                },
            ]
        );
        let ro: Vec<bool> = tv
            .mounts(&defs, 1)
            .unwrap()
            .iter()
            .map(|m| {
                matches!(
                    m,
                    Mount::Bind {
                        read_only: true,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(ro, [true, true]);
        let inherited: Vec<bool> = tv
            .mounts(&defs, 2)
            .unwrap()
            .iter()
            .map(|m| {
                matches!(
                    m,
                    Mount::Bind {
                        read_only: true,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(inherited, [true, false]);
        let e = tv.mounts(&defs, 3).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "containerDefinitions[3].mountPoints[0].sourceVolume: no volume named \"zz\""
            ),
            "{e}"
        );
        assert!(tv.teardown().is_empty());
        assert!(!dir.path().join("volumes").exists());
    }

    #[test]
    fn populate_copies_image_content_by_docker_and_ecs_rules() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc/app/conf.d")).unwrap();
        std::fs::write(rootfs.join("etc/app/conf.d/x.conf"), "x=1").unwrap();
        std::os::unix::fs::symlink("/etc", rootfs.join("link")).unwrap();
        let d = def(
            r#"{"volumes":[{"name":"bind"},{"name":"dock","dockerVolumeConfiguration":{"scope":"task"}},
                           {"name":"viasym","dockerVolumeConfiguration":{}}],
                "containerDefinitions":[{"name":"c","mountPoints":[
                  {"sourceVolume":"bind","containerPath":"/etc/app"},
                  {"sourceVolume":"dock","containerPath":"/etc/app/"},
                  {"sourceVolume":"viasym","containerPath":"/link"}]}]}"#,
        );
        let mut tv = TaskVolumes::default();
        tv.setup(&d, dir.path(), dir.path(), None).unwrap();
        let c = &d.container_definitions.as_ref().unwrap()[0];
        tv.populate(c, &rootfs, &[]).unwrap();
        let v = dir.path().join("volumes");
        // A bind volume only gets what the image declares as a VOLUME.
        assert!(!v.join("bind/conf.d").exists());
        assert_eq!(
            std::fs::read_to_string(v.join("dock/conf.d/x.conf")).unwrap(),
            "x=1"
        );
        // Never through a symlink out of the rootfs.
        assert_eq!(std::fs::read_dir(v.join("viasym")).unwrap().count(), 0);
        tv.populate(c, &rootfs, &["/etc/app".into()]).unwrap();
        assert!(v.join("bind/conf.d/x.conf").exists());
        assert!(tv.teardown().is_empty());
    }
}
