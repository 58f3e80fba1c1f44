//! ACME certificates: obtained over HTTP-01 from any ACME v2 CA, kept in a state directory,
//! renewed while regapp runs and swapped into the [`CertResolver`](crate::certs::CertResolver).
//!
//! | file | owns |
//! |---|---|
//! | `manager.rs` | [`AcmeManager`]: install the stored certificate, `renew` (one attempt: order, save, install, count, log), `run` (the schedule) |
//! | `order.rs` | one HTTP-01 order with instant-acme: `replaces` and its fallback, skipping valid authorizations, the CA's error detail |
//! | `account.rs` | the account: load per directory URL or create (with EAB); the HTTP connector (system roots, `ca_root`, canned in tests) |
//! | `renewal.rs` | when the certificate in use is due: ARI window (RFC 9773) or the lifetime rule |
//! | `schedule.rs` | the pure date rules: lifetime fraction, point in the ARI window, retry backoff with jitter |
//! | `challenges.rs` | [`ChallengeTokens`]: token → key authorization, read by the :80 listener |
//! | `state.rs` | the state directory's layout and atomic private writes |
//! | `kept.rs` | [`Kept`]: the account and certificate in the state directory, or in the bucket several nodes share |
//! | `control.rs` | the Unix socket `regapp cert status|renew` use to reach the running server |
//! | `status.rs` | [`Status`]: what `cert status` prints and the metrics will read |
//! | `error.rs` | [`AcmeError`]: what went wrong in an operator's words, with the CA's detail |
//!
//! Architecture Invariant: this module knows instant-acme, rustls, `certs`, and for several
//! nodes the storage driver and `cluster`'s leases; nothing of pingora, the edge, the registry
//! or `config`. The edge only asks [`ChallengeTokens::answer`];
//! the TLS handshake only sees the resolver. The schedule is `renew()` (one attempt) plus a
//! trivial loop, so tests and the CLI run single attempts.

mod account;
mod challenges;
pub mod control;
mod error;
mod kept;
mod manager;
mod order;
mod renewal;
mod schedule;
mod state;
mod status;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use account::{https_connector, Connector};
pub use challenges::{ChallengeTokens, CHALLENGE_PREFIX};
pub use error::AcmeError;
pub use kept::Kept;
pub use manager::{AcmeManager, Plan, ACME_LEASE, PICK_UP_EVERY};
pub use renewal::Basis;
pub use state::StateDir;
pub use status::Status;

/// How long validation and issuance may take before the attempt counts as failed.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
pub const ZEROSSL: &str = "https://acme.zerossl.com/v2/DV90";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/regapp/acme";

/// `tls.mode = "acme"` (`[acme]`, checked by `config`): certificates from an ACME v2 CA over
/// HTTP-01, renewed while regapp runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeOptions {
    /// The directory URL (shortcuts already expanded).
    pub directory: String,
    /// `mailto:` URIs for the account.
    pub contact: Vec<String>,
    /// The names on the certificate; `[edge.hostname]` unless set.
    pub domains: Vec<String>,
    /// A PEM root to trust for the CA's own HTTPS (a private ACME server); else the system's.
    pub ca_root: Option<PathBuf>,
    /// External Account Binding: key id and the decoded HMAC key.
    pub eab: Option<(String, Vec<u8>)>,
    pub profile: Option<String>,
    /// Account, certificate and key (0700 directory, 0600 files) and the control socket.
    pub state_dir: PathBuf,
}

/// How long the first order waits for the :80 listener before trying anyway.
const HTTP_LISTENER_WAIT: Duration = Duration::from_secs(30);

/// Starts the manager on its own thread: the control socket first, then — once `http_listen`
/// accepts connections, so the CA can fetch the challenge answers — the schedule.
pub fn spawn(manager: Arc<AcmeManager>, http_listen: SocketAddr) -> std::io::Result<()> {
    let socket_path = manager.state().control_socket();
    let control = control::bind(&socket_path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", socket_path.display())))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("acme".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(control::serve(control, manager.clone()));
                wait_until_listening(http_listen).await;
                manager.run().await;
            })
        })?;
    Ok(())
}

/// Waits until something accepts TCP connections on `addr` (a wildcard address is tried on
/// loopback), for at most [`HTTP_LISTENER_WAIT`].
async fn wait_until_listening(addr: SocketAddr) {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    let deadline = Instant::now() + HTTP_LISTENER_WAIT;
    while tokio::net::TcpStream::connect(target).await.is_err() {
        if Instant::now() > deadline {
            tracing::warn!(%addr, "the :80 listener is not accepting connections; ordering anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What `regapp cert status` shows when the server is not running: the stored certificate and
/// its due date by the lifetime rule (the CA's window is only known to a running server); with
/// several nodes (`bucket`), the bucket's certificate and who holds the `acme` lease.
pub async fn status_stored(
    options: &AcmeOptions,
    bucket: Option<(std::sync::Arc<dyn crate::storage::StorageDriver>, &str)>,
) -> Result<Status, AcmeError> {
    let state = StateDir::new(&options.state_dir, &options.directory);
    let kept = match &bucket {
        Some((driver, _)) => Kept::in_bucket(driver.clone(), &state),
        None => Kept::Dir(state),
    };
    let certificate = match kept.load_certificate().await? {
        Some((key, _)) => Some(
            crate::certs::CertInfo::from_der(&key.cert[0])
                .map_err(crate::certs::CertError::from)?,
        ),
        None => None,
    };
    let (next_renewal, basis) = match &certificate {
        Some(info) => {
            let (at, basis) = renewal::without_ari(info, &options.domains, SystemTime::now());
            (Some(at), Some(basis))
        }
        None => (None, Some(Basis::Missing)),
    };
    let (node, lease) = match bucket {
        Some((driver, node)) => {
            let leases = crate::cluster::Leases::new(driver, node, Duration::ZERO);
            let holder = leases.holder(ACME_LEASE).await;
            (Some(node.to_owned()), Some(manager::lease_text(holder)))
        }
        None => (None, None),
    };
    Ok(Status {
        domains: options.domains.clone(),
        directory: options.directory.clone(),
        certificate,
        next_renewal,
        basis,
        kept: kept.certificate_location(),
        node,
        lease,
        ..Status::default()
    })
}
