//! Wiring: builds every part from the settings and runs them. The only module that knows them all.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::registry::api::{server, Api};
use crate::registry::store::{Store, StoreOptions};
use crate::storage::FsDriver;

/// Errors that end the process: reported once, then regapp exits non-zero.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// How long open requests may finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

/// Runs the engine until SIGTERM or SIGINT.
pub async fn serve(settings: Settings) -> Result<(), AppError> {
    let store = Arc::new(build_store(&settings));
    let (listener, local) = server::bind(settings.engine.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.engine.listen))?;
    // Tests and scripts read this line to learn the port; keep its form.
    println!("regapp engine listening on http://{local}");
    tracing::info!(%local, root = %settings.storage.root.display(), "engine listening");
    server::serve(listener, Api::new(store), shutdown_signal(), DRAIN).await?;
    tracing::info!("stopped");
    Ok(())
}

pub fn build_store(settings: &Settings) -> Store {
    let driver = Arc::new(FsDriver::new(&settings.storage.root));
    Store::new(
        driver,
        StoreOptions {
            delete_enabled: settings.storage.delete_enabled,
            manifest_max_bytes: settings.engine.max_manifest_bytes,
        },
    )
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}
