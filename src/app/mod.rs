//! Wiring: builds every part from the settings and runs them. The only module that knows them all.

pub mod parts;

use std::io::Write;
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::access::Access;
use crate::auth::Authenticator;
use crate::certs::acme::{self, AcmeManager, ChallengeTokens};
use crate::certs::{
    selfsigned, CertResolver, FilesSource, TlsSettings, WatchGuard, DEFAULT_DEBOUNCE,
};
use crate::config::Settings;
use crate::edge::{Edge, EdgeSettings, DEFAULT_IDLE_TIMEOUT};
use crate::ops::{self, Reloader, Service};
use crate::plumbing::background;
use crate::registry::api::{server, Api};
use crate::registry::gc::{self, Collector};
use crate::registry::mirror::Mirrors;
use crate::registry::store::Store;
use crate::storage::{Backend, FsDriver};

/// Errors that end the process: reported once, then regapp exits non-zero.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// How long the engine alone lets open requests finish after a shutdown signal.
const ENGINE_DRAIN: Duration = Duration::from_secs(30);
/// A self-signed certificate lives this long; it is regenerated well before it ends.
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(365 * 86_400);

/// Runs regapp until it is told to stop: the edge in front of the engine when the settings
/// have an `[edge]`, else the engine alone on `engine.listen`. `config` is the file SIGHUP
/// reads again (`None` with `--dev`: nothing to reload).
pub fn serve(settings: Settings, config: Option<std::path::PathBuf>) -> Result<(), AppError> {
    let root = &settings.storage.root;
    FsDriver::prepare_root(root).map_err(|e| format!("storage root {}: {e}", root.display()))?;
    let reloader = Reloader::new(config.map(loader), settings.clone());
    // A bucket's readiness check is added with its store (`open_store`).
    let writable_root = match settings.storage.backend {
        Backend::Filesystem => Some(settings.storage.root.clone()),
        Backend::S3(_) => None,
    };
    let mut service = Service::prepare(settings.metrics.listen, writable_root, reloader)?;
    parts::log_level(&mut service.reloader);
    match settings.edge.clone() {
        Some(edge) => serve_with_edge(&settings, edge, service),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve_engine_alone(settings, service)),
    }
}

async fn serve_engine_alone(
    settings: Settings,
    mut service: Service<Settings>,
) -> Result<(), AppError> {
    let store = open_store(settings.clone(), &mut service).await?;
    start_gc(&settings, store.clone(), &mut service)?;
    let (listener, local) = server::bind(settings.engine.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.engine.listen))?;
    // Tests and scripts read this line to learn the port; keep its form.
    println!("regapp engine listening on http://{local}");
    tracing::info!(%local, root = %settings.storage.root.display(), "engine listening");
    tokio::spawn(store.clone().warm_catalog());
    let api = Api::new(store)
        .body_idle_timeout(DEFAULT_IDLE_TIMEOUT)
        .metrics(service.metrics.engine.clone())
        .mirrors(open_mirrors(&settings, &service)?);
    let ready_when = service.engine_alone_checks(local);
    service.start(ready_when)?;
    server::serve(listener, api, shutdown_signal(), ENGINE_DRAIN).await?;
    tracing::info!("stopped");
    Ok(())
}

fn serve_with_edge(
    settings: &Settings,
    edge: EdgeSettings,
    mut service: Service<Settings>,
) -> Result<(), AppError> {
    let engine_listener = bind_engine(settings.engine.listen)?;
    let engine_addr = engine_listener.local_addr()?;
    let front_token = random_token();
    let access = Arc::new(Access::new(settings.access.clone()));
    let engine_api = engine_behind_edge(settings, &edge, &mut service, &front_token, &access)?;
    let authenticator = start_authenticator(&edge, &mut service)?;
    let certificates = start_certificates(settings, &edge, &mut service)?;
    let metrics_allow = Arc::new(arc_swap::ArcSwap::from_pointee(
        settings.metrics.allow.clone(),
    ));
    parts::metrics_allow(&mut service.reloader, metrics_allow.clone());

    let ready_when = service.edge_checks(
        engine_addr,
        edge.https_listen,
        certificates.resolver.clone(),
    );
    let metrics = service.metrics.clone();
    service.start(ready_when)?;

    println!(
        "regapp listening on https://{} (engine on http://{})",
        edge.https_listen,
        engine_listener.local_addr()?
    );
    Edge {
        settings: edge,
        engine_listener,
        engine_api,
        front_token,
        authenticator,
        resolver: certificates.resolver,
        challenges: certificates.challenges,
        access,
        metrics,
        metrics_allow,
        on_stopping: ops::notify::stopping,
    }
    .run()?;
    Ok(())
}

