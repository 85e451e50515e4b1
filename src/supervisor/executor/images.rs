//! The executor's images: each container's image found in the cache or pulled, by the
//! pull policy, with the task's or the container's registry credentials; distinct images
//! side by side; versionConsistency's pinned digests.

use super::{Executor, now_ms, now_us};
use crate::errors::error_chain;
use crate::store::StopCode;
use crate::task::{PullPolicy, reason};
use rootfs_cache::store::StoreError;
use rootfs_cache::{ImageRecord, Puller, RegistryClient};
use std::path::PathBuf;
use std::sync::Arc;

impl Executor {
    /// Pulls (or finds) every image according to the pull policy.
    pub(super) fn pull_images(&mut self) -> bool {
        self.task.pull_started_at = Some(now_ms());
        self.save();
        let result = self.pull_all();
        self.task.pull_stopped_at = Some(now_ms());
        self.save();
        match result {
            Ok(()) => true,
            Err((idx, why)) => {
                let why = why.to_string();
                self.fail_container(idx, why.clone());
                self.request_stop(StopCode::TaskFailedToStart, &why);
                false
            }
        }
    }

    /// The image cache: opened (its dirs made or checked) once per task, by the image
    /// check's thread or by the first step that needs it, then the same handle.
    pub(super) fn image_store(&mut self) -> Result<rootfs_cache::Store, StoreError> {
        let s = self.image_store_now()?;
        self.image_store = Some(s.clone());
        Ok(s)
    }

    /// [`Self::image_store`] without keeping what it opened.
    pub(super) fn image_store_now(&self) -> Result<rootfs_cache::Store, StoreError> {
        match &self.image_store {
            Some(s) => Ok(s.clone()),
            None => rootfs_cache::Store::open(&self.opts.root),
        }
    }

