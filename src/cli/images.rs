//! Image verbs: `pull`, `images`, `rmi`, `load`, `push`, `prune` and `rootfs mount|umount`,
//! backed by the `rootfs-cache` crate.

use super::GlobalOpts;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rootfs_cache::{Digest, ImageRecord, Platform, PullObserver, Puller, RegistryClient, Store};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Pull an image from ECR or any OCI registry into the local cache.
///
/// Examples:
///   minifargate pull 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.2
///   minifargate pull public.ecr.aws/docker/library/busybox:1.36 --platform linux/arm64
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference: `busybox`, `host:port/repo:tag`, `repo@sha256:…`.
    pub image: String,
    /// Platform to select from a multi-arch index (`linux/arm64`, `linux/arm/v7`).
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the manifest digest.
    #[arg(long, short)]
    pub quiet: bool,
    /// `text` or `json` summary (`--format` is the old name).
    #[arg(long = "output", alias = "format", value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// List images in the local cache.
///
/// Example: minifargate images --format json
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// `text` (a table) or `json` (`--format` is the old name).
    #[arg(long = "output", alias = "format", value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Remove an image from the local cache (its layers stay until `prune`).
///
/// Example: minifargate rmi public.ecr.aws/docker/library/busybox:1.36
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image reference as shown by `minifargate images`, or its digest.
    pub image: String,
}

/// Load images from a `docker save` tarball, an OCI archive or an OCI layout directory.
///
/// Example: minifargate load -i busybox.tar
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Archive file or OCI layout directory.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Name to give an image the archive leaves unnamed.
    #[arg(long)]
    pub tag: Option<String>,
    /// `text` or `json` summary of what was loaded (`--format` is the old name).
    #[arg(long = "output", alias = "format", value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Push an image archive, or an image of the cache, into a repository of this box's ECR
/// (serve's registry), with no podman or skopeo: an archive's blobs and manifest go as
/// they are (same digests); an image of the cache has its unpacked layers written back as
/// gzip tars (same files, new layer digests).
#[derive(Debug, Args)]
pub struct PushArgs {
    /// A `docker save` tarball, an OCI archive or an OCI layout directory of one image
    /// (gzip or zstd compressed too; skopeo's `docker-archive:`/`oci-archive:`/`oci:`
    /// prefixes are accepted), or an image `minifargate images` lists (`load`ed or
    /// pulled), by reference or digest.
    pub source: String,
    /// `<repositoryUri>[:tag]` as create-repository answers it (or `host:port/<name>[:tag]`);
    /// no tag: `latest`.
    pub destination: String,
    /// Read the password from stdin (`aws ecr get-login-password | …`) instead of the
    /// token this box's serve gives its own pulls.
    #[arg(long)]
    pub password_stdin: bool,
    /// The user name with `--password-stdin`.
    #[arg(long, default_value = "AWS")]
    pub username: String,
    /// Verify the registry's certificate with this CA alone (default: serve's own CA for
    /// this box's serve, the system's roots otherwise).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// `text` or `json` summary.
    #[arg(long = "output", value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Remove blobs and layer directories no image references; reports bytes freed.
///
/// Example: minifargate rmi busybox && minifargate prune
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// `text` or `json` summary of what was removed (`--format` is the old name).
    #[arg(long = "output", alias = "format", value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Mount or unmount an image's overlay rootfs (what a container starts from).
#[derive(Debug, Args)]
pub struct RootfsArgs {
    #[command(subcommand)]
    pub command: RootfsCommand,
}

#[derive(Debug, Subcommand)]
pub enum RootfsCommand {
    /// Mount IMAGE's layers read-only under a writable upper dir at TARGET.
    ///
    /// Example: minifargate rootfs mount busybox /mnt/rootfs --state /tmp/c1
    Mount {
        /// The image (a reference in the local cache).
        image: String,
        /// Where to mount the rootfs (an existing directory).
        target: PathBuf,
        /// Directory for the container's upper and work dirs.
        #[arg(long)]
        state: PathBuf,
    },
    /// Unmount a rootfs mounted by `rootfs mount`.
    Umount {
        /// The mount point `rootfs mount` mounted.
        target: PathBuf,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}

fn open_store(g: &GlobalOpts) -> anyhow::Result<Store> {
    Store::open(&g.root)
        .with_context(|| format!("failed to open the image cache at {}", g.root.display()))
}

fn puller(g: &GlobalOpts) -> anyhow::Result<Puller> {
    let mut config = crate::config::get().registries(g.config.as_deref())?;
    let store = open_store(g)?;
    // This box's registry (serve's ECR) answers its repository URIs.
    let mut overrides = rootfs_cache::auth::Overrides::default();
    crate::task::local_registry::apply(store.root(), &mut config, &mut overrides);
    let client = RegistryClient::with_overrides(config.retry_policy(), overrides)?
        .keep_tokens_in(store.root().join(rootfs_cache::kept_tokens::DIR));
    Ok(Puller {
        store,
        client: Arc::new(client),
        config,
        concurrency: 4,
        limits: Default::default(),
    })
}

/// Progress as indicatif bars on a terminal, as plain lines otherwise.
struct Progress {
    enabled: bool,
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        Progress {
            enabled,
            multi: (enabled && tty).then(MultiProgress::new),
            bars: Mutex::new(HashMap::new()),
        }
    }
    fn plain(&self) -> bool {
        self.enabled && self.multi.is_none()
    }
}

impl PullObserver for Progress {
    fn resolved(&self, reference: &str, digest: &Digest, layers: &[(Digest, u64)]) {
        tracing::info!(%reference, %digest, layers = layers.len(), "resolved");
        let Some(m) = &self.multi else { return };
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .expect("static template")
        .progress_chars("=> ");
        let mut bars = self.bars.lock().expect("progress lock");
        for (d, size) in layers {
            let b = m.add(ProgressBar::new(*size));
            b.set_style(style.clone());
            b.set_prefix(d.short());
            bars.insert(d.clone(), b);
        }
    }
    fn layer_cached(&self, layer: &Digest) {
        if let Some(b) = self.bars.lock().expect("progress lock").get(layer) {
            b.finish_with_message("already cached");
        }
    }
    fn layer_progress(&self, layer: &Digest, bytes: u64) {
        if let Some(b) = self.bars.lock().expect("progress lock").get(layer) {
            b.set_position(bytes);
            b.set_message("downloading + extracting");
        }
    }
    fn layer_done(&self, layer: &Digest) {
        if let Some(b) = self.bars.lock().expect("progress lock").get(layer) {
            b.finish_with_message("done");
        } else if self.plain() {
            eprintln!("{}: done", layer.short());
        }
    }
}

/// The JSON shape of an image, shared by `pull`, `load` and `images`.
fn image_json(store: &Store, r: &ImageRecord) -> serde_json::Value {
    let layers: Vec<_> = r
        .layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "digest": l.digest,
                "diffId": l.diff_id,
                "size": l.size,
                "mediaType": l.media_type,
                "path": store.layer_path(&l.diff_id),
            })
        })
        .collect();
    serde_json::json!({
        "reference": r.reference,
        "repository": r.repository,
        "tag": r.tag,
        "digest": r.digest,
        "indexDigest": r.index_digest,
        "mediaType": r.media_type,
        "config": r.config,
        "platform": r.platform,
        "size": r.size,
        "pulledAt": r.pulled_at,
        "layers": layers,
    })
}

