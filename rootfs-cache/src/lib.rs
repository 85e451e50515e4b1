//! The image side of minifargate: OCI registry client (auth, ECR, mirrors), a
//! content-addressed blob store, layers unpacked once and shared, overlay rootfs.
#![deny(unsafe_code)] // one exception: mount_setattr(2) in rootfs.rs, which rustix and nix lack

pub mod archive;
pub mod auth;
pub mod client;
pub mod config;
pub mod credentials;
pub mod digest;
pub mod kept_tokens;
pub mod layer;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod repack;
pub mod rootfs;
pub mod stack;
pub mod store;
pub mod unpack;

pub use client::{RegistryClient, RetryPolicy};
pub use config::RegistriesConfig;
pub use digest::Digest;
pub use manifest::Platform;
pub use pull::{PullError, PullObserver, Puller};
pub use store::{ImageRecord, LayerRecord, PruneReport, Store};
