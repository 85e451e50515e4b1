//! Pulling an image: resolve the reference (mirrors first), pick the platform from an
//! index, then fetch every missing layer concurrently, decompressing and unpacking it
//! while it downloads, verifying both digests before it is moved into the cache.

use crate::client::{MAX_CONFIG_BYTES, RegistryClient, RegistryError};
use crate::config::{Endpoint, RegistriesConfig};
use crate::digest::Digest;
use crate::layer::{self, LayerError, LayerSource};
use crate::manifest::{self, ImageInfo, ManifestError, Parsed, Platform};
use crate::reference::{ImageRef, RefError};
use crate::store::{ImageRecord, LayerRecord, Store, StoreError};
use std::sync::Arc;

pub use crate::progress::{PullObserver, Quiet};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid image reference {image:?}: {source}")]
    Reference {
        image: String,
        #[source]
        source: RefError,
    },
    #[error("failed to pull {image}")]
    Registry {
        image: String,
        #[source]
        source: RegistryError,
    },
    #[error("failed to pull {image}")]
    Manifest {
        image: String,
        #[source]
        source: ManifestError,
    },
    #[error("failed to pull {image}: layer {layer}")]
    Layer {
        image: String,
        layer: Digest,
        #[source]
        source: Box<LayerError>,
    },
    #[error("failed to pull {image}")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error("failed to pull {image}: the worker task failed: {detail}")]
    Join { image: String, detail: String },
}

/// The pieces a pull needs; share one per process.
pub struct Puller {
    pub store: Store,
    pub client: Arc<RegistryClient>,
    pub config: RegistriesConfig,
    /// Layers fetched at once from one registry.
    pub concurrency: usize,
    /// The per-registry bound itself, shared by clones: pullers that run side by side
    /// (one per set of credentials in a task) share one to keep `concurrency` per registry.
    pub limits: RegistryLimits,
}

/// One semaphore of `concurrency` permits per registry host, made on first use.
#[derive(Clone, Default)]
pub struct RegistryLimits(
    Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>>,
);

impl RegistryLimits {
    fn for_host(&self, host: &str, concurrency: usize) -> Arc<tokio::sync::Semaphore> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(host.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))))
            .clone()
    }
}

/// What the registry says of a cached image (see [`Puller::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The reference still names the cached manifest (or index).
    Current,
    /// The reference now names `digest`: pull it (cached layers are reused).
    Changed { digest: Digest },
}

/// How many times [`Puller::check`] tries a registry that does not answer: once more
/// after a short pause, so a box whose registry is unreachable (air-gapped) waits ~0.5 s
/// per image rather than a pull's whole backoff (~7.5 s) before it runs the cached one.
pub const CHECK_ATTEMPTS: u32 = 2;

impl PullError {
    /// Whether the registry (or the service issuing its credentials) could not be reached
    /// at all, so nothing was said about access (see [`RegistryError::is_unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, PullError::Registry { source, .. } if source.is_unreachable())
    }
}

/// Normalises what a user typed (`busybox`, `host:5000/x`, `x@sha256:…`); its
/// `to_string()` is the name the image is recorded under.
pub fn parse_reference(image: &str) -> Result<ImageRef, PullError> {
    ImageRef::parse(image).map_err(|source| PullError::Reference {
        image: image.to_string(),
        source,
    })
}

/// Refuses an image whose layers write through a lower layer's symlink (see
/// [`crate::stack`]); the offending layer leaves the cache unless another image uses it.
pub(crate) fn check_stack(
    store: &Store,
    layers: &[LayerRecord],
) -> Result<(), (Digest, LayerError)> {
    let diffs: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let conflict = crate::stack::check(store, &diffs)
        .map_err(|e| (layers[0].digest.clone(), LayerError::Store(e)))?;
    let Some(c) = conflict else { return Ok(()) };
    let bad = &layers[c.layer];
    if let Err(e) = store.remove_layer_if_unused(&bad.diff_id) {
        tracing::warn!(layer = %bad.digest, error = %e, "could not remove a refused layer");
    }
    Err((
        bad.digest.clone(),
        LayerError::Unpack(crate::unpack::UnpackError::Unsafe {
            entry: c.entry,
            reason: c.reason,
        }),
    ))
}

/// The errors of a pull of `image`, from the registry, its manifests, the cache.
fn registry_err(image: &str) -> impl Fn(RegistryError) -> PullError + Copy + '_ {
    move |source| PullError::Registry {
        image: image.to_string(),
        source,
    }
}

fn manifest_err(image: &str) -> impl Fn(ManifestError) -> PullError + Copy + '_ {
    move |source| PullError::Manifest {
        image: image.to_string(),
        source,
    }
}

