//! Running as a service: the metrics listener with `/healthz` and `/readyz`, systemd's
//! notifications (ready, watchdog, reloading, stopping), SIGHUP reloads of regapp.toml, and
//! logging. `app` builds the parts; this module runs the service side of them on a thread of
//! its own, so none of it competes with registry traffic or depends on pingora's runtimes.
//!
//! | file | owns |
//! |---|---|
//! | `checks.rs` | readiness checks: engine answers, storage writable, certificate loaded, listening |
//! | `notify.rs` | sd_notify over `$NOTIFY_SOCKET`, the watchdog interval |
//! | `reload.rs` | [`Reloader`]: re-read, validate, apply reloadable parts, report restart-only keys |
//! | `parts.rs` | the reloadable parts regapp has (log level, htpasswd, certificate files, metrics allow) |
//! | `observe.rs` | scrape-time copies of what `auth` and `certs`/`acme` count themselves |
//! | `logging.rs` | the tracing subscriber: text, journald or JSON; its level on SIGHUP |

pub mod checks;
pub mod logging;
pub mod notify;
pub mod observe;
pub mod parts;
pub mod reload;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::metrics::health::Readiness;
use crate::metrics::Metrics;
pub use reload::Reloader;

/// How often the ready notifier looks again while something is not ready yet.
const READY_POLL: Duration = Duration::from_millis(100);

/// What the service thread runs.
pub struct Service {
    pub metrics: Metrics,
    /// `/readyz`: everything a request needs.
    pub readiness: Readiness,
    /// When to send READY=1: listening, and a certificate to serve.
    pub ready_when: Readiness,
    pub reloader: Reloader,
}

/// Binds `[metrics] listen` now, so a busy port stops startup with a clear message.
pub fn bind_metrics(addr: SocketAddr) -> Result<StdListener, String> {
    let listener = StdListener::bind(addr)
        .map_err(|e| format!("cannot listen on {addr} (metrics.listen): {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("metrics listener: {e}"))?;
    Ok(listener)
}

/// Starts the service thread. SIGHUP is taken over before this returns (its default would end
/// the process).
pub fn spawn(service: Service, listener: StdListener) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let hangup = {
        let _inside = runtime.enter();
        signal(SignalKind::hangup())?
    };
    std::thread::Builder::new()
        .name("service".to_owned())
        .spawn(move || runtime.block_on(run(service, listener, hangup)))?;
    Ok(())
}

async fn run(service: Service, listener: StdListener, mut hangup: Signal) {
    let Service {
        metrics,
        readiness,
        ready_when,
        reloader,
    } = service;
    match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => {
            tracing::info!(listen = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), "metrics, /healthz and /readyz listening");
            tokio::spawn(crate::metrics::server::serve(
                listener,
                metrics,
                Arc::new(readiness),
                std::future::pending(),
            ));
        }
        Err(e) => tracing::error!(error = %e, "metrics listener unusable"),
    }
    if let Some(every) = notify::watchdog_interval() {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                notify::watchdog();
            }
        });
    }
    let is_ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let is_ready = is_ready.clone();
        tokio::spawn(async move {
            wait_until_ready(&ready_when).await;
            is_ready.store(true, std::sync::atomic::Ordering::SeqCst);
            notify::ready();
        });
    }
    let reloader = Arc::new(Mutex::new(reloader));
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        // Before READY=1, a reload must not claim readiness on its way out.
        let was_ready = is_ready.load(std::sync::atomic::Ordering::SeqCst);
        if was_ready {
            notify::reloading();
        }
        let reloader = reloader.clone();
        let done = tokio::task::spawn_blocking(move || {
            reloader
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .reload();
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "the reload did not finish");
        }
        if was_ready {
            notify::ready();
        }
    }
}

/// Returns once every check passes; says (once per distinct reason) what it is waiting for.
async fn wait_until_ready(checks: &Readiness) {
    let mut last = Vec::new();
    loop {
        let report = checks.run().await;
        if report.ready() {
            tracing::info!("ready");
            return;
        }
        let failures = report.failures();
        if failures != last {
            tracing::info!(waiting_for = ?failures, "not ready yet");
            last = failures;
        }
        tokio::time::sleep(READY_POLL).await;
    }
}