    fn pull_all(&mut self) -> Result<(), (usize, ImageError)> {
        // The cache the check's thread opened, else opened here (once per task either way).
        let (opened, early) = match self.early_checks.take() {
            Some(e) => e.join(),
            None => (None, Vec::new()),
        };
        let images = match opened {
            Some(images) => {
                self.image_store = Some(images.clone());
                images
            }
            None => self
                .image_store()
                .map_err(|e| (0, ImageError::Store(error_chain(&e))))?,
        };
        let mut get = ImageGetter::new(
            images,
            // runtimePlatform.cpuArchitecture picks the image from an index (crate::supervisor::isolation::platform).
            crate::supervisor::isolation::platform::wanted_platform(&self.task.definition),
            self.opts.pull,
            self.opts.config.clone(),
        );
        for (wanted, have, r) in early {
            let c = self.checked(&wanted, r);
            get.early.insert(wanted, (have, c));
        }
        let t_all = now_us();
        self.prefetch(&mut get);
        for idx in 0..self.slots.len() {
            // With the images pulled side by side, each container's pull phase spans
            // from the start of them all to its image being in hand.
            let t0 = if get.prefetched.is_empty() {
                now_us()
            } else {
                t_all
            };
            let image = self.slots[idx].row.image.clone();
            let rec = self
                .resolve_image(idx, &image, &mut get)
                .map_err(|reason| (idx, reason))?;
            // An image whose config says another architecture would fail with ENOEXEC
            // (or run under emulation unasked): refused by name before anything runs.
            if let Some(why) = crate::supervisor::isolation::platform::image_mismatch(
                &image,
                &rec.platform,
                &get.platform,
            ) {
                return Err((idx, ImageError::Platform(why.to_string())));
            }
            self.slots[idx].row.image_digest = Some(rec.digest.to_string());
            self.slots[idx].image = Some(rec);
            self.phase(Some(idx), "pull", t0);
            self.save_container(idx);
            self.drain_events();
            if self.stopping() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Container `idx`'s image. With versionConsistency (ECS's default) the tag resolves
    /// once per image scope (a service deployment, one RunTask call): the first task to
    /// get the image pins the digest the tag named (the index's, for a multi-platform
    /// image), and every other task of the scope runs that digest even if the tag moved.
    /// `disabled` takes the tag as it is at each task's start.
    /// Ref: ecs.json `ContainerDefinition.versionConsistency`, `ContainerImage`;
    /// docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-type-ecs.html
    /// (Container image resolution).
    fn resolve_image(
        &mut self,
        idx: usize,
        image: &str,
        get: &mut ImageGetter,
    ) -> Result<ImageRecord, ImageError> {
        fn store_err(e: &(dyn std::error::Error + 'static)) -> ImageError {
            ImageError::Store(error_chain(e))
        }
        let name = self.slots[idx].row.name.clone();
        let Some(scope) = self.pin_scope(idx, image) else {
            return self.fetch(idx, image, None, get);
        };
        let pinned = self
            .store
            .with(|s| s.image_pin(&scope, &name))
            .map_err(|e| store_err(&e))?;
        if let Some(d) = pinned {
            return self.fetch(idx, image, Some(&d), get);
        }
        let rec = self.fetch(idx, image, None, get)?;
        let top = top_digest(&rec);
        let winner = self
            .store
            .with(|s| s.pin_image(&scope, &name, &top))
            .map_err(|e| store_err(&e))?;
        if winner == top {
            return Ok(rec);
        }
        // Another task of the scope resolved the tag first, to another digest (the tag
        // moved in between): run what it runs.
        tracing::info!(task_id = %self.task.id, %image, digest = %winner, "taking the deployment's image digest");
        self.fetch(idx, image, Some(&winner), get)
    }

    /// Whether an image of the task is on ECR: its registry clients then carry the
    /// execution identity, assumed after the secrets.
    fn task_on_ecr(&self) -> bool {
        // An image of this box's own registry (or its cluster's) is pulled with its
        // token, not the role.
        self.slots.iter().any(|s| {
            on_ecr(&s.row.image)
                && !crate::task::local_registry::serves(&self.opts.root, &s.row.image)
        })
    }

    /// The scope whose pinned digest container `idx`'s image runs at (see
    /// [`Self::resolve_image`]); `None` when the reference is taken as it is.
    fn pin_scope(&self, idx: usize, image: &str) -> Option<String> {
        use crate::taskdef::model::VersionConsistency;
        let by_digest = rootfs_cache::pull::parse_reference(image)
            .map(|r| r.digest().is_some())
            .unwrap_or(false);
        self.task
            .image_scope
            .clone()
            .filter(|_| {
                self.slots[idx].def.version_consistency != Some(VersionConsistency::Disabled)
            })
            .filter(|_| !by_digest)
    }

    /// Pulls the distinct images the containers ask for first all at once, so a task's
    /// images download side by side (the layers they share once: rootfs-cache's layer
    /// locks; the per-registry bound shared: `ImageGetter::limits`). [`Self::fetch`]
    /// then takes each result from `get.prefetched`, so the containers still resolve in
    /// order and the first failing one, in definition order, gets the reason. What cannot
    /// be prepared here (credentials, a store read) is left to that pass, which reports it.
    fn prefetch(&mut self, get: &mut ImageGetter) {
        let mut wanted: Vec<(Option<usize>, String)> = Vec::new();
        let mut checks: Vec<(ImageKey, Box<ImageRecord>)> = Vec::new();
        for idx in 0..self.slots.len() {
            let image = self.slots[idx].row.image.clone();
            let name = self.slots[idx].row.name.clone();
            let pinned = match self.pin_scope(idx, &image) {
                None => None,
                Some(scope) => match self.store.with(|s| s.image_pin(&scope, &name)) {
                    Ok(p) => p,
                    Err(_) => continue,
                },
            };
            let (w, cached) = match get.lookup(&image, pinned.as_deref()) {
                Ok(Got::Pull(w)) => (w, None),
                Ok(Got::Check(rec, w)) => (w, Some(rec)),
                _ => continue,
            };
            let key = self.inside.registry_auth.contains_key(&idx).then_some(idx);
            if self.ensure_puller(key, get).is_err() {
                continue;
            }
            match cached {
                None if !wanted.contains(&(key, w.clone())) => wanted.push((key, w)),
                Some(rec)
                    if get.early_answer(key, &w, &rec).is_none()
                        && !checks.iter().any(|(k, _)| *k == (key, w.clone())) =>
                {
                    checks.push(((key, w), rec))
                }
                _ => {}
            }
        }
        self.precheck(get, checks);
        // One image: the pass in order pulls it as it always did.
        if wanted.len() < 2 {
            return;
        }
        let Some(rt) = get.rt.as_ref() else { return };
        tracing::info!(task_id = %self.task.id, images = wanted.len(), "pulling side by side");
        let pulls: Vec<_> = wanted
            .iter()
            .filter_map(|(key, w)| {
                let p = get.pullers.get(key)?.clone();
                Some(((*key, w.clone()), p))
            })
            .collect();
        let platform = get.platform.clone();
        let done = rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (k, p) in pulls {
                let platform = platform.clone();
                set.spawn(async move {
                    let r = p
                        .pull(&k.1, &platform, Arc::new(rootfs_cache::pull::Quiet))
                        .await
                        .map_err(|e| ImageError::Registry(pull_reason(&e)));
                    (k, r)
                });
            }
            // A panicked pull is left out: the pass in order pulls that image again.
            finished(set).await
        });
        get.prefetched.extend(done);
    }

