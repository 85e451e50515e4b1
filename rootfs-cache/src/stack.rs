//! Checks an image's layers as a stack: an entry whose parent directory its own layer
//! did not list, where a lower layer has a symlink (or a file), writes through that
//! symlink. Docker would follow it when applying the layer; here it is refused.
//!
//! Each layer alone is already safe (see `unpack`): this catches what only the
//! combination says, e.g. layer 1 `escape -> /` and layer 2 `escape/etc/passwd`.

use crate::digest::Digest;
use crate::rootfs::{is_opaque, is_whiteout};
use crate::store::{Store, StoreError};
use std::fs;
use std::path::PathBuf;

/// A layer entry that goes through a lower layer's symlink or file.
#[derive(Debug)]
pub struct Conflict {
    /// Index of the offending layer in the stack (bottom = 0).
    pub layer: usize,
    pub entry: String,
    pub reason: String,
}

/// What the lower layers `lowers` (top first) hold at `path`, as overlayfs would merge
/// them: `Err(reason)` if a prefix of `path` is a symlink or a file there.
fn check_path(lowers: &[(PathBuf, &Digest)], path: &str) -> Result<(), String> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (dir, digest) in lowers {
        let mut p = dir.clone();
        for (k, c) in comps.iter().enumerate() {
            p.push(c);
            // Earlier components were real directories in this layer, so this lstat
            // follows no symlink.
            let m = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                // Not in this layer: look further down.
                Err(_) => break,
            };
            let prefix = comps[..=k].join("/");
            if is_whiteout(&m) {
                // Deleted below this point: nothing lower shows through.
                return Ok(());
            }
            if m.file_type().is_symlink() {
                return Err(format!(
                    "its parent {prefix:?} is a symlink in lower layer {digest}; writing \
                     through it could reach outside the image"
                ));
            }
            if !m.is_dir() {
                return Err(format!(
                    "its parent {prefix:?} is a file in lower layer {digest}"
                ));
            }
            if is_opaque(&p) {
                return Ok(());
            }
            if k + 1 == comps.len() {
                // A real directory: the entry lands inside it, as intended.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Checks every layer of `layers` (bottom first, by diff-id) against those below it.
pub fn check(store: &Store, layers: &[Digest]) -> Result<Option<Conflict>, StoreError> {
    for (i, diff) in layers.iter().enumerate().skip(1) {
        let implicit = store.implicit_dirs(diff)?;
        if implicit.is_empty() {
            continue;
        }
        let lowers: Vec<(PathBuf, &Digest)> = layers[..i]
            .iter()
            .rev()
            .map(|d| (store.layer_path(d), d))
            .collect();
        for (dir, entry) in implicit {
            if let Err(reason) = check_path(&lowers, &dir) {
                return Ok(Some(Conflict {
                    layer: i,
                    entry,
                    reason,
                }));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_writes_through_lower_symlinks_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = |s: &str| Digest::of(s.as_bytes());
        let (base, mid, top) = (d("base"), d("mid"), d("top"));
        for l in [&base, &mid, &top] {
            fs::create_dir_all(store.layer_path(l)).unwrap();
        }
        std::os::unix::fs::symlink("/", store.layer_path(&base).join("escape")).unwrap();
        fs::create_dir_all(store.layer_path(&base).join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", store.layer_path(&base).join("lib")).unwrap();
        // mid replaces `lib` with a real directory (an explicit entry): fine above it.
        fs::create_dir_all(store.layer_path(&mid).join("lib")).unwrap();

        store
            .write_implicit_dirs(&top, &[("usr/lib/x".into(), "usr/lib/x/f".into())])
            .unwrap();
        assert!(
            check(&store, &[base.clone(), mid.clone(), top.clone()])
                .unwrap()
                .is_none()
        );

        store
            .write_implicit_dirs(&top, &[("lib".into(), "lib/f".into())])
            .unwrap();
        assert!(
            check(&store, &[base.clone(), mid.clone(), top.clone()])
                .unwrap()
                .is_none()
        );
        // Without mid, `lib` is base's symlink.
        let c = check(&store, &[base.clone(), top.clone()])
            .unwrap()
            .unwrap();
        assert_eq!((c.layer, c.entry.as_str()), (1, "lib/f"));

        store
            .write_implicit_dirs(&top, &[("escape".into(), "escape/etc/pwned".into())])
            .unwrap();
        let c = check(&store, &[base, mid, top]).unwrap().unwrap();
        assert_eq!(c.layer, 2);
        assert!(c.reason.contains("symlink"), "{}", c.reason);
    }
}
