//! The edge: TLS on :443, Basic Auth, and a streaming proxy to the in-process engine; a
//! redirect to https on :80. The only code that knows pingora.
//!
//! Architecture Invariant: the edge asks `auth` "may this request in?" and `certs` "which
//! certificate?" (through the resolver, with no I/O on the handshake path); it never looks into
//! htpasswd files or PEM files itself, and the engine never learns about the edge beyond the
//! front token it must see on every request.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::tls::Acceptor;
use pingora::prelude::{background_service, Server};
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};

use crate::auth::access::Access;
use arc_swap::ArcSwap;

use crate::auth::Authenticator;
use crate::certs::acme::ChallengeTokens;
use crate::certs::CertResolver;
use crate::metrics::Metrics;
use crate::registry::api::Api;
use ipnet::IpNet;

mod connections;
mod drain;
mod engine_service;
mod headers;
mod in_process;
mod linger;
mod listener;
mod proxy;
mod redirect;
mod settings;
mod tally;

use connections::{Connections, Limits};
use drain::InFlight;
use engine_service::EngineService;
use listener::{Gate, Listener, Upkeep};
use proxy::EdgeProxy;
use redirect::RedirectToHttps;
pub use settings::*;
use tally::Tally;

/// h2 flow-control windows: the 64 KiB default caps an upload at one window per round trip;
/// with these an h2 push is not slower than HTTP/1.1. What a client sends ahead waits in the h2
/// layer's buffers, so the connection's window is what bounds that memory: 8 MiB holds the
/// throughput of 16 MiB with less RSS under concurrent pushes on one connection.
const H2_STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const H2_CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
/// The largest DATA frame a client may send (h2's default is 16 KiB; nginx allows 16 MiB).
/// Go's clients (docker, containerd, skopeo) and hyper send frames as large as allowed, so an
/// upload arrives in a sixteenth of the chunks, each handed to the engine uncopied: less CPU
/// per GiB pushed over h2, on both sides. The h2 layer holds at
/// most one such frame per connection while it is still arriving.
const H2_MAX_FRAME: u32 = 256 * 1024;

/// Everything the edge runs with, built by `app`.
pub struct Edge {
    pub settings: EdgeSettings,
    /// The engine's listener, already bound on loopback.
    pub engine_listener: StdListener,
    /// The engine's API, requiring `front_token`.
    pub engine_api: Api,
    pub front_token: String,
    pub authenticator: Authenticator,
    pub resolver: Arc<CertResolver>,
    /// ACME HTTP-01 answers served on :80 (empty unless `tls.mode = "acme"`).
    pub challenges: ChallengeTokens,
    /// The access rules (the engine enforces them; the edge reads `anonymous_pull`).
    pub access: Arc<Access>,
    /// Auth outcomes are counted here; `/metrics` is served to `metrics_allow`.
    pub metrics: Metrics,
    /// `[metrics] allow`, changed by SIGHUP; empty = `/metrics` is not served on the edge.
    pub metrics_allow: Arc<ArcSwap<Vec<IpNet>>>,
    /// Called when SIGTERM starts the drain (systemd's STOPPING=1).
    pub on_stopping: fn(),
}

impl Edge {
    /// Runs until SIGTERM (drains for `shutdown_grace`) or SIGINT (fast). Fails at once if
    /// :443 or :80 cannot be bound.
    pub fn run(self) -> io::Result<()> {
        let engine_addr = self
            .engine_listener
            .local_addr()
            .expect("a bound listener has an address");
        let https_socket = bind(self.settings.https_listen)?;
        let http_socket = bind(self.settings.http_listen)?;
        let gate = connection_gate(&self.settings, &self.metrics)?;
        let mut server = Server::new_with_opt_and_conf(None, server_conf(&self.settings));
        server.bootstrap();
        let in_flight = InFlight::default();
        let shutdown = TermIsGraceful {
            in_flight: in_flight.clone(),
            grace: self.settings.shutdown_grace,
            on_stopping: self.on_stopping,
        };
        let (https_listen, http_listen) = (self.settings.https_listen, self.settings.http_listen);
        self.add_services(
            &mut server,
            engine_addr,
            (https_socket, http_socket),
            gate,
            in_flight,
        );
        tracing::info!(
            https = %https_listen,
            http = %http_listen,
            engine = %engine_addr,
            "edge starting"
        );
        server.run(RunArgs {
            shutdown_signal: Box::new(shutdown),
        });
        Ok(())
    }

