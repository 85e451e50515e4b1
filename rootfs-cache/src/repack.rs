//! An image of the cache as an OCI image layout again, for `push`: the cache keeps each
//! layer unpacked (overlayfs form), not the blob it came in, so each layer directory is
//! written back as a gzip tar layer: OCI whiteouts for overlayfs's 0/0 character devices
//! and opaque directories, hardlinks for files that share an inode, xattrs as PAX
//! `SCHILY.xattr.` records, owners, modes and mtimes as stored; the directories the
//! original tar did not list (the layer's implicit ones) are left implicit again. The
//! bytes differ from the original blob (entry order, tar headers, compression), so the
//! layers get new digests and diff-ids, and the config its new `rootfs.diff_ids`: a new
//! image with the same files, as `podman push` of a stored image is when its layers are
//! recompressed.
//! Ref: OCI image-spec layer.md (changesets, whiteouts, hardlinks), image-layout.md;
//! Linux overlayfs.rst (whiteouts are 0/0 character devices, opaque directories carry
//! `trusted.overlay.opaque=y`).

use crate::digest::Digest;
use crate::store::{ImageRecord, Store, StoreError};
use crate::unpack::OPAQUE_XATTR;
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum RepackError {
    #[error(
        "layer {diff_id} of {reference} is not in the cache (removed by prune?); pull or load the image again"
    )]
    MissingLayer { reference: String, diff_id: Digest },
    #[error("failed to write layer {diff_id} back as a tar: {path}")]
    Layer {
        diff_id: Digest,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the image config {path} is not JSON")]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`to_layout`] wrote.
#[derive(Debug, Clone)]
pub struct Repacked {
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// Each layer's new (digest, diff-id, compressed size), in order.
    pub layers: Vec<(Digest, Digest, u64)>,
    /// Sockets found in the layers: a tar cannot hold them (Docker skips them too).
    pub skipped_sockets: Vec<String>,
}

/// Writes `rec` (its config and every layer directory) as an OCI image layout in `dir`,
/// which must be empty or absent: `oci-layout`, `index.json` naming the one manifest
/// (with the record's platform), `blobs/sha256/`.
pub fn to_layout(store: &Store, rec: &ImageRecord, dir: &Path) -> Result<Repacked, RepackError> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|source| RepackError::Write {
        path: blobs.clone(),
        source,
    })?;
    let mut layers = Vec::with_capacity(rec.layers.len());
    let mut skipped_sockets = Vec::new();
    for l in &rec.layers {
        if !store.has_layer(&l.diff_id) {
            return Err(RepackError::MissingLayer {
                reference: rec.reference.clone(),
                diff_id: l.diff_id.clone(),
            });
        }
        let implicit: HashSet<String> = store
            .implicit_dirs(&l.diff_id)?
            .into_iter()
            .map(|(d, _)| d.trim_matches('/').to_string())
            .collect();
        let root = store.layer_path(&l.diff_id);
        let (digest, diff_id, size, sockets) =
            layer_tar(&root, &implicit, &blobs).map_err(|(path, source)| RepackError::Layer {
                diff_id: l.diff_id.clone(),
                path,
                source,
            })?;
        skipped_sockets.extend(sockets);
        layers.push((digest, diff_id, size));
    }

    let config_path = store.blob_path(&rec.config);
    let bytes = fs::read(&config_path).map_err(|source| RepackError::Write {
        path: config_path.clone(),
        source,
    })?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| RepackError::Config {
            path: config_path.clone(),
            source,
        })?;
    config["rootfs"] = serde_json::json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|(_, d, _)| d.to_string()).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).expect("a JSON value serializes");
    let config_digest = write_blob(&blobs, &config_bytes)?;

    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|(d, _, size)| serde_json::json!({
            "mediaType": OCI_LAYER_GZIP,
            "digest": d.to_string(),
            "size": size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a JSON value serializes");
    let manifest_digest = write_blob(&blobs, &manifest_bytes)?;

    let mut platform = serde_json::Map::new();
    let mut parts = rec.platform.splitn(3, '/');
    for key in ["os", "architecture", "variant"] {
        if let Some(v) = parts.next().filter(|v| !v.is_empty()) {
            platform.insert(key.into(), v.into());
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest.to_string(),
            "size": manifest_bytes.len(),
            "platform": platform,
        }],
    });
    for (name, data) in [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        (
            "index.json",
            serde_json::to_vec(&index).expect("serializes"),
        ),
    ] {
        let path = dir.join(name);
        fs::write(&path, data).map_err(|source| RepackError::Write { path, source })?;
    }
    Ok(Repacked {
        manifest_digest,
        config_digest,
        layers,
        skipped_sockets,
    })
}

