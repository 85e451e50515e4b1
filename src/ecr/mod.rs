//! Amazon ECR on the box: an OCI distribution registry (`serve`'s `/v2/` routes) and ECR's
//! own API over the same repositories. This is the core both front-ends call: repositories,
//! manifests and tags in the registry's SQLite file (`meta`), blobs content-addressed on
//! disk (`storage`), ECR's authorization tokens (`tokens`). docs/registry.md says what
//! works and what not yet.
//!
//! Where repositories and tags live: `<root>/registry/registry.db`, the registry's own
//! SQLite file beside its blobs, not a migration of state.db. The rows and the blobs are
//! one unit (a manifest row is only ever written after its blobs are in place, and garbage
//! collection will read both), nothing of ECS joins them, and state.db's writers (every
//! task state change) never wait behind a push.

pub mod api;
pub mod gc;
pub mod lifecycle;
mod manifests;
mod meta;
pub mod names;
pub mod policy;
pub mod shared;
mod storage;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod tokens;

pub use names::{Digest, Reference, RepoName};

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the distribution API answers when a request fails: the spec's error codes
/// (opencontainers/distribution-spec `spec.md`, "Error Codes"), each with its HTTP status.
/// A separate type from [`EcrError`] because the two APIs name failures differently (the
/// registry `NAME_UNKNOWN`, the ECR API `RepositoryNotFoundException`), as ECR does.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(String),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// A chunk that does not start where the upload ends (416 with the upload's Range).
    #[error("chunk out of order: {message}")]
    RangeInvalid { message: String, size: u64 },
    #[error("blob upload unknown to registry: {0}")]
    BlobUploadUnknown(String),
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    #[error("manifest references a manifest or blob unknown to registry: {0}")]
    ManifestBlobUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest unknown to registry: {0}")]
    ManifestUnknown(String),
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    #[error("manifest tag did not match URI: {0}")]
    TagInvalid(String),
    #[error("authentication required: {0}")]
    Unauthorized(String),
    #[error("requested access to the resource is denied: {0}")]
    Denied(String),
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    #[error("failed to {what}")]
    Storage {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to {what} in the registry's database")]
    Database {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

impl RegistryError {
    /// The spec's code (`BLOB_UNKNOWN`, ...); `UNKNOWN` for a failure of this host.
    pub fn code(&self) -> &'static str {
        use RegistryError::*;
        match self {
            BlobUnknown(_) => "BLOB_UNKNOWN",
            BlobUploadInvalid(_) | RangeInvalid { .. } => "BLOB_UPLOAD_INVALID",
            BlobUploadUnknown(_) => "BLOB_UPLOAD_UNKNOWN",
            DigestInvalid(_) => "DIGEST_INVALID",
            ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            ManifestInvalid(_) => "MANIFEST_INVALID",
            ManifestUnknown(_) => "MANIFEST_UNKNOWN",
            NameInvalid(_) => "NAME_INVALID",
            NameUnknown(_) => "NAME_UNKNOWN",
            SizeInvalid(_) => "SIZE_INVALID",
            TagInvalid(_) => "TAG_INVALID",
            Unauthorized(_) => "UNAUTHORIZED",
            Denied(_) => "DENIED",
            Unsupported(_) => "UNSUPPORTED",
            Storage { .. } | Database { .. } => "UNKNOWN",
        }
    }

    /// The HTTP status the spec (or, where it names none, CNCF distribution) answers.
    pub fn status(&self) -> u16 {
        use RegistryError::*;
        match self {
            BlobUnknown(_) | BlobUploadUnknown(_) | ManifestUnknown(_) | NameUnknown(_) => 404,
            RangeInvalid { .. } => 416,
            Unauthorized(_) => 401,
            Denied(_) => 403,
            Unsupported(_) => 415,
            Storage { .. } | Database { .. } => 500,
            _ => 400,
        }
    }
}

/// ECR API errors: each variant is the ECR exception of that name (the model's `errors`).
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error(
        "The repository with name '{name}' does not exist in the registry with id '{registry}'"
    )]
    RepositoryNotFound { name: String, registry: String },
    #[error(
        "The repository with name '{name}' already exists in the registry with id '{registry}'"
    )]
    RepositoryAlreadyExists { name: String, registry: String },
    #[error(
        "The repository with name '{name}' in registry with id '{registry}' cannot be deleted because it still contains images"
    )]
    RepositoryNotEmpty { name: String, registry: String },
    #[error("{0}")]
    ImageNotFound(String),
    #[error("{0}")]
    ImageAlreadyExists(String),
    #[error("{0}")]
    ImageTagAlreadyExists(String),
    #[error("{0}")]
    ImageDigestDoesNotMatch(String),
    #[error("{0}")]
    LayersNotFound(String),
    #[error("{0}")]
    ReferencedImagesNotFound(String),
    #[error(
        "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{registry}'"
    )]
    LifecyclePolicyNotFound { name: String, registry: String },
    #[error(
        "Repository policy does not exist for the repository with name '{name}' in the registry with id '{registry}'"
    )]
    RepositoryPolicyNotFound { name: String, registry: String },
    #[error(
        "Lifecycle policy preview does not exist for the repository with name '{name}' in the registry with id '{registry}'"
    )]
    LifecyclePolicyPreviewNotFound { name: String, registry: String },
    #[error("{0}")]
    UploadNotFound(String),
    #[error("{0}")]
    InvalidLayerPart(String),
    #[error("{0}")]
    LayerPartTooSmall(String),
    #[error("{0}")]
    LayerAlreadyExists(String),
    #[error("{0}")]
    InvalidLayer(String),
    #[error("{0}")]
    EmptyUpload(String),
    #[error("{0}")]
    InvalidTagParameter(String),
    #[error("{0}")]
    TooManyTags(String),
    #[error("{0}")]
    /// The protocol's common error for a target no operation of the service has.
    UnknownOperation(String),
    #[error("failed to {what}")]
    Server {
        what: String,
        #[source]
        source: RegistryError,
    },
}

