//! Fetching one layer into the cache: download (or read from an archive), decompress
//! (gzip, zstd or none, detected from the bytes), unpack and hash in one streaming pass,
//! then verify blob digest and diff-id before the directory is moved into place.

use crate::client::{RegistryClient, RegistryError};
use crate::config::Endpoint;
use crate::digest::{Digest, HashingReader};
use crate::progress::PullObserver;
use crate::store::{LayerRecord, Lock, Store, StoreError, TempDir};
use crate::unpack::{self, UnpackError, UnpackOptions};
use bytes::Bytes;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("failed to download the layer")]
    Download(#[source] RegistryError),
    #[error(transparent)]
    Unpack(UnpackError),
    #[error(
        "blob digest mismatch: expected {expected}, got {actual} ({size} bytes); the blob is \
         corrupted in the registry or was altered in transit"
    )]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("blob is {actual} bytes but the manifest says {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error(
        "diff-id mismatch: the image config says {expected} but the uncompressed layer is \
         {actual}"
    )]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("failed to decompress the layer ({compression})")]
    Decompress {
        compression: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "not enough free disk space under {path}: {available} bytes free, at least {required} \
         required (min_free_space)"
    )]
    DiskFull {
        path: std::path::PathBuf,
        available: u64,
        required: u64,
    },
    #[error(
        "the layer is neither gzip, zstd nor a tar (its media type says {media_type:?}; it \
         starts with {magic})"
    )]
    UnknownFormat { media_type: String, magic: String },
    #[error("the unpack worker failed: {0}")]
    Worker(String),
}

/// Where a layer's blob bytes come from.
pub enum LayerSource<'a> {
    Registry {
        client: &'a RegistryClient,
        endpoint: &'a Endpoint,
    },
    /// A blob already on this machine (`load` of an archive or OCI layout).
    Reader(Box<dyn Read + Send>),
}

/// A layer unpacked and verified in `tmp/`, not yet in the cache. It holds the layer's
/// lock until [`commit_all`] moves it into place (or it is dropped and removed).
pub struct Staged {
    tmp: TempDir,
    diff_id: Digest,
    implicit_dirs: Vec<(String, String)>,
    _lock: Lock,
}

impl Staged {
    pub fn diff_id(&self) -> &Digest {
        &self.diff_id
    }

    fn dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("layer")
    }
}

/// Moves staged layers into the cache after one `syncfs` for all of them, so a power
/// loss never leaves a complete-looking but empty layer. (One flush per pull rather than
/// one per layer: syncfs also flushes whatever else the machine is writing.)
pub fn commit_all(store: &Store, staged: Vec<Staged>) -> Result<(), StoreError> {
    if staged.is_empty() {
        return Ok(());
    }
    store.sync()?;
    for s in staged {
        store.write_implicit_dirs(&s.diff_id, &s.implicit_dirs)?;
        store.commit_layer(&s.dir(), &s.diff_id)?;
    }
    Ok(())
}

/// Flushes the cache's filesystem in the background while more layers unpack, so the
/// disk writes the layers already staged while the CPU works on the rest, and
/// [`commit_all`]'s `syncfs` waits only for what is left. At most one flush runs at a
/// time; one asked for while another runs is skipped (the next layer asks again).
#[derive(Default)]
pub struct HeadStart(Option<tokio::task::JoinHandle<()>>);

impl HeadStart {
    /// Starts a flush unless one is running. Call it when a layer is staged and others
    /// are still to come.
    pub fn flush(&mut self, store: &Store) {
        if self.0.as_ref().is_some_and(|f| !f.is_finished()) {
            return;
        }
        let store = store.clone();
        self.0 = Some(tokio::task::spawn_blocking(move || {
            // Only a head start: commit_all's own sync reports an error.
            let _ = store.sync();
        }));
    }
}

