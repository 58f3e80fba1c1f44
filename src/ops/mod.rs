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
//! | `observe.rs` | scrape-time copies of what `auth` and `certs`/`acme` count themselves |
//! | `logging.rs` | the tracing subscriber: text, journald or JSON; its level on SIGHUP |

pub mod checks;
pub mod logging;
pub mod notify;
pub mod observe;
pub mod reload;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::certs::CertResolver;
use crate::metrics::health::Readiness;
use crate::metrics::Metrics;
pub use reload::Reloader;

/// How often the ready notifier looks again while something is not ready yet.
const READY_POLL: Duration = Duration::from_millis(100);

/// What the service thread runs. `app` prepares it first (binding the metrics port), adds the
/// parts' readiness checks, reloadable parts and scrape-time observers, then starts it.
pub struct Service<S> {
    pub metrics: Metrics,
    /// `/readyz`: everything a request needs.
    pub readiness: Readiness,
    pub reloader: Reloader<S>,
    /// What the watchdog ping vouches for: a wedged engine stops the pings and systemd
    /// restarts regapp.
    alive: Readiness,
    listener: StdListener,
}

impl<S: std::fmt::Display + Clone + Send + 'static> Service<S> {
    /// Binds `[metrics] listen` (`addr`) now, so a busy port stops startup with a clear
    /// message, and prints the line tests and scripts read to learn the port; checks that
    /// `storage_root` (a filesystem store's) takes a write for `/readyz`. `reloader` is what
    /// SIGHUP runs.
    pub fn prepare(
        addr: SocketAddr,
        storage_root: Option<PathBuf>,
        reloader: Reloader<S>,
    ) -> Result<Service<S>, String> {
        let bound = StdListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l));
        let listener =
            bound.map_err(|e| format!("cannot listen on {addr} (metrics.listen): {e}"))?;
        if let Ok(local) = listener.local_addr() {
            println!("regapp metrics on http://{local}");
        }
        let mut readiness = Readiness::default();
        if let Some(root) = storage_root {
            readiness.add("storage", move || checks::storage_writable(root.clone()));
        }
        Ok(Service {
            metrics: Metrics::new(env!("CARGO_PKG_VERSION"), GIT_COMMIT.unwrap_or("unknown")),
            readiness,
            reloader,
            alive: Readiness::default(),
            listener,
        })
    }

    /// The engine alone: ready (and READY=1) once it answers.
    pub fn engine_alone_checks(&mut self, engine: SocketAddr) -> Readiness {
        self.readiness
            .add("engine", move || checks::engine_answers(engine));
        self.alive
            .add("engine", move || checks::engine_answers(engine));
        let mut ready_when = Readiness::default();
        ready_when.add("engine", move || checks::engine_answers(engine));
        ready_when
    }

    /// With the edge: `/readyz` also needs a valid certificate; READY=1 needs the edge's port
    /// to accept connections and a certificate to serve (ACME: the first one).
    pub fn edge_checks(
        &mut self,
        engine: SocketAddr,
        https: SocketAddr,
        resolver: Arc<CertResolver>,
    ) -> Readiness {
        let certificate = move || std::future::ready(checks::certificate_loaded(&resolver));
        self.readiness
            .add("engine", move || checks::engine_answers(engine));
        self.alive
            .add("engine", move || checks::engine_answers(engine));
        self.readiness.add("certificate", certificate.clone());
        let mut ready_when = Readiness::default();
        ready_when.add("https", move || checks::listening(https));
        ready_when.add("certificate", certificate);
        ready_when
    }

    /// Starts the service thread; READY=1 once every check of `ready_when` passes. SIGHUP is
    /// taken over before this returns (its default would end the process).
    pub fn start(self, ready_when: Readiness) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let hangup = {
            let _inside = runtime.enter();
            signal(SignalKind::hangup())?
        };
        std::thread::Builder::new()
            .name("service".to_owned())
            .spawn(move || runtime.block_on(run(self, ready_when, hangup)))?;
        Ok(())
    }
}

/// The git commit, when the build was given one (`REGAPP_GIT_COMMIT=$(git rev-parse HEAD)`).
const GIT_COMMIT: Option<&str> = option_env!("REGAPP_GIT_COMMIT");

async fn run<S: std::fmt::Display + Clone + Send + 'static>(
    service: Service<S>,
    ready_when: Readiness,
    hangup: Signal,
) {
    match tokio::net::TcpListener::from_std(service.listener) {
        Ok(listener) => {
            tokio::spawn(crate::metrics::server::serve(
                listener,
                service.metrics,
                Arc::new(service.readiness),
                std::future::pending(),
            ));
        }
        Err(e) => tracing::error!(error = %e, "metrics listener unusable"),
    }
    if let Some(every) = notify::watchdog_interval() {
        tokio::spawn(ping_watchdog(every, service.alive));
    }
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(notify_when_ready(ready_when, ready.clone()));
    reload_on_hangup(hangup, service.reloader, ready).await;
}

/// WATCHDOG=1 every `every` while the engine answers: a process that stops scheduling, or
/// whose engine no longer answers (each probe may take 2 s), stops pinging.
async fn ping_watchdog(every: Duration, alive: Readiness) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let report = alive.run().await;
        if report.ready() {
            notify::watchdog();
        } else {
            tracing::warn!(failing = ?report.failures(), "watchdog ping withheld");
        }
    }
}

async fn notify_when_ready(checks: Readiness, ready: Arc<AtomicBool>) {
    wait_until_ready(&checks).await;
    ready.store(true, Ordering::SeqCst);
    notify::ready();
}

async fn reload_on_hangup<S: std::fmt::Display + Clone + Send + 'static>(
    mut hangup: Signal,
    reloader: Reloader<S>,
    ready: Arc<AtomicBool>,
) {
    let reloader = Arc::new(Mutex::new(reloader));
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        // Before READY=1, a reload must not claim readiness on its way out.
        let was_ready = ready.load(Ordering::SeqCst);
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