fn write_blob(blobs: &Path, data: &[u8]) -> Result<Digest, RepackError> {
    let d = Digest::of(data);
    let path = blobs.join(d.hex());
    fs::write(&path, data).map_err(|source| RepackError::Write { path, source })?;
    Ok(d)
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type LayerOut = (Digest, Digest, u64, Vec<String>);

/// The layer directory `root` as a gzip tar in `blobs` (named by its digest): its
/// digest, diff-id, size and the sockets left out. An error names the path it was on.
fn layer_tar(
    root: &Path,
    implicit: &HashSet<String>,
    blobs: &Path,
) -> Result<LayerOut, (PathBuf, io::Error)> {
    let tmp = tempfile::NamedTempFile::new_in(blobs).map_err(|e| (blobs.to_path_buf(), e))?;
    let file = tmp.reopen().map_err(|e| (tmp.path().to_path_buf(), e))?;
    let compressed = Hashing {
        inner: io::BufWriter::new(file),
        hasher: Sha256::new(),
        count: 0,
    };
    let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::default());
    let plain = Hashing {
        inner: gz,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut w = Walker {
        tar: tar::Builder::new(plain),
        implicit,
        links: HashMap::new(),
        sockets: Vec::new(),
        xattr_names: vec![0u8; 65536],
        xattr_value: vec![0u8; 65536],
    };
    w.tar.mode(tar::HeaderMode::Complete);
    w.tar.follow_symlinks(false);
    w.dir(root, "")?;
    let plain = w.tar.into_inner().map_err(|e| (root.to_path_buf(), e))?;
    let diff_id = Digest::from_hasher(plain.hasher);
    let mut compressed = plain.inner.finish().map_err(|e| (root.to_path_buf(), e))?;
    compressed.flush().map_err(|e| (root.to_path_buf(), e))?;
    let digest = Digest::from_hasher(compressed.hasher);
    let size = compressed.count;
    let file = compressed
        .inner
        .into_inner()
        .map_err(|e| (root.to_path_buf(), e.into_error()))?;
    file.sync_all().map_err(|e| (tmp.path().to_path_buf(), e))?;
    let dest = blobs.join(digest.hex());
    tmp.persist(&dest).map_err(|e| (dest.clone(), e.error))?;
    Ok((digest, diff_id, size, w.sockets))
}

struct Walker<'a, W: Write> {
    tar: tar::Builder<W>,
    implicit: &'a HashSet<String>,
    /// The first name written for each (device, inode) of a file with several links.
    links: HashMap<(u64, u64), String>,
    sockets: Vec<String>,
    /// Buffers for xattr names and values, reused entry after entry (XATTR_LIST_MAX and
    /// XATTR_SIZE_MAX are 64 KiB: buffers that size need no retry).
    xattr_names: Vec<u8>,
    xattr_value: Vec<u8>,
}