impl EcrError {
    /// The exception's name on the wire (`__type`).
    pub fn name(&self) -> &'static str {
        use EcrError::*;
        match self {
            InvalidParameter(_) => "InvalidParameterException",
            RepositoryNotFound { .. } => "RepositoryNotFoundException",
            RepositoryAlreadyExists { .. } => "RepositoryAlreadyExistsException",
            RepositoryNotEmpty { .. } => "RepositoryNotEmptyException",
            ImageNotFound(_) => "ImageNotFoundException",
            ImageAlreadyExists(_) => "ImageAlreadyExistsException",
            ImageTagAlreadyExists(_) => "ImageTagAlreadyExistsException",
            ImageDigestDoesNotMatch(_) => "ImageDigestDoesNotMatchException",
            LayersNotFound(_) => "LayersNotFoundException",
            ReferencedImagesNotFound(_) => "ReferencedImagesNotFoundException",
            LifecyclePolicyNotFound { .. } => "LifecyclePolicyNotFoundException",
            RepositoryPolicyNotFound { .. } => "RepositoryPolicyNotFoundException",
            LifecyclePolicyPreviewNotFound { .. } => "LifecyclePolicyPreviewNotFoundException",
            UploadNotFound(_) => "UploadNotFoundException",
            InvalidLayerPart(_) => "InvalidLayerPartException",
            LayerPartTooSmall(_) => "LayerPartTooSmallException",
            LayerAlreadyExists(_) => "LayerAlreadyExistsException",
            InvalidLayer(_) => "InvalidLayerException",
            EmptyUpload(_) => "EmptyUploadException",
            InvalidTagParameter(_) => "InvalidTagParameterException",
            TooManyTags(_) => "TooManyTagsException",
            UnknownOperation(_) => "UnknownOperationException",
            Server { .. } => "ServerException",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            EcrError::Server { .. } => 500,
            _ => 400,
        }
    }

    /// What the caller reads: the message and, for a failure of this host, its causes.
    pub fn message(&self) -> String {
        crate::errors::error_chain(self)
    }
}

pub type RegistryResult<T> = Result<T, RegistryError>;