/// Takes the locks of all `diff_ids` (each once) in one global order, so that two
/// processes staging overlapping sets of layers never hold one each and wait for the
/// other's (a pull holds every layer's lock until [`commit_all`]). Blocks.
pub fn lock_all<'d>(
    store: &Store,
    diff_ids: impl IntoIterator<Item = &'d Digest>,
) -> Result<std::collections::HashMap<Digest, Lock>, StoreError> {
    let sorted: std::collections::BTreeSet<&Digest> = diff_ids.into_iter().collect();
    let mut locks = std::collections::HashMap::new();
    for d in sorted {
        locks.insert(d.clone(), store.layer_lock(d)?);
    }
    Ok(locks)
}

/// Takes, without waiting, the locks of those `diff_ids` nobody holds; the others are
/// returned busy (another pull is staging them). A pull stages and commits what it got,
/// releasing every lock, and only then waits for the busy ones with [`lock_all`]: it
/// never waits while holding a lock, so two pulls sharing a base layer overlap on the
/// rest and still fetch the shared layer once.
pub fn lock_free<'d>(
    store: &Store,
    diff_ids: impl IntoIterator<Item = &'d Digest>,
) -> Result<(std::collections::HashMap<Digest, Lock>, Vec<Digest>), StoreError> {
    let sorted: std::collections::BTreeSet<&Digest> = diff_ids.into_iter().collect();
    let mut locks = std::collections::HashMap::new();
    let mut busy = Vec::new();
    for d in sorted {
        match store.try_layer_lock(d)? {
            Some(l) => {
                locks.insert(d.clone(), l);
            }
            None => busy.push(d.clone()),
        }
    }
    Ok((locks, busy))
}

/// Fetches `layer` unless the cache has it: `Some(staged)` to pass to [`commit_all`].
/// `lock` is the layer's lock from [`lock_all`]; with it held, another process that
/// unpacked the layer meanwhile has committed it, and this one finds it there.
pub async fn fetch(
    store: &Store,
    source: LayerSource<'_>,
    layer: &LayerRecord,
    lock: Lock,
    opts: &UnpackOptions,
    min_free: u64,
    observer: &dyn PullObserver,
) -> Result<Option<Staged>, LayerError> {
    if store.has_layer(&layer.diff_id) {
        observer.layer_cached(&layer.digest);
        return Ok(None);
    }
    let (free, free_inodes) = match check_free_space(store, min_free) {
        // A prune just before may have left the space it frees in the trash, still to
        // be deleted in the background: delete it now, then look again.
        Err(LayerError::DiskFull { .. }) if store.has_trash() => {
            store.empty_trash()?;
            check_free_space(store, min_free)?
        }
        r => r?,
    };

    let store2 = store.clone();
    let layer2 = layer.clone();
    let mut opts2 = opts.clone();
    // Layers unpack concurrently: this bound is per layer, the min_free margin shared.
    opts2.free_space_bytes = free;
    opts2.free_inodes = free_inodes;
    let (tmp, implicit_dirs) = match source {
        LayerSource::Reader(reader) => {
            tokio::task::spawn_blocking(move || unpack_verify(&store2, reader, &layer2, &opts2))
                .await
                .map_err(|e| LayerError::Worker(e.to_string()))??
        }
        LayerSource::Registry { client, endpoint } => {
            // A few chunks (hyper reads up to ~400 kB at a time) keep download and unpack
            // overlapping; more only grows memory.
            let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
            // Where the layer's time went, for the debug log (docs/benchmarks.md, "Stop
            // 47"): the unpacker's waits for bytes; the download's waits for the
            // unpacker are logged by `blob_stream`.
            let starved = Arc::new(AtomicU64::new(0));
            let starved2 = starved.clone();
            let t0 = Instant::now();
            let worker = tokio::task::spawn_blocking(move || {
                let r = unpack_verify(
                    &store2,
                    Box::new(ChannelReader::new(rx, starved2)),
                    &layer2,
                    &opts2,
                );
                (r, t0.elapsed())
            });
            let progress = |n: u64| observer.layer_progress(&layer.digest, n);
            let download = client
                .blob_stream(endpoint, &layer.digest, layer.size, tx, &progress)
                .await;
            let downloaded = t0.elapsed();
            let (worked, unpacked) = worker
                .await
                .map_err(|e| LayerError::Worker(e.to_string()))?;
            tracing::debug!(layer = %layer.digest, size = layer.size,
                download_ms = downloaded.as_millis() as u64,
                unpack_ms = unpacked.as_millis() as u64,
                starved_ms = starved.load(Ordering::Relaxed) / 1000,
                "layer fetched");
            // A failed download also fails the worker; report the cause.
            download.map_err(LayerError::Download)?;
            worked?
        }
    };
    observer.layer_done(&layer.digest);
    Ok(Some(Staged {
        tmp,
        diff_id: layer.diff_id.clone(),
        implicit_dirs,
        _lock: lock,
    }))
}

