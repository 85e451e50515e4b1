//! `load`: images from a `docker save` tarball, an OCI archive or an OCI layout
//! directory (gzip-compressed archives too), for air-gapped machines.
//! Ref: OCI image-spec image-layout.md; docker/moby image/tarexport (manifest.json).

use crate::digest::{Digest, DigestParseError};
use crate::layer::{self, LayerError, LayerSource};
use crate::manifest::{self, ManifestError, Parsed, Platform};
use crate::pull::{PullObserver, parse_reference};
use crate::store::{ImageRecord, LayerRecord, Store, StoreError};
use crate::unpack::UnpackOptions;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const MAX_JSON: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not an image archive: expected a `docker save` tarball (manifest.json), an \
         OCI archive or an OCI layout directory (oci-layout, index.json)"
    )]
    NotAnArchive { path: PathBuf },
    #[error("{path}: {entry} is missing from the archive")]
    Missing { path: PathBuf, entry: String },
    #[error("{path}: failed to parse {entry}")]
    Json {
        path: PathBuf,
        entry: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {entry} is larger than {limit} bytes")]
    TooLarge {
        path: PathBuf,
        entry: String,
        limit: u64,
    },
    #[error("{path}: image {what} has no name in the archive; give it one with --tag NAME")]
    Unnamed { path: PathBuf, what: String },
    #[error(
        "{path} holds {count} images: push takes an archive of one image (one `docker save` \
         name, one manifest in index.json)"
    )]
    SeveralImages { path: PathBuf, count: usize },
    #[error("{path}: invalid image name {name:?}")]
    BadName { path: PathBuf, name: String },
    #[error("{path}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error("{path}: layer {layer}")]
    Layer {
        path: PathBuf,
        layer: Digest,
        #[source]
        source: Box<LayerError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Files of an archive or layout, readable by their path inside it.
enum Source {
    Dir(PathBuf),
    /// A tar file and where each regular file's data starts.
    Tar {
        file: PathBuf,
        index: HashMap<String, (u64, u64)>,
    },
}

fn norm(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

impl Source {
    fn exists(&self, entry: &str) -> bool {
        match self {
            Source::Dir(d) => d.join(norm(entry)).is_file(),
            Source::Tar { index, .. } => index.contains_key(&norm(entry)),
        }
    }

    fn open(&self, archive: &Path, entry: &str) -> Result<(Box<dyn Read + Send>, u64), LoadError> {
        let entry_n = norm(entry);
        let missing = || LoadError::Missing {
            path: archive.to_path_buf(),
            entry: entry.to_string(),
        };
        let read_err = |source| LoadError::Read {
            path: archive.to_path_buf(),
            source,
        };
        match self {
            Source::Dir(d) => {
                let p = d.join(&entry_n);
                // Blob paths come from the archive's own JSON: stay inside it.
                if entry_n.split('/').any(|c| c == "..") {
                    return Err(missing());
                }
                let f = File::open(&p).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        missing()
                    } else {
                        read_err(e)
                    }
                })?;
                let len = f.metadata().map_err(read_err)?.len();
                Ok((Box::new(f), len))
            }
            Source::Tar { file, index } => {
                let (off, len) = *index.get(&entry_n).ok_or_else(missing)?;
                let mut f = File::open(file).map_err(read_err)?;
                f.seek(SeekFrom::Start(off)).map_err(read_err)?;
                Ok((Box::new(f.take(len)), len))
            }
        }
    }

    /// Reads a small file (JSON documents, configs) whole, refusing oversized ones.
    fn read_small(&self, archive: &Path, entry: &str) -> Result<Vec<u8>, LoadError> {
        let (mut r, len) = self.open(archive, entry)?;
        if len > MAX_JSON {
            return Err(LoadError::TooLarge {
                path: archive.to_path_buf(),
                entry: entry.to_string(),
                limit: MAX_JSON,
            });
        }
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).map_err(|source| LoadError::Read {
            path: archive.to_path_buf(),
            source,
        })?;
        Ok(buf)
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        archive: &Path,
        entry: &str,
    ) -> Result<(T, Vec<u8>), LoadError> {
        let buf = self.read_small(archive, entry)?;
        let v = serde_json::from_slice(&buf).map_err(|source| LoadError::Json {
            path: archive.to_path_buf(),
            entry: entry.to_string(),
            source,
        })?;
        Ok((v, buf))
    }

    fn read_blob(&self, archive: &Path, d: &Digest) -> Result<Vec<u8>, LoadError> {
        let entry = format!("blobs/sha256/{}", d.hex());
        let buf = self.read_small(archive, &entry)?;
        let actual = Digest::of(&buf);
        if &actual != d {
            return Err(LoadError::Manifest {
                path: archive.to_path_buf(),
                source: ManifestError::DigestMismatch {
                    what: entry,
                    expected: d.clone(),
                    actual,
                },
            });
        }
        Ok(buf)
    }
}