/// The registry on this box: `<root>/registry/` (blobs, uploads, registry.db, token key).
pub struct Registry {
    dir: PathBuf,
    db: Mutex<rusqlite::Connection>,
    /// The account and region repository URIs and ARNs name (the product's AWS context).
    pub account_id: String,
    pub region: String,
    /// Garbage collection's grace period in seconds (`gc` module).
    gc_grace_secs: f64,
    /// The part sizes of each upload of the ECR API's layer path (UploadLayerPart), for
    /// CompleteLayerUpload's 5 MiB rule; kept in memory (an upload outlives no restart's
    /// check of it).
    pub(crate) layer_parts: Mutex<std::collections::HashMap<String, Vec<u64>>>,
    /// The cluster this registry shares its rows with (`serve --cluster`; [`shared`]).
    cluster: std::sync::OnceLock<Box<dyn shared::Cluster>>,
}

impl Registry {
    /// Opens (creating on first use) the registry under `root`; uploads left over a week
    /// are removed (CNCF distribution's default upload purge age, 168 h).
    pub fn open(root: &Path, account_id: &str, region: &str) -> RegistryResult<Registry> {
        let dir = root.join("registry");
        storage::create_dirs(&dir)?;
        let db = meta::open(&dir.join("registry.db"))?;
        let r = Registry {
            dir,
            db: Mutex::new(db),
            account_id: account_id.to_string(),
            region: region.to_string(),
            gc_grace_secs: gc::DEFAULT_GRACE_SECS,
            layer_parts: Mutex::new(Default::default()),
            cluster: std::sync::OnceLock::new(),
        };
        r.purge_uploads(std::time::Duration::from_secs(7 * 24 * 3600))?;
        r.backfill_refs()?;
        Ok(r)
    }

    /// Sets garbage collection's grace period (serve: `MINIFARGATE_ECR_GC_GRACE`).
    pub fn with_gc_grace(mut self, secs: f64) -> Registry {
        self.gc_grace_secs = secs.max(0.0);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn db(&self) -> shared::Db<'_> {
        // A panic while holding it leaves SQLite consistent (each change is a transaction).
        shared::Db {
            guard: self.db.lock().unwrap_or_else(|p| p.into_inner()),
            cluster: self.cluster.get().map(|c| c.as_ref()),
        }
    }

    /// The registry's host name as ECR names it: `<account>.dkr.ecr.<region>.amazonaws.com`.
    pub fn host(&self) -> String {
        format!("{}.dkr.ecr.{}.amazonaws.com", self.account_id, self.region)
    }

    /// `<account>.dkr.ecr.<region>.amazonaws.com/<name>`.
    pub fn repository_uri(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    pub fn repository_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:ecr:{}:{}:repository/{name}",
            self.region, self.account_id
        )
    }

    /// The repository `name` for a registry call: NAME_INVALID / NAME_UNKNOWN otherwise.
    /// Whether repository `name`'s policy lets a caller without credentials do `action`
    /// (`ecr:BatchGetImage` …; [`policy::allows_anonymous`]). No policy, an unknown
    /// repository or a failed read: no.
    pub fn allows_anonymous(&self, name: &str, action: &str) -> bool {
        let Ok(repo) = RepoName::parse(name) else {
            return false;
        };
        matches!(meta::repository_policy(&self.db(), &repo), Ok(Some(text))
            if policy::allows_anonymous(&text, action))
    }

    pub fn registry_repo(&self, name: &str) -> RegistryResult<RepoName> {
        let repo = RepoName::parse(name).map_err(RegistryError::NameInvalid)?;
        if meta::repository(&self.db(), &repo)?.is_none() {
            return Err(RegistryError::NameUnknown(format!(
                "The repository with name '{repo}' does not exist in the registry with id '{}' \
                 (create it with `aws ecr create-repository --repository-name {repo}`)",
                self.account_id
            )));
        }
        Ok(repo)
    }
}

/// The largest manifest a push may send (the front reads no more).
/// The `subject` digest manifest `bytes` name (OCI image spec v1.1), if any.
pub fn manifests_subject(bytes: &[u8]) -> Option<String> {
    manifests::subject_of(bytes)
}

pub fn manifests_max() -> usize {
    manifests::MAX_MANIFEST
}
