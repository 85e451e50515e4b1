//! Builds OCI image layouts for the tests: layers are tars written with the `tar`
//! crate (gzip, zstd or none), configs carry the right diff_ids, optional indexes.
//! Entries are written with raw header names so hostile paths can be crafted too.

use super::util::sha256_hex;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const BUSYBOX: &str = "/bin/busybox";
const MTIME: u64 = 1_700_000_000;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Hardlink,
    /// Character device (major, minor).
    Char(u32, u32),
    /// Block device (major, minor).
    Block(u32, u32),
    Fifo,
}

/// One tar entry; `path` and `link` go into the header as given (no cleaning). Names
/// longer than a plain header holds get a GNU long-name/long-link record.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub path: String,
    pub data: Vec<u8>,
    pub link: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

impl Entry {
    fn new(kind: Kind, path: &str, mode: u32) -> Entry {
        Entry {
            kind,
            path: path.into(),
            data: vec![],
            link: String::new(),
            mode,
            uid: 0,
            gid: 0,
        }
    }
    pub fn dir(path: &str) -> Entry {
        Entry::new(Kind::Dir, path, 0o755)
    }
    pub fn file(path: &str, data: impl Into<Vec<u8>>) -> Entry {
        Entry {
            data: data.into(),
            ..Entry::new(Kind::File, path, 0o644)
        }
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry {
            link: target.into(),
            ..Entry::new(Kind::Symlink, path, 0o777)
        }
    }
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry {
            link: target.into(),
            ..Entry::new(Kind::Hardlink, path, 0o644)
        }
    }
    pub fn char_dev(path: &str, major: u32, minor: u32) -> Entry {
        Entry::new(Kind::Char(major, minor), path, 0o666)
    }
    pub fn block_dev(path: &str, major: u32, minor: u32) -> Entry {
        Entry::new(Kind::Block(major, minor), path, 0o666)
    }
    pub fn fifo(path: &str) -> Entry {
        Entry::new(Kind::Fifo, path, 0o644)
    }
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }
    /// Owner; ids past 2^21 are written base-256 (GNU), as tar does.
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub entries: Vec<Entry>,
    pub compression: Compression,
}

impl Layer {
    pub fn new(compression: Compression, entries: Vec<Entry>) -> Layer {
        Layer {
            entries,
            compression,
        }
    }
}

/// A GNU `././@LongLink` record carrying a name too long for the next header.
fn append_long_name(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str) {
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..13].copy_from_slice(b"././@LongLink");
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
}

/// The uncompressed tar of a layer.
pub fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(MTIME);
        let data: &[u8] = match e.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                &[]
            }
            Kind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                &e.data
            }
            Kind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                &[]
            }
            Kind::Hardlink => {
                h.set_entry_type(tar::EntryType::Link);
                &[]
            }
            Kind::Char(major, minor) | Kind::Block(major, minor) => {
                h.set_entry_type(if matches!(e.kind, Kind::Char(..)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(major).unwrap();
                h.set_device_minor(minor).unwrap();
                &[]
            }
            Kind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                &[]
            }
        };
        h.set_size(data.len() as u64);
        if e.path.len() > 100 {
            append_long_name(&mut b, tar::EntryType::GNULongName, &e.path);
        }
        if e.link.len() > 100 {
            append_long_name(&mut b, tar::EntryType::GNULongLink, &e.link);
        }
        let old = h.as_old_mut();
        old.name = [0; 100];
        let n = e.path.len().min(100);
        old.name[..n].copy_from_slice(&e.path.as_bytes()[..n]);
        old.linkname = [0; 100];
        let n = e.link.len().min(100);
        old.linkname[..n].copy_from_slice(&e.link.as_bytes()[..n]);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            // Big test layers are random bytes: stored deflate blocks keep them a real
            // gzip stream without spending a debug build's minute compressing noise.
            let level = if tar.len() > 32 << 20 {
                flate2::Compression::none()
            } else {
                flate2::Compression::fast()
            };
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
            enc.write_all(tar).unwrap();
            enc.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

#[derive(Clone, Debug)]
pub struct BuiltLayer {
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
    pub platform: String,
    pub layers: Vec<BuiltLayer>,
}

impl BuiltImage {
    /// Sum of the compressed layer sizes (what `pull --format json` reports as size).
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

#[derive(Clone, Debug)]
pub struct BuiltIndex {
    pub digest: String,
    pub images: Vec<BuiltImage>,
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
    refs: Vec<Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let l = Layout {
            dir: dir.to_path_buf(),
            refs: vec![],
        };
        l.write_index();
        l
    }

