//! The registry store: blobs, uploads, manifests, tags, referrers and the catalog, kept in
//! registry:2's layout over a [`StorageDriver`]. It knows nothing of HTTP.
//!
//! Invariant: a blob, manifest, link or tag becomes visible only through one atomic driver
//! operation (`put` or `rename`) after its content is complete and durable, and links are written
//! only after what they point to exists. A crash at any point leaves the old state or the new,
//! plus at most an unreferenced blob or a stale upload for garbage collection.

use std::sync::Arc;

use crate::storage::{ByteStream, StorageDriver};

pub mod batcher;
mod batching;
mod blobs;
pub mod byte_budget;
mod catalog;
mod error;
mod hashing;
mod immutable;
mod manifests;
pub mod paths;
mod pins;
mod referrers;
pub(crate) mod shared_pins;
mod summaries;
mod tags;
mod uploads;

pub use error::{StoreError, StoreResult};
pub use immutable::{ImmutableRule, ImmutableTags};
pub use manifests::{PutManifest, StoredManifest};
pub use pins::{PinGuard, Pins};

use batching::BatchBudget;
use catalog::Catalog;
use summaries::{Bodies, Summaries};
use uploads::UploadSessions;

/// How the store behaves: `[storage] delete_enabled` and `[engine] max_manifest_bytes`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// When false, DELETEs answer 405 `UNSUPPORTED`.
    pub delete_enabled: bool,
    /// Larger manifests are refused with 413.
    pub manifest_max_bytes: usize,
    /// `[[immutable]]`: tags that never move or go.
    pub immutable: ImmutableTags,
}

/// registry:2's limit.
pub const DEFAULT_MANIFEST_MAX_BYTES: usize = 4 * 1024 * 1024;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            delete_enabled: true,
            manifest_max_bytes: DEFAULT_MANIFEST_MAX_BYTES,
            immutable: ImmutableTags::default(),
        }
    }
}

impl Store {
    /// The store the settings name: their storage driver, with the engine's store options.
    pub fn open(
        storage: &crate::storage::StorageSettings,
        options: StoreOptions,
    ) -> StoreResult<Store> {
        Ok(Store::new(crate::storage::driver(storage)?, options))
    }
}

pub struct Store {
    driver: Arc<dyn StorageDriver>,
    options: StoreOptions,
    uploads: UploadSessions,
    summaries: Summaries,
    bodies: Bodies,
    catalog: Catalog,
    pins: Pins,
    batch_budget: BatchBudget,
    /// Held while an immutable tag is checked and written, so that two first pushes of one
    /// immutable tag cannot both pass the check (in this process; see ARCHITECTURE.md).
    immutable_writes: tokio::sync::Mutex<()>,
}

/// A request body as the store consumes it.
pub type Body = ByteStream;

impl Store {
    pub fn new(driver: Arc<dyn StorageDriver>, options: StoreOptions) -> Store {
        Store {
            driver,
            options,
            uploads: UploadSessions::default(),
            summaries: Summaries::default(),
            bodies: Bodies::default(),
            catalog: Catalog::default(),
            pins: Pins::default(),
            batch_budget: BatchBudget::default(),
            immutable_writes: tokio::sync::Mutex::new(()),
        }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The driver under the store, for the garbage collector (which walks the layout itself,
    /// through `paths`).
    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.driver
    }

    /// What pushes in progress hold; the garbage collector asks before it deletes.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// Pins `digests` in this process and, on a shared store, in the store (`shared_pins`).
    async fn pin(
        &self,
        digests: Vec<crate::registry::types::Digest>,
    ) -> StoreResult<pins::PinGuard<'_>> {
        let guard = self.pins.pin(digests.clone()).await;
        shared_pins::pin(self.driver.as_ref(), &digests).await?;
        Ok(guard)
    }

    fn ensure_delete_enabled(&self) -> StoreResult<()> {
        if self.options.delete_enabled {
            Ok(())
        } else {
            Err(StoreError::DeleteDisabled)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