/// Options for [`load`].
pub struct LoadOptions<'a> {
    pub tag: Option<&'a str>,
    pub platform: &'a Platform,
    pub unpack: UnpackOptions,
    pub min_free: u64,
}

/// Loads every image in `input` into the cache and records it under its name(s).
pub async fn load(
    store: &Store,
    input: &Path,
    opts: &LoadOptions<'_>,
    observer: &dyn PullObserver,
) -> Result<Vec<ImageRecord>, LoadError> {
    // Like a pull: `prune` waits until the image record points at its layers.
    let s2 = store.clone();
    let _cache = tokio::task::spawn_blocking(move || s2.shared_lock())
        .await
        .map_err(|e| LoadError::Read {
            path: input.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })??;
    // A compressed archive (`docker save | gzip`) is unpacked to temp space first:
    // blobs inside are read at random.
    let tmp = store.temp_dir()?;
    let source = open_source(input, tmp.path())?;

    let images = if source.exists("manifest.json") && !source.exists("index.json") {
        load_docker(store, input, &source, opts, observer).await?
    } else if source.exists("oci-layout") || source.exists("index.json") {
        load_oci(store, input, &source, opts, observer).await?
    } else if source.exists("manifest.json") {
        // Docker 25+ writes both; its manifest.json carries the RepoTags.
        load_docker(store, input, &source, opts, observer).await?
    } else {
        return Err(LoadError::NotAnArchive {
            path: input.to_path_buf(),
        });
    };
    drop(tmp);
    Ok(images)
}

/// `input` as a [`Source`]: a directory as it is, a tar file indexed, a compressed one
/// (`docker save | gzip`) unpacked into `tmp` first (blobs inside are read at random).
fn open_source(input: &Path, tmp: &Path) -> Result<Source, LoadError> {
    let read_err = |source| LoadError::Read {
        path: input.to_path_buf(),
        source,
    };
    let source = if input.is_dir() {
        Source::Dir(input.to_path_buf())
    } else {
        let mut f = File::open(input).map_err(read_err)?;
        let mut magic = [0u8; 4];
        let n = f.read(&mut magic).map_err(read_err)?;
        f.seek(SeekFrom::Start(0)).map_err(read_err)?;
        let file = if n >= 2 && magic[..2] == [0x1f, 0x8b]
            || n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd]
        {
            let plain = tmp.join("archive.tar");
            let mut out = File::create(&plain).map_err(read_err)?;
            let mut dec: Box<dyn Read> = if magic[0] == 0x1f {
                Box::new(flate2::read::MultiGzDecoder::new(f))
            } else {
                Box::new(zstd::stream::read::Decoder::new(f).map_err(read_err)?)
            };
            io::copy(&mut dec, &mut out).map_err(read_err)?;
            plain
        } else {
            input.to_path_buf()
        };
        let index = index_tar(&file).map_err(read_err)?;
        Source::Tar { file, index }
    };
    Ok(source)
}

fn index_tar(file: &Path) -> io::Result<HashMap<String, (u64, u64)>> {
    let mut a = tar::Archive::new(File::open(file)?);
    let mut index = HashMap::new();
    for e in a.entries_with_seek()? {
        let e = e?;
        if e.header().entry_type().is_file() {
            let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            index.insert(norm(&p), (e.raw_file_position(), e.size()));
        }
    }
    Ok(index)
}