impl<W: Write> Walker<'_, W> {
    /// Writes the entries of directory `path` (named `name` in the layer, "" for the
    /// root), sorted by name so the same directory gives the same tar.
    fn dir(&mut self, path: &Path, name: &str) -> Result<(), (PathBuf, io::Error)> {
        let err = |e| (path.to_path_buf(), e);
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for child in children {
            let child_path = path.join(&child);
            let child_name = match name {
                "" => child.to_string_lossy().into_owned(),
                _ => format!("{name}/{}", child.to_string_lossy()),
            };
            self.entry(&child_path, &child_name)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, name: &str) -> Result<(), (PathBuf, io::Error)> {
        let err = |e| (path.to_path_buf(), e);
        let meta = fs::symlink_metadata(path).map_err(err)?;
        let ft = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_mode(meta.mode() & 0o7777);
        if ft.is_char_device() && meta.rdev() == 0 {
            // overlayfs's whiteout: the OCI `.wh.<name>` entry.
            let (parent, base) = match name.rsplit_once('/') {
                Some((p, b)) => (format!("{p}/"), b),
                None => (String::new(), name),
            };
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(0);
            return self
                .tar
                .append_data(&mut header, format!("{parent}.wh.{base}"), io::empty())
                .map_err(err);
        }
        if ft.is_socket() {
            self.sockets.push(name.to_string());
            return Ok(());
        }
        if ft.is_dir() {
            if !self.implicit.contains(name) {
                self.xattrs(path)?;
                header.set_size(0);
                self.tar
                    .append_data(&mut header, format!("{name}/"), io::empty())
                    .map_err(err)?;
            }
            if is_opaque(path) {
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                self.tar
                    .append_data(&mut h, format!("{name}/.wh..wh..opq"), io::empty())
                    .map_err(err)?;
            }
            return self.dir(path, name);
        }
        self.xattrs(path)?;
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(err)?;
            header.set_size(0);
            return self.tar.append_link(&mut header, name, target).map_err(err);
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    let first = first.clone();
                    return self.tar.append_link(&mut header, name, first).map_err(err);
                }
                self.links.insert(key, name.to_string());
            }
            let f = File::open(path).map_err(err)?;
            return self.tar.append_data(&mut header, name, f).map_err(err);
        }
        // Character and block devices, FIFOs: the header carries their numbers.
        header.set_size(0);
        if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            header
                .set_device_major(rustix::fs::major(rdev))
                .and_then(|()| header.set_device_minor(rustix::fs::minor(rdev)))
                .map_err(err)?;
        }
        self.tar
            .append_data(&mut header, name, io::empty())
            .map_err(err)
    }

    /// The entry's extended attributes (but overlayfs's own) as a PAX record before it.
    fn xattrs(&mut self, path: &Path) -> Result<(), (PathBuf, io::Error)> {
        let err = |e: rustix::io::Errno| (path.to_path_buf(), io::Error::from(e));
        let n = match rustix::fs::llistxattr(path, &mut self.xattr_names[..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(err(e)),
        };
        let mut records = Vec::new();
        for raw in self.xattr_names[..n]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
        {
            let key = String::from_utf8_lossy(raw).into_owned();
            if key.starts_with("trusted.overlay.") {
                continue;
            }
            let len = rustix::fs::lgetxattr(path, key.as_str(), &mut self.xattr_value[..])
                .map_err(err)?;
            records.push((
                format!("SCHILY.xattr.{key}"),
                self.xattr_value[..len].to_vec(),
            ));
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut data = Vec::new();
        for (k, v) in &records {
            data.extend(pax_record(k, v));
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_path("PaxHeaders/xattrs")
            .map_err(|e| (path.to_path_buf(), e))?;
        h.set_cksum();
        self.tar
            .append(&h, &data[..])
            .map_err(|e| (path.to_path_buf(), e))
    }
}

/// One PAX extended header record: `<length> <key>=<value>\n`, the length counting
/// the whole record, its own digits included. Ref: POSIX pax, "pax Extended Header".
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(path, OPAQUE_XATTR, &mut buf[..]), Ok(1) if buf[0] == b'y')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::{UnpackOptions, unpack};
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("a", b"b"), b"6 a=b\n");
        // 8 bytes of key and value plus " =\n" is 11; with two digits, 13.
        let r = pax_record("SCHILY.x", b"");
        assert_eq!(r, b"13 SCHILY.x=\n");
        // 99 bytes: 101 with two digits, but 101 has three: 102.
        let long = pax_record("k", &[b'v'; 95]);
        assert_eq!(long.len(), 102);
        assert!(long.starts_with(b"102 k="));
    }

    /// Every kind of entry a layer directory holds, as the cache's unpacker wrote it.
    fn source_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(1_600_000_000);
            h.set_uid(1000);
            h.set_gid(100);
            if link.is_empty() {
                b.append_data(&mut h, path, data).unwrap();
            } else {
                b.append_link(&mut h, path, link).unwrap();
            }
        };
        use tar::EntryType::*;
        add("etc/", Directory, 0o755, b"", "");
        add("etc/hostname", Regular, 0o640, b"box\n", "");
        add("etc/hn2", Link, 0o640, b"", "etc/hostname");
        add("bin/su", Regular, 0o4755, b"#!", "");
        add("bin/sh", Symlink, 0o777, b"", "/bin/busybox");
        add("etc/.wh.motd", Regular, 0o644, b"", "");
        add("var/cache/", Directory, 0o700, b"", "");
        add("var/cache/.wh..wh..opq", Regular, 0o644, b"", "");
        let long = format!("deep/{}/file", "x".repeat(120));
        add(&long, Regular, 0o644, b"long", "");
        b.into_inner().unwrap()
    }

    fn unpacked(tar: &[u8]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        unpack(&mut &tar[..], d.path(), &UnpackOptions::default()).unwrap();
        d
    }

    /// (name, kind, mode, uid, gid, mtime, contents or link, xattrs) of every entry.
    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let what = if m.is_dir() {
                    stack.push(p.clone());
                    format!("dir opaque={}", is_opaque(&p))
                } else if m.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&p).unwrap().display())
                } else if m.file_type().is_char_device() {
                    format!("chr {}", m.rdev())
                } else {
                    format!("{:?} links={}", fs::read(&p).unwrap(), m.nlink())
                };
                let mut x = [0u8; 64];
                let user = rustix::fs::lgetxattr(&p, "user.note", &mut x[..])
                    .map(|n| String::from_utf8_lossy(&x[..n]).into_owned())
                    .unwrap_or_default();
                let mtime = if m.is_dir() { 0 } else { m.mtime() };
                out.push(format!(
                    "{} {what} {:o} {}:{} {mtime} {user}",
                    p.strip_prefix(root).unwrap().display(),
                    m.permissions().mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                ));
            }
        }
        out.sort();
        out
    }

    fn names(gz: &Path) -> Vec<String> {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(File::open(gz).unwrap())
            .read_to_end(&mut plain)
            .unwrap();
        let mut a = tar::Archive::new(&plain[..]);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    /// A layer directory written back as a tar unpacks to the same files: whiteouts,
    /// opaque directories, hardlinks, setuid modes, owners, mtimes, xattrs, long names;
    /// its digests are those of the blob written, and the same directory gives the same
    /// tar twice.
    #[test]
    fn a_layer_directory_repacks_to_a_tar_that_unpacks_the_same() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: whiteouts need CAP_MKNOD and trusted xattrs (root)");
            return;
        }
        let first = unpacked(&source_tar());
        // An xattr a layer carried (user.* needs a filesystem that takes them: tmpfs
        // since 6.6, ext4 and xfs always).
        let noted = rustix::fs::lsetxattr(
            first.path().join("etc/hostname"),
            "user.note",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
        let blobs = tempfile::tempdir().unwrap();
        let (digest, diff_id, size, sockets) =
            layer_tar(first.path(), &HashSet::new(), blobs.path()).unwrap();
        assert!(sockets.is_empty());
        let blob = blobs.path().join(digest.hex());
        let bytes = fs::read(&blob).unwrap();
        assert_eq!(Digest::of(&bytes), digest);
        assert_eq!(bytes.len() as u64, size);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(Digest::of(&plain), diff_id);

        let second = unpacked(&plain);
        assert_eq!(tree(first.path()), tree(second.path()));
        let t = tree(second.path());
        assert!(t.iter().any(|l| l.starts_with("etc/motd chr 0")), "{t:?}");
        assert!(
            t.iter()
                .any(|l| l.starts_with("var/cache dir opaque=true 700")),
            "{t:?}"
        );
        assert!(
            t.iter()
                .any(|l| l.starts_with("bin/su [35, 33] links=1 4755 1000:100 1600000000")),
            "{t:?}"
        );
        assert!(
            t.iter()
                .any(|l| l.starts_with("etc/hn2 [98, 111, 120, 10] links=2")),
            "{t:?}"
        );
        if noted {
            assert!(
                t.iter()
                    .any(|l| l.starts_with("etc/hostname") && l.ends_with(" kept")),
                "{t:?}"
            );
        }
        let n = names(&blob);
        assert!(n.contains(&"etc/.wh.motd".to_string()), "{n:?}");
        assert!(n.contains(&"var/cache/.wh..wh..opq".to_string()), "{n:?}");

        let again = tempfile::tempdir().unwrap();
        let (d2, id2, _, _) = layer_tar(first.path(), &HashSet::new(), again.path()).unwrap();
        assert_eq!((d2, id2), (digest, diff_id));
    }

    /// The directories the original tar did not list stay unlisted: listing them would
    /// make them real directories over a lower layer's symlink there.
    #[test]
    fn implicit_directories_stay_implicit() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, "usr/lib/x", &b"x"[..]).unwrap();
        let src = unpacked(&b.into_inner().unwrap());
        let implicit: HashSet<String> = ["usr".to_string(), "usr/lib".to_string()].into();
        let blobs = tempfile::tempdir().unwrap();
        let (digest, ..) = layer_tar(src.path(), &implicit, blobs.path()).unwrap();
        assert_eq!(names(&blobs.path().join(digest.hex())), vec!["usr/lib/x"]);
    }
}