/// Refuses to start with less than `min_free` free; returns how many bytes and inodes
/// may be used (inodes keep a 5% margin; none where the filesystem does not count them).
fn check_free_space(
    store: &Store,
    min_free: u64,
) -> Result<(Option<u64>, Option<u64>), LayerError> {
    let Ok(st) = rustix::fs::statvfs(store.root()) else {
        return Ok((None, None));
    };
    let inodes = (st.f_files > 0).then(|| st.f_favail.saturating_sub(st.f_files / 20));
    let available = st.f_bavail.saturating_mul(st.f_frsize);
    if available < min_free {
        return Err(LayerError::DiskFull {
            path: store.root().to_path_buf(),
            available,
            required: min_free,
        });
    }
    Ok((Some(available - min_free), inodes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    fn sniff(magic: &[u8]) -> Self {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    fn declared(media_type: &str) -> Option<Self> {
        if media_type.ends_with("gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") || media_type.ends_with("tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "uncompressed tar",
        }
    }
}

type Compressed = BufReader<HashingReader<Box<dyn Read + Send>>>;

enum Decoder {
    Gzip(Box<flate2::bufread::MultiGzDecoder<Compressed>>),
    Zstd(zstd::stream::read::Decoder<'static, Compressed>),
    None(Compressed),
}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::None(d) => d.read(buf),
        }
    }
}

impl Decoder {
    fn into_inner(self) -> Compressed {
        match self {
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
            Decoder::None(d) => d,
        }
    }
}

/// The blocking half: one pass over the blob that hashes it, decompresses it, hashes
/// the tar and unpacks it into a temp dir, then verifies and commits.
fn unpack_verify(
    store: &Store,
    blob: Box<dyn Read + Send>,
    layer: &LayerRecord,
    opts: &UnpackOptions,
) -> Result<(TempDir, Vec<(String, String)>), LayerError> {
    let tmp = store.temp_dir()?;
    let staged = tmp.path().join("layer");
    std::fs::create_dir(&staged).map_err(|source| StoreError::Io {
        op: "create",
        path: staged.clone(),
        source,
    })?;

    let mut compressed: Compressed = BufReader::with_capacity(256 * 1024, HashingReader::new(blob));
    let magic = compressed
        .fill_buf()
        .map_err(|e| LayerError::Unpack(UnpackError::Read(e)))?;
    let compression = Compression::sniff(magic);
    let magic_hex = hex::encode(&magic[..magic.len().min(4)]);
    if let Some(declared) = Compression::declared(&layer.media_type)
        && declared != compression
        && !magic.is_empty()
    {
        tracing::warn!(layer = %layer.digest, media_type = %layer.media_type,
                actual = compression.name(), "layer media type does not match its content; using the content");
    }
    let decoder = match compression {
        Compression::Gzip => {
            Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(compressed)))
        }
        Compression::Zstd => Decoder::Zstd(
            zstd::stream::read::Decoder::with_buffer(compressed).map_err(|source| {
                LayerError::Decompress {
                    compression: "zstd",
                    source,
                }
            })?,
        ),
        Compression::None => Decoder::None(compressed),
    };
    let mut plain = HashingReader::new(decoder);
    let unpacked = unpack::unpack(&mut plain, &staged, opts);
    let stats = match unpacked {
        Ok(stats) => stats,
        Err(e) => {
            if !matches!(e, UnpackError::Read(_)) {
                // Refused entries and local I/O errors: stop reading at once.
                return Err(LayerError::Unpack(e));
            }
            let d = drain(plain);
            d.check_blob(layer)?;
            let UnpackError::Read(source) = e else {
                unreachable!("matched above")
            };
            if compression == Compression::None {
                return Err(LayerError::UnknownFormat {
                    media_type: layer.media_type.clone(),
                    magic: magic_hex,
                });
            }
            return Err(LayerError::Decompress {
                compression: compression.name(),
                source,
            });
        }
    };
    let d = drain(plain);
    d.check_blob(layer)?;
    if let Some(source) = d.decode_err {
        return Err(LayerError::Decompress {
            compression: compression.name(),
            source,
        });
    }
    if d.diff_id != layer.diff_id {
        return Err(LayerError::DiffIdMismatch {
            expected: layer.diff_id.clone(),
            actual: d.diff_id,
        });
    }
    Ok((tmp, stats.implicit_dirs))
}