    /// `default`'s registry checks of two or more cached images, asked side by side (the
    /// pass in order then reads their answers): a task's containers wait for one round
    /// trip, not one per image. One image is asked by the pass in order.
    fn precheck(&mut self, get: &mut ImageGetter, checks: Vec<(ImageKey, Box<ImageRecord>)>) {
        if checks.len() < 2 {
            return;
        }
        let Some(rt) = get.rt.as_ref() else { return };
        let asks: Vec<_> = checks
            .into_iter()
            .filter_map(|(k, rec)| Some((k.clone(), get.pullers.get(&k.0)?.clone(), rec)))
            .collect();
        let done = rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (k, p, rec) in asks {
                set.spawn(async move {
                    let r = p.check(&k.1, &rec).await;
                    (k, r)
                });
            }
            // A panicked check is left out: the pass in order asks again.
            finished(set).await
        });
        for (k, r) in done {
            let c = self.checked(&k.1, r);
            get.prechecked.insert(k, c);
        }
    }

    /// A registry's answer to `default`'s check of `wanted` as what the task does with it.
    fn checked(
        &self,
        wanted: &str,
        r: Result<rootfs_cache::pull::Freshness, rootfs_cache::PullError>,
    ) -> Checked {
        match r {
            Ok(rootfs_cache::pull::Freshness::Current) => Checked::Current,
            Ok(rootfs_cache::pull::Freshness::Changed { digest }) => {
                tracing::info!(task_id = %self.task.id, image = %wanted, %digest,
                    "the reference names another image now; pulling it");
                Checked::Changed
            }
            Err(e) if e.is_unreachable() => Checked::Unreachable(error_chain(&e)),
            Err(e) => Checked::Refused(ImageError::Registry(pull_reason(&e))),
        }
    }

    /// The registry client for credentials `key` (see `ImageGetter::pullers`), built once.
    fn ensure_puller(
        &mut self,
        key: Option<usize>,
        get: &mut ImageGetter,
    ) -> Result<(), ImageError> {
        if !get.pullers.contains_key(&key) {
            let overrides = {
                let rt = get.runtime()?;
                self.pull_overrides(key, rt).map_err(|(_, reason)| reason)?
            };
            let p = make_puller(
                get.images.clone(),
                get.config.as_deref(),
                overrides,
                &get.limits,
            )
            .map_err(|e| ImageError::Client(error_chain(e.as_ref())))?;
            get.pullers.insert(key, Arc::new(p));
        }
        Ok(())
    }

    /// Container `idx`'s image from the cache, or pulled (`digest`: that digest of it). The
    /// registry clients are only built when something is pulled: one with the task's own
    /// credentials (the execution role for ECR), and one per container with
    /// `repositoryCredentials`, which apply to its registry only. An error is the reason.
    fn fetch(
        &mut self,
        idx: usize,
        image: &str,
        digest: Option<&str>,
        get: &mut ImageGetter,
    ) -> Result<ImageRecord, ImageError> {
        let wanted = match get.lookup(image, digest) {
            Ok(Got::Have(rec)) => return Ok(*rec),
            Ok(Got::Pull(wanted)) => wanted,
            Ok(Got::Check(rec, wanted)) => match self.check_cached(idx, &wanted, &rec, get) {
                Checked::Current => return Ok(*rec),
                Checked::Changed => wanted,
                Checked::Unreachable(why) => {
                    tracing::warn!(task_id = %self.task.id, image = %wanted, reason = %why,
                        "registry unreachable; running the cached image");
                    self.warnings.push(format!(
                        "containerDefinitions[{idx}].image {wanted}: the registry could not be \
                         reached, so the cached image {} was run without checking that this \
                         task may pull it or that the tag still names it: {why}",
                        top_digest(&rec)
                    ));
                    return Ok(*rec);
                }
                // An image `load` put in the cache was got with no registry's credentials:
                // the box's operator placed it for its tasks (as an image baked into an
                // AMI is for the agent's), so a registry that refuses it or lacks it does
                // not take it away; the task says so.
                Checked::Refused(why) if rec.loaded => {
                    self.warnings.push(format!(
                        "containerDefinitions[{idx}].image {wanted}: the registry did not serve \
                         it, so the image loaded into the cache (`minifargate load`) was run: \
                         {why}"
                    ));
                    return Ok(*rec);
                }
                Checked::Refused(reason) => return Err(reason),
            },
            Err(e) => return Err(e),
        };
        let key = self.inside.registry_auth.contains_key(&idx).then_some(idx);
        if let Some(r) = get.prefetched.get(&(key, wanted.clone())) {
            return r.clone();
        }
        self.ensure_puller(key, get)?;
        let (Some(rt), Some(p)) = (get.rt.as_ref(), get.pullers.get(&key)) else {
            return Err(ImageError::NoClient);
        };
        tracing::info!(task_id = %self.task.id, image = %wanted, "pulling");
        rt.block_on(p.pull(&wanted, &get.platform, Arc::new(rootfs_cache::pull::Quiet)))
            .map_err(|e| ImageError::Registry(pull_reason(&e)))
    }

    /// `default`'s question for a cached image (`wanted`, cached as `rec`): the registry
    /// is asked with container `idx`'s credentials (its `repositoryCredentials`, else the
    /// task's: the execution role for ECR), the manifest only. The ECS agent's default
    /// falls back to the cache on any failed pull (agent/config/types.go,
    /// `ImagePullDefaultBehavior`); here only a registry that cannot be reached does:
    /// one that answers 401/403/404 has refused this task the image, and Fargate, which
    /// keeps no cache, fails the task then (CannotPullContainerError).
    fn check_cached(
        &mut self,
        idx: usize,
        wanted: &str,
        rec: &ImageRecord,
        get: &mut ImageGetter,
    ) -> Checked {
        let key = self.inside.registry_auth.contains_key(&idx).then_some(idx);
        if let Some(c) = get.early_answer(key, wanted, rec) {
            return c;
        }
        if let Some(c) = get.prechecked.get(&(key, wanted.to_string())) {
            return c.clone();
        }
        if let Err(e) = self.ensure_puller(key, get) {
            let reason = e.to_string();
            // The execution role is assumed through STS first: an STS that cannot be
            // reached says nothing about access either. The SDK's error reads
            // "dispatch failure" (no connection) or "request has timed out" then
            // (aws-smithy-runtime-api `SdkError`'s Display).
            return if reason.contains("dispatch failure")
                || reason.contains("request has timed out")
            {
                Checked::Unreachable(reason)
            } else {
                Checked::Refused(e)
            };
        }
        let (Some(rt), Some(p)) = (get.rt.as_ref(), get.pullers.get(&key)) else {
            return Checked::Refused(ImageError::NoClient);
        };
        let r = rt.block_on(p.check(wanted, rec));
        self.checked(wanted, r)
    }

    /// The credentials a registry client of this task uses instead of the host's: the
    /// execution identity for ECR (assumed now, only when some image is on ECR) and, for
    /// container `with_auth`, its `repositoryCredentials` for its image's registry.
    fn pull_overrides(
        &mut self,
        with_auth: Option<usize>,
        rt: &tokio::runtime::Runtime,
    ) -> Result<rootfs_cache::auth::Overrides, (usize, ImageError)> {
        let at = with_auth.unwrap_or(0);
        let mut o = rootfs_cache::auth::Overrides::default();
        if self.task_on_ecr() {
            o.ecr = rt
                .block_on(self.inside.execution.ecr_identity())
                .map_err(|e| (at, ImageError::EcrIdentity(e.to_string())))?;
        }
        if let Some(idx) = with_auth
            && let Some(c) = self.inside.registry_auth.get(&idx)
        {
            let r = rootfs_cache::pull::parse_reference(&self.slots[idx].row.image)
                .map_err(|e| (idx, ImageError::Reference(error_chain(&e))))?;
            o.basic
                .insert(rootfs_cache::config::api_host(r.registry()), c.clone());
        }
        Ok(o)
    }
}