/// Turns a name from the archive into the name the cache records.
fn name_for(input: &Path, raw: &str) -> Result<String, LoadError> {
    let r = parse_reference(raw).map_err(|_| LoadError::BadName {
        path: input.to_path_buf(),
        name: raw.to_string(),
    })?;
    Ok(r.to_string())
}

async fn load_docker(
    store: &Store,
    input: &Path,
    source: &Source,
    opts: &LoadOptions<'_>,
    observer: &dyn PullObserver,
) -> Result<Vec<ImageRecord>, LoadError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let (entries, _) = source.read_json::<Vec<Entry>>(input, "manifest.json")?;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let mut names: Vec<String> = e.repo_tags.clone().unwrap_or_default();
        if let Some(t) = opts.tag {
            names = vec![t.to_string()];
        }
        if names.is_empty() {
            return Err(LoadError::Unnamed {
                path: input.to_path_buf(),
                what: format!("#{} ({})", i + 1, e.config),
            });
        }
        let (_, config_bytes) = source.read_json::<serde_json::Value>(input, &e.config)?;
        let config_digest = Digest::of(&config_bytes);
        let cfg = manifest::parse_config(&config_bytes, e.layers.len()).map_err(|source| {
            LoadError::Manifest {
                path: input.to_path_buf(),
                source,
            }
        })?;
        let layers = docker_layers(input, source, &e.layers, &cfg.diff_ids)?;
        let manifest_bytes = docker_manifest(&config_digest, config_bytes.len(), &layers);
        let manifest_digest = Digest::of(&manifest_bytes);
        let entries: Vec<(String, &LayerRecord)> =
            layers.iter().map(|(path, l)| (path.clone(), l)).collect();
        stage_all(store, input, source, &entries, opts, observer).await?;
        let records: Vec<LayerRecord> = layers.iter().map(|(_, l)| l.clone()).collect();
        check_layers(input, store, &records)?;
        store.write_blob(&config_digest, &config_bytes)?;
        store.write_blob(&manifest_digest, &manifest_bytes)?;
        for n in &names {
            let reference = name_for(input, n)?;
            let rec = record(
                reference,
                manifest_digest.clone(),
                None,
                manifest::OCI_MANIFEST,
                config_digest.clone(),
                &cfg.platform,
                layers.iter().map(|(_, l)| l.clone()).collect(),
            );
            store.save_image(&rec)?;
            out.push(rec);
        }
    }
    Ok(out)
}

/// A `docker save` entry's layers (`paths`, in the archive) with the records a registry
/// would hold: a compressed layer keeps its bytes and their digest, an uncompressed one
/// (older `docker save`) is an uncompressed OCI layer whose digest is its diff-id.
fn docker_layers(
    input: &Path,
    source: &Source,
    paths: &[String],
    diff_ids: &[Digest],
) -> Result<Vec<(String, LayerRecord)>, LoadError> {
    let mut layers = Vec::new();
    for (path, diff_id) in paths.iter().zip(diff_ids.iter()) {
        let (mut r, size) = source.open(input, path)?;
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut r, &mut magic).map_err(|source| LoadError::Read {
            path: input.to_path_buf(),
            source,
        })?;
        let compressed = n >= 2 && magic[..2] == [0x1f, 0x8b] || magic == [0x28, 0xb5, 0x2f, 0xfd];
        let media_type = match (compressed, magic[0]) {
            (false, _) => "application/vnd.oci.image.layer.v1.tar",
            (true, 0x1f) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (true, _) => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        // Newer `docker save` names layers by blob digest; older ones store them
        // uncompressed (blob digest = diff-id). Otherwise hash the file.
        let digest = match path
            .strip_prefix("blobs/sha256/")
            .map(|h| format!("sha256:{h}").parse::<Digest>())
        {
            Some(Ok(d)) => d,
            _ if !compressed => diff_id.clone(),
            _ => {
                let (r, _) = source.open(input, path)?;
                let mut h = crate::digest::HashingReader::new(r);
                io::copy(&mut h, &mut io::sink()).map_err(|source| LoadError::Read {
                    path: input.to_path_buf(),
                    source,
                })?;
                h.into_parts().1
            }
        };
        layers.push((
            path.clone(),
            LayerRecord {
                digest,
                diff_id: diff_id.clone(),
                size,
                media_type: media_type.to_string(),
            },
        ));
    }
    Ok(layers)
}