/// Binds the engine's listener, non-blocking: the edge's tokio runtime takes it over.
fn bind_engine(listen: std::net::SocketAddr) -> Result<StdListener, AppError> {
    let listener =
        StdListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Opens the store, starts its garbage collection and builds the engine's API for behind the
/// edge: it wants `front_token` on every request and enforces `access` (SIGHUP reloads it).
fn engine_behind_edge(
    settings: &Settings,
    edge: &EdgeSettings,
    service: &mut Service<Settings>,
    front_token: &str,
    access: &Arc<Access>,
) -> Result<Api, AppError> {
    // pingora's runtimes start later; the bucket's probe runs on one of its own.
    let store = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(open_store(settings.clone(), service))?;
    start_gc(settings, store.clone(), service)?;
    let api = Api::new(store)
        .require_front_token(front_token.to_owned())
        .enforce_access(access.clone())
        .body_idle_timeout(edge.idle_timeout)
        .metrics(service.metrics.engine.clone())
        .mirrors(open_mirrors(settings, service)?);
    parts::access_rules(&mut service.reloader, access.clone());
    Ok(api)
}

/// Loads `auth.htpasswd` and watches it (SIGHUP reloads it too); its reloads go to the metrics.
fn start_authenticator(
    edge: &EdgeSettings,
    service: &mut Service<Settings>,
) -> Result<Authenticator, AppError> {
    let authenticator = Authenticator::load(&edge.auth.htpasswd)
        .map_err(|e| format!("htpasswd {}: {e}", edge.auth.htpasswd.display()))?;
    let htpasswd_watch = authenticator.watch()?;
    ops::observe::auth(&service.metrics, authenticator.clone());
    parts::htpasswd(&mut service.reloader, authenticator.clone(), htpasswd_watch);
    Ok(authenticator)
}

/// What the edge takes from the certificate source.
struct Certificates {
    resolver: Arc<CertResolver>,
    challenges: ChallengeTokens,
    /// Reloads the certificate files when they change, for as long as it is kept.
    _watch: Option<WatchGuard>,
}

/// Starts the certificate source `tls.mode` names; certificate files are also watched and
/// reloaded by SIGHUP. The served certificate (and ACME's attempts) go to the metrics. With
/// the registry in a bucket, ACME keeps its account, certificate and HTTP-01 answers there too,
/// so that the nodes sharing the bucket share one certificate.
fn start_certificates(
    settings: &Settings,
    edge: &EdgeSettings,
    service: &mut Service<Settings>,
) -> Result<Certificates, AppError> {
    let resolver = Arc::new(CertResolver::new());
    let bucket = match (&edge.tls, &settings.storage.backend) {
        (TlsSettings::Acme(_), Backend::S3(_)) => Some(
            crate::storage::driver(&settings.storage)
                .map_err(|e| format!("storage {}: {e}", settings.storage.location()))?,
        ),
        _ => None,
    };
    let challenges = match &bucket {
        Some(driver) => ChallengeTokens::in_bucket(driver.clone()),
        None => ChallengeTokens::new(),
    };
    let shared = bucket.map(|driver| (driver, settings.cluster.node.as_str()));
    let (watch, acme_manager) = match certificate_source(edge, &resolver, &challenges, shared)? {
        CertificateSource::Files(files) => {
            let watch = files.watch(DEFAULT_DEBOUNCE)?;
            parts::certificate_files(&mut service.reloader, files);
            (Some(watch), None)
        }
        CertificateSource::SelfSigned => (None, None),
        CertificateSource::Acme(manager) => (None, Some(manager)),
    };
    ops::observe::certificates(&service.metrics, resolver.clone(), acme_manager);
    Ok(Certificates {
        resolver,
        challenges,
        _watch: watch,
    })
}

/// A started certificate source, as far as the rest of the wiring still needs it.
enum CertificateSource {
    Files(Arc<FilesSource>),
    SelfSigned,
    Acme(Arc<AcmeManager>),
}

/// Starts the certificate source `tls.mode` names, the one that fills `resolver`: PEM files, a
/// self-signed certificate (its CA written for clients to trust) or an ACME manager (running on
/// its own thread, its HTTP-01 answers in `challenges`; `shared`: the bucket and this node's
/// name, when several nodes share the certificate).
fn certificate_source(
    edge: &EdgeSettings,
    resolver: &Arc<CertResolver>,
    challenges: &ChallengeTokens,
    shared: Option<(Arc<dyn crate::storage::StorageDriver>, &str)>,
) -> Result<CertificateSource, AppError> {
    match &edge.tls {
        TlsSettings::Files {
            cert_file,
            key_file,
        } => {
            let files = FilesSource::open(cert_file, key_file, resolver.clone())?;
            Ok(CertificateSource::Files(Arc::new(files)))
        }
        TlsSettings::SelfSigned { state_dir } => {
            let cert =
                selfsigned::load_or_generate(&edge.hostname, state_dir, SELF_SIGNED_VALIDITY)?;
            resolver.install(cert.key.clone())?;
            let ca = cert.write_ca(state_dir)?;
            tracing::info!(trust = %ca.display(), "serving a self-signed certificate");
            Ok(CertificateSource::SelfSigned)
        }
        TlsSettings::Acme(settings) => {
            let manager = AcmeManager::new(
                settings.clone(),
                resolver.clone(),
                challenges.clone(),
                acme::https_connector(settings.ca_root.clone()),
            )?;
            let manager = match shared {
                Some((bucket, node)) => manager.shared(bucket, node),
                None => manager,
            };
            let manager = Arc::new(manager);
            acme::spawn(manager.clone(), edge.http_listen)?;
            Ok(CertificateSource::Acme(manager))
        }
    }
}

/// The store the settings name. A bucket is probed (a write, a read, a delete) before anything
/// is served, so that a wrong endpoint, bucket or key stops the start with S3's own answer,
/// and again for every `/readyz`.
async fn open_store(
    settings: Settings,
    service: &mut Service<Settings>,
) -> Result<Arc<Store>, AppError> {
    let storage = &settings.storage;
    let store = Store::open(storage, settings.engine.store.clone())
        .map_err(|e| format!("storage {}: {e}", storage.location()))?;
    let store = Arc::new(store);
    if let Backend::S3(_) = storage.backend {
        // A driver of its own: behind the edge this runs on a runtime that ends right after,
        // and the store's client must not keep connections that lived on it.
        let failed =
            |e: crate::storage::StorageError| format!("storage {}: {e}", storage.location());
        let prober = crate::storage::driver(storage).map_err(failed)?;
        crate::storage::probe(prober.as_ref())
            .await
            .map_err(failed)?;
        let driver = store.driver().clone();
        let location = storage.location();
        service.readiness.add("storage", move || {
            let (driver, location) = (driver.clone(), location.clone());
            async move {
                // A load balancer's probe waits seconds, not the client's retries.
                let probe = crate::storage::probe(driver.as_ref());
                match tokio::time::timeout(READINESS_PROBE_TIMEOUT, probe).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("{location}: {e}")),
                    Err(_) => Err(format!(
                        "{location}: no answer within {READINESS_PROBE_TIMEOUT:?}"
                    )),
                }
            }
        });
    }
    Ok(store)
}