/// Why a container's image could not be had, by step. Its text is the container's reason
/// (and the task's stoppedReason), as the ECS agent words it.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum ImageError {
    /// The image cache or the image scope's pinned digests (the store).
    #[error("{p}: {0}", p = reason::CANNOT_PULL)]
    Store(String),
    /// `--pull never`, and the image is not in the cache.
    #[error(
        "{p}: {wanted}: not in the local image cache and --pull never was given \
         (run `minifargate pull {wanted}`)",
        p = reason::CANNOT_PULL
    )]
    NotCached { wanted: String },
    /// The runtime the pulls run on could not be made.
    #[error("{p}: {0}", p = reason::CANNOT_PULL)]
    Runtime(String),
    /// The execution identity ECR is asked with could not be had.
    #[error("{p}: {0}", p = crate::supervisor::secrets::REASON_PREFIX)]
    EcrIdentity(String),
    /// The image reference of a container with repositoryCredentials does not parse.
    #[error("{p}: {0}", p = reason::CANNOT_PULL)]
    Reference(String),
    /// The registry client could not be built (its configuration, TLS roots).
    #[error("{p}: {0}", p = reason::CANNOT_PULL)]
    Client(String),
    /// No registry client for the image's credentials.
    #[error("{p}: no registry client", p = reason::CANNOT_PULL)]
    NoClient,
    /// The registry refused or failed the pull or the check ([`pull_reason`]).
    #[error("{0}")]
    Registry(String),
    /// The image is for another platform than the task's.
    #[error("{p}: {0}", p = reason::CANNOT_PULL)]
    Platform(String),
}

/// What the registry said of a cached image (`Executor::check_cached`).
#[derive(Clone)]
enum Checked {
    /// The reference still names the cached image, and the task may pull it.
    Current,
    /// The reference names another image now: pull it.
    Changed,
    /// The registry could not be reached (why): the cached image runs, with a warning.
    Unreachable(String),
    /// The registry refused: the container's reason.
    Refused(ImageError),
}