fn store_err(image: &str) -> impl Fn(StoreError) -> PullError + Copy + '_ {
    move |source| PullError::Store {
        image: image.to_string(),
        source,
    }
}

/// What a reference names, resolved at the first source that answered: the index when
/// it names one, and the image manifest for the platform.
struct Resolved {
    ep: Endpoint,
    /// The index's digest and bytes, when the reference names an index.
    index: Option<(Digest, Vec<u8>)>,
    manifest_bytes: Vec<u8>,
    manifest_digest: Digest,
    parsed: ImageInfo,
}

impl Puller {
    /// Pulls `image` for `platform`: resolves its manifest, reads its config, fetches its
    /// missing layers, then records it (manifests, config, and last the record).
    pub async fn pull(
        &self,
        image: &str,
        platform: &Platform,
        observer: Arc<dyn PullObserver>,
    ) -> Result<ImageRecord, PullError> {
        let reference = parse_reference(image)?;
        let name = reference.to_string();
        let t0 = std::time::Instant::now();
        let resolved = self.resolve(&reference, &name, platform).await?;
        let config_digest = resolved.parsed.config.clone();
        let config_bytes = self
            .config_blob(&name, &resolved.ep, &config_digest)
            .await?;
        let config = manifest::parse_config(&config_bytes, resolved.parsed.layers.len())
            .map_err(manifest_err(&name))?;
        if resolved.index.is_none() && !config.platform.matches_loosely(platform) {
            tracing::warn!(image = %name, image_platform = %config.platform, wanted = %platform,
                "the image's platform does not match the requested platform");
        }

        let layers = LayerRecord::from_manifest(&resolved.parsed, &config);
        observer.resolved(
            &name,
            &resolved.manifest_digest,
            &layers
                .iter()
                .map(|l| (l.digest.clone(), l.size))
                .collect::<Vec<_>>(),
        );

        let store = self.store.clone();
        let _cache = tokio::task::spawn_blocking(move || store.shared_lock())
            .await
            .map_err(|e| PullError::Join {
                image: name.clone(),
                detail: e.to_string(),
            })?
            .map_err(store_err(&name))?;

        let resolved_at = t0.elapsed();
        self.fetch_layers(&name, &resolved.ep, &layers, observer)
            .await?;
        let fetched = t0.elapsed();

        let record = ImageRecord {
            reference: name.clone(),
            repository: format!("{}/{}", reference.registry(), reference.repository()),
            tag: reference.tag().map(str::to_string),
            digest: resolved.manifest_digest.clone(),
            index_digest: resolved.index.as_ref().map(|(d, _)| d.clone()),
            media_type: resolved.parsed.media_type.clone(),
            config: config_digest.clone(),
            platform: config.platform.to_string(),
            size: layers.iter().map(|l| l.size).sum(),
            pulled_at: chrono::Utc::now(),
            layers,
            loaded: false,
        };
        let times = (t0, resolved_at, fetched);
        self.save(record, resolved, config_bytes, times).await
    }

    /// The manifest `reference` names, from the first of its sources that answers
    /// (mirrors first, then the registry itself), checked against the digest it pins;
    /// from an index, the manifest of `platform`, checked against the index's digest.
    async fn resolve(
        &self,
        reference: &ImageRef,
        name: &str,
        platform: &Platform,
    ) -> Result<Resolved, PullError> {
        let (wrap_reg, wrap_man) = (registry_err(name), manifest_err(name));
        let want_ref = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_string();
        let pinned: Option<Digest> = match reference.digest() {
            Some(d) => Some(d.parse().map_err(|e: crate::digest::DigestParseError| {
                wrap_man(ManifestError::BadDigest(e))
            })?),
            None => None,
        };

        let endpoints = self
            .config
            .endpoints(reference.registry(), reference.repository());
        let mut last_err = None;
        let mut found = None;
        for ep in &endpoints {
            match self.client.manifest(ep, &want_ref).await {
                Ok(m) => {
                    found = Some((ep.clone(), m));
                    break;
                }
                Err(e) => {
                    if ep.is_mirror {
                        tracing::warn!(mirror = %ep.host, error = %e, "mirror failed; trying the next source");
                    }
                    last_err = Some(e);
                }
            }
        }
        let Some((ep, top)) = found else {
            return Err(wrap_reg(last_err.expect("at least one endpoint")));
        };
        let top_digest = Digest::of(&top.bytes);
        if let Some(p) = &pinned
            && p != &top_digest
        {
            return Err(wrap_man(ManifestError::DigestMismatch {
                what: "manifest".into(),
                expected: p.clone(),
                actual: top_digest,
            }));
        }

        let index =
            match manifest::parse(&top.bytes, top.content_type.as_deref()).map_err(wrap_man)? {
                Parsed::Index(index) => index,
                Parsed::Image(parsed) => {
                    return Ok(Resolved {
                        ep,
                        index: None,
                        manifest_bytes: top.bytes,
                        manifest_digest: top_digest,
                        parsed,
                    });
                }
            };
        let desc = manifest::select_platform(&index, platform).map_err(wrap_man)?;
        let child_digest: Digest = desc
            .digest()
            .to_string()
            .parse()
            .map_err(|e: crate::digest::DigestParseError| wrap_man(ManifestError::BadDigest(e)))?;
        let child = self
            .client
            .manifest(&ep, &child_digest.to_string())
            .await
            .map_err(wrap_reg)?;
        let actual = Digest::of(&child.bytes);
        if actual != child_digest {
            return Err(wrap_man(ManifestError::DigestMismatch {
                what: "platform manifest".into(),
                expected: child_digest,
                actual,
            }));
        }
        match manifest::parse(&child.bytes, child.content_type.as_deref()).map_err(wrap_man)? {
            Parsed::Image(parsed) => Ok(Resolved {
                ep,
                index: Some((top_digest, top.bytes)),
                manifest_bytes: child.bytes,
                manifest_digest: actual,
                parsed,
            }),
            Parsed::Index(_) => Err(wrap_man(ManifestError::NestedIndex { digest: actual })),
        }
    }

