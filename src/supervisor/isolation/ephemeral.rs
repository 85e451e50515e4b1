//! `ephemeralStorage.sizeInGiB` on this host: with `MINIFARGATE_EPHEMERAL_STORAGE=enforce`,
//! each task gets its own ext4 of that size (a sparse file, loop-mounted) that holds its
//! containers' writable layers and its volumes, so writing past it fails with ENOSPC as on
//! Fargate. Off by default: it adds a mkfs and a loop mount to every task's start
//! (docs/run-task.md, Ephemeral storage, has the numbers), and is reported as not applied.

use crate::taskdef::model::TaskDefinition;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::task::ephemeral::size_gib;

/// The environment variable that turns enforcement on (`enforce`).
pub const ENV: &str = "MINIFARGATE_EPHEMERAL_STORAGE";

#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    #[error("failed to create the task's ephemeral storage file {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to run {program} for the task's ephemeral storage ({detail})")]
    Command {
        program: &'static str,
        detail: String,
    },
    #[error("failed to unmount the task's ephemeral storage at {}", path.display())]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// Whether this host enforces it (`MINIFARGATE_EPHEMERAL_STORAGE=enforce`).
pub fn enforced() -> bool {
    crate::config::get().ephemeral_storage == crate::config::EphemeralStorage::Enforce
}

/// The task warning for a definition that sets ephemeralStorage on a host that does not
/// enforce it (nothing silent).
pub fn warning(def: &TaskDefinition) -> Option<String> {
    let set = def.ephemeral_storage.as_ref()?.size_in_gib?;
    (!enforced()).then(|| {
        format!(
            "ephemeralStorage.sizeInGiB {set}: not applied here: the task's writable layers \
             and volumes share the host's disk (set {ENV}=enforce to give each task its own \
             {set} GiB filesystem)"
        )
    })
}

/// `<task dir>/ephemeral`: the mount point; the image file beside it.
fn mount_point(task_dir: &Path) -> PathBuf {
    task_dir.join("ephemeral")
}

fn image_file(task_dir: &Path) -> PathBuf {
    task_dir.join("ephemeral.img")
}

fn run(program: &'static str, args: &[&std::ffi::OsStr]) -> Result<(), EphemeralError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| EphemeralError::Command {
            program,
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(EphemeralError::Command {
            program,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// A task's mounted ephemeral storage.
#[derive(Debug)]
pub struct Ephemeral {
    task_dir: PathBuf,
}

impl Ephemeral {
    /// Makes a sparse `gib` GiB ext4 and loop-mounts it at `<task dir>/ephemeral`; the
    /// containers' state dirs (`c<N>`, upper and work) and `volumes` become links into it.
    /// On failure nothing is left mounted.
    pub fn create(
        task_dir: &Path,
        gib: i64,
        containers: usize,
    ) -> Result<Ephemeral, EphemeralError> {
        let img = image_file(task_dir);
        let mnt = mount_point(task_dir);
        let create = |path: &Path| {
            let p = path.to_path_buf();
            move |source| EphemeralError::Create { path: p, source }
        };
        let f = std::fs::File::create(&img).map_err(create(&img))?;
        f.set_len(gib as u64 * 1024 * 1024 * 1024)
            .map_err(create(&img))?;
        drop(f);
        // No journal (a task's scratch space does not outlive a crash), no reserved blocks
        // (the whole size is the task's), lazy inode tables and no discard: what keeps
        // mkfs of a sparse file cheap.
        run(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-O".as_ref(),
                "^has_journal".as_ref(),
                "-m".as_ref(),
                "0".as_ref(),
                "-E".as_ref(),
                "nodiscard,lazy_itable_init=1".as_ref(),
                img.as_os_str(),
            ],
        )
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&img);
        })?;
        std::fs::create_dir_all(&mnt).map_err(create(&mnt))?;
        // util-linux mount sets up the loop device with autoclear: it goes with the unmount.
        run(
            "mount",
            &[
                "-t".as_ref(),
                "ext4".as_ref(),
                "-o".as_ref(),
                "loop,nodev,nosuid".as_ref(),
                img.as_os_str(),
                mnt.as_os_str(),
            ],
        )
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&img);
        })?;
        let e = Ephemeral {
            task_dir: task_dir.to_path_buf(),
        };
        let mut links: Vec<String> = (0..containers).map(|i| format!("c{i}")).collect();
        links.push("volumes".into());
        for name in links {
            let inside = mnt.join(&name);
            let link = task_dir.join(&name);
            let made = std::fs::create_dir_all(&inside)
                .and_then(|()| std::os::unix::fs::symlink(&inside, &link));
            if let Err(source) = made {
                let _ = e.teardown();
                return Err(EphemeralError::Create { path: link, source });
            }
        }
        Ok(e)
    }

    /// Unmounts it (lazily: a mount left under it goes too, and the loop device with the
    /// last reference) and returns the image file, for the caller to delete once the task
    /// is reported done (its blocks' discard costs tens of ms on this host's ext4).
    pub fn teardown(&self) -> Result<PathBuf, EphemeralError> {
        unmount(&self.task_dir)?;
        Ok(image_file(&self.task_dir))
    }
}

fn unmount(task_dir: &Path) -> Result<(), EphemeralError> {
    let mnt = mount_point(task_dir);
    match nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(source) => return Err(EphemeralError::Unmount { path: mnt, source }),
    }
    let _ = std::fs::remove_dir(&mnt);
    Ok(())
}

/// Cleanup after a supervisor that died: unmounts `<task dir>/ephemeral` if mounted and
/// deletes the image file.
pub fn cleanup_dead(task_dir: &Path) -> Result<(), EphemeralError> {
    unmount(task_dir)?;
    let img = image_file(task_dir);
    match std::fs::remove_file(&img) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EphemeralError::Create { path: img, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_defaults_to_fargates_and_a_set_size_is_reported_when_not_enforced() {
        let none: TaskDefinition = serde_json::from_str("{}").unwrap();
        assert_eq!(size_gib(&none), 20);
        assert!(warning(&none).is_none());
        let set: TaskDefinition =
            serde_json::from_str(r#"{"ephemeralStorage":{"sizeInGiB":30}}"#).unwrap();
        assert_eq!(size_gib(&set), 30);
        if !enforced() {
            let w = warning(&set).unwrap();
            assert!(
                w.contains("sizeInGiB 30: not applied here") && w.contains(ENV),
                "{w}"
            );
        }
    }
}