/// Finds or pulls images for one task, by the pull policy; the registry client (TLS roots,
/// config) is only built when something is pulled.
struct ImageGetter {
    images: rootfs_cache::Store,
    rt: Option<tokio::runtime::Runtime>,
    /// One client per credentials: `None` the task's, `Some(idx)` container idx's
    /// `repositoryCredentials`.
    pullers: std::collections::BTreeMap<Option<usize>, Arc<Puller>>,
    /// The per-registry bound on layers fetched at once, shared by all of `pullers`.
    limits: rootfs_cache::pull::RegistryLimits,
    /// Images pulled side by side before the containers resolve in order (by puller key
    /// and reference): the record or the container's reason.
    prefetched: std::collections::HashMap<(Option<usize>, String), Result<ImageRecord, ImageError>>,
    /// `default`'s registry answers for cached images, asked side by side before the
    /// containers resolve in order (by puller key and reference).
    prechecked: std::collections::HashMap<(Option<usize>, String), Checked>,
    /// `default`'s registry answers asked before the network step ([`EarlyChecks`]), by
    /// reference: the digest of the cached image that was checked, and the answer.
    early: std::collections::HashMap<String, (String, Checked)>,
    platform: rootfs_cache::Platform,
    policy: PullPolicy,
    config: Option<PathBuf>,
}

/// An image as the task asks for it: the puller key (see `ImageGetter::pullers`) and the
/// reference.
type ImageKey = (Option<usize>, String);

/// What the cache and the pull policy say of an image.
enum Got {
    Have(Box<ImageRecord>),
    /// Pull this reference.
    Pull(String),
    /// `default`: this reference is cached; ask the registry whether the task may have it
    /// and whether it is still the one the reference names.
    Check(Box<ImageRecord>, String),
}

impl ImageGetter {
    fn new(
        images: rootfs_cache::Store,
        platform: rootfs_cache::Platform,
        policy: PullPolicy,
        config: Option<PathBuf>,
    ) -> Self {
        ImageGetter {
            images,
            rt: None,
            pullers: Default::default(),
            limits: Default::default(),
            prefetched: Default::default(),
            prechecked: Default::default(),
            early: Default::default(),
            platform,
            policy,
            config,
        }
    }

    /// The early answer for `wanted` with the task's own credentials (`key` `None`), if
    /// it was asked of the image cached now as `rec` (the cache may have moved since).
    fn early_answer(&self, key: Option<usize>, wanted: &str, rec: &ImageRecord) -> Option<Checked> {
        let (have, c) = self.early.get(wanted).filter(|_| key.is_none())?;
        (*have == top_digest(rec)).then(|| c.clone())
    }

    /// `image`, or with `digest` the image that digest names (a manifest or an index,
    /// picked for the platform), from the cache, or the reference to pull.
    fn lookup(&self, image: &str, digest: Option<&str>) -> Result<Got, ImageError> {
        let platform = &self.platform;
        let fits = |rec: &ImageRecord| {
            self.policy == PullPolicy::Never
                || crate::supervisor::isolation::platform::image_mismatch(
                    image,
                    &rec.platform,
                    platform,
                )
                .is_none()
        };
        let wanted = match digest {
            Some(d) => format!("{image}@{d}"),
            None => image.to_string(),
        };
        // A cached image of another platform (pulled for another task) is not this one:
        // `default` and `prefer-cached` pull the right one (`never` reports the mismatch). A pinned digest is
        // found under the tag too while the tag still names it.
        let cached = match digest {
            None => find_image(&self.images, image).filter(fits),
            Some(d) => find_image(&self.images, &wanted)
                .into_iter()
                .chain(find_image(&self.images, image))
                .find(|r| top_digest(r) == d && fits(r)),
        };
        match (self.policy, cached) {
            (PullPolicy::PreferCached | PullPolicy::Never, Some(rec)) => {
                Ok(Got::Have(Box::new(rec)))
            }
            (PullPolicy::Default, Some(rec)) => Ok(Got::Check(Box::new(rec), wanted)),
            (PullPolicy::Never, None) => Err(ImageError::NotCached { wanted }),
            _ => Ok(Got::Pull(wanted)),
        }
    }

    /// The runtime pulls run on, made on the first pull.
    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime, ImageError> {
        if self.rt.is_none() {
            self.rt = Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ImageError::Runtime(e.to_string()))?,
            );
        }
        Ok(self.rt.as_ref().expect("set above"))
    }
}