    /// The image config `digest`: from the cache, else from the registry, checked
    /// against its digest.
    async fn config_blob(
        &self,
        name: &str,
        ep: &Endpoint,
        digest: &Digest,
    ) -> Result<Vec<u8>, PullError> {
        let cached = self.store.read_blob(digest).map_err(store_err(name))?;
        if let Some(b) = cached {
            return Ok(b);
        }
        let b = self
            .client
            .blob_bytes(ep, digest, MAX_CONFIG_BYTES)
            .await
            .map_err(registry_err(name))?;
        let actual = Digest::of(&b);
        if &actual != digest {
            return Err(manifest_err(name)(ManifestError::DigestMismatch {
                what: "image config".into(),
                expected: digest.clone(),
                actual,
            }));
        }
        Ok(b)
    }

    /// Checks the fetched layers' stack, then stores the manifests and config and, last,
    /// `record`: a record never points at missing data. `times`: the pull's start, and
    /// when its manifest was resolved and its layers fetched (for the debug line).
    async fn save(
        &self,
        record: ImageRecord,
        resolved: Resolved,
        config_bytes: Vec<u8>,
        times: (std::time::Instant, std::time::Duration, std::time::Duration),
    ) -> Result<ImageRecord, PullError> {
        // The stack check and the fsynced writes below block: they run on a blocking
        // thread, so the pulls that share this runtime (a task's images, pulled side by
        // side on the supervisor's one-thread runtime) keep downloading meanwhile.
        let store = self.store.clone();
        let name = record.reference.clone();
        let image = name.clone();
        let (t0, resolved_at, fetched) = times;
        tokio::task::spawn_blocking(move || {
            check_stack(&store, &record.layers).map_err(|(layer, source)| PullError::Layer {
                image: image.clone(),
                layer,
                source: Box::new(source),
            })?;
            let mut blobs: Vec<(&Digest, &[u8])> = Vec::new();
            if let Some((i, bytes)) = &resolved.index {
                blobs.push((i, bytes));
            }
            blobs.push((&resolved.manifest_digest, &resolved.manifest_bytes));
            blobs.push((&record.config, &config_bytes));
            store
                .save_image_with_blobs(&blobs, &record)
                .map_err(store_err(&image))?;
            tracing::debug!(%image, resolved_ms = resolved_at.as_millis() as u64,
                layers_ms = fetched.as_millis() as u64, saved_ms = t0.elapsed().as_millis() as u64,
                "image pulled");
            Ok(record)
        })
        .await
        .map_err(|e| PullError::Join {
            image: name,
            detail: e.to_string(),
        })?
    }