/// A docker archive has no manifest: the OCI one a registry would hold.
fn docker_manifest(
    config_digest: &Digest,
    config_len: usize,
    layers: &[(String, LayerRecord)],
) -> Vec<u8> {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_len,
        },
        "layers": layers.iter().map(|(_, l)| serde_json::json!({
            "mediaType": l.media_type, "digest": l.digest, "size": l.size,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&manifest).expect("json")
}

fn check_layers(input: &Path, store: &Store, layers: &[LayerRecord]) -> Result<(), LoadError> {
    crate::pull::check_stack(store, layers).map_err(|(layer, source)| LoadError::Layer {
        path: input.to_path_buf(),
        layer,
        source: Box::new(source),
    })
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[allow(clippy::too_many_arguments)]
fn record(
    reference: String,
    digest: Digest,
    index_digest: Option<Digest>,
    media_type: &str,
    config: Digest,
    platform: &Platform,
    layers: Vec<LayerRecord>,
) -> ImageRecord {
    let (repository, tag) = match parse_reference(&reference) {
        Ok(r) => (
            format!("{}/{}", r.registry(), r.repository()),
            r.tag().map(str::to_string),
        ),
        Err(_) => (reference.clone(), None),
    };
    ImageRecord {
        reference,
        repository,
        tag,
        digest,
        index_digest,
        media_type: media_type.to_string(),
        config,
        platform: platform.to_string(),
        size: layers.iter().map(|l| l.size).sum(),
        pulled_at: chrono::Utc::now(),
        layers,
        loaded: true,
    }
}

/// Stages each layer (`entry`: its blob in the input) unless the cache has it, then
/// commits them all. A staged layer is flushed in the background while the next one
/// unpacks ([`layer::HeadStart`]). A layer listed twice is staged once.
async fn stage_all(
    store: &Store,
    input: &Path,
    source: &Source,
    layers: &[(String, &LayerRecord)],
    opts: &LoadOptions<'_>,
    observer: &dyn PullObserver,
) -> Result<(), LoadError> {
    let mut locks = layer::lock_all(store, layers.iter().map(|(_, l)| &l.diff_id))?;
    let mut staged = Vec::new();
    let mut head_start = layer::HeadStart::default();
    for (i, (entry, l)) in layers.iter().enumerate() {
        // Its lock is gone: listed before, and staged then.
        let Some(lock) = locks.remove(&l.diff_id) else {
            continue;
        };
        let (r, _) = source.open(input, entry)?;
        let fetched = layer::fetch(
            store,
            LayerSource::Reader(r),
            l,
            lock,
            &opts.unpack,
            opts.min_free,
            observer,
        )
        .await
        .map_err(|e| LoadError::Layer {
            path: input.to_path_buf(),
            layer: l.digest.clone(),
            source: Box::new(e),
        })?;
        if let Some(s) = fetched {
            staged.push(s);
            if i + 1 < layers.len() {
                head_start.flush(store);
            }
        }
    }
    layer::commit_all(store, staged)?;
    Ok(())
}

async fn load_oci(
    store: &Store,
    input: &Path,
    source: &Source,
    opts: &LoadOptions<'_>,
    observer: &dyn PullObserver,
) -> Result<Vec<ImageRecord>, LoadError> {
    let man_err = |source| LoadError::Manifest {
        path: input.to_path_buf(),
        source,
    };
    let (_, index_bytes) = source.read_json::<serde_json::Value>(input, "index.json")?;
    let Parsed::Index(index) =
        manifest::parse(&index_bytes, Some(manifest::OCI_INDEX)).map_err(man_err)?
    else {
        return Err(LoadError::NotAnArchive {
            path: input.to_path_buf(),
        });
    };
    let mut out = Vec::new();
    let count = index.manifests().len();
    for (i, desc) in index.manifests().iter().enumerate() {
        let ann = desc.annotations().clone().unwrap_or_default();
        let raw_name = opts
            .tag
            .map(str::to_string)
            .or_else(|| ann.get(CONTAINERD_NAME).cloned())
            .or_else(|| ann.get(REF_NAME).cloned());
        let Some(raw_name) = raw_name else {
            return Err(LoadError::Unnamed {
                path: input.to_path_buf(),
                what: format!("#{} of {count} ({})", i + 1, desc.digest()),
            });
        };
        // A bare tag ("1.36") names no repository.
        if !raw_name.contains('/')
            && !raw_name.contains(':')
            && opts.tag.is_none()
            && !raw_name.contains('@')
        {
            return Err(LoadError::Unnamed {
                path: input.to_path_buf(),
                what: format!("tagged only {raw_name:?}"),
            });
        }
        let reference = name_for(input, &raw_name)?;
        let top: Digest = desc
            .digest()
            .to_string()
            .parse()
            .map_err(|e: DigestParseError| man_err(e.into()))?;
        let top_bytes = source.read_blob(input, &top)?;
        let (index_digest, digest, bytes, info) =
            match manifest::parse(&top_bytes, Some(desc.media_type().as_ref())).map_err(man_err)? {
                Parsed::Image(info) => (None, top.clone(), top_bytes, info),
                Parsed::Index(inner) => {
                    let d = manifest::select_platform(&inner, opts.platform).map_err(man_err)?;
                    let child: Digest = d
                        .digest()
                        .to_string()
                        .parse()
                        .map_err(|e: DigestParseError| man_err(e.into()))?;
                    let child_bytes = source.read_blob(input, &child)?;
                    match manifest::parse(&child_bytes, None).map_err(man_err)? {
                        Parsed::Image(info) => (Some(top.clone()), child, child_bytes, info),
                        Parsed::Index(_) => {
                            return Err(man_err(ManifestError::NestedIndex { digest: child }));
                        }
                    }
                }
            };
        let config_bytes = source.read_blob(input, &info.config)?;
        let cfg = manifest::parse_config(&config_bytes, info.layers.len()).map_err(man_err)?;
        let layers = LayerRecord::from_manifest(&info, &cfg);
        let entries: Vec<(String, &LayerRecord)> = layers
            .iter()
            .map(|l| (format!("blobs/sha256/{}", l.digest.hex()), l))
            .collect();
        stage_all(store, input, source, &entries, opts, observer).await?;
        check_layers(input, store, &layers)?;
        if let Some(i) = &index_digest {
            store.write_blob(i, &source.read_blob(input, i)?)?;
        }
        store.write_blob(&digest, &bytes)?;
        store.write_blob(&info.config, &config_bytes)?;
        let rec = record(
            reference,
            digest,
            index_digest,
            &info.media_type,
            info.config.clone(),
            &cfg.platform,
            layers,
        );
        store.save_image(&rec)?;
        out.push(rec);
    }
    Ok(out)
}

/// One image of an archive as a registry holds it, for `push`: its blobs (config and
/// layers) and manifests exactly as the archive has them, so their digests stay the
/// archive's (a docker archive has no manifest: the OCI one `load` makes for it).
pub struct ArchiveImage {
    input: PathBuf,
    source: Source,
    /// Where a compressed archive was unpacked (removed with this).
    _tmp: tempfile::TempDir,
    /// Every blob the manifests name, once: its digest, size and entry in the archive.
    pub blobs: Vec<(Digest, u64, String)>,
    /// Each manifest's digest, media type and bytes: an index's children first, the
    /// image (or index) the archive names last.
    pub manifests: Vec<(Digest, String, Vec<u8>)>,
}

impl ArchiveImage {
    /// Blob `i` of [`ArchiveImage::blobs`], read from the archive.
    pub fn open_blob(&self, i: usize) -> Result<Box<dyn Read + Send>, LoadError> {
        let (_, _, entry) = &self.blobs[i];
        Ok(self.source.open(&self.input, entry)?.0)
    }
}

/// The one image of `input` (a `docker save` tarball, an OCI archive or layout, gzip or
/// zstd compressed or not; unpacked under `tmp_parent` when compressed) for `push`. An
/// archive of several images is refused: push takes one image to one repository tag.
pub fn for_push(input: &Path, tmp_parent: &Path) -> Result<ArchiveImage, LoadError> {
    let read_err = |source| LoadError::Read {
        path: input.to_path_buf(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".push-")
        .tempdir_in(tmp_parent)
        .map_err(read_err)?;
    let source = open_source(input, tmp.path())?;
    let several = |count: usize| LoadError::SeveralImages {
        path: input.to_path_buf(),
        count,
    };
    let man_err = |source| LoadError::Manifest {
        path: input.to_path_buf(),
        source,
    };
    let mut blobs: Vec<(Digest, u64, String)> = Vec::new();
    let mut manifests = Vec::new();
    let mut add_blob = |d: Digest, size: u64, entry: String| {
        if !blobs.iter().any(|(b, _, _)| *b == d) {
            blobs.push((d, size, entry));
        }
    };
    if source.exists("index.json") {
        let (index, _) = source.read_json::<serde_json::Value>(input, "index.json")?;
        let descs = index["manifests"].as_array().cloned().unwrap_or_default();
        if descs.len() != 1 {
            return Err(several(descs.len()));
        }
        // The blobs of one image manifest (its config and layers) as the archive holds them.
        let mut image_blobs = |bytes: &[u8]| -> Result<(), LoadError> {
            let m: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|source| LoadError::Json {
                    path: input.to_path_buf(),
                    entry: "a manifest".into(),
                    source,
                })?;
            let descs =
                std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten());
            for d in descs {
                let digest: Digest = d["digest"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e: DigestParseError| man_err(e.into()))?;
                let entry = format!("blobs/sha256/{}", digest.hex());
                let (_, size) = source.open(input, &entry)?;
                add_blob(digest, size, entry);
            }
            Ok(())
        };
        let top: Digest = descs[0]["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e: DigestParseError| man_err(e.into()))?;
        let top_bytes = source.read_blob(input, &top)?;
        let doc: serde_json::Value =
            serde_json::from_slice(&top_bytes).map_err(|source| LoadError::Json {
                path: input.to_path_buf(),
                entry: format!("blobs/sha256/{}", top.hex()),
                source,
            })?;
        let media_type = |doc: &serde_json::Value, desc: &serde_json::Value| {
            doc["mediaType"]
                .as_str()
                .or(desc["mediaType"].as_str())
                .unwrap_or(manifest::OCI_MANIFEST)
                .to_string()
        };
        let top_type = media_type(&doc, &descs[0]);
        if let Some(children) = doc["manifests"].as_array() {
            // An index (multi-platform): every child, as the archive holds it.
            for c in children {
                let d: Digest = c["digest"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e: DigestParseError| man_err(e.into()))?;
                let bytes = source.read_blob(input, &d)?;
                let child: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
                        path: input.to_path_buf(),
                        entry: format!("blobs/sha256/{}", d.hex()),
                        source,
                    })?;
                if child["manifests"].is_array() {
                    return Err(man_err(ManifestError::NestedIndex { digest: d }));
                }
                image_blobs(&bytes)?;
                manifests.push((d, media_type(&child, c), bytes));
            }
        } else {
            image_blobs(&top_bytes)?;
        }
        manifests.push((top, top_type, top_bytes));
    } else if source.exists("manifest.json") {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            layers: Vec<String>,
        }
        let (entries, _) = source.read_json::<Vec<Entry>>(input, "manifest.json")?;
        if entries.len() != 1 {
            return Err(several(entries.len()));
        }
        let e = &entries[0];
        let (_, config_bytes) = source.read_json::<serde_json::Value>(input, &e.config)?;
        let config_digest = Digest::of(&config_bytes);
        let cfg = manifest::parse_config(&config_bytes, e.layers.len()).map_err(man_err)?;
        let layers = docker_layers(input, &source, &e.layers, &cfg.diff_ids)?;
        add_blob(
            config_digest.clone(),
            config_bytes.len() as u64,
            e.config.clone(),
        );
        for (path, l) in &layers {
            add_blob(l.digest.clone(), l.size, path.clone());
        }
        let bytes = docker_manifest(&config_digest, config_bytes.len(), &layers);
        manifests.push((
            Digest::of(&bytes),
            manifest::OCI_MANIFEST.to_string(),
            bytes,
        ));
    } else {
        return Err(LoadError::NotAnArchive {
            path: input.to_path_buf(),
        });
    }
    Ok(ArchiveImage {
        input: input.to_path_buf(),
        source,
        _tmp: tmp,
        blobs,
        manifests,
    })
}