/// `default`'s registry checks of the cached images, asked on a thread of their own from
/// the supervisor's start, beside the user namespace, the network's first half and the
/// secrets, instead of after them (docs/benchmarks.md, "The image check beside the
/// network"): the HEAD of each manifest and the registry client's making (its TLS
/// roots) leave the launch's critical path. Only what needs nothing the task resolves
/// first is asked early: with the host's registry credentials (a container with
/// `repositoryCredentials` waits for its secret; a task with an image on ECR for its
/// execution role), at the digest the image scope pinned when the launch began. The pass
/// in order takes an answer only for the image it then finds cached (the same digest), and
/// words it as before (`Executor::checked`); what was not asked early is asked there. A
/// task that fails before its pulls leaves the thread to end on its own (its requests
/// have the registry client's timeouts).
pub struct EarlyChecks {
    /// What it asks: each image with the digest it is pinned at, if any.
    asks: Vec<(String, Option<String>)>,
    /// The platform the cached images were looked up for.
    platform: rootfs_cache::Platform,
    /// The image cache it opened (the pulls take it), and its answers.
    thread: std::thread::JoinHandle<(Option<rootfs_cache::Store>, Vec<EarlyAnswer>)>,
}

/// The reference checked, the digest of the cached image it was checked against, and the
/// registry's answer.
type EarlyAnswer = (
    String,
    String,
    Result<rootfs_cache::pull::Freshness, rootfs_cache::PullError>,
);

impl EarlyChecks {
    /// Asks `asks` (image, pinned digest) of their registries for `platform` on a thread
    /// of its own, with the host's registry credentials and `config`'s registries, the
    /// image cache under `root`; `None` when the thread could not start.
    pub fn start(
        root: PathBuf,
        config: Option<PathBuf>,
        platform: rootfs_cache::Platform,
        asks: Vec<(String, Option<String>)>,
        task_id: String,
    ) -> Option<EarlyChecks> {
        // Made here, not on the thread: the first runtime of the process sets up state
        // that lives as long as the process; made on the thread, it stayed in that
        // thread's malloc arena (44 KiB in use there, `malloc_stats`), whose pages the idle
        // supervisor then kept (docs/benchmarks.md, "Stop 44").
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let (a, p) = (asks.clone(), platform.clone());
        let thread = threadgate::spawn(
            std::thread::Builder::new().name("image-check".into()),
            move || early_checks(root, config, p, a, &task_id, rt),
        )
        .ok()?;
        Some(EarlyChecks {
            asks,
            platform,
            thread,
        })
    }

    /// Whether it asks exactly `asks` (in any order) for `platform`.
    fn asks_for(
        &self,
        asks: &[(String, Option<String>)],
        platform: &rootfs_cache::Platform,
    ) -> bool {
        let sorted = |a: &[(String, Option<String>)]| {
            let mut v = a.to_vec();
            v.sort();
            v
        };
        self.platform == *platform && sorted(&self.asks) == sorted(asks)
    }

    /// The cache it opened and the answers; neither if the thread panicked (the pass in
    /// order opens the cache and asks then).
    fn join(self) -> (Option<rootfs_cache::Store>, Vec<EarlyAnswer>) {
        self.thread.join().unwrap_or_default()
    }
}

/// Whether `image` names a repository on ECR (its pull needs the execution role).
fn on_ecr(image: &str) -> bool {
    rootfs_cache::pull::parse_reference(image).is_ok_and(|r| {
        let host = rootfs_cache::config::api_host(r.registry());
        rootfs_cache::auth::parse_ecr_host(&host).is_some()
    })
}

/// The images a task of `def` will ask its registries about before it can know anything
/// else (see [`EarlyChecks`]), with no pinned digest: for its launcher to name before the
/// task is written (`supervisor::launch::Waiting::announce_images`), so that its supervisor,
/// started ahead, asks while the launcher works. `None` when there is none: a pull policy
/// other than `default`, an image on ECR, or only containers with
/// `repositoryCredentials`. Each image once, in definition order; the supervisor asks
/// again for itself whatever its task then asks differently (a pinned digest).
pub fn images_to_check_ahead(
    def: &crate::taskdef::TaskDefinition,
    pull: PullPolicy,
) -> Option<Vec<String>> {
    let containers = def.container_definitions.as_deref().unwrap_or_default();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref())
        .collect::<Option<_>>()?;
    let asked = asked_early(
        pull,
        containers
            .iter()
            .zip(&images)
            .map(|(c, image)| (*image, c.repository_credentials.is_some())),
    )?;
    let mut once: Vec<String> = Vec::new();
    for idx in asked {
        if !once.iter().any(|i| i == images[idx]) {
            once.push(images[idx].to_string());
        }
    }
    (!once.is_empty()).then_some(once)
}

/// Which of a task's containers, given as (image, has `repositoryCredentials`), have
/// their images asked before the task resolves anything ([`EarlyChecks`]): their indices,
/// those without credentials of their own; `None` for a pull policy other than `default`
/// or a task with an image on ECR (its execution role is assumed first).
fn asked_early<'a>(
    pull: PullPolicy,
    containers: impl IntoIterator<Item = (&'a str, bool)>,
) -> Option<Vec<usize>> {
    if pull != PullPolicy::Default {
        return None;
    }
    let mut asked = Vec::new();
    for (idx, (image, own_credentials)) in containers.into_iter().enumerate() {
        if on_ecr(image) {
            return None;
        }
        if !own_credentials {
            asked.push(idx);
        }
    }
    Some(asked)
}