    /// Asks the registry, with this puller's credentials, whether `image` still names
    /// `cached`: one HEAD of its manifest (a GET when the registry names no digest),
    /// mirrors first as a pull does. The registry refusing these credentials (401, 403)
    /// or not knowing the image (404) is an error, as for a pull. Nothing is written.
    pub async fn check(&self, image: &str, cached: &ImageRecord) -> Result<Freshness, PullError> {
        let reference = parse_reference(image)?;
        let name = reference.to_string();
        let want_ref = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_string();
        let have = cached.index_digest.as_ref().unwrap_or(&cached.digest);
        let endpoints = self
            .config
            .endpoints(reference.registry(), reference.repository());
        let mut last_err = None;
        for ep in &endpoints {
            let named = match self
                .client
                .manifest_digest(ep, &want_ref, CHECK_ATTEMPTS)
                .await
            {
                Ok(Some(d)) => Ok(d),
                // No Docker-Content-Digest: the manifest's own bytes say it.
                Ok(None) => self
                    .client
                    .manifest(ep, &want_ref)
                    .await
                    .map(|m| Digest::of(&m.bytes)),
                Err(e) => Err(e),
            };
            match named {
                Ok(d) if &d == have => return Ok(Freshness::Current),
                Ok(digest) => return Ok(Freshness::Changed { digest }),
                Err(e) => {
                    if ep.is_mirror {
                        tracing::warn!(mirror = %ep.host, error = %e, "mirror failed; trying the next source");
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(PullError::Registry {
            image: name,
            source: last_err.expect("at least one endpoint"),
        })
    }

    /// Fetches the layers the cache lacks: first those no other pull is staging (their
    /// locks taken without waiting), committed; then, holding nothing, the rest in the
    /// global lock order (usually found committed by the pull that held them).
    async fn fetch_layers(
        &self,
        name: &str,
        ep: &Endpoint,
        layers: &[LayerRecord],
        observer: Arc<dyn PullObserver>,
    ) -> Result<(), PullError> {
        let join_err = |e: tokio::task::JoinError| PullError::Join {
            image: name.to_string(),
            detail: e.to_string(),
        };
        let store_err = |source| PullError::Store {
            image: name.to_string(),
            source,
        };
        let store = self.store.clone();
        let diffs: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let (locks, busy) = tokio::task::spawn_blocking(move || layer::lock_free(&store, &diffs))
            .await
            .map_err(join_err)?
            .map_err(store_err)?;
        self.fetch_locked(name, ep, layers, locks, observer.clone())
            .await?;
        if busy.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        let locks = tokio::task::spawn_blocking(move || layer::lock_all(&store, &busy))
            .await
            .map_err(join_err)?
            .map_err(store_err)?;
        self.fetch_locked(name, ep, layers, locks, observer).await
    }

    /// Fetches the layers whose locks are in `locks` (the others are skipped) at this
    /// registry's bounded concurrency, and commits them together.
    async fn fetch_locked(
        &self,
        name: &str,
        ep: &Endpoint,
        layers: &[LayerRecord],
        mut locks: std::collections::HashMap<Digest, crate::store::Lock>,
        observer: Arc<dyn PullObserver>,
    ) -> Result<(), PullError> {
        if locks.is_empty() {
            return Ok(());
        }
        // Shared by every pull of this puller (and of pullers sharing its limits) from
        // this registry: concurrent pulls of a task's images keep the per-registry bound.
        let sem = self.limits.for_host(&ep.host, self.concurrency);
        let mut tasks = tokio::task::JoinSet::new();
        for l in layers {
            // The same layer twice in one image (it happens) is fetched once.
            let Some(lock) = locks.remove(&l.diff_id) else {
                continue;
            };
            let l = l.clone();
            let ep = ep.clone();
            let store = self.store.clone();
            let client = self.client.clone();
            let observer = observer.clone();
            let sem = sem.clone();
            let unpack_opts = self.config.unpack_options();
            let min_free = self.config.min_free_space();
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore open");
                let res = layer::fetch(
                    &store,
                    LayerSource::Registry {
                        client: &client,
                        endpoint: &ep,
                    },
                    &l,
                    lock,
                    &unpack_opts,
                    min_free,
                    observer.as_ref(),
                )
                .await;
                (l.digest, res)
            });
        }
        let mut first_err = None;
        let mut staged = Vec::new();
        let mut head_start = layer::HeadStart::default();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(Some(s)))) => {
                    staged.push(s);
                    if !tasks.is_empty() {
                        head_start.flush(&self.store);
                    }
                }
                Ok((_, Ok(None))) => {}
                Ok((digest, Err(source))) => {
                    if first_err.is_none() {
                        first_err = Some(PullError::Layer {
                            image: name.to_string(),
                            layer: digest,
                            source: Box::new(source),
                        });
                        // Stop the others: their temp dirs are removed as they unwind.
                        tasks.abort_all();
                    }
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    first_err.get_or_insert(PullError::Join {
                        image: name.to_string(),
                        detail: e.to_string(),
                    });
                }
            }
        }
        if let Some(e) = first_err {
            // Staged layers are dropped: their temp dirs go, their locks are released.
            return Err(e);
        }
        let store = self.store.clone();
        let n = staged.len();
        let image = name.to_string();
        tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            let r = layer::commit_all(&store, staged);
            tracing::debug!(%image, layers = n, commit_ms = t0.elapsed().as_millis() as u64,
                "layers committed");
            r
        })
        .await
        .map_err(|e| PullError::Join {
            image: name.to_string(),
            detail: e.to_string(),
        })?
        .map_err(|source| PullError::Store {
            image: name.to_string(),
            source,
        })
    }
}
