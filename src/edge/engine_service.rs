//! The engine as a pingora background service, so the edge starts listening only once the
//! engine is bound and answering.

use std::net::TcpListener as StdListener;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;

use crate::registry::api::{server, Api};

pub struct EngineService {
    /// Bound before pingora starts, so a busy port is reported before anything else runs.
    listener: Mutex<Option<StdListener>>,
    api: Api,
}

impl EngineService {
    pub fn new(listener: StdListener, api: Api) -> EngineService {
        EngineService {
            listener: Mutex::new(Some(listener)),
            api,
        }
    }
}

#[async_trait]
impl BackgroundService for EngineService {
    async fn start_with_ready_notifier(
        &self,
        _shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let listener = self.listener.lock().expect("engine listener lock").take();
        let Some(listener) = listener else { return };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "engine listener unusable");
                return;
            }
        };
        ready.notify_ready();
        tokio::spawn(self.api.store().clone().warm_catalog());
        // The engine keeps serving through the edge's shutdown: requests the edge is draining
        // still need it. It ends when the process does.
        let never = std::future::pending::<()>();
        if let Err(e) = server::serve(listener, self.api.clone(), never, Duration::ZERO).await {
            tracing::error!(error = %e, "engine stopped");
        }
    }
}
