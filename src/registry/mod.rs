//! The registry engine: OCI Distribution Spec v1.1 over registry:2's on-disk layout.
//!
//! Layers: `api` (HTTP) → `store` (blobs, uploads, manifests, tags, referrers, catalog) →
//! `crate::storage` (the driver). `types` is shared by all and does no I/O.
//! Architecture Invariant: nothing here imports pingora, rustls, the edge or authentication.

pub mod api;
pub mod store;
pub mod types;
