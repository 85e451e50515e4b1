//! What a pull tells while it runs (the CLI draws bars from it): the pull and each layer's
//! fetch report to one observer.

use crate::digest::Digest;

/// Receives progress while a pull runs (the CLI draws bars from it).
pub trait PullObserver: Send + Sync {
    /// The manifest is resolved; `layers` are (blob digest, compressed size).
    fn resolved(&self, _reference: &str, _digest: &Digest, _layers: &[(Digest, u64)]) {}
    /// This layer is already unpacked in the cache.
    fn layer_cached(&self, _layer: &Digest) {}
    /// Compressed bytes received so far for this layer.
    fn layer_progress(&self, _layer: &Digest, _bytes: u64) {}
    /// The layer is downloaded, verified and unpacked.
    fn layer_done(&self, _layer: &Digest) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl PullObserver for Quiet {}