impl Executor {
    /// Hands the executor the checks its supervisor started while it waited for the
    /// task, from the images its launcher named ([`images_to_check_ahead`]).
    pub fn set_early_checks_ahead(&mut self, ahead: Option<EarlyChecks>) {
        self.early_checks_ahead = ahead;
    }

    /// [`EarlyChecks`] when the pull policy is `default` and some image can be asked for
    /// now: those started while the supervisor waited, when they ask what the task asks,
    /// else started now; `None` otherwise (nothing to ask, or the thread could not start).
    pub(super) fn start_early_checks(&mut self) -> Option<EarlyChecks> {
        let ahead = self.early_checks_ahead.take();
        let asks = self.early_asks()?;
        let platform =
            crate::supervisor::isolation::platform::wanted_platform(&self.task.definition);
        if let Some(a) = ahead {
            if a.asks_for(&asks, &platform) {
                tracing::debug!(task_id = %self.task.id, "image checks asked ahead");
                return Some(a);
            }
            // Its answers would not be taken (the pass keys them by reference and
            // digest); it ends on its own.
            tracing::debug!(task_id = %self.task.id, "image checks asked ahead differ: asked again");
        }
        EarlyChecks::start(
            self.opts.root.clone(),
            self.opts.config.clone(),
            platform,
            asks,
            self.task.id.clone(),
        )
    }

    /// What [`EarlyChecks`] asks for this task: each image, with the digest pinned for
    /// it, that can be asked now.
    fn early_asks(&self) -> Option<Vec<(String, Option<String>)>> {
        let asked = asked_early(
            self.opts.pull,
            self.slots
                .iter()
                .map(|s| (s.row.image.as_str(), s.def.repository_credentials.is_some())),
        )?;
        let mut asks: Vec<(String, Option<String>)> = Vec::new();
        for idx in asked {
            let slot = &self.slots[idx];
            let image = slot.row.image.clone();
            let pinned = match self.pin_scope(idx, &image) {
                None => None,
                Some(scope) => self
                    .store
                    .with(|s| s.image_pin(&scope, &slot.row.name))
                    .ok()?,
            };
            if !asks.contains(&(image.clone(), pinned.clone())) {
                asks.push((image, pinned));
            }
        }
        (!asks.is_empty()).then_some(asks)
    }
}

/// The body of [`EarlyChecks`]' thread: the image cache opened, and the cached images
/// among `asks` (image, pinned digest) each asked of its registry, side by side.
fn early_checks(
    root: PathBuf,
    config: Option<PathBuf>,
    platform: rootfs_cache::Platform,
    asks: Vec<(String, Option<String>)>,
    task_id: &str,
    rt: tokio::runtime::Runtime,
) -> (Option<rootfs_cache::Store>, Vec<EarlyAnswer>) {
    let mut steps = runtime::Steps::new();
    let Ok(images) = rootfs_cache::Store::open(&root) else {
        return (None, Vec::new());
    };
    steps.mark("cache open");
    let answers = ask_early(
        images.clone(),
        config,
        platform,
        asks,
        task_id,
        rt,
        &mut steps,
    );
    tracing::debug!(task_id, steps = %steps, "early image check steps (µs)");
    (Some(images), answers)
}

/// [`early_checks`] once the cache is open.
fn ask_early(
    images: rootfs_cache::Store,
    config: Option<PathBuf>,
    platform: rootfs_cache::Platform,
    asks: Vec<(String, Option<String>)>,
    task_id: &str,
    rt: tokio::runtime::Runtime,
    steps: &mut runtime::Steps,
) -> Vec<EarlyAnswer> {
    let get = ImageGetter::new(images, platform, PullPolicy::Default, config);
    let cached: Vec<(String, Box<ImageRecord>)> = asks
        .iter()
        .filter_map(
            |(image, pinned)| match get.lookup(image, pinned.as_deref()) {
                Ok(Got::Check(rec, wanted)) => Some((wanted, rec)),
                _ => None,
            },
        )
        .collect();
    steps.mark("lookup");
    if cached.is_empty() {
        return Vec::new();
    }
    let puller = match make_puller(
        get.images.clone(),
        get.config.as_deref(),
        rootfs_cache::auth::Overrides::default(),
        &get.limits,
    ) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            // The pass in order makes its own client and reports the error.
            tracing::debug!(task_id, error = %error_chain(e.as_ref()), "no early image check");
            return Vec::new();
        }
    };
    steps.mark("client");
    let answers = rt.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        for (wanted, rec) in cached {
            let p = puller.clone();
            set.spawn(async move {
                let r = p.check(&wanted, &rec).await;
                (wanted, top_digest(&rec), r)
            });
        }
        finished(set).await
    });
    steps.mark("requests");
    answers
}