/// The `[[mirror]]` upstreams' clients (their password and CA files are read now); fetches
/// spool in `<storage root>/mirror-spool`.
fn open_mirrors(
    settings: &Settings,
    service: &Service<Settings>,
) -> Result<Arc<Mirrors>, AppError> {
    let spool = settings.storage.root.join("mirror-spool");
    let mirrors = Mirrors::new(
        settings.engine.mirrors.clone(),
        spool,
        Some(service.metrics.mirror.clone()),
    )
    .map_err(|e| format!("mirror: {e}"))?;
    for mirror in mirrors.iter() {
        let m = mirror.settings();
        tracing::info!(mirror = mirror.name(), url = %m.upstream.url, prefix = %m.prefix,
            namespace = m.namespace.as_deref().unwrap_or(""), default = m.default, "mirroring");
    }
    Ok(Arc::new(mirrors))
}

/// How long `/readyz` waits for the bucket's answer.
const READINESS_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts garbage collection over `store`: binds `gc.sock` in the storage root (`regapp gc`
/// asks through it), waits for a command-line collection that may be running on the store
/// (its pushes would not be pinned otherwise), then runs the schedule and the socket on a
/// thread of their own, away from the request workers. SIGHUP applies `[gc]` and
/// `[[retention]]`; every run and measurement goes to the metrics.
fn start_gc(
    settings: &Settings,
    store: Arc<Store>,
    service: &mut Service<Settings>,
) -> Result<Arc<Collector>, AppError> {
    let state_dir = &settings.storage.root;
    let disposal = gc::disposal_for(&settings.storage, store.driver());
    let collector = Collector::new(store, disposal, settings.gc.clone(), state_dir)
        .on_node(&settings.storage, &settings.cluster.node);
    let collector = Arc::new(collector);
    let socket = collector.socket_path();
    let control =
        gc::control::bind(&socket).map_err(|e| format!("gc socket {}: {e}", socket.display()))?;
    gc::lock::wait_for_offline_collection(state_dir)
        .map_err(|e| format!("gc lock in {}: {e}", state_dir.display()))?;
    ops::observe::garbage_collection(&service.metrics, &collector);
    service.metrics.cluster.set_node(&settings.cluster.node);
    parts::gc_policy(&mut service.reloader, collector.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(background::yield_cpu_to_requests)
        .build()?;
    std::thread::Builder::new().name("gc".to_owned()).spawn({
        let collector = collector.clone();
        move || {
            background::yield_cpu_to_requests();
            runtime.block_on(async move {
                tokio::spawn(gc::control::serve(control, collector.clone()));
                collector.run_schedule().await
            })
        }
    })?;
    Ok(collector)
}

/// How SIGHUP reads the configuration again.
pub fn loader(path: std::path::PathBuf) -> ops::reload::Load<Settings> {
    Box::new(move || {
        Settings::load(&path).map_err(|errors| errors.0.iter().map(ToString::to_string).collect())
    })
}

/// A secret only this process knows (two random UUIDs: 244 random bits).
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// `regapp serve --dev`: makes sure the dev user exists and says how to use the registry.
pub fn prepare_dev(settings: &Settings) -> Result<(), AppError> {
    let Some(edge) = &settings.edge else {
        return Ok(());
    };
    let data = &settings.storage.root;
    std::fs::create_dir_all(data)?;
    let password_file = data.join("dev-password");
    let password = match std::fs::read_to_string(&password_file) {
        Ok(p) if edge.auth.htpasswd.exists() => p.trim().to_owned(),
        _ => {
            let password = random_token()[..20].to_owned();
            let hash = bcrypt::hash(&password, 10)?;
            write_private(&edge.auth.htpasswd, format!("dev:{hash}\n").as_bytes())?;
            write_private(&password_file, password.as_bytes())?;
            password
        }
    };
    let url = format!("https://localhost:{}", edge.https_listen.port());
    let ca = match &edge.tls {
        TlsSettings::SelfSigned { state_dir } => state_dir.join("ca.crt"),
        TlsSettings::Files { cert_file, .. } => cert_file.clone(),
        TlsSettings::Acme(acme) => {
            acme::StateDir::new(&acme.state_dir, &acme.directory).certificate_path()
        }
    };
    let host = format!("localhost:{}", edge.https_listen.port());
    println!("regapp (dev mode)");
    println!("  registry  {url}");
    println!("  user      dev");
    println!("  password  {password}");
    println!("  trust     {}", ca.display());
    println!(
        "    curl    curl --cacert {} -u dev:{password} {url}/v2/",
        ca.display()
    );
    println!(
        "    skopeo  skopeo login --cert-dir {} {host}",
        ca.parent().unwrap_or(Path::new(".")).display()
    );
    println!("    docker  sudo mkdir -p /etc/docker/certs.d/{host} && sudo cp {} /etc/docker/certs.d/{host}/ca.crt", ca.display());
    Ok(())
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    ops::notify::stopping();
}