/// Both digests of a fully read layer stream.
struct Drained {
    diff_id: Digest,
    decode_err: Option<io::Error>,
    blob: Digest,
    blob_size: u64,
    transport_err: Option<io::Error>,
}

impl Drained {
    /// A corrupt blob usually fails decompression first: the blob digest names the
    /// real cause, so it is checked before anything else.
    fn check_blob(&self, layer: &LayerRecord) -> Result<(), LayerError> {
        if let Some(e) = &self.transport_err {
            // The download side reports the cause; this only stops the worker.
            return Err(LayerError::Unpack(UnpackError::Read(io::Error::new(
                e.kind(),
                e.to_string(),
            ))));
        }
        if self.blob != layer.digest {
            return Err(LayerError::DigestMismatch {
                expected: layer.digest.clone(),
                actual: self.blob.clone(),
                size: self.blob_size,
            });
        }
        if self.blob_size != layer.size {
            return Err(LayerError::SizeMismatch {
                expected: layer.size,
                actual: self.blob_size,
            });
        }
        Ok(())
    }
}

/// Reads the decompressed stream and then the raw blob to their ends, so both digests
/// cover every byte (tar padding, trailing data).
fn drain(mut plain: HashingReader<Decoder>) -> Drained {
    let decode_err = io::copy(&mut plain, &mut io::sink()).err();
    let (decoder, diff_id, _) = plain.into_parts();
    // Bytes the BufReader still holds were hashed when it read them.
    let mut raw = decoder.into_inner().into_inner();
    let transport_err = io::copy(&mut raw, &mut io::sink()).err();
    let (_, blob, blob_size) = raw.into_parts();
    Drained {
        diff_id,
        decode_err,
        blob,
        blob_size,
        transport_err,
    }
}

/// Adapts the download channel to `Read` for the blocking unpacker.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    /// Microseconds spent waiting for the download (for the debug log).
    starved_us: Arc<AtomicU64>,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>, starved_us: Arc<AtomicU64>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
            starved_us,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            let got = match self.rx.try_recv() {
                Ok(g) => Some(g),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let t0 = Instant::now();
                    let g = self.rx.blocking_recv();
                    let waited = t0.elapsed().as_micros() as u64;
                    self.starved_us.fetch_add(waited, Ordering::Relaxed);
                    g
                }
            };
            match got {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_free_takes_the_free_locks_and_names_the_busy_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let held = store.layer_lock(&a).unwrap();
        let (locks, busy) = lock_free(&store, [&a, &b, &b]).unwrap();
        assert_eq!(busy, vec![a.clone()]);
        assert_eq!(locks.keys().collect::<Vec<_>>(), vec![&b]);
        // Taken means held: a second try (another pull) finds b busy too.
        assert!(store.try_layer_lock(&b).unwrap().is_none());
        drop((held, locks));
        let (locks, busy) = lock_free(&store, [&a, &b]).unwrap();
        assert!(busy.is_empty());
        assert_eq!(locks.len(), 2);
    }

    #[test]
    fn sniffs_compression() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/"), Compression::None);
        assert_eq!(
            Compression::declared("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::declared("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
    }
}
