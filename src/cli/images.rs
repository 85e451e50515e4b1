//! Image verbs: `pull`, `images`, `rmi`, `load`, `prune`, backed by the
//! `rootfs-cache` crate.

use super::GlobalOpts;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Pull an image from ECR or any OCI registry into the local cache.
///
/// Example: minifargate pull 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.2
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
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// List images in the local cache.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Remove an image from the local cache (its layers stay until `prune`).
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
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Remove blobs and layer directories no image references; reports bytes freed.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn pull(_g: &GlobalOpts, _a: PullArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("pull is not implemented yet")
}
pub fn images(_g: &GlobalOpts, _a: ImagesArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("images is not implemented yet")
}
pub fn rmi(_g: &GlobalOpts, _a: RmiArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rmi is not implemented yet")
}
pub fn load(_g: &GlobalOpts, _a: LoadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("load is not implemented yet")
}
pub fn prune(_g: &GlobalOpts, _a: PruneArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("prune is not implemented yet")
}