    /// Adds the engine, the https proxy, the http redirect (both listeners start after the
    /// engine) and the gate's upkeep to `server`.
    fn add_services(
        self,
        server: &mut Server,
        engine_addr: SocketAddr,
        (https_socket, http_socket): (StdListener, StdListener),
        gate: Arc<Gate>,
        in_flight: InFlight,
    ) {
        let settings = self.settings;
        let engine = background_service(
            "engine",
            EngineService::new(self.engine_listener, self.engine_api.clone()),
        );
        let mut proxy = http_proxy(
            &server.configuration,
            EdgeProxy {
                engine: engine_addr,
                front_token: self.front_token,
                authenticator: self.authenticator,
                realm: settings.auth.realm.clone(),
                allow: settings.allow.clone(),
                trusted_proxies: settings.trusted_proxies.clone(),
                certificates: self.resolver.clone(),
                in_flight,
                idle_timeout: settings.idle_timeout,
                access: self.access,
                metrics: self.metrics,
                metrics_allow: self.metrics_allow,
                engine_api: self.engine_api,
            },
        );
        proxy.h2_options = Some(h2_options());
        let tls = Arc::new(Acceptor::from_server_config(tls_config(self.resolver)));
        let https = Listener::new("https", https_socket, Some(tls), proxy, gate.clone());

        let redirect = RedirectToHttps::new(
            &settings.hostname,
            settings.https_listen.port(),
            self.challenges,
        );
        let http = Listener::new("http redirect", http_socket, None, redirect, gate.clone());

        let engine = server.add_service(engine);
        let https = server.add_service(https);
        let http = server.add_service(http);
        server.add_service(background_service("edge upkeep", Upkeep(gate)));
        https.add_dependency(&engine);
        http.add_dependency(&engine);
    }
}

/// The gate every accepted connection passes (the caps, the handshake timeout); each scrape
/// reads its count of open connections.
fn connection_gate(settings: &EdgeSettings, metrics: &Metrics) -> io::Result<Arc<Gate>> {
    let gate = Arc::new(Gate {
        connections: Connections::new(connection_limits(settings)?),
        handshake_timeout: settings.handshake_timeout,
        metrics: metrics.edge.clone(),
        tally: Tally::default(),
    });
    metrics.on_scrape({
        let gate = gate.clone();
        move |metrics| metrics.edge.set_open(gate.connections.open())
    });
    Ok(gate)
}

/// pingora's server settings: a worker thread per CPU, `shutdown_grace` for the drain, a pool
/// of connections to the engine.
fn server_conf(settings: &EdgeSettings) -> ServerConf {
    ServerConf {
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        grace_period_seconds: Some(settings.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upstream_keepalive_pool_size: 256,
        // Attempts per request (not retries): a second one only when a pooled connection
        // to the engine turned out to be closed before anything was sent.
        max_retries: 2,
        ..ServerConf::default()
    }
}

/// pingora's bounded h2 defaults (concurrent streams, header list size) with our windows,
/// frame size and header limit.
fn h2_options() -> H2Options {
    let mut h2 = default_h2_options();
    h2.initial_window_size(H2_STREAM_WINDOW);
    h2.initial_connection_window_size(H2_CONNECTION_WINDOW);
    h2.max_frame_size(H2_MAX_FRAME);
    h2.max_header_list_size(proxy::H2_HEADER_LIST_BYTES);
    h2
}

/// Connections the kernel completes before the accept loop takes them (as pingora's own
/// listener asks; the kernel caps it at `net.core.somaxconn`). std's 128 dropped SYNs under a
/// burst, and each dropped SYN costs its client a second or more.
const BACKLOG: libc::c_int = 65_535;

fn bind(address: SocketAddr) -> io::Result<StdListener> {
    use std::os::fd::AsRawFd;
    let listener = StdListener::bind(address)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {address}: {e}")))?;
    // SAFETY: listen() on a socket this function owns; a second call only changes the backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// `[edge]`'s caps. Unset, `max_connections` is what the descriptor limit allows with every
/// connection busy; set, it may count on idle ones (one descriptor each), never on more.
fn connection_limits(settings: &EdgeSettings) -> io::Result<Limits> {
    let budget = connections::descriptor_budget()?;
    let total = match settings.max_connections {
        Some(wanted) if wanted > budget.idle => {
            tracing::warn!(
                wanted,
                allowed = budget.idle,
                "edge.max_connections is more than the descriptor limit (LimitNOFILE) holds \
                 with a reserve; using the lower number"
            );
            budget.idle
        }
        Some(wanted) => {
            if wanted > budget.busy {
                tracing::warn!(
                    max_connections = wanted,
                    all_busy = budget.busy,
                    "edge.max_connections counts on idle connections: with all of them busy \
                     (3 descriptors each) the descriptor limit would run out first"
                );
            }
            wanted
        }
        None => budget.busy,
    };
    tracing::info!(
        max_connections = total,
        max_connections_per_client = settings.max_connections_per_client,
        "connection limits"
    );
    Ok(Limits {
        per_client: settings.max_connections_per_client,
        total,
        exempt: settings.trusted_proxies.clone(),
    })
}

/// TLS 1.2 and 1.3 with ring (as pingora's own listener), the certificate from the resolver,
/// h2 preferred over HTTP/1.1.
fn tls_config(resolver: Arc<CertResolver>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// SIGTERM drains (systemd's stop) and exits once requests in flight are done, SIGINT stops at
/// once. SIGQUIT's fd hand-over upgrade is not offered: regapp restarts instead. SIGHUP is not
/// the edge's: `ops` reloads the whole configuration (pingora leaves it at its default, which
/// would end the process, so `ops` takes it over before the edge starts).
struct TermIsGraceful {
    in_flight: InFlight,
    grace: std::time::Duration,
    on_stopping: fn(),
}

#[async_trait]
impl ShutdownSignalWatch for TermIsGraceful {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(in_flight = self.in_flight.count(), "SIGTERM: draining requests in flight");
                (self.on_stopping)();
                self.in_flight.clone().exit_when_idle(self.grace);
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}