fn print_summary(store: &Store, r: &ImageRecord, verb: &str) {
    println!("{verb} {} ({})", r.reference, r.platform);
    println!("Digest: {}", r.digest);
    if let Some(i) = &r.index_digest {
        println!("Index:  {i}");
    }
    println!(
        "Layers ({}, {} compressed):",
        r.layers.len(),
        human_size(r.size)
    );
    for l in &r.layers {
        println!(
            "  {}  {:>9}  {}",
            l.digest.short(),
            human_size(l.size),
            store.layer_path(&l.diff_id).display()
        );
    }
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

pub fn pull(g: &GlobalOpts, a: PullArgs) -> anyhow::Result<ExitCode> {
    let platform = match &a.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let puller = puller(g)?;
    let progress = Arc::new(Progress::new(!a.quiet && matches!(a.format, Format::Text)));
    if progress.plain() {
        eprintln!("Pulling {} ({platform})", a.image);
    }
    let rec = runtime()?.block_on(puller.pull(&a.image, &platform, progress))?;
    match (a.quiet, a.format) {
        (true, _) => println!("{}", rec.digest),
        (false, Format::Json) => println!("{}", image_json(&puller.store, &rec)),
        (false, Format::Text) => print_summary(&puller.store, &rec, "Pulled"),
    }
    Ok(ExitCode::SUCCESS)
}

fn age(t: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (chrono::Utc::now() - t).num_seconds().max(0) as u64;
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

pub fn images(g: &GlobalOpts, a: ImagesArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let list = store.list_images()?;
    match a.format {
        Format::Json => {
            let v: Vec<_> = list.iter().map(|r| image_json(&store, r)).collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Format::Text => {
            println!(
                "{:<50} {:<12} {:<19} {:<14} {:>9}  PULLED",
                "REPOSITORY", "TAG", "DIGEST", "PLATFORM", "SIZE"
            );
            for r in &list {
                println!(
                    "{:<50} {:<12} {:<19} {:<14} {:>9}  {}",
                    r.repository,
                    r.tag.as_deref().unwrap_or("<none>"),
                    r.digest.short(),
                    r.platform,
                    human_size(r.size),
                    age(r.pulled_at)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn find(store: &Store, image: &str) -> anyhow::Result<ImageRecord> {
    let normalised = rootfs_cache::pull::parse_reference(image)
        .ok()
        .map(|r| r.to_string());
    Ok(store.find_image(image, normalised.as_deref())?)
}

pub fn rmi(g: &GlobalOpts, a: RmiArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let rec = find(&store, &a.image)?;
    store.remove_image(&rec)?;
    println!("Untagged: {}", rec.reference);
    println!("Layers stay cached until `minifargate prune`.");
    Ok(ExitCode::SUCCESS)
}

pub fn load(g: &GlobalOpts, a: LoadArgs) -> anyhow::Result<ExitCode> {
    use rootfs_cache::archive::{self, LoadOptions};
    let store = open_store(g)?;
    let config = crate::config::get().registries(g.config.as_deref())?;
    let platform = Platform::host();
    let opts = LoadOptions {
        tag: a.tag.as_deref(),
        platform: &platform,
        unpack: config.unpack_options(),
        min_free: config.min_free_space(),
    };
    let recs = runtime()?.block_on(archive::load(
        &store,
        &a.input,
        &opts,
        &rootfs_cache::pull::Quiet,
    ))?;
    match a.format {
        Format::Json => {
            let v: Vec<_> = recs.iter().map(|r| image_json(&store, r)).collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Format::Text => {
            for r in &recs {
                println!(
                    "Loaded image: {} ({}, {})",
                    r.reference, r.platform, r.digest
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn push(g: &GlobalOpts, a: PushArgs) -> anyhow::Result<ExitCode> {
    let source = ["docker-archive:", "oci-archive:", "oci:"]
        .iter()
        .find_map(|p| a.source.strip_prefix(p))
        .unwrap_or(&a.source);
    let source = PathBuf::from(source);
    let tmp = g.root.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("failed to create {}", tmp.display()))?;
    // Not a file: an image of the cache (`load`ed or pulled), written back as an OCI
    // layout first (its layers are kept unpacked: they get new digests).
    let mut from_cache = None;
    if !source.exists() {
        let store = open_store(g)?;
        let rec = find(&store, &a.source).map_err(|e| {
            anyhow::anyhow!(
                "{}: no such archive or OCI layout, and not an image of the cache either ({e});                  push takes a `docker save` tarball, an OCI archive or layout, or an image                  `minifargate images` lists",
                source.display()
            )
        })?;
        // In the cache's own temp space: removed when done, or by the next run if this
        // one is killed.
        let dir = store.temp_dir()?;
        let _lock = store.shared_lock()?;
        let repacked =
            rootfs_cache::repack::to_layout(&store, &rec, dir.path()).with_context(|| {
                format!("failed to write {} back as an image layout", rec.reference)
            })?;
        for s in &repacked.skipped_sockets {
            eprintln!(
                "warning: {s} is a socket in the image's layers: a tar cannot hold it, left out"
            );
        }
        from_cache = Some((rec, dir));
    }
    let source = match &from_cache {
        Some((_, dir)) => dir.path().to_path_buf(),
        None => source,
    };
    let dest = a.destination.trim_start_matches("docker://");
    let r = rootfs_cache::pull::parse_reference(dest)
        .with_context(|| format!("{dest:?} is not an image reference"))?;
    let tag = match (r.tag(), r.digest()) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    };
    // This box's serve (registry/local.json): its loopback address, the token it gives
    // the box's pulls (a full one, as get-login-password's) and its CA.
    let local = crate::task::local_registry::LocalRegistry::read(&g.root).filter(|l| {
        let port = l
            .endpoint
            .rsplit_once(':')
            .map(|(_, p)| p)
            .unwrap_or_default();
        l.serves(dest) || r.registry() == l.endpoint || r.registry() == format!("localhost:{port}")
    });
    let password = if a.password_stdin {
        let mut pw = String::new();
        std::io::stdin()
            .read_line(&mut pw)
            .context("failed to read the password from stdin")?;
        Some((a.username.clone(), pw.trim().to_string()))
    } else {
        None
    };
    let (address, basic, ca) = match &local {
        Some(l) => {
            let basic = password.or_else(|| l.username.clone().zip(l.password.clone()));
            let ca = g.root.join("registry/tls/ca.crt");
            (l.endpoint.clone(), basic, ca.exists().then_some(ca))
        }
        None if password.is_some() => (r.registry().to_string(), password, None),
        None => anyhow::bail!(
            "{} is not this box's registry (no serve running here advertises it in {}) and \
             no credentials were given: pipe `aws ecr get-login-password` into \
             `minifargate push --password-stdin`",
            r.registry(),
            crate::task::local_registry::path(&g.root).display()
        ),
    };
    let ca_pem = match a.ca_cert.as_ref().or(ca.as_ref()) {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("failed to read the CA {}", p.display()))?,
        ),
        None => None,
    };
    let img = rootfs_cache::archive::for_push(&source, &tmp)?;
    let target = rootfs_cache::push::Target {
        base: format!("https://{address}"),
        repository: r.repository().to_string(),
        tag: tag.clone(),
        basic,
        ca_pem,
    };
    let pushed = runtime()?
        .block_on(rootfs_cache::push::push(&img, target))
        .with_context(|| match &from_cache {
            Some((rec, _)) => format!("failed to push {} to {dest}", rec.reference),
            None => format!("failed to push {} to {dest}", source.display()),
        })?;
    let digest = pushed.digest.map(|d| d.to_string()).unwrap_or_default();
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "destination": dest,
                "registry": address,
                "repositoryName": r.repository(),
                "imageTag": tag,
                "imageDigest": digest,
                "blobsUploaded": pushed.uploaded,
                "bytesUploaded": pushed.uploaded_bytes,
                "blobsAlreadyPresent": pushed.present,
            })
        ),
        Format::Text => println!(
            "Pushed {dest} ({digest}) to {address}: {} blob(s) uploaded ({}), {} already there",
            pushed.uploaded,
            human_size(pushed.uploaded_bytes),
            pushed.present
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn prune(g: &GlobalOpts, a: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let report = store.prune()?;
    if store.has_trash() {
        start_trash_deleter(g);
    }
    match a.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => println!(
            "Removed {} blobs and {} layers, freed {}",
            report.blobs_removed,
            report.layers_removed,
            human_size(report.bytes_freed)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// How long the trash deleter waits before it deletes, so that the pull which usually
/// follows a prune allocates its inodes before the prune's are freed (see
/// `Store::to_trash`): `MINIFARGATE_TRASH_DELAY_MS` (src/config.rs; default 30 s, tests:
/// 0). A pull that finds too little free space empties the trash itself first.
fn trash_delay() -> std::time::Duration {
    crate::config::get().trash_delay
}

/// Starts `minifargate empty-trash` detached (its own process group, no terminal), so
/// `prune` returns once its layers are renamed into the trash. If it cannot start, the
/// next prune's deleter deletes this trash too.
fn start_trash_deleter(g: &GlobalOpts) {
    use std::os::unix::process::CommandExt;
    let started = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .arg("--root")
            .arg(&g.root)
            .arg("empty-trash")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
    });
    if let Err(e) = started {
        tracing::warn!(error = %e, "could not start the trash deleter; the next prune deletes the trash");
    }
}

/// The hidden `empty-trash` verb `prune` starts: waits [`TRASH_DELAY`], then deletes the
/// image cache's trash.
pub fn empty_trash(g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    std::thread::sleep(trash_delay());
    // The cache may be gone meanwhile (`system reset`, a removed test root): nothing to do,
    // and nothing to create.
    if !g.root.join("trash").is_dir() {
        return Ok(ExitCode::SUCCESS);
    }
    open_store(g)?.empty_trash()?;
    Ok(ExitCode::SUCCESS)
}

pub fn rootfs(g: &GlobalOpts, a: RootfsArgs) -> anyhow::Result<ExitCode> {
    use rootfs_cache::rootfs::{self, MountApi, RootfsKind};
    match a.command {
        RootfsCommand::Mount {
            image,
            target,
            state,
        } => {
            let store = open_store(g)?;
            let rec = find(&store, &image)?;
            let layers: Vec<PathBuf> = rec
                .layers
                .iter()
                .map(|l| store.layer_path(&l.diff_id))
                .collect();
            if let Some(missing) = layers.iter().find(|p| !p.is_dir()) {
                anyhow::bail!(
                    "layer {} of {} is missing from the cache; pull the image again",
                    missing.display(),
                    rec.reference
                );
            }
            let kind = rootfs::mount(&layers, &state, &target, MountApi::Auto)
                .with_context(|| format!("failed to mount {}", rec.reference))?;
            let how = match kind {
                RootfsKind::Overlay => "overlay",
                RootfsKind::Copy => "copy",
            };
            println!("{} mounted at {} ({how})", rec.reference, target.display());
        }
        RootfsCommand::Umount { target } => {
            rootfs::unmount(&target)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
