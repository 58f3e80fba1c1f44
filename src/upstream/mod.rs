//! A client for another registry's pull API: what the mirror (`registry::mirror`) asks an
//! upstream such as Docker Hub, ghcr.io or quay.io. It speaks the token flow those use
//! (`auth.rs`), Basic auth, keeps to `max_concurrent` requests at once and stays away while
//! the upstream asked it to (429 with `Retry-After`).
//!
//! Architecture Invariant: this part knows HTTP and the distribution API's paths, nothing of
//! the store, the edge or the config file. Bodies come back as streams.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use reqwest_s3 as reqwest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod auth;
mod error;
#[cfg(test)]
mod tests;

pub use error::UpstreamError;

/// One `[[mirror]]`'s upstream, as the config gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    /// How logs and metrics call it.
    pub name: String,
    /// `https://registry-1.docker.io`: scheme, host and port, no path.
    pub url: String,
    pub username: Option<String>,
    /// Read at start; the password is its first line.
    pub password_file: Option<PathBuf>,
    /// PEM certificates trusted for the upstream's TLS besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Requests in flight at once (a blob's counts until its body is read).
    pub max_concurrent: usize,
}

/// What the mirror asks for a manifest in: every type the engine stores.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Beyond this a manifest is not read (registry:2's own limit is 4 MiB).
const MANIFEST_MAX_BYTES: usize = 8 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A body that sends nothing for this long is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Headers of a manifest, a HEAD or a token must come within this.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to stay away after a 429 without `Retry-After`.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(60);
/// The longest `Retry-After` honoured: a day-long ban should not silence a node for a day
/// without anyone looking.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A byte stream from the upstream; holds its concurrency permit until dropped.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A manifest as the upstream answered.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `Docker-Content-Digest` (for a HEAD, the only way to learn it).
    pub digest: Option<String>,
    pub media_type: Option<String>,
    /// Empty for a HEAD.
    pub body: Bytes,
}

/// A blob's body and its length (`Content-Length`).
pub struct Blob {
    pub length: u64,
    pub body: ByteStream,
}

/// A client for one upstream. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    client: reqwest::Client,
    auth: auth::Authorizer,
    permits: Arc<Semaphore>,
    /// Until when the upstream asked not to be called (429).
    quiet_until: Mutex<Option<Instant>>,
}