    fn write_blob(&self, data: &[u8]) -> String {
        let hex = sha256_hex(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), data).unwrap();
        format!("sha256:{hex}")
    }

    fn write_index(&self) {
        let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.refs});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
    }

    pub fn add_layer(&self, layer: &Layer) -> BuiltLayer {
        let tar = tar_bytes(&layer.entries);
        let blob = compress(&tar, layer.compression);
        BuiltLayer {
            digest: self.write_blob(&blob),
            diff_id: format!("sha256:{}", sha256_hex(&tar)),
            media_type: layer.compression.media_type().into(),
            size: blob.len() as u64,
        }
    }

    /// Write an image (layers, config, manifest); `platform` is "os/arch[/variant]".
    pub fn add_image(&self, platform: &str, layers: &[Layer]) -> BuiltImage {
        self.add_image_with_config(platform, layers, json!({}))
    }

    /// Like [`Self::add_image`], with `extra` merged into the image config's `config`
    /// object (e.g. `{"Volumes": {"/data": {}}}`).
    pub fn add_image_with_config(
        &self,
        platform: &str,
        layers: &[Layer],
        extra: Value,
    ) -> BuiltImage {
        let built: Vec<BuiltLayer> = layers.iter().map(|l| self.add_layer(l)).collect();
        let parts: Vec<&str> = platform.split('/').collect();
        let mut config = json!({
            "created": "2026-11-22T00:00:00Z",
            "architecture": parts[1],
            "os": parts[0],
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": built.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": built.iter().map(|_| json!({"created_by": "minifargate test harness"})).collect::<Vec<_>>(),
        });
        if let Some(v) = parts.get(2) {
            config["variant"] = json!(v);
        }
        for (k, v) in extra.as_object().into_iter().flatten() {
            config["config"][k] = v.clone();
        }
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_digest = self.write_blob(&config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
            "layers": built.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
        BuiltImage {
            manifest_digest: self.write_blob(&manifest_bytes),
            manifest_size: manifest_bytes.len() as u64,
            config_digest,
            platform: platform.into(),
            layers: built,
        }
    }

    fn platform_json(platform: &str) -> Value {
        let parts: Vec<&str> = platform.split('/').collect();
        let mut p = json!({"os": parts[0], "architecture": parts[1]});
        if let Some(v) = parts.get(2) {
            p["variant"] = json!(v);
        }
        p
    }

    /// Name an image `tag` in index.json.
    pub fn tag_image(&mut self, tag: &str, img: &BuiltImage) {
        self.refs.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest_digest,
            "size": img.manifest_size,
            "platform": Self::platform_json(&img.platform),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        self.write_index();
    }

    /// Write a multi-platform index over `images` and name it `tag`.
    pub fn tag_index(&mut self, tag: &str, images: &[BuiltImage]) -> BuiltIndex {
        let idx = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": images.iter().map(|i| json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": i.manifest_digest,
                "size": i.manifest_size,
                "platform": Self::platform_json(&i.platform),
            })).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&idx).unwrap();
        let digest = self.write_blob(&bytes);
        self.refs.push(json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        self.write_index();
        BuiltIndex {
            digest,
            images: images.to_vec(),
        }
    }
}

/// A busybox-static root: /bin/busybox, a few applet links, /etc/passwd and a marker.
pub fn busybox_entries(marker: &str) -> Vec<Entry> {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("read {BUSYBOX}: {e} (apt-get install busybox-static)"));
    busybox_entries_of(busybox, marker)
}

/// [`busybox_entries`] with another busybox binary (another architecture's).
pub fn busybox_entries_of(busybox: Vec<u8>, marker: &str) -> Vec<Entry> {
    let mut v = vec![
        Entry::dir("bin"),
        Entry::file("bin/busybox", busybox).mode(0o755),
    ];
    for applet in ["sh", "ls", "cat", "echo", "sleep", "true"] {
        v.push(Entry::symlink(&format!("bin/{applet}"), "busybox"));
    }
    v.extend([
        Entry::dir("etc"),
        Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        Entry::file("etc/group", "root:x:0:\n"),
        Entry::file("etc/minifargate-marker", marker),
        Entry::dir("root").mode(0o700),
        Entry::dir("tmp").mode(0o1777),
    ]);
    v
}

/// [`busybox_entries`] with a `/bin` link for every applet, as the public busybox image
/// has them (so a task can exec `httpd` directly, as examples/web.json does).
pub fn busybox_all_applets(marker: &str) -> Vec<Entry> {
    let mut v = busybox_entries(marker);
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let path = format!("bin/{applet}");
        if applet != "busybox" && !v.iter().any(|e| e.path == path) {
            v.push(Entry::symlink(&path, "busybox"));
        }
    }
    v
}

pub fn busybox_layer(c: Compression, marker: &str) -> Layer {
    Layer::new(c, busybox_entries(marker))
}