/// The digest a cached image is known by: its index's, else its manifest's.
fn top_digest(rec: &ImageRecord) -> String {
    rec.index_digest.as_ref().unwrap_or(&rec.digest).to_string()
}

/// A registry client for pulls into `store` (an open cache: no second open, which makes
/// its dirs and sweeps its temp dir again).
fn make_puller(
    store: rootfs_cache::Store,
    config: Option<&std::path::Path>,
    overrides: rootfs_cache::auth::Overrides,
    limits: &rootfs_cache::pull::RegistryLimits,
) -> anyhow::Result<Puller> {
    let mut config = crate::config::get().registries(config)?;
    let mut overrides = overrides;
    crate::task::local_registry::apply(store.root(), &mut config, &mut overrides);
    let client = RegistryClient::with_overrides(config.retry_policy(), overrides)?
        .keep_tokens_in(store.root().join(rootfs_cache::kept_tokens::DIR));
    Ok(Puller {
        store,
        client: Arc::new(client),
        config,
        concurrency: 4,
        limits: limits.clone(),
    })
}

/// A failed pull as the container's reason. ECR refusing the execution role's token
/// request is, as on ECS, a failure to get the registry auth, not of the pull itself.
/// Ref: repost.aws/knowledge-center/ecs-unable-to-pull-secrets ("unable to retrieve ecr
/// registry auth").
fn pull_reason(e: &rootfs_cache::PullError) -> String {
    use rootfs_cache::auth::AuthError;
    use rootfs_cache::client::RegistryError;
    if let rootfs_cache::PullError::Registry {
        source: RegistryError::Auth(a @ AuthError::EcrAs { .. }),
        ..
    } = e
    {
        return format!(
            "{}: unable to retrieve ecr registry auth: {a}",
            crate::supervisor::secrets::REASON_PREFIX
        );
    }
    if let rootfs_cache::PullError::Registry {
        source: RegistryError::Auth(AuthError::NoCredentials { .. }),
        ..
    } = e
    {
        // The host's Docker config is one source; a task brings its own.
        return format!(
            "{}: {}; or give the container repositoryCredentials",
            reason::CANNOT_PULL,
            error_chain(e)
        );
    }
    format!("{}: {}", reason::CANNOT_PULL, error_chain(e))
}

/// The cached image a reference names, if any.
pub fn find_image(store: &rootfs_cache::Store, image: &str) -> Option<ImageRecord> {
    let normalised = rootfs_cache::pull::parse_reference(image)
        .ok()
        .map(|r| r.to_string());
    store.find_image(image, normalised.as_deref()).ok()
}

/// The results of `set`'s tasks that finished, in the order they did; a task that panicked
/// is left out (the callers' pass in order does its work again).
async fn finished<T: 'static>(mut set: tokio::task::JoinSet<T>) -> Vec<T> {
    let mut done = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok(r) = j {
            done.push(r);
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(containers: serde_json::Value) -> crate::taskdef::TaskDefinition {
        serde_json::from_value(serde_json::json!({
            "family": "f",
            "containerDefinitions": containers,
        }))
        .unwrap()
    }

    #[test]
    fn the_images_checked_ahead_are_those_default_asks_with_the_hosts_credentials() {
        let d = def(serde_json::json!([
            {"name": "a", "image": "127.0.0.1:5000/app:1"},
            {"name": "b", "image": "127.0.0.1:5000/app:1"},
            {"name": "c", "image": "busybox"},
            {"name": "d", "image": "private.example/app:2",
             "repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"}},
        ]));
        // Each once, in definition order; a container with its own credentials waits for
        // its secret.
        assert_eq!(
            images_to_check_ahead(&d, PullPolicy::Default),
            Some(vec![
                "127.0.0.1:5000/app:1".to_string(),
                "busybox".to_string()
            ])
        );
        // Only `default` asks the registry of a cached image.
        for other in [
            PullPolicy::Always,
            PullPolicy::PreferCached,
            PullPolicy::Never,
        ] {
            assert_eq!(images_to_check_ahead(&d, other), None, "{other:?}");
        }
        // An image on ECR: the whole task waits for its execution role.
        let ecr = def(serde_json::json!([
            {"name": "a", "image": "busybox"},
            {"name": "b", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1"},
        ]));
        assert_eq!(images_to_check_ahead(&ecr, PullPolicy::Default), None);
        // Nothing to ask.
        let creds = def(serde_json::json!([
            {"name": "d", "image": "private.example/app:2",
             "repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"}},
        ]));
        assert_eq!(images_to_check_ahead(&creds, PullPolicy::Default), None);
        let no_image = def(serde_json::json!([{"name": "a"}]));
        assert_eq!(images_to_check_ahead(&no_image, PullPolicy::Default), None);
    }
}