impl Upstream {
    /// Builds the client: reads the password file and the CA file now, so a mistake stops the
    /// start with the file's name.
    pub fn new(settings: &UpstreamSettings) -> Result<Upstream, UpstreamError> {
        // reqwest is built without a crypto provider of its own: it takes the process's, ring.
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::ring::default_provider(),
        );
        let setup = |what: String| UpstreamError::Setup(format!("{}: {what}", settings.name));
        let password = match &settings.password_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| setup(format!("password_file {}: {e}", path.display())))?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
        };
        let credentials = match (&settings.username, password) {
            (Some(user), Some(password)) if !user.is_empty() => {
                Some(auth::Credentials::new(user.clone(), password))
            }
            _ => None,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("regapp/", env!("CARGO_PKG_VERSION"), " (mirror)"));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| setup(format!("ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(setup(format!(
                    "ca_file {}: no PEM certificate in it",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| setup(format!("HTTP client: {e}")))?;
        Ok(Upstream {
            inner: Arc::new(Inner {
                base: settings.url.trim_end_matches('/').to_owned(),
                auth: auth::Authorizer::new(client.clone(), credentials),
                client,
                permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
                quiet_until: Mutex::new(None),
            }),
        })
    }

    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// `HEAD /v2/<repo>/manifests/<reference>`: the digest it names now. Docker Hub does not
    /// count these against its pull limit.
    pub async fn manifest_head(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Manifest, UpstreamError> {
        let (response, _permit) = self
            .send(Method::HEAD, repo, &format!("manifests/{reference}"), true)
            .await?;
        Ok(manifest_of(response.headers(), Bytes::new()))
    }

    /// `GET /v2/<repo>/manifests/<reference>`, read whole (manifests are small).
    pub async fn manifest_get(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Manifest, UpstreamError> {
        let (response, _permit) = self
            .send(Method::GET, repo, &format!("manifests/{reference}"), true)
            .await?;
        let headers = response.headers().clone();
        if response
            .content_length()
            .is_some_and(|len| len > MANIFEST_MAX_BYTES as u64)
        {
            return Err(UpstreamError::Invalid(format!(
                "the manifest is over {MANIFEST_MAX_BYTES} bytes"
            )));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = tokio::time::timeout(ANSWER_TIMEOUT, stream.next())
            .await
            .map_err(|_| UpstreamError::TimedOut)?
        {
            let chunk = chunk.map_err(UpstreamError::transport)?;
            if body.len() + chunk.len() > MANIFEST_MAX_BYTES {
                return Err(UpstreamError::Invalid(format!(
                    "the manifest is over {MANIFEST_MAX_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(manifest_of(&headers, body.into()))
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: the blob's size.
    pub async fn blob_size(&self, repo: &str, digest: &str) -> Result<u64, UpstreamError> {
        let (response, _permit) = self
            .send(Method::HEAD, repo, &format!("blobs/{digest}"), false)
            .await?;
        content_length(response.headers())
    }

    /// `GET /v2/<repo>/blobs/<digest>`, following the upstream's redirect (to a CDN or a
    /// bucket; reqwest drops `Authorization` when the host changes). The body streams.
    pub async fn blob(&self, repo: &str, digest: &str) -> Result<Blob, UpstreamError> {
        let (response, permit) = self
            .send(Method::GET, repo, &format!("blobs/{digest}"), false)
            .await?;
        let length = content_length(response.headers())?;
        let body = response
            .bytes_stream()
            .map_err(|e| std::io::Error::other(UpstreamError::transport(e)));
        // The permit goes with the body: a transfer counts against max_concurrent until done.
        let body = body.map(move |chunk| {
            let _held = &permit;
            chunk
        });
        Ok(Blob {
            length,
            body: Box::pin(body),
        })
    }

    /// `GET /v2/<repo>/tags/list` with the client's query (`n`, `last`), its JSON body as is.
    pub async fn tags(&self, repo: &str, query: &str) -> Result<Bytes, UpstreamError> {
        let path = match query {
            "" => "tags/list".to_owned(),
            query => format!("tags/list?{query}"),
        };
        let (response, _permit) = self.send(Method::GET, repo, &path, false).await?;
        tokio::time::timeout(ANSWER_TIMEOUT, response.bytes())
            .await
            .map_err(|_| UpstreamError::TimedOut)?
            .map_err(UpstreamError::transport)
    }

    /// Sends one request about `repo`, authenticating as the upstream asks (once more after a
    /// 401 with a fresh token), and sorts the answer: a success, or the error it means.
    async fn send(
        &self,
        method: Method,
        repo: &str,
        path: &str,
        manifest: bool,
    ) -> Result<(reqwest::Response, OwnedSemaphorePermit), UpstreamError> {
        self.check_quiet()?;
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let url = format!("{}/v2/{repo}/{path}", self.inner.base);
        let mut retried = false;
        loop {
            let mut request = self.inner.client.request(method.clone(), &url);
            if manifest {
                request = request.header(header::ACCEPT, MANIFEST_ACCEPT);
            }
            if let Some(authorization) = self.inner.auth.authorization(repo).await? {
                request = request.header(header::AUTHORIZATION, authorization);
            }
            let response = tokio::time::timeout(ANSWER_TIMEOUT, request.send())
                .await
                .map_err(|_| UpstreamError::TimedOut)?
                .map_err(UpstreamError::transport)?;
            let status = response.status();
            match status {
                s if s.is_success() => return Ok((response, permit)),
                StatusCode::UNAUTHORIZED if !retried => {
                    retried = true;
                    let challenge = response
                        .headers()
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    self.inner.auth.challenged(repo, &challenge).await?;
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    let wait = retry_after(response.headers()).unwrap_or(DEFAULT_BACKOFF);
                    let wait = wait.min(MAX_BACKOFF);
                    *self.inner.quiet_until.lock().expect("not poisoned") =
                        Some(Instant::now() + wait);
                    return Err(UpstreamError::RateLimited { retry_after: wait });
                }
                StatusCode::NOT_FOUND => return Err(UpstreamError::NotFound),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(UpstreamError::Denied(status.as_u16()))
                }
                _ => return Err(UpstreamError::Status(status.as_u16())),
            }
        }
    }

    /// Fails at once while the upstream's `Retry-After` runs.
    fn check_quiet(&self) -> Result<(), UpstreamError> {
        let mut quiet = self.inner.quiet_until.lock().expect("not poisoned");
        match *quiet {
            Some(until) if until > Instant::now() => Err(UpstreamError::RateLimited {
                retry_after: until - Instant::now(),
            }),
            Some(_) => {
                *quiet = None;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn manifest_of(headers: &HeaderMap, body: Bytes) -> Manifest {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
    };
    Manifest {
        digest: text("docker-content-digest"),
        media_type: text("content-type"),
        body,
    }
}

fn content_length(headers: &HeaderMap) -> Result<u64, UpstreamError> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| UpstreamError::Invalid("the answer has no Content-Length".into()))
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value: &HeaderValue = headers.get(header::RETRY_AFTER)?;
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate_parse(text)?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form `Retry-After` dates take.
fn httpdate_parse(text: &str) -> Option<std::time::SystemTime> {
    let rest = text.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)?
        + 1;
    let iso = format!("{year}-{month:02}-{day:0>2}T{time}Z");
    humantime::parse_rfc3339(&iso).ok()
}
