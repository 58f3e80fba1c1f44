//! The registry engine: OCI Distribution Spec v1.1 over registry:2's on-disk layout.
//!
//! Layers: `api` (HTTP) → `store` (blobs, uploads, manifests, tags, referrers, catalog) →
//! `crate::storage` (the driver). `types` is shared by all and does no I/O.
//! Architecture Invariant: nothing here imports pingora, rustls, the edge, certificates, config
//! or ops. From `auth` it uses only the access rules (who may do what), never passwords.

pub mod api;
pub mod gc;
pub mod mirror;
pub mod store;
pub mod types;

/// `[engine]` and the store's own keys of `[storage]` (checked by `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// The engine's plain-HTTP listener; loopback unless it is meant to be reached directly.
    pub listen: std::net::SocketAddr,
    pub store: store::StoreOptions,
    /// `[[mirror]]`: the upstreams cached, in the file's order.
    pub mirrors: Vec<mirror::MirrorSettings>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
