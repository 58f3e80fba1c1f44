//! `[edge]`: what the edge listens on and how it treats connections (checked by `config`).

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::auth::AuthSettings;
use crate::certs::TlsSettings;

/// nginx's `client_body_timeout` and `send_timeout` are 60 s: a stalled upload or a client that
/// stopped reading is let go after a minute, while a slow but moving multi-GB push never is.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A real client finishes its TLS handshake in a few round trips; one that sends nothing for
/// this long is a scanner or an attack (pingora's own deadline is 60 s).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Enough for a CI runner behind NAT pushing with many jobs at once; a flood from one address
/// stops here long before it reaches `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSettings {
    /// The name clients use; redirects and certificates are for it.
    pub hostname: String,
    pub https_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// Client networks allowed in; empty means everyone.
    pub allow: Vec<IpNet>,
    /// Load balancers in front (HAProxy in `mode http`): a request from one is the client's
    /// that its `X-Forwarded-For` names, and its connections are not capped per client.
    pub trusted_proxies: Vec<IpNet>,
    /// How long SIGTERM waits for requests in flight.
    pub shutdown_grace: Duration,
    /// How long a client may send or take nothing before its connection is closed.
    pub idle_timeout: Duration,
    /// How long a new connection has to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// Connections held at once; `None`: as many as the descriptor limit allows, keeping a
    /// reserve.
    pub max_connections: Option<usize>,
    /// Connections one client (an IPv4 address, an IPv6 /64) may hold at once.
    pub max_connections_per_client: usize,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
}
